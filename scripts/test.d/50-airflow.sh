# Sourced by scripts/test.sh: Apache Airflow 3 with the Kubernetes provider, for the
# tests of `riffle build-dags`. A venv of its own (.venv-airflow: Airflow pins many
# packages), then one `airflow db migrate` into a template home (SQLite) that each
# test copies, so no test migrates again. Exports RIFFLE_TEST_AIRFLOW (the venv's
# `airflow` program) and RIFFLE_TEST_AIRFLOW_HOME (the migrated template).
riffle_airflow_setup() {
  local venv home base
  venv="${RIFFLE_REPO:-$PWD}/.venv-airflow"
  home="${RIFFLE_REPO:-$PWD}/target/airflow-home"
  base="$(command -v python3.11 || true)"
  if [ -z "$base" ]; then
    echo "50-airflow.sh: python3.11 is required for the Airflow tests" >&2
    return 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    "$base" -m venv "$venv" || return 1
  fi
  if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("apache-airflow") == "3.3.2"; assert m.version("apache-airflow-providers-cncf-kubernetes") == "10.25.0"' 2>/dev/null; then
    echo "== installing apache-airflow 3.3.2 and the cncf-kubernetes provider (about 1-2 minutes)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "apache-airflow==3.3.2" "apache-airflow-providers-cncf-kubernetes==10.25.0" || return 1
  fi
  if [ ! -s "$home/airflow.db" ]; then
    rm -rf "$home"
    mkdir -p "$home/dags"
    AIRFLOW_HOME="$home" AIRFLOW__CORE__LOAD_EXAMPLES=False \
      AIRFLOW__CORE__DAGS_FOLDER="$home/dags" \
      "$venv/bin/airflow" db migrate >"$home/migrate.log" 2>&1 || {
      echo "50-airflow.sh: airflow db migrate failed; its log:" >&2
      cat "$home/migrate.log" >&2
      rm -f "$home/airflow.db"
      return 1
    }
  fi
  export RIFFLE_TEST_AIRFLOW="$venv/bin/airflow"
  export RIFFLE_TEST_AIRFLOW_HOME="$home"
  echo "== Airflow $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))'): RIFFLE_TEST_AIRFLOW=$RIFFLE_TEST_AIRFLOW"
}

riffle_needs riffle_airflow_setup "Airflow" "the build-dags tests against Airflow" || return 1

