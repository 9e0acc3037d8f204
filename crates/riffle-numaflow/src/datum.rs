//! Numaflow's data model: what a UDF receives and what it returns.
//!
//! A [`Datum`] is one input: keys, a value of bytes, an event time, the watermark
//! when it was read, and string headers. A [`Message`] is one output: keys, a value
//! and tags; the [`DROP`] tag tells the platform to drop it (conditional forwarding
//! uses the other tags). A sink answers each datum with a [`SinkResponse`]: success,
//! failure with a message, or fallback (send it to the fallback sink).
//!
//! ```
//! use riffle_numaflow::{Datum, Message};
//! let datum = Datum::new(b"hello".to_vec()).with_keys(["k"]);
//! let out = Message::new(datum.value.to_ascii_uppercase()).with_keys(datum.keys.clone());
//! assert_eq!(out.value, b"HELLO");
//! assert!(Message::to_drop().is_drop());
//! ```

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The tag that tells Numaflow to drop a message.
pub const DROP: &str = "U+005C__DROP__";

/// One input of a UDF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datum {
    /// The datum's keys (empty for unkeyed data).
    pub keys: Vec<String>,
    /// The payload.
    pub value: Vec<u8>,
    /// When the event happened.
    pub event_time: SystemTime,
    /// The watermark of the stream when the datum was read.
    pub watermark: SystemTime,
    /// String headers carried with the datum.
    pub headers: HashMap<String, String>,
    /// The id the platform gave the datum (batch map and sink echo it back).
    pub id: String,
}

impl Datum {
    /// A datum with this value, no keys, and event time and watermark at the epoch.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            keys: Vec::new(),
            value: value.into(),
            event_time: UNIX_EPOCH,
            watermark: UNIX_EPOCH,
            headers: HashMap::new(),
            id: String::new(),
        }
    }

    /// The same datum with these keys.
    pub fn with_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// The same datum with this event time.
    pub fn with_event_time(mut self, event_time: SystemTime) -> Self {
        self.event_time = event_time;
        self
    }

    /// The same datum with this watermark.
    pub fn with_watermark(mut self, watermark: SystemTime) -> Self {
        self.watermark = watermark;
        self
    }

    /// The same datum with one more header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// The same datum with this id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// One output of a map, map-stream, batch-map or reduce UDF.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    /// The output's keys (used by keyed reduce downstream).
    pub keys: Vec<String>,
    /// The payload.
    pub value: Vec<u8>,
    /// Tags for conditional forwarding; [`DROP`] drops the message.
    pub tags: Vec<String>,
}

impl Message {
    /// A message with this value, no keys and no tags.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            keys: Vec::new(),
            value: value.into(),
            tags: Vec::new(),
        }
    }

    /// A message the platform drops.
    pub fn to_drop() -> Self {
        Self {
            keys: Vec::new(),
            value: Vec::new(),
            tags: vec![DROP.to_string()],
        }
    }

    /// The same message with these keys.
    pub fn with_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// The same message with these tags.
    pub fn with_tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the message carries the [`DROP`] tag.
    pub fn is_drop(&self) -> bool {
        self.tags.iter().any(|t| t == DROP)
    }
}

/// One output of a source transformer: a message that may move the event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformMessage {
    /// The output message.
    pub message: Message,
    /// The (possibly new) event time.
    pub event_time: SystemTime,
}

impl TransformMessage {
    /// A message with a new event time.
    pub fn new(message: Message, event_time: SystemTime) -> Self {
        Self {
            message,
            event_time,
        }
    }
}

/// How a sink handled one datum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkStatus {
    /// Written.
    Success,
    /// Not written; the platform retries it. The message says why.
    Failure(String),
    /// Not written here; the platform sends it to the fallback sink.
    Fallback,
    /// Written; the bytes are served back to a caller (serving pipelines).
    Serve(Vec<u8>),
    /// Written; the platform forwards a message to the on-success sink.
    OnSuccess(Option<Message>),
}

/// A sink's answer for the datum with id `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkResponse {
    /// The id of the datum this answers.
    pub id: String,
    /// What happened to it.
    pub status: SinkStatus,
}

impl SinkResponse {
    /// The datum was written.
    pub fn success(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: SinkStatus::Success,
        }
    }
    /// The datum was not written, for this reason.
    pub fn failure(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: SinkStatus::Failure(message.into()),
        }
    }
    /// The datum goes to the fallback sink.
    pub fn fallback(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: SinkStatus::Fallback,
        }
    }
}

/// Where a source datum lives: opaque bytes and a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Offset {
    /// The source's own encoding of the position.
    pub offset: Vec<u8>,
    /// The partition the position belongs to.
    pub partition_id: i32,
}

impl Offset {
    /// An offset in a partition.
    pub fn new(offset: impl Into<Vec<u8>>, partition_id: i32) -> Self {
        Self {
            offset: offset.into(),
            partition_id,
        }
    }
}

/// One datum read from a user-defined source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMessage {
    /// The payload.
    pub payload: Vec<u8>,
    /// Where it was read from (used to acknowledge it).
    pub offset: Offset,
    /// When the event happened.
    pub event_time: SystemTime,
    /// Keys of the datum.
    pub keys: Vec<String>,
    /// String headers.
    pub headers: HashMap<String, String>,
}

impl SourceMessage {
    /// A message with a payload and an offset, event time now.
    pub fn new(payload: impl Into<Vec<u8>>, offset: Offset) -> Self {
        Self {
            payload: payload.into(),
            offset,
            event_time: SystemTime::now(),
            keys: Vec::new(),
            headers: HashMap::new(),
        }
    }

    /// The same message with these keys.
    pub fn with_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// The same message with this event time.
    pub fn with_event_time(mut self, event_time: SystemTime) -> Self {
        self.event_time = event_time;
        self
    }
}

/// A read request to a source: up to `count` datums, within `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// At most this many datums.
    pub count: u64,
    /// Return what was read when this much time has passed.
    pub timeout: Duration,
}

/// A window of a reduce UDF: `[start, end)` and a slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The window's first instant.
    pub start: SystemTime,
    /// The instant after the window's last.
    pub end: SystemTime,
    /// The slot (`slot-0` for aligned windows).
    pub slot: String,
}

impl Window {
    /// A window `[start, end)` in slot `slot-0`.
    pub fn new(start: SystemTime, end: SystemTime) -> Self {
        Self {
            start,
            end,
            slot: "slot-0".into(),
        }
    }
}

/// One output of an accumulator: a datum (keys, value, times, headers, id) and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accumulated {
    /// The output datum; its watermark advances the task's window end.
    pub datum: Datum,
    /// Tags for conditional forwarding.
    pub tags: Vec<String>,
}

impl Accumulated {
    /// An output datum without tags.
    pub fn new(datum: Datum) -> Self {
        Self {
            datum,
            tags: Vec::new(),
        }
    }
}

/// What a side-input retriever answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SideInputValue {
    /// Broadcast this value to every vertex that reads the side input.
    Broadcast(Vec<u8>),
    /// Keep the previous value.
    NoBroadcast,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_is_a_tag() {
        let m = Message::new(b"x".to_vec()).with_tags(["a"]);
        assert!(!m.is_drop());
        assert!(Message::to_drop().is_drop());
        assert_eq!(Message::to_drop().tags, vec![DROP.to_string()]);
    }
}
