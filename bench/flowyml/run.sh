#!/usr/bin/env bash
# Runs flowyml 2.2.1 on the same workload as `riffle bench pipeline`: chains of 100 and
# 1,000 trivial steps, a first run and a cached run each, and prints one JSON line per
# run (workload, phase, steps, seconds, ms_per_step, peak_rss_bytes).
#
#   bench/flowyml/run.sh                 # 100 and 1000 steps
#   bench/flowyml/run.sh --steps 100     # one length
#
# flowyml is installed from PyPI into a venv of its own (FLOWYML_VENV, by default
# ~/.cache/riffle-bench/flowyml-2.2.1); its console output goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${FLOWYML_VENV:-$HOME/.cache/riffle-bench/flowyml-2.2.1}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import flowyml' 2>/dev/null; then
  echo "== installing flowyml 2.2.1 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q "flowyml==2.2.1" >&2
fi
"$venv/bin/python" "$here/chain.py" "$@" | tee >(grep -v '^{"workload"' >&2) | grep '^{"workload"'
