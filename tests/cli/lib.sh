# Shared helpers of the CLI tests (sourced, not run: tests/run.sh runs each
# tests/cli/*.sh from the repository root with OTFUSE set).
#   ok / bad MSG        count a passed / failed check
#   field KEY JSON      raw value of a top-level key of a one-line JSON object
#   near A B TOL        |A - B| <= TOL
#   close A B RTOL      |A - B| <= RTOL * |B|
#   expect_exit CODE CMD...   run CMD (stdout to $T/out, stderr to $T/err) and
#                       check its exit status
#   finish NAME MIN     print "NAME: N passed, N failed"; fail unless all
#                       passed and at least MIN checks ran
OTFUSE=${OTFUSE:-build/otfuse}
M=tests/data/models
E=tests/data/eval
G=tests/data/golden
D=tests/data/ot
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
pass=0

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

field() {
  printf '%s\n' "$2" | sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p"
}

near() {
  awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'
}

close() {
  awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= r * m) }'
}

expect_exit() {
  want=$1; shift
  "$@" >"$T/out" 2>"$T/err"
  got=$?
  if [ "$got" -ne "$want" ]; then
    bad "exit $got (want $want): $*"; sed 's/^/  stderr: /' "$T/err"; return 1
  fi
  return 0
}

finish() {
  echo "$1: $pass passed, $fails failed"
  [ "$fails" -eq 0 ] && [ "$pass" -ge "$2" ]
}
