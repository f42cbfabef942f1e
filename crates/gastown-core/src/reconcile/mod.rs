//! `reconcile(state, now)` (DOMAIN §R): the ordered actions of one pass, and `next_wakeup`.
//!
//! # Layout
//! One file per rule group, run in the order R0.1 fixes — **A, B, Q, C, G, X, H, F**:
//! - `agents` (A1–A4), `beads` (B1–B6), `review` (Q1–Q9), `convoys` (C1–C4), `gupp` (G1–G3),
//!   `gc` (X1–X2), `housekeeping` (H1–H4), `drain` (F1);
//! - `pass`: the per-pass bookkeeping of R0.2 (claims, id and name allocation, the breaker
//!   count) and the cap of R0.8;
//! - `wakeup`: `next_wakeup` (R0.7) from the deadlines each group file names (R9).
//!
//! Every rule reads the pre-pass state; the reconciler is never told why it runs.

mod agents;
mod beads;
mod convoys;
mod drain;
mod gc;
mod gupp;
mod housekeeping;
mod pass;
mod review;
mod wakeup;

#[cfg(test)]
mod properties;

pub use wakeup::next_wakeup;

use crate::action::Action;
use crate::state::TownState;
use crate::time::Millis;

/// One pass's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct Decision {
    /// The actions, in R0.1 order, at most MAX_ACTIONS_PER_PASS.
    pub actions: Vec<Action>,
    /// Whether R0.8 cut the list (the pass does not count toward the settle limit).
    pub truncated: bool,
    /// C4 landings held back by an MR awaiting approval (metric `landing_suppressed`).
    pub landing_suppressed: u32,
}

impl Decision {
    /// A pass that decides nothing appends nothing (R0.5).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Runs one reconcile pass over `state` at `now` (R0.1). Pure and deterministic.
pub fn reconcile(state: &TownState, now: Millis) -> Decision {
    let mut p = pass::Pass::new(state, now);
    agents::run(&mut p);
    beads::run(&mut p);
    review::run(&mut p);
    convoys::run(&mut p);
    gupp::run(&mut p);
    gc::run(&mut p);
    housekeeping::run(&mut p);
    drain::run(&mut p);
    p.finish()
}
