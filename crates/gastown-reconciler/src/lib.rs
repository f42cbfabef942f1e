//! # gastown-reconciler
//!
//! The reconciler workers (ARCHITECTURE §6, §9.3, §9.4): each worker owns a share of the EVENTS
//! partitions, folds its towns' events into state, runs passes when events arrive or a deadline
//! comes due, appends each decision fenced on the last folded sequence, publishes the decided
//! actions only after their decision is stored, and snapshots its towns.
//!
//! # Layout
//! - [`ReconcilerConfig`] and [`run`]: the service as a whole, until shutdown;
//! - `partitions`: the reconciler's part in holding the EVENTS partitions (the owner/standby loop
//!   is `gastown_bus::lease`, shared with ingest): town listing and loading on acquisition, routing
//!   deliveries to towns, releasing towns when a partition is given up;
//! - `worker`: the towns held and the dispatcher of passes;
//! - `scheduler`: the per-town queue (dirty marks, coalescing, deadlines, back-off, a cap);
//! - `town`: a town's runner (fold, settle, fenced decision, publish, invariants, figures);
//! - [`snapshots`]: the snapshot store (object store + index);
//! - [`debug`]: the debug service (`status`, `dry-run`, exact `replay` over request-reply);
//! - [`metrics`]: every figure of DOMAIN §M1, in one place.

pub mod debug;
mod error;
pub mod metrics;
mod partitions;
mod scheduler;
pub mod snapshots;
mod town;
mod worker;

pub use error::ReconcilerError;
pub use metrics::ReconcilerMetrics;
pub use partitions::ROLE;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gastown_bus::lease::Lease;
use gastown_bus::{Bus, BusConfig, Membership, Names, ShareConfig};
use gastown_core::constants::{INVARIANT_REPORT_INTERVAL, PASS_COALESCE, SETTLE_MAX_PASSES};
use gastown_core::invariant::Reporter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug_span, error, info, warn};

use crate::partitions::EventsPartitions;
use crate::snapshots::SnapshotStore;
use crate::town::PassContext;
use crate::worker::Worker;

/// KV bucket (under the prefix) holding `published_through` per town.
pub const OUTBOX_BUCKET: &str = "outbox";
/// KV bucket (under the prefix) holding the last pass figures per town.
pub const TOWN_METRICS_BUCKET: &str = "town-metrics";

/// Everything a reconciler worker needs; built by the CLI from flags and environment.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Streams, partitions, replicas.
    pub bus: BusConfig,
    /// This worker's member id in the `reconciler` shares; written to the town figures.
    pub worker_id: String,
    /// SETTLE_MAX_PASSES (R0.4).
    pub settle_max_passes: usize,
    /// PASS_COALESCE: events arriving within this window cost one pass.
    pub pass_coalesce: Duration,
    /// Passes running at once across towns.
    pub max_concurrent_passes: usize,
    /// Towns folded at once when a partition is acquired.
    pub takeover_concurrency: usize,
    /// A snapshot after this many events folded…
    pub snapshot_every_events: u64,
    /// …or this long of activity.
    pub snapshot_every: Duration,
    /// Snapshots kept per town.
    pub snapshot_history: usize,
    /// Compaction (purging events before the oldest kept snapshot); off (`None`) by default and
    /// not implemented yet: a value is refused.
    pub compact_after: Option<u64>,
    /// How long a non-owner waits before pulling a partition as a standby (> `priority_timeout`).
    pub standby_delay: Duration,
    /// The partition consumers' pin timeout.
    pub priority_timeout: Duration,
    /// How often the member refreshes its registration in the shares.
    pub member_heartbeat: Duration,
    /// INVARIANT_REPORT_INTERVAL (I1).
    pub invariant_report_interval: Duration,
    /// After shutdown is asked, how long the graceful drain may take before it is cut short.
    pub shutdown_grace: Duration,
    /// The debug service every worker runs (concurrent folds, fold budget).
    pub debug: debug::DebugConfig,
}

impl ReconcilerConfig {
    /// The defaults of DOMAIN §K and ARCHITECTURE §9.4: 10 settle passes, 20 ms coalescing,
    /// 64 passes at once, 8 towns folded at once on takeover, a snapshot every 500 events or
    /// 10 minutes of activity (8 kept), no compaction, a 5 s pin timeout and a 10 s standby
    /// delay, invariants re-reported hourly, a 10 s shutdown grace.
    #[must_use]
    pub fn new(nats_url: impl Into<String>, bus: BusConfig, worker_id: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            bus,
            worker_id: worker_id.into(),
            settle_max_passes: SETTLE_MAX_PASSES,
            pass_coalesce: Duration::from_millis(u64::try_from(PASS_COALESCE).unwrap_or(20)),
            max_concurrent_passes: 64,
            takeover_concurrency: 8,
            snapshot_every_events: 500,
            snapshot_every: Duration::from_secs(600),
            snapshot_history: snapshots::DEFAULT_HISTORY,
            compact_after: None,
            standby_delay: Duration::from_secs(10),
            priority_timeout: Duration::from_secs(5),
            member_heartbeat: Duration::from_secs(2),
            invariant_report_interval: Duration::from_millis(u64::try_from(INVARIANT_REPORT_INTERVAL).unwrap_or(3_600_000)),
            shutdown_grace: Duration::from_secs(10),
            debug: debug::DebugConfig::default(),
        }
    }

    /// Checks the settings that must hold before connecting.
    ///
    /// # Errors
    /// [`ReconcilerError::Config`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ReconcilerError> {
        if !gastown_core::ids::is_token(&self.worker_id) {
            return Err(ReconcilerError::Config(format!("worker id {:?} must be a token [A-Za-z0-9_-]{{1,64}}", self.worker_id)));
        }
        if self.standby_delay <= self.priority_timeout {
            return Err(ReconcilerError::Config("standby delay must exceed the priority timeout".to_owned()));
        }
        if self.settle_max_passes == 0 || self.max_concurrent_passes == 0 {
            return Err(ReconcilerError::Config("settle passes and concurrent passes must be positive".to_owned()));
        }
        if self.compact_after.is_some() {
            return Err(ReconcilerError::Config("compaction is not implemented yet".to_owned()));
        }
        Ok(())
    }
}

/// Runs a reconciler worker until `shutdown` is cancelled: connects, creates or verifies the
/// streams and buckets, joins the `reconciler` shares and runs the partitions it owns (and the
/// others as a standby). At shutdown it stops pulling, finishes the passes in hand, publishes what
/// is outstanding, snapshots its towns and leaves the shares — or gives up after
/// `shutdown_grace`.
///
/// # Errors
/// A bad configuration, an unreachable bus at start, mismatched streams, or a loop failing in a
/// way it cannot ride out.
pub async fn run(
    config: ReconcilerConfig,
    metrics: Arc<ReconcilerMetrics>,
    shutdown: CancellationToken,
) -> Result<(), ReconcilerError> {
    config.validate()?;
    let bus = Arc::new(Bus::connect(&config.nats_url, config.bus.clone()).await?);
    bus.ensure_streams().await?;
    let outbox = bus.kv(OUTBOX_BUCKET).await?;
    let town_metrics = bus.kv(TOWN_METRICS_BUCKET).await?;
    let snapshots = SnapshotStore::open(&bus, config.snapshot_history).await?;
    let ctx = Arc::new(PassContext {
        bus: Arc::clone(&bus),
        outbox,
        town_metrics,
        snapshots: Some(Arc::new(snapshots)),
        metrics,
        reporter: Mutex::new(Reporter::new()),
        worker_id: config.worker_id.clone(),
        settle_max_passes: config.settle_max_passes,
        invariant_report_interval: config.invariant_report_interval,
        snapshot_every_events: config.snapshot_every_events,
        snapshot_every: config.snapshot_every,
    });
    let share = ShareConfig {
        role: ROLE.to_owned(),
        member_id: config.worker_id.clone(),
        partitions: config.bus.partitions,
        standby_delay: config.standby_delay,
        priority_timeout: config.priority_timeout,
        heartbeat: config.member_heartbeat,
    };
    let membership =
        match partitions::retry(&shutdown, "join the reconciler shares", || Membership::join(&bus, share.clone())).await? {
            Some(m) => Arc::new(m),
            None => return Ok(()),
        };
    info!(worker = %config.worker_id, partitions = config.bus.partitions, "reconciler started");

    let worker = Arc::new(Worker::new(Arc::clone(&ctx), config.pass_coalesce, config.max_concurrent_passes));
    let stop = shutdown.child_token();
    // Dropping `run` (a forced stop) stops every task it started.
    let _stop_on_drop = stop.clone().drop_guard();
    let passes = TaskTracker::new();
    let dispatcher = tokio::spawn(Arc::clone(&worker).dispatch(passes.clone(), stop.clone()));
    let handler = Arc::new(EventsPartitions {
        worker: Arc::clone(&worker),
        takeover_concurrency: config.takeover_concurrency,
        shutdown: stop.clone(),
    });
    let mut tasks = JoinSet::new();
    for lease in Lease::every_partition(&bus, &membership, &handler, &bus.names.events_stream(), Names::evt_partition_filter) {
        let span = debug_span!("evt_partition", partition = lease.p);
        tasks.spawn(lease.run(stop.clone()).instrument(span));
    }
    tasks.spawn(debug::run_debug(Arc::clone(&bus), config.debug.clone(), stop.clone()).instrument(debug_span!("debug_service")));

    // Run until shutdown, or until a partition fails beyond repair.
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(err))) => {
                    error!(cause = %err, "a partition failed");
                    outcome = Err(err);
                    break;
                }
                Some(Err(err)) => {
                    error!(cause = %err, "a partition task failed");
                    outcome = Err(ReconcilerError::Crashed(format!("partition task: {err}")));
                    break;
                }
            },
        }
    }
    stop.cancel();

    let drain = async {
        while tasks.join_next().await.is_some() {}
        if let Err(err) = dispatcher.await {
            warn!(cause = %err, "dispatcher task failed");
        }
        passes.close();
        passes.wait().await;
        worker.flush_all().await;
    };
    if tokio::time::timeout(config.shutdown_grace, drain).await.is_err() {
        warn!(grace = ?config.shutdown_grace, "graceful shutdown cut short");
    }
    match Arc::try_unwrap(membership) {
        Ok(m) => {
            if let Err(err) = m.leave().await {
                warn!(cause = %err, "could not leave the reconciler shares");
            }
        }
        Err(_) => warn!("the reconciler membership is still shared at shutdown"),
    }
    info!(worker = %config.worker_id, "reconciler stopped");
    outcome
}
