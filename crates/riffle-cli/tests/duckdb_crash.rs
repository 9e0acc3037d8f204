//! Proof that DuckDB in and appended rows out is exactly-once across crashes: the
//! bundled `duckdb-wordcount` runs as a real `riffle` process on a recovery store,
//! reading 40,000 lines from a table of a DuckDB file and appending each word's
//! running count as a row to another table of the same file, and is killed with
//! SIGKILL 8 times, each time after the file has grown, on 2 workers and then on 1
//! and on 3, while more lines are added between runs. A last run reads to the end.
//! Every word must then have the rows 1, 2, ..., n for its n lines, each once: a
//! lost row leaves a gap, a row written twice a repeat.
//!
//! And the flow is listed, and a run over two processes (`-p 2`) whose sink has a
//! partition on each is refused on both with an error naming the file, without
//! hanging: DuckDB lets one process at a time write it.
//!
//! Built only with the `duckdb` feature (scripts/test.d/54-duckdb.sh). The seed is
//! printed; `RIFFLE_CRASH_SEED=N` replays one.
#![cfg(feature = "duckdb")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use riffle_connectors::duckdb::{DuckdbDatabase, DuckdbSettings};

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const LINES: usize = 40_000;
const WORDS: usize = 300;
const KILLS: usize = 8;

/// Opens the file, runs `sql`, and closes it again (so a `riffle` run can take it).
fn execute(db: &DuckdbSettings, sql: &str) {
    let database = DuckdbDatabase::open(db).unwrap();
    let conn = database.connect().unwrap();
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The bytes of the database file and its write-ahead log.
fn file_size(path: &Path) -> u64 {
    let wal = path.with_extension("duckdb.wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn riffle(args: &[&str], db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    cmd.arg("run")
        .arg("duckdb-wordcount")
        .args(args)
        .args(["-P", &format!("db={}", db.display())])
        .args(["-P", "table=lines", "-P", "out=counts"]);
    cmd
}

#[test]
fn duckdb_in_appended_rows_out_is_exactly_once_across_8_sigkills_and_rescaling() {
    let seed = seed();
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.duckdb");
    let db = DuckdbSettings::new(&path);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..LINES {
        let word = format!("w{}", (i * 7919) % WORDS);
        *expected.entry(word.clone()).or_default() += 1;
        lines.push(format!("({}, '{word}')", i + 1));
    }
    execute(&db, "CREATE TABLE lines (id BIGINT, line VARCHAR)");
    // Half now, the rest in chunks between the runs.
    let (now, later) = lines.split_at(LINES / 2);
    execute(&db, &format!("INSERT INTO lines VALUES {}", now.join(",")));
    let mut later: Vec<&[String]> = later.chunks(LINES / 2 / KILLS + 1).collect();
    later.reverse();
    let later = std::cell::RefCell::new(later);

    let store = dir.path().join("store");
    init_store(&store);
    let run = |workers: &str, tail: bool| {
        let mut cmd = riffle(&["-w", workers], &path);
        cmd.args(["-P", &format!("tail={tail}"), "-P", "poll=50ms"])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    Kills {
        count: KILLS,
        grow: (4_000, 40_000),
        wait: (Duration::from_millis(2000), Duration::from_millis(3999)),
    }
    .run(
        &mut rng,
        |workers| {
            if let Some(chunk) = later.borrow_mut().pop() {
                execute(
                    &db,
                    &format!("INSERT INTO lines VALUES {}", chunk.join(",")),
                );
            }
            run(workers, true).spawn().unwrap()
        },
        || file_size(&path),
    );
    for chunk in later.take() {
        execute(
            &db,
            &format!("INSERT INTO lines VALUES {}", chunk.join(",")),
        );
    }
    let finish = run("3", false).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );

    let database = DuckdbDatabase::open(&db).unwrap();
    let conn = database.connect().unwrap();
    let mut statement = conn
        .prepare(
            "SELECT word, CAST(list(count ORDER BY count) AS VARCHAR) FROM counts GROUP BY word",
        )
        .unwrap();
    let rows = statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    let got: BTreeMap<String, String> = rows.map(Result::unwrap).collect();
    assert_eq!(got.len(), expected.len(), "words missing from the output");
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|(word, n)| {
            let want = format!(
                "[{}]",
                (1..=*n)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let have = got.get(word).cloned().unwrap_or_default();
            (have != want).then(|| format!("{word}: {have} for 1..={n}"))
        })
        .collect();
    assert!(wrong.is_empty(), "counts lost or doubled: {wrong:?}");
    let staged: i64 = conn
        .query_row("SELECT count(*) FROM counts__riffle_staged", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(staged, 0, "rows left staged");
}

#[test]
fn the_flow_is_listed_and_two_processes_on_one_database_file_are_refused_naming_it() {
    let list = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["run", "--list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("duckdb-wordcount"));
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["run", "duckdb-wordcount", "-P", "table=lines"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-P db=FILE"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.duckdb");
    let db = DuckdbSettings::new(&path);
    execute(
        &db,
        "CREATE TABLE lines AS SELECT i AS id, 'w' || (i % 7) AS line FROM range(1, 1001) t(i)",
    );
    // Two sink partitions: the second lives on the second process.
    let mut child = riffle(&["-p", "2", "-w", "1", "-P", "partitions=2"], &path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("riffle run -p 2 on one DuckDB file hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "two processes wrote one file: {err}");
    assert!(
        err.contains(&path.display().to_string()),
        "no file in: {err}"
    );
    assert!(err.contains("another process"), "no reason in: {err}");
}
