//! The `kafka-wordcount` example: words of a Kafka topic in, running counts out to
//! another topic, exactly-once under a recovery store.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle::sinks::DirSink;
use riffle_connectors::kafka::{
    KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, StartOffset, Utf8,
};

use crate::dataflows::words;

/// The `kafka-wordcount` flow: reads lines from `-P topic=` on `-P brokers=` (or
/// `RIFFLE_KAFKA_BROKERS`), counts words, and writes each word's running count to
/// `-P out=` (default `{topic}-counts`) as a record keyed by the word, whose value
/// is the count. `-P tail=false` stops at the end of the topic; `-P delivery=
/// at-least-once` writes without transactions (exactly-once is the default, and
/// holds across crashes under `--recovery`). `-P out-dir=PATH` writes `word,count`
/// lines into files under `PATH` instead of a topic.
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("brokers".into(), "127.0.0.1:9092".into()), ("topic".into(), "lines".into())].into());
/// let flow = riffle_examples::kafka::kafka_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "kafka-wordcount");
/// ```
pub fn kafka_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let brokers = match ctx.param("brokers") {
        Some(b) => b.to_string(),
        None => std::env::var("RIFFLE_KAFKA_BROKERS").map_err(|_| {
            anyhow::anyhow!("kafka-wordcount needs -P brokers=HOST:PORT (or RIFFLE_KAFKA_BROKERS)")
        })?,
    };
    let topic = ctx
        .param("topic")
        .ok_or_else(|| {
            anyhow::anyhow!("kafka-wordcount needs -P topic=NAME (the topic of lines to count)")
        })?
        .to_string();
    let out = ctx.param_or("out", &format!("{topic}-counts"));
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let delivery = ctx.param_or("delivery", "exactly-once");
    let settings = KafkaSettings::new(brokers);
    let sink = KafkaSink::new(settings.clone(), out);
    let sink = match delivery.as_str() {
        "exactly-once" => sink.exactly_once("kafka-wordcount"),
        "at-least-once" => sink,
        other => anyhow::bail!("-P delivery={other:?}: use exactly-once or at-least-once"),
    };
    let out_dir = ctx.param("out-dir");
    let counter = ctx.counter("words");
    let flow = Dataflow::new("kafka-wordcount");
    let counts = flow
        .input(
            "lines",
            KafkaSource::new(settings, [topic.as_str()])
                .format(Utf8)
                .start(StartOffset::Earliest)
                .group_id("riffle.kafka-wordcount")
                .tail(tail),
        )?
        .flat_map("split", move |m| {
            let words: Vec<(String, ())> = m
                .value
                .as_deref()
                .map(words)
                .into_iter()
                .flatten()
                .map(|w| (w, ()))
                .collect();
            counter.fetch_add(words.len() as u64, Ordering::Relaxed);
            words
        })?
        .stateful_map("count", |_| 0u64, |n, ()| (Some(n + 1), n + 1))?;
    match out_dir {
        // Kafka in, files out: `word,count` lines in 4 files, exactly-once under
        // --recovery like every file sink.
        Some(dir) => counts
            .map("line", |(word, n): (String, u64)| {
                let line = format!("{word},{n}");
                (word, line)
            })?
            .output("counts", DirSink::new(dir, 4))?,
        None => counts
            .map("record", |(word, n): (String, u64)| {
                KafkaRecord::new(n.to_string()).key(word)
            })?
            .output("counts", sink)?,
    }
    Ok(flow)
}
