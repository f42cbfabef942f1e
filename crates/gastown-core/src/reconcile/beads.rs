//! B1–B6 — beads (group B).

use super::pass::Pass;
use crate::time::Millis;

/// Runs the group's rules for the pass.
pub(super) fn run(p: &mut Pass<'_>) {
    let _ = p;
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`.
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let _ = (p, out);
}
