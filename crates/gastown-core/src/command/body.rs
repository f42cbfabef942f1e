//! Decoding a command body and reading its fields with the common 400s of E4.
//!
//! A body is a JSON or MessagePack object, told apart by `Content-Type` (`application/json`,
//! `application/msgpack`, parameters ignored) or, without one of those, by its first non-space
//! byte (`{` = JSON). Both decode to a `serde_json` object whose keys iterate in byte order, so
//! "the first unknown field" is the smallest in byte order.
//!
//! A JSON `null` counts as an absent field (a required field given as `null` is missing), except
//! where a row gives `null` a meaning (`town.config`, `overrides`), which read the raw map.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::reply::CommandError;
use crate::constants::COMMAND_MAX_BYTES;
use crate::ids::{BEAD_PATTERN, RIG_PATTERN, TOKEN_PATTERN, is_bead_id, is_reserved, is_rig_id, is_token};
use crate::labels;

/// Deepest nesting a MessagePack body may have: serde_json's own recursion limit, so both
/// encodings accept the same bodies and a hostile one cannot overflow the stack.
const MAX_DEPTH: usize = 128;

/// Checks the size and decodes the body to an object.
///
/// # Errors
/// 400 `payload too large` over COMMAND_MAX_BYTES; 400 `invalid body: expected object` when the
/// bytes do not decode to an object.
pub(super) fn decode(body: &[u8], content_type: Option<&str>) -> Result<Map<String, Value>, CommandError> {
    if body.len() > COMMAND_MAX_BYTES {
        return Err(CommandError::bad_request("payload too large"));
    }
    let decoded: Option<Value> = if is_json(body, content_type) {
        serde_json::from_slice(body).ok()
    } else {
        let mut de = rmp_serde::Deserializer::new(body);
        de.set_max_depth(MAX_DEPTH);
        Value::deserialize(&mut de).ok()
    };
    match decoded {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(CommandError::bad_request("invalid body: expected object")),
    }
}

fn is_json(body: &[u8], content_type: Option<&str>) -> bool {
    let media = content_type.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => true,
        Some("application/msgpack" | "application/x-msgpack") => false,
        _ => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    }
}

/// The grammar an id field must match (C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdKind {
    /// Agent (and town) ids: `[A-Za-z0-9_-]{1,64}`.
    Agent,
    /// Rig ids: `[A-Za-z0-9_-]{1,48}`.
    Rig,
    /// Bead and nudge ids: `[A-Za-z0-9_.:-]{1,128}`.
    Bead,
}

impl IdKind {
    fn check(self, s: &str) -> bool {
        match self {
            Self::Agent => is_token(s),
            Self::Rig => is_rig_id(s),
            Self::Bead => is_bead_id(s),
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Self::Agent => TOKEN_PATTERN,
            Self::Rig => RIG_PATTERN,
            Self::Bead => BEAD_PATTERN,
        }
    }
}

/// The fields of one object of the body: the top level (prefix empty) or a nested one
/// (`beads[0].`), so that messages name the field by its path.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    /// The top-level fields.
    pub(super) fn top(map: &'a Map<String, Value>) -> Self {
        Self { map, prefix: "" }
    }

    /// A nested object whose fields are named `<prefix><name>` (the prefix ends with `.`).
    pub(super) fn nested(map: &'a Map<String, Value>, prefix: &'a str) -> Self {
        Self { map, prefix }
    }

    /// The path of a field in messages.
    pub(super) fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The raw map.
    pub(super) fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    /// 400 `<what>: <path>` for the first key (in byte order) not in `allowed`.
    pub(super) fn check_unknown(&self, allowed: &[&str], what: &str) -> Result<(), CommandError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(CommandError::bad_request(format!("{what}: {}", self.path(k)))),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str) -> Result<&'a Value, CommandError> {
        self.get(name).ok_or_else(|| CommandError::missing(&self.path(name)))
    }

    fn as_str(&self, name: &str, v: &'a Value) -> Result<&'a str, CommandError> {
        v.as_str().ok_or_else(|| CommandError::expected(&self.path(name), "string"))
    }

    /// A required string.
    pub(super) fn req_str(&self, name: &str) -> Result<&'a str, CommandError> {
        let v = self.required(name)?;
        self.as_str(name, v)
    }

    /// An optional string.
    pub(super) fn opt_str(&self, name: &str) -> Result<Option<&'a str>, CommandError> {
        self.get(name).map(|v| self.as_str(name, v)).transpose()
    }

    fn check_id(&self, name: &str, s: &'a str, kind: IdKind) -> Result<&'a str, CommandError> {
        if kind.check(s) {
            Ok(s)
        } else {
            Err(CommandError::invalid(&self.path(name), &format!("must match {}", kind.pattern())))
        }
    }

    /// A required id of `kind`.
    pub(super) fn req_id(&self, name: &str, kind: IdKind) -> Result<&'a str, CommandError> {
        let s = self.req_str(name)?;
        self.check_id(name, s, kind)
    }

    /// An optional id of `kind`.
    pub(super) fn opt_id(&self, name: &str, kind: IdKind) -> Result<Option<&'a str>, CommandError> {
        self.opt_str(name)?.map(|s| self.check_id(name, s, kind)).transpose()
    }

    /// An optional id of an entity the command creates: its grammar, then `id <id> is reserved`.
    pub(super) fn opt_new_id(&self, name: &str, kind: IdKind) -> Result<Option<&'a str>, CommandError> {
        let id = self.opt_id(name, kind)?;
        match id {
            Some(s) if is_reserved(s) => Err(CommandError::bad_request(format!("id {s} is reserved"))),
            _ => Ok(id),
        }
    }

    /// A required id of an entity the command creates.
    pub(super) fn req_new_id(&self, name: &str, kind: IdKind) -> Result<&'a str, CommandError> {
        self.required(name)?;
        self.opt_new_id(name, kind)?.ok_or_else(|| CommandError::missing(&self.path(name)))
    }

    /// An optional boolean.
    pub(super) fn opt_bool(&self, name: &str) -> Result<Option<bool>, CommandError> {
        self.get(name).map(|v| v.as_bool().ok_or_else(|| CommandError::expected(&self.path(name), "boolean"))).transpose()
    }

    /// A required boolean.
    pub(super) fn req_bool(&self, name: &str) -> Result<bool, CommandError> {
        self.required(name)?;
        self.opt_bool(name)?.ok_or_else(|| CommandError::missing(&self.path(name)))
    }

    /// An optional integer.
    pub(super) fn opt_int(&self, name: &str) -> Result<Option<i64>, CommandError> {
        self.get(name).map(|v| v.as_i64().ok_or_else(|| CommandError::expected(&self.path(name), "integer"))).transpose()
    }

    /// A required integer.
    pub(super) fn req_int(&self, name: &str) -> Result<i64, CommandError> {
        self.required(name)?;
        self.opt_int(name)?.ok_or_else(|| CommandError::missing(&self.path(name)))
    }

    /// An optional object.
    pub(super) fn opt_obj(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, CommandError> {
        self.get(name).map(|v| v.as_object().ok_or_else(|| CommandError::expected(&self.path(name), "object"))).transpose()
    }

    /// A required object.
    pub(super) fn req_obj(&self, name: &str) -> Result<&'a Map<String, Value>, CommandError> {
        self.required(name)?;
        self.opt_obj(name)?.ok_or_else(|| CommandError::missing(&self.path(name)))
    }

    /// An optional list of strings.
    pub(super) fn opt_str_list(&self, name: &str) -> Result<Option<Vec<&'a str>>, CommandError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let bad = || CommandError::expected(&self.path(name), "list of strings");
        let list = v.as_array().ok_or_else(bad)?;
        list.iter().map(|e| e.as_str().ok_or_else(bad)).collect::<Result<Vec<_>, _>>().map(Some)
    }

    /// An optional list of ids of `kind`; an element outside the grammar is named by its index.
    pub(super) fn opt_id_list(&self, name: &str, kind: IdKind) -> Result<Option<Vec<&'a str>>, CommandError> {
        let Some(list) = self.opt_str_list(name)? else { return Ok(None) };
        for (i, s) in list.iter().enumerate() {
            if !kind.check(s) {
                return Err(CommandError::invalid(
                    &format!("{}[{i}]", self.path(name)),
                    &format!("must match {}", kind.pattern()),
                ));
            }
        }
        Ok(Some(list))
    }

    /// An optional list of labels a command sets: 400 `label <l> is reserved` for a reserved one.
    pub(super) fn opt_labels(&self, name: &str) -> Result<Option<Vec<&'a str>>, CommandError> {
        let list = self.opt_str_list(name)?;
        if let Some(l) = list.iter().flatten().find(|l| labels::is_reserved(l)) {
            return Err(CommandError::bad_request(format!("label {l} is reserved")));
        }
        Ok(list)
    }

    /// A required list of objects.
    pub(super) fn req_obj_list(&self, name: &str) -> Result<Vec<&'a Map<String, Value>>, CommandError> {
        let v = self.required(name)?;
        let bad = || CommandError::expected(&self.path(name), "list of objects");
        let list = v.as_array().ok_or_else(bad)?;
        list.iter().map(|e| e.as_object().ok_or_else(bad)).collect()
    }

    /// An optional enumerated value: 400 `invalid <f>: must be one of <values>` otherwise.
    pub(super) fn opt_enum<T>(&self, name: &str, parse: fn(&str) -> Option<T>, values: &str) -> Result<Option<T>, CommandError> {
        let Some(s) = self.opt_str(name)? else { return Ok(None) };
        parse(s).map(Some).ok_or_else(|| CommandError::invalid(&self.path(name), &format!("must be one of {values}")))
    }

    /// A required enumerated value.
    pub(super) fn req_enum<T>(&self, name: &str, parse: fn(&str) -> Option<T>, values: &str) -> Result<T, CommandError> {
        self.required(name)?;
        self.opt_enum(name, parse, values)?.ok_or_else(|| CommandError::missing(&self.path(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Priority;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn json_is_told_apart_by_content_type_or_first_byte() {
        assert!(decode(b"  {\"a\":1}", None).is_ok());
        let mp = rmp_serde::to_vec_named(&json!({"a": 1})).unwrap();
        assert_eq!(decode(&mp, None).unwrap().get("a"), Some(&json!(1)));
        assert_eq!(decode(&mp, Some("application/msgpack")).unwrap().get("a"), Some(&json!(1)));
        assert!(decode(&mp, Some("application/json; charset=utf-8")).is_err());
        assert!(decode(b"{\"a\":1}", Some("application/json")).is_ok());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_invalid() {
        for body in [&b"[1,2]"[..], b"", b"{", b"42", b"\"x\""] {
            assert_eq!(decode(body, None).unwrap_err().message, "invalid body: expected object");
        }
        let mp = rmp_serde::to_vec(&vec![1, 2]).unwrap();
        assert_eq!(decode(&mp, None).unwrap_err().message, "invalid body: expected object");
    }

    #[test]
    fn a_body_over_256_kib_is_too_large() {
        let big = format!("{{\"title\":\"{}\"}}", "x".repeat(256 * 1024));
        assert_eq!(decode(big.as_bytes(), None).unwrap_err().message, "payload too large");
        let exact = format!("{{\"t\":\"{}\"}}", "x".repeat(256 * 1024 - 8));
        assert_eq!(exact.len(), 256 * 1024);
        assert!(decode(exact.as_bytes(), None).is_ok());
    }

    #[test]
    fn readers_word_missing_type_and_value_errors() {
        let m = obj(json!({"a": 1, "s": "x y", "n": null, "l": ["ok", 3], "p": "urgent", "r": "pc-7"}));
        let f = Fields::top(&m);
        assert_eq!(f.req_str("n").unwrap_err().message, "missing required field: n");
        assert_eq!(f.req_str("a").unwrap_err().message, "invalid a: expected string");
        assert_eq!(f.opt_bool("a").unwrap_err().message, "invalid a: expected boolean");
        assert_eq!(f.opt_int("s").unwrap_err().message, "invalid s: expected integer");
        assert_eq!(f.opt_obj("s").unwrap_err().message, "invalid s: expected object");
        assert_eq!(f.opt_str_list("l").unwrap_err().message, "invalid l: expected list of strings");
        assert_eq!(f.req_obj_list("l").unwrap_err().message, "invalid l: expected list of objects");
        assert_eq!(f.req_id("s", IdKind::Agent).unwrap_err().message, "invalid s: must match [A-Za-z0-9_-]{1,64}");
        assert_eq!(f.req_id("s", IdKind::Rig).unwrap_err().message, "invalid s: must match [A-Za-z0-9_-]{1,48}");
        assert_eq!(f.req_id("s", IdKind::Bead).unwrap_err().message, "invalid s: must match [A-Za-z0-9_.:-]{1,128}");
        assert_eq!(f.opt_new_id("r", IdKind::Bead).unwrap_err().message, "id pc-7 is reserved");
        assert_eq!(f.req_id("r", IdKind::Bead).unwrap(), "pc-7");
        assert_eq!(
            f.opt_enum("p", Priority::parse, Priority::VALUES).unwrap_err().message,
            "invalid p: must be one of low, medium, high, critical"
        );
        assert_eq!(f.opt_str("n").unwrap(), None);
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        let m = obj(json!({"title": 3, "depends_on": ["b1", "b 2"], "labels": ["x", "gt:convoy"]}));
        let f = Fields::nested(&m, "beads[1].");
        assert_eq!(f.req_str("title").unwrap_err().message, "invalid beads[1].title: expected string");
        assert_eq!(f.req_str("rig_id").unwrap_err().message, "missing required field: beads[1].rig_id");
        assert_eq!(
            f.opt_id_list("depends_on", IdKind::Bead).unwrap_err().message,
            "invalid beads[1].depends_on[1]: must match [A-Za-z0-9_.:-]{1,128}"
        );
        assert_eq!(f.opt_labels("labels").unwrap_err().message, "label gt:convoy is reserved");
        assert_eq!(f.check_unknown(&["title"], "unknown field").unwrap_err().message, "unknown field: beads[1].depends_on");
    }
}
