# Sourced by scripts/test.sh after 10-python.sh: kubernetes-validate (pinned, from
# PyPI) in the test venv, which checks manifests against the Kubernetes API schemas
# it bundles (no cluster, no network at test time). Exports
# RIFFLE_TEST_KUBERNETES_VALIDATE, its program.
riffle_k8s_validate_setup() {
  local python="${RIFFLE_TEST_PYTHON:-}"
  if [ -z "$python" ] || [ ! -x "$python" ]; then
    echo "70-kubernetes.sh: RIFFLE_TEST_PYTHON is not set (10-python.sh makes the venv)" >&2
    return 1
  fi
  if ! "$python" -c 'import importlib.metadata as m; assert m.version("kubernetes-validate") == "1.37.0"' 2>/dev/null; then
    echo "== installing kubernetes-validate 1.37.0"
    "$python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0" || return 1
  fi
  export RIFFLE_TEST_KUBERNETES_VALIDATE="$(dirname "$python")/kubernetes-validate"
  echo "== kubernetes-validate 1.37.0: RIFFLE_TEST_KUBERNETES_VALIDATE=$RIFFLE_TEST_KUBERNETES_VALIDATE"
}

riffle_needs riffle_k8s_validate_setup "kubernetes-validate" "the manifest validation test" || return 1

