//! The per-town queue (ARCHITECTURE §6 "passes, not a poll"; STYLE §5): a dirty mark per town, at
//! most one pass per town at a time, a burst of events costing one pass (marks coalesce over
//! PASS_COALESCE), wake-ups at the town's `next_wakeup` (no fixed poll), a back-off after an
//! unavailable bus, and a global cap on concurrent passes.
//!
//! [`Scheduler`] is plain data driven by instants, so it is tested without I/O;
//! [`Queue`] wraps it for tasks: marks from any task, and [`Queue::next`] sleeping until the
//! earliest due town or a notification (the shape of mini-redis' `purge_expired_tasks`).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What the queue knows of one key.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// New events arrived: run a pass at this instant (the first mark of a burst plus the
    /// coalescing delay).
    dirty_at: Option<Instant>,
    /// The key's next deadline (`next_wakeup` of its last pass).
    deadline: Option<Instant>,
    /// No pass before this instant (back-off after an unavailable bus).
    not_before: Option<Instant>,
    /// A pass of this key is running.
    running: bool,
    /// The instant under which the key sits in the queue, if it does.
    queued: Option<Instant>,
}

impl Entry {
    fn due(&self) -> Option<Instant> {
        let due = match (self.dirty_at, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        Some(self.not_before.map_or(due, |nb| due.max(nb)))
    }
}

/// The per-key queue: which key runs next and when.
#[derive(Debug)]
pub(crate) struct Scheduler<K> {
    coalesce: Duration,
    cap: usize,
    entries: HashMap<K, Entry>,
    /// Due instants of the keys not running.
    queue: BTreeSet<(Instant, K)>,
    running: usize,
}

impl<K: Clone + Eq + Hash + Ord> Scheduler<K> {
    /// An empty queue: marks coalesce over `coalesce`; at most `cap` (at least 1) passes at once.
    pub(crate) fn new(coalesce: Duration, cap: usize) -> Self {
        Self { coalesce, cap: cap.max(1), entries: HashMap::new(), queue: BTreeSet::new(), running: 0 }
    }

    /// New events for `key` at `now`: a pass at `now + coalesce`, unless one is already due sooner.
    pub(crate) fn mark_dirty(&mut self, key: &K, now: Instant) {
        let at = now + self.coalesce;
        let e = self.entries.entry(key.clone()).or_default();
        e.dirty_at = Some(e.dirty_at.map_or(at, |d| d.min(at)));
        self.requeue(key);
    }

    /// A pass of `key` is wanted at `at` (a deadline), unless one is already due sooner.
    #[cfg(test)]
    pub(crate) fn wake_at(&mut self, key: &K, at: Instant) {
        let e = self.entries.entry(key.clone()).or_default();
        e.deadline = Some(e.deadline.map_or(at, |d| d.min(at)));
        self.requeue(key);
    }

    /// Forgets `key` (its town was handed over). A running pass of it finishes unseen.
    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(e) = self.entries.remove(key) {
            if let Some(q) = e.queued {
                self.queue.remove(&(q, key.clone()));
            }
            if e.running {
                self.running = self.running.saturating_sub(1);
            }
        }
    }

    /// Takes the earliest key due at `now`, if the cap allows another pass; the key is then
    /// running until [`Scheduler::finish`], and its marks are consumed by that pass.
    pub(crate) fn pop_ready(&mut self, now: Instant) -> Option<K> {
        if self.running >= self.cap {
            return None;
        }
        let (due, key) = self.queue.first().cloned()?;
        if due > now {
            return None;
        }
        self.queue.remove(&(due, key.clone()));
        let e = self.entries.get_mut(&key)?;
        e.queued = None;
        e.running = true;
        e.dirty_at = None;
        e.deadline = None;
        e.not_before = None;
        self.running += 1;
        Some(key)
    }

    /// The pass of `key` ended: its next deadline is `next` (marks made during the pass stay).
    /// `not_before` holds the next pass back (a back-off).
    pub(crate) fn finish(&mut self, key: &K, next: Option<Instant>, not_before: Option<Instant>) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if e.running {
            e.running = false;
            self.running = self.running.saturating_sub(1);
        }
        e.deadline = match (e.deadline, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        e.not_before = not_before;
        self.requeue(key);
    }

    /// When the next pass is due, if the cap allows one; `None` = wait for a mark or a finish.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.running >= self.cap {
            return None;
        }
        self.queue.first().map(|(at, _)| *at)
    }

    /// Passes running now.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    fn requeue(&mut self, key: &K) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(q) = e.queued.take() {
            self.queue.remove(&(q, key.clone()));
        }
        if e.running {
            return;
        }
        if let Some(due) = e.due() {
            e.queued = Some(due);
            self.queue.insert((due, key.clone()));
        }
    }
}

/// A [`Scheduler`] shared by tasks: the partition tasks mark towns, the dispatcher waits in
/// [`Queue::next`], pass tasks report with [`Queue::finish`].
#[derive(Debug)]
pub(crate) struct Queue<K> {
    inner: Mutex<Scheduler<K>>,
    notify: Notify,
}

impl<K: Clone + Eq + Hash + Ord> Queue<K> {
    pub(crate) fn new(coalesce: Duration, cap: usize) -> Self {
        Self { inner: Mutex::new(Scheduler::new(coalesce, cap)), notify: Notify::new() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Scheduler<K>) -> T) -> T {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut s)
    }

    /// See [`Scheduler::mark_dirty`].
    pub(crate) fn mark_dirty(&self, key: &K) {
        self.with(|s| s.mark_dirty(key, Instant::now()));
        self.notify.notify_one();
    }

    /// See [`Scheduler::wake_at`].
    #[cfg(test)]
    pub(crate) fn wake_at(&self, key: &K, at: Instant) {
        self.with(|s| s.wake_at(key, at));
        self.notify.notify_one();
    }

    /// See [`Scheduler::finish`].
    pub(crate) fn finish(&self, key: &K, next: Option<Instant>, not_before: Option<Instant>) {
        self.with(|s| s.finish(key, next, not_before));
        self.notify.notify_one();
    }

    /// See [`Scheduler::remove`].
    pub(crate) fn remove(&self, key: &K) {
        self.with(|s| s.remove(key));
        self.notify.notify_one();
    }

    /// Waits until a key is due (and the cap allows its pass), then returns it as running.
    /// Cancel-safe: a key is taken only when returned.
    pub(crate) async fn next(&self) -> K {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (ready, due) = self.with(|s| {
                let now = Instant::now();
                (s.pop_ready(now), s.next_due())
            });
            if let Some(key) = ready {
                return key;
            }
            match due {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const COALESCE: Duration = Duration::from_millis(20);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn scheduler_should_coalesce_a_burst_into_one_pass() {
        let mut s = Scheduler::new(COALESCE, 4);
        let t0 = Instant::now();
        for i in 0..50 {
            s.mark_dirty(&"t1", t0 + ms(i / 10));
        }
        assert_eq!(s.pop_ready(t0 + ms(19)), None, "nothing before the coalescing delay");
        assert_eq!(s.next_due(), Some(t0 + COALESCE));
        assert_eq!(s.pop_ready(t0 + COALESCE), Some("t1"));
        assert_eq!(s.pop_ready(t0 + ms(100)), None, "one pass for the whole burst");
    }

    #[tokio::test(start_paused = true)]
    async fn runner_should_never_run_two_passes_of_one_town_at_once() {
        let mut s = Scheduler::new(COALESCE, 4);
        let t0 = Instant::now();
        s.mark_dirty(&"t1", t0);
        assert_eq!(s.pop_ready(t0 + COALESCE), Some("t1"));
        s.mark_dirty(&"t1", t0 + ms(30));
        assert_eq!(s.pop_ready(t0 + ms(100)), None, "t1 is running");
        s.finish(&"t1", None, None);
        assert_eq!(s.pop_ready(t0 + ms(100)), Some("t1"), "the mark made during the pass runs after it");
    }

    #[tokio::test(start_paused = true)]
    async fn scheduler_should_wake_a_town_at_its_deadline_and_not_before() {
        let mut s = Scheduler::new(COALESCE, 4);
        let t0 = Instant::now();
        s.mark_dirty(&"t1", t0);
        assert_eq!(s.pop_ready(t0 + COALESCE), Some("t1"));
        s.finish(&"t1", Some(t0 + ms(5000)), None);
        assert_eq!(s.next_due(), Some(t0 + ms(5000)));
        assert_eq!(s.pop_ready(t0 + ms(4999)), None);
        assert_eq!(s.pop_ready(t0 + ms(5000)), Some("t1"));
        s.finish(&"t1", None, None);
        assert_eq!(s.next_due(), None, "an idle town costs nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn scheduler_should_cap_concurrent_passes_and_back_off() {
        let mut s = Scheduler::new(COALESCE, 2);
        let t0 = Instant::now();
        for t in ["a", "b", "c"] {
            s.mark_dirty(&t, t0);
        }
        let now = t0 + COALESCE;
        assert_eq!(s.pop_ready(now), Some("a"));
        assert_eq!(s.pop_ready(now), Some("b"));
        assert_eq!(s.pop_ready(now), None, "cap reached");
        assert_eq!(s.next_due(), None);
        s.finish(&"a", None, Some(now + ms(500)));
        assert_eq!(s.pop_ready(now), Some("c"));
        s.mark_dirty(&"a", now);
        s.finish(&"c", None, None);
        assert_eq!(s.pop_ready(now + ms(100)), None, "a backs off despite its mark");
        assert_eq!(s.pop_ready(now + ms(500)), Some("a"));
        s.remove(&"b");
        assert_eq!(s.running(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_should_sleep_until_the_next_deadline_or_a_mark() {
        let q = Arc::new(Queue::new(COALESCE, 4));
        let t0 = Instant::now();
        q.wake_at(&"t1", t0 + ms(2000));
        let next = tokio::spawn({
            let q = Arc::clone(&q);
            async move { (q.next().await, Instant::now()) }
        });
        let (key, at) = next.await.unwrap();
        assert_eq!(key, "t1");
        assert_eq!(at, t0 + ms(2000), "woken exactly at the deadline");
        q.finish(&"t1", None, None);

        let waiter = tokio::spawn({
            let q = Arc::clone(&q);
            async move { (q.next().await, Instant::now()) }
        });
        tokio::time::advance(ms(1000)).await;
        assert!(!waiter.is_finished(), "no fixed poll: nothing is due");
        let marked = Instant::now();
        q.mark_dirty(&"t2");
        let (key, at) = waiter.await.unwrap();
        assert_eq!(key, "t2");
        assert_eq!(at, marked + COALESCE);
    }
}
