//! Errors of the ingest service.

use gastown_bus::BusError;

/// Why the ingest service (or one of its loops) stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The bus failed in a way the service cannot ride out (setup, a lost stream).
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The heartbeat filter's memory bucket failed (`memory::MemoryError`). Handling: for
    /// [`crate::memory::MemoryError::Conflict`], re-read M and run the step again; for
    /// `Unavailable`, back off and retry.
    #[error("ingest memory: {0}")]
    Memory(#[from] crate::memory::MemoryError),
    /// A task of the service panicked (a bug): the service stops rather than run with a partition
    /// nobody processes. Handling: log and exit non-zero; a supervisor restarts the process.
    #[error("task failed: {0}")]
    Crashed(String),
    /// The command service could not be started.
    #[error("command service: {0}")]
    Service(String),
}
