//! Proof that Redis Streams in and out is at-least-once across crashes: the bundled
//! `redis-wordcount` runs as a real `riffle` process on a recovery store, reading
//! 60,000 lines from two streams of a real `redis-server`
//! (`scripts/test.d/52-redis.sh`, `RIFFLE_TEST_REDIS_URL`), and is killed with
//! SIGKILL 10 times, each time after its output stream has grown (so kills land
//! while entries are in flight), on 2 workers and then on 1 and on 3. A last run
//! reads to the end. Every word's running counts 1, 2, ..., n must then be in the
//! output stream (a lost line leaves a gap; a line read twice may repeat a count),
//! and nothing may be left pending in the group.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle_connectors::redis::admin;
use riffle_connectors::redis::testing::RedisTarget;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 60_000;
const WORDS: usize = 300;
const KILLS: usize = 10;

#[test]
fn redis_in_redis_out_is_at_least_once_across_10_sigkills_and_rescaling() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let inputs = [format!("crash-in-a-{seed}"), format!("crash-in-b-{seed}")];
    let output = format!("crash-out-{seed}");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0..LINES {
        let word = format!("w{}", (i * 7919) % WORDS);
        *expected.entry(word.clone()).or_default() += 1;
        lines[i % 2].push(word);
    }
    for (key, lines) in inputs.iter().zip(&lines) {
        redis.add(key, lines);
    }

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let url = redis.settings.url.clone();
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "redis-wordcount", "-w", workers])
            .args(["-P", &format!("url={url}")])
            .args(["-P", &format!("streams={},{}", inputs[0], inputs[1])])
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
    let size = || admin::length(&redis.settings, &output).unwrap();
    Kills {
        count: KILLS,
        grow: (200, 2199),
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
    for entry in redis.entries(&output) {
        let word = String::from_utf8(entry.field("word").unwrap().to_vec()).unwrap();
        let n: u64 = entry.value().unwrap().parse().unwrap();
        seen.entry(word).or_default().insert(n);
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
    for key in &inputs {
        assert_eq!(
            redis.pending(key, "riffle.redis-wordcount"),
            0,
            "{key}: entries left unacknowledged"
        );
    }
}
