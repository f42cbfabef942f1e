//! `gastown reconciler`: a reconciler worker against `NATS_URL`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gastown_reconciler::{ReconcilerConfig, ReconcilerMetrics};
use tokio_util::sync::CancellationToken;

use crate::GlobalArgs;
use crate::common::{self, ShareArgs, StreamArgs};

/// Flags of `gastown reconciler`.
#[derive(Debug, Clone, Args)]
pub struct ReconcilerArgs {
    /// The worker's own settings.
    #[command(flatten)]
    pub tuning: ReconcilerTuning,
    /// Stream settings.
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Partition-share timings.
    #[command(flatten)]
    pub shares: ShareArgs,
}

/// The reconciler worker's settings (also used by `gastown up`). Unset ones keep the library's
/// defaults, written in each help line.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Reconciler")]
pub struct ReconcilerTuning {
    /// This worker's id in the "reconciler" partition shares, written to the town metrics as
    /// ownerWorker (default: host name and process id).
    #[arg(long, env = "GASTOWN_WORKER_ID")]
    pub worker_id: Option<String>,
    /// SETTLE_MAX_PASSES: passes run back to back while a pass keeps deciding [default: 10].
    #[arg(long, env = "GASTOWN_SETTLE_MAX_PASSES")]
    pub settle_max_passes: Option<usize>,
    /// PASS_COALESCE in milliseconds: events arriving within it share one pass [default: 20].
    #[arg(long, env = "GASTOWN_PASS_COALESCE_MS")]
    pub pass_coalesce_ms: Option<u64>,
    /// Passes running at once across towns [default: 64].
    #[arg(long, env = "GASTOWN_MAX_CONCURRENT_PASSES")]
    pub max_concurrent_passes: Option<usize>,
    /// Towns folded at once when taking over a partition [default: 8].
    #[arg(long, env = "GASTOWN_TAKEOVER_CONCURRENCY")]
    pub takeover_concurrency: Option<usize>,
    /// A snapshot after this many events of a town [default: 500].
    #[arg(long, env = "GASTOWN_SNAPSHOT_EVERY_EVENTS")]
    pub snapshot_every_events: Option<u64>,
    /// A snapshot after this many seconds of a town's activity [default: 600].
    #[arg(long, env = "GASTOWN_SNAPSHOT_EVERY_S")]
    pub snapshot_every_s: Option<u64>,
    /// Snapshots kept per town [default: 8].
    #[arg(long, env = "GASTOWN_SNAPSHOT_HISTORY")]
    pub snapshot_history: Option<usize>,
    /// Compaction of a town's events before its oldest kept snapshot (ARCHITECTURE §9.4). Not
    /// implemented yet: every event is kept, and setting this is refused as a configuration error.
    #[arg(long, env = "GASTOWN_COMPACT_AFTER")]
    pub compact_after: Option<u64>,
    /// INVARIANT_REPORT_INTERVAL in seconds: how often a still-active violation is reported again
    /// [default: 3600].
    #[arg(long, env = "GASTOWN_INVARIANT_REPORT_INTERVAL_S")]
    pub invariant_report_interval_s: Option<u64>,
}

/// Checks the flags and builds the worker configuration, before connecting to anything.
pub(crate) fn config(global: &GlobalArgs, args: &ReconcilerArgs) -> anyhow::Result<ReconcilerConfig> {
    let nats_url = common::require_url(global, "reconciler")?;
    config_with_url(global, nats_url, &args.tuning, &args.streams, &args.shares)
}

/// [`config`] with the URL given (`gastown up` may start its own server).
pub(crate) fn config_with_url(
    global: &GlobalArgs,
    nats_url: String,
    t: &ReconcilerTuning,
    streams: &StreamArgs,
    shares: &ShareArgs,
) -> anyhow::Result<ReconcilerConfig> {
    let bus = common::bus_config(global, streams)?;
    shares.check()?;
    let worker_id = common::member_id(t.worker_id.as_ref(), "--worker-id", "reconciler")?;
    let mut c = ReconcilerConfig::new(nats_url, bus, worker_id);
    c.standby_delay = Duration::from_secs(shares.standby_delay);
    c.priority_timeout = Duration::from_secs(shares.pin_timeout);
    // The worker's drain ends well inside the process's forced-exit grace period.
    c.shutdown_grace = Duration::from_secs(global.shutdown_grace_s) * 3 / 4;
    if let Some(n) = t.settle_max_passes {
        anyhow::ensure!(n >= 1, "--settle-max-passes must be at least 1");
        c.settle_max_passes = n;
    }
    if let Some(ms) = t.pass_coalesce_ms {
        anyhow::ensure!(ms <= 10_000, "--pass-coalesce-ms must be at most 10000");
        c.pass_coalesce = Duration::from_millis(ms);
    }
    if let Some(n) = t.max_concurrent_passes {
        anyhow::ensure!(n >= 1, "--max-concurrent-passes must be at least 1");
        c.max_concurrent_passes = n;
    }
    if let Some(n) = t.takeover_concurrency {
        anyhow::ensure!(n >= 1, "--takeover-concurrency must be at least 1");
        c.takeover_concurrency = n;
    }
    if let Some(n) = t.snapshot_every_events {
        anyhow::ensure!(n >= 1, "--snapshot-every-events must be at least 1");
        c.snapshot_every_events = n;
    }
    if let Some(s) = t.snapshot_every_s {
        c.snapshot_every = common::secs(s, "--snapshot-every-s")?;
    }
    if let Some(n) = t.snapshot_history {
        anyhow::ensure!(n >= 1, "--snapshot-history must be at least 1");
        c.snapshot_history = n;
    }
    if let Some(n) = t.compact_after {
        anyhow::ensure!(n >= 1, "--compact-after must be at least 1");
        c.compact_after = Some(n);
    }
    if let Some(s) = t.invariant_report_interval_s {
        c.invariant_report_interval = common::secs(s, "--invariant-report-interval-s")?;
    }
    c.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(c)
}

/// Runs the worker until `shutdown`.
pub(crate) async fn run(config: ReconcilerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(ReconcilerMetrics::default());
    gastown_reconciler::run(config, metrics, shutdown).await?;
    Ok(())
}
