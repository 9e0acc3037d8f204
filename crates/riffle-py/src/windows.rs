//! The window operators behind `riffle.operators.windowing`: the engine's window
//! step ([`riffle::window`]) with its clocks, windowers, watermarks, window state
//! and the three streams `down`, `late` and `meta`.
//!
//! A window step from Python is a few engine steps:
//!
//! - `STEP.time`: each `(key, value)` becomes `(key, (ms, value))`, where `ms` is
//!   the event time from the user's `ts_getter` (a `datetime`; a batch step), or 0
//!   under the system clock (a Rust `map`: the engine takes the times itself).
//!   The engine's event clock then reads `ms` from the value, in Rust.
//! - `STEP` (the engine's window step): `fold_window` and `reduce_window` call the
//!   user's functions from its per-item logic; `collect_window` and
//!   `count_window` run no Python at all.
//! - `STEP.down`, `STEP.late`, `STEP.meta` (batch steps): the results as the
//!   tuples bytewax's `WindowOut` holds, `(key, (window_id, result))`,
//!   `(key, (window_id, value))` and `(key, (window_id, WindowMetadata))`.
//!
//! The engine's late stream says why an item was late and when, not which window
//! it missed, so its window id is `None`.
//!
//! Under several processes, values that may cross to the key's owner are checked
//! before they leave (see `crate::item`), with two refinements where the engine
//! combines values before its exchange (tumbling and sliding windows under an
//! event clock, see `riffle::window`): `reduce_window` checks every partial result
//! its reducer makes, since that is what crosses, and `count_window` checks no
//! value before it crosses, since only counts cross but for the values that
//! could not be counted where they were read, which the owner needs only if they
//! are late (`crate::unchecked`).

use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple, PyType};
use riffle::Stream;
use riffle::window::{
    Clock, Millis, SessionWindower, SlidingWindower, TumblingWindower, WindowId, WindowOut,
};

use crate::dataflow::{Port, PyStream};
use crate::failure::{Failures, callable};
use crate::item::{Carrier, PyItem, check_accumulator};
use crate::operators::{batch_step, claim, fail, keyed, str_key, type_name, upstream};
use crate::unchecked::Unchecked;

/// A value with its time in milliseconds.
type Timed = (Millis, PyItem);

/// How a window step tells time: `("system",)` or `("event", ts_getter,
/// wait_for_system_duration_ms)` from Python.
enum ClockSpec {
    System,
    Event {
        ts_getter: Py<PyAny>,
        lateness: Duration,
    },
}

/// Which windows: `("tumbling", length_ms, align_ms)`, `("sliding", length_ms,
/// offset_ms, align_ms)` or `("session", gap_ms)` from Python.
enum WindowerSpec {
    Tumbling(TumblingWindower),
    Sliding(SlidingWindower),
    Session(SessionWindower),
}

/// What the window step computes, with the user's functions.
enum Agg {
    Fold {
        builder: Py<PyAny>,
        folder: Py<PyAny>,
        merger: Py<PyAny>,
    },
    Reduce(Py<PyAny>),
    Collect,
}

/// What a window step from Python computes: an aggregation of the values, or
/// `count_window`'s count by the user's key function (whose values are needed
/// only on the `late` stream).
enum Computes {
    Values(Agg),
    Count(Py<PyAny>),
}

fn millis_arg(step_id: &str, what: &str, value: &Bound<'_, PyAny>) -> PyResult<Millis> {
    value.extract::<Millis>().map_err(|_| {
        PyTypeError::new_err(format!(
            "step {step_id:?}: `{what}` must be a whole number of milliseconds; got a {}",
            type_name(value)
        ))
    })
}

fn duration(step_id: &str, what: &str, ms: Millis) -> PyResult<Duration> {
    u64::try_from(ms).map(Duration::from_millis).map_err(|_| {
        PyValueError::new_err(format!(
            "step {step_id:?}: `{what}` must not be negative; got {ms} ms"
        ))
    })
}

impl ClockSpec {
    fn parse(step_id: &str, spec: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let kind: String = spec.get_item(0)?.extract()?;
        match kind.as_str() {
            "system" => Ok(Self::System),
            "event" => Ok(Self::Event {
                ts_getter: callable(step_id, "ts_getter", &spec.get_item(1)?)?,
                lateness: duration(
                    step_id,
                    "wait_for_system_duration",
                    millis_arg(step_id, "wait_for_system_duration", &spec.get_item(2)?)?,
                )?,
            }),
            other => Err(PyTypeError::new_err(format!(
                "step {step_id:?}: unknown clock {other:?}"
            ))),
        }
    }
}

impl WindowerSpec {
    fn parse(step_id: &str, spec: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let kind: String = spec.get_item(0)?.extract()?;
        let ms = |n: usize, what: &str| -> PyResult<Millis> {
            millis_arg(step_id, what, &spec.get_item(n)?)
        };
        let positive = |n: usize, what: &str| -> PyResult<Duration> {
            let d = duration(step_id, what, ms(n, what)?)?;
            if d.is_zero() {
                return Err(PyValueError::new_err(format!(
                    "step {step_id:?}: `{what}` must be positive"
                )));
            }
            Ok(d)
        };
        match kind.as_str() {
            "tumbling" => Ok(Self::Tumbling(TumblingWindower::new(
                positive(1, "length")?,
                ms(2, "align_to")?,
            ))),
            "sliding" => {
                let (length, offset) = (positive(1, "length")?, positive(2, "offset")?);
                if offset > length {
                    return Err(PyValueError::new_err(format!(
                        "step {step_id:?}: a sliding window's `offset` can't be longer than \
                         its `length`; items between windows would be lost"
                    )));
                }
                Ok(Self::Sliding(SlidingWindower::new(
                    length,
                    offset,
                    ms(3, "align_to")?,
                )))
            }
            "session" => Ok(Self::Session(SessionWindower::new(positive(1, "gap")?))),
            other => Err(PyTypeError::new_err(format!(
                "step {step_id:?}: unknown windower {other:?}"
            ))),
        }
    }
}

/// Runs `$body` with `$w` bound to the engine's windower of `$spec`.
macro_rules! with_windower {
    ($spec:expr, |$w:ident| $body:expr) => {
        match $spec {
            WindowerSpec::Tumbling($w) => $body,
            WindowerSpec::Sliding($w) => $body,
            WindowerSpec::Session($w) => $body,
        }
    };
}

/// The three streams of a window step, as Python streams.
type Outs = (PyStream, PyStream, PyStream);

/// `window(step_id, up, clock, windower, agg, functions, to_meta)`: a window step;
/// `agg` is `"fold"` (`functions` = builder, folder, merger), `"reduce"`
/// (reducer), `"collect"` () or `"count"` (key); `to_meta(open_ms, close_ms)`
/// makes the metadata object. Returns `(down, late, meta)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn window(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    clock: &Bound<'_, PyTuple>,
    windower: &Bound<'_, PyTuple>,
    agg: &str,
    functions: Vec<Bound<'_, PyAny>>,
    to_meta: &Bound<'_, PyAny>,
) -> PyResult<Outs> {
    let up = upstream(step_id, up)?;
    let clock = ClockSpec::parse(step_id, clock)?;
    let windower = WindowerSpec::parse(step_id, windower)?;
    let function = |n: usize, name: &str| -> PyResult<Py<PyAny>> {
        let f = functions.get(n).ok_or_else(|| {
            PyTypeError::new_err(format!("step {step_id:?}: `{name}` is missing"))
        })?;
        callable(step_id, name, f)
    };
    let agg = match agg {
        "fold" => Computes::Values(Agg::Fold {
            builder: function(0, "builder")?,
            folder: function(1, "folder")?,
            merger: function(2, "merger")?,
        }),
        "reduce" => Computes::Values(Agg::Reduce(function(0, "reducer")?)),
        "collect" => Computes::Values(Agg::Collect),
        "count" => Computes::Count(function(0, "key")?),
        other => {
            return Err(PyTypeError::new_err(format!(
                "step {step_id:?}: unknown window aggregation {other:?}"
            )));
        }
    };
    let to_meta = callable(step_id, "to_meta", to_meta)?;
    let flow = claim(up, step_id)?;
    let failures = flow.failures.clone();
    let built = match agg {
        Computes::Values(agg) => build(py, up, step_id, &failures, clock, windower, agg, to_meta),
        Computes::Count(key) => {
            build_count(py, up, step_id, &failures, &clock, windower, key, to_meta)
        }
    };
    let (down, late, meta) = built.map_err(|e| crate::failure::build_error(py, e))?;
    let stream = |port: Port, output: &'static str| {
        PyStream::new(up.flow.clone_ref(py), step_id, port).named(output)
    };
    Ok((
        stream(Port::Keyed(down), "down"),
        stream(Port::Keyed(late), "late"),
        stream(Port::Keyed(meta), "meta"),
    ))
}

type Keyed = Stream<(String, PyItem)>;

#[allow(clippy::too_many_arguments)]
fn build(
    py: Python<'_>,
    up: &PyStream,
    step_id: &str,
    failures: &Failures,
    clock: ClockSpec,
    windower: WindowerSpec,
    agg: Agg,
    to_meta: Py<PyAny>,
) -> riffle::Result<(Keyed, Keyed, Keyed)> {
    let keyed_values = keyed(up, step_id)?;
    let timed = timed(
        py,
        &keyed_values,
        &format!("{step_id}.time"),
        step_id,
        failures,
        &clock,
        |value| value,
    )?;
    let engine_clock = match &clock {
        ClockSpec::System => Clock::system(),
        ClockSpec::Event { lateness, .. } => Clock::event(|(t, _): &Timed| *t, *lateness),
    };
    let id = step_id.to_string();
    let out = with_windower!(windower, |w| match agg {
        Agg::Fold {
            builder,
            folder,
            merger,
        } => {
            let (f1, f2, f3) = (failures.clone(), failures.clone(), failures.clone());
            let (i1, i2, i3) = (id.clone(), id.clone(), id.clone());
            let out = timed.fold_window(
                step_id,
                engine_clock,
                w,
                move |_key: &String| {
                    crate::attach::attach(|py| builder.bind(py).call0().map(PyItem::from))
                        .unwrap_or_else(|e| fail(&f1, &i1, e))
                },
                move |acc: PyItem, (_, value): Timed| {
                    crate::attach::attach(|py| {
                        folder
                            .bind(py)
                            .call1((acc.bind(py), value.bind(py)))
                            .map(PyItem::from)
                    })
                    .unwrap_or_else(|e| fail(&f2, &i2, e))
                },
                move |a: PyItem, b: PyItem| {
                    crate::attach::attach(|py| {
                        merger
                            .bind(py)
                            .call1((a.bind(py), b.bind(py)))
                            .map(PyItem::from)
                    })
                    .unwrap_or_else(|e| fail(&f3, &i3, e))
                },
            )?;
            finish_outs(out, step_id, failures, to_meta, |_py, acc| Ok(acc))
        }
        Agg::Reduce(reducer) => {
            let f = failures.clone();
            let out = timed.reduce_window(
                step_id,
                engine_clock,
                w,
                move |(ta, a): Timed, (tb, b): Timed| {
                    let reduced = crate::attach::attach(|py| {
                        let reduced = reducer.bind(py).call1((a.bind(py), b.bind(py)))?;
                        // The reading worker's partial result may cross to the
                        // key's owner (see `riffle::window`'s combining).
                        if f.clustered() {
                            check_accumulator(py, &reduced, &f, &id)?;
                        }
                        Ok(PyItem::from(reduced))
                    })
                    .unwrap_or_else(|e| fail(&f, &id, e));
                    (ta.max(tb), reduced)
                },
            )?;
            finish_outs(out, step_id, failures, to_meta, |_py, (_, v): Timed| Ok(v))
        }
        Agg::Collect => {
            let out = timed.collect_window(step_id, engine_clock, w)?;
            finish_outs(out, step_id, failures, to_meta, |py, values: Vec<Timed>| {
                let list = PyList::new(py, values.iter().map(|(_, v)| v.bind(py)))?;
                Ok(PyItem::from(list.into_any()))
            })
        }
    })?;
    Ok(out)
}

/// `count_window`: the values keyed by the user's key function (`STEP.by`),
/// timed (`STEP.time`) and counted per key and window by the engine.
///
/// The engine combines counts where the values are read, so a value crosses to
/// another process only when it cannot be counted there (its count is all the
/// owner needs) or is late (then the `late` stream shows it). The values are
/// therefore not checked before they cross: they travel as [`Unchecked`], and
/// one that could not be sent stops the run only if it turns out late.
#[allow(clippy::too_many_arguments)]
fn build_count(
    py: Python<'_>,
    up: &PyStream,
    step_id: &str,
    failures: &Failures,
    clock: &ClockSpec,
    windower: WindowerSpec,
    key: Py<PyAny>,
    to_meta: Py<PyAny>,
) -> riffle::Result<(Keyed, Keyed, Keyed)> {
    let id = step_id.to_string();
    let keyed_values = crate::operators::on_port!(&up.port, |s| batch_step(
        s,
        &format!("{step_id}.by"),
        step_id,
        failures,
        move |py, item, out| {
            let value = item.to_py(py)?;
            let k = key.bind(py).call1((&value,))?;
            out.push((str_key(&id, "key", &k)?, PyItem::from(value)));
            Ok(())
        }
    ))?;
    let timed = timed(
        py,
        &keyed_values,
        &format!("{step_id}.time"),
        step_id,
        failures,
        clock,
        Unchecked::from,
    )?;
    // The items are the keyed pairs themselves: count per key.
    let key_of = |(key, _): &(String, Stamped)| key.clone();
    let out = with_windower!(windower, |w| timed.count_window(
        step_id,
        pair_clock(clock),
        w,
        key_of
    ))?;
    let (checks, producer, consumer) = (
        failures.clone(),
        up.step_id().to_string(),
        step_id.to_string(),
    );
    finish_many(
        out,
        step_id,
        failures,
        to_meta,
        |py, n: u64| Ok(vec![PyItem::from(n.into_pyobject(py)?.into_any())]),
        move |py, (_, (_, value)): (String, Stamped)| {
            value.into_value(py, &checks, &producer, &consumer)
        },
    )
}

/// A value of `count_window` with its time: not checked before it crosses.
type Stamped = (Millis, Unchecked);

/// The clock of `count_window`, whose items are the keyed pairs themselves.
fn pair_clock<W: riffle::Data>(spec: &ClockSpec) -> Clock<(String, (Millis, W))> {
    match spec {
        ClockSpec::System => Clock::system(),
        ClockSpec::Event { lateness, .. } => {
            Clock::event(|(_, (t, _)): &(String, (Millis, W))| *t, *lateness)
        }
    }
}

/// `rust_id` (`STEP.time`): each value with its time (0 under the system clock),
/// as `wrap` makes it.
fn timed<W: riffle::Data>(
    py: Python<'_>,
    keyed: &Keyed,
    rust_id: &str,
    step_id: &str,
    failures: &Failures,
    clock: &ClockSpec,
    wrap: fn(PyItem) -> W,
) -> riffle::Result<Stream<(String, (Millis, W))>> {
    let ts_getter = match clock {
        // The engine times each value itself; no Python.
        ClockSpec::System => {
            return keyed.map(rust_id, move |(key, value)| (key, (0, wrap(value))));
        }
        ClockSpec::Event { ts_getter, .. } => ts_getter.clone_ref(py),
    };
    let id = step_id.to_string();
    batch_step(
        keyed,
        rust_id,
        step_id,
        failures,
        move |py, (key, value): (String, PyItem), out| {
            let ts = ts_getter.bind(py).call1((value.bind(py),))?;
            out.push((key, (datetime_millis(py, &id, &ts)?, wrap(value))));
            Ok(())
        },
    )
}

/// An aware `datetime` as milliseconds since the Unix epoch.
fn datetime_millis(py: Python<'_>, step_id: &str, ts: &Bound<'_, PyAny>) -> PyResult<Millis> {
    static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let datetime = DATETIME.import(py, "datetime", "datetime")?;
    if !ts.is_instance(datetime)? {
        return Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `ts_getter` must return a datetime; got a {} instead",
            type_name(ts)
        )));
    }
    if ts.getattr(intern!(py, "tzinfo"))?.is_none() {
        return Err(PyValueError::new_err(format!(
            "step {step_id:?}: `ts_getter` must return an aware datetime (with a \
             timezone, e.g. UTC); got {}",
            ts.repr()?
        )));
    }
    let seconds: f64 = ts.call_method0(intern!(py, "timestamp"))?.extract()?;
    Ok((seconds * 1000.0).floor() as Millis)
}

/// The three streams as `(key, (window_id, result))`, `(key, (None, value))`
/// and `(key, (window_id, to_meta(open, close)))`.
fn finish_outs<A: riffle::Data>(
    out: WindowOut<String, A, Timed>,
    step_id: &str,
    failures: &Failures,
    to_meta: Py<PyAny>,
    result: impl Fn(Python<'_>, A) -> PyResult<PyItem> + Send + Sync + 'static,
) -> riffle::Result<(Keyed, Keyed, Keyed)> {
    finish_many(
        out,
        step_id,
        failures,
        to_meta,
        move |py, acc| Ok(vec![result(py, acc)?]),
        |py, (_, value)| Ok(value.bind(py).clone()),
    )
}

/// [`finish_outs`] for a step that emits any number of results per window
/// (`result`) and whose late values are shown by `late_value`.
fn finish_many<A: riffle::Data, V: riffle::Data>(
    out: WindowOut<String, A, V>,
    step_id: &str,
    failures: &Failures,
    to_meta: Py<PyAny>,
    result: impl Fn(Python<'_>, A) -> PyResult<Vec<PyItem>> + Send + Sync + 'static,
    late_value: impl for<'py> Fn(Python<'py>, V) -> PyResult<Bound<'py, PyAny>> + Send + Sync + 'static,
) -> riffle::Result<(Keyed, Keyed, Keyed)> {
    let down = batch_step(
        &out.down,
        &format!("{step_id}.down"),
        step_id,
        failures,
        move |py, (key, (window, acc)): (String, (WindowId, A)), out| {
            for one in result(py, acc)? {
                let pair = PyTuple::new(
                    py,
                    [window.into_pyobject(py)?.into_any(), one.bind(py).clone()],
                )?;
                out.push((key.clone(), PyItem::from(pair.into_any())));
            }
            Ok(())
        },
    )?;
    let late = batch_step(
        &out.late,
        &format!("{step_id}.late"),
        step_id,
        failures,
        move |py, (key, late): (String, riffle::window::Late<V>), out| {
            let pair = PyTuple::new(py, [py.None().into_bound(py), late_value(py, late.value)?])?;
            out.push((key, PyItem::from(pair.into_any())));
            Ok(())
        },
    )?;
    let meta = batch_step(
        &out.meta,
        &format!("{step_id}.meta"),
        step_id,
        failures,
        move |py, (key, (window, meta)): (String, (WindowId, riffle::window::WindowMeta)), out| {
            let made = to_meta.bind(py).call1((meta.open_time, meta.close_time))?;
            let pair = PyTuple::new(py, [window.into_pyobject(py)?.into_any(), made])?;
            out.push((key, PyItem::from(pair.into_any())));
            Ok(())
        },
    )?;
    Ok((down, late, meta))
}

/// Which value(s) of each side a window join emits at the window's close.
#[derive(Clone, Copy)]
enum InsertMode {
    First,
    Last,
    Product,
}

/// `join_window(step_id, left, right, clock, windower, insert_mode, to_meta)`:
/// per key and window, when the window closes, `(key, (window_id, (l, r)))` with
/// the first or last value of each side in time order (`None` for a side with
/// none), or one tuple for every pair (`"product"`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn join_window(
    py: Python<'_>,
    step_id: &str,
    left: &Bound<'_, PyAny>,
    right: &Bound<'_, PyAny>,
    clock: &Bound<'_, PyTuple>,
    windower: &Bound<'_, PyTuple>,
    insert_mode: &str,
    to_meta: &Bound<'_, PyAny>,
) -> PyResult<Outs> {
    let (left, right) = (upstream(step_id, left)?, upstream(step_id, right)?);
    let clock = ClockSpec::parse(step_id, clock)?;
    let windower = WindowerSpec::parse(step_id, windower)?;
    let mode = match insert_mode {
        "first" => InsertMode::First,
        "last" => InsertMode::Last,
        "product" => InsertMode::Product,
        other => {
            return Err(PyValueError::new_err(format!(
                "step {step_id:?}: unknown join insert_mode {other:?}; \
                 use \"first\", \"last\" or \"product\""
            )));
        }
    };
    let to_meta = callable(step_id, "to_meta", to_meta)?;
    let flow = claim(left, step_id)?;
    let failures = flow.failures.clone();
    let built = (|| {
        let l = crate::operators::keyed_as(left, step_id, &format!("{step_id}.key0"))?;
        let r = crate::operators::keyed_as(right, step_id, &format!("{step_id}.key1"))?;
        let l = timed(
            py,
            &l,
            &format!("{step_id}.time0"),
            step_id,
            &failures,
            &clock,
            |value| value,
        )?;
        let r = timed(
            py,
            &r,
            &format!("{step_id}.time1"),
            step_id,
            &failures,
            &clock,
            |value| value,
        )?;
        let side_clock = || match &clock {
            ClockSpec::System => Clock::system(),
            ClockSpec::Event { lateness, .. } => Clock::event(|(t, _): &Timed| *t, *lateness),
        };
        with_windower!(windower, |w| {
            let out = l.join_window(step_id, side_clock(), side_clock(), w, &r)?;
            finish_many(
                out,
                step_id,
                &failures,
                to_meta,
                move |py, (ls, rs): (Vec<Timed>, Vec<Timed>)| joined_rows(py, mode, ls, rs),
                |py, side| {
                    let (n, (_, value)) = match side {
                        riffle::window::Side::Left(v) => (0u8, v),
                        riffle::window::Side::Right(v) => (1, v),
                    };
                    let pair = PyTuple::new(
                        py,
                        [n.into_pyobject(py)?.into_any(), value.bind(py).clone()],
                    )?;
                    Ok(pair.into_any())
                },
            )
        })
    })();
    let (down, late, meta) = built.map_err(|e| crate::failure::build_error(py, e))?;
    let stream = |port: Port, output: &'static str| {
        PyStream::new(left.flow.clone_ref(py), step_id, port).named(output)
    };
    Ok((
        stream(Port::Keyed(down), "down"),
        stream(Port::Keyed(late), "late"),
        stream(Port::Keyed(meta), "meta"),
    ))
}

/// The rows a closed window of a join emits, from each side's values in time
/// order.
fn joined_rows(
    py: Python<'_>,
    mode: InsertMode,
    left: Vec<Timed>,
    right: Vec<Timed>,
) -> PyResult<Vec<PyItem>> {
    let pick = |values: &[Timed]| -> Vec<Bound<'_, PyAny>> {
        let chosen = match mode {
            InsertMode::First => values.first().into_iter().collect::<Vec<_>>(),
            InsertMode::Last => values.last().into_iter().collect(),
            InsertMode::Product => values.iter().collect(),
        };
        if chosen.is_empty() {
            vec![py.None().into_bound(py)]
        } else {
            chosen
                .into_iter()
                .map(|(_, v)| v.bind(py).clone())
                .collect()
        }
    };
    let (ls, rs) = (pick(&left), pick(&right));
    let mut rows = Vec::with_capacity(ls.len() * rs.len());
    for l in &ls {
        for r in &rs {
            rows.push(PyItem::from(PyTuple::new(py, [l, r])?.into_any()));
        }
    }
    Ok(rows)
}
