#!/usr/bin/env bash
# The DuckDB benchmark, side by side on one machine in one go:
# `riffle bench connector-duckdb` (rows into a table through the sink under a
# recovery store and without one, then out through the source; 1 and 2 workers)
# and the `duckdb` Python package writing the same rows (id, 100-byte payload)
# with executemany and making them with INSERT ... SELECT (the engine's limit),
# then reading them back. Prints one JSON line per run and appends them to
# bench/results/<UTC date>.jsonl.
#
#   bench/duckdb.sh
#
# Environment:
#   RIFFLE_BIN     a riffle binary built with DuckDB (default target/release/riffle;
#                  README "Building with DuckDB")
#   BENCH_ITEMS    rows per run (default 1000000, of 100 bytes)
#   BENCH_PEER_ITEMS rows of the peer's executemany (default BENCH_ITEMS / 10: it is slow)
#   BENCH_RUNS     runs per configuration (default 3)
#   BENCH_PYTHON   a Python with the `duckdb` package (pip install duckdb==1.5.6)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-1000000}"
peer_items="${BENCH_PEER_ITEMS:-$((items / 10))}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"
python="${BENCH_PYTHON:-python3}"

# shellcheck disable=SC1091
source bench/servers.sh duckdb
if ! "$python" -c "import duckdb" 2>/dev/null; then
  echo "bench/duckdb.sh: $python has no duckdb package: pip install duckdb==1.5.6 (or set BENCH_PYTHON)" >&2
  exit 1
fi

echo "== riffle bench connector-duckdb ($items x 100 B)" >&2
for workers in 1 2; do
  "$riffle" bench connector-duckdb --workers "$workers" --runs "$runs" --items "$items" --json | record
done

echo "== the duckdb Python package on the same rows" >&2
for _ in $(seq "$runs"); do
  "$python" bench/duckdb_peer.py "$items" 100 "$peer_items" | record
done
