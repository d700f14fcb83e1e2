#!/bin/sh
# Fusion benchmark at full size: two BERT-base-shaped and two ViT-B/16-shaped
# checkpoints with random weights (tools/make_model), fused with
#   weights + sinkhorn (reg 0.08), weights + exact, activations + sinkhorn
# (200 calibration sequences of 128 tokens / 200 images of 224x224).
# Prints one row per setting: wall seconds and peak RSS (from
# /usr/bin/time -v). Everything is built in a temporary folder that is
# removed at the end (the models are ~0.9 GB, the calibration images 120 MB).
#
#   bench/bench_fuse.sh [bert|vit|all]     (default all)
#
# Needs /usr/bin/time, /usr/bin/python3 with numpy (Debian python3-numpy)
# for the calibration files, and $BUILD/otfuse + $BUILD/tools/make_model
# (built here with make; BUILD defaults to build). BENCH_TMP picks the
# temporary folder's parent; OTFUSE runs another binary (e.g. a copy of an
# older build) instead; BENCH_REPEAT=N runs every setting N times and
# reports the best wall time and the lowest peak RSS (on a shared machine
# the best of a few runs is the honest number).
set -eu

cd "$(dirname "$0")/.."
which_set=${1:-all}
build=${BUILD:-build}
make --no-print-directory BUILD="$build" "$build/otfuse" "$build/tools/make_model" >/dev/null
otfuse=${OTFUSE:-$build/otfuse}
repeat=${BENCH_REPEAT:-1}

tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/otf_bench_fuse.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

calib() { # calib bert|vit PATH
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, struct, sys
import numpy as np
kind, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
if kind == "bert":
    t = {"input_ids": rng.integers(5, 30522, size=(200, 128), dtype=np.int64),
         "attention_mask": np.ones((200, 128), dtype=np.int64),
         "token_type_ids": np.zeros((200, 128), dtype=np.int64)}
else:
    t = {"pixel_values": rng.standard_normal((200, 3, 224, 224), dtype=np.float32)}
hdr, pos, blobs = {}, 0, []
for name in sorted(t):
    a = np.ascontiguousarray(t[name])
    dt = {"int64": "I64", "float32": "F32"}[str(a.dtype)]
    hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
    pos += a.nbytes
    blobs.append(a.tobytes())
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for b in blobs:
        f.write(b)
EOF
}

run() { # run LABEL ARGS... : the fusion under /usr/bin/time -v, $repeat times
  label=$1
  shift
  best_wall= best_rss=
  i=0
  while [ "$i" -lt "$repeat" ]; do
    i=$((i + 1))
    rm -rf "$tmp/out"
    if ! /usr/bin/time -v -o "$tmp/time" "$otfuse" fuse -o "$tmp/out" "$@" \
        >"$tmp/log" 2>&1; then
      printf '%-34s FAILED\n' "$label"
      tail -3 "$tmp/log"
      return 0
    fi
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/time" |
      awk -F: '{ s = 0; for(i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time" |
      awk '{ printf "%.0f", $1 / 1024 }')
    best_wall=$(echo "$best_wall $wall" | awk '{ print (NF == 1 || $2 < $1) ? $NF : $1 }')
    best_rss=$(echo "$best_rss $rss" | awk '{ print (NF == 1 || $2 < $1) ? $NF : $1 }')
  done
  printf '%-34s %8s %10s\n' "$label" "$best_wall" "$best_rss"
}

bench_family() { # bench_family bert|vit
  fam=$1
  if [ "$fam" = bert ]; then
    arch="--arch BertForSequenceClassification"
  else
    arch="--arch ViTForImageClassification --labels 1000"
  fi
  # shellcheck disable=SC2086
  "$build/tools/make_model" $arch --seed 1 -o "$tmp/${fam}1" >/dev/null
  # shellcheck disable=SC2086
  "$build/tools/make_model" $arch --seed 2 -o "$tmp/${fam}2" >/dev/null
  calib "$fam" "$tmp/${fam}_calib.safetensors"
  m1="$tmp/${fam}1" m2="$tmp/${fam}2"
  run "$fam weights+sinkhorn(0.08)" --solver sinkhorn --reg 0.08 "$m1" "$m2"
  run "$fam weights+exact" --solver exact "$m1" "$m2"
  run "$fam activations+sinkhorn(0.08)" --align activations --solver sinkhorn --reg 0.08 \
    --calibration "$tmp/${fam}_calib.safetensors" --samples 200 "$m1" "$m2"
  rm -rf "$tmp/${fam}1" "$tmp/${fam}2" "$tmp/${fam}_calib.safetensors" "$tmp/out"
}

printf '%-34s %8s %10s\n' setting "wall s" "peak MB"
case $which_set in
bert) bench_family bert ;;
vit) bench_family vit ;;
*) bench_family bert; bench_family vit ;;
esac
