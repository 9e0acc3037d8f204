#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# every crate's tests and doctests. Each file in scripts/test.d/ is sourced in order;
# it installs one kind of test tool (a Python venv, a database server, a browser) and
# exports the variables the tests read to find it.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RIFFLE_REPO="$PWD"

# What the setup files ask to run when the suite ends (servers to stop), the last
# one asked first: `riffle_at_exit COMMAND`.
RIFFLE_AT_EXIT=""
riffle_at_exit() {
  RIFFLE_AT_EXIT="$1; $RIFFLE_AT_EXIT"
  # shellcheck disable=SC2016
  trap 'eval "$RIFFLE_AT_EXIT"' EXIT
}

# Runs a setup file's function; when it fails, CI fails, and elsewhere the tests
# that need what it sets up skip: `riffle_needs FUNCTION "WHAT" "TESTS"`.
riffle_needs() {
  "$1" && return 0
  if [ "${CI:-}" = true ]; then
    echo "$setup: $2 could not be set up, and CI=true needs it" >&2
    return 1
  fi
  echo "$setup: no $2; $3 will skip" >&2
}

# Installs Debian packages (with sudo when not root) without starting their services
# (a policy-rc.d answering 101 while apt runs); apt's index is refreshed once per
# suite: `riffle_apt_install PACKAGE...`.
RIFFLE_APT_UPDATED=""
riffle_apt_install() {
  local sudo="" policy=/usr/sbin/policy-rc.d had_policy=1 rc=0
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "== installing $*"
  if [ ! -e "$policy" ]; then
    had_policy=0
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
  fi
  if [ -z "$RIFFLE_APT_UPDATED" ]; then
    $sudo apt-get update -qq && RIFFLE_APT_UPDATED=1 || rc=1
  fi
  if [ "$rc" = 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || rc=1
  fi
  [ "$had_policy" = 1 ] || $sudo rm -f "$policy"
  return "$rc"
}

for setup in scripts/test.d/*.sh; do
  [ -e "$setup" ] || continue
  echo "== setup: $setup"
  # shellcheck disable=SC1090
  source "$setup"
done

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# Cargo features a setup file asks for (54-duckdb.sh: the DuckDB connector), the
# same for every command below so that the workspace is built once.
# shellcheck disable=SC2206
features=(${RIFFLE_TEST_CARGO_FEATURES:-})

echo "== build"
cargo build --workspace --all-targets "${features[@]}"

echo "== unit and integration tests"
cargo nextest run --workspace --no-fail-fast "${features[@]}"

echo "== doctests"
cargo test --workspace --doc "${features[@]}"
