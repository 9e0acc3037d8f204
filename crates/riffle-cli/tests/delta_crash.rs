//! Proof that the Delta Lake sink is exactly-once across crashes: the bundled
//! `delta-wordcount` runs as a real `riffle` process on a recovery store, reading
//! 1,000,000 lines from 4 objects of a local folder and appending each word's
//! running count to a Delta table, and is killed with SIGKILL 10 times, each time
//! after the table's log has grown (so kills land while commits are in flight), on
//! 2 workers and then on 1 and on 3. A last run reads to the end. The table, read
//! through its log, must then hold every word's running count 1, 2, ..., n exactly
//! once (a lost row leaves a gap, a replayed epoch committed twice repeats a count);
//! with `RIFFLE_TEST_PYTHON` (the venv of `scripts/test.d/10-python.sh`), delta-rs
//! reads the same number of rows.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle_connectors::objects::ObjectStoreSettings;
use riffle_connectors::tables::delta;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 1_000_000;
const OBJECTS: usize = 4;
const WORDS: usize = 500;
const KILLS: usize = 10;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct WordCount {
    word: String,
    count: i64,
}

#[test]
fn delta_wordcount_is_exactly_once_across_10_sigkills_and_rescaling() {
    let seed = seed();
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let table = dir.path().join("table");
    std::fs::create_dir_all(&input).unwrap();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut texts = vec![String::new(); OBJECTS];
    for i in 0..LINES {
        let word = format!("w{}", (i * 7919) % WORDS);
        *expected.entry(word.clone()).or_default() += 1;
        texts[i % OBJECTS].push_str(&word);
        texts[i % OBJECTS].push('\n');
    }
    for (n, text) in texts.iter().enumerate() {
        std::fs::write(input.join(format!("part-{n}.txt")), text).unwrap();
    }
    let store = dir.path().join("store");
    init_store(&store);
    let in_url = format!("file://{}", input.display());
    let table_url = format!("file://{}", table.display());
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "delta-wordcount", "-w", workers])
            .args([
                "-P",
                &format!("in={in_url}"),
                "-P",
                &format!("table={table_url}"),
            ])
            .args(["-P", &format!("tail={tail}")])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let log = table.join(delta::LOG);
    let size = || {
        std::fs::read_dir(&log)
            .map(|d| d.filter_map(Result::ok).count() as u64)
            .unwrap_or(0)
    };
    Kills {
        count: KILLS,
        grow: (1, 4),
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

    let rows: Vec<WordCount> = delta::read_table(&ObjectStoreSettings::new(&table_url)).unwrap();
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in &rows {
        seen.entry(row.word.clone()).or_default().push(row.count);
    }
    let strays: Vec<&String> = seen.keys().filter(|w| !expected.contains_key(*w)).collect();
    assert!(strays.is_empty(), "words no line had: {strays:?}");
    assert_eq!(seen.len(), expected.len(), "words missing from the table");
    for (word, total) in &expected {
        let mut counts = seen.remove(word).unwrap();
        counts.sort_unstable();
        let want: Vec<i64> = (1..=*total).collect();
        assert_eq!(counts, want, "{word}: counts missing or repeated");
    }

    // An independent reader agrees, where the test venv is there.
    if let Some(python) = std::env::var_os("RIFFLE_TEST_PYTHON") {
        let out = Command::new(python)
            .args([
                "-c",
                "import os, sys; from deltalake import DeltaTable; print(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows, flush=True); os._exit(0)",
            ])
            .arg(&table)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(n, LINES, "delta-rs reads another number of rows");
    }
}
