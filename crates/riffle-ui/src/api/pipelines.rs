//! `/api/pipelines`: every pipeline the store has seen or the binary registered, with
//! its schedule and its latest runs.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::params::Params;
use super::runs::RunSummary;
use crate::Dashboard;
use crate::dashboard::Inner;
use crate::error::ApiResult;
use crate::listing::{RunFilter, RunRow};

/// Runs shown per pipeline.
const LAST_RUNS: u32 = 10;

/// A pipeline as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PipelineSummary {
    pub id: String,
    pub about: String,
    pub schedule: Option<String>,
    /// Registered with the binary serving the dashboard.
    pub registered: bool,
    /// Steps in the registered definition.
    pub steps: Option<u32>,
    pub runs_total: u64,
    /// The latest runs, newest first.
    pub last_runs: Vec<RunSummary>,
}

/// `GET /api/pipelines`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineSummary>,
}

pub(super) async fn list(
    State(dashboard): State<Dashboard>,
    params: Params,
) -> ApiResult<Json<PipelineList>> {
    params.only(&[])?;
    Ok(Json(dashboard.read(pipelines).await?))
}

fn pipelines(d: &Inner) -> ApiResult<PipelineList> {
    let store = d.metadata.as_ref();
    let counts = d.listing.run_counts(store)?;
    let mut out: BTreeMap<String, PipelineSummary> = BTreeMap::new();
    for p in store.pipelines()? {
        out.insert(
            p.id.clone(),
            PipelineSummary {
                id: p.id,
                about: p.about,
                schedule: p.schedule,
                registered: false,
                steps: None,
                runs_total: 0,
                last_runs: Vec::new(),
            },
        );
    }
    for def in d.catalog.pipelines() {
        let entry = out
            .entry(def.id.clone())
            .or_insert_with(|| PipelineSummary {
                id: def.id.clone(),
                about: String::new(),
                schedule: None,
                registered: true,
                steps: None,
                runs_total: 0,
                last_runs: Vec::new(),
            });
        entry.registered = true;
        entry.steps = Some(def.steps.len() as u32);
        entry.about = def.about.clone();
        entry.schedule = def.schedule.clone();
    }
    for p in out.values_mut() {
        p.runs_total = counts.get(&p.id).copied().unwrap_or(0);
        if p.runs_total > 0 {
            let filter = RunFilter {
                pipeline: Some(p.id.clone()),
                limit: LAST_RUNS,
                ..RunFilter::default()
            };
            p.last_runs = d
                .listing
                .runs(store, &filter)?
                .rows
                .into_iter()
                .map(|row: RunRow| RunSummary::new(row))
                .collect();
        }
    }
    Ok(PipelineList {
        pipelines: out.into_values().collect(),
    })
}
