//! The heartbeat consumer: I/O around gastown-core's filter (DOMAIN §E5, ARCHITECTURE §5).
//!
//! Every decision is `gastown_core::heartbeat`'s; this module pulls the `HB` stream partition by
//! partition, feeds each message to the filter in stream order, appends the derived events, stores
//! the agent memory ([`crate::memory`]) and only then acks.
//!
//! # Shares (ARCHITECTURE §9.3)
//! The member joins the `ingest` membership and holds every HB partition through
//! [`gastown_bus::lease::Lease`]: the rendezvous owner pulls it at once, another member watches
//! it as a standby and takes it over only when heartbeats wait that nobody takes (decision 0007).
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
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use gastown_bus::lease::{Acquisition, Backoff, Disposition, Flow, Lease, PartitionHandler, retry_when, transient};
use gastown_bus::{AgentId, Bus, BusError, ErrorKind, Membership, Names, ShareConfig, TownId, headers, partition_of};
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
    let handler = Arc::new(HbPartitions {
        bus: Arc::clone(&bus),
        filter: cfg.filter(),
        cfg,
        memory: Arc::clone(&memory),
        metrics: Arc::clone(&metrics),
        shutdown: stop.clone(),
    });
    for lease in Lease::every_partition(&bus, &membership, &handler, &bus.names.hb_stream(), Names::hb_partition_filter) {
        let span = debug_span!("hb_partition", partition = lease.p);
        tasks.spawn(lease.run(stop.clone()).instrument(span));
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

/// What a message of the HB stream is.
enum Input {
    /// A decoded heartbeat.
    Heartbeat(Heartbeat),
    /// A `MaxAge` expiry marker: the agent fell silent.
    Expired,
}

/// The HB partitions as handled by this member (one [`Lease`] each).
struct HbPartitions {
    bus: Arc<Bus>,
    cfg: HeartbeatsConfig,
    filter: Filter,
    memory: Arc<MemoryStore>,
    metrics: Arc<IngestMetrics>,
    shutdown: CancellationToken,
}

impl PartitionHandler for HbPartitions {
    type Error = IngestError;

    async fn acquired(&self, p: u32, _how: Acquisition) -> Result<Flow, IngestError> {
        self.acquire(p).await
    }

    async fn message(&self, _p: u32, msg: &jetstream::Message) -> Result<Disposition, IngestError> {
        self.handle(msg).await
    }

    fn released(&self, _p: u32) {}
}

impl HbPartitions {
    /// The E5 start-up check for every agent of the partition with a stored memory.
    async fn acquire(&self, p: u32) -> Result<Flow, IngestError> {
        let n = self.cfg.partitions;
        self.memory.forget_partition(p, n);
        let Some(agents) = retry(&self.shutdown, "list the ingest memory", || self.memory.agents()).await? else {
            return Ok(Flow::Stop);
        };
        let stream = self.bus.js.get_stream_no_info(self.bus.names.hb_stream()).await.map_err(BusError::from)?;
        let mut checked = 0_usize;
        for (town, agent) in agents.iter().filter(|(town, _)| partition_of(town.as_str(), n) == p) {
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
        debug!(partition = p, agents = checked, "heartbeat partition acquired");
        Ok(Flow::Continue)
    }

    /// Processes one message of the partition: [`Disposition::Ack`] once it is done (or
    /// dropped), [`Disposition::Stop`] when shutdown interrupts it.
    async fn handle(&self, msg: &jetstream::Message) -> Result<Disposition, IngestError> {
        let (seq, tau) = match msg.info() {
            Ok(info) => (info.stream_sequence, unix_millis(info.published)),
            Err(err) => {
                warn!(subject = %msg.subject, cause = %err, "heartbeat without stream metadata, dropped");
                return Ok(Disposition::Ack);
            }
        };
        let Some((_, town, agent)) = self.bus.names.parse_hb_stored(msg.subject.as_str()) else {
            debug!(subject = %msg.subject, seq, "heartbeat subject with invalid ids, rejected");
            self.metrics.rejected.add(&["bad_id"], 1);
            return Ok(Disposition::Ack);
        };
        let span = debug_span!("heartbeat", town = town.as_str(), agent = agent.as_str(), seq);
        async {
            let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
            let input = match header(headers::MARKER_REASON) {
                Some(reason) if reason == headers::MARKER_MAX_AGE => Input::Expired,
                Some(reason) => {
                    debug!(reason, "delete marker that is not an expiry, ignored");
                    return Ok(Disposition::Ack);
                }
                None => match decode(&msg.payload, header(headers::CONTENT_TYPE).as_deref()) {
                    Ok(hb) => {
                        self.metrics.heartbeats.add(&[hb.status.as_str()], 1);
                        Input::Heartbeat(hb)
                    }
                    Err(reject) => {
                        debug!(reason = reject.reason(), cause = %reject, "heartbeat rejected");
                        self.metrics.rejected.add(&[reject.reason()], 1);
                        return Ok(Disposition::Ack);
                    }
                },
            };
            if let Some((m, _)) = self.memory.cached(&town, &agent)
                && m.seq >= seq
            {
                debug!(last = m.seq, "heartbeat already processed, acked again");
                return Ok(Disposition::Ack);
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
            Ok(match flow {
                Flow::Continue => Disposition::Ack,
                Flow::Stop => Disposition::Stop,
            })
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
async fn retry<T, E, F, Fut>(shutdown: &CancellationToken, what: &str, op: F) -> Result<Option<T>, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_when(shutdown, what, E::retryable, op).await
}

/// Errors a retry can help with.
trait Retryable {
    fn retryable(&self) -> bool;
}

impl Retryable for BusError {
    fn retryable(&self) -> bool {
        transient(self)
    }
}

impl Retryable for MemoryError {
    fn retryable(&self) -> bool {
        self.is_unavailable()
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
