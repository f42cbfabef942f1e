//! The steps of the ingest filter (DOMAIN E5 steps 2–6), the expiry marker and the start-up /
//! handover rule.
//!
//! Every derived event has source `hb`, `at` = the broker time τ of the message that caused it
//! (for a missed marker, the stored `last_alive_at` + heartbeat_lost) and id
//! `<town>:h:<agent>:<seq>:<event type>` (E1), so a heartbeat processed twice yields the same ids.

use crate::constants::{ACTIVITY_GRANULARITY, HEARTBEAT_LOST};
use crate::event::{
    AgentActivity, AgentHeartbeatLost, AgentHeartbeatResumed, ContainerState, ContainerStatus, Envelope, Event, LostCause, source,
};
use crate::time::Millis;

use super::decode::Heartbeat;
use super::memory::{AgentMemory, Alive};

/// The filter's parameters: heartbeat_lost (a code constant, §K) and ACTIVITY_GRANULARITY (an
/// ingest flag). `Default` gives the constants of §K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Silence (or only non-alive heartbeats) after which the agent is reported lost.
    pub heartbeat_lost: Millis,
    /// At most one `agent_activity` per this much broker time (E5 step 5).
    pub granularity: Millis,
}

impl Default for Filter {
    fn default() -> Self {
        Self { heartbeat_lost: HEARTBEAT_LOST, granularity: ACTIVITY_GRANULARITY }
    }
}

/// What one message did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Derived events to append, in step order (resumed, lost, container_status, activity).
    pub events: Vec<Envelope>,
    /// The memory must be written (compare-and-set): (i) after the events are appended, or (ii)
    /// `last_status` changed without an append.
    pub store: bool,
    /// The heartbeat appended nothing (E5 step 6; counted as filtered). Always false for expiry
    /// markers and the start-up rule.
    pub filtered: bool,
}

/// What the agent's heartbeat subject holds when an ingest instance starts handling the agent
/// (start-up or handover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldMessage {
    /// No message: its expiry marker was missed.
    Empty,
    /// An alive heartbeat with this broker timestamp: `last_alive_at` is restored from it.
    Alive(Millis),
    /// A non-alive heartbeat or an expiry marker: restores nothing.
    Other,
}

/// The id of a heartbeat-derived event (E1): `<town>:h:<agent>:<seq>:<event type>`.
#[must_use]
pub fn event_id(town: &str, agent: &str, seq: u64, event_type: &str) -> String {
    format!("{town}:h:{agent}:{seq}:{event_type}")
}

/// Collects the derived events of one message.
struct Out<'a> {
    town: &'a str,
    agent: &'a str,
    seq: u64,
    at: Millis,
    events: Vec<Envelope>,
}

impl Out<'_> {
    fn push(&mut self, event: impl Into<Event>) {
        let event = event.into();
        let id = event_id(self.town, self.agent, self.seq, event.event_type());
        self.events.push(Envelope::new(id, self.at, source::HEARTBEAT, event));
    }
}

impl Filter {
    /// Runs E5 steps 2–6 for a decoded heartbeat `hb` of `agent` in `town`, stored at heartbeat
    /// stream sequence `seq` with broker timestamp `tau`, updating `m`. `hb.last_event_at` later
    /// than `tau` is taken as `tau`; an absent `active_tools` counts as empty.
    #[must_use]
    pub fn on_heartbeat(&self, town: &str, agent: &str, m: &mut AgentMemory, hb: &Heartbeat, seq: u64, tau: Millis) -> Step {
        let mut out = Out { town, agent, seq, at: tau, events: Vec::new() };
        m.seq = seq;
        let alive = hb.is_alive();
        let event_at = hb.last_event_at.map(|e| e.min(tau));
        let tools_nonempty = hb.active_tools.as_ref().is_some_and(|t| !t.is_empty());
        let status_before = m.last_status;

        // Step 2: resumed.
        let mut resumed = false;
        if alive {
            let new_instance = hb.container_instance_id.as_ref().is_some_and(|c| m.instance.as_ref() != Some(c));
            if m.alive != Alive::True || new_instance {
                out.push(AgentHeartbeatResumed {
                    agent_id: agent.to_owned(),
                    status: hb.status,
                    container_instance_id: hb.container_instance_id.clone(),
                    last_event_type: hb.last_event_type.clone(),
                    last_event_at: event_at,
                    active_tools: hb.active_tools.clone(),
                });
                m.alive = Alive::True;
                m.fwd_event_at = event_at;
                m.fwd_tools_nonempty = tools_nonempty;
                m.fwd_at = None;
                m.since_fwd = 0;
                resumed = true;
            }
            m.last_alive_at = Some(tau);
            if let Some(c) = &hb.container_instance_id {
                m.instance = Some(c.clone());
            }
        } else if m.alive != Alive::False && m.last_alive_at.is_none_or(|l| tau.saturating_sub(l) >= self.heartbeat_lost) {
            // Step 3: only non-alive heartbeats for heartbeat_lost.
            out.push(AgentHeartbeatLost { agent_id: agent.to_owned(), cause: LostCause::NotAlive });
            m.alive = Alive::False;
        }

        // Step 4: a non-running status, once per change.
        if hb.status != ContainerState::Running && Some(hb.status) != m.last_status {
            out.push(ContainerStatus { agent_id: agent.to_owned(), status: hb.status, exit_reason: hb.exit_reason.clone() });
            if matches!(hb.status, ContainerState::Exited | ContainerState::NotFound) && m.alive == Alive::True {
                m.alive = Alive::Unknown;
            }
        }
        m.last_status = Some(hb.status);

        // Step 5: the watermark, at most once per granularity.
        if alive && !resumed && m.fwd_at.is_none_or(|f| tau.saturating_sub(f) >= self.granularity) {
            let tools_changed = tools_nonempty != m.fwd_tools_nonempty;
            let moved = event_at.is_some_and(|e| m.fwd_event_at.is_none_or(|f| e.saturating_sub(f) >= self.granularity));
            if tools_changed || moved {
                out.push(AgentActivity {
                    agent_id: agent.to_owned(),
                    last_event_type: hb.last_event_type.clone(),
                    last_event_at: event_at,
                    active_tools: hb.active_tools.clone().unwrap_or_default(),
                    coalesced: m.since_fwd,
                });
                m.fwd_event_at = event_at;
                m.fwd_tools_nonempty = tools_nonempty;
                m.fwd_at = Some(tau);
                m.since_fwd = 0;
            }
        }

        // Step 6: filtered.
        let filtered = out.events.is_empty();
        if filtered {
            m.since_fwd = m.since_fwd.saturating_add(1);
        }
        Step { store: !filtered || m.last_status != status_before, filtered, events: out.events }
    }

    /// A broker expiry marker on the agent's subject, stored at `seq` with broker timestamp `tau`:
    /// `agent_heartbeat_lost{expired}` when `M.alive ≠ false`, then `M.alive = false`.
    #[must_use]
    pub fn on_expiry_marker(&self, town: &str, agent: &str, m: &mut AgentMemory, seq: u64, tau: Millis) -> Step {
        let mut out = Out { town, agent, seq, at: tau, events: Vec::new() };
        m.seq = seq;
        if m.alive != Alive::False {
            out.push(AgentHeartbeatLost { agent_id: agent.to_owned(), cause: LostCause::Expired });
            m.alive = Alive::False;
        }
        Step { store: !out.events.is_empty(), filtered: false, events: out.events }
    }

    /// The start-up / handover rule, for an agent whose stored memory `m` an instance starts
    /// handling. An alive held heartbeat restores `last_alive_at` from its timestamp (the later
    /// of the two is kept). An empty subject with `M.alive ≠ false` and a `last_alive_at` means
    /// the expiry marker was missed: `agent_heartbeat_lost{expired}` with id
    /// `<town>:h:<agent>:<stored M.seq>:agent_heartbeat_lost` at `last_alive_at + heartbeat_lost`,
    /// and `M.alive = false`. `resumed` is never re-emitted.
    #[must_use]
    pub fn on_startup(&self, town: &str, agent: &str, m: &mut AgentMemory, held: HeldMessage) -> Step {
        match held {
            HeldMessage::Alive(at) => {
                m.last_alive_at = Some(m.last_alive_at.map_or(at, |l| l.max(at)));
                Step::default()
            }
            HeldMessage::Other => Step::default(),
            HeldMessage::Empty => match m.last_alive_at {
                Some(last) if m.alive != Alive::False => {
                    let at = last.saturating_add(self.heartbeat_lost);
                    let mut out = Out { town, agent, seq: m.seq, at, events: Vec::new() };
                    out.push(AgentHeartbeatLost { agent_id: agent.to_owned(), cause: LostCause::Expired });
                    m.alive = Alive::False;
                    Step { store: true, filtered: false, events: out.events }
                }
                _ => Step::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::codec::{from_msgpack, to_msgpack};
    use crate::event::ContainerState::{Exited, NotFound, Running, Starting, Stopping, Unknown};
    use crate::state::{AgentStatus, Liveness, Role};
    use crate::testing::{
        Ev, Given, T0, TOWN, bead_created, clear_bead_assignee, dispatch_agent, dispatch_creating, fixture_f, given,
        polecat_registered, reconciled, transition_agent, transition_bead, unhook_agent,
    };
    use crate::time::{hours, mins, secs};
    use proptest::prelude::*;

    // --- expected events, spelled from E1/E2 ---

    fn hid(agent: &str, seq: u64, event_type: &str) -> String {
        format!("t1:h:{agent}:{seq}:{event_type}")
    }

    fn hb_env(agent: &str, seq: u64, at: Millis, event: impl Into<Event>) -> Envelope {
        let event = event.into();
        Envelope::new(hid(agent, seq, event.event_type()), at, "hb", event)
    }

    fn resumed_ev(agent: &str, seq: u64, at: Millis, instance: Option<&str>) -> Envelope {
        hb_env(
            agent,
            seq,
            at,
            AgentHeartbeatResumed {
                agent_id: agent.into(),
                status: Running,
                container_instance_id: instance.map(Into::into),
                last_event_type: None,
                last_event_at: None,
                active_tools: None,
            },
        )
    }

    fn lost_ev(agent: &str, seq: u64, at: Millis, cause: LostCause) -> Envelope {
        hb_env(agent, seq, at, AgentHeartbeatLost { agent_id: agent.into(), cause })
    }

    fn status_ev(agent: &str, seq: u64, at: Millis, status: ContainerState, reason: Option<&str>) -> Envelope {
        hb_env(agent, seq, at, ContainerStatus { agent_id: agent.into(), status, exit_reason: reason.map(Into::into) })
    }

    fn activity_ev(agent: &str, seq: u64, at: Millis, tools: &[&str], coalesced: u64) -> Envelope {
        hb_env(
            agent,
            seq,
            at,
            AgentActivity {
                agent_id: agent.into(),
                last_event_type: Some("tool_use".into()),
                last_event_at: Some(at),
                active_tools: tools.iter().map(|t| (*t).to_owned()).collect(),
                coalesced,
            },
        )
    }

    fn running() -> Heartbeat {
        Heartbeat::new(Running)
    }

    // --- one agent's heartbeat subject, as ingest sees it: sequences 1, 2, … ---

    struct Feed {
        filter: Filter,
        agent: &'static str,
        m: AgentMemory,
        seq: u64,
        events: Vec<Envelope>,
        filtered: u64,
    }

    impl Feed {
        fn new(agent: &'static str) -> Self {
            Self { filter: Filter::default(), agent, m: AgentMemory::default(), seq: 0, events: Vec::new(), filtered: 0 }
        }

        fn send(&mut self, tau: Millis, hb: Heartbeat) -> Step {
            self.seq += 1;
            let step = self.filter.on_heartbeat(TOWN, self.agent, &mut self.m, &hb, self.seq, tau);
            self.events.extend(step.events.iter().cloned());
            self.filtered += u64::from(step.filtered);
            step
        }

        /// A heartbeat every 5 s from `from` to `to`, both included.
        fn every(&mut self, from: Millis, to: Millis, make: impl Fn(Millis) -> Heartbeat) {
            let mut t = from;
            while t <= to {
                self.send(t, make(t));
                t += secs(5);
            }
        }

        fn marker(&mut self, tau: Millis) -> Step {
            self.seq += 1;
            let step = self.filter.on_expiry_marker(TOWN, self.agent, &mut self.m, self.seq, tau);
            self.events.extend(step.events.iter().cloned());
            step
        }

        /// The events appended since the last call.
        fn take(&mut self) -> Vec<Envelope> {
            std::mem::take(&mut self.events)
        }
    }

    fn fold(g: &mut Given, events: &[Envelope]) {
        for e in events {
            g.push(Ev { event: e.event.clone(), at: Some(e.at), id: Some(e.id.clone()), source: e.source.clone() });
        }
    }

    // --- T9 ---

    const H1: Millis = hours(1);

    fn t09_first_hour(f: &mut Feed) {
        f.every(T0, T0 + H1, |_| running());
    }

    fn t09_unknown_run(f: &mut Feed) {
        f.every(T0 + H1 + secs(5), T0 + H1 + mins(10), |_| Heartbeat::new(Unknown));
    }

    fn t09_new_instance_then_silence(f: &mut Feed) {
        f.send(T0 + H1 + mins(10) + secs(5), running().on("c2"));
        f.marker(T0 + H1 + mins(11) + secs(35));
    }

    /// `running` on c2 with `last_event_at` = send time; tools [] before +2h2min, ["bash"] before
    /// +2h14min, then [].
    fn t09_sdk(t: Millis) -> Heartbeat {
        let tools: &[&str] = if t < T0 + hours(2) + mins(2) || t >= T0 + hours(2) + mins(14) { &[] } else { &["bash"] };
        running().on("c2").watermark("tool_use", t, tools)
    }

    #[test]
    fn t09_running_every_5s_for_an_hour_is_one_resumed_and_720_filtered() {
        let mut f = Feed::new("a1");
        t09_first_hour(&mut f);
        assert_eq!(f.take(), [resumed_ev("a1", 1, T0, None)]);
        assert_eq!(f.filtered, 720);
    }

    #[test]
    fn t09_unknown_run_is_one_container_status_and_one_lost() {
        let mut f = Feed::new("a1");
        t09_first_hour(&mut f);
        f.take();
        t09_unknown_run(&mut f);
        // +1h5s is the 722nd message; +1h1min30s (heartbeat_lost after the last running) the 739th.
        assert_eq!(
            f.take(),
            [
                status_ev("a1", 722, T0 + H1 + secs(5), Unknown, None),
                lost_ev("a1", 739, T0 + H1 + mins(1) + secs(30), LostCause::NotAlive),
            ]
        );
        assert_eq!(f.filtered, 720 + 118);
    }

    #[test]
    fn t09_unknown_run_near_miss_keeps_the_agent_alive_until_heartbeat_lost() {
        let mut f = Feed::new("a1");
        t09_first_hour(&mut f);
        f.take();
        f.every(T0 + H1 + secs(5), T0 + H1 + mins(1) + secs(30) - 1, |_| Heartbeat::new(Unknown));
        assert_eq!(f.take(), [status_ev("a1", 722, T0 + H1 + secs(5), Unknown, None)]);
        assert_eq!(f.m.alive, Alive::True);
        let step = f.send(T0 + H1 + mins(1) + secs(30) - 1, Heartbeat::new(Unknown));
        assert!(step.filtered, "1 ms before heartbeat_lost after the last running: {step:?}");
    }

    #[test]
    fn t09_new_instance_resumes_and_the_expiry_marker_reports_lost() {
        let mut f = Feed::new("a1");
        t09_first_hour(&mut f);
        t09_unknown_run(&mut f);
        f.take();
        t09_new_instance_then_silence(&mut f);
        assert_eq!(
            f.take(),
            [
                resumed_ev("a1", 842, T0 + H1 + mins(10) + secs(5), Some("c2")),
                lost_ev("a1", 843, T0 + H1 + mins(11) + secs(35), LostCause::Expired),
            ]
        );
    }

    #[test]
    fn t09_activity_is_forwarded_at_most_once_per_granularity() {
        let mut f = Feed::new("a1");
        t09_first_hour(&mut f);
        t09_unknown_run(&mut f);
        t09_new_instance_then_silence(&mut f);
        f.take();
        let h2 = T0 + hours(2);
        f.every(h2, h2 + mins(22) - secs(5), t09_sdk);
        // +2h is message 844; one message every 5 s after it (12 a minute).
        let seq = |m: i64| 844 + 12 * u64::try_from(m).unwrap();
        let resumed = hb_env(
            "a1",
            844,
            h2,
            AgentHeartbeatResumed {
                agent_id: "a1".into(),
                status: Running,
                container_instance_id: Some("c2".into()),
                last_event_type: Some("tool_use".into()),
                last_event_at: Some(h2),
                active_tools: Some(Vec::new()),
            },
        );
        assert_eq!(
            f.take(),
            [
                resumed,
                activity_ev("a1", seq(2), h2 + mins(2), &["bash"], 23),
                activity_ev("a1", seq(7), h2 + mins(7), &["bash"], 59),
                activity_ev("a1", seq(12), h2 + mins(12), &["bash"], 59),
                activity_ev("a1", seq(17), h2 + mins(17), &[], 59),
            ]
        );
        // The next window opens at +2h22min.
        f.send(h2 + mins(22), t09_sdk(h2 + mins(22)));
        assert_eq!(f.take(), [activity_ev("a1", seq(22), h2 + mins(22), &[], 59)]);
    }

    // --- T41 ---

    /// T1's stream: F; [5] @+10s `bead_created{b1}`; [6] @+10s the dispatch of pc-1 to b1.
    fn t1_stream() -> Given {
        given(fixture_f()).and([
            bead_created("b1", "r1").at(T0 + secs(10)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
        ])
    }

    /// T41a up to the settle at +2min: T6 up to +15s through the filter, then `exited` ("oom").
    fn t41a_until_exit() -> (Given, Feed) {
        let mut g = t1_stream();
        let mut f = Feed::new("pc-1");
        f.every(T0 + secs(15), T0 + mins(2) - secs(5), |_| running().on("c1"));
        f.send(T0 + mins(2), Heartbeat::new(Exited).exit_reason("oom"));
        let events = f.take();
        assert_eq!(
            events,
            [resumed_ev("pc-1", 1, T0 + secs(15), Some("c1")), status_ev("pc-1", 22, T0 + mins(2), Exited, Some("oom"))]
        );
        fold(&mut g, &events);
        let pc1 = g.agent("pc-1");
        assert_eq!((pc1.status, pc1.liveness, pc1.hook.as_deref()), (AgentStatus::Idle, Liveness::Lost, Some("b1")));
        let passes = g.settle_at(T0 + mins(2));
        let expected: Vec<Vec<Action>> = vec![
            vec![
                unhook_agent("pc-1", "idle agent hooked to live bead"),
                transition_bead(
                    "b1",
                    crate::state::BeadStatus::InProgress,
                    crate::state::BeadStatus::Open,
                    "agent went idle without completing work",
                ),
            ],
            vec![clear_bead_assignee("b1")],
            vec![dispatch_agent("pc-1", "b1", "r1")],
            vec![],
        ];
        assert_eq!(passes, expected);
        let pc1 = g.agent("pc-1");
        assert_eq!((pc1.status, pc1.liveness), (AgentStatus::Working, Liveness::Unseen));
        (g, f)
    }

    #[test]
    fn t41a_running_after_exit_reports_the_agent_alive_again() {
        let (mut g, mut f) = t41a_until_exit();
        f.send(T0 + mins(2) + secs(5), running().on("c1"));
        let events = f.take();
        assert_eq!(events, [resumed_ev("pc-1", 23, T0 + mins(2) + secs(5), Some("c1"))]);
        fold(&mut g, &events);
        assert_eq!(g.agent("pc-1").liveness, Liveness::Alive);
        f.every(T0 + mins(2) + secs(10), T0 + mins(3) + secs(30), |_| running().on("c1"));
        assert_eq!(f.take(), []);
        g.when_reconciled_at(T0 + mins(3) + secs(30)).then_decides_nothing();
    }

    #[test]
    fn t41a_without_the_resumed_a1_idles_the_dispatched_agent() {
        let (g, _) = t41a_until_exit();
        g.when_reconciled_at(T0 + mins(3) + secs(30)).then_decides([transition_agent(
            "pc-1",
            AgentStatus::Working,
            AgentStatus::Idle,
            "no heartbeat received since dispatch",
        )]);
    }

    /// T41b up to the registration: p1 heartbeats from +0, before it exists.
    fn t41b_until_registration() -> (Given, Feed) {
        let mut g = given(fixture_f());
        let mut f = Feed::new("p1");
        f.every(T0, T0 + secs(30), |_| running());
        let events = f.take();
        assert_eq!(events, [resumed_ev("p1", 1, T0, None)]);
        assert_eq!(f.filtered, 6);
        fold(&mut g, &events);
        assert!(!g.state.agents.contains_key("p1"), "resumed for a missing agent is a no-op");
        g.push(polecat_registered("p1").at(T0 + secs(32)));
        (g, f)
    }

    #[test]
    fn t41b_registration_resets_memory_so_the_next_heartbeat_reports_alive() {
        let (mut g, mut f) = t41b_until_registration();
        f.m.reset_for_registration();
        f.send(T0 + secs(35), running());
        let events = f.take();
        assert_eq!(events, [resumed_ev("p1", 8, T0 + secs(35), None)]);
        fold(&mut g, &events);
        assert_eq!(g.agent("p1").liveness, Liveness::Alive);
    }

    #[test]
    fn t41b_without_the_reset_the_heartbeat_after_registration_is_filtered() {
        let (g, mut f) = t41b_until_registration();
        let step = f.send(T0 + secs(35), running());
        assert!(step.filtered);
        assert_eq!(g.agent("p1").liveness, Liveness::Unseen);
    }

    /// T41c up to the last heartbeat before heartbeat_lost: running +20s…+55s, then not_found.
    fn t41c_until_just_before_lost() -> (Given, Feed) {
        let mut g = t1_stream();
        let mut f = Feed::new("pc-1");
        f.every(T0 + secs(20), T0 + secs(55), |_| running());
        f.every(T0 + mins(1), T0 + mins(2) + secs(20), |_| Heartbeat::new(NotFound));
        let events = f.take();
        assert_eq!(events, [resumed_ev("pc-1", 1, T0 + secs(20), None), status_ev("pc-1", 9, T0 + mins(1), NotFound, None)]);
        fold(&mut g, &events);
        let pc1 = g.agent("pc-1");
        assert_eq!((pc1.status, pc1.liveness), (AgentStatus::Working, Liveness::Alive), "not_found inside the grace");
        (g, f)
    }

    #[test]
    fn t41c_not_found_for_heartbeat_lost_after_the_last_running_reports_lost() {
        let (mut g, mut f) = t41c_until_just_before_lost();
        f.send(T0 + mins(2) + secs(25), Heartbeat::new(NotFound));
        let events = f.take();
        assert_eq!(events, [lost_ev("pc-1", 26, T0 + mins(2) + secs(25), LostCause::NotAlive)]);
        fold(&mut g, &events);
        assert_eq!(g.agent("pc-1").liveness, Liveness::Lost);
        g.when_reconciled_at(T0 + mins(2) + secs(25)).then_decides([transition_agent(
            "pc-1",
            AgentStatus::Working,
            AgentStatus::Idle,
            "heartbeat lost",
        )]);
    }

    #[test]
    fn t41c_near_miss_not_found_1ms_before_heartbeat_lost_is_filtered() {
        let (g, mut f) = t41c_until_just_before_lost();
        let step = f.send(T0 + mins(2) + secs(25) - 1, Heartbeat::new(NotFound));
        assert!(step.filtered, "{step:?}");
        g.when_reconciled_at(T0 + mins(2) + secs(25) - 1).then_decides_nothing();
    }

    // --- status changes ---

    #[test]
    fn a_b_a_among_non_running_statuses_of_an_alive_agent_is_three_container_status() {
        let mut f = Feed::new("a1");
        f.send(T0, running());
        f.take();
        f.send(T0 + secs(5), Heartbeat::new(Unknown));
        f.send(T0 + secs(10), Heartbeat::new(Stopping));
        f.send(T0 + secs(15), Heartbeat::new(Unknown));
        assert_eq!(
            f.take(),
            [
                status_ev("a1", 2, T0 + secs(5), Unknown, None),
                status_ev("a1", 3, T0 + secs(10), Stopping, None),
                status_ev("a1", 4, T0 + secs(15), Unknown, None),
            ]
        );
        assert_eq!(f.m.alive, Alive::True);
    }

    #[test]
    fn not_found_running_not_found_is_two_container_status_and_a_resumed_between() {
        let mut f = Feed::new("a1");
        f.send(T0, running());
        f.take();
        f.send(T0 + secs(5), Heartbeat::new(NotFound));
        assert_eq!(f.m.alive, Alive::Unknown);
        f.send(T0 + secs(10), running());
        f.send(T0 + secs(15), Heartbeat::new(NotFound));
        assert_eq!(
            f.take(),
            [
                status_ev("a1", 2, T0 + secs(5), NotFound, None),
                resumed_ev("a1", 3, T0 + secs(10), None),
                status_ev("a1", 4, T0 + secs(15), NotFound, None),
            ]
        );
    }

    #[test]
    fn exited_then_only_non_alive_heartbeats_still_report_lost_after_heartbeat_lost() {
        let mut f = Feed::new("a1");
        f.send(T0, running());
        f.send(T0 + secs(5), Heartbeat::new(Exited));
        f.take();
        f.every(T0 + secs(10), T0 + secs(95), |_| Heartbeat::new(Exited));
        assert_eq!(f.take(), [lost_ev("a1", 19, T0 + secs(90), LostCause::NotAlive)]);
    }

    #[test]
    fn non_alive_first_heartbeat_of_an_agent_never_heard_from_reports_lost_and_the_status() {
        let mut f = Feed::new("a1");
        f.send(T0, Heartbeat::new(Stopping));
        assert_eq!(f.take(), [lost_ev("a1", 1, T0, LostCause::NotAlive), status_ev("a1", 1, T0, Stopping, None)]);
    }

    #[test]
    fn a_new_container_instance_of_an_alive_agent_resumes() {
        let mut f = Feed::new("a1");
        f.send(T0, running().on("c1"));
        f.send(T0 + secs(5), running());
        f.send(T0 + secs(10), running().on("c1"));
        f.take();
        f.send(T0 + secs(15), running().on("c2"));
        assert_eq!(f.take(), [resumed_ev("a1", 4, T0 + secs(15), Some("c2"))]);
    }

    #[test]
    fn starting_resumes_and_reports_its_status_once() {
        let mut f = Feed::new("a1");
        f.send(T0, Heartbeat::new(Starting));
        f.send(T0 + secs(5), Heartbeat::new(Starting));
        let resumed = hb_env(
            "a1",
            1,
            T0,
            AgentHeartbeatResumed {
                agent_id: "a1".into(),
                status: Starting,
                container_instance_id: None,
                last_event_type: None,
                last_event_at: None,
                active_tools: None,
            },
        );
        assert_eq!(f.take(), [resumed, status_ev("a1", 1, T0, Starting, None)]);
    }

    #[test]
    fn a_return_to_running_stores_memory_without_an_append() {
        let mut f = Feed::new("a1");
        f.send(T0, Heartbeat::new(Starting));
        let step = f.send(T0 + secs(5), running());
        assert_eq!(step, Step { events: vec![], store: true, filtered: true });
        let step = f.send(T0 + secs(10), running());
        assert_eq!(step, Step { events: vec![], store: false, filtered: true });
    }

    #[test]
    fn every_append_asks_for_a_store() {
        let mut f = Feed::new("a1");
        let step = f.send(T0, running());
        assert!(step.store && !step.filtered);
        let step = f.send(T0 + secs(5), Heartbeat::new(Unknown));
        assert!(step.store && !step.filtered);
    }

    #[test]
    fn last_event_at_later_than_broker_time_is_taken_as_broker_time() {
        let mut f = Feed::new("a1");
        f.send(T0, running().watermark("tool_use", T0 + hours(5), &[]));
        f.send(T0 + mins(5), running().watermark("tool_use", T0 + hours(5), &[]));
        let events = f.take();
        let Event::AgentHeartbeatResumed(r) = &events[0].event else { panic!("{events:?}") };
        assert_eq!(r.last_event_at, Some(T0));
        let Event::AgentActivity(a) = &events[1].event else { panic!("{events:?}") };
        assert_eq!((a.last_event_at, events[1].at), (Some(T0 + mins(5)), T0 + mins(5)));
    }

    #[test]
    fn a_tool_change_right_after_resumed_is_forwarded_at_once() {
        let mut f = Feed::new("a1");
        f.send(T0, running().watermark("tool_use", T0, &[]));
        f.take();
        f.send(T0 + secs(5), running().watermark("tool_use", T0, &["bash"]));
        let events = f.take();
        assert_eq!(events.len(), 1);
        let Event::AgentActivity(a) = &events[0].event else { panic!("{events:?}") };
        assert_eq!((a.active_tools.as_slice(), a.last_event_at, a.coalesced), (&["bash".to_owned()][..], Some(T0), 0));
    }

    #[test]
    fn a_watermark_moving_less_than_granularity_is_held_back() {
        let mut f = Feed::new("a1");
        f.send(T0, running().watermark("tool_use", T0, &[]));
        let near = T0 + ACTIVITY_GRANULARITY - 1;
        assert!(f.send(near, running().watermark("tool_use", near, &[])).filtered);
        let at = T0 + ACTIVITY_GRANULARITY;
        let step = f.send(at, running().watermark("tool_use", at, &[]));
        assert_eq!(step.events, [activity_ev("a1", 3, at, &[], 1)]);
    }

    // --- expiry markers and start-up ---

    #[test]
    fn expiry_marker_reports_lost_once() {
        let mut f = Feed::new("a1");
        f.send(T0, running());
        f.take();
        let step = f.marker(T0 + secs(90));
        assert_eq!(step.events, [lost_ev("a1", 2, T0 + secs(90), LostCause::Expired)]);
        assert!(step.store && !step.filtered);
        let again = f.marker(T0 + secs(200));
        assert_eq!(again, Step::default());
    }

    #[test]
    fn expiry_marker_after_a_not_alive_lost_appends_nothing() {
        let mut f = Feed::new("a1");
        f.send(T0, Heartbeat::new(Unknown));
        f.take();
        assert_eq!(f.marker(T0 + secs(90)), Step::default());
    }

    fn stored_alive() -> AgentMemory {
        AgentMemory { alive: Alive::True, last_alive_at: Some(T0), last_status: Some(Running), seq: 41, ..AgentMemory::default() }
    }

    #[test]
    fn startup_with_an_empty_subject_reports_the_missed_marker() {
        let mut m = stored_alive();
        let step = Filter::default().on_startup(TOWN, "a1", &mut m, HeldMessage::Empty);
        assert_eq!(step.events, [lost_ev("a1", 41, T0 + secs(90), LostCause::Expired)]);
        assert!(step.store);
        assert_eq!(m.alive, Alive::False);
        // Two instances overlapping in a handover derive the same id.
        let mut m2 = stored_alive();
        assert_eq!(Filter::default().on_startup(TOWN, "a1", &mut m2, HeldMessage::Empty), step);
    }

    #[test]
    fn startup_reports_nothing_when_lost_was_stored_or_never_alive() {
        let mut lost = AgentMemory { alive: Alive::False, ..stored_alive() };
        assert_eq!(Filter::default().on_startup(TOWN, "a1", &mut lost, HeldMessage::Empty), Step::default());
        let mut never = AgentMemory { alive: Alive::Unknown, last_status: Some(Unknown), ..AgentMemory::default() };
        assert_eq!(Filter::default().on_startup(TOWN, "a1", &mut never, HeldMessage::Empty), Step::default());
        let mut held = stored_alive();
        assert_eq!(Filter::default().on_startup(TOWN, "a1", &mut held, HeldMessage::Other), Step::default());
        assert_eq!(held, stored_alive());
    }

    #[test]
    fn startup_restores_last_alive_at_from_a_held_alive_heartbeat() {
        let filter = Filter::default();
        let mut m = stored_alive();
        let step = filter.on_startup(TOWN, "a1", &mut m, HeldMessage::Alive(T0 + mins(10)));
        assert_eq!(step, Step::default());
        assert_eq!(m.last_alive_at, Some(T0 + mins(10)));
        // The next non-alive heartbeats report lost heartbeat_lost after the held one, not after T0.
        let early = filter.on_heartbeat(TOWN, "a1", &mut m, &Heartbeat::new(Unknown), 43, T0 + mins(10) + secs(5));
        assert_eq!(early.events, [status_ev("a1", 43, T0 + mins(10) + secs(5), Unknown, None)]);
        let near = filter.on_heartbeat(TOWN, "a1", &mut m, &Heartbeat::new(Unknown), 44, T0 + mins(10) + secs(90) - 1);
        assert!(near.filtered);
        let lost = filter.on_heartbeat(TOWN, "a1", &mut m, &Heartbeat::new(Unknown), 45, T0 + mins(10) + secs(90));
        assert_eq!(lost.events, [lost_ev("a1", 45, T0 + mins(10) + secs(90), LostCause::NotAlive)]);
    }

    // --- restart equivalence ---

    #[derive(Debug, Clone)]
    enum Msg {
        Hb(Millis, Heartbeat),
        Marker(Millis),
    }

    /// Runs the filter over `msgs` (sequences 1, 2, …). With `restart = Some(i)`, the instance
    /// stops before message i and a new one resumes from the memory stored (as MessagePack, only
    /// at the store points) with the start-up rule, the subject holding message i − 1.
    fn run(msgs: &[Msg], restart: Option<usize>) -> Vec<Envelope> {
        let filter = Filter::default();
        let mut live = AgentMemory::default();
        let mut stored = to_msgpack(&live).unwrap();
        let mut held = HeldMessage::Empty;
        let mut events = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            if restart == Some(i) {
                live = from_msgpack(&stored).unwrap();
                let step = filter.on_startup(TOWN, "a1", &mut live, held);
                if step.store {
                    stored = to_msgpack(&live).unwrap();
                }
                events.extend(step.events);
            }
            let seq = u64::try_from(i).unwrap() + 1;
            let step = match msg {
                Msg::Hb(t, hb) => {
                    held = if hb.is_alive() { HeldMessage::Alive(*t) } else { HeldMessage::Other };
                    filter.on_heartbeat(TOWN, "a1", &mut live, hb, seq, *t)
                }
                Msg::Marker(t) => {
                    held = HeldMessage::Other;
                    filter.on_expiry_marker(TOWN, "a1", &mut live, seq, *t)
                }
            };
            if step.store {
                stored = to_msgpack(&live).unwrap();
            }
            events.extend(step.events);
        }
        events
    }

    /// The events with `coalesced` zeroed: E5 allows only that to differ across a restart.
    fn modulo_coalesced(events: Vec<Envelope>) -> Vec<Envelope> {
        events
            .into_iter()
            .map(|mut e| {
                if let Event::AgentActivity(a) = &mut e.event {
                    a.coalesced = 0;
                }
                e
            })
            .collect()
    }

    fn busy_then_unknown() -> Vec<Msg> {
        let mut msgs = Vec::new();
        let mut t = T0;
        while t < T0 + mins(20) {
            let tools: &[&str] = if t < T0 + mins(8) { &["bash"] } else { &[] };
            msgs.push(Msg::Hb(t, running().on("c1").watermark("tool_use", t, tools)));
            t += secs(5);
        }
        while t < T0 + mins(25) {
            msgs.push(Msg::Hb(t, Heartbeat::new(Unknown)));
            t += secs(5);
        }
        msgs.push(Msg::Hb(t, running().on("c1")));
        msgs.push(Msg::Marker(t + secs(90)));
        msgs
    }

    #[test]
    fn restart_with_steady_statuses_appends_the_same_events_as_an_undisturbed_run() {
        let msgs = busy_then_unknown();
        let undisturbed = run(&msgs, None);
        let types: Vec<&str> = undisturbed.iter().map(Envelope::event_type).collect();
        let expected = [
            "agent_heartbeat_resumed",
            "agent_activity",
            "agent_activity",
            "agent_activity",
            "container_status",
            "agent_heartbeat_lost",
            "agent_heartbeat_resumed",
            "agent_heartbeat_lost",
        ];
        assert_eq!(types, expected);
        // Restarts while running (the stored M is from the last activity, minutes old), right
        // before and after the first `unknown` (message 241: lost must still come heartbeat_lost
        // after the last running), and while `unknown` persists.
        for restart in [100, 237, 240, 241, 300] {
            assert_eq!(
                modulo_coalesced(run(&msgs, Some(restart))),
                modulo_coalesced(undisturbed.clone()),
                "restart at {restart}"
            );
        }
    }

    fn arb_msgs() -> impl Strategy<Value = Vec<Msg>> {
        let hb = (
            1..HEARTBEAT_LOST,
            proptest::sample::select(ContainerState::ALL.to_vec()),
            proptest::option::of(0..mins(20)),
            any::<bool>(),
            proptest::option::of(proptest::sample::select(vec!["c1", "c2"])),
            0..20u8,
        );
        proptest::collection::vec(hb, 1..120).prop_map(|steps| {
            let mut t = T0;
            let mut msgs = Vec::new();
            for (dt, status, lag, busy, instance, marker) in steps {
                t += dt;
                if marker == 0 {
                    msgs.push(Msg::Marker(t));
                    continue;
                }
                let mut hb = Heartbeat::new(status);
                hb.container_instance_id = instance.map(Into::into);
                hb.last_event_at = lag.map(|l| t - l);
                hb.active_tools = Some(if busy { vec!["bash".into()] } else { vec![] });
                msgs.push(Msg::Hb(t, hb));
            }
            msgs
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hb(Millis, Heartbeat),
        Marker(Millis),
        Startup(HeldMessage),
        Reset,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let instant = prop_oneof![any::<i64>(), -1_000_000..1_000_000_i64];
        let hb = (
            instant.clone(),
            proptest::sample::select(ContainerState::ALL.to_vec()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(proptest::collection::vec("[a-z]{0,3}", 0..3)),
            proptest::option::of("[a-c]{0,2}"),
        )
            .prop_map(|(t, status, last_event_at, active_tools, instance)| {
                let mut hb = Heartbeat::new(status);
                hb.last_event_at = last_event_at;
                hb.active_tools = active_tools;
                hb.container_instance_id = instance;
                Op::Hb(t, hb)
            });
        let held = prop_oneof![Just(HeldMessage::Empty), Just(HeldMessage::Other), instant.clone().prop_map(HeldMessage::Alive)];
        prop_oneof![6 => hb, 1 => instant.prop_map(Op::Marker), 1 => held.prop_map(Op::Startup), 1 => Just(Op::Reset)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn restart_anywhere_between_messages_appends_the_same_events(msgs in arb_msgs(), at in any::<prop::sample::Index>()) {
            let restart = at.index(msgs.len());
            prop_assert_eq!(modulo_coalesced(run(&msgs, Some(restart))), modulo_coalesced(run(&msgs, None)));
        }

        #[test]
        fn steady_running_stream_is_one_event(
            cadences in proptest::collection::vec(1..HEARTBEAT_LOST, 1..400),
            lag in proptest::option::of(0..hours(3)),
            busy in any::<bool>(),
            instance in proptest::option::of("c[0-9]"),
        ) {
            let filter = Filter::default();
            let mut m = AgentMemory::default();
            let mut hb = running();
            hb.container_instance_id = instance;
            hb.last_event_at = lag.map(|l| T0 - l);
            hb.active_tools = Some(if busy { vec!["bash".into()] } else { vec![] });
            let mut t = T0;
            let mut events = Vec::new();
            let mut filtered = 0;
            for (i, dt) in cadences.iter().enumerate() {
                let step = filter.on_heartbeat(TOWN, "a1", &mut m, &hb, u64::try_from(i).unwrap() + 1, t);
                filtered += usize::from(step.filtered);
                events.extend(step.events);
                t += dt;
            }
            prop_assert_eq!(events.len(), 1);
            prop_assert_eq!(events[0].event_type(), "agent_heartbeat_resumed");
            prop_assert_eq!(filtered, cadences.len() - 1);
        }

        #[test]
        fn filter_never_panics_and_keeps_its_event_shape(ops in proptest::collection::vec(arb_op(), 0..60)) {
            let filter = Filter { heartbeat_lost: HEARTBEAT_LOST, granularity: ACTIVITY_GRANULARITY };
            let mut m = AgentMemory::default();
            let order = ["agent_heartbeat_resumed", "agent_heartbeat_lost", "container_status", "agent_activity"];
            for (i, op) in ops.into_iter().enumerate() {
                let seq = u64::try_from(i).unwrap() + 1;
                let (step, at) = match op {
                    Op::Hb(t, hb) => (filter.on_heartbeat(TOWN, "a1", &mut m, &hb, seq, t), Some(t)),
                    Op::Marker(t) => (filter.on_expiry_marker(TOWN, "a1", &mut m, seq, t), Some(t)),
                    Op::Startup(held) => (filter.on_startup(TOWN, "a1", &mut m, held), None),
                    Op::Reset => {
                        m.reset_for_registration();
                        continue;
                    }
                };
                prop_assert_eq!(step.filtered && !step.events.is_empty(), false);
                prop_assert!(step.events.is_empty() || step.store);
                let ranks: Vec<usize> =
                    step.events.iter().map(|e| order.iter().position(|o| *o == e.event_type()).unwrap()).collect();
                prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]), "step order: {:?}", ranks);
                for e in &step.events {
                    prop_assert_eq!(e.source.as_str(), "hb");
                    prop_assert!(e.id.starts_with("t1:h:a1:") && e.id.ends_with(e.event_type()));
                    if let Some(t) = at {
                        prop_assert_eq!(e.at, t);
                    }
                    prop_assert!(crate::ids::is_bead_id(&e.id) || e.id.len() > 128);
                }
            }
        }
    }
}
