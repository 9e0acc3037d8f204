"""Windows: group each key's values by time and emit one result per key and
window when the window closes.

The shape is bytewax's ``bytewax.operators.windowing``: a window operator takes
a clock (:class:`SystemClock`, or :class:`EventClock` reading a ``datetime``
from each value) and a windower (:class:`TumblingWindower`,
:class:`SlidingWindower`, :class:`SessionWindower`), and returns a
:class:`WindowOut` of three keyed streams:

- ``down``: ``(key, (window_id, result))`` once per key and window, when the
  watermark passes the window's end (or the stream ends);
- ``late``: ``(key, (None, value))`` for values whose windows had already
  closed (bytewax gives the window id; the engine says when and why instead,
  not which window, so it is ``None``);
- ``meta``: ``(key, (window_id, WindowMetadata))`` for every closed window.

Clocks, watermarks, windows and their state are the engine's (Rust); Python
runs only the functions you pass (``ts_getter``, and the folder or reducer of
:func:`fold_window` and :func:`reduce_window`). :func:`collect_window` and
:func:`count_window` run no Python per value beyond ``ts_getter``.

>>> from datetime import datetime, timedelta, timezone
>>> from riffle.dataflow import Dataflow
>>> import riffle.operators as op
>>> import riffle.operators.windowing as win
>>> from riffle.testing import TestingSource, TestingSink, run_main
>>> start = datetime(2024, 1, 1, tzinfo=timezone.utc)
>>> readings = [("a", start, 1), ("b", start + timedelta(seconds=1), 2),
...             ("a", start + timedelta(seconds=4), 3), ("a", start + timedelta(seconds=12), 5)]
>>> flow = Dataflow("sensors")
>>> keyed = op.key_on("by_sensor", op.input("inp", flow, TestingSource(readings)), lambda r: r[0])
>>> clock = win.EventClock(lambda r: r[1], wait_for_system_duration=timedelta(0))
>>> windows = win.TumblingWindower(length=timedelta(seconds=10), align_to=start)
>>> sums = win.fold_window("sum", keyed, clock, windows, lambda: 0, lambda acc, r: acc + r[2], lambda a, b: a + b)
>>> out = []
>>> op.output("out", sums.down, TestingSink(out))
>>> run_main(flow)
>>> sorted(out)
[('a', (0, 4)), ('a', (1, 5)), ('b', (0, 2))]
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Set, TypeVar

from riffle import _riffle
from riffle.dataflow import KeyedStream, Stream

V = TypeVar("V")
S = TypeVar("S")
X = TypeVar("X")

__all__ = [
    "Clock",
    "EventClock",
    "SessionWindower",
    "SlidingWindower",
    "SystemClock",
    "TumblingWindower",
    "WindowMetadata",
    "WindowOut",
    "Windower",
    "collect_window",
    "count_window",
    "fold_window",
    "join_window",
    "max_window",
    "min_window",
    "reduce_window",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def _ms(what: str, value: timedelta) -> int:
    if not isinstance(value, timedelta):
        raise TypeError(f"`{what}` must be a datetime.timedelta; got a {type(value).__qualname__}")
    return value // _MS


def _instant_ms(what: str, value: datetime) -> int:
    if not isinstance(value, datetime):
        raise TypeError(f"`{what}` must be a datetime.datetime; got a {type(value).__qualname__}")
    if value.tzinfo is None:
        raise ValueError(f"`{what}` must be an aware datetime (with a timezone, e.g. UTC); got {value!r}")
    return (value - _EPOCH) // _MS


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class Clock:
    """How a window step tells time: :class:`SystemClock` or :class:`EventClock`."""

    def _spec(self) -> tuple:
        raise NotImplementedError


@dataclass(frozen=True)
class SystemClock(Clock):
    """Processing time: each value is timed when the window step sees it, and
    windows close as the system clock passes their end (all of them when the
    stream ends)."""

    def _spec(self) -> tuple:
        return ("system",)


@dataclass(frozen=True)
class EventClock(Clock):
    """Event time: ``ts_getter(value)`` returns the value's time, an aware
    ``datetime``. The watermark is the latest time seen less
    ``wait_for_system_duration``; a value behind the watermark whose windows
    have closed goes to ``late``. An idle input stops holding the watermark back
    after a few seconds, and every window closes when the stream ends.
    """

    ts_getter: Callable[[Any], datetime]
    wait_for_system_duration: timedelta

    def _spec(self) -> tuple:
        return ("event", self.ts_getter, _ms("wait_for_system_duration", self.wait_for_system_duration))


class Windower:
    """Which windows a time falls in: :class:`TumblingWindower`,
    :class:`SlidingWindower` or :class:`SessionWindower`."""

    def _spec(self) -> tuple:
        raise NotImplementedError


@dataclass(frozen=True)
class TumblingWindower(Windower):
    """Back-to-back windows of ``length``, one of them starting at ``align_to``
    (an aware ``datetime``). Window ids count from the one at ``align_to``."""

    length: timedelta
    align_to: datetime

    def _spec(self) -> tuple:
        return ("tumbling", _ms("length", self.length), _instant_ms("align_to", self.align_to))


@dataclass(frozen=True)
class SlidingWindower(Windower):
    """Windows of ``length`` starting every ``offset`` (at most ``length``), one
    of them at ``align_to``; a time falls in ``length / offset`` windows."""

    length: timedelta
    offset: timedelta
    align_to: datetime

    def _spec(self) -> tuple:
        return (
            "sliding",
            _ms("length", self.length),
            _ms("offset", self.offset),
            _instant_ms("align_to", self.align_to),
        )


@dataclass(frozen=True)
class SessionWindower(Windower):
    """Sessions: a key's window stays open while its values come less than
    ``gap`` apart; windows that a value bridges merge."""

    gap: timedelta

    def _spec(self) -> tuple:
        return ("session", _ms("gap", self.gap))


@dataclass(frozen=True)
class WindowMetadata:
    """When a window opened and closed (aware UTC datetimes); for a session, it
    closes at its last value's time plus the gap."""

    open_time: datetime
    close_time: datetime
    merged_ids: Set[int] = field(default_factory=set)


def _to_meta(open_ms: int, close_ms: int) -> WindowMetadata:
    return WindowMetadata(_from_ms(open_ms), _from_ms(close_ms))


@dataclass(frozen=True)
class WindowOut:
    """The three streams of a window operator."""

    #: ``(key, (window_id, result))`` per key and closed window.
    down: KeyedStream
    #: ``(key, (None, value))`` for values that came after their windows closed.
    late: KeyedStream
    #: ``(key, (window_id, WindowMetadata))`` per key and closed window.
    meta: KeyedStream


def _specs(step_id: str, clock: Clock, windower: Windower) -> tuple:
    if not isinstance(clock, Clock):
        raise TypeError(
            f'step "{step_id}": `clock` must be a SystemClock or EventClock; got a {type(clock).__qualname__}'
        )
    if not isinstance(windower, Windower):
        raise TypeError(
            f'step "{step_id}": `windower` must be a TumblingWindower, SlidingWindower or '
            f"SessionWindower; got a {type(windower).__qualname__}"
        )
    try:
        return clock._spec(), windower._spec()
    except (TypeError, ValueError) as error:
        raise type(error)(f'step "{step_id}": {error}') from None


def _window(step_id: str, up: Stream, clock: Clock, windower: Windower, agg: str, functions: list) -> WindowOut:
    clock_spec, windower_spec = _specs(step_id, clock, windower)
    down, late, meta = _riffle.window(step_id, up, clock_spec, windower_spec, agg, functions, _to_meta)
    return WindowOut(down, late, meta)


def fold_window(
    step_id: str,
    up: KeyedStream,
    clock: Clock,
    windower: Windower,
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
    merger: Callable[[S, S], S],
    ordered: bool = True,
) -> WindowOut:
    """Per key and window, ``builder()`` then ``folder(acc, value)`` for each
    value; ``merger(acc, acc)`` combines two sessions a value bridges. Emits
    ``(key, (window_id, acc))``.

    Values are folded as they arrive; ``ordered`` is accepted for bytewax's
    signature (for a stream in time order it is the same thing).
    """
    del ordered
    return _window(step_id, up, clock, windower, "fold", [builder, folder, merger])


def reduce_window(
    step_id: str, up: KeyedStream, clock: Clock, windower: Windower, reducer: Callable[[V, V], V]
) -> WindowOut:
    """Per key and window, ``reducer(acc, value)`` over the values, the first
    value starting ``acc``. Emits ``(key, (window_id, acc))``."""
    return _window(step_id, up, clock, windower, "reduce", [reducer])


def collect_window(
    step_id: str,
    up: KeyedStream,
    clock: Clock,
    windower: Windower,
    into: type = list,
    ordered: bool = True,
) -> WindowOut:
    """Per key and window, the list of its values in time order. Emits
    ``(key, (window_id, [values]))``; only ``into=list`` is built.

    >>> start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> flow = Dataflow("collect")
    >>> nums = op.input("inp", flow, TestingSource([("k", 2), ("k", 1), ("k", 11)]))
    >>> clock = EventClock(lambda v: start + timedelta(seconds=v), timedelta(seconds=5))
    >>> out = []
    >>> w = collect_window("by_10s", nums, clock, TumblingWindower(timedelta(seconds=10), start))
    >>> op.output("out", w.down, TestingSink(out))
    >>> run_main(flow)
    >>> sorted(out)
    [('k', (0, [1, 2])), ('k', (1, [11]))]
    """
    del ordered
    if into is not list:
        raise ValueError(f'step "{step_id}": collect_window builds lists only; got into={into!r}')
    return _window(step_id, up, clock, windower, "collect", [])


def count_window(
    step_id: str, up: Stream, clock: Clock, windower: Windower, key: Callable[[X], str]
) -> WindowOut:
    """Per ``key(item)`` and window, how many items fell in it. Emits
    ``(key, (window_id, count))``; the clock reads the item itself."""
    return _window(step_id, up, clock, windower, "count", [key])


def join_window(
    step_id: str,
    clock: Clock,
    windower: Windower,
    *sides: KeyedStream,
    insert_mode: str = "last",
    emit_mode: str = "final",
    ordered: bool = True,
) -> WindowOut:
    """Joins two keyed streams per key and window: when a window closes, emits
    ``(key, (window_id, (left, right)))`` with the last (``insert_mode="last"``)
    or first (``"first"``) value of each side in time order, ``None`` for a side
    with none, or one tuple for every pair of values (``"product"``). Late
    values come as ``(key, (None, (side_index, value)))``.

    The engine's window join is two-sided and emits when the window closes
    (``emit_mode="final"``); other side counts and modes are refused.

    >>> start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> flow = Dataflow("clicks")
    >>> views = op.input("views", flow, TestingSource([("u", 1), ("u", 3), ("v", 2)]))
    >>> buys = op.input("buys", flow, TestingSource([("u", 4)]))
    >>> clock = EventClock(lambda secs: start + timedelta(seconds=secs), timedelta(seconds=10))
    >>> joined = join_window("j", clock, TumblingWindower(timedelta(seconds=10), start), views, buys)
    >>> out = []
    >>> op.output("out", joined.down, TestingSink(out))
    >>> run_main(flow)
    >>> sorted(out, key=repr)
    [('u', (0, (3, 4))), ('v', (0, (2, None)))]
    """
    del ordered
    if emit_mode not in ("complete", "final", "running"):
        raise ValueError(f'step "{step_id}": unknown join emit_mode {emit_mode!r}; use "final"')
    if emit_mode != "final":
        raise ValueError(
            f'step "{step_id}": join_window emit_mode {emit_mode!r} is not built; '
            'the engine\'s window join emits when the window closes (emit_mode="final")'
        )
    if len(sides) != 2:
        raise ValueError(
            f'step "{step_id}": join_window joins exactly two streams (the engine\'s window join '
            f"is two-sided); got {len(sides)}"
        )
    clock_spec, windower_spec = _specs(step_id, clock, windower)
    down, late, meta = _riffle.join_window(
        step_id, sides[0], sides[1], clock_spec, windower_spec, insert_mode, _to_meta
    )
    return WindowOut(down, late, meta)


def _identity(x: Any) -> Any:
    return x


def max_window(
    step_id: str, up: KeyedStream, clock: Clock, windower: Windower, by: Callable[[V], Any] = _identity
) -> WindowOut:
    """Per key and window, the value with the largest ``by(value)`` (the first
    among equals)."""
    if not callable(by):
        raise TypeError(f'step "{step_id}": `by` must be callable; got a {type(by).__qualname__} instead')
    return reduce_window(step_id, up, clock, windower, lambda a, b: b if by(b) > by(a) else a)


def min_window(
    step_id: str, up: KeyedStream, clock: Clock, windower: Windower, by: Callable[[V], Any] = _identity
) -> WindowOut:
    """Per key and window, the value with the smallest ``by(value)`` (the first
    among equals)."""
    if not callable(by):
        raise TypeError(f'step "{step_id}": `by` must be callable; got a {type(by).__qualname__} instead')
    return reduce_window(step_id, up, clock, windower, lambda a, b: b if by(b) < by(a) else a)

