//! The `connector-delta` workload: generated rows appended to a Delta Lake table,
//! then the table's Parquet files read back, on local disk (or `-P table=URL`).
//!
//! `riffle bench connector-delta` first writes 1,000,000 rows (`--items`) of
//! `{id: long, key: string, value: double}` into a fresh Delta table through
//! [`DeltaSink`] from 2 partitions, under a recovery store with a snapshot every
//! second (so: a Delta commit per partition and second, exactly-once; phase
//! `into`), then reads the table's data files back through [`ParquetSource`]
//! (phase `out`). Each phase is one report; the time runs from the start of the
//! flow to its end, the last commit included. `bench/delta.sh` runs it beside the
//! Python `deltalake` package (delta-rs) writing the same rows with
//! `write_deltalake` and pyarrow reading them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::objects::ObjectStoreSettings;
use riffle_connectors::tables::{DeltaSink, ParquetSource, delta};
use serde::{Deserialize, Serialize};

use super::{BenchArgs, BenchReport, param};

/// Rows per run unless `--items` says otherwise.
const ITEMS: u64 = 1_000_000;

/// A row of the benchmark's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    id: i64,
    key: String,
    value: f64,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(ITEMS);
    let dir = tempfile::tempdir()?;
    let url = match param(args, "table") {
        Some(u) => u.to_string(),
        None => format!("file://{}/table", dir.path().display()),
    };
    let settings = ObjectStoreSettings::new(url.clone());
    let store = dir.path().join("store");
    RecoveryStore::init(&store, 2)?;

    let into = Dataflow::new("bench-delta-into");
    into.input(
        "gen",
        PartitionedGenerator::new(items, 4, |i| Row {
            id: i as i64,
            key: format!("key-{}", i % 1000),
            value: i as f64 * 0.5,
        }),
    )?
    .output("out", DeltaSink::<Row>::new(settings.clone()).parts(2))?;
    let started = Instant::now();
    Execution::new()
        .workers(args.workers)
        .recovery(Recovery::new(&store).snapshot_interval(Duration::from_secs(1)))
        .run(&into)?;
    let seconds = started.elapsed().as_secs_f64();
    let files = delta::table_files(&settings)?;
    let mut reports = vec![report(args, "into", items, seconds, &url)];
    reports[0]
        .extra
        .insert("data_files".into(), files.len().into());

    super::reset_peak_rss();
    let read = Dataflow::new("bench-delta-out");
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    read.input(
        "in",
        ParquetSource::<Row>::new(settings.clone()).tail(false),
    )?
    .inspect("count", move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    })?
    .filter("none", |_| false)?
    .map("id", |r| r.value.id)?
    .output("out", riffle::sinks::TestingSink::<i64>::new())?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&read)?;
    let seconds = started.elapsed().as_secs_f64();
    let read_rows = seen.load(Ordering::Relaxed);
    let mut out = report(args, "out", read_rows, seconds, &url);
    out.extra.insert("rows_read".into(), read_rows.into());
    reports.push(out);
    Ok(reports)
}

fn report(args: &BenchArgs, phase: &str, items: u64, seconds: f64, url: &str) -> BenchReport {
    let mut report = BenchReport::new("connector-delta", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("table".into(), url.into());
    report.extra.insert("parts".into(), 2.into());
    report
        .extra
        .insert("delivery".into(), "exactly-once".into());
    report
}
