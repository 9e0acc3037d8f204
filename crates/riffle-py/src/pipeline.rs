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
use riffle_pipeline::{CancelToken, Executor, Pipeline, ProjectStores, RunOptions, RunReport};

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
/// (the artifact's hash)), `outputs` (a dict by step id of the output artifact's
/// bytes) and `raised` (a dict by step id of the exception its callable raised last).
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
    let outputs = PyDict::new(py);
    for s in &report.steps {
        let step = PyDict::new(py);
        step.set_item("status", s.status.as_str())?;
        step.set_item("cache_hit", s.cache_hit)?;
        step.set_item("attempts", s.attempts)?;
        step.set_item("error", s.error.as_deref())?;
        step.set_item("output", s.output.map(|h| h.to_hex()))?;
        steps.set_item(&s.step_id, step)?;
        if s.output.is_some() {
            let blob: Blob = executor.output(report, &s.step_id).map_err(|e| {
                riffle_error(
                    py,
                    format!("reading the output of step {:?}: {e}", s.step_id),
                    Some(&s.step_id),
                )
            })?;
            outputs.set_item(&s.step_id, PyBytes::new(py, blob.as_bytes()))?;
        }
    }
    out.set_item("steps", steps)?;
    out.set_item("outputs", outputs)?;
    let errors = PyDict::new(py);
    let kept = std::mem::take(&mut *raised.lock().unwrap_or_else(|p| p.into_inner()));
    for (step, error) in kept {
        // The exception object with its traceback attached.
        errors.set_item(step, error.into_value(py))?;
    }
    out.set_item("raised", errors)?;
    Ok(out.unbind())
}
