#!/bin/sh
# Evidence for issue 8: does OT fusion + a short finetune beat the
# controls? On the committed fixture tasks
#   ViT digits      vit_s0, vit_s1, vit_s2   (parents trained 150 epochs)
#   BERT text_cls   bert_cls_s0..2           (parents trained 100 epochs)
# and for budgets of 1, 2, 5 and 10 % of the parents' training epochs, the
# eval accuracy of
#   ot+ft    OT fusion (otfuse fuse defaults) finetuned with the budget
#   avg+ft   plain average (--method average) finetuned the same way
#   parent+  each parent trained further with the same budget (the control;
#            "best parent" = the better of the pair's two, by its mean over
#            the seeds)
# for the three pairs (s0,s1), (s0,s2), (s1,s2); the budget-0 row is the
# one-shot fusion and the parents as they are. Every run uses the parents'
# own recipe (tools/train_fixtures.py: AdamW, same lr, weight decay, batch
# 64, 5 % warm-up then cosine over the budget, clipping at 1.0, ViT +-1
# pixel shifts), restarted for the budget; dropout is off (otfuse trains
# without it). Prints Markdown tables (mean over pairs, and each pair).
#
#   bench/finetune_evidence.sh [vit|bert|all] [SEEDS]     (default all, "0")
#
# OTFUSE picks the binary (default build/otfuse); BUDGETS the percentages
# (default "1 2 5 10"); LR_SCALE multiplies the parents' learning rate
# (default 1); EVIDENCE_RAW=PREFIX keeps the raw rows in PREFIX.<task>.tsv
# (pair, budget %, condition, accuracy; one row per seed). One OpenBLAS thread.
set -eu
cd "$(dirname "$0")/.."
which_set=${1:-all}
seeds=${2:-0}
budgets=${BUDGETS:-1 2 5 10}
lr_scale=${LR_SCALE:-1}
otfuse=${OTFUSE:-build/otfuse}
[ -x "$otfuse" ] || make --no-print-directory "$otfuse" >/dev/null
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/otf_ft_evidence.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
M=tests/data/models
D=tests/data/eval

acc_of() { # acc_of MODEL_DIR EVAL -> accuracy
  "$otfuse" eval "$1" --data "$2" | jq -r '.accuracy'
}

ft() { # ft MODEL_DIR OUT EPOCHS TASK SEED -> final eval accuracy
  if [ "$4" = vit ]; then
    set -- "$1" "$2" "$3" --data $D/digits_train.safetensors --eval $D/digits_eval.safetensors \
      --lr "$(awk -v s="$lr_scale" 'BEGIN{print 3e-3*s}')" --weight-decay 0.05 --augment-shift 1 --seed "$5"
  else
    set -- "$1" "$2" "$3" --data $D/text_cls_train.safetensors --eval $D/text_cls_eval.safetensors \
      --lr "$(awk -v s="$lr_scale" 'BEGIN{print 2e-3*s}')" --weight-decay 0.01 --seed "$5"
  fi
  m=$1 out=$2 ep=$3
  shift 3
  rm -rf "$out"
  "$otfuse" finetune "$m" "$@" --epochs "$ep" --batch 64 --warmup 0.05 -o "$out" |
    tail -n 1 | jq -r '.eval_accuracy'
  rm -rf "$out"
}

run_task() { # run_task vit|bert
  task=$1
  if [ "$task" = vit ]; then p=vit_s; total=150; ev=$D/digits_eval.safetensors
  else p=bert_cls_s; total=100; ev=$D/text_cls_eval.safetensors; fi
  res=$tmp/$task.tsv
  : >"$res"
  for pair in "0 1" "0 2" "1 2"; do
    set -- $pair
    a=$M/$p$1 b=$M/$p$2 tag="s$1+s$2"
    "$otfuse" fuse "$a" "$b" -o "$tmp/ot_$tag" >/dev/null
    "$otfuse" fuse --method average "$a" "$b" -o "$tmp/avg_$tag" >/dev/null
    printf '%s\t0\tot\t%s\n' "$tag" "$(acc_of "$tmp/ot_$tag" "$ev")" >>"$res"
    printf '%s\t0\tavg\t%s\n' "$tag" "$(acc_of "$tmp/avg_$tag" "$ev")" >>"$res"
    printf '%s\t0\tparentA\t%s\n' "$tag" "$(acc_of "$a" "$ev")" >>"$res"
    printf '%s\t0\tparentB\t%s\n' "$tag" "$(acc_of "$b" "$ev")" >>"$res"
    for pct in $budgets; do
      ep=$(awk -v t=$total -v p=$pct 'BEGIN{print t*p/100}')
      for seed in $seeds; do
        printf '%s\t%s\tot\t%s\n' "$tag" "$pct" "$(ft "$tmp/ot_$tag" "$tmp/o" "$ep" $task $seed)" >>"$res"
        printf '%s\t%s\tavg\t%s\n' "$tag" "$pct" "$(ft "$tmp/avg_$tag" "$tmp/o" "$ep" $task $seed)" >>"$res"
        printf '%s\t%s\tparentA\t%s\n' "$tag" "$pct" "$(ft "$a" "$tmp/o" "$ep" $task $seed)" >>"$res"
        printf '%s\t%s\tparentB\t%s\n' "$tag" "$pct" "$(ft "$b" "$tmp/o" "$ep" $task $seed)" >>"$res"
      done
    done
    echo "  $task $tag done" >&2
  done
  echo
  echo "### $task: eval accuracy (%), mean over the pairs (s0,s1) (s0,s2) (s1,s2) and seeds \"$seeds\", lr x $lr_scale"
  echo
  echo "| budget (% of $total epochs) | epochs | OT fusion + ft | plain average + ft | parents + same budget (mean) | best parent + budget |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' -v total=$total -v budgets="0 $budgets" '
    { k=$2; c=$3; v=$4*100
      if (c=="ot") { ot[k]+=v; no[k]++ } else if (c=="avg") { av[k]+=v; na[k]++ }
      else { pa[k]+=v; np[k]++; ps[$1 SUBSEP k SUBSEP c]+=v; pn[$1 SUBSEP k SUBSEP c]++; pair[$1]=1 }
      seen[k]=1 }
    END {
      n=split(budgets, ks, " ")
      for (i=1;i<=n;i++) { k=ks[i]; if (!(k in seen)) continue
        bs=0; nb=0
        for (p in pair) { a=ps[p SUBSEP k SUBSEP "parentA"]/pn[p SUBSEP k SUBSEP "parentA"]
          b=ps[p SUBSEP k SUBSEP "parentB"]/pn[p SUBSEP k SUBSEP "parentB"]
          bs+=(a>b?a:b); nb++ }
        printf "| %s | %s | %.1f | %.1f | %.1f | %.1f |\n", (k==0?"0 (one-shot)":k), total*k/100,
          ot[k]/no[k], av[k]/na[k], pa[k]/np[k], bs/nb } }' "$res"
  [ -n "${EVIDENCE_RAW:-}" ] && cp "$res" "$EVIDENCE_RAW.$task.tsv"
  echo
  echo "Per pair (OT+ft / avg+ft / parent A+ / parent B+):"
  echo
  echo "| pair | budget % | OT+ft | avg+ft | parent A+ | parent B+ |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' -v budgets="0 $budgets" '{ v[$1 SUBSEP $2 SUBSEP $3]+=$4*100; n[$1 SUBSEP $2 SUBSEP $3]++; pk[$1 SUBSEP $2]=1 }
    END { split("s0+s1 s0+s2 s1+s2", ps, " "); nk=split(budgets, ks, " ")
      for (i=1;i<=3;i++) for (j=1;j<=nk;j++) { k=ps[i] SUBSEP ks[j]; if (!(k in pk)) continue
        printf "| %s | %s | %.1f | %.1f | %.1f | %.1f |\n", ps[i], ks[j],
          v[k SUBSEP "ot"]/n[k SUBSEP "ot"], v[k SUBSEP "avg"]/n[k SUBSEP "avg"],
          v[k SUBSEP "parentA"]/n[k SUBSEP "parentA"], v[k SUBSEP "parentB"]/n[k SUBSEP "parentB"] } }' "$res"
}

case $which_set in
vit) run_task vit ;;
bert) run_task bert ;;
all) run_task vit; run_task bert ;;
*) echo "usage: $0 [vit|bert|all] [SEEDS]" >&2; exit 2 ;;
esac
