//! The Redis Streams source and sink against a real `redis-server`, started by
//! `scripts/test.d/52-redis.sh` and announced in `RIFFLE_TEST_REDIS_URL` (and, for
//! the private servers restarted or wanting a password, `RIFFLE_TEST_REDIS_SERVER`).
//! Without them these tests skip with a note, or fail under `CI=true`. The
//! conformance kit's checks first, then what is Redis's own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::redis::testing::{RedisServer, RedisTarget};
use riffle_connectors::redis::{RedisRecord, RedisSettings, RedisSink, RedisSource};

#[test]
fn conformance_read_after_write() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    conformance::read_after_write(&redis);
}

#[test]
fn conformance_resume_without_loss() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    conformance::resume_without_loss(&redis);
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    conformance::rescale(&redis);
}

#[test]
fn conformance_backlog() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    conformance::backlog(&redis);
}

#[test]
fn conformance_missing_stream_and_unreachable_server() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    conformance::missing_stream(&redis);
    conformance::unreachable_server(&redis);
}

/// Reads `source` once, failing at the `fail_at`-th entry when asked
/// ([`conformance::read_once`]); returns the values it emitted and whether the
/// run succeeded.
fn read_once(source: RedisSource, fail_at: Option<usize>) -> (Vec<String>, bool) {
    conformance::read_once(source, fail_at, |e| e.value().map(str::to_string))
}

#[test]
fn entries_stay_pending_until_written_and_a_new_run_reads_them_again() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    let stream = redis.create("pending", 1);
    // Far more than the reader buffers ahead of the worker (4 batches of 4,096),
    // so the run is well into its epochs (and commits) when it fails.
    let values: Vec<String> = (0..60_000).map(|i| format!("p{i:05}")).collect();
    redis.write(&stream, &values);
    let source = || {
        RedisSource::new(redis.settings.clone(), redis.keys(&stream))
            .group("pending-group")
            .tail(false)
    };
    // Without a recovery store, a run that fails midway acknowledged only what its
    // sink had written: the rest stays pending on the consumer.
    let (first, ok) = read_once(source(), Some(45_000));
    assert!(!ok, "the first run should have stopped");
    let key = &redis.keys(&stream)[0];
    let pending = redis.pending(key, "pending-group");
    assert!(pending > 0, "nothing pending after a failed run");
    assert!(
        (pending as usize) < values.len(),
        "nothing was acknowledged before the failure ({pending} pending)"
    );
    // The next run reads the pending entries first, then the rest: nothing lost.
    let (second, ok) = read_once(source(), None);
    assert!(ok, "the second run failed");
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, values, "entries lost between the runs");
    assert_eq!(
        redis.pending(key, "pending-group"),
        0,
        "left unacknowledged"
    );
}

#[test]
fn entries_another_consumer_abandoned_are_claimed() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    let stream = redis.create("claim", 1);
    let values: Vec<String> = (0..500).map(|i| format!("c{i:04}")).collect();
    redis.write(&stream, &values);
    let keys = redis.keys(&stream);
    // A replica "a" reads some entries and dies before acknowledging them.
    let (first, ok) = read_once(
        RedisSource::new(redis.settings.clone(), keys.clone())
            .group("claim-group")
            .consumer("a")
            .tail(false),
        Some(200),
    );
    assert!(!ok);
    assert!(redis.pending(&keys[0], "claim-group") > 0);
    std::thread::sleep(Duration::from_millis(300));
    // Replica "b" takes over what "a" held longer than its claim time, and the rest.
    let (second, ok) = read_once(
        RedisSource::new(redis.settings.clone(), keys.clone())
            .group("claim-group")
            .consumer("b")
            .claim_idle(Some(Duration::from_millis(200)))
            .tail(false),
        None,
    );
    assert!(ok);
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, values, "abandoned entries were not claimed");
    assert_eq!(redis.pending(&keys[0], "claim-group"), 0);
}

#[test]
fn the_sink_routes_by_key_and_trims() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    let stream = redis.create("route", 3);
    let keys = redis.keys(&stream);
    let flow = Dataflow::new("route");
    let records: Vec<RedisRecord> = (0..3000)
        .map(|i| {
            RedisRecord::new(format!("{i}"))
                .key(format!("k{}", i % 7))
                .field("n", "1")
        })
        .collect();
    flow.input("in", riffle::sources::TestingSource::new(records))
        .unwrap()
        .output("out", RedisSink::new(redis.settings.clone(), keys.clone()))
        .unwrap();
    // One worker: records of one key keep their order only from one writer.
    riffle::run_main(&flow).unwrap();
    let mut total = 0;
    for key in &keys {
        let entries = redis.entries(key);
        total += entries.len();
        // Every key's records went to one stream, in order.
        let mut routed: std::collections::HashMap<String, Vec<u64>> = Default::default();
        for e in &entries {
            assert_eq!(e.field("n"), Some(&b"1"[..]));
            let v: u64 = e.value().unwrap().parse().unwrap();
            routed.entry(format!("k{}", v % 7)).or_default().push(v);
        }
        for (k, vs) in routed {
            assert!(
                vs.windows(2).all(|w| w[0] < w[1]),
                "{k} out of order in {key}"
            );
            for other in keys.iter().filter(|o| *o != key) {
                assert!(
                    !redis
                        .entries(other)
                        .iter()
                        .any(|e| { e.value().unwrap().parse::<u64>().unwrap() % 7 == vs[0] % 7 }),
                    "{k} went to two streams"
                );
            }
        }
    }
    assert_eq!(total, 3000);
    // MAXLEN ~ keeps about the last entries.
    let trimmed = redis.create("trim", 1);
    let flow = Dataflow::new("trim");
    let records: Vec<RedisRecord> = (0..5000)
        .map(|i| RedisRecord::new(format!("{i}")))
        .collect();
    flow.input("in", riffle::sources::TestingSource::new(records))
        .unwrap()
        .output(
            "out",
            RedisSink::new(redis.settings.clone(), redis.keys(&trimmed)).max_len(1000),
        )
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let kept = redis.entries(&redis.keys(&trimmed)[0]);
    assert!(
        (1000..2000).contains(&kept.len()),
        "MAXLEN ~ 1000 kept {}",
        kept.len()
    );
    assert_eq!(kept.last().unwrap().value(), Some("4999"));
}

#[test]
fn a_password_comes_from_the_environment_and_a_wrong_one_is_named() {
    let Some(server) = RedisServer::with_password("riffle-secret") else {
        return;
    };
    let settings = RedisSettings::new(server.url());
    let read = || {
        let flow = Dataflow::new("auth");
        flow.input("in", RedisSource::new(settings.clone(), ["s"]).tail(false))
            .unwrap()
            .output("out", TestingSink::new())
            .unwrap();
        riffle::run_main(&flow)
    };
    // SAFETY: this test's process runs no other thread reading the environment.
    unsafe { std::env::set_var("RIFFLE_REDIS_PASSWORD", "wrong") };
    let err = read().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"in\"") && text.contains(&server.url()),
        "{text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause: {text}"
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.to_lowercase().contains("authentication"), "{cause}");
    // The right one, from a file: the stream is then simply missing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "riffle-secret\n").unwrap();
    unsafe {
        std::env::remove_var("RIFFLE_REDIS_PASSWORD");
        std::env::set_var("RIFFLE_REDIS_PASSWORD_FILE", &file);
    }
    let text = read().unwrap_err().to_string();
    assert!(text.contains("stream \"s\" does not exist"), "{text}");
}

#[test]
fn a_copy_rides_out_the_server_killed_and_restarted_mid_run() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let redis = RedisTarget::new(RedisSettings::new(server.url()));
    let input = redis.create("restart-in", 2);
    let output = redis.create("restart-out", 2);
    let values: Vec<String> = (0..40_000).map(|i| format!("v{i:06}")).collect();
    redis.write(&input, &values);
    let killed = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let flow = Dataflow::new("restart");
            flow.input("in", redis.source(&input))
                .unwrap()
                .filter_map("upper", |e| {
                    // Slow enough that the kill lands mid-run.
                    std::thread::sleep(Duration::from_micros(50));
                    e.value().map(|v| RedisRecord::new(v.to_uppercase()))
                })
                .unwrap()
                .output("out", redis.sink(&output, "restart"))
                .unwrap();
            Execution::new()
                .workers(2)
                .epoch_interval(Duration::from_millis(50))
                .run(&flow)
        });
        let started = Instant::now();
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(60) {
            if redis.read(&output).len() > 2000 {
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
    let mut got = redis.read(&output);
    got.sort();
    got.dedup();
    let mut want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    want.sort();
    assert_eq!(got, want, "entries lost through the restart");
}

#[test]
fn a_consumer_loop_outside_a_dataflow_copies_and_acknowledges() {
    let Some(redis) = RedisTarget::from_env() else {
        return;
    };
    let input = redis.create("consume-in", 2);
    let output = redis.create("consume-out", 1);
    let values: Vec<String> = (0..2000).map(|i| format!("q{i:04}")).collect();
    redis.write(&input, &values);
    let stop = AtomicBool::new(false);
    let done = riffle::consume::consume(
        "copy",
        RedisSource::new(redis.settings.clone(), redis.keys(&input))
            .group("consume-group")
            .tail(false),
        redis.sink(&output, "copy"),
        |e: riffle_connectors::redis::RedisEntry| {
            e.value().map(|v| RedisRecord::new(v.to_uppercase()))
        },
        &stop,
    )
    .unwrap();
    assert_eq!((done.read, done.written), (2000, 2000));
    let mut got = redis.read(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, want);
    for key in redis.keys(&input) {
        assert_eq!(
            redis.pending(&key, "consume-group"),
            0,
            "{key}: not acknowledged"
        );
    }
}
