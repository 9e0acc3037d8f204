"""Kafka steps in bytewax 0.21's shape (``import riffle.connectors.kafka.operators
as kop``).

:func:`input` adds a :class:`~riffle.connectors.kafka.KafkaSource` and returns
:class:`KafkaOpOut`: ``oks``, the messages, and ``errs``, which stays empty
(values are read as bytes, which cannot fail to decode; a broker error stops
the run naming the step). :func:`output` adds a
:class:`~riffle.connectors.kafka.KafkaSink`::

    import riffle.connectors.kafka.operators as kop

    out = kop.input("in", flow, brokers=["127.0.0.1:9092"], topics=["in"], tail=False)
    kop.output("out", out.oks, brokers=["127.0.0.1:9092"], topic="copy")

**Serde.** :func:`deserialize_key`, :func:`deserialize_value` and
:func:`deserialize` (both) turn the bytes of
:class:`~riffle.connectors.kafka.KafkaSourceMessage`\\ s into objects with a
deserializer of :mod:`riffle.connectors.kafka.serde` (or your own) and return
:class:`KafkaOpOut`: ``oks`` has the messages with their key or value replaced,
``errs`` a :class:`~riffle.connectors.kafka.KafkaError` for each message whose
deserializer raised, holding the reason and the message as it arrived, while
the other messages go on. :func:`serialize_key`, :func:`serialize_value` and
:func:`serialize` turn objects back into bytes and return one stream of
:class:`~riffle.connectors.kafka.KafkaSinkMessage`\\ s for :func:`output`; a
serializer that raises stops the run, naming the step.

Each is a few steps of :mod:`riffle.operators`, named after ``step_id`` as
bytewax names them with ``_`` for bytewax's ``.`` (step ids cannot hold a
``.``): ``deserialize_value("de", ...)`` adds the map ``de_map`` and the branch
``de_split_err`` (``de_split`` for :func:`deserialize_key`);
``serialize_value("ser", ...)`` adds ``ser_to_sink_map`` and ``ser_map``.

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> import riffle.connectors.kafka.operators as kop
>>> from riffle.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
>>> from riffle.connectors.kafka.serde import JsonDeserializer, JsonSerializer
>>> from riffle.testing import TestingSink, TestingSource, run_main
>>> flow = Dataflow("orders")
>>> msgs = op.input("inp", flow, TestingSource([
...     KafkaSourceMessage(b"a", b'{"qty": 2}'), KafkaSourceMessage(b"b", b"{oops")]))
>>> orders = kop.deserialize_value("de", msgs, JsonDeserializer())
>>> good, bad = [], []
>>> op.output("good", orders.oks, TestingSink(good))
>>> op.output("bad", orders.errs, TestingSink(bad))
>>> doubled = op.map("double", orders.oks, lambda m: KafkaSinkMessage(m.key, {"qty": m.value["qty"] * 2}))
>>> written = []
>>> op.output("written", kop.serialize_value("ser", doubled, JsonSerializer()), TestingSink(written))
>>> run_main(flow)
>>> [(m.key, m.value) for m in good]
[(b'a', {'qty': 2})]
>>> [(e.msg.value, e.err.name()) for e in bad]
[(b'{oops', '_VALUE_DESERIALIZATION')]
>>> [(m.key, m.value) for m in written]
[(b'a', b'{"qty":4}')]
"""

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import riffle.operators as op
from riffle.connectors.kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaSerdeError,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from riffle.connectors.kafka.serde import (
    AnyDeserializer,
    AnySerializer,
    MessageField,
    SerializationContext,
    _deserialize_fn,
    _serialize_fn,
)
from riffle.dataflow import Dataflow, Stream

__all__ = [
    "KafkaOpOut",
    "KafkaSourceOut",
    "deserialize",
    "deserialize_key",
    "deserialize_value",
    "input",
    "output",
    "serialize",
    "serialize_key",
    "serialize_value",
]


@dataclasses.dataclass(frozen=True)
class KafkaOpOut:
    """The two streams of :func:`input` and the deserialize operators: ``oks``,
    the :class:`~riffle.connectors.kafka.KafkaSourceMessage`\\ s, and ``errs``,
    the :class:`~riffle.connectors.kafka.KafkaError`\\ s."""

    #: The messages that were read or decoded.
    oks: Stream
    #: The messages that failed, each with its reason.
    errs: Stream


#: The earlier name of :class:`KafkaOpOut`.
KafkaSourceOut = KafkaOpOut


def input(  # noqa: A001 (bytewax's name)
    step_id: str,
    flow: Dataflow,
    *,
    brokers: Union[str, Iterable[str]],
    topics: Union[str, Iterable[str]],
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
    add_config: Optional[Dict[str, Any]] = None,
    batch_size: int = 1000,
) -> KafkaOpOut:
    """Reads ``topics``; the arguments are :class:`~riffle.connectors.kafka.KafkaSource`'s."""
    source = KafkaSource(brokers, topics, tail, starting_offset, add_config, batch_size)
    oks, errs = source._riffle_input(step_id, flow)
    return KafkaOpOut(oks, errs)


def output(
    step_id: str,
    up: Stream,
    *,
    brokers: Union[str, Iterable[str]],
    topic: str,
    add_config: Optional[Dict[str, Any]] = None,
) -> None:
    """Writes every item of ``up`` to ``topic``; the arguments are
    :class:`~riffle.connectors.kafka.KafkaSink`'s."""
    KafkaSink(brokers, topic, add_config)._riffle_output(step_id, up)


def _ctx(msg: Any, field: str) -> SerializationContext:
    return SerializationContext(msg.topic, field, msg.headers)


def _failed(code: int, error: Exception) -> KafkaSerdeError:
    return KafkaSerdeError(code, f"{type(error).__qualname__}: {error}")


def _split(step_id: str, decoded: Stream) -> KafkaOpOut:
    """Branches the :class:`KafkaError`\\ s of ``decoded`` off to ``errs``."""
    out = op.branch(step_id, decoded, lambda item: not isinstance(item, KafkaError))
    return KafkaOpOut(out.trues, out.falses)


def _decoding(step_id: str, up: Stream, fields: List[Tuple[str, str, int, Any]], split: str) -> KafkaOpOut:
    """The step behind the deserialize operators: decodes each of ``fields``
    (attribute, serde field, error code, deserializer) of every message in
    order; the first that raises makes the message a :class:`KafkaError` with
    that code, for ``errs`` (steps ``{step_id}_map`` and ``{step_id}_{split}``)."""
    map_id = f"{step_id}_map"

    def decode(msg: Any) -> Any:
        _check_source_message(map_id, msg)
        decoded = {}
        for attr, field, code, de in fields:
            try:
                decoded[attr] = de(getattr(msg, attr), _ctx(msg, field))
            except Exception as e:
                return KafkaError(_failed(code, e), msg)
        return dataclasses.replace(msg, **decoded)

    return _split(f"{step_id}_{split}", op.map(map_id, up, decode))


def _check_source_message(step_id: str, msg: Any) -> None:
    if not isinstance(msg, KafkaSourceMessage):
        raise TypeError(
            f'step "{step_id}": deserializes KafkaSourceMessages (from a KafkaSource); '
            f"got a {type(msg).__qualname__}"
        )


def deserialize_key(step_id: str, up: Stream, deserializer: AnyDeserializer) -> KafkaOpOut:
    """Decodes the key of every :class:`~riffle.connectors.kafka.KafkaSourceMessage`
    of ``up`` with ``deserializer`` (see :mod:`riffle.connectors.kafka.serde`).

    ``oks`` has the messages with the decoded key; a message whose
    deserializer raised goes to ``errs`` as a
    :class:`~riffle.connectors.kafka.KafkaError` (code
    ``KEY_DESERIALIZATION``) holding the message unchanged. Steps:
    ``{step_id}_map``, ``{step_id}_split``.
    """
    de = _deserialize_fn(step_id, "deserializer", deserializer)
    return _decoding(step_id, up, [("key", MessageField.KEY, KafkaSerdeError.KEY_DESERIALIZATION, de)], "split")


def deserialize_value(step_id: str, up: Stream, deserializer: AnyDeserializer) -> KafkaOpOut:
    """Decodes the value of every :class:`~riffle.connectors.kafka.KafkaSourceMessage`
    of ``up`` with ``deserializer``.

    ``oks`` has the messages with the decoded value; a message whose
    deserializer raised goes to ``errs`` as a
    :class:`~riffle.connectors.kafka.KafkaError` (code
    ``VALUE_DESERIALIZATION``) holding the message unchanged. Steps:
    ``{step_id}_map``, ``{step_id}_split_err``.
    """
    de = _deserialize_fn(step_id, "deserializer", deserializer)
    return _decoding(step_id, up, [("value", MessageField.VALUE, KafkaSerdeError.VALUE_DESERIALIZATION, de)], "split_err")


def deserialize(
    step_id: str,
    up: Stream,
    *,
    key_deserializer: AnyDeserializer,
    val_deserializer: AnyDeserializer,
) -> KafkaOpOut:
    """Decodes the key and the value of every message of ``up`` in one step.

    A message goes to ``oks`` only if both decode; otherwise ``errs`` gets a
    :class:`~riffle.connectors.kafka.KafkaError` for the first that failed (the
    key is tried first) with the message as it arrived. Steps:
    ``{step_id}_map``, ``{step_id}_split_err``.
    """
    key_de = _deserialize_fn(step_id, "key_deserializer", key_deserializer)
    val_de = _deserialize_fn(step_id, "val_deserializer", val_deserializer)
    fields = [
        ("key", MessageField.KEY, KafkaSerdeError.KEY_DESERIALIZATION, key_de),
        ("value", MessageField.VALUE, KafkaSerdeError.VALUE_DESERIALIZATION, val_de),
    ]
    return _decoding(step_id, up, fields, "split_err")


def _to_sink(step_id: str, up: Stream) -> Stream:
    """Makes every item of ``up`` a :class:`~riffle.connectors.kafka.KafkaSinkMessage`:
    source messages via ``to_sink()``, ``(key, value)`` pairs as they are."""

    def convert(item: Any) -> KafkaSinkMessage:
        if isinstance(item, KafkaSinkMessage):
            return item
        if isinstance(item, KafkaSourceMessage):
            return item.to_sink()
        if isinstance(item, tuple) and len(item) == 2:
            return KafkaSinkMessage(item[0], item[1])
        raise TypeError(
            f'step "{step_id}": serializes KafkaSinkMessages, KafkaSourceMessages or (key, value) '
            f"pairs; got a {type(item).__qualname__}"
        )

    return op.map(step_id, up, convert)


def _encode(
    step_id: str,
    up: Stream,
    key_ser: Optional[Callable[[Any, SerializationContext], Any]],
    val_ser: Optional[Callable[[Any, SerializationContext], Any]],
) -> Stream:
    def encode(msg: KafkaSinkMessage) -> KafkaSinkMessage:
        changes: Dict[str, Any] = {}
        if key_ser is not None:
            changes["key"] = key_ser(msg.key, _ctx(msg, MessageField.KEY))
        if val_ser is not None:
            changes["value"] = val_ser(msg.value, _ctx(msg, MessageField.VALUE))
        return dataclasses.replace(msg, **changes)

    return op.map(f"{step_id}_map", _to_sink(f"{step_id}_to_sink_map", up), encode)


def serialize_key(step_id: str, up: Stream, serializer: AnySerializer) -> Stream:
    """Encodes the key of every message of ``up`` with ``serializer``, for
    :func:`output`.

    Items are :class:`~riffle.connectors.kafka.KafkaSinkMessage`\\ s,
    :class:`~riffle.connectors.kafka.KafkaSourceMessage`\\ s (made sink messages
    with ``to_sink()``) or ``(key, value)`` pairs. A serializer that raises
    stops the run with that exception, naming the step ``{step_id}_map``.
    Steps: ``{step_id}_to_sink_map``, ``{step_id}_map``.
    """
    return _encode(step_id, up, _serialize_fn(step_id, "serializer", serializer), None)


def serialize_value(step_id: str, up: Stream, serializer: AnySerializer) -> Stream:
    """Encodes the value of every message of ``up`` with ``serializer``; as
    :func:`serialize_key` otherwise."""
    return _encode(step_id, up, None, _serialize_fn(step_id, "serializer", serializer))


def serialize(
    step_id: str,
    up: Stream,
    *,
    key_serializer: AnySerializer,
    val_serializer: AnySerializer,
) -> Stream:
    """Encodes the key and the value of every message of ``up`` in one step;
    as :func:`serialize_key` otherwise."""
    return _encode(
        step_id,
        up,
        _serialize_fn(step_id, "key_serializer", key_serializer),
        _serialize_fn(step_id, "val_serializer", val_serializer),
    )
