//! The counters of DOMAIN §M2, kept in one place so exporting them over OTLP is wiring, not a
//! rewrite. Each is a plain atomic or a `gastown_telemetry` primitive; nothing here talks to the
//! network.

use std::sync::atomic::AtomicU64;

pub use gastown_telemetry::{DurationStat, LabelledCounter};

/// The ingest counters of DOMAIN §M2.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// `gastown.ingest.heartbeats{status}`: heartbeats received, by status.
    pub heartbeats: LabelledCounter,
    /// `gastown.ingest.heartbeats.filtered`: heartbeats that appended nothing.
    pub heartbeats_filtered: AtomicU64,
    /// `gastown.ingest.events.appended{event_type, source}` (`source` = `hb` | `cmd`).
    pub events_appended: LabelledCounter,
    /// `gastown.ingest.events.duplicates`: appends answered as duplicates.
    pub events_duplicates: AtomicU64,
    /// `gastown.ingest.rejected{reason}`: heartbeats and commands refused, by reason.
    pub rejected: LabelledCounter,
    /// `gastown.ingest.commands{command, outcome}`.
    pub commands: LabelledCounter,
    /// `gastown.ingest.command.duration` (ms histogram).
    pub command_duration: DurationStat,
    /// `gastown.side_effects.results{action_type, outcome}`: accepted `action.result` commands.
    pub side_effect_results: LabelledCounter,
}

impl IngestMetrics {
    /// Adds one to an unlabelled counter.
    pub fn inc(counter: &AtomicU64) {
        gastown_telemetry::inc(counter);
    }

    /// Reads an unlabelled counter.
    #[must_use]
    pub fn read(counter: &AtomicU64) -> u64 {
        gastown_telemetry::read(counter)
    }
}
