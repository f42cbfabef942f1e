//! Request builders shared by the command tests.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use serde_json::Value;

use super::{CommandError, CommandRequest, Outcome, handle};
use crate::event::Envelope;
use crate::state::TownState;
use crate::testing::{T0, mins};
use crate::time::Millis;

/// Ingest's clock in the tests: one minute after T0 (fixture F's events are at T0).
pub(super) const NOW: Millis = T0 + mins(1);
/// The fresh ULID ingest hands in.
pub(super) const ULID: &str = "01JZ8Q2W6N3K4M5P7R9S0T1V2X";

/// A JSON request at [`NOW`] without `Nats-Msg-Id` (the body is leaked: tests only).
pub(super) fn request<'a>(command: &'a str, body: &Value) -> CommandRequest<'a> {
    request_at(command, body, NOW)
}

/// A JSON request at `now`.
pub(super) fn request_at<'a>(command: &'a str, body: &Value, now: Millis) -> CommandRequest<'a> {
    let bytes: &'static [u8] = Box::leak(serde_json::to_vec(body).unwrap().into_boxed_slice());
    CommandRequest { town_id: "t1", command, body: bytes, content_type: None, msg_id: None, now, fresh_id: ULID }
}

/// Handles a JSON request at [`NOW`].
pub(super) fn run(state: &TownState, command: &str, body: Value) -> Result<Outcome, CommandError> {
    handle(&request(command, &body), state)
}

/// The rejection of a JSON request at [`NOW`].
pub(super) fn run_err(state: &TownState, command: &str, body: Value) -> CommandError {
    match run(state, command, body) {
        Err(e) => e,
        Ok(o) => panic!("{command} was accepted: {o:?}"),
    }
}

/// The message of a rejection.
pub(super) fn msg(state: &TownState, command: &str, body: Value) -> String {
    run_err(state, command, body).message
}

/// The envelope of an appended outcome.
pub(super) fn appended(r: Result<Outcome, CommandError>) -> Envelope {
    match r {
        Ok(Outcome::Append { envelope, .. }) => envelope,
        other => panic!("expected an append, got {other:?}"),
    }
}

/// The envelope and fence flag of an appended outcome.
pub(super) fn appended_fenced(r: Result<Outcome, CommandError>) -> (Envelope, bool) {
    match r {
        Ok(Outcome::Append { envelope, fenced }) => (envelope, fenced),
        other => panic!("expected an append, got {other:?}"),
    }
}

/// A town with some of everything, for the totality property.
pub(super) fn rich_state() -> TownState {
    use crate::state::{BeadStatus, Role};
    use crate::testing::*;
    given(fixture_f())
        .and([
            polecat_registered("p1"),
            agent_registered("ref-r1", Role::Refinery, Some("r1")),
            bead_created("b1", "r1"),
            bead_created("b2", "r1"),
            bead_hooked("b1", "p1"),
            bead_status_changed("b2", BeadStatus::Closed),
            container_eviction(Some("c1")),
        ])
        .state
}

/// `convoy_created{id, title, review-then-land, not staged}` with issues in r1, each given with
/// its `depends_on`.
pub(super) fn convoy(id: &str, title: &str, beads: &[(&str, &[&str])]) -> crate::testing::Ev {
    use crate::event::{ConvoyBeadSpec, ConvoyCreated, feature_branch};
    use crate::state::MergeMode;
    crate::testing::ev(ConvoyCreated {
        convoy_id: id.into(),
        title: title.into(),
        merge_mode: MergeMode::ReviewThenLand,
        staged: false,
        feature_branch: Some(feature_branch(id, title)),
        beads: beads
            .iter()
            .map(|(b, deps)| ConvoyBeadSpec {
                bead_id: (*b).into(),
                title: (*b).into(),
                body: None,
                rig_id: "r1".into(),
                priority: None,
                labels: None,
                depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
            })
            .collect(),
    })
}
