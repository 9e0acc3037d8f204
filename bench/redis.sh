#!/usr/bin/env bash
# The Redis Streams benchmark, side by side on one server in one go:
# `riffle bench connector-redis` (entries into 4 streams through the sink, then out
# through the source with a consumer group; 1 and 2 workers) and redis-benchmark's
# own XADD with as many entries per pipeline (what the server can take is the
# limit). Prints one JSON line per run and appends them to
# bench/results/<UTC date>.jsonl.
#
#   bench/redis.sh
#
# Environment:
#   RIFFLE_BIN       the riffle binary (default target/release/riffle)
#   BENCH_ITEMS      entries per run (default 1000000, of 100 bytes)
#   BENCH_RUNS       runs per configuration (default 3)
#   BENCH_REDIS_URL  an existing server (redis://HOST:PORT); without it one is
#                    started by scripts/test.d/52-redis.sh (Debian's redis-server)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-1000000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"

# shellcheck disable=SC1091
source bench/servers.sh redis
if [ -n "${BENCH_REDIS_URL:-}" ]; then
  url="$BENCH_REDIS_URL"
else
  # shellcheck disable=SC1091
  source scripts/test.d/52-redis.sh || exit 1
  url="$RIFFLE_TEST_REDIS_URL"
fi
hostport="${url#redis://}"
hostport="${hostport%%/*}"

echo "== riffle bench connector-redis ($items x 100 B, 4 streams) on $url" >&2
for workers in 1 2; do
  "$riffle" bench connector-redis --workers "$workers" --runs "$runs" --items "$items" \
    -P "url=$url" --json | record
done

echo "== redis-benchmark XADD (the server's limit), 4096 entries per pipeline" >&2
value="$(head -c 100 /dev/zero | tr '\0' x)"
for clients in 1 2; do
  for _ in $(seq "$runs"); do
    redis-benchmark -h "${hostport%%:*}" -p "${hostport##*:}" -n "$items" -c "$clients" \
      -P 4096 -q --csv XADD "riffle-perf-$clients" '*' value "$value" |
      awk -F'"' -v n="$items" -v c="$clients" 'NR > 1 && $4 != "" {
        printf "{\"workload\":\"redis-benchmark-xadd\",\"workers\":%d,\"items\":%d,\"items_per_s\":%s}\n", c, n, $4 }' |
      record
  done
  redis-cli -h "${hostport%%:*}" -p "${hostport##*:}" DEL "riffle-perf-$clients" >/dev/null
done
