//! How step outputs become bytes, and bytes become a content hash.
//!
//! Values are encoded with postcard, a compact binary serde format that is
//! deterministic for a given value and type: the same value always gives the same
//! bytes, and two values that differ anywhere (one float in the middle of a vector of a
//! million) give different bytes. The bytes are hashed with BLAKE3; the hash is the
//! artifact's identity in the store and part of every downstream step's cache key.
//!
//! postcard does not describe itself, so types whose `Deserialize` needs to peek at the
//! data (`serde_json::Value`, `#[serde(untagged)]` enums, `skip_serializing_if`) do not
//! round-trip; use plain structs, enums, vectors and maps.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A BLAKE3 hash of an artifact's bytes, shown as 64 lowercase hex digits.
///
/// ```
/// use riffle_pipeline::ContentHash;
///
/// let hash = ContentHash::of(b"hello");
/// let parsed: ContentHash = hash.to_string().parse().unwrap();
/// assert_eq!(hash, parsed);
/// assert_ne!(hash, ContentHash::of(b"hellp"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 hex digits (the same as `to_string`).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub(crate) fn from_blake3(hash: blake3::Hash) -> Self {
        ContentHash(*hash.as_bytes())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

/// Why a text is not a content hash.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a content hash: expected 64 hex digits")]
pub struct ParseHashError {
    text: String,
}

impl FromStr for ContentHash {
    type Err = ParseHashError;

    fn from_str(text: &str) -> Result<Self, ParseHashError> {
        blake3::Hash::from_hex(text)
            .map(Self::from_blake3)
            .map_err(|_| ParseHashError {
                text: text.to_string(),
            })
    }
}

/// A value encoded for the store: its bytes, their hash and the Rust type it came from.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The postcard bytes.
    pub bytes: Bytes,
    /// BLAKE3 of `bytes`.
    pub hash: ContentHash,
    /// `std::any::type_name` of the value's type.
    pub type_name: &'static str,
}

/// Encodes `value`; `what` names it in an error ("output of step \"load\"").
pub fn encode<T: Serialize>(value: &T, what: &str) -> Result<Encoded> {
    let bytes = postcard::to_stdvec(value).map_err(|source| Error::Codec {
        what: format!("encoding {what}"),
        source,
    })?;
    let hash = ContentHash::of(&bytes);
    Ok(Encoded {
        bytes: Bytes::from(bytes),
        hash,
        type_name: std::any::type_name::<T>(),
    })
}

/// Decodes bytes written by [`encode`]; `what` names them in an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|source| Error::Codec {
        what: format!("decoding {what} as {}", std::any::type_name::<T>()),
        source,
    })
}
