# otfuse's client commands (submit, status, wait, jobs, cancel, download)
# against a real otfused on 127.0.0.1: a job from flags and from a spec
# file, its artifacts downloaded, verified and byte-identical to
# `otfuse fuse`, exit codes by outcome (0 succeeded, 1 failed, 3
# cancelled, 2 usage), the progress bar on a terminal, server errors shown
# from problem+json, tokens from flags and the environment, idempotency,
# `wait` riding out a kill -9 and restart of the server, an unreachable
# server.
. tests/cli/lib.sh
. tests/integration/srvlib.sh
ROOT=$(pwd)
MD=$ROOT/$M
MK=$OTF_BUILD/tools/make_model
[ -x "$MK" ] || { echo "client.sh: $MK is missing (make tools)"; exit 1; }

# A blocker: a random BERT-shaped pair that takes a few seconds to fuse,
# so that with one worker the jobs behind it stay queued.
for s in 1 2; do
  "$MK" --arch BertForSequenceClassification --hidden 512 --layers 8 --heads 8 --ffn 2048 \
    --vocab 1000 --positions 128 --seed $s -o "$T/big$s" >/dev/null || bad "make_model"
done

srv_start main --local --file-root "$ROOT/tests/data" --file-root "$T" --workers 1 || exit 1
export OTFUSE_URL=$URL
unset OTFUSE_TOKEN

# ---- usage (exit 2), before any request ----
for c in submit status wait jobs cancel download; do
  expect_exit 0 "$OTFUSE" $c --help && grep -q "usage: otfuse $c" "$T/out" && grep -q -- --url "$T/out" &&
    ok || bad "$c --help"
done
expect_exit 2 "$OTFUSE" status && ok
expect_exit 2 "$OTFUSE" status a b && ok
expect_exit 2 "$OTFUSE" status '../../livez' && grep -q "not a job id" "$T/err" && ok || bad "bad id"
expect_exit 2 "$OTFUSE" wait --timeout -1 x && ok
expect_exit 2 "$OTFUSE" jobs --limit 0 && ok
expect_exit 2 "$OTFUSE" download x && grep -q -- "-o DIR is required" "$T/err" && ok || bad "download without -o"
expect_exit 2 "$OTFUSE" submit && ok
expect_exit 2 "$OTFUSE" submit "$MD/vit_s0" && grep -q "not a spec file" "$T/err" && ok || bad "one model"
expect_exit 2 "$OTFUSE" submit --reg x "$MD/vit_s0" "$MD/vit_s1" && grep -q -- "--reg" "$T/err" && ok ||
  bad "--reg x"
expect_exit 2 "$OTFUSE" submit --metadata '[1]' "$MD/vit_s0" "$MD/vit_s1" && ok
# the spec is checked locally: the message names the field
expect_exit 2 "$OTFUSE" submit --reg 0 "$MD/vit_s0" "$MD/vit_s1" && grep -q "/ot/reg: reg must be > 0" "$T/err" &&
  ok || bad "local check of reg"
expect_exit 2 "$OTFUSE" submit --qk joint --dtype f64 "$MD/vit_s0" "$MD/vit_s1" &&
  grep -q "/ot/qk" "$T/err" && grep -q "/output/dtype" "$T/err" && ok || bad "every local problem listed"
expect_exit 2 "$OTFUSE" submit --align activations "$MD/vit_s0" "$MD/vit_s1" &&
  grep -q "/calibration/uri" "$T/err" && ok || bad "activations without calibration"
expect_exit 2 "$OTFUSE" submit --url ftp://x "$MD/vit_s0" "$MD/vit_s1" && ok
expect_exit 2 "$OTFUSE" submit --idempotency-key 'a b' "$MD/vit_s0" "$MD/vit_s1" && ok
expect_exit 2 "$OTFUSE" jobs --token "$(printf 'x\r\nX-Evil: 1')" && grep -q "control character" "$T/err" && ok ||
  bad "a token with CR LF"
http GET /v1/jobs; [ "$(jq '.items | length' $T/body)" = 0 ] && ok || bad "a usage error reached the server"

# ---- submit from flags, wait, status, download == otfuse fuse ----
expect_exit 0 "$OTFUSE" submit -q --solver exact --qk heads --weights 1,3 --dtype bf16 \
  --metadata '{"team":"vision"}' "$MD/vit_s0" "$M/vit_s1" && ok
J=$(cat "$T/out")
[ -n "$J" ] && [ "$(wc -l <"$T/out")" = 1 ] && ok || bad "-q prints the id only: $(cat $T/out)"
expect_exit 0 "$OTFUSE" wait "$J" && ok
[ "$(jq -r .status $T/out)" = succeeded ] && [ "$(jq -r .id $T/out)" = "$J" ] && ok || bad "wait output"
# flags became the spec (a relative path became a file:// URI)
jq -e --arg m1 "file://$MD/vit_s1/" '.spec.ot.solver == "exact" and .spec.ot.qk == "heads" and
  .spec.ot.weights == [1,3] and .spec.output.dtype == "bf16" and .metadata.team == "vision" and
  .spec.models[1].uri == $m1' "$T/out" >/dev/null && ok || bad "spec from flags: $(jq -c .spec $T/out)"
expect_exit 0 "$OTFUSE" status "$J" && [ "$(jq -r .id $T/out)" = "$J" ] && ok || bad "status"
expect_exit 0 "$OTFUSE" download "$J" -o "$T/dl" && ok
OPENBLAS_NUM_THREADS=1 "$OTFUSE" fuse --solver exact --qk heads --weights 1,3 --dtype bf16 \
  -o "$T/local" "$MD/vit_s0" "$MD/vit_s1" >/dev/null || bad "local fuse"
cmp -s "$T/dl/model.safetensors" "$T/local/model.safetensors" && ok ||
  bad "downloaded model.safetensors differs from otfuse fuse's"
for f in config.json fusion_report.json fusion_manifest.json model.safetensors; do
  [ -f "$T/dl/$f" ] || bad "download lacks $f"
done
# every file is the manifest's, and the printed list says so
n=$(jq '.artifacts | length' "$T/out")
[ "$n" -ge 4 ] && [ "$(ls "$T/dl" | wc -l)" = "$n" ] && ok || bad "download list $n vs $(ls $T/dl)"
jq -r '.artifacts[] | "\(.sha256)  \(.name)"' "$T/out" | (cd "$T/dl" && sha256sum -c --quiet -) && ok ||
  bad "sha256 of downloaded files"
ls -a "$T" | grep -q '\.part\.' && bad "a temporary download folder is left" || ok
# into an existing folder: files replaced atomically, others kept
echo keep >"$T/dl/mine.txt"; echo old >"$T/dl/config.json"
cfg_sha=$(jq -r '.artifacts[] | select(.name == "config.json") | .sha256' "$T/out")
expect_exit 0 "$OTFUSE" download "$J" -o "$T/dl" && [ "$(cat $T/dl/mine.txt)" = keep ] &&
  [ "$(sha256sum <"$T/dl/config.json" | cut -d' ' -f1)" = "$cfg_sha" ] && ok ||
  bad "download into an existing folder: want $cfg_sha, $(sha256sum "$T/dl/config.json"), $(cat "$T/dl/mine.txt")"
ls -a "$T/dl" | grep -q '\.part\.' && bad "temporary files left in the folder" || ok

# ---- a spec file, and stdin ----
printf '{"models":[{"uri":"file://%s/"},{"uri":"file://%s/"}],"method":"average"}\n' \
  "$MD/bert_cls_s0" "$MD/bert_cls_s1" >"$T/spec.json"
expect_exit 0 "$OTFUSE" submit --wait "$T/spec.json" && [ "$(jq -r .status $T/out)" = succeeded ] &&
  [ "$(jq -r .spec.method $T/out)" = average ] && ok || bad "submit SPEC.json --wait"
expect_exit 0 sh -c "\"$OTFUSE\" submit - <\"$T/spec.json\"" && [ "$(jq -r .status $T/out)" = queued -o \
  "$(jq -r .status $T/out)" = running -o "$(jq -r .status $T/out)" = succeeded ] && ok || bad "submit -"
expect_exit 2 "$OTFUSE" submit --solver exact "$T/spec.json" && ok

# ---- idempotency ----
expect_exit 0 "$OTFUSE" submit -q --idempotency-key k-1 "$MD/vit_s0" "$MD/vit_s1" && ok; I1=$(cat "$T/out")
expect_exit 0 "$OTFUSE" submit -q --idempotency-key k-1 "$MD/vit_s0" "$MD/vit_s1" && ok; I2=$(cat "$T/out")
[ -n "$I1" ] && [ "$I1" = "$I2" ] && ok || bad "same key gave $I1 and $I2"
expect_exit 1 "$OTFUSE" submit -q --idempotency-key k-1 --solver exact "$MD/vit_s0" "$MD/vit_s1" &&
  grep -q "HTTP 422" "$T/err" && ok || bad "same key, other body"

# ---- server errors are shown from problem+json (exit 1) ----
expect_exit 1 "$OTFUSE" submit /etc /etc && grep -q "HTTP 403" "$T/err" && grep -q "/models/0/uri" "$T/err" &&
  grep -q "request id" "$T/err" && ok || bad "403 shown"
# a relative path must be here; an absolute one may be the server's
expect_exit 1 "$OTFUSE" submit nope "$MD/vit_s0" && grep -q "nope: No such file" "$T/err" && ok ||
  bad "relative path that is not here"
expect_exit 1 "$OTFUSE" submit "$MD/nope" "$MD/vit_s0" && grep -q "HTTP 422" "$T/err" &&
  grep -q "file://$MD/nope" "$T/err" && ok || bad "absolute path goes to the server"
expect_exit 1 "$OTFUSE" status j0000000000000000000 && grep -q "HTTP 404" "$T/err" && ok || bad "404 shown"
expect_exit 1 "$OTFUSE" jobs --status bogus && grep -q "unknown status" "$T/err" && ok || bad "bad status filter"
expect_exit 1 "$OTFUSE" download j0000000000000000000 -o "$T/none" && [ ! -e "$T/none" ] && ok ||
  bad "download of a missing job"

# ---- a failing job: wait exits 1 with the reason ----
mkdir -p "$T/notamodel"
expect_exit 0 "$OTFUSE" submit -q "$T/notamodel" "$MD/vit_s0" && ok; F=$(cat "$T/out")
expect_exit 1 "$OTFUSE" wait --timeout 60 "$F" && grep -q "job $F failed" "$T/err" &&
  [ "$(jq -r .status $T/out)" = failed ] && ok || bad "failed job: $(cat $T/err)"
expect_exit 1 "$OTFUSE" download "$F" -o "$T/none" && grep -q "not succeeded" "$T/err" && [ ! -e "$T/none" ] &&
  ok || bad "download of a failed job"

# ---- queued behind the blocker: timeout, cancel -> wait exits 3 ----
expect_exit 0 "$OTFUSE" submit -q "$T/big1" "$T/big2" && ok; B=$(cat "$T/out")
expect_exit 0 "$OTFUSE" submit -q "$MD/vit_s0" "$MD/vit_s1" && ok; Q=$(cat "$T/out")
expect_exit 0 "$OTFUSE" jobs --status queued,running && grep -q "^$Q .*queued" "$T/out" && ok ||
  bad "jobs table: $(cat $T/out)"
expect_exit 1 "$OTFUSE" wait --timeout 0.3 "$Q" && grep -q "not finished after" "$T/err" && ok ||
  bad "wait --timeout"
expect_exit 0 "$OTFUSE" cancel "$Q" && [ "$(jq -r .id $T/out)" = "$Q" ] && ok || bad "cancel"
expect_exit 3 "$OTFUSE" wait "$Q" && [ "$(jq -r .status $T/out)" = cancelled ] && ok || bad "wait on cancelled"
expect_exit 1 "$OTFUSE" cancel "$Q" && grep -q "HTTP 409" "$T/err" && ok || bad "cancel twice"
expect_exit 0 "$OTFUSE" jobs --json --limit 1 && [ "$(jq '.items | length' $T/out)" = 1 ] &&
  [ "$(jq -r .next $T/out)" != null ] && ok || bad "jobs --json --limit 1"
expect_exit 0 "$OTFUSE" jobs --limit 1 && grep -q "more: otfuse jobs --after" "$T/err" && ok || bad "next cursor hint"
NEXT=$(grep -o -- '--after .*' "$T/err" | cut -d' ' -f2)
expect_exit 0 "$OTFUSE" jobs --limit 1 --after "$NEXT" --json && [ "$(jq -r '.items[0].id' $T/out)" = "$B" ] &&
  ok || bad "second page: $(jq -c '[.items[].id]' $T/out) want $B"
# the blocker, on a terminal: a progress bar on stderr, the job on stdout
# (script(1) gives it a terminal and records what it draws in tty_err)
script -qfec "\"$OTFUSE\" wait \"$B\" >\"$T/tty_out\"; echo \$? >\"$T/tty_rc\"" "$T/tty_err" >/dev/null 2>&1
[ "$(cat $T/tty_rc 2>/dev/null)" = 0 ] && [ "$(jq -r .status $T/tty_out)" = succeeded ] && ok ||
  bad "wait on a tty: rc $(cat $T/tty_rc 2>/dev/null) $(head -c 300 $T/tty_err)"
grep -q '\[#*\.*\] *[0-9.]*%' "$T/tty_err" && grep -q '\[#\{30\}\] 100.0%  succeeded' "$T/tty_err" &&
  grep -q 'running *aligning' "$T/tty_err" && ok || bad "no progress bar: $(head -c 300 $T/tty_err)"
expect_exit 0 "$OTFUSE" wait "$B" && [ ! -s "$T/err" ] && ok || bad "no progress bar when stderr is not a terminal"
srv_stop

# ---- wait rides out a server crash (kill -9) and restart ----
srv_start crash --local --file-root "$ROOT/tests/data" --file-root "$T" --workers 1 || exit 1
CPORT=$PORT
expect_exit 0 "$OTFUSE" submit -q --url "$URL" "$T/big1" "$T/big2" && ok; C=$(cat "$T/out")
"$OTFUSE" wait --url "$URL" --timeout 120 "$C" >"$T/crash_out" 2>"$T/crash_err" &
WP=$!
i=0; while [ $i -lt 100 ]; do
  http GET "/v1/jobs/$C"; [ "$(jq -r .status $T/body)" = running ] && break; sleep 0.05; i=$((i + 1)); done
srv_stop KILL
sleep 1
mv "$T/crash.log" "$T/crash1.log"
srv_start crash --local --file-root "$ROOT/tests/data" --file-root "$T" --workers 1 \
  --listen "127.0.0.1:$CPORT" || exit 1
wait $WP; WRC=$?
st=$(jq -r .status "$T/crash_out" 2>/dev/null)
{ [ $WRC = 0 ] && [ "$st" = succeeded ]; } || { [ $WRC = 1 ] && [ "$st" = failed ]; } && ok ||
  bad "wait across a restart: exit $WRC, status $st, $(cat $T/crash_err)"
grep -q "cannot reach the server, retrying" "$T/crash_err" && ok || bad "the outage was not reported"
echo "job across kill -9: $st (attempt $(jq -r .attempt $T/crash_out 2>/dev/null))"
srv_stop

# ---- tokens ----
srv_start auth --token s3cret --file-root "$ROOT/tests/data" || exit 1
expect_exit 1 "$OTFUSE" jobs --url "$URL" && grep -q "HTTP 401" "$T/err" && ok || bad "no token"
expect_exit 1 "$OTFUSE" jobs --url "$URL" --token wrong && grep -q "HTTP 401" "$T/err" && ok || bad "wrong token"
expect_exit 0 "$OTFUSE" jobs --url "$URL" --token s3cret && ok
expect_exit 0 env OTFUSE_TOKEN=s3cret OTFUSE_URL="$URL" "$OTFUSE" submit -q --wait "$MD/vit_s0" "$MD/vit_s1" &&
  ok
grep -q s3cret "$T/out" "$T/err" && bad "the token was printed" || ok
srv_stop

# ---- unreachable server: exit 1, said plainly ----
expect_exit 1 "$OTFUSE" status j0000000000000000000 --url "$URL" && grep -q "cannot reach" "$T/err" && ok ||
  bad "unreachable"

finish "otfuse client" 74
