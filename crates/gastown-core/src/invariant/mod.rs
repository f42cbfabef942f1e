//! Invariants (DOMAIN §I): the read-only checks I3, I4, I6–I10 and the reporting policy I1.
//!
//! # Layout
//! - [`check()`] (`check.rs`) evaluates every invariant on a state at `now` (I0: the settled state at
//!   the pass's `now`, or the folded state of a `dry-run`) and returns the violations in a fixed
//!   order: by invariant number, then entity id (byte-wise), one violation per key;
//! - [`Reporter`] (`report.rs`) is the owning worker's memory of the keys it has seen (I1): it turns
//!   each check's violations into new keys (counter + Sentry event), rate-limited repeats, resolved
//!   keys (info log) and the `active` gauge. Time is an argument; nothing here reads a clock.
//!
//! Number 5 is reserved (convoy statuses are guaranteed by the status type) and numbers 1 and 2 are
//! not invariants of this system, so [`INVARIANTS`] lists 3, 4, 6, 7, 8, 9 and 10.

mod check;
#[cfg(test)]
mod fixtures;
mod report;

pub use check::check;
pub use report::{Key, Report, ReportBatch, Reporter};

use serde::{Deserialize, Serialize};

/// The invariant numbers [`check()`] evaluates, ascending (the gauge of I1 has one entry per number).
pub const INVARIANTS: [u8; 7] = [3, 4, 6, 7, 8, 9, 10];

/// One broken invariant for one entity (I1).
///
/// The entity is the rig for I3, the bead for I4, I6 and I8, the agent for I7 and I9, and for I10
/// the rig (its refineries) or the town (a second mayor, or a refinery without a rig). `(town,
/// invariant, entity)` is the reporting key; `detail` is free text for people and may change while
/// the key persists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant's number (3, 4, 6, 7, 8, 9 or 10).
    pub invariant: u8,
    /// The id of the entity the violation is about (see the type's doc).
    pub entity: String,
    /// What is wrong, in a sentence naming the ids involved.
    pub detail: String,
}

impl Violation {
    /// `Reconciler invariant #<n> violated: <detail>` (I1).
    #[must_use]
    pub fn message(&self) -> String {
        format!("Reconciler invariant #{} violated: {}", self.invariant, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_invariant_and_the_detail() {
        let v = Violation { invariant: 3, entity: "r1".into(), detail: "rig r1 has 2".into() };
        assert_eq!(v.message(), "Reconciler invariant #3 violated: rig r1 has 2");
    }
}
