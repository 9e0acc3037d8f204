//! Python workloads: `py-stateless`, `py-wordcount`, `py-windowed` and `py-pipeline`.
//!
//! The workloads of [`super::dataflow`] written as Python dataflows for the Python
//! package `riffle` (crates/riffle-py), the way a bytewax user writes them: the
//! user functions (the map and filter of `stateless`, the split of `wordcount`, the
//! key and time getters of `windowed`) are Python, the engine around them is Rust.
//! The program is bench/py/workloads.py, built into this binary; it runs the same
//! flows on bytewax with `--engine bytewax` (bench/python.sh compares the two).
//!
//! Each run starts a fresh interpreter that generates the input, starts the clock,
//! runs the flow and prints one JSON line, which becomes the run's
//! [`BenchReport`]: its `peak_rss_bytes` is the Python process's own peak, its
//! `engine`, `cpu_seconds`, `batch_size` and checksum fields come along as extras.
//!
//! `py-pipeline` is [`super::pipeline`] written with `riffle.pipeline`: chains of
//! 100 and 1,000 Python steps (or `--items N` steps), each adding one to the output
//! before it, run from an empty cache (`first`) and again (`cached`). Its program is
//! bench/py/pipeline.py; it prints one report per chain and phase, with
//! `ms_per_step` (bench/py/pipeline.sh runs flowyml's chain beside it).
//!
//! Options (`-P key=value`):
//! - `python=PATH`: the interpreter (else env `RIFFLE_PYTHON`, else `python3`); it
//!   must import `riffle` (`pip install ./crates/riffle-py`).
//! - `batch=N`: source items per batch (default 1000; a wordcount item is a line).
//! - `processes=N`: run each measured run as N processes over loopback TCP, each with
//!   `--workers` threads (needs `riffle.testing.cluster_main` in the package).
//! - `partitions=N` (`py-windowed`): the events come from `N` partitions, partition
//!   `p` holding events `p`, `p + N`, ... (as `windowed -P partitions=N`); the
//!   default is one per worker of the run (`--workers` x `processes`), so every
//!   worker reads its own share.
//!
//! ```text
//! riffle bench py-wordcount --items 1000000 --workers 1,2 --runs 3 --json -P python=bench/.venv-py/bin/python
//! riffle bench py-pipeline --items 100 --runs 3 --json -P python=bench/.venv-py/bin/python
//! ```

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::{BenchArgs, BenchReport};

/// The workload program (also runnable by hand: `python bench/py/workloads.py`).
const WORKLOADS_PY: &str = include_str!("../../../../bench/py/workloads.py");

/// The program of `py-pipeline` (also runnable by hand: `python bench/py/pipeline.py`).
const PIPELINE_PY: &str = include_str!("../../../../bench/py/pipeline.py");

/// The exit code of workloads.py and pipeline.py when their interpreter cannot import
/// the engine or the package lacks what was asked (several processes without
/// `cluster_main`).
const EXIT_NO_PACKAGE: i32 = 3;

/// How to get the package into an interpreter, for error messages.
const INSTALL_HINT: &str = "install it with `pip install ./crates/riffle-py` (from the repository \
     root; bench/python.sh makes a venv with a release build), or name an interpreter that has it \
     with -P python=PATH or RIFFLE_PYTHON";

/// Runs `py-stateless`, `py-wordcount`, `py-windowed` or `py-pipeline` once.
pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let workload = args
        .name
        .strip_prefix("py-")
        .filter(|w| matches!(*w, "stateless" | "wordcount" | "windowed" | "pipeline"))
        .ok_or_else(|| anyhow::anyhow!("{:?} is not a Python workload", args.name))?;
    let python = interpreter(args);
    check_package(&python)?;
    let dir = tempfile::Builder::new()
        .prefix("riffle-bench-py-")
        .tempdir()
        .context("cannot make a temporary directory for the Python workload")?;
    let (file, program) = if workload == "pipeline" {
        ("pipeline.py", PIPELINE_PY)
    } else {
        ("workloads.py", WORKLOADS_PY)
    };
    let script = dir.path().join(file);
    std::fs::write(&script, program)
        .with_context(|| format!("cannot write {}", script.display()))?;

    let mut command = Command::new(&python);
    command.arg(&script);
    if workload == "pipeline" {
        // A chain is sequential: one engine thread runs it, whatever --workers says.
        if let Some(steps) = args.items {
            anyhow::ensure!(steps > 0, "--items: 0 is not a step count");
            command.args(["--steps", &steps.to_string()]);
        }
    } else {
        command
            .arg(workload)
            .args(["--engine", "riffle", "--runs", "1"])
            .args(["--workers", &args.workers.to_string()]);
        if let Some(items) = args.items {
            anyhow::ensure!(items > 0, "--items: 0 is not an item count");
            command.args(["--items", &items.to_string()]);
        }
        if let Some(batch) = positive(args, "batch")? {
            command.args(["--batch-size", &batch.to_string()]);
        }
        if let Some(processes) = positive(args, "processes")? {
            command.args(["--processes", &processes.to_string()]);
        }
        if let Some(partitions) = positive(args, "partitions")? {
            anyhow::ensure!(
                workload == "windowed",
                "-P partitions= is an option of py-windowed only"
            );
            command.args(["--partitions", &partitions.to_string()]);
        }
    }
    let out = command
        .output()
        .with_context(|| format!("cannot run the Python interpreter {python}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        if out.status.code() == Some(EXIT_NO_PACKAGE) {
            // The program's own message: what its package lacks (e.g. processes).
            anyhow::bail!("{}", tail.join("\n"));
        }
        anyhow::bail!(
            "{} (run by {python}) failed with {}:\n{}",
            args.name,
            out.status,
            tail.join("\n")
        );
    }
    let reports = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(parse_report)
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !reports.is_empty(),
        "{} (run by {python}) printed no report; its stderr:\n{stderr}",
        args.name
    );
    Ok(reports)
}

/// The interpreter: `-P python=PATH`, else env `RIFFLE_PYTHON`, else `python3`.
fn interpreter(args: &BenchArgs) -> String {
    super::param(args, "python")
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("RIFFLE_PYTHON")
                .ok()
                .filter(|p| !p.is_empty())
        })
        .unwrap_or_else(|| "python3".to_owned())
}

/// Fails with how to install the package unless `python` imports `riffle`.
fn check_package(python: &str) -> anyhow::Result<()> {
    let out = Command::new(python)
        .args(["-c", "import riffle._riffle"])
        .output()
        .map_err(|e| {
            let what = if Path::new(python).components().count() > 1 {
                "no such interpreter"
            } else {
                "not found on PATH"
            };
            anyhow::anyhow!(
                "cannot run the Python interpreter {python:?} ({what}: {e}); {INSTALL_HINT}"
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no error printed");
    anyhow::bail!(
        "the Python interpreter {python:?} cannot import the `riffle` package ({reason}); {INSTALL_HINT}"
    )
}

/// The value of `-P name=N`, which must be a positive number.
fn positive(args: &BenchArgs, name: &str) -> anyhow::Result<Option<u64>> {
    match super::param(args, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("-P {name}={v}: not a positive number")),
    }
}

/// One JSON line of workloads.py as a [`BenchReport`]: the stable fields, and every
/// other field as an extra.
fn parse_report(line: &str) -> anyhow::Result<BenchReport> {
    let value: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("the Python workload printed a line that is not JSON: {line}"))?;
    let serde_json::Value::Object(mut fields) = value else {
        anyhow::bail!("the Python workload printed JSON that is not an object: {line}");
    };
    let mut take = |name: &str| {
        fields
            .remove(name)
            .ok_or_else(|| anyhow::anyhow!("the Python workload's report has no {name:?}: {line}"))
    };
    let bad =
        |name: &str| anyhow::anyhow!("the Python workload's report has a bad {name:?}: {line}");
    let workload = take("workload")?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("workload"))?;
    let workers = take("workers")?.as_u64().ok_or_else(|| bad("workers"))?;
    let items = take("items")?.as_u64().ok_or_else(|| bad("items"))?;
    let seconds = take("seconds")?.as_f64().ok_or_else(|| bad("seconds"))?;
    let items_per_s = take("items_per_s")?
        .as_f64()
        .ok_or_else(|| bad("items_per_s"))?;
    let peak_rss_bytes = take("peak_rss_bytes")?
        .as_u64()
        .ok_or_else(|| bad("peak_rss_bytes"))?;
    let phase = match fields.remove("phase") {
        None => None,
        Some(v) => Some(v.as_str().map(str::to_owned).ok_or_else(|| bad("phase"))?),
    };
    Ok(BenchReport {
        workload,
        workers: workers as usize,
        items,
        seconds,
        items_per_s,
        peak_rss_bytes,
        phase,
        extra: fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn bench_args(argv: &[&str]) -> BenchArgs {
        let mut args = Cli::parse_from(std::iter::once("bench").chain(argv.iter().copied())).bench;
        args.workers = args.worker_counts[0];
        args
    }

    #[test]
    fn a_report_line_keeps_the_stable_fields_and_the_rest_as_extras() {
        let report = parse_report(
            r#"{"workload": "py-stateless", "workers": 2, "items": 1000, "seconds": 0.5,
                "items_per_s": 2000.0, "peak_rss_bytes": 4096, "engine": "riffle-py 0.1.0",
                "checksum": 334}"#,
        )
        .unwrap();
        assert_eq!(report.workload, "py-stateless");
        assert_eq!((report.workers, report.items), (2, 1000));
        assert_eq!((report.seconds, report.items_per_s), (0.5, 2000.0));
        assert_eq!(report.peak_rss_bytes, 4096);
        assert_eq!(report.extra["checksum"], 334);
        assert_eq!(report.extra["engine"], "riffle-py 0.1.0");
        assert!(!report.extra.contains_key("seconds"));

        assert_eq!(report.phase, None);

        let report = parse_report(
            r#"{"workload": "py-pipeline", "workers": 1, "items": 100, "seconds": 0.02,
                "items_per_s": 5000.0, "peak_rss_bytes": 4096, "phase": "cached",
                "ms_per_step": 0.2}"#,
        )
        .unwrap();
        assert_eq!(report.phase.as_deref(), Some("cached"));
        assert!(!report.extra.contains_key("phase"));
        assert_eq!(report.extra["ms_per_step"], 0.2);

        let err = parse_report(r#"{"workload": "py-stateless", "workers": 1}"#).unwrap_err();
        assert!(err.to_string().contains("no \"items\""), "{err}");
        let err = parse_report("[1]").unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
    }

    #[test]
    fn an_interpreter_without_the_package_is_told_how_to_install_it() {
        // python3 -S: no site-packages, so no `riffle`, whatever is installed.
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("python-without-riffle");
        std::fs::write(&wrapper, "#!/bin/sh\nexec python3 -S \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let python = format!("python={}", wrapper.display());
        let args = bench_args(&["py-stateless", "--items", "1000", "-P", &python]);
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("cannot import the `riffle` package"), "{err}");
        assert!(err.contains("pip install ./crates/riffle-py"), "{err}");

        let args = bench_args(&["py-wordcount", "-P", "python=/nonexistent/python3"]);
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/python3"), "{err}");
        assert!(err.contains("pip install ./crates/riffle-py"), "{err}");
    }

    #[test]
    fn py_stateless_runs_on_the_test_python_or_says_what_is_missing() {
        // RIFFLE_TEST_PYTHON is the suite's venv, where scripts/test.d/55-riffle-py.sh
        // installs the package before the Rust tests run.
        let Some(python) = std::env::var("RIFFLE_TEST_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            eprintln!("RIFFLE_TEST_PYTHON is unset: py-stateless is not run");
            return;
        };
        let has_riffle = check_package(&python).is_ok();
        let param = format!("python={python}");
        let args = bench_args(&["py-stateless", "--items", "1000", "-w", "2", "-P", &param]);
        match run(&args) {
            Ok(reports) => {
                assert!(has_riffle);
                assert_eq!(reports.len(), 1);
                let r = &reports[0];
                assert_eq!(
                    (r.workload.as_str(), r.workers, r.items),
                    ("py-stateless", 2, 1000)
                );
                // ceil(1000 / 3) of the doubled numbers are multiples of 3.
                assert_eq!(r.extra["checksum"], 334);
                assert!(r.seconds > 0.0 && r.items_per_s > 0.0 && r.peak_rss_bytes > 0);
                assert!(
                    r.extra["engine"]
                        .as_str()
                        .unwrap()
                        .starts_with("riffle-py ")
                );
            }
            Err(e) => {
                assert!(!has_riffle, "py-stateless failed on {python}: {e:#}");
                assert!(
                    e.to_string().contains("pip install ./crates/riffle-py"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn py_windowed_reads_partitions_and_counts_as_one_partition_does() {
        let Some(python) = std::env::var("RIFFLE_TEST_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            eprintln!("RIFFLE_TEST_PYTHON is unset: py-windowed is not run");
            return;
        };
        if check_package(&python).is_err() {
            eprintln!("{python} has no `riffle` package: py-windowed is not run");
            return;
        }
        let param = format!("python={python}");
        // Two workers, each its own partition by default; then four partitions.
        for (extra, partitions) in [(None, 2), (Some("partitions=4"), 4)] {
            let mut argv = vec!["py-windowed", "--items", "30000", "-w", "2", "-P", &param];
            argv.extend(extra.iter().flat_map(|e| ["-P", e]));
            let reports = run(&bench_args(&argv))
                .unwrap_or_else(|e| panic!("py-windowed on {python}: {e:#}"));
            let r = &reports[0];
            assert_eq!(r.extra["partitions"], partitions);
            // 1,000 keys in each of 3 windows of 10,000 events, none late.
            assert_eq!(r.extra["windows"], 3000);
            assert_eq!(r.extra["counted"], 30000);
            assert_eq!(r.extra["late"], 0);
        }
        let args = bench_args(&["py-wordcount", "-P", &param, "-P", "partitions=2"]);
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("py-windowed only"), "{err}");
    }

    #[test]
    fn py_pipeline_runs_a_chain_first_and_cached_on_the_test_python() {
        let Some(python) = std::env::var("RIFFLE_TEST_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            eprintln!("RIFFLE_TEST_PYTHON is unset: py-pipeline is not run");
            return;
        };
        if check_package(&python).is_err() {
            eprintln!("{python} has no `riffle` package: py-pipeline is not run");
            return;
        }
        let param = format!("python={python}");
        let args = bench_args(&["py-pipeline", "--items", "20", "-P", &param]);
        let reports = run(&args).unwrap_or_else(|e| panic!("py-pipeline on {python}: {e:#}"));
        let phases: Vec<_> = reports.iter().map(|r| r.phase.as_deref()).collect();
        assert_eq!(phases, [Some("first"), Some("cached")]);
        for (r, hits) in reports.iter().zip([0, 20]) {
            assert_eq!(
                (r.workload.as_str(), r.workers, r.items),
                ("py-pipeline", 1, 20)
            );
            // Step 0 outputs 0 and each of the 19 others adds one.
            assert_eq!(r.extra["last"], 19);
            assert_eq!(r.extra["cache_hits"], hits);
            assert!(r.seconds > 0.0 && r.extra["ms_per_step"].as_f64().unwrap() > 0.0);
        }
    }
}
