//! How a message's value (a Kafka record's value, a line of an object) becomes an
//! item: the [`Format`] trait and the built-in formats, shared by the connectors.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

/// Decodes a message value. Errors are the reason only; the source adds where the
/// value was (topic, partition and offset; object and line).
pub trait Format: Send + Sync + 'static {
    /// What a value decodes to.
    type Value: riffle::Data;

    /// Decodes `bytes`.
    fn decode(&self, bytes: &[u8]) -> Result<Self::Value, String>;
}

/// Values as they are: bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Format for Bytes {
    type Value = Vec<u8>;
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// Values as UTF-8 text.
///
/// ```
/// use riffle_connectors::format::{Format, Utf8};
/// assert_eq!(Utf8.decode(b"hi").unwrap(), "hi");
/// assert!(Utf8.decode(&[0xff]).unwrap_err().contains("UTF-8"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Format for Utf8 {
    type Value = String;
    fn decode(&self, bytes: &[u8]) -> Result<String, String> {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|e| format!("the value is not UTF-8: {e}"))
    }
}

/// Values as JSON documents of type `T` (serde).
///
/// ```
/// use riffle_connectors::format::{Format, Json};
/// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug, PartialEq)]
/// struct Order { id: u32 }
/// assert_eq!(Json::<Order>::new().decode(br#"{"id":7}"#).unwrap(), Order { id: 7 });
/// assert!(Json::<Order>::new().decode(b"{").is_err());
/// ```
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// JSON values of type `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: riffle::Data + DeserializeOwned> Format for Json<T> {
    type Value = T;
    fn decode(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("the value is not valid JSON here: {e}"))
    }
}
