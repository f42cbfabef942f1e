//! `agent.nudge`, `mail.send`, `escalation.raise`, `escalation.ack`, `triage.resolve`.

use serde_json::Value;

use super::body::IdKind;
use super::{CommandError, Ctx, Outcome};
use crate::event::{EscalationAcknowledged, EscalationRaised, MailSent, NudgeQueued, TriageResolved};
use crate::state::{BeadStatus, BeadType, NudgeMode, NudgePriority, Severity};

/// `agent.nudge` fields, in the row's order.
pub(super) const NUDGE: &[&str] = &["agent_id", "message", "mode", "priority", "source", "ttl_s"];
/// `mail.send` fields.
pub(super) const MAIL: &[&str] = &["to_agent_id", "from", "subject", "body"];
/// `escalation.raise` fields.
pub(super) const RAISE: &[&str] = &["bead_id", "title", "body", "severity", "category", "rig_id", "agent_id", "context"];
/// `escalation.ack` fields.
pub(super) const ACK: &[&str] = &["bead_id", "by"];
/// `triage.resolve` fields.
pub(super) const RESOLVE: &[&str] = &["request_bead_id", "action", "note", "resolved_by"];

/// `ttl_s` bounds of `agent.nudge`.
const TTL_S: std::ops::RangeInclusive<i64> = 60..=86_400;

/// `agent.nudge`: exactly one nudge `ndg-<ULID>`; 400 `invalid mode: must be one of immediate,
/// wait-idle, queue`; 400 `invalid ttl_s: out of range` (60..86400).
pub(super) fn nudge(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let agent_id = f.req_id("agent_id", IdKind::Agent)?;
    let message = f.req_str("message")?;
    let mode = f.opt_enum("mode", NudgeMode::parse, NudgeMode::VALUES)?.unwrap_or(NudgeMode::Immediate);
    let priority = f.opt_enum("priority", NudgePriority::parse, NudgePriority::VALUES)?.unwrap_or(NudgePriority::Normal);
    let source = f.opt_str("source")?.unwrap_or("cmd");
    let ttl_s = f.opt_int("ttl_s")?.unwrap_or(3600);
    if !TTL_S.contains(&ttl_s) {
        return Err(CommandError::invalid("ttl_s", "out of range"));
    }
    let event = NudgeQueued {
        nudge_id: ctx.new_id("ndg"),
        agent_id: agent_id.to_owned(),
        message: message.to_owned(),
        mode,
        priority,
        source: source.to_owned(),
        ttl_s,
    };
    ctx.append(event, false)
}

/// `mail.send`: a mail `msg-<ULID>`; syntax only.
pub(super) fn send(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let event = MailSent {
        to_agent_id: f.req_id("to_agent_id", IdKind::Agent)?.to_owned(),
        from: f.req_str("from")?.to_owned(),
        subject: f.req_str("subject")?.to_owned(),
        body: f.opt_str("body")?.map(str::to_owned),
        bead_id: ctx.new_id("msg"),
    };
    ctx.append(event, false)
}

/// `escalation.raise`: 400 `invalid severity: must be one of low, medium, high, critical`; 409
/// `bead <id> already exists`. Without `bead_id` the escalation is `esc-<ULID>`.
pub(super) fn raise(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.opt_new_id("bead_id", IdKind::Bead)?.map_or_else(|| ctx.new_id("esc"), str::to_owned);
    let title = f.req_str("title")?;
    let body = f.opt_str("body")?;
    let severity = f.req_enum("severity", Severity::parse, Severity::VALUES)?;
    let category = f.opt_str("category")?.unwrap_or("general");
    let rig_id = f.opt_id("rig_id", IdKind::Rig)?;
    let agent_id = f.opt_id("agent_id", IdKind::Agent)?;
    let context = f.opt_obj("context")?;
    if ctx.state.beads.contains_key(&bead_id) {
        return Err(CommandError::conflict(format!("bead {bead_id} already exists")));
    }
    let event = EscalationRaised {
        bead_id,
        severity,
        category: category.to_owned(),
        title: title.to_owned(),
        body: body.map(str::to_owned),
        rig_id: rig_id.map(str::to_owned),
        agent_id: agent_id.map(str::to_owned),
        context: context.cloned().unwrap_or_default(),
    };
    ctx.append(event, true)
}

/// `escalation.ack`: 400 `unknown escalation: <id>`; already acknowledged → noop.
pub(super) fn ack(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.req_id("bead_id", IdKind::Bead)?;
    let by = f.opt_str("by")?.unwrap_or("operator");
    let Some(b) = ctx.state.beads.get(bead_id).filter(|b| b.bead_type == BeadType::Escalation) else {
        return Err(CommandError::bad_request(format!("unknown escalation: {bead_id}")));
    };
    if b.escalation.as_ref().is_some_and(|e| e.acknowledged) {
        return Ok(Outcome::Noop);
    }
    ctx.append(EscalationAcknowledged { bead_id: bead_id.to_owned(), by: by.to_owned() }, true)
}

/// `triage.resolve`: 400 `unknown triage request: <id>`; 409 `triage request <id> is already
/// resolved` (no longer open); 400 `action <a> is not an option of <id>` (its `metadata.options`).
pub(super) fn resolve(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let request = f.req_id("request_bead_id", IdKind::Bead)?;
    let action = f.req_str("action")?;
    let note = f.opt_str("note")?;
    let resolved_by = f.opt_str("resolved_by")?.unwrap_or("operator");
    let Some(r) = ctx.state.beads.get(request).filter(|b| b.is_triage_request()) else {
        return Err(CommandError::bad_request(format!("unknown triage request: {request}")));
    };
    if r.status != BeadStatus::Open {
        return Err(CommandError::conflict(format!("triage request {request} is already resolved")));
    }
    let is_option =
        r.metadata.get("options").and_then(Value::as_array).is_some_and(|o| o.iter().any(|v| v.as_str() == Some(action)));
    if !is_option {
        return Err(CommandError::bad_request(format!("action {action} is not an option of {request}")));
    }
    let event = TriageResolved {
        request_bead_id: request.to_owned(),
        action: action.to_owned(),
        note: note.map(str::to_owned),
        resolved_by: resolved_by.to_owned(),
    };
    ctx.append(event, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::super::{ErrorCode, Outcome};
    use super::*;
    use crate::action::Action;
    use crate::event::Event;
    use crate::state::TownState;
    use crate::testing::*;

    fn empty() -> TownState {
        TownState::new(TOWN)
    }

    fn raised(id: &str, severity: Severity) -> Ev {
        ev(EscalationRaised {
            bead_id: id.into(),
            severity,
            category: "general".into(),
            title: "Flaky CI".into(),
            body: None,
            rig_id: None,
            agent_id: None,
            context: serde_json::Map::new(),
        })
    }

    /// F, pc-1 hooked to b1, and tri-1: an open stuck_agent request about pc-1.
    fn with_triage_request() -> TownState {
        given(fixture_f())
            .and([
                bead_created("b1", "r1"),
                reconciled([dispatch_creating("pc-1", "b1", "r1", crate::state::Role::Polecat, Some("Toast"))]),
                reconciled([Action::CreateTriageRequest {
                    agent_id: "pc-1".into(),
                    triage_type: "stuck_agent".into(),
                    reason: "GUPP escalation".into(),
                    bead_id: "tri-2".into(),
                }]),
            ])
            .state
    }

    #[test]
    fn agent_nudge_yields_one_nudge_with_defaults() {
        let (env, fenced) = appended_fenced(run(&empty(), "agent.nudge", json!({"agent_id": "pc-1", "message": "rebase first"})));
        let expected = NudgeQueued {
            nudge_id: format!("ndg-{ULID}"),
            agent_id: "pc-1".into(),
            message: "rebase first".into(),
            mode: NudgeMode::Immediate,
            priority: NudgePriority::Normal,
            source: "cmd".into(),
            ttl_s: 3600,
        };
        assert_eq!((env.event, fenced), (Event::NudgeQueued(expected), false));
    }

    #[test]
    fn t35_agent_nudge_wait_idle_carries_its_mode() {
        let body = json!({"agent_id": "pc-1", "message": "rebase first", "mode": "wait-idle", "priority": "urgent", "source": "bob", "ttl_s": 60});
        let Event::NudgeQueued(n) = appended(run(&empty(), "agent.nudge", body)).event else { panic!("not nudge_queued") };
        assert_eq!((n.mode, n.priority, n.source.as_str(), n.ttl_s), (NudgeMode::WaitIdle, NudgePriority::Urgent, "bob", 60));
    }

    #[test]
    fn agent_nudge_validates_mode_priority_and_ttl() {
        let s = empty();
        let m = |extra: serde_json::Value| {
            let mut body = json!({"agent_id": "pc-1", "message": "m"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            msg(&s, "agent.nudge", body)
        };
        assert_eq!(m(json!({"mode": "later"})), "invalid mode: must be one of immediate, wait-idle, queue");
        assert_eq!(m(json!({"priority": "high"})), "invalid priority: must be one of normal, urgent");
        assert_eq!(m(json!({"ttl_s": 59})), "invalid ttl_s: out of range");
        assert_eq!(m(json!({"ttl_s": 86_401})), "invalid ttl_s: out of range");
        assert_eq!(m(json!({"ttl_s": "1h"})), "invalid ttl_s: expected integer");
        assert_eq!(msg(&s, "agent.nudge", json!({"agent_id": "pc-1"})), "missing required field: message");
        assert!(matches!(
            run(&s, "agent.nudge", json!({"agent_id": "a", "message": "m", "ttl_s": 86_400})),
            Ok(Outcome::Append { .. })
        ));
    }

    #[test]
    fn mail_send_yields_mail_sent() {
        let body = json!({"to_agent_id": "mayor", "from": "bob", "subject": "Hi", "body": "text"});
        let (env, fenced) = appended_fenced(run(&empty(), "mail.send", body));
        let expected = MailSent {
            bead_id: format!("msg-{ULID}"),
            to_agent_id: "mayor".into(),
            from: "bob".into(),
            subject: "Hi".into(),
            body: Some("text".into()),
        };
        assert_eq!((env.event, fenced), (Event::MailSent(expected), false));
        assert_eq!(msg(&empty(), "mail.send", json!({"to_agent_id": "mayor", "from": "bob"})), "missing required field: subject");
        assert_eq!(
            msg(&empty(), "mail.send", json!({"to_agent_id": "ma yor", "from": "bob", "subject": "s"})),
            "invalid to_agent_id: must match [A-Za-z0-9_-]{1,64}"
        );
    }

    #[test]
    fn escalation_raise_yields_escalation_raised() {
        let body = json!({"bead_id": "e1", "title": "Flaky CI", "severity": "low"});
        let (env, fenced) = appended_fenced(run(&empty(), "escalation.raise", body));
        assert_eq!((env.event, fenced), (raised("e1", Severity::Low).event, true));
        let body = json!({"title": "T", "severity": "high", "category": "infra", "rig_id": "r1", "agent_id": "p1",
                          "context": {"k": "v"}, "body": "b"});
        let Event::EscalationRaised(e) = appended(run(&empty(), "escalation.raise", body)).event else { panic!("not raised") };
        assert_eq!(
            (e.bead_id, e.category.as_str(), e.rig_id.as_deref(), e.agent_id.as_deref(), e.body.as_deref()),
            (format!("esc-{ULID}"), "infra", Some("r1"), Some("p1"), Some("b"))
        );
        assert_eq!(Value::Object(e.context), json!({"k": "v"}));
    }

    #[test]
    fn escalation_raise_validates_severity_and_existing_ids() {
        assert_eq!(
            msg(&empty(), "escalation.raise", json!({"title": "T", "severity": "urgent"})),
            "invalid severity: must be one of low, medium, high, critical"
        );
        assert_eq!(msg(&empty(), "escalation.raise", json!({"title": "T"})), "missing required field: severity");
        assert_eq!(
            msg(&empty(), "escalation.raise", json!({"bead_id": "esc-4", "title": "T", "severity": "low"})),
            "id esc-4 is reserved"
        );
        let s = given(fixture_f()).and([bead_created("b1", "r1")]).state;
        let e = run_err(&s, "escalation.raise", json!({"bead_id": "b1", "title": "T", "severity": "low"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "bead b1 already exists"));
    }

    #[test]
    fn escalation_ack_yields_escalation_acknowledged() {
        let s = given(fixture_f()).and([raised("e1", Severity::Low)]).state;
        let (env, fenced) = appended_fenced(run(&s, "escalation.ack", json!({"bead_id": "e1"})));
        let expected = EscalationAcknowledged { bead_id: "e1".into(), by: "operator".into() };
        assert_eq!((env.event, fenced), (Event::EscalationAcknowledged(expected), true));
    }

    #[test]
    fn escalation_ack_of_an_unknown_escalation_is_a_400_and_a_repeat_a_noop() {
        let s = given(fixture_f()).and([raised("e1", Severity::Low), bead_created("b1", "r1")]).state;
        for id in ["b1", "e9"] {
            let e = run_err(&s, "escalation.ack", json!({"bead_id": id}));
            assert_eq!((e.code, e.message), (ErrorCode::BadRequest, format!("unknown escalation: {id}")));
        }
        let acked = given(fixture_f())
            .and([raised("e1", Severity::Low), ev(EscalationAcknowledged { bead_id: "e1".into(), by: "x".into() })])
            .state;
        assert_eq!(run(&acked, "escalation.ack", json!({"bead_id": "e1", "by": "y"})).unwrap(), Outcome::Noop);
    }

    #[test]
    fn triage_resolve_yields_triage_resolved() {
        let s = with_triage_request();
        let body = json!({"request_bead_id": "tri-2", "action": "RESTART", "resolved_by": "p2"});
        let (env, fenced) = appended_fenced(run(&s, "triage.resolve", body));
        let expected =
            TriageResolved { request_bead_id: "tri-2".into(), action: "RESTART".into(), note: None, resolved_by: "p2".into() };
        assert_eq!((env.event, fenced), (Event::TriageResolved(expected), true));
    }

    #[test]
    fn triage_resolve_checks_the_request_and_its_options() {
        let s = with_triage_request();
        let e = run_err(&s, "triage.resolve", json!({"request_bead_id": "b1", "action": "RESTART"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "unknown triage request: b1"));
        let e = run_err(&s, "triage.resolve", json!({"request_bead_id": "tri-2", "action": "ESCALATE_TO_MAYOR"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "action ESCALATE_TO_MAYOR is not an option of tri-2"));
        let resolved = given(fixture_f())
            .and([
                bead_created("b1", "r1"),
                reconciled([dispatch_creating("pc-1", "b1", "r1", crate::state::Role::Polecat, Some("Toast"))]),
                reconciled([Action::CreateTriageRequest {
                    agent_id: "pc-1".into(),
                    triage_type: "stuck_agent".into(),
                    reason: "r".into(),
                    bead_id: "tri-2".into(),
                }]),
                ev(TriageResolved {
                    request_bead_id: "tri-2".into(),
                    action: "NUDGE".into(),
                    note: None,
                    resolved_by: "x".into(),
                }),
            ])
            .state;
        let e = run_err(&resolved, "triage.resolve", json!({"request_bead_id": "tri-2", "action": "NUDGE"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "triage request tri-2 is already resolved"));
        assert_eq!(msg(&s, "triage.resolve", json!({"request_bead_id": "tri-2"})), "missing required field: action");
    }
}
