#!/usr/bin/env bash
# The objects benchmark in one go: `riffle bench connector-objects` (JSON lines
# into new objects under a prefix through the object sink, exactly-once under a
# recovery store; then read back through the object source; 1 and 2 workers) on a
# local folder and on S3 (moto), and beside it on the same moto boto3 putting the
# same bytes into the same number of objects and getting them back
# (bench/objects_peer.py, 1 and 2 threads). A plain copy of local files is no
# peer worth the name, so the local runs stand alone. moto is not S3: both
# measure their client against moto, not AWS. Prints one JSON line per run and
# appends them to bench/results/<UTC date>.jsonl.
#
#   bench/objects.sh
#
# Environment:
#   RIFFLE_BIN          the riffle binary (default target/release/riffle)
#   BENCH_ITEMS         lines per run (default 200000, of about 100 bytes)
#   BENCH_RUNS          runs per configuration (default 3)
#   BENCH_S3_ENDPOINT   an existing S3 endpoint (http://HOST:PORT); without it moto
#                       is started by scripts/test.d/40-s3.sh (needs
#                       RIFFLE_TEST_PYTHON, made by scripts/test.d/10-python.sh)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-200000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"

# shellcheck disable=SC1091
source bench/servers.sh objects
if [ -n "${BENCH_S3_ENDPOINT:-}" ]; then
  endpoint="$BENCH_S3_ENDPOINT"
else
  # shellcheck disable=SC1091
  # (its note on stdout goes to stderr: stdout is the JSON lines)
  source scripts/test.d/40-s3.sh >&2 || exit 1
  endpoint="$RIFFLE_TEST_S3_ENDPOINT"
fi
python="${RIFFLE_TEST_PYTHON:-python3}"
export AWS_ACCESS_KEY_ID=riffle-bench AWS_SECRET_ACCESS_KEY=riffle-bench AWS_REGION=us-east-1
bucket="riffle-bench-objects"
"$python" -c "import boto3, sys
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1')
try:
    s3.create_bucket(Bucket=sys.argv[2])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass" "$endpoint" "$bucket" || exit 1

echo "== riffle bench connector-objects ($items lines) on a local folder" >&2
for workers in 1 2; do
  "$riffle" bench connector-objects --workers "$workers" --runs "$runs" --items "$items" \
    --json | record
done

echo "== riffle bench connector-objects ($items lines) on s3://$bucket at $endpoint" >&2
objects=2
for workers in 1 2; do
  while IFS= read -r report; do
    echo "$report" | record
    n="$(echo "$report" | "$python" -c 'import json, sys; print(json.load(sys.stdin).get("objects", ""))')"
    [ -n "$n" ] && objects="$n"
  done < <("$riffle" bench connector-objects --workers "$workers" --runs "$runs" \
    --items "$items" -P "url=s3://$bucket/riffle" -P "endpoint=$endpoint" --json)
done

echo "== boto3 (the peer): the same lines in $objects objects, put then get" >&2
for threads in 1 2; do
  for _ in $(seq "$runs"); do
    "$python" bench/objects_peer.py "$endpoint" "$bucket" "$items" "$objects" "$threads" |
      record
  done
done
