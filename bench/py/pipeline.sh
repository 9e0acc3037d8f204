#!/usr/bin/env bash
# Runs a chain of trivial Python steps on `riffle.pipeline` and on flowyml 2.2.1 in
# one go, first run (empty cache) and cached run, and prints a markdown table of the
# medians of ms per step.
#
#   bash bench/py/pipeline.sh
#
# riffle runs bench/py/pipeline.py through `riffle bench py-pipeline --json -P
# python=...` when a riffle binary is built (it only launches the Python program, so a
# debug build measures the same as a release one), else the program directly; flowyml
# runs bench/flowyml/chain.py through bench/flowyml/run.sh (which makes its venv).
# Every run is a fresh process with a fresh project or cache folder. flowyml's first
# run starts its UI server (uvicorn on localhost:8080, `auto_start_ui=True` by default)
# and leaves it running; stop it with `kill "$(head -1 ~/.flowyml/ui_server.pid)"`.
#
# Environment:
#   RIFFLE_PY     the interpreter with the `riffle` package (default bench/.venv-py/bin/python,
#                 made by bench/python.sh)
#   RIFFLE_BIN    the riffle binary (default target/debug/riffle, else target/release/riffle)
#   BENCH_STEPS   chain lengths (default "100 1000")
#   BENCH_RUNS    runs per engine and length (default 3)
#
# The JSON lines (one per run and phase) are appended to bench/results/<UTC date>.jsonl.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
py="${RIFFLE_PY:-bench/.venv-py/bin/python}"
steps_list="${BENCH_STEPS:-100 1000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-}"
if [ -z "$riffle" ]; then
    for candidate in target/debug/riffle target/release/riffle; do
        if [ -x "$candidate" ]; then riffle="$candidate"; break; fi
    done
fi
if ! "$py" -c 'import riffle.pipeline' 2>/dev/null; then
    echo "$py cannot import riffle.pipeline; make it with bash bench/python.sh" >&2
    exit 1
fi

mkdir -p bench/results
results="bench/results/$(date -u +%Y-%m-%d).jsonl"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
touch "$work/riffle.jsonl" "$work/flowyml.jsonl"

for steps in $steps_list; do
    if [ -n "$riffle" ]; then
        echo "+ $riffle bench py-pipeline --items $steps --runs $runs --json -P python=$py" >&2
        "$riffle" bench py-pipeline --items "$steps" --runs "$runs" --json -P "python=$py" \
            | grep '^{' >>"$work/riffle.jsonl"
    else
        for _ in $(seq "$runs"); do
            echo "+ $py bench/py/pipeline.py --steps $steps" >&2
            "$py" bench/py/pipeline.py --steps "$steps" >>"$work/riffle.jsonl"
        done
    fi
    for _ in $(seq "$runs"); do
        echo "+ bench/flowyml/run.sh --steps $steps" >&2
        if ! bash bench/flowyml/run.sh --steps "$steps" 2>"$work/flowyml.err" >>"$work/flowyml.jsonl"; then
            echo "flowyml failed; its last lines:" >&2
            tail -n 20 "$work/flowyml.err" >&2
            exit 1
        fi
    done
done
cat "$work/riffle.jsonl" "$work/flowyml.jsonl" >>"$results"

python3 - "$work/riffle.jsonl" "$work/flowyml.jsonl" "$steps_list" <<'PY'
import json
import statistics
import sys

riffle_path, flowyml_path, steps_list = sys.argv[1:]


def medians(path):
    """Median ms per step, CPU ms per step (None where not reported) and peak RSS
    (MiB) by (steps, phase), with the run count."""
    runs = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            runs.setdefault((row["items"], row["phase"]), []).append(row)
    return {
        key: (
            statistics.median(r["ms_per_step"] for r in rows),
            statistics.median(r["cpu_seconds"] * 1000.0 / r["items"] for r in rows)
            if all("cpu_seconds" in r for r in rows) else None,
            statistics.median(r["peak_rss_bytes"] for r in rows) / 2**20,
            len(rows),
        )
        for key, rows in runs.items()
    }


riffle, flowyml = medians(riffle_path), medians(flowyml_path)
print("| steps | phase | riffle ms/step | riffle CPU ms/step | flowyml ms/step | flowyml / riffle | riffle RSS MiB | flowyml RSS MiB | runs |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
for steps in map(int, steps_list.split()):
    for phase in ("first", "cached"):
        r, f = riffle.get((steps, phase)), flowyml.get((steps, phase))
        if r is None or f is None:
            print(f"| {steps:,} | {phase} | {'missing' if r is None else f'{r[0]:.3f}'} | | "
                  f"{'missing' if f is None else f'{f[0]:.2f}'} | | | | |")
            continue
        cpu = "" if r[1] is None else f"{r[1]:.3f}"
        print(f"| {steps:,} | {phase} | {r[0]:.3f} | {cpu} | {f[0]:.2f} | {f[0] / r[0]:.0f}x | "
              f"{r[2]:.1f} | {f[2]:.1f} | {r[3]} / {f[3]} |")
PY
