"""Several processes: `python -m riffle.run -p N` spawns a cluster, `-i`/`-a`
and `cluster_main` join one started by hand, and items crossing processes keep
their types."""

import ast
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.recovery import RecoveryConfig, init_db_dir
from riffle.run import _free_addresses, cli_main
from riffle.testing import TestingSink, TestingSource, cluster_main, run_main

WORDS = [f"w{i:02}" for i in range(40)]

WORD_COUNT = """
import os, pathlib
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.connectors.files import DirSource, DirSink

def explode(word):
    if word == os.environ.get("WC_FAIL_ON"):
        raise ValueError(f"cannot take {word!r}")
    return word

def seen(step_id, item):
    # Which processes wrote results: one file per process id.
    pathlib.Path("pids").mkdir(exist_ok=True)
    (pathlib.Path("pids") / str(os.getpid())).touch()

def make(src, dst):
    flow = Dataflow("wc")
    lines = op.input("inp", flow, DirSource(src, batch_size=7))
    words = op.map("explode", op.flat_map("split", lines, str.split), explode)
    counts = op.count_final("count", words, lambda w: w)
    lines_out = op.map("fmt", counts, lambda kv: (kv[0], f"{kv[0]} {kv[1]}"))
    op.output("out", op.inspect("seen", lines_out, seen), DirSink(dst, 4))
    return flow

flow = make("in", "out")
"""


def write_words(tmp_path, files=4, lines=30):
    """Input files of words; returns the expected count of each word."""
    (tmp_path / "in").mkdir()
    expected = {}
    for f in range(files):
        rows = []
        for line in range(lines):
            row = [WORDS[(f * 7 + line * 3 + k * k) % len(WORDS)] for k in range(5)]
            for w in row:
                expected[w] = expected.get(w, 0) + 1
            rows.append(" ".join(row))
        (tmp_path / "in" / f"part{f}.txt").write_text("\n".join(rows) + "\n")
    return expected


def python_env(**extra):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for name in ("RIFFLE_WORKERS_PER_PROCESS", "RIFFLE_PROCESSES", "RIFFLE_PROCESS_ID", "RIFFLE_ADDRESSES"):
        env.pop(name, None)
    env.update(extra)
    return env


def riffle_run(tmp_path, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "riffle.run", *args],
        cwd=tmp_path, env=env or python_env(), capture_output=True, text=True, timeout=60,
    )


def read_dir(path):
    """Every line of every file in ``path``, sorted."""
    return sorted(line for f in sorted(path.iterdir()) for line in f.read_text().splitlines())


def as_lines(counts):
    # DirSink writes the values of (key, value) pairs: "word n" is the value here.
    return sorted(f"{w} {n}" for w, n in counts.items())


@pytest.fixture
def word_count(tmp_path):
    expected = write_words(tmp_path)
    (tmp_path / "wc_mod.py").write_text(WORD_COUNT)
    return expected


def test_two_processes_count_words_as_one_process_does(tmp_path, word_count):
    one = riffle_run(tmp_path, "wc_mod:make('in', 'out1')")
    assert one.returncode == 0, one.stderr
    (tmp_path / "pids").rename(tmp_path / "pids1")
    two = riffle_run(tmp_path, "wc_mod:make('in', 'out2')", "-p", "2")
    assert two.returncode == 0, two.stderr
    assert read_dir(tmp_path / "out2") == read_dir(tmp_path / "out1") == as_lines(word_count)
    # Both processes of the cluster wrote results; the parent ran no flow.
    pids = {int(p.name) for p in (tmp_path / "pids").iterdir()}
    assert len(pids) == 2 and len(list((tmp_path / "pids1").iterdir())) == 1


def test_processes_with_several_workers_each(tmp_path, word_count):
    done = riffle_run(tmp_path, "wc_mod:flow", "-p", "2", "-w", "2")
    assert done.returncode == 0, done.stderr
    assert read_dir(tmp_path / "out") == as_lines(word_count)


def test_processes_from_the_environment(tmp_path, word_count):
    done = riffle_run(tmp_path, "wc_mod.py", env=python_env(RIFFLE_PROCESSES="2"))
    assert done.returncode == 0, done.stderr
    assert read_dir(tmp_path / "out") == as_lines(word_count)
    assert len(list((tmp_path / "pids").iterdir())) == 2


def test_two_processes_started_by_hand_with_i_and_a(tmp_path, word_count):
    addresses = ";".join(_free_addresses(2))
    # Process 1 first: it waits for process 0 to come up.
    members = [
        subprocess.Popen(
            [sys.executable, "-m", "riffle.run", "wc_mod:flow", "-i", "1", "-a", addresses],
            cwd=tmp_path, env=python_env(), stderr=subprocess.PIPE, text=True,
        ),
        # The same through the environment, as a container would start it.
        subprocess.Popen(
            [sys.executable, "-m", "riffle.run", "wc_mod:flow"],
            cwd=tmp_path, env=python_env(RIFFLE_PROCESS_ID="0", RIFFLE_ADDRESSES=addresses),
            stderr=subprocess.PIPE, text=True,
        ),
    ]
    try:
        errors = [m.communicate(timeout=60)[1] for m in members]
    finally:
        for m in members:
            if m.poll() is None:
                m.kill()
                m.wait()
    assert [m.returncode for m in members] == [0, 0], errors
    assert read_dir(tmp_path / "out") == as_lines(word_count)
    assert len(list((tmp_path / "pids").iterdir())) == 2


def test_a_failing_function_in_one_process_fails_the_run(tmp_path, word_count):
    started = time.monotonic()
    done = riffle_run(tmp_path, "wc_mod:flow", "-p", "2", env=python_env(WC_FAIL_ON="w13"))
    assert done.returncode != 0
    # The failing process names the step and the exception; the command names
    # the process that failed and how it exited.
    assert 'step "explode" failed' in done.stderr and "cannot take 'w13'" in done.stderr
    assert "of 2 exited with status 1, so the run failed" in done.stderr.splitlines()[-1]
    assert time.monotonic() - started < 30


def test_a_process_that_cannot_start_stops_the_others(tmp_path):
    # Process 1 never joins (its module fails to import there), so process 0
    # would wait for it forever: the command stops it.
    (tmp_path / "half_mod.py").write_text(
        "import os\n"
        "if os.environ.get('RIFFLE_TEST_BROKEN') and '1' in os.sys.argv[os.sys.argv.index('-i') + 1]:\n"
        "    raise ImportError('process 1 cannot import this')\n"
        "from riffle.dataflow import Dataflow\n"
        "import riffle.operators as op\n"
        "from riffle.testing import TestingSource, TestingSink\n"
        "flow = Dataflow('half')\n"
        "op.output('out', op.input('inp', flow, TestingSource([1])), TestingSink([]))\n"
    )
    started = time.monotonic()
    done = riffle_run(tmp_path, "half_mod:flow", "-p", "2", env=python_env(RIFFLE_TEST_BROKEN="1"))
    assert done.returncode != 0
    assert "process 1 cannot import this" in done.stderr
    assert "process 1 of 2 exited with status 1" in done.stderr
    assert time.monotonic() - started < 20


FOREVER = """
import os, pathlib
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.inputs import DynamicSource, StatelessSourcePartition
from riffle.testing import TestingSink

class Ones(StatelessSourcePartition):
    def next_batch(self):
        return [1]

class Forever(DynamicSource):
    def build(self, step_id, worker_index, worker_count):
        (pathlib.Path("started") / str(os.getpid())).touch()
        return Ones()

flow = Dataflow("forever")
spread = op.redistribute("spread", op.input("inp", flow, Forever()))
op.output("out", op.map("same", spread, lambda x: x), TestingSink([]))
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_command_stops_every_process(tmp_path, sig):
    (tmp_path / "forever_mod.py").write_text(FOREVER)
    (tmp_path / "started").mkdir()
    # As a terminal would: SIGINT with its default disposition (a shell without
    # job control starts background commands with it ignored).
    parent = subprocess.Popen(
        [sys.executable, "-m", "riffle.run", "forever_mod:flow", "-p", "2"],
        cwd=tmp_path, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 30
        while len(list((tmp_path / "started").iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = [int(p.name) for p in (tmp_path / "started").iterdir()]
        assert len(pids) == 2
        parent.send_signal(sig)
        _, err = parent.communicate(timeout=15)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 128 + int(sig), err
    assert f"stopped by {sig.name}" in err
    assert not any(alive(pid) for pid in pids)


VALUES_MODULE = """
import collections, datetime, enum, math

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)
    def __repr__(self):
        return f"Point({self.x!r}, {self.y!r})"

class Color(enum.IntEnum):
    RED = 1

Pair = collections.namedtuple("Pair", "a b")
UTC = datetime.timezone.utc

VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -2**63, 2**63, -2**100, 1.5, -0.0, math.inf, math.nan,
    "", "héllo ✓", "\\ud800", b"", b"\\x00\\xff", [], [1, [2.0, (3, "x")], None], (), (1,), ("a", b"b", [True]),
    {}, {"a": 1, 2: [3, {"b": (4,)}], None: False}, {(1, 2): "tuple key"},
    datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
    datetime.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=UTC),
    datetime.datetime(2021, 11, 7, 1, 30, fold=1),
    datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    datetime.date(2024, 1, 2), datetime.timedelta(seconds=5),
    Point(1, "two"), [Point(3, 4), 5], {"p": Point(0, 0)}, Color.RED, Pair(1, "b"),
    collections.OrderedDict(x=1), {1, 2}, frozenset([3]), 1 + 2j,
]

def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value

# Deeper than the encoding nests (64): the rest is pickled.
MAX_DEPTH = 64
VALUES.append(nested(80))

def same(a, b):
    \"\"\"Equal, and of the same types all the way down (NaN equals NaN).\"\"\"
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, datetime.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    return a == b
"""

ROUND_TRIP = """
import atexit, os, pathlib, pickle
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.connectors.files import DirSink
from riffle.testing import TestingSource
from rt_values import VALUES, same

COPIES = 2

# Which objects go through pickle: one file per process, at its end.
_dumps, PICKLED = pickle.dumps, set()
def counting_dumps(obj, *args, **kwargs):
    PICKLED.add((type(obj).__qualname__, repr(obj)))
    return _dumps(obj, *args, **kwargs)
pickle.dumps = counting_dumps
atexit.register(lambda: pathlib.Path(f"pickled-{os.getpid()}").write_text(repr(sorted(PICKLED))))

def check(step_id):
    def check(item):
        i, value, pid = item
        return f"{step_id} {i} {same(value, VALUES[i])} {pid != os.getpid()}"
    return check

flow = Dataflow("round_trip")
# Copies side by side: round-robin sends one of them to the other process.
items = [(i, v, None) for i, v in enumerate(VALUES) for _ in range(COPIES)]
inp = op.input("inp", flow, TestingSource(items, batch_size=5))
stamped = op.map("stamp", inp, lambda t: (t[0], t[1], os.getpid()))
# Across processes by redistribute, and by a keyed step's exchange.
spread = op.map("check_spread", op.redistribute("spread", stamped), check("spread"))
keyed = op.key_on("key", stamped, lambda t: f"k{t[0] % 7}")
collected = op.stateful_map("hold", keyed, lambda s, t: (None, t))
by_key = op.map("check_keyed", op.key_rm("unkey", collected), check("keyed"))
op.output("out", op.key_on("k", op.merge("both", spread, by_key), lambda s: s.split()[1]), DirSink("out", 2))
"""


@pytest.fixture
def rt_values(tmp_path):
    """The module of values to send, importable here and in the processes."""
    (tmp_path / "rt_values.py").write_text(VALUES_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import rt_values

        yield rt_values
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("rt_values", None)


def test_values_keep_their_types_across_processes(tmp_path, rt_values):
    (tmp_path / "rt_mod.py").write_text(ROUND_TRIP)
    done = riffle_run(tmp_path, "rt_mod:flow", "-p", "2")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in read_dir(tmp_path / "out")]
    copies = 2
    assert len(rows) == 2 * copies * len(rt_values.VALUES)
    wrong = sorted({(step, rt_values.VALUES[int(i)]) for step, i, same, _ in rows if same != "True"}, key=repr)
    assert wrong == []
    for step in ("spread", "keyed"):
        crossed = {int(i) for s, i, _, moved in rows if s == step and moved == "True"}
        if step == "spread":
            # Round-robin over two processes: every value crossed at least once.
            assert crossed == set(range(len(rt_values.VALUES)))
        else:
            # Keys are routed by hash: some crossed.
            assert crossed
    # Plain values never entered pickle; the others did, each on its own.
    pickled = set()
    for f in tmp_path.glob("pickled-*"):
        pickled |= set(ast.literal_eval(f.read_text()))
    assert {t for t, _ in pickled} == {
        "int", "str", "list", "datetime", "date", "timedelta", "Point", "Color", "Pair",
        "OrderedDict", "set", "frozenset", "complex",
    }
    assert sorted(r for t, r in pickled if t == "int") == sorted([repr(2**63), repr(-2**100)])
    assert [r for t, r in pickled if t == "str"] == [repr("\ud800")]
    other_zone = [v for v in rt_values.VALUES if type(v) is datetime.datetime and v.tzinfo not in (None, datetime.timezone.utc)]
    assert [r for t, r in pickled if t == "datetime"] == [repr(v) for v in other_zone]
    # The nested list from where the encoding stops nesting: the item is a
    # tuple (depth 0) holding the 80 lists at depths 1 to 80.
    assert [r.count("[") for t, r in pickled if t == "list"] == [80 - rt_values.MAX_DEPTH + 1]


def test_an_object_pickle_cannot_handle_fails_the_run_naming_its_type(tmp_path):
    (tmp_path / "lam_mod.py").write_text(
        "import riffle.operators as op\n"
        "from riffle.dataflow import Dataflow\n"
        "from riffle.testing import TestingSource, TestingSink\n"
        "flow = Dataflow('lam')\n"
        "fns = op.map('fn', op.input('inp', flow, TestingSource(range(6))), lambda i: (lambda: i))\n"
        "op.output('out', op.redistribute('spread', fns), TestingSink([]))\n"
    )
    done = riffle_run(tmp_path, "lam_mod:flow", "-p", "2")
    assert done.returncode != 0
    assert "cannot pickle an item of type function" in done.stderr


UNSENDABLE = """
import sys, threading
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.testing import TestingSink, TestingSource, cluster_main

def make(kind):
    flow = Dataflow("unsendable")
    nums = op.input("inp", flow, TestingSource(range(6)))
    if kind == "spread":
        # A list holding a lock: the list is encoded in Rust, the lock by pickle.
        locked = op.map("lock", nums, lambda i: [i, threading.Lock()])
        op.output("out", op.redistribute("spread", locked), TestingSink([]))
    elif kind == "keyed":
        keyed = op.key_on("key", nums, lambda i: str(i % 3))
        gens = op.map_value("gen", keyed, lambda i: (x for x in range(i)))
        op.output("out", op.stateful_map("hold", gens, lambda s, v: (None, v)), TestingSink([]))
    elif kind == "pairs":
        # Not keyed yet: the step that keys the pairs checks them too.
        pairs = op.map("pair", nums, lambda i: (str(i % 3), threading.Lock()))
        op.output("out", op.stateful_map("hold", pairs, lambda s, v: (None, v)), TestingSink([]))
    else:
        # Functions that never leave their process, then ints that do.
        fns = op.map("fn", nums, lambda i: (lambda: i))
        op.output("out", op.redistribute("spread", op.map("call", fns, lambda f: f())), TestingSink([]))
    return flow

if __name__ == "__main__":
    try:
        cluster_main(make(sys.argv[1]), sys.argv[3].split(";"), int(sys.argv[2]))
    except Exception as e:
        cause = e.__cause__
        print(f"{type(e).__module__}.{type(e).__name__} step_id={e.step_id!r} "
              f"cause={type(cause).__name__}: {cause}", file=sys.stderr)
        print(f"message: {e}", file=sys.stderr)
        sys.exit(3)
"""


def test_an_item_pickle_refuses_fails_the_run_naming_the_step_that_made_it(tmp_path):
    (tmp_path / "unsend_mod.py").write_text(UNSENDABLE)
    addresses = ";".join(_free_addresses(2))
    members = [
        subprocess.Popen(
            [sys.executable, "unsend_mod.py", "spread", str(i), addresses],
            cwd=tmp_path, env=python_env(), stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    try:
        errors = [m.communicate(timeout=60)[1] for m in members]
    finally:
        for m in members:
            if m.poll() is None:
                m.kill()
                m.wait()
    assert [m.returncode for m in members] == [3, 3], errors
    # A process that sent a list to the other one names the step that made it,
    # the item's type, what inside it pickle refused and why, and chains
    # pickle's exception; the other may only hear that its peer failed.
    reports = [e for e in errors if "step_id='lock'" in e]
    assert reports, errors
    assert (
        "riffle.RiffleError step_id='lock' cause=TypeError: cannot pickle '_thread.lock' object\n"
        'message: step "lock" failed on worker'
    ) in reports[0]
    assert (
        'its output cannot be sent to another process for step "spread": cannot pickle '
        "an item of type list (the lock inside it): TypeError: cannot pickle '_thread.lock' object"
    ) in reports[0]
    for err in errors:
        assert "panicked" not in err and "bincode" not in err, err


@pytest.mark.parametrize(
    "kind, producer, item_type, reason",
    [("keyed", "gen", "generator", "'generator' object"), ("pairs", "pair", "lock", "'_thread.lock' object")],
)
def test_a_keyed_step_names_the_step_whose_values_cannot_be_sent(tmp_path, kind, producer, item_type, reason):
    (tmp_path / "unsend_mod.py").write_text(UNSENDABLE)
    done = riffle_run(tmp_path, f"unsend_mod:make({kind!r})", "-p", "2")
    assert done.returncode != 0
    assert f'riffle.RiffleError: step "{producer}" failed on worker ' in done.stderr
    assert (
        'its output cannot be sent to another process for step "hold": '
        f"cannot pickle an item of type {item_type}: TypeError: cannot pickle {reason}"
    ) in done.stderr
    assert "The above exception was the direct cause" in done.stderr
    assert "panicked" not in done.stderr and "bincode" not in done.stderr


def test_objects_that_stay_in_their_process_are_not_checked(tmp_path):
    (tmp_path / "unsend_mod.py").write_text(UNSENDABLE)
    # Functions made and called in one process, ints sent across.
    done = riffle_run(tmp_path, "unsend_mod:make('kept')", "-p", "2")
    assert done.returncode == 0, done.stderr
    # One process: nothing is encoded, so a lock may go through redistribute.
    one = riffle_run(tmp_path, "unsend_mod:make('spread')", "-w", "2")
    assert one.returncode == 0, one.stderr


def test_state_of_every_kind_of_value_resumes_from_a_snapshot(tmp_path, rt_values):
    # In one process: a snapshot in the recovery store is the same encoding.
    db = tmp_path / "db"
    init_db_dir(db, 1)
    n = len(rt_values.VALUES)

    def keep(state, i):
        state = (state or []) + [rt_values.VALUES[i]] if i >= 0 else state
        return state, (state if i < 0 else None)

    def slow(i):
        if i == "slow":
            time.sleep(0.05)
            return -2
        return i

    def flow_to(out):
        flow = Dataflow("keep")
        nums = op.map("slow", op.input("inp", flow, TestingSource(items)), slow)
        kept = op.stateful_map("keep", op.key_on("k", op.filter("real", nums, lambda i: i != -2), lambda _: "k"), keep)
        op.output("out", op.filter_map("shown", kept, lambda kv: kv[1]), TestingSink(out))
        return flow

    items = list(range(n)) + ["slow"] * 6 + [TestingSource.ABORT(), -1]
    first, second = [], []
    run_main(flow_to(first), epoch_interval=datetime.timedelta(milliseconds=20), recovery_config=RecoveryConfig(db))
    assert first == []
    run_main(flow_to(second), epoch_interval=datetime.timedelta(milliseconds=20), recovery_config=RecoveryConfig(db))
    assert len(second) == 1 and len(second[0]) == n
    assert [v for v, back in zip(rt_values.VALUES, second[0]) if not rt_values.same(v, back)] == []


CLUSTER_MEMBER = """
import sys
import riffle.operators as op
from riffle.dataflow import Dataflow
from riffle.connectors.files import DirSink
from riffle.run import cli_main
from riffle.testing import TestingSource, cluster_main

how, proc_id, addresses = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(";")
flow = Dataflow("member")
nums = op.redistribute("spread", op.input("inp", flow, TestingSource(range(100), batch_size=8)))
sums = op.fold_final("sum", op.key_on("parity", nums, lambda n: str(n % 2)), lambda: 0, lambda s, n: s + n)
op.output("out", op.map_value("fmt", sums, str), DirSink("out", 2))
if how == "cluster_main":
    cluster_main(flow, addresses, proc_id, worker_count_per_proc=2)
else:
    cli_main(flow, process_id=proc_id, addresses=addresses, workers_per_process=2)
"""


@pytest.mark.parametrize("how", ["cluster_main", "cli_main"])
def test_cluster_main_and_cli_main_join_a_cluster(tmp_path, how):
    (tmp_path / "member.py").write_text(CLUSTER_MEMBER)
    addresses = ";".join(_free_addresses(2))
    members = [
        subprocess.Popen(
            [sys.executable, "member.py", how, str(i), addresses],
            cwd=tmp_path, env=python_env(), stderr=subprocess.PIPE, text=True,
        )
        for i in (1, 0)
    ]
    try:
        errors = [m.communicate(timeout=60)[1] for m in members]
    finally:
        for m in members:
            if m.poll() is None:
                m.kill()
                m.wait()
    assert [m.returncode for m in members] == [0, 0], errors
    assert read_dir(tmp_path / "out") == sorted([str(sum(range(0, 100, 2))), str(sum(range(1, 100, 2)))])


def small_flow():
    flow = Dataflow("small")
    op.output("out", op.input("inp", flow, TestingSource([1, 2])), TestingSink([]))
    return flow


def test_cluster_main_of_one_process_runs_in_this_process():
    out = []
    flow = Dataflow("one")
    op.output("out", op.map("double", op.input("inp", flow, TestingSource([1, 2, 3])), lambda x: 2 * x), TestingSink(out))
    cluster_main(flow, _free_addresses(1), 0)
    assert sorted(out) == [2, 4, 6]


def test_cluster_arguments_are_checked():
    with pytest.raises(ValueError, match="from 0 to 1"):
        cluster_main(small_flow(), ["127.0.0.1:2101", "127.0.0.1:2102"], 2)
    with pytest.raises(ValueError, match="'host:port'"):
        cluster_main(small_flow(), ["127.0.0.1"], 0)
    with pytest.raises(TypeError, match="list of 'host:port'"):
        cluster_main(small_flow(), "127.0.0.1:2101", 0)
    with pytest.raises(ValueError, match="worker_count_per_proc"):
        cluster_main(small_flow(), ["127.0.0.1:2101"], 0, worker_count_per_proc=0)
    with pytest.raises(ValueError, match="go together"):
        cli_main(small_flow(), addresses=["127.0.0.1:2101"])


def test_the_command_line_checks_its_cluster_options(tmp_path):
    (tmp_path / "flows_mod.py").write_text("flow = None\n")
    done = riffle_run(tmp_path, "flows_mod:flow", "-p", "2", "-i", "0", "-a", "127.0.0.1:2101")
    assert done.returncode != 0 and "give one or the other" in done.stderr
    done = riffle_run(tmp_path, "flows_mod:flow", "-i", "0")
    assert done.returncode != 0 and "-i needs -a" in done.stderr
    done = riffle_run(tmp_path, "flows_mod:flow", "-i", "2", "-a", "127.0.0.1:2101;127.0.0.1:2102")
    assert done.returncode != 0 and "-i must be from 0 to 1" in done.stderr
    done = riffle_run(tmp_path, "flows_mod:flow", "-p", "0")
    assert done.returncode != 0 and "-p must be at least 1" in done.stderr


# Keyed aggregations that pre-aggregate: each worker folds what it reads and
# sends partial results, not values, to the owner of the key. What crosses is
# then a partial result, made by the user's function, or (count_window) a
# value that could not be folded where it was read.
PARTIALS = '''
import threading, time
from datetime import datetime, timedelta, timezone
import riffle.operators as op
import riffle.operators.windowing as win
from riffle.connectors.files import DirSink
from riffle.dataflow import Dataflow
from riffle.inputs import FixedPartitionedSource, StatefulSourcePartition
from riffle.testing import TestingSource

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEYS = 8


class Held:
    """A running total that holds a lock: pickle refuses it."""
    def __init__(self, total):
        self.total = total
        self.lock = threading.Lock()


def total(x):
    return x.total if isinstance(x, Held) else x


def add(acc, v):
    return Held(total(acc) + total(v))


def at(i):
    return START + timedelta(seconds=i)


def show(v):
    return f"{v[0]}:{total(v[1])}" if isinstance(v, tuple) else str(total(v))


def reduced(kind):
    """Totals of 0..47 by i % 8: every worker's partial totals are Held."""
    flow = Dataflow(kind)
    nums = op.input("inp", flow, TestingSource(range(48), batch_size=8))
    keyed = op.key_on("key", nums, lambda i: str(i % KEYS))
    if kind == "reduce_final":
        out = op.reduce_final("sum", keyed, add)
    elif kind == "reduce_window":
        clock = win.EventClock(at, wait_for_system_duration=timedelta(0))
        windower = win.TumblingWindower(timedelta(seconds=10), START)
        out = win.reduce_window("sum", keyed, clock, windower, add).down
    else:
        # fold_final sends the values; its accumulators stay on the owner.
        out = op.fold_final("sum", keyed, lambda: Held(0), add)
    op.output("out", op.map("fmt", out, lambda kv: (kv[0], f"{kv[0]} {show(kv[1])}")), DirSink("out", 2))
    return flow


class Events(StatefulSourcePartition):
    """Events 0..47, one a second, each holding a lock; with `late`, after a
    pause long enough for their watermark to reach every worker, 8 more at
    times 0..7 s, whose window has closed."""

    def __init__(self, late):
        self.late, self.step, self.due = late, 0, 0.0

    def next_batch(self):
        if self.step == 0:
            self.step, self.due = 1, time.monotonic() + 0.5
            return [(i, threading.Lock()) for i in range(48)]
        if self.step == 1 and self.late:
            if time.monotonic() < self.due:
                return []
            self.step = 2
            return [(i, threading.Lock()) for i in range(KEYS)]
        raise StopIteration()

    def snapshot(self):
        return None


class Source(FixedPartitionedSource):
    def __init__(self, late):
        self.late = late

    def list_parts(self):
        return ["events"]

    def build_part(self, step_id, for_part, resume_state):
        return Events(self.late)


def counted(late=False):
    flow = Dataflow("counted")
    events = op.input("inp", flow, Source(late))
    clock = win.EventClock(lambda e: at(e[0]), wait_for_system_duration=timedelta(0))
    windower = win.TumblingWindower(timedelta(seconds=10), START)
    out = win.count_window("count", events, clock, windower, lambda e: str(e[0] % KEYS))
    op.output("out", op.map("fmt", out.down, lambda kv: (kv[0], f"{kv[0]} {kv[1][0]}:{kv[1][1]}")), DirSink("out", 2))
    op.output("late", op.map("fmt_late", out.late, lambda kv: (kv[0], f"{kv[0]} {kv[1][1][0]}")), DirSink("late", 2))
    return flow
'''


def totals_by_key(window=None):
    """The lines `reduced` writes: `key total`, or `key window:total`."""
    lines = []
    for k in range(8):
        if window is None:
            lines.append(f"{k} {sum(i for i in range(48) if i % 8 == k)}")
        else:
            for w in range(5):
                vs = [i for i in range(10 * w, min(48, 10 * w + 10)) if i % 8 == k]
                if vs:
                    lines.append(f"{k} {w}:{sum(vs)}")
    return sorted(lines)


@pytest.mark.parametrize("kind", ["reduce_final", "reduce_window"])
def test_a_partial_result_pickle_refuses_fails_the_run_naming_the_step(tmp_path, kind):
    (tmp_path / "partials_mod.py").write_text(PARTIALS)
    done = riffle_run(tmp_path, f"partials_mod:reduced({kind!r})", "-p", "2")
    assert done.returncode != 0
    assert 'riffle.RiffleError: step "sum" failed on worker ' in done.stderr, done.stderr
    assert (
        "its accumulator cannot be sent to another process, where the owner of its key "
        "combines it with the other workers' partial results: cannot pickle an accumulator "
        "of type Held: TypeError: cannot pickle '_thread.lock' object"
    ) in done.stderr, done.stderr
    # Chained to pickle's own exception.
    assert "The above exception was the direct cause" in done.stderr
    assert "panicked" not in done.stderr and "bincode" not in done.stderr, done.stderr
    # In one process nothing is encoded: the same flow runs.
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    one = riffle_run(tmp_path, f"partials_mod:reduced({kind!r})", "-w", "2")
    assert one.returncode == 0, one.stderr
    assert read_dir(tmp_path / "out") == totals_by_key(None if kind == "reduce_final" else "w")


def test_an_accumulator_that_stays_with_its_key_is_not_checked(tmp_path):
    # fold_final sends values (ints here) and folds them on the key's owner.
    (tmp_path / "partials_mod.py").write_text(PARTIALS)
    done = riffle_run(tmp_path, "partials_mod:reduced('fold_final')", "-p", "2")
    assert done.returncode == 0, done.stderr
    assert read_dir(tmp_path / "out") == totals_by_key()


def window_counts():
    lines = []
    for k in range(8):
        for w in range(5):
            n = sum(1 for i in range(10 * w, min(48, 10 * w + 10)) if i % 8 == k)
            if n:
                lines.append(f"{k} {w}:{n}")
    return sorted(lines)


def test_count_window_counts_values_pickle_refuses_across_processes(tmp_path):
    # Only counts (or values the owner merely counts) cross: nothing needs pickling.
    (tmp_path / "partials_mod.py").write_text(PARTIALS)
    done = riffle_run(tmp_path, "partials_mod:counted()", "-p", "2")
    assert done.returncode == 0, done.stderr
    assert read_dir(tmp_path / "out") == window_counts()
    assert read_dir(tmp_path / "late") == []


def test_a_late_value_pickle_refuses_fails_the_run_where_it_is_needed(tmp_path):
    # A late value crosses as itself, to be shown on the late stream.
    (tmp_path / "partials_mod.py").write_text(PARTIALS)
    done = riffle_run(tmp_path, "partials_mod:counted(late=True)", "-p", "2")
    assert done.returncode != 0
    assert 'riffle.RiffleError: step "inp" failed on worker ' in done.stderr, done.stderr
    assert (
        'its output cannot be sent to another process for step "count": cannot pickle an item '
        "of type tuple (the lock inside it): TypeError: cannot pickle '_thread.lock' object"
    ) in done.stderr, done.stderr
    assert "The above exception was the direct cause" in done.stderr
    assert "panicked" not in done.stderr and "bincode" not in done.stderr, done.stderr
    # In one process the late values are shown.
    shutil.rmtree(tmp_path / "late", ignore_errors=True)
    one = riffle_run(tmp_path, "partials_mod:counted(late=True)", "-w", "2")
    assert one.returncode == 0, one.stderr
    assert read_dir(tmp_path / "late") == sorted(f"{k} {k}" for k in range(8))
