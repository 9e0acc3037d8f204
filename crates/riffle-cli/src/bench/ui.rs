//! `riffle bench ui`: the dashboard's API over a big history.
//!
//! It fills a fresh SQLite store, through the metadata store's own write API, with
//! 10,000 runs of 10 pipelines and 100,000 step runs (10 per run, each reading the
//! previous step's output, half of them cache hits, 5% of runs failed), with their
//! artifacts, lineage, parameters and two log lines per step, plus one run of 200
//! steps; one artifact's bytes are real, for a preview. Then it serves the dashboard on a loopback port and calls
//! every API endpoint (and the page's files) `calls` times over new HTTP connections,
//! printing the median and the slowest call of each. `--items N` changes the number of
//! runs; `-P calls=N` the calls per endpoint.
//!
//! When chromedriver is found (`-P chromedriver=PATH`, `RIFFLE_TEST_CHROMEDRIVER`, or
//! `/usr/bin/chromedriver`), it also opens the runs page in headless Chromium and
//! reports `runs_page_ms`: from navigation start to the runs table on screen, as the
//! page measures it (`performance.now()` when the table is inserted), over several
//! fresh loads.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use riffle_pipeline::metadata::{ArtifactRecord, PipelineRecord, RunRecord, StepRunEnd};
use riffle_pipeline::step::LogLine;
use riffle_pipeline::{ContentHash, ProjectStores, RunStatus, StepStatus, codec};
use riffle_ui::Dashboard;
use riffle_ui::server::Background;

use super::webdriver::{Browser, http};
use super::{BenchArgs, BenchReport};

const PIPELINES: u64 = 10;
const STEPS: u64 = 10;
const DAY_MS: i64 = 86_400_000;
const BIG_STEPS: u64 = 200;

/// What the filled store holds that the calls ask about.
struct Filled {
    newest_run: String,
    big_run: String,
    failed_run: String,
    preview_hash: String,
    shared_hash: String,
    middle_hash: String,
    first_day: String,
    last_day: String,
}

fn hash_of(text: &str) -> String {
    ContentHash::of(text.as_bytes()).to_hex()
}

fn fill(stores: &ProjectStores, runs: u64) -> anyhow::Result<Filled> {
    let store = stores.metadata()?;
    let artifacts = stores.artifacts()?;
    let start = 1_700_000_000_000_i64;
    for p in 0..PIPELINES {
        store.record_pipeline(&PipelineRecord {
            id: format!("pipeline_{p}"),
            about: format!("benchmark pipeline {p}"),
            schedule: Some("@daily".into()),
            last_seen_ms: start,
        })?;
    }
    // A real artifact for the preview: 100 rows of (region, amount).
    let rows: Vec<(String, f64)> = (0..100)
        .map(|i| (format!("region-{i}"), i as f64 * 1.5))
        .collect();
    let real = codec::encode(&rows, "the preview artifact")?;
    let real_uri = artifacts.put(&real)?;
    let mut filled = Filled {
        newest_run: String::new(),
        big_run: String::new(),
        failed_run: String::new(),
        preview_hash: real.hash.to_hex(),
        shared_hash: hash_of("pipeline_0/s0/shared"),
        middle_hash: String::new(),
        first_day: String::new(),
        last_day: String::new(),
    };
    store.hold_writes();
    let span_ms = 30 * DAY_MS;
    for r in 0..runs {
        let pipeline = format!("pipeline_{}", r % PIPELINES);
        let started = start + (r as i64 * span_ms) / runs.max(1) as i64;
        let run_id = format!("{:012x}-7000-8000-{:012x}", started, r);
        let failed = r % 20 == 7;
        store.start_run(&RunRecord {
            id: run_id.clone(),
            pipeline_id: pipeline.clone(),
            status: RunStatus::Running,
            runtime: riffle_pipeline::metadata::format_ms(started),
            environment: "prod".into(),
            config: r#"{"table":"sales"}"#.into(),
            only_step: None,
            started_ms: started,
            finished_ms: None,
            error: None,
        })?;
        let cached_run = (r / PIPELINES) % 2 == 1;
        let mut previous: Option<(String, String)> = None;
        let mut at = started;
        for s in 0..STEPS {
            let step = format!("s{s}");
            let hit = cached_run && s < STEPS / 2;
            let is_failed = failed && s == STEPS - 1;
            let hash = if r == runs - 1 && s == STEPS - 1 {
                real.hash.to_hex()
            } else if hit {
                hash_of(&format!("{pipeline}/{step}/shared"))
            } else {
                hash_of(&format!("{run_id}/{step}"))
            };
            let took = if hit {
                1
            } else {
                20 + (r as i64 * 7 + s as i64 * 13) % 400
            };
            let output = (!is_failed).then(|| ArtifactRecord {
                hash: hash.clone(),
                size: if hash == filled.preview_hash {
                    real.bytes.len() as u64
                } else {
                    1000 + s * 10
                },
                type_name: if hash == filled.preview_hash {
                    real.type_name.to_string()
                } else {
                    "alloc::vec::Vec<(alloc::string::String, f64)>".into()
                },
                uri: if hash == filled.preview_hash {
                    real_uri.clone()
                } else {
                    format!("file:///bench/artifacts/{}/{hash}", &hash[..2])
                },
                created_ms: at + took,
            });
            store.finish_step(
                &run_id,
                &step,
                &StepRunEnd {
                    status: Some(if is_failed {
                        StepStatus::Failed
                    } else if hit {
                        StepStatus::Cached
                    } else {
                        StepStatus::Succeeded
                    }),
                    attempts: if is_failed { 3 } else { 1 },
                    cache_key: Some(hash_of(&format!("key/{pipeline}/{step}/{hit}/{r}"))),
                    cache_hit: hit,
                    started_ms: Some(at),
                    finished_ms: at + took,
                    error: is_failed.then(|| "the input has no rows for yesterday".to_string()),
                    output,
                    inputs: previous.iter().cloned().collect(),
                    params: vec![("threshold".into(), "0.5".into())],
                    metrics: vec![("rows".into(), 1000.0)],
                    logs: vec![
                        LogLine {
                            at_ms: at,
                            level: "info".into(),
                            message: format!("reading {step}"),
                        },
                        LogLine {
                            at_ms: at + took,
                            level: "info".into(),
                            message: "done".into(),
                        },
                    ],
                    cacheable: !is_failed,
                },
            )?;
            previous = Some((step, hash.clone()));
            if r == runs / 2 && s == STEPS / 2 {
                filled.middle_hash = hash.clone();
            }
            at += took;
        }
        let status = if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        store.finish_run(&run_id, status, at, failed.then_some("step \"s9\" failed"))?;
        if failed {
            filled.failed_run = run_id.clone();
        }
        if r == 0 {
            filled.first_day = riffle_pipeline::metadata::format_ms(started)[..10].to_string();
        }
        if r == runs - 1 {
            filled.newest_run = run_id.clone();
            filled.last_day = riffle_pipeline::metadata::format_ms(started)[..10].to_string();
        }
        if r % 500 == 499 {
            store.flush()?;
        }
    }
    // One run of 200 steps (a binary tree: step i reads step (i-1)/2), for the DAG.
    let big_run = format!("{:012x}-7000-8000-{:012x}", start + span_ms, runs);
    store.record_pipeline(&PipelineRecord {
        id: "big".into(),
        about: "a run of 200 steps".into(),
        schedule: None,
        last_seen_ms: start,
    })?;
    store.start_run(&RunRecord {
        id: big_run.clone(),
        pipeline_id: "big".into(),
        status: RunStatus::Running,
        runtime: riffle_pipeline::metadata::format_ms(start + span_ms),
        environment: "prod".into(),
        config: "{}".into(),
        only_step: None,
        started_ms: start + span_ms,
        finished_ms: None,
        error: None,
    })?;
    for i in 0..BIG_STEPS {
        let at = start + span_ms + i as i64;
        let hash = hash_of(&format!("big/{i}"));
        store.finish_step(
            &big_run,
            &format!("step_{i:03}"),
            &StepRunEnd {
                status: Some(StepStatus::Succeeded),
                attempts: 1,
                cache_key: Some(hash_of(&format!("big-key/{i}"))),
                started_ms: Some(at),
                finished_ms: at + 5,
                output: Some(ArtifactRecord {
                    hash: hash.clone(),
                    size: 100,
                    type_name: "u64".into(),
                    uri: format!("file:///bench/artifacts/{}/{hash}", &hash[..2]),
                    created_ms: at + 5,
                }),
                inputs: (i > 0)
                    .then(|| {
                        let parent = (i - 1) / 2;
                        (
                            format!("step_{parent:03}"),
                            hash_of(&format!("big/{parent}")),
                        )
                    })
                    .into_iter()
                    .collect(),
                params: vec![("level".into(), format!("{}", (i + 1).ilog2()))],
                cacheable: true,
                ..StepRunEnd::default()
            },
        )?;
    }
    store.finish_run(&big_run, RunStatus::Succeeded, start + span_ms + 1000, None)?;
    filled.big_run = big_run;
    store.release_writes()?;
    Ok(filled)
}

fn time_calls(addr: SocketAddr, path: &str, calls: usize) -> anyhow::Result<Vec<f64>> {
    let (status, body) = http(addr, "GET", path, None)?; // warm-up
    if status != 200 {
        bail!("GET {path} answered {status}: {body}");
    }
    let mut ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let (status, _) = http(addr, "GET", path, None)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

fn median(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn chromedriver(args: &BenchArgs) -> Option<String> {
    args.params
        .iter()
        .find(|(k, _)| k == "chromedriver")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            std::env::var("RIFFLE_TEST_CHROMEDRIVER")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .or_else(|| {
            let default = "/usr/bin/chromedriver";
            std::path::Path::new(default)
                .exists()
                .then(|| default.to_string())
        })
}

fn runs_page_ms(addr: SocketAddr, driver: &str, loads: usize) -> anyhow::Result<Vec<f64>> {
    let chromium = std::env::var("RIFFLE_TEST_CHROMIUM")
        .ok()
        .filter(|v| !v.is_empty());
    let browser = Browser::start(driver, chromium.as_deref())?;
    let mut times = Vec::new();
    for i in 0..=loads {
        // A new document each time: a different query string defeats nothing but the
        // same-document hash navigation.
        browser.goto(&format!("http://{addr}/?load={i}#/runs"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let ms = loop {
            let v = browser.execute("return document.body.dataset.firstRunsMs || null;")?;
            if let Some(ms) = v.as_str().and_then(|s| s.parse::<f64>().ok()) {
                break ms;
            }
            if Instant::now() > deadline {
                bail!("the runs page never showed its table");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rows =
            browser.execute("return document.querySelectorAll('#runs-table tbody tr').length;")?;
        if rows.as_u64() != Some(50) {
            bail!("the runs page shows {rows} rows, expected 50");
        }
        if i > 0 {
            times.push(ms); // the first load warms the browser's cache of the page's files
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Runs the workload.
pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let runs = args.items.unwrap_or(10_000).max(2);
    let calls: usize = match args.params.iter().find(|(k, _)| k == "calls") {
        Some((_, v)) => v.parse().context("calls must be a number")?,
        None => 15,
    };
    let project = TempDir::new()?;
    let stores = ProjectStores::local(project.path());
    let t = Instant::now();
    let filled = fill(&stores, runs)?;
    let fill_s = t.elapsed().as_secs_f64();
    let mut reports = Vec::new();
    let mut r = BenchReport::new("ui-fill", 1, runs * STEPS, fill_s);
    r.extra.insert("runs".into(), runs.into());
    r.extra.insert("step_runs".into(), (runs * STEPS).into());
    reports.push(r);

    let location = project.path().join(".riffle/metadata.db");
    let dashboard = Dashboard::open(&location.to_string_lossy())?
        .with_artifacts(stores.artifacts()?)
        .with_name("bench");
    let server = Background::spawn(dashboard, "127.0.0.1:0".parse()?, None)?;
    let addr = server.addr();
    let paths = [
        ("pipelines", "/api/pipelines".to_string()),
        ("runs", "/api/runs".to_string()),
        ("runs?status=failed", "/api/runs?status=failed".to_string()),
        (
            "runs?pipeline&from&to",
            format!(
                "/api/runs?pipeline=pipeline_3&from={}&to={}",
                filled.first_day, filled.last_day
            ),
        ),
        (
            "runs?offset=last page",
            format!("/api/runs?offset={}", runs.saturating_sub(50)),
        ),
        ("run", format!("/api/runs/{}", filled.newest_run)),
        ("run (failed)", format!("/api/runs/{}", filled.failed_run)),
        ("run of 200 steps", format!("/api/runs/{}", filled.big_run)),
        (
            "step run",
            format!("/api/runs/{}/steps/s9", filled.newest_run),
        ),
        ("artifacts", "/api/artifacts".to_string()),
        (
            "artifacts?offset=last page",
            "/api/artifacts?offset=50000".to_string(),
        ),
        (
            "artifact with preview",
            format!("/api/artifacts/{}", filled.preview_hash),
        ),
        (
            "artifact read by 500 runs",
            format!("/api/artifacts/{}", filled.shared_hash),
        ),
        (
            "lineage",
            format!("/api/artifacts/{}/lineage", filled.middle_hash),
        ),
        (
            "lineage of a shared artifact",
            format!("/api/artifacts/{}/lineage", filled.shared_hash),
        ),
        ("dataflows", "/api/dataflows".to_string()),
        ("openapi.json", "/api/openapi.json".to_string()),
        ("page", "/".to_string()),
        ("app.js", "/assets/app.js".to_string()),
    ];
    for (name, path) in &paths {
        let t = Instant::now();
        let ms = time_calls(addr, path, calls)?;
        let mut r = BenchReport::new("ui", 1, calls as u64, t.elapsed().as_secs_f64());
        r.extra.insert("endpoint".into(), (*name).into());
        r.extra.insert("path".into(), path.clone().into());
        r.extra.insert("median_ms".into(), median(&ms).into());
        r.extra
            .insert("max_ms".into(), ms.last().copied().unwrap_or(0.0).into());
        r.extra.insert("runs".into(), runs.into());
        reports.push(r);
    }
    match chromedriver(args) {
        Some(driver) => {
            let loads = 5;
            let t = Instant::now();
            let ms = runs_page_ms(addr, &driver, loads)?;
            let mut r =
                BenchReport::new("ui-runs-page", 1, loads as u64, t.elapsed().as_secs_f64());
            r.extra.insert("median_ms".into(), median(&ms).into());
            r.extra
                .insert("max_ms".into(), ms.last().copied().unwrap_or(0.0).into());
            r.extra.insert("runs".into(), runs.into());
            r.extra.insert("browser".into(), "chromium headless".into());
            reports.push(r);
        }
        None => eprintln!(
            "riffle bench ui: no chromedriver (-P chromedriver=PATH or RIFFLE_TEST_CHROMEDRIVER): \
             the runs page is not timed in a browser"
        ),
    }
    drop(server);
    Ok(reports)
}

/// A fresh folder under the system's temporary folder, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("riffle-bench-ui-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
