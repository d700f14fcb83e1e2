# otfused end to end, over real HTTP on 127.0.0.1: a job's whole lifecycle
# with its artifact byte-identical to `otfuse fuse`, events, downloads with
# Range and ETag, idempotency, validation errors as problem+json, the dry
# run, cancel mid-run, kill -9 mid-run and restart, drain on SIGTERM,
# tokens, the queue bound, 50 concurrent submissions, metrics.
. tests/cli/lib.sh
. tests/integration/srvlib.sh
ROOT=$(pwd)
MD=$ROOT/$M

srv_start main --local --file-root "$ROOT/tests/data" --file-root "$T" --workers 2 || exit 1

# ---- probes ----
http GET /livez; [ "$CODE" = 200 ] && [ "$(jq -r .status $T/body)" = ok ] && ok || bad "livez $CODE"
http GET /readyz; [ "$CODE" = 200 ] && ok || bad "readyz $CODE"
http GET /v1/version; [ "$(jq -r .name $T/body)" = otfused ] && ok || bad "version"
http GET /openapi.json; jq -e '.openapi | startswith("3.1")' $T/body >/dev/null && ok || bad "openapi"
http GET /nope; [ "$CODE" = 404 ] && [ "$(hdr Content-Type)" = application/problem+json ] &&
  [ -n "$(jq -r .request_id $T/body)" ] && ok || bad "404 problem $CODE"
http DELETE /livez; [ "$CODE" = 405 ] && ok || bad "405 $CODE"

# ---- lifecycle: ViT pair, exact; artifact identical to the CLI's ----
S=$(spec '{"ot":{"solver":"exact"},"metadata":{"team":"vision"}}' "$MD/vit_s0" "$MD/vit_s1")
http POST /v1/jobs -H 'Content-Type: application/json' -d "$S"
[ "$CODE" = 201 ] && ok || bad "create $CODE $(cat $T/body)"
J=$(jq -r .id $T/body)
[ "$(hdr Location)" = "/v1/jobs/$J" ] && ok || bad "Location $(hdr Location)"
[ "$(jq -r .metadata.team $T/body)" = vision ] && ok || bad "metadata echoed"
wait_job "$J" 60 && [ "$STATUS" = succeeded ] && ok || bad "job $J: $STATUS $(jq -c .error $T/body)"
[ "$(jq -r .progress.fraction $T/body)" = 1 ] && ok || bad "fraction $(jq .progress $T/body)"
[ "$(jq -r .attempt $T/body)" = 1 ] && [ "$(jq -r .started_at $T/body)" != null ] &&
  [ "$(jq -r .finished_at $T/body)" != null ] && ok || bad "timestamps"
OPENBLAS_NUM_THREADS=1 "$OTFUSE" fuse --solver exact -o "$T/cli_fused" "$MD/vit_s0" "$MD/vit_s1" >/dev/null ||
  bad "cli fuse"
http GET "/v1/jobs/$J/artifacts/model.safetensors"
[ "$CODE" = 200 ] && cmp -s "$T/body" "$T/cli_fused/model.safetensors" && ok ||
  bad "served model.safetensors differs from otfuse fuse's"
ETAG=$(hdr ETag)
[ "$ETAG" = "\"$(sha256sum "$T/body" | cut -d' ' -f1)\"" ] && ok || bad "ETag $ETAG is not the sha256"
http GET "/v1/jobs/$J/artifacts"
[ "$(jq '[.items[].name] | sort' -c $T/body)" = '["config.json","fusion_manifest.json","fusion_report.json","model.safetensors"]' ] &&
  ok || bad "artifact list $(jq -c '[.items[].name]' $T/body)"
http GET "/v1/jobs/$J/artifacts/fusion_manifest.json"
[ "$(jq '.files | length' $T/body)" = 3 ] && ok || bad "manifest $(head -c 300 $T/body)"

# ---- fuse + finetune in one job (issue 8's pipeline): parents, one-shot
# fusion and finetuned model scored on the eval set ----
ED=$ROOT/$E
FT=$(spec "{\"ot\":{\"solver\":\"exact\",\"residual\":\"skip\"},\"finetune\":{\"data_uri\":\"file://$ED/digits_train.safetensors\",\"eval_uri\":\"file://$ED/digits_eval.safetensors\",\"epochs\":1,\"batch\":32}}" "$MD/vit_s0" "$MD/vit_s1")
http POST /v1/jobs -d "$FT"; FJ=$(jq -r .id $T/body)
[ "$CODE" = 201 ] && ok || bad "finetune job $CODE $(cat $T/body)"
wait_job "$FJ" 300 && [ "$STATUS" = succeeded ] && ok || bad "finetune job $STATUS $(jq -c .error $T/body)"
jq -e '.summary.evaluation | (.parents | length) == 2 and .finetuned.accuracy > .fused.accuracy + 0.3' \
  $T/body >/dev/null && ok || bad "finetuned not far above one-shot: $(jq -c .summary.evaluation $T/body)"
echo "fuse+finetune: $(jq -c '.summary.evaluation | {parents: [.parents[].accuracy], fused: .fused.accuracy, finetuned: .finetuned.accuracy}' $T/body)"
jq -e '[.artifacts[].name] | index("finetune_report.json")' $T/body >/dev/null && ok || bad "no finetune_report.json"
http GET "/v1/jobs/$FJ/events?limit=500"
jq -e '[.items[] | select(.type=="finetune" and .data.event=="epoch")] | length == 1' $T/body >/dev/null &&
  ok || bad "finetune epoch events"
check_ft() { # WANT POINTER BODY
  http POST /v1/jobs -d "$3"
  [ "$CODE" = "$1" ] && [ "$(jq -r .pointer $T/body)" = "$2" ] && ok || bad "finetune problem $CODE $(cat $T/body)"
}
check_ft 422 /finetune/data_uri "$(spec '{"finetune":{"epochs":1}}' "$MD/vit_s0" "$MD/vit_s1")"
check_ft 422 /finetune/steps "$(spec '{"finetune":{"data_uri":"file:///x","epochs":1,"steps":3}}' "$MD/vit_s0" "$MD/vit_s1")"

# ---- downloads: Range, suffix, 416, If-None-Match, HEAD, unknown ----
SIZE=$(stat -c %s "$T/cli_fused/model.safetensors")
http GET "/v1/jobs/$J/artifacts/model.safetensors" -H 'Range: bytes=100-199'
dd if="$T/cli_fused/model.safetensors" bs=1 skip=100 count=100 2>/dev/null >"$T/want_range"
[ "$CODE" = 206 ] && [ "$(hdr Content-Range)" = "bytes 100-199/$SIZE" ] && cmp -s "$T/body" "$T/want_range" &&
  ok || bad "range $CODE $(hdr Content-Range)"
http GET "/v1/jobs/$J/artifacts/model.safetensors" -H 'Range: bytes=-10'
[ "$CODE" = 206 ] && [ "$(stat -c %s $T/body)" = 10 ] && ok || bad "suffix range $CODE"
http GET "/v1/jobs/$J/artifacts/model.safetensors" -H "Range: bytes=$SIZE-"
[ "$CODE" = 416 ] && [ "$(hdr Content-Range)" = "bytes */$SIZE" ] && ok || bad "416 $CODE"
http GET "/v1/jobs/$J/artifacts/model.safetensors" -H "If-None-Match: $ETAG"
[ "$CODE" = 304 ] && [ ! -s "$T/body" ] && ok || bad "304 $CODE"
http HEAD "/v1/jobs/$J/artifacts/model.safetensors" -I
[ "$CODE" = 200 ] && ok || bad "HEAD $CODE"
http GET "/v1/jobs/$J/artifacts/..%2Fjobs.db"
[ "$CODE" = 404 ] && ok || bad "artifact traversal $CODE"

# ---- events: states in order, one map event per transport map ----
http GET "/v1/jobs/$J/events?limit=500"
[ "$(jq -r '[.items[] | select(.type=="state") | .data.status] | join(",")' $T/body)" = queued,running,succeeded ] &&
  ok || bad "state events $(jq -c '[.items[] | select(.type=="state") | .data.status]' $T/body)"
NMAP=$(jq '[.items[] | select(.type=="map")] | length' $T/body)
NREP=$(jq '.maps | length' "$T/cli_fused/fusion_report.json")
[ "$NMAP" -gt 0 ] && [ "$NMAP" = "$NREP" ] && ok || bad "map events $NMAP vs report $NREP"
LAST=$(jq .next_after $T/body)
http GET "/v1/jobs/$J/events?after=$LAST"
[ "$(jq '.items | length' $T/body)" = 0 ] && ok || bad "events after the last"

# ---- idempotency ----
http POST /v1/jobs -H 'Idempotency-Key: k-1' -d "$S"; A=$(jq -r .id $T/body)
[ "$CODE" = 201 ] && ok || bad "idem first $CODE"
http POST /v1/jobs -H 'Idempotency-Key: k-1' -d "$S"
[ "$CODE" = 200 ] && [ "$(jq -r .id $T/body)" = "$A" ] && [ "$(hdr Idempotent-Replayed)" = true ] && ok ||
  bad "idem replay $CODE"
http POST /v1/jobs -H 'Idempotency-Key: k-1' -d "$(spec '{}' "$MD/vit_s0" "$MD/vit_s2")"
[ "$CODE" = 422 ] && ok || bad "idem other body $CODE"
# a key whose request failed validation is free again
http POST /v1/jobs -H 'Idempotency-Key: k-2' -d '{"models":[]}'
[ "$CODE" = 422 ] && ok || bad "idem invalid $CODE"
http POST /v1/jobs -H 'Idempotency-Key: k-2' -d "$S"
[ "$CODE" = 201 ] && ok || bad "idem reuse after invalid $CODE"

# ---- validation errors: problem+json with a pointer ----
check_problem() { # WANT_CODE POINTER BODY [curl args]
  want=$1; ptr=$2; body=$3; shift 3
  http POST /v1/jobs -d "$body" "$@"
  if [ "$CODE" = "$want" ] && [ "$(hdr Content-Type)" = application/problem+json ] &&
     { [ -z "$ptr" ] || [ "$(jq -r .pointer $T/body)" = "$ptr" ]; }; then ok
  else bad "problem for $body: $CODE $(cat $T/body)"; fi
}
check_problem 400 "" 'not json'
check_problem 400 "" '{"models":[{"uri":"file:///a"}],"models":[]}'
check_problem 422 /models '{}'
check_problem 422 /models '{"models":"x"}'
check_problem 422 /ot/reg "$(spec '{"ot":{"reg":-1}}' "$MD/vit_s0" "$MD/vit_s1")"
check_problem 422 /ot/solver "$(spec '{"ot":{"solver":"magic"}}' "$MD/vit_s0" "$MD/vit_s1")"
check_problem 422 /bogus "$(spec '{"bogus":1}' "$MD/vit_s0" "$MD/vit_s1")"
check_problem 413 "" "$(spec '{}' $(for i in $(seq 17); do printf '%s ' "$MD/vit_s0"; done))"
check_problem 403 /models/1/uri "$(jq -cn --arg a "file://$MD/vit_s0" '{models:[{uri:$a},{uri:"file:///etc/"}]}')"
check_problem 403 /models/0/uri "$(jq -cn '{models:[{uri:"http://169.254.169.254/latest/"},{uri:"http://169.254.169.254/x/"}]}')"
check_problem 415 "" "$S" -H 'Content-Type: text/plain'
head -c 1100000 /dev/zero | tr '\0' ' ' >"$T/big"
http POST /v1/jobs --data-binary @"$T/big"
[ "$CODE" = 413 ] && ok || bad "body limit $CODE"
http GET /v1/jobs/jffffffffffffffffffff; [ "$CODE" = 404 ] && ok || bad "unknown job $CODE"
http GET '/v1/jobs?status=bogus'; [ "$CODE" = 400 ] && ok || bad "bad status filter $CODE"
http GET '/v1/jobs?limit=0'; [ "$CODE" = 400 ] && ok || bad "bad limit $CODE"

# ---- dry run ----
http POST /v1/jobs:validate -d "$S"
[ "$CODE" = 200 ] && [ "$(jq -r .valid $T/body)" = true ] && [ "$(jq '.parameters > 0' $T/body)" = true ] &&
  [ "$(jq -r '.models[0].architecture' $T/body)" = ViTForImageClassification ] && ok ||
  bad "validate $CODE $(cat $T/body)"
http POST /v1/jobs:validate -d "$(spec '{}' "$MD/vit_s0" "$MD/bert_cls_s0")"
[ "$CODE" = 422 ] && [ "$(jq -r .pointer $T/body)" = /models/1/uri ] && ok || bad "validate mismatch $CODE"
http POST /v1/jobs:validate -d "$(spec '{}' "$MD/vit_s0" "$MD/no_such_model")"
[ "$CODE" = 422 ] || [ "$CODE" = 404 ] && ok || bad "validate missing $CODE"

# ---- a job that fails: different architectures ----
http POST /v1/jobs -d "$(spec '{}' "$MD/vit_s0" "$MD/bert_cls_s0")"; F=$(jq -r .id $T/body)
wait_job "$F" 60 && [ "$STATUS" = failed ] && [ -n "$(jq -r .error.detail $T/body)" ] &&
  [ ! -e "$T/main/jobs/$F/out" ] && ok || bad "failing job: $STATUS $(jq -c .error $T/body)"

# ---- an occupied output folder fails the job before any work ----
mkdir -p "$T/occupied" && echo keep >"$T/occupied/file.txt"
http POST /v1/jobs -d "$(spec "{\"output\":{\"uri\":\"file://$T/occupied\"}}" "$MD/vit_s0" "$MD/vit_s1")"; O=$(jq -r .id $T/body)
wait_job "$O" 60 && [ "$STATUS" = failed ] && [ "$(jq -r .error.pointer $T/body)" = /output/uri ] &&
  [ "$(cat "$T/occupied/file.txt")" = keep ] && [ "$(ls "$T/occupied" | wc -l)" = 1 ] && ok ||
  bad "occupied output: $STATUS $(jq -c .error $T/body)"
http GET "/v1/jobs/$O/events?limit=500"
[ "$(jq '[.items[] | select(.type=="map")] | length' $T/body)" = 0 ] && ok || bad "occupied output: maps were solved first"
# and a free one receives the fused folder with its manifest
http POST /v1/jobs -d "$(spec "{\"output\":{\"uri\":\"file://$T/published\"}}" "$MD/vit_s0" "$MD/vit_s1")"; O=$(jq -r .id $T/body)
wait_job "$O" 60 && [ "$STATUS" = succeeded ] && [ -f "$T/published/fusion_manifest.json" ] &&
  [ "$(jq -r .summary.output $T/body)" = "file://$T/published" ] && ok || bad "published output: $STATUS $(jq -c '.error, .summary.output' $T/body)"

# ---- list: filter and cursor pagination ----
http GET '/v1/jobs?limit=2'; N1=$(jq -r .next $T/body)
[ "$(jq '.items | length' $T/body)" = 2 ] && [ "$N1" != null ] && ok || bad "page 1"
http GET "/v1/jobs?limit=2&after=$N1"
[ "$(jq '.items | length' $T/body)" -ge 1 ] && ok || bad "page 2"
http GET '/v1/jobs?status=failed'
[ "$(jq -r '[.items[].status] | unique | join(",")' $T/body)" = failed ] && ok || bad "status filter"

# ---- delete ----
http DELETE "/v1/jobs/$F"; [ "$CODE" = 204 ] && ok || bad "delete $CODE"
http GET "/v1/jobs/$F"; [ "$CODE" = 404 ] && ok || bad "deleted job $CODE"

# ---- cancel mid-run (a ~5 s fusion of two random BERT-shaped models) ----
MK=$OTF_BUILD/tools/make_model
for s in 1 2; do
  "$MK" --arch BertForSequenceClassification --hidden 512 --layers 8 --heads 8 --ffn 2048 \
    --vocab 1000 --positions 128 --seed $s -o "$T/big$s" >/dev/null || bad "make_model"
done
BIG=$(spec '{}' "$T/big1" "$T/big2")
http POST /v1/jobs -d "$BIG"; C=$(jq -r .id $T/body)
i=0; while [ $i -lt 300 ]; do
  http GET "/v1/jobs/$C"; [ "$(jq -r .stage $T/body)" = aligning ] && break; sleep 0.05; i=$((i + 1)); done
[ "$(jq -r .progress.layers $T/body)" = 8 ] && ok || bad "layers of a running job $(jq -c .progress $T/body)"
t0=$(date +%s%N)
http POST "/v1/jobs/$C/cancel"; [ "$CODE" = 202 ] && [ "$(jq -r .status $T/body)" = cancelling ] && ok ||
  bad "cancel $CODE $(jq -r .status $T/body)"
wait_job "$C" 30; t1=$(date +%s%N)
[ "$STATUS" = cancelled ] && ok || bad "cancelled job is $STATUS"
echo "cancel took $(( (t1 - t0) / 1000000 )) ms"
[ "$(jq '.artifacts | length' $T/body)" = 0 ] && [ ! -e "$T/main/jobs/$C/out" ] && ok || bad "cancelled job left artifacts"
http POST "/v1/jobs/$C/cancel"; [ "$CODE" = 409 ] && ok || bad "cancel a cancelled job $CODE"

# ---- 50 concurrent submissions: all complete, none duplicated ----
S2=$(spec '{}' "$MD/vit_s0" "$MD/vit_s1")
pids=""
for i in $(seq 50); do
  curl -s -o "$T/c$i" -X POST -d "$S2" "$URL/v1/jobs" &
  pids="$pids $!"
done
wait $pids
jq -r .id $T/c* | sort >"$T/ids"
[ "$(sort -u "$T/ids" | wc -l)" = 50 ] && ok || bad "50 submissions gave $(sort -u "$T/ids" | wc -l) ids"
for id in $(cat "$T/ids"); do wait_job "$id" 120 && [ "$STATUS" = succeeded ] || { bad "job $id $STATUS"; break; }; done
ok
http GET '/v1/jobs?limit=500'
[ "$(jq '[.items[].id] | length' $T/body)" = "$(jq '[.items[].id] | unique | length' $T/body)" ] && ok || bad "duplicate jobs listed"

# ---- metrics ----
http GET /metrics
grep -q '^otfused_jobs{status="succeeded"} [1-9]' $T/body && grep -q '^otfused_queue_depth 0' $T/body &&
  grep -q 'otfused_http_requests_total{route="/v1/jobs",method="POST",code="201"}' $T/body &&
  grep -q '^otfused_job_duration_seconds_count{outcome="cancelled"} 1' $T/body &&
  grep -q 'otfused_http_request_duration_seconds_bucket{route="/v1/jobs/{id}",le="+Inf"}' $T/body &&
  ok || bad "metrics"
srv_stop TERM
[ "$SRV_RC" = 0 ] && ok || bad "graceful stop exit $SRV_RC"
grep -q '"level":"info","msg":"request","request_id"' "$SRV_LOG" || grep -q '"request_id"' "$SRV_LOG" && ok || bad "request ids in logs"

# ---- kill -9 mid-run, restart: the job runs again and completes ----
srv_start crash --local --file-root "$T" || exit 1
http POST /v1/jobs -d "$BIG"; K=$(jq -r .id $T/body)
i=0; while [ $i -lt 300 ]; do
  http GET "/v1/jobs/$K"; [ "$(jq -r .stage $T/body)" = aligning ] && break; sleep 0.05; i=$((i + 1)); done
srv_stop KILL
ls -d "$T/crash/jobs/$K"/out* >/dev/null 2>&1 && [ ! -f "$T/crash/jobs/$K/out/fusion_manifest.json" ] || true
srv_start crash --local --file-root "$T" || exit 1
grep -q 'requeued' "$SRV_LOG" && ok || bad "restart did not report the requeue"
wait_job "$K" 120 && [ "$STATUS" = succeeded ] && [ "$(jq -r .attempt $T/body)" = 2 ] && ok ||
  bad "after kill -9: $STATUS attempt $(jq -r .attempt $T/body)"
[ -z "$(ls -d "$T/crash/jobs/$K"/out.partial* 2>/dev/null)" ] && ok || bad "partial output left"
http GET "/v1/jobs/$K/events?limit=500"
jq -e '[.items[] | select(.type=="state") | .data.reason // ""] | any(test("restarted"))' $T/body >/dev/null &&
  ok || bad "no event tells of the restart"

# ---- drain: SIGTERM with no grace sends the running job back to the queue ----
srv_stop TERM
srv_start drain --local --file-root "$T" --grace-seconds 0 || exit 1
http POST /v1/jobs -d "$BIG"; D=$(jq -r .id $T/body)
i=0; while [ $i -lt 300 ]; do
  http GET "/v1/jobs/$D"; [ "$(jq -r .stage $T/body)" = aligning ] && break; sleep 0.05; i=$((i + 1)); done
kill -TERM $SRV_PID
sleep 0.2
http GET /readyz; [ "$CODE" = 503 ] || [ "$CODE" = 000 ] && ok || bad "readyz while draining $CODE"
wait $SRV_PID; [ $? = 0 ] && ok || bad "drain exit"
srv_start drain --local --file-root "$T" || exit 1
http GET "/v1/jobs/$D"
[ "$(jq -r .status $T/body)" = queued ] || [ "$(jq -r .status $T/body)" = running ] && ok ||
  bad "drained job is $(jq -r .status $T/body)"
wait_job "$D" 120 && [ "$STATUS" = succeeded ] && ok || bad "drained job then $STATUS"
srv_stop TERM

# ---- tokens, and the queue bound ----
srv_start auth --token s3cret --token other --file-root "$T" --workers 1 --max-queued 1 || exit 1
http GET /v1/jobs; [ "$CODE" = 401 ] && [ -n "$(hdr WWW-Authenticate)" ] && ok || bad "no token $CODE"
http GET /v1/jobs -H 'Authorization: Bearer wrong'; [ "$CODE" = 401 ] && ok || bad "wrong token $CODE"
http GET /v1/jobs -H 'Authorization: Bearer other'; [ "$CODE" = 200 ] && ok || bad "good token $CODE"
http GET /livez; [ "$CODE" = 200 ] && ok || bad "livez is public $CODE"
http POST /v1/jobs -H 'Authorization: Bearer s3cret' -d "$BIG"; [ "$CODE" = 201 ] && ok || bad "auth create $CODE"
codes=""
for i in 1 2 3; do http POST /v1/jobs -H 'Authorization: Bearer s3cret' -d "$BIG"; codes="$codes $CODE"; done
[ "$(hdr Retry-After)" != "" ] && ok || bad "429 without Retry-After"
case "$codes" in *429*) ok ;; *) bad "queue bound never answered 429: $codes" ;; esac
srv_stop TERM
"$OTFUSED" --listen 0.0.0.0:0 --data-dir "$T/x" 2>"$T/err"; [ $? = 2 ] && grep -q token "$T/err" && ok ||
  bad "a server without tokens must refuse to start"
"$OTFUSED" --local --listen 0.0.0.0:0 --data-dir "$T/x" 2>"$T/err"; [ $? = 2 ] && grep -q loopback "$T/err" && ok ||
  bad "--local must refuse a non-loopback address"
# a relative --data-dir (as make demo gives) works: it is made absolute
OTFUSED_ABS=$(cd "$(dirname "$OTFUSED")" && pwd)/$(basename "$OTFUSED")
( cd "$T" && exec "$OTFUSED_ABS" --local --listen 127.0.0.1:0 --data-dir rel/data ) 2>"$T/rel.log" &
RP=$!
i=0; while [ $i -lt 100 ] && ! grep -q '"msg":"listening' "$T/rel.log"; do sleep 0.1; i=$((i + 1)); done
grep -q '"msg":"listening' "$T/rel.log" && [ -f "$T/rel/data/jobs.db" ] && ok || bad "relative data dir: $(tail -n 2 "$T/rel.log")"
kill -TERM $RP; wait $RP
finish server 60
