"""The stateless operators, with bytewax's documented semantics."""

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, run_main


def test_map_transforms_every_item_in_order(run):
    assert run(["a", "b", "c"], lambda s: op.map("upper", s, str.upper)) == ["A", "B", "C"]


def test_map_may_change_the_type_and_return_none(run):
    assert run([1, 2], lambda s: op.map("m", s, lambda x: None if x == 1 else str(x))) == [None, "2"]


def test_items_of_any_type_travel_unchanged(run):
    class Point:
        def __init__(self, x):
            self.x = x

    items = [1, 2.5, "s", b"b", None, [1, [2]], {"k": (1, 2)}, Point(3)]
    out = run(items, lambda s: s)
    assert out[:7] == items[:7]
    assert out[7] is items[7]


def test_filter_keeps_the_items_the_predicate_accepts(run):
    assert run(list(range(10)), lambda s: op.filter("odd", s, lambda x: x % 2 == 1)) == [1, 3, 5, 7, 9]


def test_filter_predicate_must_return_a_bool(run):
    with pytest.raises(RiffleError) as info:
        run([1, 2], lambda s: op.filter("truthy", s, lambda x: x))
    assert isinstance(info.value.__cause__, TypeError)
    assert "truthy" in str(info.value)
    assert "must return a bool" in str(info.value.__cause__)


def test_filter_map_drops_none_and_keeps_other_falsy_values(run):
    out = run([1, 2, 3, 4], lambda s: op.filter_map("fm", s, lambda x: None if x % 2 else x - 4))
    assert out == [-2, 0]


def test_flat_map_emits_every_item_of_each_iterable(run):
    out = run(["to be", "", "or not"], lambda s: op.flat_map("split", s, str.split))
    assert out == ["to", "be", "or", "not"]


def test_flat_map_takes_generators(run):
    out = run([3, 1], lambda s: op.flat_map("count", s, lambda n: (i for i in range(n))))
    assert out == [0, 1, 2, 0]


def test_flat_map_result_must_be_iterable(run):
    with pytest.raises(RiffleError, match='"explode"') as info:
        run([1], lambda s: op.flat_map("explode", s, lambda x: x))
    assert isinstance(info.value.__cause__, TypeError)
    assert "must return an iterable" in str(info.value.__cause__)


def test_inspect_sees_step_id_and_item_and_passes_items_on(run):
    seen = []
    out = run([1, 2], lambda s: op.inspect("look", s, lambda step, x: seen.append((step, x))))
    assert seen == [("look", 1), ("look", 2)]
    assert out == [1, 2]


def test_inspect_prints_by_default(run, capsys):
    run(["x"], lambda s: op.inspect("peek", s))
    assert capsys.readouterr().out == "peek: 'x'\n"


def test_key_on_pairs_each_item_with_its_key(run):
    out = run([{"user": "a", "n": 1}, {"user": "b", "n": 2}], lambda s: op.key_on("k", s, lambda d: d["user"]))
    assert out == [("a", {"user": "a", "n": 1}), ("b", {"user": "b", "n": 2})]


def test_key_on_key_must_be_a_str(run):
    with pytest.raises(RiffleError, match='"k"') as info:
        run([1], lambda s: op.key_on("k", s, lambda x: x))
    assert isinstance(info.value.__cause__, TypeError)
    assert "must return a str" in str(info.value.__cause__)


def test_map_value_keeps_the_key(run):
    out = run([("a", 1), ("b", 2)], lambda s: op.map_value("sq", s, lambda v: v * v))
    assert out == [("a", 1), ("b", 4)]


def test_map_value_after_key_on(run):
    out = run(["x", "yy"], lambda s: op.map_value("len", op.key_on("k", s, lambda w: w[0]), len))
    assert out == [("x", 1), ("y", 2)]


def test_map_value_needs_pairs(run):
    with pytest.raises(RiffleError, match='"mv"') as info:
        run(["not a pair"], lambda s: op.map_value("mv", s, str.upper))
    assert isinstance(info.value.__cause__, TypeError)
    assert "(key, value)" in str(info.value.__cause__)


def test_map_value_needs_str_keys(run):
    with pytest.raises(RiffleError) as info:
        run([(1, "v")], lambda s: op.map_value("mv", s, str.upper))
    assert "key is a str" in str(info.value.__cause__)


def test_a_keyed_stream_reaches_stateless_functions_as_tuples(run):
    out = run(["ab"], lambda s: op.map("show", op.key_on("k", s, lambda w: w[0]), lambda kv: kv))
    assert out == [("a", "ab")]
    assert type(out[0]) is tuple


def test_then_chains_steps():
    flow = Dataflow("chain")
    out = []
    (
        op.input("inp", flow, TestingSource([1, 2, 3]))
        .then(op.map, "double", lambda x: x * 2)
        .then(op.filter, "big", predicate=lambda x: x > 2)
        .then(op.output, "out", TestingSink(out))
    )
    run_main(flow)
    assert out == [4, 6]
    assert [s[0] for s in flow.steps()] == ["inp", "double", "big", "out"]


def test_large_batches_keep_order_and_count(run):
    items = list(range(10_000))
    out = run(items, lambda s: op.map("inc", op.filter("even", s, lambda x: x % 2 == 0), lambda x: x + 1), batch_size=500)
    assert out == [x + 1 for x in items if x % 2 == 0]


def test_one_stream_feeds_two_steps():
    flow = Dataflow("fan")
    nums = op.input("inp", flow, TestingSource([1, 2]))
    a, b = [], []
    op.output("out_a", op.map("neg", nums, lambda x: -x), TestingSink(a))
    op.output("out_b", nums, TestingSink(b))
    run_main(flow)
    assert (a, b) == ([-1, -2], [1, 2])


def test_flat_map_batch_calls_the_mapper_once_per_batch_with_a_list(run):
    calls = []

    def sums(batch):
        calls.append(list(batch))
        return [sum(batch)]

    out = run(list(range(10)), lambda s: op.flat_map_batch("sums", s, sums), batch_size=4)
    assert all(type(c) is list for c in calls)
    assert [x for c in calls for x in c] == list(range(10))
    assert all(len(c) <= 4 for c in calls) and len(calls) >= 3
    assert out == [sum(c) for c in calls]


def test_flat_map_batch_may_emit_more_or_fewer_items_than_it_got(run):
    out = run(["a", "b"], lambda s: op.flat_map_batch("dup", s, lambda b: [x for x in b for _ in range(2)]), batch_size=2)
    assert out == ["a", "a", "b", "b"]
    assert run([1, 2], lambda s: op.flat_map_batch("none", s, lambda b: [])) == []


def test_flat_map_batch_receives_keyed_items_as_tuples(run):
    out = run([("k", 1)], lambda s: op.flat_map_batch("b", op.map_value("v", s, str), lambda b: b))
    assert out == [("k", "1")]


def test_flatten_emits_the_items_of_each_iterable(run):
    assert run([[1, 2], (), "ab", range(2)], lambda s: op.flatten("flat", s)) == [1, 2, "a", "b", 0, 1]


def test_flatten_needs_iterable_items(run):
    with pytest.raises(RiffleError, match='"flat"') as info:
        run([[1], 2], lambda s: op.flatten("flat", s))
    assert "needs iterable items" in str(info.value.__cause__)


def test_key_rm_drops_the_key(run):
    assert run(["x", "y"], lambda s: op.key_rm("rm", op.key_on("k", s, str.upper))) == ["x", "y"]


def test_key_rm_needs_pairs(run):
    with pytest.raises(RiffleError, match='"rm"') as info:
        run([1], lambda s: op.key_rm("rm", s))
    assert isinstance(info.value.__cause__, TypeError)


def test_filter_value_keeps_pairs_whose_value_passes(run):
    out = run([("a", 1), ("b", 0), ("c", 3)], lambda s: op.filter_value("fv", s, lambda v: v > 0))
    assert out == [("a", 1), ("c", 3)]


def test_filter_value_predicate_must_return_a_bool(run):
    with pytest.raises(RiffleError) as info:
        run([("a", 1)], lambda s: op.filter_value("fv", s, lambda v: v))
    assert "must return a bool" in str(info.value.__cause__)


def test_flat_map_value_keeps_the_key_for_every_value(run):
    out = run([("a", 2), ("b", 0), ("c", 1)], lambda s: op.flat_map_value("fmv", s, range))
    assert out == [("a", 0), ("a", 1), ("c", 0)]


def test_flat_map_value_result_must_be_iterable(run):
    with pytest.raises(RiffleError) as info:
        run([("a", 2)], lambda s: op.flat_map_value("fmv", s, lambda v: v))
    assert "must return an iterable" in str(info.value.__cause__)


def test_branch_splits_by_the_predicate():
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource(list(range(7)), batch_size=3))
    split = op.branch("small", nums, lambda x: x < 4)
    small, big = [], []
    op.output("out_small", split.trues, TestingSink(small))
    op.output("out_big", split.falses, TestingSink(big))
    run_main(flow)
    assert (small, big) == ([0, 1, 2, 3], [4, 5, 6])
    assert (split.trues.stream_id, split.falses.stream_id) == ("f.small.trues", "f.small.falses")


def test_branch_calls_the_predicate_once_per_item():
    calls = []
    flow = Dataflow("f")
    split = op.branch("b", op.input("inp", flow, TestingSource([1, 2])), lambda x: calls.append(x) or True)
    op.output("t", split.trues, TestingSink([]))
    op.output("f", split.falses, TestingSink([]))
    run_main(flow)
    assert calls == [1, 2]


def test_branch_predicate_must_return_a_bool():
    flow = Dataflow("f")
    split = op.branch("b", op.input("inp", flow, TestingSource([1])), lambda x: x)
    op.output("t", split.trues, TestingSink([]))
    with pytest.raises(RiffleError, match='"b"') as info:
        run_main(flow)
    assert "must return a bool" in str(info.value.__cause__)


def test_branch_of_a_keyed_stream_stays_keyed():
    flow = Dataflow("f")
    keyed = op.key_on("k", op.input("inp", flow, TestingSource(["a", "bb", "a"])), lambda w: w)
    split = op.branch("short", keyed, lambda kv: len(kv[1]) == 1)
    out = []
    op.output("out", op.count_final("count", split.trues, lambda kv: kv[0]), TestingSink(out))
    run_main(flow)
    assert out == [("a", 2)]


def test_merge_brings_streams_together():
    flow = Dataflow("f")
    a = op.input("a", flow, TestingSource([1, 2]))
    b = op.input("b", flow, TestingSource(["x"]))
    c = op.map("c", a, lambda x: x * 10)
    out = []
    op.output("out", op.merge("all", a, b, c), TestingSink(out))
    run_main(flow)
    assert sorted(out, key=str) == sorted([1, 2, "x", 10, 20], key=str)


def test_merge_of_keyed_streams_stays_keyed_and_mixed_ones_become_tuples():
    flow = Dataflow("f")
    words = op.input("inp", flow, TestingSource(["a", "b"]))
    k1 = op.key_on("k1", words, str.upper)
    k2 = op.key_on("k2", words, str.lower)
    plain = op.input("plain", flow, TestingSource([("z", "zz")]))
    keyed_out, mixed_out = [], []
    op.output("keyed_out", op.merge("keyed", k1, k2), TestingSink(keyed_out))
    op.output("mixed_out", op.merge("mixed", k1, plain), TestingSink(mixed_out))
    run_main(flow)
    assert sorted(keyed_out) == [("A", "a"), ("B", "b"), ("a", "a"), ("b", "b")]
    assert sorted(mixed_out) == [("A", "a"), ("B", "b"), ("z", "zz")]
    kinds = {step: kind for step, kind, _ in flow.steps()}
    assert kinds["keyed"] == "merge" and "keyed.items0" not in kinds
    assert "mixed.items0" in kinds


def test_merge_needs_streams():
    flow = Dataflow("f")
    a = op.input("a", flow, TestingSource([1]))
    with pytest.raises(TypeError, match='step "m": `merge` needs at least one stream'):
        op.merge("m")
    with pytest.raises(TypeError, match='step "m": `up` must be a Stream; got a list'):
        op.merge("m", a, [1])


def test_merge_refuses_a_stream_of_another_flow():
    a = op.input("a", Dataflow("one"), TestingSource([1]))
    b = op.input("b", Dataflow("two"), TestingSource([2]))
    with pytest.raises(RiffleError, match='"m" uses a stream of dataflow "two"'):
        op.merge("m", a, b)
