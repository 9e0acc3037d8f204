//! `/api/artifacts`: the artifact list, one artifact with a preview, and its lineage.
//!
//! A preview reads the artifact's bytes through the artifact store, by the content
//! hash recorded in the metadata store, and only when the artifact is small (see
//! [`MAX_PREVIEW_BYTES`]); the store checks the bytes against the hash. The recorded
//! URI is shown, never opened.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use riffle_pipeline::ContentHash;
use riffle_pipeline::metadata::{ArtifactRecord, Direction};
use serde::{Deserialize, Serialize};

use super::params::{Params, hex_id};
use crate::Dashboard;
use crate::dashboard::Inner;
use crate::error::{ApiError, ApiResult};
use crate::preview::{MAX_PREVIEW_BYTES, Preview, preview};

/// An artifact's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactView {
    /// BLAKE3 of its bytes, 64 hex digits.
    pub hash: String,
    pub size: u64,
    /// The Rust type of the value.
    pub type_name: String,
    /// Where the artifact store keeps it.
    pub uri: String,
    pub created_ms: i64,
}

impl From<ArtifactRecord> for ArtifactView {
    fn from(a: ArtifactRecord) -> Self {
        Self {
            hash: a.hash,
            size: a.size,
            type_name: a.type_name,
            uri: a.uri,
            created_ms: a.created_ms,
        }
    }
}

/// `GET /api/artifacts`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactList {
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
    pub artifacts: Vec<ArtifactView>,
}

pub(super) async fn list(
    State(dashboard): State<Dashboard>,
    params: Params,
) -> ApiResult<Json<ArtifactList>> {
    params.only(&["limit", "offset"])?;
    let limit = params.count("limit", 50, 500)?;
    let offset = params.count("offset", 0, u32::MAX)?;
    let page = dashboard
        .read(move |d| d.listing.artifacts(d.metadata.as_ref(), limit, offset))
        .await?;
    Ok(Json(ArtifactList {
        total: page.total,
        limit,
        offset,
        artifacts: page.rows.into_iter().map(ArtifactView::from).collect(),
    }))
}

/// A step run that made or read an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRef {
    pub run_id: String,
    pub pipeline_id: String,
    pub step_id: String,
    pub step_run_id: i64,
}

/// `GET /api/artifacts/{hash}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactDetail {
    pub artifact: ArtifactView,
    /// Step runs that produced it (or reused it from the cache), newest first, at most 50.
    pub produced_by: Vec<StepRef>,
    /// Step runs that read it, newest first, at most 50.
    pub read_by: Vec<StepRef>,
    pub produced_count: u64,
    pub read_count: u64,
    pub preview: Preview,
}

fn path_hash(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let hash = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))?;
    hex_id("artifact hash", &hash)?;
    Ok(hash.to_ascii_lowercase())
}

pub(super) async fn detail(
    State(dashboard): State<Dashboard>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> ApiResult<Json<ArtifactDetail>> {
    params.only(&[])?;
    let hash = path_hash(path)?;
    Ok(Json(
        dashboard.read(move |d| artifact_detail(d, &hash)).await?,
    ))
}

fn artifact_detail(d: &Inner, hash: &str) -> ApiResult<ArtifactDetail> {
    let store = d.metadata.as_ref();
    let artifact = d.listing.artifact(store, hash)?;
    let edges = store.edges_of_artifact(&artifact.hash)?;
    let refs = |direction: Direction| -> Vec<StepRef> {
        edges
            .iter()
            .rev()
            .filter(|e| e.direction == direction)
            .take(50)
            .map(|e| StepRef {
                run_id: e.run_id.clone(),
                pipeline_id: e.pipeline_id.clone(),
                step_id: e.step_id.clone(),
                step_run_id: e.step_run_id,
            })
            .collect()
    };
    let count = |direction: Direction| edges.iter().filter(|e| e.direction == direction).count();
    Ok(ArtifactDetail {
        produced_by: refs(Direction::Output),
        read_by: refs(Direction::Input),
        produced_count: count(Direction::Output) as u64,
        read_count: count(Direction::Input) as u64,
        preview: artifact_preview(d, &artifact),
        artifact: artifact.into(),
    })
}

fn artifact_preview(d: &Inner, artifact: &ArtifactRecord) -> Preview {
    let unavailable = |reason: String| Preview::Unavailable { reason };
    let Some(store) = &d.artifacts else {
        return unavailable("the dashboard was started without the artifact store".into());
    };
    if artifact.size > MAX_PREVIEW_BYTES {
        return unavailable(format!(
            "the artifact is {} bytes; previews are for artifacts up to {MAX_PREVIEW_BYTES} bytes",
            artifact.size
        ));
    }
    let Ok(hash) = artifact.hash.parse::<ContentHash>() else {
        return unavailable("the recorded hash is not a content hash".into());
    };
    match store.get(&hash) {
        Ok(Some(bytes)) => preview(&bytes, &artifact.type_name),
        Ok(None) => unavailable(format!(
            "the artifact store {} no longer holds these bytes (or they no longer match their hash)",
            store.url()
        )),
        Err(e) => unavailable(e.to_string()),
    }
}

/// A node of a lineage graph: a step run or an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LineageNode {
    /// `artifact:HASH` or `step:STEP_RUN_ID`.
    pub id: String,
    /// `artifact` or `step`.
    pub kind: String,
    /// The step's `pipeline.step`, or the artifact's type.
    pub label: String,
    /// For artifacts: the hash. For steps: the run id.
    pub key: String,
    /// For steps: the step id.
    pub step_id: Option<String>,
    /// Steps away from the artifact asked about: negative upstream, positive downstream.
    pub depth: i64,
}

/// An edge of a lineage graph (artifact -> step that read it, step -> its output).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineageEdgeView {
    pub from: String,
    pub to: String,
}

/// `GET /api/artifacts/{hash}/lineage`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LineageGraph {
    pub artifact: ArtifactView,
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdgeView>,
    /// How many steps were found upstream and downstream.
    pub upstream_steps: u64,
    pub downstream_steps: u64,
}

pub(super) async fn lineage(
    State(dashboard): State<Dashboard>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> ApiResult<Json<LineageGraph>> {
    params.only(&[])?;
    let hash = path_hash(path)?;
    Ok(Json(
        dashboard.read(move |d| lineage_graph(d, &hash)).await?,
    ))
}

/// Artifacts named in a lineage graph whose type is looked up (the rest show a hash).
const TYPED_ARTIFACTS: usize = 200;

fn lineage_graph(d: &Inner, hash: &str) -> ApiResult<LineageGraph> {
    let store = d.metadata.as_ref();
    let walk = riffle_pipeline::lineage::lineage(store, hash)?;
    let root = walk.artifact.hash.clone();
    let mut nodes: BTreeMap<String, LineageNode> = BTreeMap::new();
    let mut edges = BTreeSet::new();
    let mut artifact_depth: BTreeMap<String, i64> = BTreeMap::from([(root.clone(), 0)]);
    for (steps, sign) in [(&walk.upstream, -1_i64), (&walk.downstream, 1)] {
        for s in steps {
            let depth = sign * i64::from(s.depth);
            let id = format!("step:{}", s.step_run_id);
            nodes.insert(
                id.clone(),
                LineageNode {
                    id: id.clone(),
                    kind: "step".into(),
                    label: format!("{}.{}", s.pipeline_id, s.step_id),
                    key: s.run_id.clone(),
                    step_id: Some(s.step_id.clone()),
                    depth,
                },
            );
            for (_, input) in &s.inputs {
                // Upstream, every input is walked; downstream, only the one that led here.
                if sign < 0 || *input == s.via {
                    artifact_depth.entry(input.clone()).or_insert(depth);
                    edges.insert(LineageEdgeView {
                        from: format!("artifact:{input}"),
                        to: id.clone(),
                    });
                }
            }
            if let Some(out) = &s.output
                && (sign > 0 || *out == s.via)
            {
                artifact_depth.entry(out.clone()).or_insert(depth);
                edges.insert(LineageEdgeView {
                    from: id.clone(),
                    to: format!("artifact:{out}"),
                });
            }
        }
    }
    for (i, (hash, depth)) in artifact_depth.iter().enumerate() {
        let label = if *hash == root {
            walk.artifact.type_name.clone()
        } else if i < TYPED_ARTIFACTS {
            match d.listing.artifact(store, hash) {
                Ok(a) => a.type_name,
                Err(_) => String::new(),
            }
        } else {
            String::new()
        };
        let id = format!("artifact:{hash}");
        nodes.insert(
            id.clone(),
            LineageNode {
                id,
                kind: "artifact".into(),
                label,
                key: hash.clone(),
                step_id: None,
                depth: *depth,
            },
        );
    }
    Ok(LineageGraph {
        upstream_steps: walk.upstream.len() as u64,
        downstream_steps: walk.downstream.len() as u64,
        artifact: walk.artifact.into(),
        nodes: nodes.into_values().collect(),
        edges: edges.into_iter().collect(),
    })
}
