#!/bin/sh
# Training throughput, otfuse (C, OpenBLAS) vs PyTorch (/usr/bin/python3,
# Debian's torch) on the same model, batch and thread count, in the same
# run: samples per second of one training step (forward, backward, global
# gradient clipping, AdamW), random inputs, after one warm-up step.
#   1. the fixture ViT tests/data/models/vit_s0 (3/32/4/64, 17 tokens), batch 64
#   2. a BERT-base-shaped BertForSequenceClassification (12/768/12/3072,
#      vocab 30522) with random weights (tools/make_model), batch 8 x 128 tokens
#
#   bench/finetune_throughput.sh [THREADS]        (default 1)
#
# The BERT-base checkpoint (~440 MB) lives in a temporary folder removed at
# the end (BENCH_TMP picks its parent). Needs ~4 GB of memory.
set -eu
cd "$(dirname "$0")/.."
threads=${1:-1}
build=${BUILD:-build}
make --no-print-directory BUILD="$build" "$build/bench/finetune_bench" "$build/tools/make_model" >/dev/null
tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/otf_ft_tp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

row() { # row NAME MODEL_DIR BATCH SEQ STEPS
  c=$("$build/bench/finetune_bench" "$2" "$3" "$4" "$5")
  p=$(/usr/bin/python3 bench/finetune_torch.py "$2" "$3" "$4" "$5" "$threads")
  cs=$(printf '%s' "$c" | jq -r .samples_per_s)
  ps=$(printf '%s' "$p" | jq -r .samples_per_s)
  printf '| %s | %s | %s | %s | %s | %s | %.2f |\n' "$1" "$3" "$(printf '%s' "$c" | jq -r .tokens)" \
    "$threads" "$cs" "$ps" "$(awk -v a="$cs" -v b="$ps" 'BEGIN{print a/b}')"
}

echo "| model | batch | tokens | threads | otfuse samples/s | PyTorch samples/s | otfuse / PyTorch |"
echo "|---|---|---|---|---|---|---|"
row "fixture ViT (vit_s0)" tests/data/models/vit_s0 64 17 30
"$build/tools/make_model" --arch BertForSequenceClassification --hidden 768 --layers 12 --heads 12 \
  --ffn 3072 --vocab 30522 --positions 512 --labels 2 --seed 1 -o "$tmp/bert_base" >/dev/null
row "BERT-base shape (cls)" "$tmp/bert_base" 8 128 3
