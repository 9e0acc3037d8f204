#!/usr/bin/env bash
# Runs Riffle's streaming workloads and the same workloads on bytewax, side by side,
# on this machine in one go, and prints a markdown table of the results.
#
#   bench/compare.sh
#
# Environment:
#   RIFFLE_BIN        the riffle binary (default target/release/riffle; built with
#                     `cargo build --release -p riffle-cli` when missing)
#   RIFFLE_BUILD=0    do not build it when missing
#   BENCH_WORKLOADS   workloads to run (default "stateless wordcount")
#   BENCH_WORKERS     worker counts (default "1 2")
#   BENCH_RUNS        runs per workload and worker count (default 3)
#   BENCH_ITEMS       override every workload's item count (default: each one's own)
#   BENCH_TIMEOUT     seconds allowed for one command, all its runs (default 1200)
#   BYTEWAX_BATCH     source items per bytewax batch (default 10000: bytewax's
#                     count_final gets much faster with larger batches, so the peer is
#                     measured near its best)
#
# Every JSON line (one per run) is appended to bench/results/<UTC date>.jsonl; the
# report printed at the end is also written to bench/results/<UTC date>-<time>.md.
# If the riffle binary is missing or fails, bytewax is still run and reported.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

workloads="${BENCH_WORKLOADS:-stateless wordcount}"
workers_list="${BENCH_WORKERS:-1 2}"
runs="${BENCH_RUNS:-3}"
items="${BENCH_ITEMS:-}"
limit="${BENCH_TIMEOUT:-1200}"
riffle="${RIFFLE_BIN:-target/release/riffle}"

mkdir -p bench/results
stamp_day="$(date -u +%Y-%m-%d)"
stamp_time="$(date -u +%H%M%S)"
results="bench/results/${stamp_day}.jsonl"
report="bench/results/${stamp_day}-${stamp_time}.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- riffle ------------------------------------------------------------------
riffle_ok=1
if [ ! -x "$riffle" ]; then
    if [ "${RIFFLE_BIN:-}" = "" ] && [ "${RIFFLE_BUILD:-1}" != "0" ]; then
        echo "building riffle: cargo build --release -p riffle-cli" >&2
        if ! cargo build --release -p riffle-cli >"$work/cargo.log" 2>&1; then
            echo "riffle did not build (last lines of the log follow); running bytewax only" >&2
            tail -n 20 "$work/cargo.log" >&2
        fi
    fi
fi
if [ ! -x "$riffle" ]; then
    echo "no riffle binary at $riffle; running bytewax only" >&2
    riffle_ok=0
fi

# --- bytewax -----------------------------------------------------------------
if ! bash bench/bytewax/setup.sh >&2; then
    echo "bytewax setup failed" >&2
    exit 1
fi
bytewax_py="bench/.venv-bytewax/bin/python"

items_arg=()
if [ -n "$items" ]; then
    items_arg=(--items "$items")
fi

# Runs one command; keeps the JSON lines of its stdout in $1.
run_into() {
    local into="$1"
    shift
    echo "+ $*" >&2
    local out="$work/out.txt"
    local rc=0
    timeout "$limit" "$@" >"$out" 2>"$work/err.txt" || rc=$?
    if [ "$rc" = 0 ]; then
        grep '^{' "$out" >>"$into" || true
        return 0
    fi
    echo "  failed (exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${limit}s")); its last lines:" >&2
    tail -n 10 "$work/err.txt" "$out" >&2
    grep '^{' "$out" >>"$into" || true
    return 1
}

for name in $workloads; do
    for workers in $workers_list; do
        if [ "$riffle_ok" = 1 ]; then
            run_into "$work/riffle.jsonl" "$riffle" bench "$name" --workers "$workers" \
                --runs "$runs" --json "${items_arg[@]}" || true
        fi
        # The Python workloads' program, which names its workloads py-NAME.
        run_into "$work/bytewax.jsonl" "$bytewax_py" bench/py/workloads.py "$name" --engine bytewax \
            --workers "$workers" --runs "$runs" --batch-size "${BYTEWAX_BATCH:-10000}" "${items_arg[@]}" || true
    done
done
if [ -f "$work/bytewax.jsonl" ]; then
    sed -i 's/"workload": "py-/"workload": "/' "$work/bytewax.jsonl"
fi

riffle_version=""
if [ "$riffle_ok" = 1 ]; then
    riffle_version="$("$riffle" --version 2>/dev/null | head -n 1)"
fi
touch "$work/riffle.jsonl" "$work/bytewax.jsonl"

# --- aggregation ---------------------------------------------------------------
RIFFLE_VERSION="$riffle_version" BYTEWAX_PY="$bytewax_py" \
python3 - "$work/riffle.jsonl" "$work/bytewax.jsonl" "$results" "$report" \
    "$workloads" "$workers_list" "$runs" <<'PY'
import json
import os
import platform
import statistics
import subprocess
import sys

riffle_path, bytewax_path, results_path, report_path, workloads, workers_list, runs = sys.argv[1:]
workloads = workloads.split()
workers_list = [int(w) for w in workers_list.split()]


def read(path, engine_default):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict) or "workload" not in row:
                continue
            row.setdefault("engine", engine_default)
            rows.append(row)
    return rows


riffle_version = os.environ.get("RIFFLE_VERSION") or "riffle"
riffle_rows = read(riffle_path, riffle_version)
bytewax_rows = read(bytewax_path, "bytewax")

with open(results_path, "a") as f:
    for row in riffle_rows + bytewax_rows:
        f.write(json.dumps(row) + "\n")


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


cpu_model = ""
try:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
except OSError:
    pass
mem_total = ""
try:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
except OSError:
    pass

bytewax_py = os.environ["BYTEWAX_PY"]
bytewax_version = cmd(
    bytewax_py, "-c", "import importlib.metadata as m; print(m.version('bytewax'))"
)
bytewax_python = cmd(bytewax_py, "--version")

out = []
out.append("## Machine")
out.append("")
out.append(f"- cores (nproc): {cmd('nproc')}")
out.append(f"- CPU: {cpu_model or 'unknown'}")
out.append(f"- memory: {mem_total or 'unknown'}")
out.append(f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
out.append(f"- kernel: {platform.release()}")
out.append("")
out.append("## Versions")
out.append("")
out.append(f"- riffle: {riffle_version if riffle_rows else 'not run'}")
out.append(f"- rustc: {cmd('rustc', '--version') or 'unknown'}")
out.append(f"- bytewax: {bytewax_version or 'unknown'} on {bytewax_python or 'python ?'}")
out.append("")
out.append(f"## Results ({runs} runs each; median items/s, highest peak RSS of the runs)")
out.append("")
out.append(
    "| workload | workers | riffle items/s | riffle peak RSS MiB "
    "| bytewax items/s | bytewax peak RSS MiB | riffle/bytewax |"
)
out.append("|---|---:|---:|---:|---:|---:|---:|")


def summary(rows, name, workers):
    mine = [r for r in rows if r.get("workload") == name and r.get("workers") == workers]
    if not mine:
        return None, None, 0
    rate = statistics.median(float(r["items_per_s"]) for r in mine)
    rss = max(int(r.get("peak_rss_bytes", 0)) for r in mine) / (1024 * 1024)
    return rate, rss, len(mine)


def fmt_rate(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_mib(v):
    return "n/a" if v is None else f"{v:,.1f}"


for name in workloads:
    for workers in workers_list:
        r_rate, r_rss, _ = summary(riffle_rows, name, workers)
        b_rate, b_rss, _ = summary(bytewax_rows, name, workers)
        ratio = f"{r_rate / b_rate:.2f}x" if r_rate and b_rate else "n/a"
        out.append(
            f"| {name} | {workers} | {fmt_rate(r_rate)} | {fmt_mib(r_rss)} "
            f"| {fmt_rate(b_rate)} | {fmt_mib(b_rss)} | {ratio} |"
        )

out.append("")
out.append(f"Raw lines: {results_path}")
text = "\n".join(out)
print(text)
with open(report_path, "w") as f:
    f.write(text + "\n")
PY
