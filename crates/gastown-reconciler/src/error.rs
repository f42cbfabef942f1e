//! Errors of the reconciler service.

use gastown_bus::{BusError, ErrorKind};

/// Why the reconciler (or one of its parts) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcilerError {
    /// The bus failed. Handling: branch on [`BusError::kind`]: `Unavailable` backs off and
    /// retries, `Conflict` refolds and decides again, `Mismatch`/`Unsupported` refuse to start.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// A value could not be encoded or decoded (a snapshot, an index entry). Handling: log it and
    /// fall back (an older snapshot, or a fold from the first event); never retry as is.
    #[error("codec: {0}")]
    Codec(String),
    /// A snapshot or its index could not be read or written. Handling: by its kind; the town
    /// keeps running from its events.
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshots::SnapshotError),
    /// The configuration is unusable (checked before connecting). Handling: exit 64.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A task of the service panicked (a bug). Handling: log and exit non-zero.
    #[error("task failed: {0}")]
    Crashed(String),
}

impl ReconcilerError {
    /// Whether waiting and retrying may help (the broker or a store did not answer).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            ReconcilerError::Bus(e) => matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Other),
            ReconcilerError::Snapshot(e) => matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Other),
            ReconcilerError::Codec(_) | ReconcilerError::Config(_) | ReconcilerError::Crashed(_) => false,
        }
    }
}

impl From<gastown_core::codec::CodecError> for ReconcilerError {
    fn from(e: gastown_core::codec::CodecError) -> Self {
        ReconcilerError::Codec(e.to_string())
    }
}
