//! The `connector-objects` workload: JSON lines written into new objects under a
//! prefix through the object sink, then read back through the object source, on
//! a local folder (the default) or on S3 (`-P url=s3://bucket/prefix`).
//!
//! `riffle bench connector-objects` first writes 200,000 lines (`--items`) of
//! about 100 bytes, each a JSON object `{id, key, value, note}`, through
//! [`ObjectSink`] from 2 sink partitions (`-P parts=`), under a recovery store
//! with a snapshot every second: each partition stages an object per snapshot and
//! the commit moves it into place, so every line lands exactly once (phase
//! `into`). It then reads every object of that prefix back through
//! [`ObjectSource`] with the [`Json`] format, one partition per object, spread
//! over the workers (phase `out`). Each phase is one report; its time runs from
//! the start of the flow to its end, the last commit included.
//!
//! Each run writes under a fresh folder of its own, `riffle-bench-{nanos}`
//! below the URL, so no run reads another's objects. On S3 the bucket must exist;
//! the endpoint, region and keys come from the store's environment variables
//! (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`), or `-P endpoint=http://HOST:PORT` for the first
//! (plain HTTP is then allowed) and `-P region=` for the second. Objects written
//! to S3 are left there; a local folder is a temporary one, removed after the run.
//! `bench/objects.sh` runs it beside boto3 putting and getting objects of the
//! same lines on the same server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::format::Json;
use riffle_connectors::objects::{ObjectSink, ObjectSource, ObjectStoreSettings};
use serde::{Deserialize, Serialize};

use super::{BenchArgs, BenchReport, param};

/// Lines per run unless `--items` says otherwise.
const ITEMS: u64 = 200_000;

/// Sink partitions unless `-P parts=` says otherwise.
const PARTS: usize = 2;

/// One line of the benchmark's objects (and one row of the `files` workload's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Row {
    pub id: u64,
    pub key: String,
    pub value: f64,
    pub note: String,
}

/// The line numbered `i`, as the sink writes it (compact JSON, about 100 bytes):
/// `bench/objects_peer.py` makes the same text.
fn line(i: u64) -> String {
    let row = Row {
        id: i,
        key: format!("key-{}", i % 1000),
        value: i as f64 * 0.5,
        note: "x".repeat(48),
    };
    serde_json::to_string(&row).expect("a row serializes")
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(ITEMS);
    let parts: usize = param(args, "parts").map_or(Ok(PARTS), str::parse)?;
    let dir = tempfile::tempdir()?;
    let base = match param(args, "url") {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("file://{}", dir.path().display()),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let url = format!("{base}/riffle-bench-{nanos}");
    let settings = settings(args, &url);
    let store = dir.path().join("store");
    RecoveryStore::init(&store, 2)?;

    let into = Dataflow::new("bench-objects-into");
    into.input("gen", PartitionedGenerator::new(items, 4, line))?
        .output("out", ObjectSink::new(settings.clone()).parts(parts))?;
    let started = Instant::now();
    Execution::new()
        .workers(args.workers)
        .recovery(Recovery::new(&store).snapshot_interval(Duration::from_secs(1)))
        .run(&into)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes: u64 = (0..items).map(|i| line(i).len() as u64 + 1).sum();
    let mut reports = vec![report(args, "into", items, seconds, &url, parts)];
    reports[0].extra.insert("bytes".into(), bytes.into());

    super::reset_peak_rss();
    let read = Dataflow::new("bench-objects-out");
    let seen = Arc::new(AtomicU64::new(0));
    let objects = Arc::new(AtomicU64::new(0));
    let (counter, firsts) = (seen.clone(), objects.clone());
    read.input(
        "in",
        ObjectSource::new(settings)
            .format(Json::<Row>::new())
            .tail(false),
    )?
    .inspect("count", move |l| {
        counter.fetch_add(1, Ordering::Relaxed);
        // Every object has exactly one first line.
        if l.line == 1 {
            firsts.fetch_add(1, Ordering::Relaxed);
        }
    })?
    .filter("none", |_| false)?
    .map("id", |l| l.value.id)?
    .output("out", riffle::sinks::TestingSink::<u64>::new())?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&read)?;
    let seconds = started.elapsed().as_secs_f64();
    let read_lines = seen.load(Ordering::Relaxed);
    let mut out = report(args, "out", read_lines, seconds, &url, parts);
    out.extra.insert("lines_read".into(), read_lines.into());
    out.extra
        .insert("objects".into(), objects.load(Ordering::Relaxed).into());
    out.extra.insert("bytes".into(), bytes.into());
    reports.push(out);
    Ok(reports)
}

/// The folder at `url`, with `-P endpoint=` and `-P region=` as store options.
fn settings(args: &BenchArgs, url: &str) -> ObjectStoreSettings {
    let mut settings = ObjectStoreSettings::new(url);
    if let Some(endpoint) = param(args, "endpoint") {
        settings = settings.option("aws_endpoint", endpoint);
        if endpoint.starts_with("http://") {
            settings = settings.option("aws_allow_http", "true");
        }
    }
    if let Some(region) = param(args, "region") {
        settings = settings.option("aws_region", region);
    }
    settings
}

fn report(
    args: &BenchArgs,
    phase: &str,
    items: u64,
    seconds: f64,
    url: &str,
    parts: usize,
) -> BenchReport {
    let mut report = BenchReport::new("connector-objects", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("url".into(), url.into());
    report.extra.insert("parts".into(), parts.into());
    report
        .extra
        .insert("delivery".into(), "exactly-once".into());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(workers: usize, items: u64) -> BenchArgs {
        BenchArgs {
            name: "connector-objects".into(),
            worker_counts: vec![workers],
            workers,
            runs: 1,
            items: Some(items),
            params: Vec::new(),
            json: true,
        }
    }

    #[test]
    fn lines_are_compact_json_of_about_a_hundred_bytes() {
        assert_eq!(
            line(3),
            format!(
                r#"{{"id":3,"key":"key-3","value":1.5,"note":"{}"}}"#,
                "x".repeat(48)
            )
        );
        assert!((95..=110).contains(&line(123_456).len()));
    }

    #[test]
    fn a_tiny_local_run_reads_back_every_line_it_wrote() {
        for workers in [1, 2] {
            let reports = run(&args(workers, 1_000)).unwrap();
            assert_eq!(reports.len(), 2);
            let (into, out) = (&reports[0], &reports[1]);
            assert_eq!(into.phase.as_deref(), Some("into"));
            assert_eq!(out.phase.as_deref(), Some("out"));
            assert_eq!(into.items, 1_000, "workers {workers}");
            assert_eq!(out.items, 1_000, "workers {workers}");
            assert_eq!(out.extra["lines_read"], 1_000);
            let objects = out.extra["objects"].as_u64().unwrap();
            assert!(objects >= 1, "no objects read: {out:?}");
            let bytes: u64 = (0..1_000).map(|i| line(i).len() as u64 + 1).sum();
            assert_eq!(into.extra["bytes"], bytes);
            assert!(into.workload == "connector-objects" && into.workers == workers);
        }
    }
}
