//! Starting real servers: failures are reported with the server's own words.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use gastown_natsd::{NatsServer, NatsdError, ServerSpec, find_or_install};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(".gastown").join("tools")
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

#[tokio::test]
async fn taken_client_port_should_be_reported_as_address_in_use() {
    let binary = find_or_install(&tools_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let held = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let spec = ServerSpec::new("held-port", held.local_addr().unwrap().port(), free_port().unwrap(), dir.path());
    let err = timeout(LIMIT, NatsServer::start(&binary, spec)).await.expect("start hung").unwrap_err();
    assert!(matches!(err, NatsdError::AddressInUse { .. }), "{err}");
}

#[tokio::test]
async fn bad_config_should_fail_with_the_log_tail() {
    let binary = find_or_install(&tools_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::new("bad-config", free_port().unwrap(), free_port().unwrap(), dir.path())
        .with_extra("no_such_option_here: {{{");
    let err = timeout(LIMIT, NatsServer::start(&binary, spec)).await.expect("start hung").unwrap_err();
    assert!(matches!(err, NatsdError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("Parse error"), "the error should quote the server's complaint: {err}");
}

#[tokio::test]
async fn server_should_start_stop_and_restart_on_the_same_port() {
    let binary = find_or_install(&tools_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::new("plain", free_port().unwrap(), free_port().unwrap(), dir.path());
    let mut server = timeout(LIMIT, NatsServer::start(&binary, spec)).await.expect("start hung").unwrap();
    let url = server.url();
    let health = server.monitor_get("/healthz?js-enabled-only=true").await.unwrap();
    assert_eq!(health.status, 200, "{health:?}");
    timeout(LIMIT, server.restart()).await.expect("restart hung").unwrap();
    assert_eq!(server.url(), url);
    timeout(LIMIT, server.stop()).await.expect("stop hung").unwrap();
    assert!(server.pid().is_none());
    assert!(server.monitor_get("/healthz").await.is_err(), "nothing should answer after stop");
}
