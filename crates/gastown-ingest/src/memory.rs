//! The heartbeat filter's durable per-agent memory M (DOMAIN §E5), in KV bucket
//! `<prefix>-ingest`, key `<town>.<agent>`, value = [`AgentMemory`] as MessagePack with named
//! fields.
//!
//! Every write is a compare-and-set on the revision last read ([`MemoryStore::store_cas`]):
//! create when absent, update on the revision otherwise. Writes come from the partition owner (E5
//! (i), (ii)) and from the command service when it appends `agent_registered` (E5 (iii),
//! [`MemoryStore::reset_for_registration`]), so a write may lose the race; the loser re-reads M and
//! runs its step again.
//!
//! The store also keeps an in-memory cache, agent → (M, revision), that the heartbeat consumer
//! reads and advances between store points (a filtered heartbeat changes `since_fwd`,
//! `last_alive_at` and `seq` without a write). [`MemoryStore::watch`] feeds every write of the
//! bucket into it, so the partition owner sees a registration reset as soon as it is stored. The
//! cache only ever moves to a newer revision; between two writes the owner may advance its entry
//! in place ([`MemoryStore::remember`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gastown_bus::{AgentId, Bus, BusError, ErrorKind, TownId, partition_of};
use gastown_core::codec::{from_msgpack, to_msgpack};
use gastown_core::heartbeat::AgentMemory;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::IngestError;

/// The KV bucket's short name (the bucket is `<prefix>-ingest`).
pub const BUCKET: &str = "ingest";

/// Most compare-and-set rounds [`MemoryStore::reset_for_registration`] tries before giving up.
const RESET_ATTEMPTS: usize = 16;

/// Longest pause between two attempts to re-open the bucket watch.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a memory read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The entry changed since it was read (a compare-and-set lost). Handling: re-read M and run
    /// the step again.
    #[error("memory of {key} changed since it was read")]
    Conflict {
        /// The KV key.
        key: String,
    },
    /// The bucket did not answer (timeout, no responders, connection lost, a publish that
    /// failed). Handling: back off and retry.
    #[error("memory bucket unavailable: {0}")]
    Unavailable(BusError),
    /// Anything else (an invalid key, an encoding failure, a missing bucket). Handling: log; the
    /// step cannot be stored.
    #[error("memory bucket: {0}")]
    Other(BusError),
}

impl MemoryError {
    /// Whether retrying after a pause can help.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Sorts a bus error on `key` by what the caller does next.
    fn from_bus(key: &str, err: BusError) -> Self {
        match err.kind() {
            ErrorKind::Conflict => Self::Conflict { key: key.to_owned() },
            ErrorKind::Unavailable | ErrorKind::Other => Self::Unavailable(err),
            ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::Mismatch | ErrorKind::Unsupported => Self::Other(err),
        }
    }
}

/// The KV key of an agent's memory: `<town>.<agent>`.
#[must_use]
pub fn key(town: &TownId, agent: &AgentId) -> String {
    format!("{}.{}", town.as_str(), agent.as_str())
}

/// Splits a key back into its ids; `None` for a key outside the grammar (never written by ingest).
#[must_use]
pub fn parse_key(key: &str) -> Option<(TownId, AgentId)> {
    let (town, agent) = key.split_once('.')?;
    Some((TownId::try_from(town).ok()?, AgentId::try_from(agent).ok()?))
}

/// Decodes a stored M. An undecodable value is logged and read as an agent never heard from: the
/// next store point overwrites it (on its revision).
fn decode(key: &str, value: &[u8]) -> AgentMemory {
    if value.is_empty() {
        return AgentMemory::default();
    }
    match from_msgpack::<AgentMemory>(value) {
        Ok(m) => m,
        Err(err) => {
            warn!(key, cause = %err, "undecodable ingest memory entry, read as an agent never heard from");
            AgentMemory::default()
        }
    }
}

/// The memory store: the KV bucket and the cache in front of it.
#[derive(Debug)]
pub struct MemoryStore {
    kv: kv::Store,
    cache: Mutex<HashMap<String, (AgentMemory, u64)>>,
}

impl MemoryStore {
    /// Opens (creating if needed) the bucket `<prefix>-ingest`.
    ///
    /// # Errors
    /// The bus could not create or open the bucket.
    pub async fn open(bus: &Bus) -> Result<Self, IngestError> {
        Ok(Self::from_store(bus.kv(BUCKET).await?))
    }

    /// A memory store over an opened bucket.
    #[must_use]
    pub fn from_store(kv: kv::Store) -> Self {
        Self { kv, cache: Mutex::new(HashMap::new()) }
    }

    /// Reads the stored M of an agent and its revision (0 = no entry: an agent never heard from).
    /// The cache moves to it when it is newer.
    ///
    /// # Errors
    /// [`MemoryError::Unavailable`] when the bucket does not answer.
    pub async fn load(&self, town: &TownId, agent: &AgentId) -> Result<(AgentMemory, u64), MemoryError> {
        let key = key(town, agent);
        let entry = self.kv.entry(key.clone()).await.map_err(|err| MemoryError::from_bus(&key, err.into()))?;
        let (m, revision) = match entry {
            None => (AgentMemory::default(), 0),
            Some(e) if matches!(e.operation, Operation::Delete | Operation::Purge) => (AgentMemory::default(), e.revision),
            Some(e) => (decode(&key, &e.value), e.revision),
        };
        self.offer(&key, &m, revision);
        Ok((m, revision))
    }

    /// Writes M by compare-and-set on `revision` (0: create, the key must be absent or deleted)
    /// and returns the new revision. The cache takes the written M.
    ///
    /// # Errors
    /// [`MemoryError::Conflict`] when the entry is no longer at `revision`;
    /// [`MemoryError::Unavailable`] when the bucket does not answer.
    pub async fn store_cas(&self, town: &TownId, agent: &AgentId, m: &AgentMemory, revision: u64) -> Result<u64, MemoryError> {
        let key = key(town, agent);
        let value = to_msgpack(m)
            .map_err(|err| MemoryError::Other(BusError::new(ErrorKind::Invalid, format!("encode the memory of {key}: {err}"))))?;
        let written = if revision == 0 {
            self.kv.create(&key, Bytes::from(value)).await.map_err(|err| MemoryError::from_bus(&key, err.into()))?
        } else {
            self.kv.update(&key, Bytes::from(value), revision).await.map_err(|err| MemoryError::from_bus(&key, err.into()))?
        };
        self.offer(&key, m, written);
        debug!(town = town.as_str(), agent = agent.as_str(), revision = written, "ingest memory stored");
        Ok(written)
    }

    /// E5 (iii): resets the agent's M to that of an agent never heard from, by a compare-and-set
    /// loop (create when absent). The command service calls it after appending
    /// `agent_registered`; the partition owner sees the reset through [`MemoryStore::watch`].
    ///
    /// # Errors
    /// The bucket did not answer, or the entry kept changing under the loop.
    pub async fn reset_for_registration(&self, town: &TownId, agent: &AgentId) -> Result<(), IngestError> {
        let mut last = None;
        for _ in 0..RESET_ATTEMPTS {
            let (mut m, revision) = self.load(town, agent).await?;
            m.reset_for_registration();
            match self.store_cas(town, agent, &m, revision).await {
                Ok(_) => return Ok(()),
                Err(err @ MemoryError::Conflict { .. }) => last = Some(err),
                Err(err) => return Err(err.into()),
            }
        }
        Err(last.unwrap_or_else(|| MemoryError::Conflict { key: key(town, agent) }).into())
    }

    /// The cached M of an agent and its revision, if any.
    #[must_use]
    pub fn cached(&self, town: &TownId, agent: &AgentId) -> Option<(AgentMemory, u64)> {
        self.cache.lock().ok()?.get(&key(town, agent)).cloned()
    }

    /// Keeps an M advanced in memory between store points (a filtered heartbeat) at `revision`,
    /// unless the cache has moved on to a newer revision meanwhile (a reset written elsewhere):
    /// returns whether it was kept.
    pub fn remember(&self, town: &TownId, agent: &AgentId, m: &AgentMemory, revision: u64) -> bool {
        let Ok(mut cache) = self.cache.lock() else { return false };
        let k = key(town, agent);
        match cache.get(&k) {
            Some((_, cached)) if *cached > revision => false,
            _ => {
                cache.insert(k, (m.clone(), revision));
                true
            }
        }
    }

    /// Drops the cache entries of partition `p` (of `partitions`), so the next read goes to the
    /// store: done when a partition is (re)acquired, since another instance may have advanced
    /// its agents meanwhile.
    pub fn forget_partition(&self, p: u32, partitions: u32) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|k, _| k.split_once('.').is_none_or(|(town, _)| partition_of(town, partitions) != p));
        }
    }

    /// Every agent with a stored M (keys outside the grammar are skipped).
    ///
    /// # Errors
    /// [`MemoryError::Unavailable`] when the bucket does not answer.
    pub async fn agents(&self) -> Result<Vec<(TownId, AgentId)>, MemoryError> {
        let keys = self.kv.keys().await.map_err(|err| {
            MemoryError::Unavailable(BusError::new(ErrorKind::Unavailable, format!("list the memory keys: {err}")))
        })?;
        let keys: Vec<String> = keys.try_collect().await.map_err(|err| {
            MemoryError::Unavailable(BusError::new(ErrorKind::Unavailable, format!("list the memory keys: {err}")))
        })?;
        Ok(keys.iter().filter_map(|k| parse_key(k)).collect())
    }

    /// Watches the bucket until `shutdown`, moving the cache to every newer write (own writes are
    /// already there; a reset by the command service replaces the owner's entry). A broken watch
    /// is re-opened with backoff; writes missed meanwhile surface as compare-and-set conflicts.
    pub async fn watch(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let watch = tokio::select! {
                () = shutdown.cancelled() => return,
                w = self.kv.watch_all() => w,
            };
            match watch {
                Ok(mut entries) => {
                    backoff = Duration::from_millis(100);
                    loop {
                        let next = tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = entries.next() => next,
                        };
                        match next {
                            Some(Ok(e)) => {
                                let m = match e.operation {
                                    Operation::Put => decode(&e.key, &e.value),
                                    Operation::Delete | Operation::Purge => AgentMemory::default(),
                                };
                                self.offer(&e.key, &m, e.revision);
                            }
                            Some(Err(err)) => {
                                warn!(cause = %err, "ingest memory watch failed, re-opening");
                                break;
                            }
                            None => {
                                warn!("ingest memory watch ended, re-opening");
                                break;
                            }
                        }
                    }
                }
                Err(err) => warn!(cause = %err, "cannot watch the ingest memory bucket, retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
        }
    }

    /// Moves the cache entry of `key` to (m, revision) when that is newer than what it holds.
    fn offer(&self, key: &str, m: &AgentMemory, revision: u64) {
        let Ok(mut cache) = self.cache.lock() else { return };
        match cache.get(key) {
            Some((_, cached)) if *cached >= revision => {}
            _ => {
                cache.insert(key.to_owned(), (m.clone(), revision));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_what_ingest_never_writes() {
        let town = TownId::try_from("t1").unwrap();
        let agent = AgentId::try_from("pc-1").unwrap();
        assert_eq!(key(&town, &agent), "t1.pc-1");
        assert_eq!(parse_key("t1.pc-1"), Some((town, agent)));
        assert_eq!(parse_key("t1"), None);
        assert_eq!(parse_key("t1.a.b"), None);
        assert_eq!(parse_key(&format!("t1.{}", "a".repeat(65))), None);
    }

    #[test]
    fn undecodable_values_read_as_an_agent_never_heard_from() {
        assert_eq!(decode("t1.a", b"\xc1\xff"), AgentMemory::default());
        assert_eq!(decode("t1.a", b""), AgentMemory::default());
        let m = AgentMemory { seq: 7, ..AgentMemory::default() };
        assert_eq!(decode("t1.a", &to_msgpack(&m).unwrap()), m);
    }
}
