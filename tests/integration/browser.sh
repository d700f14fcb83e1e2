#!/bin/sh
# Browser test of the dashboard (tests/browser/dashboard.test.js): installs
# Debian's chromium and the pinned playwright-core when missing (CI has
# Debian's and npm's registries), starts a real otfused on 127.0.0.1 with a
# token, --workers 1, a scratch data dir and --file-root tests/data, runs the
# test, and stops the server with SIGTERM (a clean exit is checked too).
# Screenshots of a failing step go to build/browser/; the closing screenshot
# of a finished job with its chart to build/dashboard.png.
set -u
OTFUSED=${OTFUSED:-build/otfused}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
T=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT
die() { echo "FAIL: $*"; echo "browser: 0 passed, 1 failed"; exit 1; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -x "$CHROMIUM" ]; then
  echo "browser: installing Debian's chromium"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    die "could not install chromium"
fi
# playwright-core is pinned to 1.61.1, the last release that runs on
# Debian 12's own nodejs (18); it drives chromium 156 fine.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "browser: installing Debian's nodejs and npm"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null ||
    die "could not install node"
fi
want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' tests/browser/package.json)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' tests/browser/node_modules/playwright-core/package.json 2>/dev/null | head -n 1)
if [ "$have" != "$want" ]; then
  echo "browser: installing playwright-core $want (npm ci)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) >"$T/npm.log" 2>&1 ||
    { cat "$T/npm.log"; die "npm ci in tests/browser failed"; }
fi

# A model whose weights file is truncated: the job that reads it must fail.
mkdir -p "$T/roots/bad_model"
cp tests/data/models/vit_s0/config.json "$T/roots/bad_model/"
head -c 200 tests/data/models/vit_s0/model.safetensors >"$T/roots/bad_model/model.safetensors"
token="browser-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
started=0
for try in 1 2 3 4 5; do
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
  rm -rf "$T/data" && mkdir -p "$T/data"
  "$OTFUSED" --listen "127.0.0.1:$port" --data-dir "$T/data" --file-root "$(pwd)/tests/data" --file-root "$T/roots" \
    --token "$token" --workers 1 --grace-seconds 5 2>"$T/server.log" &
  pid=$!
  i=0
  while [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/livez")" = 200 ] && { started=1; break; }
    sleep 0.1; i=$((i + 1))
  done
  [ $started -eq 1 ] && break
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""
done
[ $started -eq 1 ] || { tail -n 20 "$T/server.log"; die "otfused did not start"; }

mkdir -p build
rm -rf build/browser
BASE_URL="http://127.0.0.1:$port" TOKEN="$token" DATA_ROOT="$(pwd)/tests/data" SHOT_DIR=build/browser \
BAD_MODEL="$T/roots/bad_model" \
FINAL_SHOT=build/dashboard.png CHROMIUM="$CHROMIUM" NODE_PATH="$(pwd)/tests/browser/node_modules" \
  node tests/browser/dashboard.test.js
rc=$?

kill -TERM "$pid"
src=0; wait "$pid" || src=$?
pid=""
if [ $rc -ne 0 ]; then
  echo "server log (last 30 lines):"; tail -n 30 "$T/server.log"
  exit 1
fi
[ $src -eq 0 ] || { tail -n 10 "$T/server.log"; die "otfused exited $src on SIGTERM"; }
exit 0
