"""Kafka steps in bytewax 0.21's shape (``import riffle.connectors.kafka.operators
as kop``).

:func:`input` adds a :class:`~riffle.connectors.kafka.KafkaSource` and returns
:class:`KafkaSourceOut`: ``oks``, the messages, and ``errs``, which stays empty
(values are read as bytes, which cannot fail to decode; a broker error stops
the run naming the step). :func:`output` adds a
:class:`~riffle.connectors.kafka.KafkaSink`::

    import riffle.connectors.kafka.operators as kop

    out = kop.input("in", flow, brokers=["127.0.0.1:9092"], topics=["in"], tail=False)
    kop.output("out", out.oks, brokers=["127.0.0.1:9092"], topic="copy")
"""

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Union

from riffle.connectors.kafka import OFFSET_BEGINNING, KafkaSink, KafkaSource
from riffle.dataflow import Dataflow, Stream

__all__ = ["KafkaSourceOut", "input", "output"]


@dataclass(frozen=True)
class KafkaSourceOut:
    """The streams of :func:`input`: ``oks`` (the
    :class:`~riffle.connectors.kafka.KafkaSourceMessage`\\ s) and ``errs``."""

    oks: Stream
    errs: Stream


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
) -> KafkaSourceOut:
    """Reads ``topics``; the arguments are :class:`~riffle.connectors.kafka.KafkaSource`'s."""
    source = KafkaSource(brokers, topics, tail, starting_offset, add_config, batch_size)
    oks, errs = source._riffle_input(step_id, flow)
    return KafkaSourceOut(oks, errs)


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

