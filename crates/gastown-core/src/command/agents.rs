//! `agent.register`, `agent.done`, `agent.completed`, `agent.checkpoint`.

use super::body::IdKind;
use super::{CommandError, Ctx, Outcome};
use crate::constants::CHECKPOINT_MAX_BYTES;
use crate::event::{AgentCheckpointed, AgentCompleted, AgentDone, AgentRegistered, CompletionStatus};
use crate::state::Role;

/// `agent.register` fields, in the row's order.
pub(super) const REGISTER: &[&str] = &["agent_id", "role", "rig_id", "name"];
/// `agent.done` fields.
pub(super) const DONE: &[&str] = &["agent_id", "branch", "pr_url", "summary", "bead_id", "dispatch_id"];
/// `agent.completed` fields.
pub(super) const COMPLETED: &[&str] = &["agent_id", "status", "reason", "bead_id", "dispatch_id"];
/// `agent.checkpoint` fields.
pub(super) const CHECKPOINT: &[&str] = &["agent_id", "checkpoint"];

/// `agent.register`: 400 `rig_id is required for role <role>`; 400 `refinery id must be
/// ref-<rig_id>`; 409 `agent <id> already exists`; 409 `town already has a mayor`; 409 `rig <r>
/// already has a refinery`. A mayor's `rig_id`, if given, is passed on as given.
pub(super) fn register(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let agent_id = f.req_new_id("agent_id", IdKind::Agent)?;
    let role = f.req_enum("role", Role::parse, Role::VALUES)?;
    let rig_id = f.opt_id("rig_id", IdKind::Rig)?;
    let name = f.opt_str("name")?;
    if role != Role::Mayor && rig_id.is_none() {
        return Err(CommandError::bad_request(format!("rig_id is required for role {role}")));
    }
    if let (Role::Refinery, Some(r)) = (role, rig_id)
        && agent_id != format!("ref-{r}")
    {
        return Err(CommandError::bad_request(format!("refinery id must be ref-{r}")));
    }
    let s = ctx.state;
    if s.agents.contains_key(agent_id) {
        return Err(CommandError::conflict(format!("agent {agent_id} already exists")));
    }
    if role == Role::Mayor && s.mayor().is_some() {
        return Err(CommandError::conflict("town already has a mayor"));
    }
    if let (Role::Refinery, Some(r)) = (role, rig_id)
        && s.refinery_of(r).is_some()
    {
        return Err(CommandError::conflict(format!("rig {r} already has a refinery")));
    }
    let event =
        AgentRegistered { agent_id: agent_id.to_owned(), role, rig_id: rig_id.map(str::to_owned), name: name.map(str::to_owned) };
    ctx.append(event, true)
}

/// `agent.done`: syntax only (a bad `pr_url` is not rejected: apply fails the review).
pub(super) fn done(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let event = AgentDone {
        agent_id: f.req_id("agent_id", IdKind::Agent)?.to_owned(),
        branch: f.req_str("branch")?.to_owned(),
        pr_url: f.opt_str("pr_url")?.map(str::to_owned),
        summary: f.opt_str("summary")?.map(str::to_owned),
        bead_id: f.opt_id("bead_id", IdKind::Bead)?.map(str::to_owned),
        dispatch_id: f.opt_str("dispatch_id")?.map(str::to_owned),
    };
    ctx.append(event, false)
}

/// `agent.completed`: 400 `status must be completed or failed`; without `agent_id` the event
/// names the town's mayor (400 `town has no mayor`), and only then is the append fenced.
pub(super) fn completed(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let agent_id = f.opt_id("agent_id", IdKind::Agent)?;
    let status = match f.req_str("status")? {
        "completed" => CompletionStatus::Completed,
        "failed" => CompletionStatus::Failed,
        _ => return Err(CommandError::bad_request("status must be completed or failed")),
    };
    let reason = f.opt_str("reason")?;
    let bead_id = f.opt_id("bead_id", IdKind::Bead)?;
    let dispatch_id = f.opt_str("dispatch_id")?;
    let (agent_id, fenced) = match agent_id {
        Some(a) => (a.to_owned(), false),
        None => match ctx.state.mayor() {
            Some(m) => (m.agent_id.clone(), true),
            None => return Err(CommandError::bad_request("town has no mayor")),
        },
    };
    let event = AgentCompleted {
        agent_id: Some(agent_id),
        status,
        reason: reason.map(str::to_owned),
        bead_id: bead_id.map(str::to_owned),
        dispatch_id: dispatch_id.map(str::to_owned),
    };
    ctx.append(event, fenced)
}

/// `agent.checkpoint`: 400 `invalid checkpoint: must be a JSON object of at most 64 KiB` (the size
/// of its JSON encoding); 400 `unknown agent: <id>`.
pub(super) fn checkpoint(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let agent_id = f.req_id("agent_id", IdKind::Agent)?;
    let bad = || CommandError::invalid("checkpoint", "must be a JSON object of at most 64 KiB");
    let cp = f.req_obj("checkpoint").map_err(|e| if e.message.starts_with("missing") { e } else { bad() })?;
    let size = serde_json::to_vec(cp).map_or(usize::MAX, |v| v.len());
    if size > CHECKPOINT_MAX_BYTES {
        return Err(bad());
    }
    if !ctx.state.agents.contains_key(agent_id) {
        return Err(CommandError::bad_request(format!("unknown agent: {agent_id}")));
    }
    ctx.append(AgentCheckpointed { agent_id: agent_id.to_owned(), checkpoint: cp.clone() }, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::super::{ErrorCode, Outcome};
    use super::*;
    use crate::event::Event;
    use crate::state::TownState;
    use crate::testing::*;

    fn empty() -> TownState {
        TownState::new(TOWN)
    }

    fn with_refinery() -> TownState {
        given(fixture_f()).and([agent_registered("ref-r1", Role::Refinery, Some("r1"))]).state
    }

    #[test]
    fn agent_register_yields_agent_registered() {
        let (env, fenced) =
            appended_fenced(run(&empty(), "agent.register", json!({"agent_id": "p1", "role": "polecat", "rig_id": "r1"})));
        let expected = AgentRegistered { agent_id: "p1".into(), role: Role::Polecat, rig_id: Some("r1".into()), name: None };
        assert_eq!((env.event, fenced), (Event::AgentRegistered(expected), true));
        let env = appended(run(&empty(), "agent.register", json!({"agent_id": "mayor", "role": "mayor", "name": "Boss"})));
        let expected = AgentRegistered { agent_id: "mayor".into(), role: Role::Mayor, rig_id: None, name: Some("Boss".into()) };
        assert_eq!(env.event, Event::AgentRegistered(expected));
    }

    #[test]
    fn agent_register_validates_ids_and_role() {
        let s = empty();
        assert_eq!(msg(&s, "agent.register", json!({"role": "polecat"})), "missing required field: agent_id");
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "p.1", "role": "polecat"})),
            "invalid agent_id: must match [A-Za-z0-9_-]{1,64}"
        );
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "pc-3", "role": "polecat", "rig_id": "r1"})),
            "id pc-3 is reserved"
        );
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "p1", "role": "worker"})),
            "invalid role: must be one of polecat, refinery, mayor"
        );
        assert_eq!(msg(&s, "agent.register", json!({"agent_id": "p1", "role": 1})), "invalid role: expected string");
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "p1", "role": "polecat"})),
            "rig_id is required for role polecat"
        );
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "p1", "role": "refinery"})),
            "rig_id is required for role refinery"
        );
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "p1", "role": "refinery", "rig_id": "r1"})),
            "refinery id must be ref-r1"
        );
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "p1", "role": "polecat", "rig_id": "r1", "name": 3})),
            "invalid name: expected string"
        );
    }

    #[test]
    fn agent_register_conflicts_with_existing_singletons() {
        let s = with_refinery();
        let e = run_err(&s, "agent.register", json!({"agent_id": "mayor", "role": "polecat", "rig_id": "r1"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "agent mayor already exists"));
        assert_eq!(msg(&s, "agent.register", json!({"agent_id": "m2", "role": "mayor"})), "town already has a mayor");
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "ref-r1", "role": "refinery", "rig_id": "r1"})),
            "agent ref-r1 already exists"
        );
    }

    #[test]
    fn a_second_refinery_for_a_rig_conflicts() {
        // A refinery registered under an id other than ref-r1 cannot come from a command, so
        // the state is built by hand (T40's unchecked constructor).
        let s = unchecked_state(|s| {
            let mut a = s.agents.get("mayor").cloned().unwrap();
            a.agent_id = "x1".into();
            a.role = Role::Refinery;
            a.rig_id = Some("r1".into());
            s.agents.insert("x1".into(), a);
        });
        assert_eq!(
            msg(&s, "agent.register", json!({"agent_id": "ref-r1", "role": "refinery", "rig_id": "r1"})),
            "rig r1 already has a refinery"
        );
    }

    #[test]
    fn agent_done_yields_agent_done_unfenced() {
        let body = json!({"agent_id": "pc-1", "branch": "fix/login", "pr_url": "http://bad", "summary": "s", "bead_id": "b1",
                          "dispatch_id": "6:0"});
        let (env, fenced) = appended_fenced(run(&empty(), "agent.done", body));
        let expected = AgentDone {
            pr_url: Some("http://bad".into()),
            summary: Some("s".into()),
            bead_id: Some("b1".into()),
            dispatch_id: Some("6:0".into()),
            ..crate::testing::done("pc-1", "fix/login")
        };
        assert_eq!((env.event, fenced), (Event::AgentDone(expected), false));
        assert_eq!(msg(&empty(), "agent.done", json!({"agent_id": "pc-1"})), "missing required field: branch");
    }

    #[test]
    fn agent_completed_yields_agent_completed() {
        let body = json!({"agent_id": "pc-1", "status": "completed", "reason": "container eviction"});
        let (env, fenced) = appended_fenced(run(&empty(), "agent.completed", body));
        let expected = AgentCompleted {
            agent_id: Some("pc-1".into()),
            status: CompletionStatus::Completed,
            reason: Some("container eviction".into()),
            bead_id: None,
            dispatch_id: None,
        };
        assert_eq!((env.event, fenced), (Event::AgentCompleted(expected), false));
    }

    #[test]
    fn agent_completed_defaults_to_the_mayor() {
        let (env, fenced) = appended_fenced(run(&given(fixture_f()).state, "agent.completed", json!({"status": "failed"})));
        let Event::AgentCompleted(c) = env.event else { panic!("not agent_completed") };
        assert_eq!((c.agent_id.as_deref(), c.status, fenced), (Some("mayor"), CompletionStatus::Failed, true));
        assert_eq!(msg(&empty(), "agent.completed", json!({"status": "failed"})), "town has no mayor");
    }

    #[test]
    fn agent_completed_status_must_be_completed_or_failed() {
        assert_eq!(
            msg(&empty(), "agent.completed", json!({"agent_id": "p1", "status": "done"})),
            "status must be completed or failed"
        );
        assert_eq!(msg(&empty(), "agent.completed", json!({"agent_id": "p1"})), "missing required field: status");
        // The status is checked before the mayor is looked up.
        assert_eq!(msg(&empty(), "agent.completed", json!({"status": "ok"})), "status must be completed or failed");
    }

    #[test]
    fn agent_checkpoint_yields_agent_checkpointed() {
        let s = given(fixture_f()).and([polecat_registered("p1")]).state;
        let (env, fenced) = appended_fenced(run(&s, "agent.checkpoint", json!({"agent_id": "p1", "checkpoint": {"step": 3}})));
        let checkpoint = json!({"step": 3}).as_object().cloned().unwrap();
        assert_eq!(
            (env.event, fenced),
            (Event::AgentCheckpointed(AgentCheckpointed { agent_id: "p1".into(), checkpoint }), true)
        );
    }

    #[test]
    fn agent_checkpoint_must_be_an_object_of_at_most_64_kib() {
        let s = given(fixture_f()).and([polecat_registered("p1")]).state;
        let m = "invalid checkpoint: must be a JSON object of at most 64 KiB";
        assert_eq!(msg(&s, "agent.checkpoint", json!({"agent_id": "p1", "checkpoint": [1]})), m);
        // {"k":"…"} is 8 bytes around the string: 65536 bytes in all is accepted, one more is not.
        let fits = json!({"agent_id": "p1", "checkpoint": {"k": "x".repeat(64 * 1024 - 8)}});
        assert!(matches!(run(&s, "agent.checkpoint", fits), Ok(Outcome::Append { .. })));
        let over = json!({"agent_id": "p1", "checkpoint": {"k": "x".repeat(64 * 1024 - 7)}});
        assert_eq!(msg(&s, "agent.checkpoint", over), m);
        assert_eq!(msg(&s, "agent.checkpoint", json!({"agent_id": "p1"})), "missing required field: checkpoint");
    }

    #[test]
    fn agent_checkpoint_of_an_unknown_agent_is_a_400() {
        let e = run_err(&given(fixture_f()).state, "agent.checkpoint", json!({"agent_id": "p9", "checkpoint": {}}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "unknown agent: p9"));
    }
}
