//! The DuckDB source and sink against a real embedded DuckDB (the `libduckdb`
//! that `scripts/test.d/54-duckdb.sh` fetches, or one compiled with
//! `duckdb-bundled`). Compiled only with the `duckdb` feature: the test command
//! enables it when it has the library. The conformance kit's checks first, then
//! what is DuckDB's own.
#![cfg(feature = "duckdb")]

use std::time::Duration;

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use riffle::sources::TestingSource;
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance;
use riffle_connectors::duckdb::testing::DuckdbTarget;
use riffle_connectors::duckdb::{DuckdbDatabase, DuckdbSettings, DuckdbSink, DuckdbSource, admin};
use serde::{Deserialize, Serialize};

#[test]
fn conformance_read_after_write() {
    conformance::read_after_write(&DuckdbTarget::new());
}

#[test]
fn conformance_resume_without_loss() {
    conformance::resume_without_loss(&DuckdbTarget::new());
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    conformance::rescale(&DuckdbTarget::new());
}

#[test]
fn conformance_missing_table_and_unreachable_file() {
    let db = DuckdbTarget::new();
    conformance::missing_stream(&db);
    conformance::unreachable_server(&db);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sale {
    id: i64,
    item: String,
    amount: f64,
}

fn sales(n: i64) -> Vec<Sale> {
    (1..=n)
        .map(|id| Sale {
            id,
            item: format!("item-{id}"),
            amount: id as f64 / 4.0,
        })
        .collect()
}

/// The error of running `flow` once.
fn run_error(flow: &Dataflow) -> String {
    match riffle::run_main(flow) {
        Ok(()) => panic!("the flow should have failed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_table_made_from_the_items_reads_back_typed_and_counted_queries_resume_exactly() {
    let db = DuckdbTarget::new();
    let flow = Dataflow::new("load");
    flow.input("in", TestingSource::new(sales(3000)))
        .unwrap()
        .output("out", DuckdbSink::append(db.settings.clone(), "sales"))
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let columns = admin::columns(&db.settings, "sales").unwrap().unwrap();
    let described: Vec<(String, String)> =
        columns.into_iter().map(|c| (c.name, c.sql_type)).collect();
    assert_eq!(
        described,
        [
            ("id".to_string(), "BIGINT".to_string()),
            ("item".to_string(), "VARCHAR".to_string()),
            ("amount".to_string(), "DOUBLE".to_string()),
        ]
    );

    // A counted query copied to another table, failing two thirds in, then
    // resumed from the store: every row once.
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = |fail: bool| {
        let flow = Dataflow::new("copy");
        let query = DuckdbSource::query(db.settings.clone(), "SELECT * FROM sales ORDER BY id")
            .format(riffle_connectors::format::Json::<Sale>::new())
            .batch_size(100);
        flow.input("in", query)
            .unwrap()
            .map("sale", move |row| {
                if fail && row.value.id == 2000 {
                    std::thread::sleep(Duration::from_millis(300));
                    panic!("the test stops the run at 2000");
                }
                assert_eq!(row.position, row.value.id.to_string());
                row.value
            })
            .unwrap()
            .output("out", DuckdbSink::append(db.settings.clone(), "copy"))
            .unwrap();
        Execution::new()
            .workers(2)
            .epoch_interval(Duration::from_millis(10))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(10)))
            .run(&flow)
    };
    assert!(run(true).is_err());
    let after_failure = admin::count_rows(&db.settings, "copy").unwrap();
    assert!(
        after_failure < 2000,
        "{after_failure} rows after the failure"
    );
    run(false).unwrap();
    let ids = db.strings("SELECT CAST(id AS VARCHAR) FROM copy ORDER BY id");
    let want: Vec<String> = (1..=3000).map(|i| i.to_string()).collect();
    assert_eq!(ids, want);
    assert_eq!(
        db.strings("SELECT CAST(sum(amount) AS VARCHAR) FROM copy"),
        db.strings("SELECT CAST(sum(amount) AS VARCHAR) FROM sales")
    );
    // Nothing is left staged.
    assert_eq!(
        admin::count_rows(&db.settings, "copy__riffle_staged").unwrap(),
        0
    );
}

#[test]
fn items_that_do_not_fit_the_table_are_errors_naming_file_table_and_column() {
    let db = DuckdbTarget::new();
    admin::create_table(
        &db.settings,
        "orders",
        &[
            admin::Column::new("id", "BIGINT"),
            admin::Column::new("item", "VARCHAR"),
        ],
    )
    .unwrap();
    let write = |items: Vec<serde_json::Value>| {
        let flow = Dataflow::new("load");
        flow.input("in", TestingSource::new(items))
            .unwrap()
            .output(
                "orders-out",
                DuckdbSink::append(db.settings.clone(), "orders"),
            )
            .unwrap();
        run_error(&flow)
    };
    let file = db.settings.server();
    let err = write(vec![serde_json::json!({"id": 1, "colour": "red"})]);
    for part in ["\"orders-out\"", &file, "\"orders\"", "\"colour\""] {
        assert!(err.contains(part), "{part} not in: {err}");
    }
    let err = write(vec![serde_json::json!({"id": "one", "item": "tea"})]);
    for part in [
        "\"orders-out\"",
        &file,
        "\"orders\"",
        "column \"id\"",
        "BIGINT",
    ] {
        assert!(err.contains(part), "{part} not in: {err}");
    }
    assert_eq!(admin::count_rows(&db.settings, "orders").unwrap(), 0);

    // A query that fails, and a column to read by that the query lacks.
    let read = |source: DuckdbSource| {
        let flow = Dataflow::new("read");
        flow.input("in", source)
            .unwrap()
            .output("out", riffle::sinks::TestingSink::new())
            .unwrap();
        run_error(&flow)
    };
    let err = read(DuckdbSource::query(
        db.settings.clone(),
        "SELECT nope FROM orders",
    ));
    for part in ["\"in\"", &file, "SELECT nope FROM orders", "nope"] {
        assert!(err.contains(part), "{part} not in: {err}");
    }
    let err =
        read(DuckdbSource::query(db.settings.clone(), "SELECT * FROM orders").ordered_by("ts"));
    for part in ["\"in\"", &file, "SELECT * FROM orders", "\"ts\""] {
        assert!(err.contains(part), "{part} not in: {err}");
    }
}

/// Counts of each id in `table`.
fn counts(db: &DuckdbTarget, table: &str) -> Vec<String> {
    db.strings(&format!(
        "SELECT CAST(id AS VARCHAR) || 'x' || CAST(count(*) AS VARCHAR) FROM {table} GROUP BY id ORDER BY id"
    ))
}

#[test]
fn a_replayed_commit_is_skipped_and_a_resumed_partition_keeps_only_committed_epochs() {
    let db = DuckdbTarget::new();
    let sink = DuckdbSink::<Sale>::append(db.settings.clone(), "sales").id("load");
    let parts = sink.list_parts("out").unwrap();
    let all = sales(6);

    // Epoch 1 (ids 1, 2) staged and committed; epoch 2 (ids 3, 4) staged only:
    // then the process "crashes" (the partition is dropped without a close).
    let mut part = sink.build_part("out", &parts[0], None).unwrap();
    part.write_batch(all[0..2].to_vec()).unwrap();
    let first = part.snapshot().unwrap().unwrap();
    assert_eq!(
        admin::count_rows(&db.settings, "sales").unwrap(),
        0,
        "visible before commit"
    );
    part.commit(&first).unwrap();
    part.write_batch(all[2..4].to_vec()).unwrap();
    let second = part.snapshot().unwrap().unwrap();
    drop(part);
    assert_eq!(counts(&db, "sales"), ["1x1", "2x1"]);

    // The store had committed epoch 2 before the crash: the resumed partition
    // finishes it; the same commit replayed again (a second crash) is skipped.
    let mut again = sink
        .build_part("out", &parts[0], Some(second.clone()))
        .unwrap();
    assert_eq!(counts(&db, "sales"), ["1x1", "2x1", "3x1", "4x1"]);
    again.commit(&second).unwrap();
    drop(again);
    let again = sink
        .build_part("out", &parts[0], Some(second.clone()))
        .unwrap();
    drop(again);
    let again = sink
        .build_part("out", &parts[0], Some(first.clone()))
        .unwrap();
    drop(again);
    assert_eq!(counts(&db, "sales"), ["1x1", "2x1", "3x1", "4x1"]);
    let marker = db.strings(
        "SELECT sink || ' ' || part || ' ' || CAST(epoch AS VARCHAR) FROM riffle_sink_epochs",
    );
    assert_eq!(marker, ["load sales#0 2"]);

    // Epoch 3 (ids 5, 6) staged, but the store still holds epoch 2: the resumed
    // partition drops what epoch 3 staged (the run writes it again).
    let mut part = sink
        .build_part("out", &parts[0], Some(second.clone()))
        .unwrap();
    part.write_batch(all[4..6].to_vec()).unwrap();
    let third = part.snapshot().unwrap().unwrap();
    assert_eq!(third.epoch, 3);
    drop(part);
    assert_eq!(
        admin::count_rows(&db.settings, "sales__riffle_staged").unwrap(),
        2
    );
    let mut part = sink.build_part("out", &parts[0], Some(second)).unwrap();
    assert_eq!(
        admin::count_rows(&db.settings, "sales__riffle_staged").unwrap(),
        0
    );
    part.write_batch(all[4..6].to_vec()).unwrap();
    part.close().unwrap();
    assert_eq!(
        counts(&db, "sales"),
        ["1x1", "2x1", "3x1", "4x1", "5x1", "6x1"]
    );
}

#[test]
fn several_partitions_and_a_source_in_one_process_share_the_file() {
    let db = DuckdbTarget::new();
    db.execute("CREATE TABLE raw AS SELECT i AS id, 'v' || i AS value FROM range(1, 5001) t(i)");
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let flow = Dataflow::new("fan");
    flow.input(
        "in",
        DuckdbSource::query(db.settings.clone(), "SELECT id, value FROM raw").ordered_by("id"),
    )
    .unwrap()
    .map("value", |row| row.value)
    .unwrap()
    .output(
        "out",
        DuckdbSink::append(db.settings.clone(), "copied").partitions(3),
    )
    .unwrap();
    Execution::new()
        .workers(3)
        .epoch_interval(Duration::from_millis(10))
        .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(10)))
        .run(&flow)
        .unwrap();
    let want: Vec<String> = (1..=5000).map(|i| format!("{i}x1")).collect();
    assert_eq!(counts(&db, "copied"), want);
    let parts = db.strings("SELECT DISTINCT part FROM riffle_sink_epochs ORDER BY part");
    assert_eq!(parts, ["copied#0", "copied#1", "copied#2"]);
}

/// Not a test of its own: with `RIFFLE_DUCKDB_HOLD` set, opens that database file
/// and holds it until the file `RIFFLE_DUCKDB_HOLD.release` appears.
#[test]
fn holder_process() {
    let Ok(path) = std::env::var("RIFFLE_DUCKDB_HOLD") else {
        return;
    };
    let _db = DuckdbDatabase::open(&DuckdbSettings::new(&path)).unwrap();
    std::fs::write(format!("{path}.held"), "").unwrap();
    let release = format!("{path}.release");
    let start = std::time::Instant::now();
    while !std::path::Path::new(&release).exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_process_on_the_same_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.duckdb");
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holder_process", "--nocapture"])
        .env("RIFFLE_DUCKDB_HOLD", &path)
        .spawn()
        .unwrap();
    let held = dir.path().join("held.duckdb.held");
    let start = std::time::Instant::now();
    while !held.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the holder did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let settings = DuckdbSettings::new(&path);
    let flow = Dataflow::new("second");
    flow.input("in", TestingSource::new(sales(3)))
        .unwrap()
        .output("out", DuckdbSink::append(settings.clone(), "sales"))
        .unwrap();
    let err = run_error(&flow);
    std::fs::write(dir.path().join("held.duckdb.release"), "").unwrap();
    let _ = holder.wait();
    for part in ["\"out\"", &settings.server(), "another process"] {
        assert!(err.contains(part), "{part} not in: {err}");
    }
}

/// A row the format cannot decode (a NULL where `Sale` wants a number) stops a
/// strict run naming the step, the file, the query and the row's position; with
/// dead letters it goes to the letter file (position, reason, the row as JSON)
/// or to the step's dead-letter stream, and every other row comes through.
#[test]
fn rows_that_do_not_decode_stop_a_strict_run_or_go_to_the_dead_letters() {
    use riffle::dead_letters::{DeadLetter, DeadLetters};
    use riffle::sinks::TestingSink;
    use riffle_connectors::format::Json;

    let db = DuckdbTarget::new();
    db.execute(
        "CREATE TABLE sales AS SELECT i * 10 AS id, 'item' || i AS item, \
         CASE WHEN i = 3 THEN NULL ELSE i * 1.5 END AS amount FROM range(1, 6) t(i)",
    );
    let source = || {
        DuckdbSource::query(db.settings.clone(), "SELECT * FROM sales")
            .ordered_by("id")
            .format(Json::<Sale>::new())
    };

    let flow = Dataflow::new("strict");
    flow.input("in", source())
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    let err = run_error(&flow);
    assert!(err.contains("\"in\""), "{err}");
    assert!(err.contains(&db.settings.server()), "{err}");
    assert!(err.contains("at position 30"), "{err}");
    assert!(err.contains("null"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead.jsonl");
    let ids = TestingSink::new();
    let flow = Dataflow::new("to-file");
    flow.input("in", source().dead_letters(DeadLetters::file(&file)))
        .unwrap()
        .map("id", |row| row.value.id)
        .unwrap()
        .output("out", ids.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(ids.take(), [10, 20, 40, 50]);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let letter: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(letter["step_id"], "in");
    assert_eq!(letter["position"], "30");
    assert!(
        letter["reason"].as_str().unwrap().contains("null"),
        "{letter}"
    );
    let row: serde_json::Value = serde_json::from_str(letter["text"].as_str().unwrap()).unwrap();
    assert_eq!(row["item"], "item3");
    assert!(row["amount"].is_null(), "{row}");

    let ids = TestingSink::new();
    let letters = TestingSink::new();
    let flow = Dataflow::new("to-stream");
    let rows = flow
        .input("in", source().dead_letters(DeadLetters::stream()))
        .unwrap();
    rows.map("id", |row| row.value.id)
        .unwrap()
        .output("out", ids.clone())
        .unwrap();
    rows.dead_letters()
        .unwrap()
        .map("letter", |l: DeadLetter| {
            l.to_json()["position"].to_string()
        })
        .unwrap()
        .output("letters", letters.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(ids.take(), [10, 20, 40, 50]);
    assert_eq!(letters.take(), ["\"30\""]);
}

/// `admin::drop_table` removes a sink's table, what it left staged and its
/// recorded epochs (the managed-resource delete); dropping a missing table is
/// no error, and a sink then makes the table afresh.
#[test]
fn a_dropped_table_takes_its_staging_and_epochs_with_it() {
    let db = DuckdbTarget::new();
    let sink = DuckdbSink::<Sale>::append(db.settings.clone(), "sales").id("load");
    let parts = sink.list_parts("out").unwrap();
    let write = || {
        let mut part = sink.build_part("out", &parts[0], None).unwrap();
        part.write_batch(sales(2)).unwrap();
        let first = part.snapshot().unwrap().unwrap();
        part.commit(&first).unwrap();
        part.write_batch(sales(3)[2..].to_vec()).unwrap();
        // Staged, never committed: left behind as a crash would leave it.
        part.snapshot().unwrap().unwrap();
        drop(part);
    };
    write();
    assert_eq!(counts(&db, "sales"), ["1x1", "2x1"]);
    assert_eq!(
        admin::count_rows(&db.settings, "sales__riffle_staged").unwrap(),
        1
    );
    let epochs = "SELECT part FROM riffle_sink_epochs ORDER BY part";
    assert_eq!(db.strings(epochs), ["sales#0"]);

    admin::drop_table(&db.settings, "sales").unwrap();
    assert!(admin::columns(&db.settings, "sales").unwrap().is_none());
    assert!(
        admin::columns(&db.settings, "sales__riffle_staged")
            .unwrap()
            .is_none()
    );
    assert!(db.strings(epochs).is_empty());
    // Dropping what is not there is no error.
    admin::drop_table(&db.settings, "sales").unwrap();

    write();
    assert_eq!(counts(&db, "sales"), ["1x1", "2x1"]);
}
