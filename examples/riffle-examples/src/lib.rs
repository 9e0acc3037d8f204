//! The bundled examples: the dataflows and pipelines the standalone `riffle` binary
//! knows by name. Each one is also a test of the crate it shows.
//!
//! This crate depends only on the libraries (`riffle`, `riffle-pipeline`, `riffle-connectors`); the `riffle`
//! binary registers what [`dataflows()`], [`flows::flows`] and [`pipelines::pipelines`] list
//! with its app entry.

pub mod dataflows;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod flows;
pub mod kafka;
pub mod nats;
pub mod objects;
pub mod pipelines;
pub mod postgres;
pub mod postgres_cdc;
pub mod rabbitmq;
pub mod redis;
pub mod sqs;
pub mod tables;
pub mod tls;

pub use dataflows::{DataflowExample, dataflows};
