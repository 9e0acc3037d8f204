//! `riffle flow`: run a registered Flow (its consumers, collectors and services
//! in one process, HTTP on one listener) or list the registered ones.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use riffle_flow::{FlowContext, RunOptions};

use crate::App;
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
    /// A setting for the flow's builder, as key=value (repeatable); a setting not
    /// given is read from RIFFLE_KEY.
    #[arg(short = 'P', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
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
        FlowCommand::Run(run) => {
            let Some(entry) = app.flows.get(&run.name) else {
                let known: Vec<&str> = app.flows.keys().map(String::as_str).collect();
                bail!(
                    "no flow named {:?}; registered: {}",
                    run.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let ctx = FlowContext::new(
                &run.name,
                run.env.clone(),
                run.params.iter().cloned().collect(),
            );
            let flow = (entry.builder)(&ctx)
                .with_context(|| format!("cannot build flow {:?}", run.name))?;
            let processors = flow.processors();
            let running = flow
                .start(RunOptions {
                    addr: run.addr,
                    signals: true,
                })
                .with_context(|| format!("cannot start flow {:?}", run.name))?;
            for p in &processors {
                let route = p
                    .route
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                eprintln!("{} {}{route}", p.kind, p.id);
            }
            // One line a supervisor or a test can wait for.
            println!("flow {:?} listening on http://{}", run.name, running.addr());
            let summary = running
                .wait()
                .with_context(|| format!("flow {:?} failed", run.name))?;
            for (id, read, written) in summary.processors {
                eprintln!("{id}: {read} in, {written} out");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
