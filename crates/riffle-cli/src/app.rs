//! [`App`]: the registry of a project's dataflows and pipelines, and its `main`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use riffle::Dataflow;

use crate::commands::{self, Cli};

/// Builds a registered dataflow from the parameters given on the command line.
pub type DataflowBuilder = Arc<dyn Fn(&DataflowContext) -> anyhow::Result<Dataflow> + Send + Sync>;

pub use riffle::context::DataflowContext;

/// A registered dataflow: its name, a one-line description and its builder.
#[derive(Clone)]
pub struct DataflowEntry {
    /// The name `riffle run NAME` uses.
    pub name: String,
    /// One line for `riffle run --list`.
    pub about: String,
    /// Builds the flow.
    pub builder: DataflowBuilder,
}

/// Builds a registered Flow for `riffle flow run`.
pub type FlowBuilder = Arc<dyn Fn(&FlowContext) -> anyhow::Result<Flow> + Send + Sync>;

pub use riffle_flow::{Flow, FlowContext};

/// A registered Flow: its name, a one-line description and its builder.
#[derive(Clone)]
pub struct FlowEntry {
    /// The name `riffle flow run NAME` uses.
    pub name: String,
    /// One line for `riffle flow list`.
    pub about: String,
    /// Builds the flow.
    pub builder: FlowBuilder,
}

/// A project's command-line application: register flows and pipelines, then call
/// [`App::main`].
pub struct App {
    pub(crate) name: String,
    /// Whether `bench` (Riffle's own benchmark workloads) is listed in the help.
    pub(crate) benchmarks: bool,
    pub(crate) dataflows: BTreeMap<String, DataflowEntry>,
    pub(crate) flows: BTreeMap<String, FlowEntry>,
    pub(crate) pipelines: commands::pipeline::Registry,
    /// What `--version` says, when not Riffle's own version.
    pub(crate) version: Option<&'static str>,
}

/// The version `riffle build` stamps into a project's binary (the project's
/// version from git, in `RIFFLE_PROJECT_VERSION` while it compiles), else the
/// package's version: for [`App::version`], in the project's `main.rs`.
///
/// ```
/// let version: &'static str = riffle_cli::stamped_version!();
/// assert!(!version.is_empty());
/// ```
#[macro_export]
macro_rules! stamped_version {
    () => {
        match option_env!("RIFFLE_PROJECT_VERSION") {
            Some(version) => version,
            None => env!("CARGO_PKG_VERSION"),
        }
    };
}

impl App {
    /// A new app; `name` appears in help and in errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            benchmarks: false,
            dataflows: BTreeMap::new(),
            flows: BTreeMap::new(),
            pipelines: Default::default(),
            version: None,
        }
    }

    /// What `--version` prints after the name: the project's version
    /// ([`stamped_version!`](crate::stamped_version)) for a project's binary.
    ///
    /// ```
    /// let app = riffle_cli::App::new("demo").version("1.5");
    /// let err = app.run_with_args(["demo", "--version"]).unwrap_err();
    /// assert_eq!(err.to_string().trim(), "demo 1.5");
    /// ```
    pub fn version(mut self, version: &'static str) -> Self {
        self.version = Some(version);
        self
    }

    /// Lists `bench` in the help: the benchmark workloads are Riffle's own, so a
    /// project's binary leaves them out of its help (they still run when named).
    pub fn with_benchmarks(mut self) -> Self {
        self.benchmarks = true;
        self
    }

    /// Registers a dataflow under `name`, built by `builder` each time it runs.
    pub fn dataflow<F>(mut self, name: &str, about: &str, builder: F) -> Self
    where
        F: Fn(&DataflowContext) -> anyhow::Result<Dataflow> + Send + Sync + 'static,
    {
        self.dataflows.insert(
            name.to_string(),
            DataflowEntry {
                name: name.to_string(),
                about: about.to_string(),
                builder: Arc::new(builder),
            },
        );
        self
    }

    /// Registers a Flow (consumers, collectors, services) under `name`, built by
    /// `builder` each time `riffle flow run NAME` runs it.
    pub fn flow<F>(mut self, name: &str, about: &str, builder: F) -> Self
    where
        F: Fn(&FlowContext) -> anyhow::Result<Flow> + Send + Sync + 'static,
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

    /// The registered Flows, by name.
    pub fn flows(&self) -> impl Iterator<Item = &FlowEntry> {
        self.flows.values()
    }

    /// The registered dataflows, by name.
    pub fn dataflows(&self) -> impl Iterator<Item = &DataflowEntry> {
        self.dataflows.values()
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses the process's arguments, runs the subcommand, and turns its outcome into
    /// an exit code (errors are printed with their chain of causes).
    pub fn main(self) -> ExitCode {
        let cli = match self.parse(std::env::args_os()) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        };
        match commands::dispatch(&self, cli) {
            Ok(code) => code,
            Err(err) => {
                // One write, so the processes of a cluster sharing this stderr
                // cannot interleave their messages mid-line.
                let message = format!("error: {}\n", error_chain(&err));
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
        let cli = self.parse(args)?;
        commands::dispatch(self, cli)
    }

    /// Parses a command line with the app's own name in help and usage lines.
    fn parse<I, S>(&self, args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let benchmarks = self.benchmarks;
        let command = Cli::command()
            .name(self.name.clone())
            .bin_name(self.name.clone())
            .mut_subcommand("bench", |bench| bench.hide(!benchmarks));
        let command = match self.version {
            Some(version) => command.version(version),
            None => command,
        };
        let matches = command.try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}

/// An error and its causes on one line, `outer: cause: root`, each cause once: a
/// cause whose text the message already holds (a library that prints its source in
/// its own message) is not repeated.
///
/// ```
/// let io = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
/// // A message that holds its source's text, over that source.
/// let err = anyhow::Error::new(io())
///     .context(format!("bind 127.0.0.1:80: {}", io()))
///     .context("the dashboard stopped");
/// let text = riffle_cli::app::error_chain(&err);
/// assert_eq!(text, "the dashboard stopped: bind 127.0.0.1:80: Address already in use");
/// ```
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
