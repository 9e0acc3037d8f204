#!/usr/bin/env bash
# Creates bench/.venv-bytewax with bytewax 0.21.1 installed from PyPI.
# Idempotent: does nothing when the venv already has that version.
set -euo pipefail

BYTEWAX_VERSION="0.21.1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-bytewax"

if [ -x "$venv/bin/python" ] &&
   "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('bytewax') != '$BYTEWAX_VERSION')" 2>/dev/null; then
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
"$venv/bin/python" -m pip install --quiet "bytewax==$BYTEWAX_VERSION"
"$venv/bin/python" -c "import importlib.metadata as m; print('installed bytewax', m.version('bytewax'))"
