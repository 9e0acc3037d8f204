//! The bundled dataflows.
//!
//! - `wordcount`: the words of a text file (the bundled `data/wordcount.txt` by
//!   default, `-P input=PATH` for another file or a directory of files), counted, and
//!   the `-P top=N` most frequent printed.
//! - `keyed-sums`: `-P events=N` generated events over `-P keys=K` keys, summed per
//!   key, written as `key,count,sum` lines to `-P out=DIR` (one file per partition).
//!   Used to check that one worker, several workers and several processes agree.
//! - `windowed-counts`: `key,time_ms` lines of `-P events=PATH` (a file or a
//!   directory), counted per key in `-P window=10s` tumbling event-time windows,
//!   written as `key,window_start_ms,count` lines to `-P out=DIR` (4 files). A worker
//!   that reads no events stops holding the watermark back after `-P idle=500ms`.
//!   Run it with `--recovery DIR` to survive crashes; the crash test kills it at
//!   random.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle::sinks::{DirSink, StdOutSink};
use riffle::sources::{FileSource, GeneratorSource};
use riffle::window::{Clock, TumblingWindower};

/// A bundled dataflow: its name, one line about it, and its builder.
pub struct DataflowExample {
    pub name: &'static str,
    pub about: &'static str,
    pub build: fn(&DataflowContext) -> anyhow::Result<Dataflow>,
}

/// The bundled text the `wordcount` example reads by default.
pub const WORDCOUNT_TEXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/wordcount.txt");

/// Every bundled dataflow.
pub fn dataflows() -> Vec<DataflowExample> {
    #[allow(unused_mut)] // pushed to only with the `duckdb` feature
    let mut flows = vec![
        DataflowExample {
            name: "wordcount",
            about: "count the words of a text file and print the most frequent (-P input=PATH -P top=N)",
            build: wordcount,
        },
        DataflowExample {
            name: "windowed-counts",
            about: "count key,time_ms events per key in tumbling windows into files (-P events=PATH -P out=DIR -P window=10s -P idle=500ms)",
            build: windowed_counts,
        },
        DataflowExample {
            name: "kafka-wordcount",
            about: "running word counts from a Kafka topic to another, exactly-once under --recovery (-P brokers=HOST:PORT -P topic=NAME -P out=NAME or -P out-dir=PATH -P tail=false -P delivery=at-least-once)",
            build: crate::kafka::kafka_wordcount,
        },
        DataflowExample {
            name: "nats-wordcount",
            about: "running word counts from a NATS JetStream stream to a subject, exactly-once by message id under --recovery (-P servers=nats://HOST:PORT -P stream=NAME -P subjects=a,b -P out=SUBJECT -P durable=NAME -P tail=false -P delivery=at-least-once)",
            build: crate::nats::nats_wordcount,
        },
        DataflowExample {
            name: "redis-wordcount",
            about: "running word counts from Redis streams to another stream, at-least-once across crashes (-P url=redis://HOST:PORT -P streams=KEY,KEY -P out=KEY or -P out-dir=PATH -P tail=false)",
            build: crate::redis::redis_wordcount,
        },
        DataflowExample {
            name: "rabbitmq-wordcount",
            about: "running word counts from RabbitMQ queues to another queue, at-least-once across crashes (-P url=amqp://HOST:PORT/VHOST -P queues=NAME,NAME -P out=QUEUE or -P out-dir=PATH -P tail=false -P prefetch=N)",
            build: crate::rabbitmq::rabbitmq_wordcount,
        },
        DataflowExample {
            name: "postgres-wordcount",
            about: "running word counts from the rows of a PostgreSQL table upserted into another, exactly-once under --recovery (-P url=postgres://USER@HOST:PORT/DB -P table=NAME -P column=id -P line=line -P out=NAME -P tail=false -P poll=500ms)",
            build: crate::postgres::postgres_wordcount,
        },
        DataflowExample {
            name: "postgres-cdc",
            about: "every change committed to a PostgreSQL table (logical replication) appended to another table, at-least-once across crashes (-P url=postgres://USER@HOST:PORT/DB -P table=NAME -P slot=NAME -P publication=NAME -P out=NAME -P tail=false -P poll=200ms -P create=false)",
            build: crate::postgres_cdc::postgres_cdc,
        },
        DataflowExample {
            name: "objects-wordcount",
            about: "running word counts from the objects under a prefix (S3, GCS, Azure, file://) into new objects, exactly-once under --recovery (-P in=URL -P out=URL -P tail=false)",
            build: crate::objects::objects_wordcount,
        },
        DataflowExample {
            name: "delta-wordcount",
            about: "running word counts from the objects under a prefix (S3, GCS, Azure, file://) appended to a Delta Lake table, a commit per epoch, exactly-once under --recovery (-P in=URL -P table=URL -P tail=false)",
            build: crate::tables::delta_wordcount,
        },
        DataflowExample {
            name: "sqs-wordcount",
            about: "running word counts from an SQS queue to another queue, at-least-once across crashes (-P queue=NAME -P out=NAME or -P out-dir=PATH -P endpoint=URL -P region=NAME -P readers=2 -P empty-polls=N)",
            build: crate::sqs::sqs_wordcount,
        },
        DataflowExample {
            name: "keyed-sums",
            about: "sum generated events per key into files (-P events=N -P keys=K -P out=DIR)",
            build: keyed_sums,
        },
    ];
    #[cfg(feature = "duckdb")]
    flows.push(DataflowExample {
        name: "duckdb-wordcount",
        about: "running word counts from the rows of a DuckDB table appended to another, exactly-once under --recovery; built with the duckdb feature only (-P db=FILE -P table=NAME -P column=id -P line=line -P out=NAME -P tail=true -P poll=500ms -P partitions=1)",
        build: crate::duckdb::duckdb_wordcount,
    });
    flows
}

/// Splits a line into lower-case words of letters, digits and apostrophes.
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Keeps the `n` largest `(word, count)` pairs (count descending, then word).
fn keep_top(mut pairs: Vec<(String, u64)>, n: usize) -> Vec<(String, u64)> {
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    pairs.truncate(n);
    pairs
}

/// The `wordcount` flow.
///
/// ```
/// use riffle::context::DataflowContext;
/// let flow = (riffle_examples::dataflows()[0].build)(&DataflowContext::default()).unwrap();
/// assert_eq!(flow.name(), "wordcount");
/// ```
pub fn wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let input = ctx.param_or("input", WORDCOUNT_TEXT);
    let top: usize = ctx.parsed_param_or("top", 10)?;
    let counter = ctx.counter("words");
    let flow = Dataflow::new("wordcount");
    flow.input("lines", FileSource::new(input))?
        .flat_map("split", move |line: String| {
            let words: Vec<String> = words(&line).collect();
            counter.fetch_add(words.len() as u64, Ordering::Relaxed);
            words
        })?
        .count_final("count", |word: String| word)?
        .key_on("all", |_| ())?
        .fold_final(
            "top",
            |_| Vec::new(),
            move |mut best: Vec<(String, u64)>, pair: (String, u64)| {
                best.push(pair);
                if best.len() > 4 * top.max(1) {
                    best = keep_top(best, top);
                }
                best
            },
            move |mut a, b| {
                a.extend(b);
                keep_top(a, top)
            },
        )?
        .flat_map("format", move |((), best): ((), Vec<(String, u64)>)| {
            keep_top(best, top)
                .into_iter()
                .enumerate()
                .map(|(i, (word, count))| format!("{:>3}. {word:<16} {count}", i + 1))
                .collect::<Vec<_>>()
        })?
        .output("print", StdOutSink::new())?;
    Ok(flow)
}

/// The `keyed-sums` flow.
pub fn keyed_sums(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let events: u64 = ctx.parsed_param_or("events", 100_000)?;
    let keys: u64 = ctx.parsed_param_or("keys", 100)?.max(1);
    let out = ctx.param_or("out", "keyed-sums-out");
    let counter = ctx.counter("events");
    let flow = Dataflow::new("keyed-sums");
    flow.input_dynamic(
        "events",
        GeneratorSource::new(events, move |i| (format!("key{}", i % keys), i)),
    )?
    .inspect("count", move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    })?
    .fold_final(
        "sum",
        |_| (0u64, 0u64),
        |(n, s), v: u64| (n + 1, s + v),
        |(n1, s1), (n2, s2)| (n1 + n2, s1 + s2),
    )?
    .map("format", |(key, (n, sum)): (String, (u64, u64))| {
        let line = format!("{key},{n},{sum}");
        (key, line)
    })?
    .output("write", DirSink::new(out, 4))?;
    Ok(flow)
}

/// The `windowed-counts` flow.
pub fn windowed_counts(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let events = ctx.param_or("events", "events.csv");
    let out = ctx.param_or("out", "windowed-counts-out");
    let window = ctx.param_or("window", "10s");
    let window = parse_millis(&window).ok_or_else(|| {
        anyhow::anyhow!("-P window={window:?} is not a duration like 10s or 500ms")
    })?;
    let idle = ctx.param_or("idle", "500ms");
    let idle = parse_millis(&idle)
        .ok_or_else(|| anyhow::anyhow!("-P idle={idle:?} is not a duration like 500ms or 1s"))?;
    let counter = ctx.counter("events");
    let flow = Dataflow::new("windowed-counts");
    let windows =
        flow.input("events", FileSource::new(&events))?
            .try_map("parse", move |line: String| {
                counter.fetch_add(1, Ordering::Relaxed);
                let (key, time) = line
                    .split_once(',')
                    .ok_or_else(|| format!("{line:?} is not key,time_ms"))?;
                let time: i64 = time.trim().parse().map_err(|_| {
                    format!("{line:?}: the time is not a whole number of milliseconds")
                })?;
                Ok::<_, String>((key.to_string(), time))
            })?
            .count_window(
                "count",
                Clock::event(|e: &(String, i64)| e.1, std::time::Duration::ZERO)
                    .idle_timeout(std::time::Duration::from_millis(idle)),
                TumblingWindower::new(std::time::Duration::from_millis(window), 0),
                |e| e.0.clone(),
            )?;
    windows
        .down
        .map("format", move |(key, (w, n)): (String, (i64, u64))| {
            let line = format!("{key},{},{n}", w * window as i64);
            (key, line)
        })?
        .output("write", DirSink::new(out, 4))?;
    Ok(flow)
}

/// `10s`, `500ms`, `2m` or seconds, in milliseconds.
fn parse_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1000.0)
    };
    let ms = number.trim().parse::<f64>().ok()? * scale;
    (ms >= 1.0 && ms.is_finite()).then_some(ms as u64)
}
