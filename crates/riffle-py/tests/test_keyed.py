"""The keyed operators: state per key, results at the end of the stream."""

import pytest

import riffle.operators as op
from riffle import RiffleError


def test_stateful_map_starts_each_key_at_none_and_keeps_state(run):
    calls = []

    def running_max(state, value):
        calls.append(state)
        best = value if state is None else max(state, value)
        return best, best

    out = run([("a", 3), ("b", 1), ("a", 2), ("a", 7)], lambda s: op.stateful_map("max", s, running_max))
    assert out == [("a", 3), ("b", 1), ("a", 3), ("a", 7)]
    assert calls == [None, None, 3, 3]


def test_stateful_map_forgets_a_key_when_the_state_is_none(run):
    def batches_of_two(state, value):
        held = (state or []) + [value]
        if len(held) == 2:
            return None, held
        return held, None

    out = run([("k", i) for i in range(5)], lambda s: op.stateful_map("pairs", s, batches_of_two))
    assert out == [("k", None), ("k", [0, 1]), ("k", None), ("k", [2, 3]), ("k", None)]


def test_stateful_map_after_key_on(run):
    out = run(
        ["a", "b", "a"],
        lambda s: op.stateful_map("seen", op.key_on("k", s, lambda w: w), lambda n, _: ((n or 0) + 1, (n or 0) + 1)),
    )
    assert out == [("a", 1), ("b", 1), ("a", 2)]


def test_stateful_map_mapper_must_return_a_pair(run):
    with pytest.raises(RiffleError, match='"sm"') as info:
        run([("a", 1)], lambda s: op.stateful_map("sm", s, lambda st, v: v))
    assert isinstance(info.value.__cause__, TypeError)
    assert "2-tuple" in str(info.value.__cause__)


def test_stateful_map_needs_pairs(run):
    with pytest.raises(RiffleError, match='"sm"') as info:
        run([1], lambda s: op.stateful_map("sm", s, lambda st, v: (st, v)))
    assert isinstance(info.value.__cause__, TypeError)


def test_count_final_counts_each_key_once_at_the_end(run):
    words = "the cat and the hat and the bat".split()
    out = run(words, lambda s: op.count_final("count", s, lambda w: w))
    assert sorted(out) == [("and", 2), ("bat", 1), ("cat", 1), ("hat", 1), ("the", 3)]
    assert all(type(n) is int for _, n in out)


def test_count_final_over_many_items_and_keys(run):
    out = run(list(range(5000)), lambda s: op.count_final("mod", s, lambda x: str(x % 7)), batch_size=256)
    assert dict(out) == {str(r): len(range(r, 5000, 7)) for r in range(7)}


def test_count_final_key_must_be_a_str(run):
    with pytest.raises(RiffleError, match='"count"') as info:
        run([1], lambda s: op.count_final("count", s, lambda x: x))
    assert "must return a str" in str(info.value.__cause__)


def test_reduce_final_combines_each_keys_values_in_order(run):
    items = [("a", "x"), ("b", "y"), ("a", "z"), ("a", "w")]
    out = run(items, lambda s: op.reduce_final("join", s, lambda acc, v: acc + v))
    assert sorted(out) == [("a", "xzw"), ("b", "y")]


def test_reduce_final_with_one_value_emits_it_uncalled(run):
    called = []
    out = run([("only", 5)], lambda s: op.reduce_final("r", s, lambda acc, v: called.append(1) or acc))
    assert out == [("only", 5)] and called == []


def test_keyed_output_of_an_empty_stream_is_empty(run):
    assert run([], lambda s: op.count_final("count", s, str)) == []


def test_max_final_and_min_final_keep_the_extreme_value_per_key(run):
    items = [("a", 3), ("b", -1), ("a", 9), ("a", 1), ("b", -5)]
    assert sorted(run(items, lambda s: op.max_final("max", s))) == [("a", 9), ("b", -1)]
    assert sorted(run(items, lambda s: op.min_final("min", s))) == [("a", 1), ("b", -5)]


def test_max_final_compares_by_and_keeps_the_first_of_equals(run):
    items = [("k", "bb"), ("k", "aa"), ("k", "c")]
    assert run(items, lambda s: op.max_final("max", s, by=len)) == [("k", "bb")]
    assert run(items, lambda s: op.min_final("min", s, by=len)) == [("k", "c")]


def test_the_readme_word_count():
    # The example of the README's "Dataflows from Python" section, as it is there.
    from riffle.dataflow import Dataflow
    from riffle.testing import TestingSink, TestingSource, run_main

    flow = Dataflow("wordcount")
    lines = op.input("lines", flow, TestingSource(["to be or", "not to be"]))
    words = op.flat_map("split", lines, str.split)
    counts = op.count_final("count", words, lambda word: word)
    out = []
    op.output("out", counts, TestingSink(out))
    run_main(flow)
    assert sorted(out) == [("be", 2), ("not", 1), ("or", 1), ("to", 2)]
