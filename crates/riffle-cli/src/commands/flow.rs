//! `riffle flow`: run a registered Flow (its consumers, collectors and services
//! in one process, HTTP on one listener) or list the registered ones.
//!
//! A run is recorded in the project's metadata store (the one `riffle pipeline
//! run` and `riffle ui` use: `--project DIR`'s `.riffle/metadata.db`, or
//! `RIFFLE_METADATA_URL`) with a sample of every processor each second and one
//! at the end, for the dashboard's Flows page ([`FlowHistory`]).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use riffle_flow::{FlowContext, RunOptions, plan};

use crate::App;
use crate::commands::pipeline::ProjectArgs;
use crate::commands::reload;
use crate::commands::run::parse_param;

/// `riffle flow run NAME [--addr A] [--env E] [-P k=v ...]` | `riffle flow list`
#[derive(Debug, clap::Args)]
pub struct FlowArgs {
    #[command(subcommand)]
    pub command: FlowCommand,
}

/// What `riffle flow` does.
#[derive(Debug, clap::Subcommand)]
pub enum FlowCommand {
    /// Run a Flow until SIGTERM or Ctrl-C (the first drains, a second exits at once).
    Run(FlowRunArgs),
    /// List the registered Flows and their processors.
    List,
    /// Say what `apply` would make: each primitive the Flow declares, and whether it exists.
    Plan(FlowStateArgs),
    /// Make the primitives the Flow declares that are missing (topics, queues, streams, tables).
    Apply(FlowStateArgs),
    /// Delete the primitives the Flow made (never ones it found already there).
    Destroy(FlowStateArgs),
    /// Write Kubernetes manifests: a Deployment per unit, Services, KEDA ScaledObjects.
    Manifests(FlowManifestsArgs),
}

/// `riffle flow manifests NAME --image IMAGE [--env E] [--namespace NS] [--out FILE]`.
#[derive(Debug, clap::Args)]
pub struct FlowManifestsArgs {
    /// The registered Flow.
    pub name: String,
    /// The image whose entrypoint is this binary.
    #[arg(long)]
    pub image: String,
    /// The environment the pods run with (and the flow is built with here).
    #[arg(long)]
    pub env: Option<String>,
    /// The namespace to put everything in.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The backlog per replica KEDA aims at.
    #[arg(long, default_value_t = 100)]
    pub lag_threshold: u64,
    /// The Prometheus server KEDA reads HTTP units' requests in flight from
    /// (needed when a service or collector scales: `Flow::scale_http`).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Where to write them (default: stdout).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// A setting for the flow's builder, as key=value (repeatable).
    #[arg(short = 'P', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

/// `riffle flow plan|apply|destroy NAME [--env E] [--state PATH] [-P k=v ...]`.
#[derive(Debug, clap::Args)]
pub struct FlowStateArgs {
    /// The registered Flow.
    pub name: String,
    /// The environment the flow's builder is told of.
    #[arg(long)]
    pub env: Option<String>,
    /// The state file (default .riffle/flows/NAME[-ENV].json).
    #[arg(long)]
    pub state: Option<std::path::PathBuf>,
    /// A setting for the flow's builder, as key=value (repeatable); a setting not
    /// given is read from RIFFLE_KEY.
    #[arg(short = 'P', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

/// `riffle flow run`.
#[derive(Debug, clap::Args)]
pub struct FlowRunArgs {
    /// The registered Flow to run (see `flow list`).
    pub name: String,
    /// Where the HTTP listener binds (collectors, endpoints, /metrics); port 0
    /// picks a free one.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// The environment the flow's builder is told of (its settings' defaults).
    #[arg(long)]
    pub env: Option<String>,
    /// Run only this consumer, collector or service (repeatable): what one
    /// Deployment of the flow runs.
    #[arg(long)]
    pub only: Vec<String>,
    /// Restart when this program's file changes (after a build): the flow drains,
    /// then the new binary starts with the same arguments.
    #[arg(long)]
    pub reload: bool,
    /// A setting for the flow's builder, as key=value (repeatable); a setting not
    /// given is read from RIFFLE_KEY.
    #[arg(short = 'P', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    #[command(flatten)]
    pub project: ProjectArgs,
}

/// Runs `riffle flow ...`.
pub fn flow(app: &App, args: &FlowArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        FlowCommand::List => {
            for entry in app.flows() {
                println!("{:<20} {}", entry.name, entry.about);
                let ctx = FlowContext::new(&entry.name, None, Default::default());
                match (entry.builder)(&ctx) {
                    Ok(flow) => {
                        for p in flow.processors() {
                            println!("  {:<10} {}", p.kind, p.id);
                        }
                    }
                    Err(e) => println!("  (cannot be built without its settings: {e:#})"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FlowCommand::Plan(args) => state_command(app, args, "plan"),
        FlowCommand::Apply(args) => state_command(app, args, "apply"),
        FlowCommand::Destroy(args) => state_command(app, args, "destroy"),
        FlowCommand::Manifests(args) => manifests(app, args),
        FlowCommand::Run(run) => {
            let mut flow = build(app, &run.name, &run.env, &run.params)?;
            if !run.only.is_empty() {
                flow.only(&run.only)?;
            }
            let processors = flow.processors();
            let running = flow
                .start(RunOptions {
                    addr: run.addr,
                    signals: true,
                    ..Default::default()
                })
                .with_context(|| format!("cannot start flow {:?}", run.name))?;
            for p in &processors {
                eprintln!("{} {}", p.kind, p.id);
            }
            // One line a supervisor or a test can wait for.
            println!("flow {:?} listening on http://{}", run.name, running.addr());
            let changed = if run.reload {
                Some(reload::watch(running.stopper())?)
            } else {
                None
            };
            let history = FlowHistory::start(&run.name, &run.project, &running);
            let waited = running.wait();
            history.finish(waited.as_ref().err().map(|e| e.to_string()));
            let summary = waited.with_context(|| format!("flow {:?} failed", run.name))?;
            for (id, read, written) in summary.processors {
                eprintln!("{id}: {read} in, {written} out");
            }
            if let Some(changed) = changed
                && changed.load(std::sync::atomic::Ordering::SeqCst)
            {
                return reload::restart();
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How often a running flow's processors are sampled into the metadata store.
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The record of one `riffle flow run` in the project's metadata store: the run,
/// then every [`SAMPLE_EVERY`] a sample of each processor (replicas, backlog,
/// totals), then a last sample and the run's end. A thread of its own opens the
/// store and writes, so a slow or missing store never holds the flow up; a write
/// that fails is a warning on stderr (once until one succeeds again), never a stop.
struct FlowHistory {
    end: std::sync::mpsc::Sender<Option<String>>,
    thread: std::thread::JoinHandle<()>,
}

impl FlowHistory {
    fn start(name: &str, project: &ProjectArgs, running: &riffle_flow::RunningFlow) -> Self {
        use riffle_pipeline::metadata::FlowRunRecord;
        let root = project
            .project
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("."));
        let stores = riffle_pipeline::ProjectStores::from_env(&root);
        let metrics = running.metrics().clone();
        let record = FlowRunRecord::starting(name, &running.addr().to_string());
        let (end, ended) = std::sync::mpsc::channel::<Option<String>>();
        let thread = std::thread::spawn(move || {
            let store = match stores.metadata() {
                Ok(store) => store,
                Err(e) => {
                    warn(&format!(
                        "warning: this flow run is not recorded for the dashboard: {e}"
                    ));
                    return;
                }
            };
            let mut failing = false;
            let mut check = |what: &str, result: riffle_pipeline::Result<()>| match result {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    warn(&format!(
                        "warning: metadata store {}: cannot record {what} (the flow goes on; \
                         further failures are not reported until a write succeeds): {e}",
                        store.location()
                    ));
                }
                Err(_) => {}
            };
            check("the flow run", store.start_flow_run(&record));
            let error = loop {
                match ended.recv_timeout(SAMPLE_EVERY) {
                    Ok(error) => break error,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        check(
                            "a sample",
                            store.record_flow_samples(&samples(&record.id, &metrics)),
                        );
                    }
                }
            };
            check(
                "the last sample",
                store.record_flow_samples(&samples(&record.id, &metrics)),
            );
            check(
                "the flow run's end",
                store.end_flow_run(&record.id, now_ms(), error.as_deref()),
            );
        });
        Self { end, thread }
    }

    /// Records the last sample and the end (with `error` if the flow failed) and
    /// waits for the writes.
    fn finish(self, error: Option<String>) {
        let _ = self.end.send(error);
        let _ = self.thread.join();
    }
}

/// Every processor of `metrics` now, as samples of flow run `run_id`.
fn samples(
    run_id: &str,
    metrics: &riffle_flow::metrics::Metrics,
) -> Vec<riffle_pipeline::metadata::FlowSampleRecord> {
    let at = now_ms();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    metrics
        .readings()
        .into_iter()
        .map(|r| {
            let mut s = riffle_pipeline::metadata::FlowSampleRecord::new(run_id, at, &r.id, r.kind);
            s.replicas = r.replicas;
            s.backlog = r.backlog;
            s.items_in = r.items_in;
            s.items_out = r.items_out;
            s.errors = r.errors;
            s.dead_letters = r.dead_letters;
            s.in_flight = r.in_flight;
            s.latency_p50_ms = r.latency_p50.map(ms);
            s.latency_p99_ms = r.latency_p99.map(ms);
            s
        })
        .collect()
}

/// A line on stderr, if stderr is still there (a flow whose parent went away
/// keeps running and recording).
fn warn(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Builds registered flow `name` with its settings.
fn build(
    app: &App,
    name: &str,
    env: &Option<String>,
    params: &[(String, String)],
) -> anyhow::Result<riffle_flow::Flow> {
    let Some(entry) = app.flows.get(name) else {
        let known: Vec<&str> = app.flows.keys().map(String::as_str).collect();
        bail!(
            "no flow named {name:?}; registered: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let mut ctx = FlowContext::new(name, env.clone(), params.iter().cloned().collect());
    // With --env, the project's riffle.toml (in this folder) gives that
    // environment's settings, if it has the file.
    if let Some(env) = env
        && std::path::Path::new("riffle.toml").exists()
    {
        let settings = riffle_project::deploy::Settings::load(std::path::Path::new("."))?;
        ctx = ctx.file_settings(settings.env(env)?.settings.clone());
    }
    (entry.builder)(&ctx).with_context(|| format!("cannot build flow {name:?}"))
}

/// `riffle flow plan`, `apply` or `destroy`: one line per primitive.
fn state_command(app: &App, args: &FlowStateArgs, what: &str) -> anyhow::Result<ExitCode> {
    let flow = build(app, &args.name, &args.env, &args.params)?;
    let state = args.state.clone().unwrap_or_else(|| {
        let file = match &args.env {
            Some(env) => format!("{}-{env}.json", args.name),
            None => format!("{}.json", args.name),
        };
        std::path::Path::new(".riffle").join("flows").join(file)
    });
    let primitives = flow.primitives();
    let steps = match what {
        "plan" => plan::plan(primitives, &plan::State::load(&state)?)?,
        "apply" => plan::apply(primitives, &state)?,
        _ => plan::destroy(primitives, &state)?,
    };
    if primitives.is_empty() {
        println!("flow {:?} declares no primitives", args.name);
    }
    for step in &steps {
        println!("{step}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `riffle flow manifests`.
fn manifests(app: &App, args: &FlowManifestsArgs) -> anyhow::Result<ExitCode> {
    use riffle_project::flow_manifests::{FlowSpec, UnitSpec, render_flow_manifests};
    let flow = build(app, &args.name, &args.env, &args.params)?;
    let mut spec = FlowSpec::new(&args.name, &args.image);
    spec.env = args.env.clone();
    spec.namespace = args.namespace.clone();
    spec.lag_threshold = args.lag_threshold;
    spec.prometheus = args.prometheus.clone();
    spec.units = flow
        .units()
        .into_iter()
        .map(|u| UnitSpec {
            id: u.id,
            kind: u.kind.to_string(),
            min_replicas: u.min_replicas,
            max_replicas: u.max_replicas,
            source: u.source.map(|s| {
                let fields = s
                    .fields
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                (s.system.to_string(), fields)
            }),
            routes: u.routes,
            in_flight_per_replica: u.in_flight_per_replica,
        })
        .collect();
    let yaml = render_flow_manifests(&spec)?;
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot make {}", dir.display()))?;
            }
            std::fs::write(path, &yaml)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}
