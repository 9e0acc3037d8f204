//! `riffle run`: run a registered dataflow by name (or a pipeline, see
//! [`super::pipeline`]).
//!
//! ```text
//! riffle run wordcount                      # one worker
//! riffle run wordcount -w 2                 # two worker threads
//! riffle run wordcount -p 2 -w 2            # two processes on this machine, two workers each
//! riffle run wordcount -i 0 -a hosts.txt    # process 0 of the cluster listed in hosts.txt
//! riffle run windowed-counts --recovery state -P events=events.csv   # resumable
//! riffle run windowed-counts --recovery state --backup s3://bucket/state ...  # and backed up
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use riffle::Execution;

use super::pipeline;
use crate::App;
use crate::app::DataflowContext;

/// `riffle run [DATAFLOW] [-w N] [-p N] [-i ID -a FILE] [-P key=value ...]`
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The registered dataflow to run (see --list).
    pub dataflow: Option<String>,
    /// List the registered dataflows.
    #[arg(long)]
    pub list: bool,
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1, value_parser = at_least_one)]
    pub workers: usize,
    /// Processes to spawn on this machine, connected over loopback TCP.
    #[arg(short = 'p', long, default_value_t = 1, value_parser = at_least_one)]
    pub processes: usize,
    /// This process's id in a cluster (with --addresses).
    #[arg(short = 'i', long = "process-id", requires = "addresses")]
    pub process_id: Option<usize>,
    /// A file with one `host:port` per line, one line per process of the cluster.
    #[arg(short = 'a', long, requires = "process_id")]
    pub addresses: Option<PathBuf>,
    /// The wall-clock length of an epoch, e.g. `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub epoch_interval: Duration,
    /// Snapshot into the recovery store in this directory and resume from it (make
    /// one with `riffle recovery init DIR --partitions N`).
    #[arg(long, value_name = "DIR")]
    pub recovery: Option<PathBuf>,
    /// How often to snapshot under --recovery (a whole number of epochs).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub snapshot_interval: Duration,
    /// How far back committed snapshots stay resumable under --recovery.
    #[arg(long, default_value = "0s", value_parser = parse_duration_or_zero)]
    pub backup_interval: Duration,
    /// After each commit, copy the recovery store to this folder or object-store
    /// URL (`s3://bucket/prefix`, `gs://...`, `az://...`, `file:///abs/dir`).
    #[arg(long, value_name = "DIR|URL", requires = "recovery")]
    pub backup: Option<String>,
    /// A parameter for the flow's builder, as key=value (repeatable); with
    /// --workflow/--job, a step parameter (`name=value` or `step.name=value`).
    #[arg(short = 'P', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    #[command(flatten)]
    pub pipeline: pipeline::RunPipelineArgs,
}

/// Parses a count that must be at least 1 (`-w`, `-p`).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 is not allowed: it must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// Parses `key=value`.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

/// Parses `10s`, `500ms`, `2m` or a number of seconds.
pub use riffle::duration::parse as parse_duration;
/// Like [`parse_duration`], but zero is allowed.
pub use riffle::duration::parse_or_zero as parse_duration_or_zero;

/// Checks one `host:port` of an addresses file: a host, and a port from 1 to 65535.
fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("is not host:port".to_string());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("has no host before the port (expected host:port)".to_string());
    }
    match port.parse::<u16>() {
        Ok(0) => Err("has port 0; give a port from 1 to 65535".to_string()),
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "has port {port:?}, which is not a number from 1 to 65535"
        )),
    }
}

fn read_addresses(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the addresses file {}", path.display()))?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for (i, address) in addresses.iter().enumerate() {
        check_address(address)
            .map_err(|why| anyhow::anyhow!("{}:{}: {address:?} {why}", path.display(), i + 1))?;
    }
    if addresses.is_empty() {
        bail!("{}: no addresses in the file", path.display());
    }
    Ok(addresses)
}

/// Runs `riffle run`.
pub fn run(app: &App, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.pipeline.is_requested() {
        return pipeline::run_pipeline(app, &args.pipeline, &args.params);
    }
    if args.list {
        for entry in app.dataflows() {
            println!("{:<20} {}", entry.name, entry.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = args.dataflow.as_deref() else {
        bail!(
            "name a dataflow to run (`{} run --list` shows them), or a pipeline with --workflow",
            app.name()
        );
    };
    let entry = app.dataflows.get(name).with_context(|| {
        let known: Vec<&str> = app.dataflows.keys().map(String::as_str).collect();
        format!(
            "no dataflow named {name:?}; registered: {}",
            known.join(", ")
        )
    })?;
    let ctx = DataflowContext::new(args.params.iter().cloned().collect());
    let flow = (entry.builder)(&ctx).with_context(|| format!("cannot build dataflow {name:?}"))?;
    let unused = ctx.unused_params();
    if !unused.is_empty() {
        let asked = ctx.asked_params();
        bail!(
            "dataflow {name:?} has no parameter {}; it reads: {}",
            unused
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if asked.is_empty() {
                "none".to_string()
            } else {
                asked.join(", ")
            }
        );
    }

    let mut exec = Execution::new()
        .workers(args.workers)
        .processes(args.processes)
        .epoch_interval(args.epoch_interval);
    if let (Some(id), Some(path)) = (args.process_id, &args.addresses) {
        let addresses = read_addresses(path)?;
        if id >= addresses.len() {
            bail!(
                "--process-id {id} is not in the cluster: {} lists {} process(es), ids 0 to {}",
                path.display(),
                addresses.len(),
                addresses.len() - 1
            );
        }
        exec = exec.cluster(id, addresses);
    }
    if let Some(dir) = &args.recovery {
        let mut recovery = riffle::recovery::Recovery::new(dir)
            .snapshot_interval(args.snapshot_interval)
            .backup_interval(args.backup_interval);
        if let Some(backup) = &args.backup {
            let target = super::recovery::ObjectBackup::open(backup)
                .with_context(|| format!("--backup {backup}"))?;
            recovery = recovery.backup(target);
        }
        exec = exec.recovery(recovery);
    }
    let exec = exec.from_env()?;
    let spawned_by_us = std::env::var(riffle::run::ENV_PROCESS_ID).is_ok();
    let spawns_children = args.processes > 1 && !spawned_by_us;
    let tally = if spawns_children {
        Some(counts::Tally::create()?)
    } else {
        None
    };
    let started = Instant::now();
    exec.run(&flow)
        .with_context(|| format!("dataflow {name:?} failed"))?;
    let seconds = started.elapsed().as_secs_f64();
    match tally {
        // The parent of `-p N` prints one summary of what its children counted.
        Some(tally) => {
            let counts = tally.sum()?;
            DataflowContext::report_counts(name, seconds, &counts);
        }
        None if spawned_by_us && counts::Tally::hand_in(&ctx.counts()) => {}
        None => ctx.report(name, seconds),
    }
    Ok(ExitCode::SUCCESS)
}

/// How the processes of `riffle run -p N` bring their counters to the parent, which
/// prints one throughput summary: the parent makes a folder named after its pid in
/// the temp folder, each child writes its counts there as it ends, and the parent
/// sums them.
mod counts {
    use std::path::PathBuf;

    use anyhow::Context;

    /// The folder of the parent with pid `pid`.
    fn folder(pid: u32) -> PathBuf {
        std::env::temp_dir().join(format!("riffle-counts-{pid}"))
    }

    /// The parent's folder, removed when dropped.
    pub(super) struct Tally {
        dir: PathBuf,
    }

    impl Tally {
        pub(super) fn create() -> anyhow::Result<Self> {
            sweep();
            let dir = folder(std::process::id());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Ok(Self { dir })
        }

        /// The counts of every child, summed by unit in the order first seen.
        pub(super) fn sum(&self) -> anyhow::Result<Vec<(String, u64)>> {
            let mut totals: Vec<(String, u64)> = Vec::new();
            let entries = std::fs::read_dir(&self.dir)
                .with_context(|| format!("cannot read {}", self.dir.display()))?;
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                for line in text.lines() {
                    let Some((unit, n)) = line.rsplit_once(' ') else {
                        continue;
                    };
                    let n: u64 = n.parse().unwrap_or(0);
                    match totals.iter_mut().find(|(u, _)| u == unit) {
                        Some((_, total)) => *total += n,
                        None => totals.push((unit.to_string(), n)),
                    }
                }
            }
            Ok(totals)
        }

        /// A child's hand-in: writes `counts` into its parent's folder; `false` when
        /// there is no such folder (a cluster started by hand), so it prints its own.
        pub(super) fn hand_in(counts: &[(String, u64)]) -> bool {
            #[cfg(unix)]
            {
                let dir = folder(std::os::unix::process::parent_id());
                if !dir.is_dir() {
                    return false;
                }
                let id = std::env::var(riffle::run::ENV_PROCESS_ID).unwrap_or_default();
                let text: String = counts.iter().map(|(u, n)| format!("{u} {n}\n")).collect();
                std::fs::write(dir.join(format!("process-{id}")), text).is_ok()
            }
            #[cfg(not(unix))]
            {
                let _ = counts;
                false
            }
        }
    }

    /// Removes the folders of parents that are gone (killed before they could
    /// remove their own).
    fn sweep() {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("riffle-counts-"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    impl Drop for Tally {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
