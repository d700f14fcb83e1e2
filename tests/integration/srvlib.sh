# Helpers for tests that drive a real otfused on 127.0.0.1 (sourced after
# tests/cli/lib.sh). Needs curl and jq (make install-deps).
#   srv_start NAME ARGS...  start otfused with --listen 127.0.0.1:0 and a data
#                           dir $T/NAME; sets PORT, URL, SRV_PID, SRV_LOG
#   srv_stop [SIGNAL]       signal the server (TERM) and wait for it to exit
#   http METHOD PATH [curl args]  one request; body in $T/body, status in $CODE,
#                           headers in $T/headers
#   wait_job ID TIMEOUT     poll until the job is terminal; sets STATUS
OTFUSED=${OTFUSED:-build/otfused}
OTF_BUILD=${OTF_BUILD:-build}
for t in curl jq; do
  command -v $t >/dev/null || { echo "$t is missing: run 'make install-deps'"; exit 1; }
done

srv_start() {
  name=$1; shift
  SRV_N=$((${SRV_N:-0} + 1))
  SRV_LOG=$T/$name.$SRV_N.log
  "$OTFUSED" --listen 127.0.0.1:0 --data-dir "$T/$name" "$@" 2>"$SRV_LOG" &
  SRV_PID=$!
  PORT=""
  i=0
  while [ $i -lt 100 ]; do
    PORT=$(sed -n 's/.*"msg":"listening on [^"]*","host":"[^"]*","port":\([0-9]*\).*/\1/p' "$SRV_LOG" | tail -n 1)
    [ -n "$PORT" ] && break
    kill -0 $SRV_PID 2>/dev/null || break
    sleep 0.1; i=$((i + 1))
  done
  if [ -z "$PORT" ]; then
    echo "otfused did not start:"; tail -n 5 "$SRV_LOG"; return 1
  fi
  URL=http://127.0.0.1:$PORT
}

srv_stop() {
  kill -"${1:-TERM}" $SRV_PID 2>/dev/null
  wait $SRV_PID 2>/dev/null
  SRV_RC=$?
}

http() {
  m=$1; p=$2; shift 2
  rm -f "$T/body" "$T/headers"
  CODE=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$m" "$@" "$URL$p")
}

# The value of header NAME in the last response.
hdr() {
  tr -d '\r' <"$T/headers" | sed -n "s/^$1: //Ip" | tail -n 1
}

wait_job() {
  deadline=$(( $(date +%s) + $2 ))
  while :; do
    http GET "/v1/jobs/$1"
    STATUS=$(jq -r .status "$T/body")
    case $STATUS in succeeded|failed|cancelled) return 0 ;; esac
    [ "$(date +%s)" -ge $deadline ] && return 1
    sleep 0.1
  done
}

# A job spec for models given as paths (file:// URIs), extra JSON merged in.
spec() {
  extra=$1; shift
  models=$(for p in "$@"; do jq -cn --arg u "file://$p" '{uri: $u}'; done | jq -cs .)
  jq -cn --argjson m "$models" --argjson x "$extra" '{models: $m} * $x'
}
