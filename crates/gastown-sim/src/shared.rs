//! What the executor, the containers and their reports share.

use std::sync::Arc;

use async_nats::jetstream;
use gastown_bus::Names;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::Commander;
use crate::config::SimConfig;
use crate::container::Containers;
use crate::scm::FakeScm;
use crate::stats::SimStats;

/// One simulator's runtime state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) js: jetstream::Context,
    pub(crate) names: Names,
    pub(crate) commander: Commander,
    pub(crate) scm: FakeScm,
    pub(crate) stats: Arc<SimStats>,
    pub(crate) config: SimConfig,
    pub(crate) containers: Containers,
    /// Container and report tasks (waited for at shutdown).
    pub(crate) tracker: TaskTracker,
    /// Cancelled at shutdown: every container falls silent.
    pub(crate) shutdown: CancellationToken,
}
