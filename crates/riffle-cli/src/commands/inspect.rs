//! `riffle inspect DATAFLOW`: a registered dataflow's graph, as a tree or as JSON.

use std::process::ExitCode;

use anyhow::Context;

use crate::App;
use crate::app::DataflowContext;

/// `riffle inspect DATAFLOW [--json]`
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The registered dataflow.
    pub dataflow: String,
    /// Print the graph as JSON (steps with step_id, kind, upstreams, outputs).
    #[arg(long)]
    pub json: bool,
    /// A parameter for the flow's builder, as key=value (repeatable).
    #[arg(short = 'P', long = "param", value_parser = super::run::parse_param)]
    pub params: Vec<(String, String)>,
}

/// Runs `riffle inspect`.
pub fn inspect(app: &App, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let entry = app.dataflows.get(&args.dataflow).with_context(|| {
        let known: Vec<&str> = app.dataflows.keys().map(String::as_str).collect();
        format!(
            "no dataflow named {:?}; registered: {}",
            args.dataflow,
            known.join(", ")
        )
    })?;
    let ctx = DataflowContext::new(args.params.iter().cloned().collect());
    let flow = (entry.builder)(&ctx)
        .with_context(|| format!("cannot build dataflow {:?}", args.dataflow))?;
    let description = flow.describe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&description)?);
    } else {
        print!("{}", description.to_tree());
    }
    Ok(ExitCode::SUCCESS)
}
