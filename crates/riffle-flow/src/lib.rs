//! Flows: applications of individually scaled processors on Riffle's connectors.
//!
//! A [`Flow`] holds **processors**:
//! - a **consumer** ([`Flow::consumer`]) reads an unbounded source (a Kafka topic,
//!   a NATS stream, a Redis stream, an SQS queue, a folder of new files), calls a
//!   function on each item and writes what it returns to a sink, acknowledging a
//!   message only after the sink has what it made ([`consumer`]);
//! - a **collector** ([`Flow::collector`]) is an HTTP route whose typed JSON
//!   body goes through a function into a sink, answered once the sink has it;
//! - a **service** ([`Flow::service`]) groups **endpoints**: typed requests (path,
//!   query, body) answered with typed responses ([`http`]).
//!
//! Sources and sinks are the same as a Dataflow's (`riffle::sources`,
//! `riffle::sinks`, the `riffle-connectors` crate). A consumer is a pool of
//! replicas, each reading its own partitions, sized by hand or by its
//! [`autoscale`]r from the source's backlog; every processor writes through a
//! [`SinkWriter`] that gives each sink partition one writer and tells every
//! caller when its items are durable. [`Flow::run`] runs everything in one
//! process, with `/metrics` ([`metrics`]) beside the routes, until a stop, and
//! drains on the way out ([`run`]).
//!
//! ```
//! use riffle::sinks::TestingSink;
//! use riffle::sources::TestingSource;
//! use riffle_flow::{Flow, RunOptions};
//!
//! let mut flow = Flow::new("shop");
//! let big = TestingSink::new();
//! // Keep big orders, drop the rest; two replicas, each its own partitions.
//! flow.consumer("big_orders", TestingSource::new(vec![5, 50, 500]), big.clone(), |amount: u32| {
//!     Ok::<_, String>((amount >= 50).then_some(amount))
//! })?
//! .replicas(2);
//! flow.run(RunOptions { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() })?;
//! assert_eq!(big.take_sorted(), [50, 500]);
//! # Ok::<(), riffle_flow::FlowError>(())
//! ```

pub mod autoscale;
pub mod consumer;
mod context;
pub mod dependency;
pub mod error;
mod flow;
mod handler;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod plan;
pub mod primitives;
pub mod retry;
pub mod run;
pub mod socket;
pub mod writer;

pub use autoscale::{Autoscale, HttpScaling};
pub use axum::http::{Method, StatusCode};
pub use consumer::ConsumerOptions;
pub use context::FlowContext;
pub use dependency::{Dependency, Scope};
pub use error::{FlowError, Result};
pub use flow::{Flow, ProcessorInfo, Service, Unit};
pub use http::HttpError;
pub use run::{RunOptions, RunSummary, RunningFlow};
/// Request and response types of endpoints derive `schemars::JsonSchema`.
pub use schemars;
pub use socket::Socket;
pub use writer::SinkWriter;
