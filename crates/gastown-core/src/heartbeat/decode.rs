//! Heartbeat payload decoding and rejection (ARCHITECTURE §4, DOMAIN E5 step 1).
//!
//! A heartbeat is a MessagePack map or a JSON object. `Content-Type: application/json` or
//! `application/msgpack` names the format; without one (or with another type), a body whose first
//! non-space byte is `{` is JSON and anything else is MessagePack. Only the keys of
//! [`Heartbeat`] are read; unknown keys are skipped whatever their value. A rejected payload
//! yields a [`Reject`] whose [`Reject::reason`] is the metric label.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::constants::HEARTBEAT_MAX_BYTES;
use crate::event::ContainerState;
use crate::ids::{AgentId, IdError, TownId};
use crate::time::Millis;

/// A decoded heartbeat (ARCHITECTURE §4). `Serialize` writes the wire form (absent fields left
/// out), for agents, simulators and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Container status; `running` and `starting` are alive.
    pub status: ContainerState,
    /// Why the container exited, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// The sender's clock, unix ms (informative: the filter uses the broker's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Millis>,
    /// SDK watermark: type of the last SDK event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_type: Option<String>,
    /// SDK watermark: time of the last SDK event, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<Millis>,
    /// SDK watermark: tools in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tools: Option<Vec<String>>,
    /// The container reporting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_instance_id: Option<String>,
}

impl Heartbeat {
    /// A heartbeat with `status` and no other field.
    #[must_use]
    pub fn new(status: ContainerState) -> Self {
        Self {
            status,
            exit_reason: None,
            sent_at: None,
            last_event_type: None,
            last_event_at: None,
            active_tools: None,
            container_instance_id: None,
        }
    }

    /// Sets the container instance.
    #[must_use]
    pub fn on(mut self, instance: &str) -> Self {
        self.container_instance_id = Some(instance.to_owned());
        self
    }

    /// Sets the SDK watermark (`last_event_type`, `last_event_at`, `active_tools`).
    #[must_use]
    pub fn watermark(mut self, event_type: &str, at: Millis, tools: &[&str]) -> Self {
        self.last_event_type = Some(event_type.to_owned());
        self.last_event_at = Some(at);
        self.active_tools = Some(tools.iter().map(|t| (*t).to_owned()).collect());
        self
    }

    /// Sets the exit reason.
    #[must_use]
    pub fn exit_reason(mut self, reason: &str) -> Self {
        self.exit_reason = Some(reason.to_owned());
        self
    }

    /// `running` or `starting` (E5).
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.status.is_alive()
    }
}

/// Why a heartbeat was rejected (E5 step 1). Match on the variant; [`Reject::reason`] gives the
/// metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The payload is over [`HEARTBEAT_MAX_BYTES`].
    #[error("payload too large: {size} bytes, at most {HEARTBEAT_MAX_BYTES}")]
    TooLarge {
        /// The payload's size in bytes.
        size: usize,
    },
    /// The payload is JSON (by content type or first byte) but does not parse.
    #[error("invalid JSON: {0}")]
    BadJson(String),
    /// The payload is MessagePack (by content type or first byte) but does not parse.
    #[error("invalid MessagePack: {0}")]
    BadMsgpack(String),
    /// The payload parses but is not a map / object.
    #[error("invalid body: expected object")]
    NotAnObject,
    /// No `status` key (or a null one).
    #[error("missing status")]
    MissingStatus,
    /// A `status` string that is not a container status.
    #[error("unknown status: {0}")]
    UnknownStatus(String),
    /// A known key with a value of the wrong type.
    #[error("invalid {field}: expected {expected}")]
    BadField {
        /// The key.
        field: &'static str,
        /// The type it must have (`string`, `integer`, `list of strings`).
        expected: &'static str,
    },
    /// The town or agent token of the subject is outside the C2 grammar.
    #[error(transparent)]
    BadId(#[from] IdError),
}

impl Reject {
    /// Every reason label, for registering the rejection counter up front.
    pub const REASONS: [&'static str; 8] =
        ["too_large", "bad_json", "bad_msgpack", "not_an_object", "unknown_status", "missing_status", "bad_field", "bad_id"];

    /// The stable metric label of the rejection.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::BadJson(_) => "bad_json",
            Self::BadMsgpack(_) => "bad_msgpack",
            Self::NotAnObject => "not_an_object",
            Self::UnknownStatus(_) => "unknown_status",
            Self::MissingStatus => "missing_status",
            Self::BadField { .. } => "bad_field",
            Self::BadId(_) => "bad_id",
        }
    }
}

/// The two body formats (ARCHITECTURE §4; commands use the same rule, E4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON object.
    Json,
    /// A MessagePack map.
    Msgpack,
}

/// Tells the format of a body: `application/json` → JSON; `application/msgpack` (also
/// `application/x-msgpack` and `application/vnd.msgpack`) → MessagePack; parameters after `;`
/// and letter case are ignored. Without a content type, or with any other, a body whose first
/// non-space byte is `{` is JSON, otherwise MessagePack.
#[must_use]
pub fn body_format(bytes: &[u8], content_type: Option<&str>) -> BodyFormat {
    let media = content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => BodyFormat::Json,
        Some("application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack") => BodyFormat::Msgpack,
        _ => {
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                BodyFormat::Json
            } else {
                BodyFormat::Msgpack
            }
        }
    }
}

/// Decodes a heartbeat payload (E5 step 1): size, then format and decoding, then each known key
/// in the order of [`Heartbeat`]'s fields. A null value counts as absent (a null `status` is
/// missing). Integers must be whole numbers that fit in i64.
///
/// # Errors
/// The first [`Reject`] found.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> Result<Heartbeat, Reject> {
    if bytes.len() > HEARTBEAT_MAX_BYTES {
        return Err(Reject::TooLarge { size: bytes.len() });
    }
    let raw = match body_format(bytes, content_type) {
        BodyFormat::Json => serde_json::from_slice::<Raw>(bytes).map_err(|e| Reject::BadJson(e.to_string()))?,
        BodyFormat::Msgpack => rmp_serde::from_slice::<Raw>(bytes).map_err(|e| Reject::BadMsgpack(e.to_string()))?,
    };
    let Raw::Object(f) = raw else {
        return Err(Reject::NotAnObject);
    };
    let status = match f.status {
        None | Some(Val::Null) => return Err(Reject::MissingStatus),
        Some(Val::Str(s)) => ContainerState::parse(&s).ok_or(Reject::UnknownStatus(s))?,
        Some(_) => return Err(Reject::BadField { field: "status", expected: "string" }),
    };
    Ok(Heartbeat {
        status,
        exit_reason: string_field("exit_reason", f.exit_reason)?,
        sent_at: int_field("sent_at", f.sent_at)?,
        last_event_type: string_field("last_event_type", f.last_event_type)?,
        last_event_at: int_field("last_event_at", f.last_event_at)?,
        active_tools: list_field("active_tools", f.active_tools)?,
        container_instance_id: string_field("container_instance_id", f.container_instance_id)?,
    })
}

/// Validates the town and agent tokens of a heartbeat subject `gastown.hb.<town>.<agent>` (C2).
///
/// # Errors
/// [`Reject::BadId`] naming `town_id` or `agent_id`.
pub fn subject_ids(town: &str, agent: &str) -> Result<(TownId, AgentId), Reject> {
    Ok((TownId::try_from(town)?, AgentId::try_from(agent)?))
}

fn string_field(field: &'static str, v: Option<Val>) -> Result<Option<String>, Reject> {
    match v {
        None | Some(Val::Null) => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s)),
        Some(_) => Err(Reject::BadField { field, expected: "string" }),
    }
}

fn int_field(field: &'static str, v: Option<Val>) -> Result<Option<Millis>, Reject> {
    match v {
        None | Some(Val::Null) => Ok(None),
        Some(Val::Int(n)) => Ok(Some(n)),
        Some(_) => Err(Reject::BadField { field, expected: "integer" }),
    }
}

fn list_field(field: &'static str, v: Option<Val>) -> Result<Option<Vec<String>>, Reject> {
    let bad = Reject::BadField { field, expected: "list of strings" };
    match v {
        None | Some(Val::Null) => Ok(None),
        Some(Val::List(items)) => items
            .into_iter()
            .map(|i| match i {
                Val::Str(s) => Ok(s),
                _ => Err(bad.clone()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad),
    }
}

/// The top level of a payload: the known keys of a map, or something else.
enum Raw {
    Object(Box<Fields>),
    NotObject,
}

#[derive(Default)]
struct Fields {
    status: Option<Val>,
    exit_reason: Option<Val>,
    sent_at: Option<Val>,
    last_event_type: Option<Val>,
    last_event_at: Option<Val>,
    active_tools: Option<Val>,
    container_instance_id: Option<Val>,
}

/// The value of a known key, typed loosely so that a wrong type is a `bad_field`, not a decoding
/// error.
enum Val {
    Null,
    Str(String),
    Int(i64),
    List(Vec<Val>),
    Other,
}

enum Key {
    Status,
    ExitReason,
    SentAt,
    LastEventType,
    LastEventAt,
    ActiveTools,
    ContainerInstanceId,
    Other,
}

impl Key {
    fn of(s: &str) -> Self {
        match s {
            "status" => Self::Status,
            "exit_reason" => Self::ExitReason,
            "sent_at" => Self::SentAt,
            "last_event_type" => Self::LastEventType,
            "last_event_at" => Self::LastEventAt,
            "active_tools" => Self::ActiveTools,
            "container_instance_id" => Self::ContainerInstanceId,
            _ => Self::Other,
        }
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a heartbeat map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Status => &mut f.status,
                Key::ExitReason => &mut f.exit_reason,
                Key::SentAt => &mut f.sent_at,
                Key::LastEventType => &mut f.last_event_type,
                Key::LastEventAt => &mut f.last_event_at,
                Key::ActiveTools => &mut f.active_tools,
                Key::ContainerInstanceId => &mut f.container_instance_id,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<Val>()?);
        }
        Ok(Raw::Object(Box::new(f)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Raw, A::Error> {
        drain_seq(seq)?;
        Ok(Raw::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::NotObject)
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val, E> {
        Ok(Val::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Val, E> {
        Ok(Val::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Val, E> {
        Ok(std::str::from_utf8(v).map_or(Val::Other, |s| Val::Str(s.to_owned())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val, E> {
        Ok(Val::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
        Ok(i64::try_from(v).map_or(Val::Other, Val::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Val, E> {
        Ok(i64::try_from(v).map_or(Val::Other, Val::Int))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Val, E> {
        Ok(i64::try_from(v).map_or(Val::Other, Val::Int))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Val, E> {
        Ok(Val::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Val, E> {
        Ok(Val::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        Val::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Val>()? {
            items.push(v);
        }
        Ok(Val::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Val, A::Error> {
        drain_map(map)?;
        Ok(Val::Other)
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key::of(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
        Ok(std::str::from_utf8(v).map_or(Key::Other, Key::of))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Key, A::Error> {
        drain_seq(seq)?;
        Ok(Key::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Key, A::Error> {
        drain_map(map)?;
        Ok(Key::Other)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn msgpack(v: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(v).unwrap()
    }

    #[test]
    fn json_without_content_type_is_told_by_its_first_byte() {
        let body = b"  \n{\"status\":\"running\",\"last_event_at\":1780308000000,\"active_tools\":[\"bash\"]}";
        let hb = decode(body, None).unwrap();
        assert_eq!(hb.status, ContainerState::Running);
        assert_eq!(hb.last_event_at, Some(1_780_308_000_000));
        assert_eq!(hb.active_tools, Some(vec!["bash".to_owned()]));
    }

    #[test]
    fn msgpack_maps_are_accepted_with_and_without_content_type() {
        let body = msgpack(&json!({"status": "exited", "exit_reason": "oom", "container_instance_id": "c1", "sent_at": 5}));
        let expected = Heartbeat { sent_at: Some(5), ..Heartbeat::new(ContainerState::Exited).exit_reason("oom").on("c1") };
        assert_eq!(decode(&body, None), Ok(expected.clone()));
        assert_eq!(decode(&body, Some("application/msgpack")), Ok(expected));
    }

    #[test]
    fn the_wire_form_of_a_heartbeat_decodes_to_itself_in_both_formats() {
        let hb = Heartbeat::new(ContainerState::Starting).on("c9").watermark("tool_use", 42, &["bash", "edit"]);
        assert_eq!(decode(&serde_json::to_vec(&hb).unwrap(), Some("application/json")), Ok(hb.clone()));
        assert_eq!(decode(&rmp_serde::to_vec_named(&hb).unwrap(), None), Ok(hb));
    }

    #[test]
    fn unknown_keys_are_ignored_whatever_their_value() {
        let v = json!({"zzz": {"deep": [1, {"x": null}]}, "status": "stopped", "extra": 1.5, "error": true});
        assert_eq!(decode(&serde_json::to_vec(&v).unwrap(), None), Ok(Heartbeat::new(ContainerState::Stopped)));
        assert_eq!(decode(&msgpack(&v), None), Ok(Heartbeat::new(ContainerState::Stopped)));
    }

    #[test]
    fn msgpack_keys_that_are_not_strings_are_ignored() {
        // {1: "x", "status": "error"} written by hand: fixmap(2), 1, "x", "status", "error".
        let body = [&[0x82, 0x01, 0xa1, b'x', 0xa6][..], b"status", &[0xa5], b"error"].concat();
        assert_eq!(decode(&body, None), Ok(Heartbeat::new(ContainerState::Error)));
    }

    #[test]
    fn null_optional_fields_are_absent() {
        let body = br#"{"status":"running","exit_reason":null,"active_tools":null,"last_event_at":null}"#;
        assert_eq!(decode(body, None), Ok(Heartbeat::new(ContainerState::Running)));
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        let body = br#"{"status":"running"}"#;
        assert_eq!(body_format(body, Some("Application/JSON; charset=utf-8")), BodyFormat::Json);
        assert_eq!(body_format(b" [", Some("application/json")), BodyFormat::Json);
        assert_eq!(body_format(body, Some("application/msgpack")), BodyFormat::Msgpack);
        assert_eq!(body_format(body, Some("text/plain")), BodyFormat::Json);
        assert_eq!(body_format(b"\x81", None), BodyFormat::Msgpack);
    }

    #[test]
    fn payload_over_16_kib_is_too_large_and_exactly_16_kib_is_accepted() {
        let frame = br#"{"status":"running","pad":""}"#;
        let pad = HEARTBEAT_MAX_BYTES - frame.len();
        let exact = format!(r#"{{"status":"running","pad":"{}"}}"#, "x".repeat(pad));
        assert_eq!(exact.len(), HEARTBEAT_MAX_BYTES);
        assert_eq!(decode(exact.as_bytes(), None), Ok(Heartbeat::new(ContainerState::Running)));
        let over = format!(r#"{{"status":"running","pad":"{}"}}"#, "x".repeat(pad + 1));
        let err = decode(over.as_bytes(), None).unwrap_err();
        assert_eq!(err, Reject::TooLarge { size: HEARTBEAT_MAX_BYTES + 1 });
        assert_eq!(err.reason(), "too_large");
    }

    #[test]
    fn broken_json_is_bad_json() {
        let err = decode(br#"{"status": "running""#, None).unwrap_err();
        assert!(matches!(err, Reject::BadJson(_)), "{err:?}");
        assert_eq!(err.reason(), "bad_json");
        assert!(matches!(decode(b"\x81\xa6status", Some("application/json")), Err(Reject::BadJson(_))));
        assert!(matches!(decode(br#"{"status":"running"} trailing"#, None), Err(Reject::BadJson(_))));
    }

    #[test]
    fn broken_msgpack_is_bad_msgpack() {
        for body in [&b""[..], b"\xc1", b"\x81\xa6status", b"\x82\xa6status\xa7running"] {
            let err = decode(body, None).unwrap_err();
            assert!(matches!(err, Reject::BadMsgpack(_)), "{body:?}: {err:?}");
            assert_eq!(err.reason(), "bad_msgpack");
        }
        assert!(matches!(decode(br#"{"status":"running"}"#, Some("application/msgpack")), Err(Reject::NotAnObject)));
    }

    #[test]
    fn values_that_are_not_maps_are_not_an_object() {
        let cases: [(Vec<u8>, Option<&str>); 5] = [
            (b"[1, 2]".to_vec(), Some("application/json")),
            (br#""running""#.to_vec(), Some("application/json")),
            (msgpack(&json!(["status", "running"])), None),
            (msgpack(&json!("running")), None),
            (vec![0xc0], None),
        ];
        for (body, ct) in cases {
            let err = decode(&body, ct).unwrap_err();
            assert_eq!(err, Reject::NotAnObject, "{body:?}");
            assert_eq!(err.reason(), "not_an_object");
        }
    }

    #[test]
    fn status_outside_the_list_is_unknown_status() {
        let err = decode(br#"{"status":"sleeping"}"#, None).unwrap_err();
        assert_eq!(err, Reject::UnknownStatus("sleeping".into()));
        assert_eq!(err.reason(), "unknown_status");
        assert_eq!(decode(&msgpack(&json!({"status": "Running"})), None), Err(Reject::UnknownStatus("Running".into())));
    }

    #[test]
    fn every_listed_status_is_accepted() {
        for s in ["starting", "running", "stopping", "exited", "failed", "not_found", "unknown", "stopped", "error"] {
            let hb = decode(format!(r#"{{"status":"{s}"}}"#).as_bytes(), None).unwrap();
            assert_eq!(hb.status.as_str(), s);
        }
    }

    #[test]
    fn missing_or_null_status_is_missing_status() {
        assert_eq!(decode(br#"{"container_instance_id":"c1"}"#, None), Err(Reject::MissingStatus));
        assert_eq!(decode(br#"{"status":null}"#, None), Err(Reject::MissingStatus));
        assert_eq!(Reject::MissingStatus.reason(), "missing_status");
    }

    #[test]
    fn known_keys_of_the_wrong_type_are_bad_field() {
        let cases = [
            (json!({"status": 1}), "status", "string"),
            (json!({"status": "running", "active_tools": "bash"}), "active_tools", "list of strings"),
            (json!({"status": "running", "active_tools": ["bash", 3]}), "active_tools", "list of strings"),
            (json!({"status": "running", "last_event_at": "now"}), "last_event_at", "integer"),
            (json!({"status": "running", "sent_at": 1.5}), "sent_at", "integer"),
            (json!({"status": "running", "sent_at": u64::MAX}), "sent_at", "integer"),
            (json!({"status": "exited", "exit_reason": {"code": 1}}), "exit_reason", "string"),
            (json!({"status": "running", "container_instance_id": true}), "container_instance_id", "string"),
        ];
        for (v, field, expected) in cases {
            let want = Err(Reject::BadField { field, expected });
            assert_eq!(decode(&serde_json::to_vec(&v).unwrap(), None), want, "{v}");
            assert_eq!(decode(&msgpack(&v), None), want, "{v} as msgpack");
        }
        assert_eq!(Reject::BadField { field: "status", expected: "string" }.reason(), "bad_field");
    }

    #[test]
    fn subject_tokens_outside_the_grammar_are_bad_id() {
        assert!(subject_ids("t1", "pc-1").is_ok());
        let err = subject_ids("t1", "pc.1").unwrap_err();
        assert_eq!(err.reason(), "bad_id");
        assert!(matches!(err, Reject::BadId(IdError { kind: "agent_id", .. })));
        assert!(matches!(subject_ids(&"t".repeat(65), "a1"), Err(Reject::BadId(IdError { kind: "town_id", .. }))));
    }

    #[test]
    fn reasons_are_distinct_and_listed() {
        let all = [
            Reject::TooLarge { size: 0 },
            Reject::BadJson(String::new()),
            Reject::BadMsgpack(String::new()),
            Reject::NotAnObject,
            Reject::UnknownStatus(String::new()),
            Reject::MissingStatus,
            Reject::BadField { field: "status", expected: "string" },
            Reject::BadId(IdError { kind: "town_id", pattern: "" }),
        ];
        assert_eq!(all.map(|r| r.reason()), Reject::REASONS);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), json in any::<bool>()) {
            let _ = decode(&bytes, json.then_some("application/json"));
            let _ = decode(&bytes, None);
        }
    }
}
