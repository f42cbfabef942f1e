//! A bounded cache of folded towns, for command validation (DOMAIN §E4, ARCHITECTURE §6).
//!
//! The command service validates optimistically: it reads the cached fold of a town, validates
//! against it and appends fenced at the fold's `last_seq`. Only a refused append (another writer
//! got there first) or a cache miss costs a read of the stream: the town's tail after the cached
//! `last_seq` is folded with [`gastown_core::apply_stored`]. After a successful append the new
//! event is folded into the cache when it lands right after the cached `last_seq` (a fenced
//! append proves it does); otherwise the entry is marked stale and the next use refolds the tail.
//!
//! The cache holds at most `capacity` towns; the least recently used one is evicted to make room.
//! States are shared as `Arc<TownState>` so a request validates without holding any lock; folding
//! an appended event copies the state only when another request still holds it.
//!
//! Snapshots: a miss folds from the town's first event today; `TownCache::base` is the seam
//! where a snapshot from `gastown-snapshots` will be loaded (ARCHITECTURE §9.4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use gastown_bus::{Bus, BusError, TownId};
use gastown_core::{Envelope, TownState, apply, apply_stored};

/// The default number of towns kept.
pub const DEFAULT_CACHE_TOWNS: usize = 1024;

/// A bounded, least-recently-used cache of folded towns.
#[derive(Debug)]
pub struct TownCache {
    /// The most towns kept (at least 1).
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// A logical clock of uses: the entry with the smallest `used` is the least recently used.
    tick: u64,
    towns: HashMap<String, Slot>,
}

#[derive(Debug)]
struct Slot {
    state: Arc<TownState>,
    /// The greatest sequence known to hold an event of the town (one this instance appended
    /// unfenced). When it is past `state.last_seq` the entry is stale: the next use refolds the
    /// tail first.
    known: u64,
    used: u64,
}

impl Slot {
    fn stale(&self) -> bool {
        self.known > self.state.last_seq
    }
}

impl Inner {
    fn touch(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }
}

impl TownCache {
    /// An empty cache holding at most `capacity` towns (0 is taken as 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// The number of towns cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().towns.len()
    }

    /// Whether no town is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached fold of `town`, without reading the stream (`None` when absent or stale).
    #[must_use]
    pub fn peek(&self, town: &TownId) -> Option<Arc<TownState>> {
        let g = self.lock();
        g.towns.get(town.as_str()).filter(|s| !s.stale()).map(|s| Arc::clone(&s.state))
    }

    /// The fold of `town` to validate against: the cached one, or (on a miss or a stale entry)
    /// the cached one brought up to date from the stream. A town without events folds to
    /// `TownState::new(town)`.
    ///
    /// # Errors
    /// Reading the stream failed (`Unavailable` when the broker is unreachable).
    pub async fn get(&self, bus: &Bus, town: &TownId) -> Result<Arc<TownState>, BusError> {
        match self.hit(town) {
            Some(state) => Ok(state),
            None => self.refresh(bus, town).await,
        }
    }

    /// The cached fold of `town` when it is fresh, marked as used.
    fn hit(&self, town: &TownId) -> Option<Arc<TownState>> {
        let mut g = self.lock();
        let tick = g.touch();
        let slot = g.towns.get_mut(town.as_str()).filter(|s| !s.stale())?;
        slot.used = tick;
        Some(Arc::clone(&slot.state))
    }

    /// Folds the town's events stored after the cached fold (or from the base, on a miss) and
    /// caches the result: what a refused fenced append calls before validating again.
    ///
    /// # Errors
    /// Reading the stream failed.
    pub async fn refresh(&self, bus: &Bus, town: &TownId) -> Result<Arc<TownState>, BusError> {
        let cached = self.lock().towns.get(town.as_str()).map(|s| Arc::clone(&s.state));
        let base = match cached {
            Some(state) => state,
            None => Arc::new(self.base(bus, town).await?),
        };
        let tail = bus.town_events(town, base.last_seq).await?;
        let state = if tail.is_empty() {
            base
        } else {
            let mut state = Arc::unwrap_or_clone(base);
            for (seq, stored) in &tail {
                if *seq > state.last_seq {
                    apply_stored(&mut state, *seq, stored);
                }
            }
            Arc::new(state)
        };
        Ok(self.store(town, state))
    }

    /// The state a fold of `town` starts from.
    ///
    /// Today an empty town (the fold starts at the first event). This is the seam for loading the
    /// latest usable snapshot of `gastown-snapshots` (ARCHITECTURE §9.4): return it here and the
    /// tail after its `last_seq` is folded on top.
    #[expect(clippy::unused_async, reason = "the seam for loading a snapshot, which reads the bus")]
    async fn base(&self, _bus: &Bus, town: &TownId) -> Result<TownState, BusError> {
        Ok(TownState::new(town.as_str()))
    }

    /// Records an event this instance appended at `seq`. `fence` is the sequence the append was
    /// fenced at, if it was: the event then directly follows that sequence in the town (the
    /// broker checked that the town's last event was there), and is folded into the cache when
    /// the cached fold ends there. Otherwise (unfenced, or the cache moved meanwhile) the entry
    /// becomes stale unless it already covers `seq`.
    ///
    /// Call it after dropping the `Arc` the request validated against, so that folding does not
    /// copy the state.
    pub fn record_append(&self, town: &TownId, fence: Option<u64>, seq: u64, envelope: &Envelope) {
        let mut g = self.lock();
        let Some(slot) = g.towns.get_mut(town.as_str()) else { return };
        let last = slot.state.last_seq;
        if last >= seq {
            return;
        }
        if fence == Some(last) {
            // Copies the state only when a concurrent request of this town still holds it.
            apply(Arc::make_mut(&mut slot.state), seq, envelope);
        } else {
            slot.known = slot.known.max(seq);
        }
    }

    /// Records that the town holds an event after `seq` (a fenced append at `seq` was refused):
    /// if the cached fold ends there, the next use refolds the tail.
    pub fn record_refusal(&self, town: &TownId, seq: u64) {
        if let Some(slot) = self.lock().towns.get_mut(town.as_str()) {
            slot.known = slot.known.max(seq.saturating_add(1));
        }
    }

    /// Whether the entry of `town` is stale (its next use refolds the tail).
    #[must_use]
    pub fn is_stale(&self, town: &TownId) -> bool {
        self.lock().towns.get(town.as_str()).is_some_and(Slot::stale)
    }

    /// Caches `state` unless the cache already holds a fold further along (two concurrent
    /// refolds keep the longer); evicts the least recently used town when full. Returns the fold
    /// now cached.
    fn store(&self, town: &TownId, state: Arc<TownState>) -> Arc<TownState> {
        let mut g = self.lock();
        let tick = g.touch();
        if let Some(slot) = g.towns.get_mut(town.as_str()) {
            slot.used = tick;
            if slot.state.last_seq < state.last_seq {
                slot.state = state;
            }
            return Arc::clone(&slot.state);
        }
        if g.towns.len() >= self.capacity
            && let Some(oldest) = g.towns.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone())
        {
            g.towns.remove(&oldest);
        }
        g.towns.insert(town.as_str().to_owned(), Slot { state: Arc::clone(&state), known: 0, used: tick });
        state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map half-updated in a way that matters
        // (every update is a single insert/replace), so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use gastown_core::testing::{T0, TOWN, bead_created, rig_added};

    use super::*;

    fn town(id: &str) -> TownId {
        TownId::try_from(id).unwrap()
    }

    fn env(e: gastown_core::testing::Ev, id: &str) -> Envelope {
        Envelope::new(id, e.at.unwrap_or(T0), e.source, e.event)
    }

    fn folded(id: &str, last_seq: u64) -> Arc<TownState> {
        let mut s = TownState::new(id);
        s.last_seq = last_seq;
        Arc::new(s)
    }

    #[test]
    fn the_least_recently_used_town_is_evicted() {
        let c = TownCache::new(2);
        c.store(&town("a"), folded("a", 1));
        c.store(&town("b"), folded("b", 1));
        assert!(c.hit(&town("a")).is_some());
        c.store(&town("c"), folded("c", 1));
        assert_eq!(c.len(), 2);
        assert!(c.peek(&town("a")).is_some() && c.peek(&town("c")).is_some());
        assert!(c.peek(&town("b")).is_none(), "b was used least recently");
    }

    #[test]
    fn a_longer_fold_wins_over_a_shorter_one() {
        let c = TownCache::new(4);
        c.store(&town(TOWN), folded(TOWN, 7));
        assert_eq!(c.store(&town(TOWN), folded(TOWN, 5)).last_seq, 7);
        assert_eq!(c.store(&town(TOWN), folded(TOWN, 9)).last_seq, 9);
    }

    #[test]
    fn a_fenced_append_right_after_the_fold_is_folded_in() {
        let c = TownCache::new(4);
        let t = town(TOWN);
        c.store(&t, folded(TOWN, 3));
        c.record_append(&t, Some(3), 10, &env(rig_added("r1"), "x1"));
        let s = c.peek(&t).unwrap();
        assert_eq!(s.last_seq, 10);
        assert!(s.rigs.contains_key("r1"));
        assert!(!c.is_stale(&t));
    }

    #[test]
    fn an_append_that_may_not_follow_the_fold_makes_it_stale() {
        let c = TownCache::new(4);
        let t = town(TOWN);
        c.store(&t, folded(TOWN, 3));
        // Unfenced: another event of the town may sit between 3 and 10.
        c.record_append(&t, None, 10, &env(bead_created("b1", "r1"), "x2"));
        assert!(c.is_stale(&t) && c.hit(&t).is_none(), "the next use refolds");
        // A refold that reaches 10 makes it fresh again; one that stops short does not.
        c.store(&t, folded(TOWN, 8));
        assert!(c.is_stale(&t));
        c.store(&t, folded(TOWN, 10));
        assert!(!c.is_stale(&t));
        // Fenced at an older sequence than the fold: the cache moved on; already covered.
        c.record_append(&t, Some(4), 9, &env(bead_created("b2", "r1"), "x3"));
        assert_eq!(c.peek(&t).unwrap().last_seq, 10);
    }

    #[test]
    fn folding_an_appended_event_copies_only_a_shared_state() {
        let c = TownCache::new(4);
        let t = town(TOWN);
        c.store(&t, folded(TOWN, 1));
        let held = c.hit(&t).unwrap();
        c.record_append(&t, Some(1), 2, &env(rig_added("r1"), "x4"));
        assert_eq!((held.last_seq, c.peek(&t).unwrap().last_seq), (1, 2), "a request's view does not change under it");
    }
}
