//! The state change of each action inside a `reconciled` event (AC1), and of the executor results
//! that report on published actions (AC2).

use std::fmt::Write as _;

use serde_json::Value;

use super::{Action, CreateAgent};
use crate::apply::ops::{self, EscalationSpec, MailSpec, TriageSpec};
use crate::constants::{NUDGE_TTL, POLL_ERROR_LIMIT, POLL_NULL_LIMIT};
use crate::event::ActionResult;
use crate::ids::reserved_number;
use crate::labels;
use crate::state::{
    Agent, AgentStatus, Bead, BeadStatus, BeadType, DepKind, Liveness, Nudge, NudgeMode, NudgePriority, ReviewRecord, Role,
    TownState,
};
use crate::time::Millis;

/// Applies action `index` of the decision stored at `seq`, at effective time `t` (AC1). Every id
/// the action names raises `id_seq` to its number, whether or not anything is created (R0.2).
pub fn apply_action(state: &mut TownState, seq: u64, index: usize, t: Millis, action: &Action) {
    consume_named_ids(state, action);
    let s = state;
    match action {
        Action::TransitionBead { bead_id, to, reason, .. } => {
            ops::set_status(s, bead_id, *to, Some(reason), ops::CODE_RECONCILER, t);
        }
        Action::ClearBeadAssignee { bead_id } => {
            if let Some(b) = s.beads.get_mut(bead_id) {
                b.assignee = None;
                b.updated_at = t;
                ops::unhook_all(s, bead_id);
            }
        }
        Action::TransitionAgent { agent_id, to, .. } => {
            if let Some(a) = s.agents.get_mut(agent_id) {
                transition_agent(a, *to, t);
            }
        }
        Action::HookAgent { agent_id, bead_id } => {
            ops::hook(s, agent_id, bead_id, t);
        }
        Action::UnhookAgent { agent_id, .. } => ops::unhook(s, agent_id),
        Action::ClearAgentCheckpoint { agent_id } => {
            if let Some(a) = s.agents.get_mut(agent_id) {
                a.checkpoint = None;
            }
        }
        Action::ResetAgentDispatchAttempts { agent_id } => reset_agent_dispatch_attempts(s, agent_id),
        Action::DeleteAgent { agent_id, .. } => delete_agent(s, agent_id, t),
        Action::DispatchAgent { agent_id, bead_id, rig_id, create } => {
            dispatch_agent(s, (seq, index), agent_id, bead_id, rig_id, create.as_ref(), t);
        }
        Action::StopAgent { agent_id, .. } => {
            if let Some(a) = s.agents.get_mut(agent_id) {
                a.stop_requested_at = Some(t);
            }
        }
        Action::PollPr { bead_id, .. } => {
            if let Some((updated_at, r)) = review_mut(s, bead_id) {
                r.last_poll_at = Some(t);
                *updated_at = t;
            }
        }
        Action::MergePr { bead_id, .. } => {
            if let Some((_, r)) = review_mut(s, bead_id) {
                r.auto_merge_pending = false;
                r.merge_requested_at = Some(t);
            }
        }
        Action::SendNudge { agent_id, nudge_id, tier, message } => {
            crate::apply::create_nudge(
                s,
                Nudge {
                    nudge_id: nudge_id.clone(),
                    agent_id: agent_id.clone(),
                    message: message.clone(),
                    mode: NudgeMode::Immediate,
                    priority: NudgePriority::Urgent,
                    source: format!("reconciler:{tier}"),
                    created_at: t,
                    handed_at: Some(t),
                    delivered_at: None,
                    expires_at: t.saturating_add(NUDGE_TTL),
                },
            );
        }
        Action::DeliverNudge { nudge_id, .. } => {
            if let Some(n) = s.nudges.get_mut(nudge_id) {
                n.handed_at = Some(t);
            }
        }
        Action::DeliverMail { bead_id, .. } => {
            if let Some(m) = s.beads.get_mut(bead_id).and_then(|b| b.mail.as_mut()) {
                m.delivery_attempted_at = Some(t);
            }
        }
        Action::CreateTriageRequest { agent_id, triage_type, reason, bead_id } => {
            ops::open_triage_request(
                s,
                TriageSpec { agent_id: Some(agent_id), triage_type, reason, context: serde_json::Map::new(), id: Some(bead_id) },
                t,
            );
        }
        Action::NotifyMayor { message, bead_id } => {
            let mayor = ops::mayor_id(s);
            ops::send_mail(
                s,
                &MailSpec {
                    to: mayor.as_deref(),
                    from: "reconciler",
                    subject: "Reconciler notice",
                    body: Some(message),
                    id: Some(bead_id),
                },
                t,
            );
        }
        Action::SetCircuitBreaker { open, count } => {
            s.breaker = crate::state::Breaker { open: *open, count: *count, changed_at: Some(t) };
        }
        Action::UpdateConvoyProgress { convoy_id, closed_beads, total_beads } => {
            if let Some(c) = s.beads.get_mut(convoy_id).and_then(|b| b.convoy.as_mut()) {
                c.closed_beads = *closed_beads;
                c.total_beads = *total_beads;
            }
        }
        Action::SetConvoyReadyToLand { convoy_id } => {
            if let Some(b) = s.beads.get_mut(convoy_id)
                && let Some(c) = b.convoy.as_mut()
            {
                c.ready_to_land = true;
                b.updated_at = t;
            }
        }
        Action::CreateLandingMr { convoy_id, rig_id, feature_branch, target_branch, bead_id } => {
            create_landing_mr(s, convoy_id, rig_id, feature_branch, target_branch, bead_id, t);
        }
        Action::CloseConvoy { convoy_id } => {
            if ops::set_plain(s, convoy_id, BeadStatus::Closed, t)
                && let Some(c) = s.beads.get_mut(convoy_id).and_then(|b| b.convoy.as_mut())
            {
                c.landed_at = Some(t);
            }
        }
        Action::FailConvoy { convoy_id, reason } => {
            ops::set_status(s, convoy_id, BeadStatus::Failed, Some(reason), "landing_mr_exhausted", t);
        }
        Action::ReEscalate { bead_id, severity, mail_id } => re_escalate(s, bead_id, *severity, mail_id.as_deref(), t),
        Action::OpenEscalation { bead_id, severity, category, title, rig_id, context, request_id, mail_id } => {
            ops::open_escalation(
                s,
                EscalationSpec {
                    id: Some(bead_id),
                    severity: *severity,
                    category,
                    title,
                    body: None,
                    rig_id: rig_id.as_deref(),
                    agent_id: None,
                    context: context.clone(),
                    request_id: Some(request_id),
                    mail_id: mail_id.as_deref(),
                },
                t,
            );
        }
        Action::CreateTriageBatch { bead_id, rig_id, request_ids } => {
            if !s.beads.contains_key(bead_id) {
                let title = format!("Triage batch ({} requests)", request_ids.len());
                let mut b = Bead::new(bead_id, BeadType::Issue, &title, "patrol", t);
                b.labels.push(labels::TRIAGE.to_owned());
                b.rig_id = Some(rig_id.clone());
                b.metadata.insert(
                    "request_ids".to_owned(),
                    Value::Array(request_ids.iter().map(|r| Value::from(r.as_str())).collect()),
                );
                s.beads.insert(bead_id.clone(), b);
            }
        }
        Action::PruneNudges { before } => s.nudges.retain(|_, n| n.created_at > *before),
        Action::EndDrain => s.draining = None,
    }
}

/// R0.2: every id the action names (`Action::named_ids`) raises `id_seq` to its number. Written
/// out per variant so that the fold allocates nothing for it; a test keeps it equal to
/// `named_ids`.
fn consume_named_ids(s: &mut TownState, action: &Action) {
    let mut take = |id: &str| {
        if let Some(n) = reserved_number(id) {
            ops::take_id(s, n);
        }
    };
    match action {
        Action::DispatchAgent { agent_id, .. } => take(agent_id),
        Action::SendNudge { nudge_id, .. } => take(nudge_id),
        Action::CreateTriageRequest { bead_id, .. }
        | Action::NotifyMayor { bead_id, .. }
        | Action::CreateLandingMr { bead_id, .. }
        | Action::CreateTriageBatch { bead_id, .. } => take(bead_id),
        Action::ReEscalate { mail_id, .. } => mail_id.as_deref().into_iter().for_each(take),
        Action::OpenEscalation { bead_id, request_id, mail_id, .. } => {
            take(bead_id);
            take(request_id);
            mail_id.as_deref().into_iter().for_each(take);
        }
        _ => {}
    }
}

/// `transition_agent`: the new status; entering `stalled` stamps `stalled_at`, leaving clears it.
fn transition_agent(a: &mut Agent, to: AgentStatus, t: Millis) {
    if to == AgentStatus::Stalled && a.status != AgentStatus::Stalled {
        a.stalled_at = Some(t);
    } else if to != AgentStatus::Stalled {
        a.stalled_at = None;
    }
    a.status = to;
}

/// A bead's `updated_at` and review record, for MRs.
fn review_mut<'a>(s: &'a mut TownState, bead_id: &str) -> Option<(&'a mut Millis, &'a mut ReviewRecord)> {
    let Bead { updated_at, review, .. } = s.beads.get_mut(bead_id)?;
    Some((updated_at, review.as_mut()?))
}

/// `reset_agent_dispatch_attempts`: the agent's counter, and its live hooked bead's, back to 0.
fn reset_agent_dispatch_attempts(s: &mut TownState, agent_id: &str) {
    let Some(a) = s.agents.get_mut(agent_id) else {
        return;
    };
    a.dispatch_attempts = 0;
    let Some(h) = a.hook.clone() else {
        return;
    };
    if let Some(b) = s.beads.get_mut(&h).filter(|b| b.status.is_live()) {
        b.dispatch_attempts = 0;
        b.last_dispatch_attempt_at = None;
        if let Some(r) = b.review.as_mut() {
            r.retry_count = 0;
        }
    }
}

/// `delete_agent`: its live beads lose their assignee (`open`/`in_progress` ones reopen), its
/// nudges are dropped, and it is removed. Terminal beads are untouched.
fn delete_agent(s: &mut TownState, agent_id: &str, t: Millis) {
    if !s.agents.contains_key(agent_id) {
        return;
    }
    let assigned: Vec<(String, BeadStatus)> = s
        .beads
        .values()
        .filter(|b| b.status.is_live() && b.assignee.as_deref() == Some(agent_id))
        .map(|b| (b.bead_id.clone(), b.status))
        .collect();
    for (id, status) in assigned {
        if matches!(status, BeadStatus::Open | BeadStatus::InProgress) {
            ops::set_plain(s, &id, BeadStatus::Open, t);
        }
        if let Some(b) = s.beads.get_mut(&id) {
            b.assignee = None;
        }
    }
    s.nudges.retain(|_, n| n.agent_id != agent_id);
    s.agents.remove(agent_id);
}

/// `dispatch_agent` (AC1): creates the agent when asked and allowed (I10), hooks it unless already
/// hooked to the bead (no-op when the hook does not take), then starts it and counts the attempt.
fn dispatch_agent(
    s: &mut TownState,
    (seq, index): (u64, usize),
    agent_id: &str,
    bead_id: &str,
    rig_id: &str,
    create: Option<&CreateAgent>,
    t: Millis,
) {
    let mut created = false;
    if !s.agents.contains_key(agent_id) {
        let Some(c) = create else {
            return;
        };
        let name = match c.role {
            Role::Polecat => c.name.clone().unwrap_or_else(|| agent_id.to_owned()),
            Role::Refinery if agent_id == format!("ref-{rig_id}") && s.refinery_of(rig_id).is_none() => {
                c.name.clone().unwrap_or_else(|| "refinery".to_owned())
            }
            _ => return,
        };
        let a = crate::apply::new_agent(s, agent_id, c.role, Some(rig_id), &name, t);
        s.agents.insert(agent_id.to_owned(), a);
        created = true;
    }
    let hooked_here = s.agents.get(agent_id).is_some_and(|a| a.hook.as_deref() == Some(bead_id));
    if !hooked_here && !ops::hook(s, agent_id, bead_id, t) {
        if created {
            s.agents.remove(agent_id);
        }
        return;
    }
    if let Some(a) = s.agents.get_mut(agent_id) {
        a.status = AgentStatus::Working;
        a.last_activity_at = Some(t);
        a.last_event_type = None;
        a.last_event_at = None;
        a.active_tools.clear();
        a.stalled_at = None;
        a.dispatch_attempts = a.dispatch_attempts.saturating_add(1);
        // The action id `<seq>:<index>`, written into the previous id's buffer.
        let id = a.current_dispatch_id.get_or_insert_with(String::new);
        id.clear();
        let _infallible = write!(id, "{seq}:{index}");
        if a.liveness != Liveness::Alive {
            a.liveness = Liveness::Unseen;
        }
    }
    if let Some(b) = s.beads.get_mut(bead_id) {
        ops::set_status_on(b, BeadStatus::InProgress, None, ops::CODE_RECONCILER, t);
        b.dispatch_attempts = b.dispatch_attempts.saturating_add(1);
        b.last_dispatch_attempt_at = Some(t);
        b.updated_at = t;
    }
}

/// `create_landing_mr` (AC1): the landing MR of a convoy, assigned to `system`, tracking it.
fn create_landing_mr(
    s: &mut TownState,
    convoy_id: &str,
    rig_id: &str,
    feature_branch: &str,
    target_branch: &str,
    bead_id: &str,
    t: Millis,
) {
    if s.beads.contains_key(bead_id) || s.beads.get(convoy_id).is_none_or(|c| c.convoy.is_none()) {
        return;
    }
    let mut mr = Bead::new(bead_id, BeadType::MergeRequest, &format!("Review: {feature_branch}"), "system", t);
    mr.rig_id = Some(rig_id.to_owned());
    mr.labels.push(labels::MERGE_REQUEST.to_owned());
    mr.assignee = Some("system".to_owned());
    mr.metadata.insert("source_bead_id".to_owned(), Value::from(convoy_id));
    mr.metadata.insert("source_agent_id".to_owned(), Value::from("system"));
    mr.metadata.insert("convoy_id".to_owned(), Value::from(convoy_id));
    mr.review = Some(ReviewRecord {
        branch: feature_branch.to_owned(),
        target_branch: target_branch.to_owned(),
        ..ReviewRecord::default()
    });
    s.beads.insert(bead_id.to_owned(), mr);
    s.deps.insert(bead_id, convoy_id, DepKind::Tracks);
    if let Some(c) = s.beads.get_mut(convoy_id).and_then(|b| b.convoy.as_mut()) {
        c.landing_mr_attempts = c.landing_mr_attempts.saturating_add(1);
        c.last_landing_mr_attempt_at = Some(t);
    }
}

/// `re_escalate` (AC1): one severity step with its label and priority; at medium or above a mail
/// to the mayor.
fn re_escalate(s: &mut TownState, bead_id: &str, severity: crate::state::Severity, mail_id: Option<&str>, t: Millis) {
    let Some(b) = s.beads.get_mut(bead_id) else {
        return;
    };
    let Some(e) = b.escalation.as_mut() else {
        return;
    };
    e.severity = severity;
    e.re_escalation_count = e.re_escalation_count.saturating_add(1);
    b.priority = severity.priority();
    let label = format!("severity:{}", severity.as_str());
    match b.labels.iter_mut().find(|l| l.starts_with("severity:")) {
        Some(l) => *l = label,
        None => b.labels.push(label),
    }
    let (title, body) = (b.title.clone(), b.body.clone());
    if severity >= crate::state::Severity::Medium {
        let mayor = ops::mayor_id(s);
        let subject = format!("Escalation re-raised ({}): {title}", severity.as_str());
        ops::send_mail(
            s,
            &MailSpec { to: mayor.as_deref(), from: "system", subject: &subject, body: body.as_deref(), id: mail_id },
            t,
        );
    }
}

/// `action_result` (AC2): acts, by `action_type`, on the entities the result echoes; a no-op when
/// they are missing.
pub fn apply_result(s: &mut TownState, r: &ActionResult, t: Millis) {
    match r.action_type.as_str() {
        "dispatch_agent" => {
            let Some(a) = r.agent_id.as_deref().and_then(|a| s.agents.get_mut(a)) else {
                return;
            };
            if a.current_dispatch_id.as_deref() != Some(r.action_id.as_str()) {
                return;
            }
            if r.ok {
                a.last_dispatch_error = None;
                if a.role != Role::Refinery {
                    a.dispatch_attempts = 0;
                }
            } else {
                a.last_dispatch_error = Some(r.error.clone().unwrap_or_else(|| "dispatch failed".to_owned()));
            }
        }
        "poll_pr" => poll_result(s, r, t),
        "send_nudge" | "deliver_nudge" => {
            if !r.ok {
                return;
            }
            if let Some(n) = r.nudge_id.as_deref().and_then(|n| s.nudges.get_mut(n)) {
                n.delivered_at.get_or_insert(t);
            }
        }
        "deliver_mail" => {
            if !r.ok {
                return;
            }
            let Some(id) = r.bead_id.as_deref() else {
                return;
            };
            let Some(m) = s.beads.get_mut(id).and_then(|b| b.mail.as_mut()) else {
                return;
            };
            m.delivered_at.get_or_insert(t);
            ops::set_plain(s, id, BeadStatus::Closed, t);
        }
        _ => {}
    }
}

/// AC2 for `poll_pr` on a live MR: `open` resets both counters; `unknown` or a failure counts a
/// null or a permanent error; past POLL_NULL_LIMIT or POLL_ERROR_LIMIT the review fails.
fn poll_result(s: &mut TownState, r: &ActionResult, t: Millis) {
    let Some(id) = r.bead_id.as_deref() else {
        return;
    };
    let Some(b) = s.beads.get_mut(id).filter(|b| b.bead_type == BeadType::MergeRequest && b.status.is_live()) else {
        return;
    };
    let detail = |k: &str| r.details.as_ref().and_then(|d| d.get(k));
    let state = detail("pr_state").and_then(Value::as_str).unwrap_or("unknown");
    let rec = b.review.get_or_insert_with(ReviewRecord::default);
    if r.ok && state == "open" {
        rec.poll_null_count = 0;
        rec.poll_error_count = 0;
        rec.awaiting_approval = detail("awaiting_approval").and_then(Value::as_bool).unwrap_or(false);
        return;
    }
    if r.ok && state != "unknown" {
        return;
    }
    if detail("error_kind").and_then(Value::as_str) == Some("permanent") {
        rec.poll_error_count = rec.poll_error_count.saturating_add(1);
    } else {
        rec.poll_null_count = rec.poll_null_count.saturating_add(1);
    }
    if rec.poll_null_count >= POLL_NULL_LIMIT || rec.poll_error_count >= POLL_ERROR_LIMIT {
        ops::fail_review(s, id, "PR status unavailable", "pr_poll_failed", t);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::consume_named_ids;
    use crate::apply::strategies::arb_action;
    use crate::ids::reserved_number;
    use crate::state::TownState;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn consumed_ids_are_exactly_the_named_ids(a in arb_action()) {
            let mut s = TownState::new("t1");
            consume_named_ids(&mut s, &a);
            let expected = a.named_ids().into_iter().filter_map(reserved_number).max().unwrap_or(0);
            prop_assert_eq!(s.id_seq, expected);
        }
    }
}
