//! Proof that SQS in and out is at-least-once across crashes: the bundled
//! `sqs-wordcount` runs as a real `riffle` process on a recovery store, reading
//! 500 messages from a queue of moto's server (`scripts/test.d/40-s3.sh`,
//! `RIFFLE_TEST_SQS_ENDPOINT`) and sending running counts to another, and is killed
//! with SIGKILL 10 times, each time after its output queue has grown (so kills land
//! while messages are in flight), on 2 workers and then on 1 and on 3. A last run
//! reads until the queue stays empty. Every word's running counts 1, 2, ..., n must
//! then be in the output queue (a lost message leaves a gap; a message read twice
//! may repeat a count), and the input queue must be empty: every message was
//! deleted, after it was counted.
//!
//! moto keeps its queues small here: it slows down as a queue grows. The seed is
//! printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle_connectors::sqs::admin;
use riffle_connectors::sqs::testing::SqsTarget;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 500;
const WORDS: usize = 40;
const KILLS: usize = 10;

#[test]
fn sqs_in_sqs_out_is_at_least_once_across_10_sigkills_and_rescaling() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let input = format!("crash-in-{seed}");
    let output = format!("crash-out-{seed}");
    admin::create_queue(&sqs.settings, &input, None).unwrap();
    admin::create_queue(&sqs.settings, &output, None).unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..LINES {
        let word = format!("w{}", (i * 7919) % WORDS);
        *expected.entry(word.clone()).or_default() += 1;
        lines.push(word);
    }
    sqs.send(&input, &lines);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let endpoint = sqs.settings.server();
    let run = |workers: &str, empty_polls: u32| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "sqs-wordcount", "-w", workers])
            .args(["-P", &format!("endpoint={endpoint}")])
            .args(["-P", "region=us-east-1"])
            .args(["-P", &format!("queue={input}")])
            .args(["-P", &format!("out={output}")])
            .args(["-P", "readers=3", "-P", "wait=1", "-P", "visibility=2"])
            .args(["-P", &format!("empty-polls={empty_polls}")])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let size = || admin::message_count(&sqs.settings, &output).unwrap().0;
    Kills {
        count: KILLS,
        // moto answers a receive of ten in about a second when the machine is
        // busy: small growths, and time for a run to start and read some.
        grow: (3, 25),
        wait: (Duration::from_millis(3000), Duration::from_millis(6999)),
    }
    .run(&mut rng, |workers| run(workers, 0).spawn().unwrap(), size);
    // Waits longer than the visibility timeout for what the last kill left hidden.
    let finish = run("3", 5).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );

    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let out = sqs.drain(&output);
    for body in &out {
        let (word, n) = body.split_once(',').unwrap();
        seen.entry(word.to_string())
            .or_default()
            .insert(n.parse().unwrap());
    }
    assert_eq!(seen.len(), expected.len(), "words missing from the output");
    for (word, total) in &expected {
        let counts = &seen[word];
        let missing: Vec<u64> = (1..=*total).filter(|n| !counts.contains(n)).collect();
        assert!(missing.is_empty(), "{word}: counts lost: {missing:?}");
    }
    eprintln!(
        "{} counts written for {LINES} words: {} written twice",
        out.len(),
        out.len() - LINES
    );
    assert_eq!(
        admin::message_count(&sqs.settings, &input).unwrap(),
        (0, 0),
        "messages left undeleted"
    );
}
