//! How a message's value (a Kafka record's value, a line of an object, a NATS,
//! SQS or RabbitMQ body, a Redis entry's `value` field) becomes an item: the
//! [`Format`] trait and the built-in formats, shared by the connectors, and the
//! [`Decoder`] that the broker sources run each value through: decoded, or set
//! aside as a dead letter with its position, or (strict) the run stops there.

use std::marker::PhantomData;
use std::sync::Arc;

use riffle::dead_letters::DeadLetters;
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

/// No value read at all: every value is `()`. The format of a source whose items
/// carry their input as it came (a Redis entry's fields) until a format is chosen.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoValue;

impl Format for NoValue {
    type Value = ();
    fn decode(&self, _bytes: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// A source's "decode, or set aside" step, shared by the connectors: a
/// [`Format`] and, when the user gave them, the [`DeadLetters`] that take what
/// the format cannot decode.
///
/// [`Decoder::decode`] gives the value, or, for a value the format refuses,
/// writes a letter with the reason and the position and gives `None` (the
/// source skips the input, yet still counts it as read, so that the commit that
/// passes it acknowledges it), or, without dead letters (strict), an error that
/// names the step, the position and the reason. A source calls
/// [`Decoder::sync`] in its commit hook before it acknowledges anything, so a
/// letter written to a file is on disk before its input is gone upstream.
///
/// ```
/// use riffle::dead_letters::DeadLetters;
/// use riffle_connectors::format::{Decoder, Utf8};
///
/// let dir = tempfile::tempdir().unwrap();
/// let strict = Decoder::new(Utf8);
/// let at = || [("queue", "q".into()), ("tag", 7.into())];
/// let fail = |what: String| riffle::RiffleError::connector("in", what);
/// assert_eq!(strict.decode("in", at, b"hi", fail).unwrap().as_deref(), Some("hi"));
/// let stop = strict.decode("in", at, &[0xff], fail).unwrap_err().to_string();
/// assert!(stop.contains(r#"queue "q", tag 7"#) && stop.contains("UTF-8"), "{stop}");
///
/// let lenient = strict.dead_letters(Some(DeadLetters::file(dir.path().join("bad.jsonl"))));
/// assert_eq!(lenient.decode("in", at, &[0xff], fail).unwrap(), None);
/// lenient.sync("in").unwrap();
/// let letter = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap();
/// assert!(letter.contains(r#""tag":7"#) && letter.contains(r#""hex":"ff""#), "{letter}");
/// ```
pub struct Decoder<F> {
    format: Arc<F>,
    letters: Option<DeadLetters>,
}

impl<F> Clone for Decoder<F> {
    fn clone(&self) -> Self {
        Self {
            format: self.format.clone(),
            letters: self.letters.clone(),
        }
    }
}

impl<F> std::fmt::Debug for Decoder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("format", &std::any::type_name::<F>())
            .field("letters", &self.letters)
            .finish()
    }
}

impl<F: Format> Decoder<F> {
    /// Decodes with `format`, strict (no dead letters).
    pub fn new(format: F) -> Self {
        Self {
            format: Arc::new(format),
            letters: None,
        }
    }

    /// The same dead letters with another format.
    pub fn format<G: Format>(self, format: G) -> Decoder<G> {
        Decoder {
            format: Arc::new(format),
            letters: self.letters,
        }
    }

    /// The same format, bad values going to `letters` (`None`: strict).
    pub fn dead_letters(mut self, letters: Option<DeadLetters>) -> Self {
        self.letters = letters;
        self
    }

    /// Whether bad values go to dead letters rather than stop the run.
    pub fn has_dead_letters(&self) -> bool {
        self.letters.is_some()
    }

    /// Decodes `bytes`, read by step `step_id` at the position `position()`
    /// gives (its fields, in order, as the letter names them; made only for a
    /// value the format refuses, so a good value costs no allocation for it). A
    /// value the format refuses becomes a letter (`Ok(None)`), or, strict, the
    /// error `fail` makes of a sentence that names the position and the reason
    /// (`fail` adds the connector and server).
    pub fn decode<P: AsRef<[(&'static str, serde_json::Value)]>>(
        &self,
        step_id: &str,
        position: impl FnOnce() -> P,
        bytes: &[u8],
        fail: impl FnOnce(String) -> riffle::RiffleError,
    ) -> riffle::Result<Option<F::Value>> {
        match self.format.decode(bytes) {
            Ok(value) => Ok(Some(value)),
            Err(why) => self
                .refuse(step_id, position().as_ref(), &why, bytes, fail)
                .map(|()| None),
        }
    }

    /// Sets aside (or, strict, stops the run for) an input the source found bad
    /// before decoding it (a Redis entry without the field to decode): the same
    /// letter or error as [`Decoder::decode`] makes, with reason `why`.
    pub fn refuse(
        &self,
        step_id: &str,
        position: &[(&str, serde_json::Value)],
        why: &str,
        input: &[u8],
        fail: impl FnOnce(String) -> riffle::RiffleError,
    ) -> riffle::Result<()> {
        match &self.letters {
            Some(letters) => letters.write(step_id, position, why, input),
            None => Err(fail(format!(
                "cannot decode the input at {}: {why}",
                describe(position)
            ))),
        }
    }

    /// Makes the letters written so far durable (see [`DeadLetters::sync`]);
    /// call it from the commit hook before acknowledging.
    pub fn sync(&self, step_id: &str) -> riffle::Result<()> {
        match &self.letters {
            Some(letters) => letters.sync(step_id),
            None => Ok(()),
        }
    }
}

/// A position as words: `stream "ORDERS", sequence 7` (fields without a value
/// left out).
fn describe(position: &[(&str, serde_json::Value)]) -> String {
    position
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| format!("{name} {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}
