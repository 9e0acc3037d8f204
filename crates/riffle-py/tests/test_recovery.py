"""Recovery from Python: RecoveryConfig on the engine's recovery store; a run
stopped by TestingSource.ABORT() resumes its state and positions."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.connectors.files import FileSink, FileSource
from riffle.dataflow import Dataflow
from riffle.inputs import FixedPartitionedSource, StatefulSourcePartition
from riffle.outputs import FixedPartitionedSink, StatefulSinkPartition
from riffle.recovery import RecoveryConfig, init_db_dir
from riffle.run import cli_main
from riffle.testing import TestingSink, TestingSource, run_main

EPOCH = timedelta(milliseconds=20)


@pytest.fixture
def db_dir(tmp_path):
    path = tmp_path / "db"
    init_db_dir(path, 2)
    return path


def sums_flow(items, out):
    """Running sum per key of (key, value) items; "slow" values take 0.1 s."""

    def value(kv):
        if kv[1] == "slow":
            time.sleep(0.1)
            return 0
        return kv[1]

    flow = Dataflow("sums")
    keyed = op.key_on("key", op.input("inp", flow, TestingSource(items)), lambda kv: kv[0])
    values = op.map_value("value", keyed, value)
    sums = op.stateful_map("sum", values, lambda s, x: ((s or 0) + x, (s or 0) + x))
    op.output("out", op.filter("shown", sums, lambda kv: kv[0] != "z"), TestingSink(out))
    return flow


def test_a_run_stopped_by_abort_resumes_its_state_and_position(db_dir):
    # The slow items (1 s) let many epochs and snapshots commit after a and b.
    items = [("a", 1), ("b", 2)] + [("z", "slow")] * 10 + [TestingSource.ABORT(), ("a", 3), ("b", 4)]
    first = []
    run_main(sums_flow(items, first), epoch_interval=EPOCH, recovery_config=RecoveryConfig(db_dir))
    assert first == [("a", 1), ("b", 2)]  # stopped at the marker
    second = []
    run_main(sums_flow(items, second), epoch_interval=EPOCH, recovery_config=RecoveryConfig(db_dir))
    # Position resumed: a and b's first values are not read again; state
    # resumed: the sums go on from them.
    assert sorted(second) == [("a", 4), ("b", 6)]


def test_without_recovery_a_rerun_starts_over():
    items = [("a", 1), TestingSource.ABORT(), ("a", 3)]
    first, second = [], []
    run_main(sums_flow(items, first), epoch_interval=EPOCH)
    run_main(sums_flow(items, second), epoch_interval=EPOCH)
    assert first == [("a", 1)]
    assert second == [("a", 1), ("a", 4)]


class Numbers(StatefulSourcePartition):
    def __init__(self, upto, at):
        self.upto, self.at = upto, at or 0

    def next_batch(self):
        if self.at >= self.upto:
            raise StopIteration()
        self.at += 1
        return [self.at]

    def snapshot(self):
        return {"at": self.at}  # any picklable value


class NumberSource(FixedPartitionedSource):
    def __init__(self, upto):
        self.upto, self.resumed = upto, []

    def list_parts(self):
        return ["n"]

    def build_part(self, step_id, for_part, resume_state):
        self.resumed.append(resume_state)
        return Numbers(self.upto, resume_state and resume_state["at"])


class Ledger(StatefulSinkPartition):
    def __init__(self, rows, at):
        self.rows = rows
        del self.rows[at or 0 :]  # drop what the last snapshot did not hold

    def write_batch(self, values):
        self.rows.extend(values)

    def snapshot(self):
        return len(self.rows)


class LedgerSink(FixedPartitionedSink):
    def __init__(self, rows):
        self.rows, self.resumed = rows, []

    def list_parts(self):
        return ["ledger"]

    def build_part(self, step_id, for_part, resume_state):
        self.resumed.append(resume_state)
        return Ledger(self.rows, resume_state)


def test_python_sources_and_sinks_get_their_snapshots_back(db_dir):
    rows = []

    def run(upto):
        source, sink = NumberSource(upto), LedgerSink(rows)
        flow = Dataflow("numbers")
        keyed = op.key_on("key", op.input("inp", flow, source), lambda n: "all")
        op.output("out", keyed, sink)
        run_main(flow, epoch_interval=EPOCH, recovery_config=RecoveryConfig(db_dir))
        return source, sink

    source, sink = run(3)
    assert source.resumed == [None] and sink.resumed == [None]
    assert rows == [1, 2, 3]
    source, sink = run(5)
    assert source.resumed == [{"at": 3}] and sink.resumed == [3]
    assert rows == [1, 2, 3, 4, 5]


def test_file_source_and_sink_resume_exactly_once(tmp_path, db_dir):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    seen = []

    def run():
        flow = Dataflow("lines")
        lines = op.input("inp", flow, FileSource(src, batch_size=2))
        op.output("out", op.map("upper", lines, lambda l: seen.append(l) or l.upper()), FileSink(dst))
        run_main(flow, epoch_interval=EPOCH, recovery_config=RecoveryConfig(db_dir))

    src.write_text("a\nb\nc\n")
    run()
    with src.open("a") as f:
        f.write("d\ne\n")
    run()
    assert seen == ["a", "b", "c", "d", "e"]  # the second run read only the new lines
    assert dst.read_text() == "A\nB\nC\nD\nE\n"


def test_a_directory_that_is_not_a_store_is_an_error(tmp_path):
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(RiffleError, match="nowhere"):
        run_main(flow, recovery_config=RecoveryConfig(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="count"):
        init_db_dir(tmp_path / "x", 0)
    with pytest.raises(TypeError, match="backup_interval"):
        RecoveryConfig(tmp_path, backup_interval=5)


def test_python_m_riffle_recovery_and_run_r(tmp_path):
    db, src, dst = tmp_path / "db", tmp_path / "in.txt", tmp_path / "out.txt"
    (tmp_path / "flows_mod.py").write_text(
        "import riffle.operators as op\n"
        "from riffle.dataflow import Dataflow\n"
        "from riffle.connectors.files import FileSource, FileSink\n"
        "flow = Dataflow('cli')\n"
        f"s = op.input('inp', flow, FileSource({str(src)!r}))\n"
        "c = op.stateful_map('n', op.key_on('k', s, lambda l: 'all'), lambda n, l: ((n or 0) + 1, f'{(n or 0) + 1} {l}'))\n"
        f"op.output('out', c, FileSink({str(dst)!r}))\n"
    )
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    py = [sys.executable, "-m"]
    kw = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    done = subprocess.run(py + ["riffle.recovery", str(db), "1"], **kw)
    assert done.returncode == 0, done.stderr
    src.write_text("x\ny\n")
    for _ in range(2):
        done = subprocess.run(py + ["riffle.run", "flows_mod:flow", "-r", str(db), "-s", "0.05", "-w", "2"], **kw)
        assert done.returncode == 0, done.stderr
    with src.open("a") as f:
        f.write("z\n")
    done = subprocess.run(py + ["riffle.run", "flows_mod:flow", "-r", str(db), "-s", "0.05"], **kw)
    assert done.returncode == 0, done.stderr
    # The count went on from the snapshot: z is the third line, written once.
    assert dst.read_text() == "1 x\n2 y\n3 z\n"


def test_partitions_resume_under_another_worker_count(db_dir):
    class Parts(NumberSource):
        def list_parts(self):
            return ["n0", "n1", "n2", "n3"]

    def run(upto, workers):
        source, out = Parts(upto), []
        flow = Dataflow("parts")
        op.output("out", op.input("inp", flow, source), TestingSink(out))
        cli_main(flow, workers_per_process=workers, epoch_interval=EPOCH, recovery_config=RecoveryConfig(db_dir))
        return source, out

    source, out = run(2, 2)
    assert sorted(out) == [1, 1, 1, 1, 2, 2, 2, 2]
    source, out = run(3, 1)
    assert source.resumed == [{"at": 2}] * 4
    assert out == [3, 3, 3, 3]


def test_a_snapshot_that_raises_after_the_last_poll_still_fails_the_run(db_dir):
    class Last(Numbers):
        def snapshot(self):
            if self.at >= self.upto:
                raise RuntimeError("cannot say where it is")
            return {"at": self.at}

    class LastSource(NumberSource):
        def build_part(self, step_id, for_part, resume_state):
            return Last(self.upto, None)

    flow = Dataflow("last")
    op.output("out", op.input("inp", flow, LastSource(2)), TestingSink([]))
    with pytest.raises(RiffleError, match="cannot say where it is") as info:
        run_main(flow, epoch_interval=EPOCH, recovery_config=RecoveryConfig(db_dir))
    assert info.value.step_id == "inp"
    assert isinstance(info.value.__cause__, RuntimeError)
