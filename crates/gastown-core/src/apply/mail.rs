//! Apply of nudges, mail, escalations and triage resolution (E2, E3.4).

use serde_json::{Map, Value};

use super::ops::{self, EscalationSpec, MailSpec};
use crate::constants::NUDGE_TTL;
use crate::event::{EscalationAcknowledged, EscalationRaised, MailSent, NudgeQueued, TriageResolved};
use crate::state::{AgentStatus, BeadStatus, BeadType, Nudge, NudgeMode, NudgePriority, Role, Severity, TownState};
use crate::time::{Millis, SECOND};

/// Creates a nudge for an existing agent unless its id exists; returns whether it did.
pub(crate) fn create_nudge(s: &mut TownState, n: Nudge) -> bool {
    if s.nudges.contains_key(&n.nudge_id) || !s.agents.contains_key(&n.agent_id) {
        return false;
    }
    s.nudges.insert(n.nudge_id.clone(), n);
    true
}

/// Exactly one nudge, expiring `ttl_s` after `t`.
pub(super) fn nudge_queued(s: &mut TownState, d: &NudgeQueued, t: Millis) {
    create_nudge(
        s,
        Nudge {
            nudge_id: d.nudge_id.clone(),
            agent_id: d.agent_id.clone(),
            message: d.message.clone(),
            mode: d.mode,
            priority: d.priority,
            source: d.source.clone(),
            created_at: t,
            handed_at: None,
            delivered_at: None,
            expires_at: t.saturating_add(d.ttl_s.saturating_mul(SECOND)),
        },
    );
}

/// `send_mail` with the given id.
pub(super) fn mail_sent(s: &mut TownState, d: &MailSent, t: Millis) {
    ops::send_mail(
        s,
        &MailSpec { to: Some(&d.to_agent_id), from: &d.from, subject: &d.subject, body: d.body.as_deref(), id: Some(&d.bead_id) },
        t,
    );
}

/// `open_escalation` with the given id; no-op if the id exists.
pub(super) fn escalation_raised(s: &mut TownState, d: &EscalationRaised, t: Millis) {
    ops::open_escalation(
        s,
        EscalationSpec {
            id: Some(&d.bead_id),
            severity: d.severity,
            category: &d.category,
            title: &d.title,
            body: d.body.as_deref(),
            rig_id: d.rig_id.as_deref(),
            agent_id: d.agent_id.as_deref(),
            context: d.context.clone(),
            request_id: None,
            mail_id: None,
        },
        t,
    );
}

/// An escalation not yet acknowledged is acknowledged at `t` and closed.
pub(super) fn escalation_acknowledged(s: &mut TownState, d: &EscalationAcknowledged, t: Millis) {
    let Some(e) = s.beads.get_mut(&d.bead_id).and_then(|b| b.escalation.as_mut()) else {
        return;
    };
    if e.acknowledged {
        return;
    }
    e.acknowledged = true;
    e.acknowledged_at = Some(t);
    ops::set_plain(s, &d.bead_id, BeadStatus::Closed, t);
}

/// E3.4 `triage_resolved`: records the resolution, closes the request and carries out its action.
pub(super) fn triage_resolved(s: &mut TownState, d: &TriageResolved, t: Millis) {
    let Some(r) = s.beads.get_mut(&d.request_bead_id) else {
        return;
    };
    let allowed = r.status == BeadStatus::Open
        && r.is_triage_request()
        && r.metadata.get("options").and_then(Value::as_array).is_some_and(|o| o.iter().any(|x| x.as_str() == Some(&d.action)));
    if !allowed {
        return;
    }
    let mut resolution = Map::new();
    resolution.insert("action".to_owned(), Value::from(d.action.as_str()));
    resolution.insert("note".to_owned(), d.note.as_deref().map_or(Value::Null, Value::from));
    resolution.insert("resolved_by".to_owned(), Value::from(d.resolved_by.as_str()));
    resolution.insert("at".to_owned(), Value::from(t));
    r.metadata.insert("resolution".to_owned(), Value::Object(resolution));
    let agent_id = r.meta_str("agent_bead_id").map(str::to_owned);
    let request_title = r.title.clone();
    let request_hook = r.meta_str("hooked_bead_id").map(str::to_owned);
    ops::set_plain(s, &d.request_bead_id, BeadStatus::Closed, t);
    let agent = agent_id.as_deref().and_then(|a| s.agents.get(a));
    let agent_hook = agent.and_then(|a| a.hook.clone());
    let agent_rig = agent.and_then(|a| a.rig_id.clone());
    let agent_role = agent.map(|a| a.role);
    let h = request_hook.or_else(|| agent_hook.clone());
    let h_live =
        h.as_deref().and_then(|h| s.beads.get(h)).filter(|b| b.status.is_live()).map(|b| (b.bead_id.clone(), b.bead_type));
    match d.action.as_str() {
        "RESTART" | "RESTART_WITH_BACKOFF" => {
            if let Some(a) = agent_id.as_deref().and_then(|a| s.agents.get_mut(a)) {
                a.status = AgentStatus::Idle;
                a.stalled_at = None;
            }
            if let Some((h, h_type)) = h_live {
                let refinery_on_mr = agent_role == Some(Role::Refinery)
                    && h_type == BeadType::MergeRequest
                    && agent_hook.as_deref() == Some(h.as_str());
                let to = if refinery_on_mr { BeadStatus::InProgress } else { BeadStatus::Open };
                ops::set_plain(s, &h, to, t);
                if d.action == "RESTART_WITH_BACKOFF"
                    && let Some(b) = s.beads.get_mut(&h)
                {
                    b.last_dispatch_attempt_at = Some(t);
                }
            }
        }
        "REASSIGN_BEAD" => {
            if let (Some(a), Some(h)) = (agent_id.as_deref(), h.as_deref())
                && agent_hook.as_deref() == Some(h)
            {
                ops::unhook(s, a);
            }
            if let Some((h, _)) = h_live {
                ops::set_plain(s, &h, BeadStatus::Open, t);
                if let Some(b) = s.beads.get_mut(&h) {
                    b.assignee = None;
                }
            }
        }
        "CLOSE_BEAD" => {
            if let Some(h) = h {
                ops::set_plain(s, &h, BeadStatus::Closed, t);
                ops::unhook_all(s, &h);
            }
        }
        "ESCALATE" | "ESCALATE_TO_MAYOR" => {
            let mut context = Map::new();
            context.insert("triage_request".to_owned(), Value::from(d.request_bead_id.as_str()));
            context.insert("note".to_owned(), d.note.as_deref().map_or(Value::Null, Value::from));
            let title = format!("Escalated by triage: {request_title}");
            ops::open_escalation(
                s,
                EscalationSpec {
                    id: None,
                    severity: Severity::High,
                    category: "triage",
                    title: &title,
                    body: d.note.as_deref(),
                    rig_id: agent_rig.as_deref(),
                    agent_id: agent_id.as_deref(),
                    context,
                    request_id: None,
                    mail_id: None,
                },
                t,
            );
        }
        "NUDGE" => {
            let Some(a) = agent_id else {
                return;
            };
            let (id, n) = ops::peek_id(s, "ndg");
            let created = create_nudge(
                s,
                Nudge {
                    nudge_id: id,
                    agent_id: a,
                    message: d.note.clone().unwrap_or_default(),
                    mode: NudgeMode::Immediate,
                    priority: NudgePriority::Urgent,
                    source: "triage".to_owned(),
                    created_at: t,
                    handed_at: None,
                    delivered_at: None,
                    expires_at: t.saturating_add(NUDGE_TTL),
                },
            );
            if created {
                ops::take_id(s, n);
            }
        }
        _ => {}
    }
}
