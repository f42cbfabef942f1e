//! The town state (DOMAIN §S): what `apply` builds and `reconcile` reads.
//!
//! # Layout
//! - [`TownState`] (S1) holds the maps of rigs, agents, beads, nudges and the dependency graph;
//! - `entities` defines the rows (S3 rig, S4 agent, S5 bead with its typed sub-records, S7 nudge);
//! - `deps` is the dependency graph (S6) with both directions indexed;
//! - `rings` keeps the dedup ring of event ids and the recent-events ring (S1);
//! - `query` has the derived predicates of S8 and the C3 iteration orders.
//!
//! Maps are ordered (`BTreeMap`) so iteration, serialization and snapshots are deterministic.

mod deps;
mod entities;
mod query;
mod rings;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use deps::{Dep, DepKind, Deps};
pub use entities::{
    Agent, AgentStatus, Bead, BeadStatus, BeadType, ConvoyRecord, EscalationRecord, FailureReason, Liveness, MailRecord,
    MergeMode, Nudge, NudgeMode, NudgePriority, Priority, ReviewRecord, Rig, Role, Severity,
};
pub use rings::{DedupRing, RecentEvent, RecentEvents, RecentId};

use crate::config::TownConfig;
use crate::time::Millis;

/// Version of the state's serialized form; snapshots of another version are not loaded.
pub const SCHEMA_VERSION: u32 = 1;

/// The circuit-breaker state last announced by B6.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// Whether the breaker is announced open.
    pub open: bool,
    /// The count announced with it.
    pub count: u32,
    /// When it last changed.
    pub changed_at: Option<Millis>,
}

/// Draining after a container eviction (§F).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    /// When draining started.
    pub since: Millis,
    /// The evicted container, when the eviction named one.
    pub container_instance_id: Option<String>,
}

/// A town's whole state (S1). Built only by folding events through `apply` (tests that need an
/// unreachable state use `testing::unchecked_state`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TownState {
    /// [`SCHEMA_VERSION`] of the code that wrote this state.
    pub schema: u32,
    /// The town's id.
    pub town_id: String,
    /// Town parameters (S2).
    pub config: TownConfig,
    /// Rigs by id.
    pub rigs: BTreeMap<String, Rig>,
    /// Agents by id.
    pub agents: BTreeMap<String, Agent>,
    /// Beads of every type by id.
    pub beads: BTreeMap<String, Bead>,
    /// Dependency edges (S6).
    pub deps: Deps,
    /// Nudges by id (S7).
    pub nudges: BTreeMap<String, Nudge>,
    /// Breaker announced by B6.
    pub breaker: Breaker,
    /// Set while draining (§F).
    pub draining: Option<Draining>,
    /// Town id counter (C2).
    pub id_seq: u64,
    /// Greatest effective time applied.
    pub clock: Millis,
    /// Stream sequence of the last event folded.
    pub last_seq: u64,
    /// Recent event ids for deduplication (E1).
    pub recent_event_ids: DedupRing,
    /// The last events applied, for `status` (S1).
    pub recent_events: RecentEvents,
}

impl TownState {
    /// An empty town: the state before its first event.
    #[must_use]
    pub fn new(town_id: impl Into<String>) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            town_id: town_id.into(),
            config: TownConfig::default(),
            rigs: BTreeMap::new(),
            agents: BTreeMap::new(),
            beads: BTreeMap::new(),
            deps: Deps::default(),
            nudges: BTreeMap::new(),
            breaker: Breaker::default(),
            draining: None,
            id_seq: 0,
            clock: 0,
            last_seq: 0,
            recent_event_ids: DedupRing::default(),
            recent_events: RecentEvents::default(),
        }
    }

    /// Whether any event has been folded.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.last_seq > 0
    }
}
