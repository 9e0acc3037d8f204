//! What travels on a stream built from Python: [`PyItem`], any Python object, and
//! keyed pairs `(String, PyItem)`.
//!
//! The engine asks every item to be `Clone`, `Debug` and serde-serializable
//! ([`riffle::Data`]). A Python object is all of these once it is attached to the
//! interpreter: cloning takes a new reference, `Debug` is `repr()`, and
//! serializing writes it in the encoding of `src/wire.rs` (plain values in Rust,
//! anything else pickled), which is done only where items leave the process:
//! exchanges between the processes of a cluster, and recovery snapshots. Keys are
//! Rust `String`s, so a key is hashed, compared and routed without entering
//! Python.
//!
//! [`Carrier`] is what a step needs of its input to hand it to a Python function:
//! a plain item as itself, a keyed pair as the tuple `(key, value)`.
//!
//! In a cluster, an object `pickle` cannot handle would make the encoding fail
//! inside the engine's exchange, where a run cannot stop cleanly; the steps that
//! feed an exchange call [`check_sendable`] on each item first, and the keyed
//! aggregations that pre-aggregate before their exchange call
//! [`check_accumulator`] on each accumulator their user's function makes.

use std::fmt;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use riffle::Stream;
use serde::de::Error as _;

use crate::dataflow::Port;
use crate::failure::Failures;
use crate::wire::{Encode, Wire};

/// Any Python object, carried through the engine.
pub(crate) struct PyItem(pub(crate) Py<PyAny>);

impl PyItem {
    /// The object, attached to the interpreter.
    pub(crate) fn bind<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.0.bind(py)
    }
}

impl From<Bound<'_, PyAny>> for PyItem {
    fn from(value: Bound<'_, PyAny>) -> Self {
        PyItem(value.unbind())
    }
}

impl Clone for PyItem {
    fn clone(&self) -> Self {
        crate::attach::attach(|py| PyItem(self.0.clone_ref(py)))
    }
}

impl fmt::Debug for PyItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::attach::attach(|py| match self.bind(py).repr() {
            Ok(repr) => f.write_str(&repr.to_string_lossy()),
            Err(_) => f.write_str("<object whose repr() failed>"),
        })
    }
}

impl serde::Serialize for PyItem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::attach::attach(|py| Encode::new(self.bind(py)).serialize(serializer))
    }
}

impl<'de> serde::Deserialize<'de> for PyItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        crate::attach::attach(|py| wire.into_py(py).map(PyItem::from))
            .map_err(|e| D::Error::custom(format!("cannot decode an item: {e}")))
    }
}

/// An item a step can hand to a Python function.
pub(crate) trait Carrier: riffle::Data + Sync {
    /// The item as the Python object a user function receives.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;

    /// The item as a keyed pair, for a step that needs one: a `TypeError` naming
    /// `step_id` if it is not a `(str, value)` 2-tuple.
    fn into_keyed(self, py: Python<'_>, step_id: &str) -> PyResult<(String, PyItem)>;

    /// A stream of these items as a Python stream's [`Port`].
    fn port(stream: Stream<Self>) -> Port;

    /// The Python object in the item (a keyed pair's value; its key is a Rust
    /// `String`, which always encodes).
    fn value(&self) -> &PyItem;
}

/// Checks that `item`, produced by step `producer`, can be encoded to be sent to
/// another process for step `consumer`: a `riffle.RiffleError` naming `producer`
/// (recorded in `failures`) if it cannot. Only a clustered run needs it (see
/// [`Failures::clustered`]); in a run of one process items are never encoded.
pub(crate) fn check_sendable<C: Carrier>(
    py: Python<'_>,
    item: &C,
    failures: &Failures,
    producer: &str,
    consumer: &str,
) -> PyResult<()> {
    let value = item.value().bind(py);
    crate::wire::check(value).map_err(|refused| {
        let item_type = crate::wire::type_name(value);
        failures.unsendable(py, producer, consumer, &item_type, refused)
    })
}

/// Checks that `acc`, an accumulator that step `step_id` made and may send to
/// another process (a keyed aggregation that pre-aggregates before its
/// exchange), can be encoded: a `riffle.RiffleError` naming the step (recorded in
/// `failures`) if it cannot. Only a clustered run needs it.
pub(crate) fn check_accumulator(
    py: Python<'_>,
    acc: &Bound<'_, PyAny>,
    failures: &Failures,
    step_id: &str,
) -> PyResult<()> {
    crate::wire::check(acc).map_err(|refused| {
        let acc_type = crate::wire::type_name(acc);
        failures.unsendable_accumulator(py, step_id, &acc_type, refused)
    })
}

impl Carrier for PyItem {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.bind(py).clone())
    }

    fn into_keyed(self, py: Python<'_>, step_id: &str) -> PyResult<(String, PyItem)> {
        let item = self.bind(py);
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .and_then(|t| Some((t.get_item(0).ok()?, t.get_item(1).ok()?)));
        match pair {
            Some((key, value)) => match key.cast::<PyString>() {
                Ok(key) => Ok((key.to_cow()?.into_owned(), PyItem::from(value))),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "step {step_id:?} needs `(key, value)` pairs whose key is a str; \
                     got the key {} of type {} (use `key_on` or `map` to make str keys)",
                    key.repr()?,
                    key.get_type().qualname()?
                ))),
            },
            None => Err(PyTypeError::new_err(format!(
                "step {step_id:?} needs `(key, value)` 2-tuples as its input; \
                 got {} of type {} (use `key_on` to key a stream)",
                item.repr()?,
                item.get_type().qualname()?
            ))),
        }
    }

    fn port(stream: Stream<Self>) -> Port {
        Port::Items(stream)
    }

    fn value(&self) -> &PyItem {
        self
    }
}

impl Carrier for (String, PyItem) {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (key, value) = self;
        let key = PyString::new(py, key).into_any();
        Ok(PyTuple::new(py, [key, value.bind(py).clone()])?.into_any())
    }

    fn into_keyed(self, _py: Python<'_>, _step_id: &str) -> PyResult<(String, PyItem)> {
        Ok(self)
    }

    fn port(stream: Stream<Self>) -> Port {
        Port::Keyed(stream)
    }

    fn value(&self) -> &PyItem {
        &self.1
    }
}
