//! gastown-reconciler
