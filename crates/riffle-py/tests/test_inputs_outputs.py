"""Sources and sinks written in Python (riffle.inputs, riffle.outputs), run by
the engine's source and sink operators."""

import time
from datetime import datetime, timedelta, timezone

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from riffle.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition
from riffle.testing import TestingSink, TestingSource, run_main


class ListPartition(StatefulSourcePartition):
    """Reads `items` two at a time from `at`; notes its calls in `log`."""

    def __init__(self, name, items, at, log):
        self.name, self.items, self.at, self.log = name, items, at or 0, log

    def next_batch(self):
        if self.at >= len(self.items):
            raise StopIteration()
        batch = self.items[self.at : self.at + 2]
        self.at += len(batch)
        return batch

    def snapshot(self):
        return self.at

    def close(self):
        self.log.append(("close", self.name, self.at))


class ListSource(FixedPartitionedSource):
    def __init__(self, parts, log=None):
        self.parts = parts
        self.log = [] if log is None else log

    def list_parts(self):
        return list(self.parts)

    def build_part(self, step_id, for_part, resume_state):
        self.log.append(("build", step_id, for_part, resume_state))
        return ListPartition(for_part, self.parts[for_part], resume_state, self.log)


def run_source(source, workers=None):
    flow = Dataflow("src")
    out = []
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow)
    return out


def test_fixed_source_reads_every_partition_and_closes_each():
    log = []
    source = ListSource({"a": [1, 2, 3], "b": [10, 20]}, log)
    out = run_source(source)
    assert sorted(out) == [1, 2, 3, 10, 20]
    # Within a partition the order is kept.
    assert [x for x in out if x < 10] == [1, 2, 3]
    assert sorted(e for e in log if e[0] == "build") == [("build", "inp", "a", None), ("build", "inp", "b", None)]
    assert sorted(e for e in log if e[0] == "close") == [("close", "a", 3), ("close", "b", 2)]


def test_fixed_source_empty_batch_then_items_and_next_awake_is_honoured():
    calls = []

    class Slow(StatefulSourcePartition):
        def __init__(self):
            self.awake = None

        def next_batch(self):
            calls.append(time.monotonic())
            if len(calls) == 1:
                # Nothing yet; come back in 0.3 s.
                self.awake = datetime.now(timezone.utc) + timedelta(seconds=0.3)
                return []
            if len(calls) == 2:
                self.awake = None
                return ["late"]
            raise StopIteration()

        def next_awake(self):
            return self.awake

        def snapshot(self):
            return None

    class SlowSource(FixedPartitionedSource):
        def list_parts(self):
            return ["only"]

        def build_part(self, step_id, for_part, resume_state):
            return Slow()

    assert run_source(SlowSource()) == ["late"]
    assert calls[1] - calls[0] >= 0.25


def test_dynamic_source_builds_one_partition_per_worker():
    built = []

    class Countdown(StatelessSourcePartition):
        def __init__(self, n):
            self.n = n

        def next_batch(self):
            if self.n == 0:
                raise StopIteration()
            self.n -= 1
            return [self.n]

    class CountdownSource(DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            built.append((step_id, worker_index, worker_count))
            return Countdown(3)

    assert run_source(CountdownSource()) == [2, 1, 0]
    assert built == [("inp", 0, 1)]


class Broken(StatefulSourcePartition):
    def __init__(self, fail_in):
        self.fail_in = fail_in

    def next_batch(self):
        if self.fail_in == "next_batch":
            raise KeyError("no such row")
        if self.fail_in == "not_iterable":
            return 42
        if self.fail_in == "next_awake_ok":
            raise StopIteration()
        return [1]

    def next_awake(self):
        if self.fail_in == "next_awake":
            raise OSError("clock gone")
        return None

    def snapshot(self):
        return 0


class BrokenSource(FixedPartitionedSource):
    def __init__(self, fail_in):
        self.fail_in = fail_in

    def list_parts(self):
        if self.fail_in == "list_parts":
            raise ConnectionError("cannot list")
        return ["p"]

    def build_part(self, step_id, for_part, resume_state):
        if self.fail_in == "build_part":
            raise PermissionError("cannot open")
        return Broken(self.fail_in)


@pytest.mark.parametrize(
    "fail_in, cause",
    [
        ("list_parts", ConnectionError),
        ("build_part", PermissionError),
        ("next_batch", KeyError),
        ("not_iterable", TypeError),
        ("next_awake", OSError),
    ],
)
def test_an_exception_in_a_source_names_the_input_step(fail_in, cause):
    with pytest.raises(RiffleError) as info:
        run_source(BrokenSource(fail_in))
    assert info.value.step_id == "inp"
    assert '"inp"' in str(info.value)
    assert isinstance(info.value.__cause__, cause)


def test_a_source_of_an_unknown_kind_is_a_type_error_naming_the_step():
    flow = Dataflow("f")
    with pytest.raises(TypeError, match='step "inp": cannot read a list'):
        op.input("inp", flow, [1, 2])
    # The step id is still free.
    op.input("inp", flow, TestingSource([1]))


class Shard(StatefulSinkPartition):
    def __init__(self, name, written, log):
        self.name, self.written, self.log = name, written, log

    def write_batch(self, values):
        if "boom" in values:
            raise ValueError("cannot write boom")
        self.written.setdefault(self.name, []).extend(values)

    def snapshot(self):
        return len(self.written.get(self.name, []))

    def close(self):
        self.log.append(("close", self.name))


class ShardSink(FixedPartitionedSink):
    """Two partitions; keys starting with "a" go to the first."""

    def __init__(self):
        self.written, self.log = {}, []

    def list_parts(self):
        return ["first", "second"]

    def part_fn(self, item_key):
        if item_key == "bad":
            return "not an int"
        return 0 if item_key.startswith("a") else 1

    def build_part(self, step_id, for_part, resume_state):
        self.log.append(("build", step_id, for_part, resume_state))
        return Shard(for_part, self.written, self.log)


def run_sink(items, sink):
    flow = Dataflow("sink")
    op.output("out", op.input("inp", flow, TestingSource(items, batch_size=2)), sink)
    run_main(flow)


def test_fixed_sink_routes_values_by_part_fn_of_the_key():
    sink = ShardSink()
    run_sink([("apple", 1), ("berry", 2), ("avocado", 3), ("cherry", 4)], sink)
    assert sink.written == {"first": [1, 3], "second": [2, 4]}
    assert sorted(e for e in sink.log if e[0] == "build") == [
        ("build", "out", "first", None),
        ("build", "out", "second", None),
    ]
    assert sorted(e for e in sink.log if e[0] == "close") == [("close", "first"), ("close", "second")]


def test_fixed_sink_default_part_fn_spreads_keys_over_partitions():
    class Plain(ShardSink):
        part_fn = FixedPartitionedSink.part_fn

    sink = Plain()
    keys = [f"k{i}" for i in range(20)]
    run_sink([(k, k) for k in keys], sink)
    assert sorted(sink.written["first"] + sink.written["second"]) == sorted(keys)
    # Both partitions got some (adler32 of these keys is not all even or all odd).
    assert sink.written["first"] and sink.written["second"]


@pytest.mark.parametrize(
    "items, cause",
    [
        ([("apple", "boom")], ValueError),  # write_batch raised
        ([("bad", 1)], TypeError),  # part_fn returned a str
        ([1, 2], TypeError),  # not (key, value) pairs
    ],
)
def test_an_exception_in_a_fixed_sink_names_the_output_step(items, cause):
    with pytest.raises(RiffleError) as info:
        run_sink(items, ShardSink())
    assert info.value.step_id == "out"
    assert isinstance(info.value.__cause__, cause)


def test_dynamic_sink_writes_items_as_they_are_and_closes():
    log = []

    class Part(StatelessSinkPartition):
        def write_batch(self, items):
            log.append(("write", list(items)))

        def close(self):
            log.append(("close",))

    class Dyn(DynamicSink):
        def build(self, step_id, worker_index, worker_count):
            log.append(("build", step_id, worker_index, worker_count))
            return Part()

    run_sink([1, ("k", 2), 3], Dyn())
    assert log[0] == ("build", "out", 0, 1)
    assert [x for e in log if e[0] == "write" for x in e[1]] == [1, ("k", 2), 3]
    assert log[-1] == ("close",)


def test_an_exception_in_a_dynamic_sink_names_the_output_step():
    class Part(StatelessSinkPartition):
        def write_batch(self, items):
            raise RuntimeError("disk full")

    class Dyn(DynamicSink):
        def build(self, step_id, worker_index, worker_count):
            return Part()

    with pytest.raises(RiffleError, match="disk full") as info:
        run_sink([1], Dyn())
    assert info.value.step_id == "out"
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_sink_of_an_unknown_kind_is_a_type_error_naming_the_step():
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match='step "out": cannot write to a dict'):
        op.output("out", s, {})
