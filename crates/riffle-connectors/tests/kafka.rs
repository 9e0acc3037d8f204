//! The Kafka source and sink against a real Apache Kafka broker, started by
//! `scripts/test.d/50-kafka.sh` and announced in `RIFFLE_TEST_KAFKA_BROKERS`
//! (needs: produce, consumer groups, idempotence, transactions, `read_committed`).
//! Without it these tests skip with a note, or fail under `CI=true`. The
//! conformance kit's checks first, then what is Kafka's own.

use std::time::Duration;

use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::kafka::testing::{KafkaTarget, unique};
use riffle_connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource, Utf8};

#[test]
fn conformance_read_after_write() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    conformance::read_after_write(&kafka);
}

#[test]
fn conformance_resume_without_loss_or_duplicates() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    conformance::resume_without_loss(&kafka);
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    conformance::rescale(&kafka);
}

#[test]
fn conformance_backlog() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    conformance::backlog(&kafka);
}

#[test]
fn conformance_missing_topic_and_unreachable_broker() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    conformance::missing_stream(&kafka);
    conformance::unreachable_server(&kafka);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn the_source_commits_its_group_so_kafka_tools_show_no_lag() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let input = kafka.create("lag-in", 4);
    let output = kafka.create("lag-out", 1);
    let values: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    kafka.write(&input, &values);
    let group = unique("group");
    let flow = Dataflow::new("lag");
    flow.input(
        "in",
        KafkaSource::new(kafka.settings.clone(), [input.as_str()])
            .format(Utf8)
            .tail(false)
            .group_id(&group),
    )
    .unwrap()
    .filter_map("value", |m| m.value.map(KafkaRecord::new))
    .unwrap()
    .output("out", KafkaSink::new(kafka.settings.clone(), &output))
    .unwrap();
    Execution::new()
        .workers(2)
        .epoch_interval(Duration::from_millis(50))
        .run(&flow)
        .unwrap();
    assert_eq!(sorted(kafka.read(&output)), sorted(values));
    // Kafka's own tool reads the group's committed offsets: each partition at its
    // end (500 records), no lag.
    let Ok(classpath) = std::env::var("RIFFLE_TEST_KAFKA_CLASSPATH") else {
        panic!("RIFFLE_TEST_KAFKA_CLASSPATH is not set: scripts/test.d/50-kafka.sh sets it");
    };
    let out = std::process::Command::new("java")
        .args(["-cp", &classpath])
        .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
        .args([
            "--bootstrap-server",
            kafka.brokers(),
            "--describe",
            "--group",
            &group,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.get(1) == Some(&input.as_str()))
        .collect();
    assert_eq!(rows.len(), 4, "kafka-consumer-groups said:\n{text}");
    for cols in rows {
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        assert_eq!((cols[3], cols[5]), ("500", "0"), "{cols:?}");
    }
}

#[test]
fn a_transaction_the_store_committed_but_kafka_did_not_is_committed_on_resume() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let output = kafka.create("finish", 1);
    let sink = KafkaSink::new(kafka.settings.clone(), &output).exactly_once(unique("finish"));
    let name = format!("{output}/0");
    let mut part = sink.build_part("out", &name, None).unwrap();
    part.write_batch(vec![KafkaRecord::new("a"), KafkaRecord::new("b")])
        .unwrap();
    // Two snapshots prepared before the commit hook is heard: the store may
    // commit both while a busy partition has not yet committed the first...
    part.snapshot().unwrap().unwrap();
    part.write_batch(vec![KafkaRecord::new("c")]).unwrap();
    let state = part.snapshot().unwrap().unwrap();
    assert_eq!(state.prepared.len(), 2);
    let records: i64 = state
        .prepared
        .iter()
        .flat_map(|(_, r)| r)
        .map(|(a, b)| b - a + 1)
        .sum();
    assert_eq!(records, 3);
    // ...but the run dies before the commit hook: both transactions are aborted.
    drop(part);
    assert!(kafka.read(&output).is_empty());
    assert_eq!(
        kafka.messages(&output, false).len(),
        3,
        "the aborted records stay in the log"
    );
    // The resumed partition finds them unfinished and commits their records.
    let again = sink.build_part("out", &name, Some(state.clone())).unwrap();
    assert_eq!(sorted(kafka.read(&output)), ["a", "b", "c"]);
    drop(again);
    // A second resume from the same state sees the marker and writes nothing more.
    let _third = sink.build_part("out", &name, Some(state)).unwrap();
    assert_eq!(sorted(kafka.read(&output)), ["a", "b", "c"]);
}

#[test]
fn keys_go_where_kafkas_default_partitioner_puts_them() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let output = kafka.create("keys", 3);
    let flow = Dataflow::new("keys");
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    flow.input("in", riffle::sources::TestingSource::new(keys.clone()))
        .unwrap()
        .map("record", |k: String| KafkaRecord::new(k.clone()).key(k))
        .unwrap()
        .output("out", KafkaSink::new(kafka.settings.clone(), &output))
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let got = kafka.messages(&output, true);
    assert_eq!(got.len(), keys.len());
    for m in got {
        let key = m.key.unwrap();
        assert_eq!(
            m.partition as usize,
            riffle_connectors::kafka::murmur2_partition(&key, 3),
            "{}",
            String::from_utf8_lossy(&key)
        );
    }
}

#[test]
fn values_the_format_cannot_decode_go_to_the_dead_letter_file() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let input = kafka.create("letters", 1);
    let values = ["1", "not a number", "2", "[3]"];
    let records: Vec<(Option<String>, String)> =
        values.iter().map(|v| (None, v.to_string())).collect();
    kafka.produce(&input, &records);
    let dir = tempfile::tempdir().unwrap();
    let letters = dir.path().join("dead.jsonl");
    let sink = riffle::sinks::TestingSink::new();
    let flow = Dataflow::new("letters");
    flow.input(
        "in",
        KafkaSource::new(kafka.settings.clone(), [&input])
            .format(riffle_connectors::format::Json::<u32>::new())
            .dead_letters(riffle::dead_letters::DeadLetters::file(&letters))
            .tail(false),
    )
    .unwrap()
    .filter_map("value", |m| m.value)
    .unwrap()
    .output("out", sink.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(sink.take(), [1, 2]);
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    assert_eq!(written[0]["topic"], input.as_str());
    assert_eq!(written[0]["partition"], 0);
    assert_eq!(written[0]["offset"], 1);
    assert_eq!(written[0]["text"], "not a number");
    assert_eq!(written[1]["offset"], 3);
    assert!(
        written[1]["reason"].as_str().unwrap().contains("JSON"),
        "{written:?}"
    );
}

#[test]
fn a_following_source_picks_up_partitions_added_while_it_runs() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let topic = kafka.create("grow", 1);
    kafka.write(&topic, &["first".to_string()]);
    let seen = riffle::sinks::TestingSink::new();
    let flow = Dataflow::new("grow");
    flow.input(
        "in",
        KafkaSource::new(kafka.settings.clone(), [topic.as_str()])
            .format(Utf8)
            .discover_every(Some(Duration::from_millis(300))),
    )
    .unwrap()
    .filter_map("value", |m| {
        let v = m.value?;
        // The only way a following source ends: the test's own stop word.
        assert!(v != "stop", "stop word from partition {}", m.partition);
        Some(v)
    })
    .unwrap()
    .output("out", seen.clone())
    .unwrap();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(
            Execution::new()
                .workers(2)
                .epoch_interval(Duration::from_millis(50))
                .run(&flow),
        );
    });
    std::thread::sleep(Duration::from_secs(1));
    riffle_connectors::kafka::admin::add_partitions(&kafka.settings, &topic, 3).unwrap();
    // Write straight to the new partitions.
    kafka.produce(
        &topic,
        &[
            (None, "p0".into()),
            (None, "p1".into()),
            (None, "p2".into()),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    kafka.produce(
        &topic,
        &[
            (None, "x".into()),
            (None, "x".into()),
            (None, "stop".into()),
        ],
    );
    let ended = result.recv_timeout(Duration::from_secs(60));
    let err = ended
        .expect("the stop word on a new partition was never read")
        .unwrap_err()
        .to_string();
    assert!(err.contains("stop word from partition 2"), "{err}");
    // What came before the stop word on the other partitions may or may not be in.
    let seen: Vec<String> = seen
        .take_sorted()
        .into_iter()
        .filter(|v| v != "x")
        .collect();
    assert_eq!(seen, ["first", "p0", "p1", "p2"]);
}
