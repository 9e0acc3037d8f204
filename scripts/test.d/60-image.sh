# Sourced by scripts/test.sh: the tools that check `riffle build-image`'s images from
# the outside, from Debian packages: skopeo (reads the tar as oci-archive: and
# docker-archive:, pushes and pulls), umoci (unpacks the OCI layout into a root
# filesystem) and docker-registry (the CNCF distribution registry, which the test
# starts on a loopback port of its own), and openssl (the key and certificate of the
# test's token server, for the registry with `auth: token`). Installed without
# starting the registry's system service. Exports RIFFLE_TEST_SKOPEO,
# RIFFLE_TEST_UMOCI, RIFFLE_TEST_REGISTRY and RIFFLE_TEST_OPENSSL (the programs).
riffle_image_tools_setup() {
  local missing=""
  command -v skopeo >/dev/null 2>&1 || missing="$missing skopeo"
  command -v umoci >/dev/null 2>&1 || missing="$missing umoci"
  command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
  command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    riffle_apt_install $missing || return 1
  fi
  export RIFFLE_TEST_SKOPEO="$(command -v skopeo)"
  export RIFFLE_TEST_UMOCI="$(command -v umoci)"
  export RIFFLE_TEST_REGISTRY="$(command -v docker-registry)"
  export RIFFLE_TEST_OPENSSL="$(command -v openssl)"
  echo "== image tools: $("$RIFFLE_TEST_SKOPEO" --version), umoci $("$RIFFLE_TEST_UMOCI" --version 2>&1 | awk '{print $NF}'), $RIFFLE_TEST_REGISTRY"
}

riffle_needs riffle_image_tools_setup "skopeo, umoci, docker-registry or openssl" "the build-image tests against them" || return 1

