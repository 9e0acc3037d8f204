//! The `input` and `output` steps for sources and sinks other than the testing
//! ones: Python sources and sinks (`riffle.inputs`, `riffle.outputs`; see
//! `src/inputs.rs` and `src/outputs.rs`) and the engine's file connectors
//! (`riffle.connectors.files`).
//!
//! The file connectors are the engine's own [`riffle::sources::FileSource`],
//! [`riffle::sources::CsvSource`], [`riffle::sinks::FileSink`] and
//! [`riffle::sinks::DirSink`]: lines are read, split and positioned in Rust, and
//! become Python objects in a batch step beside the input (`STEP.py`); on the way
//! out a batch step `STEP.line` takes each item's text (a `TypeError` naming the
//! step if it is not a `str`).

use std::fmt;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::dataflow::{Port, PyDataflow, PyStream};
use crate::failure::build_error;
use crate::inputs::{PyDynamicSource, PyFixedSource};
use crate::item::{Carrier, PyItem};
use crate::operators::{batch_step, claim, keyed, keyed_in_place, on_port, type_name, upstream};
use crate::outputs::{PyDynamicSink, PyFixedSink};

/// `flow` as a dataflow: a `TypeError` naming the step otherwise.
pub(crate) fn dataflow<'a, 'py>(
    step_id: &str,
    flow: &'a Bound<'py, PyAny>,
) -> PyResult<&'a Bound<'py, PyDataflow>> {
    flow.cast::<PyDataflow>().map_err(|_| {
        PyTypeError::new_err(format!(
            "step {step_id:?}: `flow` must be a Dataflow; got a {} instead",
            type_name(flow)
        ))
    })
}

/// `input_source(step_id, flow, source, fixed)`: a Python
/// `FixedPartitionedSource` (`fixed`) or `DynamicSource`.
#[pyfunction]
pub(crate) fn input_source(
    py: Python<'_>,
    step_id: &str,
    flow: &Bound<'_, PyAny>,
    source: &Bound<'_, PyAny>,
    fixed: bool,
) -> PyResult<PyStream> {
    let flow = dataflow(step_id, flow)?;
    let dataflow = flow.get();
    dataflow.claim(step_id)?;
    let failures = dataflow.failures.clone();
    let source = source.clone().unbind();
    let stream = if fixed {
        dataflow
            .flow
            .input(step_id, PyFixedSource::new(step_id, source, failures))
    } else {
        dataflow
            .flow
            .input_dynamic(step_id, PyDynamicSource::new(step_id, source, failures))
    }
    .map_err(|e| build_error(py, e))?;
    Ok(PyStream::new(
        flow.clone().unbind(),
        step_id,
        Port::Items(stream),
    ))
}

/// `output_sink(step_id, up, sink, fixed)`: a Python `FixedPartitionedSink`
/// (`fixed`: items must be `(str, value)` pairs, routed by `sink.part_fn(key)`)
/// or `DynamicSink`.
#[pyfunction]
pub(crate) fn output_sink(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    sink: &Bound<'_, PyAny>,
    fixed: bool,
) -> PyResult<()> {
    let up = upstream(step_id, up)?;
    let part_fn = if fixed {
        Some(crate::failure::callable(
            step_id,
            "part_fn",
            &sink.getattr("part_fn")?,
        )?)
    } else {
        None
    };
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    let sink = sink.clone().unbind();
    let built = match part_fn {
        Some(part_fn) => keyed(up, step_id).and_then(|pairs| {
            let id = step_id.to_string();
            batch_step(
                &pairs,
                &format!("{step_id}.part"),
                step_id,
                &failures,
                move |py, (key, value): (String, PyItem), out: &mut Vec<(u64, PyItem)>| {
                    let index = part_fn.bind(py).call1((key,))?;
                    let index: i128 = index.extract().map_err(|_| {
                        PyTypeError::new_err(format!(
                            "step {id:?}: part_fn must return an int; got a {}",
                            type_name(&index)
                        ))
                    })?;
                    out.push((index.rem_euclid(1 << 63) as u64, value));
                    Ok(())
                },
            )?
            .output(step_id, PyFixedSink::new(step_id, sink, failures.clone()))
        }),
        None => on_port!(&up.port, |s| s
            .output_dynamic(step_id, PyDynamicSink::new(step_id, sink, failures))),
    };
    built.map_err(|e| build_error(py, e))
}

/// `input_files(step_id, flow, path, csv, batch_size)`: the lines of the file at
/// `path` (or one partition per file of the directory at `path`) as `str`, or,
/// with `csv`, the rows of CSV files with a header line as `dict`s of `str`.
#[pyfunction]
pub(crate) fn input_files(
    py: Python<'_>,
    step_id: &str,
    flow: &Bound<'_, PyAny>,
    path: std::path::PathBuf,
    csv: bool,
    batch_size: usize,
) -> PyResult<PyStream> {
    let flow = dataflow(step_id, flow)?;
    if batch_size == 0 {
        return Err(PyValueError::new_err(format!(
            "step {step_id:?}: batch_size must be a positive int"
        )));
    }
    let dataflow = flow.get();
    dataflow.claim(step_id)?;
    let failures = &dataflow.failures;
    let py_id = format!("{step_id}.py");
    let stream = if csv {
        let source = riffle::sources::CsvSource::<Row>::new(path).batch_size(batch_size);
        dataflow.flow.input(step_id, source).and_then(|rows| {
            batch_step(&rows, &py_id, step_id, failures, |py, row: Row, out| {
                let dict = PyDict::new(py);
                for (column, value) in row.0 {
                    dict.set_item(column, value)?;
                }
                out.push(PyItem::from(dict.into_any()));
                Ok(())
            })
        })
    } else {
        let source = riffle::sources::FileSource::new(path).batch_size(batch_size);
        dataflow.flow.input(step_id, source).and_then(|lines| {
            batch_step(
                &lines,
                &py_id,
                step_id,
                failures,
                |py, line: String, out| {
                    out.push(PyItem::from(PyString::new(py, &line).into_any()));
                    Ok(())
                },
            )
        })
    }
    .map_err(|e| build_error(py, e))?;
    Ok(PyStream::new(
        flow.clone().unbind(),
        step_id,
        Port::Items(stream),
    ))
}

/// `output_files(step_id, up, path, file_count)`: each item's text as a line of
/// the file at `path` (`file_count` None), or of `file_count` files
/// `part-00000` ... in the directory at `path`, chosen by the item's key. Items
/// are `str`, or `(key, str)` pairs.
#[pyfunction]
#[pyo3(signature = (step_id, up, path, file_count=None))]
pub(crate) fn output_files(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    path: std::path::PathBuf,
    file_count: Option<usize>,
) -> PyResult<()> {
    let up = upstream(step_id, up)?;
    if file_count == Some(0) {
        return Err(PyValueError::new_err(format!(
            "step {step_id:?}: file_count must be a positive int"
        )));
    }
    let flow = claim(up, step_id)?;
    let failures = &flow.failures;
    let line_id = format!("{step_id}.line");
    let built = match file_count {
        None => on_port!(&up.port, |s| {
            let id = step_id.to_string();
            batch_step(s, &line_id, step_id, failures, move |py, item, out| {
                out.push(text(&id, item.to_py(py)?, true)?);
                Ok(())
            })
            .and_then(|lines| lines.output(step_id, riffle::sinks::FileSink::new(&path)))
        }),
        Some(count) => keyed_in_place(up, step_id).and_then(|pairs| {
            let id = step_id.to_string();
            batch_step(
                &pairs,
                &line_id,
                step_id,
                failures,
                move |py, (key, value): (String, PyItem), out| {
                    out.push((key, text(&id, value.bind(py).clone(), false)?));
                    Ok(())
                },
            )
            .and_then(|lines| {
                lines.output(step_id, riffle::sinks::DirSink::<String>::new(&path, count))
            })
        }),
    };
    built.map_err(|e| build_error(py, e))
}

/// The text of `item`: a `str`, or (`pairs`) the `str` value of a `(key, str)` pair.
fn text(step_id: &str, item: Bound<'_, PyAny>, pairs: bool) -> PyResult<String> {
    let value = match item.cast::<PyTuple>() {
        Ok(pair) if pairs && pair.len() == 2 => pair.get_item(1)?,
        _ => item,
    };
    match value.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "step {step_id:?} writes lines of text: items must be str or (key, str); \
             got {} of type {}",
            value.repr()?,
            type_name(&value)
        ))),
    }
}

/// A CSV row: `(column, value)` in the order of the header line.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<(String, String)>);

impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, value) in &self.0 {
            map.serialize_entry(column, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Columns;
        impl<'de> Visitor<'de> for Columns {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CSV row under a header line")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
                let mut row = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    row.push(entry);
                }
                Ok(Row(row))
            }
        }
        deserializer.deserialize_map(Columns)
    }
}
