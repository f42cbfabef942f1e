//! A1–A4 — agents (group A): idle silent or hookless workers, auto-idle stalled ones, reset
//! stale dispatch counters, and release hooks on missing, terminal or abandoned beads.

use super::pass::Pass;
use crate::action::Action;
use crate::constants::{AGENT_ATTEMPTS_RESET_AFTER, HEARTBEAT_LOST, STALLED_AUTO_IDLE};
use crate::state::{AgentStatus, BeadStatus, Liveness, Role};
use crate::time::{Millis, older_than, short};

/// Runs the group's rules for the pass (R0.1: each rule over every agent, then the next rule).
pub(super) fn run(p: &mut Pass<'_>) {
    if !p.draining {
        a1_idle_silent_or_hookless(p);
        a2_auto_idle_stalled(p);
    }
    a3_reset_agent_attempts(p);
    a4_release_dead_hooks(p);
}

/// A1: a `working` non-mayor agent that is silent, or has no hook, goes idle.
fn a1_idle_silent_or_hookless(p: &mut Pass<'_>) {
    let s = p.s;
    for a in s.agents.values() {
        if a.status != AgentStatus::Working || a.role == Role::Mayor {
            continue;
        }
        let reason = if s.silent(a, p.now) {
            if a.liveness == Liveness::Lost { "heartbeat lost" } else { "no heartbeat received since dispatch" }
        } else if a.hook.is_none() {
            "working agent has no hook"
        } else {
            continue;
        };
        p.emit(vec![Action::TransitionAgent {
            agent_id: a.agent_id.clone(),
            from: AgentStatus::Working,
            to: AgentStatus::Idle,
            reason: reason.to_owned(),
        }]);
    }
}

/// A2: a `stalled` agent whose stall outlived STALLED_AUTO_IDLE goes idle and is unhooked.
fn a2_auto_idle_stalled(p: &mut Pass<'_>) {
    let s = p.s;
    for a in s.agents.values() {
        if a.status != AgentStatus::Stalled || !older_than(a.stalled_at, STALLED_AUTO_IDLE, p.now) {
            continue;
        }
        let reason = format!("stalled_timeout (exceeded {})", short(STALLED_AUTO_IDLE));
        let mut actions = vec![Action::TransitionAgent {
            agent_id: a.agent_id.clone(),
            from: AgentStatus::Stalled,
            to: AgentStatus::Idle,
            reason: reason.clone(),
        }];
        if a.hook.is_some() {
            actions.push(Action::UnhookAgent { agent_id: a.agent_id.clone(), reason });
        }
        p.emit(actions);
    }
}

/// A3: an agent at its rig's dispatch cap, not alive and inactive for AGENT_ATTEMPTS_RESET_AFTER,
/// gets its counter reset.
fn a3_reset_agent_attempts(p: &mut Pass<'_>) {
    let s = p.s;
    for a in s.agents.values() {
        if a.dispatch_attempts >= s.max_attempts(a.rig_id.as_deref())
            && a.liveness != Liveness::Alive
            && a.last_activity_at.is_some()
            && older_than(a.last_activity_at, AGENT_ATTEMPTS_RESET_AFTER, p.now)
        {
            p.emit(vec![Action::ResetAgentDispatchAttempts { agent_id: a.agent_id.clone() }]);
        }
    }
}

/// A4: an `idle` agent hooked to a missing or terminal bead is unhooked; hooked to a live one
/// while silent, it is unhooked and the bead reopened.
fn a4_release_dead_hooks(p: &mut Pass<'_>) {
    let s = p.s;
    for a in s.agents.values() {
        let (AgentStatus::Idle, Some(hook)) = (a.status, a.hook.as_deref()) else {
            continue;
        };
        let unhook = |reason: &str| Action::UnhookAgent { agent_id: a.agent_id.clone(), reason: reason.to_owned() };
        let clear = Action::ClearAgentCheckpoint { agent_id: a.agent_id.clone() };
        let actions = match s.beads.get(hook) {
            None => vec![unhook("hooked bead does not exist"), clear],
            Some(b) if b.is_terminal() => vec![unhook("hooked bead is terminal"), clear],
            Some(b) if matches!(b.status, BeadStatus::Open | BeadStatus::InProgress) && s.silent(a, p.now) => vec![
                unhook("idle agent hooked to live bead"),
                Action::TransitionBead {
                    bead_id: b.bead_id.clone(),
                    from: b.status,
                    to: BeadStatus::Open,
                    reason: "agent went idle without completing work".to_owned(),
                },
            ],
            Some(_) => continue,
        };
        p.emit(actions);
    }
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`: A1/A4/B4 (silence),
/// A2 (stall timeout) and A3 (counter reset).
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    for a in s.agents.values() {
        if let Some(last) = a.last_activity_at {
            if a.liveness != Liveness::Alive && (a.status == AgentStatus::Working || a.hook.is_some()) {
                out.push(last.saturating_add(HEARTBEAT_LOST));
            }
            if a.liveness != Liveness::Alive && a.dispatch_attempts >= s.max_attempts(a.rig_id.as_deref()) {
                out.push(last.saturating_add(AGENT_ATTEMPTS_RESET_AFTER));
            }
        }
        if let (AgentStatus::Stalled, Some(at)) = (a.status, a.stalled_at) {
            out.push(at.saturating_add(STALLED_AUTO_IDLE));
        }
    }
}

/// Builders shared by the scenario tests of groups A, B, X, H and F (events `testing.rs` does not
/// offer, the §T streams several scenarios start from, and a way to run one group alone).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
pub(super) mod fixtures {
    use serde_json::Map;

    use super::super::pass::Pass;
    use crate::action::Action;
    use crate::event::*;
    use crate::state::{NudgeMode, NudgePriority, Severity};
    use crate::testing::*;

    /// T1's stream: F; [5] @+10s `bead_created{b1, "Fix login", r1}`; [6] the pass at +10s
    /// (`dispatch_agent{pc-1, b1, r1, create{polecat, "Toast"}}`).
    pub(crate) fn t1_stream() -> Given {
        let mut town =
            given(fixture_f()).and([ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }).at(T0 + secs(10))]);
        town.pass_at(T0 + secs(10));
        town
    }

    /// `bead_created` of an r1 issue with its agent hooked at once (`bead.sling{…, agent_id}`).
    pub(crate) fn bead_created_hooked(id: &str, agent: &str) -> Ev {
        ev(BeadCreated { agent_id: Some(agent.into()), ..bead(id, Some("r1")) })
    }

    /// An executor result carried as an event.
    pub(crate) fn result_ev(r: ActionResult) -> Ev {
        ev(r)
    }

    /// `escalation_raised{id, severity, title}` without rig or agent.
    pub(crate) fn escalation_raised(id: &str, severity: Severity, title: &str, rig: Option<&str>) -> Ev {
        ev(EscalationRaised {
            bead_id: id.into(),
            severity,
            category: "general".into(),
            title: title.into(),
            body: None,
            rig_id: rig.map(Into::into),
            agent_id: None,
            context: Map::new(),
        })
    }

    /// `escalation_acknowledged{id}`.
    pub(crate) fn escalation_acknowledged(id: &str) -> Ev {
        ev(EscalationAcknowledged { bead_id: id.into(), by: "operator".into() })
    }

    /// `triage_resolved{request, action}`.
    pub(crate) fn triage_resolved(request: &str, action: &str, by: &str) -> Ev {
        ev(TriageResolved { request_bead_id: request.into(), action: action.into(), note: None, resolved_by: by.into() })
    }

    /// `nudge_queued{id, agent, message, mode}` as `agent.nudge` writes it (normal, cmd, 1 h).
    pub(crate) fn nudge_queued(id: &str, agent: &str, message: &str, mode: NudgeMode) -> Ev {
        ev(NudgeQueued {
            nudge_id: id.into(),
            agent_id: agent.into(),
            message: message.into(),
            mode,
            priority: NudgePriority::Normal,
            source: "cmd".into(),
            ttl_s: 3600,
        })
    }

    /// `mail_sent{id, to, from}`.
    pub(crate) fn mail_sent(id: &str, to: &str, from: &str) -> Ev {
        ev(MailSent { bead_id: id.into(), to_agent_id: to.into(), from: from.into(), subject: "hello".into(), body: None })
    }

    /// `convoy_started{id}`.
    pub(crate) fn convoy_started(id: &str) -> Ev {
        ev(ConvoyStarted { convoy_id: id.into() })
    }

    /// An action that only raises `id_seq` to `n` (a `re_escalate` of a missing bead naming
    /// `msg-<n>`: a no-op that consumes the id, R0.2), so a fixture starts at the `id_seq` §T gives.
    pub(crate) fn consume_ids_to(n: u64) -> Action {
        Action::ReEscalate { bead_id: "no-such-bead".into(), severity: Severity::Medium, mail_id: Some(format!("msg-{n}")) }
    }

    /// Runs one group's `run` alone on the town at `now` (to show what a rule leaves untouched
    /// while other groups act on the same entity).
    pub(crate) fn run_group(town: &Given, now: Millis, run: fn(&mut Pass<'_>)) -> Vec<Action> {
        let mut p = Pass::new(&town.state, now);
        run(&mut p);
        p.finish().actions
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::fixtures::*;
    use crate::constants::{AGENT_ATTEMPTS_RESET_AFTER, HEARTBEAT_LOST};
    use crate::event::{ContainerState, LostCause};
    use crate::next_wakeup;
    use crate::state::{AgentStatus::*, BeadStatus, Liveness};
    use crate::testing::*;

    // --- T3: no heartbeat after dispatch (A1, A4, B2, B1 backoff) ---

    #[test]
    fn t03_no_heartbeat_after_dispatch_settles_into_a_redispatch() {
        let mut town = t1_stream();
        let passes = town.settle_at(T0 + secs(100));
        assert_eq!(
            passes,
            vec![
                vec![transition_agent("pc-1", Working, Idle, "no heartbeat received since dispatch")],
                vec![
                    unhook_agent("pc-1", "idle agent hooked to live bead"),
                    transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent went idle without completing work"),
                ],
                vec![clear_bead_assignee("b1")],
                vec![dispatch_agent("pc-1", "b1", "r1")],
                vec![],
            ]
        );
        assert_eq!(town.bead("b1").dispatch_attempts, 2);
        assert_eq!(town.bead("b1").last_dispatch_attempt_at, Some(T0 + secs(100)));
        assert_eq!(next_wakeup(&town.state, T0 + secs(100)), Some(T0 + secs(190)));
    }

    #[test]
    fn t03_no_heartbeat_after_dispatch_is_kept_until_heartbeat_lost_passes() {
        t1_stream()
            .when_reconciled_at(T0 + secs(10) + HEARTBEAT_LOST - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + secs(10) + HEARTBEAT_LOST);
    }

    #[test]
    fn t03_first_pass_idles_the_unseen_agent() {
        t1_stream().when_reconciled_at(T0 + secs(100)).then_decides([transition_agent(
            "pc-1",
            Working,
            Idle,
            "no heartbeat received since dispatch",
        )]);
    }

    // --- T6: heartbeat lost, then resumed (A1, #1359) ---

    fn t6_resumed_at_15s() -> Given {
        t1_stream().and([resumed_on("pc-1", "c1").at(T0 + secs(15))])
    }

    #[test]
    fn t06_alive_agent_passes_the_unseen_deadline() {
        t6_resumed_at_15s().when_reconciled_at(T0 + secs(100)).then_decides_nothing();
    }

    #[test]
    fn t06_heartbeat_lost_idles_the_working_agent_then_resume_restores_it() {
        let mut town = t6_resumed_at_15s().and([heartbeat_lost("pc-1", LostCause::Expired).at(T0 + mins(3))]);
        town.when_reconciled_at(T0 + mins(3)).then_decides([transition_agent("pc-1", Working, Idle, "heartbeat lost")]);
        town.pass_at(T0 + mins(3));
        town.push(resumed_on("pc-1", "c1").at(T0 + mins(3) + secs(1)));
        let pc1 = town.agent("pc-1");
        assert_eq!((pc1.status, pc1.hook.as_deref(), pc1.liveness), (Working, Some("b1"), Liveness::Alive));
        assert_eq!((pc1.last_activity_at, pc1.dispatch_attempts), (Some(T0 + mins(3) + secs(1)), 0));
        town.when_reconciled_at(T0 + mins(3) + secs(1)).then_decides_nothing();
    }

    #[test]
    fn t06_lost_agent_is_kept_working_until_silent_for_heartbeat_lost() {
        let town = t6_resumed_at_15s().and([heartbeat_lost("pc-1", LostCause::Expired).at(T0 + mins(1))]);
        town.when_reconciled_at(T0 + secs(15) + HEARTBEAT_LOST - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + secs(15) + HEARTBEAT_LOST);
        town.when_reconciled_at(T0 + secs(15) + HEARTBEAT_LOST).then_decides([transition_agent(
            "pc-1",
            Working,
            Idle,
            "heartbeat lost",
        )]);
    }

    // --- T7a: the container exits (A4) ---

    #[test]
    fn t07a_exited_container_unhooks_and_reopens_the_bead() {
        let town = t6_resumed_at_15s().and([container_status("pc-1", ContainerState::Exited, Some("oom")).at(T0 + mins(2))]);
        let pc1 = town.agent("pc-1");
        assert_eq!((pc1.status, pc1.hook.as_deref(), pc1.liveness), (Idle, Some("b1"), Liveness::Lost));
        town.when_reconciled_at(T0 + mins(2)).then_decides([
            unhook_agent("pc-1", "idle agent hooked to live bead"),
            transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent went idle without completing work"),
        ]);
    }

    #[test]
    fn t07a_exited_container_keeps_its_hook_until_silent_for_heartbeat_lost() {
        let town = t6_resumed_at_15s().and([container_status("pc-1", ContainerState::Exited, Some("oom")).at(T0 + secs(100))]);
        town.when_reconciled_at(T0 + secs(15) + HEARTBEAT_LOST - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + secs(15) + HEARTBEAT_LOST);
    }

    // --- T8: not_found cold-start grace (pass part) ---

    fn t8_alive_at_20s() -> Given {
        t1_stream()
            .and([resumed("pc-1").at(T0 + secs(20)), container_status("pc-1", ContainerState::NotFound, None).at(T0 + mins(1))])
    }

    #[test]
    fn t08_not_found_after_the_grace_unhooks_and_reopens_the_bead() {
        let town = t8_alive_at_20s().and([container_status("pc-1", ContainerState::NotFound, None).at(T0 + mins(3) + secs(20))]);
        town.when_reconciled_at(T0 + mins(3) + secs(20)).then_decides([
            unhook_agent("pc-1", "idle agent hooked to live bead"),
            transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent went idle without completing work"),
        ]);
    }

    #[test]
    fn t08_not_found_inside_the_grace_keeps_the_agent_working() {
        let town =
            t8_alive_at_20s().and([container_status("pc-1", ContainerState::NotFound, None).at(T0 + mins(3) + secs(20) - 1)]);
        assert_eq!(town.agent("pc-1").status, Working);
        town.when_reconciled_at(T0 + mins(3) + secs(20) - 1).then_decides_nothing();
    }

    // --- T32: agent counter reset (A3) ---

    /// p1 {idle, unhooked, attempts 5, lost, last_activity_at t0}.
    fn t32_p1_at_its_cap() -> Given {
        let mut dispatches = vec![dispatch_agent("p1", "b1", "r1"); 5];
        dispatches.push(transition_bead("b1", BeadStatus::InProgress, BeadStatus::Closed, "done"));
        dispatches.push(unhook_agent("p1", "done"));
        given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            bead_created("b1", "r1").at(T0),
            reconciled(dispatches).at(T0),
            heartbeat_lost("p1", LostCause::Expired).at(T0),
        ])
    }

    #[test]
    fn t32_agent_counter_is_reset_after_thirty_minutes_of_silence() {
        let mut town = t32_p1_at_its_cap();
        let p1 = town.agent("p1");
        assert_eq!((p1.status, p1.hook.as_deref(), p1.dispatch_attempts, p1.liveness), (Idle, None, 5, Liveness::Lost));
        town.when_reconciled_at(T0 + AGENT_ATTEMPTS_RESET_AFTER)
            .then_decides([crate::action::Action::ResetAgentDispatchAttempts { agent_id: "p1".into() }]);
        town.pass_at(T0 + AGENT_ATTEMPTS_RESET_AFTER);
        assert_eq!(town.agent("p1").dispatch_attempts, 0);
    }

    #[test]
    fn t32_agent_counter_is_kept_until_thirty_minutes() {
        t32_p1_at_its_cap()
            .when_reconciled_at(T0 + AGENT_ATTEMPTS_RESET_AFTER - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + AGENT_ATTEMPTS_RESET_AFTER);
    }

    #[test]
    fn t32_agent_one_attempt_below_the_cap_is_not_reset() {
        let mut dispatches = vec![dispatch_agent("p1", "b1", "r1"); 4];
        dispatches.push(transition_bead("b1", BeadStatus::InProgress, BeadStatus::Closed, "done"));
        dispatches.push(unhook_agent("p1", "done"));
        given(fixture_f())
            .and([
                polecat_registered("p1").at(T0),
                bead_created("b1", "r1").at(T0),
                reconciled(dispatches).at(T0),
                heartbeat_lost("p1", LostCause::Expired).at(T0),
            ])
            .when_reconciled_at(T0 + AGENT_ATTEMPTS_RESET_AFTER)
            .then_decides_nothing();
    }

    #[test]
    fn a2_stalled_agent_is_idled_and_unhooked_after_stalled_auto_idle() {
        use crate::constants::STALLED_AUTO_IDLE;
        let town = t6_resumed_at_15s()
            .and([reconciled([transition_agent("pc-1", Working, Stalled, "GUPP force stop")]).at(T0 + hours(2))]);
        let reason = "stalled_timeout (exceeded 2h 30min)";
        town.when_reconciled_at(T0 + hours(2) + STALLED_AUTO_IDLE)
            .then_decides([transition_agent("pc-1", Stalled, Idle, reason), unhook_agent("pc-1", reason)]);
        town.when_reconciled_at(T0 + hours(2) + STALLED_AUTO_IDLE - 1)
            .then_decides_nothing()
            .and_wakes_at(T0 + hours(2) + STALLED_AUTO_IDLE);
    }
}
