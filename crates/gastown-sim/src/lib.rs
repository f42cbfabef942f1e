//! gastown-sim
