# Sourced by scripts/test.sh: a throwaway PostgreSQL server for the metadata-store
# tests. Installs PostgreSQL when it is missing, starts a server on loopback from a
# temporary folder (as the `postgres` user when running as root), and exports
# RIFFLE_TEST_POSTGRES_URL; riffle-pipeline's tests then run against it as well as
# against SQLite, and the Postgres connector's tests use it too (with
# wal_level=logical for its change data capture). It also exports
# RIFFLE_TEST_POSTGRES_BIN (the folder of initdb, pg_ctl, psql, pgbench), from which
# the connector's tests make private servers to restart or to want a password. The
# server stops when the test script exits.

riffle_pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then echo "$dir"; fi
  done | sort -V | tail -n 1
}

riffle_pg_setup() {
  local bindir port data run_as
  bindir="$(riffle_pg_bindir)"
  if [ -z "$bindir" ]; then
    riffle_apt_install postgresql
    bindir="$(riffle_pg_bindir)"
  fi
  if [ -z "$bindir" ]; then
    echo "PostgreSQL could not be installed: the metadata-store tests need it" >&2
    return 1
  fi
  port="${RIFFLE_TEST_POSTGRES_PORT:-54329}"
  # Another test run may hold the port: take the next free one.
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  data="$(mktemp -d /tmp/riffle-pg.XXXXXX)"
  run_as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$data"
    run_as=(runuser -u postgres --)
  fi
  "${run_as[@]}" "$bindir/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 >"$data/initdb.log" 2>&1 || {
    cat "$data/initdb.log" >&2
    return 1
  }
  "${run_as[@]}" "$bindir/pg_ctl" -D "$data/db" -l "$data/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c max_connections=200 -c wal_level=logical" start >/dev/null || {
    cat "$data/server.log" >&2
    return 1
  }
  "${run_as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres riffle_test
  export RIFFLE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/riffle_test"
  export RIFFLE_TEST_POSTGRES_BIN="$bindir"
  RIFFLE_PG_STOP="${run_as[*]} $bindir/pg_ctl -D $data/db -m fast stop"
  riffle_at_exit "$RIFFLE_PG_STOP >/dev/null 2>&1 || true"
  echo "== PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port: RIFFLE_TEST_POSTGRES_URL=$RIFFLE_TEST_POSTGRES_URL"
}

riffle_pg_setup
