//! Batch pipelines: steps, a cache that is never wrong, artifacts, and a metadata store
//! with lineage.
//!
//! A [`Pipeline`] is a graph of steps. Each step is a Rust function from the outputs of
//! the steps it reads to a new value; those data dependencies are the graph's edges
//! (a step may also run [`after`](StepBuilder::after) another without reading it).
//! A pipeline has an id, an optional [`Schedule`], and a [`Config`] per environment.
//!
//! An [`Executor`] runs it. Steps whose inputs are ready run in parallel on a bounded
//! pool. Before a step runs, its cache key is computed (see [`cache`]) from the step's
//! identity, code version, parameters and the content hashes of its inputs; when the
//! [`metadata`] store knows the key and the [`ArtifactStore`] still holds the bytes
//! with the right hash, the stored output is reused. Every output is an artifact,
//! encoded with postcard and named by its BLAKE3 hash ([`codec`]). Every run, step
//! run, artifact and lineage edge is recorded in the metadata store (SQLite by default,
//! Postgres by URL), which the CLI and the dashboard read through
//! [`metadata::MetadataStore`] and [`lineage::lineage`].
//!
//! ```
//! use riffle_pipeline::{Pipeline, ProjectStores, RunOptions, RunStatus, StepContext, StepResult};
//!
//! fn load(_ctx: &StepContext, (): ()) -> StepResult<Vec<f64>> {
//!     Ok(vec![4.0, 8.0, 15.0, 16.0, 23.0, 42.0])
//! }
//!
//! fn mean(_ctx: &StepContext, xs: Vec<f64>) -> StepResult<f64> {
//!     if xs.is_empty() {
//!         return Err("no values to average".into());
//!     }
//!     Ok(xs.iter().sum::<f64>() / xs.len() as f64)
//! }
//!
//! let mut p = Pipeline::builder("numbers");
//! let xs = p.step("load", (), load).version("1").output();
//! p.step("mean", &xs, mean).version("1");
//! let pipeline = p.build()?;
//!
//! let project = tempfile::tempdir().unwrap();
//! let executor = ProjectStores::local(project.path()).executor()?;
//! let report = executor.run(&pipeline, RunOptions::default())?;
//! assert_eq!(report.status, RunStatus::Succeeded);
//! assert_eq!(executor.output::<f64>(&report, "mean")?, 18.0);
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```

pub mod artifact_store;
pub mod cache;
pub mod codec;
pub mod config;
mod dag;
pub mod dynamic;
pub mod error;
pub mod executor;
mod ids;
pub mod lineage;
pub mod metadata;
pub mod pipeline;
pub mod project;
pub mod runtime;
pub mod schedule;
pub mod step;

pub use artifact_store::ArtifactStore;
pub use cache::{CacheKey, CacheKeyBuilder};
pub use codec::ContentHash;
pub use config::{Config, ResolvedConfig};
pub use error::{Error, Result};
pub use executor::{Executor, RunObserver, RunOptions, RunReport, StepReport};
pub use ids::check_id;
pub use metadata::{MetadataStore, RunStatus, StepStatus};
pub use pipeline::{Artifact, Inputs, Output, Pipeline, PipelineBuilder, StepBuilder, StepSpec};
pub use project::ProjectStores;
pub use runtime::Runtime;
pub use schedule::Schedule;
pub use step::{CancelToken, Resources, StepContext, StepError, StepResult};
