# Sourced by scripts/test.sh: a throwaway Redis server for the Redis Streams
# connector's tests. Installs Debian's redis-server when it is missing (without
# starting its system service), runs one on a free loopback port from a temporary
# folder, and exports RIFFLE_TEST_REDIS_URL (the shared server) and
# RIFFLE_TEST_REDIS_SERVER (the program, for tests that start private servers to
# restart them or to want a password). The server stops when the test script exits.

riffle_redis_setup() {
  local program dir port pid tries
  program="$(command -v redis-server || true)"
  if [ -z "$program" ]; then
    riffle_apt_install redis-server || return 1
    program="$(command -v redis-server || true)"
  fi
  [ -n "$program" ] || return 1
  dir="$(mktemp -d /tmp/riffle-redis.XXXXXX)"
  port="${RIFFLE_TEST_REDIS_PORT:-56379}"
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  "$program" --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --logfile "$dir/redis.log" &
  pid=$!
  riffle_at_exit "kill $pid 2>/dev/null; rm -rf '$dir'"
  tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "52-redis.sh: redis-server did not start; its log:" >&2
      cat "$dir/redis.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  export RIFFLE_TEST_REDIS_URL="redis://127.0.0.1:$port"
  export RIFFLE_TEST_REDIS_SERVER="$program"
  echo "== $("$program" --version | awk '{print $1, $2, $3}'): RIFFLE_TEST_REDIS_URL=$RIFFLE_TEST_REDIS_URL"
}

riffle_needs riffle_redis_setup "Redis server" "the Redis Streams tests" || return 1
