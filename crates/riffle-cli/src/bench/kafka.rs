//! The `kafka` workload: Kafka -> map -> Kafka on a real broker.
//!
//! `riffle bench kafka -P brokers=HOST:PORT` reads 10,000,000 records of 100 bytes
//! (`--items`, `-P size=`) from a topic of 4 partitions (`-P partitions=`), keeps each
//! record's key and value (a `map` to the sink's record type), and writes them to a
//! fresh topic of as many partitions. The input topic is filled once, before the
//! first run, and reused by later runs with the same shape (filling is not timed);
//! the output topic is made for each run and deleted after it. The time runs from
//! the start of the flow until every record is delivered (and, with a store,
//! committed). `-P recovery=1s` snapshots every second into a fresh store, with the
//! sink exactly-once (a Kafka transaction per snapshot); without it the sink is
//! at-least-once (idempotent producer, flushed at each epoch).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::kafka::{KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, admin};

use super::{BenchArgs, BenchReport, param};

/// Records per run unless `--items` says otherwise.
const ITEMS: u64 = 10_000_000;

/// Records already in the topic (the sum of its partitions' end offsets), or `None`
/// when it does not exist.
pub(crate) fn records_in(settings: &KafkaSettings, topic: &str, partitions: i32) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .ok()?;
    let mut total = 0;
    for p in 0..partitions {
        total += consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .ok()?
            .1;
    }
    Some(total)
}

/// Fills `topic` with `items` records of `size` bytes (key: the record's number).
pub(crate) fn fill(
    settings: &KafkaSettings,
    topic: &str,
    partitions: i32,
    items: u64,
    size: usize,
) -> anyhow::Result<()> {
    if records_in(settings, topic, partitions) == Some(items as i64) {
        return Ok(());
    }
    let _ = admin::delete_topic(settings, topic);
    std::thread::sleep(Duration::from_millis(500));
    admin::create_topic(settings, topic, partitions, 1)?;
    eprintln!("filling {topic} with {items} records of {size} bytes");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let value = vec![b'x'; size];
    for i in 0..items {
        let key = (i as u32).to_le_bytes();
        loop {
            let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .key(&key[..])
                .payload(&value[..])
                .partition((i % partitions as u64) as i32);
            match producer.send(rec) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let brokers = match param(args, "brokers") {
        Some(b) => b.to_string(),
        None => std::env::var("RIFFLE_KAFKA_BROKERS").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench kafka needs -P brokers=HOST:PORT (or RIFFLE_KAFKA_BROKERS)"
            )
        })?,
    };
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let partitions: i32 = param(args, "partitions").map_or(Ok(4), str::parse)?;
    let snapshots = match param(args, "recovery") {
        None | Some("none") => None,
        Some(d) => Some(
            crate::commands::run::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("-P recovery={d}: {e}"))?,
        ),
    };
    let settings = KafkaSettings::new(brokers);
    let input = format!("riffle-bench-{items}x{size}-p{partitions}");
    fill(&settings, &input, partitions, items, size)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let output = format!("riffle-bench-out-{nanos}");
    admin::create_topic(&settings, &output, partitions, 1)?;

    let flow = Dataflow::new("bench-kafka");
    let sink = KafkaSink::new(settings.clone(), &output);
    let sink = match snapshots {
        Some(_) => sink.exactly_once(format!("bench-{nanos}")),
        None => sink,
    };
    flow.input(
        "in",
        KafkaSource::new(settings.clone(), [input.as_str()])
            .tail(false)
            .group_id(format!("riffle-bench-{nanos}")),
    )?
    .map("copy", |m| KafkaRecord {
        key: m.key,
        value: m.value,
        headers: Vec::new(),
        timestamp: None,
    })?
    .output("out", sink)?;
    let mut execution = Execution::new()
        .workers(args.workers)
        .epoch_interval(Duration::from_secs(1));
    let store = match snapshots {
        Some(interval) => {
            let dir = tempfile::Builder::new().prefix("riffle-bench-").tempdir()?;
            RecoveryStore::init(dir.path(), args.workers.max(1))?;
            execution = execution.recovery(Recovery::new(dir.path()).snapshot_interval(interval));
            Some(dir)
        }
        None => None,
    };
    let started = Instant::now();
    execution.run(&flow)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    let written = records_in(&settings, &output, partitions).unwrap_or(-1);
    let _ = admin::delete_topic(&settings, &output);
    let mut report = BenchReport::new("kafka", args.workers, items, seconds);
    report.extra.insert("bytes_per_record".into(), size.into());
    report.extra.insert("partitions".into(), partitions.into());
    report.extra.insert(
        "recovery".into(),
        snapshots
            .map_or("none".to_string(), |d| {
                format!("every {} ms", d.as_millis())
            })
            .into(),
    );
    report.extra.insert(
        "delivery".into(),
        if snapshots.is_some() {
            "exactly-once"
        } else {
            "at-least-once"
        }
        .into(),
    );
    // End offsets of the output (transaction markers take offsets too).
    report
        .extra
        .insert("output_end_offsets".into(), written.into());
    Ok(vec![report])
}
