//! Histories shared by the invariant tests of `check.rs` and `report.rs` (T23, T40).

use crate::state::{BeadStatus, Role, TownState};
use crate::testing::*;

use super::Violation;

/// The (invariant, entity) keys of a check, in order.
pub(super) fn keys(v: &[Violation]) -> Vec<(u8, &str)> {
    v.iter().map(|v| (v.invariant, v.entity.as_str())).collect()
}

/// A state no history reaches: `g`'s folded state, then `build` by hand (T40's unchecked
/// constructor, starting from a history instead of bare fixture F).
pub(super) fn unchecked_from(g: Given, build: impl FnOnce(&mut TownState)) -> TownState {
    unchecked_state(|s| {
        *s = g.state;
        build(s);
    })
}

/// When the two MRs of [`two_reviews_in_r1`] are popped.
pub(super) const POPPED_AT: Millis = T0 + mins(2);

/// F; b1, b2 in r1 dispatched to pc-1, pc-2 at +10s; both done at +1min (pc-2 with `pr_url` when
/// given), creating mr-3 (tracks b1) and mr-4 (tracks b2); both MRs popped `open→in_progress` at
/// +2min.
pub(super) fn two_reviews_in_r1(second_pr_url: Option<&str>) -> Given {
    let second_done = match second_pr_url {
        Some(url) => agent_done_pr("pc-2", "fix-b2", url),
        None => agent_done("pc-2", "fix-b2"),
    };
    given(fixture_f()).and([
        bead_created("b1", "r1").at(T0 + secs(10)),
        bead_created("b2", "r1").at(T0 + secs(10)),
        reconciled([
            dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast")),
            dispatch_creating("pc-2", "b2", "r1", Role::Polecat, Some("Maple")),
        ])
        .at(T0 + secs(10)),
        agent_done("pc-1", "fix-b1").at(T0 + mins(1)),
        second_done.at(T0 + mins(1)),
        reconciled([
            transition_bead("mr-3", BeadStatus::Open, BeadStatus::InProgress, "popped for review"),
            transition_bead("mr-4", BeadStatus::Open, BeadStatus::InProgress, "popped for review"),
        ])
        .at(POPPED_AT),
    ])
}
