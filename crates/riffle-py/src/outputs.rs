//! Sinks written in Python (`riffle.outputs`), written by the engine's sink
//! operator.
//!
//! A `FixedPartitionedSink` becomes a [`PyFixedSink`]. Its items are `(key,
//! value)` pairs, as in bytewax: a batch step `STEP.part` calls the sink's
//! `part_fn(key)` once per item (one entry into Python per batch) and keeps the
//! partition index with the value, so the engine routes each value to the worker
//! that owns partition `index % len(list_parts())` without calling Python.
//! `build_part(step_id, for_part, resume_state)` opens a partition there;
//! `write_batch(values)` gets the values in order, `snapshot()` returns the
//! position the recovery store keeps, `close()` is called once at the end.
//!
//! A `DynamicSink` becomes a [`PyDynamicSink`]: `build(step_id, worker_index,
//! worker_count)` on every worker, then `write_batch(items)` with what that
//! worker holds.
//!
//! An exception is kept in the flow's [`Failures`] and stops the run, naming the
//! output step.

use std::marker::PhantomData;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyList;
use riffle::sinks::{DynamicSink, FixedPartitionedSink, SinkPartition, WorkerInfo};

use crate::failure::Failures;
use crate::item::{Carrier, PyItem};

/// The Python sink object of a step and the flow's failure slot.
#[derive(Clone)]
struct Origin {
    step_id: String,
    sink: Arc<Py<PyAny>>,
    failures: Failures,
}

impl Origin {
    fn new(step_id: &str, sink: Py<PyAny>, failures: Failures) -> Self {
        Self {
            step_id: step_id.to_string(),
            sink: Arc::new(sink),
            failures,
        }
    }

    fn fail(&self, error: PyErr) -> riffle::RiffleError {
        let summary = self.failures.record(&self.step_id, error);
        riffle::RiffleError::connector(&self.step_id, summary)
    }

    /// Calls `method` of the partition object `part`, if it has it.
    fn call_if(&self, part: &Py<PyAny>, method: &str) -> riffle::Result<Option<PyItem>> {
        crate::attach::attach(|py| -> PyResult<Option<PyItem>> {
            let part = part.bind(py);
            if !part.hasattr(method)? {
                return Ok(None);
            }
            Ok(Some(PyItem::from(part.call_method0(method)?)))
        })
        .map_err(|e| self.fail(e))
    }

    /// `part.write_batch(list(items))`.
    fn write<T: Carrier>(&self, part: &Py<PyAny>, items: &[T]) -> riffle::Result<()> {
        crate::attach::attach(|py| -> PyResult<()> {
            let objects = items
                .iter()
                .map(|item| item.to_py(py))
                .collect::<PyResult<Vec<_>>>()?;
            part.bind(py)
                .call_method1("write_batch", (PyList::new(py, objects)?,))?;
            Ok(())
        })
        .map_err(|e| self.fail(e))
    }
}

/// A `riffle.outputs.FixedPartitionedSink`, fed `(partition index, value)`.
pub(crate) struct PyFixedSink(Origin);

impl PyFixedSink {
    pub(crate) fn new(step_id: &str, sink: Py<PyAny>, failures: Failures) -> Self {
        Self(Origin::new(step_id, sink, failures))
    }
}

impl FixedPartitionedSink for PyFixedSink {
    type Item = (u64, PyItem);
    type State = PyItem;
    type Partition = PyFixedPartition;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        crate::attach::attach(|py| crate::inputs::partition_names(self.0.sink.bind(py)))
            .map_err(|e| self.0.fail(e))
    }

    fn part_fn(&self, item: &(u64, PyItem), parts: usize) -> usize {
        (item.0 % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<PyItem>,
    ) -> riffle::Result<PyFixedPartition> {
        crate::attach::attach(|py| {
            let resume = resume_state.map(|s| s.0);
            self.0
                .sink
                .bind(py)
                .call_method1("build_part", (step_id, for_part, resume))
                .map(|p| p.unbind())
        })
        .map(|part| PyFixedPartition {
            origin: self.0.clone(),
            part,
        })
        .map_err(|e| self.0.fail(e))
    }
}

/// A partition of a [`PyFixedSink`].
pub(crate) struct PyFixedPartition {
    origin: Origin,
    part: Py<PyAny>,
}

impl SinkPartition for PyFixedPartition {
    type Item = (u64, PyItem);
    type State = PyItem;

    fn write_batch(&mut self, items: Vec<(u64, PyItem)>) -> riffle::Result<()> {
        let values: Vec<PyItem> = items.into_iter().map(|(_, v)| v).collect();
        self.origin.write(&self.part, &values)
    }

    fn snapshot(&mut self) -> riffle::Result<Option<PyItem>> {
        self.origin.call_if(&self.part, "snapshot")
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.origin.call_if(&self.part, "close").map(drop)
    }
}

/// A `riffle.outputs.DynamicSink`.
pub(crate) struct PyDynamicSink<T>(Origin, PhantomData<fn() -> T>);

impl<T> PyDynamicSink<T> {
    pub(crate) fn new(step_id: &str, sink: Py<PyAny>, failures: Failures) -> Self {
        Self(Origin::new(step_id, sink, failures), PhantomData)
    }
}

impl<T: Carrier> DynamicSink for PyDynamicSink<T> {
    type Item = T;
    type Partition = PyDynamicPartition<T>;

    fn build(&self, step_id: &str, worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        crate::attach::attach(|py| {
            self.0
                .sink
                .bind(py)
                .call_method1("build", (step_id, worker.index, worker.count))
                .map(|p| p.unbind())
        })
        .map(|part| PyDynamicPartition {
            origin: self.0.clone(),
            part,
            _item: PhantomData,
        })
        .map_err(|e| self.0.fail(e))
    }
}

/// A worker's partition of a [`PyDynamicSink`].
pub(crate) struct PyDynamicPartition<T> {
    origin: Origin,
    part: Py<PyAny>,
    _item: PhantomData<fn() -> T>,
}

impl<T: Carrier> SinkPartition for PyDynamicPartition<T> {
    type Item = T;
    type State = ();

    fn write_batch(&mut self, items: Vec<T>) -> riffle::Result<()> {
        self.origin.write(&self.part, &items)
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.origin.call_if(&self.part, "close").map(drop)
    }
}
