"""The operators: functions that add a step to a dataflow.

Every operator takes a step id first (unique in the flow, without ``.``), then the
stream it reads (``up``), then the functions it calls, and returns the stream it
produces. They have bytewax's names and signatures, so ``import
riffle.operators as op`` replaces ``import bytewax.operators as op``.

The steps run in the Rust engine. Stateless steps hand each batch of items to
Python once and call your function on its items there; keyed steps route, keep
state and emit their results in Rust, calling your function only where it
decides something.

**Stateless**: :func:`map`, :func:`filter`, :func:`filter_map`, :func:`flat_map`,
:func:`flat_map_batch`, :func:`flatten`, :func:`branch`, :func:`merge`,
:func:`inspect`, :func:`inspect_debug`, :func:`redistribute`,
:func:`enrich_cached`, :func:`key_on`, and on
``(key, value)`` 2-tuples with ``str`` keys :func:`key_rm`, :func:`map_value`,
:func:`filter_value`, :func:`flat_map_value`.
**Keyed**: :func:`stateful` (a :class:`StatefulLogic` per key),
:func:`stateful_map`, :func:`stateful_flat_map`, :func:`collect`,
:func:`join`, :func:`count_final`, :func:`fold_final`, :func:`reduce_final`,
:func:`max_final`, :func:`min_final`.
**Ends**: :func:`input` (a :class:`riffle.testing.TestingSource`, a source of
:mod:`riffle.connectors.files` or :mod:`riffle.connectors.kafka`, or your own,
:mod:`riffle.inputs`), :func:`output` (a :class:`riffle.testing.TestingSink`,
:class:`riffle.connectors.stdio.StdOutSink`, a sink of
:mod:`riffle.connectors.files` or :mod:`riffle.connectors.kafka`, or your own,
:mod:`riffle.outputs`) and
:func:`raises`.
**Windows** by time: :mod:`riffle.operators.windowing`.

The examples below share this helper, which runs a flow of one step over
``items`` and returns what it wrote:

>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> from riffle.testing import TestingSource, TestingSink, run_main
>>> def run(step, items):
...     flow = Dataflow("example")
...     out = []
...     op.output("out", step(op.input("inp", flow, TestingSource(items))), TestingSink(out))
...     run_main(flow)
...     return out
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Generic, Iterable, List, Literal, Optional, Tuple, TypeVar

from riffle import _riffle
from riffle.connectors.files import DirSink, FileSink, FileSource
from riffle.connectors.stdio import StdOutSink
from riffle.inputs import DynamicSource, FixedPartitionedSource
from riffle.outputs import DynamicSink, FixedPartitionedSink
from riffle.dataflow import Dataflow, KeyedStream, Stream
from riffle.testing import TestingSink, TestingSource

X = TypeVar("X")
Y = TypeVar("Y")
V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")
DK = TypeVar("DK")
DV = TypeVar("DV")


__all__ = [
    "BranchOut",
    "JoinEmitMode",
    "JoinInsertMode",
    "StatefulLogic",
    "TTLCache",
    "branch",
    "collect",
    "count_final",
    "enrich_cached",
    "filter",
    "filter_map",
    "filter_value",
    "flat_map",
    "flat_map_batch",
    "flat_map_value",
    "flatten",
    "fold_final",
    "input",
    "inspect",
    "inspect_debug",
    "join",
    "key_on",
    "key_rm",
    "map",
    "map_value",
    "max_final",
    "merge",
    "min_final",
    "output",
    "raises",
    "redistribute",
    "stateful",
    "reduce_final",
    "stateful_flat_map",
    "stateful_map",
]


def input(step_id: str, flow: Dataflow, source: Any) -> Stream:
    """Reads the items of ``source`` into ``flow``.

    >>> run(lambda s: s, [1, 2, 3])
    [1, 2, 3]
    """
    if isinstance(source, TestingSource):
        return _riffle.input_testing(
            step_id, flow, source.ib, source.batch_size, TestingSource.EOF, TestingSource.ABORT
        )
    if isinstance(source, FileSource):
        return _riffle.input_files(step_id, flow, source.path, source._csv, source.batch_size)
    if hasattr(source, "_riffle_input"):
        # A connector read in Rust (riffle.connectors.kafka): its item stream.
        return source._riffle_input(step_id, flow)[0]
    if isinstance(source, FixedPartitionedSource):
        return _riffle.input_source(step_id, flow, source, True)
    if isinstance(source, DynamicSource):
        return _riffle.input_source(step_id, flow, source, False)
    raise TypeError(
        f'step "{step_id}": cannot read a {type(source).__qualname__}; a source is a '
        "riffle.inputs.FixedPartitionedSource or DynamicSource, a riffle.connectors "
        "source, or a riffle.testing.TestingSource"
    )


def output(step_id: str, up: Stream, sink: Any) -> None:
    """Writes every item of ``up`` to ``sink``."""
    if isinstance(sink, TestingSink):
        return _riffle.output(step_id, up, sink.ls.extend)
    if isinstance(sink, StdOutSink):
        return _riffle.output(step_id, up, sink._write)
    if isinstance(sink, FileSink):
        return _riffle.output_files(step_id, up, sink.file_path)
    if isinstance(sink, DirSink):
        return _riffle.output_files(step_id, up, sink.dir_path, sink.file_count)
    if hasattr(sink, "_riffle_output"):
        # A connector written in Rust (riffle.connectors.kafka).
        return sink._riffle_output(step_id, up)
    if isinstance(sink, FixedPartitionedSink):
        return _riffle.output_sink(step_id, up, sink, True)
    if isinstance(sink, DynamicSink):
        return _riffle.output_sink(step_id, up, sink, False)
    raise TypeError(
        f'step "{step_id}": cannot write to a {type(sink).__qualname__}; a sink is a '
        "riffle.outputs.FixedPartitionedSink or DynamicSink, a riffle.connectors sink, "
        "or a riffle.testing.TestingSink"
    )


def map(step_id: str, up: Stream, mapper: Callable[[X], Y]) -> Stream:
    """``mapper(item)`` for every item.

    >>> run(lambda s: op.map("upper", s, str.upper), ["a", "b"])
    ['A', 'B']
    """
    return _riffle.map(step_id, up, mapper)


def filter(step_id: str, up: Stream, predicate: Callable[[X], bool]) -> Stream:
    """The items for which ``predicate(item)`` is ``True``.

    ``predicate`` must return a ``bool``; anything else stops the flow with a
    ``TypeError``.

    >>> run(lambda s: op.filter("small", s, lambda x: x < 3), [5, 1, 4, 2])
    [1, 2]
    """
    return _riffle.filter(step_id, up, predicate)


def filter_map(step_id: str, up: Stream, mapper: Callable[[X], Optional[Y]]) -> Stream:
    """``mapper(item)`` for every item, leaving out the ``None`` results.

    >>> run(lambda s: op.filter_map("ints", s, lambda t: int(t) if t.isdigit() else None), ["1", "x", "3"])
    [1, 3]
    """
    return _riffle.filter_map(step_id, up, mapper)


def flat_map(step_id: str, up: Stream, mapper: Callable[[X], Iterable[Y]]) -> Stream:
    """Every item of the iterable ``mapper(item)``, for every item.

    >>> run(lambda s: op.flat_map("words", s, str.split), ["to be", "or"])
    ['to', 'be', 'or']
    """
    return _riffle.flat_map(step_id, up, mapper)


def flat_map_batch(step_id: str, up: Stream, mapper: Callable[[List[X]], Iterable[Y]]) -> Stream:
    """Every item of the iterable ``mapper(items)``, where ``items`` is a list of
    the items of one batch: for work that costs per call rather than per item.

    A batch never mixes epochs; how many items it holds is up to the source (a
    :class:`~riffle.testing.TestingSource` reads ``batch_size`` at a time).

    >>> run(lambda s: op.flat_map_batch("sums", s, lambda batch: [sum(batch)]), [1, 2, 3])
    [1, 2, 3]
    """
    return _riffle.flat_map_batch(step_id, up, mapper)


def flatten(step_id: str, up: Stream) -> Stream:
    """Every item of every item of ``up``, each an iterable.

    >>> run(lambda s: op.flatten("flat", s), [[1, 2], [], (3,)])
    [1, 2, 3]
    """
    return _riffle.flatten(step_id, up)


@dataclass(frozen=True)
class BranchOut:
    """The two streams of :func:`branch`."""

    #: The items for which the predicate was ``True``.
    trues: Stream
    #: The items for which it was ``False``.
    falses: Stream


def branch(step_id: str, up: Stream, predicate: Callable[[X], bool]) -> BranchOut:
    """Splits ``up`` in two by ``predicate(item)``, which must return a ``bool``
    and is called once per item.

    >>> flow = Dataflow("split")
    >>> nums = op.input("inp", flow, TestingSource([1, 2, 3, 4]))
    >>> parity = op.branch("even", nums, lambda x: x % 2 == 0)
    >>> evens, odds = [], []
    >>> op.output("out_evens", parity.trues, TestingSink(evens))
    >>> op.output("out_odds", parity.falses, TestingSink(odds))
    >>> run_main(flow)
    >>> evens, odds
    ([2, 4], [1, 3])
    """
    trues, falses = _riffle.branch(step_id, up, predicate)
    return BranchOut(trues, falses)


def merge(step_id: str, *ups: Stream) -> Stream:
    """One stream with the items of all of ``ups``.

    >>> flow = Dataflow("join_up")
    >>> a = op.input("a", flow, TestingSource([1, 2]))
    >>> b = op.input("b", flow, TestingSource([3]))
    >>> out = []
    >>> op.output("out", op.merge("both", a, b), TestingSink(out))
    >>> run_main(flow)
    >>> sorted(out)
    [1, 2, 3]
    """
    return _riffle.merge(step_id, list(ups))


def _default_inspector(step_id: str, item: Any) -> None:
    print(f"{step_id}: {item!r}", flush=True)


def inspect(
    step_id: str, up: Stream, inspector: Callable[[str, X], None] = _default_inspector
) -> Stream:
    """Calls ``inspector(step_id, item)`` for every item, which passes on unchanged.

    The default inspector prints ``step_id: repr(item)``.

    >>> run(lambda s: op.inspect("see", s), [1, "a"])
    see: 1
    see: 'a'
    [1, 'a']
    """
    return _riffle.inspect(step_id, up, inspector)


def key_on(step_id: str, up: Stream, key: Callable[[X], str]) -> KeyedStream:
    """``(key(item), item)`` for every item; ``key`` must return a ``str``.

    >>> run(lambda s: op.key_on("by_len", s, lambda w: str(len(w))), ["ab", "c"])
    [('2', 'ab'), ('1', 'c')]
    """
    return _riffle.key_on(step_id, up, key)


def map_value(step_id: str, up: KeyedStream, mapper: Callable[[V], W]) -> KeyedStream:
    """``(key, mapper(value))`` for every ``(key, value)`` pair.

    >>> run(lambda s: op.map_value("double", s, lambda v: v * 2), [("a", 1), ("b", 2)])
    [('a', 2), ('b', 4)]
    """
    return _riffle.map_value(step_id, up, mapper)


def key_rm(step_id: str, up: KeyedStream) -> Stream:
    """The value of every ``(key, value)`` pair.

    >>> run(lambda s: op.key_rm("values", s), [("a", 1), ("b", 2)])
    [1, 2]
    """
    return _riffle.key_rm(step_id, up)


def filter_value(step_id: str, up: KeyedStream, predicate: Callable[[V], bool]) -> KeyedStream:
    """The ``(key, value)`` pairs for which ``predicate(value)`` is ``True``.

    >>> run(lambda s: op.filter_value("pos", s, lambda v: v > 0), [("a", 1), ("b", -2)])
    [('a', 1)]
    """
    return _riffle.filter_value(step_id, up, predicate)


def flat_map_value(step_id: str, up: KeyedStream, mapper: Callable[[V], Iterable[W]]) -> KeyedStream:
    """``(key, w)`` for every ``w`` of the iterable ``mapper(value)``, for every pair.

    >>> run(lambda s: op.flat_map_value("split", s, str.split), [("a", "x y")])
    [('a', 'x'), ('a', 'y')]
    """
    return _riffle.flat_map_value(step_id, up, mapper)


def stateful_map(
    step_id: str,
    up: KeyedStream,
    mapper: Callable[[Optional[S], V], Tuple[Optional[S], W]],
) -> KeyedStream:
    """Maps each value with the state of its key.

    ``mapper(state, value)`` returns ``(updated_state, emit_value)``; a key's state
    is ``None`` until ``mapper`` first returns one, and returning ``None`` as the
    state forgets the key. Emits ``(key, emit_value)``.

    >>> def running_sum(total, value):
    ...     total = (total or 0) + value
    ...     return total, total
    >>> run(lambda s: op.stateful_map("sum", s, running_sum), [("a", 1), ("a", 2), ("b", 5), ("a", 3)])
    [('a', 1), ('a', 3), ('b', 5), ('a', 6)]
    """
    return _riffle.stateful_map(step_id, up, mapper)


def count_final(step_id: str, up: Stream, key: Callable[[X], str]) -> KeyedStream:
    """``(key, count)`` for every key ``key(item)`` returned, when the stream ends.

    >>> sorted(run(lambda s: op.count_final("count", s, lambda w: w), ["a", "b", "a"]))
    [('a', 2), ('b', 1)]
    """
    return _riffle.count_final(step_id, up, key)


def _identity(x: Any) -> Any:
    return x


def _check_by(step_id: str, by: Any) -> None:
    if not callable(by):
        raise TypeError(f'step "{step_id}": `by` must be callable; got a {type(by).__qualname__} instead')


def max_final(step_id: str, up: KeyedStream, by: Callable[[V], Any] = _identity) -> KeyedStream:
    """``(key, largest value)`` for every key when the stream ends, comparing
    ``by(value)``; of equal values, the first seen.

    >>> sorted(run(lambda s: op.max_final("max", s), [("a", 3), ("a", 7), ("b", 1)]))
    [('a', 7), ('b', 1)]
    """
    _check_by(step_id, by)
    return reduce_final(step_id, up, lambda acc, v: v if by(v) > by(acc) else acc)


def min_final(step_id: str, up: KeyedStream, by: Callable[[V], Any] = _identity) -> KeyedStream:
    """``(key, smallest value)`` for every key when the stream ends, comparing
    ``by(value)``; of equal values, the first seen.

    >>> sorted(run(lambda s: op.min_final("min", s, by=len), [("a", "ccc"), ("a", "b"), ("a", "d")]))
    [('a', 'b')]
    """
    _check_by(step_id, by)
    return reduce_final(step_id, up, lambda acc, v: v if by(v) < by(acc) else acc)


def reduce_final(step_id: str, up: KeyedStream, reducer: Callable[[V, V], V]) -> KeyedStream:
    """Combines each key's values with ``reducer(accumulator, value)``; emits
    ``(key, accumulator)`` for every key when the stream ends.

    >>> sorted(run(lambda s: op.reduce_final("sum", s, lambda acc, v: acc + v), [("a", 1), ("b", 2), ("a", 3)]))
    [('a', 4), ('b', 2)]
    """
    return _riffle.reduce_final(step_id, up, reducer)


class StatefulLogic(Generic[V, W, S]):
    """The logic of one key of :func:`stateful`; subclass it.

    Every method that the step calls returns ``(emits, discard)``: an iterable of
    values to emit for the key, and whether the key is done
    (:attr:`DISCARD`: its logic is dropped, and its next value builds a new one)
    or kept (:attr:`RETAIN`).
    """

    #: ``discard`` value: drop this key's logic.
    DISCARD = True
    #: ``discard`` value: keep this key's logic.
    RETAIN = False

    def on_item(self, value: V) -> Tuple[Iterable[W], bool]:
        """A value of the key arrived."""
        raise NotImplementedError(f"{type(self).__qualname__} must define on_item")

    def on_notify(self) -> Tuple[Iterable[W], bool]:
        """The instant :meth:`notify_at` returned has passed (by the wall clock)."""
        return ([], StatefulLogic.RETAIN)

    def on_eof(self) -> Tuple[Iterable[W], bool]:
        """The stream ended."""
        return ([], StatefulLogic.RETAIN)

    def notify_at(self) -> Optional[datetime]:
        """When to call :meth:`on_notify` (an aware ``datetime``), or ``None``;
        asked again after every call."""
        return None

    def snapshot(self) -> S:
        """The key's state: pickled into the recovery store, and given to the
        step's ``builder`` when a run resumes."""
        raise NotImplementedError(f"{type(self).__qualname__} must define snapshot")


def stateful(
    step_id: str,
    up: KeyedStream,
    builder: Callable[[Optional[S]], StatefulLogic[V, W, S]],
) -> KeyedStream:
    """Runs a :class:`StatefulLogic` per key and emits ``(key, w)`` for what
    its methods emit.

    ``builder(resume_state)`` makes a key's logic: with ``None`` when the key's
    first value comes, with what its :meth:`~StatefulLogic.snapshot` returned
    when a run resumes from a recovery store.

    >>> class Pairs(StatefulLogic):
    ...     def __init__(self, held):
    ...         self.held = held
    ...     def on_item(self, value):
    ...         if self.held is None:
    ...             self.held = value
    ...             return [], StatefulLogic.RETAIN
    ...         return [(self.held, value)], StatefulLogic.DISCARD
    ...     def on_eof(self):
    ...         return [(self.held, None)], StatefulLogic.DISCARD
    ...     def snapshot(self):
    ...         return self.held
    >>> run(lambda s: op.stateful("pairs", s, Pairs), [("a", 1), ("b", 2), ("a", 3)])
    [('a', (1, 3)), ('b', (2, None))]
    """
    return _riffle.stateful(step_id, up, builder)


def stateful_flat_map(
    step_id: str,
    up: KeyedStream,
    mapper: Callable[[Optional[S], V], Tuple[Optional[S], Iterable[W]]],
) -> KeyedStream:
    """Maps each value to any number of values with the state of its key.

    ``mapper(state, value)`` returns ``(updated_state, emit_values)``; emits
    ``(key, w)`` for every ``w`` of the iterable ``emit_values``. A key's state is
    ``None`` until ``mapper`` first returns one, and returning ``None`` as the
    state forgets the key.

    >>> def pairs(held, value):
    ...     if held is None:
    ...         return value, []
    ...     return None, [held, value]
    >>> run(lambda s: op.stateful_flat_map("pairs", s, pairs), [("a", 1), ("b", 2), ("a", 3), ("b", 4)])
    [('a', 1), ('a', 3), ('b', 2), ('b', 4)]
    """
    return _riffle.stateful_flat_map(step_id, up, mapper)


def fold_final(
    step_id: str,
    up: KeyedStream,
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
) -> KeyedStream:
    """Builds an accumulator per key with ``builder()``, combines each of the
    key's values into it with ``folder(accumulator, value)`` (in the order they
    came), and emits ``(key, accumulator)`` for every key when the stream ends.

    >>> def add(acc, v):
    ...     acc.append(v)
    ...     return acc
    >>> sorted(run(lambda s: op.fold_final("lists", s, list, add), [("a", 1), ("b", 2), ("a", 3)]))
    [('a', [1, 3]), ('b', [2])]
    """
    return _riffle.fold_final(step_id, up, builder, folder)


def collect(step_id: str, up: KeyedStream, timeout: timedelta, max_size: int) -> KeyedStream:
    """Gathers each key's values into lists: ``(key, [values])``.

    A list is emitted when it holds ``max_size`` values, and what is left of it
    when its epoch closes (every ``epoch_interval`` of
    :func:`riffle.testing.run_main`) and when the stream ends.

    ``timeout`` must be a positive ``timedelta``, but the engine's ``collect`` has
    no timer of its own per key yet: a list that does not fill up waits for the
    end of its epoch, not for ``timeout`` after its first value as in bytewax.
    Choose ``epoch_interval`` near ``timeout`` where that matters.

    >>> sorted(run(lambda s: op.collect("two", s, timedelta(seconds=10), max_size=2),
    ...     [("a", 1), ("b", 2), ("a", 3), ("a", 5)]))
    [('a', [1, 3]), ('a', [5]), ('b', [2])]
    """
    if not isinstance(timeout, timedelta):
        raise TypeError(
            f'step "{step_id}": `timeout` must be a datetime.timedelta; got a {type(timeout).__qualname__} instead'
        )
    if timeout <= timedelta(0):
        raise ValueError(f'step "{step_id}": `timeout` must be positive; got {timeout!r}')
    if isinstance(max_size, bool):
        raise TypeError(f'step "{step_id}": `max_size` must be an int; got a bool instead')
    return _riffle.collect(step_id, up, max_size)


def _default_debug_inspector(step_id: str, item: Any, epoch: int, worker: int) -> None:
    print(f"{step_id} W{worker} @{epoch}: {item!r}", flush=True)


def inspect_debug(
    step_id: str,
    up: Stream,
    inspector: Callable[[str, X, int, int], None] = _default_debug_inspector,
) -> Stream:
    """Calls ``inspector(step_id, item, epoch, worker_index)`` for every item,
    which passes on unchanged.

    The default inspector prints ``step_id Wworker @epoch: repr(item)``. Epochs
    count from 0.

    >>> run(lambda s: op.inspect_debug("see", s), ["a"])
    see W0 @0: 'a'
    ['a']
    """
    return _riffle.inspect_debug(step_id, up, inspector)


def redistribute(step_id: str, up: Stream) -> Stream:
    """The same items, spread evenly over the workers (round robin): after a
    source with fewer partitions than workers, before costly steps.

    >>> run(lambda s: op.redistribute("spread", s), [1, 2, 3])
    [1, 2, 3]
    """
    return _riffle.redistribute(step_id, up)


def raises(step_id: str, up: Stream) -> None:
    """Stops the flow on the first item of ``up``: ``run_main`` raises
    :class:`riffle.RiffleError` naming this step, caused by a ``RuntimeError``
    showing the item. For streams that must stay empty (e.g. items a step
    rejected).
    """

    def write(items: List[Any]) -> None:
        raise RuntimeError(f"`raises` step {step_id!r} got an item: {items[0]!r}")

    _riffle.output(step_id, up, write)


JoinInsertMode = Literal["first", "last", "product"]
"""Which values of each side a :func:`join` keeps for a key:

- ``"first"``: the first value of each side; later values of that side are
  dropped.
- ``"last"``: the latest value of each side.
- ``"product"``: every value of each side; the join emits one tuple per
  combination (the cross product of the sides, like a SQL cross join), the
  last side varying fastest as in :func:`itertools.product`.
"""

JoinEmitMode = Literal["complete", "final", "running"]
"""When a :func:`join` emits: ``"complete"`` once every side has a value for
the key (then the key starts over), ``"running"`` on every value with what each
side has sent so far, ``"final"`` once per key when the stream ends."""


def join(
    step_id: str,
    *sides: KeyedStream,
    insert_mode: JoinInsertMode = "last",
    emit_mode: JoinEmitMode = "complete",
) -> KeyedStream:
    """Joins keyed streams per key: emits ``(key, (v1, v2, ...))`` with a value
    of each side, in the order of ``sides``; ``None`` for a side that has sent
    nothing for the key (``"running"`` and ``"final"`` modes).

    ``insert_mode`` (:data:`JoinInsertMode`) says which values of a side are
    kept: the first, the last (the default), or all of them, in which case one
    tuple per combination is emitted. ``emit_mode`` (:data:`JoinEmitMode`) says
    when. The kept values are state in Rust, per key on the worker that owns
    the key, snapshotted under recovery.

    >>> flow = Dataflow("users")
    >>> names = op.input("names", flow, TestingSource([("1", "ada"), ("2", "bo")]))
    >>> emails = op.input("emails", flow, TestingSource([("1", "ada@example.com")]))
    >>> out = []
    >>> op.output("out", op.join("join", names, emails), TestingSink(out))
    >>> run_main(flow)
    >>> out
    [('1', ('ada', 'ada@example.com'))]

    With ``insert_mode="product"`` every value of a side meets every value of
    the others:

    >>> flow = Dataflow("orders")
    >>> orders = op.input("orders", flow, TestingSource([("ada", "tea"), ("ada", "jam")]))
    >>> cards = op.input("cards", flow, TestingSource([("ada", "visa")]))
    >>> out = []
    >>> joined = op.join("join", orders, cards, insert_mode="product", emit_mode="final")
    >>> op.output("out", joined, TestingSink(out))
    >>> run_main(flow)
    >>> out
    [('ada', ('tea', 'visa')), ('ada', ('jam', 'visa'))]
    """
    return _riffle.join(step_id, list(sides), insert_mode, emit_mode)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class TTLCache(Generic[DK, DV]):
    """Values by key, fetched with ``v_getter(key)`` when missing or older than
    ``ttl``: what :func:`enrich_cached` hands its mapper."""

    v_getter: Callable[[DK], DV]
    now_getter: Callable[[], datetime]
    ttl: timedelta
    _cache: Dict[DK, Tuple[datetime, DV]] = field(default_factory=dict)

    def get(self, k: DK) -> DV:
        """The value for ``k``: the cached one while it is younger than ``ttl``,
        else a fresh ``v_getter(k)``, which is cached."""
        now = self.now_getter()
        hit = self._cache.get(k)
        if hit is not None and now - hit[0] <= self.ttl:
            return hit[1]
        value = self.v_getter(k)
        self._cache[k] = (now, value)
        return value

    def remove(self, k: DK) -> None:
        """Forgets the cached value for ``k``; the next ``get`` fetches it."""
        self._cache.pop(k, None)


def enrich_cached(
    step_id: str,
    up: Stream,
    getter: Callable[[DK], DV],
    mapper: Callable[[TTLCache, X], Y],
    ttl: timedelta = timedelta.max,
    _now_getter: Callable[[], datetime] = _utc_now,
) -> Stream:
    """``mapper(cache, item)`` for every item, where ``cache.get(k)`` returns
    ``getter(k)``, fetched once and kept for ``ttl``: enriching items from a slow
    lookup (a database, a web service). Each worker has its own cache.

    >>> calls = []
    >>> def price_of(sku):
    ...     calls.append(sku)
    ...     return {"apple": 3, "pear": 5}[sku]
    >>> run(lambda s: op.enrich_cached("priced", s, price_of, lambda cache, sku: (sku, cache.get(sku))),
    ...     ["apple", "pear", "apple"])
    [('apple', 3), ('pear', 5), ('apple', 3)]
    >>> calls
    ['apple', 'pear']
    """
    if not isinstance(ttl, timedelta):
        raise TypeError(f'step "{step_id}": `ttl` must be a datetime.timedelta; got a {type(ttl).__qualname__} instead')
    for name, function in (("getter", getter), ("mapper", mapper)):
        if not callable(function):
            raise TypeError(
                f'step "{step_id}": `{name}` must be callable; got a {type(function).__qualname__} instead'
            )
    cache = TTLCache(getter, _now_getter, ttl)
    return _riffle.map(step_id, up, lambda item: mapper(cache, item))
