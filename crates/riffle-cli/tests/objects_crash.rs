//! Proof that files in object stores are exactly-once across crashes: the bundled
//! `objects-wordcount` runs as a real `riffle` process on a recovery store, reading
//! 2,000,000 lines from 8 objects in S3 (the moto server `scripts/test.d/40-s3.sh`
//! starts, `RIFFLE_TEST_S3_ENDPOINT`) and writing its counts into new objects of the
//! same bucket, and is killed with SIGKILL 10 times, each time after its output has
//! grown (so kills land while data is in flight), on 2 workers and then on 1 and on
//! 3. A last run reads to the end. The objects in place must then hold every word's
//! running count 1, 2, ..., n exactly once (a lost line leaves a gap, a duplicate
//! repeats a count), and nothing may be left staged.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle_connectors::conformance::Target;
use riffle_connectors::objects::STAGING;
use riffle_connectors::objects::testing::ObjectsTarget;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 2_000_000;
const WORDS: usize = 500;
const KILLS: usize = 10;

#[test]
fn objects_in_objects_out_is_exactly_once_across_10_sigkills_and_rescaling() {
    let Some(s3) = ObjectsTarget::s3_from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let input = s3.create("in", 8);
    let output = format!("out-{seed}");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let lines: Vec<String> = (0..LINES)
        .map(|i| {
            let word = format!("w{}", (i * 7919) % WORDS);
            *expected.entry(word.clone()).or_default() += 1;
            word
        })
        .collect();
    s3.write(&input, &lines);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let endpoint = std::env::var("RIFFLE_TEST_S3_ENDPOINT").unwrap();
    let (in_url, out_url) = (s3.settings(&input).url, s3.settings(&output).url);
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "objects-wordcount", "-w", workers])
            .args([
                "-P",
                &format!("in={in_url}"),
                "-P",
                &format!("out={out_url}"),
            ])
            .args(["-P", &format!("tail={tail}")])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            // The store's settings, as a user gives them: the provider's variables.
            .env("AWS_ENDPOINT", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let size = || s3.objects(&output, false).len() as u64;
    Kills {
        count: KILLS,
        grow: (1, 3),
        wait: (Duration::from_millis(1500), Duration::from_millis(3499)),
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

    let objects = s3.objects(&output, true);
    assert!(
        objects.iter().all(|(name, _)| !name.starts_with(STAGING)),
        "objects left staged"
    );
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, text) in objects {
        for line in text.lines() {
            let (word, n) = line.split_once(',').unwrap();
            seen.entry(word.to_string())
                .or_default()
                .push(n.parse().unwrap());
        }
    }
    let strays: Vec<&String> = seen.keys().filter(|w| !expected.contains_key(*w)).collect();
    assert!(strays.is_empty(), "words no line had: {strays:?}");
    assert_eq!(seen.len(), expected.len(), "words missing from the output");
    for (word, total) in &expected {
        let mut counts = seen.remove(word).unwrap();
        counts.sort_unstable();
        let want: Vec<u64> = (1..=*total).collect();
        assert_eq!(counts, want, "{word}: counts missing or repeated");
    }
}
