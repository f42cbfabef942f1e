//! gastown-bus
