//! The bus error: a kind the caller branches on, and a lowercase message that says what failed.
//!
//! Every async-nats error is translated here, once, with `From`; no async-nats type leaks out.
//! Server API errors are classified by their JetStream error code, client errors by their kind
//! (`PublishErrorKind::WrongLastSequence` is a [`ErrorKind::Conflict`]; the R3 refusal 10164,
//! which async-nats 0.51 does not name, is matched on the server error's code).

use std::error::Error as StdError;
use std::fmt;

use async_nats::jetstream::{self, ErrorCode};

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A fenced append was refused (the server's "wrong last sequence", 10071 on R1, 10164 on
    /// R3), or a duplicate that is not ours. Handling: fold the newcomer and decide again.
    Conflict,
    /// The broker is unreachable, timed out, has no responders or JetStream is not ready.
    /// Handling: back off and retry (a command answers 503).
    Unavailable,
    /// Bad input (ids, prefix, payload). Handling: answer 400 or drop with a reason; never retry.
    Invalid,
    /// A stream, consumer, key or message is missing. Handling: depends on the caller.
    NotFound,
    /// An immutable stream or consumer setting differs from the requested one, or the server
    /// dropped a setting it does not know. Handling: refuse to start.
    Mismatch,
    /// The server is older than 2.11. Handling: refuse to start with the message.
    Unsupported,
    /// Anything else. Handling: log and retry later, or give up.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not found",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        })
    }
}

/// An error of the bus. `Display` is the message followed by the cause, if any (the cause is
/// shown inside the message, so `source()` is empty; STYLE §4).
pub struct BusError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl BusError {
    /// An error of `kind` with `message` (lowercase, no trailing period).
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BusError { kind, message: message.into(), source: None }
    }

    /// An error of `kind` caused by `source`.
    #[must_use]
    pub fn with_source(kind: ErrorKind, message: impl Into<String>, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        BusError { kind, message: message.into(), source: Some(source.into()) }
    }

    /// What the caller does next.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `what` (e.g. `append to gastown.evt.t1`) put before its message.
    #[must_use]
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = if self.message.is_empty() { what.to_string() } else { format!("{what}: {}", self.message) };
        self
    }

    /// A translated async-nats error: `kind`, with the client's error as the cause.
    fn nats<E: StdError + Send + Sync + 'static>(kind: ErrorKind, err: E) -> Self {
        BusError { kind, message: String::new(), source: Some(Box::new(err)) }
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.message.is_empty()) {
            (Some(src), true) => write!(f, "{src}"),
            (Some(src), false) => write!(f, "{}: {src}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for BusError {}

/// The kind of a JetStream API error, by its code.
pub(crate) fn api_kind(err: &jetstream::Error) -> ErrorKind {
    match err.error_code() {
        ErrorCode::STREAM_WRONG_LAST_SEQUENCE | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT => ErrorKind::Conflict,
        ErrorCode::STREAM_NOT_FOUND | ErrorCode::CONSUMER_NOT_FOUND | ErrorCode::NO_MESSAGE_FOUND => ErrorKind::NotFound,
        ErrorCode::CLUSTER_NOT_AVAILABLE
        | ErrorCode::JETSTREAM_NOT_ENABLED
        | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
        | ErrorCode::STREAM_OFFLINE
        | ErrorCode::STREAM_OFFLINE_REASON
        | ErrorCode::CONSUMER_OFFLINE
        | ErrorCode::INSUFFICIENT_RESOURCES => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// The kind of an error found in the cause chain of `err` (async-nats puts unnamed server
/// errors, such as 10164, and wrapped request errors in the source of a generic kind).
fn chain_kind(err: &(dyn StdError + 'static)) -> ErrorKind {
    use jetstream::context::{CreateStreamErrorKind as C, GetStreamErrorKind as G, RequestErrorKind as R};
    let mut next = err.source();
    while let Some(e) = next {
        let kind = if let Some(e) = e.downcast_ref::<jetstream::Error>() {
            api_kind(e)
        } else if let Some(e) = e.downcast_ref::<jetstream::context::RequestError>() {
            match e.kind() {
                R::NoResponders | R::TimedOut => ErrorKind::Unavailable,
                R::InvalidSubject => ErrorKind::Invalid,
                R::Other => ErrorKind::Other,
            }
        } else if let Some(e) = e.downcast_ref::<jetstream::context::GetStreamError>() {
            match e.kind() {
                G::JetStream(api) => api_kind(&api),
                G::EmptyName | G::InvalidStreamName | G::Request => ErrorKind::Other,
            }
        } else if let Some(e) = e.downcast_ref::<jetstream::context::CreateStreamError>() {
            match e.kind() {
                C::JetStream(api) => api_kind(&api),
                C::TimedOut | C::JetStreamUnavailable => ErrorKind::Unavailable,
                C::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Other,
            }
        } else if let Some(e) = e.downcast_ref::<async_nats::RequestError>() {
            match e.kind() {
                async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            }
        } else {
            ErrorKind::Other
        };
        if kind != ErrorKind::Other {
            return kind;
        }
        next = e.source();
    }
    ErrorKind::Other
}

impl From<jetstream::Error> for BusError {
    fn from(err: jetstream::Error) -> Self {
        BusError::nats(api_kind(&err), err)
    }
}

impl From<async_nats::ConnectError> for BusError {
    fn from(err: async_nats::ConnectError) -> Self {
        use async_nats::ConnectErrorKind as K;
        let kind = match err.kind() {
            K::ServerParse | K::Dns => ErrorKind::Invalid,
            K::TimedOut | K::Io | K::MaxReconnects => ErrorKind::Unavailable,
            K::Authentication | K::AuthorizationViolation | K::Tls => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::context::PublishError> for BusError {
    fn from(err: jetstream::context::PublishError) -> Self {
        use jetstream::context::PublishErrorKind as K;
        let kind = match err.kind() {
            K::WrongLastSequence => ErrorKind::Conflict,
            K::TimedOut | K::BrokenPipe | K::StreamNotFound | K::MaxAckPending => ErrorKind::Unavailable,
            K::MaxPayloadExceeded => ErrorKind::Invalid,
            K::WrongLastMessageId | K::Other => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::context::RequestError> for BusError {
    fn from(err: jetstream::context::RequestError) -> Self {
        use jetstream::context::RequestErrorKind as K;
        let kind = match err.kind() {
            K::NoResponders | K::TimedOut => ErrorKind::Unavailable,
            K::InvalidSubject => ErrorKind::Invalid,
            K::Other => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::context::CreateStreamError> for BusError {
    fn from(err: jetstream::context::CreateStreamError) -> Self {
        use jetstream::context::CreateStreamErrorKind as K;
        let kind = match err.kind() {
            K::EmptyStreamName | K::InvalidStreamName | K::DomainAndExternalSet => ErrorKind::Invalid,
            K::JetStreamUnavailable | K::TimedOut => ErrorKind::Unavailable,
            K::JetStream(e) => api_kind(&e),
            K::NotFound => ErrorKind::NotFound,
            K::Response | K::ResponseParse => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::context::GetStreamError> for BusError {
    fn from(err: jetstream::context::GetStreamError) -> Self {
        use jetstream::context::GetStreamErrorKind as K;
        let kind = match err.kind() {
            K::EmptyName | K::InvalidStreamName => ErrorKind::Invalid,
            K::JetStream(e) => api_kind(&e),
            K::Request => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::stream::DirectGetError> for BusError {
    fn from(err: jetstream::stream::DirectGetError) -> Self {
        use async_nats::StatusCode;
        use jetstream::stream::DirectGetErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::InvalidSubject => ErrorKind::Invalid,
            K::TimedOut => ErrorKind::Unavailable,
            K::ErrorResponse(StatusCode::NO_RESPONDERS | StatusCode::TIMEOUT, _) => ErrorKind::Unavailable,
            K::ErrorResponse(StatusCode::NOT_FOUND, _) => ErrorKind::NotFound,
            K::Request => chain_kind(&err),
            K::ErrorResponse(..) | K::Other => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::stream::LastRawMessageError> for BusError {
    fn from(err: jetstream::stream::LastRawMessageError) -> Self {
        use jetstream::stream::LastRawMessageErrorKind as K;
        let kind = match err.kind() {
            K::NoMessageFound => ErrorKind::NotFound,
            K::InvalidSubject => ErrorKind::Invalid,
            K::JetStream(e) => api_kind(&e),
            K::Other => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::stream::ConsumerError> for BusError {
    fn from(err: jetstream::stream::ConsumerError) -> Self {
        use jetstream::stream::ConsumerErrorKind as K;
        let kind = match err.kind() {
            K::TimedOut => ErrorKind::Unavailable,
            K::InvalidName | K::InvalidConsumerType => ErrorKind::Invalid,
            K::JetStream(e) => api_kind(&e),
            K::Request | K::Other => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::consumer::StreamError> for BusError {
    fn from(err: jetstream::consumer::StreamError) -> Self {
        use jetstream::consumer::StreamErrorKind as K;
        let kind = match err.kind() {
            K::TimedOut => ErrorKind::Unavailable,
            K::Other => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::consumer::pull::OrderedError> for BusError {
    fn from(err: jetstream::consumer::pull::OrderedError) -> Self {
        use jetstream::consumer::pull::OrderedErrorKind as K;
        let kind = match err.kind() {
            K::MissingHeartbeat | K::NoResponders | K::Pull | K::Recreate | K::ConsumerDeleted => ErrorKind::Unavailable,
            K::PushBasedConsumer | K::RequestLimitExceeded | K::Other => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::context::KeyValueError> for BusError {
    fn from(err: jetstream::context::KeyValueError) -> Self {
        use jetstream::context::KeyValueErrorKind as K;
        let kind = match err.kind() {
            K::InvalidStoreName => ErrorKind::Invalid,
            K::GetBucket | K::JetStream => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::context::CreateKeyValueError> for BusError {
    fn from(err: jetstream::context::CreateKeyValueError) -> Self {
        use jetstream::context::CreateKeyValueErrorKind as K;
        let kind = match err.kind() {
            K::InvalidStoreName | K::TooLongHistory => ErrorKind::Invalid,
            K::TimedOut => ErrorKind::Unavailable,
            K::LimitMarkersNotSupported => ErrorKind::Unsupported,
            K::JetStream | K::BucketCreate => chain_kind(&err),
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::kv::CreateError> for BusError {
    fn from(err: jetstream::kv::CreateError) -> Self {
        use jetstream::kv::CreateErrorKind as K;
        let kind = match err.kind() {
            K::AlreadyExists => ErrorKind::Conflict,
            K::InvalidKey => ErrorKind::Invalid,
            K::Publish | K::Ack | K::Other => ErrorKind::Unavailable,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::kv::UpdateError> for BusError {
    fn from(err: jetstream::kv::UpdateError) -> Self {
        use jetstream::kv::UpdateErrorKind as K;
        let kind = match err.kind() {
            K::WrongLastRevision => ErrorKind::Conflict,
            K::InvalidKey => ErrorKind::Invalid,
            K::TimedOut => ErrorKind::Unavailable,
            K::Other => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::kv::EntryError> for BusError {
    fn from(err: jetstream::kv::EntryError) -> Self {
        use jetstream::kv::EntryErrorKind as K;
        let kind = match err.kind() {
            K::InvalidKey => ErrorKind::Invalid,
            K::TimedOut => ErrorKind::Unavailable,
            K::Other => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::kv::WatchError> for BusError {
    fn from(err: jetstream::kv::WatchError) -> Self {
        use jetstream::kv::WatchErrorKind as K;
        let kind = match err.kind() {
            K::InvalidKey => ErrorKind::Invalid,
            K::TimedOut | K::ConsumerCreate => ErrorKind::Unavailable,
            K::Other => ErrorKind::Other,
        };
        BusError::nats(kind, err)
    }
}

impl From<jetstream::kv::WatcherError> for BusError {
    fn from(err: jetstream::kv::WatcherError) -> Self {
        BusError::nats(ErrorKind::Unavailable, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_message_then_cause() {
        let e = BusError::new(ErrorKind::Invalid, "bad town").context("append");
        assert_eq!(e.to_string(), "append: bad town");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        let io = std::io::Error::other("boom");
        let e = BusError::with_source(ErrorKind::Other, "read", io);
        assert_eq!(e.to_string(), "read: boom");
    }

    #[test]
    fn wrong_last_sequence_is_a_conflict_by_kind() {
        let err = jetstream::context::PublishError::new(jetstream::context::PublishErrorKind::WrongLastSequence);
        assert_eq!(BusError::from(err).kind(), ErrorKind::Conflict);
        let err = jetstream::context::PublishError::new(jetstream::context::PublishErrorKind::TimedOut);
        assert_eq!(BusError::from(err).kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn the_r3_wrong_last_sequence_10164_is_a_conflict() {
        // async-nats 0.51 names only 10071; 10164 arrives as `Other` with the API error as source.
        let api: jetstream::Error =
            serde_json::from_str(r#"{"code":400,"err_code":10164,"description":"wrong last sequence: 3"}"#).unwrap();
        let err = jetstream::context::PublishError::with_source(jetstream::context::PublishErrorKind::Other, api);
        assert_eq!(BusError::from(err).kind(), ErrorKind::Conflict);
        let api: jetstream::Error = serde_json::from_str(r#"{"code":503,"err_code":10008,"description":"x"}"#).unwrap();
        let err = jetstream::context::PublishError::with_source(jetstream::context::PublishErrorKind::Other, api);
        assert_eq!(BusError::from(err).kind(), ErrorKind::Unavailable);
    }
}
