//! The RabbitMQ source and sink against a real broker, started by
//! `scripts/test.d/53-rabbitmq.sh` and announced in `RIFFLE_TEST_RABBITMQ_URL`
//! (and, for the private broker killed and restarted, `RIFFLE_TEST_RABBITMQ_SERVER`).
//! Without them these tests skip with a note, or fail under `CI=true`. The
//! conformance kit's checks first, then what is RabbitMQ's own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::rabbitmq::testing::{RabbitServer, RabbitTarget};
use riffle_connectors::rabbitmq::{RabbitRecord, RabbitSettings, RabbitSink, RabbitSource, admin};

#[test]
fn conformance_read_after_write() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    conformance::read_after_write(&mq);
}

#[test]
fn conformance_resume_without_loss() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    conformance::resume_without_loss(&mq);
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    conformance::rescale(&mq);
}

#[test]
fn conformance_backlog() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    conformance::backlog(&mq);
}

#[test]
fn conformance_missing_queue_and_unreachable_broker() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    conformance::missing_stream(&mq);
    conformance::unreachable_server(&mq);
}

/// Reads `source` once, failing at the `fail_at`-th message when asked
/// ([`conformance::read_once`]); returns the values it emitted and whether the
/// run succeeded.
fn read_once(source: RabbitSource, fail_at: Option<usize>) -> (Vec<String>, bool) {
    conformance::read_once(source, fail_at, |m| m.value().map(str::to_string))
}

#[test]
fn messages_are_acknowledged_only_once_written_and_come_back_after_a_failure() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    let queue = mq.create("ack", 1);
    let values: Vec<String> = (0..3000).map(|i| format!("a{i:05}")).collect();
    mq.write(&queue, &values);
    let source = || RabbitSource::new(mq.settings.clone(), mq.queues(&queue)).tail(false);
    // The run stops at message 2500: what its sink had not written is back in the
    // queue, marked redelivered, and a second run reads it.
    let (first, ok) = read_once(source(), Some(2500));
    assert!(!ok, "the first run should have failed");
    assert!(first.len() < 2500, "{}", first.len());
    let back = admin::message_count(&mq.settings, &mq.queues(&queue)[0]).unwrap() as usize;
    assert!(
        back >= values.len() - first.len(),
        "{back} messages back for {} not written",
        values.len() - first.len()
    );
    let (second, ok) = read_once(source(), None);
    assert!(ok);
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, values, "messages lost");
    assert_eq!(
        admin::message_count(&mq.settings, &mq.queues(&queue)[0]).unwrap(),
        0,
        "messages left unacknowledged"
    );
}

#[test]
fn the_sink_routes_by_key_through_an_exchange_and_names_what_is_missing() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    let exchange = conformance::unique("ex");
    admin::create_exchange(&mq.settings, &exchange, "direct").unwrap();
    let queues =
        [mq.create("routed-a", 1), mq.create("routed-b", 1)].map(|s| mq.queues(&s)[0].clone());
    for q in &queues {
        admin::bind_queue(&mq.settings, q, &exchange, q).unwrap();
    }
    let write = |sink: RabbitSink, records: Vec<RabbitRecord>| {
        let flow = Dataflow::new("routes");
        flow.input("in", riffle::sources::TestingSource::new(records))
            .unwrap()
            .output("out", sink)
            .unwrap();
        riffle::run_main(&flow)
    };
    let records: Vec<RabbitRecord> = (0..200)
        .map(|i| {
            RabbitRecord::new(format!("k{},{i}", i % 7))
                .key(format!("k{}", i % 7))
                .message_id(format!("m{i}"))
        })
        .collect();
    write(
        RabbitSink::exchange(mq.settings.clone(), &exchange, queues.clone()),
        records,
    )
    .unwrap();
    let mut total = 0;
    let mut keys_seen = [Vec::new(), Vec::new()];
    for (i, q) in queues.iter().enumerate() {
        for m in mq.take(q) {
            total += 1;
            assert!(m.message_id.is_some());
            let key = m.value().unwrap().split(',').next().unwrap().to_string();
            keys_seen[i].push(key);
        }
    }
    assert_eq!(total, 200);
    // One key, one routing key: no key went to both queues.
    for key in &keys_seen[0] {
        assert!(!keys_seen[1].contains(key), "{key} went to both queues");
    }
    // A routing key no queue is bound to: an error naming exchange and key.
    let err = write(
        RabbitSink::exchange(mq.settings.clone(), &exchange, ["nobody"]),
        vec![RabbitRecord::new("x")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&exchange) && err.contains("\"nobody\"") && err.contains("\"out\""),
        "{err}"
    );
    // A missing queue and a missing exchange, named before anything is sent.
    let err = write(
        RabbitSink::queues(mq.settings.clone(), ["no-such-queue"]),
        vec![RabbitRecord::new("x")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("queue \"no-such-queue\" does not exist"),
        "{err}"
    );
    let err = write(
        RabbitSink::exchange(mq.settings.clone(), "no-such-exchange", ["k"]),
        vec![RabbitRecord::new("x")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("exchange \"no-such-exchange\" does not exist"),
        "{err}"
    );
    admin::delete_exchange(&mq.settings, &exchange).unwrap();
}

#[test]
fn wrong_credentials_are_named() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    // SAFETY: this test's process runs no other thread reading the environment.
    unsafe {
        std::env::set_var("RIFFLE_RABBITMQ_USERNAME", "guest");
        std::env::set_var("RIFFLE_RABBITMQ_PASSWORD", "wrong");
    }
    let flow = Dataflow::new("auth");
    flow.input(
        "in",
        RabbitSource::new(mq.settings.clone(), ["q"]).tail(false),
    )
    .unwrap()
    .output("out", TestingSink::new())
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err();
    unsafe {
        std::env::remove_var("RIFFLE_RABBITMQ_USERNAME");
        std::env::remove_var("RIFFLE_RABBITMQ_PASSWORD");
    }
    let text = err.to_string();
    assert!(
        text.contains("\"in\"")
            && text.contains(&mq.settings.server())
            && text.contains("refused the credentials"),
        "{text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause: {text}"
    );
}

#[test]
fn a_copy_rides_out_the_broker_killed_and_restarted_mid_run() {
    let Some(mut server) = RabbitServer::start() else {
        return;
    };
    // Long enough for the sink to wait out the restart (an Erlang node starts in
    // seconds).
    let settings = RabbitSettings::new(server.url()).timeout(Duration::from_secs(60));
    let mq = RabbitTarget::new(settings);
    let input = mq.create("restart-in", 2);
    let output = mq.create("restart-out", 2);
    let values: Vec<String> = (0..10_000).map(|i| format!("v{i:06}")).collect();
    mq.write(&input, &values);
    let killed = AtomicBool::new(false);
    let written = || {
        mq.queues(&output)
            .iter()
            .map(|q| admin::message_count(&mq.settings, q).unwrap_or(0))
            .sum::<u32>()
    };
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let flow = Dataflow::new("restart");
            // A prefetch well under the queues' size: the kill lands while
            // messages are still ready, delivered and acknowledged.
            let source = RabbitSource::new(mq.settings.clone(), mq.queues(&input))
                .prefetch(500)
                .tail(false);
            flow.input("in", source)
                .unwrap()
                .filter_map("upper", |m| {
                    // Slow enough that the kill lands mid-run.
                    std::thread::sleep(Duration::from_micros(100));
                    m.value().map(|v| RabbitRecord::new(v.to_uppercase()))
                })
                .unwrap()
                .output("out", mq.sink(&output, "restart"))
                .unwrap();
            Execution::new()
                .workers(2)
                .epoch_interval(Duration::from_millis(50))
                .run(&flow)
        });
        let started = Instant::now();
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(60) {
            if written() > 1000 {
                server.kill();
                killed.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(1));
                server.run();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        handle.join().unwrap()
    });
    assert!(
        killed.load(Ordering::SeqCst),
        "the copy finished before the kill"
    );
    outcome.unwrap_or_else(|e| panic!("the run should ride out the restart: {e:?}"));
    let mut got = mq.read(&output);
    got.sort();
    got.dedup();
    let mut want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    want.sort();
    assert_eq!(got, want, "messages lost through the restart");
    for q in mq.queues(&input) {
        assert_eq!(admin::message_count(&mq.settings, &q).unwrap(), 0, "{q}");
    }
}

#[test]
fn a_consumer_loop_outside_a_dataflow_copies_and_acknowledges() {
    let Some(mq) = RabbitTarget::from_env() else {
        return;
    };
    let input = mq.create("consume-in", 2);
    let output = mq.create("consume-out", 1);
    let values: Vec<String> = (0..2000).map(|i| format!("q{i:04}")).collect();
    mq.write(&input, &values);
    let stop = AtomicBool::new(false);
    let done = riffle::consume::consume(
        "copy",
        mq.source(&input),
        mq.sink(&output, "copy"),
        |m: riffle_connectors::rabbitmq::RabbitMessage| {
            m.value().map(|v| RabbitRecord::new(v.to_uppercase()))
        },
        &stop,
    )
    .unwrap();
    assert_eq!((done.read, done.written), (2000, 2000));
    let mut got = mq.read(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, want);
    for q in mq.queues(&input) {
        assert_eq!(admin::message_count(&mq.settings, &q).unwrap(), 0, "{q}");
    }
}
