#!/bin/sh
# Integration test of `otfuse eval`: drives the real binary on the committed
# fixture models (tests/data/models, accuracies recorded by PyTorch in
# tests/data/golden/<model>.safetensors, see tests/data/models/README.md)
# and checks the JSON line and the error exits. Needs POSIX sh, awk, od.
set -u
. tests/cli/lib.sh

# golden_f64 FILE NAME: the F64 scalar NAME of a safetensors file, printed
# with 17 digits (header parsed with sed, the 8 bytes with od).
golden_f64() {
  hlen=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  off=$(head -c $((8 + hlen)) "$1" | tail -c "$hlen" |
        sed -n "s/.*\"$2\":{[^}]*\"data_offsets\":\[\([0-9]*\),.*/\1/p")
  [ -n "$off" ] || return 1
  od -An -tf8 -j $((8 + hlen + off)) -N8 "$1" | awk '{ printf "%.17g\n", $1 }'
}

# 1. Every classifier / MLM fixture: accuracy and loss equal to PyTorch's.
n_models=0
for d in "$M"/*/; do
  [ -f "$d/config.json" ] || continue
  name=$(basename "$d")
  g="$G/$name.safetensors"
  [ -f "$g" ] || continue
  acc=$(golden_f64 "$g" accuracy) || continue # base models have no head
  loss=$(golden_f64 "$g" loss)
  case $name in
    vit*) data=$E/digits_eval.safetensors ;;
    bert_mlm*) data=$E/text_mlm_eval.safetensors ;;
    *) data=$E/text_cls_eval.safetensors ;;
  esac
  n_models=$((n_models + 1))
  if expect_exit 0 "$OTFUSE" eval "$d" --data "$data" --batch 50; then
    j=$(cat "$T/out")
    near "$(field accuracy "$j")" "$acc" 0.001 && near "$(field loss "$j")" "$loss" 1e-4 &&
      [ -n "$(field n "$j")" ] && [ -n "$(field seconds "$j")" ] && ok ||
      bad "$name: got $j, want accuracy $acc loss $loss"
    case $name in
      bert_mlm*) [ -n "$(field tokens "$j")" ] && ok || bad "$name: no tokens field: $j" ;;
      *) [ -z "$(field tokens "$j")" ] && ok || bad "$name: tokens field on a classifier" ;;
    esac
  fi
done
if [ "$n_models" -lt 12 ]; then
  echo "otfuse eval: only $n_models fixture models under $M (12 are committed)"
  exit 1
fi

# 2. The batch size does not change the result (beyond float rounding).
if expect_exit 0 "$OTFUSE" eval $M/vit_s0 --data $E/digits_eval.safetensors --batch 1; then
  a1=$(field accuracy "$(cat "$T/out")")
  expect_exit 0 "$OTFUSE" eval $M/vit_s0 --data $E/digits_eval.safetensors &&
    [ "$(field accuracy "$(cat "$T/out")")" = "$a1" ] &&
    [ "$(field n "$(cat "$T/out")")" = 360 ] && ok || bad "batch 1 vs default"
fi

# 3. Errors: missing data, data of the wrong kind, bad model, usage.
expect_exit 1 "$OTFUSE" eval $M/vit_s0 --data "$T/missing.safetensors" &&
  grep -q "missing.safetensors" "$T/err" && ok
expect_exit 1 "$OTFUSE" eval $M/bert_cls_s0 --data $E/digits_eval.safetensors &&
  grep -q "input_ids" "$T/err" && ok
expect_exit 1 "$OTFUSE" eval $M/vit_s0 --data $E/text_cls_eval.safetensors &&
  grep -q "pixel_values" "$T/err" && ok
expect_exit 1 "$OTFUSE" eval $M/bert_cls_s0 --data $E/text_mlm_eval.safetensors &&
  grep -q "labels" "$T/err" && ok
expect_exit 1 "$OTFUSE" eval $M/bert_mlm_s0 --data $E/text_cls_eval.safetensors &&
  grep -q "labels" "$T/err" && ok
expect_exit 1 "$OTFUSE" eval "$T" --data $E/digits_eval.safetensors && ok
expect_exit 2 "$OTFUSE" eval $M/vit_s0 --data $E/digits_eval.safetensors --batch 0 &&
  grep -q "batch" "$T/err" && ok
expect_exit 2 "$OTFUSE" eval $M/vit_s0 --data $E/digits_eval.safetensors --batch -3 && ok
expect_exit 2 "$OTFUSE" eval $M/vit_s0 --data $E/digits_eval.safetensors --batch x && ok
expect_exit 2 "$OTFUSE" eval $M/vit_s0 && grep -q "data FILE is required" "$T/err" && ok
expect_exit 2 "$OTFUSE" eval --data $E/digits_eval.safetensors && grep -q "MODEL_DIR" "$T/err" && ok
expect_exit 0 "$OTFUSE" eval --help && grep -q "usage: otfuse eval" "$T/out" && ok

finish "otfuse eval" 12
