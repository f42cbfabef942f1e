//! `apply` (DOMAIN E1–E3, S10, §F): folds one stored event into the town state. Total: an event
//! that no longer fits is a no-op, never a panic or an error.

use crate::codec::Stored;
use crate::event::Envelope;
use crate::state::TownState;

/// Folds one event stored at `seq` (E1).
pub fn apply(state: &mut TownState, seq: u64, env: &Envelope) {
    let _ = (state, seq, env);
}

/// Folds a stored message whatever it decoded to (E1: undecodable messages advance `last_seq`).
pub fn apply_stored(state: &mut TownState, seq: u64, stored: &Stored) {
    let _ = (state, seq, stored);
}
