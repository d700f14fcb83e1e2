#!/bin/sh
# The main job, end to end on the embedded default (local data dir, SQLite,
# file storage): start otfused on loopback, submit fusions of the bundled
# fixture models through the API (OT fusion and the plain-average baseline,
# for a ViT pair and a BERT pair), follow their progress, download the
# results and print the accuracy of the parents, the average and the OT
# fusion on the held-out sets; then stop the server.
#   sh tools/demo.sh BUILD_DIR OUT_DIR
set -eu
BUILD=${1:-build}
OUT=${2:-build/demo}
ROOT=$(pwd)
OTFUSE=$BUILD/otfuse
M=$ROOT/tests/data/models
E=$ROOT/tests/data/eval
rm -rf "$OUT" && mkdir -p "$OUT"
LOG=$OUT/otfused.log

"$BUILD/otfused" --local --listen 127.0.0.1:0 --data-dir "$OUT/data" --file-root "$ROOT/tests/data" \
  --workers 2 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT INT TERM
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*"msg":"listening on [^"]*","host":"[^"]*","port":\([0-9]*\).*/\1/p' "$LOG" 2>/dev/null | head -n 1)
  [ -n "$PORT" ] && break
  kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "otfused did not start"; cat "$LOG"; exit 1; }
export OTFUSE_URL=http://127.0.0.1:$PORT
echo "otfused is serving $OTFUSE_URL (data in $OUT/data; dashboard at $OTFUSE_URL/)"

# fuse NAME [submit options] MODEL MODEL: submit, follow, download into OUT/NAME
fuse() {
  name=$1; shift
  id=$("$OTFUSE" submit -q --metadata "{\"demo\":\"$name\"}" "$@")
  echo "job $id: $name"
  "$OTFUSE" wait "$id" >/dev/null
  "$OTFUSE" download "$id" -o "$OUT/$name" >/dev/null
}

fuse vit_average --method average "$M/vit_s0" "$M/vit_s1"
fuse vit_ot --solver exact --residual skip "$M/vit_s0" "$M/vit_s1"
fuse bert_average --method average "$M/bert_cls_s0" "$M/bert_cls_s1"
fuse bert_ot --align activations --calibration "$E/text_cls_train.safetensors" --reg 0.05 \
  "$M/bert_cls_s0" "$M/bert_cls_s1"

acc() { # MODEL_DIR DATA -> "acc  loss"
  "$OTFUSE" eval "$1" --data "$2" | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*"loss":\([0-9.e+-]*\).*/\1 \2/p' |
    awk '{ printf "%6.1f %%   loss %.3f", 100 * $1, $2 }'
}
echo
printf '%-34s %s\n' "model (held-out accuracy)" ""
for m in "$M/vit_s0" "$M/vit_s1" "$OUT/vit_average" "$OUT/vit_ot"; do
  printf '  %-32s %s\n' "$(basename "$m")" "$(acc "$m" "$E/digits_eval.safetensors")"
done
for m in "$M/bert_cls_s0" "$M/bert_cls_s1" "$OUT/bert_average" "$OUT/bert_ot"; do
  printf '  %-32s %s\n' "$(basename "$m")" "$(acc "$m" "$E/text_cls_eval.safetensors")"
done
echo
echo "fused models with fusion_report.json and fusion_manifest.json are in $OUT/"
kill -TERM $PID
wait $PID || true
trap - EXIT INT TERM
echo "otfused stopped"
