//! MessagePack with named fields (ARCHITECTURE §4): every struct is written as a map, never as a
//! positional array, so other languages can read it and fields can be added.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{Envelope, RawEnvelope};

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed.
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// Decoding failed.
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The envelope decoded but its data does not fit its type.
    #[error("event data: {0}")]
    Data(#[from] serde_json::Error),
}

/// Encodes `v` as MessagePack with named fields.
///
/// # Errors
/// Only for values serde cannot represent (none of the core's types).
pub fn to_msgpack<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(v)?)
}

/// Decodes MessagePack (maps or arrays are both accepted by serde's derive).
///
/// # Errors
/// Broken bytes or a value of the wrong shape.
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// What a fold makes of a stored event message (E1, ARCHITECTURE §9.5).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "one value per stored message, consumed at once by the fold")]
pub enum Stored {
    /// A decodable event.
    Event(Envelope),
    /// An envelope whose data does not fit its type (or of an unknown version): folded as a
    /// no-op that still advances the sequence and dedups its id.
    Malformed(RawEnvelope),
    /// Bytes that are not an envelope at all: folded as a no-op that advances the sequence.
    Broken,
}

/// Decodes a stored event message for folding; never fails.
#[must_use]
pub fn decode_stored(bytes: &[u8]) -> Stored {
    match rmp_serde::from_slice::<RawEnvelope>(bytes) {
        Err(_) => Stored::Broken,
        Ok(raw) => match raw.clone().into_envelope() {
            Ok(env) => Stored::Event(env),
            Err(_) => Stored::Malformed(raw),
        },
    }
}
