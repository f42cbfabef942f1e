//! G1–G3 — GUPP (group G, skipped while draining): warn, escalate and force-stop agents without
//! SDK activity, the tier chosen by the inactivity e alone.

use super::pass::Pass;
use crate::action::Action;
use crate::constants::{NUDGE_DEDUP_WINDOW, STALLED_AUTO_IDLE};
use crate::state::{Agent, AgentStatus, Role, TownState};
use crate::time::{Millis, long, older_than, short, within};

/// Triage type of G1 and G2 requests.
const STUCK_AGENT: &str = "stuck_agent";

/// Runs the group's rules for the pass.
pub(super) fn run(p: &mut Pass<'_>) {
    if p.draining {
        return;
    }
    let s = p.s;
    let now = p.now;
    let cfg = &s.config;
    for agent in s.agents.values().filter(|a| in_scope(a, now)) {
        let Some(at) = TownState::activity_at(agent) else { continue };
        let e = now - at;
        if e < 0 {
            continue;
        }
        if e >= cfg.gupp_force_stop() {
            g1_force_stop(p, agent);
        } else if e >= cfg.gupp_escalate() {
            if !recent_nudge(s, agent, "reconciler:escalate", now) {
                let nudge_id = p.new_id("ndg");
                let bead_id = p.new_id("tri");
                let message = format!(
                    "You have been working for over {} without completing your task. Please wrap up or report if you are stuck.",
                    long(cfg.gupp_escalate())
                );
                p.emit(vec![
                    Action::SendNudge { agent_id: agent.agent_id.clone(), nudge_id, tier: "escalate".to_owned(), message },
                    Action::CreateTriageRequest {
                        agent_id: agent.agent_id.clone(),
                        triage_type: STUCK_AGENT.to_owned(),
                        reason: "GUPP escalation".to_owned(),
                        bead_id,
                    },
                ]);
            }
        } else if e >= cfg.gupp_warn() && agent.active_tools.is_empty() && !recent_nudge(s, agent, "reconciler:warn", now) {
            let nudge_id = p.new_id("ndg");
            let message =
                format!("You have been idle for {} with no tool activity. Please check your progress.", long(cfg.gupp_warn()));
            p.emit(vec![Action::SendNudge { agent_id: agent.agent_id.clone(), nudge_id, tier: "warn".to_owned(), message }]);
        }
    }
}

/// G1: force-stop a working agent (a stalled one was stopped already).
fn g1_force_stop(p: &mut Pass<'_>, agent: &Agent) {
    if agent.status != AgentStatus::Working {
        return;
    }
    let limit = short(p.s.config.gupp_force_stop());
    let bead_id = p.new_id("tri");
    p.emit(vec![
        Action::TransitionAgent {
            agent_id: agent.agent_id.clone(),
            from: agent.status,
            to: AgentStatus::Stalled,
            reason: format!("GUPP force stop — no SDK activity for {limit}"),
        },
        Action::StopAgent { agent_id: agent.agent_id.clone(), reason: format!("exceeded {limit} GUPP limit") },
        Action::CreateTriageRequest {
            agent_id: agent.agent_id.clone(),
            triage_type: STUCK_AGENT.to_owned(),
            reason: "GUPP force stop".to_owned(),
            bead_id,
        },
    ]);
}

/// An agent group G looks at (except the `activity_at` conditions): `working` or `stalled`, not
/// the mayor, and not a `stalled` agent past STALLED_AUTO_IDLE (A2 owns it).
fn in_scope(a: &Agent, now: Millis) -> bool {
    a.role != Role::Mayor
        && match a.status {
            AgentStatus::Working => true,
            AgentStatus::Stalled => !older_than(a.stalled_at, STALLED_AUTO_IDLE, now),
            AgentStatus::Idle | AgentStatus::Dead => false,
        }
}

/// Whether a nudge with `source` for the agent was created within NUDGE_DEDUP_WINDOW.
fn recent_nudge(s: &TownState, agent: &Agent, source: &str, now: Millis) -> bool {
    s.nudges
        .values()
        .any(|n| n.agent_id == agent.agent_id && n.source == source && within(Some(n.created_at), NUDGE_DEDUP_WINDOW, now))
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`.
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    let cfg = &s.config;
    for agent in s.agents.values() {
        if agent.role == Role::Mayor || !matches!(agent.status, AgentStatus::Working | AgentStatus::Stalled) {
            continue;
        }
        // G skip (with A2): a stalled agent leaves group G at stalled_at + STALLED_AUTO_IDLE.
        if agent.status == AgentStatus::Stalled {
            match agent.stalled_at {
                Some(at) if !older_than(Some(at), STALLED_AUTO_IDLE, p.now) => out.push(at + STALLED_AUTO_IDLE),
                // A stalled agent without `stalled_at` is A2's at once; one past it is A2's.
                _ => continue,
            }
        }
        let Some(at) = TownState::activity_at(agent) else { continue };
        if agent.active_tools.is_empty() {
            out.push(at + cfg.gupp_warn());
        }
        out.push(at + cfg.gupp_escalate());
        if agent.status == AgentStatus::Working {
            out.push(at + cfg.gupp_force_stop());
        }
        for n in s.nudges.values() {
            if n.agent_id == agent.agent_id && n.source.starts_with("reconciler:") {
                out.push(n.created_at + NUDGE_DEDUP_WINDOW);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::action::Action;
    use crate::constants::{NUDGE_TTL, STALLED_AUTO_IDLE};
    use crate::event::ActionResult;
    use crate::state::{AgentStatus, BeadStatus, NudgeMode, NudgePriority};
    use crate::testing::*;

    use AgentStatus::{Idle, Stalled, Working};

    /// pc-1's last SDK activity.
    const ACT: Millis = T0 + mins(1);
    const WARN_MSG: &str = "You have been idle for 15 minutes with no tool activity. Please check your progress.";
    const ESCALATE_MSG: &str =
        "You have been working for over 1 hour without completing your task. Please wrap up or report if you are stuck.";

    fn send_nudge(nudge: &str, tier: &str, message: &str) -> Action {
        Action::SendNudge { agent_id: "pc-1".into(), nudge_id: nudge.into(), tier: tier.into(), message: message.into() }
    }
    fn create_triage_request(reason: &str, id: &str) -> Action {
        Action::CreateTriageRequest {
            agent_id: "pc-1".into(),
            triage_type: "stuck_agent".into(),
            reason: reason.into(),
            bead_id: id.into(),
        }
    }
    fn nudge_result(town: &mut Given, ok: bool, nudge: &str, at: Millis) {
        let id = format!("{}:0", town.state.last_seq);
        town.push(
            ev(ActionResult {
                nudge_id: Some(nudge.into()),
                agent_id: Some("pc-1".into()),
                ..action_result(&id, "send_nudge", ok)
            })
            .at(at),
        );
    }

    /// pc-1 working alive hooked b1 since T0, then `id_seq` raised to `seq` by a no-op dispatch.
    fn pc1_working(seq: u64) -> Given {
        let mut town = given(fixture_f()).and([bead_created("b1", "r1").at(T0)]);
        town.pass_at(T0);
        town.and([
            resumed("pc-1").at(T0 + secs(5)),
            reconciled([dispatch_agent(&format!("pc-{seq}"), "none", "r1")]).at(T0 + secs(5)),
        ])
    }

    // --- T29 GUPP warn (G3) ---

    fn t29(tools: &[&str]) -> Given {
        pc1_working(40).and([agent_activity("pc-1", ACT, tools).at(ACT)])
    }

    #[test]
    fn t29_agent_idle_just_short_of_warn_is_left_alone() {
        let town = t29(&[]);
        assert_eq!(town.state.id_seq, 40);
        town.when_reconciled_at(ACT + mins(15) - 1).then_decides_nothing().and_wakes_at(ACT + mins(15));
    }

    #[test]
    fn t29_agent_idle_without_tools_is_warned() {
        t29(&[]).when_reconciled_at(ACT + mins(15)).then_decides([send_nudge("ndg-41", "warn", WARN_MSG)]);
    }

    #[test]
    fn t29_warn_creates_exactly_one_urgent_immediate_nudge() {
        let mut town = t29(&[]);
        town.pass_at(ACT + mins(15));
        assert_eq!(town.state.nudges.len(), 1);
        let n = town.state.nudges.get("ndg-41").unwrap();
        assert_eq!(n.source, "reconciler:warn");
        assert_eq!((n.mode, n.priority), (NudgeMode::Immediate, NudgePriority::Urgent));
        assert_eq!(n.expires_at, ACT + mins(15) + NUDGE_TTL);
    }

    #[test]
    fn t29_delivered_warn_is_not_repeated() {
        let mut town = t29(&[]);
        town.pass_at(ACT + mins(15));
        nudge_result(&mut town, true, "ndg-41", ACT + mins(15) + secs(1));
        assert!(town.state.nudges.get("ndg-41").unwrap().delivered_at.is_some());
        town.when_reconciled_at(ACT + mins(30)).then_decides_nothing();
    }

    #[test]
    fn t29_failed_warn_is_handed_again() {
        let mut town = t29(&[]);
        town.pass_at(ACT + mins(15));
        nudge_result(&mut town, false, "ndg-41", ACT + mins(15) + secs(1));
        town.when_reconciled_at(ACT + mins(16))
            .then_decides([Action::DeliverNudge { nudge_id: "ndg-41".into(), agent_id: "pc-1".into() }]);
    }

    #[test]
    fn t29_agent_with_active_tools_is_not_warned() {
        let town = t29(&["bash"]);
        town.when_reconciled_at(ACT + mins(15)).then_decides_nothing();
        town.when_reconciled_at(ACT + hours(1) - 1).then_decides_nothing().and_wakes_at(ACT + hours(1));
    }

    #[test]
    fn g_is_skipped_while_draining() {
        let town = t29(&[]).and([container_eviction(Some("c9")).at(ACT + mins(10))]);
        town.when_reconciled_at(ACT + mins(15)).then_decides_nothing();
    }

    // --- T30 GUPP escalate and force stop (G2, G1); T31 stalled auto-idle (A2) ---

    /// pc-1 working alive hooked b1, last_event_at ACT, tools []; a triage batch tb-50 is in
    /// progress with p2 (which keeps reporting activity); `id_seq` 50.
    fn t30() -> Given {
        let mut town = given(fixture_f()).and([bead_created("b1", "r1").at(T0)]);
        town.pass_at(T0);
        town.and([
            polecat_registered("p2").at(T0 + secs(1)),
            resumed("p2").at(T0 + secs(1)),
            resumed("pc-1").at(T0 + secs(1)),
            reconciled([
                Action::CreateTriageBatch { bead_id: "tb-50".into(), rig_id: "r1".into(), request_ids: vec![] },
                dispatch_agent("p2", "tb-50", "r1"),
            ])
            .at(T0 + secs(2)),
            agent_activity("pc-1", ACT, &[]).at(ACT),
        ])
    }

    /// p2 reports tool activity at `now` (so only pc-1 is inactive).
    fn p2_busy(town: Given, now: Millis) -> Given {
        town.and([agent_activity("p2", now, &["bash"]).at(now)])
    }

    fn escalate_actions() -> Vec<Action> {
        vec![send_nudge("ndg-51", "escalate", ESCALATE_MSG), create_triage_request("GUPP escalation", "tri-52")]
    }

    fn force_stop_actions() -> Vec<Action> {
        vec![
            transition_agent("pc-1", Working, Stalled, "GUPP force stop — no SDK activity for 2h"),
            stop_agent("pc-1", "exceeded 2h GUPP limit"),
            create_triage_request("GUPP force stop", "tri-53"),
        ]
    }

    /// T30 after the escalation at ACT+1h (ndg-51 delivered).
    fn t30_escalated() -> Given {
        let mut town = p2_busy(t30(), ACT + hours(1));
        assert_eq!(town.pass_at(ACT + hours(1)), escalate_actions());
        nudge_result(&mut town, true, "ndg-51", ACT + hours(1) + secs(1));
        town
    }

    /// T30 after the force stop at ACT+2h.
    fn t30_stopped() -> Given {
        let mut town = p2_busy(t30_escalated(), ACT + hours(2));
        assert_eq!(town.pass_at(ACT + hours(2)), force_stop_actions());
        town
    }

    #[test]
    fn t30_agent_inactive_for_an_hour_is_escalated() {
        let town = p2_busy(t30(), ACT + hours(1));
        assert_eq!(town.state.id_seq, 50);
        town.when_reconciled_at(ACT + hours(1)).then_decides(escalate_actions());
    }

    #[test]
    fn t30_agent_inactive_just_short_of_an_hour_is_only_warned() {
        let town = p2_busy(t30(), ACT + hours(1) - 1);
        town.when_reconciled_at(ACT + hours(1) - 1).then_decides([send_nudge("ndg-51", "warn", WARN_MSG)]);
    }

    #[test]
    fn t30_escalate_tier_held_by_its_nudge_does_not_fall_through_to_warn() {
        p2_busy(t30_escalated(), ACT + mins(90)).when_reconciled_at(ACT + mins(90)).then_decides_nothing();
    }

    #[test]
    fn t30_agent_just_short_of_force_stop_is_left_alone() {
        p2_busy(t30_escalated(), ACT + hours(2) - 1).when_reconciled_at(ACT + hours(2) - 1).then_decides_nothing();
    }

    #[test]
    fn t30_agent_inactive_for_two_hours_is_force_stopped() {
        p2_busy(t30_escalated(), ACT + hours(2)).when_reconciled_at(ACT + hours(2)).then_decides(force_stop_actions());
    }

    #[test]
    fn t30_force_stop_stalls_the_agent_and_consumes_the_request_id() {
        let town = t30_stopped();
        let a = town.agent("pc-1");
        assert_eq!((a.status, a.stalled_at), (Stalled, Some(ACT + hours(2))));
        assert!(town.state.beads.contains_key("tri-52"));
        assert!(!town.state.beads.contains_key("tri-53"));
        assert_eq!(town.state.id_seq, 53);
    }

    #[test]
    fn t30_stalled_agent_is_not_force_stopped_again() {
        p2_busy(t30_stopped(), ACT + mins(150)).when_reconciled_at(ACT + mins(150)).then_decides_nothing();
    }

    #[test]
    fn t31_stalled_agent_is_kept_until_auto_idle() {
        let at = ACT + hours(2) + STALLED_AUTO_IDLE;
        assert_eq!(at, ACT + hours(4) + mins(30));
        p2_busy(t30_stopped(), at - 1).when_reconciled_at(at - 1).then_decides_nothing().and_wakes_at(at);
    }

    #[test]
    fn t31_stalled_agent_is_idled_by_a2_not_gupp() {
        let at = ACT + hours(2) + STALLED_AUTO_IDLE;
        p2_busy(t30_stopped(), at).when_reconciled_at(at).then_decides([
            transition_agent("pc-1", Stalled, Idle, "stalled_timeout (exceeded 2h 30min)"),
            unhook_agent("pc-1", "stalled_timeout (exceeded 2h 30min)"),
        ]);
    }

    #[test]
    fn t31_its_bead_is_then_reopened_as_agent_lost() {
        let at = ACT + hours(2) + STALLED_AUTO_IDLE;
        let mut town = p2_busy(t30_stopped(), at);
        town.pass_at(at);
        town.when_reconciled_at(at).then_decides([
            transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent lost"),
            clear_bead_assignee("b1"),
        ]);
    }
}
