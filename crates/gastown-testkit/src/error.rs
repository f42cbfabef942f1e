//! The one error type of the test kit.

use std::path::PathBuf;

use gastown_natsd::NatsdError;

/// Why a test fixture could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// Finding, installing or running `nats-server` failed.
    #[error(transparent)]
    Natsd(#[from] NatsdError),
    /// A file system or socket operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved (empty for sockets).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("{what} not reached after {waited_ms} ms: {detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        waited_ms: u128,
        /// The last observation.
        detail: String,
    },
    /// A node index outside the cluster.
    #[error("no node {index} in a cluster of {nodes}")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// How many nodes there are.
        nodes: usize,
    },
    /// Setting up the Python venv failed.
    #[error("python venv: {step} failed: {output}")]
    Python {
        /// The step that failed.
        step: String,
        /// What the tool printed.
        output: String,
    },
    /// A blocking helper task failed.
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl TestkitError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}
