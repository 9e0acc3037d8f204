# Sourced by scripts/test.sh after 10-python.sh: a throwaway S3-compatible server for
# the object-store tests. Installs moto's server mode (pinned) into the test venv,
# starts it on a free loopback port with its log in a temporary folder, waits until it
# answers, and exports RIFFLE_TEST_S3_ENDPOINT (http://127.0.0.1:PORT) with dummy
# credentials (RIFFLE_TEST_S3_ACCESS_KEY_ID, RIFFLE_TEST_S3_SECRET_ACCESS_KEY,
# RIFFLE_TEST_S3_REGION). The tests hand these to object_store themselves as
# AWS_ENDPOINT, AWS_ALLOW_HTTP, AWS_REGION and the keys, so no other test ever talks to
# it by accident. The server stops when the test script exits.

riffle_s3_setup() {
  local python port dir pid tries
  python="${RIFFLE_TEST_PYTHON:-}"
  if [ -z "$python" ] || [ ! -x "$python" ]; then
    echo "40-s3.sh: RIFFLE_TEST_PYTHON is not set (10-python.sh makes the venv)" >&2
    return 1
  fi
  if ! "$python" -c 'import flask, moto.server, importlib.metadata as m; assert m.version("moto") == "5.2.5"' 2>/dev/null; then
    echo "== installing moto[server] 5.2.5"
    "$python" -m pip install --quiet --disable-pip-version-check "moto[server]==5.2.5" || return 1
  fi
  port="${RIFFLE_TEST_S3_PORT:-54390}"
  # Another test run may hold the port: take the next free one.
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  dir="$(mktemp -d /tmp/riffle-s3.XXXXXX)"
  "$(dirname "$python")/moto_server" -H 127.0.0.1 -p "$port" \
    </dev/null >"$dir/server.log" 2>&1 &
  pid=$!
  tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
    && "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).read()' \
      "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 300 ]; then
      echo "40-s3.sh: moto_server did not answer on 127.0.0.1:$port; its log:" >&2
      cat "$dir/server.log" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    tries=$((tries + 1))
    sleep 0.1
  done
  export RIFFLE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export RIFFLE_TEST_S3_ACCESS_KEY_ID="riffle-test"
  export RIFFLE_TEST_S3_SECRET_ACCESS_KEY="riffle-test-secret"
  export RIFFLE_TEST_S3_REGION="us-east-1"
  # moto serves SQS on the same port (the SQS connector's tests).
  export RIFFLE_TEST_SQS_ENDPOINT="$RIFFLE_TEST_S3_ENDPOINT"
  export RIFFLE_TEST_SQS_ACCESS_KEY_ID="$RIFFLE_TEST_S3_ACCESS_KEY_ID"
  export RIFFLE_TEST_SQS_SECRET_ACCESS_KEY="$RIFFLE_TEST_S3_SECRET_ACCESS_KEY"
  export RIFFLE_TEST_SQS_REGION="$RIFFLE_TEST_S3_REGION"
  RIFFLE_S3_STOP="kill $pid 2>/dev/null || true; rm -rf $dir"
  riffle_at_exit "$RIFFLE_S3_STOP"
  echo "== moto_server 5.2.5 (S3, SQS) on 127.0.0.1:$port, log $dir/server.log: RIFFLE_TEST_S3_ENDPOINT=$RIFFLE_TEST_S3_ENDPOINT"
}

riffle_needs riffle_s3_setup "the S3-compatible server" "the object-store tests" || return 1

