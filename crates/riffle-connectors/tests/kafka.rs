//! The Kafka source and sink against a real Apache Kafka broker, started by
//! `scripts/test.d/50-kafka.sh` and announced in `RIFFLE_TEST_KAFKA_BROKERS`
//! (needs: produce, consumer groups, idempotence, transactions, `read_committed`).
//! Without it these tests skip with a note, or fail under `CI=true`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use riffle::{Dataflow, Execution};
use riffle_connectors::kafka::{KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, Utf8, admin};

fn brokers() -> Option<String> {
    match std::env::var("RIFFLE_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but RIFFLE_TEST_KAFKA_BROKERS is not set: scripts/test.d/50-kafka.sh should have started Kafka"
            )
        }
        _ => {
            eprintln!(
                "skipping: RIFFLE_TEST_KAFKA_BROKERS is not set (scripts/test.d/50-kafka.sh starts a broker)"
            );
            None
        }
    }
}

/// A topic name no other test or run uses.
fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{name}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn topic(settings: &KafkaSettings, name: &str, partitions: i32) -> String {
    let t = unique(name);
    assert!(admin::create_topic(settings, &t, partitions, 1).unwrap());
    t
}

/// Writes `values` round-robin over `partitions` partitions of `topic`.
fn produce(brokers: &str, topic: &str, partitions: i32, values: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (i, v) in values.iter().enumerate() {
        let rec: BaseRecord<'_, (), String> = BaseRecord::to(topic)
            .payload(v)
            .partition(i as i32 % partitions);
        producer.send(rec).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Every value in `topic`, as a `read_committed` (or uncommitted) reader sees it.
fn read_all(brokers: &str, topic: &str, committed: bool) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap();
        ends.insert(*p, high);
    }
    consumer.assign(&tpl).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let position = consumer.position().unwrap();
        let done =
            parts.iter().all(
                |p| match position.find_partition(topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o >= ends[p],
                    _ => ends[p] == 0,
                },
            );
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} took over a minute"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            values.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap());
        }
    }
    values
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i:05}")).collect()
}

fn upper_flow(
    name: &str,
    settings: &KafkaSettings,
    input: &str,
    output: &str,
    exactly_once: bool,
) -> Dataflow {
    let flow = Dataflow::new(name);
    let sink = KafkaSink::new(settings.clone(), output);
    let sink = if exactly_once {
        sink.exactly_once(name)
    } else {
        sink
    };
    flow.input(
        "in",
        KafkaSource::new(settings.clone(), [input])
            .format(Utf8)
            .tail(false),
    )
    .unwrap()
    .filter_map("upper", |m| {
        m.value.map(|v| KafkaRecord::new(v.to_uppercase()).key(v))
    })
    .unwrap()
    .output("out", sink)
    .unwrap();
    flow
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn a_flow_reads_every_partition_and_writes_every_record_and_commits_the_group() {
    let Some(brokers) = brokers() else { return };
    let settings = KafkaSettings::new(&brokers);
    let input = topic(&settings, "in", 4);
    let output = topic(&settings, "out", 3);
    let values = numbered(4000);
    produce(&brokers, &input, 4, &values);
    let flow = upper_flow("plain", &settings, &input, &output, false);
    Execution::new()
        .workers(2)
        .epoch_interval(Duration::from_millis(50))
        .run(&flow)
        .unwrap();
    let expected: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(sorted(read_all(&brokers, &output, true)), sorted(expected));
    // The source committed its offsets to its group: Kafka's own tool sees no lag.
    let Ok(classpath) = std::env::var("RIFFLE_TEST_KAFKA_CLASSPATH") else {
        return;
    };
    let out = std::process::Command::new("java")
        .args([
            "-cp",
            &classpath,
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        ])
        .args([
            "--bootstrap-server",
            &brokers,
            "--describe",
            "--group",
            "riffle.in",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.get(1) == Some(&input.as_str()))
        .collect();
    assert_eq!(rows.len(), 4, "kafka-consumer-groups output:\n{text}");
    for cols in rows {
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        assert_eq!(cols[3], "1000", "committed offset: {cols:?}");
        assert_eq!(cols[5], "0", "lag: {cols:?}");
    }
}

#[test]
fn a_resumed_run_writes_every_record_exactly_once_through_transactions() {
    let Some(brokers) = brokers() else { return };
    let settings = KafkaSettings::new(&brokers);
    let input = topic(&settings, "eo-in", 4);
    let output = topic(&settings, "eo-out", 2);
    let values = numbered(6000);
    produce(&brokers, &input, 4, &values);
    let store = tempfile::tempdir().unwrap();
    riffle::recovery::RecoveryStore::init(store.path(), 2).unwrap();
    let run = |fail_at: Option<&'static str>| {
        let name = "eo";
        let flow = Dataflow::new(name);
        let sink = KafkaSink::new(settings.clone(), &output).exactly_once(name);
        flow.input(
            "in",
            KafkaSource::new(settings.clone(), [input.as_str()])
                .format(Utf8)
                .tail(false),
        )
        .unwrap()
        .filter_map("upper", move |m| {
            let v = m.value?;
            if fail_at == Some(v.as_str()) {
                // Give the earlier epochs time to be snapshotted and committed.
                std::thread::sleep(Duration::from_millis(300));
                panic!("stop at {v}");
            }
            Some(KafkaRecord::new(v.to_uppercase()))
        })
        .unwrap()
        .output("out", sink)
        .unwrap();
        Execution::new()
            .workers(2)
            .epoch_interval(Duration::from_millis(20))
            .recovery(
                riffle::recovery::Recovery::new(store.path())
                    .snapshot_interval(Duration::from_millis(20)),
            )
            .run(&flow)
    };
    let first = run(Some("m04000"));
    assert!(first.is_err(), "the first run should stop at m04000");
    let seen = read_all(&brokers, &output, true);
    assert!(
        seen.len() < 6000,
        "the failed run cannot have written everything"
    );
    run(None).unwrap();
    let expected: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    let got = read_all(&brokers, &output, true);
    assert_eq!(
        got.len(),
        expected.len(),
        "records seen by read_committed: duplicates or losses"
    );
    assert_eq!(sorted(got), sorted(expected));
}

#[test]
fn a_transaction_the_store_committed_but_kafka_did_not_is_committed_on_resume() {
    let Some(brokers) = brokers() else { return };
    let settings = KafkaSettings::new(&brokers);
    let output = topic(&settings, "finish", 1);
    let sink = KafkaSink::new(settings.clone(), &output).exactly_once(unique("finish"));
    let name = format!("{output}/0");
    let mut part = sink.build_part("out", &name, None).unwrap();
    part.write_batch(vec![KafkaRecord::new("a"), KafkaRecord::new("b")])
        .unwrap();
    // Prepared and snapshotted; the store would commit this state...
    let state = part.snapshot().unwrap().unwrap();
    assert_eq!(state.ranges.iter().map(|(a, b)| b - a + 1).sum::<i64>(), 2);
    // ...but the run dies before the commit hook: the transaction is aborted.
    drop(part);
    assert!(read_all(&brokers, &output, true).is_empty());
    // The resumed partition finds the transaction unfinished and commits its records.
    let again = sink.build_part("out", &name, Some(state.clone())).unwrap();
    assert_eq!(sorted(read_all(&brokers, &output, true)), ["a", "b"]);
    drop(again);
    // A second resume from the same state sees the marker and writes nothing more.
    let _third = sink.build_part("out", &name, Some(state)).unwrap();
    assert_eq!(sorted(read_all(&brokers, &output, true)), ["a", "b"]);
}

#[test]
fn a_missing_topic_and_an_unreachable_broker_are_named() {
    let Some(brokers) = brokers() else { return };
    let settings = KafkaSettings::new(&brokers);
    let missing = unique("missing");
    let flow = Dataflow::new("missing");
    flow.input("in", KafkaSource::new(settings.clone(), [missing.as_str()]))
        .unwrap()
        .map("len", |m| m.offset)
        .unwrap()
        .output("out", riffle::sinks::TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(
        err.contains("\"in\"") && err.contains(&missing) && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains(&brokers), "{err}");

    let nowhere = KafkaSettings::new("127.0.0.1:1").timeout(Duration::from_millis(1500));
    let flow = Dataflow::new("nowhere");
    flow.input("in", KafkaSource::new(nowhere, ["t"]))
        .unwrap()
        .map("len", |m| m.offset)
        .unwrap()
        .output("out", riffle::sinks::TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err();
    let text = format!("{err}");
    assert!(
        text.contains("127.0.0.1:1") && text.contains("\"t\""),
        "{text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the client's error is kept as the cause"
    );
}
