//! The simulator's error type.

use gastown_bus::BusError;

/// What went wrong in the simulator. Callers branch with [`SimError::is_retriable`].
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The bus failed (connect, stream or consumer set-up, publish).
    ///
    /// Handling: retriable when its kind is `unavailable`; otherwise stop and report.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A command got no usable answer (no responders, a timeout, a 503 `unavailable`).
    ///
    /// Handling: back off and retry; the command carries a `Nats-Msg-Id`, so a retry is stored once.
    #[error("command {command} unavailable: {message}")]
    Unavailable {
        /// The command name (`agent.done`).
        command: String,
        /// What the transport or the service said.
        message: String,
    },
    /// The command service refused the command (400, 404, 409).
    ///
    /// Handling: never retry; the request itself is wrong or the town's state forbids it.
    #[error("command {command} refused ({code}): {message}")]
    Rejected {
        /// The command name.
        command: String,
        /// The reply's `error.code` (`bad_request`, `conflict`, ...).
        code: String,
        /// The reply's `error.message`.
        message: String,
    },
    /// A value given to the simulator is unusable (a bad id, a bad fault rule).
    ///
    /// Handling: fix the input; never retry.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        message: String,
    },
    /// Shutdown was requested while the operation was waiting to retry.
    ///
    /// Handling: nothing; the caller is stopping.
    #[error("stopped by shutdown")]
    Shutdown,
}

impl SimError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        match self {
            SimError::Bus(e) => e.kind() == gastown_bus::ErrorKind::Unavailable,
            SimError::Unavailable { .. } => true,
            SimError::Rejected { .. } | SimError::Invalid { .. } | SimError::Shutdown => false,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        SimError::Invalid { what: what.into(), message: message.into() }
    }
}
