//! gastown-testkit
