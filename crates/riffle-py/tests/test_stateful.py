"""op.stateful: a StatefulLogic per key, with its own timer (notify_at), the end
of the stream (on_eof) and its snapshot kept by the recovery store."""

import time
from datetime import datetime, timedelta, timezone

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.inputs import FixedPartitionedSource, StatefulSourcePartition
from riffle.operators import StatefulLogic
from riffle.recovery import RecoveryConfig, init_db_dir
from riffle.testing import TestingSink, TestingSource, run_main


class Open(StatefulSourcePartition):
    """Emits its items at once, then stays open (nothing to read) for `idle`
    seconds; `closed` keeps when it ended."""

    def __init__(self, items, idle, closed):
        self.items, self.closed = items, closed
        self.until = None
        self.idle = idle

    def next_batch(self):
        if self.items:
            items, self.items = self.items, []
            self.until = time.time() + self.idle
            return items
        if time.time() >= self.until:
            self.closed.append(time.time())
            raise StopIteration()
        return []

    def next_awake(self):
        if self.until is None:
            return None
        return datetime.fromtimestamp(self.until, timezone.utc)

    def snapshot(self):
        return None


class OpenSource(FixedPartitionedSource):
    def __init__(self, items, idle):
        self.items, self.idle, self.closed = items, idle, []

    def list_parts(self):
        return ["one"]

    def build_part(self, step_id, for_part, resume_state):
        return Open(self.items, self.idle, self.closed)


class Timeout(StatefulLogic):
    """Gathers a key's values until 0.1 s after its first, then emits them."""

    def __init__(self, resume_state):
        self.values, self.due = resume_state or ([], None)
        self.notified = []

    def on_item(self, value):
        self.values.append(value)
        if self.due is None:
            self.due = datetime.now(timezone.utc) + timedelta(milliseconds=100)
        return [], StatefulLogic.RETAIN

    def notify_at(self):
        return self.due

    def on_notify(self):
        NOTIFIED.append(time.time())
        return [("timeout", self.values)], StatefulLogic.DISCARD

    def on_eof(self):
        return [("eof", self.values)], StatefulLogic.DISCARD

    def snapshot(self):
        return (self.values, self.due)


NOTIFIED = []


def test_a_timer_fires_while_the_input_is_idle_and_eof_ends_the_rest():
    NOTIFIED.clear()
    source = OpenSource([("a", 1), ("a", 2)], idle=0.6)
    flow = Dataflow("timers")
    out = []
    op.output("out", op.stateful("gather", op.input("inp", flow, source), Timeout), TestingSink(out))
    run_main(flow)
    assert out == [("a", ("timeout", [1, 2]))]
    # It fired on its own, before the input ended.
    assert len(NOTIFIED) == 1 and NOTIFIED[0] < source.closed[0]

    out = []
    flow = Dataflow("eof")
    op.output("out", op.stateful("gather", op.input("inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)])),
                                 Timeout), TestingSink(out))
    run_main(flow)
    assert sorted(out) == [("a", ("eof", [1, 3])), ("b", ("eof", [2]))]


class Sum(StatefulLogic):
    BUILT = []

    def __init__(self, resume_state):
        Sum.BUILT.append(resume_state)
        self.total = resume_state or 0

    def on_item(self, value):
        if value == "slow":
            time.sleep(0.1)
            return [], StatefulLogic.RETAIN
        self.total += value
        return [self.total], StatefulLogic.RETAIN

    def snapshot(self):
        return self.total


def test_a_resumed_run_builds_each_key_from_its_snapshot(tmp_path):
    db = tmp_path / "db"
    init_db_dir(db, 1)
    items = [("a", 1), ("a", 2)] + [("a", "slow")] * 5 + [TestingSource.ABORT(), ("a", 3)]

    def run():
        flow = Dataflow("sums")
        out = []
        sums = op.stateful("sum", op.input("inp", flow, TestingSource(items)), Sum)
        op.output("out", sums, TestingSink(out))
        run_main(flow, epoch_interval=timedelta(milliseconds=20), recovery_config=RecoveryConfig(db))
        return out

    Sum.BUILT.clear()
    assert run() == [("a", 1), ("a", 3)]
    assert Sum.BUILT == [None]
    assert run() == [("a", 6)]
    assert Sum.BUILT[1:] == [3]


def test_a_logic_that_returns_something_else_stops_the_run_naming_the_step():
    class Bad(StatefulLogic):
        def __init__(self, _):
            pass

        def on_item(self, value):
            return [value]

        def snapshot(self):
            return None

    flow = Dataflow("bad")
    op.output("out", op.stateful("bad", op.input("inp", flow, TestingSource([("a", 1)])), Bad), TestingSink([]))
    with pytest.raises(RiffleError, match='"bad"') as info:
        run_main(flow)
    assert "(emits, discard)" in str(info.value.__cause__)
