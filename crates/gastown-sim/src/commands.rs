//! Sending commands to the command service (`<prefix>.cmd.<town>.<command>`, JSON request-reply)
//! and reading their replies (ARCHITECTURE §4, DOMAIN §E4).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use gastown_bus::{Names, TownId, headers};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::error::SimError;
use crate::stats::SimStats;

/// Attempts of a command whose answer is `unavailable` (no responders, timeout, 503).
const ATTEMPTS: u32 = 8;
/// First pause between attempts; doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A command to send: its name, its JSON body and the `Nats-Msg-Id` that makes a retry harmless.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) name: &'static str,
    pub(crate) body: Value,
    pub(crate) msg_id: String,
}

/// Sends commands for one simulator (or for `seed_demo`).
#[derive(Debug, Clone)]
pub(crate) struct Commander {
    client: async_nats::Client,
    names: Names,
    timeout: Duration,
    stats: Arc<SimStats>,
}

impl Commander {
    pub(crate) fn new(client: async_nats::Client, names: Names, timeout: Duration, stats: Arc<SimStats>) -> Self {
        Self { client, names, timeout, stats }
    }

    /// One request; the reply object when it says `ok`.
    pub(crate) async fn send_once(&self, town: &TownId, cmd: &Command) -> Result<Value, SimError> {
        let subject = self.names.cmd(town, cmd.name);
        let mut h = HeaderMap::new();
        h.insert(headers::NATS_MSG_ID, cmd.msg_id.as_str());
        h.insert(headers::CONTENT_TYPE, headers::JSON);
        let body = serde_json::to_vec(&cmd.body).map_err(|e| SimError::invalid("command body", e.to_string()))?;
        let unavailable = |message: String| SimError::Unavailable { command: cmd.name.to_owned(), message };
        let reply = tokio::time::timeout(self.timeout, self.client.request_with_headers(subject, h, body.into()))
            .await
            .map_err(|_| unavailable(format!("no reply within {:?}", self.timeout)))?
            .map_err(|e| unavailable(e.to_string()))?;
        let v: Value = serde_json::from_slice(&reply.payload).map_err(|e| unavailable(format!("reply is not JSON: {e}")))?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(v);
        }
        let code = v.pointer("/error/code").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("").to_owned();
        if code == "unavailable" {
            return Err(unavailable(message));
        }
        Err(SimError::Rejected { command: cmd.name.to_owned(), code, message })
    }

    /// Sends with retries while the answer is `unavailable`; `stop` abandons the command (even a
    /// request in flight). Counts the outcome; the caller logs a failure.
    pub(crate) async fn send(&self, town: &TownId, cmd: &Command, stop: &CancellationToken) -> Result<Value, SimError> {
        let mut pause = BACKOFF_MIN;
        let mut attempt = 1;
        let result = loop {
            let once = tokio::select! {
                () = stop.cancelled() => break Err(SimError::Shutdown),
                r = self.send_once(town, cmd) => r,
            };
            match once {
                Err(e) if e.is_retriable() && attempt < ATTEMPTS => {
                    debug!(town = %town, command = cmd.name, attempt, cause = %e, "command unavailable, retrying");
                    tokio::select! {
                        () = stop.cancelled() => break Err(SimError::Shutdown),
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(BACKOFF_MAX);
                    attempt += 1;
                }
                other => break other,
            }
        };
        match &result {
            Ok(_) => SimStats::inc(&self.stats.commands_sent),
            Err(SimError::Shutdown) => {}
            Err(e) => {
                SimStats::inc(&self.stats.command_errors);
                debug!(town = %town, command = cmd.name, cause = %e, "command failed");
            }
        }
        result
    }

    /// Sends `cmds` in order; stops at the first failure.
    pub(crate) async fn send_all(&self, town: &TownId, cmds: &[Command], stop: &CancellationToken) -> Result<(), SimError> {
        for cmd in cmds {
            self.send(town, cmd, stop).await?;
        }
        Ok(())
    }
}
