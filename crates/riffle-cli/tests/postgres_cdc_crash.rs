//! Proof that PostgreSQL change data capture loses nothing across crashes: the
//! bundled `postgres-cdc` runs as a real `riffle` process on a recovery store,
//! reading the changes of a table of a real PostgreSQL server
//! (`scripts/test.d/20-postgres.sh`, `RIFFLE_TEST_POSTGRES_URL`, `wal_level =
//! logical`) through a slot and a publication of this test's own, and appending
//! each to an output table. A writer commits transactions of inserts, updates
//! and deletes the whole time, and the run is killed with SIGKILL 5 times, each
//! time after its output table has grown, on 2 workers and then on 1 and on 3. A
//! last run reads to the end of what was committed.
//!
//! The guarantee is at-least-once: every change made must be in the output,
//! and nothing else. The duplicates are the changes a killed run appended after
//! the last snapshot the store committed (the slot stands at that snapshot, so
//! the next run reads them again): each is a copy of one change, at the same
//! place in the log (`commit_lsn`, `lsn`). The test counts them and says how
//! many there were.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use riffle_connectors::postgres::testing::{PostgresTarget, unique};
use riffle_connectors::postgres::{admin, quote_table};

mod common;
use common::sigkill::{Kills, Rng, init_store, seed};

const KILLS: usize = 5;
/// The inserts of the transaction committed before each run.
const BULK: u64 = 10_000;
/// Where the ids of those inserts start (the writer's start at 1).
const BULK_IDS: u64 = 1_000_000_000;

/// A change as the test can name it: operation, row id, and the `v` the row
/// has after it (`-` for a delete).
type Named = (String, u64, String);

/// The table, its slot, publication and output table; dropped at the end (a
/// slot left behind keeps the server's log).
struct Names {
    pg: PostgresTarget,
    table: String,
    slot: String,
    publication: String,
    out: String,
}

impl Drop for Names {
    fn drop(&mut self) {
        // A killed run's connection may hold the slot for a moment.
        let until = Instant::now() + Duration::from_secs(10);
        while admin::drop_slot(&self.pg.settings, &self.slot).is_err() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = admin::drop_publication(&self.pg.settings, &self.publication);
        let _ = admin::drop_table(&self.pg.settings, &self.table);
        let _ = admin::drop_table(&self.pg.settings, &self.out);
    }
}

/// Commits transactions of 40 inserts, 20 updates and 10 deletes on `table`
/// until `stop`, and returns every change it made, named. Transactions of many
/// changes keep a run's hand-overs large, so a kill often lands while some of a
/// transaction is written and the rest is still in flight.
fn write_changes(pg: &PostgresTarget, table: &str, mut rng: Rng, stop: &AtomicBool) -> Vec<Named> {
    let t = quote_table(table);
    let mut made = Vec::new();
    let mut live: VecDeque<(u64, u64)> = VecDeque::new();
    let mut next = 1u64;
    while !stop.load(Ordering::SeqCst) {
        let mut sql = String::from("BEGIN;");
        let inserts: Vec<String> = (next..next + 40).map(|id| format!("({id}, 0)")).collect();
        sql += &format!("INSERT INTO {t} (id, v) VALUES {};", inserts.join(","));
        for id in next..next + 40 {
            made.push(("insert".to_string(), id, "0".to_string()));
            live.push_back((id, 0));
        }
        next += 40;
        for _ in 0..20 {
            let at = (rng.next() % live.len() as u64) as usize;
            let (id, v) = &mut live[at];
            *v += 1;
            sql += &format!("UPDATE {t} SET v = {v} WHERE id = {id};");
            made.push(("update".to_string(), *id, v.to_string()));
        }
        for _ in 0..10 {
            let (gone, _) = live.pop_front().expect("rows are live");
            sql += &format!("DELETE FROM {t} WHERE id = {gone};");
            made.push(("delete".to_string(), gone, "-".to_string()));
        }
        pg.execute(&(sql + "COMMIT"));
        std::thread::sleep(Duration::from_millis(10));
    }
    made
}

#[test]
fn postgres_cdc_loses_no_change_across_5_sigkills_and_rescaling() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let base = unique("cdc_crash").replace('-', "_");
    let names = Names {
        table: base.clone(),
        slot: format!("{base}_slot"),
        publication: format!("{base}_pub"),
        out: format!("{base}_changes"),
        pg,
    };
    let pg = &names.pg;
    pg.execute(&format!(
        "CREATE TABLE {} (id bigint PRIMARY KEY, v bigint NOT NULL)",
        quote_table(&names.table)
    ));
    // Made before any change, so the slot sees them all.
    admin::create_publication(&pg.settings, &names.publication, &[&names.table]).unwrap();
    admin::create_slot(&pg.settings, &names.slot).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store);
    let url = pg.settings.url.clone();
    let run = |workers: &str, tail: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(["run", "postgres-cdc", "-w", workers])
            .args(["-P", &format!("url={url}")])
            .args(["-P", &format!("table={}", names.table)])
            .args(["-P", &format!("slot={}", names.slot)])
            .args(["-P", &format!("publication={}", names.publication)])
            .args(["-P", &format!("out={}", names.out)])
            .args(["-P", &format!("tail={tail}"), "-P", "poll=50ms"])
            .arg("--recovery")
            .arg(&store)
            .args(["--epoch-interval", "100ms", "--snapshot-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let o = quote_table(&names.out);
    let size = || {
        if !admin::table_exists(&pg.settings, &names.out).unwrap() {
            return 0;
        }
        admin::count_rows(&pg.settings, &names.out).unwrap()
    };

    // Before each run, one transaction of BULK inserts (ids of their own): the
    // run starts by handing it over whole and writes it in pieces, so its kill
    // (after the output grew by less than BULK) lands with part of it written.
    let bulk = std::cell::RefCell::new(Vec::new());
    let stop = AtomicBool::new(false);
    let mut made = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_changes(pg, &names.table, Rng(seed ^ 0x9e37), &stop));
        Kills {
            count: KILLS,
            grow: (500, 4000),
            // A debug binary on a loaded machine may take two seconds to start.
            wait: (Duration::from_millis(2500), Duration::from_millis(4999)),
        }
        .run(
            &mut rng,
            |workers| {
                let mut bulk = bulk.borrow_mut();
                let from = BULK_IDS + bulk.len() as u64;
                pg.execute(&format!(
                    "INSERT INTO {} (id, v) SELECT g, 0 FROM generate_series({from}, {}) g",
                    quote_table(&names.table),
                    from + BULK - 1
                ));
                bulk.extend(
                    (from..from + BULK).map(|id| ("insert".to_string(), id, "0".to_string())),
                );
                run(workers, true).spawn().unwrap()
            },
            size,
        );
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap()
    });

    let finish = run("3", false).output().unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );

    let rows = pg.strings(&format!(
        "SELECT op || ',' || coalesce(new->>'id', old->>'id') || ',' || coalesce(new->>'v', '-') \
         || ',' || commit_lsn || ',' || lsn FROM {o}"
    ));
    // Each named change, with the places in the log its copies came from.
    let mut got: BTreeMap<Named, BTreeSet<String>> = BTreeMap::new();
    for row in &rows {
        let parts: Vec<&str> = row.split(',').collect();
        assert_eq!(parts.len(), 5, "an output row: {row}");
        let named = (
            parts[0].to_string(),
            parts[1].parse().unwrap(),
            parts[2].to_string(),
        );
        got.entry(named)
            .or_default()
            .insert(format!("{}@{}", parts[3], parts[4]));
    }
    made.extend(bulk.take());
    let expected: BTreeSet<Named> = made.iter().cloned().collect();
    assert_eq!(
        expected.len(),
        made.len(),
        "the writer named each change once"
    );
    let lost: Vec<&Named> = expected.iter().filter(|c| !got.contains_key(c)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} changes lost, first: {:?}",
        lost.len(),
        made.len(),
        &lost[..lost.len().min(5)]
    );
    let phantom: Vec<&Named> = got.keys().filter(|c| !expected.contains(c)).collect();
    assert!(phantom.is_empty(), "changes never made: {phantom:?}");
    let moved: Vec<_> = got.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        moved.is_empty(),
        "a change appended from two places in the log: {moved:?}"
    );
    let duplicates = rows.len() - made.len();
    eprintln!(
        "{} changes made, {} rows appended: {duplicates} duplicates (changes read again \
         after a kill, past the last committed snapshot)",
        made.len(),
        rows.len()
    );
    assert!(
        made.len() > 5000,
        "too few changes to prove much: {}",
        made.len()
    );
}
