//! The project around the code: what BigFlow adds to a set of workflows.
//!
//! A Riffle project is a git repository holding a binary built on the app entry
//! (`riffle_cli::App`). This crate holds what turns that repository into something
//! deployed, one module per job:
//!
//! - [`version`]: release numbers and snapshot versions, as text;
//! - [`build`]: the project's tests (a JUnit report) and its binary, version stamped in;
//! - [`git`]: the project's version read from git tags, and tagging a release;
//! - [`dags`]: Airflow DAG files from the project's scheduled pipelines;
//! - [`image`]: a container image of the project's binary, built without Docker, and
//!   its push to an OCI registry;
//! - [`manifests`]: Kubernetes manifests that run a dataflow as a cluster;
//! - [`scaffold`]: a new project (`riffle new`);
//! - [`deploy`]: `riffle.toml`'s environments and the copy of DAG files to one.
//!
//! Nothing here runs a pipeline; the CLI calls these functions for `riffle
//! project-version`, `riffle release` and `riffle build-dags`.
//!
//! ```
//! use riffle_project::version::{ProjectVersion, Release};
//!
//! let at_tag = ProjectVersion {
//!     tag: Some("v1.4".into()),
//!     commits_since_tag: 0,
//!     commit: "1a2b3c4d5e6f7a8b".into(),
//!     dirty: None,
//! };
//! assert_eq!(at_tag.version(), "1.4");
//! assert_eq!(Release::parse_tag("v1.4").unwrap().next().tag(), "v1.5");
//! ```

pub mod build;
pub mod dags;
pub mod deploy;
pub mod error;
pub mod flow_manifests;
pub mod git;
pub mod image;
pub mod manifests;
pub mod scaffold;
pub mod version;

pub use error::{Error, Result};
