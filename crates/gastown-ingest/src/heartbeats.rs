//! The heartbeat consumer: I/O around gastown-core's filter (DOMAIN §E5, ARCHITECTURE §5).
//!
//! Every decision is `gastown_core::heartbeat`'s; this module pulls the `HB` stream partition by
//! partition, feeds each message to the filter in stream order, appends the derived events, stores
//! the agent memory ([`crate::memory`]) and only then acks.
//!
//! # Shares (ARCHITECTURE §9.3)
//! The member joins the `ingest` membership. Each HB partition has one durable pull consumer
//! (pinned priority group), shared by every member. The partition's rendezvous owner pulls it at
//! once. Another member only watches it as a standby: every `standby_delay` it reads the
//! consumer, and when heartbeats are waiting that nobody took since the last look (the owner is
//! dead or stuck and the membership has not noticed yet), it pulls the partition itself until it
//! stays idle for a standby delay or the membership changes. A pinned consumer pins whichever
//! puller gets the first message, so a standby must not pull while the owner lives, or the
//! shares would be random. A member that stops being the owner stays off the partition, so its
//! pin expires (`priority_timeout`, shorter than `standby_delay`) and the new owner takes over.
//! Pinning is not exclusivity: deterministic event ids (E1) and compare-and-set memory writes
//! make an overlap harmless.
//!
//! # Acquiring a partition
//! The owner, when it starts pulling, and a standby, when it first receives a message, run the E5
//! start-up check over every agent of the partition with a stored memory: what the agent's
//! heartbeat subject holds decides ([`HeldMessage`]), and a missed expiry marker becomes
//! `agent_heartbeat_lost{expired}`.
//!
//! # Per message
//! Parse the stored subject (bad tokens: `rejected{bad_id}`); an expiry marker
//! (`Nats-Marker-Reason: MaxAge`) goes to [`Filter::on_expiry_marker`]; anything else is decoded
//! (a reject is counted by its reason) and goes to [`Filter::on_heartbeat`] with the broker's
//! timestamp and stream sequence. The derived events are appended (a repeat is a broker
//! duplicate), M is written by compare-and-set when the step says so (a lost race re-reads M and
//! runs the step again), then the message is acked. An unavailable bus is retried with backoff; a
//! message is never acked before its events are stored.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{Consumer, pull};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::{FutureExt, StreamExt};
use gastown_bus::{
    AgentId, Bus, BusError, ErrorKind, Membership, ShareConfig, TownId, headers, partition_consumer, partition_of,
};
use gastown_core::Envelope;
use gastown_core::constants::{ACTIVITY_GRANULARITY, HEARTBEAT_LOST};
use gastown_core::heartbeat::{Filter, Heartbeat, HeldMessage, Step, decode};
use gastown_core::time::Millis;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, error, info, warn};

use crate::IngestError;
use crate::memory::{MemoryError, MemoryStore};
use crate::metrics::IngestMetrics;

/// The membership role of ingest instances.
pub const ROLE: &str = "ingest";

/// Heartbeats pulled per request (a pull expires well inside the pin timeout).
const PULL_BATCH: usize = 256;

/// Longest pause between two retries of an unavailable bus.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// First pause before retrying an unavailable bus.
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Settings of the heartbeat consumer.
#[derive(Debug, Clone)]
pub struct HeartbeatsConfig {
    /// This instance's member id (unique among live ingest instances).
    pub member_id: String,
    /// HB partition count (the bus configuration's).
    pub partitions: u32,
    /// ACTIVITY_GRANULARITY (an ingest flag): at most one `agent_activity` per agent per this much.
    pub granularity: Duration,
    /// heartbeat_lost (a constant, DOMAIN §K; tests pass the shortened HB max age).
    pub heartbeat_lost: Duration,
    /// How long a non-owner waits before pulling a partition as a standby, and stays off a
    /// partition it gives up; longer than `priority_timeout`.
    pub standby_delay: Duration,
    /// The partition consumers' pin timeout.
    pub priority_timeout: Duration,
    /// How often the membership entry is refreshed.
    pub member_heartbeat: Duration,
}

impl HeartbeatsConfig {
    /// The defaults: granularity and heartbeat_lost from DOMAIN §K, a 5 s pin timeout, a 10 s
    /// standby delay, membership refreshed every 2 s.
    #[must_use]
    pub fn new(member_id: impl Into<String>, partitions: u32) -> Self {
        Self {
            member_id: member_id.into(),
            partitions,
            granularity: millis_duration(ACTIVITY_GRANULARITY),
            heartbeat_lost: millis_duration(HEARTBEAT_LOST),
            standby_delay: Duration::from_secs(10),
            priority_timeout: Duration::from_secs(5),
            member_heartbeat: Duration::from_secs(2),
        }
    }

    /// The filter's parameters, in milliseconds.
    #[must_use]
    pub fn filter(&self) -> Filter {
        Filter { heartbeat_lost: duration_millis(self.heartbeat_lost), granularity: duration_millis(self.granularity) }
    }
}

/// Runs the heartbeat consumer until `shutdown`: joins the `ingest` membership, watches the
/// memory bucket and pulls every HB partition this member owns (and the others as a standby).
/// Returns when every partition has finished the message in hand.
///
/// # Errors
/// A bus failure that retrying cannot fix (a missing stream, a mismatched consumer).
pub async fn run_heartbeats(
    bus: Arc<Bus>,
    cfg: HeartbeatsConfig,
    memory: Arc<MemoryStore>,
    metrics: Arc<IngestMetrics>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let stop = shutdown.child_token();
    let share = ShareConfig {
        role: ROLE.to_owned(),
        member_id: cfg.member_id.clone(),
        partitions: cfg.partitions,
        standby_delay: cfg.standby_delay,
        priority_timeout: cfg.priority_timeout,
        heartbeat: cfg.member_heartbeat,
    };
    let Some(membership) = retry(&stop, "join the ingest membership", || Membership::join(&bus, share.clone())).await? else {
        return Ok(());
    };
    let membership = Arc::new(membership);
    info!(member = %cfg.member_id, partitions = cfg.partitions, "heartbeat consumer started");

    let mut tasks = JoinSet::new();
    {
        let memory = Arc::clone(&memory);
        let stop = stop.clone();
        tasks.spawn(async move {
            memory.watch(stop).await;
            Ok(())
        });
    }
    let cfg = Arc::new(cfg);
    for p in 0..cfg.partitions {
        let partition = Partition {
            p,
            bus: Arc::clone(&bus),
            cfg: Arc::clone(&cfg),
            filter: cfg.filter(),
            memory: Arc::clone(&memory),
            metrics: Arc::clone(&metrics),
            membership: Arc::clone(&membership),
            shutdown: stop.clone(),
            acquired: false,
        };
        tasks.spawn(partition.run().instrument(debug_span!("hb_partition", partition = p)));
    }

    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|err| {
            error!(cause = %err, "a heartbeat task failed");
            IngestError::Crashed(format!("heartbeat task: {err}"))
        });
        let result = result.and_then(|r| r);
        if let Err(err) = result {
            stop.cancel();
            if outcome.is_ok() {
                outcome = Err(err);
            }
        }
    }
    stop.cancel();
    match Arc::try_unwrap(membership) {
        Ok(membership) => {
            if let Err(err) = membership.leave().await {
                warn!(cause = %err, "could not leave the ingest membership");
            }
        }
        Err(_) => warn!("the ingest membership is still shared at shutdown"),
    }
    info!("heartbeat consumer stopped");
    outcome
}

/// What a message or a session came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Go on.
    Continue,
    /// Shutdown: stop here (the message in hand, if any, is not acked).
    Stop,
}

/// Why a pull session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// Shutdown.
    Stop,
    /// The member gives the partition up (no longer its owner, or a standby after a membership
    /// change): stay off it for the standby delay.
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
    /// The partition has heartbeats nobody pulls: take it over.
    TakeOver,
}

/// What a message of the HB stream is.
enum Input {
    /// A decoded heartbeat.
    Heartbeat(Heartbeat),
    /// A `MaxAge` expiry marker: the agent fell silent.
    Expired,
}

/// One HB partition as seen by this member.
struct Partition {
    p: u32,
    bus: Arc<Bus>,
    cfg: Arc<HeartbeatsConfig>,
    filter: Filter,
    memory: Arc<MemoryStore>,
    metrics: Arc<IngestMetrics>,
    membership: Arc<Membership>,
    shutdown: CancellationToken,
    /// The start-up check ran since the member last gave the partition up.
    acquired: bool,
}

impl Partition {
    async fn run(mut self) -> Result<(), IngestError> {
        let stream = self.bus.names.hb_stream();
        let filter = self.bus.names.hb_partition_filter(self.p);
        let mut changes = self.membership.changes();
        let mut backoff = Backoff::new();
        let mut consumer: Option<Consumer<pull::Config>> = None;
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let c = match &consumer {
                Some(c) => c.clone(),
                None => {
                    let Some(c) = retry(&self.shutdown, "open the partition consumer", || {
                        partition_consumer(&self.bus, &stream, ROLE, self.p, filter.clone(), self.cfg.priority_timeout)
                    })
                    .await?
                    else {
                        return Ok(());
                    };
                    consumer = Some(c.clone());
                    c
                }
            };
            let end = if self.membership.preferred(self.p) {
                self.session(&c, &mut changes, true).await?
            } else {
                match self.standby_watch(&c, &mut changes).await {
                    Standby::Stop => return Ok(()),
                    Standby::Owner => continue,
                    Standby::TakeOver => self.session(&c, &mut changes, false).await?,
                }
            };
            match end {
                SessionEnd::Stop => return Ok(()),
                SessionEnd::Release => {
                    debug!(partition = self.p, "partition released");
                    self.acquired = false;
                    backoff = Backoff::new();
                }
                SessionEnd::Reopen => {
                    consumer = None;
                    if !backoff.wait(&self.shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Stays off a partition this member does not own: every standby delay, looks whether its
    /// consumer has heartbeats waiting that nobody takes (the delivered sequence did not move), and
    /// then takes it over; returns at once when the member becomes the owner.
    async fn standby_watch(&self, consumer: &Consumer<pull::Config>, changes: &mut tokio::sync::watch::Receiver<u64>) -> Standby {
        let mut last_delivered = None;
        let mut membership_alive = true;
        let mut tick = tokio::time::interval(self.cfg.standby_delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Standby::Stop,
                changed = changes.changed(), if membership_alive => {
                    if changed.is_err() {
                        membership_alive = false;
                    } else if self.membership.preferred(self.p) {
                        return Standby::Owner;
                    }
                }
                _ = tick.tick() => match consumer.get_info().await {
                    Ok(info) => {
                        let delivered = info.delivered.stream_sequence;
                        if info.num_pending > 0 && last_delivered == Some(delivered) {
                            warn!(partition = self.p, pending = info.num_pending, "heartbeat partition not pulled by its owner, taking it over");
                            return Standby::TakeOver;
                        }
                        last_delivered = Some(delivered);
                    }
                    Err(err) => debug!(partition = self.p, cause = %err, "standby cannot read the partition consumer"),
                },
            }
        }
    }

    /// Pulls the partition until shutdown, a release or a broken stream. An owner session starts
    /// with the start-up check; a standby session runs it when it first receives a message (it
    /// then holds the pin) and gives the partition back after a standby delay without messages
    /// or at the next membership change.
    async fn session(
        &mut self,
        consumer: &Consumer<pull::Config>,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        mut owner: bool,
    ) -> Result<SessionEnd, IngestError> {
        if owner && !self.acquired {
            if self.acquire().await? == Flow::Stop {
                return Ok(SessionEnd::Stop);
            }
            self.acquired = true;
        }
        let pull_expiry = (self.cfg.priority_timeout / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let opened = consumer
            .stream()
            .group(gastown_bus::SHARE_GROUP)
            .max_messages_per_batch(PULL_BATCH)
            .expires(pull_expiry)
            .heartbeat(pull_expiry / 2)
            .messages()
            .await;
        let mut messages = match opened {
            Ok(m) => m,
            Err(err) => {
                warn!(partition = self.p, cause = %err, "cannot pull the heartbeat partition");
                return Ok(SessionEnd::Reopen);
            }
        };
        let mut membership_alive = true;
        let idle = tokio::time::sleep(self.cfg.standby_delay);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    give_back(&mut messages).await;
                    return Ok(SessionEnd::Stop);
                }
                changed = changes.changed(), if membership_alive => {
                    if changed.is_err() {
                        membership_alive = false;
                        continue;
                    }
                    if !self.membership.preferred(self.p) {
                        // A former owner, or a standby that lets the new owner take the pin:
                        // finish what was already received, then stop pulling.
                        return self.finish_buffered(&mut messages).await;
                    }
                    if !owner {
                        owner = true;
                        if !self.acquired {
                            if self.acquire().await? == Flow::Stop {
                                return Ok(SessionEnd::Stop);
                            }
                            self.acquired = true;
                        }
                    }
                }
                () = &mut idle, if !owner => return self.finish_buffered(&mut messages).await,
                next = messages.next() => match next {
                    None => return Ok(SessionEnd::Reopen),
                    Some(Err(err)) => {
                        warn!(partition = self.p, cause = %err, "heartbeat pull failed");
                        return Ok(SessionEnd::Reopen);
                    }
                    Some(Ok(msg)) => {
                        if !self.acquired {
                            // A standby that received a message holds the pin: it took over.
                            info!(partition = self.p, "heartbeat partition taken over as a standby");
                            if self.acquire().await? == Flow::Stop {
                                return Ok(SessionEnd::Stop);
                            }
                            self.acquired = true;
                        }
                        if self.handle(&msg).await? == Flow::Stop {
                            give_back(&mut messages).await;
                            return Ok(SessionEnd::Stop);
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + self.cfg.standby_delay);
                    }
                },
            }
        }
    }

    /// Processes the heartbeats already received by the client before the partition is given up
    /// (so they are not left to the ack timeout).
    async fn finish_buffered(&self, messages: &mut pull::Stream) -> Result<SessionEnd, IngestError> {
        while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
            if self.handle(&msg).await? == Flow::Stop {
                give_back(messages).await;
                return Ok(SessionEnd::Stop);
            }
        }
        Ok(SessionEnd::Release)
    }

    /// The E5 start-up check for every agent of the partition with a stored memory.
    async fn acquire(&self) -> Result<Flow, IngestError> {
        let n = self.cfg.partitions;
        self.memory.forget_partition(self.p, n);
        let Some(agents) = retry(&self.shutdown, "list the ingest memory", || self.memory.agents()).await? else {
            return Ok(Flow::Stop);
        };
        let stream = self.bus.js.get_stream_no_info(self.bus.names.hb_stream()).await.map_err(BusError::from)?;
        let mut checked = 0_usize;
        for (town, agent) in agents.iter().filter(|(town, _)| partition_of(town.as_str(), n) == self.p) {
            let subject = self.bus.names.hb_agent_stored_filter(town, agent);
            let Some(held) = retry(&self.shutdown, "read the held heartbeat", || held_message(&stream, &subject)).await? else {
                return Ok(Flow::Stop);
            };
            let flow = self
                .apply(town, agent, None, |filter, m| filter.on_startup(town.as_str(), agent.as_str(), m, held), true)
                .await?;
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
            checked += 1;
        }
        debug!(partition = self.p, agents = checked, "heartbeat partition acquired");
        Ok(Flow::Continue)
    }

    /// Processes one message of the partition and acks it (unless shutdown interrupts it).
    async fn handle(&self, msg: &jetstream::Message) -> Result<Flow, IngestError> {
        let (seq, tau) = match msg.info() {
            Ok(info) => (info.stream_sequence, unix_millis(info.published)),
            Err(err) => {
                warn!(subject = %msg.subject, cause = %err, "heartbeat without stream metadata, dropped");
                self.ack(msg).await;
                return Ok(Flow::Continue);
            }
        };
        let Some((_, town, agent)) = self.bus.names.parse_hb_stored(msg.subject.as_str()) else {
            debug!(subject = %msg.subject, seq, "heartbeat subject with invalid ids, rejected");
            self.metrics.rejected.add(&["bad_id"], 1);
            self.ack(msg).await;
            return Ok(Flow::Continue);
        };
        let span = debug_span!("heartbeat", town = town.as_str(), agent = agent.as_str(), seq);
        async {
            let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
            let input = match header(headers::MARKER_REASON) {
                Some(reason) if reason == headers::MARKER_MAX_AGE => Input::Expired,
                Some(reason) => {
                    debug!(reason, "delete marker that is not an expiry, ignored");
                    self.ack(msg).await;
                    return Ok(Flow::Continue);
                }
                None => match decode(&msg.payload, header(headers::CONTENT_TYPE).as_deref()) {
                    Ok(hb) => {
                        self.metrics.heartbeats.add(&[hb.status.as_str()], 1);
                        Input::Heartbeat(hb)
                    }
                    Err(reject) => {
                        debug!(reason = reject.reason(), cause = %reject, "heartbeat rejected");
                        self.metrics.rejected.add(&[reject.reason()], 1);
                        self.ack(msg).await;
                        return Ok(Flow::Continue);
                    }
                },
            };
            if let Some((m, _)) = self.memory.cached(&town, &agent)
                && m.seq >= seq
            {
                debug!(last = m.seq, "heartbeat already processed, acked again");
                self.ack(msg).await;
                return Ok(Flow::Continue);
            }
            let traceparent = header(headers::TRACEPARENT);
            let flow = match &input {
                Input::Heartbeat(hb) => {
                    self.apply(
                        &town,
                        &agent,
                        traceparent.as_deref(),
                        |f, m| f.on_heartbeat(town.as_str(), agent.as_str(), m, hb, seq, tau),
                        false,
                    )
                    .await?
                }
                Input::Expired => {
                    self.apply(
                        &town,
                        &agent,
                        traceparent.as_deref(),
                        |f, m| f.on_expiry_marker(town.as_str(), agent.as_str(), m, seq, tau),
                        false,
                    )
                    .await?
                }
            };
            if flow == Flow::Continue {
                self.ack(msg).await;
            }
            Ok(flow)
        }
        .instrument(span)
        .await
    }

    /// Runs one filter step on the agent's memory, appends its events and stores M when the step
    /// says so; a lost compare-and-set re-reads M and runs the step again. `fresh`: read M from
    /// the store rather than the cache.
    async fn apply(
        &self,
        town: &TownId,
        agent: &AgentId,
        traceparent: Option<&str>,
        step: impl Fn(&Filter, &mut gastown_core::heartbeat::AgentMemory) -> Step,
        mut fresh: bool,
    ) -> Result<Flow, IngestError> {
        loop {
            let cached = if fresh { None } else { self.memory.cached(town, agent) };
            let (mut m, revision) = match cached {
                Some(entry) => entry,
                None => match retry(&self.shutdown, "read the agent memory", || self.memory.load(town, agent)).await? {
                    Some(entry) => entry,
                    None => return Ok(Flow::Stop),
                },
            };
            let out = step(&self.filter, &mut m);
            for env in &out.events {
                if self.append(town, env, traceparent).await? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            if !out.store {
                if out.filtered {
                    IngestMetrics::inc(&self.metrics.heartbeats_filtered);
                }
                self.memory.remember(town, agent, &m, revision);
                return Ok(Flow::Continue);
            }
            let mut backoff = Backoff::new();
            loop {
                match self.memory.store_cas(town, agent, &m, revision).await {
                    Ok(_) => return Ok(Flow::Continue),
                    Err(MemoryError::Conflict { .. }) => {
                        debug!(town = town.as_str(), agent = agent.as_str(), "agent memory changed meanwhile, step run again");
                        fresh = true;
                        break;
                    }
                    Err(err) if err.is_unavailable() => {
                        warn!(town = town.as_str(), agent = agent.as_str(), cause = %err, "cannot store the agent memory, retrying");
                        if !backoff.wait(&self.shutdown).await {
                            return Ok(Flow::Stop);
                        }
                    }
                    Err(err) => {
                        error!(town = town.as_str(), agent = agent.as_str(), cause = %err, "cannot store the agent memory");
                        self.memory.remember(town, agent, &m, revision);
                        return Ok(Flow::Continue);
                    }
                }
            }
        }
    }

    /// Appends one derived event, retrying while the bus is unavailable.
    async fn append(&self, town: &TownId, env: &Envelope, traceparent: Option<&str>) -> Result<Flow, IngestError> {
        let mut backoff = Backoff::new();
        loop {
            match self.bus.append_event(town, env, None, traceparent).await {
                Ok(appended) => {
                    if appended.duplicate {
                        IngestMetrics::inc(&self.metrics.events_duplicates);
                        debug!(event_type = env.event_type(), id = %env.id, seq = appended.seq, "derived event already stored");
                    } else {
                        self.metrics.events_appended.add(&[env.event_type(), "hb"], 1);
                        debug!(event_type = env.event_type(), id = %env.id, seq = appended.seq, "derived event appended");
                    }
                    return Ok(Flow::Continue);
                }
                Err(err) => match err.kind() {
                    ErrorKind::Unavailable | ErrorKind::Other => {
                        warn!(event_type = env.event_type(), cause = %err, "cannot append a derived event, retrying");
                        if !backoff.wait(&self.shutdown).await {
                            return Ok(Flow::Stop);
                        }
                    }
                    ErrorKind::Invalid | ErrorKind::Conflict => {
                        error!(event_type = env.event_type(), id = %env.id, cause = %err, "derived event refused, dropped");
                        return Ok(Flow::Continue);
                    }
                    ErrorKind::NotFound | ErrorKind::Mismatch | ErrorKind::Unsupported => return Err(err.into()),
                },
            }
        }
    }

    /// Acks a message; a failed ack only means a redelivery, which the ids make harmless.
    async fn ack(&self, msg: &jetstream::Message) {
        if let Err(err) = msg.ack().await {
            warn!(cause = %err, "heartbeat ack failed; it will be redelivered");
        }
    }
}

/// At shutdown, hands the heartbeats already received but not processed back to the server
/// (nak), so the next puller gets them without waiting for the ack timeout.
async fn give_back(messages: &mut pull::Stream) {
    while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
        if let Err(err) = msg.ack_with(jetstream::AckKind::Nak(None)).await {
            debug!(cause = %err, "nak at shutdown failed; the heartbeat waits for its ack timeout");
        }
    }
}

/// What the agent's heartbeat subject holds (E5 start-up check).
async fn held_message<I>(stream: &jetstream::stream::Stream<I>, subject: &str) -> Result<HeldMessage, BusError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(msg) => {
            if msg.headers.get(headers::MARKER_REASON).is_some() {
                return Ok(HeldMessage::Other);
            }
            let content_type = msg.headers.get(headers::CONTENT_TYPE).map(|v| v.as_str().to_owned());
            Ok(match decode(&msg.payload, content_type.as_deref()) {
                Ok(hb) if hb.is_alive() => HeldMessage::Alive(unix_millis(msg.time)),
                _ => HeldMessage::Other,
            })
        }
        Err(err) if matches!(err.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(HeldMessage::Empty),
        Err(err) => Err(BusError::from(err)),
    }
}

/// Runs `op` until it succeeds, retrying with backoff while its error is worth a retry (the bus
/// unavailable). `Ok(None)` on shutdown.
async fn retry<T, E, F, Fut>(shutdown: &CancellationToken, what: &str, mut op: F) -> Result<Option<T>, E>
where
    E: Retryable + std::fmt::Display,
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
            Err(err) if err.retryable() => {
                warn!(cause = %err, "cannot {what}, retrying");
                if !backoff.wait(shutdown).await {
                    return Ok(None);
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Errors a retry can help with.
trait Retryable {
    fn retryable(&self) -> bool;
}

impl Retryable for BusError {
    fn retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Other)
    }
}

impl Retryable for MemoryError {
    fn retryable(&self) -> bool {
        self.is_unavailable()
    }
}

/// Exponential backoff between [`BACKOFF_MIN`] and [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    /// Sleeps; false when shutdown came first.
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }
}

/// A broker timestamp as unix milliseconds.
fn unix_millis(t: async_nats::datetime::DateTime) -> Millis {
    Millis::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(Millis::MAX)
}

/// Milliseconds as a duration (negative: zero).
fn millis_duration(ms: Millis) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A duration as milliseconds (saturating).
fn duration_millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert_both_ways() {
        assert_eq!(millis_duration(HEARTBEAT_LOST), Duration::from_secs(90));
        assert_eq!(duration_millis(Duration::from_secs(300)), ACTIVITY_GRANULARITY);
        assert_eq!(millis_duration(-5), Duration::ZERO);
        let f = HeartbeatsConfig::new("m1", 32).filter();
        assert_eq!(f, Filter::default());
    }
}
