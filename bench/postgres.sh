#!/usr/bin/env bash
# The PostgreSQL benchmark, side by side on one server in one go:
# `riffle bench connector-postgres` (rows into a table through the upsert sink and
# through the COPY sink, then out through the source, and, on a server with
# wal_level=logical, the COPY's inserts read back as changes through PostgresCdc;
# 1 and 2 workers) and psql's own COPY of the same rows (id, 100-byte payload) into
# a table and out of it, and pg_recvlogical decoding those inserts through pgoutput,
# as what the server can take. Prints one JSON line per run and appends them to
# bench/results/<UTC date>.jsonl.
#
#   bench/postgres.sh
#
# Environment:
#   RIFFLE_BIN          the riffle binary (default target/release/riffle)
#   BENCH_ITEMS         rows per run (default 1000000, of 100 bytes)
#   BENCH_RUNS          runs per configuration (default 3)
#   BENCH_POSTGRES_URL  an existing database (postgres://USER@HOST:PORT/DB) and
#   BENCH_POSTGRES_BIN  the folder of its psql; without them a server is started by
#                       scripts/test.d/20-postgres.sh
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items="${BENCH_ITEMS:-1000000}"
runs="${BENCH_RUNS:-3}"
riffle="${RIFFLE_BIN:-target/release/riffle}"

# shellcheck disable=SC1091
source bench/servers.sh postgres
if [ -n "${BENCH_POSTGRES_URL:-}" ]; then
  url="$BENCH_POSTGRES_URL"
  bin="${BENCH_POSTGRES_BIN:-$(dirname "$(command -v psql)")}"
else
  # shellcheck disable=SC1091
  source scripts/test.d/20-postgres.sh || exit 1
  url="$RIFFLE_TEST_POSTGRES_URL"
  bin="$RIFFLE_TEST_POSTGRES_BIN"
fi

psql() { PGOPTIONS="-c client_min_messages=warning" "$bin/psql" "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }
cdc=false
[ "$(psql -Atc 'SHOW wal_level')" = logical ] && cdc=true

echo "== riffle bench connector-postgres ($items x 100 B, cdc=$cdc) on $url" >&2
for workers in 1 2; do
  "$riffle" bench connector-postgres --workers "$workers" --runs "$runs" --items "$items" \
    -P "url=$url" -P "cdc=$cdc" --json | record
done

echo "== psql COPY of the same rows (the server's limit)" >&2
rows="$(mktemp)"
riffle_at_exit "rm -f $rows"
payload="$(head -c 100 /dev/zero | tr '\0' x)"
awk -v n="$items" -v p="$payload" 'BEGIN { for (i = 0; i < n; i++) printf "%d\t%s\n", i, p }' >"$rows"
now() { date +%s.%N; }
drop_slot() {
  psql -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'riffle_perf_slot'" >/dev/null
  psql -c "DROP PUBLICATION IF EXISTS riffle_perf_pub"
}
[ "$cdc" = true ] && riffle_at_exit "drop_slot"
for _ in $(seq "$runs"); do
  psql -c "DROP TABLE IF EXISTS riffle_perf_copy; CREATE TABLE riffle_perf_copy (id bigint PRIMARY KEY, payload text)"
  if [ "$cdc" = true ]; then
    drop_slot
    psql -c "CREATE PUBLICATION riffle_perf_pub FOR TABLE riffle_perf_copy"
    psql -c "SELECT pg_create_logical_replication_slot('riffle_perf_slot', 'pgoutput')" >/dev/null
  fi
  start="$(now)"
  psql -c "\\copy riffle_perf_copy FROM '$rows'"
  into="$(now)"
  psql -c "\\copy riffle_perf_copy TO '/dev/null'"
  out="$(now)"
  if [ "$cdc" = true ]; then
    # The server's own logical-decoding client, reading the same inserts as
    # pgoutput messages up to the log's end after the COPY.
    endpos="$(psql -Atc 'SELECT pg_current_wal_lsn()')"
    from_cdc="$(now)"
    timeout 600 "$bin/pg_recvlogical" -d "$url" --slot riffle_perf_slot --start \
      --endpos "$endpos" --no-loop -o proto_version=1 -o publication_names=riffle_perf_pub -f /dev/null
    to_cdc="$(now)"
    drop_slot
    awk -v n="$items" -v a="$from_cdc" -v b="$to_cdc" 'BEGIN {
      printf "{\"workload\":\"pg_recvlogical\",\"phase\":\"cdc\",\"workers\":1,\"items\":%d,\"seconds\":%.3f,\"items_per_s\":%.0f}\n", n, b - a, n / (b - a) }' | record
  fi
  for phase in into out; do
    if [ "$phase" = into ]; then from="$start" to="$into"; else from="$into" to="$out"; fi
    awk -v p="$phase" -v n="$items" -v a="$from" -v b="$to" 'BEGIN {
      printf "{\"workload\":\"psql-copy\",\"phase\":\"%s\",\"workers\":1,\"items\":%d,\"seconds\":%.3f,\"items_per_s\":%.0f}\n", p, n, b - a, n / (b - a) }' | record
  done
done
psql -c "DROP TABLE IF EXISTS riffle_perf_copy"
