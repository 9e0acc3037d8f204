//! Proof that PostgreSQL in and upsert out is exactly-once across crashes: the
//! bundled `postgres-wordcount` runs as a real `riffle` process on a recovery
//! store, reading 40,000 lines from a table of a real PostgreSQL server
//! (`scripts/test.d/20-postgres.sh`, `RIFFLE_TEST_POSTGRES_URL`), and is killed
//! with SIGKILL 8 times, each time after its output table has changed, on 2
//! workers and then on 1 and on 3, while more lines are added between runs. A last
//! run reads to the end. Every word's count in the output table must then be its
//! exact number of lines: a lost line leaves it short, a line counted twice leaves
//! it long, and the table has one row per word.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle_connectors::postgres::admin::{self, Column};
use riffle_connectors::postgres::quote_table;
use riffle_connectors::postgres::testing::PostgresTarget;

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 40_000;
const WORDS: usize = 300;
const KILLS: usize = 8;

#[test]
fn postgres_in_upsert_out_is_exactly_once_across_8_sigkills_and_rescaling() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let input = format!("crash_in_{seed}");
    let output = format!("crash_out_{seed}");
    admin::create_table(
        &pg.settings,
        &input,
        &[Column::new("id", "bigserial"), Column::new("line", "text")],
        &["id"],
    )
    .unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..LINES {
        let word = format!("w{}", (i * 7919) % WORDS);
        *expected.entry(word.clone()).or_default() += 1;
        lines.push(format!("('{word}')"));
    }
    let t = quote_table(&input);
    // Half now, the rest in chunks while the runs come and go.
    let (now, later) = lines.split_at(LINES / 2);
    pg.execute(&format!("INSERT INTO {t} (line) VALUES {}", now.join(",")));
    let mut later: Vec<&[String]> = later.chunks(LINES / 2 / KILLS + 1).collect();
    later.reverse();
    let later = std::cell::RefCell::new(later);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let url = pg.settings.url.clone();
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "postgres-wordcount", "-w", workers])
            .args(["-P", &format!("url={url}")])
            .args(["-P", &format!("table={input}")])
            .args(["-P", &format!("out={output}")])
            .args(["-P", &format!("tail={tail}"), "-P", "poll=50ms"])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let o = quote_table(&output);
    let size = || {
        let table_there = admin::table_exists(&pg.settings, &output).unwrap();
        if !table_there {
            return 0;
        }
        let sum = pg.strings(&format!("SELECT coalesce(sum(count), 0)::text FROM {o}"));
        sum[0].parse::<u64>().unwrap()
    };
    Kills {
        count: KILLS,
        grow: (500, 4999),
        // As long as the Kafka test waits: on a loaded machine a run may take
        // more than two seconds to start writing (3 of 8 kills landed once).
        wait: (Duration::from_millis(2500), Duration::from_millis(6499)),
    }
    .run(
        &mut rng,
        |workers| {
            if let Some(chunk) = later.borrow_mut().pop() {
                pg.execute(&format!(
                    "INSERT INTO {t} (line) VALUES {}",
                    chunk.join(",")
                ));
            }
            run(workers, true).spawn().unwrap()
        },
        size,
    );
    for chunk in later.take() {
        pg.execute(&format!(
            "INSERT INTO {t} (line) VALUES {}",
            chunk.join(",")
        ));
    }
    let finish = run("3", false).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );
    let rows = pg.strings(&format!(
        "SELECT word || '=' || count FROM {o} ORDER BY word"
    ));
    let got: BTreeMap<String, u64> = rows
        .iter()
        .map(|r| {
            let (w, n) = r.split_once('=').unwrap();
            (w.to_string(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "words missing from the output");
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(w, n)| got.get(*w) != Some(n))
        .map(|(w, n)| format!("{w}: {:?} for {n}", got.get(w)))
        .collect();
    assert!(wrong.is_empty(), "counts lost or doubled: {wrong:?}");
}
