"""Sources of your own, in bytewax 0.21's shape.

Subclass :class:`FixedPartitionedSource` (named partitions, each read on one
worker and able to resume from a snapshot) or :class:`DynamicSource` (one
partition on every worker, nothing to resume), and pass an instance to
:func:`riffle.operators.input`. The engine polls each partition: your
``next_batch`` returns the items it has now (an empty list when none) or raises
``StopIteration`` when the partition is done; ``next_awake`` may say when to
poll next. An exception from any of these methods stops the run with a
:class:`riffle.RiffleError` naming the input step.

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSink, run_main
>>> class Count(StatefulSourcePartition):
...     def __init__(self, n, at):
...         self.n, self.at = n, at or 0
...     def next_batch(self):
...         if self.at >= self.n:
...             raise StopIteration()
...         self.at += 1
...         return [self.at]
...     def snapshot(self):
...         return self.at
>>> class Counts(FixedPartitionedSource):
...     def list_parts(self):
...         return ["three"]
...     def build_part(self, step_id, for_part, resume_state):
...         return Count(3, resume_state)
>>> flow = Dataflow("counts")
>>> out = []
>>> op.output("out", op.input("inp", flow, Counts()), TestingSink(out))
>>> run_main(flow)
>>> out
[1, 2, 3]
"""

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Generic, Iterable, List, Optional, TypeVar

X = TypeVar("X")
S = TypeVar("S")

__all__ = [
    "DynamicSource",
    "FixedPartitionedSource",
    "Source",
    "StatefulSourcePartition",
    "StatelessSourcePartition",
]


class Source(ABC, Generic[X]):  # noqa: B024 (a marker base, as bytewax's)
    """What :func:`riffle.operators.input` reads: a
    :class:`FixedPartitionedSource` or a :class:`DynamicSource`."""


class StatefulSourcePartition(ABC, Generic[X, S]):
    """One partition of a :class:`FixedPartitionedSource`, read by one worker."""

    @abstractmethod
    def next_batch(self) -> Iterable[X]:
        """The items available now (empty if none); raise ``StopIteration``
        when the partition has no more, ever."""

    def next_awake(self) -> Optional[datetime]:
        """When to call :meth:`next_batch` next (an aware ``datetime``); ``None``
        means as soon as the engine can."""
        return None

    @abstractmethod
    def snapshot(self) -> S:
        """The partition's position, pickled into the recovery store and given
        back to ``build_part`` as ``resume_state`` when a run resumes."""

    def close(self) -> None:
        """Called once when the run is done with the partition."""


class FixedPartitionedSource(Source[X], Generic[X, S]):
    """A source with a fixed list of named partitions.

    Every worker calls :meth:`list_parts`; partition ``i`` of the list is read
    by worker ``i % workers``, which calls :meth:`build_part` for it.
    """

    @abstractmethod
    def list_parts(self) -> List[str]:
        """The partitions' names, the same on every worker."""

    @abstractmethod
    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[S]
    ) -> StatefulSourcePartition[X, S]:
        """Opens partition ``for_part`` at ``resume_state`` (``None`` when the
        run starts from the beginning)."""


class StatelessSourcePartition(ABC, Generic[X]):
    """The partition of a :class:`DynamicSource` on one worker."""

    @abstractmethod
    def next_batch(self) -> Iterable[X]:
        """The items available now (empty if none); raise ``StopIteration``
        when the partition has no more, ever."""

    def next_awake(self) -> Optional[datetime]:
        """When to call :meth:`next_batch` next; ``None`` means at once."""
        return None

    def close(self) -> None:
        """Called once when the run is done with the partition."""


class DynamicSource(Source[X]):
    """A source that builds one partition on every worker; it cannot resume."""

    @abstractmethod
    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSourcePartition[X]:
        """The partition of worker ``worker_index`` of ``worker_count``."""
