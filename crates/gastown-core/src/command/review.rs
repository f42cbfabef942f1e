//! `review.request_changes`.

use super::body::IdKind;
use super::{CommandError, Ctx, Outcome};
use crate::event::ReworkRequested;

/// `review.request_changes` fields, in the row's order.
pub(super) const REQUEST_CHANGES: &[&str] = &["mr_bead_id", "agent_id", "body", "title"];

/// `review.request_changes`: 409 `merge request <id> is <status>` (terminal); 409 `agent <a> is
/// not hooked to <mr>`. The title defaults to `Rework: <title of the MR's source>` (the MR's own
/// title when its source is missing).
pub(super) fn request_changes(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let mr_id = f.req_id("mr_bead_id", IdKind::Bead)?;
    let agent_id = f.req_id("agent_id", IdKind::Agent)?;
    let body = f.req_str("body")?;
    let title = f.opt_str("title")?;
    let s = ctx.state;
    let mr = s.beads.get(mr_id);
    if let Some(m) = mr.filter(|m| m.is_terminal()) {
        return Err(CommandError::conflict(format!("merge request {mr_id} is {}", m.status)));
    }
    if s.agents.get(agent_id).and_then(|a| a.hook.as_deref()) != Some(mr_id) {
        return Err(CommandError::conflict(format!("agent {agent_id} is not hooked to {mr_id}")));
    }
    let title = match title {
        Some(t) => t.to_owned(),
        None => {
            let source = s.mr_source(mr_id).map(|b| b.title.as_str());
            format!("Rework: {}", source.or(mr.map(|m| m.title.as_str())).unwrap_or(mr_id))
        }
    };
    let event = ReworkRequested { mr_bead_id: mr_id.to_owned(), agent_id: agent_id.to_owned(), title, body: body.to_owned() };
    ctx.append(event, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::ErrorCode;
    use super::super::testkit::*;
    use super::*;
    use crate::event::{BeadCreated, Event};
    use crate::state::{BeadStatus, Role, TownState};
    use crate::testing::*;

    /// F; b1 "Fix login" done by pc-1 → mr-2 (tracks b1) hooked by ref-r1.
    fn mr_under_review() -> TownState {
        given(fixture_f())
            .and([
                ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }),
                reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]),
                agent_done("pc-1", "fix/login"),
                agent_registered("ref-r1", Role::Refinery, Some("r1")),
                bead_hooked("mr-2", "ref-r1"),
            ])
            .state
    }

    #[test]
    fn request_changes_yields_rework_requested_titled_after_the_source() {
        let body = json!({"mr_bead_id": "mr-2", "agent_id": "ref-r1", "body": "rename the helper"});
        let (env, fenced) = appended_fenced(run(&mr_under_review(), "review.request_changes", body));
        let expected = ReworkRequested {
            mr_bead_id: "mr-2".into(),
            agent_id: "ref-r1".into(),
            title: "Rework: Fix login".into(),
            body: "rename the helper".into(),
        };
        assert_eq!((env.event, fenced), (Event::ReworkRequested(expected), true));
    }

    #[test]
    fn request_changes_keeps_a_given_title() {
        let body = json!({"mr_bead_id": "mr-2", "agent_id": "ref-r1", "body": "b", "title": "Rename"});
        let Event::ReworkRequested(r) = appended(run(&mr_under_review(), "review.request_changes", body)).event else {
            panic!("not rework_requested")
        };
        assert_eq!(r.title, "Rename");
    }

    #[test]
    fn request_changes_needs_a_live_mr_hooked_by_the_agent() {
        let s = mr_under_review();
        let e = run_err(&s, "review.request_changes", json!({"mr_bead_id": "mr-2", "agent_id": "pc-1", "body": "b"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "agent pc-1 is not hooked to mr-2"));
        let failed = {
            let mut g = given(fixture_f()).and([
                ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }),
                reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]),
                agent_done("pc-1", "fix/login"),
            ]);
            g.push(bead_status_changed("mr-2", BeadStatus::Failed));
            g.state
        };
        let e = run_err(&failed, "review.request_changes", json!({"mr_bead_id": "mr-2", "agent_id": "ref-r1", "body": "b"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "merge request mr-2 is failed"));
    }

    #[test]
    fn request_changes_validates_its_fields() {
        let s = TownState::new(TOWN);
        assert_eq!(
            msg(&s, "review.request_changes", json!({"agent_id": "a", "body": "b"})),
            "missing required field: mr_bead_id"
        );
        assert_eq!(
            msg(&s, "review.request_changes", json!({"mr_bead_id": "mr-2", "agent_id": "a"})),
            "missing required field: body"
        );
        assert_eq!(
            msg(&s, "review.request_changes", json!({"mr_bead_id": "mr-2", "agent_id": "a", "body": "b", "title": 1})),
            "invalid title: expected string"
        );
    }
}
