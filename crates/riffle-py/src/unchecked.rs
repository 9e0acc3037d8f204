//! A value that is not checked before it may cross to another process, because
//! most of the time it does not cross, or crosses without being needed there.
//!
//! A step that feeds an exchange checks each item first ([`crate::item`]), so an
//! object `pickle` refuses stops the run before the engine tries to encode it.
//! That costs a walk of every item, even where few of them ever leave their
//! process: `count_window` folds the values it reads into partial counts on the
//! reading worker and sends those counts, and a value crosses as itself only
//! when it could not be folded there, to be counted (its value unused) or, if
//! it is late, shown on the step's `late` stream.
//!
//! Such a value travels as an [`Unchecked`]. Encoding it cannot fail: a value
//! that encodes crosses as itself (in the encoding of [`crate::wire`]), and one
//! that does not crosses as what `pickle` said about it ([`Unsent`]): its type,
//! the type of the object inside it that `pickle` refused, and `pickle`'s
//! exception's type and message. Only where the receiving step needs the value
//! does an [`Unsent`] stop the run, with the same `riffle.RiffleError` a check
//! before sending gives ([`Unsent::into_error`]). Nothing is checked in a run of
//! one process, where nothing is encoded.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;
use serde::{Deserialize, Serialize, Serializer};

use crate::failure::Failures;
use crate::item::PyItem;
use crate::wire::{Encode, Unsendable, type_name};

/// The enum's name, as serde formats see it.
const NAME: &str = "Unchecked";

/// A value that crosses to another process without a check first; see the
/// [module docs](self).
#[derive(Clone, Debug, Deserialize)]
pub(crate) enum Unchecked {
    /// The value itself.
    Value(PyItem),
    /// What `pickle` said about a value it could not encode on the process
    /// that sent it.
    Unsent(Unsent),
}

/// Why a value could not be sent to another process, as it arrives there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Unsent {
    /// The type of the value.
    item_type: String,
    /// The type of the object `pickle` refused (the value, or one inside it).
    refused_type: String,
    /// The type of `pickle`'s exception (e.g. `TypeError`).
    error_type: String,
    /// Its message.
    error_message: String,
}

impl From<PyItem> for Unchecked {
    fn from(value: PyItem) -> Self {
        Unchecked::Value(value)
    }
}

impl Serialize for Unchecked {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Unchecked::Value(value) => crate::attach::attach(|py| {
                let obj = value.bind(py);
                // Walked first, so that nothing is written for a value that
                // fails halfway through.
                match crate::wire::check(obj) {
                    Ok(()) => {
                        serializer.serialize_newtype_variant(NAME, 0, "Value", &Encode::new(obj))
                    }
                    Err(refused) => {
                        let unsent = Unsent::new(py, type_name(obj), refused);
                        serializer.serialize_newtype_variant(NAME, 1, "Unsent", &unsent)
                    }
                }
            }),
            Unchecked::Unsent(unsent) => {
                serializer.serialize_newtype_variant(NAME, 1, "Unsent", unsent)
            }
        }
    }
}

impl Unchecked {
    /// The value, or, where it could not be sent here, the `riffle.RiffleError`
    /// that stops the run (recorded in `failures`), naming step `producer` that
    /// made it and step `consumer` that needed it.
    pub(crate) fn into_value<'py>(
        self,
        py: Python<'py>,
        failures: &Failures,
        producer: &str,
        consumer: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Unchecked::Value(value) => Ok(value.bind(py).clone()),
            Unchecked::Unsent(unsent) => Err(unsent.into_error(py, failures, producer, consumer)),
        }
    }
}

impl Unsent {
    fn new(py: Python<'_>, item_type: String, refused: Unsendable) -> Self {
        let error_type = refused
            .error
            .get_type(py)
            .qualname()
            .map_or_else(|_| "Exception".into(), |n| n.to_string());
        let error_message = refused
            .error
            .value(py)
            .str()
            .map_or_else(|_| String::new(), |s| s.to_string_lossy().into_owned());
        Self {
            item_type,
            refused_type: refused.type_name,
            error_type,
            error_message,
        }
    }

    /// The `riffle.RiffleError` a check on the sending process would have
    /// raised: it names `producer`, `consumer`, the value's type and `pickle`'s
    /// reason, and is caused by an exception of `pickle`'s exception's type (a
    /// built-in one; `pickle.PicklingError` otherwise) with its message.
    pub(crate) fn into_error(
        self,
        py: Python<'_>,
        failures: &Failures,
        producer: &str,
        consumer: &str,
    ) -> PyErr {
        let error = self.cause(py);
        let refused = Unsendable {
            type_name: self.refused_type,
            error,
        };
        failures.unsendable(py, producer, consumer, &self.item_type, refused)
    }

    /// `pickle`'s exception, made again on this process: of its type where that
    /// is a built-in exception, else a `pickle.PicklingError` whose message
    /// starts with the type's name.
    fn cause(&self, py: Python<'_>) -> PyErr {
        let builtin = py
            .import("builtins")
            .and_then(|b| b.getattr(self.error_type.as_str()))
            .ok()
            .and_then(|t| t.cast_into::<PyType>().ok())
            .filter(|t| t.is_subclass_of::<PyException>().unwrap_or(false));
        let made = match builtin {
            Some(kind) => kind.call1((self.error_message.as_str(),)),
            None => py.import("pickle").and_then(|p| {
                let message = format!("{}: {}", self.error_type, self.error_message);
                p.getattr("PicklingError")?.call1((message,))
            }),
        };
        match made {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        }
    }
}
