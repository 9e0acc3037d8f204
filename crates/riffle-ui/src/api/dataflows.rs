//! `/api/dataflows`: the registered dataflows and the graphs `describe()` gave for them.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::params::Params;
use crate::Dashboard;
use crate::catalog::DataflowEntry;
use crate::error::{ApiError, ApiResult};

/// A dataflow as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataflowSummary {
    pub name: String,
    pub about: String,
    /// How many steps its graph has, when it could be built.
    pub steps: Option<u32>,
    pub error: Option<String>,
}

/// `GET /api/dataflows`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataflowList {
    pub dataflows: Vec<DataflowSummary>,
}

pub(super) async fn list(
    State(dashboard): State<Dashboard>,
    params: Params,
) -> ApiResult<Json<DataflowList>> {
    params.only(&[])?;
    let dataflows = dashboard
        .inner()
        .catalog
        .dataflows()
        .map(|e| DataflowSummary {
            name: e.name.clone(),
            about: e.about.clone(),
            steps: e
                .description
                .as_ref()
                .and_then(|d| d.get("steps"))
                .and_then(|s| s.as_array())
                .map(|s| s.len() as u32),
            error: e.error.clone(),
        })
        .collect();
    Ok(Json(DataflowList { dataflows }))
}

pub(super) async fn detail(
    State(dashboard): State<Dashboard>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> ApiResult<Json<DataflowEntry>> {
    params.only(&[])?;
    let name = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))?;
    dashboard
        .inner()
        .catalog
        .dataflow_entry(&name)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no dataflow named {name:?} is registered")))
}
