//! F1 — drain timeout (group F): draining ends DRAIN_TIMEOUT after it started.

use super::pass::Pass;
use crate::action::Action;
use crate::constants::DRAIN_TIMEOUT;
use crate::time::{Millis, older_than};

/// Runs the group's rules for the pass.
pub(super) fn run(p: &mut Pass<'_>) {
    if let Some(d) = &p.s.draining
        && older_than(Some(d.since), DRAIN_TIMEOUT, p.now)
    {
        p.emit(vec![Action::EndDrain]);
    }
}

/// Pushes the R9 deadline of F1 when draining: `since` + DRAIN_TIMEOUT.
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    if let Some(d) = &p.s.draining {
        out.push(d.since.saturating_add(DRAIN_TIMEOUT));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::super::agents::fixtures::*;
    use crate::action::Action;
    use crate::constants::DRAIN_TIMEOUT;
    use crate::event::{CompletionStatus, LostCause};
    use crate::state::{AgentStatus, BeadStatus::*, Liveness, Role};
    use crate::testing::*;

    /// T36's town before the eviction (§T's mr-d is mr-1 here, the id `agent_done` gives it):
    /// `id_seq` 60; ref-r1 idle alive hooked mr-1 {in_progress, no pr_url, updated_at t0, attempts
    /// 1}; b1 {open, never dispatched}; pc-1 working, lost, last_activity_at t0+20min, hooked b2
    /// {created after b1, in_progress, attempts 1, last attempt t0+20min}.
    fn t36_town() -> Given {
        given(fixture_f()).and([
            agent_registered("ref-r1", Role::Refinery, Some("r1")).at(T0),
            resumed("ref-r1").at(T0),
            polecat_registered("w0").at(T0),
            bead_created("b0", "r1").at(T0),
            reconciled([dispatch_agent("w0", "b0", "r1")]).at(T0),
            agent_done("w0", "gt/w0/b0").at(T0),
            reconciled([
                Action::DeleteAgent { agent_id: "w0".into(), reason: "fixture".into() },
                transition_bead("mr-1", Open, InProgress, "popped for review"),
                hook_agent("ref-r1", "mr-1"),
                dispatch_agent("ref-r1", "mr-1", "r1"),
                transition_agent("ref-r1", AgentStatus::Working, AgentStatus::Idle, "fixture"),
            ])
            .at(T0),
            bead_created("b1", "r1").at(T0),
            bead_created("b2", "r1").at(T0 + mins(20)),
            reconciled([dispatch_creating("pc-1", "b2", "r1", Role::Polecat, Some("Toast")), consume_ids_to(60)])
                .at(T0 + mins(20)),
            heartbeat_lost("pc-1", LostCause::Expired).at(T0 + mins(20)),
        ])
    }

    fn t36_draining() -> Given {
        t36_town().and([container_eviction(Some("c1")).at(T0 + mins(31))])
    }

    /// The pass that follows the end of the drain (B1 twice, then Q7).
    fn resumed_work() -> Vec<Action> {
        vec![
            dispatch_agent("pc-1", "b1", "r1"),
            dispatch_creating("pc-61", "b2", "r1", Role::Polecat, Some("Maple")),
            transition_bead("mr-1", Open, InProgress, "popped for review"),
            hook_agent("ref-r1", "mr-1"),
            dispatch_agent("ref-r1", "mr-1", "r1"),
        ]
    }

    #[test]
    fn t36_draining_suppresses_dispatch_and_ends_after_the_drain_timeout() {
        let mut town = t36_draining();
        let (ref_r1, pc1) = (town.agent("ref-r1"), town.agent("pc-1"));
        assert_eq!((ref_r1.status, ref_r1.hook.as_deref(), ref_r1.liveness), (AgentStatus::Idle, Some("mr-1"), Liveness::Alive));
        assert_eq!((pc1.status, pc1.liveness, pc1.last_activity_at), (AgentStatus::Working, Liveness::Lost, Some(T0 + mins(20))));
        assert_eq!((town.bead("mr-1").status, town.bead("mr-1").updated_at), (InProgress, T0));
        assert_eq!(town.state.id_seq, 60);
        assert_eq!(
            town.settle_at(T0 + mins(31)),
            vec![
                vec![
                    transition_bead("mr-1", InProgress, Open, "stuck review, no working agent"),
                    unhook_agent("ref-r1", "stuck review cleanup"),
                ],
                vec![],
            ]
        );
        town.push(agent_completed("pc-1", CompletionStatus::Completed, Some("container eviction")).at(T0 + mins(33)));
        assert_eq!((town.bead("b2").status, town.bead("b2").assignee.as_deref()), (Open, None));
        town.when_reconciled_at(T0 + mins(31) + DRAIN_TIMEOUT - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + mins(31) + DRAIN_TIMEOUT);
        assert_eq!(town.settle_at(T0 + mins(31) + DRAIN_TIMEOUT), vec![vec![Action::EndDrain], resumed_work(), vec![]]);
        assert_eq!(town.state.draining, None);
    }

    #[test]
    fn t36_resumed_heartbeat_from_a_new_container_ends_the_drain_at_once() {
        let mut town = t36_draining();
        town.settle_at(T0 + mins(31));
        town.push(agent_completed("pc-1", CompletionStatus::Completed, Some("container eviction")).at(T0 + mins(33)));
        town.push(resumed_on("ref-r1", "c2").at(T0 + mins(35)));
        assert_eq!(town.state.draining, None);
        town.when_reconciled_at(T0 + mins(35)).then_decides(resumed_work());
    }
}
