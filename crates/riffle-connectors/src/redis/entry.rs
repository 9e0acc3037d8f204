//! What flows in and out: [`RedisEntry`] read from a stream, [`RedisRecord`] to add.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The field a record made from one value puts it in, and the one
/// [`RedisEntry::value`] reads.
pub const VALUE_FIELD: &str = "value";

/// One entry of a Redis stream, as the source read it: its fields, and, when
/// the source has a format ([`RedisSource::format`](super::RedisSource::format)),
/// its `value` field decoded (`()` without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisEntry<V = ()> {
    /// The stream's key.
    pub stream: Arc<str>,
    /// The entry's id, `milliseconds-sequence` (e.g. `1718000000000-0`).
    pub id: String,
    /// Its fields and values, in the order they were added.
    pub fields: Vec<(String, Vec<u8>)>,
    /// The field the source decodes (`value` unless it says), decoded by its
    /// format; `()` when the source has none.
    pub decoded: V,
}

impl<V> RedisEntry<V> {
    /// The bytes of field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The field `value` as text (`None` when missing or not UTF-8).
    ///
    /// ```
    /// use riffle_connectors::redis::RedisEntry;
    /// let e = RedisEntry { stream: "s".into(), id: "1-0".into(), fields: vec![("value".into(), b"hi".to_vec())], decoded: () };
    /// assert_eq!(e.value(), Some("hi"));
    /// ```
    pub fn value(&self) -> Option<&str> {
        std::str::from_utf8(self.field(VALUE_FIELD)?).ok()
    }

    /// When the entry was added, in ms since the Unix epoch (the id's first part).
    pub fn timestamp_ms(&self) -> Option<u64> {
        self.id.split_once('-')?.0.parse().ok()
    }
}

/// An entry for the sink to add (`XADD`): its fields, and an optional key that picks
/// which of the sink's streams it goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisRecord {
    /// Routes the record: records with one key go to one stream, in order.
    pub key: Option<Vec<u8>>,
    /// The entry's fields and values.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl RedisRecord {
    /// A record with one field, `value`.
    ///
    /// ```
    /// use riffle_connectors::redis::RedisRecord;
    /// let r = RedisRecord::new("7").key("apple").field("source", "orders");
    /// assert_eq!(r.fields[0], ("value".to_string(), b"7".to_vec()));
    /// assert_eq!(r.key.as_deref(), Some(&b"apple"[..]));
    /// ```
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            fields: vec![(VALUE_FIELD.to_string(), value.into())],
        }
    }

    /// A record with these fields.
    pub fn with_fields<N: Into<String>, V: Into<Vec<u8>>>(
        fields: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self {
            key: None,
            fields: fields
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }

    /// The same record with another field.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The same record routed by `key`.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }
}
