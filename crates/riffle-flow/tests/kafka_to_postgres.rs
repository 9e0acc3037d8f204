//! A consumer from Kafka to PostgreSQL against the real servers the test setup
//! starts (`RIFFLE_TEST_KAFKA_BROKERS`, `RIFFLE_TEST_POSTGRES_URL`; without them
//! the test skips with a note, or fails under `CI=true`): two replicas split a
//! three-partition topic, rows are upserted by key, a record that is not JSON is
//! a dead letter naming its partition, and the group's offsets are committed
//! only for what was written, so the same consumer run again reads only what is
//! new.

use riffle::dead_letters::DeadLetter;
use riffle::sinks::TestingSink;
use riffle_connectors::kafka::testing::KafkaTarget;
use riffle_connectors::kafka::{KafkaMessage, KafkaSource, StartOffset, Utf8, admin};
use riffle_connectors::postgres::PostgresSink;
use riffle_connectors::postgres::testing::{PostgresTarget, unique};
use riffle_flow::{Flow, RunOptions, RunSummary};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Person {
    id: i64,
    name: String,
}

fn run(
    kafka: &KafkaTarget,
    pg: &PostgresTarget,
    topic: &str,
    table: &str,
    letters: &TestingSink<DeadLetter>,
) -> RunSummary {
    let mut flow = Flow::new("people");
    let source = KafkaSource::new(kafka.settings.clone(), [topic])
        .format(Utf8)
        .group_id(format!("{topic}-group"))
        .start(StartOffset::Committed)
        // Stop at the end the topic had when the run started, so the test ends.
        .tail(false);
    let sink = PostgresSink::upsert(pg.settings.clone(), table, ["id"]);
    flow.consumer("people", source, sink, |m: KafkaMessage<String>| {
        serde_json::from_str::<Person>(m.value.as_deref().unwrap_or("")).map(Some)
    })
    .unwrap()
    .replicas(2)
    .attempts(1)
    .dead_letters(letters.clone(), |l| l);
    flow.run(RunOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .unwrap()
}

fn person(id: i64, name: &str) -> (Option<String>, String) {
    (
        Some(id.to_string()),
        serde_json::json!({"id": id, "name": name}).to_string(),
    )
}

#[test]
fn a_consumer_upserts_kafka_records_into_postgres_and_commits_only_what_it_wrote() {
    let (Some(kafka), Some(pg)) = (KafkaTarget::from_env(), PostgresTarget::from_env()) else {
        return;
    };
    let topic = unique("flow-people");
    admin::create_topic(&kafka.settings, &topic, 3, 1).unwrap();
    let table = unique("flow_people").replace('-', "_");
    pg.execute(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL)"
    ));
    let mut records: Vec<_> = (0..300).map(|i| person(i, &format!("p{i}"))).collect();
    records.push((Some("bad".into()), "not json".into()));
    kafka.produce(&topic, &records);
    let letters = TestingSink::new();

    let first = run(&kafka, &pg, &topic, &table, &letters);
    assert_eq!(first.processors, [("people".to_string(), 301, 300)]);
    let count = |sql: &str| pg.strings(sql).remove(0);
    assert_eq!(count(&format!("SELECT count(*)::text FROM {table}")), "300");
    let bad = letters.take();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].step_id, "people");
    // The letter carries the message as read: topic, partition, offset, value.
    let input = String::from_utf8_lossy(&bad[0].input);
    assert!(
        input.contains("not json") && input.contains(&topic),
        "{input}"
    );
    assert!(
        bad[0].reason.contains("failed 1 times") && bad[0].reason.contains("line 1 column"),
        "{}",
        bad[0].reason
    );
    assert!(
        bad[0].position.iter().any(|(name, _)| name == "partition"),
        "{bad:?}"
    );

    // New people and renamed ones: the same consumer reads only these.
    let mut more: Vec<_> = (300..350).map(|i| person(i, &format!("p{i}"))).collect();
    more.extend((0..10).map(|i| person(i, &format!("renamed{i}"))));
    kafka.produce(&topic, &more);
    let second = run(&kafka, &pg, &topic, &table, &letters);
    assert_eq!(second.processors, [("people".to_string(), 60, 60)]);
    assert_eq!(count(&format!("SELECT count(*)::text FROM {table}")), "350");
    assert_eq!(
        count(&format!(
            "SELECT string_agg(name, ',' ORDER BY id) FROM {table} WHERE id < 3"
        )),
        "renamed0,renamed1,renamed2"
    );
    assert!(letters.take().is_empty());
}

#[derive(Debug, Deserialize, riffle_flow::schemars::JsonSchema)]
struct Lookup {
    id: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, riffle_flow::schemars::JsonSchema)]
struct Found {
    id: i64,
    name: String,
}

#[test]
fn an_endpoint_answers_from_postgres_through_a_flow_scoped_client() {
    use riffle_connectors::postgres::PostgresSettings;
    use riffle_flow::{HttpError, Method, Scope};

    let Some(pg) = PostgresTarget::from_env() else {
        return;
    };
    let table = unique("flow_lookup").replace('-', "_");
    pg.execute(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO {table} VALUES (1, 'ann'), (2, 'bob')"
    ));
    let mut flow = Flow::new("lookups");
    let settings = pg.settings.clone();
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = made.clone();
    let db = flow
        .dependency("db", Scope::Flow, move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(settings.client()?)
        })
        .unwrap();
    let sql = format!("SELECT name FROM {table} WHERE id = $1");
    flow.service("people")
        .unwrap()
        .endpoint("/people/{id}", Method::GET, move |q: Lookup| {
            let (db, sql) = (db.clone(), sql.clone());
            async move {
                let row = db
                    .get()?
                    .query_opt(&sql, &[&q.id])
                    .await
                    .map_err(|e| HttpError::unavailable(e.to_string()))?;
                match row {
                    Some(row) => Ok(Found {
                        id: q.id,
                        name: row.get(0),
                    }),
                    None => Err(HttpError::not_found(format!("no person {}", q.id))),
                }
            }
        })
        .unwrap();
    let running = flow
        .start(RunOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let get = |id: i64| {
        client
            .get(format!("http://{}/people/{id}", running.addr()))
            .send()
            .unwrap()
    };
    let found: Found = get(2).json().unwrap();
    assert_eq!(
        found,
        Found {
            id: 2,
            name: "bob".into()
        }
    );
    let found: Found = get(1).json().unwrap();
    assert_eq!(found.name, "ann");
    let missing = get(3);
    assert_eq!(missing.status(), 404);
    running.stop();
    running.wait().unwrap();
    assert_eq!(
        made.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one client for the flow"
    );

    // A database that is not there stops the start, naming the dependency and
    // the server.
    let mut flow = Flow::new("lookups");
    let down = PostgresSettings::new("postgres://app@127.0.0.1:1/app")
        .timeout(std::time::Duration::from_millis(500))
        .retry_for(std::time::Duration::ZERO);
    flow.dependency("db", Scope::Flow, move || Ok(down.client()?))
        .unwrap();
    let e = flow
        .start(RunOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .err()
        .expect("the start fails")
        .to_string();
    assert!(
        e.contains("dependency \"db\" (flow scope) cannot be made") && e.contains("127.0.0.1:1"),
        "{e}"
    );
}
