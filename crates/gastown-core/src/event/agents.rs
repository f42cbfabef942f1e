//! Agent events: registration, completion, checkpoints, and the heartbeat-derived facts (E3.3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::Role;
use crate::time::Millis;

/// A container status as heartbeats report it (ARCHITECTURE §4); `stopped` and `error` are
/// accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Alive: starting up.
    Starting,
    /// Alive: running.
    Running,
    /// Shutting down.
    Stopping,
    /// Exited.
    Exited,
    /// Failed.
    Failed,
    /// The runtime has no such container.
    NotFound,
    /// The runtime cannot tell.
    Unknown,
    /// Stopped.
    Stopped,
    /// Runtime error.
    Error,
}

impl ContainerState {
    /// Every status a heartbeat may carry.
    pub const ALL: [Self; 9] = [
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Exited,
        Self::Failed,
        Self::NotFound,
        Self::Unknown,
        Self::Stopped,
        Self::Error,
    ];

    /// `running` and `starting` are alive (E5).
    #[must_use]
    pub fn is_alive(self) -> bool {
        matches!(self, Self::Running | Self::Starting)
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::NotFound => "not_found",
            Self::Unknown => "unknown",
            Self::Stopped => "stopped",
            Self::Error => "error",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// `agent_registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistered {
    /// Agent id.
    pub agent_id: String,
    /// Role.
    pub role: Role,
    /// Rig (none for the mayor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rig_id: Option<String>,
    /// Display name (defaults to the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `agent_done` (E3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDone {
    /// Agent id.
    pub agent_id: String,
    /// Branch pushed.
    pub branch: String,
    /// PR opened, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    /// Summary (becomes the MR body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The bead the agent believes it worked on (stale-report guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bead_id: Option<String>,
    /// The dispatch it answers (stale-report guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_id: Option<String>,
}

/// Outcome reported by `agent.completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionStatus {
    /// Completed.
    Completed,
    /// Failed.
    Failed,
}

/// `agent_completed` (E3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCompleted {
    /// Agent id; absent = the mayor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Outcome.
    pub status: CompletionStatus,
    /// Reason (`container eviction` reopens the bead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Stale-report guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bead_id: Option<String>,
    /// Stale-report guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_id: Option<String>,
}

/// `agent_checkpointed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCheckpointed {
    /// Agent id.
    pub agent_id: String,
    /// Opaque JSON object.
    pub checkpoint: Map<String, Value>,
}

/// `agent_heartbeat_resumed` (E3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHeartbeatResumed {
    /// Agent id.
    pub agent_id: String,
    /// `running` or `starting`.
    pub status: ContainerState,
    /// Container reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_id: Option<String>,
    /// SDK watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_type: Option<String>,
    /// SDK watermark (clamped to the broker time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<Millis>,
    /// SDK watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_tools: Option<Vec<String>>,
}

/// Why an agent is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostCause {
    /// The broker's expiry marker: no heartbeat for heartbeat_lost.
    Expired,
    /// Only non-alive heartbeats for heartbeat_lost.
    NotAlive,
}

impl LostCause {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotAlive => "not_alive",
        }
    }
}

/// `agent_heartbeat_lost` (E3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHeartbeatLost {
    /// Agent id.
    pub agent_id: String,
    /// Cause.
    pub cause: LostCause,
}

/// `container_status` (E3.3): a non-running status, once per change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Agent id.
    pub agent_id: String,
    /// Status reported.
    pub status: ContainerState,
    /// Exit reason, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
}

/// `agent_activity`: the SDK watermark moved (coalesced, E5 step 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentActivity {
    /// Agent id.
    pub agent_id: String,
    /// SDK watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_type: Option<String>,
    /// SDK watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<Millis>,
    /// Tools in use.
    #[serde(default)]
    pub active_tools: Vec<String>,
    /// Heartbeats filtered since the previous forward.
    #[serde(default)]
    pub coalesced: u64,
}

/// `container_eviction` (§F).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerEviction {
    /// The evicted container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_id: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
