//! `join`: the values of several keyed streams meet per key, in the engine's
//! join ([`riffle::Stream::join_all`]).
//!
//! Every side is routed by its key and the join keeps, per key, the latest value
//! of each side (bytewax's `insert_mode="last"`, the only one the engine has).
//! `emit_mode` is the engine's [`JoinMode`]: `"complete"` emits once every side
//! has a value and forgets the key, `"running"` emits on every value with the
//! sides seen so far, `"final"` emits every key once when the stream ends. A
//! Rust step `STEP.out` turns the slots into the tuple Python receives, `None`
//! for a side that has sent nothing for the key.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use riffle::Stream;
use riffle::operators::join::JoinMode;

use crate::dataflow::{Port, PyStream};
use crate::item::PyItem;
use crate::operators::{batch_step, claim, finish, keyed_as, upstream};

/// The engine's mode for bytewax's `emit_mode`, or a `ValueError` naming the step.
fn join_mode(step_id: &str, emit_mode: &str) -> PyResult<JoinMode> {
    match emit_mode {
        "complete" => Ok(JoinMode::Complete),
        "running" => Ok(JoinMode::Running),
        "final" => Ok(JoinMode::Final),
        other => Err(PyValueError::new_err(format!(
            "step {step_id:?}: unknown join emit_mode {other:?}; \
             use \"complete\", \"running\" or \"final\""
        ))),
    }
}

/// `join(step_id, sides, insert_mode, emit_mode)`: `(key, (v0, v1, ...))` with
/// the latest value of each side, per `emit_mode`.
#[pyfunction]
pub(crate) fn join(
    py: Python<'_>,
    step_id: &str,
    sides: Vec<Bound<'_, PyAny>>,
    insert_mode: &str,
    emit_mode: &str,
) -> PyResult<PyStream> {
    let sides = sides
        .iter()
        .map(|side| upstream(step_id, side))
        .collect::<PyResult<Vec<_>>>()?;
    let Some(first) = sides.first() else {
        return Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `join` needs at least one stream"
        )));
    };
    match insert_mode {
        "last" => {}
        "first" | "product" => {
            return Err(PyValueError::new_err(format!(
                "step {step_id:?}: join insert_mode {insert_mode:?} is not built; \
                 the engine's join keeps the last value of each side (insert_mode=\"last\")"
            )));
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "step {step_id:?}: unknown join insert_mode {other:?}; use \"last\""
            )));
        }
    }
    let mode = join_mode(step_id, emit_mode)?;
    let flow = claim(first, step_id)?;
    let port = sides
        .iter()
        .enumerate()
        .map(|(n, side)| keyed_as(side, step_id, &format!("{step_id}.key{n}")))
        .collect::<riffle::Result<Vec<_>>>()
        .and_then(|streams| {
            let rest: Vec<&Stream<(String, PyItem)>> = streams[1..].iter().collect();
            streams[0].join_all(step_id, &rest, mode)
        })
        .and_then(|joined| {
            batch_step(
                &joined,
                &format!("{step_id}.out"),
                step_id,
                &flow.failures,
                |py, (key, slots): (String, Vec<Option<PyItem>>), out| {
                    let values = slots.iter().map(|slot| match slot {
                        Some(value) => value.bind(py).clone(),
                        None => py.None().into_bound(py),
                    });
                    out.push((key, PyItem::from(PyTuple::new(py, values)?.into_any())));
                    Ok(())
                },
            )
        })
        .map(Port::Keyed);
    finish(py, first, step_id, port)
}
