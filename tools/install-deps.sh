#!/bin/sh
# Installs the Debian packages otfuse needs to build, test and run.
# Idempotent and quiet when everything is present; run as root (or with sudo
# available) on Debian 12.
set -eu
PKGS="build-essential pkg-config libopenblas-dev libjansson-dev check
      libsubunit-dev libuv1-dev libmicrohttpd-dev libcurl4-openssl-dev
      libsqlite3-dev libssl-dev clang curl jq"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
# The S3 tests (tests/test_storage_s3, tests/integration/storage_s3.sh) also
# need moto_server, a Python package that is not in Debian; it is not
# installed here (no PyPI in CI), and those tests fail with a message
# naming it when it is missing.
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
