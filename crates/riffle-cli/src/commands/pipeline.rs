//! Pipeline subcommands: `run --workflow/--job`, `runs`, `cache`, `lineage`.
//!
//! ```text
//! riffle run --workflows                                  # the registered pipelines
//! riffle run --workflow sales --runtime 2024-03-01 --config prod
//! riffle run --job sales.aggregate                        # one step, inputs from the cache
//! riffle runs list            riffle runs show RUN_ID
//! riffle cache ls             riffle cache clear [--pipeline ID] [--purge]
//! riffle lineage ARTIFACT_HASH
//! ```
//!
//! Every command works on the project in the current folder (or `--project DIR`):
//! its `.riffle/metadata.db` and `.riffle/artifacts/`, unless `RIFFLE_METADATA_URL`
//! (an SQLite path or a `postgres://` URL) and `RIFFLE_ARTIFACTS_URL` (`s3://`,
//! `gs://`, `az://`, `file://`, `memory://`) say otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use riffle_pipeline::metadata::{MetadataStore, StepRunRecord, format_ms};
use riffle_pipeline::{
    CancelToken, Pipeline, ProjectStores, RunObserver, RunOptions, RunReport, RunStatus, Runtime,
    StepReport, StepStatus,
};

/// The pipelines registered with an [`crate::App`].
#[derive(Default)]
pub struct Registry {
    pipelines: BTreeMap<String, Arc<Pipeline>>,
    /// The pipelines that failed to build, with why.
    errors: Vec<riffle_pipeline::Error>,
}

impl Registry {
    /// A registered pipeline by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Pipeline>> {
        self.pipelines.get(id)
    }

    /// The registered pipelines, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.pipelines.values()
    }

    pub(crate) fn lookup(&self, id: &str) -> anyhow::Result<&Arc<Pipeline>> {
        if let Some(p) = self.pipelines.get(id) {
            return Ok(p);
        }
        // A pipeline that failed to build is reported as itself, not as unknown.
        if let Some(e) = self.errors.iter().find(|e| e.pipeline() == Some(id)) {
            bail!("pipeline {id:?} failed to register: {e}");
        }
        let known: Vec<&str> = self.pipelines.keys().map(String::as_str).collect();
        let mut msg = format!(
            "no pipeline named {id:?}; registered: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
        for e in &self.errors {
            msg.push_str(&format!("\n(a pipeline failed to register: {e})"));
        }
        bail!(msg)
    }
}

impl crate::App {
    /// Registers the pipeline `build` returns, under its id. A definition error (a
    /// cycle, a missing input, ...) is reported by the pipeline commands instead of
    /// stopping the whole app.
    ///
    /// ```no_run
    /// use riffle_pipeline::Pipeline;
    ///
    /// fn hello() -> riffle_pipeline::Result<Pipeline> {
    ///     let mut p = Pipeline::builder("hello");
    ///     p.step("greet", (), |_ctx, ()| Ok("hello".to_string())).version("1");
    ///     p.build()
    /// }
    ///
    /// fn main() -> std::process::ExitCode {
    ///     riffle_cli::App::new("my-project").pipeline(hello).main()
    /// }
    /// ```
    pub fn pipeline<F>(mut self, build: F) -> Self
    where
        F: FnOnce() -> riffle_pipeline::Result<Pipeline>,
    {
        match build() {
            Ok(p) => {
                self.pipelines
                    .pipelines
                    .insert(p.id().to_string(), Arc::new(p));
            }
            Err(e) => self.pipelines.errors.push(e),
        }
        self
    }

    /// The registered pipelines.
    pub fn pipelines(&self) -> &Registry {
        &self.pipelines
    }
}

/// Where the project's stores are: `--project DIR` (default: the current folder).
#[derive(Debug, Clone, clap::Args, Default)]
pub struct ProjectArgs {
    /// The project folder whose .riffle/ holds the metadata and artifacts.
    #[arg(long = "project", value_name = "DIR", global = true)]
    pub project: Option<PathBuf>,
}

impl ProjectArgs {
    fn stores(&self) -> ProjectStores {
        let root = self.project.clone().unwrap_or_else(|| PathBuf::from("."));
        ProjectStores::from_env(&root)
    }

    fn metadata(&self) -> anyhow::Result<Arc<dyn MetadataStore>> {
        Ok(self.stores().metadata()?)
    }
}

/// `riffle runs ...`
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
    #[command(flatten)]
    pub project: ProjectArgs,
}

/// The `runs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// The latest runs, newest first.
    List {
        /// Only this pipeline's runs.
        #[arg(long)]
        pipeline: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run: its steps, their status, cache hits, errors and logs.
    Show {
        /// The run id, or a unique prefix of it.
        run_id: String,
        /// Also print each step's parameters, metrics and log.
        #[arg(long)]
        logs: bool,
    },
}

/// `riffle cache ...`
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    #[command(flatten)]
    pub project: ProjectArgs,
}

/// The `cache` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// The cache entries: step, artifact, size, age.
    Ls {
        /// Only this pipeline's entries.
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Forgets cache entries so the steps run again.
    Clear {
        /// Only this pipeline's entries.
        #[arg(long)]
        pipeline: Option<String>,
        /// Also delete the artifacts no cache entry uses any more.
        #[arg(long)]
        purge: bool,
    },
}

/// `riffle lineage ARTIFACT`
#[derive(Debug, clap::Args)]
pub struct LineageArgs {
    /// The artifact's hash, or a unique prefix of it (see `riffle runs show`).
    pub artifact: String,
    #[command(flatten)]
    pub project: ProjectArgs,
}

/// The pipeline part of `riffle run`: `--workflow ID` or `--job WORKFLOW.STEP`.
#[derive(Debug, clap::Args, Default)]
pub struct RunPipelineArgs {
    /// Run the pipeline (workflow) with this id.
    #[arg(long, value_name = "ID", conflicts_with = "job")]
    pub workflow: Option<String>,
    /// Run one step (job) of a pipeline, its inputs taken from the cache or recomputed.
    #[arg(long, value_name = "WORKFLOW.STEP")]
    pub job: Option<String>,
    /// List the registered pipelines.
    #[arg(long)]
    pub workflows: bool,
    /// The logical date the run processes: "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS" (default: now).
    #[arg(long, value_name = "TIME")]
    pub runtime: Option<String>,
    /// The config environment (dev, prod, ...; default: the pipeline's default).
    #[arg(long = "config", value_name = "ENV")]
    pub config: Option<String>,
    /// On a failure, keep running the steps that do not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// One attempt per step, whatever its retries say (for schedulers that retry
    /// the task themselves, as the generated Airflow DAGs do).
    #[arg(long)]
    pub no_retries: bool,
    /// At most this many CPU slots busy at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub project: ProjectArgs,
}

impl RunPipelineArgs {
    /// Whether the user asked to run a pipeline rather than a dataflow.
    pub fn is_requested(&self) -> bool {
        self.workflow.is_some() || self.job.is_some() || self.workflows
    }
}

/// A progress bar over a run's steps.
struct Progress {
    bar: ProgressBar,
}

impl RunObserver for Progress {
    fn run_started(&self, run_id: &str, steps: &[String]) {
        self.bar.set_length(steps.len() as u64);
        self.bar
            .set_prefix(run_id.chars().take(13).collect::<String>());
    }

    fn step_started(&self, step: &str) {
        self.bar.set_message(format!("running {step}"));
    }

    fn step_finished(&self, report: &StepReport) {
        self.bar.inc(1);
        if report.status == StepStatus::Failed {
            self.bar.println(format!(
                "step {} failed: {}",
                report.step_id,
                report.error.as_deref().unwrap_or("")
            ));
        }
    }
}

/// Runs `riffle run --workflow/--job/--workflows`.
pub fn run_pipeline(
    app: &crate::App,
    args: &RunPipelineArgs,
    params: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    if args.workflows {
        for p in app.pipelines.iter() {
            let schedule = p
                .schedule()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<20} {:<28} {} steps  {}",
                p.id(),
                schedule,
                p.steps().len(),
                p.about()
            );
        }
        for e in &app.pipelines.errors {
            println!("(failed to register: {e})");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (pipeline_id, only_step) = match (&args.workflow, &args.job) {
        (Some(w), None) => (w.as_str(), None),
        (None, Some(job)) => match job.split_once('.') {
            Some((w, s)) if !w.is_empty() && !s.is_empty() => (w, Some(s.to_string())),
            _ => bail!("--job {job:?} is not WORKFLOW.STEP"),
        },
        _ => bail!("give --workflow ID or --job WORKFLOW.STEP"),
    };
    let pipeline = app.pipelines.lookup(pipeline_id)?;
    let with_params;
    let pipeline: &Pipeline = if params.is_empty() {
        pipeline
    } else {
        with_params = pipeline.with_params(params)?;
        &with_params
    };
    if let Some(step) = &only_step {
        pipeline.step(step)?;
    }
    let runtime: Option<Runtime> = args.runtime.as_deref().map(str::parse).transpose()?;
    let mut executor = args
        .project
        .stores()
        .executor()
        .context("cannot open the project's stores")?;
    if let Some(n) = args.parallel {
        executor = executor.parallelism(n);
    }
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        // A second handler cannot be installed in the same process (tests); ignore that.
        let _ = ctrlc::set_handler(move || {
            eprintln!(
                "\ninterrupted: stopping the run (running steps get a few seconds to finish)"
            );
            cancel.cancel();
        });
    }
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(pipeline.steps().len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let options = RunOptions {
        runtime,
        environment: args.config.clone(),
        keep_going: args.keep_going,
        only_step,
        cancel,
        observer: Some(Arc::new(Progress { bar: bar.clone() })),
        env_lookup: None,
        no_retries: args.no_retries,
    };
    let report = executor.run(pipeline, options);
    bar.finish_and_clear();
    let report = report.with_context(|| format!("pipeline {pipeline_id:?} could not run"))?;
    print_summary(&report);
    Ok(match report.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

fn print_summary(report: &RunReport) {
    println!(
        "run {}  pipeline {}  runtime {}  env {}",
        report.run_id, report.pipeline_id, report.runtime, report.environment
    );
    println!(
        "{:<28} {:<10} {:>10} {:>6} {:>8}  error",
        "step", "status", "duration", "cache", "attempts"
    );
    for s in &report.steps {
        println!(
            "{:<28} {:<10} {:>10} {:>6} {:>8}  {}",
            s.step_id,
            s.status.as_str(),
            format_duration(s.duration),
            if s.cache_hit { "hit" } else { "-" },
            s.attempts,
            one_line(s.error.as_deref().unwrap_or(""), 80)
        );
    }
    let cached = report.steps.iter().filter(|s| s.cache_hit).count();
    println!(
        "{}: {} steps ({} cached) in {}",
        report.status,
        report.steps.len(),
        cached,
        format_duration(report.duration)
    );
    if let Some(e) = &report.error
        && report.status != RunStatus::Succeeded
    {
        println!("error: {e}");
    }
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn format_span(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(a), Some(b)) => format_duration(Duration::from_millis((b - a).max(0) as u64)),
        _ => "-".into(),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Runs `riffle runs list|show`.
pub fn runs(_app: &crate::App, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let md = args.project.metadata()?;
    riffle_pipeline::metadata::reap_abandoned(md.as_ref())?;
    match &args.command {
        RunsCommand::List { pipeline, limit } => {
            let runs = md.runs(pipeline.as_deref(), *limit)?;
            if runs.is_empty() {
                println!("no runs yet in {}", md.location());
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<36} {:<16} {:<10} {:<19} {:<19} {:>10}",
                "run", "pipeline", "status", "started (UTC)", "runtime", "duration"
            );
            for r in runs {
                println!(
                    "{:<36} {:<16} {:<10} {:<19} {:<19} {:>10}",
                    r.id,
                    r.pipeline_id,
                    r.status.as_str(),
                    format_ms(r.started_ms),
                    r.runtime,
                    format_span(Some(r.started_ms), r.finished_ms)
                );
            }
        }
        RunsCommand::Show { run_id, logs } => {
            let run = md.run(run_id)?;
            println!("run         {}", run.id);
            println!("pipeline    {}", run.pipeline_id);
            println!("status      {}", run.status);
            println!("runtime     {}", run.runtime);
            println!("environment {}  config {}", run.environment, run.config);
            if let Some(step) = &run.only_step {
                println!("job         {step}");
            }
            println!(
                "started     {} UTC, took {}",
                format_ms(run.started_ms),
                format_span(Some(run.started_ms), run.finished_ms)
            );
            if let Some(e) = &run.error {
                println!("error       {e}");
            }
            println!();
            let steps = md.step_runs(&run.id)?;
            println!(
                "{:<28} {:<10} {:>10} {:>6} {:>8}  {:<16} error",
                "step", "status", "duration", "cache", "attempts", "output"
            );
            for s in &steps {
                print_step_row(s);
                if *logs {
                    for (k, v) in md.step_params(s.id)? {
                        println!("    param  {k} = {v}");
                    }
                    for (k, v) in md.step_metrics(s.id)? {
                        println!("    metric {k} = {v}");
                    }
                    for l in md.step_logs(s.id)? {
                        println!("    {} {:<4} {}", format_ms(l.at_ms), l.level, l.message);
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_step_row(s: &StepRunRecord) {
    println!(
        "{:<28} {:<10} {:>10} {:>6} {:>8}  {:<16} {}",
        s.step_id,
        s.status.as_str(),
        format_span(s.started_ms, s.finished_ms),
        if s.cache_hit { "hit" } else { "-" },
        s.attempts,
        s.output_hash
            .as_deref()
            .map(|h| &h[..h.len().min(16)])
            .unwrap_or("-"),
        one_line(s.error.as_deref().unwrap_or(""), 80)
    );
}

/// Runs `riffle cache ls|clear`.
pub fn cache(_app: &crate::App, args: &CacheArgs) -> anyhow::Result<ExitCode> {
    let stores = args.project.stores();
    let md = stores.metadata()?;
    match &args.command {
        CacheCommand::Ls { pipeline } => {
            let entries = md.cache_entries(pipeline.as_deref())?;
            println!(
                "{:<16} {:<24} {:<16} {:>10} {:<19} type",
                "pipeline", "step", "artifact", "bytes", "created (UTC)"
            );
            let mut total = 0;
            for e in &entries {
                total += e.artifact.size;
                println!(
                    "{:<16} {:<24} {:<16} {:>10} {:<19} {}",
                    e.pipeline_id,
                    e.step_id,
                    &e.artifact.hash[..16],
                    e.artifact.size,
                    format_ms(e.created_ms),
                    e.artifact.type_name
                );
            }
            println!("{} entries, {} bytes", entries.len(), total);
        }
        CacheCommand::Clear { pipeline, purge } => {
            let n = md.clear_cache(pipeline.as_deref())?;
            println!("forgot {n} cache entries");
            if *purge {
                let artifacts = stores.artifacts()?;
                let mut deleted = 0;
                for hash in md.unreferenced_artifacts()? {
                    let Ok(h) = hash.parse::<riffle_pipeline::ContentHash>() else {
                        continue;
                    };
                    artifacts.delete(&h)?;
                    deleted += 1;
                }
                println!("deleted {deleted} artifacts no cache entry uses");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `riffle lineage ARTIFACT`.
pub fn lineage(_app: &crate::App, args: &LineageArgs) -> anyhow::Result<ExitCode> {
    let md = args.project.metadata()?;
    let l = riffle_pipeline::lineage::lineage(md.as_ref(), &args.artifact)?;
    let a = &l.artifact;
    println!("artifact {}", a.hash);
    println!(
        "  type {}  {} bytes  created {} UTC",
        a.type_name,
        a.size,
        format_ms(a.created_ms)
    );
    println!("  uri  {}", a.uri);
    println!("upstream (what it was made from):");
    if l.upstream.is_empty() {
        println!("  (nothing recorded)");
    }
    for s in &l.upstream {
        let inputs: Vec<String> = s
            .inputs
            .iter()
            .map(|(n, h)| format!("{n}={}", &h[..12]))
            .collect();
        println!(
            "  {}{}.{} made {} from [{}]  (run {})",
            "  ".repeat(s.depth as usize - 1),
            s.pipeline_id,
            s.step_id,
            s.output.as_deref().map(|h| &h[..12]).unwrap_or("-"),
            inputs.join(", "),
            s.run_id
        );
    }
    println!("downstream (what used it):");
    if l.downstream.is_empty() {
        println!("  (nothing recorded)");
    }
    for s in &l.downstream {
        println!(
            "  {}{}.{} read {} and made {}  (run {})",
            "  ".repeat(s.depth as usize - 1),
            s.pipeline_id,
            s.step_id,
            &s.via[..12],
            s.output.as_deref().map(|h| &h[..12]).unwrap_or("-"),
            s.run_id
        );
    }
    Ok(ExitCode::SUCCESS)
}
