//! The dashboard: a web page over a project's run history, served by the `riffle`
//! binary itself (`riffle ui`), with nothing else to install.
//!
//! Data enters from the stores and leaves as JSON. A [`Dashboard`] holds the metadata
//! store (SQLite by default, Postgres by URL), optionally the artifact store (for
//! previews), and a [`Catalog`] of what the binary registered (pipeline definitions and
//! dataflow graphs, as plain data). A [`Server`] answers:
//!
//! - the JSON [`api`] under `/api/`, described by `/api/openapi.json`;
//! - the page at `/`, whose HTML, CSS and JavaScript are embedded in the binary
//!   ([`assets`]) and read only that API: runs and pipelines, a run's DAG laid out in
//!   layers with its steps coloured by status, a Gantt timeline of its steps, artifacts
//!   with previews and lineage graphs, dataflow graphs, runs of Flows with each
//!   processor's replicas and backlog over time as line charts, and live updates of
//!   runs in progress (the page polls the API while a run is going).
//!
//! Nothing in it writes: every route is a `GET`, and the [`guard`] refuses the rest,
//! checks the optional bearer token, and keeps the page to its own scripts. No request
//! runs project code or opens a path it was given: previews read artifacts through the
//! artifact store by content hash.
//!
//! ```no_run
//! use riffle_ui::{Dashboard, Server};
//!
//! # async fn serve() -> Result<(), riffle_ui::StartError> {
//! let dashboard = Dashboard::open(".riffle/metadata.db")?;
//! let server = Server::bind(dashboard, "127.0.0.1:8080".parse().unwrap(), None).await?;
//! println!("dashboard on http://{}", server.local_addr());
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

pub mod api;
pub mod assets;
pub mod catalog;
mod dashboard;
pub mod error;
pub mod guard;
pub mod listing;
pub mod preview;
pub mod server;

pub use catalog::{Catalog, DataflowEntry, PipelineDefinition, StepDefinition};
pub use dashboard::Dashboard;
pub use error::{ApiError, StartError};
pub use guard::Guard;
pub use server::{Server, app};
