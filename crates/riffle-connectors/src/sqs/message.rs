//! What flows in and out: [`SqsMessage`] received from a queue, [`SqsRecord`] to send.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One message received from a queue, its body decoded by the source's format
/// (text unless [`SqsSource::format`](super::SqsSource::format) says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsMessage<V = String> {
    /// The queue's name (or URL, as the source was given it).
    pub queue: Arc<str>,
    /// SQS's id of the message (stable across deliveries).
    pub message_id: String,
    /// Its body, decoded.
    pub body: V,
    /// How many times SQS has handed it out, this time included (1 on the first
    /// delivery; more after a crash, a failed delete or an expired visibility).
    pub receive_count: u32,
    /// Its FIFO message group, on FIFO queues.
    pub group_id: Option<String>,
    /// Its message attributes of type `String` or `Number`, by name.
    pub attributes: BTreeMap<String, String>,
}

/// A message for the sink to send: a body and, on FIFO queues, its group and an
/// optional de-duplication id.
///
/// ```
/// use riffle_connectors::sqs::SqsRecord;
/// let r = SqsRecord::new("hello").group("customer-7").dedup_id("order-12");
/// assert_eq!(r.group_id.as_deref(), Some("customer-7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsRecord {
    /// The message body (SQS takes text; at most 256 KiB with its attributes).
    pub body: String,
    /// The FIFO message group (`MessageGroupId`): messages of one group are
    /// delivered in order. On a FIFO queue, a record without one goes to the
    /// group `riffle`. Ignored by standard queues.
    pub group_id: Option<String>,
    /// The FIFO de-duplication id (`MessageDeduplicationId`); without one the sink
    /// makes one from its position (see the [module docs](super)).
    pub dedup_id: Option<String>,
    /// Message attributes (sent as `String`), by name.
    pub attributes: BTreeMap<String, String>,
}

impl SqsRecord {
    /// A record with this body.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            group_id: None,
            dedup_id: None,
            attributes: BTreeMap::new(),
        }
    }

    /// The same record in FIFO message group `group`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// The same record with this FIFO de-duplication id.
    pub fn dedup_id(mut self, id: impl Into<String>) -> Self {
        self.dedup_id = Some(id.into());
        self
    }

    /// The same record with a message attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Its size as SQS counts it against the 256 KiB limit: the body and each
    /// attribute's name, type and value.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }
}
