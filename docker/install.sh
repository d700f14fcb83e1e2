#!/bin/sh
# docker/install.sh [--build-dir DIR] [--no-build] [--prefix P] STAGE_DIR
#
# The image's build and install steps, also run by CI
# (tests/integration/install.sh) so they stay honest without a Docker engine:
#   1. build otfuse and otfused (make all BUILD=DIR), unless --no-build;
#   2. make install into the staging tree STAGE_DIR (DESTDIR) under PREFIX
#      (default /usr/local);
#   3. write STAGE_DIR/runtime-packages.txt: the Debian packages that own
#      the shared libraries the installed binaries link (ldd + dpkg -S), which
#      the image's runtime stage installs and nothing else;
#   4. smoke-test the installed binaries from outside the source tree:
#      otfuse --help, otfused --help, then start the installed otfused on a
#      free loopback port with a scratch data dir, wait for GET /livez = 200,
#      check GET /v1/version names otfused, GET / is the dashboard, the
#      image's HEALTHCHECK script passes, then SIGTERM it and require a
#      clean exit (after which the HEALTHCHECK script must fail).
# Exit status 0 only if every step passed. Needs make, curl, dpkg.
set -eu

build=build/release
do_build=1
prefix=/usr/local
while [ $# -gt 1 ]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --prefix) prefix=$2; shift 2 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: docker/install.sh [--build-dir DIR] [--no-build] [--prefix P] STAGE_DIR" >&2; exit 2; }
case $1 in /*) stage=$1 ;; *) stage=$(pwd)/$1 ;; esac
cd "$(dirname "$0")/.."
healthcheck=$(pwd)/docker/healthcheck.sh

say() { echo "install.sh: $*"; }
fail() { echo "install.sh: FAILED: $*" >&2; exit 1; }

# 1-2. build and install. With --no-build the binaries in $build are taken as
# they are (-o: never remade), so a sanitizer build is installed unchanged.
if [ "$do_build" -eq 1 ]; then
  say "building in $build"
  make --no-print-directory -j"${JOBS:-2}" BUILD="$build" all
  make --no-print-directory BUILD="$build" PREFIX="$prefix" DESTDIR="$stage" install
else
  [ -x "$build/otfuse" ] && [ -x "$build/otfused" ] || fail "--no-build: no binaries in $build"
  make --no-print-directory BUILD="$build" PREFIX="$prefix" DESTDIR="$stage" \
    -o "$build/otfuse" -o "$build/otfused" install
fi
bin=$stage$prefix/bin
for f in "$bin/otfuse" "$bin/otfused" "$stage$prefix/share/doc/otfuse/README.md" \
         "$stage$prefix/share/doc/otfuse/examples/otfused.service"; do
  [ -f "$f" ] || fail "make install did not install $f"
done
say "installed into $stage$prefix"

# 3. runtime packages from the binaries' shared libraries.
# A library may be registered under its /usr or /lib path (merged /usr) or
# only as the target of a symlink (alternatives): ask dpkg about every
# variant in one call, then require an owner for each library.
pkgs=""
libs=$(ldd "$bin/otfuse" "$bin/otfused" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
variants() { real=$(readlink -f "$1"); echo "$1 $real ${1#/usr} ${real#/usr} /usr$1 /usr$real"; }
cands=""
for lib in $libs; do cands="$cands $(variants "$lib")"; done
# shellcheck disable=SC2086
dpkg -S $cands 2>/dev/null | sed 's/:[a-z0-9]*: /: /' >"$stage/.owners" || true
for lib in $libs; do
  pkg=""
  for cand in $(variants "$lib"); do
    pkg=$(awk -v p="$cand" -F': ' '$2 == p { print $1; exit }' "$stage/.owners")
    [ -n "$pkg" ] && break
  done
  [ -n "$pkg" ] || fail "no Debian package owns $lib (linked by the installed binaries)"
  case " $pkgs " in *" $pkg "*) ;; *) pkgs="$pkgs $pkg" ;; esac
done
rm -f "$stage/.owners"
if ldd "$bin/otfuse" "$bin/otfused" | grep -q "not found"; then
  fail "unresolved shared libraries: $(ldd "$bin/otfused" | grep 'not found')"
fi
printf '%s\n' $pkgs | sort > "$stage/runtime-packages.txt"
say "runtime packages: $(tr '\n' ' ' < "$stage/runtime-packages.txt")"

# 4. smoke test, from a scratch directory so nothing in the tree is used.
scratch=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT
cd "$scratch"
"$bin/otfuse" --help >/dev/null 2>&1 || fail "installed otfuse --help"
"$bin/otfused" --help >help.txt 2>&1 || fail "installed otfused --help: $(head -n 3 help.txt)"
grep -q -- "--listen" help.txt || fail "otfused --help does not list --listen"

started=0
for try in 1 2 3 4 5; do
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
  mkdir -p "data$try"
  "$bin/otfused" --local --listen "127.0.0.1:$port" --data-dir "$scratch/data$try" 2>"server$try.log" &
  pid=$!
  i=0
  while [ $i -lt 100 ]; do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    code=$(curl -s -o livez.json -w '%{http_code}' "http://127.0.0.1:$port/livez" || true)
    if [ "$code" = 200 ]; then started=1; break; fi
    sleep 0.1; i=$((i + 1))
  done
  [ $started -eq 1 ] && break
  kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  say "attempt $try on port $port did not come up: $(tail -n 2 "server$try.log" | tr '\n' ' ')"
done
[ $started -eq 1 ] || fail "installed otfused never answered GET /livez"
grep -q '"status" *: *"ok"' livez.json || fail "GET /livez body: $(cat livez.json)"
curl -sf "http://127.0.0.1:$port/v1/version" >version.json || fail "GET /v1/version"
grep -q '"name" *: *"otfused"' version.json || fail "GET /v1/version body: $(cat version.json)"
curl -sf "http://127.0.0.1:$port/" >index.html || fail "GET / (dashboard)"
grep -qi '<!doctype html>' index.html && grep -q '/ui/app.js' index.html ||
  fail "GET / is not the embedded dashboard"
# The image's HEALTHCHECK script: healthy now, unhealthy once stopped.
OTFUSED_LISTEN="127.0.0.1:$port" bash "$healthcheck" || fail "docker/healthcheck.sh on a live server"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ $rc -eq 0 ] || fail "installed otfused exited $rc after SIGTERM: $(tail -n 3 server*.log)"
if OTFUSED_LISTEN="127.0.0.1:$port" bash "$healthcheck" 2>/dev/null; then
  fail "docker/healthcheck.sh says healthy with the server stopped"
fi
say "smoke test passed: /livez, /v1/version $(cat version.json), dashboard, healthcheck, clean SIGTERM"
