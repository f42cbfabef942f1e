//! `gastown ingest`: the ingest service against `NATS_URL`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gastown_bus::{BusConfig, Names};
use gastown_core::constants::{ACTIVITY_GRANULARITY, COMMAND_APPEND_RETRIES, HEARTBEAT_LOST};
use gastown_ingest::{IngestConfig, IngestMetrics};
use tokio_util::sync::CancellationToken;

use crate::GlobalArgs;

/// Flags of `gastown ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Max age of the HB stream in seconds: the silence after which the broker writes an expiry
    /// marker. A deployment keeps the default (heartbeat_lost); tests shorten it.
    #[arg(long, env = "GASTOWN_HB_MAX_AGE_S", default_value_t = HEARTBEAT_LOST.unsigned_abs() / 1000)]
    pub hb_max_age: u64,
    /// ACTIVITY_GRANULARITY in seconds: at most one `agent_activity` per agent in this window.
    #[arg(long, env = "GASTOWN_ACTIVITY_GRANULARITY_S", default_value_t = ACTIVITY_GRANULARITY.unsigned_abs() / 1000)]
    pub activity_granularity: u64,
    /// Refold-and-retry count of a fenced command append.
    #[arg(long, env = "GASTOWN_COMMAND_APPEND_RETRIES", default_value_t = COMMAND_APPEND_RETRIES)]
    pub append_retries: u32,
    /// Towns kept folded for command validation.
    #[arg(long, env = "GASTOWN_CACHE_TOWNS", default_value_t = 1024)]
    pub cache_towns: usize,
    /// This replica's id in the partition shares (default: host name and process id).
    #[arg(long, env = "GASTOWN_MEMBER_ID")]
    pub member_id: Option<String>,
    /// Seconds a non-preferred replica waits before pulling a partition as standby (longer than
    /// the pin timeout).
    #[arg(long, env = "GASTOWN_STANDBY_DELAY_S", default_value_t = 10)]
    pub standby_delay: u64,
    /// Priority timeout of the pinned partition consumers, in seconds.
    #[arg(long, env = "GASTOWN_PIN_TIMEOUT_S", default_value_t = 5)]
    pub pin_timeout: u64,
    /// Largest number of events streams may keep consumers for (EVENTS `max_consumers`).
    #[arg(long, env = "GASTOWN_MAX_CONSUMERS", default_value_t = 4096)]
    pub max_consumers: i32,
}

/// Checks the flags and builds the service configuration, before connecting to anything.
pub(crate) fn config(global: &GlobalArgs, args: &IngestArgs) -> anyhow::Result<IngestConfig> {
    let nats_url =
        global.nats_url.clone().ok_or_else(|| anyhow::anyhow!("NATS_URL (or --nats-url) is required for `gastown ingest`"))?;
    let names = Names::new(&global.prefix).map_err(|e| anyhow::anyhow!("invalid --prefix: {e}"))?;
    anyhow::ensure!((1..=1024).contains(&global.partitions), "--partitions must be between 1 and 1024");
    anyhow::ensure!(matches!(global.replicas, 1 | 3 | 5), "--replicas must be 1, 3 or 5");
    anyhow::ensure!(args.hb_max_age >= 1, "--hb-max-age must be at least 1 second");
    anyhow::ensure!(args.activity_granularity >= 1, "--activity-granularity must be at least 1 second");
    anyhow::ensure!(args.cache_towns >= 1, "--cache-towns must be at least 1");
    anyhow::ensure!(args.max_consumers >= 16, "--max-consumers must be at least 16");
    anyhow::ensure!(args.pin_timeout >= 1, "--pin-timeout must be at least 1 second");
    anyhow::ensure!(args.standby_delay > args.pin_timeout, "--standby-delay must be longer than --pin-timeout");
    let member_id = match &args.member_id {
        Some(m) => {
            anyhow::ensure!(gastown_core::ids::is_token(m), "--member-id must match [A-Za-z0-9_-]{{1,64}}");
            m.clone()
        }
        None => default_member_id(),
    };
    Ok(IngestConfig {
        nats_url,
        bus: BusConfig {
            names,
            partitions: global.partitions,
            replicas: global.replicas,
            hb_max_age: Duration::from_secs(args.hb_max_age),
            max_consumers: args.max_consumers,
        },
        member_id,
        activity_granularity: Duration::from_secs(args.activity_granularity),
        append_retries: args.append_retries,
        cache_towns: args.cache_towns,
        standby_delay: Duration::from_secs(args.standby_delay),
        priority_timeout: Duration::from_secs(args.pin_timeout),
    })
}

fn default_member_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
    let host = if host.is_empty() { "ingest".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

/// Runs the service until `shutdown`.
pub(crate) async fn run(config: IngestConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(IngestMetrics::default());
    gastown_ingest::run(config, metrics, shutdown).await?;
    Ok(())
}
