//! `riffle.connectors.kafka`: Kafka topics in and out, through the Rust
//! connector of `riffle-connectors` ([`KafkaSource`], [`KafkaSink`]).
//!
//! Everything that talks to Kafka runs in Rust: each topic partition is a
//! partition of the engine's source (or sink), read (or written) by one worker,
//! and the source's snapshot state is the partition's next offset, so a run under
//! a recovery store resumes where its last committed snapshot was. Python meets
//! the messages in two batch steps only:
//!
//! - `STEP.py` beside the input turns each [`KafkaMessage`] into the Python
//!   message type given (`KafkaSourceMessage`), bytes as `bytes`;
//! - `STEP.record` before the output turns each item (a `KafkaSinkMessage`, or a
//!   `(key, value)` pair) into a [`KafkaRecord`]: keys, values and header values
//!   are `bytes`, `str` (written as UTF-8) or `None`.
//!
//! The input also has an error stream (`STEP.errs`, bytewax's `errs`), which
//! stays empty: values are read as bytes, which cannot fail to decode, and a
//! broker error stops the run with an error naming the step.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use riffle_connectors::kafka::{
    KafkaMessage, KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, StartOffset,
};

use crate::connect::dataflow;
use crate::dataflow::{Port, PyStream};
use crate::failure::build_error;
use crate::item::{Carrier, PyItem};
use crate::operators::{batch_step, claim, on_port, type_name, upstream};

/// confluent-kafka's (and bytewax's) `OFFSET_BEGINNING`.
const OFFSET_BEGINNING: i64 = -2;
/// confluent-kafka's `OFFSET_END`.
const OFFSET_END: i64 = -1;
/// confluent-kafka's `OFFSET_STORED`: the consumer group's committed offset.
const OFFSET_STORED: i64 = -1000;

/// The librdkafka property that names the consumer group.
const GROUP_ID: &str = "group.id";

/// Settings for `brokers` with the librdkafka properties of `config`; the
/// consumer group (`group.id`), if `config` names one, comes back apart.
fn settings(brokers: &str, config: Vec<(String, String)>) -> (KafkaSettings, Option<String>) {
    let mut settings = KafkaSettings::new(brokers);
    let mut group = None;
    for (name, value) in config {
        if name == GROUP_ID {
            group = Some(value);
        } else {
            settings = settings.property(name, value);
        }
    }
    (settings, group)
}

/// Where a partition starts without a snapshot, from confluent-kafka's offsets.
fn start_offset(step_id: &str, offset: i64) -> PyResult<StartOffset> {
    match offset {
        OFFSET_BEGINNING => Ok(StartOffset::Earliest),
        OFFSET_END => Ok(StartOffset::Latest),
        OFFSET_STORED => Ok(StartOffset::Committed),
        other => Err(PyValueError::new_err(format!(
            "step {step_id:?}: starting_offset must be OFFSET_BEGINNING ({OFFSET_BEGINNING}), \
             OFFSET_END ({OFFSET_END}) or OFFSET_STORED ({OFFSET_STORED}); got {other}"
        ))),
    }
}

/// `input_kafka(step_id, flow, brokers, topics, tail, starting_offset, config,
/// message_type)`: the messages of `topics` as `message_type(key, value, topic,
/// headers, latency, offset, partition, timestamp)` objects, and the (empty)
/// error stream: `(oks, errs)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn input_kafka(
    py: Python<'_>,
    step_id: &str,
    flow: &Bound<'_, PyAny>,
    brokers: &str,
    topics: Vec<String>,
    tail: bool,
    starting_offset: i64,
    config: Vec<(String, String)>,
    message_type: &Bound<'_, PyAny>,
) -> PyResult<(PyStream, PyStream)> {
    let flow = dataflow(step_id, flow)?;
    if topics.is_empty() {
        return Err(PyValueError::new_err(format!(
            "step {step_id:?}: `topics` names no topic"
        )));
    }
    let start = start_offset(step_id, starting_offset)?;
    let (settings, group) = settings(brokers, config);
    let mut source = KafkaSource::new(settings, topics).start(start).tail(tail);
    if let Some(group) = group {
        source = source.group_id(group);
    }
    let dataflow = flow.get();
    dataflow.claim(step_id)?;
    let message_type = message_type.clone().unbind();
    let built = dataflow.flow.input(step_id, source).and_then(|messages| {
        let errs =
            messages.filter_map(&format!("{step_id}.errs"), |_: KafkaMessage| None::<PyItem>)?;
        let oks = batch_step(
            &messages,
            &format!("{step_id}.py"),
            step_id,
            &dataflow.failures,
            move |py, m: KafkaMessage, out| {
                out.push(PyItem::from(to_message(py, &message_type, m)?));
                Ok(())
            },
        )?;
        Ok((oks, errs))
    });
    let (oks, errs) = built.map_err(|e| build_error(py, e))?;
    let stream = |port, output| {
        PyStream::new(flow.clone().unbind(), step_id, Port::Items(port)).named(output)
    };
    Ok((stream(oks, "oks"), stream(errs, "errs")))
}

/// `message` as a Python `message_type` object.
fn to_message<'py>(
    py: Python<'py>,
    message_type: &Py<PyAny>,
    message: KafkaMessage,
) -> PyResult<Bound<'py, PyAny>> {
    let bytes = |b: Option<Vec<u8>>| b.map(|b| PyBytes::new(py, &b));
    let headers = message
        .headers
        .into_iter()
        .map(|(name, value)| (name, bytes(value)))
        .collect::<Vec<_>>();
    let headers = PyList::new(py, headers)?;
    message_type.bind(py).call1((
        bytes(message.key),
        bytes(message.value),
        &*message.topic,
        headers,
        py.None(),
        message.offset,
        message.partition,
        message.timestamp,
    ))
}

/// `output_kafka(step_id, up, brokers, topic, config)`: writes every item of
/// `up` to `topic`; items are `KafkaSinkMessage`s or `(key, value)` pairs.
#[pyfunction]
pub(crate) fn output_kafka(
    py: Python<'_>,
    step_id: &str,
    up: &Bound<'_, PyAny>,
    brokers: &str,
    topic: &str,
    config: Vec<(String, String)>,
) -> PyResult<()> {
    let up = upstream(step_id, up)?;
    if topic.is_empty() {
        return Err(PyValueError::new_err(format!(
            "step {step_id:?}: `topic` is empty"
        )));
    }
    let flow = claim(up, step_id)?;
    // A producer has no consumer group: `group.id` is only the source's.
    let (settings, _) = settings(brokers, config);
    let sink = KafkaSink::new(settings, topic);
    let record_id = format!("{step_id}.record");
    let built = on_port!(&up.port, |s| {
        let id = step_id.to_string();
        let topic = topic.to_string();
        batch_step(
            s,
            &record_id,
            step_id,
            &flow.failures,
            move |py, item, out| {
                out.push(to_record(&id, &topic, &item.to_py(py)?)?);
                Ok(())
            },
        )
        .and_then(|records| records.output(step_id, sink))
    });
    built.map_err(|e| build_error(py, e))
}

/// An item of a Kafka output as the record to write.
fn to_record<'py>(step_id: &str, topic: &str, item: &Bound<'py, PyAny>) -> PyResult<KafkaRecord> {
    if let Ok(pair) = item.cast::<PyTuple>() {
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(format!(
                "step {step_id:?} writes Kafka records: a tuple item must be `(key, value)`; \
                 got a tuple of {} items",
                pair.len()
            )));
        }
        return Ok(KafkaRecord {
            key: payload(step_id, "key", &pair.get_item(0)?)?,
            value: payload(step_id, "value", &pair.get_item(1)?)?,
            ..KafkaRecord::default()
        });
    }
    if !(item.hasattr("key")? && item.hasattr("value")?) {
        return Err(PyTypeError::new_err(format!(
            "step {step_id:?} writes Kafka records: items must be KafkaSinkMessage or \
             `(key, value)` tuples; got a {}",
            type_name(item)
        )));
    }
    // A field the message type leaves out counts as None.
    let optional = |name: &str| -> Option<Bound<'py, PyAny>> {
        item.getattr(name).ok().filter(|v| !v.is_none())
    };
    if let Some(other) = optional("topic") {
        let other: String = other.extract().map_err(|_| {
            PyTypeError::new_err(format!("step {step_id:?}: a message's topic must be a str"))
        })?;
        if other != topic {
            return Err(PyValueError::new_err(format!(
                "step {step_id:?} writes to topic {topic:?}; a message names topic {other:?} \
                 (use one output step per topic)"
            )));
        }
    }
    if optional("partition").is_some() {
        return Err(PyValueError::new_err(format!(
            "step {step_id:?}: a message names a partition; the sink picks each record's \
             partition from its key (leave `partition` None)"
        )));
    }
    let timestamp = match optional("timestamp") {
        None => None,
        Some(t) => match t.extract::<i64>() {
            Ok(0) => None,
            Ok(ms) => Some(ms),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "step {step_id:?}: a message's timestamp must be an int of ms since \
                     the Unix epoch (0: the producer's clock); got a {}",
                    type_name(&t)
                )));
            }
        },
    };
    let mut headers = Vec::new();
    if let Some(list) = optional("headers") {
        for header in list.try_iter()? {
            let header = header?;
            let pair = header.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
            let Some(pair) = pair else {
                return Err(PyTypeError::new_err(format!(
                    "step {step_id:?}: headers must be `(name, value)` tuples; got a {}",
                    type_name(&header)
                )));
            };
            let name: String = pair.get_item(0)?.extract().map_err(|_| {
                PyTypeError::new_err(format!("step {step_id:?}: a header name must be a str"))
            })?;
            let value = payload(step_id, "header value", &pair.get_item(1)?)?;
            headers.push((name, value.unwrap_or_default()));
        }
    }
    Ok(KafkaRecord {
        key: payload(step_id, "key", &item.getattr("key")?)?,
        value: payload(step_id, "value", &item.getattr("value")?)?,
        headers,
        timestamp,
    })
}

/// A key, value or header value: `bytes`, `str` (as UTF-8) or `None`.
fn payload(step_id: &str, what: &str, value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(Some(bytes.as_bytes().to_vec()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Some(text.to_cow()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "step {step_id:?}: a Kafka {what} must be bytes, str or None; got a {}",
        type_name(value)
    )))
}

/// `kafka_create_topic(brokers, topic, partitions, config)`: creates `topic`
/// with `partitions` partitions (replication 1); `False` if it existed.
#[pyfunction]
pub(crate) fn kafka_create_topic(
    py: Python<'_>,
    brokers: &str,
    topic: &str,
    partitions: i32,
    config: Vec<(String, String)>,
) -> PyResult<bool> {
    if partitions < 1 {
        return Err(PyValueError::new_err(format!(
            "a topic needs at least 1 partition; got {partitions}"
        )));
    }
    let (settings, _) = settings(brokers, config);
    py.detach(|| riffle_connectors::kafka::admin::create_topic(&settings, topic, partitions, 1))
        .map_err(|e| crate::failure::riffle_error(py, e.to_string(), None))
}
