//! Q1–Q9 — review queue (group Q): poll, merge and recover MRs per MR, pop them per rig, and
//! re-dispatch or stop refineries.
//!
//! Per MR (`open` or `in_progress`, C3 order) Q1–Q5 run in order; per rig with an `open` MR
//! (by `rig_id`) Q6–Q7; per refinery (by `agent_id`) Q8–Q9 (R0.1).

use super::pass::Pass;
use crate::action::{Action, CreateAgent, PollFlags};
use crate::constants::{ABANDONED_MR, ORPHANED_PR_REVIEW, PR_POLL_INTERVAL, STUCK_REVIEW, backoff};
use crate::state::{Agent, AgentStatus, Bead, BeadStatus, BeadType, MergeMode, Role, TownState};
use crate::time::{Millis, older_than};

/// Runs the group's rules for the pass.
pub(super) fn run(p: &mut Pass<'_>) {
    let s = p.s;
    for mr in p.beads_in_order() {
        if mr.bead_type == BeadType::MergeRequest && matches!(mr.status, BeadStatus::Open | BeadStatus::InProgress) {
            per_mr(p, mr);
        }
    }
    for rig_id in s.rigs.keys() {
        let open: Vec<&Bead> = p
            .beads_in_order()
            .into_iter()
            .filter(|b| {
                b.bead_type == BeadType::MergeRequest && b.status == BeadStatus::Open && b.rig_id.as_deref() == Some(rig_id)
            })
            .collect();
        if !open.is_empty() {
            q6_code_review_off(p, rig_id, &open);
            q7_pop(p, rig_id, &open);
        }
    }
    for agent in s.agents.values().filter(|a| a.role == Role::Refinery) {
        q8_redispatch(p, agent);
        q9_stop_on_terminal_mr(p, agent);
    }
}

/// Whether a `working` or `stalled` agent is hooked to `bead_id`.
fn has_busy_agent(p: &Pass<'_>, bead_id: &str) -> bool {
    p.hooked(bead_id).any(|a| matches!(a.status, AgentStatus::Working | AgentStatus::Stalled))
}

/// The Q1 guard except the age: `in_progress`, `pr_url` set, `code_review(rig)`, not
/// `awaiting_approval`, no `working`/`stalled` agent hooked.
fn q1_candidate(p: &Pass<'_>, mr: &Bead) -> bool {
    let s = p.s;
    let Some(review) = mr.review.as_ref() else { return false };
    mr.status == BeadStatus::InProgress
        && review.pr_url.is_some()
        && s.resolved(mr.rig_id.as_deref()).code_review
        && !review.awaiting_approval
        && !has_busy_agent(p, &mr.bead_id)
}

/// Q1–Q5 for one MR.
fn per_mr(p: &mut Pass<'_>, mr: &Bead) {
    let s = p.s;
    let now = p.now;
    if mr.status != BeadStatus::InProgress {
        return;
    }
    // Q1: orphaned PR review.
    if q1_candidate(p, mr) && older_than(Some(mr.updated_at), ORPHANED_PR_REVIEW, now) {
        p.emit(vec![Action::TransitionBead {
            bead_id: mr.bead_id.clone(),
            from: mr.status,
            to: BeadStatus::Failed,
            reason: "PR review orphaned".to_owned(),
        }]);
        return;
    }
    let review = mr.review.clone().unwrap_or_default();
    if let Some(pr_url) = review.pr_url.as_deref() {
        // Q2: poll.
        if older_than(review.last_poll_at, PR_POLL_INTERVAL, now) {
            let r = s.resolved(mr.rig_id.as_deref());
            p.emit(vec![Action::PollPr {
                bead_id: mr.bead_id.clone(),
                pr_url: pr_url.to_owned(),
                flags: PollFlags {
                    auto_merge: r.auto_merge,
                    auto_merge_delay_minutes: r.auto_merge_delay_minutes,
                    auto_resolve_pr_feedback: r.auto_resolve_pr_feedback,
                },
            }]);
        }
        // Q3: merge.
        if review.auto_merge_pending {
            p.emit(vec![Action::MergePr { bead_id: mr.bead_id.clone(), pr_url: pr_url.to_owned() }]);
        }
        return;
    }
    // Q4 and Q5 skip an MR with rework in flight.
    if s.has_open_blocker(&mr.bead_id) {
        return;
    }
    // Q4: stuck.
    if older_than(Some(mr.updated_at), STUCK_REVIEW, now) && !has_busy_agent(p, &mr.bead_id) {
        let mut actions = vec![Action::TransitionBead {
            bead_id: mr.bead_id.clone(),
            from: mr.status,
            to: BeadStatus::Open,
            reason: "stuck review, no working agent".to_owned(),
        }];
        if let Some(idle) = p.hooked(&mr.bead_id).find(|a| a.status == AgentStatus::Idle) {
            actions.push(Action::UnhookAgent { agent_id: idle.agent_id.clone(), reason: "stuck review cleanup".to_owned() });
        }
        p.emit(actions);
        return;
    }
    // Q5: abandoned (only when Q4 did not fire).
    if older_than(Some(mr.updated_at), ABANDONED_MR, now) && p.hooked(&mr.bead_id).next().is_none() {
        p.emit(vec![Action::TransitionBead {
            bead_id: mr.bead_id.clone(),
            from: mr.status,
            to: BeadStatus::Open,
            reason: "abandoned, no agent hooked".to_owned(),
        }]);
    }
}

/// Whether the MR's `metadata.convoy_id` names a `review-and-merge` convoy.
fn in_review_and_merge_convoy(s: &TownState, mr: &Bead) -> bool {
    mr.meta_str("convoy_id")
        .and_then(|c| s.beads.get(c))
        .and_then(|c| c.convoy.as_ref())
        .is_some_and(|c| c.merge_mode == MergeMode::ReviewAndMerge)
}

/// Q6: with code review off, PR MRs skip to polling and MRs without a PR fail.
fn q6_code_review_off(p: &mut Pass<'_>, rig_id: &str, open: &[&Bead]) {
    let s = p.s;
    if s.resolved(Some(rig_id)).code_review {
        return;
    }
    for mr in open.iter().filter(|m| !in_review_and_merge_convoy(s, m)) {
        if mr.pr_url().is_some() {
            p.emit(vec![Action::TransitionBead {
                bead_id: mr.bead_id.clone(),
                from: mr.status,
                to: BeadStatus::InProgress,
                reason: "refinery code review disabled — skip to poll_pr".to_owned(),
            }]);
        } else if mr.created_by != "system" {
            let mut actions = vec![Action::TransitionBead {
                bead_id: mr.bead_id.clone(),
                from: mr.status,
                to: BeadStatus::Failed,
                reason: "MR bead has no pr_url and code review is disabled".to_owned(),
            }];
            if let Some(source) = s.mr_source(&mr.bead_id).filter(|b| b.bead_type == BeadType::Issue) {
                actions.push(Action::TransitionBead {
                    bead_id: source.bead_id.clone(),
                    from: source.status,
                    to: BeadStatus::Open,
                    reason: "MR failed (no PR created) — reopening for retry".to_owned(),
                });
            }
            p.emit(actions);
        }
    }
}

/// Q7: pop the rig's first candidate MR to its refinery (one direct review at a time).
fn q7_pop(p: &mut Pass<'_>, rig_id: &str, open: &[&Bead]) {
    let s = p.s;
    let busy = s.beads.values().any(|b| {
        b.bead_type == BeadType::MergeRequest
            && b.status == BeadStatus::InProgress
            && b.pr_url().is_none()
            && b.rig_id.as_deref() == Some(rig_id)
    });
    if busy {
        return;
    }
    let code_review = s.resolved(Some(rig_id)).code_review;
    let Some(mr) = open.iter().find(|m| code_review || in_review_and_merge_convoy(s, m) || m.created_by == "system") else {
        return;
    };
    if p.draining || p.tripped {
        return;
    }
    match s.refinery_of(rig_id) {
        None => {
            let agent_id = format!("ref-{rig_id}");
            if p.is_claimed(&agent_id) {
                return;
            }
            p.claim(&agent_id);
            p.emit(vec![
                Action::TransitionBead {
                    bead_id: mr.bead_id.clone(),
                    from: mr.status,
                    to: BeadStatus::InProgress,
                    reason: "popped for review (creating refinery)".to_owned(),
                },
                Action::DispatchAgent {
                    agent_id,
                    bead_id: mr.bead_id.clone(),
                    rig_id: rig_id.to_owned(),
                    create: Some(CreateAgent { role: Role::Refinery, name: None }),
                },
            ]);
        }
        Some(r) if r.status == AgentStatus::Idle && r.hook.is_none() && !p.is_claimed(&r.agent_id) => {
            p.claim(&r.agent_id);
            p.emit(vec![
                Action::TransitionBead {
                    bead_id: mr.bead_id.clone(),
                    from: mr.status,
                    to: BeadStatus::InProgress,
                    reason: "popped for review".to_owned(),
                },
                Action::HookAgent { agent_id: r.agent_id.clone(), bead_id: mr.bead_id.clone() },
                Action::DispatchAgent {
                    agent_id: r.agent_id.clone(),
                    bead_id: mr.bead_id.clone(),
                    rig_id: rig_id.to_owned(),
                    create: None,
                },
            ]);
        }
        Some(_) => {}
    }
}

/// The MR an idle refinery is hooked to, when Q8 concerns it: an `in_progress` MR not awaiting
/// approval.
fn q8_target<'s>(s: &'s TownState, agent: &Agent) -> Option<&'s Bead> {
    if agent.status != AgentStatus::Idle {
        return None;
    }
    let h = s.beads.get(agent.hook.as_deref()?)?;
    let awaiting = h.review.as_ref().is_some_and(|r| r.awaiting_approval);
    (h.bead_type == BeadType::MergeRequest && h.status == BeadStatus::InProgress && !awaiting).then_some(h)
}

/// Q8: re-dispatch an idle refinery hooked to its `in_progress` MR.
fn q8_redispatch(p: &mut Pass<'_>, agent: &Agent) {
    let s = p.s;
    let Some(h) = q8_target(s, agent) else { return };
    if p.draining {
        return;
    }
    if h.dispatch_attempts >= s.max_attempts(h.rig_id.as_deref()) {
        p.emit(vec![
            Action::TransitionBead {
                bead_id: h.bead_id.clone(),
                from: h.status,
                to: BeadStatus::Failed,
                reason: format!("refinery max dispatch attempts exceeded ({})", h.dispatch_attempts),
            },
            Action::UnhookAgent { agent_id: agent.agent_id.clone(), reason: "max dispatch attempts".to_owned() },
        ]);
        return;
    }
    if s.in_backoff(h, p.now) || p.tripped || p.is_claimed(&agent.agent_id) {
        return;
    }
    let Some(rig_id) = h.rig_id.clone().or_else(|| agent.rig_id.clone()) else { return };
    p.claim(&agent.agent_id);
    p.emit(vec![Action::DispatchAgent { agent_id: agent.agent_id.clone(), bead_id: h.bead_id.clone(), rig_id, create: None }]);
}

/// Q9: stop a working or stalled refinery whose MR is missing or terminal.
fn q9_stop_on_terminal_mr(p: &mut Pass<'_>, agent: &Agent) {
    let s = p.s;
    if !matches!(agent.status, AgentStatus::Working | AgentStatus::Stalled) {
        return;
    }
    let Some(hook) = agent.hook.as_deref() else { return };
    let status = match s.beads.get(hook) {
        None => "missing",
        Some(b) if b.bead_type == BeadType::MergeRequest && b.is_terminal() => b.status.as_str(),
        Some(_) => return,
    };
    let cleanup = format!("MR bead {status} — cleanup");
    p.emit(vec![
        Action::StopAgent { agent_id: agent.agent_id.clone(), reason: format!("MR bead {hook} is {status}") },
        Action::UnhookAgent { agent_id: agent.agent_id.clone(), reason: cleanup.clone() },
        Action::TransitionAgent { agent_id: agent.agent_id.clone(), from: agent.status, to: AgentStatus::Idle, reason: cleanup },
    ]);
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`.
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    for mr in s.beads.values() {
        if mr.bead_type != BeadType::MergeRequest || mr.status != BeadStatus::InProgress {
            continue;
        }
        let review = mr.review.clone().unwrap_or_default();
        if review.pr_url.is_some() {
            // Q1: updated_at + ORPHANED_PR_REVIEW.
            if q1_candidate(p, mr) {
                out.push(mr.updated_at + ORPHANED_PR_REVIEW);
            }
            // Q2: last_poll_at + PR_POLL_INTERVAL.
            if let Some(last) = review.last_poll_at {
                out.push(last + PR_POLL_INTERVAL);
            }
        } else if !s.has_open_blocker(&mr.bead_id) && !has_busy_agent(p, &mr.bead_id) {
            // Q4, Q5.
            out.push(mr.updated_at + STUCK_REVIEW);
            if p.hooked(&mr.bead_id).next().is_none() {
                out.push(mr.updated_at + ABANDONED_MR);
            }
        }
    }
    // Q8: an in_progress MR hooked by an idle refinery, attempts < max.
    for agent in s.agents.values().filter(|a| a.role == Role::Refinery) {
        if let Some(h) = q8_target(s, agent)
            && h.dispatch_attempts < s.max_attempts(h.rig_id.as_deref())
            && let Some(last) = h.last_dispatch_attempt_at
        {
            out.push(last + backoff(h.dispatch_attempts));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use crate::action::Action;
    use crate::constants::{ABANDONED_MR, ORPHANED_PR_REVIEW, PR_POLL_INTERVAL, STUCK_REVIEW};
    use crate::event::{AgentCheckpointed, ContainerState, PrAutoMerge, PrState, ReworkRequested};
    use crate::state::{AgentStatus, BeadStatus, Liveness, Role};
    use crate::testing::*;

    use AgentStatus::{Idle, Working};
    use BeadStatus::{Closed, Failed, InProgress, InReview, Open};

    const P: &str = "https://github.com/acme/app/pull/7";
    /// When pc-1 reports done in T10 (and Q7 pops mr-2 in T11).
    const DONE: Millis = T0 + mins(20);

    /// T10: T6 up to +15s, then `agent_done{pc-1, "gt/toast/b1"}` at +20min → mr-2 open, b1
    /// in_review, pc-1 idle unhooked and alive; no refinery.
    fn t10() -> Given {
        let mut town = given(fixture_f()).and([bead_created("b1", "r1").at(T0 + secs(10))]);
        town.pass_at(T0 + secs(10));
        town.and([resumed_on("pc-1", "c1").at(T0 + secs(15)), agent_done("pc-1", "gt/toast/b1").at(DONE)])
    }

    /// T11's first pass stored: ref-r1 created and dispatched on mr-2 at DONE (working, unseen,
    /// mr-2 in_progress without pr_url, attempts 1, updated_at DONE).
    fn t11_popped() -> Given {
        let mut town = t10();
        town.pass_at(DONE);
        town
    }

    /// ref-r1 reports a PR for mr-2 at `t0` and the pass at `t0` polls it (stored): mr-2
    /// {in_progress, P, updated_at t0, last_poll_at t0, nothing hooked}.
    fn pr_polled_at(t0: Millis) -> Given {
        let mut town = t11_popped().and([resumed("ref-r1").at(DONE + secs(5)), agent_done_pr("ref-r1", "gt/toast/b1", P).at(t0)]);
        assert_eq!(town.pass_at(t0), vec![poll_pr("mr-2", P)]);
        town
    }

    fn names(a: &Action, id: &str) -> bool {
        serde_json::to_value(a).unwrap().as_object().unwrap().values().any(|v| v.as_str() == Some(id))
    }

    // --- T11 Refinery pop and serialisation (Q7) ---

    #[test]
    fn t11_open_mr_without_refinery_is_popped_creating_one() {
        t10().when_reconciled_at(DONE).then_decides([
            transition_bead("mr-2", Open, InProgress, "popped for review (creating refinery)"),
            dispatch_creating("ref-r1", "mr-2", "r1", Role::Refinery, None),
        ]);
    }

    fn t11_second_mr_waiting() -> Given {
        // mr-3 {open, r1, created +21min}: p2's work on b2 reviewed while mr-2 is under review.
        t11_popped().and([
            resumed("ref-r1").at(DONE + secs(5)),
            polecat_registered("p2").at(T0 + mins(21)),
            ev(crate::event::BeadCreated { agent_id: Some("p2".into()), ..bead("b2", Some("r1")) }).at(T0 + mins(21)),
            agent_done("p2", "gt/p2/b2").at(T0 + mins(21)),
        ])
    }

    #[test]
    fn t11_second_mr_waits_while_a_direct_review_is_in_progress() {
        let town = t11_second_mr_waiting();
        assert_eq!(town.bead("mr-3").status, Open);
        town.when_reconciled_at(T0 + mins(21)).then_decides_nothing();
    }

    #[test]
    fn t11_second_mr_is_popped_once_the_first_review_merges() {
        let town = t11_second_mr_waiting().and([agent_done("ref-r1", "gt/toast/b1").at(T0 + mins(30))]);
        assert_eq!(town.bead("mr-2").status, Closed);
        assert_eq!(town.bead("b1").status, Closed);
        assert_eq!(town.agent("ref-r1").status, Idle);
        assert_eq!(town.agent("ref-r1").hook, None);
        town.when_reconciled_at(T0 + mins(30)).then_decides([
            transition_bead("mr-3", Open, InProgress, "popped for review"),
            hook_agent("ref-r1", "mr-3"),
            dispatch_agent("ref-r1", "mr-3", "r1"),
        ]);
    }

    // --- T13 PR strategy (Q2, pr_status_changed) ---

    const PR_AT: Millis = T0 + mins(25);

    #[test]
    fn t13_pr_of_a_refinery_is_polled_at_once() {
        let town = t11_popped().and([resumed("ref-r1").at(DONE + secs(5)), agent_done_pr("ref-r1", "gt/toast/b1", P).at(PR_AT)]);
        assert_eq!(town.bead("mr-2").status, InProgress);
        assert_eq!(town.bead("mr-2").pr_url(), Some(P));
        assert_eq!(town.agent("ref-r1").hook, None);
        town.when_reconciled_at(PR_AT).then_decides([poll_pr("mr-2", P)]);
    }

    #[test]
    fn t13_pr_is_not_polled_again_within_the_poll_interval() {
        pr_polled_at(PR_AT)
            .when_reconciled_at(PR_AT + PR_POLL_INTERVAL - 1)
            .then_decides_nothing()
            .and_wakes_at(PR_AT + PR_POLL_INTERVAL);
    }

    #[test]
    fn t13_pr_is_polled_again_after_the_poll_interval() {
        pr_polled_at(PR_AT).when_reconciled_at(PR_AT + PR_POLL_INTERVAL).then_decides([poll_pr("mr-2", P)]);
    }

    #[test]
    fn t13a_merged_pr_closes_mr_and_source_and_polling_stops() {
        let mut town = pr_polled_at(PR_AT);
        town.pass_at(PR_AT + secs(60));
        let town = town.and([pr_status_changed("mr-2", P, PrState::Merged).at(PR_AT + secs(61))]);
        assert_eq!(town.bead("mr-2").status, Closed);
        assert_eq!(town.bead("b1").status, Closed);
        town.when_reconciled_at(PR_AT + secs(61)).then_decides_nothing();
    }

    #[test]
    fn t13b_closed_pr_fails_mr_and_reopens_source() {
        let town = pr_polled_at(PR_AT).and([pr_status_changed("mr-2", P, PrState::Closed).at(PR_AT + secs(61))]);
        let mr = town.bead("mr-2");
        assert_eq!(mr.status, Failed);
        assert_eq!(mr.failure_reason.as_ref().map(|r| r.message.as_str()), Some("PR closed without merge"));
        assert_eq!(town.bead("b1").status, Open);
        assert_eq!(town.bead("b1").assignee, None);
        // Q stops polling the failed MR; B1 gives b1 back to pc-1.
        town.when_reconciled_at(PR_AT + secs(61)).then_decides([dispatch_agent("pc-1", "b1", "r1")]);
    }

    #[test]
    fn t13c_invalid_pr_url_fails_mr_and_reopens_source() {
        let town = t11_popped().and([
            resumed("ref-r1").at(DONE + secs(5)),
            agent_done_pr("ref-r1", "gt/toast/b1", "http://example.com/7").at(PR_AT),
        ]);
        let mr = town.bead("mr-2");
        assert_eq!(mr.status, Failed);
        assert_eq!(mr.failure_reason.as_ref().map(|r| r.code.as_str()), Some("invalid_pr_url"));
        assert_eq!(town.bead("b1").status, Open);
        town.when_reconciled_at(PR_AT).then_decides([dispatch_agent("pc-1", "b1", "r1")]);
    }

    // --- T15 Auto-merge (Q3) ---

    fn t15_auto_merge_reported() -> Given {
        pr_polled_at(PR_AT).and([ev(PrAutoMerge { mr_bead_id: "mr-2".into(), pr_url: P.into() }).at(PR_AT + secs(10))])
    }

    #[test]
    fn t15_auto_merge_pending_decides_merge_pr() {
        let town = t15_auto_merge_reported();
        assert!(town.bead("mr-2").review.as_ref().unwrap().auto_merge_pending);
        town.when_reconciled_at(PR_AT + secs(10)).then_decides([merge_pr("mr-2", P)]);
    }

    #[test]
    fn t15_merge_pr_clears_pending_and_is_not_repeated() {
        let mut town = t15_auto_merge_reported();
        town.pass_at(PR_AT + secs(10));
        let review = town.bead("mr-2").review.clone().unwrap();
        assert!(!review.auto_merge_pending);
        assert_eq!(review.merge_requested_at, Some(PR_AT + secs(10)));
        town.when_reconciled_at(PR_AT + secs(10)).then_decides_nothing();
    }

    #[test]
    fn t15_merged_pr_closes_the_mr() {
        let mut town = t15_auto_merge_reported();
        town.pass_at(PR_AT + secs(10));
        let town = town.and([pr_status_changed("mr-2", P, PrState::Merged).at(PR_AT + secs(20))]);
        assert_eq!(town.bead("mr-2").status, Closed);
        town.when_reconciled_at(PR_AT + secs(20)).then_decides_nothing();
    }

    // --- T17 Abandoned MR (Q5) ---

    /// mr-2 {in_progress, no pr_url, updated_at DONE, nothing hooked}: ref-r1 unhooked by a decision.
    fn t17_abandoned() -> Given {
        t11_popped().and([reconciled([unhook_agent("ref-r1", "test")]).at(DONE)])
    }

    #[test]
    fn t17_mr_without_agent_is_kept_until_abandoned() {
        t17_abandoned().when_reconciled_at(DONE + ABANDONED_MR - 1).then_decides_nothing().and_wakes_at(DONE + ABANDONED_MR);
    }

    #[test]
    fn t17_mr_without_agent_is_reopened_once_abandoned() {
        let mut town = t17_abandoned();
        // Not `then_decides`: the next pass pops mr-2 again (Q7), a different rule.
        assert_eq!(
            town.pass_at(DONE + ABANDONED_MR),
            vec![transition_bead("mr-2", InProgress, Open, "abandoned, no agent hooked")]
        );
        assert_eq!(
            town.pass_at(DONE + ABANDONED_MR),
            vec![
                transition_bead("mr-2", Open, InProgress, "popped for review"),
                hook_agent("ref-r1", "mr-2"),
                dispatch_agent("ref-r1", "mr-2", "r1")
            ]
        );
    }

    /// As T17 with a live rework bead rw-3 blocking mr-2 (held so B1 leaves it alone).
    fn t17_with_rework() -> Given {
        t11_popped().and([
            ev(ReworkRequested {
                mr_bead_id: "mr-2".into(),
                agent_id: "ref-r1".into(),
                title: "Rework".into(),
                body: "fix".into(),
            })
            .at(DONE),
            ev(crate::event::BeadLabelsChanged { bead_id: "rw-3".into(), add: vec!["gt:held".into()], remove: vec![] }).at(DONE),
            reconciled([unhook_agent("ref-r1", "test")]).at(DONE),
        ])
    }

    #[test]
    fn t17_mr_blocked_by_rework_is_never_reopened() {
        let town = t17_with_rework();
        assert_eq!(town.bead("rw-3").status, Open);
        for now in [DONE + ABANDONED_MR, DONE + STUCK_REVIEW, DONE + hours(3)] {
            let d = town.when_reconciled_at(now).decision;
            assert!(d.actions.iter().all(|a| !names(a, "mr-2")), "at {now}: {:?}", d.actions);
        }
    }

    #[test]
    fn q4_stuck_mr_without_agent_is_reopened_as_stuck_not_abandoned() {
        // Not `then_decides`: the next pass pops mr-2 again (Q7), a different rule.
        assert_eq!(
            t17_abandoned().pass_at(DONE + STUCK_REVIEW),
            vec![transition_bead("mr-2", InProgress, Open, "stuck review, no working agent")]
        );
    }

    #[test]
    fn q4_stuck_mr_unhooks_its_idle_refinery_while_draining() {
        // ref-r1 alive and idle, still hooked; an eviction (F) holds Q8 back.
        let town = t11_popped().and([
            resumed("ref-r1").at(DONE + secs(5)),
            reconciled([transition_agent("ref-r1", Working, Idle, "test")]).at(DONE + mins(1)),
            container_eviction(Some("c9")).at(DONE + STUCK_REVIEW - mins(1)),
        ]);
        town.when_reconciled_at(DONE + STUCK_REVIEW - 1).then_decides_nothing();
        town.when_reconciled_at(DONE + STUCK_REVIEW).then_decides([
            transition_bead("mr-2", InProgress, Open, "stuck review, no working agent"),
            unhook_agent("ref-r1", "stuck review cleanup"),
        ]);
    }

    // --- T18 Orphaned PR review (Q1) ---

    #[test]
    fn t18_unpolled_pr_review_fails_as_orphaned() {
        pr_polled_at(PR_AT).when_reconciled_at(PR_AT + ORPHANED_PR_REVIEW).then_decides([transition_bead(
            "mr-2",
            InProgress,
            Failed,
            "PR review orphaned",
        )]);
    }

    #[test]
    fn t18_pr_review_just_short_of_orphaned_is_polled() {
        let town = pr_polled_at(PR_AT);
        town.when_reconciled_at(PR_AT + ORPHANED_PR_REVIEW - 1).then_decides([poll_pr("mr-2", P)]);
        town.when_reconciled_at(PR_AT + mins(29)).then_decides([poll_pr("mr-2", P)]);
    }

    #[test]
    fn t18_poll_moves_updated_at() {
        let mut town = pr_polled_at(PR_AT);
        town.pass_at(PR_AT + mins(29));
        assert_eq!(town.bead("mr-2").updated_at, PR_AT + mins(29));
        // Not orphaned: the poll of +29min moved updated_at; Q2 polls again.
        town.when_reconciled_at(PR_AT + ORPHANED_PR_REVIEW).then_decides([poll_pr("mr-2", P)]);
    }

    #[test]
    fn t18_pr_awaiting_approval_is_polled_not_orphaned() {
        let mut town = pr_polled_at(PR_AT);
        let poll_id = format!("{}:0", town.state.last_seq);
        let details: Map<String, Value> = json!({"pr_state": "open", "awaiting_approval": true}).as_object().unwrap().clone();
        town.push(
            ev(crate::event::ActionResult {
                details: Some(details),
                bead_id: Some("mr-2".into()),
                ..action_result(&poll_id, "poll_pr", true)
            })
            .at(PR_AT + secs(1)),
        );
        assert!(town.bead("mr-2").review.as_ref().unwrap().awaiting_approval);
        town.when_reconciled_at(PR_AT + ORPHANED_PR_REVIEW).then_decides([poll_pr("mr-2", P)]);
    }

    #[test]
    fn t18_pr_with_code_review_off_is_polled_not_orphaned() {
        let town = pr_polled_at(PR_AT).and([rig_configured("r1", json!({"code_review": false})).at(PR_AT + secs(1))]);
        town.when_reconciled_at(PR_AT + ORPHANED_PR_REVIEW).then_decides([poll_pr("mr-2", P)]);
    }

    // --- T19 Code review off (Q6) ---

    /// r1 with code review off; mr-3 {open, P, created_by pc-1}; mr-4 {open, no pr_url, created_by
    /// pc-2, tracks b2 {in_review, assignee pc-2}}; ref-r1 idle unhooked.
    fn t19() -> Given {
        let mut town = given(fixture_f()).and([
            agent_registered("ref-r1", Role::Refinery, Some("r1")).at(T0),
            bead_created("b1", "r1").at(T0 + secs(10)),
            bead_created("b2", "r1").at(T0 + secs(11)),
        ]);
        town.pass_at(T0 + secs(11));
        town.and([
            rig_configured("r1", json!({"code_review": false})).at(T0 + secs(20)),
            agent_done_pr("pc-1", "gt/toast/b1", P).at(T0 + secs(30)),
            agent_done("pc-2", "gt/maple/b2").at(T0 + secs(31)),
        ])
    }

    #[test]
    fn t19_code_review_off_skips_pr_mrs_to_polling_and_fails_the_others() {
        let town = t19();
        assert_eq!(town.bead("mr-3").created_by, "pc-1");
        assert_eq!(town.bead("mr-4").created_by, "pc-2");
        assert_eq!(town.bead("b2").assignee.as_deref(), Some("pc-2"));
        town.when_reconciled_at(T0 + secs(31)).then_decides([
            transition_bead("mr-3", Open, InProgress, "refinery code review disabled — skip to poll_pr"),
            transition_bead("mr-4", Open, Failed, "MR bead has no pr_url and code review is disabled"),
            transition_bead("b2", InReview, Open, "MR failed (no PR created) — reopening for retry"),
        ]);
    }

    #[test]
    fn t19_code_review_off_then_clears_the_source_and_polls() {
        let mut town = t19();
        town.pass_at(T0 + secs(31));
        town.when_reconciled_at(T0 + secs(31)).then_decides([clear_bead_assignee("b2"), poll_pr("mr-3", P)]);
    }

    // --- T20 Refinery container exits (A4 then Q8 in one pass) ---

    #[test]
    fn t20_exited_refinery_is_recovered_and_redispatched_in_one_pass() {
        let town = t11_popped().and([
            resumed("ref-r1").at(DONE + secs(5)),
            container_status("ref-r1", ContainerState::Exited, None).at(DONE + mins(10)),
        ]);
        let r = town.agent("ref-r1");
        assert_eq!((r.status, r.hook.as_deref(), r.liveness), (Idle, Some("mr-2"), Liveness::Lost));
        town.when_reconciled_at(DONE + mins(10)).then_decides([
            unhook_agent("ref-r1", "idle agent hooked to live bead"),
            transition_bead("mr-2", InProgress, Open, "agent went idle without completing work"),
            dispatch_agent("ref-r1", "mr-2", "r1"),
        ]);
    }

    #[test]
    fn t20_after_the_pass_the_later_dispatch_wins() {
        let mut town = t11_popped().and([
            resumed("ref-r1").at(DONE + secs(5)),
            container_status("ref-r1", ContainerState::Exited, None).at(DONE + mins(10)),
        ]);
        town.pass_at(DONE + mins(10));
        let r = town.agent("ref-r1");
        assert_eq!((r.status, r.hook.as_deref()), (Working, Some("mr-2")));
        let mr = town.bead("mr-2");
        assert_eq!((mr.status, mr.dispatch_attempts), (InProgress, 2));
    }

    #[test]
    fn t20_exit_of_a_refinery_on_a_closed_mr_unhooks_it_and_nothing_follows() {
        let checkpoint = json!({"step": 3}).as_object().unwrap().clone();
        let town = t11_popped().and([
            resumed("ref-r1").at(DONE + secs(5)),
            ev(AgentCheckpointed { agent_id: "ref-r1".into(), checkpoint }).at(DONE + secs(6)),
            reconciled([transition_bead("mr-2", InProgress, Closed, "test")]).at(DONE + secs(30)),
            container_status("ref-r1", ContainerState::Exited, None).at(DONE + mins(1)),
        ]);
        let r = town.agent("ref-r1");
        assert_eq!((r.status, r.hook.as_deref(), r.checkpoint.is_none()), (Idle, None, true));
        town.when_reconciled_at(DONE + mins(1)).then_decides_nothing();
    }

    // --- T21 Working refinery on a merged MR (Q9) ---

    fn t21_merged_under_refinery() -> Given {
        pr_polled_at(PR_AT).and([
            reconciled([hook_agent("ref-r1", "mr-2"), dispatch_agent("ref-r1", "mr-2", "r1")]).at(PR_AT + secs(1)),
            resumed("ref-r1").at(PR_AT + secs(2)),
            pr_status_changed("mr-2", P, PrState::Merged).at(PR_AT + secs(30)),
        ])
    }

    #[test]
    fn t21_working_refinery_on_a_merged_mr_is_stopped_and_idled() {
        let town = t21_merged_under_refinery();
        let r = town.agent("ref-r1");
        assert_eq!((r.status, r.hook.as_deref(), r.liveness), (Working, Some("mr-2"), Liveness::Alive));
        town.when_reconciled_at(PR_AT + secs(30)).then_decides([
            stop_agent("ref-r1", "MR bead mr-2 is closed"),
            unhook_agent("ref-r1", "MR bead closed — cleanup"),
            transition_agent("ref-r1", Working, Idle, "MR bead closed — cleanup"),
        ]);
    }

    #[test]
    fn t21_after_the_stop_nothing_follows() {
        let mut town = t21_merged_under_refinery();
        let stops = town.pass_at(PR_AT + secs(30)).iter().filter(|a| matches!(a, Action::StopAgent { .. })).count();
        assert_eq!(stops, 1);
        town.when_reconciled_at(PR_AT + secs(30)).then_decides_nothing();
    }

    #[test]
    fn q8_refinery_at_its_cap_fails_the_mr() {
        // Five dispatches of ref-r1 on mr-2 (attempts 5), then the container exits.
        let mut town = t11_popped();
        for i in 1..=4 {
            town.push(reconciled([dispatch_agent("ref-r1", "mr-2", "r1")]).at(DONE + secs(i)));
        }
        let town = town.and([
            resumed("ref-r1").at(DONE + secs(5)),
            container_status("ref-r1", ContainerState::Exited, None).at(DONE + mins(10)),
        ]);
        assert_eq!(town.bead("mr-2").dispatch_attempts, 5);
        let d = town.when_reconciled_at(DONE + mins(10)).decision;
        assert!(d.actions.contains(&transition_bead("mr-2", InProgress, Failed, "refinery max dispatch attempts exceeded (5)")));
        assert!(d.actions.contains(&unhook_agent("ref-r1", "max dispatch attempts")));
    }
}
