//! The `connector-rabbitmq` workload: a generator into RabbitMQ queues, then those
//! queues out again, on a real broker.
//!
//! `riffle bench connector-rabbitmq -P url=amqp://HOST:PORT/%2f` first publishes
//! 200,000 persistent messages of 100 bytes (`--items`, `-P size=`) into 4 fresh
//! durable queues (`-P queues=`) through [`RabbitSink`] with publisher confirms
//! (phase `into`), then consumes them all through [`RabbitSource`], acknowledging
//! at each commit (phase `out`), on epochs of 200 ms (`-P epoch=`). Each phase is
//! one report; the time runs from the
//! start of the flow until every message is confirmed (`into`) or consumed and
//! acknowledged (`out`). The queues are deleted after the run. `bench/rabbitmq.sh`
//! runs it beside a Python client (pika) doing the same with the same batches.

use std::time::Instant;

use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::rabbitmq::{RabbitRecord, RabbitSettings, RabbitSink, RabbitSource, admin};

use super::{BenchArgs, BenchReport, param};

/// Messages per run unless `--items` says otherwise.
const ITEMS: u64 = 200_000;

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let url = match param(args, "url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_RABBITMQ_URL").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench connector-rabbitmq needs -P url=amqp://HOST:PORT/VHOST (or RIFFLE_RABBITMQ_URL)"
            )
        })?,
    };
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let count: usize = param(args, "queues").map_or(Ok(4), str::parse)?;
    // Messages are acknowledged at each commit, and a queue is read at most a
    // prefetch (10,000) per commit: epochs of 200 ms, as a RabbitMQ flow would run.
    let epoch = riffle::duration::parse(param(args, "epoch").unwrap_or("200ms"))
        .map_err(|e| anyhow::anyhow!("-P epoch=: {e}"))?;
    let settings = RabbitSettings::new(url);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let queues: Vec<String> = (0..count.max(1))
        .map(|i| format!("riffle-bench-{nanos}.{i}"))
        .collect();
    for q in &queues {
        admin::create_queue(&settings, q)?;
    }
    let value = vec![b'x'; size];

    let into = Dataflow::new("bench-rabbitmq-into");
    into.input(
        "gen",
        PartitionedGenerator::new(items, count as u64, move |i| {
            RabbitRecord::new(value.clone()).key(i.to_le_bytes().to_vec())
        }),
    )?
    .output("out", RabbitSink::queues(settings.clone(), queues.clone()))?;
    let started = Instant::now();
    Execution::new()
        .workers(args.workers)
        .epoch_interval(epoch)
        .run(&into)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut queued = 0u64;
    for q in &queues {
        queued += u64::from(admin::message_count(&settings, q)?);
    }
    let mut reports = vec![report(args, "into", items, seconds, size, count, epoch)];
    reports[0]
        .extra
        .insert("messages_in_queues".into(), queued.into());

    super::reset_peak_rss();
    let read = Dataflow::new("bench-rabbitmq-out");
    let seen = super::count_and_drop(&read.input(
        "in",
        RabbitSource::new(settings.clone(), queues.clone()).tail(false),
    )?)?;
    let started = Instant::now();
    Execution::new()
        .workers(args.workers)
        .epoch_interval(epoch)
        .run(&read)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = report(args, "out", queued, seconds, size, count, epoch);
    out.extra.insert(
        "messages_read".into(),
        seen.load(std::sync::atomic::Ordering::Relaxed).into(),
    );
    reports.push(out);
    for q in &queues {
        let _ = admin::delete_queue(&settings, q);
    }
    Ok(reports)
}

fn report(
    args: &BenchArgs,
    phase: &str,
    items: u64,
    seconds: f64,
    size: usize,
    queues: usize,
    epoch: std::time::Duration,
) -> BenchReport {
    let mut report = BenchReport::new("connector-rabbitmq", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("bytes_per_message".into(), size.into());
    report.extra.insert("queues".into(), queues.into());
    report
        .extra
        .insert("epoch_ms".into(), (epoch.as_millis() as u64).into());
    report
        .extra
        .insert("delivery".into(), "at-least-once".into());
    report
}
