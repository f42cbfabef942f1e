//! One JetStream node for a test.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use gastown_natsd::{NatsServer, NatsdError, ServerSpec};
use tempfile::TempDir;
use tracing::debug;

use crate::{TestkitError, free_ports, nats_binary};

/// How often a start is retried when a freshly picked port was taken by someone else.
pub(crate) const PORT_RETRIES: usize = 5;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A name unique among the servers of all test processes on this machine.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A single JetStream `nats-server` on free loopback ports with a temporary store.
///
/// Dropping it kills the process and deletes the store.
#[derive(Debug)]
pub struct TestServer {
    // Field order matters: the process is killed before its store is deleted.
    server: NatsServer,
    dir: TempDir,
}

impl TestServer {
    /// Starts a server and waits until JetStream is ready.
    ///
    /// # Errors
    /// [`TestkitError`] when the binary is missing or the server does not become ready.
    pub async fn start() -> Result<Self, TestkitError> {
        Self::start_with(Vec::new()).await
    }

    /// Starts a server with extra configuration lines (e.g. `max_payload: 64KB`).
    ///
    /// # Errors
    /// As [`TestServer::start`].
    pub async fn start_with(extra: Vec<String>) -> Result<Self, TestkitError> {
        let binary = nats_binary().await?;
        let dir = tempfile::Builder::new()
            .prefix("gastown-nats-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating temporary store dir in", std::env::temp_dir(), e))?;
        let name = unique_name("ts");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let [port, http_port] =
                free_ports(2)?.try_into().map_err(|_| TestkitError::Join("free_ports miscounted".to_owned()))?;
            let mut spec = ServerSpec::new(name.clone(), port, http_port, dir.path().join("store"));
            spec.extra.clone_from(&extra);
            match NatsServer::start(&binary, spec).await {
                Ok(server) => return Ok(Self { server, dir }),
                Err(NatsdError::AddressInUse { .. }) if attempt < PORT_RETRIES => {
                    debug!(name = %name, attempt, "port taken; retrying with other ports");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The client port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The process id while the server runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// The store dir (config, log and `jetstream/`), kept across restarts.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        self.server.store_dir()
    }

    /// The temporary dir holding the store; free for a test's own files.
    #[must_use]
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The underlying server handle (monitor requests, log tail).
    #[must_use]
    pub fn server(&self) -> &NatsServer {
        &self.server
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after a grace period).
    ///
    /// # Errors
    /// [`TestkitError::Natsd`].
    pub async fn stop(&mut self) -> Result<(), TestkitError> {
        Ok(self.server.stop().await?)
    }

    /// Kills the server with SIGKILL, as in a crash.
    ///
    /// # Errors
    /// [`TestkitError::Natsd`].
    pub async fn kill(&mut self) -> Result<(), TestkitError> {
        Ok(self.server.kill().await?)
    }

    /// Stops the server if it runs and starts it again on the same ports with the same store,
    /// waiting until JetStream is ready.
    ///
    /// # Errors
    /// [`TestkitError::Natsd`].
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        Ok(self.server.restart().await?)
    }

    /// The monitor's `/jsz` (JetStream state) as JSON.
    ///
    /// # Errors
    /// [`TestkitError::Natsd`] when the request fails or the body is not JSON.
    pub async fn jsz(&self) -> Result<serde_json::Value, TestkitError> {
        monitor_json(&self.server, "/jsz").await
    }
}

/// `GET path` on a server's monitor port, parsed as JSON.
pub(crate) async fn monitor_json(server: &NatsServer, path: &str) -> Result<serde_json::Value, TestkitError> {
    let response = server.monitor_get(path).await?;
    serde_json::from_str(&response.body).map_err(|e| {
        TestkitError::from(NatsdError::Monitor {
            port: server.spec().http_port,
            path: path.to_owned(),
            reason: format!("status {}, body is not JSON: {e}", response.status),
        })
    })
}
