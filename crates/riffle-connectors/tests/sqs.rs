//! The SQS source and sink against moto's server, started by
//! `scripts/test.d/40-s3.sh` and announced in `RIFFLE_TEST_SQS_ENDPOINT` (and, for
//! the private servers killed or checking credentials, `RIFFLE_TEST_PYTHON`).
//! Without them these tests skip with a note, or fail under `CI=true`. The
//! conformance kit's checks first, then what is SQS's own.
//!
//! moto is not SQS: queues live in its memory, and it slows down as a queue grows,
//! so the counts stay small.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle::sources::TestingSource;
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::sqs::testing::{MotoServer, SqsTarget, VISIBILITY};
use riffle_connectors::sqs::{SqsRecord, SqsSettings, SqsSink, SqsSource, admin};

#[test]
fn conformance_read_after_write() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    conformance::read_after_write(&sqs);
}

#[test]
fn conformance_resume_without_loss() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    conformance::resume_without_loss(&sqs);
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    conformance::rescale(&sqs);
}

#[test]
fn conformance_backlog() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    conformance::backlog(&sqs);
}

#[test]
fn conformance_missing_queue_and_unreachable_endpoint() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    conformance::missing_stream(&sqs);
    conformance::unreachable_server(&sqs);
    // The sink names a missing queue too.
    let flow = Dataflow::new("missing-sink");
    flow.input("in", TestingSource::new(vec![SqsRecord::new("x")]))
        .unwrap()
        .output("out", SqsSink::new(sqs.settings.clone(), "no-such-queue"))
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(
        err.contains("\"out\"") && err.contains("queue \"no-such-queue\" does not exist"),
        "{err}"
    );
    assert!(err.contains(&sqs.server()), "{err}");
}

/// Messages `read_once` saw delivered a second time (or more).
static REDELIVERED: AtomicUsize = AtomicUsize::new(0);

/// Reads `queue` once with `source`, failing at the `fail_at`-th message when
/// asked ([`conformance::read_once`]); returns the bodies it emitted and whether
/// it ended well.
fn read_once(source: SqsSource, fail_at: Option<usize>) -> (Vec<String>, bool) {
    conformance::read_once(source, fail_at, |m| {
        if m.receive_count > 1 {
            REDELIVERED.fetch_add(1, Ordering::SeqCst);
        }
        Some(m.body)
    })
}

#[test]
fn messages_are_deleted_only_after_commit_and_come_back_after_a_failed_run() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    let queue = sqs.create("redeliver", 1);
    let values: Vec<String> = (0..300).map(|i| format!("m{i:04}")).collect();
    sqs.send(&queue, &values);
    // Without a store, a run that fails midway deleted only what its sink had
    // written: the rest stays in the queue, hidden until its visibility ends.
    let (first, ok) = read_once(sqs.bounded_source(&queue), Some(200));
    assert!(!ok, "the first run should have stopped");
    let (visible, hidden) = admin::message_count(&sqs.settings, &queue).unwrap();
    assert!(visible + hidden > 0, "nothing left after a failed run");
    assert!(
        ((visible + hidden) as usize) < values.len(),
        "nothing was deleted before the failure"
    );
    // The next run (its readers wait longer than the visibility timeout) gets
    // them back, and the rest: nothing lost.
    let (second, ok) = read_once(sqs.bounded_source(&queue), None);
    assert!(ok, "the second run failed");
    assert!(
        REDELIVERED.load(Ordering::SeqCst) > 0,
        "nothing came back after the failed run"
    );
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, values, "messages lost between the runs");
    assert_eq!(
        admin::message_count(&sqs.settings, &queue).unwrap(),
        (0, 0),
        "left undeleted"
    );
}

#[test]
fn a_slow_flow_keeps_its_messages_hidden_by_extending_their_visibility() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    let queue = sqs.create("extend", 1);
    let values: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    sqs.send(&queue, &values);
    // Two readers on one queue; the epoch (and so the commit) comes after longer
    // than the visibility timeout, so without extensions SQS would hand messages
    // to the other reader while the first still holds them.
    let sink = TestingSink::new();
    let flow = Dataflow::new("slow");
    flow.input("in", sqs.bounded_source(&queue).readers(2))
        .unwrap()
        .map("slow", |m| {
            std::thread::sleep(VISIBILITY / 20);
            (m.body, m.receive_count)
        })
        .unwrap()
        .output("out", sink.clone())
        .unwrap();
    Execution::new()
        .workers(1)
        .epoch_interval(Duration::from_secs(5))
        .run(&flow)
        .unwrap();
    let got = sink.take();
    let mut bodies: Vec<String> = got.iter().map(|(b, _)| b.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, values, "duplicates or losses");
    assert!(got.iter().all(|(_, n)| *n == 1), "redelivered: {got:?}");
}

#[test]
fn the_sink_batches_large_messages_within_256_kib_and_names_what_is_too_big() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    let queue = sqs.create("big", 1);
    // 12 messages of 100 KiB: two fit a batch, so at least six calls.
    let records: Vec<SqsRecord> = (0..12)
        .map(|i| SqsRecord::new(format!("{i:02}{}", "x".repeat(100 * 1024))))
        .collect();
    let flow = Dataflow::new("big");
    flow.input("in", TestingSource::new(records))
        .unwrap()
        .output("out", SqsSink::new(sqs.settings.clone(), queue.as_str()))
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let mut got: Vec<String> = sqs
        .drain(&queue)
        .iter()
        .map(|b| b[..2].to_string())
        .collect();
    got.sort();
    let want: Vec<String> = (0..12).map(|i| format!("{i:02}")).collect();
    assert_eq!(got, want);
    // One over the limit stops the run, naming it and the queue.
    let flow = Dataflow::new("too-big");
    flow.input(
        "in",
        TestingSource::new(vec![SqsRecord::new("y".repeat(257 * 1024))]),
    )
    .unwrap()
    .output("out", SqsSink::new(sqs.settings.clone(), queue.as_str()))
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(
        err.contains("record 1") && err.contains(&queue) && err.contains("262144"),
        "{err}"
    );
}

#[test]
fn a_fifo_sink_keeps_group_order_and_a_replayed_epoch_is_de_duplicated() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    let queue = format!("{}.fifo", conformance::unique("fifo"));
    admin::create_queue(&sqs.settings, &queue, None).unwrap();
    let records = || -> Vec<SqsRecord> {
        (0..60)
            .map(|i| SqsRecord::new(format!("{}:{i:03}", i % 3)).group(format!("g{}", i % 3)))
            .collect()
    };
    let write = || {
        let flow = Dataflow::new("fifo");
        flow.input("in", TestingSource::new(records()))
            .unwrap()
            .output(
                "out",
                SqsSink::new(sqs.settings.clone(), queue.as_str())
                    .writers(2)
                    .id("fifo-test"),
            )
            .unwrap();
        Execution::new().workers(2).run(&flow).unwrap();
    };
    write();
    // The same records again from the start, as a replay from an empty store
    // would send them: the same de-duplication ids, dropped by SQS.
    write();
    let got = sqs.drain(&queue);
    assert_eq!(got.len(), 60, "a replay was not de-duplicated: {got:?}");
    for g in 0..3 {
        let of_group: Vec<&String> = got
            .iter()
            .filter(|b| b.starts_with(&format!("{g}:")))
            .collect();
        assert!(
            of_group.windows(2).all(|w| w[0] < w[1]),
            "group {g} out of order: {of_group:?}"
        );
    }
    admin::delete_queue(&sqs.settings, &queue).unwrap();
    assert!(
        admin::message_count(&sqs.settings, &queue)
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );
}

#[test]
fn bad_credentials_are_an_error_naming_the_queue_and_the_variables() {
    // moto checks keys only when told to (INITIAL_NO_AUTH_ACTION_COUNT=0); it then
    // knows none but those made through its IAM, so the test keys are refused.
    let Some(server) = MotoServer::start(&["guarded"], &[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
    else {
        return;
    };
    let flow = Dataflow::new("auth");
    flow.input(
        "in",
        SqsSource::new(server.settings(), "guarded").stop_after_empty(1),
    )
    .unwrap()
    .output("out", TestingSink::new())
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"in\"")
            && text.contains("credentials were refused")
            && text.contains("guarded")
            && text.contains("AWS_ACCESS_KEY_ID")
            && text.contains(&server.settings().server()),
        "{text}"
    );
    let cause = std::error::Error::source(&err).map(|c| c.to_string());
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("InvalidClientTokenId")
                || c.contains("UnrecognizedClient")
                || c.contains("AccessDenied")),
        "{cause:?}"
    );
}

#[test]
fn a_copy_rides_out_the_endpoint_killed_and_restarted_mid_run() {
    let Some(mut server) = MotoServer::start(&["restart-in", "restart-out"], &[]) else {
        return;
    };
    let sqs = SqsTarget::new(server.settings());
    let before: Vec<String> = (0..200).map(|i| format!("a{i:04}")).collect();
    let after: Vec<String> = (0..200).map(|i| format!("b{i:04}")).collect();
    sqs.send("restart-in", &before);
    let killed = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let flow = Dataflow::new("restart");
            flow.input(
                "in",
                SqsSource::new(sqs.settings.clone(), "restart-in")
                    .readers(2)
                    .wait_time(Duration::from_secs(1))
                    .stop_after_empty(6),
            )
            .unwrap()
            .map("upper", |m| {
                // Slow enough that the kill lands mid-run.
                std::thread::sleep(Duration::from_millis(5));
                SqsRecord::new(m.body.to_uppercase())
            })
            .unwrap()
            .output("out", SqsSink::new(sqs.settings.clone(), "restart-out"))
            .unwrap();
            Execution::new()
                .workers(2)
                .epoch_interval(Duration::from_millis(50))
                .run(&flow)
        });
        let started = Instant::now();
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(60) {
            let (_, hidden) = admin::message_count(&sqs.settings, "restart-in").unwrap_or((0, 0));
            if hidden > 0 {
                server.kill();
                killed.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(2));
                // moto comes back with its queues, empty: what it held is lost
                // (SQS keeps it). What is sent now must come through.
                server.run();
                sqs.send("restart-in", &after);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().unwrap()
    });
    assert!(
        killed.load(Ordering::SeqCst),
        "the copy finished before the kill"
    );
    outcome.unwrap_or_else(|e| panic!("the run should ride out the restart: {e:?}"));
    let mut got = sqs.drain("restart-out");
    got.sort();
    got.dedup();
    // What was on its way out when the endpoint died is sent again once it is
    // back, so some of the first batch may arrive too; all of the second must.
    let want: Vec<String> = after.iter().map(|v| v.to_uppercase()).collect();
    let lost: Vec<&String> = want.iter().filter(|v| !got.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "messages sent after the restart were lost: {lost:?}"
    );
    let known = |v: &String| before.iter().chain(&after).any(|b| b.to_uppercase() == *v);
    let strange: Vec<&String> = got.iter().filter(|v| !known(v)).collect();
    assert!(
        strange.is_empty(),
        "messages nobody sent came out: {strange:?}"
    );
}

#[test]
fn a_consumer_loop_outside_a_dataflow_copies_and_deletes() {
    let Some(sqs) = SqsTarget::from_env() else {
        return;
    };
    let input = sqs.create("consume-in", 1);
    let output = sqs.create("consume-out", 1);
    let values: Vec<String> = (0..200).map(|i| format!("q{i:04}")).collect();
    sqs.send(&input, &values);
    let stop = AtomicBool::new(false);
    let done = riffle::consume::consume(
        "copy",
        sqs.bounded_source(&input),
        sqs.sink(&output, "copy"),
        |m: riffle_connectors::sqs::SqsMessage| Some(SqsRecord::new(m.body.to_uppercase())),
        &stop,
    )
    .unwrap();
    assert_eq!((done.read, done.written), (200, 200));
    let mut got = sqs.drain(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, want);
    assert_eq!(admin::message_count(&sqs.settings, &input).unwrap(), (0, 0));
}

#[test]
fn settings_name_what_is_missing() {
    let settings = SqsSettings::default().endpoint("not a url");
    let err = admin::create_queue(&settings.clone(), "q", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("region") || err.contains("not a URL"), "{err}");
}
