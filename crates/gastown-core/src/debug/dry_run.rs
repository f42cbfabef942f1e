//! D2 `dry-run`: what a pass would decide now, and the invariant check, without storing anything.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::counts::OrderedCounts;
use super::error::{DebugError, INVALID_BODY, INVALID_DATE};
use crate::action::Action;
use crate::invariant::Violation;
use crate::state::TownState;
use crate::time::{Millis, format_iso, parse_iso};

/// A parsed dry-run request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRunRequest {
    /// The requested `now`; `None` = the responder's clock.
    pub now: Option<Millis>,
}

impl DryRunRequest {
    /// Parses a request body: empty, or a JSON object with an optional `now` (ISO); a null `now`
    /// counts as absent. Other keys are ignored.
    ///
    /// # Errors
    /// 400 `Invalid date format. Use ISO 8601 timestamps.` when `now` is not an ISO instant;
    /// 400 `invalid body: expected object` when the body is not a JSON object.
    pub fn parse(body: &[u8]) -> Result<Self, DebugError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { now: None });
        }
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
            return Err(DebugError::bad_request(INVALID_BODY));
        };
        match m.get("now") {
            None | Some(Value::Null) => Ok(Self { now: None }),
            Some(v) => match v.as_str().and_then(parse_iso) {
                Some(t) => Ok(Self { now: Some(t) }),
                None => Err(DebugError::bad_request(INVALID_DATE)),
            },
        }
    }
}

/// A violation as `dry-run` lists it (§I, D2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationRow {
    /// Invariant number (3, 4, 6–10).
    pub invariant: u8,
    /// The entity the violation is keyed on (I1).
    pub entity: String,
    /// `Reconciler invariant #<n> violated: <detail>`.
    pub message: String,
}

impl From<&Violation> for ViolationRow {
    fn from(v: &Violation) -> Self {
        Self { invariant: v.invariant, entity: v.entity.clone(), message: v.message() }
    }
}

/// The `metrics` block of D2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunMetrics {
    /// Actions decided.
    pub actions_emitted: u64,
    /// By type, in decision order.
    pub actions_by_type: OrderedCounts,
    /// Events stored after the fold point.
    pub pending_event_count: u64,
    /// Events stored after the last `reconciled` event.
    pub events_drained: u64,
}

/// The D2 reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunReply {
    /// Last folded sequence.
    pub seq: u64,
    /// The effective `now` (ISO).
    pub now: String,
    /// What `reconcile(S, now)` decides.
    pub actions: Vec<Action>,
    /// Figures.
    pub metrics: DryRunMetrics,
    /// The invariant check on S at now.
    pub invariant_violations: Vec<ViolationRow>,
}

super::json_reply!(DryRunReply, "D2");

/// The `now` a dry-run uses: the requested (or responder's) instant, raised to `S.clock` as a
/// live pass does.
#[must_use]
pub fn effective_now(s: &TownState, now: Millis) -> Millis {
    now.max(s.clock)
}

/// What only the service knows: counts from the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DryRunInputs {
    /// Events stored after the last `reconciled` event (the whole stream when there is none).
    pub events_since_decision: u64,
    /// Events stored after the fold point (normally 0).
    pub pending_event_count: u64,
}

/// Builds D2 for `s` at `now` (raised to `S.clock`): `reconcile(S, now)` and the invariant check
/// of S at that instant. Pure: nothing is appended or published, so the same inputs give the
/// same reply.
#[must_use]
pub fn dry_run(s: &TownState, now: Millis, inputs: DryRunInputs) -> DryRunReply {
    let now = effective_now(s, now);
    let actions = crate::reconcile(s, now).actions;
    let violations = crate::invariant::check(s, now);
    DryRunReply {
        seq: s.last_seq,
        now: format_iso(now),
        metrics: DryRunMetrics {
            actions_emitted: u64::try_from(actions.len()).unwrap_or(u64::MAX),
            actions_by_type: OrderedCounts::of_actions(&actions),
            pending_event_count: inputs.pending_event_count,
            events_drained: inputs.events_since_decision,
        },
        actions,
        invariant_violations: violations.iter().map(ViolationRow::from).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debug::t39::{squash, t39_live_up_to, t39_stream};
    use crate::state::AgentStatus;
    use crate::testing::*;

    const D2_EXAMPLE: &str = r#"{"seq":8,"now":"2026-06-01T10:03:00.000Z",
 "actions":[{"type":"transition_agent","agent_id":"pc-1","from":"working","to":"idle","reason":"heartbeat lost"}],
 "metrics":{"actionsEmitted":1,"actionsByType":{"transition_agent":1},"pendingEventCount":0,"eventsDrained":2},
 "invariantViolations":[]}"#;

    /// Stream up to [8]: [7] and [8] came after the last decision [6].
    fn t39_inputs() -> DryRunInputs {
        DryRunInputs { events_since_decision: 2, pending_event_count: 0 }
    }

    #[test]
    fn t39d_dry_run_at_three_minutes_is_the_d2_example() {
        let s = t39_live_up_to(8);
        let reply = dry_run(&s, T0 + mins(3), t39_inputs());
        assert_eq!(reply.to_json_string(), squash(D2_EXAMPLE));
        assert_eq!(
            reply.actions,
            [transition_agent("pc-1", AgentStatus::Working, AgentStatus::Idle, "heartbeat lost")],
            "the decision a live pass would take"
        );
    }

    #[test]
    fn t39d_dry_run_repeated_gives_the_same_reply_and_changes_nothing() {
        let s = t39_live_up_to(8);
        let before = s.clone();
        let first = dry_run(&s, T0 + mins(3), t39_inputs()).to_vec();
        let second = dry_run(&s, T0 + mins(3), t39_inputs()).to_vec();
        assert_eq!(first, second);
        assert_eq!(s, before);
    }

    #[test]
    fn a_now_before_the_clock_is_raised_to_it() {
        let s = t39_live_up_to(8);
        let reply = dry_run(&s, T0, t39_inputs());
        assert_eq!(reply.now, "2026-06-01T10:03:00.000Z");
        assert_eq!(reply.metrics.actions_emitted, 1);
    }

    #[test]
    fn violations_are_listed_beside_the_decision_that_repairs_them() {
        // No history unhooks a working polecat without idling it (I7): built unchecked.
        let s = unchecked_state(|s| {
            for (seq, env) in t39_stream().iter().filter(|(seq, _)| (5..=7).contains(seq)) {
                crate::apply(s, *seq, env);
            }
            if let Some(pc1) = s.agents.get_mut("pc-1") {
                pc1.hook = None;
            }
        });
        let reply = dry_run(&s, T0 + mins(1), t39_inputs());
        assert_eq!(
            reply.actions,
            [transition_agent("pc-1", AgentStatus::Working, AgentStatus::Idle, "working agent has no hook")]
        );
        let got: Vec<(u8, &str)> = reply.invariant_violations.iter().map(|v| (v.invariant, v.entity.as_str())).collect();
        assert_eq!(got, [(7, "pc-1")]);
        assert!(reply.invariant_violations[0].message.starts_with("Reconciler invariant #7 violated: "));
        let json = reply.to_json_string();
        assert!(
            json.contains(
                r#""invariantViolations":[{"invariant":7,"entity":"pc-1","message":"Reconciler invariant #7 violated: "#
            ),
            "{json}"
        );
    }

    #[test]
    fn the_request_takes_an_optional_iso_now() {
        assert_eq!(DryRunRequest::parse(b""), Ok(DryRunRequest { now: None }));
        assert_eq!(DryRunRequest::parse(b"{}"), Ok(DryRunRequest { now: None }));
        assert_eq!(DryRunRequest::parse(br#"{"now":null}"#), Ok(DryRunRequest { now: None }));
        assert_eq!(DryRunRequest::parse(br#"{"now":"2026-06-01T10:03:00.000Z"}"#), Ok(DryRunRequest { now: Some(T0 + mins(3)) }));
        for bad in [&br#"{"now":"soon"}"#[..], br#"{"now":12}"#] {
            assert_eq!(
                DryRunRequest::parse(bad).unwrap_err(),
                DebugError { status: 400, message: "Invalid date format. Use ISO 8601 timestamps.".into() }
            );
        }
        assert_eq!(DryRunRequest::parse(b"[1]").unwrap_err().message, "invalid body: expected object");
    }
}
