//! `next_wakeup(S, after)` (R0.7): the least R9 deadline after `after` whose guard holds.

use super::pass::Pass;
use super::{agents, beads, convoys, drain, gc, gupp, housekeeping, review};
use crate::state::TownState;
use crate::time::Millis;

/// The least deadline `d > after` of table R9 whose guard holds in `state`, or `None`.
///
/// It may name an instant at which nothing fires; on a state settled at `after` it never names
/// one later than the first instant at which a pass would act.
#[must_use]
pub fn next_wakeup(state: &TownState, after: Millis) -> Option<Millis> {
    let p = Pass::new(state, after);
    let mut out = Vec::new();
    agents::deadlines(&p, &mut out);
    beads::deadlines(&p, &mut out);
    review::deadlines(&p, &mut out);
    convoys::deadlines(&p, &mut out);
    gupp::deadlines(&p, &mut out);
    gc::deadlines(&p, &mut out);
    housekeeping::deadlines(&p, &mut out);
    drain::deadlines(&p, &mut out);
    out.into_iter().filter(|d| *d > after).min()
}
