# Real otfused responses against api/openapi.json: every route of the
# contract is exercised over HTTP on 127.0.0.1 (success and error paths),
# and each response's status must be one the document lists for that
# operation and its body must validate against the documented schema
# (tests/test_openapi --validate, the suite's own validator).
. tests/cli/lib.sh
. tests/integration/srvlib.sh
ROOT=$(pwd)
MD=$ROOT/$M
V=$OTF_BUILD/tests/test_openapi
MK=$OTF_BUILD/tools/make_model
for x in "$V" "$MK"; do
  [ -x "$x" ] || { echo "openapi.sh: $x is missing (make)"; exit 1; }
done
DOC=api/openapi.json

# conform METHOD TEMPLATE SCHEMA: the last response ($CODE, $T/body) is
# documented for METHOD TEMPLATE and its body is a SCHEMA ("-" = no body
# to check: 204, 304, octet streams, text).
n_resp=0
conform() {
  documented=$(jq -r --arg p "$2" --arg m "$(echo "$1" | tr A-Z a-z)" --arg c "$CODE" \
    '.paths[$p][$m].responses | has($c) or has("default")' "$DOC")
  if [ "$documented" != true ]; then
    bad "$1 $2 answered $CODE, which the document does not list"; return
  fi
  if [ "$3" != - ]; then
    cp "$T/body" "$T/resp_$n_resp.json"
    if "$V" --validate "$3" "$T/resp_$n_resp.json" >"$T/vout"; then ok; else
      bad "$1 $2 ($CODE): $(cat $T/vout)"; return; fi
  else
    ok
  fi
  n_resp=$((n_resp + 1))
}

post_json() { pj_path=$1 pj_body=$2; shift 2; http POST "$pj_path" -H 'Content-Type: application/json' --data-binary "$pj_body" "$@"; }

# A pair of random BERT-shaped models that take seconds to fuse, so a job
# can be seen running and cancelled.
for s in 1 2; do
  "$MK" --arch BertForSequenceClassification --hidden 512 --layers 8 --heads 8 --ffn 2048 \
    --vocab 1000 --positions 128 --seed $s -o "$T/big$s" >/dev/null || bad "make_model"
done
VIT="{\"models\":[{\"uri\":\"file://$MD/vit_s0/\"},{\"uri\":\"file://$MD/vit_s1/\"}],\"metadata\":{\"run\":1}}"
BIG="{\"models\":[{\"uri\":\"file://$T/big1/\"},{\"uri\":\"file://$T/big2/\"}]}"

srv_start main --local --file-root "$ROOT/tests/data" --file-root "$T" --workers 1 || exit 1

# ---- service routes ----
http GET /livez; conform GET /livez Health
http GET /readyz; conform GET /readyz Health
http GET /v1/version; conform GET /v1/version Version
http GET /metrics; conform GET /metrics -
http GET /openapi.json; conform GET /openapi.json -
cmp -s "$T/body" "$DOC" && ok || bad "GET /openapi.json is not api/openapi.json"
case "$(hdr Content-Type)" in application/json*) ok ;; *) bad "openapi Content-Type $(hdr Content-Type)" ;; esac
http GET /; conform GET / -
http GET /ui/app.js; conform GET /ui/{asset} -

# ---- a job's life ----
post_json /v1/jobs:validate "$VIT"; conform POST /v1/jobs:validate Validation
post_json /v1/jobs "$VIT"; conform POST /v1/jobs Job
J=$(jq -r .id "$T/body")
wait_job "$J" 60 || bad "job $J did not finish"
conform GET /v1/jobs/{id} Job
[ "$STATUS" = succeeded ] && ok || bad "job $J $STATUS"
http GET "/v1/jobs/$J/events"; conform GET /v1/jobs/{id}/events EventList
[ "$(jq '[.items[] | select(.type == "map")] | length' $T/body)" -gt 0 ] && ok || bad "no map events"
http GET "/v1/jobs/$J/events?after=2&limit=3"; conform GET /v1/jobs/{id}/events EventList
http GET "/v1/jobs/$J/artifacts"; conform GET /v1/jobs/{id}/artifacts ArtifactList
cp "$T/body" "$T/artifacts.json"
for name in $(jq -r '.items[].name' "$T/artifacts.json"); do
  href=$(jq -r --arg n "$name" '.items[] | select(.name == $n) | .href' "$T/artifacts.json")
  http GET "$href"; conform GET /v1/jobs/{id}/artifacts/{name} -
  [ "$(hdr ETag)" = "\"$(sha256sum <"$T/body" | cut -d' ' -f1)\"" ] && ok || bad "ETag of $name"
done
http GET "/v1/jobs/$J/artifacts/config.json" -H 'Range: bytes=0-9'
conform GET /v1/jobs/{id}/artifacts/{name} -
[ "$CODE" = 206 ] && ok || bad "Range gave $CODE"
http GET "/v1/jobs/$J/artifacts/config.json" -H 'Range: bytes=999999999-'
conform GET /v1/jobs/{id}/artifacts/{name} HttpProblem
http GET "/v1/jobs/$J/artifacts/config.json" -H "If-None-Match: $(hdr ETag)"
http GET "/v1/jobs/$J/artifacts/config.json"; E=$(hdr ETag)
http GET "/v1/jobs/$J/artifacts/config.json" -H "If-None-Match: $E"
conform GET /v1/jobs/{id}/artifacts/{name} -
[ "$CODE" = 304 ] && ok || bad "If-None-Match gave $CODE"
http GET "/v1/jobs/$J/artifacts/nope.bin"; conform GET /v1/jobs/{id}/artifacts/{name} HttpProblem
http GET /v1/jobs; conform GET /v1/jobs JobList
http GET "/v1/jobs?status=succeeded,failed&limit=1"; conform GET /v1/jobs JobList

# ---- running, cancelled, queued behind it, failed ----
post_json /v1/jobs "$BIG"; conform POST /v1/jobs Job; B=$(jq -r .id "$T/body")
post_json /v1/jobs "$VIT"; conform POST /v1/jobs Job; Q=$(jq -r .id "$T/body")
i=0; while [ $i -lt 200 ]; do
  http GET "/v1/jobs/$B"; [ "$(jq -r .status $T/body)" = running ] && break; sleep 0.05; i=$((i + 1)); done
conform GET /v1/jobs/{id} Job
http GET "/v1/jobs/$Q"; conform GET /v1/jobs/{id} Job
http GET "/v1/jobs?status=queued,running"; conform GET /v1/jobs JobList
http DELETE "/v1/jobs/$B"; conform DELETE /v1/jobs/{id} HttpProblem
[ "$CODE" = 409 ] && ok || bad "DELETE of a running job gave $CODE"
http POST "/v1/jobs/$Q/cancel"; conform POST /v1/jobs/{id}/cancel Job
http POST "/v1/jobs/$B/cancel"; conform POST /v1/jobs/{id}/cancel Job
wait_job "$B" 30; conform GET /v1/jobs/{id} Job
[ "$STATUS" = cancelled ] && ok || bad "cancelled job is $STATUS"
http GET "/v1/jobs/$B/events"; conform GET /v1/jobs/{id}/events EventList
http POST "/v1/jobs/$B/cancel"; conform POST /v1/jobs/{id}/cancel HttpProblem
http DELETE "/v1/jobs/$B"; conform DELETE /v1/jobs/{id} -
[ "$CODE" = 204 ] && ok || bad "DELETE gave $CODE"
mkdir -p "$T/empty"
post_json /v1/jobs "{\"models\":[{\"uri\":\"file://$T/empty/\"},{\"uri\":\"file://$MD/vit_s0/\"}]}"
F=$(jq -r .id "$T/body")
wait_job "$F" 30; conform GET /v1/jobs/{id} Job
[ "$STATUS" = failed ] && [ "$(jq -r .error.status $T/body)" != null ] && ok || bad "failed job $STATUS"
http GET "/v1/jobs/$F/events"; conform GET /v1/jobs/{id}/events EventList

# ---- error paths: problem+json with the documented statuses ----
post_json /v1/jobs '{"models":[{"uri":"a"}],"ot":{"reg":0}}'; conform POST /v1/jobs HttpProblem
[ "$(jq -r .pointer $T/body)" = /models ] && [ "$(jq '.errors | length' $T/body)" = 2 ] && ok ||
  bad "spec problem $(cat $T/body)"
post_json /v1/jobs '{"models":'; conform POST /v1/jobs HttpProblem
post_json /v1/jobs '{"models":[{"uri":"file:///etc/"},{"uri":"file:///etc/"}]}'; conform POST /v1/jobs HttpProblem
head -c 3000000 /dev/zero | tr '\0' ' ' >"$T/huge"
http POST /v1/jobs -H 'Content-Type: application/json' --data-binary @"$T/huge"; conform POST /v1/jobs HttpProblem
post_json /v1/jobs:validate '{"models":[]}'; conform POST /v1/jobs:validate HttpProblem
post_json /v1/jobs:validate "{\"models\":[{\"uri\":\"file://$T/empty/\"},{\"uri\":\"file://$MD/vit_s0/\"}]}"
conform POST /v1/jobs:validate HttpProblem
http GET /v1/jobs/j0000000000000000000; conform GET /v1/jobs/{id} HttpProblem
http GET /v1/jobs/j0000000000000000000/events; conform GET /v1/jobs/{id}/events HttpProblem
http GET /v1/jobs/j0000000000000000000/artifacts; conform GET /v1/jobs/{id}/artifacts HttpProblem
http POST /v1/jobs/j0000000000000000000/cancel; conform POST /v1/jobs/{id}/cancel HttpProblem
http DELETE /v1/jobs/j0000000000000000000; conform DELETE /v1/jobs/{id} HttpProblem
http GET "/v1/jobs?status=bogus"; conform GET /v1/jobs HttpProblem
http GET /ui/nope.js; conform GET /ui/{asset} HttpProblem
post_json /v1/jobs "$VIT" -H 'Idempotency-Key: k1'; conform POST /v1/jobs Job
post_json /v1/jobs "$VIT" -H 'Idempotency-Key: k1'; conform POST /v1/jobs Job
[ "$CODE" = 200 ] && ok || bad "idempotent replay gave $CODE"
post_json /v1/jobs "$BIG" -H 'Idempotency-Key: k1'; conform POST /v1/jobs HttpProblem
srv_stop

# ---- with tokens ----
srv_start auth --token s3cret --file-root "$ROOT/tests/data" || exit 1
http GET /v1/jobs; conform GET /v1/jobs HttpProblem
[ "$CODE" = 401 ] && [ -n "$(hdr WWW-Authenticate)" ] && ok || bad "401 $CODE $(hdr WWW-Authenticate)"
post_json /v1/jobs "$VIT"; conform POST /v1/jobs HttpProblem
for p in /livez /readyz /v1/version /metrics /openapi.json /; do
  http GET $p; [ "$CODE" = 200 ] && ok || bad "GET $p needs a token ($CODE), the document says not"
done
http GET /v1/jobs -H 'Authorization: Bearer s3cret'; conform GET /v1/jobs JobList
srv_stop

echo "validated $n_resp responses"
finish "openapi conformance" 79
