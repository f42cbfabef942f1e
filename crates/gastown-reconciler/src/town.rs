//! A town's runner (ARCHITECTURE §6, DOMAIN R0.4–R0.5): the folded state, the settle of passes,
//! the fenced decision append, the side effects after commit and the per-town figures.
//!
//! One runner per owned town; the queue ([`crate::scheduler`]) guarantees that at most one pass of
//! a town runs at a time, so the runner is owned by whichever task runs its pass (no lock).
//!
//! # A pass
//! 1. publish what an earlier pass could not (the outbox in memory);
//! 2. fold the new events of the town (read from the stream, so the fold has no gaps even when
//!    the partition's deliveries went to another worker for a while);
//! 3. settle: `now = max(wall clock, clock)`, `reconcile`, and for a non-empty decision a fenced
//!    append with id `<town>:d:<base_seq>:<now>`; a refusal (`Conflict`, or a `duplicate` whose
//!    stored event is not ours, E1) folds the newcomers and decides again; after the append the
//!    decision is folded, its published actions are sent with ids `<town>:<seq>:<index>` and
//!    `published_through` is written to KV `<prefix>-outbox`; repeated until a pass decides
//!    nothing, at most `settle_max_passes` non-truncated passes (R0.4);
//! 4. once settled, the invariants are checked and reported (I0/I1);
//! 5. the pass figures go to KV `<prefix>-town-metrics` (§M3), a snapshot is written when due,
//!    and the next wake-up is `next_wakeup(state, now)`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use bytes::Bytes;
use gastown_bus::{Bus, BusError, ErrorKind, TownId};
use gastown_core::action::ActionMessage;
use gastown_core::codec::Stored;
use gastown_core::debug::{OrderedCounts, PassFigures};
use gastown_core::event::{Reconciled, source};
use gastown_core::invariant::Reporter;
use gastown_core::{Envelope, Event, Millis, TownState, apply, apply_stored, next_wakeup, reconcile};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::metrics::ReconcilerMetrics;
use crate::snapshots::SnapshotStore;

/// Refused appends tolerated in one pass before the town is rescheduled (others keep writing).
const MAX_CONFLICTS_PER_PASS: u32 = 32;
/// Publish attempts of one action message within a pass.
const PUBLISH_ATTEMPTS: u32 = 3;
/// Pause between publish attempts.
const PUBLISH_RETRY: Duration = Duration::from_millis(100);
/// How soon a pass that gave up (conflicts, an unpublished outbox) runs again.
const RETRY_SOON: Duration = Duration::from_millis(200);

/// What every pass of this worker shares.
pub(crate) struct PassContext {
    pub(crate) bus: Arc<Bus>,
    /// KV `<prefix>-outbox`: `published_through` per town.
    pub(crate) outbox: kv::Store,
    /// KV `<prefix>-town-metrics`: the last pass figures per town.
    pub(crate) town_metrics: kv::Store,
    pub(crate) snapshots: Option<Arc<SnapshotStore>>,
    pub(crate) metrics: Arc<ReconcilerMetrics>,
    /// The I1 memory of violation keys of every town this worker owns.
    pub(crate) reporter: Mutex<Reporter>,
    pub(crate) worker_id: String,
    pub(crate) settle_max_passes: usize,
    pub(crate) invariant_report_interval: Duration,
    pub(crate) snapshot_every_events: u64,
    pub(crate) snapshot_every: Duration,
}

/// How a pass ended, for the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassOutcome {
    /// The town is settled (or exhausted its settle): wake it at this instant (unix ms), if any.
    Done(Option<Millis>),
    /// Others kept writing, or the outbox could not be flushed: run again soon.
    RetrySoon,
    /// The bus did not answer: back off.
    Unavailable,
}

/// The figures one pass accumulates (§M1).
#[derive(Debug, Default)]
struct Tally {
    events_drained: u64,
    actions: OrderedCounts,
    actions_emitted: u64,
    published: u64,
    results_ok: u64,
    results_failed: u64,
    new_violations: u64,
}

/// One owned town.
pub(crate) struct TownRunner {
    pub(crate) town: TownId,
    pub(crate) state: TownState,
    /// Every decision at or before this sequence that this worker must publish is published.
    pub(crate) published_through: u64,
    /// Stored decisions whose actions are not all published yet, oldest first.
    outbox: VecDeque<(u64, VecDeque<ActionMessage>)>,
    /// Events may be stored beyond `state.last_seq`: fold the tail before deciding.
    stale: bool,
    /// Ids of our own decisions whose append got no answer: if the fold finds one stored, it is
    /// ours to publish.
    uncertain: Vec<String>,
    /// Events folded since the previous pass (own decisions excluded), for the figures.
    drained: u64,
    results_ok: u64,
    results_failed: u64,
    events_since_snapshot: u64,
    last_snapshot: Instant,
}

/// Unix milliseconds now.
pub(crate) fn wall_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

/// The decision id of R0.5 / E1.
pub(crate) fn decision_id(town: &TownId, base_seq: u64, now: Millis) -> String {
    format!("{town}:d:{base_seq}:{now}")
}

impl TownRunner {
    /// An empty town (no snapshot, nothing folded).
    pub(crate) fn empty(town: TownId) -> Self {
        let state = TownState::new(town.as_str());
        Self {
            town,
            state,
            published_through: 0,
            outbox: VecDeque::new(),
            stale: true,
            uncertain: Vec::new(),
            drained: 0,
            results_ok: 0,
            results_failed: 0,
            events_since_snapshot: 0,
            last_snapshot: Instant::now(),
        }
    }

    /// Takes a town over (ARCHITECTURE §9.3): the latest usable snapshot (or empty), the tail
    /// folded, and every decision after `published_through` queued for re-publication
    /// (byte-identical: same state, same ids). Publishing happens in the first pass.
    ///
    /// # Errors
    /// The bus did not answer (the snapshot store failing only means a longer fold).
    pub(crate) async fn load(ctx: &PassContext, town: TownId) -> Result<Self, BusError> {
        let mut runner = Self::empty(town.clone());
        let mut snapshot_pt = 0;
        if let Some(store) = &ctx.snapshots {
            match store.load_latest(&town, None).await {
                Ok(Some((entry, state))) => {
                    debug!(town = %town, seq = entry.seq, "snapshot loaded");
                    snapshot_pt = entry.published_through;
                    runner.state = state;
                }
                Ok(None) => {}
                Err(err) => {
                    ReconcilerMetrics::inc(&ctx.metrics.snapshot_errors);
                    warn!(town = %town, cause = %err, "snapshot not loaded, folding from the first event");
                }
            }
        }
        let kv_pt = read_published_through(&ctx.outbox, &town).await?;
        runner.published_through = kv_pt.max(snapshot_pt);
        let events = ctx.bus.town_events(&town, runner.state.last_seq).await?;
        let after = runner.published_through;
        let pending = runner.fold(ctx, events, |seq, _| seq > after);
        let n = pending.len();
        runner.outbox.extend(pending);
        if n > 0 {
            ReconcilerMetrics::add(&ctx.metrics.republished_decisions, n as u64);
            info!(town = %town, decisions = n, published_through = after, "re-publishing decisions after takeover");
        }
        runner.stale = false;
        runner.events_since_snapshot = runner.drained;
        Ok(runner)
    }

    /// New events were delivered for this town: fold them at the next pass.
    pub(crate) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Folds stored events (those at or before `last_seq` are skipped), counting them for the
    /// figures, and returns the action messages of the folded decisions `collect` selects (or that
    /// are our own uncertain appends), each computed from the state right after its decision.
    fn fold(
        &mut self,
        ctx: &PassContext,
        events: Vec<(u64, Stored)>,
        collect: impl Fn(u64, &str) -> bool,
    ) -> Vec<(u64, VecDeque<ActionMessage>)> {
        let mut out = Vec::new();
        for (seq, stored) in events {
            if seq <= self.state.last_seq {
                continue;
            }
            self.drained += 1;
            self.events_since_snapshot += 1;
            ReconcilerMetrics::inc(&ctx.metrics.events_folded);
            match &stored {
                Stored::Event(env) => match &env.event {
                    Event::Unknown { event_type } => {
                        ReconcilerMetrics::inc(&ctx.metrics.unknown_events);
                        warn!(town = %self.town, seq, event_type = %event_type, "unknown event type folded as a no-op");
                    }
                    Event::ActionResult(r) => {
                        if r.ok {
                            self.results_ok += 1;
                        } else {
                            self.results_failed += 1;
                        }
                    }
                    _ => {}
                },
                Stored::Malformed(raw) => {
                    ReconcilerMetrics::inc(&ctx.metrics.unknown_events);
                    warn!(town = %self.town, seq, event_type = %raw.event_type, "undecodable event folded as a no-op");
                }
                Stored::Broken => {
                    ReconcilerMetrics::inc(&ctx.metrics.unknown_events);
                    warn!(town = %self.town, seq, "broken event bytes folded as a no-op");
                }
            }
            apply_stored(&mut self.state, seq, &stored);
            if let Stored::Event(env) = &stored
                && let Event::Reconciled(r) = &env.event
            {
                let own = self.uncertain.contains(&env.id);
                if own || collect(seq, &env.id) {
                    if own {
                        info!(town = %self.town, seq, "own decision found stored after a lost answer");
                    }
                    let msgs = ActionMessage::for_decision(self.town.as_str(), seq, r.at, &r.actions, &self.state);
                    out.push((seq, msgs.into()));
                }
            }
        }
        self.uncertain.clear();
        out
    }

    /// Folds the town's events after `last_seq` from the stream.
    async fn refold(&mut self, ctx: &PassContext) -> Result<(), BusError> {
        let events = ctx.bus.town_events(&self.town, self.state.last_seq).await?;
        let pending = self.fold(ctx, events, |_, _| false);
        self.outbox.extend(pending);
        self.stale = false;
        Ok(())
    }

    /// Runs one pass (the module docs say what it does).
    pub(crate) async fn pass(&mut self, ctx: &PassContext) -> PassOutcome {
        let span = info_span!("pass", town = %self.town, seq = self.state.last_seq);
        self.pass_inner(ctx).instrument(span).await
    }

    async fn pass_inner(&mut self, ctx: &PassContext) -> PassOutcome {
        let started = Instant::now();
        let mut tally = Tally::default();
        if let Err(err) = self.flush(ctx, &mut tally).await {
            return self.failed(ctx, started, &err);
        }
        if self.stale
            && let Err(err) = self.refold(ctx).await
        {
            return self.failed(ctx, started, &err);
        }
        let mut counted = 0_usize;
        let mut conflicts = 0_u32;
        let mut now: Millis;
        let settled = loop {
            now = wall_ms().max(self.state.clock);
            let decision = reconcile(&self.state, now);
            ReconcilerMetrics::add(&ctx.metrics.landing_suppressed, u64::from(decision.landing_suppressed));
            if decision.is_empty() {
                ctx.metrics.passes.add(&["idle"], 1);
                break true;
            }
            if decision.truncated {
                ReconcilerMetrics::inc(&ctx.metrics.passes_truncated);
            } else {
                if counted >= ctx.settle_max_passes {
                    ReconcilerMetrics::inc(&ctx.metrics.settle_exhausted);
                    error!(town = %self.town, seq = self.state.last_seq, passes = counted, "settle exhausted: passes keep deciding");
                    break false;
                }
                counted += 1;
            }
            match self.decide(ctx, now, decision.actions, &mut tally).await {
                Ok(true) => ctx.metrics.passes.add(&["decided"], 1),
                Ok(false) => {
                    ctx.metrics.passes.add(&["conflict"], 1);
                    ReconcilerMetrics::inc(&ctx.metrics.decision_conflicts);
                    conflicts += 1;
                    if !decision.truncated {
                        counted = counted.saturating_sub(1);
                    }
                    if conflicts >= MAX_CONFLICTS_PER_PASS {
                        warn!(town = %self.town, conflicts, "decisions keep being refused, trying again soon");
                        self.stale = true;
                        self.finish(ctx, started, now, tally, false).await;
                        return PassOutcome::RetrySoon;
                    }
                }
                Err(err) => {
                    ctx.metrics.passes.add(&["error"], 1);
                    return self.failed(ctx, started, &err);
                }
            }
        };
        self.finish(ctx, started, now, tally, settled).await;
        if !self.outbox.is_empty() {
            return PassOutcome::RetrySoon;
        }
        PassOutcome::Done(next_wakeup(&self.state, now))
    }

    /// Appends one decision, fenced on the last folded sequence, then folds and publishes it.
    /// `Ok(false)`: refused (the newcomers are folded; decide again).
    async fn decide(
        &mut self,
        ctx: &PassContext,
        now: Millis,
        actions: Vec<gastown_core::Action>,
        tally: &mut Tally,
    ) -> Result<bool, BusError> {
        let base_seq = self.state.last_seq;
        let env = Envelope::new(
            decision_id(&self.town, base_seq, now),
            now,
            source::RECONCILER,
            Reconciled { at: now, base_seq, actions },
        );
        let appended = match ctx.bus.append_event(&self.town, &env, Some(base_seq), None).await {
            Ok(a) => a,
            Err(err) if err.kind() == ErrorKind::Conflict => {
                debug!(town = %self.town, seq = base_seq, "decision refused by the fence, folding the newcomers");
                self.refold(ctx).await?;
                return Ok(false);
            }
            Err(err) => {
                // The append may have been stored with its answer lost: if a later fold finds it,
                // it is ours to publish.
                self.uncertain.push(env.id.clone());
                self.stale = true;
                return Err(err);
            }
        };
        let Event::Reconciled(decision) = &env.event else {
            return Ok(false);
        };
        if appended.duplicate {
            let ours = match ctx.bus.event_at(appended.seq).await? {
                Stored::Event(stored) => stored.id == env.id && stored.event == env.event,
                _ => false,
            };
            if !ours {
                debug!(town = %self.town, seq = appended.seq, "decision answered as a duplicate of another event: refused");
                self.refold(ctx).await?;
                return Ok(false);
            }
            // Ours, stored by an earlier attempt: fold up to it (and anything after) and publish it.
            self.uncertain.push(env.id.clone());
            self.record_decision(ctx, &decision.actions, tally);
            self.refold(ctx).await?;
            self.flush(ctx, tally).await?;
            return Ok(true);
        }
        // The fence held: the decision is the town's next event.
        apply(&mut self.state, appended.seq, &env);
        self.events_since_snapshot += 1;
        self.record_decision(ctx, &decision.actions, tally);
        debug!(town = %self.town, seq = appended.seq, actions = decision.actions.len(), "decision stored");
        let msgs = ActionMessage::for_decision(self.town.as_str(), appended.seq, now, &decision.actions, &self.state);
        self.outbox.push_back((appended.seq, msgs.into()));
        self.flush(ctx, tally).await?;
        Ok(true)
    }

    fn record_decision(&self, ctx: &PassContext, actions: &[gastown_core::Action], tally: &mut Tally) {
        for a in actions {
            ctx.metrics.actions.add(&[a.action_type()], 1);
            tally.actions.add(a.action_type(), 1);
        }
        tally.actions_emitted += actions.len() as u64;
    }

    /// Publishes the outbox in order; after each decision's last message, records its sequence
    /// as `published_through` in KV (a failed KV write only means a re-publication later).
    async fn flush(&mut self, ctx: &PassContext, tally: &mut Tally) -> Result<(), BusError> {
        while let Some((seq, msgs)) = self.outbox.front_mut() {
            let seq = *seq;
            let had_messages = !msgs.is_empty();
            while let Some(msg) = msgs.front() {
                publish_with_retry(ctx, msg).await?;
                ctx.metrics.side_effects_published.add(&[msg.action_type.as_str()], 1);
                tally.published += 1;
                debug!(town = %self.town, action_id = %msg.action_id, "action published");
                msgs.pop_front();
            }
            self.outbox.pop_front();
            self.published_through = self.published_through.max(seq);
            if had_messages && let Err(err) = ctx.outbox.put(self.town.as_str(), Bytes::from(seq.to_string())).await {
                warn!(town = %self.town, seq, cause = %err, "published_through not recorded");
            }
        }
        Ok(())
    }

    /// After a failed step: count it, mark the town stale, say how to retry.
    fn failed(&mut self, ctx: &PassContext, started: Instant, err: &BusError) -> PassOutcome {
        self.stale = true;
        ctx.metrics.pass_duration_us.record(elapsed_us(started));
        match err.kind() {
            ErrorKind::Unavailable | ErrorKind::Other | ErrorKind::Conflict => {
                warn!(town = %self.town, cause = %err, "pass interrupted, backing off");
                PassOutcome::Unavailable
            }
            _ => {
                error!(town = %self.town, cause = %err, "pass failed");
                PassOutcome::Unavailable
            }
        }
    }

    /// The end of a pass: invariants (when settled), figures, snapshot.
    async fn finish(&mut self, ctx: &PassContext, started: Instant, now: Millis, mut tally: Tally, settled: bool) {
        if settled {
            tally.new_violations = self.check_invariants(ctx, now);
        }
        tally.events_drained = std::mem::take(&mut self.drained);
        tally.results_ok = std::mem::take(&mut self.results_ok);
        tally.results_failed = std::mem::take(&mut self.results_failed);
        ctx.metrics.pass_events.record(tally.events_drained);
        let pending = match ctx.bus.town_last_seq(&self.town).await {
            Ok(last) => {
                let pending = last.saturating_sub(self.state.last_seq);
                if pending > 0 {
                    self.stale = true;
                }
                ReconcilerMetrics::set(&ctx.metrics.pending_events, pending);
                Some(pending)
            }
            Err(_) => None,
        };
        let wall = elapsed_us(started);
        ctx.metrics.pass_duration_us.record(wall);
        let figures = PassFigures {
            owner_worker: Some(ctx.worker_id.clone()),
            wall_clock_ms: Some(wall / 1000),
            events_drained: Some(tally.events_drained),
            actions_emitted: Some(tally.actions_emitted),
            actions_by_type: Some(tally.actions),
            side_effects_attempted: Some(tally.published),
            side_effects_succeeded: Some(tally.results_ok),
            side_effects_failed: Some(tally.results_failed),
            invariant_violations: Some(tally.new_violations),
            pending_event_count: pending,
        };
        match serde_json::to_vec(&figures) {
            Ok(body) => {
                if let Err(err) = ctx.town_metrics.put(self.town.as_str(), body.into()).await {
                    debug!(town = %self.town, cause = %err, "pass figures not written");
                }
            }
            Err(err) => debug!(town = %self.town, cause = %err, "pass figures not encoded"),
        }
        let due = self.events_since_snapshot >= ctx.snapshot_every_events.max(1)
            || (self.events_since_snapshot > 0 && self.last_snapshot.elapsed() >= ctx.snapshot_every);
        if due {
            self.snapshot(ctx).await;
        }
    }

    /// Checks the invariants on the settled state and reports them (I0/I1); returns the number of
    /// new violation keys.
    fn check_invariants(&self, ctx: &PassContext, now: Millis) -> u64 {
        let violations = gastown_core::invariant::check(&self.state, now);
        let interval = Millis::try_from(ctx.invariant_report_interval.as_millis()).unwrap_or(Millis::MAX);
        let (batch, active) = {
            let mut reporter = ctx.reporter.lock().unwrap_or_else(PoisonError::into_inner);
            let batch = reporter.observe(self.town.as_str(), self.state.last_seq, now, &violations, interval);
            (batch, reporter.active_all())
        };
        for report in batch.new_keys.iter().chain(batch.repeats.iter()) {
            error!(
                town = %self.town,
                seq = self.state.last_seq,
                invariant = report.key.invariant,
                entity = %report.key.entity,
                "{}",
                report.message
            );
        }
        for report in &batch.new_keys {
            ctx.metrics.invariant_violations.add(&[report.key.invariant.to_string().as_str()], 1);
        }
        for key in &batch.resolved {
            info!(town = %self.town, entity = %key.entity, "{}", key.resolved_message());
        }
        for (n, count) in active {
            ctx.metrics.invariant_active.set(&[n.to_string().as_str()], u64::from(count));
        }
        batch.new_keys.len() as u64
    }

    /// Writes a snapshot when the town exists and everything it decided is published.
    pub(crate) async fn snapshot(&mut self, ctx: &PassContext) {
        let Some(store) = &ctx.snapshots else {
            return;
        };
        if !self.state.exists() || !self.outbox.is_empty() || self.events_since_snapshot == 0 {
            return;
        }
        // Everything this worker decided up to last_seq is published; decisions of others are
        // theirs to publish.
        let published_through = self.state.last_seq;
        match store.save(&self.town, &self.state, published_through).await {
            Ok(entry) => {
                ReconcilerMetrics::inc(&ctx.metrics.snapshots_saved);
                debug!(town = %self.town, seq = entry.seq, "snapshot written");
                self.events_since_snapshot = 0;
                self.last_snapshot = Instant::now();
            }
            Err(err) => {
                ReconcilerMetrics::inc(&ctx.metrics.snapshot_errors);
                warn!(town = %self.town, cause = %err, "snapshot not written");
            }
        }
    }

    /// At shutdown: publish what is outstanding, then snapshot.
    pub(crate) async fn shutdown(&mut self, ctx: &PassContext) {
        let mut tally = Tally::default();
        if let Err(err) = self.flush(ctx, &mut tally).await {
            warn!(town = %self.town, cause = %err, "outstanding actions not published at shutdown");
            return;
        }
        self.snapshot(ctx).await;
    }

    /// How soon to run again after [`PassOutcome::RetrySoon`].
    pub(crate) fn retry_soon() -> Duration {
        RETRY_SOON
    }
}

/// Publishes one action message, retrying a few times while the bus does not answer.
async fn publish_with_retry(ctx: &PassContext, msg: &ActionMessage) -> Result<(), BusError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ctx.bus.publish_action(msg, None).await {
            Ok(_) => return Ok(()),
            Err(err) => {
                ReconcilerMetrics::inc(&ctx.metrics.publish_errors);
                if attempt >= PUBLISH_ATTEMPTS || !matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Other) {
                    warn!(town = %msg.town, action_id = %msg.action_id, cause = %err, "action not published");
                    return Err(err);
                }
                tokio::time::sleep(PUBLISH_RETRY).await;
            }
        }
    }
}

/// Reads `published_through` of a town from KV `<prefix>-outbox` (0 when absent or unreadable
/// as a number: re-publishing is harmless).
async fn read_published_through(outbox: &kv::Store, town: &TownId) -> Result<u64, BusError> {
    let entry = outbox
        .get(town.as_str())
        .await
        .map_err(|e| BusError::with_source(ErrorKind::Unavailable, format!("read published_through of {town}"), e))?;
    Ok(entry.and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.trim().parse::<u64>().ok())).unwrap_or(0))
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::collections::{BTreeMap, BTreeSet};
    use std::future::Future;

    use gastown_bus::BusConfig;
    use gastown_core::testing::{Ev, bead_created, rig_added};
    use gastown_testkit::TestServer;

    use super::*;

    async fn within<T>(secs: u64, fault: &str, fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(secs), fut).await.unwrap_or_else(|_| panic!("timed out after {secs} s: {fault}"))
    }

    async fn context(url: &str, worker: &str, snapshot_every_events: u64) -> PassContext {
        let bus = within(10, "connect", Bus::connect(url, BusConfig { partitions: 8, ..BusConfig::default() })).await.unwrap();
        within(20, "ensure streams", bus.ensure_streams()).await.unwrap();
        let outbox = bus.kv(crate::OUTBOX_BUCKET).await.unwrap();
        let town_metrics = bus.kv(crate::TOWN_METRICS_BUCKET).await.unwrap();
        let snapshots = SnapshotStore::open(&bus, 8).await.unwrap();
        PassContext {
            bus: Arc::new(bus),
            outbox,
            town_metrics,
            snapshots: Some(Arc::new(snapshots)),
            metrics: Arc::new(ReconcilerMetrics::default()),
            reporter: Mutex::new(Reporter::new()),
            worker_id: worker.to_owned(),
            settle_max_passes: 10,
            invariant_report_interval: Duration::from_secs(3600),
            snapshot_every_events,
            snapshot_every: Duration::from_secs(600),
        }
    }

    fn town() -> TownId {
        TownId::try_from("t1").unwrap()
    }

    async fn append(ctx: &PassContext, id: &str, e: Ev) -> u64 {
        let env = Envelope::new(format!("t1:e:{id}"), e.at.unwrap_or_else(wall_ms), e.source, e.event);
        within(5, "append", ctx.bus.append_event(&town(), &env, None, None)).await.unwrap().seq
    }

    /// Every stored action message of town t1, by its `Nats-Msg-Id`.
    async fn actions(ctx: &PassContext) -> BTreeMap<String, ActionMessage> {
        let stream = ctx.bus.js.get_stream(ctx.bus.names.actions_stream()).await.unwrap();
        let last = stream.cached_info().state.last_sequence;
        let mut out = BTreeMap::new();
        for seq in 1..=last {
            let Ok(m) = stream.get_raw_message(seq).await else { continue };
            let id = m.headers.get(gastown_bus::headers::NATS_MSG_ID).unwrap().as_str().to_owned();
            let msg: ActionMessage = gastown_core::codec::from_msgpack(&m.payload).unwrap();
            assert!(out.insert(id, msg).is_none(), "one action message per id");
        }
        out
    }

    #[tokio::test]
    async fn racing_runners_never_store_two_decisions_on_one_base() {
        let server = within(120, "nats-server did not start", TestServer::start()).await.unwrap();
        let a = context(&server.url(), "wa", 1000).await;
        let b = context(&server.url(), "wb", 1000).await;
        append(&a, "rig", rig_added("r1")).await;
        let mut ra = TownRunner::empty(town());
        let mut rb = TownRunner::empty(town());
        for round in 0..6 {
            append(&a, &format!("b{round}"), bead_created(&format!("b{round}"), "r1")).await;
            ra.mark_stale();
            rb.mark_stale();
            let (oa, ob) = within(20, "racing passes", async { tokio::join!(ra.pass(&a), rb.pass(&b)) }).await;
            assert!(matches!(oa, PassOutcome::Done(_) | PassOutcome::RetrySoon), "{oa:?}");
            assert!(matches!(ob, PassOutcome::Done(_) | PassOutcome::RetrySoon), "{ob:?}");
        }
        let conflicts =
            ReconcilerMetrics::read(&a.metrics.decision_conflicts) + ReconcilerMetrics::read(&b.metrics.decision_conflicts);
        assert!(conflicts > 0, "two runners deciding on the same base must see refusals");

        let events = a.bus.town_events(&town(), 0).await.unwrap();
        let mut prev = 0;
        let mut bases = BTreeSet::new();
        let mut decisions = BTreeMap::new();
        for (seq, stored) in &events {
            if let Stored::Event(env) = stored
                && let Event::Reconciled(r) = &env.event
            {
                assert_eq!(r.base_seq, prev, "decision {seq} decided on {} but the event before it is {prev}", r.base_seq);
                assert!(bases.insert(r.base_seq), "two decisions on base {}", r.base_seq);
                decisions.insert(*seq, r.clone());
            }
            prev = *seq;
        }
        assert!(!decisions.is_empty());
        let published = actions(&a).await;
        assert!(!published.is_empty());
        for (id, msg) in &published {
            assert_eq!(id, &format!("t1:{}:{}", msg.decision_seq, msg.index));
            let d = decisions.get(&msg.decision_seq).unwrap_or_else(|| panic!("action {id} without a stored decision"));
            let action = d.actions.get(msg.index as usize).unwrap();
            assert_eq!(action.action_type(), msg.action_type);
        }
        // Every published action of every decision went out.
        for (seq, d) in &decisions {
            for (i, action) in d.actions.iter().enumerate().filter(|(_, a)| a.is_published()) {
                assert!(
                    published.contains_key(&format!("t1:{seq}:{i}")),
                    "{} of decision {seq} not published",
                    action.action_type()
                );
            }
        }
        assert_eq!(ra.state, rb.state, "both runners folded the same history");
    }

    #[tokio::test]
    async fn a_runner_loaded_from_a_snapshot_reaches_the_full_folds_state() {
        let server = within(120, "nats-server did not start", TestServer::start()).await.unwrap();
        let ctx = context(&server.url(), "w1", 3).await;
        append(&ctx, "rig", rig_added("r1")).await;
        let mut r = TownRunner::empty(town());
        for i in 0..5 {
            append(&ctx, &format!("b{i}"), bead_created(&format!("b{i}"), "r1")).await;
            r.mark_stale();
            assert!(matches!(within(20, "pass", r.pass(&ctx)).await, PassOutcome::Done(_)));
        }
        assert!(ReconcilerMetrics::read(&ctx.metrics.snapshots_saved) > 0, "snapshots were written");
        // A tail after the last snapshot.
        append(&ctx, "late", bead_created("late", "r1")).await;
        let entries = ctx.snapshots.as_ref().unwrap().entries(&town()).await.unwrap();
        let latest = entries.iter().map(|e| e.seq).max().unwrap();
        let loaded = within(20, "load", TownRunner::load(&ctx, town())).await.unwrap();
        let mut full = TownState::new("t1");
        for (seq, stored) in ctx.bus.town_events(&town(), 0).await.unwrap() {
            apply_stored(&mut full, seq, &stored);
        }
        assert!(latest < full.last_seq, "the load folded a tail after the snapshot");
        assert_eq!(loaded.state, full, "snapshot + tail = full fold");
        assert!(loaded.outbox.is_empty(), "nothing to re-publish: everything was published");
    }
}
