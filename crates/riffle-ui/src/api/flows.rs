//! `/api/flows`: runs of Flows (`riffle flow run`), and one run's processors with
//! their replicas, backlog and totals over time.
//!
//! A flow run records a sample of each processor every second while it runs (see
//! `riffle_pipeline::metadata`'s "Flow runs"). Its status is read from that: a run
//! with an end is `stopped` (or `failed`, with the error); one without an end is
//! `running` while its samples keep coming and `lost` once they stopped for
//! [`LOST_AFTER`] (its process was killed before it could record its end).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use riffle_pipeline::metadata::{FlowRunRecord, FlowSampleRecord, RunOwner};
use serde::{Deserialize, Serialize};

use super::params::{Params, hex_id};
use crate::Dashboard;
use crate::dashboard::Inner;
use crate::error::{ApiError, ApiResult};

/// How long a flow run without an end may go without a sample before it is taken
/// for lost (ten missed samples).
pub const LOST_AFTER_MS: i64 = 10_000;

/// The most points of a processor's series one answer carries: a longer run is
/// thinned to evenly spaced samples, always keeping its first and latest.
pub const MAX_POINTS: usize = 600;

/// A flow run as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowRunSummary {
    pub id: String,
    pub flow: String,
    /// `running`, `stopped`, `failed` or `lost` (see the [module docs](self)).
    pub status: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub last_sample_ms: Option<i64>,
    /// To the end, or to now for a run still going, or to its last sample.
    pub duration_ms: i64,
    /// The host it runs on.
    pub host: String,
    /// Its HTTP listener's address.
    pub addr: String,
    pub error: Option<String>,
}

impl FlowRunSummary {
    fn new(r: FlowRunRecord, now_ms: i64) -> Self {
        let owner = RunOwner::parse(&r.owner);
        let heard = r.last_sample_ms.unwrap_or(r.started_ms).max(r.started_ms);
        let status = match (&r.ended_ms, &r.error) {
            (Some(_), Some(_)) => "failed",
            (Some(_), None) => "stopped",
            (None, _) if owner.as_ref().is_some_and(RunOwner::is_gone) => "lost",
            (None, _) if now_ms - heard > LOST_AFTER_MS => "lost",
            (None, _) => "running",
        };
        let end = match (r.ended_ms, status) {
            (Some(end), _) => end,
            (None, "running") => now_ms,
            (None, _) => heard,
        };
        Self {
            status: status.to_string(),
            duration_ms: (end - r.started_ms).max(0),
            host: owner.map(|o| o.host).unwrap_or_default(),
            id: r.id,
            flow: r.flow,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            last_sample_ms: r.last_sample_ms,
            addr: r.addr,
            error: r.error,
        }
    }
}

/// `GET /api/flows`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowRunList {
    pub runs: Vec<FlowRunSummary>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) async fn list(
    State(dashboard): State<Dashboard>,
    params: Params,
) -> ApiResult<Json<FlowRunList>> {
    params.only(&["flow", "limit"])?;
    let flow = params.text("flow");
    let limit = params.count("limit", 50, 500)?;
    let runs = dashboard
        .read(move |d| Ok(d.metadata.flow_runs(flow.as_deref(), limit)?))
        .await?;
    let now = now_ms();
    Ok(Json(FlowRunList {
        runs: runs
            .into_iter()
            .map(|r| FlowRunSummary::new(r, now))
            .collect(),
    }))
}

/// A processor's series: one entry per sample kept, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub at_ms: Vec<i64>,
    pub replicas: Vec<u64>,
    /// `null` where the source could not say.
    pub backlog: Vec<Option<u64>>,
    pub items_in: Vec<u64>,
    pub items_out: Vec<u64>,
    pub errors: Vec<u64>,
    pub in_flight: Vec<i64>,
}

/// One processor of a flow run: its latest numbers and its series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowProcessor {
    pub id: String,
    /// `consumer`, `collector` or `endpoint`.
    pub kind: String,
    pub replicas: u64,
    pub backlog: Option<u64>,
    pub items_in: u64,
    pub items_out: u64,
    pub errors: u64,
    pub dead_letters: u64,
    pub in_flight: i64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Samples stored for it.
    pub samples: usize,
    pub series: Series,
}

/// `GET /api/flows/{run}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowRunDetail {
    pub run: FlowRunSummary,
    /// By id.
    pub processors: Vec<FlowProcessor>,
    /// Whether some series were thinned to [`MAX_POINTS`].
    pub thinned: bool,
}

pub(super) async fn detail(
    State(dashboard): State<Dashboard>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> ApiResult<Json<FlowRunDetail>> {
    params.only(&[])?;
    let run_id = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))?;
    hex_id("flow run id", &run_id)?;
    Ok(Json(
        dashboard.read(move |d| flow_detail(d, &run_id)).await?,
    ))
}

fn flow_detail(d: &Inner, run_id: &str) -> ApiResult<FlowRunDetail> {
    let store = d.metadata.as_ref();
    let run = store.flow_run(run_id)?;
    let samples = store.flow_samples(&run.id)?;
    let mut by_processor: BTreeMap<String, Vec<FlowSampleRecord>> = BTreeMap::new();
    for s in samples {
        by_processor.entry(s.processor.clone()).or_default().push(s);
    }
    let mut thinned = false;
    let processors = by_processor
        .into_iter()
        .filter_map(|(id, samples)| {
            let last = samples.last()?.clone();
            let kept = thin(&samples, MAX_POINTS);
            thinned |= kept.len() < samples.len();
            let mut series = Series::default();
            for s in kept {
                series.at_ms.push(s.at_ms);
                series.replicas.push(s.replicas);
                series.backlog.push(s.backlog);
                series.items_in.push(s.items_in);
                series.items_out.push(s.items_out);
                series.errors.push(s.errors);
                series.in_flight.push(s.in_flight);
            }
            Some(FlowProcessor {
                id,
                kind: last.kind,
                replicas: last.replicas,
                backlog: last.backlog,
                items_in: last.items_in,
                items_out: last.items_out,
                errors: last.errors,
                dead_letters: last.dead_letters,
                in_flight: last.in_flight,
                latency_p50_ms: last.latency_p50_ms,
                latency_p99_ms: last.latency_p99_ms,
                samples: samples.len(),
                series,
            })
        })
        .collect();
    Ok(FlowRunDetail {
        run: FlowRunSummary::new(run, now_ms()),
        processors,
        thinned,
    })
}

/// At most `max` (at least 2) of `samples`, evenly spaced, the first and last kept.
fn thin(samples: &[FlowSampleRecord], max: usize) -> Vec<&FlowSampleRecord> {
    let max = max.max(2);
    if samples.len() <= max {
        return samples.iter().collect();
    }
    let last = samples.len() - 1;
    (0..max).map(|i| &samples[i * last / (max - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<FlowSampleRecord> {
        (0..n)
            .map(|i| FlowSampleRecord::new("r", i as i64, "p", "consumer"))
            .collect()
    }

    #[test]
    fn thinning_keeps_the_first_and_last_and_spaces_the_rest() {
        let all = samples(1001);
        let kept = thin(&all, 11);
        let at: Vec<i64> = kept.iter().map(|s| s.at_ms).collect();
        assert_eq!(at, [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
        assert_eq!(thin(&samples(5), 11).len(), 5);
        assert_eq!(thin(&samples(3), 0).len(), 2);
    }

    #[test]
    fn a_run_without_an_end_is_running_until_its_samples_stop() {
        let mut r = FlowRunRecord::starting("shop", "127.0.0.1:8000");
        r.started_ms = 1_000;
        r.last_sample_ms = Some(5_000);
        // This process's own run: alive, so only the samples' age counts.
        assert_eq!(FlowRunSummary::new(r.clone(), 6_000).status, "running");
        let lost = FlowRunSummary::new(r.clone(), 5_000 + LOST_AFTER_MS + 1);
        assert_eq!((lost.status.as_str(), lost.duration_ms), ("lost", 4_000));
        r.ended_ms = Some(7_000);
        assert_eq!(FlowRunSummary::new(r.clone(), 99_000).status, "stopped");
        r.error = Some("the sink refused".into());
        let failed = FlowRunSummary::new(r, 99_000);
        assert_eq!(
            (failed.status.as_str(), failed.duration_ms),
            ("failed", 6_000)
        );
    }
}
