//! Apply of executor results (AC2) and of the reconciler's own decisions (AC1).

use crate::action::{apply_action, apply_result};
use crate::event::{ActionResult, Reconciled};
use crate::state::TownState;
use crate::time::Millis;

/// AC2: the result acts on the entities it echoes.
pub(super) fn action_result(s: &mut TownState, d: &ActionResult, t: Millis) {
    apply_result(s, d, t);
}

/// Applies each action in list order; action i has id `<seq>:<i>`.
pub(super) fn reconciled(s: &mut TownState, seq: u64, t: Millis, d: &Reconciled) {
    for (i, a) in d.actions.iter().enumerate() {
        apply_action(s, seq, i, t, a);
    }
}
