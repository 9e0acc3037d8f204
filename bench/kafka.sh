#!/usr/bin/env bash
# The Kafka benchmark, side by side on one broker in one go: `riffle bench kafka`
# (1 and 2 workers, without a store and with a snapshot every second), bytewax
# 0.21.1's KafkaSource -> KafkaSink, and Apache Kafka's own producer and consumer
# perf tests (what the broker can take is the limit). Prints one JSON line per run
# and appends them to bench/results/<UTC date>.jsonl.
#
#   bench/kafka.sh
#
# Environment:
#   RIFFLE_BIN      the riffle binary (default target/release/riffle)
#   BENCH_ITEMS     records per run (default 10000000, of 100 bytes)
#   BENCH_RUNS      runs per configuration (default 3)
#   BENCH_BROKERS   an existing broker; without it one is started from
#                   scripts/test.d/50-kafka.sh (Apache Kafka from Maven Central)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-10000000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"

# shellcheck disable=SC1091
source bench/servers.sh kafka
if [ -n "${BENCH_BROKERS:-}" ]; then
  brokers="$BENCH_BROKERS"
else
  # shellcheck disable=SC1091
  source scripts/test.d/50-kafka.sh
  brokers="$RIFFLE_TEST_KAFKA_BROKERS"
fi
if [ -z "${RIFFLE_TEST_KAFKA_CLASSPATH:-}" ]; then
  # The jars 50-kafka.sh fetched (a folder named by the version and its pom's hash).
  RIFFLE_TEST_KAFKA_CLASSPATH="$(ls -d "$HOME"/.cache/riffle/kafka-*/ | tail -n 1)*"
fi
classpath="$RIFFLE_TEST_KAFKA_CLASSPATH"

echo "== riffle bench kafka ($items x 100 B, 4 partitions) on $brokers" >&2
for workers in 1 2; do
  for recovery in none 1s; do
    "$riffle" bench kafka --workers "$workers" --runs "$runs" --items "$items" \
      -P "brokers=$brokers" -P "recovery=$recovery" --json | record
  done
done

echo "== bytewax 0.21.1 KafkaSource -> KafkaSink" >&2
bash bench/bytewax/setup.sh >&2
for workers in 1 2; do
  for _ in $(seq "$runs"); do
    bench/.venv-bytewax/bin/python bench/bytewax/kafka.py --brokers "$brokers" \
      --items "$items" --workers "$workers" | record
  done
done

echo "== Apache Kafka's own perf tests (the broker's limit)" >&2
topic="riffle-perf-$(date +%s)"
java -cp "$classpath" org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" \
  --create --topic "$topic" --partitions 4 >/dev/null 2>&1
for _ in $(seq "$runs"); do
  java -cp "$classpath" org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
    --num-records "$items" --record-size 100 --throughput -1 \
    --producer-props "bootstrap.servers=$brokers" 2>/dev/null | tail -n 1 |
    sed -n 's/^\([0-9]*\) records sent, \([0-9.]*\) records\/sec.*/{"workload":"kafka-producer-perf-test","items":\1,"items_per_s":\2}/p' | record
done
for _ in $(seq "$runs"); do
  java -cp "$classpath" org.apache.kafka.tools.ConsumerPerformance --topic "riffle-bench-${items}x100-p4" \
    --messages "$items" --bootstrap-server "$brokers" --timeout 60000 2>/dev/null | tail -n 1 |
    awk -F', *' -v n="$items" '{print "{\"workload\":\"kafka-consumer-perf-test\",\"items\":" n ",\"seconds\":" ($6+0 > 0 ? n/$6 : 0) ",\"items_per_s\":" $6 "}"}' | record
done
