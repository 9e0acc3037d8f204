//! `plan`, `apply` and `destroy` against the real servers the test setup starts
//! (Kafka, SQS on moto, Redis, NATS, PostgreSQL; a test whose servers are missing
//! skips with a note, or fails under `CI=true`): a flow declares one primitive of
//! each kind plus a Kafka topic that exists already. The first plan creates five
//! and adopts one; apply makes them; a second apply changes nothing; a primitive
//! dropped from the declaration is an orphan, left in place; destroy deletes
//! what the flow made and never the adopted topic; a second destroy is harmless.

use riffle_connectors::kafka::testing::{KafkaTarget, unique};
use riffle_connectors::nats::admin::StreamSpec;
use riffle_connectors::nats::testing::NatsTarget;
use riffle_connectors::postgres::testing::PostgresTarget;
use riffle_connectors::redis::testing::RedisTarget;
use riffle_connectors::sqs::testing::SqsTarget;
use riffle_connectors::{kafka, nats, postgres, redis, sqs};
use riffle_flow::Flow;
use riffle_flow::plan::{Change, State, apply, destroy, plan};
use riffle_flow::primitives::{KafkaTopic, NatsStream, PostgresTable, RedisStream, SqsQueue};

struct Servers {
    kafka: KafkaTarget,
    sqs: SqsTarget,
    redis: RedisTarget,
    nats: NatsTarget,
    pg: PostgresTarget,
}

struct Names {
    topic: String,
    adopted: String,
    queue: String,
    stream: String,
    subjects: String,
    table: String,
}

fn flow(s: &Servers, n: &Names, with_table: bool) -> Flow {
    let mut flow = Flow::new("managed");
    flow.manage(KafkaTopic::new(s.kafka.settings.clone(), &n.topic, 3))
        .unwrap();
    flow.manage(KafkaTopic::new(s.kafka.settings.clone(), &n.adopted, 1))
        .unwrap();
    flow.manage(SqsQueue::new(s.sqs.settings.clone(), &n.queue))
        .unwrap();
    flow.manage(RedisStream::new(s.redis.settings.clone(), &n.stream).group("workers"))
        .unwrap();
    flow.manage(NatsStream::new(
        s.nats.settings.clone(),
        StreamSpec::new(n.subjects.to_uppercase(), [format!("{}.>", n.subjects)]),
    ))
    .unwrap();
    if with_table {
        flow.manage(PostgresTable::new(
            s.pg.settings.clone(),
            &n.table,
            &[("id", "bigint"), ("name", "text")],
            &["id"],
        ))
        .unwrap();
    }
    flow
}

fn exists(s: &Servers, n: &Names) -> [bool; 6] {
    [
        kafka::admin::topic_partitions(&s.kafka.settings, &n.topic).unwrap() == Some(3),
        kafka::admin::topic_partitions(&s.kafka.settings, &n.adopted)
            .unwrap()
            .is_some(),
        sqs::admin::queue_exists(&s.sqs.settings, &n.queue).unwrap(),
        redis::admin::stream_exists(&s.redis.settings, &n.stream).unwrap(),
        nats::admin::stream_exists(&s.nats.settings, &n.subjects.to_uppercase()).unwrap(),
        postgres::admin::table_exists(&s.pg.settings, &n.table).unwrap(),
    ]
}

fn changes(steps: &[riffle_flow::plan::Step]) -> Vec<Change> {
    steps.iter().map(|s| s.change).collect()
}

#[test]
fn plan_apply_and_destroy_make_and_remove_what_the_flow_declares() {
    let (Some(kafka), Some(sqs), Some(redis), Some(nats), Some(pg)) = (
        KafkaTarget::from_env(),
        SqsTarget::from_env(),
        RedisTarget::from_env(),
        NatsTarget::from_env(),
        PostgresTarget::from_env(),
    ) else {
        return;
    };
    let s = Servers {
        kafka,
        sqs,
        redis,
        nats,
        pg,
    };
    let id = unique("managed").replace('-', "_");
    let n = Names {
        topic: format!("{id}-topic"),
        adopted: format!("{id}-adopted"),
        queue: format!("{id}-queue"),
        stream: format!("{id}-stream"),
        subjects: format!("{id}_subjects"),
        table: format!("{id}_table"),
    };
    kafka::admin::create_topic(&s.kafka.settings, &n.adopted, 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");

    let declared = flow(&s, &n, true);
    let first = plan(declared.primitives(), &State::load(&state).unwrap()).unwrap();
    use Change::*;
    assert_eq!(
        changes(&first),
        [Create, Adopt, Create, Create, Create, Create]
    );
    assert_eq!(
        exists(&s, &n),
        [false, true, false, false, false, false],
        "a plan changes nothing"
    );
    assert!(
        first[0].to_string().starts_with("+ create kafka topic"),
        "{}",
        first[0]
    );

    assert_eq!(
        changes(&apply(declared.primitives(), &state).unwrap()),
        changes(&first)
    );
    assert_eq!(exists(&s, &n), [true; 6]);
    let again = apply(declared.primitives(), &state).unwrap();
    assert_eq!(changes(&again), [Keep, Keep, Keep, Keep, Keep, Keep]);

    // The table is no longer declared: an orphan, left in place.
    let fewer = flow(&s, &n, false);
    let orphaned = plan(fewer.primitives(), &State::load(&state).unwrap()).unwrap();
    assert_eq!(changes(&orphaned), [Keep, Keep, Keep, Keep, Keep, Orphan]);

    let gone = destroy(declared.primitives(), &state).unwrap();
    assert_eq!(changes(&gone), [Delete, Delete, Delete, Delete, Delete]);
    assert_eq!(
        exists(&s, &n),
        [false, true, false, false, false, false],
        "the adopted topic stays"
    );
    assert!(
        !state.exists(),
        "the state file goes with the last primitive"
    );
    assert!(destroy(declared.primitives(), &state).unwrap().is_empty());
    kafka::admin::delete_topic(&s.kafka.settings, &n.adopted).unwrap();
}
