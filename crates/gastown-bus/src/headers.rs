//! Header names and content types (ARCHITECTURE §4): each wire name is defined here, once.

/// Deduplication id of a JetStream publish (event id, or `<town>:<decision_seq>:<index>` for actions).
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// The fence: the sequence the writer expects to be the last one on the fence subject.
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// The fence subject, `<prefix>.evt.*.<town>` (a whole town across the partition transform).
pub const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
/// Why the server wrote a subject delete marker; [`MARKER_MAX_AGE`] means silence.
pub const MARKER_REASON: &str = "Nats-Marker-Reason";
/// The [`MARKER_REASON`] of a marker written because the subject's message aged out.
pub const MARKER_MAX_AGE: &str = "MaxAge";
/// The type of a stored town event.
pub const GASTOWN_EVENT: &str = "Gastown-Event";
/// The type of a published action.
pub const GASTOWN_ACTION: &str = "Gastown-Action";
/// The body's media type ([`MSGPACK`] or [`JSON`]).
pub const CONTENT_TYPE: &str = "Content-Type";
/// W3C trace context, carried from heartbeat or command through event and decision to action.
pub const TRACEPARENT: &str = "traceparent";
/// Micro-service error description of a command or debug reply.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// Micro-service error code of a command or debug reply (400, 404, 409, 503, …).
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
/// MessagePack bodies.
pub const MSGPACK: &str = "application/msgpack";
/// JSON bodies.
pub const JSON: &str = "application/json";
