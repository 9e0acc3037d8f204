"""`join`'s insert modes ("first", "last", "product") under each emit mode
("complete", "running", "final"): what each emits on a small seed, on one worker
and on two, and how the kept values resume after a run stopped by
TestingSource.ABORT()."""

import ast
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.inputs import FixedPartitionedSource, StatefulSourcePartition
from riffle.recovery import RecoveryConfig, init_db_dir
from riffle.run import cli_main
from riffle.testing import TestingSink, TestingSource, run_main

EPOCH = timedelta(milliseconds=10)
# Longer than an epoch: every batch of a Paced source lands in an epoch of its
# own, and keyed steps take epochs in order, so the join sees the seed's values
# in the seed's order whatever the sides.
PAUSE = timedelta(milliseconds=40)


class _PacedPart(StatefulSourcePartition):
    def __init__(self, batches):
        self.batches = list(batches)
        self.at = 0
        self.awake = None

    def next_batch(self):
        if self.at >= len(self.batches):
            raise StopIteration()
        self.at += 1
        self.awake = datetime.now(timezone.utc) + PAUSE
        return self.batches[self.at - 1]

    def next_awake(self):
        return self.awake

    def snapshot(self):
        return self.at


class Paced(FixedPartitionedSource):
    """One partition giving one batch per poll, a PAUSE apart."""

    def __init__(self, batches):
        self.batches = batches

    def list_parts(self):
        return ["paced"]

    def build_part(self, step_id, for_part, resume_state):
        return _PacedPart(self.batches)


# (side, key, value) in the order they happen; side 0 is "left", 1 "right".
SEED = [
    (0, "a", 1),
    (0, "a", 2),
    (1, "a", "x"),
    (0, "a", 3),
    (1, "b", "y"),
    (1, "a", "z"),
]

# What each mode emits for SEED, worked out by hand from the documented
# semantics (bytewax 0.21's JoinInsertMode and JoinEmitMode).
EXPECTED = {
    ("first", "complete"): [("a", (1, "x")), ("a", (3, "z"))],
    ("last", "complete"): [("a", (2, "x")), ("a", (3, "z"))],
    # The key starts over after each emit: 3 meets z alone.
    ("product", "complete"): [("a", (1, "x")), ("a", (2, "x")), ("a", (3, "z"))],
    ("first", "running"): [
        ("a", (1, None)),
        ("a", (1, None)),
        ("a", (1, "x")),
        ("a", (1, "x")),
        ("b", (None, "y")),
        ("a", (1, "x")),
    ],
    ("last", "running"): [
        ("a", (1, None)),
        ("a", (2, None)),
        ("a", (2, "x")),
        ("a", (3, "x")),
        ("b", (None, "y")),
        ("a", (3, "z")),
    ],
    # Every value emits the whole product so far.
    ("product", "running"): [
        ("a", (1, None)),
        ("a", (1, None)),
        ("a", (2, None)),
        ("a", (1, "x")),
        ("a", (2, "x")),
        ("a", (1, "x")),
        ("a", (2, "x")),
        ("a", (3, "x")),
        ("b", (None, "y")),
        ("a", (1, "x")),
        ("a", (1, "z")),
        ("a", (2, "x")),
        ("a", (2, "z")),
        ("a", (3, "x")),
        ("a", (3, "z")),
    ],
    ("first", "final"): [("a", (1, "x")), ("b", (None, "y"))],
    ("last", "final"): [("a", (3, "z")), ("b", (None, "y"))],
    ("product", "final"): [
        ("a", (1, "x")),
        ("a", (1, "z")),
        ("a", (2, "x")),
        ("a", (2, "z")),
        ("a", (3, "x")),
        ("a", (3, "z")),
        ("b", (None, "y")),
    ],
}

MODES = sorted(EXPECTED)


def paced_join(batches, insert_mode, emit_mode, sides=2):
    """A flow of one Paced source of `(side, key, value)` batches, split into
    `sides` keyed streams that are joined: the flow and the joined stream."""
    flow = Dataflow("modes")
    events = op.input("inp", flow, Paced(batches))
    streams = [
        op.map(f"side{n}", op.filter(f"of{n}", events, lambda e, n=n: e[0] == n), lambda e: (e[1], e[2]))
        for n in range(sides)
    ]
    return flow, op.join("j", *streams, insert_mode=insert_mode, emit_mode=emit_mode)


def paced_join_flow(batches, out, insert_mode, emit_mode, sides=2):
    """`paced_join` into a TestingSink of `out`."""
    flow, joined = paced_join(batches, insert_mode, emit_mode, sides)
    op.output("out", joined, TestingSink(out))
    return flow


KEYS = [f"k{i}" for i in range(8)]


def seed_for_keys():
    """SEED once per key of KEYS (`k0.a`, `k0.b`, ...), a batch per seed event."""
    return [[(side, f"{k}.{key}", value) for k in KEYS] for side, key, value in SEED]


def by_key(rows):
    """`(key, row)` rows as {key: [row, ...]}, each key's rows in the order they
    came (the order between keys is the engine's)."""
    keyed = {}
    for key, row in rows:
        keyed.setdefault(key, []).append(row)
    return keyed


def expected_for_keys(insert_mode, emit_mode):
    """EXPECTED for the keys of `seed_for_keys`, as `by_key` gives it."""
    seed = by_key(EXPECTED[insert_mode, emit_mode])
    return {f"{k}.{key}": rows for k in KEYS for key, rows in seed.items()}


@pytest.mark.parametrize("insert_mode, emit_mode", MODES)
def test_each_insert_mode_under_each_emit_mode(insert_mode, emit_mode):
    out = []
    flow = paced_join_flow([[e] for e in SEED], out, insert_mode, emit_mode)
    run_main(flow, epoch_interval=EPOCH)
    if emit_mode == "final":
        # Emitted together at the end: the order of keys is the engine's.
        assert sorted(out, key=lambda kv: kv[0]) == EXPECTED[insert_mode, emit_mode]
    else:
        assert out == EXPECTED[insert_mode, emit_mode]


@pytest.mark.parametrize("insert_mode, emit_mode", [m for m in MODES if m[0] != "last"])
def test_two_workers_emit_what_one_does(insert_mode, emit_mode):
    # Eight keys: both workers own some of them.
    outs = {}
    for workers in (1, 2):
        out = []
        flow = paced_join_flow(seed_for_keys(), out, insert_mode, emit_mode)
        cli_main(flow, workers_per_process=workers, epoch_interval=EPOCH)
        outs[workers] = out
    assert by_key(outs[2]) == by_key(outs[1]) == expected_for_keys(insert_mode, emit_mode)


CLUSTER_MODULE = """
import riffle.operators as op
from riffle.connectors.files import DirSink
from test_join_modes import paced_join, seed_for_keys

def make(insert_mode, emit_mode):
    flow, joined = paced_join(seed_for_keys(), insert_mode, emit_mode)
    op.output("out", op.map("fmt", joined, lambda kv: (kv[0], repr(kv))), DirSink("out", 2))
    return flow
"""


@pytest.mark.parametrize("insert_mode, emit_mode", [("product", "running"), ("first", "complete")])
def test_two_processes_emit_what_one_does(tmp_path, insert_mode, emit_mode):
    # The source's one partition is read in one process; the keys owned by the
    # other cross to it, their kept values with them.
    (tmp_path / "join_mod.py").write_text(CLUSTER_MODULE)
    (tmp_path / "out").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(PYTHONPATH=str(Path(__file__).parent), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-m", "riffle.run", f"join_mod:make({insert_mode!r}, {emit_mode!r})", "-p", "2", "-s", "0.01"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [ast.literal_eval(line) for f in sorted((tmp_path / "out").iterdir()) for line in f.read_text().splitlines()]
    # A key's lines are in one file, in the order they were written.
    assert by_key(rows) == expected_for_keys(insert_mode, emit_mode)


def test_product_of_three_sides_varies_the_last_side_fastest():
    seed = [(0, "k", "a1"), (0, "k", "a2"), (1, "k", "b1"), (1, "k", "b2"), (2, "k", "c1"), (0, "e", "only")]
    out = []
    run_main(paced_join_flow([[e] for e in seed], out, "product", "final", sides=3), epoch_interval=EPOCH)
    assert sorted(out, key=lambda kv: kv[0]) == [
        ("e", ("only", None, None)),
        ("k", ("a1", "b1", "c1")),
        ("k", ("a1", "b2", "c1")),
        ("k", ("a2", "b1", "c1")),
        ("k", ("a2", "b2", "c1")),
    ]


def test_first_keeps_the_first_value_of_a_side_within_one_batch():
    # All values in one batch, one epoch: a side's values still come in order.
    flow = Dataflow("f")
    left = op.input("left", flow, TestingSource([("a", 1), ("a", 2), ("a", 3)], batch_size=3))
    right = op.input("right", flow, TestingSource([("a", "x"), ("a", "y")], batch_size=2))
    out = []
    op.output("out", op.join("j", left, right, insert_mode="first", emit_mode="final"), TestingSink(out))
    run_main(flow)
    assert out == [("a", (1, "x"))]


def test_a_side_that_is_not_keyed_names_the_step():
    flow = Dataflow("f")
    left = op.input("left", flow, TestingSource([("a", 1)]))
    right = op.input("right", flow, TestingSource([42]))
    op.output("out", op.join("j", left, right, insert_mode="product"), TestingSink([]))
    with pytest.raises(RiffleError, match='"j"') as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, TypeError)


# Recovery


@pytest.fixture
def db_dir(tmp_path):
    path = tmp_path / "db"
    init_db_dir(path, 2)
    return path


def tagged_join_flow(items, out, insert_mode, emit_mode, sides=2):
    """A TestingSource of `(side, key, value)` items split into `sides` joined
    keyed streams; a `(None, "z", "slow")` item takes 0.1 s and goes nowhere."""

    def pace(event):
        if event[0] is None:
            time.sleep(0.1)
        return event

    flow = Dataflow("resume")
    events = op.map("pace", op.input("inp", flow, TestingSource(items)), pace)
    streams = [
        op.map(f"side{n}", op.filter(f"of{n}", events, lambda e, n=n: e[0] == n), lambda e: (e[1], e[2]))
        for n in range(sides)
    ]
    joined = op.join("j", *streams, insert_mode=insert_mode, emit_mode=emit_mode)
    op.output("out", joined, TestingSink(out))
    return flow


def resume_items():
    """Before the marker: a's left values and b's right value, and slow items
    that let epochs (and their snapshots) commit. After it: what completes
    them. Made afresh for each test: an ABORT() marker stops a run only once."""
    return (
        [(0, "a", 1), (0, "a", 2), (1, "b", "y")]
        + [(None, "z", "slow")] * 6
        + [TestingSource.ABORT(), (1, "a", "x"), (0, "b", 5)]
    )


RESUMED = {
    # What the first run emits before the marker, and the resumed run after it.
    ("first", "complete"): ([], [("a", (1, "x")), ("b", (5, "y"))]),
    ("product", "complete"): ([], [("a", (1, "x")), ("a", (2, "x")), ("b", (5, "y"))]),
    ("first", "running"): (
        [("a", (1, None)), ("a", (1, None)), ("b", (None, "y"))],
        [("a", (1, "x")), ("b", (5, "y"))],
    ),
    ("product", "running"): (
        [("a", (1, None)), ("a", (1, None)), ("a", (2, None)), ("b", (None, "y"))],
        [("a", (1, "x")), ("a", (2, "x")), ("b", (5, "y"))],
    ),
    # An aborted run never reaches the end, so "final" emits only on resume.
    ("first", "final"): ([], [("a", (1, "x")), ("b", (5, "y"))]),
    ("product", "final"): ([], [("a", (1, "x")), ("a", (2, "x")), ("b", (5, "y"))]),
}


@pytest.mark.parametrize("insert_mode, emit_mode", sorted(RESUMED))
def test_kept_values_resume_after_an_abort(db_dir, insert_mode, emit_mode):
    before, after = RESUMED[insert_mode, emit_mode]
    recovery, items = RecoveryConfig(db_dir), resume_items()
    first = []
    run_main(tagged_join_flow(items, first, insert_mode, emit_mode), epoch_interval=EPOCH, recovery_config=recovery)
    assert sorted(first, key=repr) == sorted(before, key=repr)
    second = []
    run_main(tagged_join_flow(items, second, insert_mode, emit_mode), epoch_interval=EPOCH, recovery_config=recovery)
    # a's left values and b's right value came back from the snapshot; the
    # items before the marker were not read again.
    assert sorted(second, key=repr) == sorted(after, key=repr)


def test_kept_values_resume_on_another_worker_count(db_dir):
    recovery, items = RecoveryConfig(db_dir), resume_items()
    run_main(tagged_join_flow(items, [], "product", "final"), epoch_interval=EPOCH, recovery_config=recovery)
    second = []
    flow = tagged_join_flow(items, second, "product", "final")
    cli_main(flow, workers_per_process=2, epoch_interval=EPOCH, recovery_config=recovery)
    assert sorted(second, key=repr) == [("a", (1, "x")), ("a", (2, "x")), ("b", (5, "y"))]
