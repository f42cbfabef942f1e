//! A minimal HTTP/1.0 client for the server's monitor port (`/healthz`, `/jsz`, `/varz`).
//!
//! The monitor speaks plain HTTP on loopback; one GET with `Connection: close` and reading to
//! the end is all readiness checks need, so no HTTP client crate is pulled in.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::NatsdError;

/// Largest response accepted from the monitor port (a `/jsz` of a test server is a few KiB).
const MAX_RESPONSE_BYTES: u64 = 4 << 20;

/// A monitor response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response body (JSON for the monitor endpoints).
    pub body: String,
}

/// `GET path` on `host:port` over HTTP/1.0, bounded by `timeout`.
///
/// # Errors
/// [`NatsdError::Monitor`] when the connection, request or response fails, the response is
/// malformed or too large, or `timeout` passes.
pub async fn monitor_get(host: &str, port: u16, path: &str, timeout: Duration) -> Result<MonitorResponse, NatsdError> {
    let fail = |reason: String| NatsdError::Monitor { port, path: path.to_owned(), reason };
    let request = async {
        let mut stream = TcpStream::connect((host, port)).await.map_err(|e| fail(format!("connect: {e}")))?;
        let head = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| fail(format!("write: {e}")))?;
        let mut raw = Vec::new();
        (&mut stream).take(MAX_RESPONSE_BYTES + 1).read_to_end(&mut raw).await.map_err(|e| fail(format!("read: {e}")))?;
        if raw.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(fail(format!("response larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        parse_response(&raw).ok_or_else(|| fail("malformed HTTP response".to_owned()))
    };
    tokio::time::timeout(timeout, request).await.map_err(|_| fail(format!("no response within {} ms", timeout.as_millis())))?
}

fn parse_response(raw: &[u8]) -> Option<MonitorResponse> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(MonitorResponse { status, body: body.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_should_parse_status_and_body() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(parse_response(raw), Some(MonitorResponse { status: 200, body: "{\"status\":\"ok\"}".to_owned() }));
        assert_eq!(parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").map(|r| r.status), Some(503));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(parse_response(b"SMTP 200\r\n\r\n"), None);
    }
}
