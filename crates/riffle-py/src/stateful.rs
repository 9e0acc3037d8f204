//! The keyed operators that keep more than one value per key:
//! `stateful_flat_map`, `fold_final`, `collect` and `stateful`.
//!
//! Each is the engine's keyed operator, with Python only where the user's
//! function decides something:
//!
//! - `stateful_flat_map` is the engine's `stateful_map` emitting a `Vec` per value,
//!   which a Rust step (`STEP.flat`) spreads into one pair per element.
//! - `fold_final` is the engine's `fold_final`. bytewax's `folder(acc, value)` has
//!   no way to combine two accumulators, which the engine's pre-aggregation needs,
//!   so the pre-aggregation only gathers a key's values in order
//!   ([`Partial::Values`], no Python) and the key's owner folds them with the user's
//!   function when they arrive: every value is folded exactly once, in the order
//!   it came, on the worker that owns the key, as in bytewax.
//! - `collect` is the engine's `collect`: lists per key, emitted when they reach
//!   `max_size` or when their epoch closes.
//! - `stateful` is the engine's `stateful`: one `StatefulLogic` object per key,
//!   called with the key's values, when its `notify_at()` instant passes (wall
//!   clock) and at the end of the stream; its `snapshot()` is the key's state in
//!   the recovery store, handed back to `builder(resume_state)` on resume.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use riffle::operators::stateful::{Emit, KeyedLogic};
use serde::{Deserialize, Serialize};

use crate::dataflow::{Port, PyStream};
use crate::failure::{Failures, callable};
use crate::item::PyItem;
use crate::operators::{batch_step, claim, fail, finish, iterate, keyed, type_name, upstream};

/// `stateful_flat_map(step_id, up, mapper)`: per key, `mapper(state, value)`
/// returns `(state, values)`; emits `(key, v)` for every `v` of the iterable
/// `values`. The state starts as `None` and `None` forgets it.
#[pyfunction]
pub(crate) fn stateful_flat_map(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    mapper: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "mapper", mapper)?;
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    let id = step_id.to_string();
    let port = keyed(up, step_id)
        .and_then(|s| {
            s.stateful_map(
                step_id,
                |_key: &String| None::<PyItem>,
                move |state: Option<PyItem>, value: PyItem| {
                    crate::attach::attach(|py| flat_map_with_state(py, &f, &id, state, value))
                        .unwrap_or_else(|e| fail(&failures, &id, e))
                },
            )
        })
        .and_then(|s| {
            s.flat_map(
                &format!("{step_id}.flat"),
                |(key, values): (String, Vec<PyItem>)| {
                    values.into_iter().map(move |v| (key.clone(), v))
                },
            )
        })
        .map(Port::Keyed);
    finish(py, up, step_id, port)
}

/// One call of a `stateful_flat_map` mapper: `(next, values)`, where `next` is
/// `None` to forget the key and `Some(state)` to keep it.
fn flat_map_with_state(
    py: Python<'_>,
    mapper: &Py<PyAny>,
    step_id: &str,
    state: Option<PyItem>,
    value: PyItem,
) -> PyResult<(Option<Option<PyItem>>, Vec<PyItem>)> {
    let state = match &state {
        Some(state) => state.bind(py).clone(),
        None => py.None().into_bound(py),
    };
    let result = mapper.bind(py).call1((state, value.bind(py)))?;
    let Some(pair) = result.cast::<PyTuple>().ok().filter(|t| t.len() == 2) else {
        return Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `mapper` must return a 2-tuple \
             `(updated_state, emit_values)`; got a {} instead",
            type_name(&result)
        )));
    };
    let (next, many) = (pair.get_item(0)?, pair.get_item(1)?);
    let values = iterate(step_id, "mapper", &many)
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "step {step_id:?}: `mapper` must return `(updated_state, emit_values)` \
                 with an iterable `emit_values`; got a {} instead",
                type_name(&many)
            ))
        })?
        .map(|one| one.map(PyItem::from))
        .collect::<PyResult<Vec<_>>>()?;
    let next = (!next.is_none()).then(|| Some(PyItem::from(next)));
    Ok((next, values))
}

/// What the engine's `fold_final` carries for one key of a Python `fold_final`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Partial {
    /// Values gathered by a worker's pre-aggregation, in the order they came,
    /// not folded yet.
    Values(Vec<PyItem>),
    /// The user's accumulator, on the key's owner.
    Folded(PyItem),
}

/// The user's `builder` and `folder` of one `fold_final` step.
struct Folding {
    step_id: String,
    builder: Py<PyAny>,
    folder: Py<PyAny>,
}

impl Folding {
    /// `acc` with `values` folded into it; `acc` is `builder()` when `None`.
    fn fold(&self, py: Python<'_>, acc: Option<PyItem>, values: Vec<PyItem>) -> PyResult<PyItem> {
        let mut acc = match acc {
            Some(acc) => acc.bind(py).clone(),
            None => self.builder.bind(py).call0()?,
        };
        for value in values {
            acc = self.folder.bind(py).call1((acc, value.bind(py)))?;
        }
        Ok(PyItem::from(acc))
    }

    /// A partial accumulator as the user's accumulator.
    fn finish(&self, py: Python<'_>, partial: Partial) -> PyResult<PyItem> {
        match partial {
            Partial::Folded(acc) => Ok(acc),
            Partial::Values(values) => self.fold(py, None, values),
        }
    }

    /// `a` and then `b` folded into one accumulator: `b` is always what a
    /// pre-aggregation gathered.
    fn merge(&self, py: Python<'_>, a: Partial, b: Partial) -> PyResult<Partial> {
        let acc = self.finish(py, a)?;
        match b {
            Partial::Values(values) => Ok(Partial::Folded(self.fold(py, Some(acc), values)?)),
            Partial::Folded(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "step {:?}: two folded accumulators of one key met; \
                 bytewax's `folder` cannot combine them",
                self.step_id
            ))),
        }
    }
}

/// `fold_final(step_id, up, builder, folder)`: per key, `builder()` and then
/// `folder(acc, value)` for each of its values; `(key, acc)` when the stream ends.
#[pyfunction]
pub(crate) fn fold_final(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    builder: &Bound<'_, PyAny>,
    folder: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let folding = std::sync::Arc::new(Folding {
        step_id: step_id.to_string(),
        builder: callable(step_id, "builder", builder)?,
        folder: callable(step_id, "folder", folder)?,
    });
    let flow = claim(up, step_id)?;
    let failures: Failures = flow.failures.clone();
    let merging = folding.clone();
    let merge = move |a: Partial, b: Partial| -> Partial {
        crate::attach::attach(|py| merging.merge(py, a, b))
            .unwrap_or_else(|e| fail(&failures, &merging.step_id, e))
    };
    let port = keyed(up, step_id)
        .and_then(|s| {
            s.fold_final(
                step_id,
                |_key: &String| Partial::Values(Vec::new()),
                |acc: Partial, value: PyItem| match acc {
                    Partial::Values(mut values) => {
                        values.push(value);
                        Partial::Values(values)
                    }
                    // The pre-aggregation only ever holds gathered values.
                    folded @ Partial::Folded(_) => folded,
                },
                merge,
            )
        })
        .and_then(|s| {
            batch_step(
                &s,
                &format!("{step_id}.out"),
                step_id,
                &flow.failures,
                move |py, (key, partial), out| {
                    out.push((key, folding.finish(py, partial)?));
                    Ok(())
                },
            )
        })
        .map(Port::Keyed);
    finish(py, up, step_id, port)
}

/// `collect(step_id, up, max_size)`: per key, lists of its values, emitted when
/// one holds `max_size` values, when its epoch closes and when the stream ends.
#[pyfunction]
pub(crate) fn collect(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    max_size: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let max_size = match max_size.extract::<i64>() {
        Ok(n) if n >= 1 => n as usize,
        Ok(n) => {
            return Err(PyValueError::new_err(format!(
                "step {step_id:?}: `max_size` must be at least 1; got {n}"
            )));
        }
        Err(_) => {
            return Err(PyTypeError::new_err(format!(
                "step {step_id:?}: `max_size` must be an int; got a {} instead",
                type_name(max_size)
            )));
        }
    };
    let flow = claim(up, step_id)?;
    let port = keyed(up, step_id)
        .and_then(|s| s.collect(step_id, max_size))
        .and_then(|s| {
            batch_step(
                &s,
                &format!("{step_id}.out"),
                step_id,
                &flow.failures,
                |py, (key, values): (String, Vec<PyItem>), out| {
                    let list = PyList::new(py, values.iter().map(|v| v.bind(py)))?;
                    out.push((key, PyItem::from(list.into_any())));
                    Ok(())
                },
            )
        })
        .map(Port::Keyed);
    finish(py, up, step_id, port)
}

/// `stateful(step_id, up, builder)`: per key, a `StatefulLogic` object made by
/// `builder(resume_state)` (`None` for a new key), run by the engine's
/// [`riffle::Stream::stateful`]: `on_item(value)`, `on_notify()` once its
/// `notify_at()` has passed, `on_eof()` at the end, each returning `(emits,
/// discard)`; `snapshot()` is what the recovery store keeps for the key.
#[pyfunction]
pub(crate) fn stateful(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    builder: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let builder = callable(step_id, "builder", builder)?;
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    let id: Arc<str> = step_id.into();
    let port = keyed(up, step_id)
        .and_then(|s| {
            s.stateful(step_id, move |_key: &String, resume: Option<PyItem>| {
                crate::attach::attach(|py| {
                    let resume = resume.map_or_else(|| py.None(), |state| state.0);
                    let logic = builder.bind(py).call1((resume,))?;
                    Ok(PyLogic {
                        step_id: id.clone(),
                        failures: failures.clone(),
                        logic: logic.unbind(),
                    })
                })
                .map_err(|e| logic_error(&failures, &id, e))
            })
        })
        .map(Port::Keyed);
    finish(py, up, step_id, port)
}

/// A Python exception of a `stateful` step as the engine's error, the exception
/// kept in `failures`.
fn logic_error(failures: &Failures, step_id: &str, error: PyErr) -> riffle::RiffleError {
    let summary = failures.record(step_id, error);
    riffle::RiffleError::Execution(format!("step {step_id:?}: {summary}"))
}

/// One key's `StatefulLogic` object.
struct PyLogic {
    step_id: Arc<str>,
    failures: Failures,
    logic: Py<PyAny>,
}

impl PyLogic {
    /// Calls `method(*args)`, which must return `(emits, discard)`.
    fn call(&self, method: &str, value: Option<PyItem>) -> riffle::Result<Emit<PyItem>> {
        crate::attach::attach(|py| -> PyResult<Emit<PyItem>> {
            let logic = self.logic.bind(py);
            let result = match value {
                Some(value) => logic.call_method1(method, (value.0,))?,
                None => logic.call_method0(method)?,
            };
            let id = &*self.step_id;
            let Some(pair) = result.cast::<PyTuple>().ok().filter(|t| t.len() == 2) else {
                return Err(PyTypeError::new_err(format!(
                    "step {id:?}: `{method}` must return a 2-tuple `(emits, discard)`; \
                     got a {} instead",
                    type_name(&result)
                )));
            };
            let (emits, discard) = (pair.get_item(0)?, pair.get_item(1)?);
            let emits = iterate(id, method, &emits)?
                .map(|one| one.map(PyItem::from))
                .collect::<PyResult<Vec<_>>>()?;
            let discard = discard.extract::<bool>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "step {id:?}: `{method}` must return `(emits, discard)` with a bool \
                     `discard`; got a {} instead",
                    type_name(&discard)
                ))
            })?;
            Ok((emits, discard))
        })
        .map_err(|e| logic_error(&self.failures, &self.step_id, e))
    }
}

impl KeyedLogic<PyItem> for PyLogic {
    type Out = PyItem;
    type State = PyItem;

    fn on_item(&mut self, value: PyItem) -> riffle::Result<Emit<PyItem>> {
        self.call("on_item", Some(value))
    }

    fn on_notify(&mut self) -> riffle::Result<Emit<PyItem>> {
        self.call("on_notify", None)
    }

    fn on_eof(&mut self) -> riffle::Result<Emit<PyItem>> {
        self.call("on_eof", None)
    }

    fn notify_at(&self) -> riffle::Result<Option<SystemTime>> {
        crate::attach::attach(|py| -> PyResult<Option<SystemTime>> {
            let at = self.logic.bind(py).call_method0("notify_at")?;
            if at.is_none() {
                return Ok(None);
            }
            let seconds: f64 = at
                .call_method0("timestamp")
                .and_then(|t| t.extract())
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "step {:?}: `notify_at` must return a datetime or None; got a {}",
                        &*self.step_id,
                        type_name(&at)
                    ))
                })?;
            let since = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
            Ok(Some(SystemTime::UNIX_EPOCH.checked_add(since).unwrap_or(
                SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64),
            )))
        })
        .map_err(|e| logic_error(&self.failures, &self.step_id, e))
    }

    fn snapshot(&self) -> riffle::Result<PyItem> {
        crate::attach::attach(|py| {
            self.logic
                .bind(py)
                .call_method0("snapshot")
                .map(PyItem::from)
        })
        .map_err(|e| logic_error(&self.failures, &self.step_id, e))
    }
}
