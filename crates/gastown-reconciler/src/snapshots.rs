//! Town snapshots (ARCHITECTURE §3, §9.4): a town's folded state stored in the object store
//! `<prefix>-snapshots` as object `<town>.<seq>` (MessagePack with named fields, chunked by the
//! store), and listed in KV `<prefix>-snapshot-index` under key `<town>` as a JSON array of
//! [`SnapshotEntry`] (seq covered, town clock, `published_through`, core schema version, object
//! name), oldest first.
//!
//! The index keeps a bounded history per town, [`thin`]ned so that old snapshots stay spread out:
//! the newest few and the oldest are always kept, and among the others the one whose removal
//! leaves the smallest gap goes first, so the spacing grows towards the past. The index is
//! updated by compare-and-set: two workers may write during a handover, and a writer that loses
//! re-reads the index and merges its entry in again, so both entries end up listed. Objects
//! dropped from the index are deleted after the index update succeeded.
//!
//! A snapshot of another schema version is never loaded: [`SnapshotStore::load_latest`] skips it,
//! as well as one whose object is missing or does not decode, and tries the next older one; with
//! none left the caller folds from the first event.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use gastown_bus::{Bus, BusError, ErrorKind, TownId};
use gastown_core::TownState;
use gastown_core::codec::{self, CodecError};
use gastown_core::debug::SnapshotRef;
use gastown_core::state::SCHEMA_VERSION;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

/// The bucket suffix of the object store: `<prefix>-snapshots`.
pub const SNAPSHOTS_BUCKET: &str = "snapshots";
/// The bucket suffix of the index: `<prefix>-snapshot-index`.
pub const INDEX_BUCKET: &str = "snapshot-index";
/// The default number of snapshots kept per town.
pub const DEFAULT_HISTORY: usize = 8;
/// The newest snapshots [`thin`] never drops (at most half the history).
pub const RECENT_KEPT: usize = 3;
/// The largest snapshot object read back; a larger one is skipped (it cannot be ours).
pub const MAX_SNAPSHOT_BYTES: u64 = 512 * 1024 * 1024;
/// How often a save retries its index update after losing a compare-and-set.
const INDEX_ATTEMPTS: u32 = 16;
/// Bound on writing or reading one object (several MB move in well under a second locally).
const OBJECT_TIMEOUT: Duration = Duration::from_secs(60);

/// One kept snapshot of a town, as listed in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The last event sequence folded into the snapshot: a fold resumes after it.
    pub seq: u64,
    /// The state's clock: replay picks the latest snapshot whose clock is before `from`.
    pub clock: i64,
    /// The outbox position when the snapshot was written (decisions up to it were published).
    pub published_through: u64,
    /// The core schema version of the stored state: another version is never loaded.
    pub schema: u32,
    /// The object's name in `<prefix>-snapshots`: `<town>.<seq>`.
    pub object: String,
}

impl SnapshotEntry {
    /// The entry as `gastown_core::debug::replay_base_choice` sees it.
    #[must_use]
    pub fn base_ref(&self) -> SnapshotRef {
        SnapshotRef { seq: self.seq, clock: self.clock }
    }
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The object store or the index failed. Handling: by [`BusError::kind`]: `Unavailable` =
    /// back off and retry; `Conflict` = the index kept changing under this writer (retry later);
    /// a failed save never harms correctness (the events are the truth), a failed load can fall
    /// back to folding from the first event.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The state could not be encoded (none of the core's types fails). Handling: log; the
    /// town keeps running without this snapshot.
    #[error("encode snapshot of town {town}: {source}")]
    Encode {
        /// The town.
        town: String,
        /// The codec's error.
        source: CodecError,
    },
    /// The caller passed a state that cannot be saved under this town (another town's state, or
    /// a town without events). Handling: a bug of the caller; log it.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
}

impl SnapshotError {
    /// What the caller does next, in the bus's terms.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::Bus(e) => e.kind(),
            SnapshotError::Encode { .. } => ErrorKind::Other,
            SnapshotError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// The object store and the index of town snapshots. Cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    objects: object_store::ObjectStore,
    /// The object store's stream, to purge the tombstone left by deleting an object.
    stream: jetstream::stream::Stream,
    bucket: String,
    index: kv::Store,
    history: usize,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore").field("bucket", &self.bucket).field("history", &self.history).finish_non_exhaustive()
    }
}

/// The object name of a town's snapshot at `seq`: `<town>.<seq>` (a valid object name, since a
/// town id is a token).
#[must_use]
pub fn object_name(town: &TownId, seq: u64) -> String {
    format!("{}.{seq}", town.as_str())
}

impl SnapshotStore {
    /// Creates or opens the object store `<prefix>-snapshots` (file storage, the bus's replicas)
    /// and the index bucket `<prefix>-snapshot-index`; keeps `history` snapshots per town (at
    /// least 1).
    ///
    /// # Errors
    /// [`SnapshotError::Bus`] when the broker refuses or does not answer.
    pub async fn open(bus: &Bus, history: usize) -> Result<SnapshotStore, SnapshotError> {
        let bucket = bus.names.bucket(SNAPSHOTS_BUCKET);
        let objects = match bus.js.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                let config = object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("town snapshots (ARCHITECTURE §9.4)".to_owned()),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: bus.config.replicas,
                    ..Default::default()
                };
                match bus.js.create_object_store(config).await {
                    Ok(store) => store,
                    // Another process created it at the same moment, perhaps with other settings.
                    Err(create) => bus.js.get_object_store(&bucket).await.map_err(|_| {
                        let kind = match create.kind() {
                            jetstream::context::CreateKeyValueErrorKind::TimedOut => ErrorKind::Unavailable,
                            jetstream::context::CreateKeyValueErrorKind::InvalidStoreName => ErrorKind::Invalid,
                            _ => ErrorKind::Other,
                        };
                        BusError::with_source(kind, format!("create object store {bucket}"), create)
                    })?,
                }
            }
        };
        let stream = bus.js.get_stream(format!("OBJ_{bucket}")).await.map_err(BusError::from)?;
        let index = bus.kv(INDEX_BUCKET).await?;
        Ok(SnapshotStore { objects, stream, bucket, index, history: history.max(1) })
    }

    /// How many snapshots are kept per town.
    #[must_use]
    pub fn history(&self) -> usize {
        self.history
    }

    /// Writes `state` as object `<town>.<state.last_seq>` (MessagePack, named fields) and adds it
    /// to the town's index (bounded history, thinned so old ones stay spread out); objects the
    /// index no longer lists are deleted. Saving a listed sequence again writes nothing (only a
    /// greater `published_through` is recorded, or the object again if it went missing). Returns
    /// the entry as listed.
    ///
    /// # Errors
    /// [`SnapshotError::Invalid`] for another town's state or a town without events;
    /// [`SnapshotError::Encode`]; [`SnapshotError::Bus`] when the broker fails or the index kept
    /// changing for 16 rounds (kind `Conflict`).
    pub async fn save(&self, town: &TownId, state: &TownState, published_through: u64) -> Result<SnapshotEntry, SnapshotError> {
        if state.town_id != town.as_str() {
            return Err(SnapshotError::Invalid(format!("state of town {} saved under town {town}", state.town_id)));
        }
        if !state.exists() {
            return Err(SnapshotError::Invalid(format!("town {town} has no events to snapshot")));
        }
        let seq = state.last_seq;
        let mut entry =
            SnapshotEntry { seq, clock: state.clock, published_through, schema: state.schema, object: object_name(town, seq) };
        let (mut current, mut revision) = self.read_index(town).await?;
        let listed = current.iter().find(|e| e.seq == seq && e.schema == entry.schema && e.object == entry.object).cloned();
        let present = match &listed {
            Some(listed) => self.object_exists(&listed.object).await?,
            None => false,
        };
        match listed {
            _ if !present => self.put_object(town, &entry.object, state).await?,
            Some(listed) if listed.published_through >= published_through => {
                debug!(town = %town, seq, "snapshot already saved");
                return Ok(listed);
            }
            // Listed with an older outbox position: the object is there, only the entry changes.
            _ => {}
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut merged = current.clone();
            merge(&mut merged, entry.clone());
            thin(&mut merged, self.history);
            if let Some(listed) = merged.iter().find(|e| e.seq == seq) {
                entry = listed.clone();
            }
            let written = if merged == current { Ok(()) } else { self.write_index(town, &merged, revision).await };
            match written {
                Ok(()) => {
                    // Objects listed before (or just written) that the index no longer lists.
                    let mut dropped: Vec<&str> = current.iter().map(|e| e.object.as_str()).collect();
                    dropped.push(&entry.object);
                    dropped.retain(|o| !merged.iter().any(|e| e.object == *o));
                    dropped.sort_unstable();
                    dropped.dedup();
                    for object in dropped {
                        self.delete_object(town, object).await;
                    }
                    debug!(town = %town, seq, kept = merged.len(), "snapshot saved");
                    return Ok(entry);
                }
                Err(e) if e.kind() == ErrorKind::Conflict && attempt < INDEX_ATTEMPTS => {
                    debug!(town = %town, seq, attempt, "snapshot index changed; merging again");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
                    (current, revision) = self.read_index(town).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The latest snapshot of the current schema (when `before` is given: the latest whose clock
    /// is strictly before it), decoded. Entries of another schema are ignored; one whose object
    /// is missing or does not decode is skipped with a warning and the next older one is tried.
    /// `None`: fold from the first event.
    ///
    /// # Errors
    /// [`SnapshotError::Bus`] when the broker fails (not for a missing object).
    pub async fn load_latest(
        &self,
        town: &TownId,
        before: Option<i64>,
    ) -> Result<Option<(SnapshotEntry, TownState)>, SnapshotError> {
        let (entries, _) = self.read_index(town).await?;
        for entry in entries.iter().rev() {
            if entry.schema != SCHEMA_VERSION {
                debug!(town = %town, seq = entry.seq, schema = entry.schema, "snapshot of another schema ignored");
                continue;
            }
            if before.is_some_and(|b| entry.clock >= b) {
                continue;
            }
            let bytes = match self.read_object(&entry.object).await? {
                Ok(bytes) => bytes,
                Err(reason) => {
                    warn!(town = %town, seq = entry.seq, object = %entry.object, reason = %reason, "snapshot skipped");
                    continue;
                }
            };
            match codec::from_msgpack::<TownState>(&bytes) {
                Ok(state) if state.schema == SCHEMA_VERSION && state.last_seq == entry.seq && state.town_id == town.as_str() => {
                    return Ok(Some((entry.clone(), state)));
                }
                Ok(state) => warn!(
                    town = %town, seq = entry.seq, object = %entry.object,
                    state_town = %state.town_id, state_seq = state.last_seq, state_schema = state.schema,
                    "snapshot skipped: its state does not match its entry"
                ),
                Err(e) => {
                    warn!(town = %town, seq = entry.seq, object = %entry.object, cause = %e, "snapshot skipped: it does not decode")
                }
            }
        }
        Ok(None)
    }

    /// The town's kept snapshots of every schema, oldest first.
    ///
    /// # Errors
    /// [`SnapshotError::Bus`] when the broker fails.
    pub async fn entries(&self, town: &TownId) -> Result<Vec<SnapshotEntry>, SnapshotError> {
        Ok(self.read_index(town).await?.0)
    }

    /// The town's index, oldest first, with its revision (`None` = no key yet). An index that
    /// does not decode counts as empty (it is replaced on the next save).
    async fn read_index(&self, town: &TownId) -> Result<(Vec<SnapshotEntry>, Option<u64>), BusError> {
        let Some(stored) = self.index.entry(town.as_str()).await.map_err(BusError::from)? else {
            return Ok((Vec::new(), None));
        };
        let mut entries = if stored.operation == kv::Operation::Put {
            serde_json::from_slice::<Vec<SnapshotEntry>>(&stored.value).unwrap_or_else(|e| {
                warn!(town = %town, cause = %e, "snapshot index does not decode; treated as empty");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        entries.sort_by_key(|e| e.seq);
        Ok((entries, Some(stored.revision)))
    }

    /// Compare-and-set of the town's index: `Conflict` when it changed since `revision`.
    async fn write_index(&self, town: &TownId, entries: &[SnapshotEntry], revision: Option<u64>) -> Result<(), BusError> {
        let value = serde_json::to_vec(entries)
            .map_err(|e| BusError::with_source(ErrorKind::Other, format!("encode snapshot index of town {town}"), e))?;
        match revision {
            None => self.index.create(town.as_str(), value.into()).await.map(|_| ()).map_err(BusError::from),
            Some(r) => self.index.update(town.as_str(), value.into(), r).await.map(|_| ()).map_err(BusError::from),
        }
    }

    async fn put_object(&self, town: &TownId, object: &str, state: &TownState) -> Result<(), SnapshotError> {
        let bytes = codec::to_msgpack(state).map_err(|source| SnapshotError::Encode { town: town.to_string(), source })?;
        let meta = object_store::ObjectMetadata {
            name: object.to_owned(),
            description: Some(format!("town {town} state at seq {}", state.last_seq)),
            metadata: HashMap::from([
                ("town".to_owned(), town.to_string()),
                ("seq".to_owned(), state.last_seq.to_string()),
                ("schema".to_owned(), state.schema.to_string()),
            ]),
            ..Default::default()
        };
        let size = bytes.len();
        let mut reader = bytes.as_slice();
        let put = self.objects.put(meta, &mut reader);
        match tokio::time::timeout(OBJECT_TIMEOUT, put).await {
            Ok(Ok(_)) => {
                debug!(town = %town, seq = state.last_seq, bytes = size, "snapshot object written");
                Ok(())
            }
            Ok(Err(e)) => Err(put_error(object, e).into()),
            Err(_) => Err(BusError::new(ErrorKind::Unavailable, format!("write snapshot object {object}: timed out")).into()),
        }
    }

    /// Whether the object is stored (and not deleted).
    async fn object_exists(&self, object: &str) -> Result<bool, BusError> {
        use object_store::InfoErrorKind as K;
        match tokio::time::timeout(OBJECT_TIMEOUT, self.objects.info(object)).await {
            Ok(Ok(info)) => Ok(!info.deleted),
            Ok(Err(e)) if e.kind() == K::NotFound => Ok(false),
            Ok(Err(e)) => {
                let kind = if e.kind() == K::TimedOut { ErrorKind::Unavailable } else { ErrorKind::Other };
                Err(BusError::with_source(kind, format!("look up snapshot object {object}"), e))
            }
            Err(_) => Err(BusError::new(ErrorKind::Unavailable, format!("look up snapshot object {object}: timed out"))),
        }
    }

    /// The object's bytes; `Ok(Err(reason))` when it is missing, too large or corrupt (the caller
    /// skips it), `Err` when the broker fails.
    async fn read_object(&self, object: &str) -> Result<Result<Vec<u8>, String>, BusError> {
        use object_store::GetErrorKind as K;
        let read = async {
            let mut found = match self.objects.get(object).await {
                Ok(found) => found,
                Err(e) if e.kind() == K::NotFound => return Ok(Err("object missing".to_owned())),
                Err(e) => {
                    let kind = match e.kind() {
                        K::TimedOut => ErrorKind::Unavailable,
                        K::InvalidName => ErrorKind::Invalid,
                        _ => ErrorKind::Other,
                    };
                    return Err(BusError::with_source(kind, format!("read snapshot object {object}"), e));
                }
            };
            let size = u64::try_from(found.info().size).unwrap_or(u64::MAX);
            if size > MAX_SNAPSHOT_BYTES {
                return Ok(Err(format!("object of {size} bytes exceeds {MAX_SNAPSHOT_BYTES}")));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            match (&mut found).take(MAX_SNAPSHOT_BYTES).read_to_end(&mut bytes).await {
                Ok(_) => Ok(Ok(bytes)),
                // A wrong digest, missing chunks or a broken subscription: unusable now.
                Err(e) => Ok(Err(format!("object unreadable: {e}"))),
            }
        };
        match tokio::time::timeout(OBJECT_TIMEOUT, read).await {
            Ok(result) => result,
            Err(_) => Ok(Err("object read timed out".to_owned())),
        }
    }

    /// Deletes an object the index no longer lists, and the tombstone the delete leaves (so
    /// the store holds nothing for it). Best effort: a failure leaves an orphan and a warning.
    async fn delete_object(&self, town: &TownId, object: &str) {
        use object_store::DeleteErrorKind as K;
        let deleted = match tokio::time::timeout(OBJECT_TIMEOUT, self.objects.delete(object)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == K::NotFound => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        let purged = match deleted {
            Ok(()) => {
                let meta = format!("$O.{}.M.{}", self.bucket, base64_url(object.as_bytes()));
                match tokio::time::timeout(OBJECT_TIMEOUT, self.stream.purge().filter(meta)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
            Err(e) => Err(e),
        };
        match purged {
            Ok(()) => debug!(town = %town, object, "snapshot object deleted"),
            Err(cause) => warn!(town = %town, object, cause = %cause, "could not delete a dropped snapshot object"),
        }
    }
}

fn put_error(object: &str, e: object_store::PutError) -> BusError {
    use object_store::PutErrorKind as K;
    let kind = match e.kind() {
        K::InvalidName => ErrorKind::Invalid,
        K::TimedOut | K::PublishChunks | K::PublishMetadata => ErrorKind::Unavailable,
        K::ReadChunks | K::PurgeOldChunks | K::Other => ErrorKind::Other,
    };
    BusError::with_source(kind, format!("write snapshot object {object}"), e)
}

/// Adds `entry` to `entries`: an entry of the same sequence is replaced when the schema differs,
/// and otherwise keeps the greater `published_through`.
fn merge(entries: &mut Vec<SnapshotEntry>, entry: SnapshotEntry) {
    match entries.iter_mut().find(|e| e.seq == entry.seq) {
        Some(listed) if listed.schema != entry.schema => *listed = entry,
        Some(listed) => listed.published_through = listed.published_through.max(entry.published_through),
        None => entries.push(entry),
    }
}

/// Bounds `entries` to `keep` (at least 1), sorted by sequence, one per sequence (the greatest
/// `published_through`). The newest `keep / 2` (at most [`RECENT_KEPT`], at least 1) and the
/// oldest are always kept; while too many remain, the one among the others whose removal leaves
/// the smallest gap (in sequences) between its neighbours goes, the older on a tie. Snapshots
/// written at a steady pace thus end up spaced more widely the older they are: recent ones for
/// a quick fold, old ones for replay and as fallbacks.
pub fn thin(entries: &mut Vec<SnapshotEntry>, keep: usize) {
    entries.sort_by(|a, b| a.seq.cmp(&b.seq).then(b.published_through.cmp(&a.published_through)));
    entries.dedup_by_key(|e| e.seq);
    let keep = keep.max(1);
    if keep == 1 {
        let excess = entries.len().saturating_sub(1);
        entries.drain(..excess);
        return;
    }
    let recent = (keep / 2).clamp(1, RECENT_KEPT);
    while entries.len() > keep {
        // keep >= 2 and recent <= keep / 2, so at least one entry lies between the oldest and
        // the protected newest ones.
        let protected_from = entries.len().saturating_sub(recent);
        let gap = |i: usize| match (i.checked_sub(1).and_then(|p| entries.get(p)), entries.get(i + 1)) {
            (Some(prev), Some(next)) => next.seq.saturating_sub(prev.seq),
            _ => u64::MAX,
        };
        let Some(victim) = (1..protected_from).min_by_key(|&i| gap(i)) else {
            return;
        };
        entries.remove(victim);
    }
}

/// Base64 with the URL-safe alphabet and padding: how the object store encodes an object's name
/// in its metadata subject.
fn base64_url(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let char_at = |v: u32| ALPHABET.get((v & 63) as usize).map_or('=', |&b| char::from(b));
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = chunk.first().copied().map_or(0, u32::from);
        let b1 = chunk.get(1).copied().map_or(0, u32::from);
        let b2 = chunk.get(2).copied().map_or(0, u32::from);
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(char_at(n >> 18));
        out.push(char_at(n >> 12));
        out.push(if chunk.len() > 1 { char_at(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { char_at(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> SnapshotEntry {
        SnapshotEntry {
            seq,
            clock: i64::try_from(seq).unwrap() * 1000,
            published_through: seq,
            schema: SCHEMA_VERSION,
            object: format!("t1.{seq}"),
        }
    }

    fn seqs(entries: &[SnapshotEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    /// Appends snapshots every `step` events up to `n` of them, thinning after each as a save does.
    fn steady(n: u64, step: u64, keep: usize) -> Vec<SnapshotEntry> {
        let mut kept = Vec::new();
        for k in 1..=n {
            merge(&mut kept, entry(k * step));
            thin(&mut kept, keep);
        }
        kept
    }

    #[test]
    fn thin_keeps_everything_within_the_bound_sorted_and_once_per_seq() {
        let mut e = vec![entry(30), entry(10), entry(20), SnapshotEntry { published_through: 99, ..entry(20) }];
        thin(&mut e, 8);
        assert_eq!(seqs(&e), [10, 20, 30]);
        assert_eq!(e[1].published_through, 99, "the greater outbox position wins");
    }

    #[test]
    fn thin_keeps_the_oldest_and_the_newest_three() {
        let kept = steady(40, 500, 8);
        assert_eq!(kept.len(), 8);
        let s = seqs(&kept);
        assert_eq!(s[0], 500, "the oldest stays");
        assert_eq!(s[5..], [19_000, 19_500, 20_000], "the newest three stay");
    }

    #[test]
    fn thin_keeps_old_snapshots_spread_over_the_whole_history() {
        for n in 9..=600 {
            let s = seqs(&steady(n, 1, 8));
            assert_eq!(s.len(), 8);
            assert_eq!(s[0], 1, "after {n} saves the oldest stays");
            assert_eq!(s[5..], [n - 2, n - 1, n], "after {n} saves the newest three stay");
            // The five older ones (and the first recent one) split the history almost evenly.
            let even = (s[5] - s[0]) / 5;
            let widest = s[..6].windows(2).map(|w| w[1] - w[0]).max().unwrap();
            assert!(widest <= 2 * even + 1, "after {n} saves the spacing is uneven: {s:?}");
        }
    }

    #[test]
    fn thin_to_one_keeps_the_newest_and_zero_counts_as_one() {
        let mut e = vec![entry(1), entry(2), entry(3)];
        thin(&mut e, 1);
        assert_eq!(seqs(&e), [3]);
        let mut e = vec![entry(1), entry(2)];
        thin(&mut e, 0);
        assert_eq!(seqs(&e), [2]);
    }

    #[test]
    fn thin_to_two_keeps_the_oldest_and_the_newest() {
        let mut e = vec![entry(1), entry(2), entry(3), entry(4)];
        thin(&mut e, 2);
        assert_eq!(seqs(&e), [1, 4]);
    }

    #[test]
    fn thin_drops_the_entry_whose_removal_leaves_the_smallest_gap() {
        // keep 5: the newest two (61, 62) stay; removing 20 leaves a gap of 30, 40 one of 40,
        // 60 one of 21.
        let mut e = vec![entry(10), entry(20), entry(40), entry(60), entry(61), entry(62)];
        thin(&mut e, 5);
        assert_eq!(seqs(&e), [10, 20, 40, 61, 62]);
    }

    #[test]
    fn merge_replaces_another_schema_and_keeps_the_greater_outbox_position() {
        let mut e = vec![entry(5)];
        merge(&mut e, SnapshotEntry { published_through: 1, ..entry(5) });
        assert_eq!(e, [entry(5)]);
        merge(&mut e, SnapshotEntry { published_through: 9, ..entry(5) });
        assert_eq!(e[0].published_through, 9);
        merge(&mut e, SnapshotEntry { schema: SCHEMA_VERSION + 1, published_through: 2, ..entry(5) });
        assert_eq!(e[0].schema, SCHEMA_VERSION + 1);
    }

    #[test]
    fn base64_url_matches_the_standard_with_padding() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg==");
        assert_eq!(base64_url(b"fo"), "Zm8=");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(b"t1.500"), "dDEuNTAw");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8=");
    }

    #[test]
    fn object_names_are_town_dot_seq() {
        let town = TownId::try_from("town-7").unwrap();
        assert_eq!(object_name(&town, 500), "town-7.500");
    }

    #[test]
    fn the_index_is_a_json_array_with_named_fields() {
        let json = serde_json::to_value(vec![entry(7)]).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"seq": 7, "clock": 7000, "published_through": 7, "schema": SCHEMA_VERSION, "object": "t1.7"}])
        );
    }
}
