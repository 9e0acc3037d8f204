//! What flows in and out: [`RabbitMessage`] consumed from a queue, [`RabbitRecord`]
//! to publish.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One message consumed from a RabbitMQ queue, its body decoded by the source's
/// format (bytes unless [`RabbitSource::format`](super::RabbitSource::format) says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RabbitMessage<V = Vec<u8>> {
    /// The queue it was consumed from.
    pub queue: Arc<str>,
    /// The exchange it was published to (empty: the default exchange).
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker delivered it before (to this or another consumer)
    /// without an acknowledgement: it may have been processed already.
    pub redelivered: bool,
    /// The publisher's message id property, when it set one.
    pub message_id: Option<String>,
    /// The body, decoded.
    pub payload: V,
}

impl RabbitMessage<Vec<u8>> {
    /// The message of a delivery from `queue` (consumed or fetched).
    pub(crate) fn delivered(queue: &Arc<str>, d: lapin::message::Delivery) -> Self {
        Self {
            queue: queue.clone(),
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            redelivered: d.redelivered,
            message_id: d.properties.message_id().as_ref().map(|id| id.to_string()),
            payload: d.data,
        }
    }

    /// The body as text (`None` when not UTF-8).
    ///
    /// ```
    /// use riffle_connectors::rabbitmq::RabbitMessage;
    /// let m = RabbitMessage {
    ///     queue: "q".into(), exchange: String::new(), routing_key: "q".into(),
    ///     redelivered: false, message_id: None, payload: b"hi".to_vec(),
    /// };
    /// assert_eq!(m.value(), Some("hi"));
    /// ```
    pub fn value(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }
}

/// A message for the sink to publish: its body, an optional key that picks which
/// of the sink's routing keys it goes to, and an optional message id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RabbitRecord {
    /// Routes the record: records with one key go to one routing key, in order.
    pub key: Option<Vec<u8>>,
    /// The message id property, for consumers that de-duplicate.
    pub message_id: Option<String>,
    /// The body.
    pub payload: Vec<u8>,
}

impl RabbitRecord {
    /// A record with this body.
    ///
    /// ```
    /// use riffle_connectors::rabbitmq::RabbitRecord;
    /// let r = RabbitRecord::new("7").key("apple").message_id("order-7");
    /// assert_eq!(r.payload, b"7");
    /// assert_eq!(r.key.as_deref(), Some(&b"apple"[..]));
    /// assert_eq!(r.message_id.as_deref(), Some("order-7"));
    /// ```
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            message_id: None,
            payload: payload.into(),
        }
    }

    /// The same record routed by `key`.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same record with a message id.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
}
