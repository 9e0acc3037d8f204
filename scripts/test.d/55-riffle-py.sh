# Sourced by scripts/test.sh after 10-python.sh and the servers' files (its Kafka
# tests read RIFFLE_TEST_KAFKA_BROKERS from 50-kafka.sh): builds the Python package `riffle`
# (crates/riffle-py, a PyO3 extension built by maturin) into the test venv, in the
# dev profile and the workspace's target/, and runs its pytest suite
# (crates/riffle-py/tests: every operator, sources and sinks, the file connectors,
# several workers, `python -m riffle.run`, recovery, the Kafka connector, `stateful`,
# pipelines (pandas DataFrames among their artifacts), the error cases, the
# docstring examples).
# A failed build or test fails the suite here, before the Rust tests start.
riffle_py_python="${RIFFLE_TEST_PYTHON:-}"
if [ -z "$riffle_py_python" ]; then
  echo "55-riffle-py.sh: RIFFLE_TEST_PYTHON is unset (10-python.sh makes the venv)" >&2
  return 1
fi
riffle_py_repo="${RIFFLE_REPO:-$PWD}"
if ! "$riffle_py_python" -c 'import importlib.metadata as m; assert (m.version("maturin"), m.version("pytest")) == ("1.16.0", "9.2.0")' 2>/dev/null; then
  "$riffle_py_python" -m pip install --quiet --disable-pip-version-check \
    "maturin==1.16.0" "pytest==9.2.0"
fi
# pandas: the riffle.pipeline tests store a DataFrame as an Arrow IPC artifact (a
# wheel over 10-python.sh's numpy and pyarrow: about 8 s, once per venv).
if ! "$riffle_py_python" -c 'import importlib.metadata as m; assert m.version("pandas") == "3.1.1"' 2>/dev/null; then
  "$riffle_py_python" -m pip install --quiet --disable-pip-version-check "pandas==3.1.1"
fi
# fastavro: the Kafka connector's plain Avro serdes are tested with it (a wheel, ~1 s).
if ! "$riffle_py_python" -c 'import importlib.metadata as m; assert m.version("fastavro") == "1.13.1"' 2>/dev/null; then
  "$riffle_py_python" -m pip install --quiet --disable-pip-version-check "fastavro==1.13.1"
fi
riffle_py_started=$SECONDS
# --no-build-isolation: the venv's maturin builds it (pip finds its binary on PATH),
# with nothing downloaded per run.
if ! PATH="$(dirname "$riffle_py_python"):$PATH" "$riffle_py_python" -m pip install \
  --quiet --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall \
  --config-settings=build-args="--profile=dev" "$riffle_py_repo/crates/riffle-py"; then
  echo "55-riffle-py.sh: building the riffle Python package failed" >&2
  return 1
fi
if ! PYTHONDONTWRITEBYTECODE=1 "$riffle_py_python" -m pytest -q -p no:cacheprovider \
  "$riffle_py_repo/crates/riffle-py/tests"; then
  echo "55-riffle-py.sh: the riffle Python package's tests failed" >&2
  return 1
fi
echo "riffle-py: package built and its tests passed in $((SECONDS - riffle_py_started)) s"
