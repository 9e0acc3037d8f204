//! The `connector-sqs` workload: a generator into an SQS queue, then that queue
//! out again, on a real endpoint (moto's server in this repository's runs).
//!
//! `riffle bench connector-sqs -P endpoint=http://HOST:PORT` first sends 5,000
//! messages of 100 bytes (`--items`, `-P size=`) into a fresh queue through
//! [`SqsSink`] with one writer per worker (phase `into`), then reads them all back
//! through [`SqsSource`] with one reader per worker, deleting as it goes (phase
//! `out`). Each phase is one report; the time runs from the start of the flow until
//! every message is sent (`into`) or received (`out`; the deletes of the last
//! commit and the empty polls that end the run are not counted). The queue is
//! deleted after the run. The region is `-P region=` (or `AWS_REGION`, else
//! `us-east-1`), keys from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
//! `bench/sqs.sh` runs it beside boto3 doing the same calls with the same batch
//! sizes. moto is not SQS: the figures measure the client and moto, not AWS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::sqs::{SqsMessage, SqsRecord, SqsSettings, SqsSink, SqsSource, admin};

use super::{BenchArgs, BenchReport, param};

/// Messages per run unless `--items` says otherwise.
const ITEMS: u64 = 5_000;

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let mut settings = SqsSettings::from_env();
    settings.endpoint = param(args, "endpoint").map(str::to_string);
    settings.region = Some(
        param(args, "region")
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string()),
    );
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let queue = format!("riffle-bench-{nanos}");
    admin::create_queue(&settings, &queue, None)?;
    let body = "x".repeat(size);
    let workers = args.workers.max(1);

    let into = Dataflow::new("bench-sqs-into");
    into.input(
        "gen",
        PartitionedGenerator::new(items, workers as u64, move |_| SqsRecord::new(body.clone())),
    )?
    .output(
        "out",
        SqsSink::new(settings.clone(), queue.as_str()).writers(workers),
    )?;
    let started = Instant::now();
    Execution::new().workers(workers).run(&into)?;
    let seconds = started.elapsed().as_secs_f64();
    let (visible, hidden) = admin::message_count(&settings, &queue)?;
    let mut reports = vec![report(args, "into", items, seconds, size)];
    reports[0]
        .extra
        .insert("messages_in_queue".into(), (visible + hidden).into());

    super::reset_peak_rss();
    let read = Dataflow::new("bench-sqs-out");
    let seen = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(None::<Instant>));
    let (counter, at) = (seen.clone(), last.clone());
    read.input(
        "in",
        SqsSource::new(settings.clone(), queue.as_str())
            .readers(workers)
            .wait_time(Duration::from_secs(1))
            .stop_after_empty(2),
    )?
    .inspect("count", move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        *at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    })?
    .filter("none", |_| false)?
    .output("out", riffle::sinks::TestingSink::<SqsMessage>::new())?;
    let started = Instant::now();
    Execution::new()
        .workers(workers)
        .epoch_interval(Duration::from_millis(100))
        .run(&read)?;
    let received = seen.load(Ordering::Relaxed);
    let until = last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or(started);
    let seconds = until.duration_since(started).as_secs_f64();
    let mut out = report(args, "out", received, seconds, size);
    out.extra.insert("messages_read".into(), received.into());
    reports.push(out);
    let _ = admin::delete_queue(&settings, &queue);
    Ok(reports)
}

fn report(args: &BenchArgs, phase: &str, items: u64, seconds: f64, size: usize) -> BenchReport {
    let mut report = BenchReport::new("connector-sqs", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("bytes_per_message".into(), size.into());
    report.extra.insert("batch".into(), 10.into());
    report
        .extra
        .insert("delivery".into(), "at-least-once".into());
    report
}
