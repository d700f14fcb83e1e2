#!/bin/sh
# Integration test of `otfuse ot`: drives the real binary on committed
# fixtures (golden objectives from POT 0.8.2, see tests/data/ot/README.md)
# and on hand-made hostile files. Needs only POSIX sh, awk and od.
set -u
. tests/cli/lib.sh

# 1. Exact, square uniform: JV assignment, objective equal to POT's.
if expect_exit 0 "$OTFUSE" ot --cost $D/exact_square_uniform_n64.safetensors; then
  j=$(cat "$T/out")
  [ "$(field solver "$j")" = '"exact"' ] && [ "$(field method "$j")" = '"assignment"' ] &&
    [ "$(field n "$j")" = 64 ] && [ "$(field m "$j")" = 64 ] &&
    close "$(field objective "$j")" 0.02354694146175209 1e-9 &&
    close "$(field marginal_error "$j")" 0 0 || awk -v e="$(field marginal_error "$j")" 'BEGIN{exit !(e < 1e-12)}' &&
    [ -n "$(field seconds "$j")" ] && [ -n "$(field iterations "$j")" ] && ok || bad "exact n64: $j"
fi

# 2. Exact with named marginals: the network simplex.
if expect_exit 0 "$OTFUSE" ot --cost $D/exact_nonuniform_30x45.safetensors --a a --b b; then
  j=$(cat "$T/out")
  [ "$(field method "$j")" = '"network-simplex"' ] && [ "$(field n "$j")" = 30 ] &&
    [ "$(field m "$j")" = 45 ] && close "$(field objective "$j")" 0.052533407994179014 1e-9 &&
    ok || bad "nonuniform: $j"
fi

# 3. Rectangular F32 cost, uniform marginals.
if expect_exit 0 "$OTFUSE" ot --cost $D/exact_euclid_gauss64_300x150.safetensors; then
  j=$(cat "$T/out")
  close "$(field objective "$j")" 0.59499026119708998 1e-9 && ok || bad "300x150: $j"
fi

# 4. Sinkhorn, with the plan written out.
if expect_exit 0 "$OTFUSE" ot --cost $D/sinkhorn_rand_40x25_reg0.08.safetensors --solver sinkhorn --reg 0.08 --plan "$T/plan.safetensors"; then
  j=$(cat "$T/out")
  [ "$(field method "$j")" = '"sinkhorn"' ] && [ "$(field converged "$j")" = true ] &&
    awk -v e="$(field marginal_error "$j")" 'BEGIN{exit !(e < 1e-8)}' && ok || bad "sinkhorn: $j"
  # The plan file: 8-byte length, header naming 'plan' F64 [40, 25], 1000 doubles.
  hlen=$(od -An -tu8 -N8 "$T/plan.safetensors" | tr -d ' ')
  size=$(wc -c <"$T/plan.safetensors")
  if [ $((hlen % 8)) -eq 0 ] && [ "$size" -eq $((8 + hlen + 40 * 25 * 8)) ] &&
     head -c $((8 + hlen)) "$T/plan.safetensors" | grep -q '"plan":{"data_offsets":\[0,8000\],"dtype":"F64","shape":\[40,25\]}'; then
    ok
  else
    bad "plan file layout (hlen $hlen size $size)"
  fi
fi

# 5. Tiny reg goes to the log domain and still meets the marginals.
if expect_exit 0 "$OTFUSE" ot --cost $D/sinkhorn_tinyreg.safetensors --solver sinkhorn --reg 0.001; then
  j=$(cat "$T/out")
  [ "$(field method "$j")" = '"sinkhorn-log"' ] && [ "$(field converged "$j")" = true ] && ok || bad "tinyreg: $j"
fi
# ... and forcing the scaling form fails with a reason, like POT's does.
expect_exit 1 "$OTFUSE" ot --cost $D/sinkhorn_tinyreg.safetensors --solver sinkhorn --reg 0.001 --mode scaling &&
  grep -q "marginals\|non-finite" "$T/err" && ok || bad "tinyreg scaling: $(cat "$T/err")"

# 6. Usage errors exit 2 with a message.
expect_exit 2 "$OTFUSE" ot --cost x --solver simplex && grep -q "exact or sinkhorn" "$T/err" && ok
expect_exit 2 "$OTFUSE" ot --cost x --reg -1 && grep -q "reg" "$T/err" && ok
expect_exit 2 "$OTFUSE" ot --cost x --reg nan && ok
expect_exit 2 "$OTFUSE" ot --cost x --max-iter -5 && ok
expect_exit 2 "$OTFUSE" ot && grep -q "cost FILE is required" "$T/err" && ok
expect_exit 0 "$OTFUSE" ot --help && grep -q "usage: otfuse ot" "$T/out" && ok

# 7. Input errors exit 1 with a clear reason.
expect_exit 1 "$OTFUSE" ot --cost "$T/missing.safetensors" && grep -q "not found" "$T/err" && ok
expect_exit 1 "$OTFUSE" ot --cost $D/exact_nonuniform_30x45.safetensors --a nope && grep -q "no tensor named 'nope'" "$T/err" && ok
expect_exit 1 "$OTFUSE" ot --cost $D/exact_nonuniform_30x45.safetensors --a b && grep -q "marginal 'b' has 45 entries" "$T/err" && ok
expect_exit 1 "$OTFUSE" ot --cost "$T/plan.safetensors" && grep -q "no tensor named 'cost'" "$T/err" && ok

# A hand-made file: cost F64 [1, 2] = {NaN, 1}; header padded to 64 bytes.
mk() { # mk FILE VALUE_BYTES_OCTAL...
  f=$1; shift
  hdr='{"cost":{"dtype":"F64","shape":[1,2],"data_offsets":[0,16]}}'
  pad=$(( (8 - ${#hdr} % 8) % 8 ))
  len=$(( ${#hdr} + pad ))
  printf "\\$(printf '%03o' $len)\\000\\000\\000\\000\\000\\000\\000" >"$f"
  printf '%s%*s' "$hdr" "$pad" '' >>"$f"
  for b in "$@"; do printf "$b" >>"$f"; done
}
mk "$T/nan.safetensors" '\000\000\000\000\000\000\370\177' '\000\000\000\000\000\000\360\077'
expect_exit 1 "$OTFUSE" ot --cost "$T/nan.safetensors" && grep -q "cost\[0,0\] is NaN" "$T/err" && ok
mk "$T/neg.safetensors" '\000\000\000\000\000\000\360\277' '\000\000\000\000\000\000\360\077'
expect_exit 1 "$OTFUSE" ot --cost "$T/neg.safetensors" --solver sinkhorn && grep -q "negative" "$T/err" && ok
mk "$T/good.safetensors" '\000\000\000\000\000\000\360\077' '\000\000\000\000\000\000\000\100'
expect_exit 1 "$OTFUSE" ot --cost "$T/good.safetensors" --b b && grep -q "no tensor named 'b'" "$T/err" && ok
head -c 70 "$T/good.safetensors" >"$T/trunc.safetensors"
expect_exit 1 "$OTFUSE" ot --cost "$T/trunc.safetensors" && grep -q "malformed input" "$T/err" && ok
# 1x2 cost {1, 2}, uniform marginals: the only plan puts 1/2 on each
# cell, objective (1 + 2) / 2 = 1.5.
if expect_exit 0 "$OTFUSE" ot --cost "$T/good.safetensors"; then
  close "$(field objective "$(cat "$T/out")")" 1.5 1e-15 && ok || bad "1x2: $(cat "$T/out")"
fi

finish "otfuse ot" 20
