# Sourced by scripts/test.sh: a throwaway Apache Kafka broker for the connector tests.
# Fetches Kafka's jars (broker and tools, version in scripts/kafka/pom.xml) from Maven
# Central with mvn into a cache folder once, formats a temporary data folder and runs
# one KRaft node (broker and controller in one JVM) on free loopback ports. Exports
# RIFFLE_TEST_KAFKA_BROKERS (host:port) and RIFFLE_TEST_KAFKA_CLASSPATH (the jars, for
# Kafka's own tools: kafka-consumer-groups, the console consumer, the perf tests).
# The broker stops when the test script exits.

riffle_kafka_free_port() {
  local port="$1"
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  echo "$port"
}

# Starts one broker on the first free ports from $2 in the folder $3 and waits until it
# answers; on success sets port and pid: `riffle_kafka_start JARS FROM DIR`. Returns 2
# when the broker failed to start (a port taken between the check and the bind), 1
# when it did not answer.
riffle_kafka_start() {
  local jars="$1" from="$2" dir="$3" cport tries
  port="$(riffle_kafka_free_port "$from")"
  cport="$(riffle_kafka_free_port $((port + 1)))"
  rm -rf "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  java -cp "$jars/*" kafka.tools.StorageTool format \
    -t "$(java -cp "$jars/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
    -c "$dir/server.properties" >"$dir/format.log" 2>&1 || {
    cat "$dir/format.log" >&2
    return 1
  }
  java -Xms256m -Xmx768m -cp "$jars/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/server.log" 2>&1 &
  pid=$!
  # Wait for the listener (or a fatal error in the log), then for the broker's answer.
  tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || grep -q "fatal" "$dir/server.log"; then
      echo "50-kafka.sh: the Kafka broker on 127.0.0.1:$port (controller $cport) failed; its log:" >&2
      grep -v '^\s*at \|^\s*\.\.\. [0-9]* more' "$dir/server.log" >&2
      kill -9 "$pid" 2>/dev/null || true
      return 2
    fi
    if [ "$tries" -ge 300 ]; then
      break
    fi
    tries=$((tries + 1))
    sleep 0.2
  done
  timeout 90 java -cp "$jars/*" org.apache.kafka.tools.ClusterTool cluster-id \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1 || {
    echo "50-kafka.sh: Kafka did not answer on 127.0.0.1:$port; its log:" >&2
    cat "$dir/server.log" >&2
    kill -9 "$pid" 2>/dev/null || true
    return 1
  }
}

riffle_kafka_setup() {
  local version cache jars dir port pid started rc from
  version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
  cache="${RIFFLE_TEST_CACHE:-$HOME/.cache/riffle}"
  # The folder is named by the pom's content, so a changed pom fetches anew.
  jars="$cache/kafka-$version-$(sha1sum scripts/kafka/pom.xml | cut -c1-8)"
  if [ ! -f "$jars/.complete" ]; then
    if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
      echo "50-kafka.sh: Apache Kafka needs java (17+) and mvn to fetch its jars" >&2
      return 1
    fi
    echo "== fetching Apache Kafka $version from Maven Central into $jars"
    rm -rf "$jars"
    mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
      -DoutputDirectory="$jars" -DincludeScope=runtime || return 1
    touch "$jars/.complete"
  fi
  dir="$(mktemp -d /tmp/riffle-kafka.XXXXXX)"
  started=$(date +%s%N)
  from="${RIFFLE_TEST_KAFKA_PORT:-59092}"
  # A port found free can be taken before the broker binds it (the loopback ports
  # here are in the kernel's ephemeral range): a broker that exits is started again
  # on the next ports, three times at most.
  for _ in 1 2 3; do
    rc=0
    riffle_kafka_start "$jars" "$from" "$dir" || rc=$?
    [ "$rc" = 2 ] || break
    from=$((port + 2))
  done
  if [ "$rc" != 0 ]; then
    rm -rf "$dir"
    return 1
  fi
  export RIFFLE_TEST_KAFKA_BROKERS="127.0.0.1:$port"
  export RIFFLE_TEST_KAFKA_CLASSPATH="$jars/*"
  RIFFLE_KAFKA_STOP="kill $pid 2>/dev/null || true; sleep 1; kill -9 $pid 2>/dev/null || true; rm -rf $dir"
  riffle_at_exit "$RIFFLE_KAFKA_STOP"
  echo "== Apache Kafka $version (KRaft, one node) on $RIFFLE_TEST_KAFKA_BROKERS, ready in $(( ($(date +%s%N) - started) / 1000000 )) ms, log $dir/server.log"
}

riffle_needs riffle_kafka_setup "the Kafka broker" "the Kafka tests" || return 1

