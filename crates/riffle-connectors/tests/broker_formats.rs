//! Typed items and dead letters for the broker sources (NATS JetStream, Redis
//! Streams, SQS, RabbitMQ), each against its real server from `/work`'s test
//! servers (the `RIFFLE_TEST_*` variables; a test skips with a note without its
//! server). For each connector one test reads good and bad messages mixed: the
//! good ones come out typed, the bad ones as letters of the step's dead-letter
//! stream carrying their position, and nothing is left unacknowledged after the
//! run; then a strict run (no dead letters) stops with an error naming the step,
//! the position and the reason.

use riffle::dead_letters::{DeadLetter, DeadLetters};
use riffle::sinks::TestingSink;
use riffle::sources::FixedPartitionedSource;
use riffle::{Data, Dataflow};

/// What the mixed input holds: values 1, 2 and 3 as JSON, and three bad ones
/// (at [`BAD`]); the last is bad, so that acknowledging only the good ones
/// would leave it behind.
#[allow(dead_code)]
const MIXED: [&str; 6] = ["1", "oops", "2", "{", "3", "[4"];

/// Where [`MIXED`] is bad.
#[allow(dead_code)]
const BAD: [usize; 3] = [1, 3, 5];

/// Runs `source` (bounded) into two sinks: each item's value (through `value`)
/// and, when `letters` is true, the step's dead letters as JSON objects.
#[allow(dead_code)]
fn run<S, V>(
    source: S,
    value: impl Fn(S::Item) -> V + Send + Sync + 'static,
    letters: bool,
) -> riffle::Result<(Vec<V>, Vec<serde_json::Value>)>
where
    S: FixedPartitionedSource,
    V: Data,
{
    let flow = Dataflow::new("typed");
    let input = flow.input("in", source)?;
    let good = TestingSink::new();
    let bad = TestingSink::<DeadLetter>::new();
    input.map("value", value)?.output("out", good.clone())?;
    if letters {
        input.dead_letters()?.output("bad", bad.clone())?;
    }
    riffle::run_main(&flow)?;
    let letters = bad.take().iter().map(DeadLetter::to_json).collect();
    Ok((good.take(), letters))
}

/// Checks the letters of [`MIXED`]: those at [`BAD`] (in any order), each
/// with its position (`at(i)` gives the fields of input `i`, 0-based), the JSON
/// reason and the input's text.
#[allow(dead_code)]
fn check_letters(letters: &[serde_json::Value], at: impl Fn(usize) -> serde_json::Value) {
    assert_eq!(letters.len(), BAD.len(), "{letters:?}");
    for i in BAD {
        let letter = letters
            .iter()
            .find(|l| l["text"] == MIXED[i])
            .unwrap_or_else(|| panic!("no letter of {:?} in {letters:?}", MIXED[i]));
        assert_eq!(letter["step_id"], "in", "{letter}");
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("JSON"), "{letter}");
        for (name, value) in at(i).as_object().unwrap() {
            assert_eq!(&letter[name], value, "field {name} of {letter}");
        }
    }
}

/// Checks a strict run's error: it names the step, the position and the reason.
#[allow(dead_code)]
fn check_strict(error: riffle::RiffleError, position: &str) {
    let text = format!("{error}");
    assert_eq!(error.step_id(), Some("in"), "{text}");
    assert!(
        text.contains(position),
        "{text:?} does not name {position:?}"
    );
    assert!(text.contains("JSON"), "{text:?} gives no reason");
}

#[cfg(feature = "nats")]
mod nats {
    use std::time::{Duration, Instant};

    use riffle_connectors::conformance::Target;
    use riffle_connectors::format::Json;
    use riffle_connectors::nats::NatsSource;
    use riffle_connectors::nats::testing::NatsTarget;
    use serde_json::json;

    use super::*;

    /// The consumer's delivered-not-acknowledged and not-delivered counts, once
    /// both are 0 (or after 5 s).
    fn left(nats: &NatsTarget, stream: &str, durable: &str) -> (usize, u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let info = riffle_connectors::runtime::handle().block_on(async {
                let client = async_nats::connect(nats.settings.servers.as_str())
                    .await
                    .unwrap();
                let js = async_nats::jetstream::new(client);
                let stream = js.get_stream(stream).await.unwrap();
                stream.consumer_info(durable).await.unwrap().clone()
            });
            let left = (info.num_ack_pending, info.num_pending);
            if left == (0, 0) || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn typed_payloads_and_dead_letters_with_their_sequence() {
        let Some(nats) = NatsTarget::from_env() else {
            return;
        };
        let stream = nats.create("typed", 1);
        let mixed: Vec<String> = MIXED.iter().map(|s| s.to_string()).collect();
        nats.publish(&format!("{stream}.0"), &mixed);
        let source = NatsSource::new(nats.settings.clone(), &stream)
            .durable("lenient")
            .tail(false)
            .format(Json::<u32>::new())
            .dead_letters(DeadLetters::stream());
        let (good, letters) = run(source, |m| m.payload, true).unwrap();
        assert_eq!(good, [1, 2, 3]);
        check_letters(
            &letters,
            |i| json!({"stream": stream, "consumer": "lenient", "sequence": i + 1}),
        );
        assert_eq!(
            left(&nats, &stream, "lenient"),
            (0, 0),
            "left unacknowledged"
        );

        let strict = NatsSource::new(nats.settings.clone(), &stream)
            .durable("strict")
            .tail(false)
            .format(Json::<u32>::new());
        let error = run(strict, |m| m.payload, false).unwrap_err();
        check_strict(
            error,
            &format!(r#"stream "{stream}", consumer "strict", sequence 2"#),
        );
    }
}

#[cfg(feature = "redis")]
mod redis {
    use riffle_connectors::conformance::Target;
    use riffle_connectors::format::Json;
    use riffle_connectors::redis::RedisSource;
    use riffle_connectors::redis::testing::RedisTarget;
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_values_and_dead_letters_with_their_entry_id() {
        let Some(redis) = RedisTarget::from_env() else {
            return;
        };
        let stream = redis.create("typed", 1);
        let key = redis.keys(&stream).remove(0);
        let mixed: Vec<String> = MIXED.iter().map(|s| s.to_string()).collect();
        redis.add(&key, &mixed);
        // And an entry without the field the format decodes.
        let url = redis.settings.url.as_str();
        let mut conn = ::redis::Client::open(url)
            .unwrap()
            .get_connection()
            .unwrap();
        let _: String = ::redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("other")
            .arg("x")
            .query(&mut conn)
            .unwrap();
        let ids: Vec<String> = redis.entries(&key).into_iter().map(|e| e.id).collect();
        let source = RedisSource::new(redis.settings.clone(), [&key])
            .group("lenient")
            .tail(false)
            .format(Json::<u32>::new())
            .dead_letters(DeadLetters::stream());
        let (good, mut letters) = run(source, |e| e.decoded, true).unwrap();
        assert_eq!(good, [1, 2, 3]);
        let missing = letters.pop().unwrap();
        assert_eq!(missing["id"], ids[MIXED.len()], "{missing}");
        assert_eq!(missing["reason"], r#"the entry has no field "value""#);
        assert_eq!(missing["text"], r#"{"other":"x"}"#);
        check_letters(&letters, |i| json!({"stream": key, "id": ids[i]}));
        assert_eq!(redis.pending(&key, "lenient"), 0, "left unacknowledged");

        let strict = RedisSource::new(redis.settings.clone(), [&key])
            .group("strict")
            .tail(false)
            .format(Json::<u32>::new());
        let error = run(strict, |e| e.decoded, false).unwrap_err();
        check_strict(error, &format!(r#"stream "{key}", id "{}""#, ids[1]));
    }
}

#[cfg(feature = "sqs")]
mod sqs {
    use std::time::Duration;

    use riffle_connectors::conformance::Target;
    use riffle_connectors::format::Json;
    use riffle_connectors::sqs::SqsSource;
    use riffle_connectors::sqs::admin;
    use riffle_connectors::sqs::testing::SqsTarget;
    use serde_json::json;

    use super::*;

    /// A bounded source on `queue`, typed, that stops after one empty receive.
    fn typed(sqs: &SqsTarget, queue: &str) -> SqsSource<Json<u32>> {
        SqsSource::new(sqs.settings.clone(), queue)
            .wait_time(Duration::from_secs(1))
            .stop_after_empty(1)
            .format(Json::<u32>::new())
    }

    #[test]
    fn typed_bodies_and_dead_letters_with_their_message_id() {
        let Some(sqs) = SqsTarget::from_env() else {
            return;
        };
        let mixed: Vec<String> = MIXED.iter().map(|s| s.to_string()).collect();
        let queue = sqs.create("typed", 1);
        sqs.send(&queue, &mixed);
        let source = typed(&sqs, &queue).dead_letters(DeadLetters::stream());
        let (mut good, letters) = run(source, |m| m.body, true).unwrap();
        good.sort();
        assert_eq!(good, [1, 2, 3]);
        check_letters(&letters, |_| json!({}));
        for letter in &letters {
            let url = letter["queue_url"].as_str().unwrap_or_default();
            assert!(url.ends_with(&format!("/{queue}")), "{letter}");
            let id = letter["message_id"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{letter}");
        }
        let mut ids: Vec<&str> = letters
            .iter()
            .filter_map(|l| l["message_id"].as_str())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), BAD.len(), "{letters:?}");
        let left = admin::message_count(&sqs.settings, &queue).unwrap();
        assert_eq!(left, (0, 0), "left in the queue (visible, in flight)");

        let queue = sqs.create("strict", 1);
        sqs.send(&queue, &mixed);
        let error = run(typed(&sqs, &queue), |m| m.body, false).unwrap_err();
        check_strict(error, &format!(r#"{queue}", message_id ""#));
    }
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use riffle_connectors::conformance::Target;
    use riffle_connectors::format::Json;
    use riffle_connectors::rabbitmq::testing::RabbitTarget;
    use riffle_connectors::rabbitmq::{RabbitSource, admin};
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_bodies_and_dead_letters_with_their_delivery_tag() {
        let Some(mq) = RabbitTarget::from_env() else {
            return;
        };
        let mixed: Vec<String> = MIXED.iter().map(|s| s.to_string()).collect();
        let queue = mq.queues(&mq.create("typed", 1)).remove(0);
        mq.publish(&queue, &mixed);
        let source = RabbitSource::new(mq.settings.clone(), [&queue])
            .tail(false)
            .format(Json::<u32>::new())
            .dead_letters(DeadLetters::stream());
        let (good, letters) = run(source, |m| m.payload, true).unwrap();
        assert_eq!(good, [1, 2, 3]);
        check_letters(
            &letters,
            |i| json!({"queue": queue, "delivery_tag": i + 1, "message_id": null}),
        );
        // Messages left unacknowledged went back to the queue when the run closed.
        let left = admin::message_count(&mq.settings, &queue).unwrap();
        assert_eq!(left, 0, "left in the queue");

        mq.publish(&queue, &mixed);
        let strict = RabbitSource::new(mq.settings.clone(), [&queue])
            .tail(false)
            .format(Json::<u32>::new());
        let error = run(strict, |m| m.payload, false).unwrap_err();
        check_strict(error, &format!(r#"queue "{queue}", delivery_tag 2"#));
    }
}
