//! The worker's towns and its dispatcher: which towns this worker owns (by partition), the queue
//! that says which town's pass runs next, and the pass tasks.
//!
//! A town's runner sits in its slot while idle; the dispatcher takes it out for a pass (so the
//! pass owns it, no lock across an await) and puts it back after. Deliveries mark the slot stale
//! and the town dirty; a partition handed over drops its slots (a pass in flight finishes and its
//! runner is dropped, thanks to the slot's generation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gastown_bus::TownId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::metrics::ReconcilerMetrics;
use crate::scheduler::Queue;
use crate::town::{PassContext, PassOutcome, TownRunner, wall_ms};

/// First back-off after an unavailable bus; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

struct Slot {
    partition: u32,
    generation: u64,
    /// `None` while a pass runs.
    runner: Option<Box<TownRunner>>,
    /// Events were delivered since the runner last folded.
    stale: bool,
    failures: u32,
}

/// The towns of one worker.
pub(crate) struct Worker {
    pub(crate) ctx: Arc<PassContext>,
    pub(crate) queue: Queue<TownId>,
    slots: Mutex<HashMap<TownId, Slot>>,
    next_generation: Mutex<u64>,
}

impl Worker {
    pub(crate) fn new(ctx: Arc<PassContext>, coalesce: Duration, max_concurrent: usize) -> Self {
        Self {
            ctx,
            queue: Queue::new(coalesce, max_concurrent),
            slots: Mutex::new(HashMap::new()),
            next_generation: Mutex::new(0),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<TownId, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this worker holds `town`.
    pub(crate) fn owns(&self, town: &TownId) -> bool {
        self.slots().contains_key(town)
    }

    /// Takes a loaded town in (partition `p`) and runs its first pass at once (it publishes what
    /// was left unpublished and settles the town).
    pub(crate) fn adopt(&self, p: u32, runner: TownRunner) {
        let town = runner.town.clone();
        let generation = {
            let mut g = self.next_generation.lock().unwrap_or_else(PoisonError::into_inner);
            *g += 1;
            *g
        };
        let owned = {
            let mut slots = self.slots();
            slots.insert(
                town.clone(),
                Slot { partition: p, generation, runner: Some(Box::new(runner)), stale: false, failures: 0 },
            );
            slots.len()
        };
        ReconcilerMetrics::set(&self.ctx.metrics.towns_owned, owned as u64);
        self.queue.mark_dirty(&town);
    }

    /// Events of `town` were delivered: fold them at its next pass. False when the town is not held.
    pub(crate) fn delivered(&self, town: &TownId) -> bool {
        {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(town) else {
                return false;
            };
            slot.stale = true;
        }
        self.queue.mark_dirty(town);
        true
    }

    /// Gives partition `p` up: its towns are dropped (their idle runners returned, e.g. for a
    /// snapshot) and their invariant keys forgotten (I1: the new owner reports them once).
    pub(crate) fn release(&self, p: u32) -> Vec<TownRunner> {
        let (released, owned) = {
            let mut slots = self.slots();
            let towns: Vec<TownId> = slots.iter().filter(|(_, s)| s.partition == p).map(|(t, _)| t.clone()).collect();
            let mut released = Vec::new();
            for t in towns {
                if let Some(slot) = slots.remove(&t)
                    && let Some(r) = slot.runner
                {
                    released.push(*r);
                }
                self.queue.remove(&t);
            }
            (released, slots.len())
        };
        {
            let mut reporter = self.ctx.reporter.lock().unwrap_or_else(PoisonError::into_inner);
            for r in &released {
                reporter.forget_town(r.town.as_str());
            }
        }
        ReconcilerMetrics::set(&self.ctx.metrics.towns_owned, owned as u64);
        released
    }

    /// Takes every idle runner out (shutdown: snapshot them).
    pub(crate) fn drain(&self) -> Vec<TownRunner> {
        let mut slots = self.slots();
        slots.values_mut().filter_map(|s| s.runner.take()).map(|r| *r).collect()
    }

    /// The dispatcher: runs the due passes (at most the cap at once) until `stop`; the pass
    /// tasks are tracked by `tracker` so shutdown can wait for the passes in hand.
    pub(crate) async fn dispatch(self: Arc<Self>, tracker: TaskTracker, stop: CancellationToken) {
        loop {
            let town = tokio::select! {
                () = stop.cancelled() => return,
                town = self.queue.next() => town,
            };
            let taken = {
                let mut slots = self.slots();
                slots.get_mut(&town).and_then(|slot| {
                    let mut runner = slot.runner.take()?;
                    if std::mem::take(&mut slot.stale) {
                        runner.mark_stale();
                    }
                    Some((runner, slot.generation))
                })
            };
            let Some((mut runner, generation)) = taken else {
                // Not held (anymore), or its runner is busy loading: nothing to run.
                self.queue.finish(&town, None, None);
                continue;
            };
            let worker = Arc::clone(&self);
            tracker.spawn(async move {
                let outcome = runner.pass(&worker.ctx).await;
                worker.put_back(town, runner, generation, outcome);
            });
        }
    }

    /// Puts a runner back after its pass and tells the queue when to run it next.
    fn put_back(&self, town: TownId, runner: Box<TownRunner>, generation: u64, outcome: PassOutcome) {
        let now = Instant::now();
        let (next, not_before) = {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(&town).filter(|s| s.generation == generation) else {
                // Released (its queue entry went with it), perhaps adopted again since under a
                // new generation whose queue entry is not this pass's to finish.
                debug!(town = %town, "pass finished for a town handed over meanwhile");
                return;
            };
            slot.runner = Some(runner);
            match outcome {
                PassOutcome::Done(wake) => {
                    slot.failures = 0;
                    let next = wake.map(|at| {
                        let delay = u64::try_from(at.saturating_sub(wall_ms())).unwrap_or(0);
                        now + Duration::from_millis(delay)
                    });
                    (next, None)
                }
                PassOutcome::RetrySoon => {
                    slot.failures = 0;
                    (Some(now + TownRunner::retry_soon()), None)
                }
                PassOutcome::Unavailable => {
                    slot.failures = slot.failures.saturating_add(1);
                    let pause = BACKOFF_MIN.saturating_mul(1 << slot.failures.min(8)).min(BACKOFF_MAX);
                    (Some(now + pause), Some(now + pause))
                }
            }
        };
        self.queue.finish(&town, next, not_before);
    }

    /// At shutdown, after the passes in hand finished: publish what is outstanding and snapshot
    /// every held town.
    pub(crate) async fn flush_all(&self) {
        let runners = self.drain();
        let n = runners.len();
        for mut r in runners {
            r.shutdown(&self.ctx).await;
        }
        info!(towns = n, "towns flushed and snapshotted");
    }
}
