//! The PostgreSQL source and sink against a real server, started by
//! `scripts/test.d/20-postgres.sh` and announced in `RIFFLE_TEST_POSTGRES_URL`
//! (and, for the private servers restarted or wanting a password,
//! `RIFFLE_TEST_POSTGRES_BIN`). Without them these tests skip with a note, or fail
//! under `CI=true`. The conformance kit's checks first, then what is PostgreSQL's
//! own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::format::Json;
use riffle_connectors::postgres::testing::{PostgresServer, PostgresTarget, unique};
use riffle_connectors::postgres::{PostgresSettings, PostgresSink, PostgresSource, quote_table};
use serde_json::Value;

#[test]
fn conformance_read_after_write() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    conformance::read_after_write(&pg);
}

#[test]
fn conformance_resume_without_loss() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    conformance::resume_without_loss(&pg);
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    conformance::rescale(&pg);
}

#[test]
fn conformance_missing_table_and_unreachable_server() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    conformance::missing_stream(&pg);
    conformance::unreachable_server(&pg);
}

/// Polls `part` for up to `wait`, returning the `value`s it emitted.
fn drain<P: SourcePartition<Item = riffle_connectors::postgres::PostgresRow<Value>>>(
    part: &mut P,
    wait: Duration,
    want: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    let until = Instant::now() + wait;
    while Instant::now() < until && got.len() < want {
        match part.next_batch().expect("a batch") {
            Poll::Ready(rows) => got.extend(
                rows.into_iter()
                    .map(|r| r.value["value"].as_str().unwrap().to_string()),
            ),
            Poll::Pending => std::thread::sleep(Duration::from_millis(10)),
            Poll::Exhausted => break,
            Poll::ReadyAt(..) => unreachable!("the source sets no event times"),
        }
    }
    got
}

/// The classic hole of reading by id: a transaction took id 1, another took id 2
/// and committed first. Reading `id > last` after 2 would lose 1 for ever; the
/// source waits for the first transaction, then reads both, and a partition
/// resumed from the state reads only what came after.
#[test]
fn a_lower_id_committed_later_is_not_lost() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let table = pg.create("late", 1);
    let t = quote_table(&table);
    let rt = riffle_connectors::runtime::handle();
    let url = pg.settings.url.clone();
    // Connection A: takes id 1 and holds its transaction open.
    let (a, a_conn) = rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(a_conn);
    rt.block_on(a.batch_execute(&format!("BEGIN; INSERT INTO {t} (value) VALUES ('first')")))
        .unwrap();
    // Connection B: takes id 2 and commits at once.
    pg.execute(&format!("INSERT INTO {t} (value) VALUES ('second')"));
    assert_eq!(
        pg.strings(&format!("SELECT id::text || value FROM {t} ORDER BY id")),
        ["2second"],
        "B's row is visible, A's is not yet"
    );
    let source = PostgresSource::table(pg.settings.clone(), &table, "id")
        .poll_every(Duration::from_millis(20));
    let mut part = source.build_part("in", &table, None).unwrap();
    let early = drain(&mut part, Duration::from_millis(1500), 1);
    assert!(
        early.is_empty(),
        "read {early:?} while a transaction holding a lower id was open"
    );
    rt.block_on(a.batch_execute("COMMIT")).unwrap();
    let got = drain(&mut part, Duration::from_secs(10), 2);
    assert_eq!(got, ["first", "second"], "in id order, nothing lost");
    pg.execute(&format!("INSERT INTO {t} (value) VALUES ('third')"));
    assert_eq!(drain(&mut part, Duration::from_secs(10), 1), ["third"]);
    let state = part.snapshot();
    part.close().unwrap();
    drop(part);
    pg.execute(&format!("INSERT INTO {t} (value) VALUES ('fourth')"));
    let mut resumed = source.build_part("in", &table, state).unwrap();
    assert_eq!(drain(&mut resumed, Duration::from_secs(10), 1), ["fourth"]);
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

/// Rows by a timestamp column into a struct, out again appended with `COPY`
/// (with a tab and a newline in a value, and a default column left alone).
#[test]
fn rows_by_timestamp_into_structs_and_appended_with_copy() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let input = unique("readings-in");
    let output = unique("readings-out");
    pg.execute(&format!(
        "CREATE TABLE {i} (at timestamptz NOT NULL, sensor text, celsius float8); \
         CREATE TABLE {o} (n bigserial, sensor text, celsius float8, note text DEFAULT 'kept'); \
         INSERT INTO {i} SELECT timestamptz '2026-01-01' + g * interval '1 ms', \
             'sensor ' || (g % 3) || E'\\t' || g, g / 10.0 FROM generate_series(1, 2500) g",
        i = quote_table(&input),
        o = quote_table(&output)
    ));
    let settings = pg.settings.clone();
    let flow = Dataflow::new("readings");
    flow.input(
        "in",
        PostgresSource::table(settings.clone(), &input, "at")
            .format(Json::<Reading>::new())
            .batch_size(700)
            .tail(false),
    )
    .unwrap()
    .map("value", |row| row.value)
    .unwrap()
    .output("out", PostgresSink::<Reading>::append(settings, &output))
    .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let o = quote_table(&output);
    assert_eq!(
        pg.strings(&format!("SELECT count(*)::text FROM {o}")),
        ["2500"]
    );
    assert_eq!(
        pg.strings(&format!(
            "SELECT count(*)::text FROM {o} JOIN {} i USING (sensor, celsius) WHERE note = 'kept'",
            quote_table(&input)
        )),
        ["2500"],
        "every row copied as it was"
    );
}

/// Rows the format cannot decode go to the dead-letter file with their position,
/// and the run goes on.
#[test]
fn rows_that_do_not_decode_go_to_the_dead_letter_file() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let input = unique("letters-in");
    pg.execute(&format!(
        "CREATE TABLE {i} (id bigserial PRIMARY KEY, sensor text, celsius float8); \
         INSERT INTO {i} (sensor, celsius) VALUES ('a', 1.5), ('b', NULL), ('c', 3.5)",
        i = quote_table(&input)
    ));
    let dir = tempfile::tempdir().unwrap();
    let letters = dir.path().join("dead.jsonl");
    let sink = TestingSink::new();
    let flow = Dataflow::new("letters");
    flow.input(
        "in",
        PostgresSource::table(pg.settings.clone(), &input, "id")
            .format(Json::<Reading>::new())
            .dead_letters(riffle::dead_letters::DeadLetters::file(&letters))
            .tail(false),
    )
    .unwrap()
    .map("sensor", |row| row.value.sensor)
    .unwrap()
    .output("out", sink.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(sink.take(), ["a", "c"]);
    let text = std::fs::read_to_string(&letters).unwrap();
    let letter: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(letter["step_id"], "in");
    assert_eq!(letter["position"], "2");
    assert!(
        letter["text"].as_str().unwrap().contains("\"b\""),
        "{letter}"
    );
    assert!(
        letter["reason"].as_str().unwrap().contains("JSON"),
        "{letter}"
    );
}

/// A missing table, a field with no column and a bad key are errors naming the
/// step, the server, the table and the column.
#[test]
fn the_sink_names_missing_tables_and_columns() {
    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let table = pg.create("cols", 1);
    let run = |sink: PostgresSink<Value>, item: Value| {
        let flow = Dataflow::new("cols");
        flow.input("in", riffle::sources::TestingSource::new(vec![item]))
            .unwrap()
            .output("out", sink)
            .unwrap();
        riffle::run_main(&flow).unwrap_err().to_string()
    };
    let s = pg.settings.clone();
    let err = run(
        PostgresSink::upsert(s.clone(), "no_such_table", ["value"]),
        serde_json::json!({"value": "x"}),
    );
    assert!(
        err.contains("\"out\"") && err.contains(&pg.settings.server()),
        "{err}"
    );
    assert!(
        err.contains("no_such_table") && err.contains("does not exist"),
        "{err}"
    );
    let err = run(
        PostgresSink::upsert(s.clone(), &table, ["value"]),
        serde_json::json!({"value": "x", "colour": "red"}),
    );
    assert!(err.contains(&table) && err.contains("\"colour\""), "{err}");
    let err = run(
        PostgresSink::upsert(s.clone(), &table, ["nope"]),
        serde_json::json!({"value": "x"}),
    );
    assert!(err.contains("key column \"nope\""), "{err}");
    let err = run(
        PostgresSink::append(s, &table),
        serde_json::json!({"value": "x", "id": "not a number"}),
    );
    assert!(err.contains(&table) && err.contains("bigint"), "{err}");
    let err = {
        let flow = Dataflow::new("col");
        flow.input(
            "in",
            PostgresSource::table(pg.settings.clone(), &table, "seq").tail(false),
        )
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
        riffle::run_main(&flow).unwrap_err().to_string()
    };
    assert!(
        err.contains("no column \"seq\"") && err.contains(&table),
        "{err}"
    );
}

#[test]
fn a_password_comes_from_the_environment_and_a_wrong_one_is_named() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let settings = PostgresSettings::new(server.url());
    let read = || {
        let flow = Dataflow::new("auth");
        flow.input(
            "in",
            PostgresSource::table(settings.clone(), "t", "id").tail(false),
        )
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
        riffle::run_main(&flow)
    };
    // SAFETY: this test's process runs no other thread reading the environment.
    unsafe { std::env::set_var("RIFFLE_POSTGRES_PASSWORD", "wrong") };
    let err = read().unwrap_err();
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
    // The right one, from a file: the table is then simply missing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{}\n", PostgresServer::PASSWORD)).unwrap();
    unsafe {
        std::env::remove_var("RIFFLE_POSTGRES_PASSWORD");
        std::env::set_var("RIFFLE_POSTGRES_PASSWORD_FILE", &file);
    }
    let text = read().unwrap_err().to_string();
    assert!(text.contains("\"t\" does not exist"), "{text}");
}

#[test]
fn a_copy_rides_out_the_server_stopped_and_started_mid_run() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    // SAFETY: set before any thread of this test's process reads it.
    unsafe { std::env::set_var("RIFFLE_POSTGRES_PASSWORD", PostgresServer::PASSWORD) };
    let pg = PostgresTarget {
        settings: PostgresSettings::new(server.url()),
    };
    let input = pg.create("restart-in", 1);
    let output = pg.create("restart-out", 1);
    let values: Vec<String> = (0..30_000).map(|i| format!("v{i:06}")).collect();
    pg.write(&input, &values);
    let stopped = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let flow = Dataflow::new("restart");
            flow.input("in", pg.source(&input).batch_size(200))
                .unwrap()
                .filter_map("upper", |row| {
                    // Slow enough that the stop lands mid-run.
                    std::thread::sleep(Duration::from_micros(100));
                    PostgresTarget::value(row).map(|v| PostgresTarget::record(v.to_uppercase()))
                })
                .unwrap()
                .output("out", pg.sink(&output, "restart"))
                .unwrap();
            Execution::new()
                .workers(2)
                .epoch_interval(Duration::from_millis(50))
                .run(&flow)
        });
        let started = Instant::now();
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(60) {
            let written = std::panic::catch_unwind(|| pg.read(&output).len()).unwrap_or(0);
            if written > 2000 {
                server.stop();
                stopped.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(1));
                server.run();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        handle.join().unwrap()
    });
    assert!(
        stopped.load(Ordering::SeqCst),
        "the copy finished before the stop"
    );
    outcome.unwrap_or_else(|e| panic!("the run should ride out the restart: {e:?}"));
    let mut got = pg.read(&output);
    got.sort();
    let mut want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    want.sort();
    assert_eq!(got, want, "rows lost or doubled through the restart");
}
