//! Holding a partition as owner or standby (ARCHITECTURE §9.3, decision 0007): the loop both
//! ingest (HB partitions) and the reconciler (EVENTS partitions) run once per partition, with the
//! role-specific work behind a [`PartitionHandler`].
//!
//! Each partition has one durable pull consumer per role ([`partition_consumer`], pinned priority
//! group). The partition's rendezvous owner ([`Membership::preferred`]) pulls it at once. Another
//! member only watches it as a standby: every `standby_delay` it reads the consumer, and when
//! messages are waiting and none were delivered since its last look (the owner is dead or stuck
//! and the membership has not noticed yet), it pulls the partition itself until it stays idle for
//! a standby delay or the membership changes. A pinned consumer pins whichever puller gets the
//! first message, so a standby must not pull while the owner lives, or the shares would be
//! random. A member that stops being the owner finishes the messages already received and stays
//! off the partition, so its pin expires (`priority_timeout`, shorter than `standby_delay`) and
//! the new owner takes over. Pinning is not exclusivity: handlers must make an overlap harmless.
//!
//! # The handler's part
//! - [`PartitionHandler::acquired`] runs before the first message is handled: when an owner
//!   starts pulling, when a standby is promoted to owner, and when a standby receives its first
//!   message (it then holds the pin: [`Acquisition::TakeOver`]). It runs again only after the
//!   partition was released.
//! - [`PartitionHandler::message`] handles one message; [`Disposition::Ack`] acks it (a failed
//!   ack only means a redelivery), [`Disposition::Stop`] leaves it unacked and ends the loop.
//! - [`PartitionHandler::released`] runs when an acquired partition is given up.
//!
//! On shutdown the messages received but not handled are handed back (nak), so the next puller
//! gets them without waiting for the ack timeout.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{Consumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{BusError, ErrorKind};
use crate::names::Names;
use crate::setup::Bus;
use crate::shares::{Membership, SHARE_GROUP, partition_consumer};

/// Messages pulled per request (a pull expires well inside the pin timeout).
const PULL_BATCH: usize = 256;
/// First pause before retrying an unavailable bus.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between two retries of an unavailable bus.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Whether a step of a handler may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Shutdown: stop here.
    Stop,
}

/// What to do with a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (or deliberately dropped): ack it.
    Ack,
    /// Shutdown interrupted it: leave it unacked (it is handed back) and stop.
    Stop,
}

/// How the member came to hold a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// As its rendezvous owner (at start, or a standby promoted by a membership change).
    Owner,
    /// As a standby that received a message: the owner was silent, this member now holds the pin.
    TakeOver,
}

/// The role-specific part of holding a partition.
pub trait PartitionHandler: Send + Sync + 'static {
    /// The role's error; a bus failure that retrying cannot fix becomes one.
    type Error: From<BusError> + Send;

    /// Prepares partition `p` before its messages are handled (ingest's start-up check, the
    /// reconciler's loading of towns). [`Flow::Stop`] on shutdown.
    fn acquired(&self, p: u32, how: Acquisition) -> impl Future<Output = Result<Flow, Self::Error>> + Send;

    /// Handles one message of partition `p`, in stream order.
    fn message(&self, p: u32, msg: &jetstream::Message) -> impl Future<Output = Result<Disposition, Self::Error>> + Send;

    /// Partition `p`, acquired before, is given up (no longer owned, or a standby's idle end).
    fn released(&self, p: u32);
}

/// One partition of a role, as held by this member: run it with [`Lease::run`].
pub struct Lease<H> {
    /// The bus.
    pub bus: Arc<Bus>,
    /// The role's membership (its [`ShareConfig`](crate::ShareConfig) gives the role, the standby
    /// delay and the pin timeout).
    pub membership: Arc<Membership>,
    /// The role-specific work.
    pub handler: Arc<H>,
    /// The partitioned stream (e.g. `GASTOWN_HB`).
    pub stream: String,
    /// The partition.
    pub p: u32,
    /// The partition's stored-subject filter (e.g. `gastown.hb.<p>.>`).
    pub filter: String,
}

/// Why a pull session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// Shutdown.
    Stop,
    /// The member gives the partition up: stay off it for the standby delay.
    Release,
    /// The pull stream broke: open a new one.
    Reopen,
}

/// What a standby watch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standby {
    /// Shutdown.
    Stop,
    /// The member became the partition's owner.
    Owner,
    /// The partition has messages nobody pulls: take it over.
    TakeOver,
}

impl<H> Lease<H> {
    /// One lease for every partition of the membership's role, on `stream`, each filtered on
    /// `filter(names, p)` (e.g. [`Names::hb_partition_filter`]).
    #[must_use]
    pub fn every_partition(
        bus: &Arc<Bus>,
        membership: &Arc<Membership>,
        handler: &Arc<H>,
        stream: &str,
        filter: impl Fn(&Names, u32) -> String,
    ) -> Vec<Lease<H>> {
        (0..membership.config().partitions)
            .map(|p| Lease {
                bus: Arc::clone(bus),
                membership: Arc::clone(membership),
                handler: Arc::clone(handler),
                stream: stream.to_owned(),
                p,
                filter: filter(&bus.names, p),
            })
            .collect()
    }
}

impl<H: PartitionHandler> Lease<H> {
    /// Holds the partition until `shutdown`: pulls it as its owner, watches it as a standby, and
    /// takes it over when its owner is silent. Returns when the message in hand is finished.
    ///
    /// # Errors
    /// The handler's errors, and a bus failure that retrying cannot fix (a missing stream, a
    /// mismatched consumer).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), H::Error> {
        let mut held = Held { lease: &self, shutdown: &shutdown, changes: self.membership.changes(), acquired: false };
        let mut backoff = Backoff::new();
        let mut consumer: Option<Consumer<pull::Config>> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let c = match &consumer {
                Some(c) => c.clone(),
                None => {
                    let cfg = self.membership.config();
                    let opened = retry_when(&shutdown, "open the partition consumer", transient, || {
                        partition_consumer(&self.bus, &self.stream, &cfg.role, self.p, self.filter.clone(), cfg.priority_timeout)
                    })
                    .await?;
                    let Some(c) = opened else {
                        return Ok(());
                    };
                    consumer = Some(c.clone());
                    c
                }
            };
            let end = if self.membership.preferred(self.p) {
                held.session(&c, true).await?
            } else {
                match held.standby_watch(&c).await {
                    Standby::Stop => return Ok(()),
                    Standby::Owner => continue,
                    Standby::TakeOver => held.session(&c, false).await?,
                }
            };
            match end {
                SessionEnd::Stop => return Ok(()),
                SessionEnd::Release => {
                    if held.acquired {
                        self.handler.released(self.p);
                    }
                    debug!(role = %self.membership.config().role, partition = self.p, "partition released");
                    held.acquired = false;
                    backoff = Backoff::new();
                }
                SessionEnd::Reopen => {
                    consumer = None;
                    if !backoff.wait(&shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The state of one [`Lease::run`].
struct Held<'a, H> {
    lease: &'a Lease<H>,
    shutdown: &'a CancellationToken,
    changes: watch::Receiver<u64>,
    /// [`PartitionHandler::acquired`] ran since the member last gave the partition up.
    acquired: bool,
}

impl<H: PartitionHandler> Held<'_, H> {
    fn role(&self) -> &str {
        &self.lease.membership.config().role
    }

    fn preferred(&self) -> bool {
        self.lease.membership.preferred(self.lease.p)
    }

    /// Runs the handler's acquisition unless it already ran; [`Flow::Stop`] on shutdown.
    async fn acquire(&mut self, how: Acquisition) -> Result<Flow, H::Error> {
        if self.acquired {
            return Ok(Flow::Continue);
        }
        if how == Acquisition::TakeOver {
            info!(role = %self.role(), partition = self.lease.p, "partition taken over as a standby");
        }
        let flow = self.lease.handler.acquired(self.lease.p, how).await?;
        self.acquired = flow == Flow::Continue;
        Ok(flow)
    }

    /// Stays off a partition this member does not own: every standby delay, looks whether its
    /// consumer has messages waiting that nobody takes (the delivered sequence did not move), and
    /// then takes it over; returns at once when the member becomes the owner.
    async fn standby_watch(&mut self, consumer: &Consumer<pull::Config>) -> Standby {
        let p = self.lease.p;
        let mut last_delivered = None;
        let mut membership_alive = true;
        let mut tick = tokio::time::interval(self.lease.membership.config().standby_delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Standby::Stop,
                changed = self.changes.changed(), if membership_alive => {
                    if changed.is_err() {
                        membership_alive = false;
                    } else if self.preferred() {
                        return Standby::Owner;
                    }
                }
                _ = tick.tick() => match consumer.get_info().await {
                    Ok(info) => {
                        let delivered = info.delivered.stream_sequence;
                        if info.num_pending > 0 && last_delivered == Some(delivered) {
                            warn!(role = %self.role(), partition = p, pending = info.num_pending, "partition not pulled by its owner, taking it over");
                            return Standby::TakeOver;
                        }
                        last_delivered = Some(delivered);
                    }
                    Err(err) => debug!(role = %self.role(), partition = p, cause = %err, "standby cannot read the partition consumer"),
                },
            }
        }
    }

    /// Pulls the partition until shutdown, a release or a broken stream. An owner session starts
    /// with the acquisition; a standby session runs it when it first receives a message (it then
    /// holds the pin) and gives the partition back after a standby delay without messages or at
    /// the next membership change.
    async fn session(&mut self, consumer: &Consumer<pull::Config>, mut owner: bool) -> Result<SessionEnd, H::Error> {
        let p = self.lease.p;
        let cfg = self.lease.membership.config();
        if owner && self.acquire(Acquisition::Owner).await? == Flow::Stop {
            return Ok(SessionEnd::Stop);
        }
        let pull_expiry = (cfg.priority_timeout / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let opened = consumer
            .stream()
            .group(SHARE_GROUP)
            .max_messages_per_batch(PULL_BATCH)
            .expires(pull_expiry)
            .heartbeat(pull_expiry / 2)
            .messages()
            .await;
        let mut messages = match opened {
            Ok(m) => m,
            Err(err) => {
                warn!(role = %cfg.role, partition = p, cause = %err, "cannot pull the partition");
                return Ok(SessionEnd::Reopen);
            }
        };
        let mut membership_alive = true;
        let idle = tokio::time::sleep(cfg.standby_delay);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    give_back(&mut messages).await;
                    return Ok(SessionEnd::Stop);
                }
                changed = self.changes.changed(), if membership_alive => {
                    if changed.is_err() {
                        membership_alive = false;
                        continue;
                    }
                    if !self.preferred() {
                        // A former owner, or a standby that lets the new owner take the pin:
                        // finish what was already received, then stop pulling.
                        return self.finish_buffered(&mut messages).await;
                    }
                    if !owner {
                        owner = true;
                        if self.acquire(Acquisition::Owner).await? == Flow::Stop {
                            return Ok(SessionEnd::Stop);
                        }
                    }
                }
                () = &mut idle, if !owner => return self.finish_buffered(&mut messages).await,
                next = messages.next() => match next {
                    None => return Ok(SessionEnd::Reopen),
                    Some(Err(err)) => {
                        warn!(role = %cfg.role, partition = p, cause = %err, "partition pull failed");
                        return Ok(SessionEnd::Reopen);
                    }
                    Some(Ok(msg)) => {
                        // A standby that received a message holds the pin: it took over.
                        if self.acquire(Acquisition::TakeOver).await? == Flow::Stop
                            || self.handle(&msg).await? == Flow::Stop
                        {
                            give_back(&mut messages).await;
                            return Ok(SessionEnd::Stop);
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + cfg.standby_delay);
                    }
                },
            }
        }
    }

    /// Handles the messages already received by the client before the partition is given up (so
    /// they are not left to the ack timeout).
    async fn finish_buffered(&mut self, messages: &mut pull::Stream) -> Result<SessionEnd, H::Error> {
        while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
            if self.handle(&msg).await? == Flow::Stop {
                give_back(messages).await;
                return Ok(SessionEnd::Stop);
            }
        }
        Ok(SessionEnd::Release)
    }

    /// Hands one message to the handler and acks it when told to.
    async fn handle(&self, msg: &jetstream::Message) -> Result<Flow, H::Error> {
        match self.lease.handler.message(self.lease.p, msg).await? {
            Disposition::Ack => {
                if let Err(err) = msg.ack().await {
                    warn!(role = %self.role(), partition = self.lease.p, cause = %err, "ack failed; the message will be redelivered");
                }
                Ok(Flow::Continue)
            }
            Disposition::Stop => Ok(Flow::Stop),
        }
    }
}

/// At shutdown, hands the messages already received but not handled back to the server (nak), so
/// the next puller gets them without waiting for the ack timeout.
async fn give_back(messages: &mut pull::Stream) {
    while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
        if let Err(err) = msg.ack_with(AckKind::Nak(None)).await {
            debug!(cause = %err, "nak at shutdown failed; the message waits for its ack timeout");
        }
    }
}

/// Whether a bus error is worth a retry: the broker did not answer ([`ErrorKind::Unavailable`])
/// or failed in an unclassified way ([`ErrorKind::Other`]).
#[must_use]
pub fn transient(err: &BusError) -> bool {
    matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Other)
}

/// Runs `op` until it succeeds, retrying with [`Backoff`] while `retryable` says its error is
/// worth a retry (each retry logged with `what`). `Ok(None)` on shutdown.
///
/// # Errors
/// The first error `retryable` refuses.
pub async fn retry_when<T, E, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<Option<T>, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new();
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            r = op() => r,
        };
        match result {
            Ok(v) => return Ok(Some(v)),
            Err(err) if retryable(&err) => {
                warn!(cause = %err, "cannot {what}, retrying");
                if !backoff.wait(shutdown).await {
                    return Ok(None);
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Exponential backoff from 50 ms doubling up to 2 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A backoff at its first (shortest) pause.
    #[must_use]
    pub fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    /// Sleeps the next pause; false when shutdown came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }
}
