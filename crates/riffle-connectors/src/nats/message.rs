//! What the NATS source emits ([`NatsMessage`]) and what the sink publishes
//! ([`NatsRecord`]).

use serde::{Deserialize, Serialize};

/// A message read from a JetStream stream, its payload decoded by the source's
/// format (bytes unless [`NatsSource::format`](super::NatsSource::format) says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatsMessage<V = Vec<u8>> {
    /// The subject it was published to.
    pub subject: String,
    /// Its payload, decoded.
    pub payload: V,
    /// Its headers, in order (a name may repeat).
    pub headers: Vec<(String, String)>,
    /// Its sequence number in the stream: its position.
    pub sequence: u64,
    /// When the server stored it, in ms since the Unix epoch.
    pub timestamp_ms: i64,
}

impl NatsMessage<Vec<u8>> {
    /// The payload as text, when it is UTF-8.
    ///
    /// ```
    /// use riffle_connectors::nats::NatsMessage;
    /// let m = NatsMessage { subject: "s".into(), payload: b"hi".to_vec(), headers: vec![], sequence: 1, timestamp_ms: 0 };
    /// assert_eq!(m.text(), Some("hi"));
    /// ```
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }
}

/// A message for the sink to publish.
///
/// `id`, when given, is sent as the `Nats-Msg-Id` header: JetStream drops a
/// message whose id it has seen within the stream's duplicate window, which is
/// what makes a replayed epoch harmless. Derive it from what the record stands
/// for (an input position, a key and a version), so that the same record gets
/// the same id when a resumed run writes it again.
///
/// ```
/// use riffle_connectors::nats::NatsRecord;
/// let r = NatsRecord::new("42").subject("counts.apple").id("apple:42");
/// assert_eq!(r.id.as_deref(), Some("apple:42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NatsRecord {
    /// The subject; `None` publishes to the sink's subject.
    pub subject: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Headers to send along.
    pub headers: Vec<(String, String)>,
    /// The message id JetStream de-duplicates on.
    pub id: Option<String>,
}

impl NatsRecord {
    /// A record with this payload, published to the sink's subject, without id.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// The same, published to `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The same, with the message id `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The same, with one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}
