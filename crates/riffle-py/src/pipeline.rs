//! Batch pipelines from Python (`riffle.pipeline`) on the engine of `riffle-pipeline`.
//!
//! `python/riffle/pipeline.py` does everything that needs Python: it wires steps
//! by their output and input names, computes each step's code version from the
//! source of its function and the helpers it calls, and turns each step into a
//! callable from a list of input artifacts (bytes) to one output artifact (bytes),
//! its values pickled. [`run_pipeline`] gets that plan, builds a
//! [`riffle_pipeline::Pipeline`] of dynamic steps ([`riffle_pipeline::dynamic`]), and
//! runs it with the project's [`Executor`](riffle_pipeline::Executor): the cache,
//! retries, timeouts, the artifact store and the metadata store the dashboard
//! reads are the engine's own.
//!
//! The report hands back each step's output as the hash of its artifact, with an
//! [`ArtifactReader`] over the run's artifact store: the outputs are read (and
//! unpickled, on the Python side) only when the caller looks one up, so a cached
//! run whose outputs nobody reads never touches them.
//!
//! The run blocks the calling thread, detached from the interpreter; each step's
//! thread attaches when it calls its Python callable. Ctrl-C cancels the run (the
//! main thread watches for it every 50 ms). The exception a callable raised is
//! kept per step and handed back with the report, so the Python side raises
//! `riffle.RiffleError` naming the step, caused by that very exception.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use riffle_pipeline::dynamic::{Blob, StepInputs};
use riffle_pipeline::{
    ArtifactStore, CancelToken, ContentHash, Executor, Pipeline, ProjectStores, RunOptions,
    RunReport, codec,
};

use crate::failure::riffle_error;

/// One step as `riffle.pipeline` plans it: `(id, input step ids, code version,
/// params as a JSON object, cache, retries, timeout in seconds, callable)`. The
/// callable takes a list of `bytes` (the input artifacts, in the order of the input
/// ids) and returns `bytes` (the output artifact).
type StepPlan = (
    String,
    Vec<String>,
    String,
    String,
    bool,
    u32,
    Option<f64>,
    Py<PyAny>,
);

/// The last exception each step's callable raised in a run.
type Raised = Arc<Mutex<HashMap<String, PyErr>>>;

/// `run_pipeline(pipeline_id, project_dir, steps, about="")`: runs the planned
/// steps and returns the report as a dict: `run_id`, `status`, `error`, `steps`
/// (a dict by step id of `status`, `cache_hit`, `attempts`, `error`, `output`
/// (the artifact's hash)), `artifacts` (an [`ArtifactReader`] that reads an output
/// artifact's bytes by that hash) and `raised` (a dict by step id of the exception
/// its callable raised last).
#[pyfunction]
#[pyo3(signature = (pipeline_id, project_dir, steps, about=""))]
pub(crate) fn run_pipeline(
    py: Python<'_>,
    pipeline_id: &str,
    project_dir: PathBuf,
    steps: Vec<StepPlan>,
    about: &str,
) -> PyResult<Py<PyDict>> {
    let raised: Raised = Arc::default();
    let pipeline = build(pipeline_id, about, steps, &raised)?;
    let executor = ProjectStores::from_env(&project_dir)
        .executor()
        .map_err(|e| riffle_error(py, format!("pipeline {pipeline_id:?}: {e}"), None))?;
    let cancel = CancelToken::new();
    let options = RunOptions {
        cancel: cancel.clone(),
        ..RunOptions::default()
    };
    let report = py.detach(|| run_watching(&executor, &pipeline, options));
    if cancel.is_cancelled() {
        return Err(PyKeyboardInterrupt::new_err(format!(
            "pipeline {pipeline_id:?}: the run was interrupted (Ctrl-C)"
        )));
    }
    let report =
        report.map_err(|e| riffle_error(py, format!("pipeline {pipeline_id:?}: {e}"), None))?;
    report_dict(py, &executor, &report, &raised)
}

/// The engine's pipeline for `steps`; a definition the engine refuses (an invalid
/// id, a cycle) is a `ValueError` with the engine's message.
fn build(id: &str, about: &str, steps: Vec<StepPlan>, raised: &Raised) -> PyResult<Pipeline> {
    let mut p = Pipeline::builder(id);
    p.about(about);
    for (step_id, inputs, version, params, cache, retries, timeout, call) in steps {
        let params: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&params)
            .map_err(|e| {
                PyValueError::new_err(format!(
                    "step {step_id:?}: its parameters are not a JSON object: {e}"
                ))
            })?;
        let timeout = timeout
            .map(|t| crate::seconds(&format!("the timeout of step {step_id:?}"), t))
            .transpose()?;
        let raised = raised.clone();
        let name = step_id.clone();
        let mut step = p
            .step(
                &step_id,
                StepInputs::new(id, &inputs),
                move |_ctx, blobs: Vec<Blob>| call_step(&name, &call, blobs, &raised),
            )
            .version(&version)
            .retries(retries, Duration::ZERO);
        for (name, value) in params {
            step = step.param(&name, value);
        }
        if let Some(limit) = timeout {
            step = step.timeout(limit);
        }
        if !cache {
            step.always_run();
        }
    }
    p.build().map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Calls a step's Python callable with its input artifacts; an exception is kept
/// for the report and summarised (`TypeName: message`) for the engine's record.
fn call_step(
    step: &str,
    call: &Py<PyAny>,
    blobs: Vec<Blob>,
    raised: &Raised,
) -> riffle_pipeline::StepResult<Blob> {
    crate::attach::attach(|py| {
        let result = PyList::new(py, blobs.iter().map(|b| PyBytes::new(py, b.as_bytes())))
            .and_then(|inputs| call.call1(py, (inputs,)))
            .and_then(|out| {
                let bytes = out.bind(py).cast::<PyBytes>().map_err(PyErr::from)?;
                Ok(Blob::from(bytes.as_bytes().to_vec()))
            });
        result.map_err(|error| {
            let summary = crate::failure::summary(py, &error);
            raised
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(step.to_string(), error);
            summary.into()
        })
    })
}

/// Runs the pipeline on a thread of its own while this (main) thread watches for
/// Ctrl-C (`signals.rs`), which cancels the run.
fn run_watching(
    executor: &Executor,
    pipeline: &Pipeline,
    options: RunOptions,
) -> Result<RunReport, String> {
    let cancel = options.cancel.clone();
    crate::signals::run_watching_signals(
        || executor.run(pipeline, options).map_err(|e| e.to_string()),
        || cancel.cancel(),
    )
    .unwrap_or_else(|_| Err("the run panicked".to_string()))
}

/// The report as the dict [`run_pipeline`] returns.
fn report_dict(
    py: Python<'_>,
    executor: &Executor,
    report: &RunReport,
    raised: &Raised,
) -> PyResult<Py<PyDict>> {
    let out = PyDict::new(py);
    out.set_item("run_id", &report.run_id)?;
    out.set_item("status", report.status.as_str())?;
    out.set_item("error", report.error.as_deref())?;
    let steps = PyDict::new(py);
    for s in &report.steps {
        let step = PyDict::new(py);
        step.set_item("status", s.status.as_str())?;
        step.set_item("cache_hit", s.cache_hit)?;
        step.set_item("attempts", s.attempts)?;
        step.set_item("error", s.error.as_deref())?;
        step.set_item("output", s.output.map(|h| h.to_hex()))?;
        steps.set_item(&s.step_id, step)?;
    }
    out.set_item("steps", steps)?;
    let reader = ArtifactReader {
        store: executor.artifacts().clone(),
    };
    out.set_item("artifacts", Py::new(py, reader)?)?;
    let errors = PyDict::new(py);
    let kept = std::mem::take(&mut *raised.lock().unwrap_or_else(|p| p.into_inner()));
    for (step, error) in kept {
        // The exception object with its traceback attached.
        errors.set_item(step, error.into_value(py))?;
    }
    out.set_item("raised", errors)?;
    Ok(out.unbind())
}

/// Reads the output artifacts of a run from its artifact store, on demand:
/// `read(hash, what)` returns the bytes a step's callable returned, where `hash` is
/// the artifact's hash from the report and `what` names the output in an error.
#[pyclass(name = "ArtifactReader", module = "riffle._riffle", frozen)]
pub(crate) struct ArtifactReader {
    store: ArtifactStore,
}

#[pymethods]
impl ArtifactReader {
    /// The bytes of artifact `hash` (64 hex digits); a malformed hash is a
    /// `ValueError`, a missing or damaged artifact a `riffle.RiffleError` naming
    /// `what` and the store.
    fn read<'py>(&self, py: Python<'py>, hash: &str, what: &str) -> PyResult<Bound<'py, PyBytes>> {
        let parsed: ContentHash = hash
            .parse()
            .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
        let read = py.detach(|| self.store.get(&parsed));
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(riffle_error(
                    py,
                    format!(
                        "{what}: artifact {hash} is missing from the artifact store {} (or damaged)",
                        self.store.url()
                    ),
                    None,
                ));
            }
            Err(e) => return Err(riffle_error(py, format!("{what}: {e}"), None)),
        };
        let blob: Blob = codec::decode(&bytes, what)
            .map_err(|e| riffle_error(py, format!("{what}: {e}"), None))?;
        Ok(PyBytes::new(py, blob.as_bytes()))
    }

    fn __repr__(&self) -> String {
        format!("<ArtifactReader {}>", self.store.url())
    }
}
