//! Proof that Kafka in is exactly-once across crashes, with Kafka out and with
//! files out: the bundled `kafka-wordcount` runs as a real `riffle` process on a
//! recovery store, reading 200,000 lines from a 4-partition topic of a real Apache
//! Kafka broker (`scripts/test.d/50-kafka.sh`, `RIFFLE_TEST_KAFKA_BROKERS`; needs
//! transactions and `read_committed`), and is killed with SIGKILL 20 times, each
//! time after its output has grown (so kills land while data is in flight), on 2
//! workers and then on 1 and on 3. A last run on 3 workers reads to the end. Its
//! output (the topic read with `read_committed`, or the files) must hold every
//! word's running count 1, 2, ..., n exactly once: a lost record leaves a gap, a
//! duplicate repeats a count.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use riffle_connectors::kafka::admin;
use riffle_connectors::kafka::testing::KafkaTarget;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

/// Lines of input. A restarted run's first commit after its recovery can write
/// 15,000-30,000 counts at once (measured), so the input must outlast 20 such
/// runs for the last kills still to land while the output grows.
const LINES: usize = 800_000;
const WORDS: usize = 500;
const KILLS: usize = 20;

/// Where the counts go.
enum Out {
    Topic(String),
    Dir(PathBuf),
}

impl Out {
    fn param(&self) -> String {
        match self {
            Out::Topic(t) => format!("out={t}"),
            Out::Dir(d) => format!("out-dir={}", d.display()),
        }
    }

    /// How much has been written: records of the topic, or bytes in the files.
    fn size(&self, watcher: &BaseConsumer) -> u64 {
        match self {
            Out::Topic(topic) => (0..4)
                .map(|p| {
                    watcher
                        .fetch_watermarks(topic, p, Duration::from_secs(10))
                        .unwrap()
                        .1 as u64
                })
                .sum(),
            Out::Dir(dir) => files(dir)
                .iter()
                .map(|f| f.metadata().map_or(0, |m| m.len()))
                .sum(),
        }
    }

    /// Every (word, count) written, as readers see it.
    fn counts(&self, kafka: &KafkaTarget) -> Vec<(String, u64)> {
        match self {
            Out::Topic(topic) => kafka
                .messages(topic, true)
                .into_iter()
                .map(|m| {
                    let word = String::from_utf8(m.key.unwrap()).unwrap();
                    let n = String::from_utf8(m.value.unwrap()).unwrap();
                    (word, n.parse().unwrap())
                })
                .collect(),
            Out::Dir(dir) => files(dir)
                .iter()
                .flat_map(|f| {
                    let text = std::fs::read_to_string(f).unwrap();
                    text.lines()
                        .map(|l| {
                            let (word, n) = l.split_once(',').unwrap();
                            (word.to_string(), n.parse().unwrap())
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| Some(e.ok()?.path())).collect(),
        Err(_) => Vec::new(),
    }
}

fn crash_and_check(kafka: &KafkaTarget, name: &str, out: impl FnOnce(&Path, u64) -> Out) {
    let brokers = kafka.brokers().to_string();
    let seed = seed();
    eprintln!("{name}: seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let input = format!("crash-{name}-in-{seed}");
    admin::create_topic(&kafka.settings, &input, 4, 1).unwrap();
    let out = out(dir.path(), seed);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let lines: Vec<(Option<String>, String)> = (0..LINES)
        .map(|i| {
            let word = format!("w{}", (i * 7919) % WORDS);
            *expected.entry(word.clone()).or_default() += 1;
            (None, word)
        })
        .collect();
    kafka.produce(&input, &lines);

    let store = dir.path().join("store");
    init_store(&store);
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "kafka-wordcount", "-w", workers])
            .args(["-P", &format!("brokers={brokers}")])
            .args(["-P", &format!("topic={input}")])
            .args(["-P", &out.param(), "-P", &format!("tail={tail}")])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    Kills {
        count: KILLS,
        grow: (200, 3199),
        // A restart takes 2.5-3.5 s to its first commit on a loaded machine
        // (recovery, the consumer, the transactional producer's fencing).
        wait: (Duration::from_millis(4000), Duration::from_millis(7999)),
    }
    .run(
        &mut rng,
        |workers| run(workers, true).spawn().unwrap(),
        || out.size(&watcher),
    );
    let finish = run("3", false).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );

    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (word, n) in out.counts(kafka) {
        seen.entry(word).or_default().push(n);
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "{name}: words missing from the output"
    );
    for (word, total) in &expected {
        let mut counts = seen.remove(word).unwrap();
        counts.sort_unstable();
        let want: Vec<u64> = (1..=*total).collect();
        assert_eq!(
            counts.len(),
            want.len(),
            "{name}: {word}: {} records for {total} occurrences",
            counts.len()
        );
        assert_eq!(counts, want, "{name}: {word}: counts missing or repeated");
    }
}

#[test]
fn kafka_in_kafka_out_is_exactly_once_across_20_sigkills_and_rescaling() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    crash_and_check(&kafka, "topic", |_, seed| {
        let topic = format!("crash-topic-out-{seed}");
        admin::create_topic(&kafka.settings, &topic, 4, 1).unwrap();
        Out::Topic(topic)
    });
}

#[test]
fn kafka_in_files_out_is_exactly_once_across_20_sigkills_and_rescaling() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    crash_and_check(&kafka, "files", |dir, _| Out::Dir(dir.join("counts")));
}
