# Sourced by scripts/test.sh: the tools that check `riffle build-image`'s images from
# the outside, from Debian packages: skopeo (reads the tar as oci-archive: and
# docker-archive:, pushes and pulls), umoci (unpacks the OCI layout into a root
# filesystem) and docker-registry (the CNCF distribution registry, which the test
# starts on a loopback port of its own). Installed without starting the registry's
# system service. Exports RIFFLE_TEST_SKOPEO, RIFFLE_TEST_UMOCI and
# RIFFLE_TEST_REGISTRY (the programs).
riffle_image_tools_setup() {
  local missing="" sudo=""
  command -v skopeo >/dev/null 2>&1 || missing="$missing skopeo"
  command -v umoci >/dev/null 2>&1 || missing="$missing umoci"
  command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
  if [ -n "$missing" ]; then
    echo "== installing$missing"
    [ "$(id -u)" = 0 ] || sudo=sudo
    # Answer "do not start" to the package's service start (policy-rc.d, exit 101).
    local policy=/usr/sbin/policy-rc.d had_policy=1
    if [ ! -e "$policy" ]; then
      had_policy=0
      printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
      $sudo chmod +x "$policy"
    fi
    # shellcheck disable=SC2086
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq $missing >/dev/null
    local rc=$?
    [ "$had_policy" = 1 ] || $sudo rm -f "$policy"
    [ "$rc" = 0 ] || return 1
  fi
  export RIFFLE_TEST_SKOPEO="$(command -v skopeo)"
  export RIFFLE_TEST_UMOCI="$(command -v umoci)"
  export RIFFLE_TEST_REGISTRY="$(command -v docker-registry)"
  echo "== image tools: $("$RIFFLE_TEST_SKOPEO" --version), umoci $("$RIFFLE_TEST_UMOCI" --version 2>&1 | awk '{print $NF}'), $RIFFLE_TEST_REGISTRY"
}

riffle_needs riffle_image_tools_setup "skopeo, umoci or docker-registry" "the build-image tests against them" || return 1

