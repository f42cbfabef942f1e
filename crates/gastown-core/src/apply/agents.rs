//! Apply of the agent events: registration, `agent_done` (E3.1), `agent_completed` (E3.2),
//! checkpoints, the heartbeat-derived events (E3.3) and `container_eviction` (§F).

use serde_json::{Map, Value};

use super::ops::{self, EscalationSpec};
use crate::event::{
    AgentActivity, AgentCheckpointed, AgentCompleted, AgentDone, AgentHeartbeatLost, AgentHeartbeatResumed, AgentRegistered,
    CompletionStatus, ContainerEviction, ContainerState, ContainerStatus,
};
use crate::labels;
use crate::state::{
    Agent, AgentStatus, Bead, BeadStatus, BeadType, DepKind, Draining, Liveness, MergeMode, ReviewRecord, Role, Severity,
    TownState,
};
use crate::time::{Millis, within};

/// The reason of `agent_completed` that reopens the agent's bead (§F).
const CONTAINER_EVICTION: &str = "container eviction";

/// A new agent: idle, unseen, active and created at `t` (E2 `agent_registered`, AC1
/// `dispatch_agent`).
pub(crate) fn new_agent(s: &TownState, agent_id: &str, role: Role, rig_id: Option<&str>, name: &str, t: Millis) -> Agent {
    Agent {
        agent_id: agent_id.to_owned(),
        role,
        rig_id: rig_id.map(str::to_owned),
        name: name.to_owned(),
        identity: ops::identity(name, role, rig_id, &s.town_id),
        status: AgentStatus::Idle,
        hook: None,
        current_dispatch_id: None,
        dispatch_attempts: 0,
        checkpoint: None,
        last_activity_at: Some(t),
        liveness: Liveness::Unseen,
        container_instance_id: None,
        last_event_type: None,
        last_event_at: None,
        active_tools: Vec::new(),
        stalled_at: None,
        stop_requested_at: None,
        last_dispatch_error: None,
        created_at: t,
    }
}

/// Creates the agent; no-op if the id exists, for a second mayor, or for a refinery whose rig has
/// one or whose id is not `ref-<rig_id>` (I10).
pub(super) fn agent_registered(s: &mut TownState, d: &AgentRegistered, t: Millis) {
    if s.agents.contains_key(&d.agent_id) {
        return;
    }
    let rig = match d.role {
        Role::Mayor => {
            if s.mayor().is_some() {
                return;
            }
            None
        }
        Role::Refinery => {
            let Some(rig) = d.rig_id.as_deref() else {
                return;
            };
            if s.refinery_of(rig).is_some() || d.agent_id != format!("ref-{rig}") {
                return;
            }
            Some(rig)
        }
        Role::Polecat => d.rig_id.as_deref(),
    };
    let name = d.name.as_deref().unwrap_or(&d.agent_id);
    let a = new_agent(s, &d.agent_id, d.role, rig, name, t);
    s.agents.insert(d.agent_id.clone(), a);
}

/// The stale-report guard of E3.1 and E3.2: a `dispatch_id` other than the current one, or a
/// `bead_id` while hooked to another bead.
fn stale(a: &Agent, dispatch_id: Option<&str>, bead_id: Option<&str>) -> bool {
    if dispatch_id.is_some_and(|d| a.current_dispatch_id.as_deref() != Some(d)) {
        return true;
    }
    matches!((bead_id, a.hook.as_deref()), (Some(b), Some(h)) if b != h)
}

/// E3.1 `agent_done`.
pub(super) fn agent_done(s: &mut TownState, d: &AgentDone, t: Millis) {
    let Some(a) = s.agents.get_mut(&d.agent_id) else {
        return;
    };
    if stale(a, d.dispatch_id.as_deref(), d.bead_id.as_deref()) {
        return;
    }
    a.last_activity_at = Some(t);
    let role = a.role;
    let Some(h) = a.hook.clone() else {
        if role == Role::Refinery {
            refinery_recovery(s, d, t);
        }
        return;
    };
    let Some(hb) = s.beads.get(&h) else {
        return;
    };
    let follow_up = labels::FOLLOW_UP.iter().any(|l| hb.has_label(l)) || TownState::is_triage_batch(hb);
    if follow_up {
        ops::set_plain(s, &h, BeadStatus::Closed, t);
    } else if role == Role::Refinery && hb.bead_type == BeadType::MergeRequest {
        match d.pr_url.as_deref() {
            Some(url) if ops::valid_pr_url(url) => store_pr(s, &h, url, t),
            Some(_) => ops::fail_review(s, &h, "invalid pr_url", "invalid_pr_url", t),
            None => ops::complete_review_merged(s, &h, t),
        }
    } else if role == Role::Polecat && hb.status.is_live() {
        create_review(s, d, &h, t);
        ops::unhook(s, &d.agent_id);
        ops::set_plain(s, &h, BeadStatus::InReview, t);
        return;
    }
    ops::unhook(s, &d.agent_id);
}

/// Stores a valid PR on MR `m` and moves it to `in_progress` (E3.1).
fn store_pr(s: &mut TownState, m: &str, url: &str, t: Millis) {
    if let Some(b) = s.beads.get_mut(m) {
        b.review.get_or_insert_with(ReviewRecord::default).pr_url = Some(url.to_owned());
    }
    ops::set_plain(s, m, BeadStatus::InProgress, t);
    if let Some(b) = s.beads.get_mut(m) {
        b.updated_at = t;
    }
}

/// E3.1, an unhooked refinery: the MR it names (or its latest live assigned one) gets the PR, or
/// fails with an escalation. Never merged.
fn refinery_recovery(s: &mut TownState, d: &AgentDone, t: Millis) {
    let assigned_live_mr =
        |b: &Bead| b.bead_type == BeadType::MergeRequest && b.status.is_live() && b.assignee.as_deref() == Some(&d.agent_id);
    let target = match d.bead_id.as_deref() {
        Some(id) => s.beads.get(id).filter(|b| assigned_live_mr(b)),
        None => s
            .beads
            .values()
            .filter(|b| assigned_live_mr(b))
            .max_by(|x, y| (x.updated_at, &x.bead_id).cmp(&(y.updated_at, &y.bead_id))),
    };
    let Some(m) = target else {
        return;
    };
    let (m_id, m_rig) = (m.bead_id.clone(), m.rig_id.clone());
    match d.pr_url.as_deref() {
        Some(url) if ops::valid_pr_url(url) => store_pr(s, &m_id, url, t),
        _ => {
            ops::fail_review(s, &m_id, "refinery gt_done without pr_url after losing its hook", "refinery_unhooked_done", t);
            let mut context = Map::new();
            context.insert("mr_bead_id".to_owned(), Value::from(m_id.as_str()));
            context.insert("summary".to_owned(), d.summary.as_deref().map_or(Value::Null, Value::from));
            ops::open_escalation(
                s,
                EscalationSpec {
                    id: None,
                    severity: Severity::High,
                    category: "refinery_unhooked_done",
                    title: "Refinery done without pr_url after hook loss",
                    body: d.summary.as_deref(),
                    rig_id: m_rig.as_deref(),
                    agent_id: Some(&d.agent_id),
                    context,
                    request_id: None,
                    mail_id: None,
                },
                t,
            );
        }
    }
}

/// E3.1, a polecat hooked to live H: creates `mr-n` tracking H.
fn create_review(s: &mut TownState, d: &AgentDone, h: &str, t: Millis) {
    let Some(hb) = s.beads.get(h) else {
        return;
    };
    let rig_id = hb.rig_id.clone();
    let convoy = s.convoy_of(h);
    let convoy_id = convoy.map(|c| c.bead_id.clone());
    let feature = convoy
        .and_then(|c| c.convoy.as_ref())
        .filter(|r| r.merge_mode == MergeMode::ReviewThenLand)
        .and_then(|r| r.feature_branch.clone());
    let target_branch = feature.unwrap_or_else(|| {
        rig_id.as_deref().and_then(|r| s.rigs.get(r)).map_or_else(|| "main".to_owned(), |r| r.default_branch.clone())
    });
    let (id, n) = ops::peek_id(s, "mr");
    let mut mr = Bead::new(&id, BeadType::MergeRequest, &format!("Review: {}", d.branch), &d.agent_id, t);
    mr.body = d.summary.clone();
    mr.rig_id = rig_id;
    mr.labels.push(labels::MERGE_REQUEST.to_owned());
    mr.metadata.insert("source_bead_id".to_owned(), Value::from(h));
    mr.metadata.insert("source_agent_id".to_owned(), Value::from(d.agent_id.as_str()));
    if let Some(c) = convoy_id {
        mr.metadata.insert("convoy_id".to_owned(), Value::from(c));
    }
    mr.review = Some(ReviewRecord {
        branch: d.branch.clone(),
        target_branch,
        pr_url: d.pr_url.clone().filter(|u| ops::valid_pr_url(u)),
        ..ReviewRecord::default()
    });
    s.deps.insert(&id, h, DepKind::Tracks);
    s.beads.insert(id, mr);
    ops::take_id(s, n);
}

/// E3.2 `agent_completed` (the mayor when no agent is named).
pub(super) fn agent_completed(s: &mut TownState, d: &AgentCompleted, t: Millis) {
    let agent_id = match &d.agent_id {
        Some(a) => a.clone(),
        None => match ops::mayor_id(s) {
            Some(m) => m,
            None => return,
        },
    };
    let Some(a) = s.agents.get_mut(&agent_id) else {
        return;
    };
    if stale(a, d.dispatch_id.as_deref(), d.bead_id.as_deref()) {
        return;
    }
    a.last_activity_at = Some(t);
    let role = a.role;
    if role == Role::Mayor {
        a.status = if a.liveness == Liveness::Alive { AgentStatus::Working } else { AgentStatus::Idle };
    }
    if role != Role::Refinery
        && let Some(h) = a.hook.clone()
    {
        match d.status {
            CompletionStatus::Failed => {
                ops::set_status(s, &h, BeadStatus::Failed, Some("agent exited with failed status"), "agent_failed", t);
            }
            CompletionStatus::Completed => {
                let reopen = d.reason.as_deref() == Some(CONTAINER_EVICTION)
                    && s.beads.get(&h).is_some_and(|b| b.status == BeadStatus::InProgress);
                if reopen {
                    ops::set_plain(s, &h, BeadStatus::Open, t);
                    if let Some(b) = s.beads.get_mut(&h) {
                        b.assignee = None;
                    }
                }
            }
        }
        ops::unhook(s, &agent_id);
    }
    let Some(a) = s.agents.get_mut(&agent_id) else {
        return;
    };
    let keep_working = a.status == AgentStatus::Working && a.hook.is_some();
    if role != Role::Mayor && !keep_working {
        if a.status == AgentStatus::Stalled {
            a.stalled_at = None;
        }
        a.status = AgentStatus::Idle;
    }
    if role != Role::Refinery {
        a.dispatch_attempts = 0;
    }
}

/// Stores the checkpoint of an existing agent.
pub(super) fn agent_checkpointed(s: &mut TownState, d: &AgentCheckpointed) {
    if let Some(a) = s.agents.get_mut(&d.agent_id) {
        a.checkpoint = Some(d.checkpoint.clone());
    }
}

/// E3.3 `agent_heartbeat_resumed`: alive again; the mayor and an idle hooked agent work (#1359);
/// a container other than the evicted one ends draining (§F).
pub(super) fn heartbeat_resumed(s: &mut TownState, d: &AgentHeartbeatResumed, t: Millis) {
    let Some(a) = s.agents.get_mut(&d.agent_id) else {
        return;
    };
    let previous = a.container_instance_id.take();
    a.container_instance_id = d.container_instance_id.clone().or_else(|| previous.clone());
    a.liveness = Liveness::Alive;
    a.last_activity_at = Some(t);
    if let Some(x) = &d.last_event_type {
        a.last_event_type = Some(x.clone());
    }
    if let Some(x) = d.last_event_at {
        a.last_event_at = Some(x);
    }
    if let Some(x) = &d.active_tools {
        a.active_tools.clone_from(x);
    }
    a.dispatch_attempts = 0;
    if a.role == Role::Mayor || (a.status == AgentStatus::Idle && a.hook.is_some()) {
        a.status = AgentStatus::Working;
    }
    if let (Some(dr), Some(new)) = (&s.draining, d.container_instance_id.as_deref()) {
        let ends = match dr.container_instance_id.as_deref() {
            Some(evicted) => new != evicted,
            None => previous.as_deref() != Some(new),
        };
        if ends {
            s.draining = None;
        }
    }
}

/// E3.3 `agent_heartbeat_lost`: lost; the mayor goes idle.
pub(super) fn heartbeat_lost(s: &mut TownState, d: &AgentHeartbeatLost) {
    if let Some(a) = s.agents.get_mut(&d.agent_id) {
        a.liveness = Liveness::Lost;
        if a.role == Role::Mayor {
            a.status = AgentStatus::Idle;
        }
    }
}

/// E3.3 `container_status`: `exited`, or `not_found` past the cold-start grace, makes the agent
/// lost; a working or stalled one goes idle, keeping its hook, except a refinery on a missing or
/// terminal MR, which is unhooked.
pub(super) fn container_status(s: &mut TownState, d: &ContainerStatus, t: Millis) {
    let grace = s.config.not_found_grace();
    let Some(a) = s.agents.get(&d.agent_id) else {
        return;
    };
    match d.status {
        ContainerState::Exited => {}
        ContainerState::NotFound if !within(a.last_activity_at, grace, t) => {}
        _ => return,
    }
    let busy = matches!(a.status, AgentStatus::Working | AgentStatus::Stalled);
    let dead_mr = a.role == Role::Refinery && a.hook.as_deref().is_none_or(|h| s.beads.get(h).is_none_or(Bead::is_terminal));
    if busy && dead_mr && a.hook.is_some() {
        ops::unhook(s, &d.agent_id);
    }
    let Some(a) = s.agents.get_mut(&d.agent_id) else {
        return;
    };
    a.liveness = Liveness::Lost;
    if busy {
        a.status = AgentStatus::Idle;
        a.stalled_at = None;
    }
}

/// `agent_activity`: replaces the watermark; `last_activity_at = t`.
pub(super) fn agent_activity(s: &mut TownState, d: &AgentActivity, t: Millis) {
    if let Some(a) = s.agents.get_mut(&d.agent_id) {
        a.last_event_type.clone_from(&d.last_event_type);
        a.last_event_at = d.last_event_at;
        a.active_tools.clone_from(&d.active_tools);
        a.last_activity_at = Some(t);
    }
}

/// §F0: draining starts unless already draining.
pub(super) fn container_eviction(s: &mut TownState, d: &ContainerEviction, t: Millis) {
    if s.draining.is_none() {
        s.draining = Some(Draining { since: t, container_instance_id: d.container_instance_id.clone() });
    }
}
