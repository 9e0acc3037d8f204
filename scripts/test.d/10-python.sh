# Sourced by scripts/test.sh: a Python 3.11 venv with pynumaflow 0.14.0, for the
# riffle-numaflow conformance tests (real pynumaflow servers and its gRPC stubs as
# clients), and the independent readers of the tables connector's output (pyarrow,
# deltalake = delta-rs, duckdb). Exports RIFFLE_TEST_PYTHON, the venv's interpreter.
riffle_py_venv="${RIFFLE_REPO:-$PWD}/.venv-test"
riffle_py_base="$(command -v python3.11 || true)"
if [ -z "$riffle_py_base" ]; then
  echo "10-python.sh: python3.11 is required for the UDF conformance tests" >&2
  return 1
fi
if [ ! -x "$riffle_py_venv/bin/python" ]; then
  rm -rf "$riffle_py_venv"
  if ! "$riffle_py_base" -m venv "$riffle_py_venv"; then
    # Some distributions ship Python without the venv module's pip; virtualenv
    # (from PyPI) brings its own.
    rm -rf "$riffle_py_venv"
    "$riffle_py_base" -m pip install --quiet --user virtualenv
    "$riffle_py_base" -m virtualenv --quiet "$riffle_py_venv"
  fi
fi
if ! "$riffle_py_venv/bin/python" -c 'import pynumaflow, importlib.metadata as m; assert m.version("pynumaflow") == "0.14.0"' 2>/dev/null; then
  "$riffle_py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "pynumaflow==0.14.0"
fi
if ! "$riffle_py_venv/bin/python" -c 'import importlib.metadata as m; assert (m.version("pyarrow"), m.version("deltalake"), m.version("duckdb")) == ("26.0.1", "1.6.6", "2.0.1")' 2>/dev/null; then
  "$riffle_py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "pyarrow==26.0.1" "deltalake==1.6.6" "duckdb==2.0.1"
fi
# Checks the OpenAPI documents Flows serve.
if ! "$riffle_py_venv/bin/python" -c 'import importlib.metadata as m; assert m.version("openapi-spec-validator") == "0.7.2"' 2>/dev/null; then
  "$riffle_py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openapi-spec-validator==0.7.2"
fi
# numpy: the riffle.pipeline tests hash an array's content for the cache.
if ! "$riffle_py_venv/bin/python" -c 'import importlib.metadata as m; assert m.version("numpy") == "2.4.6"' 2>/dev/null; then
  "$riffle_py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "numpy==2.4.6"
fi
export RIFFLE_TEST_PYTHON="$riffle_py_venv/bin/python"
echo "RIFFLE_TEST_PYTHON=$RIFFLE_TEST_PYTHON"
