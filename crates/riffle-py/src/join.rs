//! `join`: the values of several keyed streams meet per key.
//!
//! Every side is routed by its key, so all values of a key, from every side,
//! reach the worker that owns the key. There the join keeps values per side as
//! bytewax's `insert_mode` says:
//!
//! - `"last"`: the latest value of each side. This is the engine's own join
//!   ([`riffle::Stream::join_all`]), one slot per side.
//! - `"first"`: the first value of each side; later values of a side that has one
//!   are dropped.
//! - `"product"`: every value of each side, in the order they came; the join
//!   emits the cross product of the sides, one tuple per combination (the last
//!   side varies fastest, as in `itertools.product`).
//!
//! `emit_mode` says when the kept values are emitted:
//!
//! - `"complete"`: once every side has a value; then the key is forgotten and its
//!   next value starts over.
//! - `"running"`: on every value, with what each side has so far (`None` for a
//!   side that has sent nothing for the key); the key is never forgotten.
//! - `"final"`: once per key when the stream ends, `None` for an empty side.
//!
//! `"first"` and `"product"` run on the engine's [`riffle::Stream::stateful`]
//! with a Rust logic per key ([`Kept`]): each side's values are tagged with the
//! side's index (a step `STEP.sideN`), the sides are merged (`STEP.sides`), and
//! the key's owner keeps the values, so no Python runs except to build the
//! tuples emitted. Under recovery the kept values are the key's snapshot and a
//! resumed run starts from them, on any number of workers.
//!
//! The `"last"` mode's engine join emits slots; a Rust step `STEP.out` turns
//! them into the tuple Python receives.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use riffle::Stream;
use riffle::operators::join::JoinMode;
use riffle::operators::stateful::{Emit, KeyedLogic};

use crate::dataflow::{Port, PyDataflow, PyStream};
use crate::failure::Failures;
use crate::item::PyItem;
use crate::operators::{batch_step, claim, finish, keyed_as, upstream};

/// bytewax's `insert_mode`: which values of a side a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// The first value of each side.
    First,
    /// The latest value of each side.
    Last,
    /// Every value of each side.
    Product,
}

/// The [`Insert`] for bytewax's `insert_mode`, or a `ValueError` naming the step.
fn insert_mode(step_id: &str, insert_mode: &str) -> PyResult<Insert> {
    match insert_mode {
        "first" => Ok(Insert::First),
        "last" => Ok(Insert::Last),
        "product" => Ok(Insert::Product),
        other => Err(PyValueError::new_err(format!(
            "step {step_id:?}: unknown join insert_mode {other:?}; \
             use \"first\", \"last\" or \"product\""
        ))),
    }
}

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
/// the values of each side that `insert_mode` keeps, when `emit_mode` says.
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
    let insert = self::insert_mode(step_id, insert_mode)?;
    let mode = join_mode(step_id, emit_mode)?;
    let flow = claim(first, step_id)?;
    let port = match insert {
        Insert::Last => join_last(step_id, &sides, mode, flow),
        Insert::First | Insert::Product => join_kept(step_id, &sides, insert, mode, flow),
    };
    finish(py, first, step_id, port.map(Port::Keyed))
}

/// The `"last"` mode: the engine's join, its slots turned into tuples.
fn join_last(
    step_id: &str,
    sides: &[&PyStream],
    mode: JoinMode,
    flow: &PyDataflow,
) -> riffle::Result<Stream<(String, PyItem)>> {
    let streams = keyed_sides(step_id, sides)?;
    let rest: Vec<&Stream<(String, PyItem)>> = streams[1..].iter().collect();
    let joined = streams[0].join_all(step_id, &rest, mode)?;
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
}

/// The `"first"` and `"product"` modes: the sides tagged with their index,
/// merged, and kept per key by a [`Kept`] logic.
fn join_kept(
    step_id: &str,
    sides: &[&PyStream],
    insert: Insert,
    mode: JoinMode,
    flow: &PyDataflow,
) -> riffle::Result<Stream<(String, PyItem)>> {
    let count = sides.len();
    let tagged = keyed_sides(step_id, sides)?
        .iter()
        .enumerate()
        .map(|(n, side)| side.map(&format!("{step_id}.side{n}"), move |(k, v)| (k, (n, v))))
        .collect::<riffle::Result<Vec<_>>>()?;
    let rest: Vec<&Stream<(String, (usize, PyItem))>> = tagged[1..].iter().collect();
    let merged = tagged[0].merge(&format!("{step_id}.sides"), &rest)?;
    let failures = flow.failures.clone();
    let id = step_id.to_string();
    merged.stateful(
        step_id,
        move |key: &String, resume: Option<Vec<Vec<PyItem>>>| {
            let seen = match resume {
                None => (0..count).map(|_| Vec::new()).collect(),
                Some(seen) if seen.len() == count => seen,
                Some(seen) => {
                    return Err(riffle::RiffleError::Execution(format!(
                        "step {id:?}: the snapshot of key {key:?} holds {} sides, \
                         the join has {count}; resume a join with the sides it had",
                        seen.len()
                    )));
                }
            };
            Ok(Kept {
                step_id: id.clone(),
                failures: failures.clone(),
                insert,
                mode,
                seen,
            })
        },
    )
}

/// Each side as keyed pairs, checked by a step `STEP.keyN` of its own.
fn keyed_sides(
    step_id: &str,
    sides: &[&PyStream],
) -> riffle::Result<Vec<Stream<(String, PyItem)>>> {
    sides
        .iter()
        .enumerate()
        .map(|(n, side)| keyed_as(side, step_id, &format!("{step_id}.key{n}")))
        .collect()
}

/// One key's values in a `"first"` or `"product"` join: `seen[n]` holds what
/// side `n` sent that the insert mode keeps.
struct Kept {
    step_id: String,
    failures: Failures,
    insert: Insert,
    mode: JoinMode,
    seen: Vec<Vec<PyItem>>,
}

impl Kept {
    /// Every combination of one value per side, as Python tuples (`None` for an
    /// empty side), the last side varying fastest.
    fn rows(&self) -> riffle::Result<Vec<PyItem>> {
        crate::attach::attach(|py| -> PyResult<Vec<PyItem>> {
            let none = [PyItem::from(py.None().into_bound(py))];
            let columns: Vec<&[PyItem]> = self
                .seen
                .iter()
                .map(|values| {
                    if values.is_empty() {
                        &none[..]
                    } else {
                        &values[..]
                    }
                })
                .collect();
            let count = columns
                .iter()
                .fold(1usize, |n, c| n.saturating_mul(c.len()));
            let mut rows = Vec::with_capacity(count.min(1 << 16));
            let mut at = vec![0usize; columns.len()];
            loop {
                let values = columns.iter().zip(&at).map(|(c, &i)| c[i].bind(py));
                rows.push(PyItem::from(PyTuple::new(py, values)?.into_any()));
                // The next combination: the last side that can advance does, the
                // sides after it start over.
                let Some(side) = (0..columns.len())
                    .rev()
                    .find(|&s| at[s] + 1 < columns[s].len())
                else {
                    return Ok(rows);
                };
                at[side] += 1;
                at[side + 1..].iter_mut().for_each(|i| *i = 0);
            }
        })
        .map_err(|e| {
            let summary = self.failures.record(&self.step_id, e);
            riffle::RiffleError::Execution(format!("step {:?}: {summary}", self.step_id))
        })
    }
}

impl KeyedLogic<(usize, PyItem)> for Kept {
    type Out = PyItem;
    type State = Vec<Vec<PyItem>>;

    fn on_item(&mut self, (side, value): (usize, PyItem)) -> riffle::Result<Emit<PyItem>> {
        let Some(values) = self.seen.get_mut(side) else {
            return Err(riffle::RiffleError::Execution(format!(
                "step {:?}: a value from side {side}, the join has {} sides",
                self.step_id,
                self.seen.len()
            )));
        };
        match self.insert {
            Insert::First if values.is_empty() => values.push(value),
            Insert::First => {}
            Insert::Last => *values = vec![value],
            Insert::Product => values.push(value),
        }
        match self.mode {
            JoinMode::Complete if self.seen.iter().all(|v| !v.is_empty()) => {
                Ok((self.rows()?, true))
            }
            JoinMode::Running => Ok((self.rows()?, false)),
            JoinMode::Complete | JoinMode::Final => Ok((Vec::new(), false)),
        }
    }

    fn on_eof(&mut self) -> riffle::Result<Emit<PyItem>> {
        match self.mode {
            JoinMode::Final => Ok((self.rows()?, true)),
            JoinMode::Complete | JoinMode::Running => Ok((Vec::new(), false)),
        }
    }

    fn snapshot(&self) -> riffle::Result<Vec<Vec<PyItem>>> {
        Ok(crate::attach::attach(|py| {
            self.seen
                .iter()
                .map(|values| values.iter().map(|v| PyItem(v.0.clone_ref(py))).collect())
                .collect()
        }))
    }
}
