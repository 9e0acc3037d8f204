"""Sinks of your own, in bytewax 0.21's shape.

Subclass :class:`FixedPartitionedSink` (named partitions, each written by one
worker; items are ``(key, value)`` pairs routed by :meth:`FixedPartitionedSink.part_fn`
of the key, and each partition gets the values) or :class:`DynamicSink` (one
partition on every worker, writing whatever that worker holds), and pass an
instance to :func:`riffle.operators.output`. An exception from any of their
methods stops the run with a :class:`riffle.RiffleError` naming the output step.

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, run_main
>>> written = []
>>> class Collect(StatelessSinkPartition):
...     def write_batch(self, items):
...         written.extend(items)
>>> class CollectSink(DynamicSink):
...     def build(self, step_id, worker_index, worker_count):
...         return Collect()
>>> flow = Dataflow("collect")
>>> op.output("out", op.input("inp", flow, TestingSource(["a", "b"])), CollectSink())
>>> run_main(flow)
>>> written
['a', 'b']
"""

import zlib
from abc import ABC, abstractmethod
from typing import Generic, List, Optional, Tuple, TypeVar

X = TypeVar("X")
V = TypeVar("V")
S = TypeVar("S")

__all__ = [
    "DynamicSink",
    "FixedPartitionedSink",
    "Sink",
    "StatefulSinkPartition",
    "StatelessSinkPartition",
]


class Sink(ABC, Generic[X]):  # noqa: B024 (a marker base, as bytewax's)
    """What :func:`riffle.operators.output` writes to: a
    :class:`FixedPartitionedSink` or a :class:`DynamicSink`."""


class StatefulSinkPartition(ABC, Generic[V, S]):
    """One partition of a :class:`FixedPartitionedSink`, written by one worker."""

    @abstractmethod
    def write_batch(self, values: List[V]) -> None:
        """Writes these values, in order."""

    @abstractmethod
    def snapshot(self) -> S:
        """The partition's position, pickled into the recovery store and given
        back to ``build_part`` as ``resume_state`` when a run resumes."""

    def close(self) -> None:
        """Called once when the run is done with the partition."""


class FixedPartitionedSink(Sink[Tuple[str, V]], Generic[V, S]):
    """A sink with a fixed list of named partitions; items are ``(key, value)``
    pairs with ``str`` keys, and the value goes to partition
    ``part_fn(key) % len(list_parts())``."""

    @abstractmethod
    def list_parts(self) -> List[str]:
        """The partitions' names, the same on every worker."""

    def part_fn(self, item_key: str) -> int:
        """The partition of ``item_key``: its Adler-32 checksum by default (the
        same on every worker and run)."""
        return zlib.adler32(item_key.encode())

    @abstractmethod
    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[S]
    ) -> StatefulSinkPartition[V, S]:
        """Opens partition ``for_part`` at ``resume_state`` (``None`` when the
        run starts from the beginning)."""


class StatelessSinkPartition(ABC, Generic[X]):
    """The partition of a :class:`DynamicSink` on one worker."""

    @abstractmethod
    def write_batch(self, items: List[X]) -> None:
        """Writes these items, in order."""

    def close(self) -> None:
        """Called once when the run is done with the partition."""


class DynamicSink(Sink[X]):
    """A sink that builds one partition on every worker."""

    @abstractmethod
    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[X]:
        """The partition of worker ``worker_index`` of ``worker_count``."""
