//! `/api/runs`: the run list, one run with its DAG, and one step run in full.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use riffle_pipeline::metadata::{Direction, MetadataStore, RunRecord, StepRunRecord};
use riffle_pipeline::{RunStatus, StepStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::artifacts::ArtifactView;
use super::params::{Params, hex_id};
use crate::Dashboard;
use crate::catalog::PipelineDefinition;
use crate::dashboard::Inner;
use crate::error::{ApiError, ApiResult};
use crate::listing::{RunFilter, RunRow};

/// A run as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: String,
    pub pipeline_id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The run's logical time, `YYYY-MM-DD HH:MM:SS`.
    pub runtime: String,
    pub environment: String,
    /// The one step run with `--job`, if any.
    pub only_step: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// `finished_ms - started_ms`, or so far for a run still going.
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// Step runs recorded.
    pub steps: u32,
    /// Step runs whose output came from the cache.
    pub cache_hits: u32,
    pub failed_steps: u32,
}

impl RunSummary {
    pub(crate) fn new(row: RunRow) -> Self {
        let r = row.run;
        Self {
            duration_ms: duration(
                Some(r.started_ms),
                r.finished_ms,
                r.status == RunStatus::Running,
            ),
            id: r.id,
            pipeline_id: r.pipeline_id,
            status: r.status.as_str().to_string(),
            runtime: r.runtime,
            environment: r.environment,
            only_step: r.only_step,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            error: r.error,
            steps: row.steps,
            cache_hits: row.cache_hits,
            failed_steps: row.failed_steps,
        }
    }
}

fn duration(start: Option<i64>, end: Option<i64>, running: bool) -> Option<i64> {
    match (start, end) {
        (Some(s), Some(e)) => Some((e - s).max(0)),
        (Some(s), None) if running => Some((riffle_now_ms() - s).max(0)),
        _ => None,
    }
}

fn riffle_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `GET /api/runs`: a page of runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunList {
    /// How many runs match the filters.
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
    pub runs: Vec<RunSummary>,
}

pub(super) async fn list(
    State(dashboard): State<Dashboard>,
    params: Params,
) -> ApiResult<Json<RunList>> {
    params.only(&["pipeline", "status", "from", "to", "limit", "offset"])?;
    let filter = RunFilter {
        pipeline: params.text("pipeline"),
        status: params.status("status")?,
        from_ms: params.day_ms("from", 0)?,
        until_ms: params.day_ms("to", 1)?,
        limit: params.count("limit", 50, 500)?,
        offset: params.count("offset", 0, u32::MAX)?,
    };
    let page = dashboard
        .read(move |d| {
            d.listing
                .runs(d.metadata.as_ref(), &filter)
                .map(|p| (p, filter))
        })
        .await?;
    let (page, filter) = page;
    Ok(Json(RunList {
        total: page.total,
        limit: filter.limit,
        offset: filter.offset,
        runs: page.rows.into_iter().map(RunSummary::new).collect(),
    }))
}

/// An input of a step run: the step it came from and the artifact's hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputRef {
    pub name: String,
    pub hash: String,
}

/// A step of a run, as the DAG and the timeline show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepView {
    /// The step run's id; `None` for a step of the definition that has no step run.
    pub step_run_id: Option<i64>,
    pub step_id: String,
    /// A step run's status, or `pending` (the run is going and has not reached it) or
    /// `not_run` (the run ended without it).
    pub status: String,
    pub attempts: u32,
    pub cache_key: Option<String>,
    pub cache_hit: bool,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// The output artifact's hash.
    pub output: Option<String>,
    pub inputs: Vec<InputRef>,
    /// Parameters by name, as JSON.
    pub params: BTreeMap<String, Value>,
}

/// An edge of a run's DAG.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DagEdge {
    pub from: String,
    pub to: String,
    /// `data` (the step reads the other's output) or `order` (it only runs after it).
    pub kind: String,
}

/// `GET /api/runs/{run}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunDetail {
    pub run: RunSummary,
    /// The environment's config values (never secrets).
    pub config: Value,
    pub steps: Vec<StepView>,
    pub edges: Vec<DagEdge>,
    /// Whether the pipeline is registered with the binary serving the dashboard (then
    /// steps it never reached and `after` edges are known too).
    pub registered: bool,
}

fn path_text(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))
}

pub(super) async fn detail(
    State(dashboard): State<Dashboard>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> ApiResult<Json<RunDetail>> {
    params.only(&[])?;
    let run_id = path_text(path)?;
    hex_id("run id", &run_id)?;
    Ok(Json(dashboard.read(move |d| run_detail(d, &run_id)).await?))
}

fn step_view(store: &dyn MetadataStore, s: &StepRunRecord) -> ApiResult<StepView> {
    let edges = store.edges_of_step_run(s.id)?;
    let params = store
        .step_params(s.id)?
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            (k, value)
        })
        .collect();
    Ok(StepView {
        step_run_id: Some(s.id),
        step_id: s.step_id.clone(),
        status: s.status.as_str().to_string(),
        attempts: s.attempts,
        cache_key: s.cache_key.clone(),
        cache_hit: s.cache_hit,
        started_ms: s.started_ms,
        finished_ms: s.finished_ms,
        duration_ms: duration(s.started_ms, s.finished_ms, s.status == StepStatus::Running),
        error: s.error.clone(),
        output: s.output_hash.clone().or_else(|| {
            edges
                .iter()
                .find(|e| e.direction == Direction::Output)
                .map(|e| e.artifact_hash.clone())
        }),
        inputs: edges
            .iter()
            .filter(|e| e.direction == Direction::Input)
            .map(|e| InputRef {
                name: e.name.clone(),
                hash: e.artifact_hash.clone(),
            })
            .collect(),
        params,
    })
}

fn summary_of(run: RunRecord, steps: &[StepRunRecord]) -> RunSummary {
    RunSummary::new(RunRow {
        steps: steps.len() as u32,
        cache_hits: steps.iter().filter(|s| s.cache_hit).count() as u32,
        failed_steps: steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
            .count() as u32,
        run,
    })
}

fn run_detail(d: &Inner, run_id: &str) -> ApiResult<RunDetail> {
    let store = d.metadata.as_ref();
    let run = store.run(run_id)?;
    let records = store.step_runs(&run.id)?;
    let mut steps = records
        .iter()
        .map(|s| step_view(store, s))
        .collect::<ApiResult<Vec<_>>>()?;
    let definition = d.catalog.pipeline_definition(&run.pipeline_id);
    let config = serde_json::from_str(&run.config).unwrap_or(Value::String(run.config.clone()));
    let running = run.status == RunStatus::Running;
    let only_step = run.only_step.clone();
    let summary = summary_of(run, &records);
    if let Some(def) = definition
        && only_step.is_none()
    {
        add_unreached_steps(&mut steps, def, running);
    }
    let edges = dag_edges(&steps, definition);
    Ok(RunDetail {
        run: summary,
        config,
        steps,
        edges,
        registered: definition.is_some(),
    })
}

/// Adds the definition's steps that have no step run, as `pending` or `not_run`.
fn add_unreached_steps(steps: &mut Vec<StepView>, def: &PipelineDefinition, running: bool) {
    let present: BTreeSet<String> = steps.iter().map(|s| s.step_id.clone()).collect();
    for spec in def.steps.iter().filter(|s| !present.contains(&s.id)) {
        steps.push(StepView {
            step_run_id: None,
            step_id: spec.id.clone(),
            status: if running { "pending" } else { "not_run" }.to_string(),
            attempts: 0,
            cache_key: None,
            cache_hit: false,
            started_ms: None,
            finished_ms: None,
            duration_ms: None,
            error: None,
            output: None,
            inputs: Vec::new(),
            params: BTreeMap::new(),
        });
    }
}

/// The DAG's edges between the run's steps: recorded inputs (lineage names the step an
/// input came from) plus, when the pipeline is registered, its inputs and `after`s.
fn dag_edges(steps: &[StepView], def: Option<&PipelineDefinition>) -> Vec<DagEdge> {
    let present: BTreeSet<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
    let mut edges = BTreeSet::new();
    let mut add = |from: &str, to: &str, kind: &str| {
        if from != to && present.contains(from) && present.contains(to) {
            edges.insert(DagEdge {
                from: from.to_string(),
                to: to.to_string(),
                kind: kind.to_string(),
            });
        }
    };
    for s in steps {
        for input in &s.inputs {
            add(&input.name, &s.step_id, "data");
        }
    }
    if let Some(def) = def {
        for spec in &def.steps {
            for from in &spec.inputs {
                add(from, &spec.id, "data");
            }
            for from in &spec.after {
                add(from, &spec.id, "order");
            }
        }
    }
    edges.into_iter().collect()
}

/// A log line of a step run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogView {
    pub at_ms: i64,
    pub level: String,
    pub message: String,
}

/// An input artifact of a step run, with the name it was read under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamedArtifact {
    pub name: String,
    pub artifact: Option<ArtifactView>,
    pub hash: String,
}

/// `GET /api/runs/{run}/steps/{step}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepDetail {
    pub run_id: String,
    pub pipeline_id: String,
    pub step: StepView,
    pub logs: Vec<LogView>,
    pub metrics: BTreeMap<String, f64>,
    pub inputs: Vec<NamedArtifact>,
    pub output: Option<ArtifactView>,
}

pub(super) async fn step(
    State(dashboard): State<Dashboard>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Params,
) -> ApiResult<Json<StepDetail>> {
    params.only(&[])?;
    let (run_id, step_id) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))?;
    hex_id("run id", &run_id)?;
    Ok(Json(
        dashboard
            .read(move |d| step_detail(d, &run_id, &step_id))
            .await?,
    ))
}

fn step_detail(d: &Inner, run_id: &str, step_id: &str) -> ApiResult<StepDetail> {
    let store = d.metadata.as_ref();
    let run = store.run(run_id)?;
    let record = store
        .step_runs(&run.id)?
        .into_iter()
        .find(|s| s.step_id == step_id)
        .ok_or_else(|| ApiError::NotFound(format!("run {} has no step run {step_id:?}", run.id)))?;
    let step = step_view(store, &record)?;
    let logs = store
        .step_logs(record.id)?
        .into_iter()
        .map(|l| LogView {
            at_ms: l.at_ms,
            level: l.level,
            message: l.message,
        })
        .collect();
    let metrics = store.step_metrics(record.id)?.into_iter().collect();
    let artifact = |hash: &str| -> ApiResult<Option<ArtifactView>> {
        match d.listing.artifact(store, hash) {
            Ok(a) => Ok(Some(ArtifactView::from(a))),
            Err(ApiError::Store(riffle_pipeline::Error::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let inputs = step
        .inputs
        .iter()
        .map(|i| {
            Ok(NamedArtifact {
                name: i.name.clone(),
                artifact: artifact(&i.hash)?,
                hash: i.hash.clone(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let output = match &step.output {
        Some(h) => artifact(h)?,
        None => None,
    };
    Ok(StepDetail {
        run_id: run.id,
        pipeline_id: run.pipeline_id,
        step,
        logs,
        metrics,
        inputs,
        output,
    })
}
