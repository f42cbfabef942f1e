//! Appending town events (fenced), reading them back, and publishing actions
//! (ARCHITECTURE §4, §6).
//!
//! The fence is town-wide across the partition transform: the append to `<prefix>.evt.<town>`
//! carries `Nats-Expected-Last-Subject-Sequence: n` and
//! `Nats-Expected-Last-Subject-Sequence-Subject: <prefix>.evt.*.<town>`; the server refuses it
//! when another event of the town was stored after `n`. The server checks `Nats-Msg-Id` before
//! the fence, so an append may come back `duplicate` with the first copy's sequence.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures::StreamExt;
use gastown_core::Envelope;
use gastown_core::action::ActionMessage;
use gastown_core::codec::{Stored, decode_stored, to_msgpack};
use gastown_core::ids::{TownId, is_token};
use tracing::debug;

use crate::error::{BusError, ErrorKind};
use crate::headers;
use crate::setup::Bus;

/// Longest wait for the next message of a town read before giving up as unavailable.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to an append or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream sequence of the message (the first copy's, for a duplicate).
    pub seq: u64,
    /// The `Nats-Msg-Id` was seen within the duplicate window: nothing new was stored.
    pub duplicate: bool,
}

impl Bus {
    /// Appends a town event to `<prefix>.evt.<town>` with `Nats-Msg-Id` = the event id,
    /// `Gastown-Event` = its type, `Content-Type: application/msgpack` and `traceparent` when
    /// given. With `fence = Some(n)` the append succeeds only if `n` is the town's last stored
    /// sequence (0 = no event yet).
    ///
    /// # Errors
    /// [`ErrorKind::Conflict`] when the fence refuses the append (fold the newcomer and decide
    /// again); [`ErrorKind::Unavailable`] on timeout or no stream; [`ErrorKind::Invalid`] when
    /// the event cannot be encoded or is too large.
    pub async fn append_event(
        &self,
        town: &TownId,
        env: &Envelope,
        fence: Option<u64>,
        traceparent: Option<&str>,
    ) -> Result<Appended, BusError> {
        let payload = to_msgpack(env).map_err(|e| BusError::with_source(ErrorKind::Invalid, "encode event", e))?;
        let mut h = HeaderMap::new();
        h.insert(headers::NATS_MSG_ID, env.id.as_str());
        h.insert(headers::GASTOWN_EVENT, env.event_type());
        h.insert(headers::CONTENT_TYPE, headers::MSGPACK);
        if let Some(tp) = traceparent {
            h.insert(headers::TRACEPARENT, tp);
        }
        if let Some(n) = fence {
            h.insert(headers::EXPECTED_LAST_SUBJECT_SEQUENCE, n.to_string().as_str());
            h.insert(headers::EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT, self.names.evt_town_filter(town).as_str());
        }
        let subject = self.names.evt(town);
        let appended =
            self.publish(subject, h, payload.into()).await.map_err(|e| e.context(format!("append event to town {town}")))?;
        debug!(town = %town, seq = appended.seq, event_type = env.event_type(), duplicate = appended.duplicate, "event appended");
        Ok(appended)
    }

    /// The stored event at `seq` (direct get, falling back to the stream leader when a replica
    /// has not caught up), e.g. to check whether a `duplicate` answer is our own event.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no message has that sequence; [`ErrorKind::Unavailable`].
    pub async fn event_at(&self, seq: u64) -> Result<Stored, BusError> {
        let stream = self.events().await?;
        let payload = match stream.direct_get(seq).await.map_err(BusError::from) {
            Ok(m) => m.payload,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                stream.get_raw_message(seq).await.map_err(|e| BusError::from(e).context(format!("read event {seq}")))?.payload
            }
            Err(e) => return Err(e.context(format!("read event {seq}"))),
        };
        Ok(decode_stored(&payload))
    }

    /// Publishes an action message to `<prefix>.act.<town>.<type>` with `Nats-Msg-Id` =
    /// `<town>:<decision_seq>:<index>`, so a re-publish within the duplicate window is absorbed.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] for a town or type that is not a token; [`ErrorKind::Unavailable`].
    pub async fn publish_action(&self, msg: &ActionMessage, traceparent: Option<&str>) -> Result<Appended, BusError> {
        let town =
            TownId::try_from(msg.town.as_str()).map_err(|e| BusError::with_source(ErrorKind::Invalid, "publish action", e))?;
        if !is_token(&msg.action_type) {
            return Err(BusError::new(ErrorKind::Invalid, format!("publish action: invalid action type {:?}", msg.action_type)));
        }
        let payload = to_msgpack(msg).map_err(|e| BusError::with_source(ErrorKind::Invalid, "encode action", e))?;
        let mut h = HeaderMap::new();
        h.insert(headers::NATS_MSG_ID, format!("{town}:{}:{}", msg.decision_seq, msg.index).as_str());
        h.insert(headers::GASTOWN_ACTION, msg.action_type.as_str());
        h.insert(headers::CONTENT_TYPE, headers::MSGPACK);
        if let Some(tp) = traceparent {
            h.insert(headers::TRACEPARENT, tp);
        }
        let subject = self.names.act(&town, &msg.action_type);
        let published =
            self.publish(subject, h, payload.into()).await.map_err(|e| e.context(format!("publish action to town {town}")))?;
        debug!(town = %town, action_id = %msg.action_id, seq = published.seq, duplicate = published.duplicate, "action published");
        Ok(published)
    }

    /// Every stored event of `town` after `after_seq`, in order, as `(seq, Stored)`: read with
    /// an ordered, in-memory consumer filtered on `<prefix>.evt.*.<town>`, deleted afterwards.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the stream does not answer or stops delivering.
    pub async fn town_events(&self, town: &TownId, after_seq: u64) -> Result<Vec<(u64, Stored)>, BusError> {
        let last = self.town_last_seq(town).await?;
        if last <= after_seq {
            return Ok(Vec::new());
        }
        let stream = self.events().await?;
        let deliver_policy = if after_seq == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: after_seq.saturating_add(1) }
        };
        let config =
            pull::OrderedConfig { filter_subject: self.names.evt_town_filter(town), deliver_policy, ..Default::default() };
        let consumer =
            stream.create_consumer(config).await.map_err(|e| BusError::from(e).context(format!("read town {town}")))?;
        let name = consumer.cached_info().name.clone();
        let read = read_until(consumer, last).await.map_err(|e| e.context(format!("read town {town}")));
        // The consumer is in memory and expires on its own; deleting it frees the slot now.
        if let Err(e) = stream.delete_consumer(&name).await {
            debug!(town = %town, cause = %e, "ordered consumer not deleted");
        }
        read
    }

    /// The town's last stored sequence (0 = no event): the stream leader's last message on
    /// `<prefix>.evt.*.<town>`.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the stream does not answer.
    pub async fn town_last_seq(&self, town: &TownId) -> Result<u64, BusError> {
        match self
            .events()
            .await?
            .get_last_raw_message_by_subject(&self.names.evt_town_filter(town))
            .await
            .map_err(BusError::from)
        {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.context(format!("last sequence of town {town}"))),
        }
    }

    /// A handle on the EVENTS stream without a round trip.
    async fn events(&self) -> Result<Stream<()>, BusError> {
        Ok(self.js.get_stream_no_info(self.names.events_stream()).await?)
    }

    /// Publishes and waits for the stream's acknowledgement.
    async fn publish(&self, subject: String, headers: HeaderMap, payload: Bytes) -> Result<Appended, BusError> {
        let ack = self.js.publish_with_headers(subject, headers, payload).await?.await?;
        Ok(Appended { seq: ack.sequence, duplicate: ack.duplicate })
    }
}

/// Reads an ordered consumer until the message at `last` (or the end the server reports).
async fn read_until(
    consumer: async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>,
    last: u64,
) -> Result<Vec<(u64, Stored)>, BusError> {
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(READ_IDLE_TIMEOUT, messages.next())
            .await
            .map_err(|_| BusError::new(ErrorKind::Unavailable, "no event delivered within 10 s (stream leader unavailable?)"))?;
        let Some(msg) = next else {
            return Err(BusError::new(ErrorKind::Unavailable, "event delivery ended early"));
        };
        let msg = msg?;
        let info = msg.info().map_err(|e| BusError::with_source(ErrorKind::Other, "read message metadata", e))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        out.push((seq, decode_stored(&msg.payload)));
        if seq >= last || pending == 0 {
            return Ok(out);
        }
    }
}
