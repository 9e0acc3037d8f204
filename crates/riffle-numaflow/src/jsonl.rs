//! JSON lines in and out, for calling a UDF by hand (`riffle udf call`).
//!
//! One input line is one datum:
//!
//! ```text
//! {"value": "hello", "keys": ["k"], "event_time_ms": 1700000000000, "headers": {"h": "v"}, "id": "a"}
//! ```
//!
//! Only `value` (UTF-8 text) or `value_hex` (any bytes) is required. Outputs are JSON
//! objects whose byte fields are `value` when they are UTF-8 and `value_hex`
//! otherwise.
//!
//! ```
//! use riffle_numaflow::jsonl::parse_datum;
//! let d = parse_datum(r#"{"value": "hi", "keys": ["a"]}"#, 1).unwrap();
//! assert_eq!(d.value, b"hi");
//! assert!(parse_datum("{nope", 2).unwrap_err().to_string().contains("line 2"));
//! ```

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::datum::{
    Datum, Message, SideInputValue, SinkResponse, SinkStatus, SourceMessage, TransformMessage,
};
use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_hex: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    event_time_ms: Option<i64>,
    #[serde(default)]
    watermark_ms: Option<i64>,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    id: Option<String>,
}

fn bad(line: usize, reason: impl Into<String>) -> Error {
    Error::Input {
        what: format!("line {line}"),
        reason: reason.into(),
    }
}

fn time_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_millis(ms.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// Milliseconds since the epoch (negative before it).
pub fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Parses line number `line` (1-based, for errors) into a datum.
pub fn parse_datum(text: &str, line: usize) -> Result<Datum> {
    let input: InputLine =
        serde_json::from_str(text).map_err(|e| bad(line, format!("not a datum object: {e}")))?;
    let value = match (input.value, input.value_hex) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex)) => {
            from_hex(&hex).ok_or_else(|| bad(line, "value_hex is not hexadecimal"))?
        }
        (None, None) => return Err(bad(line, "a datum needs \"value\" or \"value_hex\"")),
        (Some(_), Some(_)) => return Err(bad(line, "give \"value\" or \"value_hex\", not both")),
    };
    let now = SystemTime::now();
    Ok(Datum {
        keys: input.keys,
        value,
        event_time: input.event_time_ms.map(time_ms).unwrap_or(now),
        watermark: input.watermark_ms.map(time_ms).unwrap_or(UNIX_EPOCH),
        headers: input.headers,
        id: input.id.unwrap_or_default(),
    })
}

/// Parses every non-blank line of `text`.
pub fn parse_datums(text: &str) -> Result<Vec<Datum>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_datum(l, i + 1))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => obj.insert(name.to_string(), json!(text)),
        Err(_) => obj.insert(format!("{name}_hex"), json!(hex(bytes))),
    };
}

/// A message as JSON: `{"keys", "value", "tags", "drop"}`.
pub fn message_json(m: &Message) -> Value {
    let mut obj = Map::new();
    obj.insert("keys".into(), json!(m.keys));
    put_bytes(&mut obj, "value", &m.value);
    obj.insert("tags".into(), json!(m.tags));
    if m.is_drop() {
        obj.insert("drop".into(), json!(true));
    }
    Value::Object(obj)
}

/// A transformed message as JSON: a message plus `event_time_ms`.
pub fn transform_json(t: &TransformMessage) -> Value {
    let mut v = message_json(&t.message);
    v["event_time_ms"] = json!(to_ms(t.event_time));
    v
}

/// A sink response as JSON: `{"id", "status", "error"?}`.
pub fn sink_json(r: &SinkResponse) -> Value {
    match &r.status {
        SinkStatus::Success => json!({"id": r.id, "status": "success"}),
        SinkStatus::Failure(e) => json!({"id": r.id, "status": "failure", "error": e}),
        SinkStatus::Fallback => json!({"id": r.id, "status": "fallback"}),
        SinkStatus::Serve(b) => json!({"id": r.id, "status": "serve", "bytes": b.len()}),
        SinkStatus::OnSuccess(m) => {
            json!({"id": r.id, "status": "on-success", "message": m.as_ref().map(message_json)})
        }
    }
}

/// A source message as JSON: payload, keys, offset (hex) and partition, event time.
pub fn source_json(m: &SourceMessage) -> Value {
    let mut obj = Map::new();
    put_bytes(&mut obj, "payload", &m.payload);
    obj.insert("keys".into(), json!(m.keys));
    obj.insert("offset_hex".into(), json!(hex(&m.offset.offset)));
    obj.insert("partition".into(), json!(m.offset.partition_id));
    obj.insert("event_time_ms".into(), json!(to_ms(m.event_time)));
    Value::Object(obj)
}

/// A side-input answer as JSON.
pub fn side_input_json(v: &SideInputValue) -> Value {
    match v {
        SideInputValue::Broadcast(bytes) => {
            let mut obj = Map::new();
            obj.insert("broadcast".into(), json!(true));
            put_bytes(&mut obj, "value", bytes);
            Value::Object(obj)
        }
        SideInputValue::NoBroadcast => json!({"broadcast": false}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_hex() {
        let d = parse_datum(r#"{"value_hex": "00ff10"}"#, 1).unwrap();
        assert_eq!(d.value, vec![0, 255, 16]);
        let v = message_json(&Message::new(vec![0xff]));
        assert_eq!(v["value_hex"], json!("ff"));
    }

    #[test]
    fn bad_lines_say_which_and_why() {
        for (text, why) in [
            ("{}", "needs"),
            (r#"{"value": "a", "value_hex": "00"}"#, "not both"),
            (r#"{"value_hex": "0"}"#, "hexadecimal"),
            (r#"{"value": "a", "colour": 1}"#, "unknown field"),
        ] {
            let err = parse_datum(text, 7).unwrap_err().to_string();
            assert!(err.contains("line 7") && err.contains(why), "{err}");
        }
    }

    #[test]
    fn times_are_milliseconds() {
        let d = parse_datum(
            r#"{"value": "a", "event_time_ms": 1500, "watermark_ms": -20}"#,
            1,
        )
        .unwrap();
        assert_eq!(to_ms(d.event_time), 1500);
        assert_eq!(to_ms(d.watermark), -20);
    }
}
