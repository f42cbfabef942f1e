//! Given/when/then builders for scenario tests (STYLE §10), shared with other crates' tests and
//! benches through the `testing` feature.
//!
//! *Given* folds events built by small functions named after the event types through the real
//! `apply`, from an empty town; *when* calls the real `reconcile`; *then* compares typed actions
//! in order and checks quiescence (R0.4) by deciding again on the state the decision leaves.
//!
//! ```
//! use gastown_core::testing::*;
//! use gastown_core::state::Role;
//!
//! let mut town = given(fixture_f()).and([bead_created("b1", "r1").at(T0 + secs(10))]);
//! town.when_reconciled_at(T0 + secs(10))
//!     .then_decides([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use serde_json::{Map, Value};

use crate::action::{Action, CreateAgent, PollFlags};
use crate::constants::SETTLE_MAX_PASSES;
use crate::event::*;
use crate::state::{Agent, AgentStatus, Bead, BeadStatus, MergeMode, Priority, Role, TownState};
use crate::{Decision, apply, next_wakeup, reconcile};

pub use crate::time::{Millis, hours, mins, secs};

/// T of §T: 2026-06-01T10:00:00.000Z.
pub const T0: Millis = 1_780_308_000_000;
/// The town of every scenario.
pub const TOWN: &str = "t1";

/// An event to fold: the typed event plus optional id and time.
#[derive(Debug, Clone)]
pub struct Ev {
    pub event: Event,
    pub at: Option<Millis>,
    pub id: Option<String>,
    pub source: String,
}

impl Ev {
    /// Sets the writer's time.
    #[must_use]
    pub fn at(mut self, t: Millis) -> Self {
        self.at = Some(t);
        self
    }
    /// Sets the event id.
    #[must_use]
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

/// Wraps any event payload.
pub fn ev(e: impl Into<Event>) -> Ev {
    let event = e.into();
    let source = match &event {
        Event::Reconciled(_) => source::RECONCILER.to_owned(),
        Event::AgentHeartbeatResumed(_) | Event::AgentHeartbeatLost(_) | Event::ContainerStatus(_) | Event::AgentActivity(_) => {
            source::HEARTBEAT.to_owned()
        }
        other => source::command(other.event_type()),
    };
    Ev { event, at: None, id: None, source }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub fn town_configured() -> Ev {
    ev(TownConfigured::default())
}
pub fn town_configured_with(keys: Value) -> Ev {
    ev(TownConfigured { keys: obj(keys) })
}
/// `rig_added{rig, "app", https://github.com/acme/app.git, main}`.
pub fn rig_added(rig: &str) -> Ev {
    ev(RigAdded {
        rig_id: rig.into(),
        name: if rig == "r1" { "app".into() } else { format!("app-{rig}") },
        git_url: "https://github.com/acme/app.git".into(),
        default_branch: "main".into(),
        overrides: None,
    })
}
pub fn rig_configured(rig: &str, overrides: Value) -> Ev {
    ev(RigConfigured { rig_id: rig.into(), overrides: obj(overrides) })
}
pub fn agent_registered(agent: &str, role: Role, rig: Option<&str>) -> Ev {
    ev(AgentRegistered { agent_id: agent.into(), role, rig_id: rig.map(Into::into), name: None })
}
/// A polecat of r1.
pub fn polecat_registered(agent: &str) -> Ev {
    agent_registered(agent, Role::Polecat, Some("r1"))
}
/// `agent_heartbeat_resumed{agent, running}`.
pub fn resumed(agent: &str) -> Ev {
    ev(AgentHeartbeatResumed {
        agent_id: agent.into(),
        status: ContainerState::Running,
        container_instance_id: None,
        last_event_type: None,
        last_event_at: None,
        active_tools: None,
    })
}
/// `agent_heartbeat_resumed{agent, running, instance}`.
pub fn resumed_on(agent: &str, instance: &str) -> Ev {
    ev(AgentHeartbeatResumed {
        agent_id: agent.into(),
        status: ContainerState::Running,
        container_instance_id: Some(instance.into()),
        last_event_type: None,
        last_event_at: None,
        active_tools: None,
    })
}
pub fn heartbeat_lost(agent: &str, cause: LostCause) -> Ev {
    ev(AgentHeartbeatLost { agent_id: agent.into(), cause })
}
pub fn container_status(agent: &str, status: ContainerState, exit_reason: Option<&str>) -> Ev {
    ev(ContainerStatus { agent_id: agent.into(), status, exit_reason: exit_reason.map(Into::into) })
}
pub fn agent_activity(agent: &str, last_event_at: Millis, tools: &[&str]) -> Ev {
    ev(AgentActivity {
        agent_id: agent.into(),
        last_event_type: Some("tool_use".into()),
        last_event_at: Some(last_event_at),
        active_tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        coalesced: 0,
    })
}
/// The payload of `bead_created{id, title = id, rig}`, for struct-update syntax.
pub fn bead(id: &str, rig: Option<&str>) -> BeadCreated {
    BeadCreated {
        bead_id: id.into(),
        title: id.into(),
        body: None,
        rig_id: rig.map(Into::into),
        parent_bead_id: None,
        priority: Priority::Medium,
        labels: Vec::new(),
        metadata: Map::new(),
        created_by: "operator".into(),
        depends_on: Vec::new(),
        convoy_id: None,
        agent_id: None,
    }
}
pub fn bead_created(id: &str, rig: &str) -> Ev {
    ev(bead(id, Some(rig)))
}
pub fn bead_hooked(bead_id: &str, agent: &str) -> Ev {
    ev(BeadHooked { bead_id: bead_id.into(), agent_id: agent.into() })
}
pub fn bead_status_changed(bead_id: &str, status: BeadStatus) -> Ev {
    ev(BeadStatusChanged { bead_id: bead_id.into(), status, reason: None, actor: "operator".into() })
}
pub fn dependency_added(bead_id: &str, depends_on: &str, kind: crate::state::DepKind) -> Ev {
    ev(DependencyAdded { bead_id: bead_id.into(), depends_on: depends_on.into(), kind })
}
/// The payload of `agent_done{agent, branch}`.
pub fn done(agent: &str, branch: &str) -> AgentDone {
    AgentDone { agent_id: agent.into(), branch: branch.into(), pr_url: None, summary: None, bead_id: None, dispatch_id: None }
}
pub fn agent_done(agent: &str, branch: &str) -> Ev {
    ev(done(agent, branch))
}
pub fn agent_done_pr(agent: &str, branch: &str, pr_url: &str) -> Ev {
    ev(AgentDone { pr_url: Some(pr_url.into()), ..done(agent, branch) })
}
pub fn agent_completed(agent: &str, status: CompletionStatus, reason: Option<&str>) -> Ev {
    ev(AgentCompleted { agent_id: Some(agent.into()), status, reason: reason.map(Into::into), bead_id: None, dispatch_id: None })
}
pub fn pr_status_changed(mr: &str, pr_url: &str, pr_state: PrState) -> Ev {
    ev(PrStatusChanged { mr_bead_id: mr.into(), pr_url: pr_url.into(), pr_state })
}
pub fn action_result(action_id: &str, action_type: &str, ok: bool) -> ActionResult {
    ActionResult {
        action_id: action_id.into(),
        action_type: action_type.into(),
        ok,
        error: None,
        details: None,
        agent_id: None,
        bead_id: None,
        nudge_id: None,
    }
}
pub fn container_eviction(instance: Option<&str>) -> Ev {
    ev(ContainerEviction { container_instance_id: instance.map(Into::into), reason: None })
}
/// `convoy_created{id, title, review-then-land, staged, beads}` with its feature branch.
pub fn convoy_created(id: &str, title: &str, staged: bool, beads: Vec<ConvoyBeadSpec>) -> Ev {
    ev(ConvoyCreated {
        convoy_id: id.into(),
        title: title.into(),
        merge_mode: MergeMode::ReviewThenLand,
        staged,
        feature_branch: Some(feature_branch(id, title)),
        beads,
    })
}

/// One r1 issue of a convoy.
pub fn convoy_bead(id: &str, depends_on: &[&str]) -> ConvoyBeadSpec {
    ConvoyBeadSpec {
        bead_id: id.into(),
        title: id.into(),
        body: None,
        rig_id: "r1".into(),
        priority: None,
        labels: None,
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
    }
}

/// A decision carrying `actions`, stored as the next event (`base_seq` filled when folded).
pub fn reconciled(actions: impl IntoIterator<Item = Action>) -> Ev {
    ev(Reconciled { at: 0, base_seq: 0, actions: actions.into_iter().collect() })
}

/// Fixture F of §T: [1] `town_configured{}`; [2] `rig_added{r1}`; [3] `agent_registered{mayor}`;
/// [4] `agent_heartbeat_resumed{mayor}`, all at T0.
pub fn fixture_f() -> Vec<Ev> {
    vec![
        town_configured().at(T0),
        rig_added("r1").at(T0),
        agent_registered("mayor", Role::Mayor, None).at(T0),
        resumed("mayor").at(T0),
    ]
}

// --- actions ---

pub fn transition_bead(bead: &str, from: BeadStatus, to: BeadStatus, reason: &str) -> Action {
    Action::TransitionBead { bead_id: bead.into(), from, to, reason: reason.into() }
}
pub fn clear_bead_assignee(bead: &str) -> Action {
    Action::ClearBeadAssignee { bead_id: bead.into() }
}
pub fn transition_agent(agent: &str, from: AgentStatus, to: AgentStatus, reason: &str) -> Action {
    Action::TransitionAgent { agent_id: agent.into(), from, to, reason: reason.into() }
}
pub fn hook_agent(agent: &str, bead: &str) -> Action {
    Action::HookAgent { agent_id: agent.into(), bead_id: bead.into() }
}
pub fn unhook_agent(agent: &str, reason: &str) -> Action {
    Action::UnhookAgent { agent_id: agent.into(), reason: reason.into() }
}
pub fn clear_agent_checkpoint(agent: &str) -> Action {
    Action::ClearAgentCheckpoint { agent_id: agent.into() }
}
pub fn dispatch_agent(agent: &str, bead: &str, rig: &str) -> Action {
    Action::DispatchAgent { agent_id: agent.into(), bead_id: bead.into(), rig_id: rig.into(), create: None }
}
pub fn dispatch_creating(agent: &str, bead: &str, rig: &str, role: Role, name: Option<&str>) -> Action {
    Action::DispatchAgent {
        agent_id: agent.into(),
        bead_id: bead.into(),
        rig_id: rig.into(),
        create: Some(CreateAgent { role, name: name.map(Into::into) }),
    }
}
pub fn stop_agent(agent: &str, reason: &str) -> Action {
    Action::StopAgent { agent_id: agent.into(), reason: reason.into() }
}
/// `poll_pr` with the default flags (auto_merge on, no delay, feedback off).
pub fn poll_pr(bead: &str, pr_url: &str) -> Action {
    Action::PollPr {
        bead_id: bead.into(),
        pr_url: pr_url.into(),
        flags: PollFlags { auto_merge: true, auto_merge_delay_minutes: None, auto_resolve_pr_feedback: false },
    }
}
pub fn merge_pr(bead: &str, pr_url: &str) -> Action {
    Action::MergePr { bead_id: bead.into(), pr_url: pr_url.into() }
}

// --- given / when / then ---

/// A town built by folding events.
#[derive(Debug, Clone)]
pub struct Given {
    pub state: TownState,
}

/// Folds `events` from an empty town `t1`, at sequences 1, 2, …
pub fn given(events: impl IntoIterator<Item = Ev>) -> Given {
    let mut g = Given { state: TownState::new(TOWN) };
    for e in events {
        g.push(e);
    }
    g
}

impl Given {
    /// Folds more events.
    #[must_use]
    pub fn and(mut self, events: impl IntoIterator<Item = Ev>) -> Self {
        for e in events {
            self.push(e);
        }
        self
    }

    /// Folds one event at the next sequence and returns that sequence. An event without a time
    /// gets the town clock (T0 for an empty town); a `reconciled` event gets `base_seq` = the last
    /// sequence folded and `at` = its time.
    pub fn push(&mut self, e: Ev) -> u64 {
        let seq = self.state.last_seq + 1;
        let at = e.at.unwrap_or(if self.state.exists() { self.state.clock } else { T0 });
        let mut event = e.event;
        let mut id = e.id;
        if let Event::Reconciled(r) = &mut event {
            r.at = at;
            r.base_seq = self.state.last_seq;
            id = id.or_else(|| Some(format!("{TOWN}:d:{}:{at}", r.base_seq)));
        }
        let id = id.unwrap_or_else(|| format!("{TOWN}:e:{seq}"));
        let env = Envelope::new(id, at, e.source, event);
        apply(&mut self.state, seq, &env);
        seq
    }

    /// Runs one pass at `now` and stores its decision (if any) as the next event.
    pub fn pass_at(&mut self, now: Millis) -> Vec<Action> {
        let d = reconcile(&self.state, now);
        if !d.actions.is_empty() {
            self.push(reconciled(d.actions.clone()).at(now));
        }
        d.actions
    }

    /// Runs passes at `now` until one decides nothing (R0.4); returns every pass's actions, the
    /// last (empty) one included. Panics if it does not settle within SETTLE_MAX_PASSES.
    pub fn settle_at(&mut self, now: Millis) -> Vec<Vec<Action>> {
        let mut passes = Vec::new();
        for _ in 0..=SETTLE_MAX_PASSES {
            let a = self.pass_at(now);
            let empty = a.is_empty();
            passes.push(a);
            if empty {
                return passes;
            }
        }
        panic!("no settle within {SETTLE_MAX_PASSES} passes at {now}: {passes:#?}");
    }

    /// Reconciles at `now` without storing anything.
    pub fn when_reconciled_at(&self, now: Millis) -> Then {
        Then { state: self.state.clone(), now, decision: reconcile(&self.state, now) }
    }

    /// An agent of the state (panics when missing).
    pub fn agent(&self, id: &str) -> &Agent {
        self.state.agents.get(id).unwrap_or_else(|| panic!("no agent {id}"))
    }

    /// A bead of the state (panics when missing).
    pub fn bead(&self, id: &str) -> &Bead {
        self.state.beads.get(id).unwrap_or_else(|| panic!("no bead {id}"))
    }
}

/// The outcome of one pass, to assert on.
#[derive(Debug)]
pub struct Then {
    pub state: TownState,
    pub now: Millis,
    pub decision: Decision,
}

fn action_key(a: &Action) -> (String, String) {
    let v = serde_json::to_value(a).unwrap();
    let id = ["bead_id", "agent_id", "convoy_id", "nudge_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    (a.action_type().to_owned(), id)
}

impl Then {
    /// Asserts the pass decided exactly `expected`, in order, and that deciding again on the state
    /// the decision leaves repeats no (action type, entity) of it (R0.4; H3 excepted).
    pub fn then_decides(self, expected: impl IntoIterator<Item = Action>) -> Self {
        let expected: Vec<Action> = expected.into_iter().collect();
        assert_eq!(self.decision.actions, expected, "actions decided at {}", self.now);
        let mut after = Given { state: self.state.clone() };
        after.push(reconciled(expected.clone()).at(self.now));
        let next = reconcile(&after.state, self.now);
        let before: Vec<_> = expected.iter().map(action_key).collect();
        for a in &next.actions {
            let k = action_key(a);
            assert!(k.0 == "re_escalate" || !before.contains(&k), "R0.4: {a:?} is decided again right after its own decision");
        }
        self
    }

    /// Asserts the pass decided nothing.
    pub fn then_decides_nothing(self) -> Self {
        assert_eq!(self.decision.actions, Vec::<Action>::new(), "actions decided at {}", self.now);
        self
    }

    /// Asserts `next_wakeup(S, now)` on the pre-pass state.
    pub fn and_wakes_at(self, t: Millis) -> Self {
        assert_eq!(next_wakeup(&self.state, self.now), Some(t), "next_wakeup after {}", self.now);
        self
    }
}

/// A state no history reaches, built by hand for invariant tests (T40). The name says so.
pub fn unchecked_state(build: impl FnOnce(&mut TownState)) -> TownState {
    let mut s = given(fixture_f()).state;
    build(&mut s);
    s
}
