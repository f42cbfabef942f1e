//! # gastown-ingest
//!
//! The ingest service: I/O around gastown-core's heartbeat filter (DOMAIN §E5) and command
//! validation (§E4). It turns agent heartbeats into the rare town events they imply and commands
//! into validated, appended events, and answers the commands over request-reply.
//!
//! # Layout
//! - [`IngestConfig`] and [`run`]: the service as a whole, until shutdown;
//! - `heartbeats`: the HB partition consumers (shares as ARCHITECTURE §9.3), the filter, expiry
//!   markers and the start-up check;
//! - `memory`: the filter's durable per-agent memory in KV `<prefix>-ingest` (compare-and-set,
//!   watched by the partition owner);
//! - `commands`: the micro service `<prefix>-ingest` on `<prefix>.cmd.*.>`;
//! - `cache`: a bounded cache of folded towns, refreshed from the tail, for validation;
//! - [`metrics`]: every counter of DOMAIN §M2, in one place.

pub mod cache;
pub mod commands;
mod error;
pub mod heartbeats;
pub mod memory;
pub mod metrics;

pub use error::IngestError;
pub use metrics::IngestMetrics;

use std::sync::Arc;
use std::time::Duration;

use gastown_bus::{Bus, BusConfig};
use tokio_util::sync::CancellationToken;

/// Everything the ingest service needs to run; built by the CLI from flags and environment.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Streams, partitions, replicas and the HB max age.
    pub bus: BusConfig,
    /// This replica's member id in the HB partition shares.
    pub member_id: String,
    /// ACTIVITY_GRANULARITY (E5 step 5).
    pub activity_granularity: Duration,
    /// Refold-and-retry count of a fenced command append (COMMAND_APPEND_RETRIES).
    pub append_retries: u32,
    /// Towns kept folded for command validation.
    pub cache_towns: usize,
    /// How long a non-preferred member waits before pulling a partition as standby.
    pub standby_delay: Duration,
    /// The pinned-client priority timeout of the partition consumers.
    pub priority_timeout: Duration,
}

/// Runs ingest — the heartbeat consumers and the command service — until `shutdown` is
/// cancelled, then finishes the message in hand and returns.
///
/// # Errors
/// The bus cannot be reached or its streams cannot be created or verified, or a loop fails in a
/// way it cannot ride out.
pub async fn run(config: IngestConfig, metrics: Arc<IngestMetrics>, shutdown: CancellationToken) -> Result<(), IngestError> {
    let bus = Arc::new(Bus::connect(&config.nats_url, config.bus.clone()).await?);
    bus.ensure_streams().await?;
    let memory = Arc::new(memory::MemoryStore::open(&bus).await?);
    tracing::info!(member = %config.member_id, partitions = config.bus.partitions, "ingest started");
    let hb_cfg = heartbeats::HeartbeatsConfig {
        granularity: config.activity_granularity,
        heartbeat_lost: config.bus.hb_max_age,
        standby_delay: config.standby_delay,
        priority_timeout: config.priority_timeout,
        ..heartbeats::HeartbeatsConfig::new(config.member_id.clone(), config.bus.partitions)
    };
    let cmd_cfg = commands::CommandsConfig {
        append_retries: config.append_retries,
        cache_towns: config.cache_towns,
        ..commands::CommandsConfig::default()
    };
    let hb = heartbeats::run_heartbeats(bus.clone(), hb_cfg, memory.clone(), metrics.clone(), shutdown.clone());
    let cmd = commands::run_commands(bus.clone(), cmd_cfg, memory, metrics, shutdown.clone());
    let (hb, cmd) = tokio::join!(hb, cmd);
    shutdown.cancel();
    hb?;
    cmd?;
    tracing::info!("ingest stopped");
    Ok(())
}
