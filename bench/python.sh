#!/usr/bin/env bash
# Runs the Python workloads (py-stateless, py-wordcount, py-windowed) on the Python
# package `riffle` and on bytewax 0.21.1, side by side in one go, and prints a
# markdown table. Both engines run the same program, bench/py/workloads.py, so their
# flows and user functions are identical; see its docstring for the timing rules.
#
#   bench/python.sh
#
# riffle runs through `riffle bench py-NAME --json -P python=...` (the binary only
# launches the Python program, so a debug build measures the same as a release
# one); bytewax runs `bench/py/workloads.py NAME --engine bytewax` in its venv.
#
# Environment:
#   RIFFLE_BIN        the riffle binary (default target/debug/riffle, else
#                     target/release/riffle; without one, workloads.py is run directly)
#   RIFFLE_PY_BUILD=0 use bench/.venv-py as it is (default: (re)install the package
#                     from crates/riffle-py in release mode, a no-op for cargo when
#                     nothing changed; the first build takes 10-20 minutes on 2 cores)
#   BENCH_WORKLOADS   default "stateless wordcount windowed"
#   BENCH_WORKERS     worker threads of one process (default "1 2")
#   BENCH_PROCESSES   process counts run with 1 worker each beside them (default "2", "" for none;
#                     riffle only where its package has riffle.testing.cluster_main)
#   BENCH_RUNS        runs per workload and count (default 3)
#   BENCH_ITEMS_STATELESS, BENCH_ITEMS_WORDCOUNT, BENCH_ITEMS_WINDOWED
#                     items per run (defaults 4,000,000 / 2,000,000 / 300,000: a few
#                     seconds of bytewax each; the Rust workloads' defaults are
#                     20M / 5M / 1M)
#   BENCH_BATCH       source items per batch, both engines (default 1000)
#   BENCH_PARTITIONS  partitions of the windowed input (default: one per worker of
#                     each run, workers x processes; 1 is the single ordered
#                     partition of the figures before 2026-12-07 15:00 UTC)
#
# Beside them, `workloads.py NAME --engine python` times the same user functions in
# a plain loop with no engine (1 worker): the ceiling of anything that calls them on
# one core of this interpreter.
#   BENCH_TIMEOUT     seconds allowed for one command, all its runs (default 1200)
#
# Every JSON line (one per run) is appended to bench/results/<UTC date>.jsonl; the
# report printed at the end is also written to bench/results/<UTC date>-<time>-py.md.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

workloads="${BENCH_WORKLOADS:-stateless wordcount windowed}"
workers_list="${BENCH_WORKERS:-1 2}"
processes_list="${BENCH_PROCESSES-2}"
runs="${BENCH_RUNS:-3}"
batch="${BENCH_BATCH:-1000}"
limit="${BENCH_TIMEOUT:-1200}"
partitions="${BENCH_PARTITIONS:-}"
venv="bench/.venv-py"
py="$venv/bin/python"

items_for() {
    case "$1" in
        stateless) echo "${BENCH_ITEMS_STATELESS:-4000000}" ;;
        wordcount) echo "${BENCH_ITEMS_WORDCOUNT:-2000000}" ;;
        windowed) echo "${BENCH_ITEMS_WINDOWED:-300000}" ;;
    esac
}

mkdir -p bench/results
stamp_day="$(date -u +%Y-%m-%d)"
stamp_time="$(date -u +%H%M%S)"
results="bench/results/${stamp_day}.jsonl"
report="bench/results/${stamp_day}-${stamp_time}-py.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- riffle's venv: the package in release mode ----------------------------------
if [ ! -x "$py" ]; then
    if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
    echo "creating $venv with $($base --version 2>&1)" >&2
    "$base" -m venv "$venv" || exit 1
fi
if ! "$py" -c 'import importlib.metadata as m; assert m.version("maturin") == "1.16.0"' 2>/dev/null; then
    "$py" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0" || exit 1
fi
if [ "${RIFFLE_PY_BUILD:-1}" != "0" ]; then
    echo "installing crates/riffle-py into $venv (release build)" >&2
    # maturin's PEP 517 build is a release build unless told otherwise;
    # --no-build-isolation: the venv's maturin, nothing downloaded.
    if ! PATH="$root/$venv/bin:$PATH" "$py" -m pip install --quiet --disable-pip-version-check \
        --no-build-isolation --no-deps --force-reinstall ./crates/riffle-py >"$work/build.log" 2>&1; then
        echo "building the riffle package failed; its last lines:" >&2
        tail -n 20 "$work/build.log" >&2
        exit 1
    fi
fi
if ! "$py" -c 'import riffle._riffle' 2>/dev/null; then
    echo "$py cannot import riffle; run without RIFFLE_PY_BUILD=0" >&2
    exit 1
fi
riffle_multiprocess=0
if "$py" -c 'import riffle.testing as t; t.cluster_main' 2>/dev/null; then
    riffle_multiprocess=1
fi

riffle="${RIFFLE_BIN:-}"
if [ -z "$riffle" ]; then
    for candidate in target/debug/riffle target/release/riffle; do
        if [ -x "$candidate" ]; then riffle="$candidate"; break; fi
    done
fi
if [ -n "$riffle" ] && [ ! -x "$riffle" ]; then
    echo "RIFFLE_BIN=$riffle is not an executable" >&2
    exit 1
fi

# --- bytewax's venv ----------------------------------------------------------------
if ! bash bench/bytewax/setup.sh >&2; then
    echo "bytewax setup failed" >&2
    exit 1
fi
bytewax_py="bench/.venv-bytewax/bin/python"

# Runs one command; keeps the JSON lines of its stdout in $1.
run_into() {
    local into="$1"
    shift
    echo "+ $*" >&2
    local rc=0
    timeout "$limit" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
    grep '^{' "$work/out.txt" >>"$into" || true
    if [ "$rc" != 0 ]; then
        echo "  failed (exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${limit}s")); its last lines:" >&2
        tail -n 10 "$work/err.txt" "$work/out.txt" >&2
    fi
}

# One engine, one workload, one shape (workers per process, processes).
run_riffle() {
    local name="$1" workers="$2" processes="$3" items="$4"
    local part_args=()
    [ -n "$partitions" ] && [ "$name" = windowed ] && part_args=(--partitions "$partitions")
    if [ -n "$riffle" ]; then
        local extra=()
        [ "$processes" -gt 1 ] && extra=(-P "processes=$processes")
        [ -n "$partitions" ] && [ "$name" = windowed ] && extra+=(-P "partitions=$partitions")
        run_into "$work/riffle.jsonl" "$riffle" bench "py-$name" --workers "$workers" \
            --runs "$runs" --items "$items" --json -P "python=$py" -P "batch=$batch" "${extra[@]}"
    else
        run_into "$work/riffle.jsonl" "$py" bench/py/workloads.py "$name" --engine riffle \
            --workers "$workers" --processes "$processes" --runs "$runs" --items "$items" \
            --batch-size "$batch" "${part_args[@]}"
    fi
}

run_bytewax() {
    local name="$1" workers="$2" processes="$3" items="$4"
    local part_args=()
    [ -n "$partitions" ] && [ "$name" = windowed ] && part_args=(--partitions "$partitions")
    run_into "$work/bytewax.jsonl" "$bytewax_py" bench/py/workloads.py "$name" --engine bytewax \
        --workers "$workers" --processes "$processes" --runs "$runs" --items "$items" \
        --batch-size "$batch" "${part_args[@]}"
}

for name in $workloads; do
    items="$(items_for "$name")"
    # The ceiling: the same functions in a plain loop, no engine (1 worker).
    run_into "$work/plain.jsonl" "$py" bench/py/workloads.py "$name" --engine python \
        --runs "$runs" --items "$items" --batch-size "$batch"
    for workers in $workers_list; do
        run_riffle "$name" "$workers" 1 "$items"
        run_bytewax "$name" "$workers" 1 "$items"
    done
    for processes in $processes_list; do
        if [ "$riffle_multiprocess" = 1 ]; then
            run_riffle "$name" 1 "$processes" "$items"
        fi
        run_bytewax "$name" 1 "$processes" "$items"
    done
done
touch "$work/riffle.jsonl" "$work/bytewax.jsonl" "$work/plain.jsonl"

# --- aggregation ---------------------------------------------------------------------
BYTEWAX_PY="$bytewax_py" RIFFLE_PY="$py" RIFFLE_MULTIPROCESS="$riffle_multiprocess" \
python3 - "$work/riffle.jsonl" "$work/bytewax.jsonl" "$work/plain.jsonl" "$results" "$report" \
    "$workloads" "$workers_list" "$processes_list" "$runs" "$batch" <<'PY'
import json
import os
import statistics
import subprocess
import sys

(riffle_path, bytewax_path, plain_path, results_path, report_path, workloads, workers_list,
 processes_list, runs, batch) = sys.argv[1:]
workloads = workloads.split()
shapes = [(int(w), 1) for w in workers_list.split()]
shapes += [(1, int(p)) for p in processes_list.split() if int(p) > 1]


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "workload" in row:
                rows.append(row)
    return rows


riffle_rows, bytewax_rows, plain_rows = read(riffle_path), read(bytewax_path), read(plain_path)
with open(results_path, "a") as f:
    for row in riffle_rows + bytewax_rows + plain_rows:
        f.write(json.dumps(row) + "\n")


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def first_line(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def summary(rows, name, workers, processes):
    """Median items/s, highest peak RSS (MiB), median items per CPU-second, median
    seconds, runs, engine."""
    mine = [
        r for r in rows
        if r.get("workload") == f"py-{name}"
        and r.get("workers") == workers * processes
        and r.get("processes", 1) == processes
    ]
    if not mine:
        return None
    return (
        statistics.median(float(r["items_per_s"]) for r in mine),
        max(int(r["peak_rss_bytes"]) for r in mine) / 2**20,
        statistics.median(
            float(r["items"]) / float(r["cpu_seconds"]) if r.get("cpu_seconds") else 0.0
            for r in mine
        ),
        statistics.median(float(r["seconds"]) for r in mine),
        len(mine),
        mine[0].get("engine", "?"),
    )


engines = {}
for rows in (riffle_rows, bytewax_rows):
    if rows:
        engines[rows[0]["engine"].split()[0]] = rows[0]["engine"]
mem_kb = first_line("/proc/meminfo", "MemTotal").split()[0]
mem = f"{int(mem_kb) / 2**20:.1f} GiB" if mem_kb.isdigit() else "unknown"
out = [
    "## Machine",
    "",
    f"- cores (nproc): {cmd('nproc')}; CPU: {first_line('/proc/cpuinfo', 'model name')}; memory: {mem}",
    f"- load average at the end (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    f"- riffle: {engines.get('riffle-py', 'not run')} ({cmd(os.environ['RIFFLE_PY'], '--version')}, release build)",
    f"- bytewax: {engines.get('bytewax', 'not run')} ({cmd(os.environ['BYTEWAX_PY'], '--version')})",
    f"- riffle on several processes: {'yes' if os.environ['RIFFLE_MULTIPROCESS'] == '1' else 'not supported by this package'}",
    "",
    f"## Results (runs each: {runs}, batch {batch}; medians, highest peak RSS)",
    "",
    "Items per CPU-second is items / cpu_seconds (all threads of the run's processes): on a",
    "shared machine it shows the work done per core-second where wall-clock speed shows waits",
    "for a core too; with several workers it also counts their spinning and GIL waits.",
    "",
    "| workload | items | workers x processes | riffle items/s | riffle items/CPU-s | riffle RSS MiB "
    "| bytewax items/s | bytewax items/CPU-s | bytewax RSS MiB | riffle/bytewax | per CPU-s |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def cell(s, i, fmt):
    return "n/a" if s is None else format(s[i], fmt)


for name in workloads:
    for workers, processes in shapes:
        r = summary(riffle_rows, name, workers, processes)
        b = summary(bytewax_rows, name, workers, processes)
        if r is None and b is None:
            continue
        items = next(
            (row["items"] for row in riffle_rows + bytewax_rows if row["workload"] == f"py-{name}"), "?"
        )
        ratio = f"{r[0] / b[0]:.2f}x" if r and b else "n/a"
        cpu_ratio = f"{r[2] / b[2]:.2f}x" if r and b and b[2] else "n/a"
        out.append(
            f"| py-{name} | {items:,} | {workers} x {processes} "
            f"| {cell(r, 0, ',.0f')} | {cell(r, 2, ',.0f')} | {cell(r, 1, '.1f')} "
            f"| {cell(b, 0, ',.0f')} | {cell(b, 2, ',.0f')} | {cell(b, 1, '.1f')} | {ratio} | {cpu_ratio} |"
        )

out += [
    "",
    "## The ceiling: the same Python functions in a plain loop, no engine (1 worker)",
    "",
    "| workload | plain loop items/s | per CPU-s | riffle 1 x 1 of it | per CPU-s | bytewax 1 x 1 of it | per CPU-s |",
    "|---|---:|---:|---:|---:|---:|---:|",
]
for name in workloads:
    p = summary(plain_rows, name, 1, 1)
    r = summary(riffle_rows, name, 1, 1)
    b = summary(bytewax_rows, name, 1, 1)
    if p is None:
        continue
    def share(s, i):
        return f"{s[i] / p[i]:.0%}" if s and p[i] else "n/a"

    out.append(
        f"| py-{name} | {p[0]:,.0f} | {p[2]:,.0f} | {share(r, 0)} | {share(r, 2)} "
        f"| {share(b, 0)} | {share(b, 2)} |"
    )

out += [
    "",
    "## Scaling (median items/s against 1 worker x 1 process of the same engine)",
    "",
    "| workload | shape | riffle | bytewax |",
    "|---|---|---:|---:|",
]
for name in workloads:
    for workers, processes in shapes[1:]:
        cells = []
        for rows in (riffle_rows, bytewax_rows):
            base = summary(rows, name, 1, 1)
            this = summary(rows, name, workers, processes)
            cells.append(f"{this[0] / base[0]:.2f}x" if base and this else "n/a")
        out.append(f"| py-{name} | {workers} x {processes} | {cells[0]} | {cells[1]} |")

out += ["", f"Raw lines: {results_path}"]
text = "\n".join(out)
print(text)
with open(report_path, "w") as f:
    f.write(text + "\n")
PY
