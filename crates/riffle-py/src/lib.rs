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
//! bytewax's EOF/ABORT markers. Sources and sinks written in Python
//! (`riffle.inputs`, `riffle.outputs`) are the engine's source and sink traits
//! calling their methods (`src/inputs.rs`, `src/outputs.rs`); the file connectors
//! are the engine's own file sources and sinks (`src/connect.rs`), and
//! `riffle.connectors.kafka` is the Kafka source and sink of `riffle-connectors`
//! (`src/kafka.rs`).
//!
//! `run_main` runs the flow on one worker in the calling thread, attached to the
//! interpreter for the whole run, so calling a user function costs no lock. With
//! several workers (`riffle.run.cli_main`, `python -m riffle.run -w N`) the
//! calling thread detaches while the engine's worker threads run, and each of
//! them attaches when it calls Python. The module makes no other assumption
//! about the GIL (`gil_used = false`: a free-threaded CPython keeps running
//! without one when it imports the module): every entry into Python attaches on
//! its own, and state shared between workers is behind mutexes or atomics.
//!
//! Several processes (`python -m riffle.run -p N`, or `-i`/`-a` and
//! `riffle.testing.cluster_main` for processes started by hand) are the
//! engine's cluster: every process builds the same flow and runs its workers as
//! one member, and items bound for a worker of another process travel over TCP.
//!
//! Under a recovery store (`riffle.recovery.RecoveryConfig`) the engine
//! snapshots Python values (keyed state, source and sink positions), and a
//! cluster sends items between processes, in the serde of `PyItem`: plain
//! values encoded in Rust, anything else pickled (`src/wire.rs`).
//!
//! ## Batch pipelines
//!
//! `riffle.pipeline` (steps as decorated Python functions, wired by the names of
//! their inputs and outputs) runs on the executor of `riffle-pipeline`, not on the
//! dataflow engine: see `src/pipeline.rs`.
//!
//! ## Errors
//!
//! See `src/failure.rs`: build errors are `ValueError`/`TypeError` naming the step; an
//! exception raised by a user function during a run comes back as a
//! `riffle.RiffleError` naming the step, caused by the user's exception object.

mod attach;
mod connect;
mod dataflow;
mod failure;
mod inputs;
mod item;
mod join;
mod kafka;
mod operators;
mod outputs;
mod pipeline;
mod signals;
mod sinks;
mod stateful;
mod testing_source;
mod unchecked;
mod windows;
mod wire;
mod workers;

use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;

use crate::dataflow::PyDataflow;
use crate::failure::run_error;

/// A duration in seconds from Python: positive, or a `ValueError` naming `what`.
fn seconds(what: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what} must be a positive duration; got {seconds} seconds"
            ))
        })
}

/// `run_main(flow, epoch_interval=None, workers=1, recovery_dir=None,
/// snapshot_interval=None, process_id=None, addresses=None)`: runs `flow` to its
/// end; intervals in seconds (the engine's default epoch is 10 s). With
/// `process_id` and `addresses` (`host:port` of every process, in process order)
/// this process runs its workers as that member of a cluster of processes
/// ([`riffle::Execution::cluster`]), which exchange items over TCP.
///
/// One worker runs in this thread, attached to the interpreter for the whole
/// run, so calling a user function costs no lock. Several workers, and every
/// member of a cluster, are the engine's worker threads: this thread detaches
/// from the interpreter while they run, and each of them attaches whenever it
/// calls Python (under the GIL, one at a time; on a free-threaded build, at once).
#[pyfunction]
#[pyo3(signature = (flow, epoch_interval=None, workers=1, recovery_dir=None, snapshot_interval=None, process_id=None, addresses=None))]
#[allow(clippy::too_many_arguments)]
fn run_main(
    py: Python<'_>,
    flow: &PyDataflow,
    epoch_interval: Option<f64>,
    workers: usize,
    recovery_dir: Option<std::path::PathBuf>,
    snapshot_interval: Option<f64>,
    process_id: Option<usize>,
    addresses: Option<Vec<String>>,
) -> PyResult<()> {
    if workers == 0 {
        return Err(PyValueError::new_err(
            "workers_per_process must be at least 1; got 0",
        ));
    }
    let mut execution = riffle::Execution::new().workers(workers);
    let clustered = match (process_id, addresses) {
        (None, None) => false,
        (Some(id), Some(addresses)) => {
            if id >= addresses.len() {
                return Err(PyValueError::new_err(format!(
                    "process_id {id} is out of range: the cluster has {} address(es)",
                    addresses.len()
                )));
            }
            execution = execution.cluster(id, addresses);
            true
        }
        _ => {
            return Err(PyValueError::new_err(
                "process_id and addresses go together: give both or neither",
            ));
        }
    };
    if let Some(interval) = epoch_interval {
        execution = execution.epoch_interval(seconds("epoch_interval", interval)?);
    }
    if let Some(dir) = recovery_dir {
        let mut recovery = riffle::recovery::Recovery::new(dir);
        if let Some(interval) = snapshot_interval {
            recovery = recovery.snapshot_interval(seconds("snapshot_interval", interval)?);
        }
        execution = execution.recovery(recovery);
    }
    flow.failures.clear();
    flow.failures.set_clustered(clustered);
    let result = if workers == 1 && !clustered {
        execution.run(&flow.flow)
    } else {
        py.detach(|| run_watching(&execution, flow))
    };
    match result {
        // Ctrl-C: the steps that noticed it stopped the run.
        _ if flow.failures.take_interrupt(py) => Err(PyKeyboardInterrupt::new_err(
            "the run was interrupted (Ctrl-C)",
        )),
        // An exception the engine could not be told of at once (a source
        // partition's `snapshot` or `next_awake` raising after its last poll)
        // still fails the run.
        Ok(()) if flow.failures.recorded() => Err(run_error(
            py,
            riffle::RiffleError::Execution(String::new()),
            &flow.failures,
        )),
        Ok(()) => Ok(()),
        // A `TestingSource.ABORT()` marker stops the run the way a crash would,
        // and, as in bytewax, `run_main` returns.
        Err(_) if flow.failures.take_abort() => Ok(()),
        Err(e) => Err(run_error(py, e, &flow.failures)),
    }
}

/// Runs `flow` on the engine's worker threads while this (main) thread watches
/// for Ctrl-C (`signals.rs`): a `KeyboardInterrupt` sets the flow's interrupt flag,
/// which the next batch step or Python source on each worker turns into an error
/// that stops the run.
fn run_watching(execution: &riffle::Execution, flow: &PyDataflow) -> riffle::Result<()> {
    signals::run_watching_signals(|| execution.run(&flow.flow), || flow.failures.interrupt())
        .unwrap_or_else(|_| Err(riffle::RiffleError::Execution("the run panicked".into())))
}

/// `init_recovery(db_dir, count)`: makes a recovery store of `count` partition
/// files in `db_dir` (bytewax's `python -m bytewax.recovery db_dir count`).
#[pyfunction]
fn init_recovery(py: Python<'_>, db_dir: std::path::PathBuf, count: usize) -> PyResult<()> {
    if count == 0 {
        return Err(PyValueError::new_err(
            "a recovery store needs at least 1 partition; got 0",
        ));
    }
    riffle::recovery::RecoveryStore::init(&db_dir, count)
        .map_err(|e| failure::riffle_error(py, e.to_string(), None))
}

/// The extension module; the Python package re-exports what users need.
#[pymodule(gil_used = false)]
fn _riffle(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RiffleError", m.py().get_type::<failure::RiffleError>())?;
    m.add_class::<PyDataflow>()?;
    m.add_class::<dataflow::PyStream>()?;
    m.add_function(wrap_pyfunction!(run_main, m)?)?;
    m.add_function(wrap_pyfunction!(init_recovery, m)?)?;
    m.add_function(wrap_pyfunction!(connect::input_source, m)?)?;
    m.add_function(wrap_pyfunction!(connect::output_sink, m)?)?;
    m.add_function(wrap_pyfunction!(connect::input_files, m)?)?;
    m.add_function(wrap_pyfunction!(connect::output_files, m)?)?;
    m.add_function(wrap_pyfunction!(kafka::input_kafka, m)?)?;
    m.add_function(wrap_pyfunction!(kafka::output_kafka, m)?)?;
    m.add_function(wrap_pyfunction!(kafka::kafka_create_topic, m)?)?;
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
    m.add_function(wrap_pyfunction!(stateful::stateful, m)?)?;
    m.add_function(wrap_pyfunction!(join::join, m)?)?;
    m.add_function(wrap_pyfunction!(workers::redistribute, m)?)?;
    m.add_function(wrap_pyfunction!(workers::inspect_debug, m)?)?;
    m.add_function(wrap_pyfunction!(windows::window, m)?)?;
    m.add_function(wrap_pyfunction!(windows::join_window, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::run_pipeline, m)?)?;
    Ok(())
}
