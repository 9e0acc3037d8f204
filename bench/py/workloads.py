"""Riffle's streaming workloads as Python dataflows, run on riffle or on bytewax.

The same program builds each workload with the bytewax-shaped API of the Python
package `riffle` (`riffle.dataflow`, `riffle.operators`, `riffle.testing`) or with
bytewax 0.21.1's own modules (`--engine bytewax`): one source text for both, so the
two engines run identical flows, with identical user functions, written in Python
the way a bytewax user writes them. `riffle bench py-NAME` runs it with
`--engine riffle`; bench/python.sh runs it on both.

Every measured run prints one JSON line with the fields `riffle bench --json` prints:

    {"workload": "py-NAME", "workers", "items", "seconds", "items_per_s",
     "peak_rss_bytes", "engine", "cpu_seconds", "batch_size", ...checksum fields}

Usage:

    python workloads.py NAME [--engine riffle|bytewax|python] [--workers N] [--runs K]
                        [--items M] [--batch-size B] [--processes P] [--partitions P]

`--engine python` runs no engine: the same user functions over the same input in a
plain loop with a dict for the counts (1 worker), the ceiling of any engine that
calls them on one core of this interpreter (see PLAIN).

The workloads (defaults as the Rust ones of `riffle bench NAME`):

- `stateless` (20,000,000 items): 0..N -> `map(lambda x: x * 2)` ->
  `filter(lambda x: x % 3 == 0)` -> `count_final` with one constant key.
- `wordcount` (5,000,000 words): lines of 10 words "word<n>", n = splitmix64(k) %
  10000 with seed 0x5EED (the Rust generator's words, in its order) ->
  `flat_map(str.split)` -> `count_final(lambda w: w)`.
- `windowed` (1,000,000 events): event i has key str(i % 1000) and time
  2026-01-01T00:00:00Z + i ms -> `count_window` keyed by `lambda e: e[0]` with an
  `EventClock(lambda e: e[1], wait 0)` and 10-second `TumblingWindower`s aligned
  to that start. The events come from `--partitions P` partitions (default: one
  per worker of the run, so every worker reads its own), partition p holding
  events p, p + P, p + 2P, ...: every partition moves through event time at the
  same pace, and the windows are those of one partition (the shape of the Rust
  `riffle bench windowed -P partitions=P`).

The rules, the same for every engine:

- Every measured run happens in a fresh child process (this script with
  `--single-run`), so `peak_rss_bytes` (VmHWM) is that run's own peak; it includes
  the interpreter and the input generated before the clock.
- The clock starts just before the run call and stops when it returns; input
  generation and building the Dataflow happen before it.
- 1 worker: `run_main(flow)`. N workers in one process: riffle's
  `cli_main(flow, workers_per_process=N)`, bytewax's `cluster_main(flow, [], 0,
  worker_count_per_proc=N)`. `--processes P`: P processes over loopback TCP with
  `cluster_main(flow, addresses, i, worker_count_per_proc=N)` (riffle only where
  its package has `riffle.testing.cluster_main`).
- stateless and wordcount read through a `DynamicSource` giving each worker its own
  contiguous slice, `--batch-size` source items at a time (a wordcount item is a
  line of 10 words); windowed reads a `FixedPartitionedSource` of `--partitions`
  partitions, each in event-time order, `--batch-size` events at a time (riffle
  keeps a watermark per partition, bytewax one per key, and each key's events
  are in one partition when P divides 1000, so with a zero wait no event is late
  on either engine; `--partitions 1` is the one ordered partition of earlier
  figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace

DEFAULT_ITEMS = {
    "stateless": 20_000_000,
    "wordcount": 5_000_000,
    "windowed": 1_000_000,
}

# Exit code when the engine's package cannot be imported (`riffle bench` tells it
# apart from a failed run).
EXIT_NO_PACKAGE = 3


# ---------------------------------------------------------------------------
# The engine: the same names from riffle's modules or bytewax's.


def load_engine(name: str) -> SimpleNamespace:
    """The modules and functions a workload needs, from `riffle` or `bytewax`
    (`python`: no engine, the plain loop of PLAIN)."""
    if name == "python":
        return SimpleNamespace(name=name, label=f"python {sys.version.split()[0]} plain loop")
    try:
        if name == "riffle":
            import riffle.operators as op
            import riffle.operators.windowing as win
            import riffle.testing as testing
            from riffle.dataflow import Dataflow
            from riffle.inputs import (
                DynamicSource,
                FixedPartitionedSource,
                StatefulSourcePartition,
                StatelessSourcePartition,
            )
            from riffle.run import cli_main

            def run_workers(flow, workers):
                cli_main(flow, workers_per_process=workers)

            package = "riffle"
        else:
            import bytewax.operators as op
            import bytewax.operators.windowing as win
            import bytewax.testing as testing
            from bytewax.dataflow import Dataflow
            from bytewax.inputs import (
                DynamicSource,
                FixedPartitionedSource,
                StatefulSourcePartition,
                StatelessSourcePartition,
            )

            def run_workers(flow, workers):
                testing.cluster_main(flow, [], 0, worker_count_per_proc=workers)

            package = "bytewax"
    except ImportError as e:
        hint = (
            "install it with `pip install ./crates/riffle-py` (from the repository root)"
            if name == "riffle"
            else "make its venv with `bash bench/bytewax/setup.sh`"
        )
        print(
            f"workloads.py: {sys.executable} cannot import the `{name}` package ({e}); {hint}",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_PACKAGE)
    try:
        engine_version = version(package)
    except PackageNotFoundError:
        engine_version = "unknown"
    return SimpleNamespace(
        name=name,
        label=f"{name}-py {engine_version}" if name == "riffle" else f"bytewax {engine_version}",
        op=op,
        win=win,
        Dataflow=Dataflow,
        TestingSource=testing.TestingSource,
        TestingSink=testing.TestingSink,
        DynamicSource=DynamicSource,
        StatelessSourcePartition=StatelessSourcePartition,
        FixedPartitionedSource=FixedPartitionedSource,
        StatefulSourcePartition=StatefulSourcePartition,
        run_main=testing.run_main,
        run_workers=run_workers,
        cluster_main=getattr(testing, "cluster_main", None),
    )


# ---------------------------------------------------------------------------
# Input generators: the items of the Rust workloads (crates/riffle-cli/src/bench/
# dataflow.rs), the same words in the same order.

MASK64 = (1 << 64) - 1
WORDCOUNT_SEED = 0x5EED
WORDS_PER_LINE = 10
VOCABULARY = 10_000


def wordcount_lines(words: int) -> list[str]:
    """`words` words "word<n>", n = splitmix64(k) % 10000, 10 words a line."""
    names = [f"word{i}" for i in range(VOCABULARY)]
    state = WORDCOUNT_SEED
    lines = []
    for start in range(0, words, WORDS_PER_LINE):
        picked = []
        for _ in range(min(WORDS_PER_LINE, words - start)):
            state = (state + 0x9E3779B97F4A7C15) & MASK64
            z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            picked.append(names[(z ^ (z >> 31)) % VOCABULARY])
        lines.append(" ".join(picked))
    return lines


WINDOW_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
WINDOW_KEYS = 1000
WINDOW_LENGTH = timedelta(seconds=10)


def windowed_events(events: int) -> list[tuple[str, datetime]]:
    """Event i: key str(i % 1000), time WINDOW_START + i milliseconds."""
    keys = [str(k) for k in range(WINDOW_KEYS)]
    ms = timedelta(milliseconds=1)
    return [(keys[i % WINDOW_KEYS], WINDOW_START + i * ms) for i in range(events)]


def windowed_counts(events: int) -> dict:
    """The count of every (key, window id) of `windowed_events(events)`."""
    per_window = WINDOW_LENGTH // timedelta(milliseconds=1)
    counts = {}
    for w in range(-(-events // per_window)):
        n = min(events, (w + 1) * per_window) - w * per_window
        for k in range(min(WINDOW_KEYS, n)):
            counts[(str(k), w)] = n // WINDOW_KEYS + (1 if k < n % WINDOW_KEYS else 0)
    return counts


def slice_source(engine, items, length: int, batch_size: int):
    """A DynamicSource: worker w of n reads items[length*w//n : length*(w+1)//n]."""

    class SlicePartition(engine.StatelessSourcePartition):
        def __init__(self, start: int, end: int) -> None:
            self.pos = start
            self.end = end

        def next_batch(self):
            if self.pos >= self.end:
                raise StopIteration()
            stop = min(self.pos + batch_size, self.end)
            batch = items[self.pos : stop]
            if isinstance(batch, range):
                batch = list(batch)
            self.pos = stop
            return batch

    class SliceSource(engine.DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            start = length * worker_index // worker_count
            end = length * (worker_index + 1) // worker_count
            return SlicePartition(start, end)

    return SliceSource()


def interleaved_source(engine, items: list, partitions: int, batch_size: int):
    """A FixedPartitionedSource of `partitions` partitions: partition p reads
    items[p], items[p + partitions], ... in that order, `batch_size` at a time."""

    class StridePartition(engine.StatefulSourcePartition):
        def __init__(self, first: int, resume_state) -> None:
            self.pos = first if resume_state is None else resume_state

        def next_batch(self):
            if self.pos >= len(items):
                raise StopIteration()
            stop = self.pos + batch_size * partitions
            batch = items[self.pos : stop : partitions]
            self.pos = stop
            return batch

        def snapshot(self):
            return self.pos

    class StrideSource(engine.FixedPartitionedSource):
        def list_parts(self):
            # Zero-padded: sorted names are in partition order.
            return [f"part{p:04d}" for p in range(partitions)]

        def build_part(self, step_id, for_part, resume_state):
            return StridePartition(int(for_part[len("part") :]), resume_state)

    return StrideSource()


# ---------------------------------------------------------------------------
# Workloads: build(engine, items, batch_size, partitions) -> (flow, sinks);
# check(items, sinks) -> checksum fields, or SystemExit on a wrong result.
# `partitions` is the windowed input's (the others give each worker a slice).


def build_stateless(e, items: int, batch_size: int, partitions: int):
    out: list = []
    flow = e.Dataflow("py-stateless")
    nums = e.op.input("inp", flow, slice_source(e, range(items), items, batch_size))
    doubled = e.op.map("double", nums, lambda x: x * 2)
    kept = e.op.filter("div3", doubled, lambda x: x % 3 == 0)
    counted = e.op.count_final("count", kept, lambda _x: "passed")
    e.op.output("out", counted, e.TestingSink(out))
    return flow, {"out": out}


def check_stateless(items: int, sinks: dict) -> dict:
    count = sum(c for _k, c in sinks["out"])
    expected = (items + 2) // 3
    if count != expected:
        raise SystemExit(f"py-stateless: counted {count}, expected {expected}")
    return {"checksum": count}


def build_wordcount(e, items: int, batch_size: int, partitions: int):
    lines = wordcount_lines(items)
    out: list = []
    flow = e.Dataflow("py-wordcount")
    inp = e.op.input("inp", flow, slice_source(e, lines, len(lines), batch_size))
    words = e.op.flat_map("split", inp, str.split)
    counts = e.op.count_final("count", words, lambda w: w)
    e.op.output("out", counts, e.TestingSink(out))
    return flow, {"out": out}


def check_wordcount(items: int, sinks: dict) -> dict:
    out = sinks["out"]
    total = sum(c for _w, c in out)
    if total != items:
        raise SystemExit(f"py-wordcount: counted {total} words, expected {items}")
    top = sorted(out, key=lambda wc: (-wc[1], wc[0]))[:3]
    return {"distinct": len(out), "top": [[w, c] for w, c in top]}


def build_windowed(e, items: int, batch_size: int, partitions: int):
    events = windowed_events(items)
    out: list = []
    late: list = []
    flow = e.Dataflow("py-windowed")
    inp = e.op.input("inp", flow, interleaved_source(e, events, partitions, batch_size))
    clock = e.win.EventClock(lambda ev: ev[1], wait_for_system_duration=timedelta(0))
    windower = e.win.TumblingWindower(length=WINDOW_LENGTH, align_to=WINDOW_START)
    counted = e.win.count_window("count", inp, clock, windower, lambda ev: ev[0])
    e.op.output("out", counted.down, e.TestingSink(out))
    e.op.output("late", counted.late, e.TestingSink(late))
    return flow, {"out": out, "late": late}


def check_windowed(items: int, sinks: dict) -> dict:
    counted = sum(c for _k, (_w, c) in sinks["out"])
    late = len(sinks["late"])
    if counted + late != items:
        raise SystemExit(f"py-windowed: counted {counted} and {late} late of {items} events")
    # With none late, every (key, window) once with the count one ordered
    # partition gives it, however many partitions and processes read them.
    got: dict = {}
    for k, (w, c) in sinks["out"]:
        got[(k, w)] = got.get((k, w), 0) + c
    if late == 0 and (len(got) != len(sinks["out"]) or got != windowed_counts(items)):
        raise SystemExit(f"py-windowed: the {len(sinks['out'])} window counts are not those of the events")
    return {"windows": len(sinks["out"]), "counted": counted, "late": late}


WORKLOADS = {
    "stateless": (build_stateless, check_stateless),
    "wordcount": (build_wordcount, check_wordcount),
    "windowed": (build_windowed, check_windowed),
}


# ---------------------------------------------------------------------------
# The baseline (`--engine python`, 1 worker): the same user functions called on
# the same input by a plain loop in one thread, with a dict for the counts. No
# engine can call Python faster than this loop does in one interpreter: it is the
# ceiling of an engine that runs these functions on one core. plain_NAME(items,
# batch_size) generates the input and returns run() -> sinks, for check_NAME.


def plain_stateless(items: int, batch_size: int):
    double = lambda x: x * 2  # noqa: E731 (the flow's functions, as written there)
    div3 = lambda x: x % 3 == 0  # noqa: E731
    key = lambda _x: "passed"  # noqa: E731

    def run() -> dict:
        counts: dict = {}
        for start in range(0, items, batch_size):
            for x in list(range(start, min(start + batch_size, items))):
                y = double(x)
                if div3(y):
                    k = key(y)
                    counts[k] = counts.get(k, 0) + 1
        return {"out": list(counts.items())}

    return run


def plain_wordcount(items: int, batch_size: int):
    lines = wordcount_lines(items)
    key = lambda w: w  # noqa: E731

    def run() -> dict:
        counts: dict = {}
        for line in lines:
            for word in str.split(line):
                k = key(word)
                counts[k] = counts.get(k, 0) + 1
        return {"out": list(counts.items())}

    return run


def plain_windowed(items: int, batch_size: int):
    events = windowed_events(items)
    ts_getter = lambda ev: ev[1]  # noqa: E731
    key = lambda ev: ev[0]  # noqa: E731

    def run() -> dict:
        # Counts per (key, window); no watermark, nothing closes early.
        counts: dict = {}
        for ev in events:
            kw = (key(ev), (ts_getter(ev) - WINDOW_START) // WINDOW_LENGTH)
            counts[kw] = counts.get(kw, 0) + 1
        return {"out": [(k, (w, c)) for (k, w), c in counts.items()], "late": []}

    return run


PLAIN = {
    "stateless": plain_stateless,
    "wordcount": plain_wordcount,
    "windowed": plain_windowed,
}


# ---------------------------------------------------------------------------
# Running.


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, or ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_peers(barrier: str, proc_id: int, processes: int) -> None:
    """Marks this process ready in `barrier` and waits until all peers are."""
    open(os.path.join(barrier, f"ready-{proc_id}"), "w").close()
    deadline = time.monotonic() + 600
    while len(os.listdir(barrier)) < processes:
        if time.monotonic() > deadline:
            raise SystemExit("peers did not become ready within 600 s")
        time.sleep(0.001)


def single_run(args, items: int) -> dict:
    """One measured run in this process."""
    engine = load_engine(args.engine)
    if args.processes > 1 and engine.cluster_main is None:
        print(
            f"workloads.py: this {args.engine} package has no testing.cluster_main: "
            "it cannot run several processes",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_PACKAGE)
    build, check = WORKLOADS[args.name]
    if args.engine == "python":
        run = PLAIN[args.name](items, args.batch_size)
        cpu_start = cpu_seconds()
        start = time.perf_counter()
        sinks = run()
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu_start
        return report_of(args, engine, items, seconds, cpu) | check(items, sinks)
    flow, sinks = build(engine, items, args.batch_size, args.partitions)
    if args.processes > 1:
        # Every process has generated its input: start the clocks together.
        wait_for_peers(args.barrier, args.proc_id, args.processes)
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    if args.processes > 1:
        engine.cluster_main(
            flow, args.addresses.split(","), args.proc_id, worker_count_per_proc=args.workers
        )
    elif args.workers == 1:
        engine.run_main(flow)
    else:
        engine.run_workers(flow, args.workers)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    report = report_of(args, engine, items, seconds, cpu)
    if args.processes > 1:
        report["processes"] = args.processes
        report["sinks"] = sinks  # the parent merges every process's share
    else:
        report.update(check(items, sinks))
    return report


def report_of(args, engine, items: int, seconds: float, cpu: float) -> dict:
    """The fields every run reports."""
    return {
        "workload": f"py-{args.name}",
        "workers": args.workers * args.processes,
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds if seconds > 0 else 0.0,
        "peak_rss_bytes": peak_rss_bytes(),
        "engine": engine.label,
        # CPU time of all threads: well below seconds x workers means the run
        # waited for a core (a shared machine) or for the GIL.
        "cpu_seconds": cpu,
        "batch_size": args.batch_size,
        **({"partitions": args.partitions} if args.name == "windowed" else {}),
    }


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def child_command(args, items: int) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        args.name,
        "--engine",
        args.engine,
        "--workers",
        str(args.workers),
        "--items",
        str(items),
        "--batch-size",
        str(args.batch_size),
        "--partitions",
        str(args.partitions),
        "--single-run",
    ]


def clustered_run(args, items: int) -> dict | None:
    """One run as `args.processes` processes talking over loopback TCP."""
    addresses = ",".join(f"127.0.0.1:{p}" for p in free_ports(args.processes))
    with tempfile.TemporaryDirectory() as barrier:
        children = [
            subprocess.Popen(
                child_command(args, items)
                + [
                    "--processes",
                    str(args.processes),
                    "--proc-id",
                    str(i),
                    "--addresses",
                    addresses,
                    "--barrier",
                    barrier,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(args.processes)
        ]
        outputs = [child.communicate()[0] for child in children]
    codes = [child.returncode for child in children]
    if any(codes):
        print(f"py-{args.name}: a process failed, exit codes {codes}", file=sys.stderr)
        return None
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    merged: dict = {}
    for r in reports:
        for key, values in r.pop("sinks").items():
            merged.setdefault(key, []).extend(values)
    report = dict(reports[0])
    # The run lasts until its slowest process is done; memory is the whole job's.
    report["seconds"] = max(r["seconds"] for r in reports)
    report["items_per_s"] = items / report["seconds"] if report["seconds"] > 0 else 0.0
    report["peak_rss_bytes"] = sum(r["peak_rss_bytes"] for r in reports)
    report["cpu_seconds"] = sum(r["cpu_seconds"] for r in reports)
    report.update(WORKLOADS[args.name][1](items, merged))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(WORKLOADS))
    parser.add_argument(
        "--engine",
        choices=["riffle", "bytewax", "python"],
        default="riffle",
        help="python: no engine, the same functions in a plain loop (1 worker only)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker threads per process")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="source items per batch (default 1000)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run as this many processes over loopback TCP, each with --workers threads",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=0,
        help="windowed: partitions of the input (default: workers x processes)",
    )
    parser.add_argument("--single-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proc-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    items = args.items if args.items is not None else DEFAULT_ITEMS[args.name]
    if args.workers < 1 or args.processes < 1:
        parser.error("--workers and --processes must be at least 1")
    if args.engine == "python" and (args.workers != 1 or args.processes != 1):
        parser.error("--engine python is one plain loop: 1 worker, 1 process")
    if args.batch_size < 1 or items < 1:
        parser.error("--batch-size and --items must be at least 1")
    if args.partitions < 0:
        parser.error("--partitions must be at least 1 (0: one per worker)")
    if args.partitions == 0:
        args.partitions = args.workers * args.processes

    if args.single_run:
        print(json.dumps(single_run(args, items), default=str), flush=True)
        return 0

    # Fail early, in this process, when the package is missing.
    load_engine(args.engine)
    for _ in range(max(1, args.runs)):
        if args.processes > 1:
            report = clustered_run(args, items)
            if report is None:
                return 1
            print(json.dumps(report, default=str), flush=True)
            continue
        child = subprocess.run(child_command(args, items), stdout=subprocess.PIPE, text=True)
        if child.returncode != 0:
            print(f"py-{args.name}: run failed with exit code {child.returncode}", file=sys.stderr)
            return child.returncode
        sys.stdout.write(child.stdout)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
