#!/bin/sh
# make install + the container image's install script (docker/install.sh),
# on the binaries under test ($OTFUSED's build folder, not rebuilt): the
# staged tree holds exactly the installed files, runtime-packages.txt names
# real Debian packages and no -dev ones, and the installed otfused passes
# the smoke test (livez, version, dashboard, clean SIGTERM). Also checks
# DESTDIR/PREFIX are honoured and `make uninstall` removes what was put there.
. tests/cli/lib.sh
OTFUSED=${OTFUSED:-build/otfused}
build=$(dirname "$OTFUSED")

if sh docker/install.sh --no-build --build-dir "$build" "$T/stage" >"$T/install.log" 2>&1; then ok; else
  bad "docker/install.sh failed"; sed 's/^/  /' "$T/install.log"; fi
grep -q "smoke test passed" "$T/install.log" && ok || bad "no smoke test line in install.sh output"

for f in usr/local/bin/otfuse usr/local/bin/otfused usr/local/share/doc/otfuse/README.md \
         usr/local/share/doc/otfuse/deploy.md usr/local/share/doc/otfuse/examples/otfused.service; do
  [ -f "$T/stage/$f" ] && ok || bad "not installed: $f"
done
[ -x "$T/stage/usr/local/bin/otfused" ] && ok || bad "otfused not executable"
cmp -s "$OTFUSED" "$T/stage/usr/local/bin/otfused" && ok || bad "installed otfused differs from $OTFUSED"
# Nothing outside PREFIX (DESTDIR honoured), nothing but bin/ and share/.
extra=$(cd "$T/stage" && find . -type f ! -path './usr/local/bin/*' ! -path './usr/local/share/doc/otfuse/*' ! -name runtime-packages.txt)
[ -z "$extra" ] && ok || bad "unexpected files staged: $extra"

pk="$T/stage/runtime-packages.txt"
[ -s "$pk" ] && ok || bad "runtime-packages.txt empty"
grep -q -- '-dev$' "$pk" && bad "runtime packages include -dev: $(cat "$pk")" || ok
for p in $(cat "$pk"); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && ok || bad "not a Debian package: $p"
done
grep -qx 'libc6' "$pk" && ok || bad "libc6 missing from runtime packages"

# Another PREFIX, then uninstall leaves no file behind.
if make --no-print-directory BUILD="$build" -o "$build/otfuse" -o "$build/otfused" \
     PREFIX=/opt/otf DESTDIR="$T/st2" install >"$T/out" 2>&1; then ok; else bad "make install PREFIX=/opt/otf"; cat "$T/out"; fi
[ -x "$T/st2/opt/otf/bin/otfused" ] && ok || bad "PREFIX not honoured"
make --no-print-directory BUILD="$build" PREFIX=/opt/otf DESTDIR="$T/st2" uninstall >"$T/out" 2>&1 && ok || bad "make uninstall"
left=$(find "$T/st2" -type f)
[ -z "$left" ] && ok || bad "left after uninstall: $left"

# The script refuses bad usage.
sh docker/install.sh >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "install.sh without STAGE_DIR should exit 2"
finish install 18
