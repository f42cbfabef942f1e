//! The command service (ARCHITECTURE §3–§4, DOMAIN §E4): the NATS micro service
//! `<prefix>-ingest` with one endpoint on `<prefix>.cmd.*.>`, so `$SRV.PING`, `$SRV.INFO` and
//! `$SRV.STATS` answer for it.
//!
//! Every decision is [`gastown_core::command::handle`]'s; this module only does the I/O around
//! it: parse the subject, read the cached fold of the town ([`TownCache`]), validate, append
//! (fenced at the sequence validated against when the outcome says so), refold and validate
//! again when another writer got there first (up to [`CommandsConfig::append_retries`] times,
//! then 503 `town busy, retry`), and answer JSON.
//!
//! # Replies
//! Success, duplicate and no-op replies are the JSON of E4. An error reply carries E4's JSON
//! body **and** the micro-service headers `Nats-Service-Error` (the message) and
//! `Nats-Service-Error-Code` (400, 404, 409, 503). async-nats's `Request::respond(Err(..))`
//! publishes an empty body, and `respond(Ok(..))` counts the request as a success in the
//! endpoint statistics; so the error reply is published on the request's reply subject here,
//! and the statistics are then kept right by answering the same request with `Err` on a
//! discard subject nobody listens to ([`discard_subject`]): `$SRV.STATS` counts the error
//! (`num_errors`, `last_error`) at the cost of one tiny publish that the server drops.
//!
//! ## Warning
//! With per-role NATS permissions, ingest's user must be allowed to publish to
//! `_INBOX.<prefix>-ingest.discard` (e.g. `_INBOX.>`); otherwise the server logs a permissions
//! violation per error reply (the client still gets its reply, only `$SRV.STATS` misses it).
//!
//! # Concurrency
//! Requests are served concurrently across towns, at most [`CommandsConfig::max_in_flight`] at a
//! time (a semaphore: a full service stops pulling requests, it never drops one). Two commands
//! of one town race safely: both validate, both append fenced, the loser refolds and validates
//! again (where its command may have become a conflict or a no-op).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::service::{self, ServiceExt};
use futures::StreamExt;
use gastown_bus::{Bus, BusError, ErrorKind, TownId, headers};
use gastown_core::command::{
    CommandError, CommandRequest, ErrorCode, Outcome, busy, handle, is_command, reply_duplicate, reply_noop, reply_ok,
};
use gastown_core::constants::COMMAND_APPEND_RETRIES;
use gastown_core::{Envelope, Event, Millis};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::IngestError;
use crate::cache::{DEFAULT_CACHE_TOWNS, TownCache};
use crate::memory::MemoryStore;
use crate::metrics::IngestMetrics;

/// The endpoint's name in `$SRV.INFO`.
pub const ENDPOINT_NAME: &str = "commands";

/// Settings of the command service.
#[derive(Debug, Clone)]
pub struct CommandsConfig {
    /// Refolds after a refused fenced append before answering 503 `town busy, retry`
    /// (COMMAND_APPEND_RETRIES).
    pub append_retries: u32,
    /// Towns kept folded for validation (LRU beyond).
    pub cache_towns: usize,
    /// Requests served at once; further requests wait in the subscription's buffer.
    pub max_in_flight: usize,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self { append_retries: COMMAND_APPEND_RETRIES, cache_towns: DEFAULT_CACHE_TOWNS, max_in_flight: 64 }
    }
}

/// The subject error replies are mirrored to for the endpoint statistics (see the module docs):
/// `_INBOX.<service>.discard`. Nobody subscribes to it; the server drops what is published there.
#[must_use]
pub fn discard_subject(bus: &Bus) -> String {
    format!("_INBOX.{}.discard", bus.names.ingest_service())
}

/// Runs the command service until `shutdown` is cancelled, then stops taking requests and waits
/// for the requests in hand to be answered.
///
/// # Errors
/// The service could not be started, or its subscription ended while not shutting down (the
/// connection was closed).
pub async fn run_commands(
    bus: Arc<Bus>,
    cfg: CommandsConfig,
    memory: Arc<MemoryStore>,
    metrics: Arc<IngestMetrics>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let name = bus.names.ingest_service();
    let service = bus
        .client
        .service_builder()
        .description("gastown command service: validates commands and appends their events")
        .start(&name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| IngestError::Service(format!("start {name}: {e}")))?;
    let subject = bus.names.cmd_wildcard();
    let mut endpoint = service
        .endpoint_builder()
        .name(ENDPOINT_NAME)
        .add(&subject)
        .await
        .map_err(|e| IngestError::Service(format!("add endpoint {subject}: {e}")))?;
    info!(service = %name, %subject, "command service started");

    let handler = Arc::new(Handler {
        cache: TownCache::new(cfg.cache_towns),
        discard: discard_subject(&bus),
        bus,
        append_retries: cfg.append_retries,
        memory,
        metrics,
    });
    let permits = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let tracker = TaskTracker::new();
    let result = loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Err(IngestError::Service("request permits closed".into())),
            },
        };
        let request = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            r = endpoint.next() => match r {
                Some(r) => r,
                None => break Err(IngestError::Service("command subscription ended".into())),
            },
        };
        let handler = Arc::clone(&handler);
        tracker.spawn(async move {
            handler.serve(request).await;
            drop(permit);
        });
    };
    if let Err(e) = endpoint.stop().await {
        debug!(cause = %e, "stopping the command endpoint");
    }
    if let Err(e) = service.stop().await {
        debug!(cause = %e, "stopping the command service");
    }
    tracker.close();
    tracker.wait().await;
    info!("command service stopped");
    result
}

/// What one request needs; shared by the request tasks.
struct Handler {
    bus: Arc<Bus>,
    cache: TownCache,
    discard: String,
    append_retries: u32,
    memory: Arc<MemoryStore>,
    metrics: Arc<IngestMetrics>,
}

/// How a request ended, for the reply and the counters.
enum Answer {
    /// Appended at this sequence (the envelope is the appended event).
    Appended(Box<Envelope>, u64),
    /// Already stored.
    Duplicate(String, u64),
    /// Nothing to change.
    Noop,
    /// Rejected or failed.
    Error(CommandError),
}

impl Handler {
    /// Serves one request: never panics, always answers when there is a reply subject.
    async fn serve(&self, request: service::Request) {
        let started = tokio::time::Instant::now();
        let subject = request.message.subject.to_string();
        let (town, command) = match self.bus.names.parse_cmd(&subject) {
            Ok(parsed) => parsed,
            Err(e) => {
                debug!(%subject, cause = %e, "command on an invalid subject");
                self.metrics.rejected.add(&["invalid_subject"], 1);
                self.metrics.commands.add(&["unknown", "bad_request"], 1);
                self.answer(request, &Answer::Error(CommandError::bad_request(e.to_string()))).await;
                self.metrics.command_duration.record_us(elapsed_us(started));
                return;
            }
        };
        let span = info_span!("command", town = %town, command = %command, event_type = tracing::field::Empty, seq = tracing::field::Empty);
        let answer = self.execute(&town, &command, &request.message).instrument(span.clone()).await;
        let label = if is_command(&command) { command.as_str() } else { "unknown" };
        let outcome = match &answer {
            Answer::Appended(env, seq) => {
                span.record("event_type", env.event_type());
                span.record("seq", seq);
                "ok"
            }
            Answer::Duplicate(..) => "duplicate",
            Answer::Noop => "noop",
            Answer::Error(e) => {
                if e.code != ErrorCode::Unavailable {
                    self.metrics.rejected.add(&[e.code.as_str()], 1);
                }
                e.code.as_str()
            }
        };
        self.metrics.commands.add(&[label, outcome], 1);
        self.answer(request, &answer).instrument(span).await;
        self.metrics.command_duration.record_us(elapsed_us(started));
    }

    /// Validates and appends (E4), refolding after each refused fenced append.
    async fn execute(&self, town: &TownId, command: &str, msg: &async_nats::Message) -> Answer {
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let msg_id = header(headers::NATS_MSG_ID);
        let content_type = header(headers::CONTENT_TYPE);
        let traceparent = header(headers::TRACEPARENT);
        let now = wall_clock_ms();
        let fresh_id = ulid::Ulid::new().to_string();
        let mut state = match self.cache.get(&self.bus, town).await {
            Ok(state) => state,
            Err(e) => return Answer::Error(unavailable(&e)),
        };
        let mut refolds = 0_u32;
        loop {
            let req = CommandRequest {
                town_id: town.as_str(),
                command,
                body: &msg.payload,
                content_type: content_type.as_deref(),
                msg_id: msg_id.as_deref(),
                now,
                fresh_id: &fresh_id,
            };
            let (envelope, fenced) = match handle(&req, &state) {
                Err(e) => return Answer::Error(e),
                Ok(Outcome::Noop) => return Answer::Noop,
                Ok(Outcome::Duplicate { event_id, seq }) => return Answer::Duplicate(event_id, seq),
                Ok(Outcome::Append { envelope, fenced }) => (envelope, fenced),
            };
            let fence = fenced.then_some(state.last_seq);
            match self.bus.append_event(town, &envelope, fence, traceparent.as_deref()).await {
                Ok(a) if a.duplicate => {
                    IngestMetrics::inc(&self.metrics.events_duplicates);
                    debug!(event_id = %envelope.id, seq = a.seq, "append answered as a duplicate");
                    return Answer::Duplicate(envelope.id, a.seq);
                }
                Ok(a) => {
                    drop(state);
                    self.cache.record_append(town, fence, a.seq, &envelope);
                    self.appended(town, &envelope).await;
                    return Answer::Appended(Box::new(envelope), a.seq);
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    if refolds >= self.append_retries {
                        // The next request of the town refolds first.
                        self.cache.record_refusal(town, state.last_seq);
                        warn!(refolds, "town kept moving: answering busy");
                        return Answer::Error(busy());
                    }
                    refolds += 1;
                    debug!(fence = ?fence, refolds, "fenced append refused: refolding");
                    state = match self.cache.refresh(&self.bus, town).await {
                        Ok(state) => state,
                        Err(e) => return Answer::Error(unavailable(&e)),
                    };
                }
                Err(e) => return Answer::Error(unavailable(&e)),
            }
        }
    }

    /// The effects of a stored event besides the reply: counters, and the memory reset of a
    /// registration (E5 (iii)).
    async fn appended(&self, town: &TownId, envelope: &Envelope) {
        self.metrics.events_appended.add(&[envelope.event_type(), "cmd"], 1);
        match &envelope.event {
            Event::ActionResult(r) => {
                let outcome = if r.ok { "ok" } else { "failed" };
                self.metrics.side_effect_results.add(&[bounded_label(&r.action_type), outcome], 1);
            }
            Event::AgentRegistered(r) => match gastown_bus::AgentId::try_from(r.agent_id.as_str()) {
                // The event is stored: a failed reset is logged, not answered as an error (the
                // client's retry would only meet `agent <id> already exists`).
                Ok(agent) => {
                    if let Err(e) = self.memory.reset_for_registration(town, &agent).await {
                        warn!(agent = %agent, cause = %e, "could not reset the heartbeat memory of a registered agent");
                    }
                }
                Err(e) => warn!(agent = %r.agent_id, cause = %e, "registered agent id is not a token"),
            },
            _ => {}
        }
    }

    /// Publishes the reply (error replies with their headers, see the module docs).
    async fn answer(&self, mut request: service::Request, answer: &Answer) {
        if request.message.reply.is_none() {
            return;
        }
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::CONTENT_TYPE, headers::JSON);
        let reply = match answer {
            Answer::Appended(env, seq) => reply_ok(&env.id, *seq),
            Answer::Duplicate(id, seq) => reply_duplicate(id, *seq),
            Answer::Noop => reply_noop(),
            Answer::Error(e) => e.reply_body(),
        };
        let body = bytes::Bytes::from(reply.to_json());
        let Answer::Error(e) = answer else {
            if let Err(e) = request.respond_with_headers(Ok(body), hdrs).await {
                warn!(cause = %e, "could not publish a command reply");
            }
            return;
        };
        let status = e.code.status();
        hdrs.insert(headers::SERVICE_ERROR, e.message.as_str());
        hdrs.insert(headers::SERVICE_ERROR_CODE, status.to_string().as_str());
        let Some(reply_to) = request.message.reply.replace(self.discard.as_str().into()) else { return };
        if let Err(err) = self.bus.client.publish_with_headers(reply_to, hdrs, body).await {
            warn!(cause = %err, "could not publish a command error reply");
        }
        // Counts the error in the endpoint statistics; the empty message goes to the discard subject.
        let stats_error = service::error::Error { status: e.message.clone(), code: usize::from(status) };
        if let Err(err) = request.respond(Err(stats_error)).await {
            debug!(cause = %err, "could not record a command error in the service statistics");
        }
    }
}

/// The 503 of a bus failure.
fn unavailable(e: &BusError) -> CommandError {
    warn!(cause = %e, "event stream unavailable");
    CommandError { code: ErrorCode::Unavailable, message: format!("unavailable: {e}") }
}

/// A metric label from client input, kept to a bounded alphabet and length.
fn bounded_label(s: &str) -> &str {
    if !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') { s } else { "other" }
}

/// Unix milliseconds of the wall clock (0 if it is before 1970).
fn wall_clock_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

fn elapsed_us(started: tokio::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_from_input_are_bounded() {
        assert_eq!(bounded_label("dispatch_agent"), "dispatch_agent");
        assert_eq!(bounded_label("Dispatch"), "other");
        assert_eq!(bounded_label(&"x".repeat(41)), "other");
        assert_eq!(bounded_label(""), "other");
    }

    #[test]
    fn the_wall_clock_is_after_2020() {
        assert!(wall_clock_ms() > 1_577_836_800_000);
    }

    #[test]
    fn defaults_follow_the_constants() {
        let c = CommandsConfig::default();
        assert_eq!((c.append_retries, c.cache_towns), (COMMAND_APPEND_RETRIES, DEFAULT_CACHE_TOWNS));
    }
}
