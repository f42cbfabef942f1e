//! `gastown sim`: the simulator (agent containers that heartbeat, a reference executor and a fake
//! SCM) against `NATS_URL`, optionally seeding demo towns first.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gastown_bus::Names;
use gastown_sim::{FaultRule, Faults, SimConfig, SimStats};
use tokio_util::sync::CancellationToken;

use crate::GlobalArgs;
use crate::common;

/// Flags of `gastown sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// The simulator's settings.
    #[command(flatten)]
    pub tuning: SimTuning,
    /// Seed this many demo towns (`demo-1` ...: config, a rig, beads, a convoy) before running;
    /// needs the ingest service.
    #[arg(long, env = "GASTOWN_SIM_SEED_DEMO", value_name = "N")]
    pub seed_demo: Option<usize>,
    /// Beads per seeded demo town.
    #[arg(long, env = "GASTOWN_SIM_DEMO_BEADS", default_value_t = 4)]
    pub demo_beads: usize,
}

/// The simulator's settings (also used by `gastown up --demo`). Unset ones keep the library's
/// defaults, written in each help line (`up` shortens the work time and merge delay).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Simulator")]
pub struct SimTuning {
    /// Heartbeat cadence of a simulated container, in milliseconds [default: 5000].
    #[arg(long, env = "GASTOWN_SIM_HEARTBEAT_MS")]
    pub heartbeat_every_ms: Option<u64>,
    /// How long a simulated agent works before it reports done, in milliseconds [default: 30000; with `up`: 5000].
    #[arg(long, env = "GASTOWN_SIM_WORK_TIME_MS")]
    pub work_time_ms: Option<u64>,
    /// How long the fake SCM takes to merge an opened PR, in milliseconds [default: 60000; with `up`: 10000].
    #[arg(long, env = "GASTOWN_SIM_MERGE_DELAY_MS")]
    pub merge_delay_ms: Option<u64>,
    /// Send heartbeats as MessagePack instead of JSON.
    #[arg(long, env = "GASTOWN_SIM_MSGPACK")]
    pub msgpack: bool,
    /// This simulator's name, in container instance ids and logs [default: sim].
    #[arg(long, env = "GASTOWN_SIM_ID")]
    pub sim_id: Option<String>,
    /// Durable name of the executor's consumer; simulators sharing it share the actions
    /// [default: sim-executor].
    #[arg(long, env = "GASTOWN_SIM_CONSUMER")]
    pub sim_consumer: Option<String>,
    /// Actions executed at once [default: 32].
    #[arg(long, env = "GASTOWN_SIM_MAX_IN_FLIGHT")]
    pub sim_max_in_flight: Option<usize>,
    /// Actions decided longer ago than this many seconds are acknowledged without effect; 0
    /// executes everything [default: 900].
    #[arg(long, env = "GASTOWN_SIM_ACTION_MAX_AGE_S")]
    pub action_max_age_s: Option<u64>,
    /// A fault rule `<crash|exit|hang|flap>:<agent pattern>[:<probability>[:<after>]]`, e.g.
    /// `crash:pc-*:0.2:10s`; repeatable (comma-separated in the variable); the first match wins.
    #[arg(long = "fault", env = "GASTOWN_SIM_FAULTS", value_delimiter = ',', value_name = "RULE")]
    pub faults: Vec<String>,
    /// Seed of the fault draws: the same seed gives the same faults for the same actions.
    #[arg(long, env = "GASTOWN_SIM_FAULT_SEED", default_value_t = 0)]
    pub fault_seed: u64,
}

/// What `gastown sim` runs: the simulator and, optionally, the demo seeding.
#[derive(Debug, Clone)]
pub(crate) struct SimPlan {
    pub(crate) config: SimConfig,
    /// `(towns, beads per town)` to seed first.
    pub(crate) seed: Option<(usize, usize)>,
}

/// Checks the flags and builds the plan, before connecting to anything.
pub(crate) fn config(global: &GlobalArgs, args: &SimArgs) -> anyhow::Result<SimPlan> {
    let nats_url = common::require_url(global, "sim")?;
    let names = common::names(global)?;
    let config = sim_config(global, nats_url, names, &args.tuning, SimConfig::default())?;
    let seed = match args.seed_demo {
        Some(n) => Some(demo_size(n, args.demo_beads)?),
        None => None,
    };
    Ok(SimPlan { config, seed })
}

/// Checks a demo size.
pub(crate) fn demo_size(towns: usize, beads: usize) -> anyhow::Result<(usize, usize)> {
    anyhow::ensure!((1..=1000).contains(&towns), "the number of demo towns must be between 1 and 1000");
    anyhow::ensure!((1..=100).contains(&beads), "the number of demo beads per town must be between 1 and 100");
    Ok((towns, beads))
}

/// Builds the simulator configuration from the flags over `base` (its defaults).
pub(crate) fn sim_config(
    global: &GlobalArgs,
    nats_url: String,
    names: Names,
    t: &SimTuning,
    base: SimConfig,
) -> anyhow::Result<SimConfig> {
    let mut c = SimConfig { nats_url, names, ..base };
    if let Some(ms) = t.heartbeat_every_ms {
        anyhow::ensure!((100..=3_600_000).contains(&ms), "--heartbeat-every-ms must be between 100 and 3600000");
        c.heartbeat_every = Duration::from_millis(ms);
    }
    if let Some(ms) = t.work_time_ms {
        c.work_time = Duration::from_millis(ms);
    }
    if let Some(ms) = t.merge_delay_ms {
        c.merge_delay = Duration::from_millis(ms);
    }
    c.msgpack_heartbeats = t.msgpack;
    if let Some(id) = &t.sim_id {
        anyhow::ensure!(gastown_core::ids::is_token(id), "--sim-id must match [A-Za-z0-9_-]{{1,64}}");
        c.member_id = id.clone();
    }
    if let Some(name) = &t.sim_consumer {
        anyhow::ensure!(gastown_core::ids::is_token(name), "--sim-consumer must match [A-Za-z0-9_-]{{1,64}}");
        c.consumer = name.clone();
    }
    if let Some(n) = t.sim_max_in_flight {
        anyhow::ensure!((1..=10_000).contains(&n), "--sim-max-in-flight must be between 1 and 10000");
        c.max_in_flight = n;
    }
    if let Some(s) = t.action_max_age_s {
        c.action_max_age = (s > 0).then(|| Duration::from_secs(s));
    }
    let mut faults = Faults { seed: t.fault_seed, rules: Vec::new() };
    for rule in &t.faults {
        let rule: FaultRule = rule.trim().parse().map_err(|e| anyhow::anyhow!("invalid --fault: {e}"))?;
        faults.rules.push(rule);
    }
    c.faults = faults;
    // The actions in hand finish within half the process's grace period.
    c.shutdown_grace = c.shutdown_grace.min(Duration::from_secs(global.shutdown_grace_s) / 2);
    Ok(c)
}

/// Seeds the demo towns (when asked) and runs the simulator until `shutdown`.
pub(crate) async fn run(plan: SimPlan, shutdown: CancellationToken) -> anyhow::Result<()> {
    let stats = Arc::new(SimStats::default());
    if let Some((towns, beads)) = plan.seed {
        let client = async_nats::connect(plan.config.nats_url.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", plan.config.nats_url))?;
        tokio::select! {
            seeded = gastown_sim::seed_demo(&client, &plan.config.names, towns, beads) => seeded?,
            () = shutdown.cancelled() => return Ok(()),
        }
        tracing::info!(towns, beads_per_town = beads, "demo towns seeded");
    }
    gastown_sim::run(plan.config, stats, shutdown).await?;
    Ok(())
}
