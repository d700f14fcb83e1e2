# otfused with object storage, over real HTTP on 127.0.0.1: moto_server
# (signatures enforced, tests/integration/motolib.sh) holds the parents,
# `otfuse cp` puts them there, a job names them with s3:// URIs and writes
# its result to an s3:// prefix. The published folder, read back with boto3
# (not our own client), must be complete and byte-identical to both the
# artifact otfused serves and a local `otfuse fuse` of the same parents.
# Failures: a model that does not exist, an occupied output prefix, a wrong
# secret, a loopback URI that is not the configured endpoint.
. tests/cli/lib.sh
. tests/integration/srvlib.sh
. tests/integration/motolib.sh
ROOT=$(pwd)
MD=$ROOT/$M
SRV_PID=""
trap '[ -n "$SRV_PID" ] && srv_stop KILL; moto_stop; rm -rf "$T"' EXIT

moto_start server_s3 || exit 1
export OTFUSE_CACHE_DIR="$T/cli_cache"

# Objects as boto3 sees them: s3ls PREFIX prints the keys under it, one a
# line, sorted; s3get KEY FILE writes one object's bytes. (The listing is of
# the whole bucket, filtered here: botocore signs a Prefix's '/' as %2F,
# which moto verifies decoded, so a listing with a prefix is refused.)
s3py() {
  python3 - "$@" <<'PY'
import os, sys, boto3
c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                 aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
if sys.argv[1] == "ls":
    keys = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket="otf"):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].startswith(sys.argv[2])]
    for k in sorted(keys):
        print(k)
else:
    with open(sys.argv[3], "wb") as f:
        f.write(c.get_object(Bucket="otf", Key=sys.argv[2])["Body"].read())
PY
}

# ---- the parents (and a calibration file) into S3 with otfuse cp ----
mkdir -p "$T/cal" && cp "$E/digits_eval.safetensors" "$T/cal/calib.safetensors"
expect_exit 0 "$OTFUSE" cp -q "$M/vit_s0" s3://otf/parents/a/ &&
  expect_exit 0 "$OTFUSE" cp -q "$M/vit_s1" s3://otf/parents/b/ &&
  expect_exit 0 "$OTFUSE" cp -q "$T/cal" s3://otf/cal/ && ok || { bad "upload of the parents"; exit 1; }
[ "$(s3py ls parents/a/ | wc -l)" -ge 3 ] && ok || bad "parents/a/ in S3: $(s3py ls parents/a/)"

# The endpoint and key come from the AWS_* variables; no file roots, no
# --allow-private-hosts: the configured endpoint is allowed as it is.
srv_start s3 --local --workers 1 || exit 1
grep -q "$AWS_SECRET_ACCESS_KEY" "$SRV_LOG" && bad "the secret key is in the log" || ok

# ---- lifecycle: s3:// parents, s3:// output ----
S=$(jq -cn '{models: [{uri: "s3://otf/parents/a/"}, {uri: "s3://otf/parents/b/"}],
             ot: {solver: "exact"}, output: {uri: "s3://otf/fused/"}}')
http POST /v1/jobs -H 'Content-Type: application/json' -d "$S"
[ "$CODE" = 201 ] && ok || bad "create $CODE $(cat "$T/body")"
J=$(jq -r .id "$T/body")
[ "$(jq -r .spec.output.uri "$T/body")" = s3://otf/fused/ ] && ok || bad "output uri echoed"
wait_job "$J" 120 && [ "$STATUS" = succeeded ] && ok || bad "job $J: $STATUS $(jq -c .error "$T/body")"
[ "$(jq -r .progress.fraction "$T/body")" = 1 ] && ok || bad "fraction $(jq -c .progress "$T/body")"
jq -r '.artifacts[] | "\(.name) \(.sha256)"' "$T/body" | sort >"$T/listed"

OPENBLAS_NUM_THREADS=1 "$OTFUSE" fuse --solver exact -o "$T/cli_fused" "$MD/vit_s0" "$MD/vit_s1" \
  >/dev/null 2>"$T/err" || bad "local otfuse fuse: $(cat "$T/err")"
http GET "/v1/jobs/$J/artifacts/model.safetensors"
[ "$CODE" = 200 ] && cp "$T/body" "$T/served.safetensors" && ok || bad "artifact download $CODE"

# The output prefix, read with boto3: exactly the fused folder, manifest
# included, each object as listed by the job.
s3py ls fused/ >"$T/keys"
printf '%s\n' fused/config.json fused/fusion_manifest.json fused/fusion_report.json \
  fused/model.safetensors | cmp -s - "$T/keys" && ok || bad "objects at the output prefix: $(cat "$T/keys")"
mkdir -p "$T/pub"
for f in config.json fusion_manifest.json fusion_report.json model.safetensors; do
  s3py get "fused/$f" "$T/pub/$f" || bad "get fused/$f"
done
cmp -s "$T/pub/model.safetensors" "$T/served.safetensors" && ok ||
  bad "published model.safetensors differs from the served artifact"
cmp -s "$T/pub/model.safetensors" "$T/cli_fused/model.safetensors" && ok ||
  bad "published model.safetensors differs from otfuse fuse's"
cmp -s "$T/pub/config.json" "$T/cli_fused/config.json" && ok || bad "published config.json differs"
for f in config.json fusion_manifest.json fusion_report.json model.safetensors; do
  echo "$f $(sha256sum "$T/pub/$f" | cut -d' ' -f1)"
done | sort | cmp -s - "$T/listed" && ok || bad "job's artifact list vs published objects"
want=$(sha256sum "$T/pub/model.safetensors" | cut -d' ' -f1)
[ "$(jq -r '.files[] | select(.name == "model.safetensors") | .sha256' "$T/pub/fusion_manifest.json")" = "$want" ] &&
  ok || bad "manifest: $(head -c 400 "$T/pub/fusion_manifest.json")"
# and our own client verifies the published folder against its manifest
expect_exit 0 "$OTFUSE" cp -q s3://otf/fused/ "$T/back" &&
  { cmp -s "$T/back/model.safetensors" "$T/cli_fused/model.safetensors" && ok || bad "otfuse cp of the output"; }

# ---- activations, with the calibration file in S3 too ----
A=$(jq -cn '{models: [{uri: "s3://otf/parents/a/"}, {uri: "s3://otf/parents/b/"}],
             ot: {align: "activations"}, calibration: {uri: "s3://otf/cal/calib.safetensors", samples: 64},
             output: {uri: "s3://otf/fused_act/"}}')
http POST /v1/jobs -d "$A"; JA=$(jq -r .id "$T/body")
wait_job "$JA" 120 && [ "$STATUS" = succeeded ] && ok || bad "activations job: $STATUS $(jq -c .error "$T/body")"
OPENBLAS_NUM_THREADS=1 "$OTFUSE" fuse --align activations --samples 64 --calibration "$T/cal/calib.safetensors" \
  -o "$T/cli_act" "$MD/vit_s0" "$MD/vit_s1" >/dev/null 2>"$T/err" || bad "local activations fuse: $(cat "$T/err")"
s3py get fused_act/model.safetensors "$T/act.safetensors" &&
  cmp -s "$T/act.safetensors" "$T/cli_act/model.safetensors" && ok || bad "activations fusion differs"

# ---- a model that does not exist: failed, the reason names the URI ----
http POST /v1/jobs -d "$(jq -cn '{models: [{uri: "s3://otf/parents/a/"}, {uri: "s3://otf/parents/none/"}],
                                  output: {uri: "s3://otf/never/"}}')"
N=$(jq -r .id "$T/body")
wait_job "$N" 60 && [ "$STATUS" = failed ] && ok || bad "missing model: $STATUS"
case "$(jq -r .error.detail "$T/body")" in
*s3://otf/parents/none/*) ok ;;
*) bad "missing model's reason: $(jq -c .error "$T/body")" ;;
esac
[ "$(jq -r .error.pointer "$T/body")" = /models/1/uri ] && [ "$(jq -r .error.status "$T/body")" = 404 ] &&
  ok || bad "missing model's problem: $(jq -c .error "$T/body")"
[ "$(jq '.artifacts | length' "$T/body")" = 0 ] && ok || bad "failed job lists artifacts"
[ -z "$(s3py ls never/)" ] && ok || bad "a failed job published: $(s3py ls never/)"

# ---- an occupied output prefix: failed, what was there is left alone ----
http POST /v1/jobs -d "$(jq -cn '{models: [{uri: "s3://otf/parents/b/"}, {uri: "s3://otf/parents/a/"}],
                                  output: {uri: "s3://otf/fused/"}}')"
O=$(jq -r .id "$T/body")
wait_job "$O" 120 && [ "$STATUS" = failed ] && ok || bad "occupied output: $STATUS"
jq -r .error.detail "$T/body" | grep -q "not empty" && ok || bad "occupied output's reason: $(jq -c .error "$T/body")"
s3py get fused/model.safetensors "$T/again.safetensors" && cmp -s "$T/again.safetensors" "$T/pub/model.safetensors" &&
  ok || bad "the occupied prefix was changed"

# ---- loopback URIs other than the endpoint are refused (no SSRF): otfused
# itself, and the endpoint's port under another name ----
for u in "http://127.0.0.1:$PORT/v1/" "http://localhost:${AWS_ENDPOINT_URL_S3##*:}/otf/parents/a/"; do
  http POST /v1/jobs -d "$(jq -cn --arg u "$u" '{models: [{uri: "s3://otf/parents/b/"}, {uri: $u}]}')"
  [ "$CODE" = 403 ] && [ "$(jq -r .pointer "$T/body")" = /models/1/uri ] && ok || bad "$u: $CODE $(cat "$T/body")"
done
srv_stop TERM
[ "$SRV_RC" = 0 ] && ok || bad "graceful stop exit $SRV_RC"

# ---- a wrong secret: failed with access denied, the secret never shown ----
good=$AWS_SECRET_ACCESS_KEY
AWS_SECRET_ACCESS_KEY=wrong-secret-0123456789
srv_start denied --local || exit 1
AWS_SECRET_ACCESS_KEY=$good
http POST /v1/jobs -d "$S"; W=$(jq -r .id "$T/body")
wait_job "$W" 60 && [ "$STATUS" = failed ] && ok || bad "wrong secret: $STATUS"
jq -r .error.detail "$T/body" | grep -qi "access denied" && [ "$(jq -r .error.status "$T/body")" = 403 ] && ok ||
  bad "wrong secret's reason: $(jq -c .error "$T/body")"
grep -q wrong-secret "$T/body" "$SRV_LOG" && bad "the secret appears in the job or the log" || ok
srv_stop TERM
[ "$SRV_RC" = 0 ] && ok || bad "denied server's exit $SRV_RC"

# The same data dir's cache does not let a wrong key read the parents: the
# first server (good key) cached them, a restart with a wrong key must fail.
AWS_SECRET_ACCESS_KEY=wrong-secret-0123456789
srv_start s3 --local || exit 1
AWS_SECRET_ACCESS_KEY=$good
http POST /v1/jobs -d "$(jq -cn '{models: [{uri: "s3://otf/parents/a/"}, {uri: "s3://otf/parents/b/"}],
                                  output: {uri: "s3://otf/fused_cached/"}}')"
W=$(jq -r .id "$T/body")
wait_job "$W" 60 && [ "$STATUS" = failed ] && jq -r .error.detail "$T/body" | grep -qi "access denied" && ok ||
  bad "wrong secret with a warm cache: $STATUS $(jq -c .error "$T/body")"
srv_stop TERM
[ "$SRV_RC" = 0 ] && ok || bad "restarted server's exit $SRV_RC"
finish server_s3 34
