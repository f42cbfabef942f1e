//! Published action messages (ARCHITECTURE §4, DOMAIN AC3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Action;
use crate::state::TownState;
use crate::time::Millis;

/// The message sent to `gastown.act.<town>.<type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionMessage {
    /// Message version (1).
    pub v: u32,
    /// `<decision_seq>:<index>`.
    pub action_id: String,
    /// Town.
    pub town: String,
    /// Action type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Sequence of the decision.
    pub decision_seq: u64,
    /// Index in the decision.
    pub index: u32,
    /// The decision's `at`.
    pub at: Millis,
    /// AC3 payload.
    pub payload: Map<String, Value>,
}

/// The AC3 payload of a published action, computed from the state after the whole decision.
#[must_use]
pub fn publish_payload(after: &TownState, action: &Action) -> Map<String, Value> {
    let _ = (after, action);
    Map::new()
}
