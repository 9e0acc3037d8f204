//! The `riffle` command line, as a library.
//!
//! Rust code cannot be loaded by name at run time, so a Riffle project is a binary of
//! its own: its `main` builds an [`App`], registers its dataflows (and, later, its
//! pipelines and flows) and calls [`App::main`]. It then answers every `riffle`
//! subcommand: `run`, `inspect`, `bench`, `runs`, `cache`, `lineage`, `udf`, ...
//! The standalone `riffle` binary is this same entry with the bundled examples
//! registered.
//!
//! ```no_run
//! use riffle::{Dataflow, sinks::StdOutSink, sources::TestingSource};
//! use riffle_cli::App;
//!
//! fn hello(_ctx: &riffle_cli::DataflowContext) -> anyhow::Result<Dataflow> {
//!     let flow = Dataflow::new("hello");
//!     flow.input("inp", TestingSource::new(vec!["hello".to_string()]))?
//!         .output("out", StdOutSink::new())?;
//!     Ok(flow)
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     App::new("my-project").dataflow("hello", "Greets the world", hello).main()
//! }
//! ```

pub mod app;
pub mod bench;
pub mod commands;

pub use app::{App, DataflowContext, FlowContext};
