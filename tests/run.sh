#!/bin/sh
# Runs every check suite binary given, then the CLI tests, and closes with
# one summary line "N passed, N failed". Exit status 1 if anything failed.
set -u
build=$1; shift
passed=0; failed=0
for t in "$@"; do
  echo "== $(basename "$t")"
  if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $t"; fi
done
for s in tests/cli/*.sh tests/integration/*.sh; do
  [ -f "$s" ] || continue
  case "$(basename "$s")" in lib.sh | srvlib.sh | motolib.sh) continue ;; esac
  echo "== $(basename "$s")"
  if OTF_BUILD="$build" OTFUSE="$build/otfuse" OTFUSED="$build/otfused" sh "$s"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $s"; fi
done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
