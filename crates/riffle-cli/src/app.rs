//! [`App`]: the registry of a project's dataflows and pipelines, and its `main`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use riffle::Dataflow;

use crate::commands::{self, Cli};

/// Builds a registered dataflow from the parameters given on the command line.
pub type FlowBuilder = Arc<dyn Fn(&FlowContext) -> anyhow::Result<Dataflow> + Send + Sync>;

pub use riffle::context::FlowContext;

/// A registered dataflow: its name, a one-line description and its builder.
#[derive(Clone)]
pub struct FlowEntry {
    /// The name `riffle run NAME` uses.
    pub name: String,
    /// One line for `riffle run --list`.
    pub about: String,
    /// Builds the flow.
    pub builder: FlowBuilder,
}

/// A project's command-line application: register flows and pipelines, then call
/// [`App::main`].
pub struct App {
    pub(crate) name: String,
    pub(crate) flows: BTreeMap<String, FlowEntry>,
    pub(crate) pipelines: commands::pipeline::Registry,
}

impl App {
    /// A new app; `name` appears in help and in errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            flows: BTreeMap::new(),
            pipelines: Default::default(),
        }
    }

    /// Registers a dataflow under `name`, built by `builder` each time it runs.
    pub fn dataflow<F>(mut self, name: &str, about: &str, builder: F) -> Self
    where
        F: Fn(&FlowContext) -> anyhow::Result<Dataflow> + Send + Sync + 'static,
    {
        self.flows.insert(
            name.to_string(),
            FlowEntry {
                name: name.to_string(),
                about: about.to_string(),
                builder: Arc::new(builder),
            },
        );
        self
    }

    /// The registered dataflows, by name.
    pub fn flows(&self) -> impl Iterator<Item = &FlowEntry> {
        self.flows.values()
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses the process's arguments, runs the subcommand, and turns its outcome into
    /// an exit code (errors are printed with their chain of causes).
    pub fn main(self) -> ExitCode {
        let cli = Cli::parse();
        match commands::dispatch(&self, cli) {
            Ok(code) => code,
            Err(err) => {
                // One write, so the processes of a cluster sharing this stderr
                // cannot interleave their messages mid-line.
                let message = format!("error: {err:#}\n");
                let _ =
                    std::io::Write::write_all(&mut std::io::stderr().lock(), message.as_bytes());
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the app with explicit arguments (the first is the program name), as
    /// [`App::main`] does; for tests and for embedding.
    pub fn run_with_args<I, S>(&self, args: I) -> anyhow::Result<ExitCode>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        commands::dispatch(self, cli)
    }
}
