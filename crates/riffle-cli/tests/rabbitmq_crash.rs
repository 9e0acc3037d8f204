//! Proof that RabbitMQ in and out is at-least-once across crashes: the bundled
//! `rabbitmq-wordcount` runs as a real `riffle` process on a recovery store,
//! reading 40,000 lines from two queues of a real broker
//! (`scripts/test.d/53-rabbitmq.sh`, `RIFFLE_TEST_RABBITMQ_URL`), and is killed
//! with SIGKILL 10 times, each time after its output queue has grown (so kills land
//! while messages are in flight), on 2 workers and then on 1 and on 3. A last run
//! reads to the end. Every word's running counts 1, 2, ..., n must then be in the
//! output queue (a lost line leaves a gap; a line read twice may repeat a count),
//! and no input message may be left in its queue, ready or unacknowledged.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle_connectors::conformance::Target;
use riffle_connectors::rabbitmq::admin;
use riffle_connectors::rabbitmq::testing::RabbitTarget;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 40_000;
const WORDS: usize = 300;
const KILLS: usize = 10;

#[test]
fn rabbitmq_in_rabbitmq_out_is_at_least_once_across_10_sigkills_and_rescaling() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let inputs = [format!("crash-in-a-{seed}"), format!("crash-in-b-{seed}")];
    let output = format!("crash-out-{seed}");
    for q in inputs.iter().chain([&output]) {
        admin::create_queue(&mq.settings, q).unwrap();
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0..LINES {
        let word = format!("w{}", (i * 7919) % WORDS);
        *expected.entry(word.clone()).or_default() += 1;
        lines[i % 2].push(word);
    }
    for (queue, lines) in inputs.iter().zip(&lines) {
        mq.publish(queue, lines);
    }

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let url = mq.settings.url.clone();
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "rabbitmq-wordcount", "-w", workers])
            .args(["-P", &format!("url={url}")])
            .args(["-P", &format!("queues={},{}", inputs[0], inputs[1])])
            .args([
                "-P",
                &format!("out={output}"),
                "-P",
                &format!("tail={tail}"),
            ])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let size = || u64::from(admin::message_count(&mq.settings, &output).unwrap());
    Kills {
        count: KILLS,
        grow: (200, 1999),
        wait: (Duration::from_millis(2000), Duration::from_millis(3999)),
    }
    .run(
        &mut rng,
        |workers| run(workers, true).spawn().unwrap(),
        size,
    );
    let finish = run("3", false).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );

    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut written = 0;
    for value in mq.read(&output) {
        let (word, n) = value.split_once(',').unwrap();
        seen.entry(word.to_string())
            .or_default()
            .insert(n.parse().unwrap());
        written += 1;
    }
    assert_eq!(seen.len(), expected.len(), "words missing from the output");
    for (word, total) in &expected {
        let counts = &seen[word];
        let missing: Vec<u64> = (1..=*total).filter(|n| !counts.contains(n)).collect();
        assert!(missing.is_empty(), "{word}: counts lost: {missing:?}");
    }
    eprintln!(
        "{written} counts written for {LINES} words: {} written twice",
        written - LINES
    );
    for queue in &inputs {
        assert_eq!(
            admin::message_count(&mq.settings, queue).unwrap(),
            0,
            "{queue}: messages left"
        );
        admin::delete_queue(&mq.settings, queue).unwrap();
    }
    admin::delete_queue(&mq.settings, &output).unwrap();
}
