#!/usr/bin/env bash
# Creates bench/.venv-bytewax with bytewax 0.21.1 (and confluent-kafka, for its Kafka
# connector) installed from PyPI.
# Idempotent: does nothing when the venv already has that version.
set -euo pipefail

BYTEWAX_VERSION="0.21.1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-bytewax"

if [ -x "$venv/bin/python" ] &&
   "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('bytewax') != '$BYTEWAX_VERSION'); import confluent_kafka" 2>/dev/null; then
    echo "bytewax $BYTEWAX_VERSION already installed in $venv"
    exit 0
fi

if command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import venv' >/dev/null 2>&1; then
    py=python3.11
else
    py=python3
fi

echo "creating $venv with $($py --version 2>&1)"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# confluent-kafka for bytewax's Kafka connector (the `kafka` workload).
"$venv/bin/python" -m pip install --quiet "bytewax==$BYTEWAX_VERSION" "confluent-kafka==2.16.2"
"$venv/bin/python" -c "import importlib.metadata as m; print('installed bytewax', m.version('bytewax'))"
