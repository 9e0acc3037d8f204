//! The `files` workload: rows of local files read through the engine's file
//! sources, as CSV (`CsvSource`, the default) or as JSON lines (`-P format=jsonl`,
//! `JsonLinesSource`).
//!
//! `riffle bench files` first writes 500,000 rows (`--items`) of about 60 bytes,
//! `{id, key, value, note}`, into 4 files of a fresh temporary folder (`-P
//! files=`; not timed), CSV with a header line or one JSON object a line. The
//! timed flow reads the folder (one partition per file, spread over the workers),
//! deserializes every row into a struct with serde and counts them. The report
//! has `format`, `files` and `bytes` (the files' size).
//!
//! ```text
//! riffle bench files --json
//! riffle bench files -P format=jsonl --json
//! ```

use std::io::Write;
use std::time::Instant;

use super::objects::Row;
use super::{BenchArgs, BenchReport, count_and_drop, param};
use riffle::sources::{CsvSource, JsonLinesSource};
use riffle::{Dataflow, Execution};

/// Rows per run unless `--items` says otherwise.
const ITEMS: u64 = 500_000;

/// Files unless `-P files=` says otherwise.
const FILES: u64 = 4;

/// Row `i`: the `connector-objects` row with a shorter note.
fn row(i: u64) -> Row {
    Row {
        id: i,
        key: format!("key-{}", i % 1000),
        value: i as f64 * 0.5,
        note: "x".repeat(16),
    }
}

/// Writes `items` rows into `files` files of `dir` (row `i` into file `i %
/// files`) in `format`; returns the bytes written.
fn write_rows(dir: &std::path::Path, items: u64, files: u64, format: &str) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for f in 0..files {
        let path = dir.join(format!("part-{f}.{format}"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        if format == "csv" {
            // No field holds a comma, a quote or a line break: none needs quoting.
            writeln!(out, "id,key,value,note")?;
            for i in (f..items).step_by(files as usize) {
                let r = row(i);
                writeln!(out, "{},{},{},{}", r.id, r.key, r.value, r.note)?;
            }
        } else {
            for i in (f..items).step_by(files as usize) {
                serde_json::to_writer(&mut out, &row(i))?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        drop(out);
        bytes += std::fs::metadata(&path)?.len();
    }
    Ok(bytes)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(ITEMS);
    let files: u64 = match param(args, "files") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow::anyhow!("-P files={v}: not a positive number"))?,
        None => FILES,
    };
    let format = match param(args, "format").unwrap_or("csv") {
        f @ ("csv" | "jsonl") => f,
        f => anyhow::bail!("-P format={f}: the formats are csv and jsonl"),
    };
    let dir = tempfile::tempdir()?;
    let bytes = write_rows(dir.path(), items, files, format)?;
    super::reset_peak_rss();
    let flow = Dataflow::new("bench-files");
    let rows = if format == "csv" {
        flow.input("rows", CsvSource::<Row>::new(dir.path()))?
    } else {
        flow.input("rows", JsonLinesSource::<Row>::new(dir.path()))?
    };
    let seen = count_and_drop(&rows)?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&flow)?;
    let seconds = started.elapsed().as_secs_f64();
    let read = seen.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(read == items, "files read {read} rows, expected {items}");
    let mut report = BenchReport::new("files", args.workers, items, seconds);
    report.extra.insert("format".into(), format.into());
    report.extra.insert("files".into(), files.into());
    report.extra.insert("bytes".into(), bytes.into());
    Ok(vec![report])
}
