//! Command rejections and the JSON replies of E4.
//!
//! A rejection is a [`CommandError`]: a stable [`ErrorCode`] (which a single `match` maps to the
//! HTTP-like status of the micro-service error headers) and the message DOMAIN §E4 fixes word for
//! word. Replies are [`Reply`] values whose JSON keys come out in the order E4 writes them
//! (`{"ok":true,"event_id":..,"seq":..}`); they are not `serde_json::Value`s because a `Value`
//! object sorts its keys.

use serde::Serialize;

/// What kind of rejection a command got; callers branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: the request is malformed or names something it may not. Handling: report it to the
    /// client; retrying the same request fails the same way.
    BadRequest,
    /// 404: no such command. Handling: report it; the subject is wrong.
    UnknownCommand,
    /// 409: the town's state forbids it. Handling: report it; the client may re-read the town.
    Conflict,
    /// 503: the town kept moving while ingest validated. Handling: the client retries later.
    Unavailable,
}

impl ErrorCode {
    /// The wire code (`bad_request`, `unknown_command`, `conflict`, `unavailable`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownCommand => "unknown_command",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
        }
    }

    /// The status of `Nats-Service-Error-Code` (400, 404, 409, 503).
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::UnknownCommand => 404,
            Self::Conflict => 409,
            Self::Unavailable => 503,
        }
    }
}

/// A rejected command: its code and the exact message of E4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// What the caller does next.
    pub code: ErrorCode,
    /// The message E4 fixes.
    pub message: String,
}

impl CommandError {
    /// A 400.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::BadRequest, message: message.into() }
    }

    /// A 409.
    #[must_use]
    pub fn conflict(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::Conflict, message: message.into() }
    }

    /// The 404 `unknown command: <command>`.
    #[must_use]
    pub fn unknown_command(command: &str) -> Self {
        Self { code: ErrorCode::UnknownCommand, message: format!("unknown command: {command}") }
    }

    /// 400 `missing required field: <path>`.
    #[must_use]
    pub fn missing(path: &str) -> Self {
        Self::bad_request(format!("missing required field: {path}"))
    }

    /// 400 `invalid <path>: <why>`.
    #[must_use]
    pub fn invalid(path: &str, why: &str) -> Self {
        Self::bad_request(format!("invalid {path}: {why}"))
    }

    /// 400 `invalid <path>: expected <type>`.
    #[must_use]
    pub fn expected(path: &str, type_name: &str) -> Self {
        Self::invalid(path, &format!("expected {type_name}"))
    }

    /// The error reply `{"ok":false,"error":{"code","message"}}`.
    #[must_use]
    pub fn reply_body(&self) -> Reply {
        Reply::Error { ok: false, error: ErrorBody { code: self.code.as_str(), message: self.message.clone() } }
    }
}

/// The 503 `town busy, retry`: the append was refused COMMAND_APPEND_RETRIES times.
#[must_use]
pub fn busy() -> CommandError {
    CommandError { code: ErrorCode::Unavailable, message: "town busy, retry".to_owned() }
}

/// The `error` object of an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// [`ErrorCode::as_str`].
    pub code: &'static str,
    /// The message.
    pub message: String,
}

/// A command reply (E4). Serializes with the keys in the order E4 writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `{"ok":true,"event_id":..,"seq":..}`: the event was appended.
    Appended {
        /// Always true.
        ok: bool,
        /// The stored event's id.
        event_id: String,
        /// The stream sequence it was stored at.
        seq: u64,
    },
    /// `{"ok":true,"event_id":..,"seq":..,"duplicate":true}`: the request was already stored.
    Duplicate {
        /// Always true.
        ok: bool,
        /// The stored event's id.
        event_id: String,
        /// The sequence it was stored at.
        seq: u64,
        /// Always true.
        duplicate: bool,
    },
    /// `{"ok":true,"event_id":null,"seq":null,"noop":true}`: nothing to change.
    Noop {
        /// Always true.
        ok: bool,
        /// Always null.
        event_id: Option<String>,
        /// Always null.
        seq: Option<u64>,
        /// Always true.
        noop: bool,
    },
    /// `{"ok":false,"error":{"code","message"}}`.
    Error {
        /// Always false.
        ok: bool,
        /// Code and message.
        error: ErrorBody,
    },
}

impl Reply {
    /// The reply as JSON bytes, keys in E4's order.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, integers and booleans cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The reply as a JSON string, keys in E4's order.
    #[must_use]
    pub fn to_json_string(&self) -> String {
        String::from_utf8(self.to_json()).unwrap_or_default()
    }
}

/// The reply to an appended command.
#[must_use]
pub fn reply_ok(event_id: &str, seq: u64) -> Reply {
    Reply::Appended { ok: true, event_id: event_id.to_owned(), seq }
}

/// The reply to a repeated `Nats-Msg-Id` (or a repeated `action.result`).
#[must_use]
pub fn reply_duplicate(event_id: &str, seq: u64) -> Reply {
    Reply::Duplicate { ok: true, event_id: event_id.to_owned(), seq, duplicate: true }
}

/// The reply to a request that changes nothing.
#[must_use]
pub fn reply_noop() -> Reply {
    Reply::Noop { ok: true, event_id: None, seq: None, noop: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_the_key_order_of_e4() {
        assert_eq!(reply_ok("t1:c:req-42", 5).to_json_string(), r#"{"ok":true,"event_id":"t1:c:req-42","seq":5}"#);
        assert_eq!(
            reply_duplicate("t1:c:req-42", 5).to_json_string(),
            r#"{"ok":true,"event_id":"t1:c:req-42","seq":5,"duplicate":true}"#
        );
        assert_eq!(reply_noop().to_json_string(), r#"{"ok":true,"event_id":null,"seq":null,"noop":true}"#);
        assert_eq!(
            CommandError::conflict("bead b1 already exists").reply_body().to_json_string(),
            r#"{"ok":false,"error":{"code":"conflict","message":"bead b1 already exists"}}"#
        );
    }

    #[test]
    fn codes_map_to_their_statuses() {
        let all = [ErrorCode::BadRequest, ErrorCode::UnknownCommand, ErrorCode::Conflict, ErrorCode::Unavailable];
        let got: Vec<_> = all.iter().map(|c| (c.as_str(), c.status())).collect();
        assert_eq!(got, [("bad_request", 400), ("unknown_command", 404), ("conflict", 409), ("unavailable", 503)]);
    }

    #[test]
    fn busy_is_a_503_town_busy_retry() {
        let e = busy();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Unavailable, "town busy, retry"));
        assert_eq!(CommandError::unknown_command("bead.frob").message, "unknown command: bead.frob");
    }
}
