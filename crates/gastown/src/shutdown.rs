//! Shutdown: the first SIGINT or SIGTERM cancels the token (stop intake, finish the unit in hand,
//! flush); a second signal, or the grace period running out, exits the process by force.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT/SIGTERM and forces an exit after `grace` or a second signal.
pub(crate) fn on_signals(token: CancellationToken, grace: Duration) {
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::warn!("cannot install signal handlers; stop the process with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(grace_s = grace.as_secs(), "shutting down gracefully");
        token.cancel();
        tokio::select! {
            _ = term.recv() => tracing::warn!("second signal: exiting now"),
            _ = int.recv() => tracing::warn!("second signal: exiting now"),
            () = tokio::time::sleep(grace) => tracing::warn!("grace period over: exiting now"),
        }
        std::process::exit(1);
    });
}
