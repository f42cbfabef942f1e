//! Ownership of the EVENTS partitions (ARCHITECTURE §9.3): the member joins the `reconciler`
//! shares and holds every partition through [`gastown_bus::lease::Lease`] (the owner/standby
//! discipline shared with ingest's HB partitions, decision 0007); this module is the
//! reconciler's [`PartitionHandler`].
//!
//! Acquiring a partition: list its towns (stream info with subjects `<prefix>.evt.<p>.*`), load
//! each (snapshot + tail, bounded concurrency), queue the decisions after `published_through` for
//! re-publication, and run each town's first pass. A delivery marks its town stale and dirty
//! (a town not held yet is loaded first) and is acked: the pass folds from the stream itself,
//! which is the truth, so the ack only steers redelivery. Giving a partition up releases its
//! towns.

use std::sync::Arc;

use async_nats::jetstream;
use futures::{StreamExt, TryStreamExt};
use gastown_bus::lease::{Acquisition, Disposition, Flow, PartitionHandler, retry_when};
use gastown_bus::{BusError, ErrorKind, TownId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::ReconcilerError;
use crate::metrics::ReconcilerMetrics;
use crate::town::TownRunner;
use crate::worker::Worker;

/// The membership role of reconciler workers.
pub const ROLE: &str = "reconciler";

/// The EVENTS partitions as handled by this worker (one `Lease` each).
pub(crate) struct EventsPartitions {
    pub(crate) worker: Arc<Worker>,
    /// Towns loaded at once when a partition is acquired.
    pub(crate) takeover_concurrency: usize,
    pub(crate) shutdown: CancellationToken,
}

impl PartitionHandler for EventsPartitions {
    type Error = ReconcilerError;

    async fn acquired(&self, p: u32, how: Acquisition) -> Result<Flow, ReconcilerError> {
        if how == Acquisition::TakeOver {
            ReconcilerMetrics::inc(&self.worker.ctx.metrics.handovers);
        }
        self.acquire(p).await
    }

    async fn message(&self, p: u32, msg: &jetstream::Message) -> Result<Disposition, ReconcilerError> {
        self.handle(p, msg).await
    }

    fn released(&self, p: u32) {
        let towns = self.worker.release(p);
        ReconcilerMetrics::inc(&self.worker.ctx.metrics.handovers);
        info!(partition = p, towns = towns.len(), "events partition given up");
    }
}

impl EventsPartitions {
    /// Loads every town of the partition ([`Flow::Stop`] on shutdown).
    async fn acquire(&self, p: u32) -> Result<Flow, ReconcilerError> {
        let ctx = Arc::clone(&self.worker.ctx);
        let filter = ctx.bus.names.evt_partition_filter(p);
        let listed = retry(&self.shutdown, "list the partition's towns", || list_towns(&ctx.bus, filter.clone())).await?;
        let Some(subjects) = listed else {
            return Ok(Flow::Stop);
        };
        let towns: Vec<TownId> = subjects
            .iter()
            .filter_map(|s| ctx.bus.names.parse_evt_stored(s))
            .filter(|(q, _)| *q == p)
            .map(|(_, t)| t)
            .filter(|t| !self.worker.owns(t))
            .collect();
        let n = towns.len();
        let concurrency = self.takeover_concurrency.max(1);
        let shutdown = self.shutdown.clone();
        let mut loads = futures::stream::iter(towns.into_iter().map(|town| {
            let ctx = Arc::clone(&ctx);
            let shutdown = shutdown.clone();
            async move { retry(&shutdown, "load a town", || TownRunner::load(&ctx, town.clone())).await }
        }))
        .buffer_unordered(concurrency);
        while let Some(loaded) = loads.next().await {
            match loaded? {
                Some(runner) => self.worker.adopt(p, runner),
                None => return Ok(Flow::Stop),
            }
        }
        info!(partition = p, towns = n, "events partition acquired");
        Ok(Flow::Continue)
    }

    /// Routes one delivery to its town (loading a town not held yet): acked once routed.
    async fn handle(&self, p: u32, msg: &jetstream::Message) -> Result<Disposition, ReconcilerError> {
        let Some((_, town)) = self.worker.ctx.bus.names.parse_evt_stored(msg.subject.as_str()) else {
            debug!(subject = %msg.subject, "event on a subject without a valid town, acked");
            return Ok(Disposition::Ack);
        };
        if !self.worker.delivered(&town) {
            let ctx = Arc::clone(&self.worker.ctx);
            let Some(runner) = retry(&self.shutdown, "load a town", || TownRunner::load(&ctx, town.clone())).await? else {
                return Ok(Disposition::Stop);
            };
            debug!(town = %town, partition = p, "new town");
            self.worker.adopt(p, runner);
        }
        Ok(Disposition::Ack)
    }
}

/// The stored subjects of a partition (one per town).
async fn list_towns(bus: &gastown_bus::Bus, filter: String) -> Result<Vec<String>, BusError> {
    let stream = bus.js.get_stream_no_info(bus.names.events_stream()).await?;
    let subjects = stream
        .info_with_subjects(filter)
        .await
        .map_err(|e| BusError::with_source(ErrorKind::Unavailable, "list the towns of a partition", e))?;
    subjects
        .map_ok(|(subject, _)| subject)
        .try_collect()
        .await
        .map_err(|e| BusError::with_source(ErrorKind::Unavailable, "list the towns of a partition", e))
}

/// Runs `op` until it succeeds, retrying with backoff while the bus is unavailable; `Ok(None)` on
/// shutdown.
pub(crate) async fn retry<T, F, Fut>(shutdown: &CancellationToken, what: &str, op: F) -> Result<Option<T>, ReconcilerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BusError>>,
{
    let retryable = |err: &BusError| matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Other | ErrorKind::Conflict);
    Ok(retry_when(shutdown, what, retryable, op).await?)
}
