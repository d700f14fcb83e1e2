#!/bin/sh
# Fusion quality report on the committed fixtures: eval accuracy and loss
# (`otfuse eval`) of the parents, plain averaging and OT fusion under the
# settings that matter, as Markdown tables, for two tasks:
#   ViT digits      vit_s0..2 (3/32/4/64), vit_wide (3/64/8/128), vit_narrow (3/16/2/32)
#   BERT text_cls   bert_cls_s0..2, bert_cls_wide, bert_cls_narrow (same shapes, 2 layers)
# Sections per task:
#   A  parents
#   B  main pair (s0, s1): averaging; OT on weights and on activations x
#      Sinkhorn reg 0.02 / 0.05 / 0.08 / 0.15 and exact (residual mean,
#      Q/K separate)
#   C  main pair: residual policy x Q/K handling, with the best solver
#      setting of B for each alignment (best = highest accuracy, then
#      lowest loss)
#   D  headline settings on all three same-shape pairs, and their mean, so
#      that one lucky pair does not decide
#   E  heterogeneous pairs (s0 anchor + wide, s0 anchor + narrow, wide
#      anchor + s0) with --maps clean vs reference
#   F  N = 3 (s0, s1, s2), anchor s0
# Calibration (activations, weighted residuals): the task's *_train file,
# 200 samples, seed 0. Evaluation: the task's *_eval file (360 / 400 rows).
# Everything runs in a temporary folder that is removed at the end; the
# command lines run are printed as a footer.
#
#   sh bench/fusion_quality.sh            # from the repository root, after `make`
#   OTFUSE=path/to/otfuse sh bench/fusion_quality.sh
set -eu

OTFUSE=${OTFUSE:-build/otfuse}
M=${OTF_MODELS:-tests/data/models}
E=${OTF_EVAL:-tests/data/eval}
SAMPLES=200

die() { echo "fusion_quality: $*" >&2; exit 1; }

[ -x "$OTFUSE" ] || die "no otfuse binary at $OTFUSE (run make, or set OTFUSE)"
for f in digits_train digits_eval text_cls_train text_cls_eval; do
  [ -f "$E/$f.safetensors" ] || die "missing data file $E/$f.safetensors"
done
for m in vit_s0 vit_s1 vit_s2 vit_wide vit_narrow bert_cls_s0 bert_cls_s1 bert_cls_s2 \
         bert_cls_wide bert_cls_narrow; do
  [ -f "$M/$m/config.json" ] || die "missing fixture model $M/$m"
done

W=$(mktemp -d "${TMPDIR:-/tmp}/fusion_quality.XXXXXX") || die "cannot create a temporary folder"
trap 'rm -rf "$W"' EXIT
trap 'exit 130' INT TERM
CMDS=$W/commands
FAILS=$W/failures
: >"$CMDS"
: >"$FAILS"
n_fusions=0
n_failed=0
start=$(date +%s)

# run CMD...: runs one otfuse command, logs it; on failure prints the
# command and its stderr and stops the whole report.
run() {
  printf '%s\n' "$*" | sed "s|$W|\$TMP|g" >>"$CMDS"
  rc=0
  "$@" >"$W/stdout" 2>"$W/stderr" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "fusion_quality: FAILED (exit $rc): $*" >&2
    sed 's/^/  stderr: /' "$W/stderr" >&2
    exit 1
  fi
}

# evaluate DIR: sets ACC and LOSS (4 decimals) from `otfuse eval`.
evaluate() {
  run "$OTFUSE" eval "$1" --data "$EVAL"
  line=$(cat "$W/stdout")
  ACC=$(printf '%s\n' "$line" | sed -n 's/.*"accuracy":\([^,}]*\).*/\1/p')
  LOSS=$(printf '%s\n' "$line" | sed -n 's/.*"loss":\([^,}]*\).*/\1/p')
  [ -n "$ACC" ] && [ -n "$LOSS" ] || die "cannot read accuracy/loss from: $line"
  ACC=$(awk -v a="$ACC" 'BEGIN { printf "%.4f", a }')
  LOSS=$(awk -v a="$LOSS" 'BEGIN { printf "%.4f", a }')
}

# fuse NAME OPTIONS... -- MODELS...: fuses into $W/NAME and evaluates it.
# A fusion that otfuse refuses as bad input or an unsolvable problem
# (exit 1, e.g. a Sinkhorn solve that does not converge) is a result, not a
# breakdown of the report: ACC becomes "failed", LOSS the reason, and the
# report goes on (listed again under the tables). Anything else stops it.
fuse() {
  name=$1; shift
  n_fusions=$((n_fusions + 1))
  rm -rf "${W:?}/$name"
  cmd="$OTFUSE fuse --calibration $CALIB --samples $SAMPLES -o $W/$name $*"
  printf '%s\n' "$cmd" | sed "s|$W|\$TMP|g" >>"$CMDS"
  rc=0
  "$OTFUSE" fuse --calibration "$CALIB" --samples $SAMPLES -o "$W/$name" "$@" \
    >"$W/stdout" 2>"$W/stderr" || rc=$?
  if [ "$rc" -eq 1 ]; then
    why=$(sed -n 's/^otfuse fuse: //p' "$W/stderr" | head -n 1)
    [ -n "$why" ] || why=$(head -n 1 "$W/stderr")
    ACC=failed
    LOSS=$(printf '%s' "$why" | sed 's/:.*//; s/|/\\|/g' | cut -c 1-40)
    n_failed=$((n_failed + 1))
    printf '%s\n  -> %s\n' "$cmd" "$why" | sed "s|$W|\$TMP|g" >>"$FAILS"
    [ ! -e "$W/$name" ] || die "a failed fusion left $W/$name behind"
    return 0
  fi
  if [ "$rc" -ne 0 ]; then
    echo "fusion_quality: FAILED (exit $rc): $cmd" >&2
    sed 's/^/  stderr: /' "$W/stderr" >&2
    exit 1
  fi
  evaluate "$W/$name"
  rm -rf "${W:?}/$name"
}

row() { # cells...: one Markdown table row
  printf '|'
  for c in "$@"; do printf ' %s |' "$c"; done
  printf '\n'
}

# opts SPEC: the otfuse options of a solver spec "exact" or "sinkhorn:R".
opts() {
  case $1 in
    exact) echo "--solver exact" ;;
    sinkhorn:*) echo "--solver sinkhorn --reg ${1#sinkhorn:}" ;;
    *) die "internal: bad solver spec $1" ;;
  esac
}
label() { case $1 in exact) echo "exact" ;; *) echo "sinkhorn ${1#sinkhorn:}" ;; esac; }

# better ACC LOSS BEST_ACC BEST_LOSS: true when (ACC, -LOSS) is larger
# (a failed fusion is never better).
better() {
  [ "$1" != failed ] || return 1
  awk -v a="$1" -v l="$2" -v ba="$3" -v bl="$4" 'BEGIN { exit !(a > ba || (a == ba && l < bl)) }'
}

task() { # TITLE PREFIX DATA-STEM
  title=$1; P=$2; EVAL=$E/$3_eval.safetensors; CALIB=$E/$3_train.safetensors
  echo
  echo "## $title"
  echo
  echo "Eval: \`$EVAL\`; calibration: \`$CALIB\`, $SAMPLES samples."

  echo
  echo "### A. Parents"
  echo
  row model accuracy loss
  row --- --- ---
  for m in s0 s1 s2 wide narrow; do
    evaluate "$M/${P}_$m"
    row "${P}_$m" "$ACC" "$LOSS"
  done

  echo
  echo "### B. Main pair (${P}_s0 anchor, ${P}_s1): solver x alignment (residual mean, qk separate)"
  echo
  row method align solver accuracy loss
  row --- --- --- --- ---
  fuse avg --method average $M/${P}_s0 $M/${P}_s1
  row average - - "$ACC" "$LOSS"
  AVG01="$ACC / $LOSS"
  for align in weights activations; do
    best=; best_acc=-1; best_loss=1e300
    for s in sinkhorn:0.02 sinkhorn:0.05 sinkhorn:0.08 sinkhorn:0.15 exact; do
      # shellcheck disable=SC2046
      fuse b --align $align $(opts $s) $M/${P}_s0 $M/${P}_s1
      row ot $align "$(label $s)" "$ACC" "$LOSS"
      if better "$ACC" "$LOSS" "$best_acc" "$best_loss"; then
        best=$s; best_acc=$ACC; best_loss=$LOSS
      fi
    done
    eval "BEST_$align=\$best"
    eval "BESTSCORE_$align=\"\$best_acc / \$best_loss\""
  done
  echo
  echo "Best solver setting: weights $(label "$BEST_weights") ($BESTSCORE_weights)," \
       "activations $(label "$BEST_activations") ($BESTSCORE_activations)."

  echo
  echo "### C. Main pair: residual policy x qk (best solver per alignment, and exact)"
  echo
  row align solver residual qk accuracy loss
  row --- --- --- --- --- ---
  top=; top_acc=-1; top_loss=1e300
  for align in weights activations; do
    eval "b=\$BEST_$align"
    solvers=$b
    [ "$b" = exact ] || solvers="$b exact"
    for s in $solvers; do
      for r in mean skip branch weighted-scalar weighted-matrix; do
        for q in separate shared heads; do
          # shellcheck disable=SC2046
          fuse c --align $align $(opts "$s") --residual $r --qk $q $M/${P}_s0 $M/${P}_s1
          row $align "$(label "$s")" $r $q "$ACC" "$LOSS"
          if better "$ACC" "$LOSS" "$top_acc" "$top_loss"; then
            top="--align $align $(opts "$s") --residual $r --qk $q"; top_acc=$ACC; top_loss=$LOSS
          fi
        done
      done
    done
  done
  echo
  echo "Best on the main pair: \`$top\` ($top_acc / $top_loss)."

  echo
  echo "### D. Headline settings on all three pairs (accuracy / loss)"
  echo
  W1="--align weights $(opts "$BEST_weights")"
  A1="--align activations $(opts "$BEST_activations")"
  A8="--align activations --solver sinkhorn --reg 0.08"
  row setting "s0+s1" "s0+s2" "s1+s2" "mean accuracy" "mean loss"
  row --- --- --- --- --- ---
  seen="|"
  for setting in "--method average" "--align weights --solver exact" "$W1" "$A8" "$A1" "$top"; do
    case $seen in *"|$setting|"*) continue ;; esac
    seen="$seen$setting|"
    cells=; sa=0; sl=0; nf=0
    for pair in "s0 s1" "s0 s2" "s1 s2"; do
      set -- $pair
      # shellcheck disable=SC2086
      fuse d $setting $M/${P}_$1 $M/${P}_$2
      cells="$cells| $ACC / $LOSS "
      if [ "$ACC" = failed ]; then nf=$((nf + 1)); continue; fi
      sa=$(awk -v x="$sa" -v y="$ACC" 'BEGIN { print x + y }')
      sl=$(awk -v x="$sl" -v y="$LOSS" 'BEGIN { print x + y }')
    done
    if [ "$nf" -eq 0 ]; then
      ma=$(awk -v x="$sa" 'BEGIN { printf "%.4f", x / 3 }')
      ml=$(awk -v x="$sl" 'BEGIN { printf "%.4f", x / 3 }')
    else
      ma="n/a ($nf failed)"; ml="n/a"
    fi
    printf '| `%s` %s| %s | %s |\n' "$setting" "$cells" "$ma" "$ml"
  done

  echo
  echo "### E. Heterogeneous pairs (the fused model has the anchor's shape)"
  echo
  row anchor other setting maps accuracy loss
  row --- --- --- --- --- ---
  for het in "s0 wide" "s0 narrow" "wide s0"; do
    set -- $het
    for setting in "$W1" "$A1"; do
      for maps in clean reference; do
        # shellcheck disable=SC2086
        fuse e $setting --maps $maps $M/${P}_$1 $M/${P}_$2
        row "${P}_$1" "${P}_$2" "\`$setting\`" $maps "$ACC" "$LOSS"
      done
    done
  done

  echo
  echo "### F. N = 3 (${P}_s0 anchor, ${P}_s1, ${P}_s2; uniform weights)"
  echo
  row setting accuracy loss
  row --- --- ---
  seen="|"
  for setting in "--method average" "--align weights --solver exact" "$W1" "$A8" "$A1" "$top"; do
    case $seen in *"|$setting|"*) continue ;; esac
    seen="$seen$setting|"
    # shellcheck disable=SC2086
    fuse f $setting $M/${P}_s0 $M/${P}_s1 $M/${P}_s2
    row "\`$setting\`" "$ACC" "$LOSS"
  done
}

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "# otfuse fusion quality ($(date -u +%Y-%m-%dT%H:%MZ), commit $rev, $OTFUSE)"
task "ViT digits (vit_*)" vit digits
task "BERT text_cls (bert_cls_*)" bert_cls text_cls

echo
echo "$n_fusions fusions ($n_failed refused by otfuse), $(wc -l <"$CMDS" | tr -d ' ') commands, $(($(date +%s) - start)) s."
if [ "$n_failed" -gt 0 ]; then
  echo
  echo "Fusions otfuse refused (exit 1; shown as 'failed' above):"
  echo
  echo '```'
  cat "$FAILS"
  echo '```'
fi
echo
echo "<details><summary>Commands run (\$TMP = the temporary work folder, removed)</summary>"
echo
echo '```'
cat "$CMDS"
echo '```'
echo "</details>"
