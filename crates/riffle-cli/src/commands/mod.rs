//! The subcommands, one module each, and the clap definition that ties them together.

pub mod flow;
pub mod inspect;
pub mod pipeline;
pub mod project;
pub mod recovery;
pub mod reload;
pub mod run;
pub mod udf;
pub mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::App;

/// Riffle: dataflows, UDFs, pipelines and flows with a Rust core.
#[derive(Debug, Parser)]
#[command(name = "riffle", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every `riffle` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a registered dataflow by name, or a pipeline with --workflow / --job.
    Run(Box<run::RunArgs>),
    /// Run or list the registered Flows: consumers, collectors and HTTP services.
    Flow(flow::FlowArgs),
    /// Print a registered dataflow's graph (steps, kinds, upstreams) as a tree or JSON.
    Inspect(inspect::InspectArgs),
    /// Run a benchmark workload and print its figures.
    Bench(crate::bench::BenchArgs),
    /// List or show pipeline runs.
    Runs(pipeline::RunsArgs),
    /// List or clear the pipeline cache.
    Cache(pipeline::CacheArgs),
    /// Walk an artifact's lineage up to its inputs and down to its users.
    Lineage(pipeline::LineageArgs),
    /// Talk to a UDF server over Numaflow's protocol.
    Udf(udf::UdfArgs),
    /// Serve the dashboard: runs, DAGs, artifacts, lineage and dataflows in a browser.
    Ui(ui::UiArgs),
    /// Create or inspect a dataflow recovery store.
    Recovery(recovery::RecoveryArgs),
    /// Print the project's version, read from git tags.
    ProjectVersion(project::VersionArgs),
    /// Tag the next minor release on a clean tree (and push the tag with --push).
    Release(project::ReleaseArgs),
    /// Test and build the project: JUnit report, binary, image and DAGs under build/.
    Build(Box<project::BuildArgs>),
    /// Write an Airflow DAG file per scheduled pipeline.
    BuildDags(project::BuildDagsArgs),
    /// Build an OCI image of the binary without Docker (and push it with --push).
    BuildImage(Box<project::BuildImageArgs>),
    /// Write Kubernetes manifests that run a dataflow as a cluster of processes.
    BuildManifests(Box<project::BuildManifestsArgs>),
    /// Create a new project: a binary with one dataflow and one pipeline, and tests.
    New(project::NewArgs),
    /// Push the image and copy the DAG files to an environment of riffle.toml.
    Deploy(project::DeployArgs),
}

/// Runs one parsed command line against `app`.
pub fn dispatch(app: &App, cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(app, &args),
        Command::Flow(args) => flow::flow(app, &args),
        Command::Inspect(args) => inspect::inspect(app, &args),
        Command::Bench(args) => crate::bench::bench(app, &args),
        Command::Runs(args) => pipeline::runs(app, &args),
        Command::Cache(args) => pipeline::cache(app, &args),
        Command::Lineage(args) => pipeline::lineage(app, &args),
        Command::Udf(args) => udf::udf(&args),
        Command::Ui(args) => ui::ui(app, &args),
        Command::Recovery(args) => recovery::recovery(&args),
        Command::ProjectVersion(args) => project::project_version(&args),
        Command::Release(args) => project::release(&args),
        Command::Build(args) => project::build(&args),
        Command::BuildDags(args) => project::build_dags(app, &args),
        Command::BuildImage(args) => project::build_image(app, &args),
        Command::BuildManifests(args) => project::build_manifests(app, &args),
        Command::New(args) => project::new_project(&args),
        Command::Deploy(args) => project::deploy(&args),
    }
}
