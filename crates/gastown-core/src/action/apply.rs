//! The state change of each action inside a `reconciled` event (AC1).

use super::Action;
use crate::state::TownState;
use crate::time::Millis;

/// Applies action `index` of the decision stored at `seq`, at effective time `t`.
pub fn apply_action(state: &mut TownState, seq: u64, index: usize, t: Millis, action: &Action) {
    let _ = (state, seq, index, t, action);
}
