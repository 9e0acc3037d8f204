//! Steps about the workers a flow runs on: `redistribute` spreads items over
//! them, `inspect_debug` shows which worker and epoch each item is at.
//!
//! Both are the engine's own operators: `redistribute` is Rust only (after a step
//! `STEP.send` that, in a run of several processes, checks every item can be sent
//! to another one);
//! `inspect_debug` calls the user's function from the engine's per-item hook,
//! which is the only one that knows the item's epoch.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::dataflow::PyStream;
use crate::failure::callable;
use crate::item::Carrier;
use crate::operators::{claim, fail, finish, on_port, sendable, upstream};

/// `redistribute(step_id, up)`: the same items, spread evenly over the workers.
#[pyfunction]
pub(crate) fn redistribute(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    claim(up, step_id)?;
    // Items sent to a worker of another process are checked first (`STEP.send`).
    let send_id = format!("{step_id}.send");
    let port = on_port!(&up.port, |s| sendable(s, &send_id, up, step_id)
        .and_then(|checked| checked.redistribute(step_id))
        .map(Carrier::port));
    finish(py, up, step_id, port)
}

/// `inspect_debug(step_id, up, inspector)`: `inspector(step_id, item, epoch,
/// worker_index)` for every item, which passes on unchanged.
#[pyfunction]
pub(crate) fn inspect_debug(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    inspector: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = Arc::new(callable(step_id, "inspector", inspector)?);
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    let id: Arc<str> = step_id.into();
    let port = on_port!(&up.port, |s| {
        let (f, failures, id) = (f.clone(), failures.clone(), id.clone());
        s.inspect_debug(step_id, move |_, item, epoch, worker| {
            crate::attach::attach(|py| -> PyResult<()> {
                f.bind(py)
                    .call1((&*id, item.to_py(py)?, epoch, worker))
                    .map(drop)
            })
            .unwrap_or_else(|e| fail(&failures, &id, e))
        })
        .map(Carrier::port)
    });
    finish(py, up, step_id, port)
}
