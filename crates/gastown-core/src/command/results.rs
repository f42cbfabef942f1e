//! Executor commands (`action.result`, `pr.status`, `pr.feedback`, `pr.auto_merge`,
//! `pr.conflict`: syntax only, never fenced) and `container.eviction`.

use super::body::IdKind;
use super::{CommandError, Ctx, Outcome};
use crate::event::{
    ActionResult, ContainerEviction, PrAutoMerge, PrConflictDetected, PrFeedbackDetected, PrState, PrStatusChanged,
};

/// The command whose event id is `<town>:r:<action_id>`.
pub(super) const ACTION_RESULT: &str = "action.result";

/// `action.result` fields, in the row's order.
pub(super) const RESULT: &[&str] = &["action_id", "action_type", "ok", "error", "details", "agent_id", "bead_id", "nudge_id"];
/// `pr.status` fields.
pub(super) const PR_STATUS: &[&str] = &["mr_bead_id", "pr_url", "pr_state"];
/// `pr.feedback` fields.
pub(super) const PR_FEEDBACK: &[&str] = &[
    "mr_bead_id",
    "pr_url",
    "pr_number",
    "repo",
    "branch",
    "has_unresolved_comments",
    "has_failing_checks",
    "has_unchecked_runs",
];
/// `pr.auto_merge` fields.
pub(super) const PR_AUTO_MERGE: &[&str] = &["mr_bead_id", "pr_url"];
/// `pr.conflict` fields.
pub(super) const PR_CONFLICT: &[&str] = &["mr_bead_id", "pr_url", "branch", "source_bead_id"];
/// `container.eviction` fields.
pub(super) const EVICTION: &[&str] = &["container_instance_id", "reason"];

/// `<seq>:<index>`: two decimal numbers that fit in u64.
fn is_action_id(s: &str) -> bool {
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok();
    s.split_once(':').is_some_and(|(seq, index)| number(seq) && number(index))
}

/// `action.result`: 400 `invalid action_id: must be <seq>:<index>`.
pub(super) fn action_result(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let action_id = f.req_str("action_id")?;
    if !is_action_id(action_id) {
        return Err(CommandError::invalid("action_id", "must be <seq>:<index>"));
    }
    let event = ActionResult {
        action_id: action_id.to_owned(),
        action_type: f.req_str("action_type")?.to_owned(),
        ok: f.req_bool("ok")?,
        error: f.opt_str("error")?.map(str::to_owned),
        details: f.opt_obj("details")?.cloned(),
        agent_id: f.opt_id("agent_id", IdKind::Agent)?.map(str::to_owned),
        bead_id: f.opt_id("bead_id", IdKind::Bead)?.map(str::to_owned),
        nudge_id: f.opt_id("nudge_id", IdKind::Bead)?.map(str::to_owned),
    };
    ctx.append(event, false)
}

/// `pr.status`: 400 `pr_state must be merged or closed`.
pub(super) fn pr_status(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let mr_bead_id = f.req_id("mr_bead_id", IdKind::Bead)?.to_owned();
    let pr_url = f.req_str("pr_url")?.to_owned();
    let pr_state = match f.req_str("pr_state")? {
        "merged" => PrState::Merged,
        "closed" => PrState::Closed,
        _ => return Err(CommandError::bad_request("pr_state must be merged or closed")),
    };
    ctx.append(PrStatusChanged { mr_bead_id, pr_url, pr_state }, false)
}

/// `pr.feedback`: 400 `no feedback flag is set`.
pub(super) fn pr_feedback(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let event = PrFeedbackDetected {
        mr_bead_id: f.req_id("mr_bead_id", IdKind::Bead)?.to_owned(),
        pr_url: f.req_str("pr_url")?.to_owned(),
        pr_number: f.req_int("pr_number")?,
        repo: f.req_str("repo")?.to_owned(),
        branch: f.req_str("branch")?.to_owned(),
        has_unresolved_comments: f.opt_bool("has_unresolved_comments")?.unwrap_or(false),
        has_failing_checks: f.opt_bool("has_failing_checks")?.unwrap_or(false),
        has_unchecked_runs: f.opt_bool("has_unchecked_runs")?.unwrap_or(false),
    };
    if !(event.has_unresolved_comments || event.has_failing_checks || event.has_unchecked_runs) {
        return Err(CommandError::bad_request("no feedback flag is set"));
    }
    ctx.append(event, false)
}

/// `pr.auto_merge`.
pub(super) fn pr_auto_merge(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let event =
        PrAutoMerge { mr_bead_id: f.req_id("mr_bead_id", IdKind::Bead)?.to_owned(), pr_url: f.req_str("pr_url")?.to_owned() };
    ctx.append(event, false)
}

/// `pr.conflict`.
pub(super) fn pr_conflict(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let mr_bead_id = f.req_id("mr_bead_id", IdKind::Bead)?.to_owned();
    let pr_url = f.req_str("pr_url")?.to_owned();
    let branch = f.req_str("branch")?.to_owned();
    let source_bead_id = f.opt_id("source_bead_id", IdKind::Bead)?.map(str::to_owned);
    ctx.append(PrConflictDetected { mr_bead_id, source_bead_id, pr_url, branch }, false)
}

/// `container.eviction`: already draining → noop.
pub(super) fn eviction(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let container_instance_id = f.opt_str("container_instance_id")?.map(str::to_owned);
    let reason = f.opt_str("reason")?.map(str::to_owned);
    if ctx.state.draining.is_some() {
        return Ok(Outcome::Noop);
    }
    ctx.append(ContainerEviction { container_instance_id, reason }, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::super::{ErrorCode, Outcome};
    use super::*;
    use crate::event::Event;
    use crate::state::TownState;
    use crate::testing::*;

    fn empty() -> TownState {
        TownState::new(TOWN)
    }

    #[test]
    fn action_result_yields_action_result_under_its_own_id() {
        let body = json!({"action_id": "6:0", "action_type": "send_nudge", "ok": false, "error": "boom",
                          "details": {"pr_state": "open"}, "agent_id": "pc-1", "bead_id": "b1", "nudge_id": "ndg-41"});
        let (env, fenced) = appended_fenced(run(&empty(), "action.result", body));
        let expected = ActionResult {
            error: Some("boom".into()),
            details: json!({"pr_state": "open"}).as_object().cloned(),
            agent_id: Some("pc-1".into()),
            bead_id: Some("b1".into()),
            nudge_id: Some("ndg-41".into()),
            ..crate::testing::action_result("6:0", "send_nudge", false)
        };
        assert_eq!((env.id.as_str(), env.event, fenced), ("t1:r:6:0", Event::ActionResult(expected), false));
    }

    #[test]
    fn action_id_must_be_seq_colon_index() {
        for bad in ["6", "6:", ":0", "a:0", "6:0:1", "6:-1", "99999999999999999999:0"] {
            let e = run_err(&empty(), "action.result", json!({"action_id": bad, "action_type": "x", "ok": true}));
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::BadRequest, "invalid action_id: must be <seq>:<index>"),
                "{bad}"
            );
        }
        assert_eq!(msg(&empty(), "action.result", json!({"action_type": "x", "ok": true})), "missing required field: action_id");
        assert_eq!(msg(&empty(), "action.result", json!({"action_id": "1:2", "action_type": "x"})), "missing required field: ok");
        assert_eq!(
            msg(&empty(), "action.result", json!({"action_id": "1:2", "action_type": "x", "ok": "yes"})),
            "invalid ok: expected boolean"
        );
    }

    #[test]
    fn pr_status_yields_pr_status_changed() {
        let body = json!({"mr_bead_id": "mr-2", "pr_url": "https://github.com/acme/app/pull/7", "pr_state": "merged"});
        let (env, fenced) = appended_fenced(run(&empty(), "pr.status", body));
        let expected = PrStatusChanged {
            mr_bead_id: "mr-2".into(),
            pr_url: "https://github.com/acme/app/pull/7".into(),
            pr_state: PrState::Merged,
        };
        assert_eq!((env.event, fenced), (Event::PrStatusChanged(expected), false));
        assert_eq!(
            msg(&empty(), "pr.status", json!({"mr_bead_id": "mr-2", "pr_url": "u", "pr_state": "open"})),
            "pr_state must be merged or closed"
        );
    }

    #[test]
    fn pr_feedback_yields_pr_feedback_detected() {
        let body = json!({"mr_bead_id": "mr-2", "pr_url": "u", "pr_number": 7, "repo": "acme/app", "branch": "fix",
                          "has_failing_checks": true});
        let (env, fenced) = appended_fenced(run(&empty(), "pr.feedback", body));
        let expected = PrFeedbackDetected {
            mr_bead_id: "mr-2".into(),
            pr_url: "u".into(),
            pr_number: 7,
            repo: "acme/app".into(),
            branch: "fix".into(),
            has_unresolved_comments: false,
            has_failing_checks: true,
            has_unchecked_runs: false,
        };
        assert_eq!((env.event, fenced), (Event::PrFeedbackDetected(expected), false));
    }

    #[test]
    fn pr_feedback_needs_a_flag_and_an_integer_pr_number() {
        let base = json!({"mr_bead_id": "mr-2", "pr_url": "u", "pr_number": 7, "repo": "acme/app", "branch": "fix",
                          "has_unresolved_comments": false});
        assert_eq!(msg(&empty(), "pr.feedback", base), "no feedback flag is set");
        let float = json!({"mr_bead_id": "mr-2", "pr_url": "u", "pr_number": 7.5, "repo": "r", "branch": "b"});
        assert_eq!(msg(&empty(), "pr.feedback", float), "invalid pr_number: expected integer");
    }

    #[test]
    fn pr_auto_merge_and_pr_conflict_yield_their_events() {
        let env = appended(run(&empty(), "pr.auto_merge", json!({"mr_bead_id": "mr-2", "pr_url": "u"})));
        assert_eq!(env.event, Event::PrAutoMerge(PrAutoMerge { mr_bead_id: "mr-2".into(), pr_url: "u".into() }));
        let body = json!({"mr_bead_id": "mr-2", "pr_url": "u", "branch": "fix", "source_bead_id": "b1"});
        let env = appended(run(&empty(), "pr.conflict", body));
        let expected = PrConflictDetected {
            mr_bead_id: "mr-2".into(),
            source_bead_id: Some("b1".into()),
            pr_url: "u".into(),
            branch: "fix".into(),
        };
        assert_eq!(env.event, Event::PrConflictDetected(expected));
        assert_eq!(msg(&empty(), "pr.conflict", json!({"mr_bead_id": "mr-2", "pr_url": "u"})), "missing required field: branch");
    }

    #[test]
    fn container_eviction_yields_container_eviction_unless_draining() {
        let (env, fenced) = appended_fenced(run(&empty(), "container.eviction", json!({"container_instance_id": "c1"})));
        let expected = ContainerEviction { container_instance_id: Some("c1".into()), reason: None };
        assert_eq!((env.event, fenced), (Event::ContainerEviction(expected), true));
        let draining = given(fixture_f()).and([container_eviction(Some("c1"))]).state;
        assert_eq!(run(&draining, "container.eviction", json!({"reason": "again"})).unwrap(), Outcome::Noop);
    }
}
