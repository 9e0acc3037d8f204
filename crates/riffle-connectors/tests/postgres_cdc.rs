//! Change data capture from PostgreSQL against a real server: the one
//! `scripts/test.d/20-postgres.sh` starts with `wal_level = logical`, announced in
//! `RIFFLE_TEST_POSTGRES_URL` (and `RIFFLE_TEST_POSTGRES_BIN` for a private server
//! left at `wal_level = replica`). Without them these tests skip with a note, or
//! fail under `CI=true`. Each test makes its own table, publication and slot,
//! and drops the slot at its end (a slot left behind keeps the server's log).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::TestingSink;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use riffle::{Dataflow, Execution};
use riffle_connectors::postgres::testing::{PostgresServer, PostgresTarget, unique};
use riffle_connectors::postgres::{
    CdcPosition, Change, ChangeOp, Lsn, PostgresCdc, PostgresSettings, admin, quote_table,
};

/// A table with a publication and a slot of its own; the slot and the
/// publication are dropped with it.
struct Captured {
    pg: PostgresTarget,
    table: String,
    slot: String,
    publication: String,
}

impl Captured {
    /// Makes table `hint-...` with `columns` (SQL), its publication and its slot.
    fn new(hint: &str, columns: &str) -> Option<Self> {
        let pg = PostgresTarget::from_env()?;
        let table = unique(hint);
        let slot = table.replace('-', "_");
        let publication = format!("{slot}_pub");
        pg.execute(&format!("CREATE TABLE {} ({columns})", quote_table(&table)));
        // Made before the publication and the slot, so a failure drops them.
        let made = Self {
            pg,
            table,
            slot,
            publication,
        };
        admin::create_publication(&made.pg.settings, &made.publication, &[&made.table]).unwrap();
        admin::create_slot(&made.pg.settings, &made.slot).unwrap();
        Some(made)
    }

    fn settings(&self) -> PostgresSettings {
        self.pg.settings.clone()
    }

    /// The source, reading what was committed when it starts.
    fn source(&self) -> PostgresCdc {
        PostgresCdc::new(self.settings(), &self.slot, &self.publication)
            .poll_every(Duration::from_millis(20))
            .tail(false)
    }

    /// Runs `sql` with `{t}` standing for the quoted table.
    fn sql(&self, sql: &str) {
        self.pg
            .execute(&sql.replace("{t}", &quote_table(&self.table)));
    }

    /// The slot's confirmed position.
    fn slot_at(&self) -> Lsn {
        admin::slot_position(&self.pg.settings, &self.slot)
            .unwrap()
            .expect("the slot exists")
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        // A reader's connection may still hold the slot for a moment.
        let until = Instant::now() + Duration::from_secs(5);
        while admin::drop_slot(&self.pg.settings, &self.slot).is_err() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = admin::drop_publication(&self.pg.settings, &self.publication);
    }
}

/// Polls `part` until it has handed out `want` changes, or for `wait`.
fn drain(
    part: &mut impl SourcePartition<Item = Change>,
    want: usize,
    wait: Duration,
) -> Vec<Change> {
    let mut got = Vec::new();
    let until = Instant::now() + wait;
    while got.len() < want && Instant::now() < until {
        match part.next_batch().expect("a batch") {
            Poll::Ready(changes) => got.extend(changes),
            Poll::Pending => std::thread::sleep(Duration::from_millis(10)),
            Poll::Exhausted => break,
            Poll::ReadyAt(..) => unreachable!("the source sets no event times"),
        }
    }
    got
}

/// The `item` column of each change (from the new row, or the old one).
fn items(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c.get("item").unwrap_or("-").to_string())
        .collect()
}

fn row(pairs: &[(&str, Option<&str>)]) -> riffle_connectors::postgres::Row {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

/// Inserts, updates (one changing the key), deletes and a truncate across four
/// transactions come in commit order with their values, each transaction
/// whole; a rolled-back transaction and a table outside the publication never
/// appear; the slot has moved past them once the run is over.
#[test]
fn committed_changes_arrive_whole_and_in_order_and_a_rollback_never() {
    let Some(cdc) = Captured::new("cdc-order", "id int PRIMARY KEY, item text, qty int") else {
        return;
    };
    let before = cdc.slot_at();
    let other = unique("cdc-other");
    cdc.pg
        .execute(&format!("CREATE TABLE {} (x int)", quote_table(&other)));
    cdc.sql("INSERT INTO {t} VALUES (1, 'tea', 2), (2, 'cake', NULL)");
    cdc.sql("BEGIN; INSERT INTO {t} VALUES (3, 'ghost', 9); ROLLBACK");
    cdc.pg
        .execute(&format!("INSERT INTO {} VALUES (1)", quote_table(&other)));
    cdc.sql("BEGIN; UPDATE {t} SET qty = 5 WHERE id = 1; DELETE FROM {t} WHERE id = 2; COMMIT");
    cdc.sql("BEGIN; UPDATE {t} SET id = 10 WHERE id = 1; INSERT INTO {t} VALUES (4, 'it''s', 1); COMMIT");
    cdc.sql("TRUNCATE {t}");
    let sink = TestingSink::new();
    let flow = Dataflow::new("cdc-order");
    flow.input("changes", cdc.source())
        .unwrap()
        .output("out", sink.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let got: Vec<Change> = sink.take();
    let ops: Vec<ChangeOp> = got.iter().map(|c| c.op).collect();
    use ChangeOp::*;
    assert_eq!(
        ops,
        [Insert, Insert, Update, Delete, Update, Insert, Truncate],
        "{got:#?}"
    );
    let table = format!("public.{}", cdc.table);
    assert!(got.iter().all(|c| c.table == table), "{got:#?}");
    assert_eq!(
        got[0].new,
        Some(row(&[
            ("id", Some("1")),
            ("item", Some("tea")),
            ("qty", Some("2"))
        ]))
    );
    assert_eq!(
        got[1].new,
        Some(row(&[
            ("id", Some("2")),
            ("item", Some("cake")),
            ("qty", None)
        ]))
    );
    assert_eq!(got[2].new.as_ref().unwrap()["qty"].as_deref(), Some("5"));
    assert_eq!(got[2].old, None, "the key did not change");
    assert_eq!(
        got[3].old,
        Some(row(&[("id", Some("2"))])),
        "a delete's key"
    );
    assert_eq!(got[3].new, None);
    assert_eq!(got[4].old, Some(row(&[("id", Some("1"))])), "the old key");
    assert_eq!(
        got[4].new,
        Some(row(&[
            ("id", Some("10")),
            ("item", Some("tea")),
            ("qty", Some("5"))
        ]))
    );
    assert_eq!(got[5].get("item"), Some("it's"));
    assert_eq!((got[6].old.as_ref(), got[6].new.as_ref()), (None, None));
    // Transactions: [0, 1], [2, 3], [4, 5], [6], whole and in commit order.
    let groups = [0, 0, 1, 1, 2, 2, 3];
    for (i, c) in got.iter().enumerate() {
        for (j, d) in got.iter().enumerate() {
            let same = groups[i] == groups[j];
            assert_eq!(c.xid == d.xid, same, "xids of changes {i} and {j}");
            assert_eq!(c.commit_lsn == d.commit_lsn, same, "commits of {i} and {j}");
            if groups[i] < groups[j] {
                assert!(c.commit_lsn < d.commit_lsn, "commit order of {i} and {j}");
            }
        }
        assert!(c.lsn < c.commit_lsn, "a change comes before its commit");
        assert!(c.commit_lsn > before, "committed after the slot was made");
        let age = SystemTime::now().duration_since(c.commit_time()).unwrap();
        assert!(age < Duration::from_secs(120), "commit time {age:?} ago");
    }
    assert!(!items(&got).contains(&"ghost".to_string()), "{got:#?}");
    // The run's end was committed: the slot stands past the last transaction.
    assert!(
        cdc.slot_at() >= got[6].commit_lsn,
        "slot at {} after a run that read to {}",
        cdc.slot_at(),
        got[6].commit_lsn
    );
    // A change serializes to JSON with the LSNs as PostgreSQL writes them.
    let json = serde_json::to_value(&got[3]).unwrap();
    assert_eq!(json["op"], "delete");
    assert_eq!(json["commit_lsn"], got[3].commit_lsn.to_string());
    assert_eq!(serde_json::from_value::<Change>(json).unwrap(), got[3]);
}

/// The slot moves only when a position is committed: a partition closed
/// without committing leaves it where it was, and the next reader gets the
/// same transactions again (nothing lost); a partition resumed from a
/// position skips what came before it; once a position is committed the slot
/// stands at it, and a new reader starts after it.
#[test]
fn the_slot_moves_only_when_a_position_is_committed() {
    let Some(cdc) = Captured::new("cdc-ack", "id bigserial PRIMARY KEY, item text") else {
        return;
    };
    let start = cdc.slot_at();
    let source = PostgresCdc::new(cdc.settings(), &cdc.slot, &cdc.publication)
        .poll_every(Duration::from_millis(20));
    let wait = Duration::from_secs(10);
    cdc.sql("INSERT INTO {t} (item) VALUES ('a')");
    cdc.sql("INSERT INTO {t} (item) VALUES ('b')");

    let mut first = source.build_part("in", &cdc.slot, None).unwrap();
    assert_eq!(items(&drain(&mut first, 2, wait)), ["a", "b"]);
    let read_ab = first.snapshot().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cdc.slot_at(), start, "the slot moved before any commit");
    first.close().unwrap();
    drop(first);
    assert_eq!(
        cdc.slot_at(),
        start,
        "closing without a commit moved the slot"
    );

    let mut again = source.build_part("in", &cdc.slot, None).unwrap();
    assert_eq!(
        items(&drain(&mut again, 2, wait)),
        ["a", "b"],
        "what was not committed is read again"
    );
    again.close().unwrap();
    drop(again);

    let mut resumed = source.build_part("in", &cdc.slot, Some(read_ab)).unwrap();
    cdc.sql("INSERT INTO {t} (item) VALUES ('c')");
    assert_eq!(
        items(&drain(&mut resumed, 1, wait)),
        ["c"],
        "a partition resumed from its position skips what came before"
    );
    let read_c: CdcPosition = resumed.snapshot().unwrap();
    assert!(read_c.lsn > read_ab.lsn);
    assert_eq!(cdc.slot_at(), start, "still no commit");
    resumed.commit(&read_c).unwrap();
    let until = Instant::now() + wait;
    while Some(cdc.slot_at()) < read_c.lsn && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        Some(cdc.slot_at()),
        read_c.lsn,
        "the slot stands at the commit"
    );
    resumed.close().unwrap();
    drop(resumed);

    let mut fresh = source.build_part("in", &cdc.slot, None).unwrap();
    cdc.sql("INSERT INTO {t} (item) VALUES ('d')");
    assert_eq!(
        items(&drain(&mut fresh, 1, wait)),
        ["d"],
        "a reader after the commit starts after it"
    );
    fresh.close().unwrap();
}

/// Transactions come in the order they committed, not the order they began:
/// one begun first and committed last comes last, and nothing is handed out
/// while it is open but what committed before.
#[test]
fn transactions_come_in_commit_order_not_begin_order() {
    let Some(cdc) = Captured::new("cdc-late", "id bigserial PRIMARY KEY, item text") else {
        return;
    };
    let rt = riffle_connectors::runtime::handle();
    let (early, conn) = rt
        .block_on(tokio_postgres::connect(
            &cdc.pg.settings.url,
            tokio_postgres::NoTls,
        ))
        .unwrap();
    rt.spawn(conn);
    let t = quote_table(&cdc.table);
    rt.block_on(early.batch_execute(&format!(
        "BEGIN; INSERT INTO {t} (item) VALUES ('begun first')"
    )))
    .unwrap();
    cdc.sql("INSERT INTO {t} (item) VALUES ('begun second')");
    let source = PostgresCdc::new(cdc.settings(), &cdc.slot, &cdc.publication)
        .poll_every(Duration::from_millis(20));
    let mut part = source.build_part("in", &cdc.slot, None).unwrap();
    let wait = Duration::from_secs(10);
    assert_eq!(items(&drain(&mut part, 1, wait)), ["begun second"]);
    assert!(
        drain(&mut part, 1, Duration::from_millis(300)).is_empty(),
        "an open transaction was handed out"
    );
    rt.block_on(early.batch_execute(&format!("INSERT INTO {t} (item) VALUES ('x'); COMMIT")))
        .unwrap();
    assert_eq!(items(&drain(&mut part, 2, wait)), ["begun first", "x"]);
    part.close().unwrap();
}

/// A server stopped and started again while the source follows it: the source
/// reconnects (reading a new copy of the slot from its confirmed point) and
/// hands out what came after, without repeating what it handed out before.
#[test]
fn the_source_rides_out_the_server_stopped_and_started() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    // SAFETY: set before any thread of this test's process reads it.
    unsafe { std::env::set_var("RIFFLE_POSTGRES_PASSWORD", PostgresServer::PASSWORD) };
    let pg = PostgresTarget {
        settings: PostgresSettings::new(server.url()),
    };
    pg.execute("ALTER SYSTEM SET wal_level = logical");
    server.stop();
    server.run();
    pg.execute("CREATE TABLE t (id bigserial PRIMARY KEY, item text)");
    admin::create_publication(&pg.settings, "p", &["t"]).unwrap();
    admin::create_slot(&pg.settings, "s").unwrap();
    let source =
        PostgresCdc::new(pg.settings.clone(), "s", "p").poll_every(Duration::from_millis(20));
    let mut part = source.build_part("in", "s", None).unwrap();
    let wait = Duration::from_secs(20);
    pg.execute("INSERT INTO t (item) VALUES ('before')");
    assert_eq!(items(&drain(&mut part, 1, wait)), ["before"]);
    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    server.run();
    pg.execute("INSERT INTO t (item) VALUES ('after')");
    assert_eq!(
        items(&drain(&mut part, 1, wait)),
        ["after"],
        "after the restart, only what is new"
    );
    part.close().unwrap();
}

/// A run under a recovery store fails midway while transactions keep coming;
/// the resumed run reads on from its snapshot: every transaction arrives, the
/// repeats are only those after the last committed snapshot, and a third run
/// reads only what was committed since.
#[test]
fn a_run_that_fails_resumes_from_its_snapshot_without_loss() {
    let Some(cdc) = Captured::new("cdc-resume", "id bigserial PRIMARY KEY, item text") else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = |source: PostgresCdc, fail_at: Option<usize>| {
        let sink = TestingSink::new();
        let seen = AtomicUsize::new(0);
        let flow = Dataflow::new("cdc-resume");
        flow.input("changes", source)
            .unwrap()
            .map("item", move |c: Change| {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                if fail_at == Some(n) {
                    // Let the snapshots before it commit.
                    std::thread::sleep(Duration::from_millis(300));
                    panic!("the test stops the run at change {n}");
                }
                c.get("item").unwrap_or_default().to_string()
            })
            .unwrap()
            .output("out", sink.clone())
            .unwrap();
        let ended = Execution::new()
            .epoch_interval(Duration::from_millis(20))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(20)))
            .run(&flow);
        (sink.take(), ended)
    };
    let values: Vec<String> = (0..40).map(|i| format!("v{i:02}")).collect();
    let (first, failed) = std::thread::scope(|scope| {
        let reading = scope.spawn(|| {
            let following = cdc.source().tail(true);
            run(following, Some(25))
        });
        for v in &values {
            cdc.sql(&format!("INSERT INTO {{t}} (item) VALUES ('{v}')"));
            std::thread::sleep(Duration::from_millis(25));
        }
        reading.join().unwrap()
    });
    assert!(failed.is_err(), "the first run should have stopped");
    assert_eq!(first, values[..first.len()], "the first run in order");
    let (second, ended) = run(cdc.source(), None);
    ended.unwrap();
    let resumed_at = values
        .iter()
        .position(|v| Some(v) == second.first())
        .expect("the second run starts at a value written");
    assert!(
        resumed_at > 0 && resumed_at <= first.len(),
        "the second run starts after what was committed and before what was not \
         read: first {first:?}, second {second:?}"
    );
    assert_eq!(second, values[resumed_at..], "nothing lost, in order");
    cdc.sql("INSERT INTO {t} (item) VALUES ('late')");
    let (third, ended) = run(cdc.source(), None);
    ended.unwrap();
    assert_eq!(third, ["late"], "no repeats of committed transactions");
}

/// A Flow's consumer loop reads the changes, writes them and commits: the
/// slot stands past them afterwards.
#[test]
fn a_consumer_loop_reads_changes_and_advances_the_slot() {
    let Some(cdc) = Captured::new("cdc-consume", "id int PRIMARY KEY, item text") else {
        return;
    };
    cdc.sql("INSERT INTO {t} SELECT g, 'i' || g FROM generate_series(1, 300) g");
    cdc.sql("DELETE FROM {t} WHERE id <= 100");
    let sink = TestingSink::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let read = riffle::consume::consume(
        "changes",
        cdc.source().batch_size(50),
        sink.clone(),
        |c: Change| Some(c.commit_lsn),
        &stop,
    )
    .unwrap();
    assert_eq!(read.read, 400);
    let commits: Vec<Lsn> = sink.take();
    assert_eq!(commits.len(), 400);
    assert!(
        cdc.slot_at() >= commits[399],
        "the slot moved past what was read"
    );
}

/// What is missing or wrong is named: the slot, the publication, the table,
/// an unreachable server (with the client's cause).
#[test]
fn a_missing_slot_publication_or_table_and_an_unreachable_server_are_named() {
    let Some(cdc) = Captured::new("cdc-errors", "id int PRIMARY KEY") else {
        return;
    };
    let read = |source: PostgresCdc| {
        let flow = Dataflow::new("cdc-errors");
        flow.input("in", source)
            .unwrap()
            .output("out", TestingSink::new())
            .unwrap();
        riffle::run_main(&flow).unwrap_err()
    };
    let server = cdc.pg.settings.server();
    let err = read(PostgresCdc::new(
        cdc.settings(),
        "no_such_slot",
        &cdc.publication,
    ))
    .to_string();
    assert!(err.contains("\"in\"") && err.contains(&server), "{err}");
    assert!(
        err.contains("slot \"no_such_slot\" does not exist") && err.contains("create_slot"),
        "{err}"
    );
    let err = read(PostgresCdc::new(cdc.settings(), &cdc.slot, "no_such_pub")).to_string();
    assert!(
        err.contains("publication \"no_such_pub\" does not exist"),
        "{err}"
    );
    let err = admin::create_publication(&cdc.pg.settings, "cdc_missing_pub", &["no_such_table"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cdc_missing_pub") && err.contains("\"no_such_table\" does not exist"),
        "{err}"
    );
    let nowhere = PostgresSettings::new("postgres://postgres@127.0.0.1:1/none")
        .timeout(Duration::from_millis(1500));
    let err = read(PostgresCdc::new(nowhere, "s", "p"));
    let text = err.to_string();
    assert!(
        text.contains("\"in\"") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause: {text}"
    );
}

/// A wrong password (from `RIFFLE_POSTGRES_PASSWORD`) is an error naming the
/// step and the server, with the server's answer as the cause; with the right
/// one, a server left at `wal_level = replica` is refused with the setting
/// named and how to change it, by the source and by `create_slot`.
#[test]
fn a_wrong_password_and_a_server_without_logical_wal_are_named() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let settings = PostgresSettings::new(server.url());
    let run = || {
        let flow = Dataflow::new("cdc-wal");
        flow.input(
            "in",
            PostgresCdc::new(settings.clone(), "cdc_slot", "cdc_pub"),
        )
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
        riffle::run_main(&flow).unwrap_err()
    };
    // SAFETY: this test's process runs no other thread reading the environment.
    unsafe { std::env::set_var("RIFFLE_POSTGRES_PASSWORD", "wrong") };
    let err = run();
    let text = err.to_string();
    assert!(
        text.contains("\"in\"") && text.contains(&server.url()),
        "{text}"
    );
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause: {text}"
    );

    unsafe { std::env::set_var("RIFFLE_POSTGRES_PASSWORD", PostgresServer::PASSWORD) };
    let err = admin::create_slot(&settings, "cdc_slot")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wal_level is \"replica\"") && err.contains("wal_level = logical"),
        "{err}"
    );
    let err = run().to_string();
    assert!(
        err.contains("\"in\"") && err.contains("wal_level") && err.contains("restart"),
        "{err}"
    );
}

/// The backlog is the number of changes of the publication waiting in the
/// slot: none at first; the committed inserts, updates, deletes and truncate
/// once made (not a rolled-back transaction, not a table outside the
/// publication); the same after they were read but not committed; none once
/// a position past them is committed. Counting leaves the slot where it is.
/// A missing slot is named.
#[test]
fn the_backlog_counts_the_changes_waiting_until_they_are_committed() {
    let Some(cdc) = Captured::new("cdc-backlog", "id int PRIMARY KEY, item text") else {
        return;
    };
    let source = PostgresCdc::new(cdc.settings(), &cdc.slot, &cdc.publication)
        .poll_every(Duration::from_millis(20));
    assert_eq!(source.backlog("in").unwrap(), Some(0), "a new slot");
    let other = unique("cdc-backlog-other");
    cdc.pg
        .execute(&format!("CREATE TABLE {} (x int)", quote_table(&other)));
    cdc.sql("INSERT INTO {t} SELECT g, 'i' || g FROM generate_series(1, 5) g");
    cdc.sql("BEGIN; INSERT INTO {t} VALUES (99, 'ghost'); ROLLBACK");
    cdc.pg.execute(&format!(
        "INSERT INTO {} SELECT generate_series(1, 50)",
        quote_table(&other)
    ));
    cdc.sql("BEGIN; UPDATE {t} SET item = 'u' WHERE id <= 2; DELETE FROM {t} WHERE id = 5; COMMIT");
    cdc.sql("TRUNCATE {t}");
    let start = cdc.slot_at();
    // 5 inserts, 2 updates, 1 delete, 1 truncate of one table.
    assert_eq!(source.backlog("in").unwrap(), Some(9));
    assert_eq!(cdc.slot_at(), start, "counting moved the slot");

    let mut part = source.build_part("in", &cdc.slot, None).unwrap();
    let read = drain(&mut part, 9, Duration::from_secs(10));
    assert_eq!(read.len(), 9);
    assert_eq!(
        source.backlog("in").unwrap(),
        Some(9),
        "read but not committed still waits"
    );
    let position = part.snapshot().unwrap();
    part.commit(&position).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while Some(cdc.slot_at()) < position.lsn && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(source.backlog("in").unwrap(), Some(0), "once committed");
    part.close().unwrap();
    cdc.pg
        .execute(&format!("DROP TABLE {}", quote_table(&other)));

    let missing = PostgresCdc::new(cdc.settings(), "no_such_slot", &cdc.publication);
    let err = missing.backlog("in").unwrap_err().to_string();
    assert!(
        err.contains("\"in\"") && err.contains("no_such_slot") && err.contains("does not exist"),
        "{err}"
    );
}

/// The description names the system, the server (no password), the slot and
/// the publication.
#[test]
fn the_description_names_server_slot_and_publication() {
    let source = PostgresCdc::new(
        PostgresSettings::new("postgres://riffle@db.example:5432/shop"),
        "orders_slot",
        "orders_pub",
    );
    let info = source.describe("in").expect("a description");
    assert_eq!(info.system, "postgres");
    assert_eq!(
        info.get("server"),
        Some("postgres://riffle@db.example:5432/shop")
    );
    assert_eq!(info.get("slot"), Some("orders_slot"));
    assert_eq!(info.get("publication"), Some("orders_pub"));
}

/// Unparks a thread and counts the wakes.
struct Unpark(std::thread::Thread, AtomicUsize);

impl std::task::Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// A thread parked on a following partition (for far longer than a change
/// takes to be decoded) is woken when the reader hands over a change, and
/// reads it at once; a bounded partition wakes it at its end too.
#[test]
fn a_parked_poller_is_woken_when_changes_arrive() {
    let Some(cdc) = Captured::new("cdc-wake", "id int PRIMARY KEY, item text") else {
        return;
    };
    let source = PostgresCdc::new(cdc.settings(), &cdc.slot, &cdc.publication)
        .poll_every(Duration::from_millis(20));
    let wakes = std::sync::Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
    let mut part = source.build_part("in", &cdc.slot, None).unwrap();
    part.wake_on_ready(&std::task::Waker::from(wakes.clone()));
    // Whatever the reader had to say at the start.
    while let Poll::Ready(changes) = part.next_batch().unwrap() {
        assert!(changes.is_empty(), "{changes:?}");
    }
    let park = Duration::from_secs(10);
    for n in 0..3 {
        let asked = Instant::now();
        cdc.sql(&format!("INSERT INTO {{t}} VALUES ({n}, 'w{n}')"));
        let mut got = Vec::new();
        while got.is_empty() && asked.elapsed() < park {
            std::thread::park_timeout(park);
            if let Poll::Ready(changes) = part.next_batch().unwrap() {
                got.extend(changes);
            }
        }
        assert_eq!(items(&got), [format!("w{n}")]);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "change {n} read only after {:?}",
            asked.elapsed()
        );
    }
    assert!(wakes.1.load(Ordering::SeqCst) >= 3);
    part.close().unwrap();
    drop(part);

    let mut bounded = cdc.source().build_part("in", &cdc.slot, None).unwrap();
    bounded.wake_on_ready(&std::task::Waker::from(wakes.clone()));
    let asked = Instant::now();
    let mut read = 0;
    let ended = loop {
        match bounded.next_batch().unwrap() {
            Poll::Ready(changes) => read += changes.len(),
            Poll::Exhausted => break true,
            Poll::Pending if asked.elapsed() < park => std::thread::park_timeout(park),
            _ => break false,
        }
    };
    assert!(ended, "the bounded read did not end");
    assert_eq!(read, 3, "nothing was committed: the three again");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the end seen only after {:?}",
        asked.elapsed()
    );
    bounded.close().unwrap();
}
