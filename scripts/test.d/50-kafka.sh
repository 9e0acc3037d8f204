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

riffle_kafka_setup() {
  local version cache jars dir port cport pid tries started
  version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
  cache="${RIFFLE_TEST_CACHE:-$HOME/.cache/riffle}"
  jars="$cache/kafka-$version"
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
  port="$(riffle_kafka_free_port "${RIFFLE_TEST_KAFKA_PORT:-59092}")"
  cport="$(riffle_kafka_free_port $((port + 1)))"
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
  started=$(date +%s%N)
  java -cp "$jars/*" kafka.tools.StorageTool format \
    -t "$(java -cp "$jars/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
    -c "$dir/server.properties" >"$dir/format.log" 2>&1 || {
    cat "$dir/format.log" >&2
    return 1
  }
  java -Xms256m -Xmx768m -cp "$jars/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/server.log" 2>&1 &
  pid=$!
  tries=0
  until java -cp "$jars/*" org.apache.kafka.tools.ClusterTool cluster-id \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 60 ]; then
      echo "50-kafka.sh: Kafka did not answer on 127.0.0.1:$port; its log:" >&2
      cat "$dir/server.log" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    tries=$((tries + 1))
    sleep 0.5
  done
  export RIFFLE_TEST_KAFKA_BROKERS="127.0.0.1:$port"
  export RIFFLE_TEST_KAFKA_CLASSPATH="$jars/*"
  RIFFLE_KAFKA_STOP="kill $pid 2>/dev/null || true; sleep 1; kill -9 $pid 2>/dev/null || true; rm -rf $dir"
  riffle_at_exit "$RIFFLE_KAFKA_STOP"
  echo "== Apache Kafka $version (KRaft, one node) on $RIFFLE_TEST_KAFKA_BROKERS, ready in $(( ($(date +%s%N) - started) / 1000000 )) ms, log $dir/server.log"
}

riffle_needs riffle_kafka_setup "the Kafka broker" "the Kafka tests" || return 1

