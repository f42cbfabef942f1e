//! Metric primitives: plain atomics, or a small map behind a mutex for labelled series. Nothing
//! here talks to the network, and a poisoned lock only loses figures (it never panics).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter (or gauge, with [`LabelledCounter::set`]) with one string label set (`{status}`,
/// `{reason}`, …).
#[derive(Debug, Default)]
pub struct LabelledCounter {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl LabelledCounter {
    /// Adds `n` to the series with these label values (saturating).
    pub fn add(&self, labels: &[&str], n: u64) {
        if let Ok(mut m) = self.values.lock() {
            let v = m.entry(key(labels)).or_default();
            *v = v.saturating_add(n);
        }
    }

    /// Sets the series with these label values (gauges).
    pub fn set(&self, labels: &[&str], n: u64) {
        if let Ok(mut m) = self.values.lock() {
            m.insert(key(labels), n);
        }
    }

    /// The value of one series.
    #[must_use]
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.values.lock().ok().and_then(|m| m.get(&key(labels)).copied()).unwrap_or(0)
    }

    /// The sum over every series.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.values.lock().map(|m| m.values().fold(0, |acc: u64, v| acc.saturating_add(*v))).unwrap_or(0)
    }

    /// Every series and its value.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        self.values.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
    }
}

/// The map key of a label set.
fn key(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| (*l).to_owned()).collect()
}

/// A duration histogram kept as count and sum in microseconds; exported with fixed boundaries
/// later.
#[derive(Debug, Default)]
pub struct DurationStat {
    us: Histogram,
}

impl DurationStat {
    /// Records one duration in microseconds.
    pub fn record_us(&self, us: u64) {
        self.us.record(us);
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.us.count()
    }

    /// Sum of observations in microseconds.
    #[must_use]
    pub fn sum_us(&self) -> u64 {
        self.us.sum()
    }
}

/// A histogram of plain values kept as count, sum and maximum; exported with fixed boundaries
/// later.
#[derive(Debug, Default)]
pub struct Histogram {
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, v: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the observations.
    #[must_use]
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// Largest observation.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

/// Adds one to an unlabelled counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to an unlabelled counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Sets an unlabelled gauge.
pub fn set(gauge: &AtomicU64, v: u64) {
    gauge.store(v, Ordering::Relaxed);
}

/// Reads an unlabelled counter or gauge.
#[must_use]
pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counter_adds_sets_and_sums_per_series() {
        let c = LabelledCounter::default();
        c.add(&["running"], 2);
        c.add(&["running"], 3);
        c.add(&["exited"], 1);
        assert_eq!(c.get(&["running"]), 5);
        assert_eq!(c.get(&["missing"]), 0);
        assert_eq!(c.total(), 6);
        c.set(&["exited"], 7);
        c.add(&["running"], u64::MAX);
        assert_eq!(c.get(&["running"]), u64::MAX, "adding saturates");
        assert_eq!(c.total(), u64::MAX, "the total saturates");
        assert_eq!(c.snapshot(), vec![(vec!["exited".to_owned()], 7), (vec!["running".to_owned()], u64::MAX)]);
    }

    #[test]
    fn stats_keep_count_sum_and_max() {
        let d = DurationStat::default();
        d.record_us(10);
        d.record_us(30);
        assert_eq!((d.count(), d.sum_us()), (2, 40));
        let h = Histogram::default();
        for v in [4, 9, 2] {
            h.record(v);
        }
        assert_eq!((h.count(), h.sum(), h.max()), (3, 15, 9));
    }

    #[test]
    fn atomic_helpers_count_and_set() {
        let c = AtomicU64::new(0);
        inc(&c);
        add(&c, 4);
        assert_eq!(read(&c), 5);
        set(&c, 2);
        assert_eq!(read(&c), 2);
    }
}
