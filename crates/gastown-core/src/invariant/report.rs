//! I1 — reporting: the owning worker's memory of violation keys, turned into counter increments,
//! Sentry events (one issue per key, at most one repeat per interval), resolution logs and gauges.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{INVARIANTS, Violation};
use crate::time::{Millis, older_than};

/// A violation's reporting key (I1): (town, invariant, entity).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// The town checked.
    pub town: String,
    /// The invariant's number.
    pub invariant: u8,
    /// The entity id (rig, bead, agent or town, see [`Violation`]).
    pub entity: String,
}

impl Key {
    /// The info log line of a key that disappeared: `invariant #<n> resolved`.
    #[must_use]
    pub fn resolved_message(&self) -> String {
        format!("invariant #{} resolved", self.invariant)
    }
}

/// One Sentry event, with everything the service sends (I1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The key the event is about.
    pub key: Key,
    /// Sentry level: always `error`.
    pub level: String,
    /// `Reconciler invariant #<n> violated: <detail>`.
    pub message: String,
    /// Tags `invariant` (the number as text) and `town`.
    pub tags: BTreeMap<String, String>,
    /// Extras `detail` (string), `entity` (string) and `seq` (the stream sequence the check ran on).
    pub extras: BTreeMap<String, Value>,
    /// `["gastown-invariant", "<n>", <town>, <entity>]`: one Sentry issue per key.
    pub fingerprint: Vec<String>,
}

impl Report {
    /// The Sentry event for violation `v` of `town`, found on the state folded up to `seq`.
    #[must_use]
    pub fn new(town: &str, seq: u64, v: &Violation) -> Self {
        let n = v.invariant.to_string();
        let tags = BTreeMap::from([("invariant".to_owned(), n.clone()), ("town".to_owned(), town.to_owned())]);
        let extras = BTreeMap::from([
            ("detail".to_owned(), Value::from(v.detail.clone())),
            ("entity".to_owned(), Value::from(v.entity.clone())),
            ("seq".to_owned(), Value::from(seq)),
        ]);
        Self {
            key: Key { town: town.to_owned(), invariant: v.invariant, entity: v.entity.clone() },
            level: "error".to_owned(),
            message: v.message(),
            tags,
            extras,
            fingerprint: vec!["gastown-invariant".to_owned(), n, town.to_owned(), v.entity.clone()],
        }
    }
}

/// What one check of one town asks the service to do (I1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct ReportBatch {
    /// Keys seen for the first time: counter `gastown.reconciler.invariant.violations{invariant}`
    /// += 1 each, and a Sentry event each.
    pub new_keys: Vec<Report>,
    /// Keys that persist and whose last Sentry event is at least the report interval old: one
    /// further Sentry event each, under the same fingerprint.
    pub repeats: Vec<Report>,
    /// Keys of this town that disappeared: an info log [`Key::resolved_message`] each.
    pub resolved: Vec<Key>,
    /// Active keys of this town per invariant, with an entry (possibly 0) for every number of
    /// [`INVARIANTS`], so a gauge that fell to 0 is written as 0.
    pub active: BTreeMap<u8, u32>,
}

/// When a key was first seen and last sent to Sentry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    last_reported_at: Millis,
}

/// The owning worker's memory of violation keys (I1). Kept in memory only: after a handover the
/// new owner starts empty and so reports the active violations once; the old owner calls
/// [`Reporter::forget_town`]. Pure: time is an argument.
#[derive(Debug, Clone, Default)]
pub struct Reporter {
    keys: BTreeMap<Key, Seen>,
}

impl Reporter {
    /// An empty memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the violations of one check of `town` (made on the state folded up to `seq`, at
    /// `now`) and says what to report. New keys are reported at once; a persisting key again once
    /// its last report is `report_interval` old (INVARIANT_REPORT_INTERVAL); a key of this town
    /// absent from `violations` is resolved and forgotten. Violations sharing a key (which
    /// [`super::check()`] never returns) count once, the first one's detail winning.
    pub fn observe(
        &mut self,
        town: &str,
        seq: u64,
        now: Millis,
        violations: &[Violation],
        report_interval: Millis,
    ) -> ReportBatch {
        let mut batch = ReportBatch::default();
        let mut present: BTreeMap<Key, &Violation> = BTreeMap::new();
        for v in violations {
            let key = Key { town: town.to_owned(), invariant: v.invariant, entity: v.entity.clone() };
            present.entry(key).or_insert(v);
        }
        let gone: Vec<Key> = self.keys.keys().filter(|k| k.town == town && !present.contains_key(*k)).cloned().collect();
        for k in gone {
            self.keys.remove(&k);
            batch.resolved.push(k);
        }
        for (key, v) in present {
            match self.keys.get_mut(&key) {
                None => {
                    self.keys.insert(key, Seen { last_reported_at: now });
                    batch.new_keys.push(Report::new(town, seq, v));
                }
                Some(seen) => {
                    if older_than(Some(seen.last_reported_at), report_interval, now) {
                        seen.last_reported_at = now;
                        batch.repeats.push(Report::new(town, seq, v));
                    }
                }
            }
        }
        batch.active = self.active(town);
        batch
    }

    /// Active keys of `town` per invariant, with an entry for every number of [`INVARIANTS`].
    #[must_use]
    pub fn active(&self, town: &str) -> BTreeMap<u8, u32> {
        let mut active: BTreeMap<u8, u32> = INVARIANTS.iter().map(|n| (*n, 0)).collect();
        for k in self.keys.keys().filter(|k| k.town == town) {
            let n = active.entry(k.invariant).or_insert(0);
            *n = n.saturating_add(1);
        }
        active
    }

    /// Active keys of every town this worker remembers, per invariant (the process-wide value of
    /// the `gastown.reconciler.invariant.active{invariant}` gauge), with an entry for every number
    /// of [`INVARIANTS`].
    #[must_use]
    pub fn active_all(&self) -> BTreeMap<u8, u32> {
        let mut active: BTreeMap<u8, u32> = INVARIANTS.iter().map(|n| (*n, 0)).collect();
        for k in self.keys.keys() {
            let n = active.entry(k.invariant).or_insert(0);
            *n = n.saturating_add(1);
        }
        active
    }

    /// Forgets every key of `town` without resolving it (the town was handed to another worker,
    /// which reports its active violations once). Returns how many keys were dropped.
    pub fn forget_town(&mut self, town: &str) -> usize {
        let before = self.keys.len();
        self.keys.retain(|k, _| k.town != town);
        before.saturating_sub(self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::INVARIANT_REPORT_INTERVAL;
    use crate::invariant::check;
    use crate::invariant::fixtures::{POPPED_AT, keys, two_reviews_in_r1};
    use crate::state::BeadStatus;
    use crate::testing::*;

    fn v(invariant: u8, entity: &str) -> Violation {
        Violation { invariant, entity: entity.into(), detail: format!("detail of {entity}") }
    }

    fn fingerprints(reports: &[Report]) -> Vec<Vec<String>> {
        reports.iter().map(|r| r.fingerprint.clone()).collect()
    }

    /// T40's reporting sequence: #3 for r1 present at checks at t, t+5min and t+70min, then gone.
    #[test]
    fn t40_persisting_violation_is_one_issue_reported_hourly_then_resolved() {
        let mut g = two_reviews_in_r1(None);
        let mut reporter = Reporter::new();
        let t = POPPED_AT;
        let mut observe_at = |g: &Given, now: Millis| {
            let found = check(&g.state, now);
            reporter.observe(TOWN, g.state.last_seq, now, &found, INVARIANT_REPORT_INTERVAL)
        };
        let seq = g.state.last_seq;

        let first = observe_at(&g, t);
        let five_min = observe_at(&g, t + mins(5));
        let seventy_min = observe_at(&g, t + mins(70));
        g.push(
            reconciled([transition_bead("mr-4", BeadStatus::InProgress, BeadStatus::Open, "abandoned, no agent hooked")])
                .at(t + mins(71)),
        );
        let gone = observe_at(&g, t + mins(71));

        let detail = "rig r1 has 2 merge requests in_progress without pr_url: mr-3, mr-4";
        let expected = Report {
            key: Key { town: "t1".into(), invariant: 3, entity: "r1".into() },
            level: "error".into(),
            message: format!("Reconciler invariant #3 violated: {detail}"),
            tags: BTreeMap::from([("invariant".into(), "3".into()), ("town".into(), "t1".into())]),
            extras: BTreeMap::from([
                ("detail".into(), Value::from(detail)),
                ("entity".into(), Value::from("r1")),
                ("seq".into(), Value::from(seq)),
            ]),
            fingerprint: vec!["gastown-invariant".into(), "3".into(), "t1".into(), "r1".into()],
        };
        // t: a new key (counter +1) and a Sentry event.
        assert_eq!(first.new_keys, std::slice::from_ref(&expected));
        assert_eq!((first.repeats.len(), first.resolved.len(), first.active.get(&3).copied()), (0, 0, Some(1)));
        // t+5min: within the interval, nothing is sent; the gauge stays 1.
        assert_eq!((five_min.new_keys.len(), five_min.repeats.len(), five_min.active.get(&3).copied()), (0, 0, Some(1)));
        // t+70min: one further event under the same fingerprint, still not a new key.
        assert_eq!(seventy_min.new_keys, []);
        assert_eq!(seventy_min.repeats, [expected]);
        assert_eq!(seventy_min.active.get(&3).copied(), Some(1));
        // Gone: gauge 0 and one resolution log.
        assert_eq!((gone.new_keys.len(), gone.repeats.len()), (0, 0));
        assert_eq!(gone.resolved, [Key { town: "t1".into(), invariant: 3, entity: "r1".into() }]);
        assert_eq!(gone.resolved[0].resolved_message(), "invariant #3 resolved");
        assert_eq!(gone.active.get(&3).copied(), Some(0));
    }

    #[test]
    fn t40_persisting_violation_is_not_resent_just_short_of_the_interval() {
        let g = two_reviews_in_r1(None);
        let mut reporter = Reporter::new();
        let found = check(&g.state, POPPED_AT);
        assert_eq!(keys(&found), [(3, "r1")]);

        let _ = reporter.observe(TOWN, 1, POPPED_AT, &found, INVARIANT_REPORT_INTERVAL);
        let short = reporter.observe(TOWN, 2, POPPED_AT + INVARIANT_REPORT_INTERVAL - 1, &found, INVARIANT_REPORT_INTERVAL);
        let due = reporter.observe(TOWN, 3, POPPED_AT + INVARIANT_REPORT_INTERVAL, &found, INVARIANT_REPORT_INTERVAL);

        assert_eq!((short.new_keys.len(), short.repeats.len()), (0, 0));
        assert_eq!(fingerprints(&due.repeats), [["gastown-invariant", "3", "t1", "r1"]]);
        assert_eq!(due.repeats[0].extras.get("seq"), Some(&Value::from(3_u64)));
    }

    #[test]
    fn gauge_lists_every_invariant_and_counts_keys_per_invariant() {
        let mut reporter = Reporter::new();

        let batch = reporter.observe("t1", 7, T0, &[v(9, "p1"), v(9, "p2"), v(4, "b1")], hours(1));

        let expected: BTreeMap<u8, u32> = BTreeMap::from([(3, 0), (4, 1), (6, 0), (7, 0), (8, 0), (9, 2), (10, 0)]);
        assert_eq!(batch.active, expected);
        assert_eq!(reporter.active_all(), expected);
        assert_eq!(
            fingerprints(&batch.new_keys),
            [
                ["gastown-invariant", "4", "t1", "b1"],
                ["gastown-invariant", "9", "t1", "p1"],
                ["gastown-invariant", "9", "t1", "p2"]
            ]
        );
    }

    #[test]
    fn towns_are_reported_and_resolved_separately() {
        let mut reporter = Reporter::new();
        let _ = reporter.observe("t1", 1, T0, &[v(3, "r1")], hours(1));

        let other = reporter.observe("t2", 1, T0, &[v(3, "r1")], hours(1));
        let t2_clean = reporter.observe("t2", 2, T0 + mins(1), &[], hours(1));
        let t1_again = reporter.observe("t1", 2, T0 + mins(1), &[v(3, "r1")], hours(1));

        assert_eq!(fingerprints(&other.new_keys), [["gastown-invariant", "3", "t2", "r1"]]);
        assert_eq!(t2_clean.resolved, [Key { town: "t2".into(), invariant: 3, entity: "r1".into() }]);
        assert_eq!((t1_again.new_keys.len(), t1_again.resolved.len(), t1_again.active.get(&3).copied()), (0, 0, Some(1)));
    }

    #[test]
    fn a_returning_key_is_new_again() {
        let mut reporter = Reporter::new();
        let _ = reporter.observe("t1", 1, T0, &[v(7, "pc-1")], hours(1));
        let _ = reporter.observe("t1", 2, T0 + mins(1), &[], hours(1));

        let back = reporter.observe("t1", 3, T0 + mins(2), &[v(7, "pc-1")], hours(1));

        assert_eq!(fingerprints(&back.new_keys), [["gastown-invariant", "7", "t1", "pc-1"]]);
    }

    #[test]
    fn after_a_handover_the_town_is_forgotten_without_resolution_and_reported_once_again() {
        let mut reporter = Reporter::new();
        let _ = reporter.observe("t1", 1, T0, &[v(3, "r1"), v(4, "b1")], hours(1));
        let _ = reporter.observe("t2", 1, T0, &[v(3, "r1")], hours(1));

        assert_eq!(reporter.forget_town("t1"), 2);
        assert_eq!(reporter.active("t1").values().sum::<u32>(), 0);
        assert_eq!(reporter.active("t2").get(&3).copied(), Some(1));
        let regained = reporter.observe("t1", 9, T0 + mins(1), &[v(3, "r1")], hours(1));

        assert_eq!(fingerprints(&regained.new_keys), [["gastown-invariant", "3", "t1", "r1"]]);
        assert_eq!(regained.resolved, []);
    }

    #[test]
    fn violations_sharing_a_key_count_once() {
        let mut reporter = Reporter::new();

        let batch = reporter.observe("t1", 1, T0, &[v(10, "r1"), v(10, "r1")], hours(1));

        assert_eq!((batch.new_keys.len(), batch.active.get(&10).copied()), (1, Some(1)));
    }
}
