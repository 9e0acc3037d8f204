#!/usr/bin/env bash
# The Flow benchmarks in one go: `riffle bench flow-http` (a service endpoint and a
# collector into an in-memory sink, driven by wrk) beside the same endpoint and
# collector in FastAPI on uvicorn (bench/flow_peer.py, 1 and 2 worker processes),
# driven by the same wrk command; then `riffle bench flow-consume` (Kafka -> a
# function -> Kafka through a consumer, 1 and 2 replicas: throughput, and latency
# at a fixed rate). Prints one JSON line per run, appends them to
# bench/results/<UTC date>.jsonl, and ends with the Riffle/FastAPI ratio per route.
#
#   bench/flow.sh
#
# Environment:
#   RIFFLE_BIN        the riffle binary (default target/release/riffle)
#   BENCH_RUNS        runs per configuration (default 3)
#   BENCH_SECONDS     seconds wrk drives each route (default 10)
#   BENCH_CONNECTIONS wrk's connections (default 64), BENCH_THREADS its threads (2)
#   BENCH_ITEMS       records of flow-consume's throughput phase (default 1000000)
#   BENCH_RATE        records/s of its latency phase (default 1000)
#   BENCH_BROKERS     an existing Kafka broker; without it one is started from
#                     scripts/test.d/50-kafka.sh (Apache Kafka from Maven Central)
#   BENCH_SKIP        `http` or `consume` to leave that half out
#   RIFFLE_BENCH_WRK  the wrk binary (default: wrk on PATH, Debian's package)
#
# The FastAPI peer gets a venv of its own, bench/.venv-flow (fastapi, uvicorn with
# its standard extras: uvloop and httptools, as it is deployed).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${BENCH_RUNS:-3}"
seconds="${BENCH_SECONDS:-10}"
connections="${BENCH_CONNECTIONS:-64}"
threads="${BENCH_THREADS:-2}"
items="${BENCH_ITEMS:-1000000}"
rate="${BENCH_RATE:-1000}"
skip="${BENCH_SKIP:-}"
riffle="${RIFFLE_BIN:-target/release/riffle}"
wrk="${RIFFLE_BENCH_WRK:-wrk}"
FASTAPI_VERSION="0.165.0"
UVICORN_VERSION="0.55.0"

# shellcheck disable=SC1091
source bench/servers.sh flow

if [ "$skip" != "http" ]; then
  if ! command -v "$wrk" >/dev/null 2>&1; then
    echo "bench/flow.sh: no wrk: install Debian's wrk (apt-get install wrk) or set RIFFLE_BENCH_WRK" >&2
    exit 1
  fi
  venv="bench/.venv-flow"
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('fastapi') != '$FASTAPI_VERSION' or m.version('uvicorn') != '$UVICORN_VERSION')" 2>/dev/null; then
    py=python3
    command -v python3.11 >/dev/null 2>&1 && py=python3.11
    echo "== creating $venv (fastapi $FASTAPI_VERSION, uvicorn[standard] $UVICORN_VERSION)" >&2
    "$py" -m venv "$venv" &&
      "$venv/bin/python" -m pip install --quiet --upgrade pip &&
      "$venv/bin/python" -m pip install --quiet "fastapi==$FASTAPI_VERSION" \
        "uvicorn[standard]==$UVICORN_VERSION" >&2 || exit 1
  fi

  http_results="$(mktemp)"
  riffle_at_exit "rm -f $http_results"
  echo "== riffle bench flow-http (${seconds} s per route, $connections connections, $threads wrk threads)" >&2
  "$riffle" bench flow-http --workers "$(nproc)" --runs "$runs" -P "seconds=$seconds" \
    -P "connections=$connections" -P "threads=$threads" --json | record | tee -a "$http_results"
  echo "== FastAPI $FASTAPI_VERSION on uvicorn $UVICORN_VERSION, the same wrk command" >&2
  for workers in 1 2; do
    for _ in $(seq "$runs"); do
      "$venv/bin/python" bench/flow_peer.py --seconds "$seconds" --connections "$connections" \
        --threads "$threads" --workers "$workers" --wrk "$wrk" | record | tee -a "$http_results"
    done
  done
  # The ratio per route: Riffle's median req/s against FastAPI's best median.
  python3 - "$http_results" <<'PY' >&2
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(workload, phase, workers=None):
    v = [r["items_per_s"] for r in rows if r["workload"] == workload and r["phase"] == phase
         and (workers is None or r["workers"] == workers)]
    return statistics.median(v) if v else None
for phase in ("endpoint", "collector"):
    ours = med("flow-http", phase)
    p99 = [r["p99_ms"] for r in rows if r["workload"] == "flow-http" and r["phase"] == phase]
    for workers in (1, 2):
        peer = med("flow-http-fastapi", phase, workers)
        if ours and peer:
            print(f"ratio flow-http {phase}: riffle {ours:,.0f} req/s (p99 {statistics.median(p99):.2f} ms) "
                  f"/ fastapi {workers} worker(s) {peer:,.0f} req/s = {ours / peer:.1f}x")
PY
fi

if [ "$skip" != "consume" ]; then
  if [ -n "${BENCH_BROKERS:-}" ]; then
    brokers="$BENCH_BROKERS"
  else
    # shellcheck disable=SC1091
    source scripts/test.d/50-kafka.sh || exit 1
    brokers="$RIFFLE_TEST_KAFKA_BROKERS"
  fi
  echo "== riffle bench flow-consume ($items x 100 B, 4 partitions; latency at $rate/s) on $brokers" >&2
  # The broker's own round trip (phase roundtrip, no flow) once, beside 1 replica.
  for workers in 1 2; do
    phases="throughput,latency"
    [ "$workers" = 1 ] && phases="throughput,latency,roundtrip"
    "$riffle" bench flow-consume --workers "$workers" --runs "$runs" --items "$items" \
      -P "brokers=$brokers" -P "rate=$rate" -P "phases=$phases" --json | record
  done
fi
