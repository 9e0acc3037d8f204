//! `riffle bench NAME`: benchmark workloads as programs, with one JSON line per run.
//!
//! Every workload reports a [`BenchReport`]; `--json` prints it as one JSON object per
//! line with the stable fields `workload`, `workers`, `items`, `seconds`,
//! `items_per_s`, `peak_rss_bytes` (and `phase` for pipelines). Peak RSS is the
//! process's high-water mark, reset before each run through `/proc/self/clear_refs`.
//!
//! `--workers 1,2,4` runs the workload at each worker count in turn (`--runs` times
//! each) and then prints the scaling: each count's median items/s against the
//! first count's (on stderr with `--json`, so that stdout stays one report a line).

pub mod dataflow;
pub mod delta;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod files;
pub mod flow;
pub mod flow_autoscale;
pub mod kafka;
pub mod nats;
pub mod objects;
pub mod pipeline;
pub mod postgres;
pub mod project;
pub mod python;
pub mod rabbitmq;
pub mod redis;
pub mod sqs;
pub mod udf;
pub mod udf_reduce;
pub mod ui;
pub mod webdriver;

use std::process::ExitCode;

use serde::Serialize;

use crate::App;

/// `riffle bench NAME [--workers N[,N...]] [--runs N] [--json]`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The workload: stateless, wordcount, windowed, files, py-stateless, py-wordcount,
    /// py-windowed, py-pipeline (in Python, see bench::python), kafka, connector-nats,
    /// connector-redis, connector-rabbitmq, connector-postgres, connector-sqs,
    /// connector-delta, connector-objects, connector-duckdb (with the `duckdb` feature), flow-http,
    /// flow-consume, flow-autoscale, pipeline, udf-map, udf-reduce, ui, build-image, build-dags.
    pub name: String,
    /// Worker threads, where the workload is a dataflow; a list such as `1,2,4`
    /// runs each count in turn and prints the scaling ratio.
    #[arg(short = 'w', long = "workers", value_delimiter = ',', default_value = "1",
          value_parser = clap::value_parser!(usize))]
    pub worker_counts: Vec<usize>,
    /// The worker count of the run under way (one of `worker_counts`).
    #[arg(skip)]
    pub workers: usize,
    /// How many times to run it (each run prints its own line).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Override the number of items of the workload.
    #[arg(long)]
    pub items: Option<u64>,
    /// Workload-specific options as key=value.
    #[arg(short = 'P', long = "param", value_parser = crate::commands::run::parse_param)]
    pub params: Vec<(String, String)>,
    /// Print one JSON object per run instead of a readable line.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one run of a workload.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub workers: usize,
    pub items: u64,
    pub seconds: f64,
    pub items_per_s: f64,
    pub peak_rss_bytes: u64,
    /// `first` or `cached`, for pipelines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Anything else the workload wants to say (e.g. a checksum of its output).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BenchReport {
    /// A report for `items` processed in `seconds`, with the current peak RSS.
    pub fn new(workload: &str, workers: usize, items: u64, seconds: f64) -> Self {
        Self {
            workload: workload.to_string(),
            workers,
            items,
            seconds,
            items_per_s: if seconds > 0.0 {
                items as f64 / seconds
            } else {
                0.0
            },
            peak_rss_bytes: peak_rss_bytes(),
            phase: None,
            extra: Default::default(),
        }
    }

    fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string(self).expect("a report serializes")
            );
        } else {
            let phase = self
                .phase
                .as_deref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default();
            println!(
                "{}{phase}: {} items on {} worker(s) in {:.3} s = {:.0} items/s, peak RSS {:.1} MiB",
                self.workload,
                self.items,
                self.workers,
                self.seconds,
                self.items_per_s,
                self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
            );
        }
    }
}

/// The process's peak resident set size in bytes (`VmHWM`), or 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resets the peak RSS mark so the next run measures its own peak.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The value of workload option `-P key=value` (the last one given).
pub fn param<'a>(args: &'a BenchArgs, key: &str) -> Option<&'a str> {
    args.params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Ends `stream` in steps that count its items and keep none: the read side of a
/// connector benchmark, whose items need not be stored. Returns the count, read
/// after the run.
pub fn count_and_drop<T: riffle::Data>(
    stream: &riffle::Stream<T>,
) -> riffle::Result<std::sync::Arc<std::sync::atomic::AtomicU64>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = std::sync::Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    stream
        .inspect("count", move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })?
        .filter("none", |_| false)?
        .output("out", riffle::sinks::TestingSink::new())?;
    Ok(seen)
}

/// Runs the named workload `args.runs` times at each worker count and prints each
/// report, then the scaling ratios when there was more than one count.
pub fn bench(app: &App, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut medians: Vec<(usize, f64)> = Vec::new();
    for &workers in &args.worker_counts {
        anyhow::ensure!(workers > 0, "--workers: 0 is not a worker count");
        let args = BenchArgs {
            workers,
            ..args.clone()
        };
        let mut speeds = Vec::new();
        for _ in 0..args.runs.max(1) {
            reset_peak_rss();
            let reports = run_once(app, &args)?;
            // The first report is the workload's own (others are baselines).
            if let Some(first) = reports.first() {
                speeds.push(first.items_per_s);
            }
            for report in reports {
                report.print(args.json);
            }
        }
        medians.push((workers, median(&mut speeds)));
    }
    if medians.len() > 1 {
        for line in scaling_lines(&args.name, &medians) {
            if args.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_once(app: &App, args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    match args.name.as_str() {
        "stateless" | "wordcount" | "windowed" => dataflow::run(args),
        "files" => files::run(args),
        "py-stateless" | "py-wordcount" | "py-windowed" | "py-pipeline" => python::run(args),
        "pipeline" => pipeline::run(app, args),
        "udf-map" => udf::run(args),
        "udf-reduce" => udf_reduce::run(args),
        "kafka" => kafka::run(args),
        "flow-http" => flow::run_http(args),
        "flow-consume" => flow::run_consume(args),
        "flow-autoscale" => flow_autoscale::run(args),
        "connector-nats" => nats::run(args),
        "connector-redis" => redis::run(args),
        "connector-rabbitmq" => rabbitmq::run(args),
        "connector-postgres" => postgres::run(args),
        "connector-sqs" => sqs::run(args),
        "connector-delta" => delta::run(args),
        "connector-objects" => objects::run(args),
        #[cfg(feature = "duckdb")]
        "connector-duckdb" => duckdb::run(args),
        #[cfg(not(feature = "duckdb"))]
        "connector-duckdb" => anyhow::bail!(
            "this riffle is built without DuckDB: build it with `cargo build -p riffle-cli \
             --features duckdb` (README, \"Building with DuckDB\")"
        ),
        "ui" => ui::run(args),
        "build-image" | "build-dags" => project::run(args).map(|r| vec![r]),
        other => anyhow::bail!(
            "unknown workload {other:?}; the workloads are: stateless, wordcount, windowed, files, py-stateless, py-wordcount, py-windowed, py-pipeline, kafka, connector-nats, connector-redis, connector-rabbitmq, connector-postgres, connector-sqs, connector-delta, connector-objects, connector-duckdb, flow-http, flow-consume, flow-autoscale, pipeline, udf-map, udf-reduce, ui"
        ),
    }
}

/// The median of `values` (0 for none).
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// One line per worker count: its median items/s and its ratio to the first
/// count's, and that ratio per worker added (the scaling efficiency).
fn scaling_lines(workload: &str, medians: &[(usize, f64)]) -> Vec<String> {
    let Some(&(base_workers, base)) = medians.first() else {
        return Vec::new();
    };
    medians
        .iter()
        .map(|&(workers, speed)| {
            let ratio = if base > 0.0 { speed / base } else { 0.0 };
            let efficiency = ratio * base_workers as f64 / workers as f64;
            format!(
                "scaling {workload}: {workers} worker(s) {speed:.0} items/s (median) = {ratio:.2}x {base_workers} worker(s), {efficiency:.2} per worker"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_compares_each_count_with_the_first() {
        let lines = scaling_lines("windowed", &[(1, 10.0), (2, 15.0), (4, 20.0)]);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].contains("= 1.00x 1 worker(s), 1.00 per worker"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("= 1.50x 1 worker(s), 0.75 per worker"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("= 2.00x 1 worker(s), 0.50 per worker"),
            "{}",
            lines[2]
        );
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
