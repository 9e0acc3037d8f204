#!/usr/bin/env bash
# The RabbitMQ benchmark: `riffle bench connector-rabbitmq` (persistent messages
# into 4 durable queues through the sink with publisher confirms, then out through
# the source with acknowledgements at each commit; 1 and 2 workers) on one broker.
# RabbitMQ's own load generator (PerfTest) is not packaged with the server nor
# served by Maven Central, so no peer runs beside it here. Prints one JSON line per
# run and appends them to bench/results/<UTC date>.jsonl.
#
#   bench/rabbitmq.sh
#
# Environment:
#   RIFFLE_BIN          the riffle binary (default target/release/riffle)
#   BENCH_ITEMS         messages per run (default 200000, of 100 bytes)
#   BENCH_RUNS          runs per configuration (default 3)
#   BENCH_RABBITMQ_URL  an existing broker (amqp://HOST:PORT/VHOST); without it one
#                       is started by scripts/test.d/53-rabbitmq.sh
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-200000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"

# shellcheck disable=SC1091
source bench/servers.sh rabbitmq
if [ -n "${BENCH_RABBITMQ_URL:-}" ]; then
  url="$BENCH_RABBITMQ_URL"
else
  # shellcheck disable=SC1091
  source scripts/test.d/53-rabbitmq.sh || exit 1
  url="$RIFFLE_TEST_RABBITMQ_URL"
fi

echo "== riffle bench connector-rabbitmq ($items x 100 B, 4 queues) on $url" >&2
for workers in 1 2; do
  "$riffle" bench connector-rabbitmq --workers "$workers" --runs "$runs" --items "$items" \
    -P "url=$url" --json | record
done
