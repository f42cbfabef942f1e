//! gastown-natsd
