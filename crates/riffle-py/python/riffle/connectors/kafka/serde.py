"""Serializers and deserializers for Kafka keys and values, for the serde
operators of :mod:`riffle.connectors.kafka.operators`.

A Kafka record's key and value are bytes. A *deserializer* turns those bytes
into an object and a *serializer* turns an object back into bytes. The
operators take either of two shapes:

* a callable ``(data, ctx) -> result`` (:class:`Deserializer`,
  :class:`Serializer`): the shape of confluent-kafka's serializers, which
  bytewax 0.21 takes, so those classes work unchanged. ``ctx`` is a
  :class:`SerializationContext` naming the topic and the field (``"key"`` or
  ``"value"``);
* an object with a ``de(data)`` or ``ser(obj)`` method
  (:class:`SchemaDeserializer`, :class:`SchemaSerializer`), the shape of
  earlier bytewax releases.

:class:`JsonSerializer` and :class:`JsonDeserializer` cover JSON;
:class:`PlainAvroSerializer` and :class:`PlainAvroDeserializer` cover Avro
without the schema registry's 5-byte frame (they need the ``fastavro``
package). A serde is plain Python: write your own in a few lines.

>>> from riffle.connectors.kafka.serde import JsonDeserializer, JsonSerializer, MessageField, SerializationContext
>>> ctx = SerializationContext("orders", MessageField.VALUE)
>>> data = JsonSerializer()({"id": 7, "items": ["tea"]}, ctx)
>>> data
b'{"id":7,"items":["tea"]}'
>>> JsonDeserializer()(data, ctx)
{'id': 7, 'items': ['tea']}

Schema-registry serdes (Confluent's or Redpanda's registry) are not provided.
"""

import io
import json
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union, runtime_checkable

__all__ = [
    "Deserializer",
    "JsonDeserializer",
    "JsonSerializer",
    "MessageField",
    "PlainAvroDeserializer",
    "PlainAvroSerializer",
    "SchemaDeserializer",
    "SchemaSerializer",
    "SerializationContext",
    "Serializer",
]


class MessageField:
    """Which part of a message a (de)serializer is working on: compare
    ``ctx.field`` with these (confluent-kafka's ``MessageField`` values)."""

    #: The record's key.
    KEY = "key"
    #: The record's value.
    VALUE = "value"


@dataclass(frozen=True)
class SerializationContext:
    """What a :class:`Serializer` or :class:`Deserializer` is told about the
    data it gets: the message's ``topic`` (``None`` when a message to write
    leaves it to the sink), the ``field`` (a :class:`MessageField` value) and
    the message's ``headers``."""

    topic: Optional[str]
    field: str
    headers: Optional[List[Tuple[str, Any]]] = None


@runtime_checkable
class Serializer(Protocol):
    """A callable ``(obj, ctx) -> bytes`` (or ``None`` for no key or value);
    raising means the object cannot be written."""

    def __call__(self, obj: Any, ctx: Optional[SerializationContext] = None) -> Optional[bytes]: ...


@runtime_checkable
class Deserializer(Protocol):
    """A callable ``(data, ctx) -> object`` over a key's or value's bytes
    (``None`` when the record has none); raising marks the message as an
    error."""

    def __call__(self, data: Optional[bytes], ctx: Optional[SerializationContext] = None) -> Any: ...


@runtime_checkable
class SchemaSerializer(Protocol):
    """An object whose ``ser(obj)`` returns the bytes to write. Subclass it or
    just define ``ser``."""

    @abstractmethod
    def ser(self, obj: Any) -> Optional[bytes]:
        """The bytes for ``obj``."""


@runtime_checkable
class SchemaDeserializer(Protocol):
    """An object whose ``de(data)`` returns the object that ``data`` encodes.
    Subclass it or just define ``de``."""

    @abstractmethod
    def de(self, data: Optional[bytes]) -> Any:
        """The object ``data`` encodes."""


AnySerializer = Union[Serializer, SchemaSerializer]
AnyDeserializer = Union[Deserializer, SchemaDeserializer]


def _as_bytes(data: Union[bytes, str, None], what: str) -> bytes:
    if data is None:
        raise ValueError(f"{what} got no data (the record has no key or value)")
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} reads bytes; got a {type(data).__qualname__}")


class JsonSerializer:
    """Writes an object as compact UTF-8 JSON; ``None`` stays ``None`` (no key,
    or a tombstone value). ``dumps_args`` go to :func:`json.dumps` (``default=``,
    ``sort_keys=``, ...). Usable as :class:`Serializer` and
    :class:`SchemaSerializer`."""

    def __init__(self, **dumps_args: Any):
        self.dumps_args: Dict[str, Any] = {"separators": (",", ":"), **dumps_args}

    def ser(self, obj: Any) -> Optional[bytes]:
        """The JSON text of ``obj`` as UTF-8 bytes."""
        if obj is None:
            return None
        return json.dumps(obj, **self.dumps_args).encode("utf-8")

    def __call__(self, obj: Any, ctx: Optional[SerializationContext] = None) -> Optional[bytes]:
        return self.ser(obj)


class JsonDeserializer:
    """Reads UTF-8 JSON bytes into Python objects; ``None`` (no key, or a
    tombstone) stays ``None`` unless ``allow_none=False``, which rejects it.
    ``loads_args`` go to :func:`json.loads`. Usable as :class:`Deserializer`
    and :class:`SchemaDeserializer`."""

    def __init__(self, allow_none: bool = True, **loads_args: Any):
        self.allow_none = allow_none
        self.loads_args = loads_args

    def de(self, data: Optional[bytes]) -> Any:
        """The object the JSON ``data`` encodes."""
        if data is None and self.allow_none:
            return None
        return json.loads(_as_bytes(data, "JsonDeserializer").decode("utf-8"), **self.loads_args)

    def __call__(self, data: Optional[bytes], ctx: Optional[SerializationContext] = None) -> Any:
        return self.de(data)


def _avro_schema(schema: Any, named_schemas: Optional[Dict[str, Any]]) -> Any:
    try:
        import fastavro
    except ImportError as e:
        raise ImportError("the plain Avro serdes need the fastavro package: pip install fastavro") from e
    # A schema registry client's Schema object carries its text in schema_str.
    text = getattr(schema, "schema_str", schema)
    parsed = json.loads(text) if isinstance(text, str) else text
    return fastavro.parse_schema(parsed, named_schemas=named_schemas)


class PlainAvroSerializer:
    """Writes objects as Avro binary in ``schema`` (JSON text, a parsed dict, or
    an object with a ``schema_str``), with no schema-registry frame in front.
    ``named_schemas`` holds the schemas that ``schema`` refers to by name, as
    fastavro's ``parse_schema`` takes them. Needs ``fastavro``."""

    def __init__(self, schema: Any, named_schemas: Optional[Dict[str, Any]] = None):
        self.schema = _avro_schema(schema, named_schemas)

    def ser(self, obj: Any) -> bytes:
        """The Avro encoding of ``obj``."""
        from fastavro import schemaless_writer

        buf = io.BytesIO()
        schemaless_writer(buf, self.schema, obj)
        return buf.getvalue()

    def __call__(self, obj: Any, ctx: Optional[SerializationContext] = None) -> bytes:
        return self.ser(obj)


class PlainAvroDeserializer:
    """Reads Avro binary written in ``schema`` (see
    :class:`PlainAvroSerializer`), with no schema-registry frame: data written
    with one fails to decode. ``None`` data is an error. Needs ``fastavro``."""

    def __init__(self, schema: Any, named_schemas: Optional[Dict[str, Any]] = None):
        self.schema = _avro_schema(schema, named_schemas)

    def de(self, data: Optional[bytes]) -> Any:
        """The object ``data`` encodes."""
        from fastavro import schemaless_reader

        buf = io.BytesIO(_as_bytes(data, "PlainAvroDeserializer"))
        obj = schemaless_reader(buf, self.schema, None)
        if buf.tell() != len(buf.getvalue()):
            raise ValueError(
                f"PlainAvroDeserializer: {len(buf.getvalue()) - buf.tell()} bytes left after the record "
                "(framed data, or another schema)"
            )
        return obj

    def __call__(self, data: Optional[bytes], ctx: Optional[SerializationContext] = None) -> Any:
        return self.de(data)


def _serialize_fn(step_id: str, arg: str, serde: Any) -> Callable[[Any, SerializationContext], Any]:
    """``serde`` as a function ``(obj, ctx)``, whichever shape it has."""
    return _as_fn(step_id, arg, serde, "ser", "(obj, ctx) -> bytes", "ser(obj)")


def _deserialize_fn(step_id: str, arg: str, serde: Any) -> Callable[[Any, SerializationContext], Any]:
    """``serde`` as a function ``(data, ctx)``, whichever shape it has."""
    return _as_fn(step_id, arg, serde, "de", "(data, ctx) -> object", "de(data)")


def _as_fn(step_id: str, arg: str, serde: Any, method: str, call: str, shape: str) -> Callable[[Any, SerializationContext], Any]:
    """``serde`` itself if it is callable (confluent-kafka's shape), else its
    one-argument ``method`` (the older ``SchemaSerializer`` shape) taking the
    context too."""
    if callable(serde):
        return serde
    bound = getattr(serde, method, None)
    if callable(bound):
        return lambda data, _ctx: bound(data)
    raise TypeError(
        f'step "{step_id}": {arg} must be a callable {call} or have a {shape} method; '
        f"got a {type(serde).__qualname__}"
    )
