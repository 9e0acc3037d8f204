"""Riffle's streaming benchmark workloads, written for bytewax 0.21.1.

Each workload is the same program `riffle bench NAME` runs, and every measured run
prints one JSON line with the same fields Riffle prints:

    {"workload", "workers", "items", "seconds", "items_per_s", "peak_rss_bytes",
     "engine": "bytewax 0.21.1", ...checksum fields}

Usage:

    python workloads.py NAME --workers N --runs K [--items M] [--source dynamic|testing]
                        [--batch-size B] [--processes P]
    python workloads.py wordcount --show-input 3

Every measured run happens in a fresh child process (this same script with
`--single-run`), so `peak_rss_bytes` is the peak of that run alone.

Timing: the clock starts just before `run_main` / `cluster_main` and stops just after
it returns. Input generation (the wordcount lines, the windowed events) happens before
the clock starts; building the Dataflow object also happens before it.

Workers: 1 worker runs with `bytewax.testing.run_main(flow)`; N > 1 workers run as N
threads of this one process with `bytewax.testing.cluster_main(flow, [], 0,
worker_count_per_proc=N)`. Those threads share one Python interpreter (and its GIL),
so Python-bound steps do not speed up with more workers in one process.

`--processes P` runs each measured run as P processes over loopback TCP instead
(`cluster_main` with addresses), each with `--workers` threads.

Input: items enter in batches of BATCH_SIZE = 1000 (`--batch-size`). The default
source (`--source dynamic`) is a `DynamicSource` giving each worker its own contiguous
share of the input, so every worker reads, maps and filters; `--source testing`
instead uses `bytewax.testing.TestingSource(..., batch_size=1000)`, one partition:
one worker reads everything and the others only see what keyed steps send them.
The `windowed` workload always uses `TestingSource` (see `build_windowed`).
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
from importlib.metadata import version

ENGINE = f"bytewax {version('bytewax')}"

# Items per batch handed to the dataflow by every source (`--batch-size`). For
# wordcount an item of the source is a line of 10 words, so a batch is 10,000 words.
# bytewax's throughput depends on it: count_final pre-aggregates each batch before
# its keyed state, so larger batches mean fewer per-key state updates.
BATCH_SIZE = 1000

DEFAULT_ITEMS = {
    "stateless": 20_000_000,
    "wordcount": 5_000_000,
    "windowed": 1_000_000,
}

# ---------------------------------------------------------------------------
# Input generators (shared with Riffle: the Rust side produces the same items).

MASK64 = (1 << 64) - 1
WORDCOUNT_SEED = 0x5EED
WORDS_PER_LINE = 10
VOCABULARY = 10_000


class SplitMix64:
    """The splitmix64 generator; all arithmetic is modulo 2**64."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def wordcount_lines(words: int, seed: int = WORDCOUNT_SEED) -> list[str]:
    """`words` words "word<idx>" with idx = next() % 10000, 10 words per line."""
    rng = SplitMix64(seed)
    names = [f"word{i}" for i in range(VOCABULARY)]
    lines = []
    for start in range(0, words, WORDS_PER_LINE):
        count = min(WORDS_PER_LINE, words - start)
        lines.append(" ".join(names[rng.next() % VOCABULARY] for _ in range(count)))
    return lines


WINDOW_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
WINDOW_KEYS = 1000
WINDOW_LENGTH = timedelta(seconds=10)


def windowed_events(events: int) -> list[tuple[str, datetime]]:
    """Event i: key str(i % 1000), event time WINDOW_START + i milliseconds."""
    keys = [str(k) for k in range(WINDOW_KEYS)]
    ms = timedelta(milliseconds=1)
    return [(keys[i % WINDOW_KEYS], WINDOW_START + i * ms) for i in range(events)]


# ---------------------------------------------------------------------------
# Sources.


def make_source(kind: str, items, length: int):
    """A source over `items` (a range or a list), in batches of BATCH_SIZE.

    `dynamic`: each worker reads the contiguous slice
    [length * w / n, length * (w + 1) / n) of the items; `testing`: one partition
    holding all of them (bytewax's TestingSource).
    """
    from bytewax.inputs import DynamicSource, StatelessSourcePartition
    from bytewax.testing import TestingSource

    if kind == "testing":
        return TestingSource(items, batch_size=BATCH_SIZE)

    class _SlicePartition(StatelessSourcePartition):
        def __init__(self, start: int, end: int) -> None:
            self.pos = start
            self.end = end

        def next_batch(self):
            if self.pos >= self.end:
                raise StopIteration()
            stop = min(self.pos + BATCH_SIZE, self.end)
            batch = items[self.pos : stop]
            if isinstance(batch, range):
                batch = list(batch)
            self.pos = stop
            return batch

    class _SliceSource(DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            start = length * worker_index // worker_count
            end = length * (worker_index + 1) // worker_count
            return _SlicePartition(start, end)

    return _SliceSource()


# ---------------------------------------------------------------------------
# Workloads: build() returns the flow and the lists its sinks fill; check() turns
# those lists into the checksum fields (and fails on a wrong result).


def build_stateless(items: int, source: str):
    """0..items -> map x*2 -> filter x%3==0 -> count of what passes."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink

    out: list = []
    flow = Dataflow("stateless")
    nums = op.input("inp", flow, make_source(source, range(items), items))
    doubled = op.map("double", nums, lambda x: x * 2)
    kept = op.filter("div3", doubled, lambda x: x % 3 == 0)
    # One constant key: a single count of everything that passed.
    counted = op.count_final("count", kept, lambda _x: "passed")
    op.output("out", counted, TestingSink(out))

    return flow, {"out": out}


def check_stateless(items: int, sinks: dict) -> dict:
    count = sum(c for _k, c in sinks["out"])
    expected = (items + 2) // 3
    if count != expected:
        raise SystemExit(f"stateless: counted {count}, expected {expected}")
    return {"checksum": count}


def build_wordcount(items: int, source: str):
    """Lines of words -> flat_map(split) -> count_final per word -> collect."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink

    lines = wordcount_lines(items)  # generated before the clock starts
    out: list = []
    flow = Dataflow("wordcount")
    inp = op.input("inp", flow, make_source(source, lines, len(lines)))
    words = op.flat_map("split", inp, str.split)
    counts = op.count_final("count", words, lambda w: w)
    op.output("out", counts, TestingSink(out))

    return flow, {"out": out}


def check_wordcount(items: int, sinks: dict) -> dict:
    out = sinks["out"]
    total = sum(c for _w, c in out)
    if total != items:
        raise SystemExit(f"wordcount: counted {total} words, expected {items}")
    top = sorted(out, key=lambda wc: (-wc[1], wc[0]))[:3]
    return {"distinct": len(out), "top": [[w, c] for w, c in top]}


def build_windowed(items: int, source: str):
    """Events keyed i % 1000 -> tumbling 10 s event-time windows -> count per key.

    Always fed through TestingSource (one partition, event-time order): with
    `wait_for_system_duration` 0, items from two partitions interleaving on one
    worker would be late for each other and dropped.
    """
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource

    events = windowed_events(items)  # generated before the clock starts
    out: list = []
    late: list = []
    flow = Dataflow("windowed")
    inp = op.input("inp", flow, TestingSource(events, batch_size=BATCH_SIZE))
    clock = win.EventClock(lambda e: e[1], wait_for_system_duration=timedelta(0))
    windower = win.TumblingWindower(length=WINDOW_LENGTH, align_to=WINDOW_START)
    counted = win.count_window("count", inp, clock, windower, lambda e: e[0])
    op.output("out", counted.down, TestingSink(out))
    op.output("late", counted.late, TestingSink(late))

    return flow, {"out": out, "late": late}


def check_windowed(items: int, sinks: dict) -> dict:
    out = sinks["out"]
    total = sum(c for _k, (_w, c) in out)
    return {"windows": len(out), "counted": total, "late": len(sinks["late"])}


# name -> (build(items, source) -> (flow, sinks), check(items, sinks) -> checksum fields)
WORKLOADS = {
    "stateless": (build_stateless, check_stateless),
    "wordcount": (build_wordcount, check_wordcount),
    "windowed": (build_windowed, check_windowed),
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
    """One measured run in this process: the figures, and the sinks if clustered."""
    from bytewax.testing import cluster_main, run_main

    build, check = WORKLOADS[args.name]
    flow, sinks = build(items, args.source)
    if args.processes > 1:
        # Input is generated on every process before this point; start the clocks
        # together so no process times its peers' start-up.
        wait_for_peers(args.barrier, args.proc_id, args.processes)
    # The clock covers only the dataflow's execution; input was generated above.
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    if args.processes > 1:
        addresses = args.addresses.split(",")
        cluster_main(flow, addresses, args.proc_id, worker_count_per_proc=args.workers)
    elif args.workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=args.workers)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    report = {
        "workload": args.name,
        "workers": args.workers * args.processes,
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds if seconds > 0 else 0.0,
        "peak_rss_bytes": peak_rss_bytes(),
        "engine": ENGINE,
        # CPU time (user + system, all threads) the run used: on a shared machine it
        # shows how much of the wall-clock time the run actually had a core.
        "cpu_seconds": cpu,
    }
    if args.processes > 1:
        report["processes"] = args.processes
    if args.source != "dynamic" and args.name != "windowed":
        report["source"] = args.source
    if BATCH_SIZE != 1000:
        report["batch_size"] = BATCH_SIZE
    if args.processes > 1:
        # The checksum needs every process's share; the parent merges them.
        report["sinks"] = {k: v for k, v in sinks.items()}
    else:
        report.update(check(items, sinks))
    return report


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
        "--workers",
        str(args.workers),
        "--items",
        str(items),
        "--source",
        args.source,
        "--batch-size",
        str(args.batch_size),
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
    if any(child.returncode != 0 for child in children):
        codes = [child.returncode for child in children]
        print(f"{args.name}: a process failed, exit codes {codes}", file=sys.stderr)
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
    parser.add_argument("--workers", type=int, default=1, help="worker threads per process")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument(
        "--source",
        choices=["dynamic", "testing"],
        default="dynamic",
        help="dynamic: one input slice per worker; testing: TestingSource, one partition",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="items per input batch (default 1000)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run as this many processes over loopback TCP, each with --workers threads",
    )
    parser.add_argument(
        "--show-input",
        type=int,
        metavar="LINES",
        default=None,
        help="print the first LINES lines of the workload's input and exit",
    )
    parser.add_argument("--single-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proc-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    items = args.items if args.items is not None else DEFAULT_ITEMS[args.name]
    if args.workers < 1 or args.processes < 1:
        parser.error("--workers and --processes must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    global BATCH_SIZE
    BATCH_SIZE = args.batch_size

    if args.show_input is not None:
        shown = args.show_input
        if args.name == "wordcount":
            lines = wordcount_lines(min(items, shown * WORDS_PER_LINE))
        elif args.name == "windowed":
            lines = [f"{k} {t.isoformat()}" for k, t in windowed_events(min(items, shown))]
        else:
            lines = [str(i) for i in range(min(items, shown))]
        for line in lines[:shown]:
            print(line)
        return 0

    if args.single_run:
        report = single_run(args, items)
        print(json.dumps(report, default=str), flush=True)
        return 0

    # One fresh child process (or set of processes) per measured run, so each peak
    # RSS is that run's own.
    for _ in range(max(1, args.runs)):
        if args.processes > 1:
            report = clustered_run(args, items)
            if report is None:
                return 1
            print(json.dumps(report), flush=True)
            continue
        child = subprocess.run(child_command(args, items), stdout=subprocess.PIPE, text=True)
        if child.returncode != 0:
            print(f"{args.name}: run failed with exit code {child.returncode}", file=sys.stderr)
            return child.returncode or 1
        sys.stdout.write(child.stdout)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
