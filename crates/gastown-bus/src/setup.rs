//! Connecting, checking the server, and creating or verifying streams and buckets
//! (ARCHITECTURE §3, §9.9).
//!
//! A stream is compared with the configuration the server echoes back, because an old server
//! silently drops fields it does not know: an immutable difference (partition count or subject
//! transform, storage, retention, consumer cap) refuses to start, a mutable one is updated, and
//! a field the server does not keep after create or update is a [`ErrorKind::Mismatch`] too.

use std::fmt::Debug;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tracing::{info, warn};

use crate::error::{BusError, ErrorKind};
use crate::names::Names;

/// The oldest nats-server with subject delete markers, priority groups and town-wide fencing.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// The marker TTL of the HB stream: how long a `MaxAge` delete marker stays (it is itself
/// removed afterwards).
const HB_MARKER_TTL: Duration = Duration::from_secs(60);
/// The EVENTS stream's duplicate window (ARCHITECTURE §3).
const EVENTS_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);
/// The ACTIONS stream's duplicate window: long enough to absorb a takeover's re-publish.
const ACTIONS_DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The ACTIONS stream's retention: an outbox, not the truth.
const ACTIONS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deployment settings of the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct BusConfig {
    /// Every name derives from it.
    pub names: Names,
    /// Partitions of HB and EVENTS (the same for both); immutable once the streams exist.
    pub partitions: u32,
    /// Stream and bucket replicas: 1 locally, 3 in a cluster.
    pub replicas: usize,
    /// The HB stream's `max_age`: silence longer than this becomes a `MaxAge` marker
    /// (heartbeat_lost, 90 s; tests shorten it).
    pub hb_max_age: Duration,
    /// The EVENTS stream's explicit consumer cap (the server's default of 1000 counts debug
    /// and replay consumers too).
    pub max_consumers: i32,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            names: Names::default(),
            partitions: 32,
            replicas: 1,
            hb_max_age: Duration::from_secs(90),
            max_consumers: 4096,
        }
    }
}

/// A connection to NATS with the deployment's names and settings.
#[derive(Debug, Clone)]
pub struct Bus {
    /// The core client (request-reply, services).
    pub client: async_nats::Client,
    /// The JetStream context.
    pub js: jetstream::Context,
    /// The deployment's names (a copy of `config.names`).
    pub names: Names,
    /// The deployment's settings.
    pub config: BusConfig,
}

/// What [`Bus::ensure_streams`] did to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The stream did not exist and was created.
    Created,
    /// The stream existed with the requested settings; nothing was written.
    Verified,
    /// The stream existed and these mutable settings were updated.
    Updated(Vec<&'static str>),
}

impl Bus {
    /// Connects to `url` (one URL or several separated by commas, as in `NATS_URL`) and checks
    /// the server version.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the server cannot be reached, [`ErrorKind::Invalid`] for a
    /// bad URL, [`ErrorKind::Unsupported`] for a server older than 2.11.
    pub async fn connect(url: &str, config: BusConfig) -> Result<Bus, BusError> {
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BusError::with_source(ErrorKind::Invalid, format!("invalid NATS URL {url:?}"), e))?;
        let client = async_nats::ConnectOptions::new()
            .name(config.names.prefix())
            .connect(servers)
            .await
            .map_err(|e| BusError::from(e).context(format!("connect to {url}")))?;
        Bus::from_client(client, config)
    }

    /// Wraps a client the caller connected (credentials, TLS) and checks the server version.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] for a server older than 2.11 (or one that does not say).
    pub fn from_client(client: async_nats::Client, config: BusConfig) -> Result<Bus, BusError> {
        check_version(&client.server_info().version)?;
        let js = jetstream::new(client.clone());
        Ok(Bus { client, js, names: config.names.clone(), config })
    }

    /// Creates the HB, EVENTS and ACTIONS streams, or verifies them against the configuration:
    /// an immutable difference is a [`ErrorKind::Mismatch`], a mutable one is updated.
    ///
    /// # Errors
    /// [`ErrorKind::Mismatch`] naming the field and both values; [`ErrorKind::Unavailable`] when
    /// JetStream does not answer.
    pub async fn ensure_streams(&self) -> Result<Vec<(String, Ensured)>, BusError> {
        let mut done = Vec::with_capacity(3);
        for cfg in [self.hb_stream_config(), self.events_stream_config(), self.actions_stream_config()] {
            let name = cfg.name.clone();
            let ensured = self.ensure_stream(cfg).await?;
            done.push((name, ensured));
        }
        Ok(done)
    }

    /// Opens the KV bucket `<prefix>-<name>`, creating it (history 1, file storage, the
    /// configured replicas) when it does not exist.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when JetStream does not answer; [`ErrorKind::Invalid`] for a
    /// name that is not a bucket name.
    pub async fn kv(&self, name: &str) -> Result<kv::Store, BusError> {
        let bucket = self.names.bucket(name);
        match self.js.get_key_value(&bucket).await.map_err(BusError::from) {
            Ok(store) => return Ok(store),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.context(format!("open bucket {bucket}"))),
        }
        let config = kv::Config {
            bucket: bucket.clone(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        match self.js.create_key_value(config).await {
            Ok(store) => Ok(store),
            // Another process created it at the same moment, perhaps with other settings.
            Err(create) => self
                .js
                .get_key_value(&bucket)
                .await
                .map_err(|_| BusError::from(create).context(format!("create bucket {bucket}"))),
        }
    }

    /// `<PREFIX>_HB`: the latest heartbeat of each agent, partitioned by town, with a delete
    /// marker when an agent falls silent for `hb_max_age`.
    pub(crate) fn hb_stream_config(&self) -> stream::Config {
        let n = &self.names;
        stream::Config {
            name: n.hb_stream(),
            subjects: vec![n.hb_stream_subject()],
            subject_transform: Some(stream::SubjectTransform {
                source: n.hb_stream_subject(),
                destination: n.hb_transform_destination(self.config.partitions),
            }),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.config.replicas,
            max_messages_per_subject: 1,
            max_messages: -1,
            max_bytes: -1,
            max_age: self.config.hb_max_age,
            allow_message_ttl: true,
            subject_delete_marker_ttl: Some(HB_MARKER_TTL),
            ..Default::default()
        }
    }

    /// `<PREFIX>_EVENTS`: every town event, forever, partitioned by town.
    pub(crate) fn events_stream_config(&self) -> stream::Config {
        let n = &self.names;
        stream::Config {
            name: n.events_stream(),
            subjects: vec![n.evt_stream_subject()],
            subject_transform: Some(stream::SubjectTransform {
                source: n.evt_stream_subject(),
                destination: n.evt_transform_destination(self.config.partitions),
            }),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.config.replicas,
            duplicate_window: EVENTS_DUPLICATE_WINDOW,
            max_consumers: self.config.max_consumers,
            max_messages_per_subject: -1,
            max_messages: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// `<PREFIX>_ACTIONS`: the outbox of published actions, kept 7 days.
    pub(crate) fn actions_stream_config(&self) -> stream::Config {
        let n = &self.names;
        stream::Config {
            name: n.actions_stream(),
            subjects: vec![n.act_stream_subject()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.config.replicas,
            duplicate_window: ACTIONS_DUPLICATE_WINDOW,
            max_messages_per_subject: -1,
            max_messages: -1,
            max_bytes: -1,
            max_age: ACTIONS_MAX_AGE,
            ..Default::default()
        }
    }

    async fn ensure_stream(&self, requested: stream::Config) -> Result<Ensured, BusError> {
        let name = requested.name.clone();
        let current = match self.js.get_stream(&name).await.map_err(BusError::from) {
            Ok(s) => Some(s.cached_info().config.clone()),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e.context(format!("read stream {name}"))),
        };
        let Some(current) = current else {
            let info = self
                .js
                .create_stream(requested.clone())
                .await
                .map_err(|e| BusError::from(e).context(format!("create stream {name}")))?;
            refuse_dropped(&name, &requested, &info.cached_info().config, "create")?;
            info!(stream = %name, "stream created");
            return Ok(Ensured::Created);
        };
        let diffs = differences(&requested, &current);
        if let Some(d) = diffs.iter().find(|d| d.immutable) {
            return Err(BusError::new(
                ErrorKind::Mismatch,
                format!(
                    "stream {name}: immutable setting {} is {} on the server but {} is configured",
                    d.field, d.echoed, d.requested
                ),
            ));
        }
        if diffs.is_empty() {
            return Ok(Ensured::Verified);
        }
        let fields: Vec<&'static str> = diffs.iter().map(|d| d.field).collect();
        warn!(stream = %name, ?fields, "stream settings differ from the configuration; updating");
        let info = self
            .js
            .update_stream(requested.clone())
            .await
            .map_err(|e| BusError::from(e).context(format!("update stream {name}")))?;
        refuse_dropped(&name, &requested, &info.config, "update")?;
        Ok(Ensured::Updated(fields))
    }
}

/// A [`ErrorKind::Mismatch`] when the echoed configuration lacks a requested setting.
fn refuse_dropped(name: &str, requested: &stream::Config, echoed: &stream::Config, op: &str) -> Result<(), BusError> {
    match differences(requested, echoed).first() {
        None => Ok(()),
        Some(d) => Err(BusError::new(
            ErrorKind::Mismatch,
            format!(
                "stream {name}: after {op} the server reports {} = {} instead of {} (server too old or setting refused)",
                d.field, d.echoed, d.requested
            ),
        )),
    }
}

/// One setting that differs between the requested and the echoed stream configuration.
#[derive(Debug)]
struct Difference {
    field: &'static str,
    immutable: bool,
    requested: String,
    echoed: String,
}

/// The requested settings that the echoed configuration does not have.
fn differences(req: &stream::Config, got: &stream::Config) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut check = |field: &'static str, immutable: bool, r: &dyn Debug, g: &dyn Debug| {
        let (requested, echoed) = (format!("{r:?}"), format!("{g:?}"));
        if requested != echoed {
            out.push(Difference { field, immutable, requested, echoed });
        }
    };
    check("subject_transform", true, &req.subject_transform, &got.subject_transform);
    check("storage", true, &req.storage, &got.storage);
    check("retention", true, &req.retention, &got.retention);
    check("max_consumers", true, &norm(i64::from(req.max_consumers)), &norm(i64::from(got.max_consumers)));
    check("subjects", false, &req.subjects, &got.subjects);
    check("num_replicas", false, &req.num_replicas.max(1), &got.num_replicas.max(1));
    check("discard", false, &req.discard, &got.discard);
    check("max_age", false, &req.max_age, &got.max_age);
    check("max_msgs_per_subject", false, &norm(req.max_messages_per_subject), &norm(got.max_messages_per_subject));
    check("max_msgs", false, &norm(req.max_messages), &norm(got.max_messages));
    check("max_bytes", false, &norm(req.max_bytes), &norm(got.max_bytes));
    if !req.duplicate_window.is_zero() {
        check("duplicate_window", false, &req.duplicate_window, &got.duplicate_window);
    }
    check("allow_direct", false, &req.allow_direct, &got.allow_direct);
    check("allow_msg_ttl", false, &req.allow_message_ttl, &got.allow_message_ttl);
    check("subject_delete_marker_ttl", false, &req.subject_delete_marker_ttl, &got.subject_delete_marker_ttl);
    out
}

/// The server writes "no limit" as -1; 0 in a request means the same.
fn norm(v: i64) -> i64 {
    if v <= 0 { -1 } else { v }
}

/// Refuses servers older than [`MIN_SERVER_VERSION`].
fn check_version(version: &str) -> Result<(), BusError> {
    let mut parts = version.split(['.', '-']).map(str::parse::<u64>);
    let parsed = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
        _ => None,
    };
    match parsed {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(()),
        _ => Err(BusError::new(
            ErrorKind::Unsupported,
            format!(
                "nats-server {version:?} is too old: gastown needs nats-server >= {}.{} (subject delete markers, priority groups, fenced appends across partitions)",
                MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_2_11_are_refused() {
        for ok in ["2.11.0", "2.15.1", "2.11.0-RC.1", "3.0.0", "2.12"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for old in ["2.9.10", "2.10.25", "1.4.0", "", "x.y"] {
            assert_eq!(check_version(old).unwrap_err().kind(), ErrorKind::Unsupported, "{old}");
        }
    }

    #[test]
    fn unlimited_values_compare_equal() {
        let mut a = stream::Config { max_bytes: 0, max_messages: -1, ..Default::default() };
        let b = stream::Config { max_bytes: -1, max_messages: 0, max_consumers: -1, ..Default::default() };
        assert!(differences(&a, &b).is_empty());
        a.max_age = Duration::from_secs(3);
        let d = differences(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "max_age");
        assert!(!d[0].immutable);
    }
}
