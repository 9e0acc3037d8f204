//! What the Kafka source emits ([`KafkaMessage`]) and what the sink writes
//! ([`KafkaRecord`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A message read from Kafka, its value decoded by the source's format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaMessage<V = Vec<u8>> {
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (ms since the Unix epoch), when it has one.
    pub timestamp: Option<i64>,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, decoded; `None` for a tombstone (no value).
    pub value: Option<V>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record to write to Kafka.
///
/// ```
/// use riffle_connectors::kafka::KafkaRecord;
/// let r = KafkaRecord::new("hello").key("greeting").header("lang", "en");
/// assert_eq!(r.value.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(r.key.as_deref(), Some(&b"greeting"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KafkaRecord {
    /// Its key: chooses the partition (as Kafka's default partitioner does).
    pub key: Option<Vec<u8>>,
    /// Its value (`None` writes a tombstone).
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its timestamp (ms since the Unix epoch); the producer's clock if `None`.
    pub timestamp: Option<i64>,
}

impl KafkaRecord {
    /// A record with this value and no key.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record whose value is `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::new(serde_json::to_vec(value)?))
    }

    /// The same record with this key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same record with one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same record with this timestamp (ms since the Unix epoch).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}
