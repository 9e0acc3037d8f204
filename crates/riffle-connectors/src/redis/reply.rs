//! Reading the server's replies to the stream commands (`XREADGROUP`, `XAUTOCLAIM`,
//! `XRANGE`) into entries, field order and binary values kept.

use std::sync::Arc;

use redis::Value;

use super::entry::RedisEntry;

/// An entry as a reply lists it: its id and, unless it was deleted from the stream
/// while pending, its fields.
pub(crate) type RawEntry = (String, Option<Vec<(String, Vec<u8>)>>);

fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|e| e.to_string()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(format!("expected text, got {other:?}")),
    }
}

fn bytes(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(format!("expected a value, got {other:?}")),
    }
}

fn items(v: &Value) -> Result<&[Value], String> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        other => Err(format!("expected a list, got {other:?}")),
    }
}

/// One `[id, [field, value, ...]]` (the fields `nil` for a deleted entry).
fn entry(v: &Value) -> Result<RawEntry, String> {
    let parts = items(v)?;
    let [id, fields] = parts else {
        return Err(format!("an entry of {} parts", parts.len()));
    };
    let fields = match fields {
        Value::Nil => None,
        other => {
            let flat = items(other)?;
            let mut out = Vec::with_capacity(flat.len() / 2);
            for pair in flat.chunks(2) {
                let [name, value] = pair else {
                    return Err("an odd number of field names and values".into());
                };
                out.push((text(name)?, bytes(value)?));
            }
            Some(out)
        }
    };
    Ok((text(id)?, fields))
}

/// A list of entries (`XRANGE`'s reply, and parts of the others).
pub(crate) fn entries(v: &Value) -> Result<Vec<RawEntry>, String> {
    items(v)?.iter().map(entry).collect()
}

/// `XREADGROUP` on one stream: its entries (none when it timed out).
pub(crate) fn read_group(v: &Value) -> Result<Vec<RawEntry>, String> {
    let streams: Vec<(&Value, &Value)> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        other => items(other)?
            .iter()
            .map(|s| match items(s)? {
                [k, v] => Ok((k, v)),
                parts => Err(format!("a stream of {} parts", parts.len())),
            })
            .collect::<Result<_, String>>()?,
    };
    let mut out = Vec::new();
    for (_, list) in streams {
        out.extend(entries(list)?);
    }
    Ok(out)
}

/// `XAUTOCLAIM`: the cursor to go on from (`0-0` at the end) and the entries claimed.
pub(crate) fn auto_claim(v: &Value) -> Result<(String, Vec<RawEntry>), String> {
    let parts = items(v)?;
    let (Some(cursor), Some(list)) = (parts.first(), parts.get(1)) else {
        return Err(format!("an XAUTOCLAIM reply of {} parts", parts.len()));
    };
    Ok((text(cursor)?, entries(list)?))
}

/// Entries with their fields, as the source emits them (deleted ones left out).
pub(crate) fn to_entries(stream: &Arc<str>, raw: Vec<RawEntry>) -> Vec<RedisEntry> {
    raw.into_iter()
        .filter_map(|(id, fields)| {
            Some(RedisEntry {
                stream: stream.clone(),
                id,
                fields: fields?,
                decoded: (),
            })
        })
        .collect()
}

/// A stream entry id, `ms-seq`, as numbers to compare.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_group_replies_with_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            b("orders"),
            Value::Array(vec![
                Value::Array(vec![
                    b("1-0"),
                    Value::Array(vec![b("value"), b("x"), b("n"), b("2")]),
                ]),
                Value::Array(vec![b("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_group(&reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "1-0");
        assert_eq!(
            got[0].1.as_ref().unwrap()[1],
            ("n".to_string(), b"2".to_vec())
        );
        assert!(got[1].1.is_none());
        let stream: Arc<str> = Arc::from("orders");
        assert_eq!(to_entries(&stream, got).len(), 1);
        assert!(read_group(&Value::Nil).unwrap().is_empty());
        assert!(read_group(&b("junk")).is_err());
        assert_eq!(parse_id("17-3"), Some((17, 3)));
        assert!(parse_id("17").is_none());
    }
}
