//! Sources written in Python (`riffle.inputs`), read by the engine's source
//! operator.
//!
//! A `FixedPartitionedSource` becomes a [`PyFixedSource`]: the engine asks it for
//! `list_parts()` on every worker, and builds each partition on the worker that
//! owns it with `build_part(step_id, for_part, resume_state)`. A
//! `DynamicSource` becomes a [`PyDynamicSource`]: `build(step_id, worker_index,
//! worker_count)` on every worker. Either way a partition is polled by the engine:
//! `next_batch()` returns an iterable of items (empty: nothing now; raising
//! `StopIteration`: no more, ever), `next_awake()` a `datetime` (or `None`) for the
//! next poll, `snapshot()` its position (kept, pickled, by the recovery store;
//! `resume_state` of a resumed run), and `close()` is called once at the end.
//!
//! Each call attaches to the interpreter on the worker's thread. An exception is
//! kept in the flow's [`Failures`] and stops the run, naming the input step. The
//! engine's `next_awake` and `snapshot` cannot fail, so an exception raised there
//! is held by the partition and returned by its next `next_batch`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use riffle::sources::{DynamicSource, FixedPartitionedSource, Poll, SourcePartition, WorkerInfo};

use crate::failure::Failures;
use crate::item::PyItem;

/// What every Python source of a step shares: the Python object, the step and
/// the flow's failure slot.
#[derive(Clone)]
struct Origin {
    step_id: String,
    source: Arc<Py<PyAny>>,
    failures: Failures,
}

impl Origin {
    /// Records `error` for the step and turns it into the engine's error.
    fn fail(&self, error: PyErr) -> riffle::RiffleError {
        let summary = self.failures.record(&self.step_id, error);
        riffle::RiffleError::connector(&self.step_id, summary)
    }

    /// A partition around the Python object `part`.
    fn partition(&self, part: Py<PyAny>) -> PyPartition {
        PyPartition {
            origin: self.clone(),
            part,
            held: RefCell::new(None),
            done: false,
        }
    }
}

/// A `riffle.inputs.FixedPartitionedSource`.
pub(crate) struct PyFixedSource(Origin);

impl PyFixedSource {
    pub(crate) fn new(step_id: &str, source: Py<PyAny>, failures: Failures) -> Self {
        Self(Origin {
            step_id: step_id.to_string(),
            source: Arc::new(source),
            failures,
        })
    }
}

impl FixedPartitionedSource for PyFixedSource {
    type Item = PyItem;
    type State = PyItem;
    type Partition = PyPartition;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        crate::attach::attach(|py| partition_names(self.0.source.bind(py)))
            .map_err(|e| self.0.fail(e))
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<PyItem>,
    ) -> riffle::Result<PyPartition> {
        crate::attach::attach(|py| {
            let resume = resume_state.map(|s| s.0);
            self.0
                .source
                .bind(py)
                .call_method1("build_part", (step_id, for_part, resume))
                .map(|p| p.unbind())
        })
        .map(|part| self.0.partition(part))
        .map_err(|e| self.0.fail(e))
    }
}

/// A `riffle.inputs.DynamicSource`.
pub(crate) struct PyDynamicSource(Origin);

impl PyDynamicSource {
    pub(crate) fn new(step_id: &str, source: Py<PyAny>, failures: Failures) -> Self {
        Self(Origin {
            step_id: step_id.to_string(),
            source: Arc::new(source),
            failures,
        })
    }
}

impl DynamicSource for PyDynamicSource {
    type Item = PyItem;
    type Partition = PyPartition;

    fn build(&self, step_id: &str, worker: WorkerInfo) -> riffle::Result<PyPartition> {
        crate::attach::attach(|py| {
            self.0
                .source
                .bind(py)
                .call_method1("build", (step_id, worker.index, worker.count))
                .map(|p| p.unbind())
        })
        .map(|part| self.0.partition(part))
        .map_err(|e| self.0.fail(e))
    }
}

/// A partition object of a Python source, stateful or not.
pub(crate) struct PyPartition {
    origin: Origin,
    part: Py<PyAny>,
    /// An exception from `next_awake` or `snapshot`, returned by the next poll.
    held: RefCell<Option<riffle::RiffleError>>,
    done: bool,
}

impl PyPartition {
    fn hold(&self, error: PyErr) {
        let error = self.origin.fail(error);
        self.held.borrow_mut().get_or_insert(error);
    }
}

impl SourcePartition for PyPartition {
    type Item = PyItem;
    type State = PyItem;

    fn next_batch(&mut self) -> riffle::Result<Poll<PyItem>> {
        if let Some(error) = self.held.borrow_mut().take() {
            return Err(error);
        }
        if self.done {
            return Ok(Poll::Exhausted);
        }
        let polled = crate::attach::attach(|py| -> PyResult<Option<Vec<PyItem>>> {
            self.origin.failures.check_interrupt(py)?;
            let batch = match self.part.bind(py).call_method0("next_batch") {
                Ok(batch) => batch,
                Err(e) if e.is_instance_of::<PyStopIteration>(py) => return Ok(None),
                Err(e) => return Err(e),
            };
            let items = batch
                .try_iter()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "next_batch() must return an iterable of items; got a {}",
                        crate::operators::type_name(&batch)
                    ))
                })?
                .map(|item| item.map(PyItem::from))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(Some(items))
        })
        .map_err(|e| self.origin.fail(e))?;
        Ok(match polled {
            None => {
                self.done = true;
                Poll::Exhausted
            }
            Some(items) if items.is_empty() => Poll::Pending,
            Some(items) => Poll::Ready(items),
        })
    }

    fn next_awake(&self) -> Option<Instant> {
        let wait = crate::attach::attach(|py| -> PyResult<Option<f64>> {
            let part = self.part.bind(py);
            if !part.hasattr("next_awake")? {
                return Ok(None);
            }
            let at = part.call_method0("next_awake")?;
            if at.is_none() {
                return Ok(None);
            }
            // Seconds from now: a past instant means at once.
            let at: f64 = at.call_method0("timestamp")?.extract()?;
            let now: f64 = py.import("time")?.call_method0("time")?.extract()?;
            Ok(Some(at - now))
        });
        match wait {
            // An instant already past is no instant: the engine polls at once
            // only when there is none (an `Instant::now()` here would always be
            // later than the engine's own `now`, and never come).
            Ok(wait) => wait
                .filter(|s| *s > 0.0)
                .map(|s| Instant::now() + Duration::from_secs_f64(s.min(1e9))),
            Err(e) => {
                self.hold(e);
                None
            }
        }
    }

    fn snapshot(&self) -> Option<PyItem> {
        let state = crate::attach::attach(|py| -> PyResult<Option<PyItem>> {
            let part = self.part.bind(py);
            // A stateless (dynamic) partition has no position.
            if !part.hasattr("snapshot")? {
                return Ok(None);
            }
            Ok(Some(PyItem::from(part.call_method0("snapshot")?)))
        });
        state.unwrap_or_else(|e| {
            self.hold(e);
            None
        })
    }

    fn close(&mut self) -> riffle::Result<()> {
        crate::attach::attach(|py| -> PyResult<()> {
            let part = self.part.bind(py);
            if part.hasattr("close")? {
                part.call_method0("close")?;
            }
            Ok(())
        })
        .map_err(|e| self.origin.fail(e))
    }
}

/// What a Python source's or sink's `list_parts()` returns, as partition names
/// (each must be a `str`).
pub(crate) fn partition_names(origin: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    origin
        .call_method0("list_parts")?
        .try_iter()?
        .map(|p| {
            let p = p?;
            p.extract::<String>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "list_parts() must return partition names as str; got {}",
                    p.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })
        })
        .collect()
}
