#!/bin/sh
# otfuse cp and otfuse fuse against a real S3-compatible server: moto_server
# on 127.0.0.1 (a free port) with signature checking on. The first three
# requests (unauthenticated, INITIAL_NO_AUTH_ACTION_COUNT=3) create an IAM
# user, its key and an allow-all policy; every request after them must be
# signed with that key. The server is stopped on exit.
set -u
. tests/cli/lib.sh

. tests/integration/motolib.sh
trap 'moto_stop; rm -rf "$T"' EXIT
moto_start storage_s3 || exit 1
export OTFUSE_CACHE_DIR="$T/cache"

# 1. cp round trip, local -> s3 -> local, verified against the manifest.
if expect_exit 0 "$OTFUSE" cp -q "$M/vit_s0" s3://otf/parents/a/ &&
   expect_exit 0 "$OTFUSE" cp -q s3://otf/parents/a/ "$T/back_a"; then
  if diff -r -x fusion_manifest.json "$M/vit_s0" "$T/back_a" >/dev/null; then ok; else bad "cp round trip differs"; fi
  want=$(sha256sum "$M/vit_s0/model.safetensors" | cut -d' ' -f1)
  if grep -q "$want" "$T/back_a/fusion_manifest.json"; then ok; else bad "manifest lacks the weights' sha256"; fi
fi
expect_exit 0 "$OTFUSE" cp -q "$M/vit_s1" s3://otf/parents/b/ && ok
# file:// URIs work as well as paths.
expect_exit 0 "$OTFUSE" cp -q "file://$PWD/$M/vit_s1/" "file://$T/via_uri/" &&
  { cmp -s "$M/vit_s1/model.safetensors" "$T/via_uri/model.safetensors" && ok || bad "file:// copy differs"; }

# 2. a non-empty destination is refused and left as it was.
if expect_exit 1 "$OTFUSE" cp -q "$M/vit_s1" s3://otf/parents/a/; then
  grep -q "not empty" "$T/err" && ok || bad "conflict message: $(cat "$T/err")"
  expect_exit 0 "$OTFUSE" cp -q s3://otf/parents/a/ "$T/back_a2" &&
    { cmp -s "$M/vit_s0/model.safetensors" "$T/back_a2/model.safetensors" && ok || bad "destination changed"; }
fi

# 3. wrong secret -> access denied; missing bucket / prefix -> not found;
#    nothing is written locally.
if AWS_SECRET_ACCESS_KEY=wrong-secret expect_exit 1 "$OTFUSE" cp -q s3://otf/parents/a/ "$T/nope1"; then
  grep -q "access denied" "$T/err" && ok || bad "wrong secret: $(cat "$T/err")"
  grep -q "wrong-secret" "$T/err" && bad "the secret appears in an error" || ok
  [ -e "$T/nope1" ] && bad "partial output after access denied" || ok
fi
if expect_exit 1 "$OTFUSE" cp -q s3://no-such-bucket/a/ "$T/nope2"; then
  grep -q "not found" "$T/err" && grep -q "NoSuchBucket" "$T/err" && ok || bad "missing bucket: $(cat "$T/err")"
  [ -e "$T/nope2" ] && bad "partial output after not found" || ok
fi
expect_exit 1 "$OTFUSE" cp -q s3://otf/parents/none/ "$T/nope3" && grep -q "not found" "$T/err" && ok
expect_exit 2 "$OTFUSE" cp -q "gs://x/y/" "$T/nope4" && ok
expect_exit 2 "$OTFUSE" cp -q "$M/vit_s0" "https://example.com/x/" && grep -q "read-only" "$T/err" && ok

# 4. fuse with parents and output in S3 == the same fuse on local folders.
if expect_exit 0 "$OTFUSE" fuse --solver exact -o "$T/local_fused" "$M/vit_s0" "$M/vit_s1" &&
   expect_exit 0 "$OTFUSE" fuse --solver exact -o s3://otf/fused/ s3://otf/parents/a/ s3://otf/parents/b/ &&
   expect_exit 0 "$OTFUSE" cp -q s3://otf/fused/ "$T/s3_fused"; then
  for f in model.safetensors config.json; do
    cmp -s "$T/local_fused/$f" "$T/s3_fused/$f" && ok || bad "fused $f differs from the local fusion"
  done
  # The report names the parents' local folders (cache vs fixture paths)
  # and timings; the rest must agree.
  grep -v -e '"path"' -e '"seconds"' "$T/local_fused/fusion_report.json" >"$T/r1"
  grep -v -e '"path"' -e '"seconds"' "$T/s3_fused/fusion_report.json" >"$T/r2"
  cmp -s "$T/r1" "$T/r2" && ok || { bad "fusion reports differ beyond paths"; diff "$T/r1" "$T/r2" | head; }
fi
# Activations fusion with the calibration file in S3 too.
mkdir -p "$T/cal" && cp "$E/digits_eval.safetensors" "$T/cal/calib.safetensors"
if expect_exit 0 "$OTFUSE" cp -q "$T/cal" s3://otf/cal/ &&
   expect_exit 0 "$OTFUSE" fuse --align activations --samples 64 --calibration "$T/cal/calib.safetensors" \
     -o "$T/local_act" "$M/vit_s0" "$M/vit_s1" &&
   expect_exit 0 "$OTFUSE" fuse --align activations --samples 64 --calibration s3://otf/cal/calib.safetensors \
     -o s3://otf/fused_act/ s3://otf/parents/a/ s3://otf/parents/b/ &&
   expect_exit 0 "$OTFUSE" cp -q s3://otf/fused_act/ "$T/s3_act"; then
  cmp -s "$T/local_act/model.safetensors" "$T/s3_act/model.safetensors" && ok || bad "activations fusion differs"
fi
# A fuse onto an occupied prefix fails before fusing and leaves it alone.
if expect_exit 1 "$OTFUSE" fuse --solver exact -o s3://otf/parents/a/ s3://otf/parents/a/ s3://otf/parents/b/; then
  grep -q "not empty" "$T/err" && ok || bad "fuse conflict: $(cat "$T/err")"
fi
# A fuse whose parent is missing publishes nothing.
expect_exit 1 "$OTFUSE" fuse -o s3://otf/never/ s3://otf/parents/a/ s3://otf/parents/missing/ && ok
expect_exit 1 "$OTFUSE" cp -q s3://otf/never/ "$T/never" && grep -q "not found" "$T/err" && ok

finish storage_s3 21
