"""fold_final, stateful_flat_map, collect, join, inspect_debug, redistribute,
raises and enrich_cached: what each emits, and how each fails."""

from datetime import datetime, timedelta, timezone

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main


def append(acc, value):
    acc.append(value)
    return acc


# fold_final


def test_fold_final_folds_each_keys_values_in_order_from_a_fresh_accumulator(run):
    built = []

    def builder():
        built.append(1)
        return []

    out = run([("a", 1), ("b", 2), ("a", 3), ("a", 4)], lambda s: op.fold_final("fold", s, builder, append))
    assert sorted(out) == [("a", [1, 3, 4]), ("b", [2])]
    # One accumulator per key, never shared between keys.
    assert len(built) == 2


def test_fold_final_keeps_the_order_of_values_across_many_epochs():
    # 1 ms epochs: the engine's pre-aggregation hands its gathered values on at
    # every epoch, and the key's owner folds them as they come. A fold that
    # records order (not a sum) shows every value is folded once, in order.
    flow = Dataflow("f")
    items = [(str(i % 3), i) for i in range(6000)]
    epochs = set()
    inp = op.input("inp", flow, TestingSource(items))
    seen = op.inspect_debug("epochs", inp, lambda step, item, epoch, worker: epochs.add(epoch))
    out = []
    op.output("out", op.fold_final("fold", seen, list, append), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(milliseconds=1))
    assert len(epochs) > 1, "the test needs the items to span several epochs"
    assert sorted(out) == [(k, [i for i in range(6000) if str(i % 3) == k]) for k in "012"]


def test_fold_final_on_plain_items_needs_pairs(run):
    with pytest.raises(RiffleError, match='"fold"') as info:
        run([1], lambda s: op.fold_final("fold", s, list, append))
    assert isinstance(info.value.__cause__, TypeError)
    assert "(key, value)" in str(info.value.__cause__)


def test_fold_final_checks_its_functions_when_added():
    flow = Dataflow("f")
    inp = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(TypeError, match='step "fold": `builder` must be callable'):
        op.fold_final("fold", inp, [], append)
    with pytest.raises(TypeError, match='step "fold": `folder` must be callable'):
        op.fold_final("fold", inp, list, None)


# stateful_flat_map


def test_stateful_flat_map_emits_every_value_and_keeps_state_per_key(run):
    def window_of_three(held, value):
        held = (held or []) + [value]
        if len(held) == 3:
            return None, held  # emit the three, forget the key
        return held, []

    items = [("a", 1), ("b", 10), ("a", 2), ("a", 3), ("b", 20), ("a", 4)]
    out = run(items, lambda s: op.stateful_flat_map("three", s, window_of_three))
    assert out == [("a", 1), ("a", 2), ("a", 3)]


def test_stateful_flat_map_passes_the_state_it_returned(run):
    states = []

    def count_and_repeat(n, value):
        states.append(n)
        n = (n or 0) + 1
        return n, [value] * n

    out = run([("k", "x"), ("k", "y")], lambda s: op.stateful_flat_map("rep", s, count_and_repeat))
    assert states == [None, 1]
    assert out == [("k", "x"), ("k", "y"), ("k", "y")]


@pytest.mark.parametrize(
    "mapper, needle",
    [(lambda s, v: [v], "2-tuple"), (lambda s, v: (s, 5), "iterable")],
    ids=["not a pair", "not iterable"],
)
def test_stateful_flat_map_mapper_must_return_state_and_iterable(run, mapper, needle):
    with pytest.raises(RiffleError, match='"sfm"') as info:
        run([("a", 1)], lambda s: op.stateful_flat_map("sfm", s, mapper))
    assert isinstance(info.value.__cause__, TypeError)
    assert needle in str(info.value.__cause__)


# collect


def test_collect_emits_full_lists_then_the_rest_at_the_end(run):
    items = [("a", 1), ("b", 2), ("a", 3), ("a", 5), ("a", 7), ("b", 4), ("a", 9)]
    out = run(items, lambda s: op.collect("c", s, timedelta(seconds=5), max_size=2))
    # Full lists come as they fill, in order; the rest when the stream ends.
    assert out[:3] == [("a", [1, 3]), ("a", [5, 7]), ("b", [2, 4])]
    assert sorted(out[3:]) == [("a", [9])]
    assert all(type(values) is list for _, values in out)


def test_collect_of_size_one_emits_every_value_alone(run):
    out = run([("a", 1), ("a", 2)], lambda s: op.collect("c", s, timedelta(seconds=1), max_size=1))
    assert out == [("a", [1]), ("a", [2])]


@pytest.mark.parametrize(
    "timeout, max_size, error, needle",
    [
        (5, 2, TypeError, "`timeout` must be a datetime.timedelta"),
        (timedelta(0), 2, ValueError, "`timeout` must be positive"),
        (timedelta(seconds=1), 0, ValueError, "`max_size` must be at least 1"),
        (timedelta(seconds=1), "2", TypeError, "`max_size` must be an int"),
        (timedelta(seconds=1), True, TypeError, "`max_size` must be an int"),
    ],
)
def test_collect_checks_its_arguments_when_added(timeout, max_size, error, needle):
    flow = Dataflow("f")
    inp = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(error, match=f'step "c": {needle}'):
        op.collect("c", inp, timeout, max_size)
    # A refused step leaves its id free.
    op.collect("c", inp, timedelta(seconds=1), 2)


# join


def test_join_complete_emits_each_key_once_both_sides_have_a_value():
    flow = Dataflow("f")
    names = op.input("names", flow, TestingSource([("1", "ada"), ("2", "bo"), ("3", "cy")]))
    emails = op.input("emails", flow, TestingSource([("3", "cy@x"), ("1", "ada@x")]))
    out = []
    op.output("out", op.join("j", names, emails), TestingSink(out))
    run_main(flow)
    assert sorted(out) == [("1", ("ada", "ada@x")), ("3", ("cy", "cy@x"))]


def test_join_final_emits_every_key_at_the_end_with_none_for_missing_sides():
    flow = Dataflow("f")
    left = op.input("left", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)]))
    right = op.input("right", flow, TestingSource([("a", "x"), ("c", "z")]))
    out = []
    op.output("out", op.join("j", left, right, emit_mode="final"), TestingSink(out))
    run_main(flow)
    # The latest value of each side.
    assert sorted(out) == [("a", (3, "x")), ("b", (2, None)), ("c", (None, "z"))]


def test_join_running_emits_on_every_value_with_the_sides_seen_so_far():
    flow = Dataflow("f")
    left = op.input("left", flow, TestingSource([("a", 1), ("a", 2)]))
    right = op.input("right", flow, TestingSource([("a", "x")]))
    out = []
    op.output("out", op.join("j", left, right, emit_mode="running"), TestingSink(out))
    run_main(flow)
    assert len(out) == 3  # one per value
    assert out[0][1] in [(1, None), (None, "x")]  # the first value meets an empty side
    lefts = [pair[0] for _, pair in out if pair[0] is not None]
    assert lefts == sorted(lefts)  # a side's values come in order
    # Whatever the interleaving, the last value meets the latest of each side.
    assert out[-1] == ("a", (2, "x"))


def test_join_of_three_sides_and_plain_tuples_as_sides():
    flow = Dataflow("f")
    sides = [op.input(f"s{n}", flow, TestingSource([("k", n), ("other", n)])) for n in range(3)]
    out = []
    op.output("out", op.join("j", *sides), TestingSink(out))
    run_main(flow)
    assert sorted(out) == [("k", (0, 1, 2)), ("other", (0, 1, 2))]
    assert [s[0] for s in flow.steps()].count("j.key1") == 1  # each side checked by its own step


def test_join_with_a_side_that_is_not_keyed_names_the_step():
    flow = Dataflow("f")
    left = op.input("left", flow, TestingSource([("a", 1)]))
    right = op.input("right", flow, TestingSource([42]))
    op.output("out", op.join("j", left, right), TestingSink([]))
    with pytest.raises(RiffleError, match='"j"') as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        ({"insert_mode": "all"}, ValueError, 'unknown join insert_mode "all"'),
        ({"emit_mode": "sometimes"}, ValueError, 'unknown join emit_mode "sometimes"'),
    ],
)
def test_join_refuses_unknown_modes(kwargs, error, needle):
    flow = Dataflow("f")
    a = op.input("a", flow, TestingSource([("k", 1)]))
    b = op.input("b", flow, TestingSource([("k", 2)]))
    with pytest.raises(error, match=needle) as info:
        op.join("j", a, b, **kwargs)
    assert 'step "j"' in str(info.value)


def test_join_needs_streams():
    flow = Dataflow("f")
    a = op.input("a", flow, TestingSource([("k", 1)]))
    with pytest.raises(TypeError, match='step "j": `up` must be a Stream'):
        op.join("j", a, [("k", 2)])
    with pytest.raises(TypeError, match='step "j": `join` needs at least one stream'):
        op.join("j")


# inspect_debug, redistribute, raises


def test_inspect_debug_sees_step_item_epoch_and_worker(run):
    seen = []
    out = run(["a", "b"], lambda s: op.inspect_debug("dbg", s, lambda *args: seen.append(args)))
    assert out == ["a", "b"]
    assert [(step, item, worker) for step, item, _, worker in seen] == [("dbg", "a", 0), ("dbg", "b", 0)]
    assert all(type(epoch) is int and epoch >= 0 for _, _, epoch, _ in seen)


def test_inspect_debug_default_prints_worker_and_epoch(run, capsys):
    run([("k", 1)], lambda s: op.inspect_debug("dbg", s))
    assert capsys.readouterr().out == "dbg W0 @0: ('k', 1)\n"


def test_redistribute_passes_every_item_on(run):
    assert sorted(run(list(range(100)), lambda s: op.redistribute("spread", s), batch_size=7)) == list(range(100))
    # Keyed streams stay keyed: a keyed step can follow without a key check.
    out = run([("a", 1), ("a", 2)], lambda s: op.reduce_final("sum", op.redistribute("spread", s), lambda x, y: x + y))
    assert out == [("a", 3)]


def test_raises_stops_the_flow_on_the_first_item():
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1, 2, -3, 4]))
    op.raises("no_negatives", op.filter("neg", nums, lambda x: x < 0))
    with pytest.raises(RiffleError, match='"no_negatives"') as info:
        run_main(flow)
    assert info.value.step_id == "no_negatives"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "got an item: -3" in str(info.value.__cause__)


def test_raises_on_an_empty_stream_lets_the_flow_finish():
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1, 2]))
    op.raises("no_negatives", op.filter("neg", nums, lambda x: x < 0))
    out = []
    op.output("out", nums, TestingSink(out))
    run_main(flow)
    assert out == [1, 2]


# enrich_cached


def test_enrich_cached_calls_the_getter_once_per_key_within_the_ttl(run):
    now = [datetime(2024, 1, 1, tzinfo=timezone.utc)]
    fetched = []

    def getter(key):
        fetched.append(key)
        return f"{key}@{len(fetched)}"

    def mapper(cache, item):
        if item == "drop-a":
            cache.remove("a")
            return item
        if item == "later":
            now[0] += timedelta(seconds=61)
            return item
        return cache.get(item)

    out = run(
        ["a", "b", "a", "later", "a", "drop-a", "a"],
        lambda s: op.enrich_cached("e", s, getter, mapper, ttl=timedelta(seconds=60), _now_getter=lambda: now[0]),
    )
    assert out == ["a@1", "b@2", "a@1", "later", "a@3", "drop-a", "a@4"]
    assert fetched == ["a", "b", "a", "a"]


def test_enrich_cached_checks_its_arguments_when_added():
    flow = Dataflow("f")
    inp = op.input("inp", flow, TestingSource(["a"]))
    with pytest.raises(TypeError, match='step "e": `getter` must be callable'):
        op.enrich_cached("e", inp, None, lambda c, x: x)
    with pytest.raises(TypeError, match='step "e": `ttl` must be a datetime.timedelta'):
        op.enrich_cached("e", inp, str, lambda c, x: x, ttl=60)


# Errors from users' functions


@pytest.mark.parametrize(
    "build",
    [
        lambda s: op.fold_final("step", op.key_on("k", s, lambda x: "same"), list, lambda a, v: 1 / 0),
        lambda s: op.fold_final("step", op.key_on("k", s, lambda x: "same"), lambda: 1 / 0, append),
        lambda s: op.stateful_flat_map("step", op.key_on("k", s, str), lambda st, v: 1 / 0),
        lambda s: op.inspect_debug("step", s, lambda *args: 1 / 0),
        lambda s: op.enrich_cached("step", s, lambda k: 1 / 0, lambda cache, x: cache.get(x)),
    ],
    ids=["fold_final folder", "fold_final builder", "stateful_flat_map", "inspect_debug", "enrich_cached"],
)
def test_slice2_operators_chain_the_users_exception(run, build):
    with pytest.raises(RiffleError) as info:
        run([1, 2], build)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.step_id == "step"
    assert 'step "step" failed' in str(info.value)
