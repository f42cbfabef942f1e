//! H1–H4 — housekeeping (group H): redeliver mail and nudges, re-escalate unacknowledged
//! escalations, and batch open triage requests for a triage agent.

use super::pass::Pass;
use crate::action::Action;
use crate::constants::{ESCALATION_STEP, MAIL_REDELIVER_AFTER, MAX_RE_ESCALATIONS, NUDGE_REDELIVER_AFTER, TRIAGE_BATCH_COOLDOWN};
use crate::state::{AgentStatus, BeadStatus, BeadType, Severity, TownState};
use crate::time::{Millis, older_than, within};

/// Runs the group's rules for the pass (R0.1: each rule over every entity, then the next rule).
pub(super) fn run(p: &mut Pass<'_>) {
    h1_redeliver_mail(p);
    h2_redeliver_nudges(p);
    h3_re_escalate(p);
    h4_triage_batch(p);
}

/// H1: an open mail to an existing `working` agent, not handed over within
/// MAIL_REDELIVER_AFTER, is handed over (again).
fn h1_redeliver_mail(p: &mut Pass<'_>) {
    let s = p.s;
    for b in p.beads_in_order() {
        if b.bead_type != BeadType::Message || b.status != BeadStatus::Open {
            continue;
        }
        let Some(agent) = b.assignee.as_deref().and_then(|id| s.agents.get(id)) else { continue };
        let attempted = b.mail.as_ref().and_then(|m| m.delivery_attempted_at);
        if agent.status == AgentStatus::Working && older_than(attempted, MAIL_REDELIVER_AFTER, p.now) {
            p.emit(vec![Action::DeliverMail { bead_id: b.bead_id.clone(), agent_id: agent.agent_id.clone() }]);
        }
    }
}

/// H2: an undelivered, unexpired nudge to a `working` or `stalled` agent, not handed over within
/// NUDGE_REDELIVER_AFTER, is handed over (again).
fn h2_redeliver_nudges(p: &mut Pass<'_>) {
    let s = p.s;
    for n in s.nudges_in_order() {
        if n.delivered_at.is_some() || n.expires_at <= p.now || !older_than(n.handed_at, NUDGE_REDELIVER_AFTER, p.now) {
            continue;
        }
        let Some(agent) = s.agents.get(&n.agent_id) else { continue };
        if matches!(agent.status, AgentStatus::Working | AgentStatus::Stalled) {
            p.emit(vec![Action::DeliverNudge { nudge_id: n.nudge_id.clone(), agent_id: agent.agent_id.clone() }]);
        }
    }
}

/// H3: an open, unacknowledged escalation moves one severity step per ESCALATION_STEP of age, at
/// most MAX_RE_ESCALATIONS times; a step to medium or above mails the mayor.
fn h3_re_escalate(p: &mut Pass<'_>) {
    for b in p.beads_in_order() {
        let Some(e) = b.escalation.as_ref() else { continue };
        if b.bead_type != BeadType::Escalation || b.status != BeadStatus::Open || e.acknowledged {
            continue;
        }
        let steps = p.now.saturating_sub(b.created_at).div_euclid(ESCALATION_STEP);
        let k = steps.min(i64::from(MAX_RE_ESCALATIONS));
        if k <= i64::from(e.re_escalation_count) {
            continue;
        }
        let severity = e.severity.next();
        let mail_id = (severity >= Severity::Medium).then(|| p.new_id("msg"));
        p.emit(vec![Action::ReEscalate { bead_id: b.bead_id.clone(), severity, mail_id }]);
    }
}

/// Open triage requests in C3 order.
fn open_triage_requests<'s>(p: &Pass<'s>) -> Vec<&'s crate::state::Bead> {
    p.beads_in_order().into_iter().filter(|b| b.is_triage_request() && b.status == BeadStatus::Open).collect()
}

/// H4: open triage requests and no live (or recently failed) patrol triage batch → one batch of
/// every open request, in the rig of the oldest request (else the first rig).
fn h4_triage_batch(p: &mut Pass<'_>) {
    let s = p.s;
    let requests = open_triage_requests(p);
    let Some(oldest) = requests.first() else { return };
    let batches = || s.beads.values().filter(|b| TownState::is_triage_batch(b));
    if batches().any(|b| matches!(b.status, BeadStatus::Open | BeadStatus::InProgress)) {
        return;
    }
    if batches().any(|b| b.status == BeadStatus::Failed && within(b.closed_at, TRIAGE_BATCH_COOLDOWN, p.now)) {
        return;
    }
    let Some(first_rig) = s.rigs.keys().next() else { return };
    let rig_id = oldest.rig_id.clone().unwrap_or_else(|| first_rig.clone());
    let request_ids = requests.iter().map(|r| r.bead_id.clone()).collect();
    let bead_id = p.new_id("tb");
    p.emit(vec![Action::CreateTriageBatch { bead_id, rig_id, request_ids }]);
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`: H1 and H2
/// redelivery, H3's next step and H4's cooldown after a failed batch.
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    for b in s.beads.values() {
        match b.bead_type {
            BeadType::Message if b.status == BeadStatus::Open => {
                let to_working =
                    b.assignee.as_deref().and_then(|id| s.agents.get(id)).is_some_and(|a| a.status == AgentStatus::Working);
                if let (true, Some(at)) = (to_working, b.mail.as_ref().and_then(|m| m.delivery_attempted_at)) {
                    out.push(at.saturating_add(MAIL_REDELIVER_AFTER));
                }
            }
            BeadType::Escalation if b.status == BeadStatus::Open => {
                if let Some(e) = b.escalation.as_ref().filter(|e| !e.acknowledged && e.re_escalation_count < MAX_RE_ESCALATIONS) {
                    out.push(b.created_at.saturating_add(ESCALATION_STEP.saturating_mul(i64::from(e.re_escalation_count) + 1)));
                }
            }
            _ => {}
        }
    }
    for n in s.nudges.values() {
        if let (None, Some(handed)) = (n.delivered_at, n.handed_at) {
            out.push(handed.saturating_add(NUDGE_REDELIVER_AFTER));
        }
    }
    if !open_triage_requests(p).is_empty() {
        for b in s.beads.values().filter(|b| TownState::is_triage_batch(b) && b.status == BeadStatus::Failed) {
            if let Some(closed) = b.closed_at {
                out.push(closed.saturating_add(TRIAGE_BATCH_COOLDOWN));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::super::agents::fixtures::*;
    use crate::action::Action;
    use crate::constants::{ESCALATION_STEP, MAIL_REDELIVER_AFTER};
    use crate::event::ActionResult;
    use crate::next_wakeup;
    use crate::state::{AgentStatus, BeadStatus::*, NudgeMode, Role, Severity};
    use crate::testing::*;

    // --- T34: escalations (H3) ---

    /// F without [2] (no rig); @t0 `escalation_raised{e1, low, "Flaky CI"}`.
    fn t34_town() -> Given {
        given([
            town_configured().at(T0),
            agent_registered("mayor", Role::Mayor, None).at(T0),
            resumed("mayor").at(T0),
            escalation_raised("e1", Severity::Low, "Flaky CI", None).at(T0),
        ])
    }

    #[test]
    fn t34_unacknowledged_escalation_steps_up_and_mails_the_mayor() {
        let mut town = t34_town();
        let e1 = town.bead("e1");
        assert_eq!((e1.status, e1.labels.clone()), (Open, vec!["gt:escalation".to_owned(), "severity:low".to_owned()]));
        assert!(town.bead("tri-1").is_triage_request());
        assert_eq!(town.state.beads.len(), 2, "no mail for a low escalation");
        town.when_reconciled_at(T0).then_decides_nothing();
        let passes = town.settle_at(T0 + ESCALATION_STEP);
        assert_eq!(
            passes,
            vec![
                vec![Action::ReEscalate { bead_id: "e1".into(), severity: Severity::Medium, mail_id: Some("msg-2".into()) }],
                vec![Action::DeliverMail { bead_id: "msg-2".into(), agent_id: "mayor".into() }],
                vec![],
            ]
        );
        assert_eq!(next_wakeup(&town.state, T0 + hours(4)), Some(T0 + hours(4) + MAIL_REDELIVER_AFTER));
        let deliver_id = format!("{}:0", town.state.last_seq);
        town.push(
            result_ev(ActionResult { bead_id: Some("msg-2".into()), ..action_result(&deliver_id, "deliver_mail", true) })
                .at(T0 + hours(4)),
        );
        assert_eq!(town.bead("msg-2").status, Closed);
        assert_eq!(next_wakeup(&town.state, T0 + hours(4)), Some(T0 + hours(8)));
        town.push(escalation_acknowledged("e1").at(T0 + hours(5)));
        assert_eq!(town.bead("e1").status, Closed);
        town.when_reconciled_at(T0 + hours(8)).then_decides_nothing();
    }

    #[test]
    fn t34_escalation_is_kept_until_its_first_step() {
        t34_town().when_reconciled_at(T0 + ESCALATION_STEP - 1).then_decides_nothing().and_wakes_at(T0 + ESCALATION_STEP);
    }

    #[test]
    fn t34_escalation_far_behind_moves_one_step_per_pass_up_to_three() {
        let mut town = t34_town();
        let passes = town.settle_at(T0 + hours(20));
        let steps: Vec<(Severity, Option<String>)> = passes
            .iter()
            .flatten()
            .filter_map(|a| match a {
                Action::ReEscalate { severity, mail_id, .. } => Some((*severity, mail_id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            steps,
            vec![
                (Severity::Medium, Some("msg-2".into())),
                (Severity::High, Some("msg-3".into())),
                (Severity::Critical, Some("msg-4".into())),
            ]
        );
        assert_eq!(town.bead("e1").escalation.as_ref().map(|e| e.re_escalation_count), Some(3));
    }

    // --- T35: triage batch and resolution (H4, E3.4, H2) ---

    /// F; pc-1 working alive, last_event_at t, hooked b1 {in_progress, last attempt t−1h}; p2 idle
    /// alive; tri-1 {open, stuck_agent, agent pc-1, hooked b1}; `id_seq` 1. Here t = T0 + 1h.
    fn t35_town() -> Given {
        let t = T0 + hours(1);
        given(fixture_f()).and([
            polecat_registered("p2").at(T0),
            bead_created("b1", "r1").at(T0),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0),
            resumed("pc-1").at(T0 + secs(5)),
            resumed("p2").at(T0 + secs(5)),
            agent_activity("pc-1", t, &[]).at(t),
            reconciled([Action::CreateTriageRequest {
                agent_id: "pc-1".into(),
                triage_type: "stuck_agent".into(),
                reason: "GUPP escalation".into(),
                bead_id: "tri-1".into(),
            }])
            .at(t),
        ])
    }

    #[test]
    fn t35_triage_batch_is_created_dispatched_resolved_and_nudges_delivered() {
        let t = T0 + hours(1);
        let mut town = t35_town();
        assert_eq!(town.state.id_seq, 1);
        assert_eq!(town.bead("tri-1").status, Open);
        assert_eq!(
            town.settle_at(t),
            vec![
                vec![Action::CreateTriageBatch {
                    bead_id: "tb-2".into(),
                    rig_id: "r1".into(),
                    request_ids: vec!["tri-1".into()]
                }],
                vec![dispatch_agent("p2", "tb-2", "r1")],
                vec![],
            ]
        );
        town.push(triage_resolved("tri-1", "RESTART", "p2").at(t + mins(1)));
        assert_eq!(town.bead("tri-1").status, Closed);
        let pc1 = town.agent("pc-1");
        assert_eq!((pc1.status, pc1.hook.as_deref()), (AgentStatus::Idle, Some("b1")));
        assert_eq!(town.bead("b1").status, Open);
        town.when_reconciled_at(t + mins(1)).then_decides([dispatch_agent("pc-1", "b1", "r1")]);
        town.pass_at(t + mins(1));
        town.push(agent_done("p2", "gt/p2/tb-2").at(t + mins(2)));
        assert_eq!(town.bead("tb-2").status, Closed);
        assert!(town.state.beads.keys().all(|id| !id.starts_with("mr-")), "no MR for a triage batch");
        town.push(nudge_queued("ndg-rebase", "pc-1", "rebase first", NudgeMode::WaitIdle).at(t + mins(2)));
        town.when_reconciled_at(t + mins(2))
            .then_decides([Action::DeliverNudge { nudge_id: "ndg-rebase".into(), agent_id: "pc-1".into() }]);
    }

    #[test]
    fn t35_no_batch_while_one_is_in_flight() {
        let t = T0 + hours(1);
        let mut town = t35_town();
        town.settle_at(t);
        town.push(
            reconciled([Action::CreateTriageRequest {
                agent_id: "p2".into(),
                triage_type: "stuck_agent".into(),
                reason: "GUPP escalation".into(),
                bead_id: "tri-3".into(),
            }])
            .at(t),
        );
        assert_eq!(town.bead("tri-3").status, Open);
        assert_eq!(run_group(&town, t, super::run), Vec::<Action>::new());
    }
}
