//! `riffle bench pipeline`: the executor's own overhead, measured on chains of trivial
//! steps (each adds one to its input) with the SQLite metadata store and a local
//! artifact folder in a fresh temporary project.
//!
//! For each chain length (100 and 1,000, or `--items N`) it prints a `first` run (every
//! step runs, is stored and recorded) and a `cached` run (every step is a verified
//! cache hit), with `ms_per_step`. Then it measures `startup_ms`: from spawning this
//! binary to the first step's body running, for a new project and for one whose stores
//! exist.

use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use riffle_pipeline::{Pipeline, ProjectStores, RunOptions, RunStatus};

use super::{BenchArgs, BenchReport};

const CHILD_PARAM: &str = "startup-child";
const MARK: &str = "riffle-bench-first-step-ns=";

fn chain(len: u64) -> riffle_pipeline::Result<Pipeline> {
    let mut p = Pipeline::builder("bench-chain");
    let mut prev = p.step("s0", (), |_ctx, ()| Ok(0_u64)).version("1").output();
    for i in 1..len {
        prev = p
            .step(&format!("s{i}"), &prev, |_ctx, x: u64| Ok(x + 1))
            .version("1")
            .output();
    }
    p.build()
}

/// A fresh folder under the system's temporary folder, removed when dropped.
struct TempProject(std::path::PathBuf);

impl TempProject {
    fn new() -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("riffle-bench-{}-{}", std::process::id(), now_ns()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The child side of the start-up measurement: one step that prints the time it runs.
fn startup_child(dir: &str) -> anyhow::Result<Vec<BenchReport>> {
    let mut p = Pipeline::builder("bench-startup");
    p.step("first", (), |_ctx, ()| {
        println!("{MARK}{}", now_ns());
        Ok(())
    })
    .param("nonce", now_ns().to_string());
    let pipeline = p.build()?;
    let executor = ProjectStores::local(std::path::Path::new(dir)).executor()?;
    let report = executor.run(&pipeline, RunOptions::default())?;
    if report.status != RunStatus::Succeeded {
        bail!("the start-up pipeline failed: {:?}", report.error);
    }
    Ok(Vec::new())
}

fn measure_startup(dir: &std::path::Path) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let spawned = now_ns();
    let out = Command::new(exe)
        .args(["bench", "pipeline", "-P"])
        .arg(format!("{CHILD_PARAM}={}", dir.display()))
        .output()
        .context("cannot start the start-up child")?;
    if !out.status.success() {
        bail!(
            "the start-up child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let at: u128 = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARK))
        .and_then(|v| v.trim().parse().ok())
        .context("the start-up child did not report its first step")?;
    Ok(at.saturating_sub(spawned) as f64 / 1e6)
}

/// Runs the workload.
pub fn run(_app: &crate::App, args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    if let Some((_, dir)) = args.params.iter().find(|(k, _)| k == CHILD_PARAM) {
        return startup_child(dir);
    }
    let lengths = match args.items {
        Some(n) => vec![n.max(1)],
        None => vec![100, 1000],
    };
    let mut reports = Vec::new();
    for len in lengths {
        let project = TempProject::new()?;
        let executor = ProjectStores::local(project.path()).executor()?;
        let pipeline = chain(len)?;
        for phase in ["first", "cached"] {
            super::reset_peak_rss();
            let start = Instant::now();
            let report = executor.run(&pipeline, RunOptions::default())?;
            let seconds = start.elapsed().as_secs_f64();
            if report.status != RunStatus::Succeeded {
                bail!("the chain of {len} failed: {:?}", report.error);
            }
            let hits = report.steps.iter().filter(|s| s.cache_hit).count() as u64;
            if phase == "cached" && hits != len {
                bail!("the cached run of the chain of {len} had only {hits} hits");
            }
            let mut r = BenchReport::new("pipeline", 1, len, seconds);
            r.phase = Some(phase.to_string());
            r.extra.insert("steps".into(), len.into());
            r.extra
                .insert("ms_per_step".into(), (seconds * 1000.0 / len as f64).into());
            r.extra.insert("cache_hits".into(), hits.into());
            r.extra.insert("store".into(), "sqlite".into());
            reports.push(r);
        }
    }
    let project = TempProject::new()?;
    for store in ["new", "existing"] {
        let ms = measure_startup(project.path())?;
        let mut r = BenchReport::new("pipeline-startup", 1, 1, ms / 1000.0);
        r.phase = Some("first".into());
        r.extra.insert("startup_ms".into(), ms.into());
        r.extra.insert("store".into(), store.into());
        reports.push(r);
    }
    Ok(reports)
}
