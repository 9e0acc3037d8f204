#!/usr/bin/env bash
# The SQS benchmark, side by side on one moto server in one go:
# `riffle bench connector-sqs` (messages into a queue through the sink, then out
# through the source, deleted as they go; 1 and 2 workers) and boto3 making the same
# calls with the same batch sizes from Python (bench/sqs_peer.py, 1 and 2 threads).
# moto is not SQS: both measure their client against moto, not AWS. Prints one JSON
# line per run and appends them to bench/results/<UTC date>.jsonl.
#
#   bench/sqs.sh
#
# Environment:
#   RIFFLE_BIN          the riffle binary (default target/release/riffle)
#   BENCH_ITEMS         messages per run (default 5000, of 100 bytes)
#   BENCH_RUNS          runs per configuration (default 3)
#   BENCH_SQS_ENDPOINT  an existing endpoint (http://HOST:PORT); without it moto is
#                       started by scripts/test.d/40-s3.sh (needs RIFFLE_TEST_PYTHON,
#                       made by scripts/test.d/10-python.sh)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-5000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"
mkdir -p bench/results
results="bench/results/$(date -u +%Y-%m-%d).jsonl"

RIFFLE_AT_EXIT=""
riffle_at_exit() {
  RIFFLE_AT_EXIT="$1; $RIFFLE_AT_EXIT"
  # shellcheck disable=SC2016
  trap 'eval "$RIFFLE_AT_EXIT"' EXIT
}
riffle_needs() { "$1"; }
if [ -n "${BENCH_SQS_ENDPOINT:-}" ]; then
  endpoint="$BENCH_SQS_ENDPOINT"
else
  # shellcheck disable=SC1091
  source scripts/test.d/40-s3.sh || exit 1
  endpoint="$RIFFLE_TEST_SQS_ENDPOINT"
fi
python="${RIFFLE_TEST_PYTHON:-python3}"
record() { tee -a "$results"; }
export AWS_ACCESS_KEY_ID=riffle-bench AWS_SECRET_ACCESS_KEY=riffle-bench AWS_REGION=us-east-1

echo "== riffle bench connector-sqs ($items x 100 B) on $endpoint" >&2
for workers in 1 2; do
  "$riffle" bench connector-sqs --workers "$workers" --runs "$runs" --items "$items" \
    -P "endpoint=$endpoint" --json | record
done

echo "== boto3 (the peer), same calls and batch sizes" >&2
for threads in 1 2; do
  for _ in $(seq "$runs"); do
    "$python" bench/sqs_peer.py "$endpoint" "$items" "$threads" | record
  done
done
