#!/usr/bin/env bash
# The Delta Lake benchmark, side by side on local disk in one go:
# `riffle bench connector-delta` (rows into a Delta table through the sink under a
# recovery store, a commit per partition and second; then the table's files out
# through the Parquet source; 1 and 2 workers) and the Python `deltalake` package
# (delta-rs: `write_deltalake` of the same rows as one pyarrow table, then pyarrow
# reading the table). Prints one JSON line per run and appends them to
# bench/results/<UTC date>.jsonl.
#
#   bench/delta.sh
#
# Environment:
#   RIFFLE_BIN       the riffle binary (default target/release/riffle)
#   BENCH_ITEMS      rows per run (default 1000000)
#   BENCH_RUNS       runs per configuration (default 3)
#   BENCH_PYTHON     a Python with deltalake and pyarrow (default: the test venv's,
#                    made by scripts/test.d/10-python.sh)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-1000000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"
python="${BENCH_PYTHON:-$root/.venv-test/bin/python}"

# shellcheck disable=SC1091
source bench/servers.sh delta
if ! "$python" -c 'import deltalake, pyarrow' 2>/dev/null; then
  echo "bench/delta.sh: $python has no deltalake/pyarrow (source scripts/test.d/10-python.sh)" >&2
  exit 1
fi

echo "== riffle bench connector-delta ($items rows) on local disk" >&2
for workers in 1 2; do
  "$riffle" bench connector-delta --workers "$workers" --runs "$runs" --items "$items" --json |
    record
done

echo "== deltalake (delta-rs) write_deltalake + pyarrow read, the same rows" >&2
for _ in $(seq "$runs"); do
  "$python" bench/delta_peer.py "$items" | record
done
