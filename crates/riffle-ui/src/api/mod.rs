//! The JSON API under `/api/`: one module per resource, all read-only.
//!
//! | route | answers |
//! |---|---|
//! | `GET /api/info` | the project's name and where its stores are |
//! | `GET /api/pipelines` | pipelines (registered or seen in the store), schedule, run count, last runs |
//! | `GET /api/runs` | runs, newest first, filtered by `pipeline`, `status`, `from`, `to`, paged by `limit`, `offset` |
//! | `GET /api/runs/{run}` | a run: its step runs (timings, attempts, cache, params, inputs, output) and the DAG's edges |
//! | `GET /api/runs/{run}/steps/{step}` | one step run: the above plus its log, metrics and artifacts |
//! | `GET /api/artifacts` | artifacts, newest first, paged |
//! | `GET /api/artifacts/{hash}` | an artifact: type, size, hash, URI, who made and read it, a preview |
//! | `GET /api/artifacts/{hash}/lineage` | the lineage graph up and down |
//! | `GET /api/dataflows` and `/api/dataflows/{name}` | registered dataflows and their graphs |
//! | `GET /api/flows` | runs of Flows (`riffle flow run`), newest first, filtered by `flow`, up to `limit` |
//! | `GET /api/flows/{run}` | a flow run: each processor's latest numbers and its replicas, backlog and totals over time |
//! | `GET /api/openapi.json` | the OpenAPI 3.1 document of all of this |
//!
//! Every handler reads the stores on tokio's blocking pool (see
//! [`Dashboard::read`](crate::Dashboard)), and every failure is an
//! [`ApiError`](crate::ApiError) answered as JSON.

mod artifacts;
mod dataflows;
mod flows;
mod params;
mod pipelines;
mod runs;

use axum::Router;
use axum::routing::get;

pub use artifacts::{ArtifactDetail, ArtifactView, LineageGraph};
pub use dataflows::DataflowSummary;
pub use flows::{
    FlowProcessor, FlowRunDetail, FlowRunList, FlowRunSummary, LOST_AFTER_MS, MAX_POINTS, Series,
};
pub use pipelines::PipelineSummary;
pub use runs::{DagEdge, RunDetail, RunSummary, StepDetail, StepView};

use crate::Dashboard;
use crate::error::ApiError;

/// The OpenAPI document, written by hand beside the routes it describes.
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// The API's routes (without the authentication layer, which wraps the whole app).
pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/api/info", get(info))
        .route("/api/openapi.json", get(openapi))
        .route("/api/pipelines", get(pipelines::list))
        .route("/api/runs", get(runs::list))
        .route("/api/runs/{run}", get(runs::detail))
        .route("/api/runs/{run}/steps/{step}", get(runs::step))
        .route("/api/artifacts", get(artifacts::list))
        .route("/api/artifacts/{hash}", get(artifacts::detail))
        .route("/api/artifacts/{hash}/lineage", get(artifacts::lineage))
        .route("/api/dataflows", get(dataflows::list))
        .route("/api/dataflows/{name}", get(dataflows::detail))
        .route("/api/flows", get(flows::list))
        .route("/api/flows/{run}", get(flows::detail))
        .route("/api/{*rest}", get(unknown))
}

/// `GET /api/info`
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Info {
    pub name: String,
    /// The metadata store (a path, or a URL without its password).
    pub store: String,
    /// The artifact store's URL, when previews are available.
    pub artifacts: Option<String>,
    /// Always true: no endpoint changes anything.
    pub read_only: bool,
    pub version: String,
}

async fn info(
    axum::extract::State(dashboard): axum::extract::State<Dashboard>,
) -> axum::Json<Info> {
    let inner = dashboard.inner();
    axum::Json(Info {
        name: inner.name.clone(),
        store: inner.metadata.location(),
        artifacts: inner.artifacts.as_ref().map(|a| a.url().to_string()),
        read_only: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

async fn unknown(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "there is no API endpoint {}; see /api/openapi.json",
        uri.path()
    ))
}
