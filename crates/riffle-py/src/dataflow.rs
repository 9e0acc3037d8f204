//! `riffle.dataflow`: [`PyDataflow`] and [`PyStream`], the Python faces of
//! [`riffle::Dataflow`] and [`riffle::Stream`].
//!
//! A Python stream is one of two Rust streams ([`Port`]): plain items
//! (`Stream<PyItem>`), or keyed pairs (`Stream<(String, PyItem)>`) once a step has
//! keyed it (`key_on`, `map_value`, the stateful steps). Keeping the key a Rust
//! `String` lets keyed steps route and hold state without entering Python; a
//! Python function that reads a keyed stream receives the pair as a tuple.
//!
//! Step ids are checked here before the engine sees them, with bytewax's rule on
//! top of the engine's: no `.` in a step id, because the steps this package adds
//! beside a user's step (a key check, a conversion) are named `STEP.part`, and no
//! user step can take such a name.

use std::collections::HashSet;
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use riffle::Stream;

use crate::failure::Failures;
use crate::item::PyItem;

/// The longest step id accepted: the engine takes 200 bytes, and the steps added
/// beside a user's step append a short `.part`.
const MAX_STEP_ID: usize = 180;

/// A dataflow: steps added by the functions of `riffle.operators`, run by
/// `riffle.testing.run_main`.
#[pyclass(name = "Dataflow", module = "riffle.dataflow", frozen)]
pub(crate) struct PyDataflow {
    pub(crate) flow: riffle::Dataflow,
    flow_id: String,
    /// The step ids taken, as the user wrote them.
    ids: Mutex<HashSet<String>>,
    pub(crate) failures: Failures,
}

#[pymethods]
impl PyDataflow {
    #[new]
    fn new(flow_id: &str) -> PyResult<Self> {
        check_id("flow id", flow_id)?;
        Ok(Self {
            flow: riffle::Dataflow::new(flow_id),
            flow_id: flow_id.to_string(),
            ids: Mutex::new(HashSet::new()),
            failures: Failures::default(),
        })
    }

    /// The name given when the flow was made.
    #[getter]
    fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// The steps the engine runs, in the order they were added: a list of
    /// `(step_id, kind, [upstream step ids])`. A step of `riffle.operators` may add
    /// more than one (`count.key` beside `count`).
    fn steps(&self) -> Vec<(String, String, Vec<String>)> {
        self.flow
            .describe()
            .steps
            .into_iter()
            .map(|s| {
                let ups = s.upstreams.into_iter().map(|u| u.step_id).collect();
                (s.step_id, s.kind, ups)
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("Dataflow({:?})", self.flow_id)
    }
}

impl PyDataflow {
    /// Checks `step_id` and takes it: a `ValueError` naming the step if it is not
    /// valid or already taken.
    pub(crate) fn claim(&self, step_id: &str) -> PyResult<()> {
        check_id("step id", step_id)?;
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if !ids.insert(step_id.to_string()) {
            return Err(PyValueError::new_err(format!(
                "step id {step_id:?} is used twice in dataflow {:?}; step ids must be unique",
                self.flow_id
            )));
        }
        Ok(())
    }
}

fn check_id(what: &str, id: &str) -> PyResult<()> {
    let bad = |reason: String| {
        Err(PyValueError::new_err(format!(
            "{what} {id:?} is not valid: {reason}"
        )))
    };
    if id.is_empty() {
        return bad("it is empty".into());
    }
    if id.len() > MAX_STEP_ID {
        return bad(format!("it is longer than {MAX_STEP_ID} bytes"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_control() || matches!(c, '.' | '/' | ':'))
    {
        return bad(format!(
            "it contains {c:?}; ids may not contain '.', '/', ':' or control characters"
        ));
    }
    Ok(())
}

/// Which Rust stream a Python stream is.
#[derive(Clone)]
pub(crate) enum Port {
    /// Any Python objects.
    Items(Stream<PyItem>),
    /// `(key, value)` pairs whose key is a `str`.
    Keyed(Stream<(String, PyItem)>),
}

/// A stream of items produced by one step; the operators of `riffle.operators`
/// take it as `up` and return the streams they produce.
#[pyclass(name = "Stream", module = "riffle.dataflow", frozen)]
pub(crate) struct PyStream {
    pub(crate) flow: Py<PyDataflow>,
    /// The user's step that produces it.
    step_id: String,
    /// Which of the step's outputs it is: `down`, or `trues`/`falses` of `branch`.
    output: &'static str,
    pub(crate) port: Port,
}

impl PyStream {
    /// The `down` output of `step_id`.
    pub(crate) fn new(flow: Py<PyDataflow>, step_id: &str, port: Port) -> Self {
        Self {
            flow,
            step_id: step_id.to_string(),
            output: "down",
            port,
        }
    }

    /// The user's step that produces this stream.
    pub(crate) fn step_id(&self) -> &str {
        &self.step_id
    }

    /// The same stream, named as output `output` of its step.
    pub(crate) fn named(mut self, output: &'static str) -> Self {
        self.output = output;
        self
    }
}

#[pymethods]
impl PyStream {
    /// `FLOW.STEP.OUTPUT`: which flow, step and output (`down` for steps with one)
    /// this stream is.
    #[getter]
    fn stream_id(&self) -> String {
        format!(
            "{}.{}.{}",
            self.flow.get().flow_id,
            self.step_id,
            self.output
        )
    }

    /// The dataflow the stream belongs to.
    #[getter]
    fn flow(&self, py: Python<'_>) -> Py<PyDataflow> {
        self.flow.clone_ref(py)
    }

    /// Applies the operator `op` to this stream: `up.then(op.map, "id", f)` is
    /// `op.map("id", up, f)`, so steps can be chained.
    #[pyo3(signature = (op, step_id, *args, **kwargs))]
    fn then<'py>(
        slf: &Bound<'py, Self>,
        op: &Bound<'py, PyAny>,
        step_id: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut all = vec![step_id.clone(), slf.clone().into_any()];
        all.extend(args.iter());
        op.call(PyTuple::new(slf.py(), all)?, kwargs)
    }

    fn __repr__(&self) -> String {
        format!("Stream({:?})", self.stream_id())
    }
}
