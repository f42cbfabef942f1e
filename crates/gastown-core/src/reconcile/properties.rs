//! Property tests of the pass semantics over histories a real town can have (STYLE §6): states
//! reached by validated commands (through `command::handle`), heartbeats filtered by the E5
//! filter, executor results for the actions the town published, and the town's own decisions,
//! settled after every step as a worker would.
//!
//! - R0.4: settling at one `now` ends within SETTLE_MAX_PASSES (truncated passes not counted),
//!   and then a pass decides nothing;
//! - R0.7: on a settled state, `next_wakeup(S, now)` never names an instant later than the first
//!   one at which a pass would act — no pass at a sampled instant before it decides anything.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::action::Action;
use crate::command::{CommandRequest, Outcome, handle};
use crate::constants::SETTLE_MAX_PASSES;
use crate::event::{ContainerState, Envelope, Event};
use crate::heartbeat::{AgentMemory, Filter, Heartbeat};
use crate::state::{BeadType, TownState};
use crate::testing::{T0, fixture_f, given, reconciled};
use crate::time::{Millis, hours, mins, secs};
use crate::{apply, next_wakeup, reconcile};

/// One step of a history; `pick` chooses among what the state offers when the step runs.
#[derive(Debug, Clone)]
enum Step {
    /// Time passes.
    Advance(Millis),
    /// A command from the menu, with a pick and a variant number.
    Command(u8, u16, u8),
    /// A heartbeat of an agent: status index, whether the watermark moves, tools in use.
    Heartbeat(u16, u8, bool, bool),
    /// The broker's expiry marker for an agent.
    Expire(u16),
    /// An executor result for a published action: pick, ok, detail variant.
    Result(u16, bool, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop_oneof![Just(secs(1)), Just(secs(30)), Just(mins(2)), Just(mins(6)), Just(mins(31)), Just(hours(2)), Just(hours(5)), Just(hours(25))]
            .prop_map(Step::Advance),
        6 => (0u8..24, any::<u16>(), any::<u8>()).prop_map(|(c, p, v)| Step::Command(c, p, v)),
        4 => (any::<u16>(), 0u8..9, any::<bool>(), any::<bool>()).prop_map(|(a, s, w, t)| Step::Heartbeat(a, s, w, t)),
        1 => any::<u16>().prop_map(Step::Expire),
        3 => (any::<u16>(), any::<bool>(), any::<u8>()).prop_map(|(p, ok, d)| Step::Result(p, ok, d)),
    ]
}

fn pick<T: Clone>(items: &[T], p: u16) -> Option<T> {
    if items.is_empty() { None } else { items.get(usize::from(p) % items.len()).cloned() }
}

/// A town driven the way the services drive it.
struct Town {
    state: TownState,
    now: Millis,
    ulid: u64,
    hb_seq: u64,
    memory: BTreeMap<String, AgentMemory>,
    instance: BTreeMap<String, u32>,
    published: Vec<(String, Action)>,
}

impl Town {
    fn new() -> Self {
        let g = given(fixture_f());
        Self {
            state: g.state,
            now: T0,
            ulid: 0,
            hb_seq: 0,
            memory: BTreeMap::new(),
            instance: BTreeMap::new(),
            published: Vec::new(),
        }
    }

    fn append(&mut self, env: &Envelope) {
        let seq = self.state.last_seq + 1;
        apply(&mut self.state, seq, env);
    }

    fn ids(&self, f: impl Fn(&crate::state::Bead) -> bool) -> Vec<String> {
        self.state.beads.values().filter(|b| f(b)).map(|b| b.bead_id.clone()).collect()
    }

    fn agents(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state.agents.keys().cloned().collect();
        v.extend(["p1".to_owned(), "p2".to_owned()]);
        v.sort();
        v.dedup();
        v
    }

    fn command(&mut self, c: u8, p: u16, v: u8) {
        let Some((name, body)) = self.menu(c, p, v) else { return };
        self.ulid += 1;
        let fresh = format!("01TEST{:020}", self.ulid);
        let bytes = serde_json::to_vec(&body).unwrap();
        let req = CommandRequest {
            town_id: "t1",
            command: name,
            body: &bytes,
            content_type: Some("application/json"),
            msg_id: None,
            now: self.now,
            fresh_id: &fresh,
        };
        if let Ok(Outcome::Append { envelope, .. }) = handle(&req, &self.state) {
            let registered = match &envelope.event {
                Event::AgentRegistered(r) => Some(r.agent_id.clone()),
                _ => None,
            };
            self.append(&envelope);
            if let Some(a) = registered {
                self.memory.entry(a).or_default().reset_for_registration();
            }
        }
    }

    fn menu(&self, c: u8, p: u16, v: u8) -> Option<(&'static str, Value)> {
        let beads = ["b1", "b2", "b3", "b4", "b5", "b6"];
        let bead = beads[usize::from(p) % beads.len()];
        let rig = if v.is_multiple_of(4) { "r2" } else { "r1" };
        let agents = self.agents();
        let agent = pick(&agents, p)?;
        let any_bead = pick(&self.ids(|_| true), p);
        let mrs = self.ids(|b| b.bead_type == BeadType::MergeRequest);
        let pr_mrs = self.ids(|b| b.pr_url().is_some());
        Some(match c {
            0 => ("rig.add", json!({"rig_id": "r2", "name": "two", "git_url": "https://github.com/acme/two.git"})),
            1 => (
                "agent.register",
                json!({"agent_id": (["p1", "p2", "p3"][usize::from(v) % 3]), "role": "polecat", "rig_id": rig}),
            ),
            2 => ("agent.register", json!({"agent_id": "ref-r1", "role": "refinery", "rig_id": "r1"})),
            3 | 4 => {
                let mut b = json!({"bead_id": bead, "title": format!("Fix {bead}"), "rig_id": rig});
                if v.is_multiple_of(3) {
                    b["depends_on"] = json!([beads[usize::from(v) % beads.len()]]);
                }
                if v.is_multiple_of(7) {
                    b["agent_id"] = json!(agent);
                }
                ("bead.sling", b)
            }
            5 => {
                let status = ["open", "in_progress", "in_review", "closed", "failed"][usize::from(v) % 5];
                ("bead.status", json!({"bead_id": any_bead?, "status": status}))
            }
            6 => ("bead.hook", json!({"bead_id": any_bead?, "agent_id": agent})),
            7 => {
                let pr = if v.is_multiple_of(3) { json!("https://github.com/acme/app/pull/7") } else { Value::Null };
                let mut b = json!({"agent_id": agent, "branch": format!("gt/{agent}")});
                if !pr.is_null() {
                    b["pr_url"] = pr;
                }
                ("agent.done", b)
            }
            8 => {
                let status = if v.is_multiple_of(2) { "completed" } else { "failed" };
                let mut b = json!({"agent_id": agent, "status": status});
                if v.is_multiple_of(5) {
                    b["reason"] = json!("container eviction");
                }
                ("agent.completed", b)
            }
            9 => {
                let beads: Vec<Value> = (0..1 + v % 3).map(|i| json!({"bead_id": format!("c{}", u32::from(i) + 10 * u32::from(v % 3)), "title": "part", "rig_id": "r1"})).collect();
                let mode = if v.is_multiple_of(2) { "review-then-land" } else { "review-and-merge" };
                (
                    "convoy.create",
                    json!({"convoy_id": format!("cv{}", v % 3), "title": "Release", "merge_mode": mode, "staged": v.is_multiple_of(4), "beads": beads}),
                )
            }
            10 => ("convoy.start", json!({"convoy_id": format!("cv{}", v % 3)})),
            11 => (
                "agent.nudge",
                json!({"agent_id": agent, "message": "hello", "mode": (["immediate", "wait-idle", "queue"][usize::from(v) % 3])}),
            ),
            12 => ("mail.send", json!({"to_agent_id": agent, "from": "op", "subject": "hi"})),
            13 => (
                "escalation.raise",
                json!({"title": "trouble", "severity": (["low", "medium", "high", "critical"][usize::from(v) % 4])}),
            ),
            14 => ("escalation.ack", json!({"bead_id": pick(&self.ids(|b| b.bead_type == BeadType::Escalation), p)?})),
            15 => {
                let reqs = self.ids(|b| b.is_triage_request() && b.status.is_live());
                let action =
                    ["RESTART", "RESTART_WITH_BACKOFF", "NUDGE", "CLOSE_BEAD", "ESCALATE", "REASSIGN_BEAD", "ESCALATE_TO_MAYOR"]
                        [usize::from(v) % 7];
                ("triage.resolve", json!({"request_bead_id": pick(&reqs, p)?, "action": action, "note": "n"}))
            }
            16 => {
                let mr = pick(&mrs, p)?;
                let hooked = self.state.hooked_agents(&mr).next().map(|a| a.agent_id.clone())?;
                ("review.request_changes", json!({"mr_bead_id": mr, "agent_id": hooked, "body": "fix it"}))
            }
            17 => {
                let mr = pick(&pr_mrs, p)?;
                let url = self.state.beads.get(&mr)?.pr_url()?.to_owned();
                (
                    "pr.status",
                    json!({"mr_bead_id": mr, "pr_url": url, "pr_state": if v.is_multiple_of(2) { "merged" } else { "closed" }}),
                )
            }
            18 => {
                let mr = pick(&pr_mrs, p)?;
                let url = self.state.beads.get(&mr)?.pr_url()?.to_owned();
                (
                    "pr.feedback",
                    json!({"mr_bead_id": mr, "pr_url": url, "pr_number": 7, "repo": "acme/app", "branch": "gt/x", "has_failing_checks": true}),
                )
            }
            19 => {
                let mr = pick(&pr_mrs, p)?;
                let url = self.state.beads.get(&mr)?.pr_url()?.to_owned();
                ("pr.conflict", json!({"mr_bead_id": mr, "pr_url": url, "branch": "gt/x"}))
            }
            20 => {
                let mr = pick(&pr_mrs, p)?;
                let url = self.state.beads.get(&mr)?.pr_url()?.to_owned();
                ("pr.auto_merge", json!({"mr_bead_id": mr, "pr_url": url}))
            }
            21 => ("container.eviction", json!({"container_instance_id": format!("c{}", v % 2)})),
            22 => (
                "town.config",
                match v % 5 {
                    0 => json!({"max_polecats_per_rig": 1 + v % 3}),
                    1 => json!({"merge_strategy": "pr"}),
                    2 => json!({"refinery": {"code_review": v.is_multiple_of(2)}}),
                    3 => json!({"circuit_breaker_threshold": 2}),
                    _ => json!({"max_dispatch_attempts": 2}),
                },
            ),
            _ => ("agent.checkpoint", json!({"agent_id": agent, "checkpoint": {"step": v}})),
        })
    }

    fn heartbeat(&mut self, a: u16, s: u8, moves: bool, tools: bool) {
        let Some(agent) = pick(&self.agents(), a) else { return };
        let status = ContainerState::ALL[usize::from(s) % ContainerState::ALL.len()];
        if s == 8 {
            *self.instance.entry(agent.clone()).or_default() += 1;
        }
        let instance = format!("c{}", self.instance.get(&agent).copied().unwrap_or(0));
        let mut hb = Heartbeat::new(status).on(&instance);
        if moves {
            let t: &[&str] = if tools { &["bash"] } else { &[] };
            hb = hb.watermark("tool_use", self.now, t);
        }
        self.hb_seq += 1;
        let m = self.memory.entry(agent.clone()).or_default();
        let out = Filter::default().on_heartbeat("t1", &agent, m, &hb, self.hb_seq, self.now);
        for e in out.events {
            self.append(&e);
        }
    }

    fn expire(&mut self, a: u16) {
        let Some(agent) = pick(&self.agents(), a) else { return };
        self.hb_seq += 1;
        let m = self.memory.entry(agent.clone()).or_default();
        let out = Filter::default().on_expiry_marker("t1", &agent, m, self.hb_seq, self.now);
        for e in out.events {
            self.append(&e);
        }
    }

    fn result(&mut self, p: u16, ok: bool, d: u8) {
        let Some((action_id, action)) = pick(&self.published, p) else { return };
        let v = serde_json::to_value(&action).unwrap();
        let mut body = json!({"action_id": action_id, "action_type": action.action_type(), "ok": ok});
        for k in ["agent_id", "bead_id", "nudge_id"] {
            if let Some(x) = v.get(k) {
                body[k] = x.clone();
            }
        }
        if matches!(action, Action::PollPr { .. }) {
            let state = ["open", "unknown", "open", "merged"][usize::from(d) % 4];
            let kind = if d.is_multiple_of(5) { "permanent" } else { "transient" };
            body["details"] = json!({"pr_state": state, "error_kind": kind, "awaiting_approval": d.is_multiple_of(7)});
        }
        if !ok {
            body["error"] = json!("executor failed");
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        let req = CommandRequest {
            town_id: "t1",
            command: "action.result",
            body: &bytes,
            content_type: None,
            msg_id: None,
            now: self.now,
            fresh_id: "01RESULT",
        };
        if let Ok(Outcome::Append { envelope, .. }) = handle(&req, &self.state) {
            self.append(&envelope);
        }
    }

    /// Settles at `now` as a worker does, checking R0.4; records published actions.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        let mut counted = 0;
        loop {
            let d = reconcile(&self.state, self.now);
            if d.actions.is_empty() {
                return Ok(());
            }
            if !d.truncated {
                counted += 1;
            }
            prop_assert!(
                counted <= SETTLE_MAX_PASSES,
                "no settle at {} within {} passes: last {:?}",
                self.now,
                SETTLE_MAX_PASSES,
                d.actions
            );
            let seq = self.state.last_seq + 1;
            let mut g = crate::testing::Given { state: self.state.clone() };
            g.push(reconciled(d.actions.clone()).at(self.now));
            self.state = g.state;
            for (i, a) in d.actions.iter().enumerate() {
                if a.is_published() {
                    self.published.push((format!("{seq}:{i}"), a.clone()));
                }
            }
            if self.published.len() > 64 {
                self.published.drain(..32);
            }
        }
    }

    /// R0.7 on the settled state.
    fn check_wakeup(&self) -> Result<(), TestCaseError> {
        let w = next_wakeup(&self.state, self.now);
        let probes: Vec<Millis> = match w {
            Some(w) => {
                prop_assert!(w > self.now, "next_wakeup {w} is not after {}", self.now);
                let span = w - self.now;
                vec![self.now + 1, self.now + span / 3, self.now + span / 2, w - 1]
                    .into_iter()
                    .filter(|t| *t > self.now && *t < w)
                    .collect()
            }
            None => vec![self.now + 1, self.now + mins(10), self.now + hours(3), self.now + hours(30), self.now + hours(80)],
        };
        for t in probes {
            let d = reconcile(&self.state, t);
            prop_assert!(
                d.actions.is_empty(),
                "settled at {}, next_wakeup {:?}, but a pass at {} decides {:?}",
                self.now,
                w,
                t,
                d.actions
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn settling_ends_within_the_pass_limit_and_next_wakeup_is_sound(steps in prop::collection::vec(step(), 1..120)) {
        let mut town = Town::new();
        town.settle()?;
        town.check_wakeup()?;
        for s in steps {
            match s {
                Step::Advance(d) => town.now += d,
                Step::Command(c, p, v) => town.command(c, p, v),
                Step::Heartbeat(a, st, m, t) => town.heartbeat(a, st, m, t),
                Step::Expire(a) => town.expire(a),
                Step::Result(p, ok, d) => town.result(p, ok, d),
            }
            town.settle()?;
            town.check_wakeup()?;
        }
    }
}
