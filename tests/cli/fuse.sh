#!/bin/sh
# Integration test of `otfuse fuse`: drives the real binary on the committed
# fixture models (tests/data/models) and checks the summary line, the output
# folder (config.json with provenance, model.safetensors, fusion_report.json),
# that the output evaluates and inspects, that self-fusion under exact OT
# gives the parent's accuracy, and the exit statuses of usage errors (2) and
# input errors (1, with a message and no output folder). Needs POSIX sh, sed,
# grep, awk.
set -u
. tests/cli/lib.sh

# has FILE STRING...: every string occurs in FILE (fixed strings).
has() {
  f=$1; shift
  for s in "$@"; do
    grep -qF -- "$s" "$f" || { echo "  missing '$s' in $f"; return 1; }
  done
  return 0
}

# 1. --help: exit 0, usage on stdout, every flag named.
if expect_exit 0 "$OTFUSE" fuse --help; then
  has "$T/out" "usage: otfuse fuse" && ok || bad "--help: no usage line"
  missing=
  for flag in --method --align --calibration --samples --solver --reg --residual --qk \
              --anchor --weights --dtype --seed --tokens --metric --cost-norm --no-unit-rows --maps \
              --components -o; do
    grep -qF -- "$flag" "$T/out" || missing="$missing $flag"
  done
  [ -z "$missing" ] && ok || bad "--help does not mention:$missing"
fi

# 2. A plain fusion of vit_s0 + vit_s1: summary line and output folder.
O=$T/vit01
if expect_exit 0 "$OTFUSE" fuse -o "$O" $M/vit_s0 $M/vit_s1; then
  j=$(cat "$T/out")
  [ "$(wc -l <"$T/out" | tr -d ' ')" = 1 ] && ok || bad "summary is not one line: $j"
  [ "$(field output "$j")" = "\"$O\"" ] && [ "$(field method "$j")" = '"ot"' ] &&
    [ "$(field parents "$j")" = 2 ] && [ "$(field anchor "$j")" = 0 ] &&
    [ -n "$(field maps "$j")" ] && [ "$(field maps "$j")" -gt 0 ] &&
    [ "$(field parameters "$j")" = 26762 ] && [ -n "$(field seconds "$j")" ] && ok ||
    bad "summary fields: $j"
  [ -f "$O/config.json" ] && [ -f "$O/model.safetensors" ] && [ -f "$O/fusion_report.json" ] &&
    ok || bad "output files: $(ls "$O")"
  has "$O/config.json" '"otfuse"' '"torch_dtype"' '"ViTForImageClassification"' && ok ||
    bad "config.json lacks provenance / torch_dtype"
  has "$O/fusion_report.json" '"maps"' '"tensor"' '"shape"' '"method"' '"iterations"' \
    '"marginal_error"' '"cost"' '"sharpness"' '"seconds"' && ok || bad "fusion_report.json fields"
  # One entry per map: as many "sharpness" keys as the summary's maps.
  nmaps=$(grep -o '"sharpness"' "$O/fusion_report.json" | wc -l | tr -d ' ')
  [ "$nmaps" = "$(field maps "$j")" ] && ok || bad "report has $nmaps maps, summary $(field maps "$j")"
  if expect_exit 0 "$OTFUSE" eval "$O" --data $E/digits_eval.safetensors; then
    a=$(field accuracy "$(cat "$T/out")")
    awk -v a="$a" 'BEGIN { exit !(a >= 0 && a <= 1) }' && [ "$(field n "$(cat "$T/out")")" = 360 ] &&
      ok || bad "eval of the fusion: $(cat "$T/out")"
  fi
  expect_exit 0 "$OTFUSE" inspect --json "$O" && has "$T/out" '"F32":26762' && ok ||
    bad "default dtype is not the parents' F32: $(cat "$T/out")"
fi

# 3. --dtype bf16: inspect shows BF16 everywhere; config says bfloat16.
O=$T/bf16
if expect_exit 0 "$OTFUSE" fuse --dtype bf16 -o "$O" $M/vit_s0 $M/vit_s1; then
  expect_exit 0 "$OTFUSE" inspect --json "$O" && has "$T/out" '"BF16":26762' &&
    ! grep -q '"F32"' "$T/out" && ok || bad "bf16 output: $(cat "$T/out")"
  has "$O/config.json" '"torch_dtype": "bfloat16"' && ok || bad "bf16: torch_dtype"
  expect_exit 0 "$OTFUSE" eval "$O" --data $E/digits_eval.safetensors && ok
fi

# 4. Self-fusion under exact OT is the identity: same accuracy and loss as
# the parent, for weights and for activations, ViT and BERT.
selfcheck() { # MODEL DATA CALIB extra-args...
  name=$1; data=$2; calib=$3; shift 3
  expect_exit 0 "$OTFUSE" eval $M/$name --data "$data" || return
  parent=$(cat "$T/out")
  O=$T/self_$name$(echo "$*" | tr -cd 'a-z')
  expect_exit 0 "$OTFUSE" fuse --solver exact --calibration "$calib" "$@" -o "$O" \
    $M/$name $M/$name || return
  expect_exit 0 "$OTFUSE" eval "$O" --data "$data" || return
  got=$(cat "$T/out")
  [ "$(field accuracy "$got")" = "$(field accuracy "$parent")" ] &&
    [ "$(field loss "$got")" = "$(field loss "$parent")" ] && ok ||
    bad "self-fusion of $name ($*): $got, parent $parent"
}
selfcheck vit_s0 $E/digits_eval.safetensors $E/digits_train.safetensors
selfcheck vit_s0 $E/digits_eval.safetensors $E/digits_train.safetensors --align activations
selfcheck bert_cls_s0 $E/text_cls_eval.safetensors $E/text_cls_train.safetensors \
  --align activations --qk heads

# 5. Options that change the result are honoured: plain averaging, N = 3
# with weights and anchor, heterogeneous widths follow the anchor.
O=$T/avg
expect_exit 0 "$OTFUSE" fuse --method average -o "$O" $M/vit_s0 $M/vit_s1 &&
  [ "$(field method "$(cat "$T/out")")" = '"average"' ] && ok
O=$T/n3
if expect_exit 0 "$OTFUSE" fuse --weights 1,2,1 --anchor 1 --align activations \
     --calibration $E/digits_train.safetensors --samples 50 --seed 3 -o "$O" \
     $M/vit_s0 $M/vit_s1 $M/vit_s2; then
  j=$(cat "$T/out")
  [ "$(field parents "$j")" = 3 ] && [ "$(field anchor "$j")" = 1 ] && ok || bad "N=3 summary: $j"
  has "$O/fusion_report.json" '"samples": 50' '"seed": 3' && ok || bad "N=3 report settings"
fi
O=$T/het
if expect_exit 0 "$OTFUSE" fuse --anchor 1 --maps reference --solver exact -o "$O" \
     $M/vit_s0 $M/vit_wide; then
  expect_exit 0 "$OTFUSE" inspect --json "$O" && [ "$(field hidden_size "$(cat "$T/out")")" = 64 ] &&
    [ "$(field intermediate_size "$(cat "$T/out")")" = 128 ] && ok ||
    bad "heterogeneous fusion does not have the anchor's shape: $(cat "$T/out")"
fi
expect_exit 0 "$OTFUSE" fuse --components attn,mlp --metric cosine --cost-norm median \
  --no-unit-rows --reg 0.05 --residual skip --qk shared -o "$T/misc" $M/bert_cls_s0 $M/bert_cls_s1 &&
  has "$T/misc/fusion_report.json" '"residual": "skip"' '"qk": "shared"' '"metric": "cosine"' &&
  ok || bad "misc flags not in the report"

# 6. Usage errors: exit 2, nothing written.
usage() { # what pattern args...
  what=$1; pat=$2; shift 2
  O=$T/usage
  expect_exit 2 "$OTFUSE" fuse "$@" && [ ! -e "$O" ] && grep -q -- "$pat" "$T/err" && ok ||
    bad "usage error ($what): stderr '$(head -n 1 "$T/err")'"
}
usage "unknown solver" "--solver must be" --solver greedy -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "unknown qk" "--qk must be" --qk joint -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "unknown residual" "--residual must be" --residual max -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "unknown dtype" "--dtype must be" --dtype f64 -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "weights count" "3 values for 2 models" --weights 1,2,3 -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "negative weight" "--weights must be" --weights 1,-1 -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "anchor out of range" "--anchor 2 but only 2" --anchor 2 -o "$T/usage" $M/vit_s0 $M/vit_s1
usage "missing -o" "-o OUT_DIR is required" $M/vit_s0 $M/vit_s1
usage "one model" "at least two" -o "$T/usage" $M/vit_s0
usage "unknown flag" "usage: otfuse fuse" --frobnicate -o "$T/usage" $M/vit_s0 $M/vit_s1

# 7. Input errors: exit 1 with a message, no output folder, no leftovers.
inerr() { # what pattern args...
  what=$1; pat=$2; shift 2
  O=$T/inerr
  expect_exit 1 "$OTFUSE" fuse -o "$O" "$@" || { bad "input error ($what)"; return; }
  grep -q -- "$pat" "$T/err" && [ ! -e "$O" ] && ok ||
    bad "input error ($what): stderr '$(cat "$T/err")', output exists: $([ -e "$O" ] && echo yes || echo no)"
}
inerr "vit + bert" "differ in architecture" $M/vit_s0 $M/bert_cls_s0
inerr "missing model" "nope" $M/vit_s0 "$T/nope"
inerr "activations without calibration" "calibration" --align activations $M/vit_s0 $M/vit_s1
inerr "weighted residual without calibration" "calibration" --residual weighted-scalar \
  $M/vit_s0 $M/vit_s1
inerr "calibration of the wrong kind" "." --align activations \
  --calibration $E/text_cls_train.safetensors $M/vit_s0 $M/vit_s1
inerr "average of different shapes" "identical shapes" --method average $M/vit_s0 $M/vit_wide
leftovers=$(ls -A "$T" | grep -v -e '^out$' -e '^err$' -e '^vit01$' -e '^bf16$' -e '^self_' \
  -e '^avg$' -e '^n3$' -e '^het$' -e '^misc$' || true)
[ -z "$leftovers" ] && ok || bad "temporary leftovers in the work folder: $leftovers"

# A non-empty existing output folder is refused and left untouched.
mkdir "$T/busy" && echo precious >"$T/busy/keep"
expect_exit 1 "$OTFUSE" fuse -o "$T/busy" $M/vit_s0 $M/vit_s1 && grep -q "busy" "$T/err" &&
  [ "$(ls -A "$T/busy")" = keep ] && [ "$(cat "$T/busy/keep")" = precious ] && ok ||
  bad "non-empty output folder: $(ls -A "$T/busy")"
# An empty one is accepted.
mkdir "$T/empty"
expect_exit 0 "$OTFUSE" fuse -o "$T/empty" $M/vit_s0 $M/vit_s1 && [ -f "$T/empty/model.safetensors" ] &&
  ok || bad "empty output folder"

finish "otfuse fuse" 25
