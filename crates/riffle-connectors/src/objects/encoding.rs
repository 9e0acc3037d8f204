//! How a sink's items become the bytes of one object: the [`FileEncoding`] trait
//! and [`Lines`], the default. The object sink's commit protocol (stage at each
//! snapshot, move into place on commit) is the same whatever the encoding;
//! `tables::ParquetFiles` (feature `tables`) writes Parquet files through it.

/// Turns a batch of items into the bytes of one object.
///
/// ```
/// use riffle_connectors::objects::{FileEncoding, Lines};
/// let bytes = Lines.encode(&["a".to_string(), "b".to_string()]).unwrap();
/// assert_eq!(bytes, b"a\nb\n");
/// assert_eq!(Lines.suffix(), ".jsonl");
/// ```
pub trait FileEncoding: Send + Sync + 'static {
    /// What the sink writes.
    type Item: riffle::Data;

    /// The end of every object's name (e.g. `.jsonl`, `.parquet`).
    fn suffix(&self) -> &str;

    /// A hash of `item` that is the same on every worker and run: it chooses the
    /// sink partition the item goes to.
    fn route(&self, item: &Self::Item) -> u64;

    /// The object holding `items`, in order; the error is the reason only (the
    /// sink adds the object's name).
    fn encode(&self, items: &[Self::Item]) -> Result<Vec<u8>, String>;
}

/// Each item one line of text (the default encoding of
/// [`ObjectSink`](super::ObjectSink)).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines;

impl FileEncoding for Lines {
    type Item = String;

    fn suffix(&self) -> &str {
        ".jsonl"
    }

    fn route(&self, item: &String) -> u64 {
        riffle::exchange::stable_hash(item)
    }

    fn encode(&self, items: &[String]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(items.iter().map(|l| l.len() + 1).sum());
        for line in items {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        Ok(out)
    }
}
