//! The autoscaler against a real Kafka broker (`RIFFLE_TEST_KAFKA_BROKERS`;
//! without it the test skips with a note, or fails under `CI=true`): 200,000
//! messages wait in a 4-partition topic in front of a slow consumer that starts
//! on one replica. Replicas must rise to the most allowed while the group's lag
//! is large, the backlog must burn, and the pool must fall back to its minimum
//! after the lag is gone, once (no flapping). The replica count over time is
//! printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle_connectors::kafka::testing::{KafkaTarget, unique};
use riffle_connectors::kafka::{KafkaMessage, KafkaSource, Utf8, admin};
use riffle_flow::{Autoscale, Flow, RunOptions};

const MESSAGES: u64 = 200_000;

#[test]
fn a_backlog_raises_the_replicas_and_they_fall_back_once_it_is_gone() {
    let Some(kafka) = KafkaTarget::from_env() else {
        return;
    };
    let topic = unique("flow-autoscale");
    admin::create_topic(&kafka.settings, &topic, 4, 1).unwrap();
    let records: Vec<(Option<String>, String)> = (0..MESSAGES)
        .map(|i| (Some(i.to_string()), i.to_string()))
        .collect();
    kafka.produce(&topic, &records);

    let mut flow = Flow::new("autoscale");
    let out = TestingSink::new();
    let done = Arc::new(AtomicU64::new(0));
    let counted = done.clone();
    let source = KafkaSource::new(kafka.settings.clone(), [topic.as_str()]).format(Utf8);
    flow.consumer(
        "slow",
        source,
        out.clone(),
        move |m: KafkaMessage<String>| {
            // A slow function: 50 µs of waiting per message (a lookup, say),
            // more than one replica keeps up with; waiting, so that replicas do
            // not fight for the cores.
            std::thread::sleep(Duration::from_micros(50));
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(m.value.map(|v| v.len() as u64))
        },
    )
    .unwrap()
    .autoscale(
        Autoscale::new(1, 4)
            .burn_within(Duration::from_secs(2))
            .scale_down_after(Duration::from_secs(3))
            .every(Duration::from_millis(500)),
    );
    let running = flow
        .start(RunOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
    let slow = running.metrics().processor("slow", "consumer");
    let started = Instant::now();
    let mut timeline: Vec<(f64, u64, Option<u64>)> = Vec::new();
    let mut burned_at = None;
    loop {
        let elapsed = started.elapsed().as_secs_f64();
        timeline.push((elapsed, slow.replicas(), slow.backlog()));
        if burned_at.is_none() && done.load(Ordering::Relaxed) >= MESSAGES {
            burned_at = Some(elapsed);
        }
        if let Some(at) = burned_at
            && slow.replicas() == 1
            && elapsed > at + 1.0
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no settling in 2 minutes: {timeline:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    running.stop();
    running.wait().unwrap();

    let mut changes = Vec::new();
    for pair in timeline.windows(2) {
        if pair[0].1 != pair[1].1 {
            changes.push((pair[1].0, pair[0].1, pair[1].1, pair[1].2));
        }
    }
    eprintln!("replica changes (seconds, from, to, backlog): {changes:?}");
    eprintln!(
        "backlog burned at {:.1} s; timeline (seconds, replicas, backlog) every 100 ms: {:?}",
        burned_at.unwrap(),
        timeline
            .iter()
            .step_by(5)
            .map(|(t, r, b)| (format!("{t:.1}"), *r, *b))
            .collect::<Vec<_>>()
    );
    let most = timeline.iter().map(|(_, r, _)| *r).max().unwrap();
    assert_eq!(
        most, 4,
        "the replicas never reached the most allowed: {changes:?}"
    );
    let downs: Vec<_> = changes
        .iter()
        .filter(|(_, from, to, _)| to < from)
        .collect();
    assert!(!downs.is_empty(), "{changes:?}");
    // Falling happens after the burn, and in one step: no flapping.
    assert_eq!(
        downs.len(),
        1,
        "the pool shrank more than once: {changes:?}"
    );
    assert!(
        downs[0].0 >= burned_at.unwrap() - 0.5,
        "shrank before the backlog was gone: {changes:?}"
    );
    assert_eq!(out.take().len() as u64, MESSAGES);
}
