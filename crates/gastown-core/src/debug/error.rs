//! Debug error replies (DOMAIN §D): `{"error": "<message>"}` with a status carried in
//! `Nats-Service-Error-Code`. The messages are contract, word for word.

use serde_json::Value;

use crate::time::{Millis, format_iso};

/// 400: `from` or `to` is missing from a replay request (D3).
pub const MISSING_FROM_TO: &str = "Missing required fields: from, to (ISO timestamps)";
/// 400: an instant does not parse (D2, D3).
pub const INVALID_DATE: &str = "Invalid date format. Use ISO 8601 timestamps.";
/// 400: `from` is after `to` (D3).
pub const FROM_AFTER_TO: &str = "\"from\" must be before or equal to \"to\"";
/// 400: `timeout_ms` is not an integer ≥ 1 (D3).
pub const INVALID_TIMEOUT: &str = "invalid timeout_ms";
/// 400: a dry-run body that is not a JSON object (E4's common wording).
pub const INVALID_BODY: &str = "invalid body: expected object";

/// A refused debug request.
///
/// Handling: the responder answers [`DebugError::body`] with `Nats-Service-Error-Code` =
/// [`DebugError::status`]; nothing else happens (a debug request never changes a town).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct DebugError {
    /// 400, 404, 413, 422 or 503.
    pub status: u16,
    /// The exact message of §D.
    pub message: String,
}

impl DebugError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// 400 with one of the fixed messages of this module.
    #[must_use]
    pub fn bad_request(message: &str) -> Self {
        Self::new(400, message)
    }

    /// 404 `unknown town: <id>`: the town has no events.
    #[must_use]
    pub fn unknown_town(town_id: &str) -> Self {
        Self::new(404, format!("unknown town: {town_id}"))
    }

    /// 503 `busy, retry`: the responder already runs as many folds as it allows.
    #[must_use]
    pub fn busy() -> Self {
        Self::new(503, "busy, retry")
    }

    /// 422: `from` lies before the retained history and no snapshot covers it.
    #[must_use]
    pub fn before_retained_history(oldest_event_at: Millis) -> Self {
        Self::new(422, format!("\"from\" is before the retained history (oldest event at {})", format_iso(oldest_event_at)))
    }

    /// 413: folding and replaying took longer than `timeout_ms` (the value in force).
    #[must_use]
    pub fn window_too_large(timeout_ms: u64) -> Self {
        Self::new(413, format!("window too large to replay within {timeout_ms} ms; narrow the window"))
    }

    /// The reply body `{"error": "<message>"}`.
    #[must_use]
    pub fn body(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("error".to_owned(), Value::String(self.message.clone()));
        Value::Object(m)
    }

    /// The reply body as JSON text.
    #[must_use]
    pub fn to_json_string(&self) -> String {
        self.body().to_string()
    }

    /// The reply body as JSON bytes.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        self.to_json_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::T0;

    #[test]
    fn builders_word_the_messages_of_d3() {
        assert_eq!(DebugError::unknown_town("t9").message, "unknown town: t9");
        assert_eq!(DebugError::unknown_town("t9").status, 404);
        assert_eq!(DebugError::busy(), DebugError { status: 503, message: "busy, retry".into() });
        let e = DebugError::before_retained_history(T0);
        assert_eq!(
            (e.status, e.message.as_str()),
            (422, "\"from\" is before the retained history (oldest event at 2026-06-01T10:00:00.000Z)")
        );
        let e = DebugError::window_too_large(4000);
        assert_eq!((e.status, e.message.as_str()), (413, "window too large to replay within 4000 ms; narrow the window"));
    }

    #[test]
    fn body_is_a_single_error_key() {
        assert_eq!(DebugError::unknown_town("t9").to_json_string(), r#"{"error":"unknown town: t9"}"#);
        assert_eq!(
            DebugError::bad_request(FROM_AFTER_TO).to_json_string(),
            r#"{"error":"\"from\" must be before or equal to \"to\""}"#
        );
    }
}
