//! `gastown ingest`: the ingest service against `NATS_URL`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gastown_core::constants::{ACTIVITY_GRANULARITY, COMMAND_APPEND_RETRIES};
use gastown_ingest::{IngestConfig, IngestMetrics};
use tokio_util::sync::CancellationToken;

use crate::GlobalArgs;
use crate::common::{self, ShareArgs, StreamArgs};

/// Flags of `gastown ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Ingest's own settings.
    #[command(flatten)]
    pub tuning: IngestTuning,
    /// Stream settings.
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Partition-share timings.
    #[command(flatten)]
    pub shares: ShareArgs,
}

/// Ingest's own settings (also used by `gastown up`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Ingest")]
pub struct IngestTuning {
    /// ACTIVITY_GRANULARITY in seconds: at most one `agent_activity` per agent in this window.
    #[arg(long, env = "GASTOWN_ACTIVITY_GRANULARITY_S", default_value_t = ACTIVITY_GRANULARITY.unsigned_abs() / 1000)]
    pub activity_granularity: u64,
    /// Refold-and-retry count of a fenced command append.
    #[arg(long, env = "GASTOWN_COMMAND_APPEND_RETRIES", default_value_t = COMMAND_APPEND_RETRIES)]
    pub append_retries: u32,
    /// Towns kept folded for command validation.
    #[arg(long, env = "GASTOWN_CACHE_TOWNS", default_value_t = 1024)]
    pub cache_towns: usize,
    /// This ingest replica's id in the HB partition shares (default: host name and process id).
    #[arg(long, env = "GASTOWN_MEMBER_ID")]
    pub member_id: Option<String>,
}

/// Checks the flags and builds the service configuration, before connecting to anything.
pub(crate) fn config(global: &GlobalArgs, args: &IngestArgs) -> anyhow::Result<IngestConfig> {
    let nats_url = common::require_url(global, "ingest")?;
    config_with_url(global, nats_url, &args.tuning, &args.streams, &args.shares)
}

/// [`config`] with the URL given (`gastown up` may start its own server).
pub(crate) fn config_with_url(
    global: &GlobalArgs,
    nats_url: String,
    tuning: &IngestTuning,
    streams: &StreamArgs,
    shares: &ShareArgs,
) -> anyhow::Result<IngestConfig> {
    let bus = common::bus_config(global, streams)?;
    anyhow::ensure!(tuning.activity_granularity >= 1, "--activity-granularity must be at least 1 second");
    anyhow::ensure!(tuning.cache_towns >= 1, "--cache-towns must be at least 1");
    shares.check()?;
    let member_id = common::member_id(tuning.member_id.as_ref(), "--member-id", "ingest")?;
    Ok(IngestConfig {
        nats_url,
        bus,
        member_id,
        activity_granularity: Duration::from_secs(tuning.activity_granularity),
        append_retries: tuning.append_retries,
        cache_towns: tuning.cache_towns,
        standby_delay: Duration::from_secs(shares.standby_delay),
        priority_timeout: Duration::from_secs(shares.pin_timeout),
    })
}

/// Runs the service until `shutdown`.
pub(crate) async fn run(config: IngestConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(IngestMetrics::default());
    gastown_ingest::run(config, metrics, shutdown).await?;
    Ok(())
}
