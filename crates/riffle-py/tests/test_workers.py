"""Several workers: cli_main and `python -m riffle.run` run a flow on the
engine's worker threads."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest

import riffle.operators as op
from riffle import RiffleError
from riffle.dataflow import Dataflow
from riffle.inputs import DynamicSource, FixedPartitionedSource, StatefulSourcePartition, StatelessSourcePartition
from riffle.run import cli_main
from riffle.testing import TestingSink, TestingSource, run_main


class Part(StatefulSourcePartition):
    def __init__(self, items):
        self.items = list(items)

    def next_batch(self):
        if not self.items:
            raise StopIteration()
        return [self.items.pop(0)]

    def snapshot(self):
        return None


class Parts(FixedPartitionedSource):
    """Partition p0..p7, each with words; notes which thread builds each."""

    def __init__(self):
        self.threads = {}

    def list_parts(self):
        return [f"p{i}" for i in range(8)]

    def build_part(self, step_id, for_part, resume_state):
        self.threads[for_part] = threading.get_ident()
        i = int(for_part[1:])
        return Part(["w%d" % (j % 5) for j in range(i * 10, i * 10 + 10)])


def test_cli_main_spreads_partitions_over_workers_and_counts_right():
    source = Parts()
    flow = Dataflow("wc")
    words = op.input("inp", flow, source)
    upper = op.map("upper", words, str.upper)
    counts = op.count_final("count", upper, lambda w: w)
    out = []
    op.output("out", counts, TestingSink(out))
    cli_main(flow, workers_per_process=4)
    assert sorted(out) == [(f"W{i}", 16) for i in range(5)]
    assert sorted(source.threads) == [f"p{i}" for i in range(8)]
    # Four worker threads built them, none of them this one.
    assert len(set(source.threads.values())) == 4
    assert threading.get_ident() not in source.threads.values()


def test_stateful_map_under_several_workers_keeps_one_state_per_key():
    flow = Dataflow("sums")
    items = [(f"k{i % 7}", i) for i in range(200)]
    s = op.redistribute("spread", op.input("inp", flow, TestingSource(items, batch_size=3)))
    keyed = op.key_on("key", s, lambda kv: kv[0])
    sums = op.stateful_map("sum", op.map_value("v", keyed, lambda kv: kv[1]), lambda st, x: ((st or 0) + x,) * 2)
    out = []
    op.output("out", sums, TestingSink(out))
    cli_main(flow, workers_per_process=3)
    finals = {}
    for k, v in out:
        finals[k] = max(finals.get(k, 0), v)
    assert finals == {f"k{r}": sum(i for i in range(200) if i % 7 == r) for r in range(7)}
    assert len(out) == 200


def test_a_dynamic_source_is_built_on_every_worker():
    built = []

    class One(StatelessSourcePartition):
        def __init__(self, index):
            self.left = [index]

        def next_batch(self):
            if not self.left:
                raise StopIteration()
            return [self.left.pop()]

    class Each(DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            built.append((worker_index, worker_count))
            return One(worker_index)

    flow = Dataflow("each")
    out = []
    op.output("out", op.input("inp", flow, Each()), TestingSink(out))
    cli_main(flow, workers_per_process=3)
    assert sorted(built) == [(0, 3), (1, 3), (2, 3)]
    assert sorted(out) == [0, 1, 2]


def test_an_exception_under_several_workers_names_the_step():
    def boom(x):
        if x == 13:
            raise ArithmeticError("unlucky")
        return x

    flow = Dataflow("f")
    s = op.redistribute("spread", op.input("inp", flow, TestingSource(range(40), batch_size=4)))
    op.output("out", op.map("check", s, boom), TestingSink([]))
    with pytest.raises(RiffleError, match="unlucky") as info:
        cli_main(flow, workers_per_process=2)
    assert info.value.step_id == "check"
    assert isinstance(info.value.__cause__, ArithmeticError)


def test_cli_main_checks_its_arguments():
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(ValueError, match="workers_per_process"):
        cli_main(flow, workers_per_process=0)
    with pytest.raises(ValueError, match="go together"):
        cli_main(flow, process_id=0)
    with pytest.raises(TypeError, match="Dataflow"):
        cli_main("not a flow")


FLOW_MODULE = """
import threading
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.connectors.files import FileSource, FileSink

def make(src, dst):
    flow = Dataflow("cli")
    lines = op.redistribute("spread", op.input("inp", flow, FileSource(src, batch_size=2)))
    tagged = op.map("tag", lines, lambda l: l.upper())
    op.output("out", tagged, FileSink(dst))
    return flow

flow = make({src!r}, {dst!r})
"""


def run_cli(tmp_path, *args):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("RIFFLE_WORKERS_PER_PROCESS", None)
    return subprocess.run(
        [sys.executable, "-m", "riffle.run", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("target", ["flows_mod:flow", "flows_mod.py:flow", "flows_mod:make({src!r}, {dst!r})"])
def test_python_m_riffle_run_runs_a_flow_with_workers(tmp_path, target):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("".join(f"line {i}\n" for i in range(30)))
    (tmp_path / "flows_mod.py").write_text(FLOW_MODULE.format(src=str(src), dst=str(dst)))
    done = run_cli(tmp_path, target.format(src=str(src), dst=str(dst)), "-w", "3")
    assert done.returncode == 0, done.stderr
    assert sorted(dst.read_text().splitlines()) == sorted(f"LINE {i}" for i in range(30))


def test_python_m_riffle_run_says_what_is_wrong(tmp_path):
    (tmp_path / "flows_mod.py").write_text("flow = 3\n")
    done = run_cli(tmp_path, "no_such_module:flow")
    assert done.returncode != 0 and "cannot import 'no_such_module'" in done.stderr
    done = run_cli(tmp_path, "flows_mod:other")
    assert done.returncode != 0 and "has no 'other'" in done.stderr
    done = run_cli(tmp_path, "flows_mod:flow")
    assert done.returncode != 0 and "not a Dataflow" in done.stderr
    done = run_cli(tmp_path, "flows_mod:flow", "-w", "0")
    assert done.returncode != 0 and "-w must be at least 1" in done.stderr


FOREVER = """
import pathlib
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.inputs import DynamicSource, StatelessSourcePartition
from riffle.testing import TestingSink

class Ones(StatelessSourcePartition):
    def next_batch(self):
        return [1]

class Forever(DynamicSource):
    def build(self, step_id, worker_index, worker_count):
        pathlib.Path("started").touch()
        return Ones()

flow = Dataflow("forever")
op.output("out", op.map("same", op.input("inp", flow, Forever()), lambda x: x), TestingSink([]))
"""


@pytest.mark.parametrize("workers", ["1", "3"])
def test_ctrl_c_stops_a_run_with_keyboard_interrupt(tmp_path, workers):
    import signal
    import time

    (tmp_path / "forever_mod.py").write_text(FOREVER)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    # A shell that starts a command in the background without job control (a CI
    # runner's, `nohup ... &`) ignores SIGINT in it, and Python then keeps it
    # ignored: give the child the default disposition, as a terminal would.
    child = subprocess.Popen(
        [sys.executable, "-m", "riffle.run", "forever_mod:flow", "-w", workers],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "started").exists()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    assert err.strip().splitlines()[-1] == "KeyboardInterrupt: the run was interrupted (Ctrl-C)"
