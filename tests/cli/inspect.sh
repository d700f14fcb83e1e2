#!/bin/sh
# Integration test of `otfuse inspect` on the committed fixture models:
# fields, parameter counts (from tests/data/models/manifest.json, i.e. as
# PyTorch counted them), lenient reporting, --check on NaN weights, errors.
set -u
. tests/cli/lib.sh

# 1. Every fixture model: architecture and parameter count as recorded.
for d in "$M"/*/; do
  name=$(basename "$d")
  want=$(awk -v key="\"$name\": {" 'index($0, key) { f = 1 } f && /"params"/ { gsub(/[^0-9]/, ""); print; exit }' $M/manifest.json)
  j=$("$OTFUSE" inspect --json "$d") || { bad "$name: exit $?"; continue; }
  [ -n "$want" ] && [ "$(field parameters "$j")" = "$want" ] && ok ||
    bad "$name: parameters $(field parameters "$j"), manifest says $want"
done

# 2. Human output names the architecture and dimensions.
out=$("$OTFUSE" inspect $M/vit_s0)
echo "$out" | grep -q "architecture  ViTForImageClassification (vit)" &&
  echo "$out" | grep -q "hidden 32, layers 3, heads 4, ffn 64, labels 10" &&
  echo "$out" | grep -q "8x8 images, 1 channels, patch 2" && ok || bad "human output: $out"

# 3. A bare safetensors file: the tensor list.
j=$("$OTFUSE" inspect --json $M/bert_cls_s0/model.safetensors)
[ "$(field tensors "$j")" = 41 ] && echo "$j" | grep -q '"name":"classifier.weight","dtype":"F32","shape":\[4,32\]' &&
  ok || bad "file listing: $j"

# 4. NaN weights are reported with --check, not crashed on.
cp -r $M/vit_s0 "$T/nan"
hlen=$(od -An -tu8 -N8 "$T/nan/model.safetensors" | tr -d ' ')
printf '\000\000\300\177' | dd of="$T/nan/model.safetensors" bs=1 seek=$((8 + hlen + 64)) conv=notrunc 2>/dev/null
j=$("$OTFUSE" inspect --json --check "$T/nan")
[ "$(field nonfinite "$j")" = 1 ] && echo "$j" | grep -q "1 NaN/Inf values, the first in" && ok ||
  bad "NaN check: $j"
j=$("$OTFUSE" inspect --json --check $M/vit_s0)
[ "$(field nonfinite "$j")" = 0 ] && ok || bad "clean check: $j"

# 5. A config that disagrees with the weights: exit 1 naming the tensors.
cp -r $M/vit_s0 "$T/bad"
sed 's/"num_hidden_layers": 3/"num_hidden_layers": 4/' $M/vit_s0/config.json >"$T/bad/config.json"
"$OTFUSE" inspect "$T/bad" >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "missing vit.encoder.layer.3" "$T/err" && ok || bad "mismatch: $(cat "$T/err")"
"$OTFUSE" inspect "$T/none" >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "no such file" "$T/err" && ok || bad "missing path"
"$OTFUSE" inspect >/dev/null 2>&1
[ $? -eq 2 ] && ok || bad "usage exit"
head -c 100 $M/vit_s0/model.safetensors >"$T/trunc.safetensors"
"$OTFUSE" inspect "$T/trunc.safetensors" >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "malformed input" "$T/err" && ok || bad "truncated: $(cat "$T/err")"

finish "otfuse inspect" 18
