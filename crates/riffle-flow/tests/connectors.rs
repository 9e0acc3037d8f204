//! Processors on the connectors' real servers (each started by the test setup and
//! announced in its `RIFFLE_TEST_*` variables; a test whose server is missing
//! skips with a note, or fails under `CI=true`): consumers from NATS to a bucket
//! (S3 on the suite's moto) and from SQS to Redis, and a collector writing to
//! Kafka. Every value sent must come out, transformed, and nothing else (once,
//! but for SQS, whose standard queues may hand a message out twice).

use riffle_connectors::conformance::Target;
use riffle_connectors::kafka::KafkaRecord;
use riffle_connectors::kafka::testing::{KafkaTarget, unique};
use riffle_connectors::nats::testing::NatsTarget;
use riffle_connectors::objects::testing::ObjectsTarget;
use riffle_connectors::redis::testing::RedisTarget;
use riffle_connectors::sqs::testing::SqsTarget;
use riffle_flow::{Flow, Method, RunOptions};
use serde::Deserialize;

fn loopback() -> RunOptions {
    RunOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// Copies 400 values from `from` to `to` through a consumer of two replicas,
/// upper-cased, and checks that exactly those arrive.
fn copy_through_a_consumer<A: Target, B: Target>(from: &A, to: &B, name: &str) {
    let input = from.create(name, 2);
    let output = to.create(name, 2);
    let values: Vec<String> = (0..400).map(|i| format!("{name}-{i:04}")).collect();
    from.write(&input, &values);
    let mut flow = Flow::new(name);
    flow.consumer(
        "copy",
        from.source(&input),
        to.sink(&output, "copy"),
        |item| Ok::<_, String>(A::value(item).map(|v| B::record(v.to_uppercase()))),
    )
    .unwrap()
    .replicas(2);
    let summary = flow.run(loopback()).unwrap();
    let mut got = to.read(&output);
    got.sort();
    if from.may_repeat() {
        // SQS standard queues deliver at least once: a message may come twice
        // (and be written twice); none may be missing.
        let (_, read, written) = &summary.processors[0];
        assert!(*read >= 400 && written == read, "{:?}", summary.processors);
        got.dedup();
    } else {
        assert_eq!(summary.processors, [("copy".to_string(), 400, 400)]);
    }
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_consumer_from_nats_to_a_bucket() {
    let (Some(nats), Some(bucket)) = (NatsTarget::from_env(), ObjectsTarget::s3_from_env()) else {
        return;
    };
    copy_through_a_consumer(&nats, &bucket, "nats-to-bucket");
}

#[test]
fn a_consumer_from_sqs_to_redis() {
    let (Some(sqs), Some(redis)) = (SqsTarget::from_env(), RedisTarget::from_env()) else {
        return;
    };
    copy_through_a_consumer(&sqs, &redis, "sqs-to-redis");
}

#[derive(Debug, Deserialize)]
struct Click {
    user: String,
    page: String,
}

#[test]
fn a_collector_writes_to_kafka_before_it_answers() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let topic = unique("flow-clicks");
    riffle_connectors::kafka::admin::create_topic(&kafka.settings, &topic, 2, 1).unwrap();
    let mut flow = Flow::new("clicks");
    let sink = riffle_connectors::kafka::KafkaSink::new(kafka.settings.clone(), topic.as_str());
    flow.collector("/clicks", Method::POST, sink, |c: Click| {
        Ok::<_, String>([KafkaRecord::new(c.page).key(c.user)])
    })
    .unwrap();
    let running = flow.start(loopback()).unwrap();
    let url = format!("http://{}/clicks", running.addr());
    // Eight clients at once, 25 clicks each: the sink's lanes group them.
    std::thread::scope(|scope| {
        for client in 0..8 {
            let url = url.clone();
            scope.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for i in 0..25 {
                    let body = serde_json::json!({"user": format!("u{client}"), "page": format!("/p/{client}/{i}")});
                    let answer = http.post(&url).json(&body).send().unwrap();
                    assert_eq!(answer.status(), 200, "{}", answer.text().unwrap());
                }
            });
        }
    });
    // Every click was answered, so every click is in the topic already.
    let mut pages: Vec<String> = kafka
        .messages(&topic, true)
        .into_iter()
        .map(|m| String::from_utf8(m.value.unwrap()).unwrap())
        .collect();
    pages.sort();
    let mut want: Vec<String> = (0..8)
        .flat_map(|c| (0..25).map(move |i| format!("/p/{c}/{i}")))
        .collect();
    want.sort();
    assert_eq!(pages, want);
    running.stop();
    running.wait().unwrap();
}
