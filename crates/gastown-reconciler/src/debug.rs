//! The debug service (ARCHITECTURE §3, §6 "Debug", §9.4; DOMAIN §D): the NATS micro service
//! `<prefix>-reconciler` with one endpoint on `<prefix>.debug.*.*` (town, then operation), so
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` answer for it. Every worker serves it in the same
//! queue group, and any worker answers for any town by folding it: the latest usable snapshot
//! plus the tail, read on an ephemeral, ordered, in-memory consumer filtered on
//! `<prefix>.evt.*.<town>` that is deleted before the reply goes out. Nothing is appended or
//! published; the only writes are the reply and, for an error, its mirror on the discard subject
//! (below).
//!
//! # Operations
//! - `status` (D1): fold to the stream head, the owner's last pass figures from KV
//!   `<prefix>-town-metrics/<town>`, [`gastown_core::debug::status`] at the responder's clock
//!   (raised to the town's clock, as a pass does).
//! - `dry-run` (D2): fold to the head, counting the events stored after the last `reconciled`
//!   event (a headers-only scan of the part a snapshot covers, when the tail holds no decision)
//!   and the events stored after the fold point (the ordered consumer's pending count), then
//!   [`gastown_core::debug::dry_run`].
//! - `replay` (D3): the base is the latest usable snapshot whose clock is before `from`
//!   ([`gastown_core::debug::replay_base_choice`], via
//!   [`SnapshotStore::load_latest`](crate::snapshots::SnapshotStore::load_latest)), then the
//!   events after it are fed to [`Replay`] one by one until the first one past `to`; the whole
//!   request (snapshot load, fold, reconcile) runs against `timeout_ms` and answers 413 when it
//!   runs out.
//!
//! # Errors
//! Replies `{"error": "<message>"}` with the headers `Nats-Service-Error-Code` (400, 404, 413,
//! 422, 503) and `Nats-Service-Error`. Checked in the order of D3: the request's 400s, then 503
//! `busy, retry` (the responder already runs [`DebugConfig::max_concurrent_folds`] folds: a full
//! responder answers at once, it never queues a fold), then 404 `unknown town: <id>`, then 422,
//! then 413. async-nats's `respond(Err(..))` publishes an empty body, so the error reply is
//! published here with its headers, and the endpoint statistics are kept right by answering the
//! same request with `Err` on [`discard_subject`], where nobody listens (as ingest does).
//!
//! # Compaction (422)
//! This codebase does not compact yet (ARCHITECTURE §9.4: off by default). A compaction job
//! records its purge point in KV `<prefix>-compaction/<town>` as [`CompactionPoint`] JSON; when
//! an entry is present, a replay whose base (the snapshot chosen, or the first event) lies
//! before it answers 422 naming the oldest kept event's time, and `status`/`dry-run` of a town
//! with no usable base answer 503 after an error log — never a wrong fold.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use gastown_bus::{Bus, BusError, ErrorKind, TownId, headers};
use gastown_core::codec::{Stored, decode_stored};
use gastown_core::debug::{
    DebugError, DryRunInputs, DryRunRequest, Fed, PassFigures, Replay, ReplayRequest, dry_run, effective_now, require_town,
    status,
};
use gastown_core::{Millis, TownState, apply_stored};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::ReconcilerError;
use crate::snapshots::SnapshotStore;

/// The endpoint's name in `$SRV.INFO`.
pub const ENDPOINT_NAME: &str = "debug";
/// The operations served, in the order of DOMAIN §D.
pub const OPERATIONS: [&str; 3] = ["status", "dry-run", "replay"];
/// KV bucket (under the prefix) where a compaction job records its purge point per town.
pub const COMPACTION_BUCKET: &str = "compaction";
/// The `Gastown-Event` value of a decision.
const RECONCILED: &str = "reconciled";
/// Longest wait for the next message of a town read (a live stream delivers in milliseconds).
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the debug service.
#[derive(Debug, Clone)]
pub struct DebugConfig {
    /// Folds running at once in this responder; a request beyond them answers 503 `busy,
    /// retry` at once. Each fold holds at most one ordered consumer at a time, so this also
    /// bounds the debug consumers this responder adds to the EVENTS stream. 0 refuses every
    /// fold (tests).
    pub max_concurrent_folds: usize,
    /// Budget of a `status` or `dry-run` fold (replay has its own `timeout_ms`); past it the
    /// request answers 503.
    pub fold_timeout: Duration,
}

impl Default for DebugConfig {
    /// 8 folds at once, 30 s per status/dry-run fold.
    fn default() -> Self {
        Self { max_concurrent_folds: 8, fold_timeout: Duration::from_secs(30) }
    }
}

/// A town's purge point, as a compaction job records it in KV `<prefix>-compaction/<town>`
/// (JSON; ARCHITECTURE §9.4): every event of the town stored below `purged_below` is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionPoint {
    /// The sequence the per-subject purge kept from: the town's events with a smaller sequence
    /// are purged.
    pub purged_below: u64,
    /// The time (`at`, unix ms) of the town's first kept event: 422 names it.
    pub oldest_event_at: Millis,
}

impl CompactionPoint {
    /// Whether a fold starting after `base_seq` (0 = from the first event) reads only kept
    /// events.
    #[must_use]
    pub fn covers(&self, base_seq: u64) -> bool {
        base_seq.saturating_add(1) >= self.purged_below
    }
}

/// The subject error replies are mirrored to for the endpoint statistics (see the module docs):
/// `_INBOX.<service>.discard`. Nobody subscribes to it; the server drops what is published there.
///
/// ## Warning
/// With per-role NATS permissions, the reconciler's user must be allowed to publish there (e.g.
/// `_INBOX.>`); otherwise only `$SRV.STATS` misses the error (the client still gets its reply).
#[must_use]
pub fn discard_subject(bus: &Bus) -> String {
    format!("_INBOX.{}.discard", bus.names.reconciler_service())
}

/// Splits `<prefix>.debug.<town>.<op>` into its town and operation (the op as sent).
fn parse_subject<'a>(prefix: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".debug.")?;
    let (town, op) = rest.split_once('.')?;
    (!op.contains('.')).then_some((town, op))
}

/// A request checked before any fold: the 400s and unknown operations are answered from here.
#[derive(Debug, Clone, Copy)]
enum Op {
    Status,
    DryRun(DryRunRequest),
    Replay(ReplayRequest),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Status => "status",
            Op::DryRun(_) => "dry-run",
            Op::Replay(_) => "replay",
        }
    }
}

/// Parses a request: town, operation and body.
fn parse_request(prefix: &str, subject: &str, body: &[u8]) -> Result<(TownId, Op), DebugError> {
    let Some((town, op)) = parse_subject(prefix, subject) else {
        return Err(DebugError { status: 404, message: format!("unknown debug subject: {subject}") });
    };
    let op = match op {
        "status" => Op::Status,
        "dry-run" => Op::DryRun(DryRunRequest::parse(body)?),
        "replay" => Op::Replay(ReplayRequest::parse(body)?),
        other => {
            return Err(DebugError {
                status: 404,
                message: format!("unknown operation: {other} (expected one of {})", OPERATIONS.join(", ")),
            });
        }
    };
    let town = TownId::try_from(town).map_err(|e| DebugError { status: 400, message: format!("invalid town id: {e}") })?;
    Ok((town, op))
}

/// Runs the debug service until `shutdown` is cancelled, then stops taking requests and waits for
/// the folds in hand (each bounded by its budget).
///
/// # Errors
/// The stores could not be opened, the service could not be started, or its subscription ended
/// while not shutting down (the connection was closed).
pub async fn run_debug(bus: Arc<Bus>, cfg: DebugConfig, shutdown: CancellationToken) -> Result<(), ReconcilerError> {
    let snapshots = SnapshotStore::open(&bus, crate::snapshots::DEFAULT_HISTORY).await?;
    let town_metrics = bus.kv(crate::TOWN_METRICS_BUCKET).await?;
    let compaction = bus.kv(COMPACTION_BUCKET).await?;
    let name = bus.names.reconciler_service();
    let service = bus
        .client
        .service_builder()
        .description("gastown debug service: status, dry-run and exact replay of any town (read only)")
        .start(&name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| ReconcilerError::Crashed(format!("start service {name}: {e}")))?;
    let subject = bus.names.debug_wildcard();
    let mut endpoint = service
        .endpoint_builder()
        .name(ENDPOINT_NAME)
        .add(&subject)
        .await
        .map_err(|e| ReconcilerError::Crashed(format!("add endpoint {subject}: {e}")))?;
    info!(service = %name, %subject, max_folds = cfg.max_concurrent_folds, "debug service started");

    let handler = Arc::new(Handler {
        discard: discard_subject(&bus),
        bus,
        snapshots,
        town_metrics,
        compaction,
        fold_timeout: cfg.fold_timeout,
    });
    let permits = Arc::new(Semaphore::new(cfg.max_concurrent_folds));
    let tracker = TaskTracker::new();
    let result = loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            r = endpoint.next() => match r {
                Some(r) => r,
                None => break Err(ReconcilerError::Crashed("debug subscription ended".into())),
            },
        };
        let subject = request.message.subject.to_string();
        let (town, op) = match parse_request(handler.bus.names.prefix(), &subject, &request.message.payload) {
            Ok(parsed) => parsed,
            Err(e) => {
                debug!(%subject, status = e.status, "debug request refused");
                handler.answer(request, Err(e)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            debug!(town = %town, op = op.name(), "debug folds all busy");
            handler.answer(request, Err(DebugError::busy())).await;
            continue;
        };
        let handler = Arc::clone(&handler);
        let span = info_span!("debug", town = %town, op = op.name());
        tracker.spawn(async move { handler.serve(request, town, op, permit).await }.instrument(span));
    };
    if let Err(e) = endpoint.stop().await {
        debug!(cause = %e, "stopping the debug endpoint");
    }
    if let Err(e) = service.stop().await {
        debug!(cause = %e, "stopping the debug service");
    }
    tracker.close();
    tracker.wait().await;
    info!("debug service stopped");
    result
}

/// What a request needs; shared by the request tasks.
struct Handler {
    bus: Arc<Bus>,
    snapshots: SnapshotStore,
    town_metrics: kv::Store,
    compaction: kv::Store,
    discard: String,
    fold_timeout: Duration,
}

/// A town folded to the stream head.
struct HeadFold {
    state: TownState,
    /// The snapshot the fold started from (0 = the first event).
    base_seq: u64,
    /// Events of the tail, in order, with their types (for the decision count).
    tail_types: Vec<Option<String>>,
    /// Events stored after the fold point when the last one was read.
    pending: u64,
}

impl Handler {
    /// Serves one request; never panics, always answers when there is a reply subject.
    async fn serve(&self, request: service::Request, town: TownId, op: Op, permit: OwnedSemaphorePermit) {
        let started = Instant::now();
        let reply = match op {
            Op::Status => self.status(&town).await.map(|r| r.to_vec()),
            Op::DryRun(req) => self.dry_run(&town, req).await.map(|r| r.to_vec()),
            Op::Replay(req) => self.replay(&town, req).await.map(|r| r.to_vec()),
        };
        drop(permit);
        let elapsed_ms = started.elapsed().as_millis();
        match &reply {
            Ok(body) => debug!(elapsed_ms, bytes = body.len(), "debug request answered"),
            Err(e) => debug!(elapsed_ms, status = e.status, message = %e.message, "debug request refused"),
        }
        self.answer(request, reply).await;
    }

    async fn status(&self, town: &TownId) -> Result<gastown_core::debug::StatusReply, DebugError> {
        let deadline = Instant::now() + self.fold_timeout;
        let fold = self.fold_to_head(town, deadline).await?;
        let state = require_town(&fold.state)?;
        let figures = self.figures(town).await;
        Ok(status(state, effective_now(state, wall_ms()), &figures))
    }

    async fn dry_run(&self, town: &TownId, req: DryRunRequest) -> Result<gastown_core::debug::DryRunReply, DebugError> {
        let deadline = Instant::now() + self.fold_timeout;
        let fold = self.fold_to_head(town, deadline).await?;
        require_town(&fold.state)?;
        let since_decision = match fold.tail_types.iter().rposition(|t| t.as_deref() == Some(RECONCILED)) {
            Some(i) => (fold.tail_types.len() - i - 1) as u64,
            None => {
                let prefix_after = self.scan_since_decision(town, fold.base_seq, deadline).await?;
                prefix_after + fold.tail_types.len() as u64
            }
        };
        let inputs = DryRunInputs { events_since_decision: since_decision, pending_event_count: fold.pending };
        Ok(dry_run(&fold.state, req.now.unwrap_or_else(wall_ms), inputs))
    }

    async fn replay(&self, town: &TownId, req: ReplayRequest) -> Result<gastown_core::debug::ReplayReply, DebugError> {
        let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
        let too_large = || DebugError::window_too_large(req.timeout_ms);
        let head = tokio::time::timeout_at(deadline, self.bus.town_last_seq(town)).await.map_err(|_| too_large())?;
        let head = head.map_err(|e| unavailable(town, &e))?;
        if head == 0 {
            return Err(DebugError::unknown_town(town.as_str()));
        }
        let base = tokio::time::timeout_at(deadline, self.load_base(town, Some(req.from))).await.map_err(|_| too_large())?;
        let base_seq = base.as_ref().map_or(0, |s| s.last_seq);
        if let Some(point) = self.compaction_point(town).await?
            && !point.covers(base_seq)
        {
            return Err(DebugError::before_retained_history(point.oldest_event_at));
        }
        let mut replay = Replay::new(base.unwrap_or_else(|| TownState::new(town.as_str())), req.from, req.to);
        if head > base_seq {
            let mut reader = TownReader::open(&self.bus, town, base_seq).await.map_err(|e| unavailable(town, &e))?;
            let read = async {
                loop {
                    let Some((seq, stored, pending)) = reader.next(deadline).await? else { return Ok(()) };
                    if replay.feed_stored(seq, &stored) == Fed::PastWindow || seq >= head || pending == 0 {
                        return Ok(());
                    }
                }
            }
            .await;
            reader.close().await;
            match read {
                Ok(()) => {}
                Err(ReadError::Deadline) => return Err(too_large()),
                Err(ReadError::Bus(e)) => return Err(unavailable(town, &e)),
            }
        }
        if Instant::now() >= deadline {
            return Err(too_large());
        }
        Ok(replay.finish())
    }

    /// Folds the town from its latest usable snapshot to the head known now.
    async fn fold_to_head(&self, town: &TownId, deadline: Instant) -> Result<HeadFold, DebugError> {
        let timed_out = || DebugError {
            status: 503,
            message: format!("unavailable: fold of town {town} did not finish within {} ms", self.fold_timeout.as_millis()),
        };
        let head = tokio::time::timeout_at(deadline, self.bus.town_last_seq(town)).await.map_err(|_| timed_out())?;
        let head = head.map_err(|e| unavailable(town, &e))?;
        if head == 0 {
            return Err(DebugError::unknown_town(town.as_str()));
        }
        let base = tokio::time::timeout_at(deadline, self.load_base(town, None)).await.map_err(|_| timed_out())?;
        let base_seq = base.as_ref().map_or(0, |s| s.last_seq);
        if let Some(point) = self.compaction_point(town).await?
            && !point.covers(base_seq)
        {
            error!(town = %town, base_seq, purged_below = point.purged_below, "town has no usable base: refusing to fold it");
            return Err(DebugError {
                status: 503,
                message: format!(
                    "town {town} has no usable base: its events before seq {} are purged and no readable snapshot covers them",
                    point.purged_below
                ),
            });
        }
        let mut fold = HeadFold {
            state: base.unwrap_or_else(|| TownState::new(town.as_str())),
            base_seq,
            tail_types: Vec::new(),
            pending: 0,
        };
        if head <= base_seq {
            return Ok(fold);
        }
        let mut reader = TownReader::open(&self.bus, town, base_seq).await.map_err(|e| unavailable(town, &e))?;
        let read = async {
            loop {
                let Some((seq, stored, pending)) = reader.next(deadline).await? else { return Ok(()) };
                if !fold.state.exists() || seq > fold.state.last_seq {
                    fold.tail_types.push(stored_type(&stored));
                    apply_stored(&mut fold.state, seq, &stored);
                }
                fold.pending = pending;
                if seq >= head || pending == 0 {
                    return Ok(());
                }
            }
        }
        .await;
        reader.close().await;
        match read {
            Ok(()) => Ok(fold),
            Err(ReadError::Deadline) => Err(timed_out()),
            Err(ReadError::Bus(e)) => Err(unavailable(town, &e)),
        }
    }

    /// Counts the town's events stored after its last decision among those up to `through`
    /// (all of them when there is no decision), reading headers only.
    async fn scan_since_decision(&self, town: &TownId, through: u64, deadline: Instant) -> Result<u64, DebugError> {
        if through == 0 {
            return Ok(0);
        }
        let mut reader = TownReader::open_headers(&self.bus, town).await.map_err(|e| unavailable(town, &e))?;
        let mut after = 0_u64;
        let read = async {
            while let Some((seq, kind, pending)) = reader.next_header(deadline).await? {
                if seq > through {
                    break;
                }
                if kind.as_deref() == Some(RECONCILED) {
                    after = 0;
                } else {
                    after += 1;
                }
                if seq >= through || pending == 0 {
                    break;
                }
            }
            Ok(())
        }
        .await;
        reader.close().await;
        match read {
            Ok(()) => Ok(after),
            Err(ReadError::Deadline) => Err(DebugError {
                status: 503,
                message: format!("unavailable: fold of town {town} did not finish within {} ms", self.fold_timeout.as_millis()),
            }),
            Err(ReadError::Bus(e)) => Err(unavailable(town, &e)),
        }
    }

    /// The latest usable snapshot (with `before`: whose clock is strictly before it); a store
    /// failure only means a longer fold.
    async fn load_base(&self, town: &TownId, before: Option<Millis>) -> Option<TownState> {
        match self.snapshots.load_latest(town, before).await {
            Ok(found) => found.map(|(entry, state)| {
                debug!(town = %town, seq = entry.seq, "debug fold from snapshot");
                state
            }),
            Err(e) => {
                warn!(town = %town, cause = %e, "snapshot not loaded for a debug fold; folding from the first event");
                None
            }
        }
    }

    /// The town's compaction purge point, when a compaction job recorded one.
    async fn compaction_point(&self, town: &TownId) -> Result<Option<CompactionPoint>, DebugError> {
        match self.compaction.get(town.as_str()).await {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => match serde_json::from_slice::<CompactionPoint>(&bytes) {
                Ok(p) => Ok(Some(p)),
                Err(e) => {
                    error!(town = %town, cause = %e, "compaction entry does not decode: refusing to fold the town");
                    Err(DebugError {
                        status: 503,
                        message: format!("unavailable: compaction entry of town {town} does not decode"),
                    })
                }
            },
            Err(e) => Err(unavailable(town, &BusError::from(e))),
        }
    }

    /// The owner's last pass figures (all null before any pass, or when unreadable).
    async fn figures(&self, town: &TownId) -> PassFigures {
        match self.town_metrics.get(town.as_str()).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(town = %town, cause = %e, "pass figures do not decode; shown as null");
                PassFigures::default()
            }),
            Ok(None) => PassFigures::default(),
            Err(e) => {
                warn!(town = %town, cause = %e, "pass figures not read; shown as null");
                PassFigures::default()
            }
        }
    }

    /// Publishes the reply: JSON with `Content-Type`, or an error with its headers (see the
    /// module docs).
    async fn answer(&self, mut request: service::Request, reply: Result<Vec<u8>, DebugError>) {
        if request.message.reply.is_none() {
            return;
        }
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::CONTENT_TYPE, headers::JSON);
        let e = match reply {
            Ok(body) => {
                if let Err(e) = request.respond_with_headers(Ok(Bytes::from(body)), hdrs).await {
                    warn!(cause = %e, "could not publish a debug reply");
                }
                return;
            }
            Err(e) => e,
        };
        hdrs.insert(headers::SERVICE_ERROR, e.message.as_str());
        hdrs.insert(headers::SERVICE_ERROR_CODE, e.status.to_string().as_str());
        let Some(reply_to) = request.message.reply.replace(self.discard.as_str().into()) else { return };
        if let Err(err) = self.bus.client.publish_with_headers(reply_to, hdrs, Bytes::from(e.to_vec())).await {
            warn!(cause = %err, "could not publish a debug error reply");
        }
        // Counts the error in the endpoint statistics; the empty message goes to the discard subject.
        let stats_error = service::error::Error { status: e.message.clone(), code: usize::from(e.status) };
        if let Err(err) = request.respond(Err(stats_error)).await {
            debug!(cause = %err, "could not record a debug error in the service statistics");
        }
    }
}

/// The event type of a stored message (`None` when it does not decode).
fn stored_type(stored: &Stored) -> Option<String> {
    match stored {
        Stored::Event(env) => Some(env.event_type().to_owned()),
        Stored::Malformed(raw) => Some(raw.event_type.clone()),
        Stored::Broken => None,
    }
}

/// The 503 of a bus failure.
fn unavailable(town: &TownId, e: &BusError) -> DebugError {
    warn!(town = %town, cause = %e, "events stream unavailable for a debug fold");
    DebugError { status: 503, message: format!("unavailable: {e}") }
}

/// Unix milliseconds now (the responder's clock).
fn wall_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

/// Why reading a town stopped early.
enum ReadError {
    /// The request's budget ran out.
    Deadline,
    /// The stream failed.
    Bus(BusError),
}

impl From<BusError> for ReadError {
    fn from(e: BusError) -> Self {
        ReadError::Bus(e)
    }
}

/// An incremental read of one town's events: an ordered consumer (ephemeral, in memory, one
/// replica) filtered on `<prefix>.evt.*.<town>`. [`TownReader::close`] deletes it; a reader
/// dropped without closing deletes it from a spawned task (the server also drops an idle ordered
/// consumer after 30 s).
struct TownReader {
    stream: async_nats::jetstream::stream::Stream<()>,
    name: String,
    messages: pull::Ordered,
    closed: bool,
}

impl TownReader {
    /// Events after `after_seq`, bodies included.
    async fn open(bus: &Bus, town: &TownId, after_seq: u64) -> Result<Self, BusError> {
        let deliver_policy = if after_seq == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: after_seq.saturating_add(1) }
        };
        Self::create(bus, town, deliver_policy, false).await
    }

    /// Every event of the town, headers only.
    async fn open_headers(bus: &Bus, town: &TownId) -> Result<Self, BusError> {
        Self::create(bus, town, DeliverPolicy::All, true).await
    }

    async fn create(bus: &Bus, town: &TownId, deliver_policy: DeliverPolicy, headers_only: bool) -> Result<Self, BusError> {
        let stream = bus.js.get_stream_no_info(bus.names.events_stream()).await.map_err(BusError::from)?;
        let config = pull::OrderedConfig {
            filter_subject: bus.names.evt_town_filter(town),
            deliver_policy,
            headers_only,
            description: Some("gastown debug fold (ordered, in memory, deleted after use)".to_owned()),
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| {
            let e = BusError::from(e);
            BusError::with_source(e.kind(), format!("read town {town}"), e)
        })?;
        let name = consumer.cached_info().name.clone();
        match consumer.messages().await {
            Ok(messages) => Ok(Self { stream, name, messages, closed: false }),
            Err(e) => {
                if let Err(del) = stream.delete_consumer(&name).await {
                    debug!(town = %town, cause = %del, "debug consumer not deleted");
                }
                Err(BusError::with_source(ErrorKind::Unavailable, format!("read town {town}"), e))
            }
        }
    }

    /// The next message (`None` when delivery ended), before `deadline`.
    async fn next_message(&mut self, deadline: Instant) -> Result<Option<async_nats::jetstream::Message>, ReadError> {
        let idle = Instant::now() + READ_IDLE_TIMEOUT;
        let next = match tokio::time::timeout_at(deadline.min(idle), self.messages.next()).await {
            Ok(next) => next,
            Err(_) if deadline <= idle => return Err(ReadError::Deadline),
            Err(_) => {
                return Err(ReadError::Bus(BusError::new(
                    ErrorKind::Unavailable,
                    "no event delivered within 10 s (stream leader unavailable?)",
                )));
            }
        };
        match next {
            None => Ok(None),
            Some(Ok(msg)) => Ok(Some(msg)),
            Some(Err(e)) => Err(ReadError::Bus(BusError::with_source(ErrorKind::Unavailable, "read town events", e))),
        }
    }

    /// The next event: `(seq, decoded, events stored after it)`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<(u64, Stored, u64)>, ReadError> {
        let Some(msg) = self.next_message(deadline).await? else { return Ok(None) };
        let info = msg.info().map_err(|e| BusError::with_source(ErrorKind::Other, "read message metadata", e))?;
        Ok(Some((info.stream_sequence, decode_stored(&msg.payload), info.pending)))
    }

    /// The next event's sequence, `Gastown-Event` header and the events stored after it
    /// (headers-only read).
    async fn next_header(&mut self, deadline: Instant) -> Result<Option<(u64, Option<String>, u64)>, ReadError> {
        let Some(msg) = self.next_message(deadline).await? else { return Ok(None) };
        let info = msg.info().map_err(|e| BusError::with_source(ErrorKind::Other, "read message metadata", e))?;
        let seq = info.stream_sequence;
        let kind = msg.headers.as_ref().and_then(|h| h.get(headers::GASTOWN_EVENT)).map(|v| v.as_str().to_owned());
        Ok(Some((seq, kind, info.pending)))
    }

    /// Deletes the consumer (its slot counts toward the stream's consumer limit).
    async fn close(mut self) {
        self.closed = true;
        if let Err(e) = self.stream.delete_consumer(&self.name).await {
            debug!(consumer = %self.name, cause = %e, "debug consumer not deleted");
        }
    }
}

impl Drop for TownReader {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let (stream, name) = (self.stream.clone(), std::mem::take(&mut self.name));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    debug!(consumer = %name, cause = %e, "debug consumer not deleted");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_split_into_town_and_operation() {
        assert_eq!(parse_subject("gastown", "gastown.debug.t1.status"), Some(("t1", "status")));
        assert_eq!(parse_subject("gastown", "gastown.debug.t1.dry-run"), Some(("t1", "dry-run")));
        assert_eq!(parse_subject("gastown", "gastown.debug.t1.a.b"), None);
        assert_eq!(parse_subject("gastown", "other.debug.t1.status"), None);
    }

    #[test]
    fn requests_are_checked_before_any_fold() {
        let err = |subject: &str, body: &str| parse_request("gastown", subject, body.as_bytes()).unwrap_err();
        assert_eq!(err("gastown.debug.t1.replay", "{}").message, "Missing required fields: from, to (ISO timestamps)");
        assert_eq!(err("gastown.debug.t1.dry-run", r#"{"now":"x"}"#).message, "Invalid date format. Use ISO 8601 timestamps.");
        assert_eq!(err("gastown.debug.t1.explode", "").status, 404);
        assert!(matches!(parse_request("gastown", "gastown.debug.t1.status", b"ignored"), Ok((_, Op::Status))));
    }

    #[test]
    fn a_compaction_point_covers_bases_at_or_after_its_last_purged_event() {
        let p = CompactionPoint { purged_below: 10, oldest_event_at: 0 };
        assert!(!p.covers(0));
        assert!(!p.covers(8));
        assert!(p.covers(9));
        assert!(p.covers(20));
        assert!(CompactionPoint { purged_below: 0, oldest_event_at: 0 }.covers(0));
    }
}
