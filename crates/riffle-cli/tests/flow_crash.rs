//! Proof of a Flow consumer's delivery across crashes: the bundled
//! `kafka-to-postgres` flow runs as a real `riffle flow run` process, consuming
//! 100,000 JSON records from a 4-partition topic of a real Apache Kafka broker
//! (`RIFFLE_TEST_KAFKA_BROKERS`) into a real PostgreSQL (`RIFFLE_TEST_POSTGRES_URL`),
//! and is killed with SIGKILL 10 times while its output grows, on 2 replicas,
//! then 1 and 3. A last run drains on SIGTERM once everything is in. One consumer
//! upserts by id: the table must hold each of the 100,000 records exactly once,
//! with its value (exactly-once through an idempotent sink). The other appends
//! whatever it writes: every id must be there at least once (at-least-once), and
//! what was written twice is what the kills cut between write and acknowledge.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use riffle_connectors::kafka::admin;
use riffle_connectors::kafka::testing::KafkaTarget;
use riffle_connectors::postgres::testing::PostgresTarget;

mod common;
use common::sigkill::{Kills, Rng, seed};

const RECORDS: i64 = 100_000;

#[test]
fn kafka_to_postgres_flow_is_exactly_once_by_upsert_and_at_least_once_across_10_sigkills() {
    let (Some(kafka), Some(pg)) = (KafkaTarget::from_env(), PostgresTarget::from_env()) else {
        return;
    };
    let seed = seed();
    eprintln!("flow crash: seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("flow-crash-{seed}");
    admin::create_topic(&kafka.settings, &topic, 4, 1).unwrap();
    let upserts = format!("flow_crash_upsert_{seed}");
    let appends = format!("flow_crash_append_{seed}");
    pg.execute(&format!(
        "CREATE TABLE {upserts} (id BIGINT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE {appends} (id BIGINT NOT NULL, value TEXT NOT NULL)"
    ));
    let records: Vec<(Option<String>, String)> = (0..RECORDS)
        .map(|i| {
            let record = serde_json::json!({"id": i, "value": format!("v{i}")});
            (Some(i.to_string()), record.to_string())
        })
        .collect();
    kafka.produce(&topic, &records);

    let spawn = |replicas: &str| -> Child {
        Command::new(env!("CARGO_BIN_EXE_riffle"))
            .current_dir(dir.path())
            .args(["flow", "run", "kafka-to-postgres", "--addr", "127.0.0.1:0"])
            .args(["-P", &format!("brokers={}", kafka.brokers())])
            .args(["-P", &format!("topic={topic}")])
            .args(["-P", &format!("postgres={}", pg.settings.url)])
            .args(["-P", &format!("table={upserts}")])
            .args(["-P", &format!("append_table={appends}")])
            .args(["-P", &format!("replicas={replicas}")])
            .args([
                "-P",
                &format!("dead_letters={}", dir.path().join("dead").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let count = |sql: String| -> i64 {
        pg.strings(&format!("SELECT ({sql})::text"))
            .remove(0)
            .parse()
            .unwrap()
    };
    let appended = || count(format!("SELECT count(*) FROM {appends}")) as u64;
    Kills {
        count: 10,
        grow: (500, 8000),
        wait: (Duration::from_millis(1500), Duration::from_millis(4000)),
    }
    .run(&mut rng, spawn, appended);

    let mut last = spawn("2");
    let started = Instant::now();
    while count(format!("SELECT count(*) FROM {upserts}")) < RECORDS
        || count(format!("SELECT count(DISTINCT id) FROM {appends}")) < RECORDS
    {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the last run did not catch up in 3 minutes"
        );
        if let Ok(Some(status)) = last.try_wait() {
            panic!("the last run ended by itself: {status}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(last.id() as i32, libc::SIGTERM) };
    let done = last.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    assert_eq!(count(format!("SELECT count(*) FROM {upserts}")), RECORDS);
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM {upserts} WHERE value <> 'v' || id"
        )),
        0,
        "an upserted row has another record's value"
    );
    assert_eq!(count(format!("SELECT min(id) FROM {upserts}")), 0);
    assert_eq!(count(format!("SELECT max(id) FROM {upserts}")), RECORDS - 1);
    let total = count(format!("SELECT count(*) FROM {appends}"));
    assert_eq!(
        count(format!("SELECT count(DISTINCT id) FROM {appends}")),
        RECORDS
    );
    eprintln!(
        "appended {total} rows for {RECORDS} records: {} written again after a kill",
        total - RECORDS
    );
    // The dead-letter files (beside them: the run's store, `.riffle/`).
    let letters: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| f.unwrap())
        .filter(|f| f.file_name().to_string_lossy().starts_with("dead"))
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert_eq!(letters, 0, "no record should be a dead letter");
}
