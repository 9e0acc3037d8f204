//! Lineage: where an artifact came from and where it went.
//!
//! The metadata store keeps one edge per (step run, artifact, direction). Walking up
//! from an artifact follows the step runs that produced it to the artifacts they read,
//! and so on to the pipeline's first steps; walking down follows the step runs that
//! read it to what they produced. The same content can be produced by many runs (it is
//! content-addressed), so each step appears once, with the earliest step run that
//! produced or read the artifact.

use std::collections::{BTreeSet, HashSet};

use crate::error::Result;
use crate::metadata::{ArtifactRecord, Direction, LineageEdge, MetadataStore};

/// One step on a lineage walk.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageStep {
    /// How many steps away from the artifact asked about (1 = made or read it).
    pub depth: u32,
    /// The artifact that led here.
    pub via: String,
    pub pipeline_id: String,
    pub step_id: String,
    pub run_id: String,
    pub step_run_id: i64,
    /// What it read, by input name and hash.
    pub inputs: Vec<(String, String)>,
    /// What it produced.
    pub output: Option<String>,
}

/// The lineage of one artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    pub artifact: ArtifactRecord,
    /// Steps upstream, nearest first.
    pub upstream: Vec<LineageStep>,
    /// Steps downstream, nearest first.
    pub downstream: Vec<LineageStep>,
}

/// Walks the lineage of the artifact with hash (or unique prefix) `hash`.
pub fn lineage(store: &dyn MetadataStore, hash: &str) -> Result<Lineage> {
    let artifact = store.artifact(hash)?;
    let upstream = walk(store, &artifact.hash, Direction::Output)?;
    let downstream = walk(store, &artifact.hash, Direction::Input)?;
    Ok(Lineage {
        artifact,
        upstream,
        downstream,
    })
}

/// Breadth-first from `start`: `towards = Output` finds producers (walking up),
/// `Input` finds consumers (walking down).
fn walk(store: &dyn MetadataStore, start: &str, towards: Direction) -> Result<Vec<LineageStep>> {
    const MAX_STEPS: usize = 10_000;
    let mut found = Vec::new();
    let mut seen_artifacts = HashSet::from([start.to_string()]);
    let mut seen_steps = HashSet::new();
    let mut frontier = vec![start.to_string()];
    let mut depth = 0;
    while !frontier.is_empty() && found.len() < MAX_STEPS {
        depth += 1;
        let mut next = Vec::new();
        for hash in frontier {
            let mut by_step: BTreeSet<(String, String, i64)> = BTreeSet::new();
            let edges: Vec<LineageEdge> = store.edges_of_artifact(&hash)?;
            for e in edges.iter().filter(|e| e.direction == towards) {
                let key = (e.pipeline_id.clone(), e.step_id.clone());
                if seen_steps.contains(&key) {
                    continue;
                }
                if let Some(existing) = by_step
                    .iter()
                    .find(|(p, s, _)| *p == key.0 && *s == key.1)
                    .cloned()
                {
                    if existing.2 <= e.step_run_id {
                        continue;
                    }
                    by_step.remove(&existing);
                }
                by_step.insert((key.0, key.1, e.step_run_id));
            }
            for (pipeline_id, step_id, step_run_id) in by_step {
                seen_steps.insert((pipeline_id.clone(), step_id.clone()));
                let own = store.edges_of_step_run(step_run_id)?;
                let run_id = own.first().map(|e| e.run_id.clone()).unwrap_or_default();
                let inputs: Vec<(String, String)> = own
                    .iter()
                    .filter(|e| e.direction == Direction::Input)
                    .map(|e| (e.name.clone(), e.artifact_hash.clone()))
                    .collect();
                let output = own
                    .iter()
                    .find(|e| e.direction == Direction::Output)
                    .map(|e| e.artifact_hash.clone());
                let onward: Vec<String> = match towards {
                    Direction::Output => inputs.iter().map(|(_, h)| h.clone()).collect(),
                    Direction::Input => output.iter().cloned().collect(),
                };
                for h in onward {
                    if seen_artifacts.insert(h.clone()) {
                        next.push(h);
                    }
                }
                found.push(LineageStep {
                    depth,
                    via: hash.clone(),
                    pipeline_id,
                    step_id,
                    run_id,
                    step_run_id,
                    inputs,
                    output,
                });
            }
        }
        frontier = next;
    }
    Ok(found)
}
