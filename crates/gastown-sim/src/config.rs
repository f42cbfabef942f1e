//! The simulator's settings.

use std::time::Duration;

use gastown_bus::Names;

use crate::faults::Faults;

/// Everything the simulator needs to run; built by the CLI from flags and environment, or by tests.
/// Written `SimConfig { x, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// The deployment's names (prefix): subjects, streams, services.
    pub names: Names,
    /// How often a simulated container heartbeats (HEARTBEAT_INTERVAL, 5 s).
    pub heartbeat_every: Duration,
    /// How long an agent "works" before it reports done.
    pub work_time: Duration,
    /// How long after a PR is opened the fake SCM reports it merged.
    pub merge_delay: Duration,
    /// Heartbeats as MessagePack (`true`) or JSON (`false`).
    pub msgpack_heartbeats: bool,
    /// This simulator's name: in container instance ids and logs.
    pub member_id: String,
    /// Which containers misbehave.
    pub faults: Faults,
    /// Durable name of the executor's consumer on the ACTIONS stream. Simulators sharing it share
    /// the actions (each executed by one of them).
    pub consumer: String,
    /// Actions handled at once (the rest wait in the consumer).
    pub max_in_flight: usize,
    /// Actions decided longer ago than this are acknowledged without effect (a fresh consumer
    /// starts at the stream's first message; 7 days of old dispatches should not start
    /// containers). `None` executes everything.
    pub action_max_age: Option<Duration>,
    /// How long one command request may wait for its reply.
    pub command_timeout: Duration,
    /// How long, after shutdown, the actions in hand may keep retrying their commands.
    pub shutdown_grace: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            names: Names::default(),
            heartbeat_every: Duration::from_secs(5),
            work_time: Duration::from_secs(30),
            merge_delay: Duration::from_secs(60),
            msgpack_heartbeats: false,
            member_id: "sim".to_owned(),
            faults: Faults::none(),
            consumer: "sim-executor".to_owned(),
            max_in_flight: 32,
            action_max_age: Some(Duration::from_secs(15 * 60)),
            command_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
