//! `riffle bench build-image` and `riffle bench build-dags`: the project commands'
//! own cost.
//!
//! - `build-image`: the image of this very binary (`-P binary=PATH` for another),
//!   built in memory and written to a temporary tar, as `riffle build-image`
//!   does; `items` is 1 image, and the run reports `image_bytes` (the tar),
//!   `base_bytes` (the base layer: CA certificates, time zones, a non-root user,
//!   the loader and libraries the binary needs) and `binary_bytes`.
//! - `build-dags`: `--items N` (default 100) scheduled pipelines of 10 steps each
//!   (a chain with a fan-out), rendered as KubernetesPodOperator DAG files and
//!   written to a temporary folder, as `riffle build-dags` does; `items` is the
//!   number of DAGs, and the run reports `dag_bytes`.

use std::time::{Duration, Instant};

use anyhow::Context;
use riffle_pipeline::Pipeline;
use riffle_project::dags::{self, DagOptions, Operator};
use riffle_project::image::{self, ImageSpec};

use super::{BenchArgs, BenchReport, param};

/// Runs the workload `args.name` once.
pub fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    match args.name.as_str() {
        "build-image" => build_image(args),
        _ => build_dags(args),
    }
}

fn build_image(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let binary = match param(args, "binary") {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe().context("cannot find this binary's path")?,
    };
    let out = tempfile::tempdir().context("cannot make a temporary folder")?;
    let started = Instant::now();
    let spec = ImageSpec::new("riffle", &binary, env!("CARGO_PKG_VERSION"));
    let built = image::build_image(&spec)?;
    image::write_image(&out.path().join("image.tar"), &built)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut report = BenchReport::new("build-image", 1, 1, seconds);
    let binary_bytes = std::fs::metadata(&binary)
        .with_context(|| format!("cannot read {}", binary.display()))?
        .len();
    report
        .extra
        .insert("image_bytes".into(), built.archive.len().into());
    report.extra.insert(
        "base_bytes".into(),
        built.layers.first().map_or(0, |l| l.tar.len()).into(),
    );
    report
        .extra
        .insert("binary_bytes".into(), binary_bytes.into());
    Ok(report)
}

/// A scheduled pipeline of 10 steps: a chain of 5, a fan-out of 4, a join.
fn pipeline(i: u64) -> anyhow::Result<Pipeline> {
    let mut p = Pipeline::builder(&format!("pipeline{i:04}"));
    p.schedule("@daily").start("2024-01-01");
    let mut prev = p
        .step("s0", (), |_c, ()| Ok(0u64))
        .retries(2, Duration::from_secs(60))
        .version("1")
        .output();
    for s in 1..5 {
        prev = p
            .step(&format!("s{s}"), &prev, |_c, x: u64| Ok(x + 1))
            .version("1")
            .output();
    }
    let fan: Vec<_> = (0..4)
        .map(|f| {
            p.step(&format!("f{f}"), &prev, |_c, x: u64| Ok(x * 2))
                .version("1")
                .output()
        })
        .collect();
    p.step(
        "join",
        (&fan[0], &fan[1], &fan[2], &fan[3]),
        |_c, (a, b, c, d): (u64, u64, u64, u64)| Ok(a + b + c + d),
    )
    .version("1");
    Ok(p.build()?)
}

fn build_dags(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let count = args.items.unwrap_or(100);
    let pipelines = (0..count)
        .map(pipeline)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = tempfile::tempdir().context("cannot make a temporary folder")?;
    let options = DagOptions::new(
        "bench",
        "1.5.dev3+g1a2b3c4d",
        Operator::Kubernetes {
            image: "registry.example/bench:1.5".into(),
            namespace: None,
        },
    );
    let started = Instant::now();
    let files = pipelines
        .iter()
        .map(|p| dags::render_dag(p, &options))
        .collect::<Result<Vec<_>, _>>()?;
    dags::write_dag_folder(&out.path().join("dags"), &files)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut report = BenchReport::new("build-dags", 1, count, seconds);
    let bytes: usize = files.iter().map(|f| f.source.len()).sum();
    report.extra.insert("dag_bytes".into(), bytes.into());
    Ok(report)
}
