//! Debug views (DOMAIN §D): `status` (D1), `dry-run` (D2) and `replay` (D3), computed from a
//! folded state and the few figures only the service knows. Nothing here appends or publishes.
//!
//! Replies are structs whose field order is the key order of the §D examples; serialize them with
//! their `to_json_string()` / `to_vec()` (a `serde_json::Value` would sort the keys). Entity rows
//! keep the original system's snake_case column names, summaries are camelCase, instants are ISO
//! (`time::format_iso`).
//!
//! # Layout
//! - `rows`: agent and bead rows shared by D1 and D3;
//! - `counts`: `actionsByType`, an order-keeping count map;
//! - `status`, `dry_run`, `replay`: one file per operation, with its request parsing;
//! - `error`: the error replies and their exact messages.

mod counts;
mod dry_run;
mod error;
mod replay;
mod rows;
mod status;

use serde::{Deserialize, Serialize};

pub use counts::OrderedCounts;
pub use dry_run::{DryRunInputs, DryRunMetrics, DryRunReply, DryRunRequest, ViolationRow, dry_run, effective_now};
pub use error::{DebugError, FROM_AFTER_TO, INVALID_BODY, INVALID_DATE, INVALID_TIMEOUT, MISSING_FROM_TO};
pub use replay::{Fed, Replay, ReplayReply, ReplayRequest, SnapshotRef, StateSnapshot, replay_base_choice};
pub use rows::{AgentRow, BeadRow, agent_rows, bead_rows, row_metadata};
pub use status::{AgentCounts, Alarm, AlarmStatus, BeadCounts, CircuitBreakerRow, PassFigures, Patrol, StatusReply, status};

use crate::state::{RecentEvent, TownState};
use crate::time::format_iso;

#[cfg(test)]
mod t39;

/// Every operation first checks that the town exists (§D): a fold with no events answers 404
/// `unknown town: <id>`.
///
/// # Errors
/// 404 when `state` has folded no event.
pub fn require_town(state: &TownState) -> Result<&TownState, DebugError> {
    if state.exists() { Ok(state) } else { Err(DebugError::unknown_town(&state.town_id)) }
}

/// One entry of D1's `recentEvents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEventText {
    /// Effective time (ISO).
    pub time: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// One line for people, built from the entry's summary (not part of the contract).
    pub message: String,
}

fn recent_message(e: &RecentEvent) -> RecentEventText {
    RecentEventText { time: format_iso(e.t), event_type: e.event_type.clone(), message: crate::apply::recent_event_message(e) }
}

/// Serializes a reply; the reply types hold only string-keyed maps, so this cannot fail, and if
/// it ever did the text is an error reply rather than a panic.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|e| DebugError { status: 500, message: format!("reply encoding: {e}") }.to_json_string())
}

/// `to_json_string` and `to_vec` for a reply struct whose field order is the order of its § D
/// example.
macro_rules! json_reply {
    ($reply:ty, $section:literal) => {
        impl $reply {
            #[doc = concat!("The reply as JSON text, keys in the order of ", $section, ".")]
            #[must_use]
            pub fn to_json_string(&self) -> String {
                super::to_json(self)
            }

            /// The reply as JSON bytes.
            #[must_use]
            pub fn to_vec(&self) -> Vec<u8> {
                self.to_json_string().into_bytes()
            }
        }
    };
}
use json_reply;
