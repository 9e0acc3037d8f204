# Sourced by scripts/test.sh: a throwaway RabbitMQ broker for the RabbitMQ
# connector's tests. Installs Debian's rabbitmq-server when it is missing (without
# starting its system service), runs one broker as a private Erlang node on free
# loopback ports from a temporary folder, and exports RIFFLE_TEST_RABBITMQ_URL (the
# shared broker), RIFFLE_TEST_RABBITMQ_SERVER (the program, for tests that start
# private brokers to restart them) and RIFFLE_TEST_RABBITMQ_EPMD_PORT (the Erlang
# port mapper they all register with). Everything stops when the test script exits.

riffle_rabbitmq_setup() {
  local program dir port epmd pid tries
  program=/usr/lib/rabbitmq/bin/rabbitmq-server
  if [ ! -x "$program" ]; then
    riffle_apt_install rabbitmq-server || return 1
  fi
  [ -x "$program" ] || return 1
  dir="$(mktemp -d /tmp/riffle-rabbitmq.XXXXXX)"
  port="${RIFFLE_TEST_RABBITMQ_PORT:-55672}"
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  epmd=$((port + 100))
  while (exec 3<>"/dev/tcp/127.0.0.1/$epmd") 2>/dev/null; do
    epmd=$((epmd + 1))
  done
  printf 'listeners.tcp.default = %s\nloopback_users = none\n' "$port" >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  # Its own session (process group), so one kill reaches the Erlang VM too.
  env HOME="$dir" RABBITMQ_NODENAME="riffle-$port@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
    RABBITMQ_DIST_PORT=$((port + 200)) ERL_EPMD_PORT="$epmd" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    setsid "$program" >"$dir/server.log" 2>&1 </dev/null &
  pid=$!
  riffle_at_exit "kill -KILL -- -$pid 2>/dev/null; sleep 1; ERL_EPMD_PORT=$epmd \$(ls /usr/lib/erlang/erts-*/bin/epmd | head -n 1) -kill >/dev/null 2>&1; rm -rf '$dir'"
  tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "53-rabbitmq.sh: rabbitmq-server did not start; its output:" >&2
      tail -n 40 "$dir/server.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  export RIFFLE_TEST_RABBITMQ_URL="amqp://127.0.0.1:$port/%2f"
  export RIFFLE_TEST_RABBITMQ_SERVER="$program"
  export RIFFLE_TEST_RABBITMQ_EPMD_PORT="$epmd"
  echo "== RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null): RIFFLE_TEST_RABBITMQ_URL=$RIFFLE_TEST_RABBITMQ_URL"
}

riffle_needs riffle_rabbitmq_setup "RabbitMQ broker" "the RabbitMQ tests" || return 1
