//! The two rings `apply` maintains (S1): event ids for deduplication (E1) and the recent events
//! that `status` shows.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// One remembered event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentId {
    /// FNV-1a of the event id.
    pub hash: u64,
    /// Stream sequence it was stored at.
    pub seq: u64,
    /// Effective time it was applied at.
    pub t: Millis,
}

#[derive(Serialize, Deserialize)]
struct DedupWire {
    entries: Vec<RecentId>,
}

/// Event ids applied within the dedup horizon, in application order (so ordered by `t`, which is
/// monotone), with a lookup by hash. Serialized as the entry list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DedupWire", into = "DedupWire")]
pub struct DedupRing {
    order: VecDeque<RecentId>,
    by_hash: BTreeMap<u64, RecentId>,
}

impl From<DedupWire> for DedupRing {
    fn from(w: DedupWire) -> Self {
        let mut r = Self::default();
        for e in w.entries {
            r.insert(e);
        }
        r
    }
}

impl From<DedupRing> for DedupWire {
    fn from(r: DedupRing) -> Self {
        Self { entries: r.entries().copied().collect() }
    }
}

impl DedupRing {
    /// The entry for `hash`, if remembered.
    #[must_use]
    pub fn get(&self, hash: u64) -> Option<&RecentId> {
        self.by_hash.get(&hash)
    }

    /// Remembers an entry, replacing one of the same hash.
    pub fn insert(&mut self, e: RecentId) {
        self.by_hash.insert(e.hash, e);
        self.order.push_back(e);
    }

    /// Forgets entries whose `t` is older than `horizon` measured from `clock`.
    pub fn prune(&mut self, clock: Millis, horizon: Millis) {
        while let Some(front) = self.order.front() {
            if clock.saturating_sub(front.t) < horizon {
                break;
            }
            let e = *front;
            self.order.pop_front();
            if self.by_hash.get(&e.hash) == Some(&e) {
                self.by_hash.remove(&e.hash);
            }
        }
    }

    /// The live entries, oldest first (a replaced entry appears once, at its latest place).
    pub fn entries(&self) -> impl Iterator<Item = &RecentId> {
        self.order.iter().filter(|e| self.by_hash.get(&e.hash) == Some(*e))
    }

    /// Number of live entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// No live entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// One entry of the recent-events ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEvent {
    /// Stream sequence.
    pub seq: u64,
    /// Effective time.
    pub t: Millis,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// A few short fields from which D1 builds its one-line message.
    pub summary: Vec<(String, String)>,
}

/// The last `RECENT_EVENTS_KEPT` events applied, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecentEvents(VecDeque<RecentEvent>);

impl RecentEvents {
    /// Appends an entry, dropping the oldest beyond `keep`.
    pub fn push(&mut self, e: RecentEvent, keep: usize) {
        self.0.push_back(e);
        while self.0.len() > keep {
            self.0.pop_front();
        }
    }

    /// Removes and returns the oldest entry when `keep` or more are held, so that `apply` can
    /// reuse its buffers for the next [`push`](Self::push) instead of allocating new ones.
    pub fn take_oldest_if_full(&mut self, keep: usize) -> Option<RecentEvent> {
        if self.0.len() >= keep { self.0.pop_front() } else { None }
    }

    /// Entries, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &RecentEvent> {
        self.0.iter()
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
