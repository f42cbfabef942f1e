//! Partition shares (ARCHITECTURE §9.3): which member of a role (ingest, reconciler) pulls
//! which partition first.
//!
//! Members register in the KV bucket `<prefix>-members` under `<role>.<member_id>` and refresh
//! their entry by compare-and-set every `heartbeat`. A member is live while its entry is at most
//! [`EXPIRY_BEATS`] heartbeats older than the reader's own latest entry: both times are the
//! server's, so no two clocks are compared. (`create_with_ttl` is not used: async-nats 0.51
//! re-creates a deleted or expired key without its TTL, NOTES.md.) Each partition is preferred
//! by its rendezvous owner among the live members; the others pull it only as a standby. The
//! pull itself goes through a durable consumer per (role, partition) with the `PinnedClient`
//! priority policy, so one puller at a time gets the messages. Pinning is not exclusivity:
//! every decision append stays fenced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, PriorityPolicy, pull};
use async_nats::jetstream::kv::{Operation, Store};
use futures::TryStreamExt;
use gastown_core::ids::is_token;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{BusError, ErrorKind};
use crate::setup::Bus;

/// The priority group every partition consumer is pinned in; pull with
/// `consumer.stream().group(SHARE_GROUP)`.
pub const SHARE_GROUP: &str = "share";

/// The members bucket's name under the prefix (`<prefix>-members`).
const MEMBERS_BUCKET: &str = "members";
/// A member is dead once its entry is this many heartbeats older than the reader's own.
const EXPIRY_BEATS: u32 = 3;
/// Entries dead for this many expiries are deleted from the bucket by whoever sees them.
const CLEANUP_EXPIRIES: u32 = 10;
/// Longest wait for one registry operation.
const KV_TIMEOUT: Duration = Duration::from_secs(5);

/// How a member takes part in the shares of its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    /// `ingest` (HB partitions) or `reconciler` (EVENTS partitions): members share within a role.
    pub role: String,
    /// This member's id, unique within the role (a token, e.g. `<host>-<pid>`).
    pub member_id: String,
    /// The partition count of the streams (the same as [`BusConfig::partitions`](crate::BusConfig)).
    pub partitions: u32,
    /// How long a non-preferred member waits before pulling a partition as a standby.
    pub standby_delay: Duration,
    /// The consumers' pin timeout: a silent pinned puller loses the pin after it.
    pub priority_timeout: Duration,
    /// How often the member refreshes its registration (and rereads the others').
    pub heartbeat: Duration,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            role: "reconciler".to_owned(),
            member_id: String::new(),
            partitions: 32,
            standby_delay: Duration::from_secs(5),
            priority_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// This member's registration and its view of the live members of its role.
///
/// Dropping it stops the refresh (the entry then expires); [`Membership::leave`] also deletes
/// the entry so the others rebalance at once.
pub struct Membership {
    cfg: ShareConfig,
    store: Store,
    key: String,
    /// Live member ids of the role, sorted; written by the refresh task only.
    live: Arc<Mutex<Vec<String>>>,
    changes: watch::Receiver<u64>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Membership {
    /// Registers this member and starts refreshing its entry every `cfg.heartbeat`.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] when the role or member id is not a token or the heartbeat is
    /// zero; [`ErrorKind::Unavailable`] when the bucket cannot be reached.
    pub async fn join(bus: &Bus, cfg: ShareConfig) -> Result<Membership, BusError> {
        if !is_token(&cfg.role) || !is_token(&cfg.member_id) {
            return Err(BusError::new(
                ErrorKind::Invalid,
                format!("invalid membership {:?}/{:?}: role and member id must be tokens", cfg.role, cfg.member_id),
            ));
        }
        if cfg.heartbeat.is_zero() {
            return Err(BusError::new(ErrorKind::Invalid, "membership heartbeat must be positive"));
        }
        let store = bus.kv(MEMBERS_BUCKET).await?;
        let mut registry = Registry {
            store: store.clone(),
            key: format!("{}.{}", cfg.role, cfg.member_id),
            role_prefix: format!("{}.", cfg.role),
            expiry: cfg.heartbeat.saturating_mul(EXPIRY_BEATS),
            revision: None,
        };
        registry.refresh().await?;
        let live_now = registry.scan().await?;
        info!(role = %cfg.role, member = %cfg.member_id, members = ?live_now, "joined partition shares");
        let live = Arc::new(Mutex::new(live_now));
        let (tx, changes) = watch::channel(0u64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(refresh_loop(registry, cfg.heartbeat, Arc::clone(&live), tx, cancel.clone()));
        Ok(Membership { key: format!("{}.{}", cfg.role, cfg.member_id), cfg, store, live, changes, cancel, task: Some(task) })
    }

    /// This member's id.
    #[must_use]
    pub fn member_id(&self) -> &str {
        &self.cfg.member_id
    }

    /// The share settings this member joined with.
    #[must_use]
    pub fn config(&self) -> &ShareConfig {
        &self.cfg
    }

    /// The live members of the role (sorted), this one included.
    #[must_use]
    pub fn members(&self) -> Vec<String> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether this member is the rendezvous owner of partition `p` among the live members.
    #[must_use]
    pub fn preferred(&self, p: u32) -> bool {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        rendezvous_owner(&live, p) == Some(self.cfg.member_id.as_str())
    }

    /// The partitions this member prefers right now.
    #[must_use]
    pub fn preferred_partitions(&self) -> Vec<u32> {
        (0..self.cfg.partitions).filter(|&p| self.preferred(p)).collect()
    }

    /// A receiver whose value is bumped whenever the set of live members changes.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Stops refreshing and deletes this member's entry, so the others take its share at once.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the entry could not be deleted (it then expires).
    pub async fn leave(mut self) -> Result<(), BusError> {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            warn!(cause = %e, "membership refresh task failed");
        }
        tokio::time::timeout(KV_TIMEOUT, self.store.delete(&self.key))
            .await
            .map_err(|_| BusError::new(ErrorKind::Unavailable, "leave shares: timed out"))?
            .map_err(|e| BusError::from(e).context("leave shares"))?;
        info!(role = %self.cfg.role, member = %self.cfg.member_id, "left partition shares");
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The refresh task: CAS the own entry, reread the role's entries, publish changes.
async fn refresh_loop(
    mut registry: Registry,
    heartbeat: Duration,
    live: Arc<Mutex<Vec<String>>>,
    tx: watch::Sender<u64>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = registry.refresh().await {
            warn!(key = %registry.key, cause = %e, "membership refresh failed");
            continue;
        }
        let now = match registry.scan().await {
            Ok(now) => now,
            Err(e) => {
                warn!(cause = %e, "membership scan failed");
                continue;
            }
        };
        let changed = {
            let mut current = live.lock().unwrap_or_else(PoisonError::into_inner);
            if *current == now {
                false
            } else {
                info!(members = ?now, "partition share members changed");
                *current = now;
                true
            }
        };
        if changed {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

/// The KV side of a membership.
struct Registry {
    store: Store,
    key: String,
    role_prefix: String,
    expiry: Duration,
    /// The revision of our last write, for the compare-and-set.
    revision: Option<u64>,
}

impl Registry {
    /// Writes our entry: compare-and-set on our last revision, or create/take over the key.
    async fn refresh(&mut self) -> Result<(), BusError> {
        let value = bytes::Bytes::from_static(b"{}");
        let result = match self.revision {
            Some(rev) => bounded(self.store.update(&self.key, value.clone(), rev)).await,
            None => Err(BusError::new(ErrorKind::Conflict, "not registered yet")),
        };
        match result {
            Ok(rev) => {
                self.revision = Some(rev);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // First write, or the key changed under us (deleted as expired after a stall,
                // or rewritten by an earlier incarnation): take the key over.
                if self.revision.is_some() {
                    warn!(key = %self.key, "membership entry changed under us; re-registering");
                }
                let rev = match bounded(self.store.entry(&self.key)).await? {
                    Some(entry) if entry.operation == Operation::Put => {
                        bounded(self.store.update(&self.key, value, entry.revision)).await?
                    }
                    _ => bounded(self.store.create(&self.key, value)).await?,
                };
                self.revision = Some(rev);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The live members of the role, sorted, judged against our own entry's server time.
    async fn scan(&self) -> Result<Vec<String>, BusError> {
        let keys: Vec<String> =
            bounded(async { self.store.keys().await?.try_collect::<Vec<String>>().await.map_err(BusError::from) }).await?;
        let mut created: BTreeMap<String, (i128, u64)> = BTreeMap::new();
        for key in keys.into_iter().filter(|k| k.starts_with(&self.role_prefix)) {
            if let Some(entry) = bounded(self.store.entry(&key)).await?
                && entry.operation == Operation::Put
            {
                created.insert(key, (entry.created.unix_timestamp_nanos(), entry.revision));
            }
        }
        let reference = match created.get(&self.key) {
            Some((t, _)) => *t,
            None => created.values().map(|(t, _)| *t).max().unwrap_or_default(),
        };
        let expiry = i128::try_from(self.expiry.as_nanos()).unwrap_or(i128::MAX);
        let mut live = Vec::new();
        for (key, (t, revision)) in created {
            let age = reference.saturating_sub(t);
            let member = key.strip_prefix(&self.role_prefix).unwrap_or(&key).to_owned();
            if age <= expiry {
                live.push(member);
            } else if age > expiry.saturating_mul(i128::from(CLEANUP_EXPIRIES)) {
                // Long dead: remove it so the bucket does not grow with every restart. The
                // expected revision keeps a member that came back from being deleted.
                if let Err(e) = bounded(self.store.delete_expect_revision(&key, Some(revision))).await {
                    debug!(key = %key, cause = %e, "dead member entry not deleted");
                }
            }
        }
        Ok(live)
    }
}

/// Bounds one registry operation in time.
async fn bounded<T, E: Into<BusError>>(fut: impl Future<Output = Result<T, E>>) -> Result<T, BusError> {
    match tokio::time::timeout(KV_TIMEOUT, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(BusError::new(ErrorKind::Unavailable, "members bucket did not answer within 5 s")),
    }
}

/// The rendezvous owner of partition `p`: the member with the highest score for `p` (ties go
/// to the larger id). Every member computes the same owner from the same member list.
#[must_use]
pub fn rendezvous_owner(members: &[String], p: u32) -> Option<&str> {
    members.iter().map(|m| (score(m, p), m.as_str())).max().map(|(_, m)| m)
}

/// A well-mixed 64-bit score of (member, partition): FNV-1a over the member id and the
/// partition's bytes, then the splitmix64 finalizer.
fn score(member: &str, p: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain([0xff]).chain(p.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Creates or verifies the durable pull consumer of (`role`, partition `p`) on `stream`:
/// named `<role>-<p>`, filtered on `filter`, explicit acks, delivering from the start, with the
/// `PinnedClient` priority policy in group [`SHARE_GROUP`] and the given `priority_timeout`.
/// Pull it with `consumer.stream().group(SHARE_GROUP).expires(..).messages()`, with pulls
/// expiring well inside `priority_timeout` (`fetch`/`batch` refuse pinned consumers in 0.51).
///
/// # Errors
/// [`ErrorKind::Mismatch`] when the server does not keep the priority settings (too old) or
/// the existing consumer cannot be updated to them; [`ErrorKind::Invalid`] for a role that is
/// not a token; [`ErrorKind::Unavailable`].
pub async fn partition_consumer(
    bus: &Bus,
    stream: &str,
    role: &str,
    p: u32,
    filter: String,
    priority_timeout: Duration,
) -> Result<Consumer<pull::Config>, BusError> {
    if !is_token(role) {
        return Err(BusError::new(ErrorKind::Invalid, format!("invalid role {role:?}: must be a token")));
    }
    let name = format!("{role}-{p}");
    let config = pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: filter,
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        priority_policy: PriorityPolicy::PinnedClient,
        priority_groups: vec![SHARE_GROUP.to_owned()],
        priority_timeout,
        ..Default::default()
    };
    let handle = bus.js.get_stream_no_info(stream).await?;
    let consumer = match handle.create_consumer(config.clone()).await {
        Ok(c) => c,
        Err(e) => {
            let e = BusError::from(e);
            // An existing consumer with settings that cannot be changed in place.
            if handle.consumer_info(&name).await.is_ok() && e.kind() == ErrorKind::Other {
                return Err(BusError::new(ErrorKind::Mismatch, format!("consumer {stream}/{name} cannot be updated: {e}")));
            }
            return Err(e.context(format!("create consumer {stream}/{name}")));
        }
    };
    let echoed = &consumer.cached_info().config;
    let checks: [(&str, String, String); 4] = [
        ("filter_subject", config.filter_subject.clone(), echoed.filter_subject.clone()),
        ("priority_policy", format!("{:?}", config.priority_policy), format!("{:?}", echoed.priority_policy)),
        ("priority_groups", format!("{:?}", config.priority_groups), format!("{:?}", echoed.priority_groups)),
        ("priority_timeout", format!("{:?}", config.priority_timeout), format!("{:?}", echoed.priority_timeout)),
    ];
    if let Some((field, requested, got)) = checks.iter().find(|(_, r, g)| r != g) {
        return Err(BusError::new(
            ErrorKind::Mismatch,
            format!("consumer {stream}/{name}: the server reports {field} = {got} instead of {requested} (server too old?)"),
        ));
    }
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("worker-{i}")).collect()
    }

    #[test]
    fn rendezvous_owner_is_deterministic_and_order_free() {
        let a = ids(3);
        let mut b = a.clone();
        b.reverse();
        for p in 0..32 {
            assert_eq!(rendezvous_owner(&a, p), rendezvous_owner(&b, p));
        }
        assert_eq!(rendezvous_owner(&[], 3), None);
        assert_eq!(rendezvous_owner(&ids(1), 3), Some("worker-0"));
    }

    #[test]
    fn rendezvous_moves_only_the_dead_members_partitions() {
        let all = ids(4);
        let survivors: Vec<String> = all.iter().filter(|m| *m != "worker-2").cloned().collect();
        for p in 0..256 {
            let before = rendezvous_owner(&all, p).unwrap();
            let after = rendezvous_owner(&survivors, p).unwrap();
            if before != "worker-2" {
                assert_eq!(before, after, "partition {p} moved needlessly");
            }
        }
    }

    #[test]
    fn rendezvous_spreads_partitions_roughly_evenly() {
        let members = ids(4);
        let mut counts = [0u32; 4];
        for p in 0..1024 {
            let owner = rendezvous_owner(&members, p).unwrap();
            counts[members.iter().position(|m| m == owner).unwrap()] += 1;
        }
        for c in counts {
            assert!((180..=340).contains(&c), "uneven share {counts:?}");
        }
    }
}
