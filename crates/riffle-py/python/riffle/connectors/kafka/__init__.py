"""Kafka topics as a source and a sink, in bytewax 0.21's shape, read and
written by Riffle's Rust Kafka connector (librdkafka).

:class:`KafkaSource` reads topics: every partition of every topic is a
partition of the source, read by one worker, and its next offset is what the
recovery store keeps, so a run under :class:`riffle.recovery.RecoveryConfig`
resumes each partition where its last snapshot was. Items are
:class:`KafkaSourceMessage`\\ s with ``bytes`` keys and values.
:class:`KafkaSink` writes :class:`KafkaSinkMessage`\\ s (or ``(key, value)``
pairs) to one topic: a record goes to the partition Kafka's default
partitioner picks for its key, and every record is delivered before the flow
moves past its epoch (at-least-once). The helpers of
:mod:`riffle.connectors.kafka.operators` add both as steps, and turn keys and
values into objects and back with the serializers of
:mod:`riffle.connectors.kafka.serde`; a message that fails to decode travels
on as a :class:`KafkaError` holding a :class:`KafkaSerdeError` and the message.

Reading a topic to its current end and copying it::

    from riffle.dataflow import Dataflow
    import riffle.operators as op
    from riffle.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource

    flow = Dataflow("copy")
    msgs = op.input("in", flow, KafkaSource(["127.0.0.1:9092"], ["in"], tail=False))
    upper = op.map("upper", msgs, lambda m: KafkaSinkMessage(m.key, m.value.upper()))
    op.output("out", upper, KafkaSink(["127.0.0.1:9092"], "out"))

``add_config`` takes librdkafka properties (``security.protocol``,
``compression.type``, ...); ``group.id`` names the consumer group the source
commits its offsets to (``riffle.STEP_ID`` by default). SASL credentials come
from ``RIFFLE_KAFKA_SASL_USERNAME`` and ``RIFFLE_KAFKA_SASL_PASSWORD`` (or
``RIFFLE_KAFKA_SASL_PASSWORD_FILE``).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar, Union

from riffle import _riffle

__all__ = [
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "OFFSET_STORED",
    "KafkaError",
    "KafkaSerdeError",
    "KafkaSink",
    "KafkaSinkMessage",
    "KafkaSource",
    "KafkaSourceMessage",
]

#: Start partitions without a snapshot at their oldest record (confluent-kafka's value).
OFFSET_BEGINNING = -2
#: Start partitions without a snapshot after their newest record.
OFFSET_END = -1
#: Start partitions without a snapshot at the consumer group's committed offset
#: (the oldest record when the group has none).
OFFSET_STORED = -1000

Bytes = Union[bytes, str, None]


@dataclass(frozen=True)
class KafkaSourceMessage:
    """A message read from Kafka.

    ``key`` and ``value`` are ``bytes`` (``None`` when the record has none),
    ``headers`` a list of ``(name, bytes or None)``, ``timestamp`` the record's
    time in milliseconds since the Unix epoch (``None`` if it has none; bytewax
    gives confluent-kafka's ``(type, ms)`` pair). ``latency`` is always
    ``None``.
    """

    key: Optional[bytes]
    value: Optional[bytes]
    topic: Optional[str] = None
    headers: List[Tuple[str, Optional[bytes]]] = field(default_factory=list)
    latency: Optional[float] = None
    offset: Optional[int] = None
    partition: Optional[int] = None
    timestamp: Optional[int] = None

    def to_sink(self) -> "KafkaSinkMessage":
        """The same key, value and headers as a message to write."""
        return KafkaSinkMessage(self.key, self.value, headers=list(self.headers))


@dataclass(frozen=True)
class KafkaSinkMessage:
    """A record to write to Kafka.

    ``key``, ``value`` and header values are ``bytes`` or ``str`` (written as
    UTF-8), or ``None``. ``topic`` may be left ``None`` or name the sink's own
    topic; ``partition`` must be ``None`` (the sink picks the partition from
    the key). ``timestamp`` is in milliseconds since the Unix epoch, ``0`` for
    the producer's clock.
    """

    key: Bytes
    value: Bytes
    topic: Optional[str] = None
    headers: List[Tuple[str, Bytes]] = field(default_factory=list)
    partition: Optional[int] = None
    timestamp: int = 0


class KafkaSerdeError(ValueError):
    """Why a message's key or value could not be serialized or deserialized.

    ``code()`` is librdkafka's number for the case (one of the four class
    constants), ``name()`` its name and ``str()`` what went wrong: the accessor
    names of confluent-kafka's ``KafkaError``, so code that reads
    ``error.err.code()`` or ``error.err.str()`` keeps working. ``field`` is
    ``"key"`` or ``"value"``.

    >>> err = KafkaSerdeError(KafkaSerdeError.VALUE_DESERIALIZATION, "JSONDecodeError: Expecting value")
    >>> err.name(), err.field, err.str()
    ('_VALUE_DESERIALIZATION', 'value', 'JSONDecodeError: Expecting value')
    """

    #: A key that its serializer rejected.
    KEY_SERIALIZATION = -162
    #: A value that its serializer rejected.
    VALUE_SERIALIZATION = -161
    #: A key that its deserializer rejected.
    KEY_DESERIALIZATION = -160
    #: A value that its deserializer rejected.
    VALUE_DESERIALIZATION = -159

    _NAMES = {
        -162: "_KEY_SERIALIZATION",
        -161: "_VALUE_SERIALIZATION",
        -160: "_KEY_DESERIALIZATION",
        -159: "_VALUE_DESERIALIZATION",
    }

    def __init__(self, code: int, message: str):
        if code not in self._NAMES:
            raise ValueError(f"KafkaSerdeError code must be one of {sorted(self._NAMES)}; got {code!r}")
        super().__init__(code, message)
        self._code = code
        self._message = message

    @property
    def field(self) -> str:
        """``"key"`` or ``"value"``: the part of the message that failed."""
        return "key" if self._code in (self.KEY_SERIALIZATION, self.KEY_DESERIALIZATION) else "value"

    def code(self) -> int:
        """librdkafka's error number."""
        return self._code

    def name(self) -> str:
        """librdkafka's error name, e.g. ``_VALUE_DESERIALIZATION``."""
        return self._NAMES[self._code]

    def str(self) -> str:
        """What went wrong: the exception the (de)serializer raised, by type and text."""
        return self._message

    def __str__(self) -> str:
        return f"{self.name()}: {self._message}"

    def __repr__(self) -> str:
        return f"KafkaSerdeError({self.name()}, {self._message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KafkaSerdeError) and (self._code, self._message) == (other._code, other._message)

    def __hash__(self) -> int:
        return hash((self._code, self._message))


K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class KafkaError(Generic[K, V]):
    """A message that a step could not process, on a Kafka operator's ``errs``
    stream: ``err`` says why, ``msg`` is the message as it arrived (its key and
    value still the bytes that were read)."""

    #: Why the message failed.
    err: KafkaSerdeError
    #: The message, unchanged.
    msg: KafkaSourceMessage


def _brokers(brokers: Union[str, Iterable[str]]) -> str:
    if isinstance(brokers, str):
        listed = [b.strip() for b in brokers.split(",")]
    else:
        listed = [b.strip() for b in brokers]
    if not listed or not all(isinstance(b, str) and b for b in listed):
        raise ValueError(f"brokers must name at least one host:port; got {brokers!r}")
    return ",".join(listed)


def _config(add_config: Optional[Dict[str, Any]]) -> List[Tuple[str, str]]:
    if add_config is None:
        return []
    if not isinstance(add_config, dict):
        raise TypeError(f"add_config must be a dict of librdkafka properties; got a {type(add_config).__qualname__}")
    return [(str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in add_config.items()]


class KafkaSource:
    """Reads ``topics`` from the cluster at ``brokers`` (``host:port`` strings).

    ``tail=True`` follows new records for ever; ``tail=False`` stops each
    partition at the end it had when the run started, so the flow ends.
    ``starting_offset`` (:data:`OFFSET_BEGINNING`, :data:`OFFSET_END` or
    :data:`OFFSET_STORED`) is where a partition starts when no snapshot says
    otherwise. ``batch_size`` is accepted for bytewax's signature: the connector
    polls what librdkafka holds, up to 4096 messages at a time. Reading fails
    only on broker errors, which stop the run naming the step, so
    ``raise_on_errors`` changes nothing.
    """

    def __init__(
        self,
        brokers: Union[str, Iterable[str]],
        topics: Union[str, Iterable[str]],
        tail: bool = True,
        starting_offset: int = OFFSET_BEGINNING,
        add_config: Optional[Dict[str, Any]] = None,
        batch_size: int = 1000,
        raise_on_errors: bool = True,
    ):
        self.brokers = _brokers(brokers)
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics or not all(isinstance(t, str) and t for t in self.topics):
            raise ValueError(f"topics must name at least one topic; got {topics!r}")
        if starting_offset not in (OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED):
            raise ValueError(
                "starting_offset must be OFFSET_BEGINNING, OFFSET_END or OFFSET_STORED; "
                f"got {starting_offset!r}"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        self.tail = bool(tail)
        self.starting_offset = starting_offset
        self.add_config = _config(add_config)
        self.batch_size = batch_size
        self.raise_on_errors = raise_on_errors

    def _riffle_input(self, step_id: str, flow: Any) -> Tuple[Any, Any]:
        """The ``(oks, errs)`` streams of this source as step ``step_id``."""
        return _riffle.input_kafka(
            step_id, flow, self.brokers, self.topics, self.tail,
            self.starting_offset, self.add_config, KafkaSourceMessage,
        )

    def __repr__(self) -> str:
        return f"KafkaSource({self.brokers!r}, {self.topics!r}, tail={self.tail})"


class KafkaSink:
    """Writes to ``topic`` of the cluster at ``brokers``.

    Items are :class:`KafkaSinkMessage`\\ s or ``(key, value)`` tuples (a keyed
    stream's ``(str, value)`` pairs write the key as UTF-8). Each partition of
    the topic is written by one worker; every record is delivered before the
    flow's epoch closes, so under a recovery store a crash may repeat records
    written after the last snapshot but loses none (at-least-once).
    """

    def __init__(
        self,
        brokers: Union[str, Iterable[str]],
        topic: str,
        add_config: Optional[Dict[str, Any]] = None,
    ):
        if not isinstance(topic, str) or not topic:
            raise ValueError(
                f"KafkaSink writes to one topic, which must be named; got {topic!r}"
            )
        self.brokers = _brokers(brokers)
        self.topic = topic
        self.add_config = _config(add_config)

    def _riffle_output(self, step_id: str, up: Any) -> None:
        _riffle.output_kafka(step_id, up, self.brokers, self.topic, self.add_config)

    def __repr__(self) -> str:
        return f"KafkaSink({self.brokers!r}, {self.topic!r})"


def _create_topic(
    brokers: Union[str, Iterable[str]],
    topic: str,
    partitions: int = 1,
    add_config: Optional[Dict[str, Any]] = None,
) -> bool:
    """Creates ``topic`` with ``partitions`` partitions (replication 1);
    ``False`` if it existed. For tests and set-up."""
    return _riffle.kafka_create_topic(_brokers(brokers), topic, partitions, _config(add_config))
