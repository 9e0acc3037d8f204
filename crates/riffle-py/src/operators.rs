//! The operators behind `riffle.operators`: each adds the engine's own operator
//! for the step, and Python runs only the user's function.
//!
//! **Stateless steps** (`map`, `filter`, `filter_map`, `flat_map`,
//! `flat_map_batch`, `flatten`, `inspect`, `key_on`, `key_rm`, `map_value`,
//! `filter_value`, `flat_map_value`) are batch steps of the engine
//! ([`Stream::try_flat_map_batch`]): each batch enters Python once and the user's
//! function is called on its items in a loop there (`flat_map_batch` calls it
//! once, with the batch as a list).
//!
//! **Keyed steps** run the engine's keyed operators on `(String, PyItem)` pairs:
//! routing by key, state per key and the end-of-stream results are Rust.
//! `count_final` computes keys in a batch step (`STEP.key`) and counts in Rust
//! with no Python at all; `stateful_map` and `reduce_final` call the user's
//! function from inside the engine's per-item logic. A stream that is not keyed
//! yet is checked and keyed by a batch step `STEP.key` first. In a run of several
//! processes that step also checks that each value can be encoded for another
//! process (a keyed step sends it to the worker owning its key, which may be
//! elsewhere), so an object `pickle` refuses stops the run naming the step that
//! produced it, instead of failing inside the engine's exchange.
//! `reduce_final` pre-aggregates: each worker reduces the values it holds and
//! sends the owner of the key its partial accumulator, so in a clustered run
//! every accumulator its reducer makes there is checked too, and one `pickle`
//! refuses stops the run naming the `reduce_final` step (the owner's merges
//! stay where they are made and are not checked).
//!
//! An exception from a user function is recorded in the flow's
//! [`Failures`](crate::failure::Failures) with the user's step id. Batch steps then
//! return an error; per-item logic unwinds (without the panic hook, so nothing
//! is printed) into the engine's guard around every step, which stops the run.

use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PyString, PyTuple, PyType};
use riffle::Stream;

use crate::dataflow::{Port, PyDataflow, PyStream};
use crate::failure::{Failures, build_error, callable};
use crate::item::{Carrier, PyItem, check_accumulator, check_sendable};
use crate::sinks::PySink;
use crate::testing_source::{Entry, MarkedSource};

/// Runs `$body` with `$stream` bound to the Rust stream of `$port`, whichever it
/// is: `on_port!(&up.port, |s| body)` (the body is compiled once per kind of item).
macro_rules! on_port {
    ($port:expr, |$stream:ident| $body:expr) => {
        match $port {
            $crate::dataflow::Port::Items($stream) => $body,
            $crate::dataflow::Port::Keyed($stream) => $body,
        }
    };
}
pub(crate) use on_port;

/// Adds batch step `rust_id` for the user's step `step_id`: attached to the
/// interpreter once per batch, `each(py, item, out)` for every item.
pub(crate) fn batch_step<T: riffle::Data, U: riffle::Data>(
    stream: &Stream<T>,
    rust_id: &str,
    step_id: &str,
    failures: &Failures,
    each: impl Fn(Python<'_>, T, &mut Vec<U>) -> PyResult<()> + Send + Sync + 'static,
) -> riffle::Result<Stream<U>> {
    let failures = failures.clone();
    let step_id = step_id.to_string();
    stream.try_flat_map_batch(rust_id, move |batch: Vec<T>| {
        crate::attach::attach(|py| {
            failures.check_interrupt(py)?;
            let mut out = Vec::with_capacity(batch.len());
            for item in batch {
                each(py, item, &mut out)?;
            }
            Ok(out)
        })
        .map_err(|e: PyErr| failures.record(&step_id, e))
    })
}

/// Stops the run from inside the engine's per-item logic: records `error` and
/// unwinds to the engine's guard (without running the panic hook).
pub(crate) fn fail(failures: &Failures, step_id: &str, error: PyErr) -> ! {
    let summary = failures.record(step_id, error);
    std::panic::resume_unwind(Box::new(summary))
}

/// `up` as a stream: a `TypeError` naming the step if it is anything else.
pub(crate) fn upstream<'a>(step_id: &str, up: &'a Bound<'_, PyAny>) -> PyResult<&'a PyStream> {
    match up.cast::<PyStream>() {
        Ok(stream) => Ok(stream.get()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `up` must be a Stream; got a {} instead",
            type_name(up)
        ))),
    }
}

/// The name of `value`'s type, for messages.
pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// The stream of `up` as keyed pairs, for a keyed step that sends each value to
/// the worker owning its key: through a batch step `STEP.key` that checks each
/// item is a `(str, value)` 2-tuple (a stream keyed already needs no such check)
/// and, in a clustered run, that its value can be sent to another process
/// ([`sendable`]).
pub(crate) fn keyed(up: &PyStream, step_id: &str) -> riffle::Result<Stream<(String, PyItem)>> {
    keyed_as(up, step_id, &format!("{step_id}.key"))
}

/// [`keyed`] with the checking step named `rust_id` (for steps with several
/// inputs, each checked by a step of its own).
pub(crate) fn keyed_as(
    up: &PyStream,
    step_id: &str,
    rust_id: &str,
) -> riffle::Result<Stream<(String, PyItem)>> {
    match &up.port {
        Port::Keyed(stream) => sendable(stream, rust_id, up, step_id),
        Port::Items(stream) => {
            let id = step_id.to_string();
            let producer = up.step_id().to_string();
            let failures = up.flow.get().failures.clone();
            let checks = failures.clone();
            batch_step(stream, rust_id, step_id, &failures, move |py, item, out| {
                let pair = item.into_keyed(py, &id)?;
                if checks.clustered() {
                    check_sendable(py, &pair, &checks, &producer, &id)?;
                }
                out.push(pair);
                Ok(())
            })
        }
    }
}

/// The stream of `up` as keyed pairs, for a step that does not send the values
/// as they are (it turns them into text first): as it is, or through a batch
/// step `STEP.key` that checks each item is a `(str, value)` 2-tuple.
pub(crate) fn keyed_in_place(
    up: &PyStream,
    step_id: &str,
) -> riffle::Result<Stream<(String, PyItem)>> {
    match &up.port {
        Port::Keyed(stream) => Ok(stream.clone()),
        Port::Items(stream) => {
            let id = step_id.to_string();
            let failures = &up.flow.get().failures;
            batch_step(
                stream,
                &format!("{step_id}.key"),
                step_id,
                failures,
                move |py, item, out| {
                    out.push(item.into_keyed(py, &id)?);
                    Ok(())
                },
            )
        }
    }
}

/// `stream` (the items of `up`) through a step `rust_id` that, in a clustered run,
/// checks each item can be sent to another process before step `step_id` sends
/// it there: the engine's exchange cannot stop a run cleanly on an item that
/// does not encode, this step can, naming the step that produced it. In a run of
/// one process items are never encoded, and the step passes each batch on
/// without entering Python.
pub(crate) fn sendable<T: Carrier>(
    stream: &Stream<T>,
    rust_id: &str,
    up: &PyStream,
    step_id: &str,
) -> riffle::Result<Stream<T>> {
    let failures = up.flow.get().failures.clone();
    let producer = up.step_id().to_string();
    let consumer = step_id.to_string();
    stream.try_flat_map_batch(rust_id, move |batch: Vec<T>| {
        if !failures.clustered() {
            return Ok(batch);
        }
        crate::attach::attach(|py| {
            for item in &batch {
                check_sendable(py, item, &failures, &producer, &consumer)?;
            }
            Ok(batch)
        })
        .map_err(|e: PyErr| failures.record(&consumer, e))
    })
}

/// The Python stream of a step's result, or the `build_error` for the engine's
/// refusal.
pub(crate) fn finish(
    py: Python<'_>,
    up: &PyStream,
    step_id: &str,
    port: riffle::Result<Port>,
) -> PyResult<PyStream> {
    let port = port.map_err(|e| build_error(py, e))?;
    Ok(PyStream::new(up.flow.clone_ref(py), step_id, port))
}

/// Takes `step_id` in `up`'s flow and returns the flow.
pub(crate) fn claim<'a>(up: &'a PyStream, step_id: &str) -> PyResult<&'a PyDataflow> {
    let flow = up.flow.get();
    flow.claim(step_id)?;
    Ok(flow)
}

/// `input(step_id, flow, items, batch_size, eof, abort)`: the items of an
/// iterable, read in batches of `batch_size` (a `TestingSource`); instances of
/// the classes `eof` and `abort` among them are `TestingSource.EOF()` and
/// `TestingSource.ABORT()` markers (see `src/testing_source.rs`).
#[pyfunction]
pub(crate) fn input_testing(
    py: Python<'_>,
    step_id: &str,
    flow: &Bound<'_, PyAny>,
    items: &Bound<'_, PyAny>,
    batch_size: usize,
    eof: &Bound<'_, PyType>,
    abort: &Bound<'_, PyType>,
) -> PyResult<PyStream> {
    let flow = flow.cast::<PyDataflow>().map_err(|_| {
        PyTypeError::new_err(format!(
            "step {step_id:?}: `flow` must be a Dataflow; got a {} instead",
            type_name(flow)
        ))
    })?;
    let mut entries = Vec::new();
    let mut marked = false;
    for item in items.try_iter()? {
        let item = item?;
        if item.is(eof) || item.is(abort) {
            return Err(PyValueError::new_err(format!(
                "step {step_id:?}: `TestingSource.{}` must be instantiated; use `()`",
                if item.is(eof) { "EOF" } else { "ABORT" }
            )));
        }
        entries.push(if item.is_instance(eof)? {
            marked = true;
            Entry::Eof
        } else if item.is_instance(abort)? {
            marked = true;
            Entry::Abort(item.unbind())
        } else {
            Entry::Item(PyItem::from(item))
        });
    }
    let dataflow = flow.get();
    dataflow.claim(step_id)?;
    let stream = if marked {
        let source = MarkedSource::new(step_id, entries, batch_size, dataflow.failures.clone());
        dataflow.flow.input(step_id, source)
    } else {
        let items = entries
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Item(item) => Some(item),
                Entry::Eof | Entry::Abort(_) => None,
            })
            .collect();
        let source = riffle::sources::TestingSource::new(items).batch_size(batch_size);
        dataflow.flow.input(step_id, source)
    }
    .map_err(|e| build_error(py, e))?;
    Ok(PyStream::new(
        flow.clone().unbind(),
        step_id,
        Port::Items(stream),
    ))
}

/// `output(step_id, up, write)`: calls `write(list_of_items)` with every batch.
#[pyfunction]
pub(crate) fn output(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    write: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let up = upstream(step_id, up)?;
    let write = Arc::new(callable(step_id, "write", write)?);
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    on_port!(&up.port, |s| s
        .output_dynamic(step_id, PySink::new(step_id, write, failures)))
    .map_err(|e| build_error(py, e))
}

/// `map(step_id, up, mapper)`: `mapper(item)` for every item.
#[pyfunction]
pub(crate) fn map(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    mapper: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "mapper", mapper)?;
    let flow = claim(up, step_id)?;
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out: &mut Vec<PyItem>| {
            out.push(f.bind(py).call1((item.to_py(py)?,))?.into());
            Ok(())
        }
    )
    .map(Port::Items));
    finish(py, up, step_id, port)
}

/// `filter(step_id, up, predicate)`: the items for which `predicate(item)` is
/// `True`; anything but a bool is a `TypeError`.
#[pyfunction]
pub(crate) fn filter(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    predicate: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "predicate", predicate)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            let keep = f.bind(py).call1((item.to_py(py)?,))?;
            match keep.cast::<PyBool>() {
                Ok(keep) => {
                    if keep.is_true() {
                        out.push(item);
                    }
                    Ok(())
                }
                Err(_) => Err(PyTypeError::new_err(format!(
                    "step {id:?}: `predicate` must return a bool; got a {} instead",
                    type_name(&keep)
                ))),
            }
        }
    )
    .map(Carrier::port));
    finish(py, up, step_id, port)
}

/// `filter_map(step_id, up, mapper)`: `mapper(item)` for every item, dropping `None`.
#[pyfunction]
pub(crate) fn filter_map(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    mapper: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "mapper", mapper)?;
    let flow = claim(up, step_id)?;
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out: &mut Vec<PyItem>| {
            let mapped = f.bind(py).call1((item.to_py(py)?,))?;
            if !mapped.is_none() {
                out.push(mapped.into());
            }
            Ok(())
        }
    )
    .map(Port::Items));
    finish(py, up, step_id, port)
}

/// `flat_map(step_id, up, mapper)`: every item of the iterable `mapper(item)`.
#[pyfunction]
pub(crate) fn flat_map(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    mapper: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "mapper", mapper)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out: &mut Vec<PyItem>| {
            let many = f.bind(py).call1((item.to_py(py)?,))?;
            for one in iterate(&id, "mapper", &many)? {
                out.push(one?.into());
            }
            Ok(())
        }
    )
    .map(Port::Items));
    finish(py, up, step_id, port)
}

/// `flat_map_batch(step_id, up, mapper)`: every item of the iterable
/// `mapper(items)`, called once per batch with the batch's items as a list.
#[pyfunction]
pub(crate) fn flat_map_batch(
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
    let port = on_port!(&up.port, |s| s
        .try_flat_map_batch(step_id, move |batch| {
            crate::attach::attach(|py| -> PyResult<Vec<PyItem>> {
                let items = batch
                    .iter()
                    .map(|item| item.to_py(py))
                    .collect::<PyResult<Vec<_>>>()?;
                let many = f.bind(py).call1((PyList::new(py, items)?,))?;
                iterate(&id, "mapper", &many)?
                    .map(|one| one.map(PyItem::from))
                    .collect()
            })
            .map_err(|e| failures.record(&id, e))
        })
        .map(Port::Items));
    finish(py, up, step_id, port)
}

/// `branch(step_id, up, predicate)`: `(trues, falses)`, the items for which
/// `predicate(item)` is `True` and those for which it is `False`.
///
/// The predicate runs in a batch step `STEP` that tags each item; the engine's
/// `branch` (`STEP.split`) and two untagging steps (`STEP.trues`, `STEP.falses`)
/// are Rust only.
#[pyfunction]
pub(crate) fn branch(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    predicate: &Bound<'_, PyAny>,
) -> PyResult<(PyStream, PyStream)> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "predicate", predicate)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let ports = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            let verdict = f.bind(py).call1((item.to_py(py)?,))?;
            match verdict.cast::<PyBool>() {
                Ok(verdict) => {
                    out.push((verdict.is_true(), item));
                    Ok(())
                }
                Err(_) => Err(PyTypeError::new_err(format!(
                    "step {id:?}: `predicate` must return a bool; got a {} instead",
                    type_name(&verdict)
                ))),
            }
        }
    )
    .and_then(|tagged| tagged.branch(&format!("{step_id}.split"), |(verdict, _)| *verdict))
    .and_then(|(trues, falses)| {
        let untag = |(_, item)| item;
        Ok((
            Carrier::port(trues.map(&format!("{step_id}.trues"), untag)?),
            Carrier::port(falses.map(&format!("{step_id}.falses"), untag)?),
        ))
    }));
    let (trues, falses) = ports.map_err(|e| build_error(py, e))?;
    Ok((
        PyStream::new(up.flow.clone_ref(py), step_id, trues).named("trues"),
        PyStream::new(up.flow.clone_ref(py), step_id, falses).named("falses"),
    ))
}

/// `merge(step_id, ups)`: one stream with the items of all of `ups`. Keyed streams
/// stay keyed when all are; otherwise each keyed one becomes tuples first (a
/// batch step `STEP.itemsN`).
#[pyfunction]
pub(crate) fn merge(
    py: Python<'_>,
    step_id: &str,
    ups: Vec<Bound<'_, PyAny>>,
) -> PyResult<PyStream> {
    let ups = ups
        .iter()
        .map(|up| upstream(step_id, up))
        .collect::<PyResult<Vec<_>>>()?;
    let Some(first) = ups.first() else {
        return Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `merge` needs at least one stream"
        )));
    };
    let flow = claim(first, step_id)?;
    let keyed: Option<Vec<&Stream<(String, PyItem)>>> = ups
        .iter()
        .map(|up| match &up.port {
            Port::Keyed(s) => Some(s),
            Port::Items(_) => None,
        })
        .collect();
    let port = match keyed {
        Some(streams) => streams[0].merge(step_id, &streams[1..]).map(Port::Keyed),
        None => ups
            .iter()
            .enumerate()
            .map(|(n, up)| match &up.port {
                Port::Items(s) => Ok(s.clone()),
                Port::Keyed(s) => batch_step(
                    s,
                    &format!("{step_id}.items{n}"),
                    step_id,
                    &flow.failures,
                    |py, item, out| {
                        out.push(PyItem::from(item.to_py(py)?));
                        Ok(())
                    },
                ),
            })
            .collect::<riffle::Result<Vec<_>>>()
            .and_then(|streams| {
                let rest: Vec<&Stream<PyItem>> = streams[1..].iter().collect();
                streams[0].merge(step_id, &rest)
            })
            .map(Port::Items),
    };
    finish(py, first, step_id, port)
}

/// `inspect(step_id, up, inspector)`: `inspector(step_id, item)` for every item,
/// which passes on unchanged.
#[pyfunction]
pub(crate) fn inspect(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    inspector: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "inspector", inspector)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            f.bind(py).call1((id.as_str(), item.to_py(py)?))?;
            out.push(item);
            Ok(())
        }
    )
    .map(Carrier::port));
    finish(py, up, step_id, port)
}

/// `key_on(step_id, up, key)`: `(key(item), item)` for every item; the key must
/// be a str.
#[pyfunction]
pub(crate) fn key_on(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "key", key)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            let value = item.to_py(py)?;
            let key = f.bind(py).call1((&value,))?;
            out.push((str_key(&id, "key", &key)?, PyItem::from(value)));
            Ok(())
        }
    )
    .map(Port::Keyed));
    finish(py, up, step_id, port)
}

/// `key` as a Rust string, or a `TypeError` naming the step and the function.
pub(crate) fn str_key(step_id: &str, function: &str, key: &Bound<'_, PyAny>) -> PyResult<String> {
    match key.cast::<PyString>() {
        Ok(key) => Ok(key.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `{function}` must return a str; got a {} instead",
            type_name(key)
        ))),
    }
}

/// `map_value(step_id, up, mapper)`: `(key, mapper(value))` for every pair.
#[pyfunction]
pub(crate) fn map_value(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    mapper: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "mapper", mapper)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            let (key, value) = item.into_keyed(py, &id)?;
            out.push((key, f.bind(py).call1((value.bind(py),))?.into()));
            Ok(())
        }
    )
    .map(Port::Keyed));
    finish(py, up, step_id, port)
}

/// `filter_value(step_id, up, predicate)`: the `(key, value)` pairs for which
/// `predicate(value)` is `True`; anything but a bool is a `TypeError`.
#[pyfunction]
pub(crate) fn filter_value(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    predicate: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "predicate", predicate)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            let (key, value) = item.into_keyed(py, &id)?;
            let keep = f.bind(py).call1((value.bind(py),))?;
            match keep.cast::<PyBool>() {
                Ok(keep) => {
                    if keep.is_true() {
                        out.push((key, value));
                    }
                    Ok(())
                }
                Err(_) => Err(PyTypeError::new_err(format!(
                    "step {id:?}: `predicate` must return a bool; got a {} instead",
                    type_name(&keep)
                ))),
            }
        }
    )
    .map(Port::Keyed));
    finish(py, up, step_id, port)
}

/// `flat_map_value(step_id, up, mapper)`: `(key, w)` for every `w` of the
/// iterable `mapper(value)`, for every `(key, value)` pair.
#[pyfunction]
pub(crate) fn flat_map_value(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    mapper: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "mapper", mapper)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            let (key, value) = item.into_keyed(py, &id)?;
            let many = f.bind(py).call1((value.bind(py),))?;
            for one in iterate(&id, "mapper", &many)? {
                out.push((key.clone(), one?.into()));
            }
            Ok(())
        }
    )
    .map(Port::Keyed));
    finish(py, up, step_id, port)
}

/// `key_rm(step_id, up)`: the value of every `(key, value)` pair.
#[pyfunction]
pub(crate) fn key_rm(py: Python<'_>, step_id: &str, up: &Bound<'_, PyAny>) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out| {
            out.push(item.into_keyed(py, &id)?.1);
            Ok(())
        }
    )
    .map(Port::Items));
    finish(py, up, step_id, port)
}

/// `flatten(step_id, up)`: every item of every item, each an iterable.
#[pyfunction]
pub(crate) fn flatten(py: Python<'_>, step_id: &str, up: &Bound<'_, PyAny>) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let port = on_port!(&up.port, |s| batch_step(
        s,
        step_id,
        step_id,
        &flow.failures,
        move |py, item, out: &mut Vec<PyItem>| {
            let many = item.to_py(py)?;
            let iter = many.try_iter().map_err(|_| {
                PyTypeError::new_err(format!(
                    "step {id:?} needs iterable items; got a {} instead",
                    type_name(&many)
                ))
            })?;
            for one in iter {
                out.push(one?.into());
            }
            Ok(())
        }
    )
    .map(Port::Items));
    finish(py, up, step_id, port)
}

/// Iterates `many`, which `function` returned: a `TypeError` naming the step and
/// the function if it is not iterable.
pub(crate) fn iterate<'py>(
    step_id: &str,
    function: &str,
    many: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, pyo3::types::PyIterator>> {
    many.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "step {step_id:?}: `{function}` must return an iterable; got a {} instead",
            type_name(many)
        ))
    })
}

/// `stateful_map(step_id, up, mapper)`: per key, `mapper(state, value)` returns
/// `(state, out)`; the state starts as `None` and `None` forgets it.
#[pyfunction]
pub(crate) fn stateful_map(
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
    let port = keyed(up, step_id).and_then(|s| {
        s.stateful_map(
            step_id,
            |_key: &String| None::<PyItem>,
            move |state: Option<PyItem>, value: PyItem| {
                crate::attach::attach(|py| map_with_state(py, &f, &id, state, value))
                    .unwrap_or_else(|e| fail(&failures, &id, e))
            },
        )
        .map(Port::Keyed)
    });
    finish(py, up, step_id, port)
}

/// One call of a `stateful_map` mapper: `(next, emit)`, where `next` is `None`
/// to forget the key and `Some(state)` to keep it.
fn map_with_state(
    py: Python<'_>,
    mapper: &Py<PyAny>,
    step_id: &str,
    state: Option<PyItem>,
    value: PyItem,
) -> PyResult<(Option<Option<PyItem>>, PyItem)> {
    let state = match &state {
        Some(state) => state.bind(py).clone(),
        None => py.None().into_bound(py),
    };
    let result = mapper.bind(py).call1((state, value.bind(py)))?;
    let Some(pair) = result.cast::<PyTuple>().ok().filter(|t| t.len() == 2) else {
        return Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `mapper` must return a 2-tuple \
             `(updated_state, emit_value)`; got a {} instead",
            type_name(&result)
        )));
    };
    let (next, emit) = (pair.get_item(0)?, pair.get_item(1)?);
    let next = (!next.is_none()).then(|| Some(PyItem::from(next)));
    Ok((next, PyItem::from(emit)))
}

/// `count_final(step_id, up, key)`: `(key, count)` for every key `key(item)`
/// gave, when the stream ends.
#[pyfunction]
pub(crate) fn count_final(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = callable(step_id, "key", key)?;
    let flow = claim(up, step_id)?;
    let id = step_id.to_string();
    let keys = on_port!(&up.port, |s| batch_step(
        s,
        &format!("{step_id}.key"),
        step_id,
        &flow.failures,
        move |py, item, out| {
            let key = f.bind(py).call1((item.to_py(py)?,))?;
            out.push(str_key(&id, "key", &key)?);
            Ok(())
        }
    ));
    let port = keys
        .and_then(|keys| keys.count_final(step_id, |key: String| key))
        .and_then(|counts| {
            batch_step(
                &counts,
                &format!("{step_id}.out"),
                step_id,
                &flow.failures,
                |py, (key, count), out| {
                    out.push((key, PyItem::from(count.into_pyobject(py)?.into_any())));
                    Ok(())
                },
            )
        })
        .map(Port::Keyed);
    finish(py, up, step_id, port)
}

/// `reduce_final(step_id, up, reducer)`: per key, `reducer(acc, value)` over its
/// values; `(key, acc)` when the stream ends.
#[pyfunction]
pub(crate) fn reduce_final(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    reducer: &Bound<'_, PyAny>,
) -> PyResult<PyStream> {
    let up = upstream(step_id, up)?;
    let f = Arc::new(callable(step_id, "reducer", reducer)?);
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    let id: Arc<str> = step_id.into();
    // `checked`: the result is a partial accumulator that may cross to another
    // process (see `check_accumulator`); a merged one stays on the key's owner.
    let reduce = move |acc: PyItem, value: PyItem, checked: bool| -> PyItem {
        crate::attach::attach(|py| {
            let acc = f.bind(py).call1((acc.bind(py), value.bind(py)))?;
            if checked && failures.clustered() {
                check_accumulator(py, &acc, &failures, &id)?;
            }
            Ok(PyItem::from(acc))
        })
        .unwrap_or_else(|e| fail(&failures, &id, e))
    };
    let merge = reduce.clone();
    let port = keyed(up, step_id)
        .and_then(|s| {
            s.fold_final(
                step_id,
                |_key: &String| None::<PyItem>,
                // The worker's pre-aggregation: its partials cross to the owner.
                move |acc, value| {
                    Some(match acc {
                        Some(acc) => reduce(acc, value, true),
                        None => value,
                    })
                },
                move |a: Option<PyItem>, b: Option<PyItem>| match (a, b) {
                    (Some(a), Some(b)) => Some(merge(a, b, false)),
                    (a, None) => a,
                    (None, b) => b,
                },
            )
        })
        .and_then(|s| {
            s.filter_map(
                &format!("{step_id}.out"),
                |(key, acc): (String, Option<PyItem>)| acc.map(|acc| (key, acc)),
            )
        })
        .map(Port::Keyed);
    finish(py, up, step_id, port)
}
