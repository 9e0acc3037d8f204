# Sourced by scripts/test.sh: DuckDB for the DuckDB connector's tests. The
# connector links a prebuilt libduckdb (compiling DuckDB from source takes about an
# hour on 2 cores); npm's package @duckdb/node-bindings-linux-<arch> ships one, so
# this fetches it with `npm pack` (once; kept under target/test-tools/), exports
# DUCKDB_LIB_DIR (read by libduckdb-sys when linking) and LD_LIBRARY_PATH (for the
# test programs and the `riffle` binary they start), and asks scripts/test.sh to
# build everything with the feature (RIFFLE_TEST_CARGO_FEATURES): one build, used by
# the build, the tests and the doctests alike. Without it the DuckDB tests are not
# compiled.

RIFFLE_DUCKDB_NPM_VERSION="1.5.6-r.1" # DuckDB 1.5.6, as the duckdb crate =1.10506.0

riffle_duckdb_setup() {
  local arch dir tmp
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *)
      echo "54-duckdb.sh: no prebuilt libduckdb for $(uname -m)" >&2
      return 1
      ;;
  esac
  dir="${CARGO_TARGET_DIR:-$RIFFLE_REPO/target}/test-tools/libduckdb-$RIFFLE_DUCKDB_NPM_VERSION-$arch"
  if [ ! -s "$dir/libduckdb.so" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "54-duckdb.sh: npm is not installed" >&2
      return 1
    fi
    tmp="$(mktemp -d /tmp/riffle-duckdb.XXXXXX)"
    if ! (cd "$tmp" && npm pack --silent \
      "@duckdb/node-bindings-linux-$arch@$RIFFLE_DUCKDB_NPM_VERSION" >/dev/null) ||
      ! tar xzf "$tmp"/*.tgz -C "$tmp" package/libduckdb.so; then
      echo "54-duckdb.sh: npm pack @duckdb/node-bindings-linux-$arch@$RIFFLE_DUCKDB_NPM_VERSION failed" >&2
      rm -rf "$tmp"
      return 1
    fi
    mkdir -p "$dir"
    cp "$tmp/package/libduckdb.so" "$dir/libduckdb.so.part" && mv "$dir/libduckdb.so.part" "$dir/libduckdb.so"
    rm -rf "$tmp"
  fi
  export DUCKDB_LIB_DIR="$dir"
  export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export RIFFLE_TEST_CARGO_FEATURES="--features riffle-cli/duckdb"
  echo "== libduckdb (npm @duckdb/node-bindings-linux-$arch@$RIFFLE_DUCKDB_NPM_VERSION): DUCKDB_LIB_DIR=$DUCKDB_LIB_DIR; building with $RIFFLE_TEST_CARGO_FEATURES"
}

riffle_needs riffle_duckdb_setup "libduckdb" "the DuckDB tests (not compiled without it)" || return 1
