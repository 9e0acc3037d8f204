"""riffle.operators.windowing: clocks, windowers, the down/late/meta streams."""

from datetime import datetime, timedelta, timezone

import pytest

import riffle.operators as op
import riffle.operators.windowing as win
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(seconds):
    return START + timedelta(seconds=seconds)


def event_clock(wait=0):
    # Values are (seconds, payload).
    return win.EventClock(lambda v: at(v[0]), wait_for_system_duration=timedelta(seconds=wait))


def run_window(items, build):
    """Runs ``build(keyed_stream) -> WindowOut`` over ``items`` ((key, value)
    pairs) and returns what down, late and meta received."""
    flow = Dataflow("w")
    out = build(op.input("inp", flow, TestingSource(items)))
    down, late, meta = [], [], []
    op.output("down", out.down, TestingSink(down))
    op.output("late", out.late, TestingSink(late))
    op.output("meta", out.meta, TestingSink(meta))
    run_main(flow)
    return down, late, meta


def test_tumbling_fold_window_emits_per_key_and_window_with_metadata():
    items = [("a", (0, 1)), ("a", (4, 2)), ("b", (9, 10)), ("a", (10, 4)), ("a", (25, 8))]
    down, late, meta = run_window(
        items,
        lambda s: win.fold_window(
            "sum", s, event_clock(), win.TumblingWindower(timedelta(seconds=10), START),
            lambda: 0, lambda acc, v: acc + v[1], lambda a, b: a + b,
        ),
    )
    assert sorted(down) == [("a", (0, 3)), ("a", (1, 4)), ("a", (2, 8)), ("b", (0, 10))]
    assert late == []
    by_window = {(k, wid): m for k, (wid, m) in meta}
    assert set(by_window) == {("a", 0), ("a", 1), ("a", 2), ("b", 0)}
    assert by_window[("a", 1)].open_time == at(10)
    assert by_window[("a", 1)].close_time == at(20)
    assert by_window[("a", 1)].open_time.tzinfo is not None


def test_values_behind_the_watermark_go_to_late():
    items = [("k", (0, "first")), ("k", (12, "moves the watermark")), ("k", (5, "too late"))]
    down, late, meta = run_window(
        items,
        lambda s: win.collect_window("c", s, event_clock(wait=0), win.TumblingWindower(timedelta(seconds=10), START)),
    )
    assert late == [("k", (None, (5, "too late")))]
    assert sorted(down) == [("k", (0, [(0, "first")])), ("k", (1, [(12, "moves the watermark")]))]


def test_waiting_lets_out_of_order_values_into_their_window():
    items = [("k", (0, "a")), ("k", (12, "c")), ("k", (5, "b"))]
    down, late, _ = run_window(
        items,
        lambda s: win.collect_window("c", s, event_clock(wait=10), win.TumblingWindower(timedelta(seconds=10), START)),
    )
    assert late == []
    # In time order within the window, whatever the arrival order.
    assert sorted(down) == [("k", (0, [(0, "a"), (5, "b")])), ("k", (1, [(12, "c")]))]


def test_sliding_count_window_counts_a_value_in_every_window_it_falls_in():
    items = [(7, "x"), (7, "y"), (12, "x")]
    flow = Dataflow("w")
    inp = op.input("inp", flow, TestingSource(items))
    clock = win.EventClock(lambda item: at(item[0]), timedelta(0))
    out = win.count_window(
        "count", inp, clock, win.SlidingWindower(timedelta(seconds=10), timedelta(seconds=5), START), lambda i: i[1]
    )
    down = []
    op.output("out", out.down, TestingSink(down))
    run_main(flow)
    # 7 s is in [0, 10) (id 0) and [5, 15) (id 1); 12 s in [5, 15) and [10, 20) (id 2).
    assert sorted(down) == [("x", (0, 1)), ("x", (1, 2)), ("x", (2, 1)), ("y", (0, 1)), ("y", (1, 1))]
    assert all(type(n) is int for _, (_, n) in down)


def test_session_windows_split_on_the_gap():
    items = [("u", (0, "a")), ("u", (3, "b")), ("u", (20, "c")), ("v", (1, "d"))]
    down, _, meta = run_window(
        items,
        lambda s: win.collect_window("sessions", s, event_clock(wait=30), win.SessionWindower(gap=timedelta(seconds=5))),
    )
    sessions = sorted((k, [v[1] for v in values]) for k, (_, values) in down)
    assert sessions == [("u", ["a", "b"]), ("u", ["c"]), ("v", ["d"])]
    closes = sorted(m.close_time for k, (_, m) in meta if k == "u")
    assert closes == [at(8), at(25)]  # last value's time plus the gap


def test_reduce_max_and_min_windows():
    items = [("k", (1, 5)), ("k", (2, 9)), ("k", (3, 2)), ("k", (11, 7))]
    tumbling = win.TumblingWindower(timedelta(seconds=10), START)

    def payloads(down):
        return sorted((wid, v if isinstance(v, int) else v[1]) for _, (wid, v) in down)

    down, _, _ = run_window(
        items,
        lambda s: win.reduce_window("r", s, event_clock(), tumbling, lambda a, b: (max(a[0], b[0]), a[1] + b[1])),
    )
    assert payloads(down) == [(0, 16), (1, 7)]
    down, _, _ = run_window(items, lambda s: win.max_window("mx", s, event_clock(), tumbling, by=lambda v: v[1]))
    assert payloads(down) == [(0, 9), (1, 7)]
    down, _, _ = run_window(items, lambda s: win.min_window("mn", s, event_clock(), tumbling, by=lambda v: v[1]))
    assert payloads(down) == [(0, 2), (1, 7)]


def test_system_clock_windows_close_when_the_stream_ends():
    now = datetime.now(timezone.utc)
    down, late, meta = run_window(
        [("k", 1), ("k", 2), ("j", 3)],
        lambda s: win.collect_window("c", s, win.SystemClock(), win.TumblingWindower(timedelta(hours=1), now)),
    )
    assert sorted((k, values) for k, (_, values) in down) == [("j", [3]), ("k", [1, 2])]
    assert late == []
    assert len(meta) == 2


# Errors


@pytest.mark.parametrize(
    "ts, error, needle",
    [
        (lambda v: datetime(2024, 1, 1), ValueError, "aware datetime"),
        (lambda v: 1234, TypeError, "must return a datetime"),
        (lambda v: 1 / 0, ZeroDivisionError, ""),
    ],
    ids=["naive", "not a datetime", "raises"],
)
def test_a_bad_timestamp_stops_the_flow_naming_the_step(ts, error, needle):
    with pytest.raises(RiffleError, match='"c"') as info:
        run_window(
            [("k", 1)],
            lambda s: win.collect_window("c", s, win.EventClock(ts, timedelta(0)), win.SessionWindower(timedelta(seconds=1))),
        )
    assert info.value.step_id == "c"
    assert isinstance(info.value.__cause__, error)
    assert needle in str(info.value.__cause__)


@pytest.mark.parametrize("which", ["builder", "folder"])
def test_an_exception_in_a_window_function_names_the_step(which):
    def boom(*args):
        raise KeyError("boom")

    builder = boom if which == "builder" else (lambda: 0)
    folder = boom if which == "folder" else (lambda acc, v: acc)
    with pytest.raises(RiffleError, match='"f"') as info:
        run_window(
            [("k", (1, 1))],
            lambda s: win.fold_window(
                "f", s, event_clock(), win.TumblingWindower(timedelta(seconds=10), START), builder, folder, lambda a, b: a
            ),
        )
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize(
    "clock, windower, error, needle",
    [
        ("clock", win.SessionWindower(timedelta(seconds=1)), TypeError, "`clock` must be a SystemClock or EventClock"),
        (win.SystemClock(), 10, TypeError, "`windower` must be a TumblingWindower"),
        (
            win.SystemClock(),
            win.SlidingWindower(timedelta(seconds=5), timedelta(seconds=10), START),
            ValueError,
            "`offset` can't be longer than its `length`",
        ),
        (win.SystemClock(), win.TumblingWindower(timedelta(0), START), ValueError, "`length` must be positive"),
        (win.SystemClock(), win.TumblingWindower(timedelta(seconds=1), datetime(2024, 1, 1)), ValueError, "`align_to` must be an aware datetime"),
        (win.SystemClock(), win.SessionWindower(5), TypeError, "`gap` must be a datetime.timedelta"),
        (win.EventClock(lambda v: v, timedelta(seconds=-1)), win.SessionWindower(timedelta(seconds=1)), ValueError, "must not be negative"),
    ],
)
def test_bad_clocks_and_windowers_are_refused_when_added(clock, windower, error, needle):
    flow = Dataflow("w")
    inp = op.input("inp", flow, TestingSource([("k", 1)]))
    with pytest.raises(error, match='step "c"') as info:
        win.collect_window("c", inp, clock, windower)
    assert needle in str(info.value)
    # The id stays free.
    win.collect_window("c", inp, win.SystemClock(), win.SessionWindower(timedelta(seconds=1)))


def test_collect_window_builds_lists_only():
    flow = Dataflow("w")
    inp = op.input("inp", flow, TestingSource([("k", 1)]))
    with pytest.raises(ValueError, match='step "c": collect_window builds lists only'):
        win.collect_window("c", inp, win.SystemClock(), win.SessionWindower(timedelta(seconds=1)), into=set)


# join_window


def join_flow(insert_mode, lefts, rights, wait=30):
    flow = Dataflow("w")
    left = op.input("left", flow, TestingSource(lefts))
    right = op.input("right", flow, TestingSource(rights))
    clock = win.EventClock(lambda v: at(v[0]), timedelta(seconds=wait))
    out = win.join_window(
        "j", clock, win.TumblingWindower(timedelta(seconds=10), START), left, right, insert_mode=insert_mode
    )
    down, late = [], []
    op.output("down", out.down, TestingSink(down))
    op.output("late", out.late, TestingSink(late))
    run_main(flow)
    return down, late


LEFTS = [("k", (1, "l1")), ("k", (5, "l5")), ("k", (12, "l12")), ("only_left", (3, "x"))]
RIGHTS = [("k", (2, "r2")), ("k", (4, "r4"))]


def rows(down):
    return sorted(
        ((k, wid, tuple(v if v is None else v[1] for v in row)) for k, (wid, row) in down), key=repr
    )


def test_join_window_last_and_first_pick_by_time_with_none_for_an_empty_side():
    down, _ = join_flow("last", LEFTS, RIGHTS)
    assert rows(down) == sorted(
        [("k", 0, ("l5", "r4")), ("k", 1, ("l12", None)), ("only_left", 0, ("x", None))], key=repr
    )
    down, _ = join_flow("first", LEFTS, RIGHTS)
    assert rows(down) == sorted(
        [("k", 0, ("l1", "r2")), ("k", 1, ("l12", None)), ("only_left", 0, ("x", None))], key=repr
    )


def test_join_window_product_emits_every_pair():
    down, _ = join_flow("product", LEFTS, RIGHTS)
    assert rows(down) == sorted(
        [
            ("k", 0, ("l1", "r2")),
            ("k", 0, ("l1", "r4")),
            ("k", 0, ("l5", "r2")),
            ("k", 0, ("l5", "r4")),
            ("k", 1, ("l12", None)),
            ("only_left", 0, ("x", None)),
        ],
        key=repr,
    )


def test_join_window_late_values_name_their_side():
    down, late = join_flow("last", [("k", (0, "a")), ("k", (25, "b")), ("k", (3, "late"))], [], wait=0)
    assert late == [("k", (None, (0, (3, "late"))))]
    assert rows(down) == [("k", 0, ("a", None)), ("k", 2, ("b", None))]


@pytest.mark.parametrize(
    "kwargs, sides, needle",
    [
        ({"emit_mode": "running"}, 2, "emit_mode 'running' is not built"),
        ({"emit_mode": "often"}, 2, "unknown join emit_mode 'often'"),
        ({"insert_mode": "all"}, 2, 'unknown join insert_mode "all"'),
        ({}, 3, "joins exactly two streams"),
    ],
)
def test_join_window_refuses_what_the_engine_lacks(kwargs, sides, needle):
    flow = Dataflow("w")
    streams = [op.input(f"s{n}", flow, TestingSource([("k", 1)])) for n in range(sides)]
    with pytest.raises(ValueError, match='step "j"') as info:
        win.join_window("j", win.SystemClock(), win.SessionWindower(timedelta(seconds=1)), *streams, **kwargs)
    assert needle in str(info.value)
