//! The reconciler figures of DOMAIN §M1, kept in one place so exporting them over OTLP is wiring,
//! not a rewrite. Each is a plain atomic or a `gastown_telemetry` primitive; nothing here talks to
//! the network. `town` is never a label (§M3): per-town figures go to KV.

use std::sync::atomic::AtomicU64;

pub use gastown_telemetry::{Histogram, LabelledCounter};

/// The reconciler's figures (DOMAIN §M1), process-wide.
#[derive(Debug, Default)]
pub struct ReconcilerMetrics {
    /// `gastown.reconciler.pass.duration{outcome}` in microseconds (exported as ms).
    pub pass_duration_us: Histogram,
    /// `gastown.reconciler.passes{outcome}` (`decided` | `idle` | `conflict` | `error`). A settle
    /// of several `reconcile` calls counts each call.
    pub passes: LabelledCounter,
    /// `gastown.reconciler.events.folded`: events folded, own decisions excluded.
    pub events_folded: AtomicU64,
    /// `gastown.reconciler.pass.events`: events folded per pass.
    pub pass_events: Histogram,
    /// `gastown.reconciler.actions{action_type}`: actions decided (stored).
    pub actions: LabelledCounter,
    /// `gastown.reconciler.side_effects.published{action_type}`.
    pub side_effects_published: LabelledCounter,
    /// `gastown.reconciler.side_effects.publish_errors`.
    pub publish_errors: AtomicU64,
    /// `gastown.reconciler.invariant.violations{invariant}`: new keys.
    pub invariant_violations: LabelledCounter,
    /// `gastown.reconciler.invariant.active{invariant}` (gauge).
    pub invariant_active: LabelledCounter,
    /// `gastown.reconciler.invariant.check_errors`.
    pub invariant_check_errors: AtomicU64,
    /// `gastown.reconciler.pending_events` (gauge): events stored beyond the last folded seq,
    /// sampled after each pass (the latest town's value; the max over towns is the exporter's).
    pub pending_events: AtomicU64,
    /// `gastown.reconciler.settle_exhausted`.
    pub settle_exhausted: AtomicU64,
    /// `gastown.reconciler.passes_truncated` (R0.8).
    pub passes_truncated: AtomicU64,
    /// `gastown.reconciler.decision_conflicts`: refused decision appends (a fence mismatch, or a
    /// duplicate that is not ours).
    pub decision_conflicts: AtomicU64,
    /// `gastown.reconciler.landing_suppressed`.
    pub landing_suppressed: AtomicU64,
    /// `gastown.reconciler.unknown_events`: events folded as no-ops (unknown type, undecodable).
    pub unknown_events: AtomicU64,
    /// `gastown.reconciler.towns_owned` (gauge).
    pub towns_owned: AtomicU64,
    /// `gastown.reconciler.handovers`: partitions acquired after start-up or given up.
    pub handovers: AtomicU64,
    /// Snapshots written.
    pub snapshots_saved: AtomicU64,
    /// Snapshots that could not be read or written.
    pub snapshot_errors: AtomicU64,
    /// Decisions re-published on takeover (their actions, counted in `side_effects_published`).
    pub republished_decisions: AtomicU64,
}

impl ReconcilerMetrics {
    /// Adds `n` to an unlabelled counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        gastown_telemetry::add(counter, n);
    }

    /// Adds one to an unlabelled counter.
    pub fn inc(counter: &AtomicU64) {
        gastown_telemetry::inc(counter);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gastown_telemetry::set(gauge, v);
    }

    /// Reads an unlabelled counter or gauge.
    #[must_use]
    pub fn read(counter: &AtomicU64) -> u64 {
        gastown_telemetry::read(counter)
    }
}
