//! The `objects-wordcount` example: lines of the objects under a prefix in (S3,
//! GCS, Azure or a local folder), running word counts out to new objects,
//! exactly-once under a recovery store.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle_connectors::objects::{ObjectSink, ObjectSource, ObjectStoreSettings};

use crate::dataflows::words;

/// The `objects-wordcount` flow: reads every object under `-P in=URL`
/// (`s3://bucket/prefix`, `file:///abs/folder`, ...) line by line, counts words,
/// and writes `word,count` lines (each word's running count) into new objects
/// under `-P out=URL` from 4 partitions. `-P tail=false` stops once the objects
/// there at the start are read; otherwise new objects are read as they appear.
/// Under `--recovery`, objects are staged at each snapshot and moved into place
/// once it is committed: every count is written exactly once across crashes. The
/// store's options and credentials come from the provider's variables (`AWS_*`,
/// `GOOGLE_*`, `AZURE_*`).
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("in".into(), "s3://b/in".into()), ("out".into(), "s3://b/out".into())].into());
/// let flow = riffle_examples::objects::objects_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "objects-wordcount");
/// ```
pub fn objects_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let input = ctx.param("in").ok_or_else(|| {
        anyhow::anyhow!("objects-wordcount needs -P in=URL (s3://bucket/prefix, file:///folder)")
    })?;
    let output = ctx.param("out").ok_or_else(|| {
        anyhow::anyhow!("objects-wordcount needs -P out=URL (where the counts go)")
    })?;
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let counter = ctx.counter("words");
    let flow = Dataflow::new("objects-wordcount");
    flow.input(
        "lines",
        ObjectSource::new(ObjectStoreSettings::new(input)).tail(tail),
    )?
    .flat_map("split", move |line| {
        let words: Vec<(String, ())> = words(&line.value).map(|w| (w, ())).collect();
        counter.fetch_add(words.len() as u64, Ordering::Relaxed);
        words
    })?
    .stateful_map("count", |_| 0u64, |n, ()| (Some(n + 1), n + 1))?
    .map("line", |(word, n): (String, u64)| format!("{word},{n}"))?
    .output(
        "counts",
        ObjectSink::new(ObjectStoreSettings::new(output))
            .parts(4)
            .suffix(".csv"),
    )?;
    Ok(flow)
}
