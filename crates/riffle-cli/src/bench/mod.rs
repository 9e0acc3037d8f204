//! `riffle bench NAME`: benchmark workloads as programs, with one JSON line per run.
//!
//! Every workload reports a [`BenchReport`]; `--json` prints it as one JSON object per
//! line with the stable fields `workload`, `workers`, `items`, `seconds`,
//! `items_per_s`, `peak_rss_bytes` (and `phase` for pipelines). Peak RSS is the
//! process's high-water mark, reset before each run through `/proc/self/clear_refs`.

pub mod dataflow;
pub mod kafka;
pub mod nats;
pub mod pipeline;
pub mod udf;
pub mod ui;
pub mod webdriver;

use std::process::ExitCode;

use serde::Serialize;

use crate::App;

/// `riffle bench NAME [--workers N] [--runs N] [--json]`
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The workload: stateless, wordcount, windowed, kafka, connector-nats, pipeline, udf-map, ui.
    pub name: String,
    /// Worker threads, where the workload is a dataflow.
    #[arg(short, long, default_value_t = 1)]
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

/// Runs the named workload `args.runs` times and prints each report.
pub fn bench(app: &App, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    for _ in 0..args.runs.max(1) {
        reset_peak_rss();
        let reports = match args.name.as_str() {
            "stateless" | "wordcount" | "windowed" => dataflow::run(args)?,
            "pipeline" => pipeline::run(app, args)?,
            "udf-map" => udf::run(args)?,
            "kafka" => kafka::run(args)?,
            "connector-nats" => nats::run(args)?,
            "ui" => ui::run(args)?,
            other => anyhow::bail!(
                "unknown workload {other:?}; the workloads are: stateless, wordcount, windowed, kafka, connector-nats, pipeline, udf-map, ui"
            ),
        };
        for report in reports {
            report.print(args.json);
        }
    }
    Ok(ExitCode::SUCCESS)
}
