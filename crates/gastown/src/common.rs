//! Flag groups and checks shared by several subcommands: the stream settings every service must
//! agree on, the partition-share timings, and the checks of the global flags.

use std::time::Duration;

use clap::Args;
use gastown_bus::{BusConfig, Names};
use gastown_core::constants::HEARTBEAT_LOST;

use crate::GlobalArgs;

/// Stream settings that ingest and the reconciler must agree on (both create or verify the
/// streams at start-up; a different value would be "updated" back and forth).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Streams")]
pub struct StreamArgs {
    /// Max age of the HB stream in seconds: the silence after which the broker writes an expiry
    /// marker. A deployment keeps the default (heartbeat_lost); tests shorten it.
    #[arg(long, env = "GASTOWN_HB_MAX_AGE_S", default_value_t = HEARTBEAT_LOST.unsigned_abs() / 1000)]
    pub hb_max_age: u64,
    /// Largest number of events streams may keep consumers for (EVENTS `max_consumers`).
    #[arg(long, env = "GASTOWN_MAX_CONSUMERS", default_value_t = 4096)]
    pub max_consumers: i32,
}

/// Timings of the partition shares (ARCHITECTURE §9.3), for ingest's HB partitions and the
/// reconciler's EVENTS partitions alike.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Partition shares")]
pub struct ShareArgs {
    /// Seconds a non-preferred replica waits before pulling a partition as standby (longer than
    /// the pin timeout).
    #[arg(long, env = "GASTOWN_STANDBY_DELAY_S", default_value_t = 10)]
    pub standby_delay: u64,
    /// Priority timeout of the pinned partition consumers, in seconds.
    #[arg(long, env = "GASTOWN_PIN_TIMEOUT_S", default_value_t = 5)]
    pub pin_timeout: u64,
}

impl ShareArgs {
    /// Checks the timings.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.pin_timeout >= 1, "--pin-timeout must be at least 1 second");
        anyhow::ensure!(self.standby_delay > self.pin_timeout, "--standby-delay must be longer than --pin-timeout");
        Ok(())
    }
}

/// The NATS URL, required by `what`.
pub(crate) fn require_url(global: &GlobalArgs, what: &str) -> anyhow::Result<String> {
    let url = global.nats_url.clone().filter(|u| !u.trim().is_empty());
    url.ok_or_else(|| anyhow::anyhow!("NATS_URL (or --nats-url) is required for `gastown {what}`"))
}

/// The names derived from `--prefix`.
pub(crate) fn names(global: &GlobalArgs) -> anyhow::Result<Names> {
    Names::new(&global.prefix).map_err(|e| anyhow::anyhow!("invalid --prefix: {e}"))
}

/// Checks the global flags and the stream settings and builds the bus configuration.
pub(crate) fn bus_config(global: &GlobalArgs, streams: &StreamArgs) -> anyhow::Result<BusConfig> {
    let names = names(global)?;
    anyhow::ensure!((1..=1024).contains(&global.partitions), "--partitions must be between 1 and 1024");
    anyhow::ensure!(matches!(global.replicas, 1 | 3 | 5), "--replicas must be 1, 3 or 5");
    anyhow::ensure!(streams.hb_max_age >= 1, "--hb-max-age must be at least 1 second");
    anyhow::ensure!(streams.max_consumers >= 16, "--max-consumers must be at least 16");
    Ok(BusConfig {
        names,
        partitions: global.partitions,
        replicas: global.replicas,
        hb_max_age: Duration::from_secs(streams.hb_max_age),
        max_consumers: streams.max_consumers,
    })
}

/// A member id from a flag, checked, or `<host>-<pid>` (with `fallback` when the host name is
/// unknown).
pub(crate) fn member_id(given: Option<&String>, flag: &str, fallback: &str) -> anyhow::Result<String> {
    match given {
        Some(m) => {
            anyhow::ensure!(gastown_core::ids::is_token(m), "{flag} must match [A-Za-z0-9_-]{{1,64}}");
            Ok(m.clone())
        }
        None => Ok(default_member_id(fallback)),
    }
}

fn default_member_id(fallback: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
    let host = if host.is_empty() { fallback.to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

/// A duration flag in seconds that must be at least 1.
pub(crate) fn secs(value: u64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(value >= 1, "{flag} must be at least 1 second");
    Ok(Duration::from_secs(value))
}
