//! [`PySink`]: the engine's sink for Python, a function called with each batch.
//!
//! Every worker writes what it holds (a dynamic sink): `write(items)` receives a
//! list per batch, in the order the worker received them. `riffle.testing`'s
//! `TestingSink` passes its list's `extend`; `riffle.connectors.stdio`'s
//! `StdOutSink` passes a function that prints. An exception from `write` stops
//! the run like one from any user function, naming the output step.

use std::marker::PhantomData;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyList;
use riffle::sinks::{DynamicSink, SinkPartition, WorkerInfo};

use crate::failure::Failures;
use crate::item::Carrier;

/// Calls a Python function with every batch of items.
pub(crate) struct PySink<T> {
    step_id: String,
    write: Arc<Py<PyAny>>,
    failures: Failures,
    _item: PhantomData<fn() -> T>,
}

impl<T> PySink<T> {
    pub(crate) fn new(step_id: &str, write: Arc<Py<PyAny>>, failures: Failures) -> Self {
        Self {
            step_id: step_id.to_string(),
            write,
            failures,
            _item: PhantomData,
        }
    }
}

impl<T: Carrier> DynamicSink for PySink<T> {
    type Item = T;
    type Partition = PySinkPartition<T>;

    fn build(&self, _step_id: &str, _worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        Ok(PySinkPartition {
            step_id: self.step_id.clone(),
            write: self.write.clone(),
            failures: self.failures.clone(),
            _item: PhantomData,
        })
    }
}

/// A worker's partition of a [`PySink`].
pub(crate) struct PySinkPartition<T> {
    step_id: String,
    write: Arc<Py<PyAny>>,
    failures: Failures,
    _item: PhantomData<fn() -> T>,
}

impl<T: Carrier> SinkPartition for PySinkPartition<T> {
    type Item = T;
    type State = ();

    fn write_batch(&mut self, items: Vec<T>) -> riffle::Result<()> {
        crate::attach::attach(|py| -> PyResult<()> {
            let objects = items
                .iter()
                .map(|item| item.to_py(py))
                .collect::<PyResult<Vec<_>>>()?;
            self.write.bind(py).call1((PyList::new(py, objects)?,))?;
            Ok(())
        })
        .map_err(|e| {
            let summary = self.failures.record(&self.step_id, e);
            riffle::RiffleError::connector(&self.step_id, summary)
        })
    }
}
