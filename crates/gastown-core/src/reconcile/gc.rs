//! X1–X2 — garbage collection (group X): delete long-idle workers, prune old nudges.

use super::pass::Pass;
use crate::action::Action;
use crate::constants::NUDGE_RETENTION;
use crate::state::{AgentStatus, Liveness, Role};
use crate::time::{Millis, older_than, short};

/// Runs the group's rules for the pass (R0.1: X1 over every agent, then X2).
pub(super) fn run(p: &mut Pass<'_>) {
    x1_delete_idle_agents(p);
    x2_prune_nudges(p);
}

/// X1: each `gc_eligible` agent not claimed by a dispatch of this pass is deleted.
fn x1_delete_idle_agents(p: &mut Pass<'_>) {
    let s = p.s;
    let reason = format!("GC: idle > {}", short(s.config.gc_retention()));
    for a in s.agents.values() {
        if s.gc_eligible(a, p.now) && !p.is_claimed(&a.agent_id) {
            p.emit(vec![Action::DeleteAgent { agent_id: a.agent_id.clone(), reason: reason.clone() }]);
        }
    }
}

/// X2: when some nudge was created NUDGE_RETENTION or more ago, every such nudge is pruned.
fn x2_prune_nudges(p: &mut Pass<'_>) {
    let s = p.s;
    if s.nudges.values().any(|n| older_than(Some(n.created_at), NUDGE_RETENTION, p.now)) {
        p.emit(vec![Action::PruneNudges { before: p.now.saturating_sub(NUDGE_RETENTION) }]);
    }
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`: X1 (retention of
/// idle unhooked workers) and X2 (the oldest nudge's retention).
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    let retention = s.config.gc_retention();
    for a in s.agents.values() {
        if matches!(a.role, Role::Polecat | Role::Refinery)
            && matches!(a.status, AgentStatus::Idle | AgentStatus::Dead)
            && a.hook.is_none()
            && a.liveness != Liveness::Alive
            && let Some(last) = a.last_activity_at
        {
            out.push(last.saturating_add(retention));
        }
    }
    if let Some(oldest) = s.nudges.values().map(|n| n.created_at).min() {
        out.push(oldest.saturating_add(NUDGE_RETENTION));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::super::agents::fixtures::*;
    use crate::action::Action;
    use crate::event::LostCause;
    use crate::state::{BeadStatus::*, NudgeMode};
    use crate::testing::*;

    /// p9 {idle, unhooked, lost, last_activity_at t0}; p10 {idle, unhooked, alive, last_activity_at
    /// t0}; bx {in_progress, assignee p9, updated_at t0+23h58min}; by {in_review, assignee p9}; bz
    /// {closed, assignee p9}; nudge n1 {created t0} (for p10).
    fn t33_town() -> Given {
        given(fixture_f()).and([
            polecat_registered("p9").at(T0),
            polecat_registered("p10").at(T0),
            resumed("p10").at(T0),
            heartbeat_lost("p9", LostCause::Expired).at(T0),
            bead_created_hooked("bz", "p9").at(T0),
            bead_status_changed("bz", Closed).at(T0),
            bead_created_hooked("by", "p9").at(T0),
            reconciled([transition_bead("by", Open, InReview, "fixture"), unhook_agent("p9", "fixture")]).at(T0),
            bead_created_hooked("bx", "p9").at(T0),
            reconciled([unhook_agent("p9", "fixture")]).at(T0),
            nudge_queued("n1", "p10", "hello", NudgeMode::Immediate).at(T0),
            reconciled([transition_bead("bx", Open, InProgress, "fixture")]).at(T0 + hours(23) + mins(58)),
        ])
    }

    #[test]
    fn t33_idle_lost_agent_is_collected_and_old_nudges_pruned() {
        let mut town = t33_town();
        let p9 = town.agent("p9");
        assert_eq!((p9.hook.as_deref(), p9.last_activity_at), (None, Some(T0)));
        assert_eq!((town.bead("bx").status, town.bead("bx").assignee.as_deref()), (InProgress, Some("p9")));
        town.when_reconciled_at(T0 + hours(24)).then_decides([
            Action::DeleteAgent { agent_id: "p9".into(), reason: "GC: idle > 24h".into() },
            Action::PruneNudges { before: T0 },
        ]);
        town.pass_at(T0 + hours(24));
        assert_eq!((town.bead("bx").status, town.bead("bx").assignee.as_deref()), (Open, None));
        assert_eq!((town.bead("by").status, town.bead("by").assignee.as_deref()), (InReview, None));
        assert_eq!((town.bead("bz").status, town.bead("bz").assignee.as_deref()), (Closed, Some("p9")));
        assert!(town.state.agents.contains_key("p10"));
        assert!(!town.state.nudges.contains_key("n1"));
        town.when_reconciled_at(T0 + hours(24)).then_decides([dispatch_agent("p10", "bx", "r1")]);
    }

    #[test]
    fn t33_agent_and_nudge_are_kept_until_the_retention_ends() {
        t33_town().when_reconciled_at(T0 + hours(24) - 1).then_decides_nothing().and_wakes_at(T0 + hours(24));
    }

    #[test]
    fn t33_agent_claimed_by_a_dispatch_is_not_collected() {
        given(fixture_f())
            .and([
                polecat_registered("p9").at(T0),
                heartbeat_lost("p9", LostCause::Expired).at(T0),
                bead_created("b1", "r1").at(T0 + hours(24)),
            ])
            .when_reconciled_at(T0 + hours(24))
            .then_decides([dispatch_agent("p9", "b1", "r1")]);
    }
}
