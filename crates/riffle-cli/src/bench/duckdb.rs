//! The `connector-duckdb` workload: a generator into a DuckDB table, then the table
//! out again, in a database file of its own (built with the `duckdb` feature only).
//!
//! `riffle bench connector-duckdb` writes 1,000,000 rows `(id BIGINT, payload
//! VARCHAR of 100 bytes)` (`--items`, `-P size=`) into a fresh table through
//! [`DuckdbSink::append`] under a recovery store (phase `into`: staged at each
//! snapshot, moved on each commit, exactly-once; `-P snapshot=1s` is the snapshot
//! interval), the same rows into a second table without a store (phase
//! `into-plain`: appended at each epoch, at-least-once), then reads the second
//! table back through [`DuckdbSource::query`] (phase `out`, counted). Each phase
//! is one report; the time runs from the start of the flow until every row is
//! committed or read. The file is made in a temporary folder (`-P db=FILE` for
//! another disk) and removed after the run. `bench/duckdb.sh` runs it beside the
//! `duckdb` Python package inserting the same rows (`executemany`, and DuckDB's
//! own `INSERT ... SELECT` from `range`, as the engine's limit).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::duckdb::{DuckdbSettings, DuckdbSink, DuckdbSource, admin};

use super::{BenchArgs, BenchReport, param};

/// Rows per run unless `--items` says otherwise.
const ITEMS: u64 = 1_000_000;

/// One row of the bench's tables.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Row {
    id: i64,
    payload: String,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let snapshot = riffle::duration::parse(param(args, "snapshot").unwrap_or("1s"))
        .map_err(|e| anyhow::anyhow!("-P snapshot: {e}"))?;
    let folder = tempfile::tempdir()?;
    let path = match param(args, "db") {
        Some(p) => std::path::PathBuf::from(p),
        None => folder.path().join("bench.duckdb"),
    };
    let settings = DuckdbSettings::new(&path);
    let payload = "x".repeat(size);
    let write =
        |phase: &str, table: &str, store: Option<&std::path::Path>| -> anyhow::Result<f64> {
            let flow = Dataflow::new(format!("bench-duckdb-{phase}"));
            let payload = payload.clone();
            flow.input(
                "gen",
                PartitionedGenerator::new(items, 4, move |i| Row {
                    id: i as i64,
                    payload: payload.clone(),
                }),
            )?
            .output("out", DuckdbSink::append(settings.clone(), table))?;
            let mut execution = Execution::new().workers(args.workers);
            if let Some(store) = store {
                execution = execution.recovery(Recovery::new(store).snapshot_interval(snapshot));
            }
            let started = Instant::now();
            execution.run(&flow)?;
            Ok(started.elapsed().as_secs_f64())
        };
    let count = |table: &str| admin::count_rows(&settings, table);
    let mut reports = Vec::new();

    let store = folder.path().join("store");
    RecoveryStore::init(&store, 1)?;
    let seconds = write("into", "staged", Some(&store))?;
    let mut into = report(
        args,
        "into",
        items,
        seconds,
        size,
        "exactly-once (staged, moved on commit)",
    );
    into.extra
        .insert("rows_in_table".into(), count("staged")?.into());
    into.extra
        .insert("snapshot_ms".into(), (snapshot.as_millis() as u64).into());
    reports.push(into);

    super::reset_peak_rss();
    let seconds = write("into-plain", "plain", None)?;
    let mut plain = report(
        args,
        "into-plain",
        items,
        seconds,
        size,
        "at-least-once (no store)",
    );
    let written = count("plain")?;
    plain.extra.insert("rows_in_table".into(), written.into());
    reports.push(plain);

    super::reset_peak_rss();
    let read = Dataflow::new("bench-duckdb-out");
    let seen = super::count_and_drop(&read.input(
        "in",
        DuckdbSource::query(settings.clone(), "SELECT * FROM plain").batch_size(10_000),
    )?)?;
    let started = Instant::now();
    Execution::new()
        .workers(args.workers)
        .epoch_interval(Duration::from_millis(100))
        .run(&read)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = report(args, "out", written, seconds, size, "counted positions");
    out.extra
        .insert("rows_read".into(), seen.load(Ordering::Relaxed).into());
    reports.push(out);
    let _ = admin::drop_table(&settings, "staged");
    let _ = admin::drop_table(&settings, "plain");
    Ok(reports)
}

fn report(
    args: &BenchArgs,
    phase: &str,
    items: u64,
    seconds: f64,
    size: usize,
    delivery: &str,
) -> BenchReport {
    let mut report = BenchReport::new("connector-duckdb", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("bytes_per_row".into(), size.into());
    report.extra.insert("delivery".into(), delivery.into());
    report
}
