//! # Riffle's streaming dataflow
//!
//! A [`Dataflow`] is a graph of steps connected by typed [`Stream`]s. You describe it
//! once (sources, operators, sinks, each with a step id), then execute it: on one
//! worker in this thread ([`run_main`]), on several threads ([`Execution::workers`]),
//! or as one process of a cluster ([`cluster_main`], [`spawn_cluster`]). Execution
//! happens on [timely dataflow](https://docs.rs/timely): every worker builds the same
//! operators and timely moves batches of items between them and between workers.
//!
//! ```
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//!
//! let flow = Dataflow::new("wordcount");
//! let counts = TestingSink::new();
//! flow.input("lines", TestingSource::new(vec!["to be or not to be".to_string()]))?
//!     .flat_map("split", |line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())?
//!     .count_final("count", |word: String| word)?
//!     .output("out", counts.clone())?;
//! riffle::run_main(&flow)?;
//! let mut counts = counts.take();
//! counts.sort();
//! assert_eq!(counts[0], ("be".to_string(), 2));
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! ## How data enters, moves and leaves
//!
//! - **Sources** ([`sources`]) are polled without blocking; a fixed-partitioned
//!   source's partitions are spread over the workers, a dynamic source has one
//!   partition per worker. Items enter in batches at the current **epoch**: epochs
//!   advance on a wall-clock interval (10 s by default), or sources assign them.
//! - **Operators** ([`operators`]) transform whole batches. Stateless ones stay on
//!   the worker that holds the item. Keyed ones route each `(key, value)` to the
//!   worker that owns the key, by a hash that is the same on every machine
//!   ([`exchange`]), and keep state per key.
//! - **Sinks** ([`sinks`]) write; a fixed-partitioned sink's partitions are each
//!   written by one worker.
//!
//! ## Errors
//!
//! Building a flow checks step ids ([`RiffleError::DuplicateStepId`]). While running,
//! a function that panics or fails stops the run everywhere and the error names the
//! step, the worker, the epoch and, where the function borrowed it, the item.

pub mod build;
pub mod cluster;
pub mod consume;
pub mod context;
pub mod data;
pub mod dataflow;
pub mod dead_letters;
pub mod duration;
pub mod error;
pub mod exchange;
pub mod operators;
pub(crate) mod origin;
pub mod recovery;
pub mod run;
pub mod sinks;
pub mod sources;
pub mod testing;
pub mod window;

pub use build::WorkerInfo;
pub use data::{Data, Key};
pub use dataflow::{Dataflow, DataflowGraph, StepInfo, Stream, Upstream};
pub use error::{Result, RiffleError};
pub use run::{Execution, cluster_main, run_main, spawn_cluster};
