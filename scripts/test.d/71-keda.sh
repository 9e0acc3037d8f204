# Sourced by scripts/test.sh: KEDA's ScaledObject schema (the npm package
# @kubernetes-models/keda, pinned, generated from KEDA's CRDs) and a validator
# script beside it, for the Flow manifest test. Exports RIFFLE_TEST_KEDA_VALIDATE,
# the script to run with node.
riffle_keda_validate_setup() {
  local dir="${HOME}/.cache/riffle/keda-2.0.0"
  if ! command -v node >/dev/null; then
    echo "71-keda.sh: node is missing" >&2
    return 1
  fi
  if [ ! -d "$dir/node_modules/@kubernetes-models/keda" ]; then
    echo "== installing @kubernetes-models/keda 2.0.0"
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund --prefix "$dir" "@kubernetes-models/keda@2.0.0") || return 1
  fi
  cp "$RIFFLE_REPO/scripts/keda/validate.mjs" "$dir/validate.mjs"
  export RIFFLE_TEST_KEDA_VALIDATE="$dir/validate.mjs"
  echo "== KEDA schemas 2.0.0: RIFFLE_TEST_KEDA_VALIDATE=$RIFFLE_TEST_KEDA_VALIDATE"
}

riffle_needs riffle_keda_validate_setup "the KEDA schema" "the Flow manifest test" || return 1
