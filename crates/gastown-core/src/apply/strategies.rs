//! `proptest` strategies for events, actions and envelopes, shared by the crate's property tests.
//!
//! Ids are drawn from small pools, so generated events hit the entities earlier ones created;
//! times are drawn around T0 in any order (also backwards), and decisions carry arbitrary actions.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, Union};
use serde_json::{Map, Value, json};

use crate::action::{Action, ActionMessage, CreateAgent, PollFlags};
use crate::event::*;
use crate::state::{AgentStatus, BeadStatus, DepKind, MergeMode, NudgeMode, NudgePriority, Priority, Role, Severity};
use crate::testing::T0;
use crate::time::{Millis, hours};

/// Agent ids, reserved and not.
pub(crate) const AGENTS: &[&str] = &["mayor", "p1", "p2", "pc-1", "pc-2", "ref-r1", "ref-r2"];
/// Bead ids of every kind.
pub(crate) const BEADS: &[&str] =
    &["b1", "b2", "b3", "mr-1", "mr-2", "mr-3", "cv1", "cv2", "e1", "esc-1", "tri-1", "tb-1", "fb-1", "cf-1", "rw-1", "msg-1"];
/// Rig ids.
pub(crate) const RIGS: &[&str] = &["r1", "r2"];
/// Nudge ids.
pub(crate) const NUDGES: &[&str] = &["n1", "ndg-1", "ndg-2"];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    select(pool).prop_map(str::to_owned)
}

/// An agent id from the pool.
pub(crate) fn agent_id() -> impl Strategy<Value = String> + Clone {
    pick(AGENTS)
}
/// A bead id from the pool.
pub(crate) fn bead_id() -> impl Strategy<Value = String> + Clone {
    pick(BEADS)
}
/// A rig id from the pool.
pub(crate) fn rig_id() -> impl Strategy<Value = String> + Clone {
    pick(RIGS)
}
/// A nudge id from the pool.
pub(crate) fn nudge_id() -> impl Strategy<Value = String> + Clone {
    pick(NUDGES)
}
/// A short free text.
pub(crate) fn text() -> impl Strategy<Value = String> + Clone {
    pick(&["Fix login", "x", "", "Release v2", "a very long title that goes on and on past forty characters"])
}
/// An instant within three hours of T0.
pub(crate) fn instant() -> impl Strategy<Value = Millis> + Clone {
    0..hours(3)
}

fn role() -> impl Strategy<Value = Role> + Clone {
    select(Role::ALL)
}
fn bead_status() -> impl Strategy<Value = BeadStatus> + Clone {
    select(BeadStatus::ALL)
}
fn agent_status() -> impl Strategy<Value = AgentStatus> + Clone {
    select(AgentStatus::ALL)
}
fn severity() -> impl Strategy<Value = Severity> + Clone {
    select(Severity::ALL)
}
fn priority() -> impl Strategy<Value = Priority> + Clone {
    select(Priority::ALL)
}
fn merge_mode() -> impl Strategy<Value = MergeMode> + Clone {
    select(MergeMode::ALL)
}
fn container_state() -> impl Strategy<Value = ContainerState> + Clone {
    select(ContainerState::ALL.to_vec())
}
fn dep_kind() -> impl Strategy<Value = DepKind> + Clone {
    select(vec![DepKind::Blocks, DepKind::Tracks, DepKind::ParentChild])
}
fn labels() -> impl Strategy<Value = Vec<String>> + Clone {
    vec(pick(&["gt:rework", "gt:held", "gt:pr-feedback", "gt:pr-conflict", "gt:triage", "ui"]), 0..3)
}

/// A small JSON value: what metadata, context and checkpoints hold.
pub(crate) fn json_value() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0_i64..1000).prop_map(Value::from),
        bead_id().prop_map(Value::from),
        Just(json!({"nested": [1, "two", true]})),
    ]
}

/// A small JSON object with keys rules read.
pub(crate) fn json_map() -> impl Strategy<Value = Map<String, Value>> + Clone {
    btree_map(pick(&["step", "mr_bead_id", "rig_id", "escalation_bead_id", "convoy_id"]), json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn config_keys() -> impl Strategy<Value = Map<String, Value>> + Clone {
    btree_map(
        pick(&["max_dispatch_attempts", "merge_strategy", "refinery", "gc_retention_s", "max_polecats_per_rig", "bogus"]),
        prop_oneof![
            Just(Value::Null),
            (0_i64..200).prop_map(Value::from),
            Just(json!("pr")),
            Just(json!({"code_review": false, "auto_resolve_merge_conflicts": false})),
            Just(json!({"auto_merge_delay_minutes": 5, "gates": ["lint"]})),
        ],
        0..3,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn overrides() -> impl Strategy<Value = Map<String, Value>> + Clone {
    btree_map(
        pick(&["code_review", "auto_resolve_merge_conflicts", "max_dispatch_attempts", "merge_strategy"]),
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), (1_i64..10).prop_map(Value::from)],
        0..3,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn action_id() -> impl Strategy<Value = String> + Clone {
    (1_u64..40, 0_usize..4).prop_map(|(s, i)| format!("{s}:{i}"))
}

fn convoy_bead() -> impl Strategy<Value = ConvoyBeadSpec> {
    (bead_id(), text(), rig_id(), option::of(priority()), option::of(labels()), vec(bead_id(), 0..2)).prop_map(
        |(bead_id, title, rig_id, priority, labels, depends_on)| ConvoyBeadSpec {
            bead_id,
            title,
            body: None,
            rig_id,
            priority,
            labels,
            depends_on,
        },
    )
}

/// Any action of AC1, with ids from the pools (some reserved, so R0.2 raises `id_seq`).
pub(crate) fn arb_action() -> BoxedStrategy<Action> {
    let reason = || text();
    Union::new(vec![
        (bead_id(), bead_status(), bead_status(), reason())
            .prop_map(|(bead_id, from, to, reason)| Action::TransitionBead { bead_id, from, to, reason })
            .boxed(),
        bead_id().prop_map(|bead_id| Action::ClearBeadAssignee { bead_id }).boxed(),
        (agent_id(), agent_status(), agent_status(), reason())
            .prop_map(|(agent_id, from, to, reason)| Action::TransitionAgent { agent_id, from, to, reason })
            .boxed(),
        (agent_id(), bead_id()).prop_map(|(agent_id, bead_id)| Action::HookAgent { agent_id, bead_id }).boxed(),
        (agent_id(), reason()).prop_map(|(agent_id, reason)| Action::UnhookAgent { agent_id, reason }).boxed(),
        agent_id().prop_map(|agent_id| Action::ClearAgentCheckpoint { agent_id }).boxed(),
        agent_id().prop_map(|agent_id| Action::ResetAgentDispatchAttempts { agent_id }).boxed(),
        (agent_id(), reason()).prop_map(|(agent_id, reason)| Action::DeleteAgent { agent_id, reason }).boxed(),
        (agent_id(), bead_id(), rig_id(), option::of((role(), option::of(text()))))
            .prop_map(|(agent_id, bead_id, rig_id, create)| Action::DispatchAgent {
                agent_id,
                bead_id,
                rig_id,
                create: create.map(|(role, name)| CreateAgent { role, name }),
            })
            .boxed(),
        (agent_id(), reason()).prop_map(|(agent_id, reason)| Action::StopAgent { agent_id, reason }).boxed(),
        (bead_id(), text(), any::<bool>(), option::of(0_i64..10), any::<bool>())
            .prop_map(|(bead_id, pr_url, auto_merge, auto_merge_delay_minutes, auto_resolve_pr_feedback)| Action::PollPr {
                bead_id,
                pr_url,
                flags: PollFlags { auto_merge, auto_merge_delay_minutes, auto_resolve_pr_feedback },
            })
            .boxed(),
        (bead_id(), text()).prop_map(|(bead_id, pr_url)| Action::MergePr { bead_id, pr_url }).boxed(),
        (agent_id(), nudge_id(), pick(&["warn", "escalate"]), text())
            .prop_map(|(agent_id, nudge_id, tier, message)| Action::SendNudge { agent_id, nudge_id, tier, message })
            .boxed(),
        (nudge_id(), agent_id()).prop_map(|(nudge_id, agent_id)| Action::DeliverNudge { nudge_id, agent_id }).boxed(),
        (bead_id(), agent_id()).prop_map(|(bead_id, agent_id)| Action::DeliverMail { bead_id, agent_id }).boxed(),
        (agent_id(), pick(&["stuck_agent", "escalation"]), reason(), bead_id())
            .prop_map(|(agent_id, triage_type, reason, bead_id)| Action::CreateTriageRequest {
                agent_id,
                triage_type,
                reason,
                bead_id,
            })
            .boxed(),
        (text(), bead_id()).prop_map(|(message, bead_id)| Action::NotifyMayor { message, bead_id }).boxed(),
        (any::<bool>(), 0_u32..30).prop_map(|(open, count)| Action::SetCircuitBreaker { open, count }).boxed(),
        (bead_id(), 0_u32..4, 0_u32..4)
            .prop_map(|(convoy_id, closed_beads, total_beads)| Action::UpdateConvoyProgress {
                convoy_id,
                closed_beads,
                total_beads,
            })
            .boxed(),
        bead_id().prop_map(|convoy_id| Action::SetConvoyReadyToLand { convoy_id }).boxed(),
        (bead_id(), rig_id(), text(), text(), bead_id())
            .prop_map(|(convoy_id, rig_id, feature_branch, target_branch, bead_id)| Action::CreateLandingMr {
                convoy_id,
                rig_id,
                feature_branch,
                target_branch,
                bead_id,
            })
            .boxed(),
        bead_id().prop_map(|convoy_id| Action::CloseConvoy { convoy_id }).boxed(),
        (bead_id(), reason()).prop_map(|(convoy_id, reason)| Action::FailConvoy { convoy_id, reason }).boxed(),
        (bead_id(), severity(), option::of(bead_id()))
            .prop_map(|(bead_id, severity, mail_id)| Action::ReEscalate { bead_id, severity, mail_id })
            .boxed(),
        (
            bead_id(),
            severity(),
            pick(&["general", "merge_conflict"]),
            text(),
            option::of(rig_id()),
            json_map(),
            bead_id(),
            option::of(bead_id()),
        )
            .prop_map(|(bead_id, severity, category, title, rig_id, context, request_id, mail_id)| Action::OpenEscalation {
                bead_id,
                severity,
                category,
                title,
                rig_id,
                context,
                request_id,
                mail_id,
            })
            .boxed(),
        (bead_id(), rig_id(), vec(bead_id(), 0..3))
            .prop_map(|(bead_id, rig_id, request_ids)| Action::CreateTriageBatch { bead_id, rig_id, request_ids })
            .boxed(),
        instant().prop_map(|d| Action::PruneNudges { before: T0 + d }).boxed(),
        Just(Action::EndDrain).boxed(),
    ])
    .boxed()
}

fn agent_events() -> Vec<BoxedStrategy<Event>> {
    vec![
        (agent_id(), role(), option::of(rig_id()), option::of(text()))
            .prop_map(|(agent_id, role, rig_id, name)| AgentRegistered { agent_id, role, rig_id, name }.into())
            .boxed(),
        (
            agent_id(),
            text(),
            option::of(pick(&["https://github.com/acme/app/pull/1", "http://bad"])),
            option::of(text()),
            option::of(bead_id()),
            option::of(action_id()),
        )
            .prop_map(|(agent_id, branch, pr_url, summary, bead_id, dispatch_id)| {
                AgentDone { agent_id, branch, pr_url, summary, bead_id, dispatch_id }.into()
            })
            .boxed(),
        (
            option::of(agent_id()),
            select(vec![CompletionStatus::Completed, CompletionStatus::Failed]),
            option::of(pick(&["container eviction", "done"])),
            option::of(bead_id()),
            option::of(action_id()),
        )
            .prop_map(|(agent_id, status, reason, bead_id, dispatch_id)| {
                AgentCompleted { agent_id, status, reason, bead_id, dispatch_id }.into()
            })
            .boxed(),
        (agent_id(), json_map()).prop_map(|(agent_id, checkpoint)| AgentCheckpointed { agent_id, checkpoint }.into()).boxed(),
        (
            agent_id(),
            select(vec![ContainerState::Running, ContainerState::Starting]),
            option::of(pick(&["c1", "c2", "c3"])),
            option::of(text()),
            option::of(instant().prop_map(|d| T0 + d)),
            option::of(vec(pick(&["bash", "edit"]), 0..2)),
        )
            .prop_map(|(agent_id, status, container_instance_id, last_event_type, last_event_at, active_tools)| {
                AgentHeartbeatResumed { agent_id, status, container_instance_id, last_event_type, last_event_at, active_tools }
                    .into()
            })
            .boxed(),
        (agent_id(), select(vec![LostCause::Expired, LostCause::NotAlive]))
            .prop_map(|(agent_id, cause)| AgentHeartbeatLost { agent_id, cause }.into())
            .boxed(),
        (agent_id(), container_state(), option::of(text()))
            .prop_map(|(agent_id, status, exit_reason)| ContainerStatus { agent_id, status, exit_reason }.into())
            .boxed(),
        (
            agent_id(),
            option::of(text()),
            option::of(instant().prop_map(|d| T0 + d)),
            vec(pick(&["bash", "edit"]), 0..2),
            0_u64..100,
        )
            .prop_map(|(agent_id, last_event_type, last_event_at, active_tools, coalesced)| {
                AgentActivity { agent_id, last_event_type, last_event_at, active_tools, coalesced }.into()
            })
            .boxed(),
        (option::of(pick(&["c1", "c2"])), option::of(text()))
            .prop_map(|(container_instance_id, reason)| ContainerEviction { container_instance_id, reason }.into())
            .boxed(),
    ]
}

fn bead_events() -> Vec<BoxedStrategy<Event>> {
    vec![
        (
            (bead_id(), text(), option::of(text()), option::of(rig_id()), option::of(bead_id()), priority()),
            (
                labels(),
                json_map(),
                pick(&["operator", "system", "pc-1"]),
                vec(bead_id(), 0..3),
                option::of(bead_id()),
                option::of(agent_id()),
            ),
        )
            .prop_map(
                |(
                    (bead_id, title, body, rig_id, parent_bead_id, priority),
                    (labels, metadata, created_by, depends_on, convoy_id, agent_id),
                )| {
                    BeadCreated {
                        bead_id,
                        title,
                        body,
                        rig_id,
                        parent_bead_id,
                        priority,
                        labels,
                        metadata,
                        created_by,
                        depends_on,
                        convoy_id,
                        agent_id,
                    }
                    .into()
                },
            )
            .boxed(),
        (bead_id(), agent_id()).prop_map(|(bead_id, agent_id)| BeadHooked { bead_id, agent_id }.into()).boxed(),
        (bead_id(), bead_status(), option::of(text()))
            .prop_map(|(bead_id, status, reason)| BeadStatusChanged { bead_id, status, reason, actor: "operator".into() }.into())
            .boxed(),
        (bead_id(), labels(), labels())
            .prop_map(|(bead_id, add, remove)| BeadLabelsChanged { bead_id, add, remove }.into())
            .boxed(),
        (bead_id(), bead_id(), dep_kind())
            .prop_map(|(bead_id, depends_on, kind)| DependencyAdded { bead_id, depends_on, kind }.into())
            .boxed(),
        (bead_id(), text(), merge_mode(), any::<bool>(), option::of(text()), vec(convoy_bead(), 0..3))
            .prop_map(|(convoy_id, title, merge_mode, staged, feature_branch, beads)| {
                ConvoyCreated { convoy_id, title, merge_mode, staged, feature_branch, beads }.into()
            })
            .boxed(),
        bead_id().prop_map(|convoy_id| ConvoyStarted { convoy_id }.into()).boxed(),
    ]
}

fn other_events() -> Vec<BoxedStrategy<Event>> {
    let pr = || pick(&["https://github.com/acme/app/pull/7", "http://bad"]);
    vec![
        config_keys().prop_map(|keys| TownConfigured { keys }.into()).boxed(),
        (rig_id(), pick(&["app", "web"]), option::of(overrides()))
            .prop_map(|(rig_id, name, overrides)| {
                RigAdded {
                    rig_id,
                    name,
                    git_url: "https://github.com/acme/app.git".into(),
                    default_branch: "main".into(),
                    overrides,
                }
                .into()
            })
            .boxed(),
        (rig_id(), overrides()).prop_map(|(rig_id, overrides)| RigConfigured { rig_id, overrides }.into()).boxed(),
        (bead_id(), agent_id(), text(), text())
            .prop_map(|(mr_bead_id, agent_id, title, body)| ReworkRequested { mr_bead_id, agent_id, title, body }.into())
            .boxed(),
        (nudge_id(), agent_id(), text(), select(NudgeMode::ALL), select(NudgePriority::ALL), 60_i64..86_400)
            .prop_map(|(nudge_id, agent_id, message, mode, priority, ttl_s)| {
                NudgeQueued { nudge_id, agent_id, message, mode, priority, source: "cmd".into(), ttl_s }.into()
            })
            .boxed(),
        (bead_id(), agent_id(), text(), text(), option::of(text()))
            .prop_map(|(bead_id, to_agent_id, from, subject, body)| MailSent { bead_id, to_agent_id, from, subject, body }.into())
            .boxed(),
        (
            bead_id(),
            severity(),
            pick(&["general", "merge_conflict"]),
            text(),
            option::of(rig_id()),
            option::of(agent_id()),
            json_map(),
        )
            .prop_map(|(bead_id, severity, category, title, rig_id, agent_id, context)| {
                EscalationRaised { bead_id, severity, category, title, body: None, rig_id, agent_id, context }.into()
            })
            .boxed(),
        bead_id().prop_map(|bead_id| EscalationAcknowledged { bead_id, by: "operator".into() }.into()).boxed(),
        (
            bead_id(),
            pick(&[
                "RESTART",
                "RESTART_WITH_BACKOFF",
                "NUDGE",
                "CLOSE_BEAD",
                "ESCALATE",
                "REASSIGN_BEAD",
                "ESCALATE_TO_MAYOR",
                "BOGUS",
            ]),
            option::of(text()),
        )
            .prop_map(|(request_bead_id, action, note)| {
                TriageResolved { request_bead_id, action, note, resolved_by: "operator".into() }.into()
            })
            .boxed(),
        (
            action_id(),
            pick(&["dispatch_agent", "poll_pr", "send_nudge", "deliver_nudge", "deliver_mail", "stop_agent", "merge_pr"]),
            any::<bool>(),
            option::of(text()),
            option::of((
                pick(&["open", "merged", "closed", "unknown"]),
                option::of(pick(&["transient", "permanent"])),
                any::<bool>(),
            )),
            (option::of(agent_id()), option::of(bead_id()), option::of(nudge_id())),
        )
            .prop_map(|(action_id, action_type, ok, error, details, (agent_id, bead_id, nudge_id))| {
                let details = details.map(|(state, kind, awaiting)| {
                    let mut m = Map::new();
                    m.insert("pr_state".into(), Value::from(state));
                    if let Some(k) = kind {
                        m.insert("error_kind".into(), Value::from(k));
                    }
                    m.insert("awaiting_approval".into(), Value::Bool(awaiting));
                    m
                });
                ActionResult { action_id, action_type, ok, error, details, agent_id, bead_id, nudge_id }.into()
            })
            .boxed(),
        (bead_id(), pr(), select(vec![PrState::Merged, PrState::Closed]))
            .prop_map(|(mr_bead_id, pr_url, pr_state)| PrStatusChanged { mr_bead_id, pr_url, pr_state }.into())
            .boxed(),
        (bead_id(), pr(), 1_i64..100, any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(mr_bead_id, pr_url, pr_number, c, f, u)| {
                PrFeedbackDetected {
                    mr_bead_id,
                    pr_url,
                    pr_number,
                    repo: "acme/app".into(),
                    branch: "gt/toast/b1".into(),
                    has_unresolved_comments: c,
                    has_failing_checks: f,
                    has_unchecked_runs: u,
                }
                .into()
            })
            .boxed(),
        (bead_id(), pr()).prop_map(|(mr_bead_id, pr_url)| PrAutoMerge { mr_bead_id, pr_url }.into()).boxed(),
        (bead_id(), option::of(bead_id()), pr(), text())
            .prop_map(|(mr_bead_id, source_bead_id, pr_url, branch)| {
                PrConflictDetected { mr_bead_id, source_bead_id, pr_url, branch }.into()
            })
            .boxed(),
        (0_u64..50, vec(arb_action(), 0..6))
            .prop_map(|(base_seq, actions)| Reconciled { at: 0, base_seq, actions }.into())
            .boxed(),
        Just(Event::Unknown { event_type: "future_event".into() }).boxed(),
    ]
}

/// Any event of E2 (and an unknown type), with ids from the pools.
pub(crate) fn arb_event() -> BoxedStrategy<Event> {
    let mut all = agent_events();
    all.extend(bead_events());
    all.extend(other_events());
    Union::new(all).boxed()
}

/// An envelope with an id from a small pool (so some repeat, within the dedup horizon or not) and
/// a time within three hours of T0 in any order; a decision's `data.at` equals its `at`.
pub(crate) fn arb_envelope() -> BoxedStrategy<Envelope> {
    (0_u32..40, instant(), arb_event())
        .prop_map(|(id, d, mut event)| {
            let at = T0 + d;
            let source = match &event {
                Event::Reconciled(_) => source::RECONCILER.to_owned(),
                other => source::command(other.event_type()),
            };
            if let Event::Reconciled(r) = &mut event {
                r.at = at;
            }
            Envelope::new(format!("t1:e:{id}"), at, source, event)
        })
        .boxed()
}

/// A history: Fixture F's kind of start (a rig, the mayor) then arbitrary envelopes.
pub(crate) fn arb_history(max: usize) -> impl Strategy<Value = Vec<Envelope>> {
    vec(arb_envelope(), 0..max).prop_map(|tail| {
        let mut events: Vec<Envelope> = crate::testing::fixture_f()
            .into_iter()
            .enumerate()
            .map(|(i, e)| Envelope::new(format!("t1:f:{i}"), T0, e.source, e.event))
            .collect();
        events.extend(tail);
        events
    })
}

/// An action message as published (AC3 shape), for codec tests.
pub(crate) fn arb_action_message() -> impl Strategy<Value = ActionMessage> {
    (1_u64..100, 0_u32..5, instant(), arb_action(), json_map()).prop_map(|(seq, index, d, action, payload)| ActionMessage {
        v: 1,
        action_id: format!("{seq}:{index}"),
        town: "t1".into(),
        action_type: action.action_type().to_owned(),
        decision_seq: seq,
        index,
        at: T0 + d,
        payload,
    })
}
