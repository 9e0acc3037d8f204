# Sourced by scripts/test.sh: a real headless browser for the dashboard's end-to-end
# tests. Installs Debian's chromium and chromium-driver when chromedriver is missing
# and exports RIFFLE_TEST_CHROMEDRIVER and RIFFLE_TEST_CHROMIUM; riffle-ui's browser
# tests start chromedriver themselves and skip (or, under CI, fail) when these are unset.

riffle_chromium_setup() {
  local driver browser
  driver="$(command -v chromedriver || true)"
  if [ -z "$driver" ]; then
    riffle_apt_install chromium chromium-driver
    driver="$(command -v chromedriver || true)"
  fi
  browser="$(command -v chromium || command -v chromium-browser || true)"
  if [ -z "$driver" ] || [ -z "$browser" ]; then
    echo "chromium could not be installed: the dashboard's browser tests need it" >&2
    return 1
  fi
  export RIFFLE_TEST_CHROMEDRIVER="$driver"
  export RIFFLE_TEST_CHROMIUM="$browser"
  echo "== $("$browser" --version 2>/dev/null | head -n 1): RIFFLE_TEST_CHROMEDRIVER=$driver"
}

riffle_chromium_setup
