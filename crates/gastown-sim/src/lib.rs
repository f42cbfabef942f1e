//! # gastown-sim
//!
//! Simulated agent containers, a reference executor and a fake SCM, for demos, load and fault
//! tests. One process simulates many towns and agents: it executes the actions the reconciler
//! publishes (`<prefix>.act.<town>.<type>`, ARCHITECTURE §4, DOMAIN §A) from a durable consumer,
//! runs a heartbeating container per dispatched agent (`<prefix>.hb.<town>.<agent>`), and reports
//! through the command service (`agent.done`, `action.result`, `pr.status`; DOMAIN §E4), exactly
//! as real executors and agents would.
//!
//! # Layout
//! - [`SimConfig`] (`config`) and [`run`]: the simulator as a whole, until shutdown;
//! - `executor`: the ACTIONS consumer, idempotent on the action id, and what each action does;
//! - `container`: the simulated containers (heartbeats, SDK watermark, work, report);
//! - `scm`: the fake SCM (pull requests, merge delay);
//! - [`faults`]: crash, exit, hang and flap faults, per agent pattern and probability, seeded;
//! - `commands`: command requests and their replies;
//! - [`seed_demo`] (`seed`): demo towns through the command service;
//! - [`SimStats`] (`stats`): every counter, in one place.

#![deny(missing_docs)]

mod commands;
mod config;
mod container;
mod error;
mod executor;
pub mod faults;
mod scm;
mod seed;
mod shared;
mod stats;

pub use config::SimConfig;
pub use error::SimError;
pub use executor::EXECUTED_ACTION_TYPES;
pub use faults::{FaultKind, FaultRule, Faults};
pub use seed::{DEMO_GIT_URL, demo_town, seed_demo};
pub use stats::{SimStats, SimStatsSnapshot};

use std::sync::Arc;

use gastown_bus::{Bus, BusConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::Commander;
use crate::container::Containers;
use crate::scm::FakeScm;
use crate::shared::Shared;

/// Runs the simulator — the executor and every container it starts — until `shutdown` is
/// cancelled: then the containers stop heartbeating at once, the actions in hand finish (their
/// commands may retry for `shutdown_grace`), and it returns.
///
/// The simulator does not create or change streams: it waits for the ACTIONS stream (created by
/// ingest or the reconciler), so a shortened HB max age set by a test or deployment stays as set.
///
/// # Errors
/// The server cannot be reached or is too old, or the executor's consumer cannot be created
/// (e.g. a consumer of that name exists with another type).
pub async fn run(config: SimConfig, stats: Arc<SimStats>, shutdown: CancellationToken) -> Result<(), SimError> {
    let bus = Bus::connect(&config.nats_url, BusConfig { names: config.names.clone(), ..BusConfig::default() }).await?;
    let containers_stop = shutdown.child_token();
    let shared = Arc::new(Shared {
        js: bus.js.clone(),
        names: config.names.clone(),
        commander: Commander::new(bus.client.clone(), config.names.clone(), config.command_timeout, Arc::clone(&stats)),
        scm: FakeScm::new(config.merge_delay),
        stats,
        containers: Containers::default(),
        tracker: TaskTracker::new(),
        shutdown: containers_stop.clone(),
        config,
    });
    tracing::info!(member = %shared.config.member_id, "simulator started");
    let result = executor::run_executor(Arc::clone(&shared), shutdown).await;
    containers_stop.cancel();
    shared.tracker.close();
    shared.tracker.wait().await;
    tracing::info!(containers = shared.containers.len(), "simulator stopped");
    result
}
