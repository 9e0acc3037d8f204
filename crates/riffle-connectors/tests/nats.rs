//! The NATS JetStream source and sink against a real `nats-server -js`, started by
//! `scripts/test.d/51-nats.sh` and announced in `RIFFLE_TEST_NATS_URL`. Without it
//! these tests skip with a note, or fail under `CI=true`. The conformance kit's
//! checks first, then what is NATS's own: acknowledgement on commit, resuming
//! without waiting out `ack_wait`, de-duplication by message id, managed streams
//! and consumers, credentials.

#![cfg(feature = "nats")]

use std::time::{Duration, Instant};

use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::nats::admin::{self, StreamSpec};
use riffle_connectors::nats::testing::{NatsServer, NatsTarget, unique};
use riffle_connectors::nats::{NatsMessage, NatsRecord, NatsSettings, NatsSink, NatsSource};

#[test]
fn conformance_read_after_write() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    conformance::read_after_write(&nats);
}

#[test]
fn conformance_resume_without_loss_or_duplicates() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    conformance::resume_without_loss(&nats);
}

#[test]
fn conformance_rescale_from_2_to_3_workers() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    conformance::rescale(&nats);
}

#[test]
fn conformance_backlog() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    conformance::backlog(&nats);
}

#[test]
fn conformance_missing_stream_and_unreachable_server() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    conformance::missing_stream(&nats);
    conformance::unreachable_server(&nats);
}

/// Polls `part` until it has `n` messages (or `limit` passes).
fn take(
    part: &mut impl SourcePartition<Item = NatsMessage>,
    n: usize,
    limit: Duration,
) -> Vec<NatsMessage> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        match part.next_batch().unwrap() {
            Poll::Ready(items) | Poll::ReadyAt(_, items) => got.extend(items),
            Poll::Pending => std::thread::sleep(Duration::from_millis(10)),
            Poll::Exhausted => break,
        }
    }
    got
}

fn texts(messages: &[NatsMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.text().unwrap().to_string())
        .collect()
}

#[test]
fn a_restarted_partition_reads_at_once_what_a_dead_one_was_handed_and_not_what_it_committed() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let stream = nats.create("handed", 1);
    let values: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
    nats.publish(&format!("{stream}.0"), &values);
    let source = NatsSource::new(nats.settings.clone(), &stream).durable("handed");

    // A first partition reads 60 messages, commits the first 20, and dies
    // without closing (the server still counts 40 as handed out, for 30 s).
    let mut first = source.build_part("in", &stream, None).unwrap();
    let read = take(&mut first, 60, Duration::from_secs(10));
    assert_eq!(texts(&read[..60]), values[..60]);
    first.commit(&(read[19].sequence + 1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(first);

    // Without a store, the next one starts after what was acknowledged, at once.
    let started = Instant::now();
    let mut second = source.build_part("in", &stream, None).unwrap();
    let again = take(&mut second, 80, Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the restarted partition waited {:?} (ack_wait?)",
        started.elapsed()
    );
    assert_eq!(texts(&again), values[20..]);

    // From a snapshot, it starts exactly at the snapshot's position.
    let mut third = source
        .build_part("in", &stream, Some(again[50].sequence))
        .unwrap();
    let from_snapshot = take(&mut third, 30, Duration::from_secs(10));
    assert_eq!(texts(&from_snapshot), values[70..]);
    third.close().unwrap();
}

#[test]
fn the_source_acknowledges_only_on_commit() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let stream = nats.create("acks", 1);
    let values: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    nats.publish(&format!("{stream}.0"), &values);
    let source = NatsSource::new(nats.settings.clone(), &stream).durable("acks");
    let mut part = source.build_part("in", &stream, None).unwrap();
    let read = take(&mut part, 50, Duration::from_secs(10));
    assert_eq!(read.len(), 50);
    let floor = || {
        let info = riffle_connectors::runtime::handle().block_on(async {
            let client = async_nats::connect(nats.settings.servers.as_str())
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let stream = js.get_stream(&stream).await.unwrap();
            stream.consumer_info("acks").await.unwrap()
        });
        info.ack_floor.stream_sequence
    };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(floor(), 0, "acknowledged before any commit");
    part.commit(&read[30].sequence).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while floor() != read[29].sequence && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        floor(),
        read[29].sequence,
        "the commit acknowledged up to its position"
    );
    part.close().unwrap();
}

#[test]
fn the_sink_publishes_a_replayed_id_once_and_waits_for_acknowledgements() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let stream = nats.create("dedup", 1);
    let sink = NatsSink::new(nats.settings.clone(), format!("{stream}.out")).publishers(1);
    let records: Vec<NatsRecord> = (0..500)
        .map(|i| NatsRecord::new(format!("r{i}")).id(format!("id-{i}")))
        .collect();
    let mut part = sink
        .build_part("out", &format!("{stream}.out#0"), None)
        .unwrap();
    part.write_batch(records[..300].to_vec()).unwrap();
    // The snapshot returns once all 300 are stored.
    assert_eq!(part.snapshot().unwrap(), Some(300));
    assert_eq!(nats.read(&stream).len(), 300);
    // A replay of the last 100 and the rest, from a rebuilt partition.
    drop(part);
    let mut part = sink
        .build_part("out", &format!("{stream}.out#0"), Some(300))
        .unwrap();
    part.write_batch(records[200..].to_vec()).unwrap();
    part.flush().unwrap();
    // Records without ids are never dropped.
    part.write_batch(vec![NatsRecord::new("plain"), NatsRecord::new("plain")])
        .unwrap();
    part.close().unwrap();
    let mut got = nats.read(&stream);
    got.sort();
    let mut want: Vec<String> = (0..500).map(|i| format!("r{i}")).collect();
    want.extend(["plain".to_string(), "plain".to_string()]);
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_sink_subject_no_stream_captures_is_an_error_naming_it() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let subject = unique("nowhere");
    let sink = NatsSink::new(nats.settings.clone(), &subject);
    let Err(err) = sink.build_part("out", &format!("{subject}#0"), None) else {
        panic!("a sink without a stream should fail");
    };
    let text = err.to_string();
    assert!(text.contains("\"out\""), "{text}");
    assert!(text.contains(&subject), "{text}");
    assert!(text.contains(&nats.settings.servers), "{text}");
}

#[test]
fn managed_streams_and_consumers_are_created_and_deleted_once() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let name = unique("managed");
    let spec =
        StreamSpec::new(&name, [format!("{name}.>")]).duplicate_window(Duration::from_secs(600));
    assert!(admin::create_stream(&nats.settings, &spec).unwrap());
    assert!(!admin::create_stream(&nats.settings, &spec).unwrap());
    assert!(admin::create_consumer(&nats.settings, &name, "reader", "").unwrap());
    assert!(!admin::create_consumer(&nats.settings, &name, "reader", "").unwrap());
    let window = riffle_connectors::runtime::handle().block_on(async {
        let client = async_nats::connect(nats.settings.servers.as_str())
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(&name).await.unwrap();
        stream.info().await.unwrap().config.duplicate_window
    });
    assert_eq!(window, Duration::from_secs(600));
    assert!(admin::delete_consumer(&nats.settings, &name, "reader").unwrap());
    assert!(!admin::delete_consumer(&nats.settings, &name, "reader").unwrap());
    assert!(admin::delete_stream(&nats.settings, &name).unwrap());
    assert!(!admin::delete_stream(&nats.settings, &name).unwrap());
    let err = admin::create_consumer(&nats.settings, &name, "reader", "")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&name) && err.contains(&nats.settings.servers),
        "{err}"
    );
}

#[test]
fn wrong_credentials_are_an_error_naming_the_server_and_right_ones_read() {
    let Some(server) = NatsServer::start(&["--user", "riffle", "--pass", "right-one"]) else {
        return;
    };
    let good =
        NatsTarget::new(NatsSettings::new(server.url()).user_password("riffle", "right-one"));
    let stream = good.create("auth", 1);
    good.write(&stream, &["hello".to_string()]);

    let wrong = NatsSettings::new(server.url()).user_password("riffle", "wrong");
    let source = NatsSource::new(wrong, &stream).tail(false);
    let Err(err) = source.list_parts("in") else {
        panic!("wrong credentials should fail");
    };
    let text = err.to_string();
    assert!(text.contains("\"in\""), "{text}");
    assert!(text.contains(&server.url()), "{text}");
    let cause = std::error::Error::source(&err)
        .map(|c| c.to_string())
        .unwrap_or_default();
    assert!(
        cause.to_lowercase().contains("authorization"),
        "cause: {cause:?} of {text}"
    );

    let source = NatsSource::new(good.settings.clone(), &stream)
        .filters([format!("{stream}.0")])
        .tail(false);
    let parts = source.list_parts("in").unwrap();
    let mut part = source.build_part("in", &parts[0], None).unwrap();
    assert_eq!(
        texts(&take(&mut part, 1, Duration::from_secs(10))),
        ["hello"]
    );
}

/// A Flow's consumer loop (`riffle::consume`, no Dataflow, no store) copies a
/// stream to another through the durable consumer, and acknowledges only what
/// the sink has published: once it ends, the consumer's acknowledgement floor
/// is the last message and nothing waits for an acknowledgement.
#[test]
fn a_consumer_loop_outside_a_dataflow_copies_and_acknowledges() {
    let Some(nats) = NatsTarget::from_env() else {
        return;
    };
    let input = nats.create("consume-in", 2);
    let output = nats.create("consume-out", 1);
    let values: Vec<String> = (0..2000).map(|i| format!("q{i:04}")).collect();
    nats.write(&input, &values);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let done = riffle::consume::consume(
        "copy",
        NatsSource::new(nats.settings.clone(), &input)
            .durable("consume")
            .tail(false),
        NatsSink::new(nats.settings.clone(), format!("{output}.0")),
        |m: NatsMessage| {
            m.text()
                .map(|t| NatsRecord::new(t.to_uppercase()).id(format!("copy:{}", m.sequence)))
        },
        &stop,
    )
    .unwrap();
    assert_eq!((done.read, done.written), (2000, 2000));
    let mut got = nats.read(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, want);
    let info = riffle_connectors::runtime::handle().block_on(async {
        let client = async_nats::connect(nats.settings.servers.as_str())
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(&input).await.unwrap();
        stream.consumer_info("consume").await.unwrap()
    });
    assert_eq!(info.ack_floor.stream_sequence, 2000, "{info:?}");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
}
