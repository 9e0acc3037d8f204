//! # Riffle from Python
//!
//! This crate is the extension module `riffle._riffle` behind the Python package
//! `riffle` (in `python/riffle/`), built into one abi3 wheel for CPython 3.9 and
//! later by maturin: `pip install ./crates/riffle-py`. The package has the shape
//! of bytewax 0.21's, so a bytewax dataflow moves over by changing its imports:
//!
//! ```python
//! from riffle.dataflow import Dataflow
//! import riffle.operators as op
//! from riffle.testing import TestingSource, TestingSink, run_main
//!
//! flow = Dataflow("shout")
//! words = op.input("inp", flow, TestingSource(["a", "b"]))
//! out = []
//! op.output("out", op.map("upper", words, str.upper), TestingSink(out))
//! run_main(flow)
//! assert out == ["A", "B"]
//! ```
//!
//! ## Where the work happens
//!
//! Building a Python dataflow builds a [`riffle::Dataflow`]: every function of
//! `riffle.operators` adds the engine's operator for its step (`src/operators.rs`;
//! `src/stateful.rs` for `stateful_flat_map`, `fold_final` and `collect`,
//! `src/join.rs`, `src/workers.rs` for `redistribute` and `inspect_debug`,
//! `src/windows.rs` for `riffle.operators.windowing`), so
//! batching, routing by key, keyed state, epochs and sinks run in Rust, and Python
//! runs only the user's functions. Items are Python objects held by the engine
//! (`src/item.rs`); keys are Rust strings. A stateless step enters Python once per batch.
//! `TestingSource` is the engine's, or `src/testing_source.rs` when its items hold
//! bytewax's EOF/ABORT markers.
//!
//! `run_main` runs the flow on one worker in the calling thread, attached to the
//! interpreter for the whole run, so calling a user function costs no lock. The
//! module makes no other assumption about the GIL (`gil_used = false`): every
//! entry into Python attaches on its own, and shared state is behind mutexes.
//!
//! ## Errors
//!
//! See `src/failure.rs`: build errors are `ValueError`/`TypeError` naming the step; an
//! exception raised by a user function during a run comes back as a
//! `riffle.RiffleError` naming the step, caused by the user's exception object.

mod dataflow;
mod failure;
mod item;
mod join;
mod operators;
mod sinks;
mod stateful;
mod testing_source;
mod windows;
mod workers;

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::dataflow::PyDataflow;
use crate::failure::run_error;

/// `run_main(flow, epoch_interval=None)`: runs `flow` to its end on one worker in
/// this thread; `epoch_interval` in seconds (the engine's default is 10).
#[pyfunction]
#[pyo3(signature = (flow, epoch_interval=None))]
fn run_main(py: Python<'_>, flow: &PyDataflow, epoch_interval: Option<f64>) -> PyResult<()> {
    let mut execution = riffle::Execution::new();
    if let Some(seconds) = epoch_interval {
        let interval = Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "epoch_interval must be a positive duration; got {seconds} seconds"
                ))
            })?;
        execution = execution.epoch_interval(interval);
    }
    flow.failures.clear();
    match execution.run(&flow.flow) {
        Ok(()) => Ok(()),
        // A `TestingSource.ABORT()` marker stops the run the way a crash would,
        // and, as in bytewax, `run_main` returns.
        Err(_) if flow.failures.take_abort() => Ok(()),
        Err(e) => Err(run_error(py, e, &flow.failures)),
    }
}

/// The extension module; the Python package re-exports what users need.
#[pymodule(gil_used = false)]
fn _riffle(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RiffleError", m.py().get_type::<failure::RiffleError>())?;
    m.add_class::<PyDataflow>()?;
    m.add_class::<dataflow::PyStream>()?;
    m.add_function(wrap_pyfunction!(run_main, m)?)?;
    m.add_function(wrap_pyfunction!(operators::input_testing, m)?)?;
    m.add_function(wrap_pyfunction!(operators::output, m)?)?;
    m.add_function(wrap_pyfunction!(operators::map, m)?)?;
    m.add_function(wrap_pyfunction!(operators::filter, m)?)?;
    m.add_function(wrap_pyfunction!(operators::filter_map, m)?)?;
    m.add_function(wrap_pyfunction!(operators::flat_map, m)?)?;
    m.add_function(wrap_pyfunction!(operators::flat_map_batch, m)?)?;
    m.add_function(wrap_pyfunction!(operators::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(operators::branch, m)?)?;
    m.add_function(wrap_pyfunction!(operators::merge, m)?)?;
    m.add_function(wrap_pyfunction!(operators::key_on, m)?)?;
    m.add_function(wrap_pyfunction!(operators::map_value, m)?)?;
    m.add_function(wrap_pyfunction!(operators::filter_value, m)?)?;
    m.add_function(wrap_pyfunction!(operators::flat_map_value, m)?)?;
    m.add_function(wrap_pyfunction!(operators::key_rm, m)?)?;
    m.add_function(wrap_pyfunction!(operators::flatten, m)?)?;
    m.add_function(wrap_pyfunction!(operators::stateful_map, m)?)?;
    m.add_function(wrap_pyfunction!(operators::count_final, m)?)?;
    m.add_function(wrap_pyfunction!(operators::reduce_final, m)?)?;
    m.add_function(wrap_pyfunction!(stateful::stateful_flat_map, m)?)?;
    m.add_function(wrap_pyfunction!(stateful::fold_final, m)?)?;
    m.add_function(wrap_pyfunction!(stateful::collect, m)?)?;
    m.add_function(wrap_pyfunction!(join::join, m)?)?;
    m.add_function(wrap_pyfunction!(workers::redistribute, m)?)?;
    m.add_function(wrap_pyfunction!(workers::inspect_debug, m)?)?;
    m.add_function(wrap_pyfunction!(windows::window, m)?)?;
    m.add_function(wrap_pyfunction!(windows::join_window, m)?)?;
    Ok(())
}
