//! The counters of DOMAIN §M2, kept in one place so exporting them over OTLP is wiring, not a
//! rewrite. Each is a plain atomic (or a small map behind a mutex for labelled ones); nothing here
//! talks to the network.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter with one string label set (`{status}`, `{reason}`, …).
#[derive(Debug, Default)]
pub struct LabelledCounter {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl LabelledCounter {
    /// Adds `n` to the series with these label values.
    pub fn add(&self, labels: &[&str], n: u64) {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        if let Ok(mut m) = self.values.lock() {
            *m.entry(key).or_default() += n;
        }
    }

    /// The value of one series.
    #[must_use]
    pub fn get(&self, labels: &[&str]) -> u64 {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        self.values.lock().ok().and_then(|m| m.get(&key).copied()).unwrap_or(0)
    }

    /// The sum over every series.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.values.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Every series and its value.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        self.values.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
    }
}

/// A histogram kept as count and sum (milliseconds); exported with fixed boundaries later.
#[derive(Debug, Default)]
pub struct DurationStat {
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl DurationStat {
    /// Records one duration in microseconds.
    pub fn record_us(&self, us: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations in microseconds.
    #[must_use]
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }
}

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
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads an unlabelled counter.
    #[must_use]
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
