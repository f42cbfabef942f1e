//! Executor results and the reconciler's decisions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::action::Action;
use crate::time::Millis;

/// `action_result` (AC2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    /// `<decision seq>:<index>`.
    pub action_id: String,
    /// The action's type.
    pub action_type: String,
    /// Success.
    pub ok: bool,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Details (`poll_pr`: `pr_state`, `error_kind`, `awaiting_approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
    /// Echoed agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Echoed bead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bead_id: Option<String>,
    /// Echoed nudge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nudge_id: Option<String>,
}

/// `reconciled`: one pass's decision (R0.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciled {
    /// The pass's `now` (equals the envelope's `at`).
    pub at: Millis,
    /// The last sequence folded before deciding.
    pub base_seq: u64,
    /// The actions, in order; action i has id `<seq>:<i>`.
    pub actions: Vec<Action>,
}
