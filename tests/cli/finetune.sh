#!/bin/sh
# otfuse finetune and otfuse fuse --finetune-*: JSON lines, output folder,
# provenance, exit codes for usage and input errors, nothing left behind.
. tests/cli/lib.sh
export OPENBLAS_NUM_THREADS=1

# help and usage errors (exit 2)
expect_exit 0 "$OTFUSE" finetune --help && grep -q -- '--augment-shift' "$T/out" && ok || bad "help"
expect_exit 2 "$OTFUSE" finetune && ok
expect_exit 2 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors -o "$T/x" && ok # no budget
expect_exit 2 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors --epochs 1 --steps 3 -o "$T/x" && ok
expect_exit 2 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors --epochs -1 -o "$T/x" && ok
expect_exit 2 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors --steps 2 --lr abc -o "$T/x" && ok
expect_exit 2 "$OTFUSE" finetune $M/vit_narrow --steps 2 -o "$T/x" && ok # no data
[ ! -e "$T/x" ] && ok || bad "usage error left output"

# a real run: eval line, epoch line, summary; the folder scores what it said
expect_exit 0 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors \
  --eval $E/digits_eval.safetensors --epochs 1 --lr 1e-3 --seed 3 -o "$T/ft" && ok
[ "$(grep -c '"event":"eval"' "$T/out")" -eq 1 ] && ok || bad "one eval line"
[ "$(grep -c '"event":"epoch"' "$T/out")" -eq 1 ] && ok || bad "one epoch line"
sum=$(tail -n 1 "$T/out")
[ "$(field event "$sum")" = '"done"' ] && ok || bad "summary line: $sum"
[ "$(field steps "$sum")" = 23 ] && ok || bad "23 steps: $sum"
acc=$(field eval_accuracy "$sum")
got=$("$OTFUSE" eval "$T/ft" --data $E/digits_eval.safetensors)
near "$(field accuracy "$got")" "$acc" 1e-8 && ok || bad "saved model scores $got, job said $acc"
grep -q '"producer": "otfuse finetune"' "$T/ft/config.json" && ok || bad "provenance"
# same seed, same bytes
expect_exit 0 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors \
  --eval $E/digits_eval.safetensors --epochs 1 --lr 1e-3 --seed 3 -o "$T/ft2" && ok
cmp -s "$T/ft/model.safetensors" "$T/ft2/model.safetensors" && ok || bad "not deterministic"

# input errors (exit 1), no output
expect_exit 1 "$OTFUSE" finetune $M/vit_narrow --data $E/text_cls_train.safetensors --steps 2 -o "$T/y" && ok
grep -q 'input_ids\|pixel_values' "$T/err" && ok || bad "message names the tensor: $(cat "$T/err")"
expect_exit 1 "$OTFUSE" finetune $M/vit_model_s0 --data $E/digits_train.safetensors --steps 2 -o "$T/y" && ok
expect_exit 1 "$OTFUSE" finetune $M/vit_narrow --data $E/digits_train.safetensors --steps 2 -o "$T/ft" && ok # exists
[ ! -e "$T/y" ] && ok || bad "failed run left output"

# fuse + finetune in one go; the intermediate fusion is removed
expect_exit 0 "$OTFUSE" fuse $M/bert_cls_s0 $M/bert_cls_s1 -o "$T/fb" \
  --finetune-data $E/text_cls_train.safetensors --finetune-steps 10 --finetune-lr 2e-3 \
  --eval $E/text_cls_eval.safetensors && ok
[ -f "$T/fb/model.safetensors" ] && [ -f "$T/fb/fusion_report.json" ] && ok || bad "fuse+finetune output"
ls -d "$T"/fb.fused.* >/dev/null 2>&1 && bad "temporary fusion left behind" || ok
grep -q '"fusion"' "$T/fb/config.json" && grep -q '"otfuse fuse"' "$T/fb/config.json" && ok || bad "fusion provenance"
expect_exit 2 "$OTFUSE" fuse $M/vit_s0 $M/vit_s1 -o "$T/fz" --finetune-epochs 1 && ok # no data
expect_exit 2 "$OTFUSE" fuse $M/vit_s0 $M/vit_s1 -o "$T/fz" --finetune-data $E/digits_train.safetensors && ok # no budget

finish finetune 28
