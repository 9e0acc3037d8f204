"""A chain of trivial Python steps on `riffle.pipeline`: the per-step overhead of the
Python package's pipeline engine, first run and cached run.

The same workload as `riffle bench pipeline` (the Rust engine) and as
bench/flowyml/chain.py (flowyml): step 0 returns 0 and step i returns step i-1's
output plus one, so the last of N steps returns N - 1. Each chain length runs twice
in a fresh project folder under the system's temporary folder (SQLite metadata
store, local artifact folder):

- `first`: the cache is empty, so every step runs and its output is stored and
  recorded;
- `cached`: nothing changed, so every step is a cache hit (checked).

The clock covers `Pipeline.run()` only: planning (each step's code version and
cache key), the engine, and decoding the outputs into the result. Importing the
package and building the steps happen before it. Each phase prints one JSON line
with the fields `riffle bench --json` prints:

    {"workload": "py-pipeline", "workers": 1, "items": N, "seconds", "items_per_s",
     "peak_rss_bytes", "phase": "first"|"cached", "ms_per_step", "cpu_seconds",
     "steps", "cache_hits", "last", "engine"}

`peak_rss_bytes` is the process's peak (VmHWM) during that phase, the interpreter
included; `cpu_seconds` is the CPU time of all the process's threads during the run
(steadier than the wall clock on a busy machine, but blind to waiting). Usage:

    python pipeline.py [--steps 100 1000]

`riffle bench py-pipeline` runs it; bench/py/pipeline.sh runs it beside flowyml.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version

# Exit code when the package cannot be imported (`riffle bench` tells it apart from
# a failed run), as in workloads.py.
EXIT_NO_PACKAGE = 3


def start():
    return 0


def add_one(x):
    return x + 1


def chain(Pipeline, step, n, project_dir):
    """Steps s0 .. s{n-1}: s0 outputs x0 = 0, s{i} reads x{i-1} and outputs x{i}."""
    pipeline = Pipeline(f"bench-chain-{n}", project_dir=project_dir)
    pipeline.add_step(step(start, outputs=["x0"], name="s0"))
    for i in range(1, n):
        pipeline.add_step(step(add_one, inputs=[f"x{i - 1}"], outputs=[f"x{i}"], name=f"s{i}"))
    return pipeline


def reset_peak_rss():
    """Resets VmHWM, so the next reading is the peak since now (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds():
    """User and system CPU time of the whole process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000], help="chain lengths")
    args = parser.parse_args()
    if any(n < 1 for n in args.steps):
        parser.error(f"--steps: every chain needs at least one step, got {args.steps}")
    try:
        from riffle.pipeline import Pipeline, step
    except ImportError as e:
        print(f"cannot import riffle.pipeline ({e}); install the package: "
              "pip install ./crates/riffle-py", file=sys.stderr)
        sys.exit(EXIT_NO_PACKAGE)
    try:
        engine = f"riffle-py {version('riffle')}"
    except PackageNotFoundError:
        engine = "riffle-py"

    for n in args.steps:
        with tempfile.TemporaryDirectory(prefix="riffle-bench-py-pipeline-") as project:
            pipeline = chain(Pipeline, step, n, project)
            for phase in ("first", "cached"):
                reset_peak_rss()
                cpu_began = cpu_seconds()
                began = time.perf_counter()
                result = pipeline.run()
                seconds = time.perf_counter() - began
                cpu = cpu_seconds() - cpu_began
                last = result[f"x{n - 1}"]
                hits = len(result.cached)
                if last != n - 1:
                    sys.exit(f"the chain of {n} steps returned {last!r}, not {n - 1}")
                if hits != (n if phase == "cached" else 0):
                    sys.exit(f"the {phase} run of the chain of {n} steps had {hits} cache hits")
                print(json.dumps({
                    "workload": "py-pipeline",
                    "workers": 1,
                    "items": n,
                    "seconds": seconds,
                    "items_per_s": n / seconds if seconds > 0 else 0.0,
                    "peak_rss_bytes": peak_rss_bytes(),
                    "phase": phase,
                    "ms_per_step": seconds * 1000.0 / n,
                    "cpu_seconds": cpu,
                    "steps": n,
                    "cache_hits": hits,
                    "last": last,
                    "engine": engine,
                }), flush=True)


if __name__ == "__main__":
    main()
