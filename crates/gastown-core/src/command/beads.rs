//! `bead.create`, `bead.sling`, `bead.status`, `bead.hook`, `bead.label`, `bead.depend`, and the
//! `dependency cycle` path of E4.

use std::collections::BTreeSet;

use super::body::IdKind;
use super::{CommandError, Ctx, Outcome};
use crate::event::{BeadCreated, BeadHooked, BeadLabelsChanged, BeadStatusChanged, DependencyAdded};
use crate::state::{AgentStatus, BeadStatus, BeadType, DepKind, Priority, Role, TownState};

/// `bead.create` and `bead.sling` fields, in the row's order.
pub(super) const CREATE: &[&str] = &[
    "bead_id",
    "title",
    "body",
    "rig_id",
    "priority",
    "labels",
    "metadata",
    "parent_bead_id",
    "depends_on",
    "convoy_id",
    "agent_id",
    "created_by",
];
/// `bead.status` fields.
pub(super) const STATUS: &[&str] = &["bead_id", "status", "reason", "actor"];
/// `bead.hook` fields.
pub(super) const HOOK: &[&str] = &["bead_id", "agent_id"];
/// `bead.label` fields.
pub(super) const LABEL: &[&str] = &["bead_id", "add", "remove"];
/// `bead.depend` fields.
pub(super) const DEPEND: &[&str] = &["bead_id", "depends_on", "kind"];

fn owned(v: Option<Vec<&str>>) -> Vec<String> {
    v.unwrap_or_default().into_iter().map(str::to_owned).collect()
}

/// `bead.create`: an issue; `rig_id` optional.
pub(super) fn create(ctx: &Ctx) -> Result<Outcome, CommandError> {
    create_issue(ctx, false)
}

/// `bead.sling`: as `bead.create` with `rig_id` required (B1, or B3 with `agent_id`, dispatches it).
pub(super) fn sling(ctx: &Ctx) -> Result<Outcome, CommandError> {
    create_issue(ctx, true)
}

/// Both creation commands: 400 `label <l> is reserved`; 400 `convoy_id <id> is not a convoy`;
/// 400 `dependency cycle: <path>`; 409 `bead <id> already exists`; with `agent_id`: 409 `agent
/// <a> is not an idle, unhooked polecat of rig <r>` (`rig none` when the bead has no rig).
fn create_issue(ctx: &Ctx, rig_required: bool) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.opt_new_id("bead_id", IdKind::Bead)?.map_or_else(|| ctx.new_id("b"), str::to_owned);
    let title = f.req_str("title")?;
    let body = f.opt_str("body")?;
    let rig_id = if rig_required { Some(f.req_id("rig_id", IdKind::Rig)?) } else { f.opt_id("rig_id", IdKind::Rig)? };
    let priority = f.opt_enum("priority", Priority::parse, Priority::VALUES)?.unwrap_or(Priority::Medium);
    let labels = f.opt_labels("labels")?;
    let metadata = f.opt_obj("metadata")?;
    let parent = f.opt_id("parent_bead_id", IdKind::Bead)?;
    let depends_on = owned(f.opt_id_list("depends_on", IdKind::Bead)?);
    let convoy_id = f.opt_id("convoy_id", IdKind::Bead)?;
    let agent_id = f.opt_id("agent_id", IdKind::Agent)?;
    let created_by = f.opt_str("created_by")?.unwrap_or("operator");

    let s = ctx.state;
    if let Some(c) = convoy_id
        && s.beads.get(c).is_none_or(|b| b.bead_type != BeadType::Convoy)
    {
        return Err(CommandError::bad_request(format!("convoy_id {c} is not a convoy")));
    }
    for y in &depends_on {
        check_cycle(s, &bead_id, y)?;
    }
    if s.beads.contains_key(&bead_id) {
        return Err(CommandError::conflict(format!("bead {bead_id} already exists")));
    }
    if let Some(a) = agent_id {
        let fits = s.agents.get(a).is_some_and(|ag| {
            ag.role == Role::Polecat
                && ag.status == AgentStatus::Idle
                && ag.hook.is_none()
                && rig_id.is_some()
                && ag.rig_id.as_deref() == rig_id
        });
        if !fits {
            let r = rig_id.unwrap_or("none");
            return Err(CommandError::conflict(format!("agent {a} is not an idle, unhooked polecat of rig {r}")));
        }
    }
    let event = BeadCreated {
        bead_id,
        title: title.to_owned(),
        body: body.map(str::to_owned),
        rig_id: rig_id.map(str::to_owned),
        parent_bead_id: parent.map(str::to_owned),
        priority,
        labels: owned(labels),
        metadata: metadata.cloned().unwrap_or_default(),
        created_by: created_by.to_owned(),
        depends_on,
        convoy_id: convoy_id.map(str::to_owned),
        agent_id: agent_id.map(str::to_owned),
    };
    ctx.append(event, true)
}

/// 400 `dependency cycle: <path>` when a new `blocks` edge `x → y` would close a cycle.
pub(super) fn check_cycle(state: &TownState, x: &str, y: &str) -> Result<(), CommandError> {
    match cycle_path(state, x, y) {
        Some(path) => Err(CommandError::bad_request(format!("dependency cycle: {}", path.join(" -> ")))),
        None => Ok(()),
    }
}

/// The targets of `node`'s `blocks` edges in C3 order, missing beads last by id.
fn blocks_targets(state: &TownState, node: &str) -> Vec<String> {
    let mut existing = Vec::new();
    let mut missing = Vec::new();
    for t in state.deps.targets(node, DepKind::Blocks) {
        match state.beads.get(t) {
            Some(b) => existing.push((b.created_at, t.to_owned())),
            None => missing.push(t.to_owned()),
        }
    }
    existing.sort();
    missing.sort();
    existing.into_iter().map(|(_, t)| t).chain(missing).collect()
}

/// The cycle a new `blocks` edge `x → y` closes, as E4 prints it: `x`, then the path a depth-first
/// search from `y` over the existing `blocks` edges finds back to `x` (targets in C3 order).
/// Iterative, so a deep graph cannot overflow the stack.
pub(super) fn cycle_path(state: &TownState, x: &str, y: &str) -> Option<Vec<String>> {
    if x == y {
        return Some(vec![x.to_owned(), x.to_owned()]);
    }
    let mut seen: BTreeSet<String> = BTreeSet::from([y.to_owned()]);
    // Each frame: a node on the current path, its targets and the next one to visit.
    let mut stack: Vec<(String, Vec<String>, usize)> = vec![(y.to_owned(), blocks_targets(state, y), 0)];
    while let Some((_, targets, next)) = stack.last_mut() {
        let Some(t) = targets.get(*next).cloned() else {
            stack.pop();
            continue;
        };
        *next += 1;
        if t == x {
            let mut path = vec![x.to_owned()];
            path.extend(stack.iter().map(|(n, _, _)| n.clone()));
            path.push(x.to_owned());
            return Some(path);
        }
        if seen.insert(t.clone()) {
            let ts = blocks_targets(state, &t);
            stack.push((t, ts, 0));
        }
    }
    None
}

/// `bead.status`: 409 `bead <id> is <status>; terminal statuses are final`; same status → noop.
pub(super) fn status(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.req_id("bead_id", IdKind::Bead)?;
    let status = f.req_enum("status", BeadStatus::parse, BeadStatus::VALUES)?;
    let reason = f.opt_str("reason")?;
    let actor = f.opt_str("actor")?.unwrap_or("operator");
    if let Some(b) = ctx.state.beads.get(bead_id) {
        if b.is_terminal() {
            return Err(CommandError::conflict(format!("bead {bead_id} is {}; terminal statuses are final", b.status)));
        }
        if b.status == status {
            return Ok(Outcome::Noop);
        }
    }
    let event =
        BeadStatusChanged { bead_id: bead_id.to_owned(), status, reason: reason.map(str::to_owned), actor: actor.to_owned() };
    ctx.append(event, true)
}

/// `bead.hook`: 400 `bead type <type> cannot be hooked`; 400 `triage requests cannot be hooked`;
/// 409 `bead <id> is <status>` (terminal); 409 `agent <a> is hooked to <b>`; already hooked here
/// → noop. A missing bead or agent is not checked (apply ignores the event).
pub(super) fn hook(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.req_id("bead_id", IdKind::Bead)?;
    let agent_id = f.req_id("agent_id", IdKind::Agent)?;
    let s = ctx.state;
    if let Some(b) = s.beads.get(bead_id) {
        if matches!(b.bead_type, BeadType::Escalation | BeadType::Convoy | BeadType::Message) {
            return Err(CommandError::bad_request(format!("bead type {} cannot be hooked", b.bead_type)));
        }
        if b.is_triage_request() {
            return Err(CommandError::bad_request("triage requests cannot be hooked"));
        }
        if b.is_terminal() {
            return Err(CommandError::conflict(format!("bead {bead_id} is {}", b.status)));
        }
    }
    if let Some(h) = s.agents.get(agent_id).and_then(|a| a.hook.as_deref()) {
        if h != bead_id {
            return Err(CommandError::conflict(format!("agent {agent_id} is hooked to {h}")));
        }
        return Ok(Outcome::Noop);
    }
    ctx.append(BeadHooked { bead_id: bead_id.to_owned(), agent_id: agent_id.to_owned() }, true)
}

/// `bead.label`: reserved labels may be neither added nor removed.
pub(super) fn label(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.req_id("bead_id", IdKind::Bead)?;
    let add = owned(f.opt_labels("add")?);
    let remove = owned(f.opt_labels("remove")?);
    ctx.append(BeadLabelsChanged { bead_id: bead_id.to_owned(), add, remove }, false)
}

/// `bead.depend`: 400 `a bead cannot depend on itself`; 400 `tracks edges must point to a
/// convoy`; 400 `dependency cycle: <path>` (`blocks`); 409 `dependency already exists`.
pub(super) fn depend(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let bead_id = f.req_id("bead_id", IdKind::Bead)?;
    let depends_on = f.req_id("depends_on", IdKind::Bead)?;
    let kind = f.opt_enum("kind", DepKind::parse, DepKind::VALUES)?.unwrap_or(DepKind::Blocks);
    if bead_id == depends_on {
        return Err(CommandError::bad_request("a bead cannot depend on itself"));
    }
    let s = ctx.state;
    if kind == DepKind::Tracks && s.beads.get(depends_on).is_none_or(|b| b.bead_type != BeadType::Convoy) {
        return Err(CommandError::bad_request("tracks edges must point to a convoy"));
    }
    if kind == DepKind::Blocks {
        check_cycle(s, bead_id, depends_on)?;
    }
    if s.deps.get(bead_id, depends_on).is_some() {
        return Err(CommandError::conflict("dependency already exists"));
    }
    ctx.append(DependencyAdded { bead_id: bead_id.to_owned(), depends_on: depends_on.to_owned(), kind }, true)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::super::testkit::*;
    use super::super::{ErrorCode, Outcome};
    use super::*;
    use crate::event::Event;
    use crate::testing::*;

    fn empty() -> TownState {
        TownState::new(TOWN)
    }

    fn created(r: Result<Outcome, CommandError>) -> BeadCreated {
        match appended(r).event {
            Event::BeadCreated(b) => b,
            other => panic!("not bead_created: {other:?}"),
        }
    }

    #[test]
    fn bead_create_yields_bead_created_with_every_field() {
        let body = json!({"bead_id": "b1", "title": "Fix login", "body": "details", "rig_id": "r1", "priority": "high",
                          "labels": ["ui"], "metadata": {"k": 1}, "parent_bead_id": "b0", "depends_on": ["b2"],
                          "created_by": "alice"});
        let (env, fenced) = appended_fenced(run(&empty(), "bead.create", body));
        let expected = BeadCreated {
            title: "Fix login".into(),
            body: Some("details".into()),
            parent_bead_id: Some("b0".into()),
            priority: Priority::High,
            labels: vec!["ui".into()],
            metadata: json!({"k": 1}).as_object().cloned().unwrap(),
            created_by: "alice".into(),
            depends_on: vec!["b2".into()],
            ..bead("b1", Some("r1"))
        };
        assert_eq!((env.event, env.source.as_str(), fenced), (Event::BeadCreated(expected), "cmd:bead.create", true));
    }

    #[test]
    fn bead_create_without_id_gets_b_ulid_medium_priority_and_operator() {
        let b = created(run(&empty(), "bead.create", json!({"title": "x"})));
        let expected =
            BeadCreated { bead_id: format!("b-{ULID}"), title: "x".into(), metadata: Map::new(), ..bead("unused", None) };
        assert_eq!(b, expected);
    }

    #[test]
    fn bead_create_validates_each_field() {
        let s = empty();
        let m = |body| msg(&s, "bead.create", body);
        assert_eq!(m(json!({"bead_id": "mr-7", "title": "x"})), "id mr-7 is reserved");
        assert_eq!(m(json!({"title": 7})), "invalid title: expected string");
        assert_eq!(m(json!({"title": "x", "body": false})), "invalid body: expected string");
        assert_eq!(m(json!({"title": "x", "rig_id": "r/1"})), "invalid rig_id: must match [A-Za-z0-9_-]{1,48}");
        assert_eq!(m(json!({"title": "x", "priority": "p1"})), "invalid priority: must be one of low, medium, high, critical");
        assert_eq!(m(json!({"title": "x", "labels": "ui"})), "invalid labels: expected list of strings");
        assert_eq!(m(json!({"title": "x", "labels": ["ok", "severity:high"]})), "label severity:high is reserved");
        assert_eq!(m(json!({"title": "x", "labels": ["from:bob"]})), "label from:bob is reserved");
        assert_eq!(m(json!({"title": "x", "labels": ["gt:triage-request"]})), "label gt:triage-request is reserved");
        assert_eq!(m(json!({"title": "x", "metadata": []})), "invalid metadata: expected object");
        assert_eq!(m(json!({"title": "x", "parent_bead_id": ""})), "invalid parent_bead_id: must match [A-Za-z0-9_.:-]{1,128}");
        assert_eq!(
            m(json!({"title": "x", "depends_on": ["b1", "b 2"]})),
            "invalid depends_on[1]: must match [A-Za-z0-9_.:-]{1,128}"
        );
        assert_eq!(m(json!({"title": "x", "convoy_id": 3})), "invalid convoy_id: expected string");
        assert_eq!(m(json!({"title": "x", "agent_id": "a:b"})), "invalid agent_id: must match [A-Za-z0-9_-]{1,64}");
        assert_eq!(m(json!({"title": "x", "created_by": []})), "invalid created_by: expected string");
    }

    #[test]
    fn bead_create_rejects_a_convoy_id_that_is_not_a_convoy() {
        let s = given(fixture_f()).and([bead_created("b1", "r1")]).state;
        assert_eq!(msg(&s, "bead.create", json!({"title": "x", "convoy_id": "b1"})), "convoy_id b1 is not a convoy");
        assert_eq!(msg(&s, "bead.create", json!({"title": "x", "convoy_id": "cv9"})), "convoy_id cv9 is not a convoy");
    }

    #[test]
    fn bead_create_tracks_an_existing_convoy() {
        let s = given(fixture_f()).and([convoy("cv1", "Login", &[("c1", &[])])]).state;
        let b = created(run(&s, "bead.create", json!({"bead_id": "b9", "title": "x", "convoy_id": "cv1"})));
        assert_eq!(b.convoy_id.as_deref(), Some("cv1"));
    }

    #[test]
    fn bead_create_rejects_a_dependency_that_closes_a_cycle() {
        // b2 blocks on b1 (existing); creating b1 again is checked for its cycle before its existence.
        let s = given(fixture_f())
            .and([bead_created("b1", "r1"), bead_created("b2", "r1"), dependency_added("b2", "b1", DepKind::Blocks)])
            .state;
        let e = run_err(&s, "bead.create", json!({"bead_id": "b1", "title": "x", "depends_on": ["b2"]}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "dependency cycle: b1 -> b2 -> b1"));
        assert_eq!(
            msg(&s, "bead.create", json!({"bead_id": "b3", "title": "x", "depends_on": ["b3"]})),
            "dependency cycle: b3 -> b3"
        );
    }

    #[test]
    fn a_new_bead_closes_a_cycle_through_an_edge_to_its_missing_id() {
        let s = given(fixture_f()).and([bead_created("b2", "r1"), dependency_added("b2", "b9", DepKind::Blocks)]).state;
        assert_eq!(
            msg(&s, "bead.create", json!({"bead_id": "b9", "title": "x", "depends_on": ["b1", "b2"]})),
            "dependency cycle: b9 -> b2 -> b9"
        );
    }

    #[test]
    fn bead_create_conflicts_with_an_existing_id() {
        let s = given(fixture_f()).and([bead_created("b1", "r1")]).state;
        let e = run_err(&s, "bead.create", json!({"bead_id": "b1", "title": "x"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "bead b1 already exists"));
    }

    #[test]
    fn bead_create_with_an_agent_needs_an_idle_unhooked_polecat_of_the_rig() {
        let s = given(fixture_f())
            .and([
                rig_added("r2"),
                polecat_registered("p1"),
                polecat_registered("p2"),
                bead_created("b1", "r1"),
                bead_hooked("b1", "p2"),
            ])
            .state;
        let m = |body| run_err(&s, "bead.create", body);
        let e = m(json!({"bead_id": "b5", "title": "x", "rig_id": "r1", "agent_id": "p2"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "agent p2 is not an idle, unhooked polecat of rig r1"));
        assert_eq!(
            m(json!({"title": "x", "rig_id": "r2", "agent_id": "p1"})).message,
            "agent p1 is not an idle, unhooked polecat of rig r2"
        );
        assert_eq!(
            m(json!({"title": "x", "rig_id": "r1", "agent_id": "mayor"})).message,
            "agent mayor is not an idle, unhooked polecat of rig r1"
        );
        assert_eq!(
            m(json!({"title": "x", "rig_id": "r1", "agent_id": "p9"})).message,
            "agent p9 is not an idle, unhooked polecat of rig r1"
        );
        assert_eq!(m(json!({"title": "x", "agent_id": "p1"})).message, "agent p1 is not an idle, unhooked polecat of rig none");
    }

    #[test]
    fn state_conditions_are_checked_in_the_order_written() {
        // convoy_id before the cycle, the cycle before the existing id, the existing id before the agent.
        let s = given(fixture_f())
            .and([bead_created("b1", "r1"), bead_created("b2", "r1"), dependency_added("b2", "b1", DepKind::Blocks)])
            .state;
        let body = json!({"bead_id": "b1", "title": "x", "depends_on": ["b2"], "convoy_id": "b2", "agent_id": "p9"});
        assert_eq!(msg(&s, "bead.create", body), "convoy_id b2 is not a convoy");
        let body = json!({"bead_id": "b1", "title": "x", "depends_on": ["b2"], "agent_id": "p9"});
        assert_eq!(msg(&s, "bead.create", body), "dependency cycle: b1 -> b2 -> b1");
        assert_eq!(msg(&s, "bead.create", json!({"bead_id": "b1", "title": "x", "agent_id": "p9"})), "bead b1 already exists");
    }

    #[test]
    fn t24a_sling_with_an_alive_polecat_yields_one_bead_created_carrying_it() {
        let s = given(fixture_f()).and([polecat_registered("p1").at(T0), resumed("p1").at(T0)]).state;
        let body = json!({"bead_id": "b5", "rig_id": "r1", "title": "Docs", "agent_id": "p1"});
        let (env, fenced) = appended_fenced(run(&s, "bead.sling", body));
        let expected = BeadCreated { title: "Docs".into(), agent_id: Some("p1".into()), ..bead("b5", Some("r1")) };
        assert_eq!((env.event, env.source.as_str(), fenced), (Event::BeadCreated(expected), "cmd:bead.sling", true));
    }

    #[test]
    fn bead_sling_requires_a_rig() {
        assert_eq!(msg(&empty(), "bead.sling", json!({"title": "Docs"})), "missing required field: rig_id");
        assert_eq!(
            msg(&empty(), "bead.sling", json!({"title": "Docs", "rig_id": "r1", "labels": ["gt:held", "gt:convoy"]})),
            "label gt:convoy is reserved"
        );
    }

    #[test]
    fn bead_status_yields_bead_status_changed() {
        let s = given(fixture_f()).and([bead_created("b1", "r1")]).state;
        let (env, fenced) = appended_fenced(run(&s, "bead.status", json!({"bead_id": "b1", "status": "failed", "reason": "no"})));
        let expected = BeadStatusChanged {
            bead_id: "b1".into(),
            status: BeadStatus::Failed,
            reason: Some("no".into()),
            actor: "operator".into(),
        };
        assert_eq!((env.event, fenced), (Event::BeadStatusChanged(expected), true));
    }

    #[test]
    fn bead_status_validates_its_fields() {
        let s = empty();
        assert_eq!(msg(&s, "bead.status", json!({"status": "open"})), "missing required field: bead_id");
        assert_eq!(
            msg(&s, "bead.status", json!({"bead_id": "b1", "status": "done"})),
            "invalid status: must be one of open, in_progress, in_review, closed, failed"
        );
        assert_eq!(
            msg(&s, "bead.status", json!({"bead_id": "b1", "status": "open", "actor": 1})),
            "invalid actor: expected string"
        );
    }

    #[test]
    fn bead_status_to_the_same_status_is_a_noop() {
        let s = given(fixture_f()).and([bead_created("b1", "r1")]).state;
        assert_eq!(run(&s, "bead.status", json!({"bead_id": "b1", "status": "open"})).unwrap(), Outcome::Noop);
    }

    #[test]
    fn t37_reopening_a_closed_bead_is_a_409() {
        let s =
            given(fixture_f()).and([bead_created("b1", "r1").at(T0), bead_status_changed("b1", BeadStatus::Closed).at(T0)]).state;
        let e = run_err(&s, "bead.status", json!({"bead_id": "b1", "status": "open"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "bead b1 is closed; terminal statuses are final"));
        assert_eq!(
            msg(&s, "bead.status", json!({"bead_id": "b1", "status": "closed"})),
            "bead b1 is closed; terminal statuses are final"
        );
    }

    #[test]
    fn bead_hook_yields_bead_hooked() {
        let s = given(fixture_f()).and([polecat_registered("p1"), bead_created("b1", "r1")]).state;
        let (env, fenced) = appended_fenced(run(&s, "bead.hook", json!({"bead_id": "b1", "agent_id": "p1"})));
        assert_eq!((env.event, fenced), (Event::BeadHooked(BeadHooked { bead_id: "b1".into(), agent_id: "p1".into() }), true));
    }

    #[test]
    fn bead_hook_refuses_unhookable_and_terminal_beads() {
        let s = given(fixture_f())
            .and([
                polecat_registered("p1"),
                convoy("cv1", "Login", &[("c1", &[])]),
                bead_created("b2", "r1"),
                bead_status_changed("b2", BeadStatus::Failed),
                reconciled([crate::action::Action::CreateTriageRequest {
                    agent_id: "p1".into(),
                    triage_type: "stuck_agent".into(),
                    reason: "stuck".into(),
                    bead_id: "tri-1".into(),
                }]),
            ])
            .state;
        let m = |b: &str| run_err(&s, "bead.hook", json!({"bead_id": b, "agent_id": "p1"}));
        assert_eq!(m("cv1").message, "bead type convoy cannot be hooked");
        assert_eq!(m("tri-1").message, "triage requests cannot be hooked");
        let e = m("b2");
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "bead b2 is failed"));
    }

    #[test]
    fn bead_hook_of_an_agent_hooked_elsewhere_is_a_409_and_here_a_noop() {
        let s = given(fixture_f())
            .and([polecat_registered("p1"), bead_created("b1", "r1"), bead_created("b2", "r1"), bead_hooked("b1", "p1")])
            .state;
        let e = run_err(&s, "bead.hook", json!({"bead_id": "b2", "agent_id": "p1"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "agent p1 is hooked to b1"));
        assert_eq!(run(&s, "bead.hook", json!({"bead_id": "b1", "agent_id": "p1"})).unwrap(), Outcome::Noop);
    }

    #[test]
    fn bead_label_yields_bead_labels_changed_and_guards_reserved_labels() {
        let (env, fenced) =
            appended_fenced(run(&empty(), "bead.label", json!({"bead_id": "b1", "add": ["gt:held"], "remove": ["ui"]})));
        let expected = BeadLabelsChanged { bead_id: "b1".into(), add: vec!["gt:held".into()], remove: vec!["ui".into()] };
        assert_eq!((env.event, fenced), (Event::BeadLabelsChanged(expected), false));
        assert_eq!(
            msg(&empty(), "bead.label", json!({"bead_id": "b1", "add": ["gt:merge-request"]})),
            "label gt:merge-request is reserved"
        );
        assert_eq!(msg(&empty(), "bead.label", json!({"bead_id": "b1", "remove": ["gt:triage"]})), "label gt:triage is reserved");
        assert_eq!(msg(&empty(), "bead.label", json!({"bead_id": "b1", "add": [1]})), "invalid add: expected list of strings");
    }

    #[test]
    fn bead_depend_yields_dependency_added_blocks_by_default() {
        let s = given(fixture_f()).and([bead_created("b1", "r1"), bead_created("b2", "r1")]).state;
        let (env, fenced) = appended_fenced(run(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b2"})));
        let expected = DependencyAdded { bead_id: "b1".into(), depends_on: "b2".into(), kind: DepKind::Blocks };
        assert_eq!((env.event, fenced), (Event::DependencyAdded(expected), true));
    }

    #[test]
    fn bead_depend_validates_kind_and_self_edges() {
        let s = empty();
        assert_eq!(
            msg(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b2", "kind": "needs"})),
            "invalid kind: must be one of blocks, tracks, parent-child"
        );
        assert_eq!(msg(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b1"})), "a bead cannot depend on itself");
        assert_eq!(msg(&s, "bead.depend", json!({"bead_id": "b1"})), "missing required field: depends_on");
    }

    #[test]
    fn bead_depend_tracks_edges_must_point_to_a_convoy() {
        let s = given(fixture_f()).and([bead_created("b1", "r1"), convoy("cv1", "Login", &[("c1", &[])])]).state;
        assert_eq!(
            msg(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b2", "kind": "tracks"})),
            "tracks edges must point to a convoy"
        );
        let env = appended(run(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "cv1", "kind": "tracks"})));
        assert_eq!(
            env.event,
            Event::DependencyAdded(DependencyAdded { bead_id: "b1".into(), depends_on: "cv1".into(), kind: DepKind::Tracks })
        );
        assert!(matches!(
            run(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b9", "kind": "parent-child"})),
            Ok(Outcome::Append { .. })
        ));
    }

    #[test]
    fn bead_depend_prints_the_cycle_found_depth_first_in_c3_order() {
        // The new edge b1 → b2 closes b2 → b3 → b1; b2 also blocks on b4 (created before b3, so
        // visited first: a dead end).
        let s = given(fixture_f())
            .and([
                bead_created("b1", "r1").at(T0 + secs(3)),
                bead_created("b2", "r1").at(T0 + secs(4)),
                bead_created("b4", "r1").at(T0 + secs(5)),
                bead_created("b3", "r1").at(T0 + secs(6)),
                dependency_added("b2", "b4", DepKind::Blocks),
                dependency_added("b2", "b3", DepKind::Blocks),
                dependency_added("b3", "b1", DepKind::Blocks),
            ])
            .state;
        let e = run_err(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b2"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "dependency cycle: b1 -> b2 -> b3 -> b1"));
        // parent-child and tracks edges are not checked for cycles.
        assert!(matches!(
            run(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b2", "kind": "parent-child"})),
            Ok(Outcome::Append { .. })
        ));
    }

    #[test]
    fn the_cycle_search_visits_existing_beads_in_c3_order_then_missing_ones_by_id() {
        // b2 blocks on bz (missing), b9 (created first) and b5; both b9 and b5 lead back to b1.
        let s = given(fixture_f())
            .and([
                bead_created("b1", "r1").at(T0),
                bead_created("b2", "r1").at(T0),
                bead_created("b9", "r1").at(T0 + secs(1)),
                bead_created("b5", "r1").at(T0 + secs(2)),
                dependency_added("b2", "bz", DepKind::Blocks),
                dependency_added("b2", "b5", DepKind::Blocks),
                dependency_added("b2", "b9", DepKind::Blocks),
                dependency_added("b5", "b1", DepKind::Blocks),
                dependency_added("b9", "b1", DepKind::Blocks),
                dependency_added("bz", "b1", DepKind::Blocks),
            ])
            .state;
        assert_eq!(cycle_path(&s, "b1", "b2").unwrap(), ["b1", "b2", "b9", "b1"]);
        assert_eq!(cycle_path(&s, "b1", "b3"), None);
    }

    #[test]
    fn bead_depend_conflicts_with_an_existing_edge() {
        let s = given(fixture_f())
            .and([bead_created("b1", "r1"), bead_created("b2", "r1"), dependency_added("b1", "b2", DepKind::ParentChild)])
            .state;
        let e = run_err(&s, "bead.depend", json!({"bead_id": "b1", "depends_on": "b2"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "dependency already exists"));
    }
}
