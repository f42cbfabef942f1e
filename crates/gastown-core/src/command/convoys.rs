//! `convoy.create`, `convoy.start`.

use std::collections::{BTreeMap, BTreeSet};

use super::body::{Fields, IdKind};
use super::{CommandError, Ctx, Outcome};
use crate::event::{ConvoyBeadSpec, ConvoyCreated, ConvoyStarted, feature_branch};
use crate::state::{BeadType, MergeMode, Priority};

/// `convoy.create` fields, in the row's order.
pub(super) const CREATE: &[&str] = &["convoy_id", "title", "merge_mode", "staged", "beads"];
/// Fields of each element of `beads`.
const BEAD: &[&str] = &["bead_id", "title", "body", "rig_id", "priority", "labels", "depends_on"];
/// `convoy.start` fields.
pub(super) const START: &[&str] = &["convoy_id"];

/// `convoy.create`: 400 `beads must not be empty`; 400 `dependency cycle among convoy beads`
/// (Kahn, over the edges between the request's beads); 409 `bead <id> already exists` (the convoy
/// id, then each bead id in order; an id used twice in the request counts as existing the second
/// time).
///
/// Each element of `beads` is checked in turn: its unknown fields, then its fields in order, named
/// by path (`beads[0].title`). A bead without `bead_id` gets `b-<ULID>-<index>`. The convoy's
/// `staged` defaults to the town's `staged_convoys_default`; a `review-then-land` convoy gets the
/// feature branch of S5, a `review-and-merge` one none.
pub(super) fn create(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let convoy_id = f.opt_new_id("convoy_id", IdKind::Bead)?.map_or_else(|| ctx.new_id("cv"), str::to_owned);
    let title = f.req_str("title")?;
    let merge_mode = f.opt_enum("merge_mode", MergeMode::parse, MergeMode::VALUES)?.unwrap_or(MergeMode::ReviewThenLand);
    let staged = f.opt_bool("staged")?;
    let elements = f.req_obj_list("beads")?;
    if elements.is_empty() {
        return Err(CommandError::bad_request("beads must not be empty"));
    }
    let mut beads = Vec::with_capacity(elements.len());
    for (i, m) in elements.into_iter().enumerate() {
        let prefix = format!("beads[{i}].");
        let b = Fields::nested(m, &prefix);
        b.check_unknown(BEAD, "unknown field")?;
        let bead_id = b.opt_new_id("bead_id", IdKind::Bead)?.map_or_else(|| format!("{}-{i}", ctx.new_id("b")), str::to_owned);
        beads.push(ConvoyBeadSpec {
            bead_id,
            title: b.req_str("title")?.to_owned(),
            body: b.opt_str("body")?.map(str::to_owned),
            rig_id: b.req_id("rig_id", IdKind::Rig)?.to_owned(),
            priority: b.opt_enum("priority", Priority::parse, Priority::VALUES)?,
            labels: b.opt_labels("labels")?.map(|l| l.into_iter().map(str::to_owned).collect()),
            depends_on: b.opt_id_list("depends_on", IdKind::Bead)?.unwrap_or_default().into_iter().map(str::to_owned).collect(),
        });
    }
    if has_cycle(&beads) {
        return Err(CommandError::bad_request("dependency cycle among convoy beads"));
    }
    let mut seen = BTreeSet::new();
    for id in std::iter::once(&convoy_id).chain(beads.iter().map(|b| &b.bead_id)) {
        if ctx.state.beads.contains_key(id) || !seen.insert(id.as_str()) {
            return Err(CommandError::conflict(format!("bead {id} already exists")));
        }
    }
    let staged = staged.unwrap_or_else(|| ctx.state.config.staged_convoys_default());
    let feature_branch = (merge_mode == MergeMode::ReviewThenLand).then(|| feature_branch(&convoy_id, title));
    let event = ConvoyCreated { convoy_id, title: title.to_owned(), merge_mode, staged, feature_branch, beads };
    ctx.append(event, true)
}

/// Kahn's algorithm over the `depends_on` edges between the request's beads: true when some bead
/// can never be ordered (a self-edge included).
fn has_cycle(beads: &[ConvoyBeadSpec]) -> bool {
    let ids: BTreeSet<&str> = beads.iter().map(|b| b.bead_id.as_str()).collect();
    let mut indegree: BTreeMap<&str, usize> = ids.iter().map(|id| (*id, 0)).collect();
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for b in beads {
        for d in b.depends_on.iter().map(String::as_str).filter(|d| ids.contains(d)) {
            if out.entry(d).or_default().insert(b.bead_id.as_str()) {
                *indegree.entry(b.bead_id.as_str()).or_default() += 1;
            }
        }
    }
    let mut ready: Vec<&str> = indegree.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    let mut ordered = 0;
    while let Some(n) = ready.pop() {
        ordered += 1;
        for m in out.get(n).into_iter().flatten() {
            if let Some(k) = indegree.get_mut(m) {
                *k = k.saturating_sub(1);
                if *k == 0 {
                    ready.push(m);
                }
            }
        }
    }
    ordered < ids.len()
}

/// `convoy.start`: 409 `convoy <id> is <status>` when terminal; a convoy that is not staged (or a
/// bead that is no convoy, or none) → noop.
pub(super) fn start(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let convoy_id = ctx.fields().req_id("convoy_id", IdKind::Bead)?;
    let Some(c) = ctx.state.beads.get(convoy_id).filter(|b| b.bead_type == BeadType::Convoy) else {
        return Ok(Outcome::Noop);
    };
    if c.is_terminal() {
        return Err(CommandError::conflict(format!("convoy {convoy_id} is {}", c.status)));
    }
    if !c.convoy.as_ref().is_some_and(|r| r.staged) {
        return Ok(Outcome::Noop);
    }
    ctx.append(ConvoyStarted { convoy_id: convoy_id.to_owned() }, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::super::{ErrorCode, Outcome};
    use super::*;
    use crate::event::Event;
    use crate::state::{BeadStatus, TownState};
    use crate::testing::*;

    fn empty() -> TownState {
        TownState::new(TOWN)
    }

    #[test]
    fn t25c_convoy_create_yields_convoy_created_with_its_feature_branch() {
        let body = json!({"convoy_id": "cv1", "title": "Login", "merge_mode": "review-then-land", "staged": true,
                          "beads": [{"bead_id": "c1", "title": "c1", "rig_id": "r1"},
                                    {"bead_id": "c2", "title": "c2", "rig_id": "r1", "depends_on": ["c1"]}]});
        let (env, fenced) = appended_fenced(run(&given(fixture_f()).state, "convoy.create", body));
        let expected = ConvoyCreated {
            convoy_id: "cv1".into(),
            title: "Login".into(),
            merge_mode: MergeMode::ReviewThenLand,
            staged: true,
            feature_branch: Some("convoy/login/cv1/head".into()),
            beads: vec![convoy_bead("c1", &[]), convoy_bead("c2", &["c1"])],
        };
        assert_eq!((env.event, fenced), (Event::ConvoyCreated(expected), true));
    }

    #[test]
    fn convoy_create_fills_in_ids_mode_and_staged_from_the_town() {
        let s = given(fixture_f()).and([town_configured_with(json!({"staged_convoys_default": true}))]).state;
        let body = json!({"title": "Big", "beads": [{"title": "one", "rig_id": "r1", "priority": "low", "labels": ["ui"]}]});
        let Event::ConvoyCreated(c) = appended(run(&s, "convoy.create", body)).event else { panic!("not convoy_created") };
        let cv = format!("cv-{ULID}");
        let first = ConvoyBeadSpec {
            bead_id: format!("b-{ULID}-0"),
            title: "one".into(),
            priority: Some(Priority::Low),
            labels: Some(vec!["ui".into()]),
            ..convoy_bead("x", &[])
        };
        let expected = ConvoyCreated {
            feature_branch: Some(feature_branch(&cv, "Big")),
            convoy_id: cv,
            title: "Big".into(),
            merge_mode: MergeMode::ReviewThenLand,
            staged: true,
            beads: vec![first],
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn a_review_and_merge_convoy_has_no_feature_branch_and_is_not_staged_by_default() {
        let body = json!({"convoy_id": "cv2", "title": "X", "merge_mode": "review-and-merge", "beads": [{"title": "a", "rig_id": "r1"}]});
        let Event::ConvoyCreated(c) = appended(run(&empty(), "convoy.create", body)).event else { panic!("not convoy_created") };
        assert_eq!((c.merge_mode, c.feature_branch, c.staged), (MergeMode::ReviewAndMerge, None, false));
    }

    #[test]
    fn convoy_create_validates_its_fields_and_beads_by_path() {
        let s = empty();
        let m = |body| msg(&s, "convoy.create", body);
        assert_eq!(m(json!({"convoy_id": "tb-12", "title": "x", "beads": []})), "id tb-12 is reserved");
        assert_eq!(m(json!({"convoy_id": "cv-12", "title": "x", "beads": []})), "beads must not be empty");
        assert_eq!(m(json!({"beads": []})), "missing required field: title");
        assert_eq!(
            m(json!({"title": "x", "merge_mode": "squash", "beads": []})),
            "invalid merge_mode: must be one of review-then-land, review-and-merge"
        );
        assert_eq!(m(json!({"title": "x", "staged": "yes", "beads": []})), "invalid staged: expected boolean");
        assert_eq!(m(json!({"title": "x"})), "missing required field: beads");
        assert_eq!(m(json!({"title": "x", "beads": [1]})), "invalid beads: expected list of objects");
        assert_eq!(m(json!({"title": "x", "beads": []})), "beads must not be empty");
        assert_eq!(m(json!({"title": "x", "beads": [{"rig_id": "r1", "zz": 1, "title": 3}]})), "unknown field: beads[0].zz");
        assert_eq!(
            m(json!({"title": "x", "beads": [{"title": "a", "rig_id": "r1"}, {"rig_id": "r1"}]})),
            "missing required field: beads[1].title"
        );
        assert_eq!(m(json!({"title": "x", "beads": [{"title": "a"}]})), "missing required field: beads[0].rig_id");
        assert_eq!(m(json!({"title": "x", "beads": [{"bead_id": "mr-1", "title": "a", "rig_id": "r1"}]})), "id mr-1 is reserved");
        assert_eq!(
            m(json!({"title": "x", "beads": [{"title": "a", "rig_id": "r1", "priority": "urgent"}]})),
            "invalid beads[0].priority: must be one of low, medium, high, critical"
        );
        assert_eq!(
            m(json!({"title": "x", "beads": [{"title": "a", "rig_id": "r1", "labels": ["gt:convoy"]}]})),
            "label gt:convoy is reserved"
        );
        assert_eq!(
            m(json!({"title": "x", "beads": [{"title": "a", "rig_id": "r1", "depends_on": ["c 1"]}]})),
            "invalid beads[0].depends_on[0]: must match [A-Za-z0-9_.:-]{1,128}"
        );
    }

    #[test]
    fn convoy_create_rejects_a_cycle_among_its_beads() {
        let body = json!({"title": "x", "beads": [
            {"bead_id": "c1", "title": "a", "rig_id": "r1", "depends_on": ["c3", "b-old"]},
            {"bead_id": "c2", "title": "b", "rig_id": "r1", "depends_on": ["c1"]},
            {"bead_id": "c3", "title": "c", "rig_id": "r1", "depends_on": ["c2"]}]});
        let e = run_err(&empty(), "convoy.create", body);
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "dependency cycle among convoy beads"));
        let selfish = json!({"title": "x", "beads": [{"bead_id": "c1", "title": "a", "rig_id": "r1", "depends_on": ["c1"]}]});
        assert_eq!(msg(&empty(), "convoy.create", selfish), "dependency cycle among convoy beads");
        assert!(!has_cycle(&[convoy_bead("c1", &["c2", "b-old"]), convoy_bead("c2", &[]), convoy_bead("c3", &["c1", "c2"])]));
    }

    #[test]
    fn convoy_create_conflicts_with_existing_ids() {
        let s = given(fixture_f()).and([bead_created("b1", "r1"), convoy("cv1", "Login", &[("c1", &[])])]).state;
        let e = run_err(
            &s,
            "convoy.create",
            json!({"convoy_id": "cv1", "title": "x", "beads": [{"bead_id": "b1", "title": "a", "rig_id": "r1"}]}),
        );
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "bead cv1 already exists"));
        assert_eq!(
            msg(
                &s,
                "convoy.create",
                json!({"convoy_id": "cv2", "title": "x", "beads": [{"bead_id": "b1", "title": "a", "rig_id": "r1"}]})
            ),
            "bead b1 already exists"
        );
        assert_eq!(
            msg(
                &empty(),
                "convoy.create",
                json!({"title": "x", "beads": [{"bead_id": "d", "title": "a", "rig_id": "r1"}, {"bead_id": "d", "title": "b", "rig_id": "r1"}]})
            ),
            "bead d already exists"
        );
    }

    #[test]
    fn t25c_convoy_start_of_a_staged_convoy_yields_convoy_started() {
        let staged = ev(ConvoyCreated { staged: true, ..convoy_payload("cv1") });
        let s = given(fixture_f()).and([staged]).state;
        let (env, fenced) = appended_fenced(run(&s, "convoy.start", json!({"convoy_id": "cv1"})));
        assert_eq!((env.event, fenced), (Event::ConvoyStarted(ConvoyStarted { convoy_id: "cv1".into() }), true));
    }

    #[test]
    fn convoy_start_of_an_unstaged_or_missing_convoy_is_a_noop() {
        let s = given(fixture_f()).and([convoy("cv1", "Login", &[("c1", &[])]), bead_created("b1", "r1")]).state;
        for id in ["cv1", "b1", "cv9"] {
            assert_eq!(run(&s, "convoy.start", json!({"convoy_id": id})).unwrap(), Outcome::Noop, "{id}");
        }
        assert_eq!(msg(&s, "convoy.start", json!({})), "missing required field: convoy_id");
    }

    #[test]
    fn convoy_start_of_a_terminal_convoy_is_a_409() {
        let staged = ev(ConvoyCreated { staged: true, ..convoy_payload("cv1") });
        let s = given(fixture_f()).and([staged, bead_status_changed("cv1", BeadStatus::Failed)]).state;
        let e = run_err(&s, "convoy.start", json!({"convoy_id": "cv1"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "convoy cv1 is failed"));
    }

    fn convoy_payload(id: &str) -> ConvoyCreated {
        match convoy(id, "Login", &[("c1", &[])]).event {
            Event::ConvoyCreated(c) => c,
            _ => unreachable!(),
        }
    }
}
