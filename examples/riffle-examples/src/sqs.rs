//! The `sqs-wordcount` example: lines from an SQS queue in, running word counts out
//! to another queue (or to files), at-least-once across crashes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle::sinks::DirSink;
use riffle_connectors::sqs::{SqsRecord, SqsSettings, SqsSink, SqsSource};

use crate::dataflows::words;

/// The `sqs-wordcount` flow: reads the message bodies of the queue `-P queue=`
/// with `-P readers=` readers (default 2), counts words, and sends each word's
/// running count to the queue `-P out=` (default `{queue}-counts`) as
/// `word,count`; `-P out-dir=PATH` writes those lines into files under `PATH`
/// instead. The endpoint is `-P endpoint=` (or `AWS_ENDPOINT_URL`, else AWS's),
/// the region `-P region=` (or `AWS_REGION`), the keys `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`. `-P wait=` is the long-poll wait in seconds (20),
/// `-P visibility=` the visibility timeout in seconds (30), and `-P empty-polls=N`
/// stops once N receives in a row found the queue empty. Messages are deleted only
/// once their counts are written (or, under `--recovery`, committed), so a crash
/// loses nothing; after one, what was not deleted comes back when its visibility
/// timeout ends, and a count may be written twice (at-least-once).
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("queue".into(), "lines".into()), ("region".into(), "us-east-1".into())].into());
/// let flow = riffle_examples::sqs::sqs_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "sqs-wordcount");
/// ```
pub fn sqs_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let queue = ctx
        .param("queue")
        .ok_or_else(|| anyhow::anyhow!("sqs-wordcount needs -P queue=NAME (the queue of lines)"))?;
    let out = ctx.param_or("out", &format!("{queue}-counts"));
    let readers: usize = ctx.parsed_param_or("readers", 2)?;
    let wait: u64 = ctx.parsed_param_or("wait", 20)?;
    let visibility: u64 = ctx.parsed_param_or("visibility", 30)?;
    let empty_polls: u32 = ctx.parsed_param_or("empty-polls", 0)?;
    let mut settings = SqsSettings::from_env();
    settings.region = ctx.param("region");
    settings.endpoint = ctx.param("endpoint");
    let mut source = SqsSource::new(settings.clone(), queue)
        .readers(readers)
        .wait_time(Duration::from_secs(wait))
        .visibility_timeout(Duration::from_secs(visibility));
    if empty_polls > 0 {
        source = source.stop_after_empty(empty_polls);
    }
    let counter = ctx.counter("words");
    let flow = Dataflow::new("sqs-wordcount");
    let counts = flow
        .input("lines", source)?
        .flat_map("split", move |message| {
            let words: Vec<(String, ())> = words(&message.body).map(|w| (w, ())).collect();
            counter.fetch_add(words.len() as u64, Ordering::Relaxed);
            words
        })?
        .stateful_map("count", |_| 0u64, |n, ()| (Some(n + 1), n + 1))?;
    match ctx.param("out-dir") {
        Some(dir) => counts
            .map("line", |(word, n): (String, u64)| {
                let line = format!("{word},{n}");
                (word, line)
            })?
            .output("counts", DirSink::new(dir, 4))?,
        None => counts
            .map("record", |(word, n): (String, u64)| {
                SqsRecord::new(format!("{word},{n}"))
            })?
            .output("counts", SqsSink::new(settings, out))?,
    }
    Ok(flow)
}
