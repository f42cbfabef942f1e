//! One `nats-server` process: configuration, start, readiness, stop, kill and restart.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::install::tail;
use crate::{MonitorResponse, NatsBinary, NatsdError, monitor_get};

/// How long `start` and `restart` wait for readiness unless the spec says otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the process to be reaped after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many lines of the server log go into an error.
const LOG_TAIL_LINES: usize = 30;
/// Name of the configuration file written into the store dir.
pub const CONFIG_FILE: &str = "nats-server.conf";
/// Name of the log file (stdout and stderr) in the store dir.
pub const LOG_FILE: &str = "nats-server.log";

/// Clustering settings of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Cluster name; every node of a cluster uses the same one.
    pub name: String,
    /// The route listener port of this node.
    pub port: u16,
    /// Route ports of the other nodes (on the same host) to connect to.
    pub routes: Vec<u16>,
}

/// What a server process runs with. Written to a configuration file in `store_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `server_name`; distinct per node in a cluster, and used to check that the monitor port
    /// answering is this server's and not another process's.
    pub name: String,
    /// Host to listen on (loopback in tests).
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Monitor (HTTP) port, used for readiness.
    pub http_port: u16,
    /// Holds the config file, the log file and JetStream's `jetstream/` folder; kept across
    /// restarts.
    pub store_dir: PathBuf,
    /// Whether JetStream is enabled.
    pub jetstream: bool,
    /// Clustering, if this node is part of a cluster.
    pub cluster: Option<ClusterSpec>,
    /// Extra configuration lines appended verbatim.
    pub extra: Vec<String>,
    /// How long `start` and `restart` wait for readiness.
    pub ready_timeout: Duration,
}

impl ServerSpec {
    /// A JetStream server on 127.0.0.1 with no cluster and no extra lines.
    #[must_use]
    pub fn new(name: impl Into<String>, port: u16, http_port: u16, store_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            host: "127.0.0.1".to_owned(),
            port,
            http_port,
            store_dir: store_dir.into(),
            jetstream: true,
            cluster: None,
            extra: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// Sets the cluster settings.
    #[must_use]
    pub fn with_cluster(mut self, cluster: ClusterSpec) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Appends one configuration line.
    #[must_use]
    pub fn with_extra(mut self, line: impl Into<String>) -> Self {
        self.extra.push(line.into());
        self
    }

    /// The configuration file text.
    #[must_use]
    pub fn config_text(&self) -> String {
        let host = &self.host;
        let mut lines = vec![
            format!("server_name: {}", quote(&self.name)),
            format!("listen: {}", quote(&format!("{host}:{}", self.port))),
            format!("http: {}", quote(&format!("{host}:{}", self.http_port))),
        ];
        if self.jetstream {
            lines.push("jetstream {".to_owned());
            lines.push(format!("  store_dir: {}", quote(&self.store_dir.to_string_lossy())));
            lines.push("}".to_owned());
        }
        if let Some(cluster) = &self.cluster {
            lines.push("cluster {".to_owned());
            lines.push(format!("  name: {}", quote(&cluster.name)));
            lines.push(format!("  listen: {}", quote(&format!("{host}:{}", cluster.port))));
            lines.push("  routes: [".to_owned());
            for port in &cluster.routes {
                lines.push(format!("    {}", quote(&format!("nats-route://{host}:{port}"))));
            }
            lines.push("  ]".to_owned());
            lines.push("}".to_owned());
        }
        lines.extend(self.extra.iter().cloned());
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    /// Path of the configuration file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.store_dir.join(CONFIG_FILE)
    }

    /// Path of the log file.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.store_dir.join(LOG_FILE)
    }
}

fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// A running (or stopped) `nats-server` process.
///
/// The process is killed (SIGKILL) when this handle drops.
#[derive(Debug)]
pub struct NatsServer {
    binary: NatsBinary,
    spec: ServerSpec,
    child: Option<Child>,
    /// Where the current run's output starts in the (appended) log file.
    log_offset: u64,
}

impl NatsServer {
    /// Writes the configuration, spawns the server and waits until it is ready.
    ///
    /// # Errors
    /// [`NatsdError::AddressInUse`] when a port was taken (pick others and retry),
    /// [`NatsdError::Exited`] or [`NatsdError::NotReady`] with the log tail, or
    /// [`NatsdError::Io`].
    pub async fn start(binary: &NatsBinary, spec: ServerSpec) -> Result<Self, NatsdError> {
        let mut server = Self::spawn(binary, spec)?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Writes the configuration and spawns the server without waiting for readiness (cluster
    /// nodes are spawned together, then awaited with [`NatsServer::wait_ready`]).
    ///
    /// # Errors
    /// [`NatsdError::Io`] when the store dir, config or log cannot be written or the process
    /// cannot be spawned.
    pub fn spawn(binary: &NatsBinary, spec: ServerSpec) -> Result<Self, NatsdError> {
        let mut server = Self { binary: binary.clone(), spec, child: None, log_offset: 0 };
        server.spawn_process()?;
        Ok(server)
    }

    fn spawn_process(&mut self) -> Result<(), NatsdError> {
        let spec = &self.spec;
        fs::create_dir_all(&spec.store_dir).map_err(|e| NatsdError::io("creating store dir", &spec.store_dir, e))?;
        let config_path = spec.config_path();
        fs::write(&config_path, spec.config_text()).map_err(|e| NatsdError::io("writing config", &config_path, e))?;
        let log_path = spec.log_path();
        let log =
            File::options().create(true).append(true).open(&log_path).map_err(|e| NatsdError::io("opening log", &log_path, e))?;
        self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().map_err(|e| NatsdError::io("opening log", &log_path, e))?;
        let child = Command::new(&self.binary.path)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own process group: a Ctrl-C in the terminal reaches the owner, which stops the
            // server after its services have drained, not the server first.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| NatsdError::io("spawning", &self.binary.path, e))?;
        debug!(name = %spec.name, pid = ?child.id(), port = spec.port, http_port = spec.http_port, "spawned nats-server");
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the monitor port reports the server healthy (with JetStream enabled when
    /// configured) and identifies itself by this spec's `server_name`, bounded by
    /// `spec.ready_timeout`.
    ///
    /// # Errors
    /// [`NatsdError::AddressInUse`], [`NatsdError::Exited`], [`NatsdError::NotReady`] (each with
    /// the log tail) or [`NatsdError::NotRunning`].
    pub async fn wait_ready(&mut self) -> Result<(), NatsdError> {
        let started = Instant::now();
        let deadline = started + self.spec.ready_timeout;
        let health_path = if self.spec.jetstream { "/healthz?js-enabled-only=true" } else { "/healthz" };
        let mut delay = Duration::from_millis(10);
        loop {
            self.check_alive()?;
            let last_problem = match self.probe(health_path).await {
                Ok(()) => {
                    // The process must still be ours and alive: a port taken by someone else
                    // makes our server exit, and the answer could have come from the other one.
                    self.check_alive()?;
                    info!(name = %self.spec.name, pid = ?self.pid(), url = %self.url(), elapsed_ms = started.elapsed().as_millis() as u64, "nats-server ready");
                    return Ok(());
                }
                Err(problem) => problem,
            };
            if Instant::now() >= deadline {
                return Err(NatsdError::NotReady {
                    name: self.spec.name.clone(),
                    waited_ms: started.elapsed().as_millis(),
                    last_problem,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    async fn probe(&self, health_path: &str) -> Result<(), String> {
        let health = self.monitor_get_with(health_path, PROBE_TIMEOUT).await.map_err(|e| e.to_string())?;
        if health.status != 200 {
            return Err(format!("{health_path} answered {}: {}", health.status, health.body.trim()));
        }
        let varz = self.monitor_get_with("/varz", PROBE_TIMEOUT).await.map_err(|e| e.to_string())?;
        let name = serde_json::from_str::<serde_json::Value>(&varz.body)
            .ok()
            .and_then(|v| v.get("server_name").and_then(|n| n.as_str()).map(str::to_owned));
        match name {
            Some(name) if name == self.spec.name => Ok(()),
            other => Err(format!("monitor port answered for server {other:?}, not {:?}", self.spec.name)),
        }
    }

    /// Fails with the log tail if the process has exited.
    fn check_alive(&mut self) -> Result<(), NatsdError> {
        let name = self.spec.name.clone();
        let Some(child) = self.child.as_mut() else {
            return Err(NatsdError::NotRunning { name });
        };
        let status = match child.try_wait() {
            Ok(None) => return Ok(()),
            Ok(Some(status)) => status.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        self.child = None;
        let log_tail = self.log_tail();
        if log_tail.contains("address already in use") {
            Err(NatsdError::AddressInUse { name, log_tail })
        } else {
            Err(NatsdError::Exited { name, status, log_tail })
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL if it has not exited within a grace period.
    /// Stopping a server that is not running does nothing.
    ///
    /// # Errors
    /// [`NatsdError::Io`] when waiting for the process fails.
    pub async fn stop(&mut self) -> Result<(), NatsdError> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        if let Some(pid) = child.id() {
            let sent = Command::new("kill").arg("-TERM").arg(pid.to_string()).stdin(Stdio::null()).status().await;
            if let Err(err) =
                sent.as_ref().map_err(ToString::to_string).and_then(|s| if s.success() { Ok(()) } else { Err(s.to_string()) })
            {
                warn!(name = %self.spec.name, pid, cause = %err, "SIGTERM failed; killing");
            }
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(status) => {
                    let status = status.map_err(|e| NatsdError::io("waiting for", &self.binary.path, e))?;
                    info!(name = %self.spec.name, pid, %status, "nats-server stopped");
                    return Ok(());
                }
                Err(_) => {
                    warn!(name = %self.spec.name, pid, grace_ms = STOP_GRACE.as_millis() as u64, "nats-server ignored SIGTERM; killing")
                }
            }
        }
        self.reap_killed(child).await
    }

    /// Kills the server with SIGKILL (`kill -9`: no shutdown work, as in a crash) and waits for
    /// the process to be gone. Killing a server that is not running does nothing.
    ///
    /// # Errors
    /// [`NatsdError::Io`] when the process cannot be killed or reaped in time.
    pub async fn kill(&mut self) -> Result<(), NatsdError> {
        let Some(child) = self.child.take() else { return Ok(()) };
        self.reap_killed(child).await
    }

    async fn reap_killed(&self, mut child: Child) -> Result<(), NatsdError> {
        let pid = child.id();
        if let Err(e) = child.start_kill() {
            // Already exited and reaped: nothing to do.
            if child.try_wait().ok().flatten().is_some() {
                return Ok(());
            }
            return Err(NatsdError::io("killing", &self.binary.path, e));
        }
        match tokio::time::timeout(KILL_WAIT, child.wait()).await {
            Ok(Ok(status)) => {
                info!(name = %self.spec.name, pid = ?pid, %status, "nats-server killed");
                Ok(())
            }
            Ok(Err(e)) => Err(NatsdError::io("waiting for", &self.binary.path, e)),
            Err(_) => Err(NatsdError::io(
                "waiting for killed",
                &self.binary.path,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "process not reaped after SIGKILL"),
            )),
        }
    }

    /// Stops the server if it runs (gracefully) and starts it again with the same ports and
    /// store, waiting until it is ready.
    ///
    /// # Errors
    /// As [`NatsServer::stop`] and [`NatsServer::start`].
    pub async fn restart(&mut self) -> Result<(), NatsdError> {
        self.stop().await?;
        self.spawn_process()?;
        self.wait_ready().await
    }

    /// Starts the server again after [`NatsServer::stop`] or [`NatsServer::kill`] without
    /// waiting for readiness (cluster nodes may need their peers first).
    ///
    /// # Errors
    /// As [`NatsServer::spawn`]; stops a running process first.
    pub async fn respawn(&mut self) -> Result<(), NatsdError> {
        self.stop().await?;
        self.spawn_process()
    }

    /// The client URL, `nats://<host>:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.spec.host, self.spec.port)
    }

    /// The process id while the server runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process is running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.check_alive().is_ok()
    }

    /// What this server runs with.
    #[must_use]
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// The binary this server runs.
    #[must_use]
    pub fn binary(&self) -> &NatsBinary {
        &self.binary
    }

    /// The client port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// The store dir (config, log and `jetstream/`).
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        &self.spec.store_dir
    }

    /// `GET path` on this server's monitor port (e.g. `/jsz`, `/varz`), bounded by a short
    /// timeout.
    ///
    /// # Errors
    /// [`NatsdError::Monitor`].
    pub async fn monitor_get(&self, path: &str) -> Result<MonitorResponse, NatsdError> {
        self.monitor_get_with(path, PROBE_TIMEOUT).await
    }

    async fn monitor_get_with(&self, path: &str, timeout: Duration) -> Result<MonitorResponse, NatsdError> {
        monitor_get(&self.spec.host, self.spec.http_port, path, timeout).await
    }

    /// The last lines the current run wrote to the log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let path = self.spec.log_path();
        let mut text = String::new();
        let read = File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.log_offset))?;
            // Bounded: the tail of a runaway log is what matters, not all of it.
            f.take(1 << 20).read_to_string(&mut text)
        });
        match read {
            Ok(_) => tail(&text, LOG_TAIL_LINES),
            Err(e) => format!("(cannot read {}: {e})", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_should_name_ports_store_and_routes() {
        let spec = ServerSpec::new("n1", 4222, 8222, "/tmp/x\"y").with_extra("max_payload: 1MB").with_cluster(ClusterSpec {
            name: "c".to_owned(),
            port: 6222,
            routes: vec![6223, 6224],
        });
        let text = spec.config_text();
        assert!(text.contains("server_name: \"n1\""), "{text}");
        assert!(text.contains("listen: \"127.0.0.1:4222\""), "{text}");
        assert!(text.contains("http: \"127.0.0.1:8222\""), "{text}");
        assert!(text.contains("store_dir: \"/tmp/x\\\"y\""), "{text}");
        assert!(text.contains("\"nats-route://127.0.0.1:6224\""), "{text}");
        assert!(text.ends_with("max_payload: 1MB\n"), "{text}");
    }
}
