# Sourced by scripts/test.sh: a throwaway NATS server with JetStream for the NATS
# connector tests. Installs Debian's nats-server (its service is not started), runs
# `nats-server -js` on a free loopback port with its store in a temporary folder,
# and exports RIFFLE_TEST_NATS_URL (nats://127.0.0.1:PORT) and
# RIFFLE_TEST_NATS_SERVER (the binary, for tests that run a private server they
# kill and restart, or that wants credentials). The server stops when the test
# script exits.

riffle_nats_setup() {
  local binary dir port pid tries started
  binary="$(command -v nats-server || true)"
  if [ -z "$binary" ]; then
    riffle_apt_install nats-server || return 1
    binary="$(command -v nats-server)" || return 1
  fi
  dir="$(mktemp -d /tmp/riffle-nats.XXXXXX)"
  port="${RIFFLE_TEST_NATS_PORT:-54222}"
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  started=$(date +%s%N)
  "$binary" -js -a 127.0.0.1 -p "$port" -sd "$dir/store" </dev/null >"$dir/server.log" 2>&1 &
  pid=$!
  tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 100 ]; then
      echo "51-nats.sh: nats-server did not answer on 127.0.0.1:$port; its log:" >&2
      cat "$dir/server.log" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    tries=$((tries + 1))
    sleep 0.1
  done
  export RIFFLE_TEST_NATS_URL="nats://127.0.0.1:$port"
  export RIFFLE_TEST_NATS_SERVER="$binary"
  riffle_at_exit "kill $pid 2>/dev/null || true; sleep 0.5; kill -9 $pid 2>/dev/null || true; rm -rf $dir"
  echo "== $("$binary" --version) (JetStream) on $RIFFLE_TEST_NATS_URL, ready in $(( ($(date +%s%N) - started) / 1000000 )) ms, log $dir/server.log"
}

riffle_needs riffle_nats_setup "nats-server" "the NATS connector tests" || return 1
