# Sourced by the connector benchmarks (bench/kafka.sh, redis.sh, postgres.sh,
# rabbitmq.sh) from the repository root: what they share to start a server the way
# the test suite does, from one of scripts/test.d/ (stopped when the benchmark
# exits), and where they record what they measured.
#
#   source bench/servers.sh NAME     # NAME: the benchmark, for messages
#
# Sets `results` (bench/results/<UTC date>.jsonl) and `record` (prints a line and
# appends it there). Unlike the test suite, a benchmark installs nothing: a missing
# package is an error saying what to install.

bench_name="${1:-bench}"
mkdir -p bench/results
results="bench/results/$(date -u +%Y-%m-%d).jsonl"
record() { tee -a "$results"; }

RIFFLE_AT_EXIT=""
riffle_at_exit() {
  RIFFLE_AT_EXIT="$1; $RIFFLE_AT_EXIT"
  # shellcheck disable=SC2016
  trap 'eval "$RIFFLE_AT_EXIT"' EXIT
}
riffle_needs() { "$1"; }
riffle_apt_install() { echo "bench/$bench_name.sh: install $* first" >&2; return 1; }
