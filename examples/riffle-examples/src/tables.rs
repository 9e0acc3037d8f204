//! The `delta-wordcount` example: lines of the objects under a prefix in (S3, GCS,
//! Azure or a local folder), running word counts appended to a Delta Lake table,
//! exactly-once under a recovery store.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle_connectors::objects::{ObjectSource, ObjectStoreSettings};
use riffle_connectors::tables::DeltaSink;
use serde::{Deserialize, Serialize};

use crate::dataflows::words;

/// A row of the `delta-wordcount` table: a word and its running count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordCount {
    /// The word.
    pub word: String,
    /// How many times it was seen up to this row.
    pub count: i64,
}

/// The `delta-wordcount` flow: reads every object under `-P in=URL` line by line,
/// counts words, and appends a `(word, count)` row per word seen (its running
/// count) to the Delta table at `-P table=URL` (made when absent), from 2
/// partitions. `-P tail=false` stops once the objects there at the start are read.
/// Under `--recovery`, each partition adds one Delta commit per snapshot epoch
/// once the snapshot is committed, and a replayed epoch is found in the table's
/// log: every row is in the table exactly once across crashes.
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("in".into(), "file:///tmp/in".into()), ("table".into(), "file:///tmp/t".into())].into());
/// let flow = riffle_examples::tables::delta_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "delta-wordcount");
/// ```
pub fn delta_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let input = ctx.param("in").ok_or_else(|| {
        anyhow::anyhow!("delta-wordcount needs -P in=URL (s3://bucket/prefix, file:///folder)")
    })?;
    let table = ctx.param("table").ok_or_else(|| {
        anyhow::anyhow!("delta-wordcount needs -P table=URL (the Delta table's folder)")
    })?;
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let counter = ctx.counter("words");
    let flow = Dataflow::new("delta-wordcount");
    flow.input(
        "lines",
        ObjectSource::new(ObjectStoreSettings::new(input)).tail(tail),
    )?
    .flat_map("split", move |line| {
        let words: Vec<(String, ())> = words(&line.value).map(|w| (w, ())).collect();
        counter.fetch_add(words.len() as u64, Ordering::Relaxed);
        words
    })?
    .stateful_map("count", |_| 0i64, |n, ()| (Some(n + 1), n + 1))?
    .map("row", |(word, count): (String, i64)| WordCount {
        word,
        count,
    })?
    .output(
        "table",
        DeltaSink::<WordCount>::new(ObjectStoreSettings::new(table)).parts(2),
    )?;
    Ok(flow)
}
