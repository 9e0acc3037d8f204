//! Proof of the NATS connector's guarantee across crashes: the bundled
//! `nats-wordcount` runs as a real `riffle` process on a recovery store, reading
//! 40,000 lines from a stream of 4 subject partitions of a real `nats-server -js`
//! (`scripts/test.d/51-nats.sh`, `RIFFLE_TEST_NATS_URL`), and is killed with
//! SIGKILL 10 times, each time after its output stream has grown (so kills land
//! while data is in flight), on 2 workers and then on 1 and on 3. A last run on 3
//! workers reads to the end. The output stream (read well within its 2-minute
//! duplicate window) must hold every word's running count 1, 2, ..., n exactly
//! once: a lost message leaves a gap, a duplicate repeats a count.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use riffle_connectors::conformance::Target;
use riffle_connectors::nats::NatsSettings;
use riffle_connectors::nats::testing::{NatsServer, NatsTarget};

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 40_000;
const WORDS: usize = 300;
const KILLS: usize = 10;

#[test]
fn nats_in_nats_out_is_exactly_once_across_sigkills_and_rescaling() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let input = format!("crash-in-{seed}");
    nats.create_named(&input, 4);
    let output = format!("crash-out-{seed}");
    nats.create_named(&output, 1);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let lines: Vec<String> = (0..LINES)
        .map(|i| {
            let word = format!("w{}", (i * 7919) % WORDS);
            *expected.entry(word.clone()).or_default() += 1;
            word
        })
        .collect();
    nats.write(&input, &lines);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let subjects: Vec<String> = (0..4).map(|i| format!("{input}.{i}")).collect();
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "nats-wordcount", "-w", workers])
            .args(["-P", &format!("servers={}", nats.server())])
            .args(["-P", &format!("stream={input}")])
            .args(["-P", &format!("subjects={}", subjects.join(","))])
            .args(["-P", &format!("out={output}.counts")])
            .args(["-P", &format!("tail={tail}")])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    // Every run must end within the output stream's duplicate window (2 minutes).
    let started = Instant::now();
    Kills {
        count: KILLS,
        grow: (200, 1699),
        wait: (Duration::from_millis(1500), Duration::from_millis(2999)),
    }
    .run(
        &mut rng,
        |workers| run(workers, true).spawn().unwrap(),
        || nats.count(&output) as u64,
    );
    let finish = run("3", false).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );
    let elapsed = started.elapsed();
    eprintln!(
        "the last run finished after {elapsed:?}: {}",
        String::from_utf8_lossy(&finish.stderr).trim()
    );
    assert!(
        elapsed < Duration::from_secs(110),
        "the runs took {elapsed:?}: past the duplicate window, the check proves nothing"
    );

    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in nats.read(&output) {
        let (word, n) = line.split_once(',').unwrap();
        seen.entry(word.to_string())
            .or_default()
            .push(n.parse().unwrap());
    }
    assert_eq!(seen.len(), expected.len(), "words missing from the output");
    for (word, total) in &expected {
        let mut counts = seen.remove(word).unwrap();
        counts.sort_unstable();
        let want: Vec<u64> = (1..=*total).collect();
        assert_eq!(
            counts.len(),
            want.len(),
            "{word}: {} messages for {total} occurrences",
            counts.len()
        );
        assert_eq!(counts, want, "{word}: counts missing or repeated");
    }
}

#[test]
fn nats_wordcount_is_listed_and_names_what_it_lacks() {
    let list = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["run", "--list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("nats-wordcount"));
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["run", "nats-wordcount", "-P", "servers=nats://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-P stream=NAME"), "{err}");
}

#[test]
fn the_riffle_binary_takes_a_nats_token_from_a_file_named_in_the_environment() {
    let Some(server) = NatsServer::start(&["--auth", "s3cret-token"]) else {
        return;
    };
    let nats = NatsTarget::new(NatsSettings::new(server.url()).token("s3cret-token"));
    let stream = nats.create("token", 1);
    nats.write(&stream, &["a b a".to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let run = |token: &str| {
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_riffle"))
            .args(["run", "nats-wordcount"])
            .args(["-P", &format!("servers={}", server.url())])
            .args(["-P", &format!("stream={stream}"), "-P", "tail=false"])
            .env("RIFFLE_NATS_TOKEN_FILE", &file)
            .output()
            .unwrap()
    };
    let wrong = run("not-it");
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains(&server.url()) && err.contains("\"lines\""),
        "{err}"
    );
    let right = run("s3cret-token");
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let mut got = nats.read(&stream);
    got.sort();
    assert_eq!(got, ["a b a", "a,1", "a,2", "b,1"]);
}
