//! Body codecs (ARCHITECTURE §4), re-exported from core so services depend on one crate for
//! the wire: town events and actions are MessagePack maps with named fields; heartbeat and
//! command bodies from outside are JSON or MessagePack, told apart by `Content-Type` or, without
//! one, by the first non-space byte.

pub use gastown_core::codec::{CodecError, Stored, decode_stored, from_msgpack, to_msgpack};
pub use gastown_core::heartbeat::{BodyFormat, body_format};
