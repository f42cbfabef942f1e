//! B1–B6 — beads (group B): lazy assignment, stale assignees, re-dispatch of idle hooked
//! polecats, lost agents, orphaned `in_review` issues, and the circuit-breaker announcement.

use super::pass::Pass;
use crate::action::{Action, CreateAgent};
use crate::constants::{ORPHANED_SOURCE, STALE_IN_PROGRESS, backoff};
use crate::labels;
use crate::state::{AgentStatus, Bead, BeadStatus, BeadType, Role};
use crate::time::{Millis, long, older_than};

/// Runs the group's rules for the pass (R0.1: each rule over every entity, then the next rule).
pub(super) fn run(p: &mut Pass<'_>) {
    b1_lazy_assignment(p);
    b2_stale_assignee(p);
    b3_redispatch_idle_hooked(p);
    b4_agent_lost(p);
    b5_orphaned_in_review(p);
    b6_breaker_announcement(p);
}

/// Whether `b` passes B1's filter (before its numbered steps): an `open`, unassigned issue of an
/// existing rig, neither a triage request nor held, without open blocker and not staged.
fn b1_candidate(p: &Pass<'_>, b: &Bead) -> bool {
    b.bead_type == BeadType::Issue
        && b.status == BeadStatus::Open
        && b.assignee.is_none()
        && b.rig_id.as_deref().is_some_and(|r| p.s.rigs.contains_key(r))
        && !b.has_label(labels::TRIAGE_REQUEST)
        && !b.has_label(labels::HELD)
        && !p.s.has_open_blocker(&b.bead_id)
        && !p.s.staged(&b.bead_id)
}

/// The `transition_bead(→failed)` of a bead at its dispatch cap (B1, B3).
fn fail_at_cap(b: &Bead) -> Action {
    Action::TransitionBead {
        bead_id: b.bead_id.clone(),
        from: b.status,
        to: BeadStatus::Failed,
        reason: format!("max dispatch attempts exceeded ({})", b.dispatch_attempts),
    }
}

/// B1: dispatches each eligible issue to an idle, unhooked polecat of its rig, or to a new one.
fn b1_lazy_assignment(p: &mut Pass<'_>) {
    let s = p.s;
    for b in p.beads_in_order() {
        if !b1_candidate(p, b) || p.draining {
            continue;
        }
        let Some(rig_id) = b.rig_id.as_deref() else { continue };
        if b.dispatch_attempts >= s.max_attempts(Some(rig_id)) {
            p.emit(vec![fail_at_cap(b)]);
            continue;
        }
        if s.in_backoff(b, p.now) || p.tripped {
            continue;
        }
        if s.config.max_polecats_per_rig.is_some_and(|max| p.working_polecats(rig_id) >= max) {
            continue;
        }
        let reuse = s
            .agents
            .values()
            .find(|a| {
                a.role == Role::Polecat
                    && a.status == AgentStatus::Idle
                    && a.hook.is_none()
                    && a.rig_id.as_deref() == Some(rig_id)
                    && !p.is_claimed(&a.agent_id)
            })
            .map(|a| a.agent_id.clone());
        let action = match reuse {
            Some(agent_id) => {
                p.claim(&agent_id);
                Action::DispatchAgent { agent_id, bead_id: b.bead_id.clone(), rig_id: rig_id.to_owned(), create: None }
            }
            None => {
                let agent_id = p.new_id("pc");
                let name = p.polecat_name(rig_id);
                p.claim(&agent_id);
                Action::DispatchAgent {
                    agent_id,
                    bead_id: b.bead_id.clone(),
                    rig_id: rig_id.to_owned(),
                    create: Some(CreateAgent { role: Role::Polecat, name: Some(name) }),
                }
            }
        };
        p.count_polecat_dispatch(rig_id);
        p.emit(vec![action]);
    }
}

/// B2: an `open` issue whose assignee is missing or not hooked to it loses the assignee.
fn b2_stale_assignee(p: &mut Pass<'_>) {
    let s = p.s;
    for b in p.beads_in_order() {
        let Some(assignee) = b.assignee.as_deref() else { continue };
        if b.bead_type != BeadType::Issue
            || b.status != BeadStatus::Open
            || b.rig_id.is_none()
            || assignee == "system"
            || b.has_label(labels::TRIAGE_REQUEST)
        {
            continue;
        }
        let hooked_here = s.agents.get(assignee).is_some_and(|a| a.hook.as_deref() == Some(b.bead_id.as_str()));
        if !hooked_here {
            p.emit(vec![Action::ClearBeadAssignee { bead_id: b.bead_id.clone() }]);
        }
    }
}

/// B3: an `idle` polecat hooked to an `open` bead is dispatched again (or the bead failed at its cap).
fn b3_redispatch_idle_hooked(p: &mut Pass<'_>) {
    let s = p.s;
    for a in s.agents.values() {
        if a.role != Role::Polecat || a.status != AgentStatus::Idle {
            continue;
        }
        let Some(h) = a.hook.as_deref().and_then(|h| s.beads.get(h)) else { continue };
        if h.status != BeadStatus::Open {
            continue;
        }
        if h.dispatch_attempts >= s.max_attempts(h.rig_id.as_deref()) {
            p.emit(vec![
                fail_at_cap(h),
                Action::UnhookAgent { agent_id: a.agent_id.clone(), reason: "max dispatch attempts".to_owned() },
            ]);
            continue;
        }
        if s.in_backoff(h, p.now) || s.has_open_blocker(&h.bead_id) || p.draining || p.tripped {
            continue;
        }
        let Some(rig_id) = h.rig_id.as_ref().or(a.rig_id.as_ref()).cloned() else { continue };
        p.claim(&a.agent_id);
        p.emit(vec![Action::DispatchAgent { agent_id: a.agent_id.clone(), bead_id: h.bead_id.clone(), rig_id, create: None }]);
    }
}

/// B4: an `in_progress` issue left by its agent for STALE_IN_PROGRESS is reopened (or failed at
/// its cap) and loses its assignee.
fn b4_agent_lost(p: &mut Pass<'_>) {
    let s = p.s;
    for b in p.beads_in_order() {
        if b.bead_type != BeadType::Issue
            || b.status != BeadStatus::InProgress
            || !older_than(Some(b.updated_at), STALE_IN_PROGRESS, p.now)
        {
            continue;
        }
        let held =
            p.hooked(&b.bead_id).any(|a| matches!(a.status, AgentStatus::Working | AgentStatus::Stalled) || s.heard(a, p.now));
        if held {
            continue;
        }
        let (to, reason) = if b.dispatch_attempts >= s.max_attempts(b.rig_id.as_deref()) {
            (BeadStatus::Failed, format!("agent lost, max dispatch attempts exhausted ({})", b.dispatch_attempts))
        } else {
            (BeadStatus::Open, "agent lost".to_owned())
        };
        p.emit(vec![
            Action::TransitionBead { bead_id: b.bead_id.clone(), from: BeadStatus::InProgress, to, reason },
            Action::ClearBeadAssignee { bead_id: b.bead_id.clone() },
        ]);
    }
}

/// B5: an `in_review` issue whose tracking MRs all ended ORPHANED_SOURCE ago is closed (one
/// merged) or reopened (all failed).
fn b5_orphaned_in_review(p: &mut Pass<'_>) {
    let s = p.s;
    for b in p.beads_in_order() {
        if b.bead_type != BeadType::Issue
            || b.status != BeadStatus::InReview
            || !older_than(Some(b.updated_at), ORPHANED_SOURCE, p.now)
        {
            continue;
        }
        let mrs = s.tracking_mrs(&b.bead_id);
        if mrs.is_empty() || mrs.iter().any(|m| m.status.is_live()) {
            continue;
        }
        let transition = |to: BeadStatus, reason: &str| Action::TransitionBead {
            bead_id: b.bead_id.clone(),
            from: BeadStatus::InReview,
            to,
            reason: reason.to_owned(),
        };
        if mrs.iter().any(|m| m.status == BeadStatus::Closed) {
            p.emit(vec![transition(BeadStatus::Closed, "MR merged (reconciler safety net)")]);
        } else {
            p.emit(vec![
                transition(BeadStatus::Open, "all reviews failed"),
                Action::ClearBeadAssignee { bead_id: b.bead_id.clone() },
            ]);
        }
    }
}

/// B6: announces the breaker opening (with a mayor notice) and closing, once each.
fn b6_breaker_announcement(p: &mut Pass<'_>) {
    let count = p.breaker_count;
    if p.tripped && !p.s.breaker.open {
        let message = format!(
            "Dispatch circuit breaker is OPEN: {count} dispatch failures in the last {}. All dispatch actions are paused \
             until failures clear.",
            long(p.s.config.circuit_breaker_window())
        );
        let set = Action::SetCircuitBreaker { open: true, count };
        let bead_id = p.new_id("msg");
        p.emit(vec![set, Action::NotifyMayor { message, bead_id }]);
    } else if !p.tripped && p.s.breaker.open {
        p.emit(vec![Action::SetCircuitBreaker { open: false, count }]);
    }
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`: B1/B3 backoff, the
/// breaker's closing, B4's staleness and B5's orphan age. (The A1/A4/B4 silence row is pushed by
/// `agents`.)
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    for b in s.beads.values() {
        let hooked_by_idle_polecat = || p.hooked(&b.bead_id).any(|a| a.role == Role::Polecat && a.status == AgentStatus::Idle);
        let dispatchable = b1_candidate(p, b) || (b.status == BeadStatus::Open && hooked_by_idle_polecat());
        if dispatchable
            && b.dispatch_attempts < s.max_attempts(b.rig_id.as_deref())
            && let Some(last) = b.last_dispatch_attempt_at
        {
            out.push(last.saturating_add(backoff(b.dispatch_attempts)));
        }
        if b.bead_type != BeadType::Issue {
            continue;
        }
        if b.status == BeadStatus::InProgress
            && !p.hooked(&b.bead_id).any(|a| matches!(a.status, AgentStatus::Working | AgentStatus::Stalled))
        {
            out.push(b.updated_at.saturating_add(STALE_IN_PROGRESS));
        }
        if b.status == BeadStatus::InReview
            && !s.tracking_mrs(&b.bead_id).iter().any(|m| matches!(m.status, BeadStatus::Open | BeadStatus::InProgress))
        {
            out.push(b.updated_at.saturating_add(ORPHANED_SOURCE));
        }
    }
    if p.tripped || s.breaker.open {
        let window = s.config.circuit_breaker_window();
        let least = s.beads.values().filter(|b| s.counts_for_breaker(b, p.now)).filter_map(|b| b.last_dispatch_attempt_at).min();
        if let Some(least) = least {
            out.push(least.saturating_add(window));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use serde_json::json;

    use super::super::agents::fixtures::*;
    use crate::action::Action;
    use crate::constants::{ORPHANED_SOURCE, STALE_IN_PROGRESS, backoff};
    use crate::event::{ActionResult, BeadCreated, CompletionStatus};
    use crate::next_wakeup;
    use crate::state::{AgentStatus, BeadStatus::*, BeadType, Liveness, Role, Severity};
    use crate::testing::*;

    // --- T1: sling, lazy dispatch, next wake-up ---

    #[test]
    fn t01_slung_issue_is_dispatched_to_a_new_polecat() {
        let mut town =
            given(fixture_f()).and([ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }).at(T0 + secs(10))]);
        town.when_reconciled_at(T0 + secs(10)).then_decides([dispatch_creating(
            "pc-1",
            "b1",
            "r1",
            Role::Polecat,
            Some("Toast"),
        )]);
        town.pass_at(T0 + secs(10));
        let pc1 = town.agent("pc-1");
        assert_eq!((pc1.status, pc1.hook.as_deref(), pc1.liveness), (AgentStatus::Working, Some("b1"), Liveness::Unseen));
        assert_eq!((pc1.last_activity_at, pc1.dispatch_attempts), (Some(T0 + secs(10)), 1));
        assert_eq!(pc1.current_dispatch_id.as_deref(), Some("6:0"));
        let b1 = town.bead("b1");
        assert_eq!((b1.status, b1.assignee.as_deref(), b1.dispatch_attempts), (InProgress, Some("pc-1"), 1));
        assert_eq!(b1.last_dispatch_attempt_at, Some(T0 + secs(10)));
        assert_eq!(town.state.id_seq, 1);
        town.when_reconciled_at(T0 + secs(10)).then_decides_nothing().and_wakes_at(T0 + secs(100));
    }

    // --- T2: reuse and claims ---

    #[test]
    fn t02_idle_polecat_is_reused_and_claimed_once() {
        let mut town = given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            resumed("p1").at(T0 + secs(5)),
            bead_created("b1", "r1").at(T0 + secs(20)),
            bead_created("b2", "r1").at(T0 + secs(20)),
        ]);
        town.when_reconciled_at(T0 + secs(20)).then_decides([
            dispatch_agent("p1", "b1", "r1"),
            dispatch_creating("pc-1", "b2", "r1", Role::Polecat, Some("Toast")),
        ]);
        town.pass_at(T0 + secs(20));
        assert_eq!(town.agent("p1").liveness, Liveness::Alive);
        assert_eq!(town.agent("pc-1").liveness, Liveness::Unseen);
    }

    // --- T4: backoff and cap ---

    /// F; p1 {idle, alive}; b1 {open, unassigned, attempts n, last attempt +0}.
    fn t4_bead_after(n: usize) -> Given {
        let mut actions = vec![dispatch_agent("p1", "b1", "r1"); n];
        actions.push(clear_bead_assignee("b1"));
        actions.push(transition_bead("b1", InProgress, Open, "fixture"));
        given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            resumed("p1").at(T0),
            bead_created("b1", "r1").at(T0),
            reconciled(actions).at(T0),
        ])
    }

    #[test]
    fn t04_backoff_holds_the_bead_until_each_threshold() {
        for n in 1..=4_u32 {
            let town = t4_bead_after(n as usize);
            let b1 = town.bead("b1");
            assert_eq!((b1.status, b1.assignee.as_deref(), b1.dispatch_attempts), (Open, None, n));
            assert_eq!(town.agent("p1").hook, None);
            town.when_reconciled_at(T0 + backoff(n) - 1).then_decides_nothing().and_wakes_at(T0 + backoff(n));
        }
    }

    #[test]
    fn t04_backoff_ends_at_each_threshold() {
        for (n, threshold) in [(1, secs(30)), (2, mins(1)), (3, mins(2)), (4, mins(5))] {
            t4_bead_after(n).when_reconciled_at(T0 + threshold).then_decides([dispatch_agent("p1", "b1", "r1")]);
        }
    }

    #[test]
    fn t04_fifth_attempt_fails_the_bead() {
        let mut town = t4_bead_after(5);
        town.when_reconciled_at(T0 + secs(1)).then_decides([transition_bead(
            "b1",
            Open,
            Failed,
            "max dispatch attempts exceeded (5)",
        )]);
        town.pass_at(T0 + secs(1));
        assert_eq!(town.bead("b1").failure_reason.as_ref().map(|f| f.code.as_str()), Some("reconciler"));
    }

    #[test]
    fn t04_rig_override_raises_the_cap() {
        let town = t4_bead_after(5).and([rig_configured("r1", json!({"max_dispatch_attempts": 7})).at(T0)]);
        town.when_reconciled_at(T0 + mins(10) - 1).then_decides_nothing().and_wakes_at(T0 + mins(10));
        town.when_reconciled_at(T0 + mins(10)).then_decides([dispatch_agent("p1", "b1", "r1")]);
        let town = t4_bead_after(7).and([rig_configured("r1", json!({"max_dispatch_attempts": 7})).at(T0)]);
        town.when_reconciled_at(T0 + secs(1)).then_decides([transition_bead(
            "b1",
            Open,
            Failed,
            "max dispatch attempts exceeded (7)",
        )]);
    }

    #[test]
    fn t04_one_attempt_below_the_override_cap_is_dispatched() {
        t4_bead_after(6)
            .and([rig_configured("r1", json!({"max_dispatch_attempts": 7})).at(T0)])
            .when_reconciled_at(T0 + mins(10))
            .then_decides([dispatch_agent("p1", "b1", "r1")]);
    }

    // --- T5: circuit breaker ---

    /// F; f1…f<n> {issue, failed, attempts 1, last attempt +1min}; @+2min `bead_created{b21}`.
    fn t5_town_with_failures(n: usize) -> Given {
        let mut actions = Vec::new();
        for i in 1..=n {
            let f = format!("f{i}");
            actions.push(dispatch_agent("p1", &f, "r1"));
            actions.push(transition_bead(&f, InProgress, Failed, "fixture"));
            actions.push(unhook_agent("p1", "fixture"));
        }
        actions.push(Action::DeleteAgent { agent_id: "p1".into(), reason: "fixture".into() });
        let mut events = vec![polecat_registered("p1").at(T0)];
        events.extend((1..=n).map(|i| bead_created(&format!("f{i}"), "r1").at(T0)));
        events.push(reconciled(actions).at(T0 + mins(1)));
        events.push(bead_created("b21", "r1").at(T0 + mins(2)));
        given(fixture_f()).and(events)
    }

    const BREAKER_NOTICE: &str = "Dispatch circuit breaker is OPEN: 20 dispatch failures in the last 30 minutes. All dispatch \
                                  actions are paused until failures clear.";

    #[test]
    fn t05_breaker_opens_once_notifies_the_mayor_and_closes_after_the_window() {
        let mut town = t5_town_with_failures(20);
        assert!(!town.state.agents.contains_key("p1"));
        assert_eq!(town.bead("f20").dispatch_attempts, 1);
        let passes = town.settle_at(T0 + mins(2));
        assert_eq!(
            passes,
            vec![
                vec![
                    Action::SetCircuitBreaker { open: true, count: 20 },
                    Action::NotifyMayor { message: BREAKER_NOTICE.into(), bead_id: "msg-1".into() },
                ],
                vec![Action::DeliverMail { bead_id: "msg-1".into(), agent_id: "mayor".into() }],
                vec![],
            ]
        );
        let msg1 = town.bead("msg-1");
        assert_eq!((msg1.bead_type, msg1.status, msg1.assignee.as_deref()), (BeadType::Message, Open, Some("mayor")));
        assert_eq!(msg1.labels, vec!["gt:message".to_owned(), "from:reconciler".to_owned()]);
        let deliver_id = format!("{}:0", town.state.last_seq);
        town.push(
            result_ev(ActionResult { bead_id: Some("msg-1".into()), ..action_result(&deliver_id, "deliver_mail", true) })
                .at(T0 + mins(2) + secs(1)),
        );
        assert_eq!(town.bead("msg-1").status, Closed);
        town.when_reconciled_at(T0 + mins(10)).then_decides_nothing().and_wakes_at(T0 + mins(31));
        town.when_reconciled_at(T0 + mins(31) - 1).then_decides_nothing();
        town.when_reconciled_at(T0 + mins(31)).then_decides([
            dispatch_creating("pc-2", "b21", "r1", Role::Polecat, Some("Toast")),
            Action::SetCircuitBreaker { open: false, count: 0 },
        ]);
    }

    #[test]
    fn t05_nineteen_failures_keep_the_breaker_closed() {
        let mut town = t5_town_with_failures(19);
        assert_eq!(
            town.settle_at(T0 + mins(2)),
            vec![vec![dispatch_creating("pc-1", "b21", "r1", Role::Polecat, Some("Toast"))], vec![]]
        );
    }

    // --- T14: refinery done without a hook (E3.1 recovery) ---

    /// F; b1 in_review (attempts 1, last +0); mr-1 {in_progress, assignee ref-r1, no pr_url}
    /// tracks b1; ref-r1 idle, unhooked; `id_seq` 10 (§T's mr-c is mr-1 here: `agent_done` names it).
    fn t14_unhooked_refinery() -> Given {
        given(fixture_f()).and([
            polecat_registered("w1").at(T0),
            agent_registered("ref-r1", Role::Refinery, Some("r1")).at(T0),
            bead_created("b1", "r1").at(T0),
            reconciled([dispatch_agent("w1", "b1", "r1")]).at(T0),
            agent_done("w1", "gt/w1/b1").at(T0),
            reconciled([
                Action::DeleteAgent { agent_id: "w1".into(), reason: "fixture".into() },
                transition_bead("mr-1", Open, InProgress, "popped for review"),
                hook_agent("ref-r1", "mr-1"),
                dispatch_agent("ref-r1", "mr-1", "r1"),
                unhook_agent("ref-r1", "fixture"),
                consume_ids_to(10),
            ])
            .at(T0),
        ])
    }

    #[test]
    fn t14_unhooked_refinery_done_dispatches_the_source_mails_and_batches_triage() {
        let mut town = t14_unhooked_refinery();
        let mr = town.bead("mr-1");
        assert_eq!((mr.status, mr.assignee.as_deref(), mr.pr_url()), (InProgress, Some("ref-r1"), None));
        assert_eq!(town.bead("b1").status, InReview);
        assert_eq!(town.agent("ref-r1").hook, None);
        assert_eq!(town.state.id_seq, 10);
        town.push(ev(crate::event::AgentDone { summary: Some("LGTM".into()), ..done("ref-r1", "gt/w1/b1") }).at(T0 + hours(1)));
        assert_eq!(town.bead("mr-1").status, Failed);
        assert_eq!((town.bead("b1").status, town.bead("b1").assignee.as_deref()), (Open, None));
        assert_eq!(town.bead("esc-11").escalation.as_ref().map(|e| e.severity), Some(Severity::High));
        assert!(town.bead("tri-12").is_triage_request());
        assert_eq!(town.bead("msg-13").assignee.as_deref(), Some("mayor"));
        town.when_reconciled_at(T0 + hours(1)).then_decides([
            dispatch_creating("pc-14", "b1", "r1", Role::Polecat, Some("Toast")),
            Action::DeliverMail { bead_id: "msg-13".into(), agent_id: "mayor".into() },
            Action::CreateTriageBatch { bead_id: "tb-15".into(), rig_id: "r1".into(), request_ids: vec!["tri-12".into()] },
        ]);
    }

    // --- T22: agent lost (B4) ---

    /// b1 {in_progress, updated_at t0, attempts n} hooked by pc-1; @t0+1min `agent_completed{pc-1}`.
    fn t22_left_in_progress(attempts: usize) -> Given {
        let mut actions = vec![dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))];
        actions.extend(vec![dispatch_agent("pc-1", "b1", "r1"); attempts - 1]);
        given(fixture_f()).and([
            bead_created("b1", "r1").at(T0),
            reconciled(actions).at(T0),
            agent_completed("pc-1", CompletionStatus::Completed, None).at(T0 + mins(1)),
        ])
    }

    #[test]
    fn t22_bead_left_in_progress_is_reopened_after_stale_in_progress() {
        let town = t22_left_in_progress(1);
        assert_eq!((town.agent("pc-1").status, town.agent("pc-1").hook.as_deref()), (AgentStatus::Idle, None));
        assert_eq!((town.bead("b1").status, town.bead("b1").updated_at), (InProgress, T0));
        town.when_reconciled_at(T0 + STALE_IN_PROGRESS)
            .then_decides([transition_bead("b1", InProgress, Open, "agent lost"), clear_bead_assignee("b1")]);
    }

    #[test]
    fn t22_bead_left_in_progress_is_kept_until_stale_in_progress() {
        t22_left_in_progress(1)
            .when_reconciled_at(T0 + STALE_IN_PROGRESS - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + STALE_IN_PROGRESS);
    }

    #[test]
    fn t22_bead_lost_at_its_cap_fails() {
        t22_left_in_progress(5).when_reconciled_at(T0 + STALE_IN_PROGRESS).then_decides([
            transition_bead("b1", InProgress, Failed, "agent lost, max dispatch attempts exhausted (5)"),
            clear_bead_assignee("b1"),
        ]);
    }

    #[test]
    fn t22_bead_lost_one_below_its_cap_is_reopened() {
        t22_left_in_progress(4)
            .when_reconciled_at(T0 + STALE_IN_PROGRESS)
            .then_decides([transition_bead("b1", InProgress, Open, "agent lost"), clear_bead_assignee("b1")]);
    }

    // --- T23: orphaned in_review (B5 part) ---

    /// b1 {in_review, updated_at t0} tracked by mr-1 and mr-2 with the given final statuses.
    fn t23_reviews_ended(first: crate::state::BeadStatus, second: crate::state::BeadStatus) -> Given {
        given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            bead_created("b1", "r1").at(T0),
            reconciled([dispatch_agent("p1", "b1", "r1")]).at(T0),
            agent_done("p1", "gt/p1/b1").at(T0),
            reconciled([hook_agent("p1", "b1")]).at(T0),
            agent_done("p1", "gt/p1/b1-2").at(T0),
            reconciled([transition_bead("mr-1", Open, first, "fixture"), transition_bead("mr-2", Open, second, "fixture")])
                .at(T0),
        ])
    }

    #[test]
    fn t23_in_review_issue_whose_reviews_all_failed_is_reopened() {
        let town = t23_reviews_ended(Failed, Failed);
        assert_eq!((town.bead("b1").status, town.bead("b1").updated_at), (InReview, T0));
        town.when_reconciled_at(T0 + mins(1)).then_decides_nothing().and_wakes_at(T0 + ORPHANED_SOURCE);
        town.when_reconciled_at(T0 + ORPHANED_SOURCE)
            .then_decides([transition_bead("b1", InReview, Open, "all reviews failed"), clear_bead_assignee("b1")]);
    }

    #[test]
    fn t23_in_review_issue_is_kept_until_orphaned_source() {
        t23_reviews_ended(Failed, Failed)
            .when_reconciled_at(T0 + ORPHANED_SOURCE - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + ORPHANED_SOURCE);
    }

    #[test]
    fn t23_in_review_issue_with_a_merged_review_is_closed() {
        t23_reviews_ended(Failed, Closed).when_reconciled_at(T0 + ORPHANED_SOURCE).then_decides([transition_bead(
            "b1",
            InReview,
            Closed,
            "MR merged (reconciler safety net)",
        )]);
    }

    #[test]
    fn t23_in_review_issue_without_any_mr_is_never_repaired_by_b5() {
        let town = given(fixture_f())
            .and([bead_created("b1", "r1").at(T0), reconciled([transition_bead("b1", Open, InReview, "fixture")]).at(T0)]);
        town.when_reconciled_at(T0 + ORPHANED_SOURCE - 1).then_decides_nothing().and_wakes_at(T0 + ORPHANED_SOURCE);
        town.when_reconciled_at(T0 + ORPHANED_SOURCE).then_decides_nothing();
        town.when_reconciled_at(T0 + hours(1)).then_decides_nothing();
    }

    // --- T24: hook on sling and stale assignees (B3, B2) ---

    fn f_with_p1_alive() -> Given {
        given(fixture_f()).and([polecat_registered("p1").at(T0), resumed("p1").at(T0)])
    }

    #[test]
    fn t24a_slung_bead_hooked_to_an_agent_is_dispatched_to_it() {
        let town = f_with_p1_alive().and([ev(BeadCreated {
            title: "Docs".into(),
            agent_id: Some("p1".into()),
            ..bead("b5", Some("r1"))
        })
        .at(T0)]);
        assert_eq!(town.agent("p1").hook.as_deref(), Some("b5"));
        assert_eq!(town.bead("b5").status, Open);
        town.when_reconciled_at(T0).then_decides([dispatch_agent("p1", "b5", "r1")]);
    }

    #[test]
    fn t24b_stale_assignee_is_cleared_then_the_bead_is_dispatched() {
        let mut town = f_with_p1_alive().and([
            polecat_registered("p2").at(T0),
            resumed("p2").at(T0),
            bead_created("b7", "r1").at(T0),
            bead_created_hooked("b6", "p2").at(T0),
            reconciled([unhook_agent("p2", "fixture"), hook_agent("p2", "b7"), dispatch_agent("p2", "b7", "r1")]).at(T0),
        ]);
        let p2 = town.agent("p2");
        assert_eq!((p2.status, p2.hook.as_deref(), p2.liveness), (AgentStatus::Working, Some("b7"), Liveness::Alive));
        assert_eq!((town.bead("b6").status, town.bead("b6").assignee.as_deref()), (Open, Some("p2")));
        assert_eq!(town.settle_at(T0), vec![vec![clear_bead_assignee("b6")], vec![dispatch_agent("p1", "b6", "r1")], vec![]]);
    }

    #[test]
    fn t24c_landing_mr_assigned_to_system_is_untouched_by_b1_and_b2() {
        let town = given(fixture_f()).and([
            convoy_created("cv3", "Release", false, vec![convoy_bead("c5", &[])]).at(T0),
            reconciled([Action::CreateLandingMr {
                convoy_id: "cv3".into(),
                rig_id: "r1".into(),
                feature_branch: "convoy/release/cv3/head".into(),
                target_branch: "main".into(),
                bead_id: "mr-31".into(),
            }])
            .at(T0),
            polecat_registered("p1").at(T0),
            reconciled([dispatch_agent("p1", "c5", "r1")]).at(T0),
        ]);
        let mr = town.bead("mr-31");
        assert_eq!((mr.status, mr.assignee.as_deref()), (Open, Some("system")));
        assert_eq!(run_group(&town, T0 + hours(1), super::run), Vec::<Action>::new());
    }

    // --- T25: never dispatched; staged convoys (B1) ---

    #[test]
    fn t25a_blocked_issue_waits_for_its_blocker() {
        let mut town = f_with_p1_alive().and([
            bead_created("b8", "r1").at(T0),
            ev(BeadCreated { depends_on: vec!["b8".into()], ..bead("b7", Some("r1")) }).at(T0),
        ]);
        town.when_reconciled_at(T0).then_decides([dispatch_agent("p1", "b8", "r1")]);
        town.pass_at(T0);
        town.push(bead_status_changed("b8", Closed).at(T0 + mins(1)));
        town.when_reconciled_at(T0 + mins(1)).then_decides([dispatch_agent("p1", "b7", "r1")]);
    }

    #[test]
    fn t25b_held_triage_rigless_and_non_issue_beads_are_never_dispatched() {
        let mut held = bead("h1", Some("r1"));
        held.labels = vec!["gt:held".into()];
        let town = f_with_p1_alive().and([
            ev(held).at(T0),
            ev(bead("nr1", None)).at(T0),
            escalation_raised("e1", Severity::Low, "Flaky CI", Some("r1")).at(T0),
            mail_sent("m1", "p1", "operator").at(T0),
            polecat_registered("w1").at(T0),
            bead_created("bx", "r1").at(T0),
            reconciled([dispatch_agent("w1", "bx", "r1")]).at(T0),
            agent_done("w1", "gt/w1/bx").at(T0),
        ]);
        assert!(town.bead("tri-1").is_triage_request());
        assert_eq!(town.bead("mr-2").bead_type, BeadType::MergeRequest);
        for now in [T0, T0 + hours(1)] {
            let dispatches: Vec<Action> =
                run_group(&town, now, super::run).into_iter().filter(|a| matches!(a, Action::DispatchAgent { .. })).collect();
            assert_eq!(dispatches, Vec::<Action>::new(), "B1 at {now}");
        }
    }

    #[test]
    fn t25c_staged_convoy_is_dispatched_only_once_started() {
        let town = f_with_p1_alive().and([convoy_created(
            "cv1",
            "Login",
            true,
            vec![convoy_bead("c1", &[]), convoy_bead("c2", &["c1"])],
        )
        .at(T0)]);
        assert_eq!(town.bead("cv1").convoy.as_ref().and_then(|c| c.feature_branch.as_deref()), Some("convoy/login/cv1/head"));
        town.when_reconciled_at(T0).then_decides_nothing();
        town.and([convoy_started("cv1").at(T0 + mins(1))])
            .when_reconciled_at(T0 + mins(1))
            .then_decides([dispatch_agent("p1", "c1", "r1")]);
    }

    #[test]
    fn b1_max_polecats_per_rig_counts_dispatches_of_the_same_pass() {
        given(fixture_f())
            .and([
                town_configured_with(json!({"max_polecats_per_rig": 1})).at(T0),
                bead_created("b1", "r1").at(T0),
                bead_created("b2", "r1").at(T0),
            ])
            .when_reconciled_at(T0)
            .then_decides([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]);
    }

    #[test]
    fn deadlines_name_the_backoff_of_a_hooked_open_bead() {
        let town = t4_bead_after(2).and([bead_hooked("b1", "p1").at(T0)]);
        assert_eq!(next_wakeup(&town.state, T0), Some(T0 + backoff(2)));
    }
}
