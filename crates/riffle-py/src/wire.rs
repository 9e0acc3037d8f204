//! How a Python item is written when it leaves the process: sent to a worker of
//! another process of the cluster, or snapshotted into a recovery store.
//!
//! Plain values are encoded in Rust, without entering the `pickle` module: the
//! exact types `None`, `bool`, `int` (within `i64`), `float`, `str`, `bytes`,
//! `list`, `tuple`, `dict` and `datetime.datetime` (naive, or aware in
//! `datetime.timezone.utc`), nested to any depth up to [`MAX_DEPTH`]. Each value is
//! one variant of a small tagged enum, written through serde into whatever format
//! carries it (bincode between timely processes, postcard in recovery stores), so
//! decoding gives back the same type: a `tuple` stays a `tuple`, a `bool` a `bool`,
//! `1.0` a `float`, and a `dict` keeps its order. Everything else (ints beyond
//! `i64`, subclasses such as `IntEnum` or a `namedtuple`, sets, other time zones,
//! instances of your classes) is pickled, as a value of its own, so a list of
//! plain values with one object inside encodes all but that object in Rust.
//!
//! Encoding writes straight from the Python object to the serializer
//! ([`Encode`]); decoding reads the tagged value ([`Wire`]) and then builds the
//! Python object. An object `pickle` cannot handle (a lambda, an open file) is a
//! serialization error naming its type. Timely cannot stop a run on such an error
//! (it expects every item it sends to encode), so before items are sent to
//! another process their steps [`check`] them, which walks a value the way the
//! encoding does and fails where it would.

use std::borrow::Cow;
use std::fmt;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyTzInfo,
    PyTzInfoAccess,
};
use pyo3::types::{PyDateAccess, PyTimeAccess};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Error as _, Serialize, SerializeSeq, SerializeTuple, Serializer};

/// How deep containers nest before the rest of a value is pickled as a whole.
pub(crate) const MAX_DEPTH: u32 = 64;

/// The enum's name, as serde formats see it.
const NAME: &str = "Wire";

/// A value as it was written: the tag says which Python type to build again.
///
/// The variants' order is the encoding (their index is written), so new ones
/// go at the end; [`Encode`] writes the same variants by hand.
#[derive(serde::Deserialize)]
pub(crate) enum Wire {
    /// `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` that fits in `i64`.
    Int(i64),
    /// A `float`, bit for bit (NaN and `-0.0` included).
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(ByteBuf),
    /// A `list`.
    List(Vec<Wire>),
    /// A `tuple`.
    Tuple(Vec<Wire>),
    /// A `dict`, its pairs in order.
    Dict(Vec<(Wire, Wire)>),
    /// A `datetime.datetime`, naive or in UTC.
    DateTime(DateTimeParts),
    /// Anything else, as `pickle.dumps` wrote it.
    Pickle(ByteBuf),
}

/// The fields of a `datetime.datetime`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct DateTimeParts {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    microsecond: u32,
    fold: bool,
    /// In `datetime.timezone.utc`; naive otherwise.
    utc: bool,
}

/// Bytes written with `serialize_bytes` and read back from bytes or a sequence.
pub(crate) struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(ByteBuf(out))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Borrowed bytes, written with `serialize_bytes` (read back as a [`ByteBuf`]).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A Python object being written, `depth` containers deep.
pub(crate) struct Encode<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    depth: u32,
}

impl<'a, 'py> Encode<'a, 'py> {
    /// The top-level value `obj`.
    pub(crate) fn new(obj: &'a Bound<'py, PyAny>) -> Self {
        Self { obj, depth: 0 }
    }

    fn child<'b>(&self, obj: &'b Bound<'py, PyAny>) -> Encode<'b, 'py> {
        Encode {
            obj,
            depth: self.depth + 1,
        }
    }
}

/// The items of a `list` or `tuple`, as a sequence.
struct Items<'a, 'py>(&'a Encode<'a, 'py>, Vec<Bound<'py, PyAny>>);

impl Serialize for Items<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.1.len()))?;
        for item in &self.1 {
            seq.serialize_element(&self.0.child(item))?;
        }
        seq.end()
    }
}

/// The pairs of a `dict`, as a sequence of 2-tuples.
struct Pairs<'a, 'py>(
    &'a Encode<'a, 'py>,
    Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
);

impl Serialize for Pairs<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Pair<'a, 'py>(Encode<'a, 'py>, Encode<'a, 'py>);
        impl Serialize for Pair<'_, '_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut t = serializer.serialize_tuple(2)?;
                t.serialize_element(&self.0)?;
                t.serialize_element(&self.1)?;
                t.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.1.len()))?;
        for (k, v) in &self.1 {
            seq.serialize_element(&Pair(self.0.child(k), self.0.child(v)))?;
        }
        seq.end()
    }
}

/// How [`Encode`] writes one object: as a plain value, or pickled.
enum Form<'a, 'py> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(&'a [u8]),
    List(&'a Bound<'py, PyList>),
    Tuple(&'a Bound<'py, PyTuple>),
    Dict(&'a Bound<'py, PyDict>),
    DateTime(DateTimeParts),
    /// Anything else: written by `pickle`.
    Pickled,
}

/// How `obj`, `depth` containers deep, is written. Only exact types are plain
/// (a subclass may hold more than its base type shows); an error is a
/// `datetime` whose fields cannot be read.
fn form<'a, 'py>(obj: &'a Bound<'py, PyAny>, depth: u32) -> PyResult<Form<'a, 'py>> {
    if obj.is_none() {
        return Ok(Form::None);
    }
    if depth >= MAX_DEPTH {
        return Ok(Form::Pickled);
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Ok(Form::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast_exact::<PyInt>() {
        // Beyond `i64`: pickled.
        return Ok(i.extract::<i64>().map_or(Form::Pickled, Form::Int));
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Ok(Form::Float(f.value()));
    }
    if let Ok(text) = obj.cast_exact::<PyString>() {
        // A str holding a lone surrogate has no UTF-8: it is pickled.
        return Ok(text.to_cow().map_or(Form::Pickled, Form::Str));
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Form::Bytes(b.as_bytes()));
    }
    if let Ok(list) = obj.cast_exact::<PyList>() {
        return Ok(Form::List(list));
    }
    if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        return Ok(Form::Tuple(tuple));
    }
    if let Ok(dict) = obj.cast_exact::<PyDict>() {
        return Ok(Form::Dict(dict));
    }
    if let Ok(dt) = obj.cast_exact::<PyDateTime>() {
        return Ok(datetime_parts(dt)?.map_or(Form::Pickled, Form::DateTime));
    }
    Ok(Form::Pickled)
}

impl Serialize for Encode<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let obj = self.obj;
        match form(obj, self.depth).map_err(S::Error::custom)? {
            Form::None => s.serialize_unit_variant(NAME, 0, "None"),
            Form::Bool(b) => s.serialize_newtype_variant(NAME, 1, "Bool", &b),
            Form::Int(i) => s.serialize_newtype_variant(NAME, 2, "Int", &i),
            Form::Float(f) => s.serialize_newtype_variant(NAME, 3, "Float", &f),
            Form::Str(text) => s.serialize_newtype_variant(NAME, 4, "Str", &*text),
            Form::Bytes(b) => s.serialize_newtype_variant(NAME, 5, "Bytes", &Bytes(b)),
            Form::List(list) => {
                let items = Items(self, list.iter().collect());
                s.serialize_newtype_variant(NAME, 6, "List", &items)
            }
            Form::Tuple(tuple) => {
                let items = Items(self, tuple.iter().collect());
                s.serialize_newtype_variant(NAME, 7, "Tuple", &items)
            }
            Form::Dict(dict) => {
                let pairs = Pairs(self, dict.iter().collect());
                s.serialize_newtype_variant(NAME, 8, "Dict", &pairs)
            }
            Form::DateTime(parts) => s.serialize_newtype_variant(NAME, 9, "DateTime", &parts),
            Form::Pickled => {
                let pickled = pickle(obj).map_err(|e| {
                    S::Error::custom(format!(
                        "cannot pickle an item of type {} to send it to another process \
                         or snapshot it: {e}",
                        type_name(obj)
                    ))
                })?;
                s.serialize_newtype_variant(NAME, 10, "Pickle", &Bytes(&pickled))
            }
        }
    }
}

/// Why an object cannot be written: the object `pickle` refused (the item
/// itself, or a value inside it) and `pickle`'s exception.
pub(crate) struct Unsendable {
    /// The type of the object `pickle` refused.
    pub(crate) type_name: String,
    /// What `pickle` raised.
    pub(crate) error: PyErr,
}

/// Checks that [`Encode`] can write `obj`: walks it as the encoding does and
/// pickles what the encoding would pickle, keeping nothing. A value that passes
/// is written without error; one that fails says which object `pickle` refused.
pub(crate) fn check(obj: &Bound<'_, PyAny>) -> Result<(), Unsendable> {
    check_at(obj, 0)
}

fn check_at(obj: &Bound<'_, PyAny>, depth: u32) -> Result<(), Unsendable> {
    let refused = |error| Unsendable {
        type_name: type_name(obj),
        error,
    };
    match form(obj, depth).map_err(refused)? {
        Form::List(list) => list.iter().try_for_each(|item| check_at(&item, depth + 1)),
        Form::Tuple(tuple) => tuple.iter().try_for_each(|item| check_at(&item, depth + 1)),
        Form::Dict(dict) => dict.iter().try_for_each(|(k, v)| {
            check_at(&k, depth + 1)?;
            check_at(&v, depth + 1)
        }),
        Form::Pickled => pickle(obj).map(drop).map_err(refused),
        _ => Ok(()),
    }
}

/// The name of `obj`'s type, for messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// The fields of `dt`, or `None` if its time zone is neither absent nor UTC.
fn datetime_parts(dt: &Bound<'_, PyDateTime>) -> PyResult<Option<DateTimeParts>> {
    let utc = match dt.get_tzinfo() {
        None => false,
        Some(tz) if tz.is(&*PyTzInfo::utc(dt.py())?) => true,
        Some(_) => return Ok(None),
    };
    Ok(Some(DateTimeParts {
        year: dt.get_year(),
        month: dt.get_month(),
        day: dt.get_day(),
        hour: dt.get_hour(),
        minute: dt.get_minute(),
        second: dt.get_second(),
        microsecond: dt.get_microsecond(),
        fold: dt.get_fold(),
        utc,
    }))
}

/// `pickle.dumps` and `pickle.loads`, looked up once per interpreter.
static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn pickle(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let dumps = DUMPS.import(obj.py(), "pickle", "dumps")?;
    let pickled = dumps.call1((obj,))?;
    Ok(pickled.cast::<PyBytes>()?.as_bytes().to_vec())
}

impl Wire {
    /// The Python object this value was written from.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(match self {
            Wire::None => py.None().into_bound(py),
            Wire::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
            Wire::Int(i) => i.into_pyobject(py)?.into_any(),
            Wire::Float(f) => PyFloat::new(py, f).into_any(),
            Wire::Str(s) => PyString::new(py, &s).into_any(),
            Wire::Bytes(b) => PyBytes::new(py, &b.0).into_any(),
            Wire::List(items) => PyList::new(py, Self::all_into_py(py, items)?)?.into_any(),
            Wire::Tuple(items) => PyTuple::new(py, Self::all_into_py(py, items)?)?.into_any(),
            Wire::Dict(pairs) => {
                let dict = PyDict::new(py);
                for (k, v) in pairs {
                    dict.set_item(k.into_py(py)?, v.into_py(py)?)?;
                }
                dict.into_any()
            }
            Wire::DateTime(p) => {
                let utc = PyTzInfo::utc(py)?.to_owned();
                PyDateTime::new_with_fold(
                    py,
                    p.year,
                    p.month,
                    p.day,
                    p.hour,
                    p.minute,
                    p.second,
                    p.microsecond,
                    p.utc.then_some(&utc),
                    p.fold,
                )?
                .into_any()
            }
            Wire::Pickle(bytes) => LOADS
                .import(py, "pickle", "loads")?
                .call1((PyBytes::new(py, &bytes.0),))?,
        })
    }

    fn all_into_py(py: Python<'_>, items: Vec<Wire>) -> PyResult<Vec<Bound<'_, PyAny>>> {
        items.into_iter().map(|w| w.into_py(py)).collect()
    }
}
