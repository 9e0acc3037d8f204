//! The sink side of the conformance kit's `unreachable_server` check: a sink
//! whose server does not answer (a closed loopback port) stops the run with an
//! error naming the step and the server, with the client's error as the cause,
//! within its timeout. The kit itself checks sources; each broker's sink is run
//! here through a one-record Dataflow.

#![cfg(all(
    feature = "nats",
    feature = "redis",
    feature = "sqs",
    feature = "postgres"
))]

use std::time::{Duration, Instant};

use riffle::Dataflow;
use riffle::sinks::FixedPartitionedSink;
use riffle::sources::TestingSource;
use riffle_connectors::nats::{NatsRecord, NatsSettings, NatsSink};
use riffle_connectors::postgres::{PostgresSettings, PostgresSink};
use riffle_connectors::redis::{RedisRecord, RedisSettings, RedisSink};
use riffle_connectors::sqs::{SqsRecord, SqsSettings, SqsSink};

/// How long a check may take: the sinks are given 1.5 s, and some try again
/// within that.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `item` into `sink` (step `out`) and checks the error names the step
/// and `server`, has a cause, and came within [`LIMIT`].
fn check<S>(item: S::Item, sink: S, server: &str)
where
    S: FixedPartitionedSink,
    S::Item: Clone + Sync,
{
    let flow = Dataflow::new("unreachable-sink");
    flow.input("in", TestingSource::new(vec![item]))
        .unwrap()
        .output("out", sink)
        .unwrap();
    let started = Instant::now();
    let err = riffle::run_main(&flow).expect_err("a sink with no server should fail");
    let took = started.elapsed();
    let text = err.to_string();
    eprintln!("as expected, after {took:?}: {text}");
    assert!(took < LIMIT, "took {took:?}: {text}");
    assert!(text.contains("\"out\""), "{text}");
    assert!(text.contains(server), "{text}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause: {text}"
    );
}

fn patience() -> Duration {
    Duration::from_millis(1500)
}

#[test]
fn a_nats_sink_names_the_server_it_cannot_reach() {
    let nowhere = NatsSettings::new("nats://127.0.0.1:1").timeout(patience());
    check(
        NatsRecord::new("x"),
        NatsSink::new(nowhere, "S.out"),
        "nats://127.0.0.1:1",
    );
}

#[test]
fn a_redis_sink_names_the_server_it_cannot_reach() {
    let nowhere = RedisSettings::new("redis://127.0.0.1:1").timeout(patience());
    check(
        RedisRecord::new("x"),
        RedisSink::new(nowhere, ["s"]),
        "127.0.0.1:1",
    );
}

#[test]
fn an_sqs_sink_names_the_endpoint_it_cannot_reach() {
    riffle_connectors::sqs::testing::set_test_keys();
    let nowhere = SqsSettings::new("us-east-1")
        .endpoint("http://127.0.0.1:1")
        .timeout(patience());
    check(
        SqsRecord::new("x"),
        SqsSink::new(nowhere, "q"),
        "127.0.0.1:1",
    );
}

#[test]
fn a_postgres_sink_names_the_server_it_cannot_reach() {
    let nowhere = PostgresSettings::new("postgres://postgres@127.0.0.1:1/none")
        .timeout(patience())
        .retry_for(patience());
    check(
        serde_json::json!({"value": "x"}),
        PostgresSink::upsert(nowhere, "t", ["value"]),
        "127.0.0.1:1",
    );
}
