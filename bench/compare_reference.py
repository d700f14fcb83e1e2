#!/usr/bin/python3
"""Compare the C OT benchmark (build/bench/bench_ot) with POT and scipy.

This is a benchmark, not a test. It generates point clouds, writes them to a
safetensors file, runs our binary on that file, then runs the reference
solvers on the very same points in the same process run, and prints a table
of timings, ratios (reference / ours: > 1 means ours is faster), exact
objectives and Sinkhorn iteration counts.

    /usr/bin/python3 bench/compare_reference.py --sizes 256,768,1024,3072 --d 768 \\
        --seed 0 --bin build/bench/bench_ot --out bench/out

Cases, for each n in --sizes:
  gauss_<n>    x, y independent standard Gaussian clouds, float32 [n, d]
  planted_<n>  x standard Gaussian, y = x[perm] + 0.1 * noise, float32 [n, d]

Binary interface: `bench_ot --points FILE --json` prints, for each case in
sorted order, one JSON line
  {"case", "n", "d", "cost_s", "exact_s", "exact_objective",
   "sinkhorn": [{"reg", "s", "iterations", "log_domain"}, ...]}

Reference side (timed with time.perf_counter, best of --repeat):
  cost      float32 numpy: Gram expansion |x|^2 + |y|^2 - 2 x.y^T, clamp at 0,
            sqrt, divide by max; then converted to float64 for the solvers
            (conversion not timed)
  lsa       scipy.optimize.linear_sum_assignment; objective = sum / n
  emd       POT ot.emd(a, b, C, numItermax=--emd-maxiter) with uniform a, b;
            objective <C, P>; reports whether it hit the iteration cap
  sinkhorn  POT ot.sinkhorn(a, b, C, reg) per reg (method 'sinkhorn',
            numItermax=1000, stopThr=1e-9); iterations = log['niter'] + 1

Use --reference-only to run only the reference side (no binary needed).
Results are also written as JSON to <out>/compare_<seed>.json.
"""

import argparse
import json
import math
import os
import platform
import struct
import subprocess
import sys
import time
import warnings

import numpy as np

try:
    import ot
    import scipy
    import scipy.optimize
except ImportError as e:  # pragma: no cover
    sys.exit("compare_reference.py: needs numpy, scipy and POT (run with /usr/bin/python3): %s"
             % e)

DEFAULT_REGS = (0.01, 0.06, 0.08)


# --------------------------------------------------------------------------
# safetensors writer (hand-written)
# --------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata=None):
    dtypes = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64"}
    header = {}
    offset = 0
    order = sorted(tensors)
    for name in order:
        arr = tensors[name]
        dt = arr.dtype.newbyteorder("<")
        nbytes = arr.size * dt.itemsize
        header[name] = {"dtype": dtypes[dt], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-(8 + len(h))) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name in order:
            arr = tensors[name]
            f.write(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def make_cases(sizes, d, seed):
    """Return {case_name: (x, y)} with float32 [n, d] arrays."""
    cases = {}
    for n in sizes:
        rng = np.random.default_rng([seed, n, 1])
        x = rng.standard_normal((n, d), dtype=np.float32)
        y = rng.standard_normal((n, d), dtype=np.float32)
        cases["gauss_%d" % n] = (x, y)
        rng = np.random.default_rng([seed, n, 2])
        x = rng.standard_normal((n, d), dtype=np.float32)
        perm = rng.permutation(n)
        noise = rng.standard_normal((n, d), dtype=np.float32)
        y = (x[perm] + np.float32(0.1) * noise).astype(np.float32)
        cases["planted_%d" % n] = (x, y)
    return dict(sorted(cases.items()))


# --------------------------------------------------------------------------
# our binary
# --------------------------------------------------------------------------

def run_binary(binary, points, timeout):
    if not os.path.exists(binary):
        sys.exit("compare_reference.py: benchmark binary %r not found. Build it first "
                 "(e.g. `make bench`), pass --bin PATH, or use --reference-only."
                 % binary)
    if not os.access(binary, os.X_OK):
        sys.exit("compare_reference.py: %r is not executable" % binary)
    cmd = [binary, "--points", points, "--json"]
    print("running: %s" % " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False, text=True)
    except subprocess.TimeoutExpired:
        sys.exit("compare_reference.py: %s timed out after %ss" % (binary, timeout))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit("compare_reference.py: %s exited with status %d" % (binary, proc.returncode))
    results = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            print("  (ignoring non-JSON output line: %r)" % line[:200])
            continue
        if not isinstance(rec, dict) or "case" not in rec:
            print("  (ignoring JSON line without 'case': %r)" % line[:200])
            continue
        results[rec["case"]] = rec
    if proc.stderr.strip():
        print("  binary stderr (last lines):")
        for s in proc.stderr.strip().splitlines()[-5:]:
            print("    " + s)
    print("binary finished in %.2fs, %d case(s) reported" % (wall, len(results)), flush=True)
    return results


# --------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------

def timed(fn, repeat):
    best = math.inf
    out = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cost_f32(x, y):
    xx = np.einsum("ij,ij->i", x, x)
    yy = np.einsum("ij,ij->i", y, y)
    d2 = x @ y.T
    d2 *= np.float32(-2.0)
    d2 += xx[:, None]
    d2 += yy[None, :]
    np.maximum(d2, np.float32(0.0), out=d2)
    np.sqrt(d2, out=d2)
    d2 /= d2.max()
    return d2


def reference_case(name, x, y, args):
    n = x.shape[0]
    m = y.shape[0]
    rec = {"case": name, "n": n, "d": x.shape[1]}
    t, c32 = timed(lambda: cost_f32(x, y), args.repeat)
    rec["cost_s"] = t
    c = np.ascontiguousarray(c32, dtype=np.float64)
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    print("  %-12s cost      %9.4fs" % (name, t), flush=True)

    if args.skip_lsa_above and n > args.skip_lsa_above:
        rec["lsa_s"] = None
    else:
        t, (r, cc) = timed(lambda: scipy.optimize.linear_sum_assignment(c), args.repeat)
        rec["lsa_s"] = t
        rec["lsa_objective"] = float(c[r, cc].sum()) / n
        print("  %-12s scipy LSA %9.4fs  objective %.12g" % (name, t, rec["lsa_objective"]),
              flush=True)
        # untimed: objective on a float64 cost computed directly (no Gram
        # cancellation), to tell float32 rounding apart from solver error
        x64 = x.astype(np.float64)
        y64 = y.astype(np.float64)
        d64 = np.sqrt(np.maximum((x64 * x64).sum(1)[:, None] + (y64 * y64).sum(1)[None, :]
                                 - 2.0 * (x64 @ y64.T), 0.0))
        d64 /= d64.max()
        r, cc = scipy.optimize.linear_sum_assignment(d64)
        rec["lsa_objective_f64cost"] = float(d64[r, cc].sum()) / n
        del d64

    if args.skip_emd_above and n > args.skip_emd_above:
        rec["emd_s"] = None
    else:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            plan, log = ot.emd(a, b, c, numItermax=args.emd_maxiter, log=True)
            t = time.perf_counter() - t0
        msgs = [str(x.message) for x in w]
        rec["emd_s"] = t
        rec["emd_objective"] = float(log["cost"])
        rec["emd_result_code"] = int(log["result_code"])
        rec["emd_hit_cap"] = bool(log["result_code"] == 3 or
                                  any("numItermax" in s for s in msgs))
        rec["emd_warnings"] = msgs
        del plan
        print("  %-12s POT emd   %9.4fs  objective %.12g%s"
              % (name, t, rec["emd_objective"],
                 "  (HIT numItermax=%d)" % args.emd_maxiter if rec["emd_hit_cap"] else ""),
              flush=True)

    rec["sinkhorn"] = []
    for reg in args.regs:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t, (plan, log) = timed(lambda: ot.sinkhorn(a, b, c, reg, log=True), args.repeat)
        msgs = [str(x.message) for x in w]
        numerr = any("numerical errors" in s for s in msgs)
        notconv = any("did not converge" in s for s in msgs)
        niter = int(log["niter"])
        iters = niter if numerr else niter + 1
        err = float(np.linalg.norm(plan.sum(0) - b)) if np.all(np.isfinite(plan)) else math.inf
        rec["sinkhorn"].append({"reg": reg, "s": t, "iterations": iters,
                                "converged": not (numerr or notconv),
                                "numerical_error": numerr, "col_marginal_l2": err})
        print("  %-12s POT sinkhorn reg=%-5g %9.4fs  iterations %4d%s"
              % (name, reg, t, iters,
                 "" if not (numerr or notconv) else
                 "  (%s)" % ("numerical errors" if numerr else "not converged")), flush=True)
        del plan
    return rec


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def fs(v, fmt="%.4f"):
    return "-" if v is None else fmt % v


def ratio(ref, ours):
    if ref is None or ours is None or ours <= 0:
        return "-"
    return "%.2fx" % (ref / ours)


def print_table(refs, ours, regs):
    hdr = "%-13s %6s  %-18s %10s %10s %9s  %s" % ("case", "n", "stage", "ours (s)",
                                                 "ref (s)", "ref/ours", "notes")
    print()
    print(hdr)
    print("-" * len(hdr))
    def natural(name):
        kind, _, n = name.rpartition("_")
        return (kind, int(n)) if n.isdigit() else (name, 0)

    for name in sorted(refs, key=natural):
        r = refs[name]
        o = ours.get(name) if ours is not None else None
        if ours is not None and o is None:
            print("%-13s %6d  (missing from binary output)" % (name, r["n"]))
        g = (lambda k: o.get(k) if o else None)

        def row(label, ours_s, ref_s, notes="", first=[True]):
            print("%-13s %6s  %-18s %10s %10s %9s  %s"
                  % (name if first[0] else "", str(r["n"]) if first[0] else "", label,
                     fs(ours_s), fs(ref_s), ratio(ref_s, ours_s), notes))
            first[0] = False

        first = [True]
        row("cost", g("cost_s"), r["cost_s"], "numpy f32 Gram", first)
        row("exact vs scipy LSA", g("exact_s"), r.get("lsa_s"),
            "" if r.get("lsa_s") is not None else "LSA skipped", first)
        emd_note = ""
        if r.get("emd_s") is None:
            emd_note = "emd skipped"
        elif r.get("emd_hit_cap"):
            emd_note = "POT emd HIT numItermax"
        row("exact vs POT emd", g("exact_s"), r.get("emd_s"), emd_note, first)
        our_sk = {}
        if o:
            for s in o.get("sinkhorn", []):
                our_sk[float(s.get("reg"))] = s
        for s in r["sinkhorn"]:
            osk = our_sk.get(float(s["reg"]))
            it = "iters ours %s / POT %d" % (
                ("%d%s" % (osk["iterations"], " (log)" if osk.get("log_domain") else ""))
                if osk else "-", s["iterations"])
            if not s["converged"]:
                it += " (POT %s)" % ("numerical errors" if s["numerical_error"]
                                     else "not converged")
            row("sinkhorn %g" % s["reg"], osk.get("s") if osk else None, s["s"], it, first)
        # objectives
        ours_obj = g("exact_objective")
        ref_obj = r.get("lsa_objective")
        parts = []
        if ours_obj is not None:
            parts.append("ours %.12g" % ours_obj)
        if ref_obj is not None:
            parts.append("scipy %.12g" % ref_obj)
        if r.get("emd_objective") is not None:
            parts.append("POT emd %.12g" % r["emd_objective"])
        if ours_obj is not None and ref_obj is not None:
            parts.append("rel diff %.2e" % (abs(ours_obj - ref_obj) /
                                            max(abs(ref_obj), 1e-300)))
        f64 = r.get("lsa_objective_f64cost")
        if f64 is not None:
            parts.append("f64-cost LSA %.12g (ours off by %s, scipy-f32 off by %.1e)"
                         % (f64, "%.1e" % (abs(ours_obj - f64) / f64) if ours_obj is not None
                            else "-", abs(ref_obj - f64) / f64))
        print("%-13s %6s  %-18s %s" % ("", "", "exact objective", ", ".join(parts)))
    print()
    print("ref/ours > 1 means ours is faster. Reference timings: best of --repeat runs;")
    print("numpy BLAS threads as configured in this process; POT emd and scipy LSA are")
    print("single-threaded. Each side builds its own float32 cost matrix from the points,")
    print("so exact objectives may differ by float32 rounding even when both solvers are")
    print("exact (up to ~1e-5 relative on planted cases: the Gram expansion cancels badly")
    print("for small distances). 'f64-cost LSA' is the objective on a float64 cost, the")
    print("closest thing to the true value. Sinkhorn times include forming K = exp(-C/reg).")


def main():
    ap = argparse.ArgumentParser(
        description="Compare build/bench/bench_ot with POT and scipy on the same points.")
    ap.add_argument("--sizes", default="256,768,1024,3072",
                    help="comma-separated n values (default: %(default)s)")
    ap.add_argument("--d", type=int, default=768, help="point dimension (default 768)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bin", default="build/bench/bench_ot", help="our benchmark binary")
    ap.add_argument("--out", default="bench/out", help="output folder (points file, JSON)")
    ap.add_argument("--regs", default=",".join("%g" % r for r in DEFAULT_REGS),
                    help="Sinkhorn regularisations (default: %(default)s)")
    ap.add_argument("--reference-only", action="store_true",
                    help="do not run the binary; only time the reference solvers")
    ap.add_argument("--skip-emd-above", type=int, default=0, metavar="N",
                    help="skip POT emd for n > N (0: never skip)")
    ap.add_argument("--skip-lsa-above", type=int, default=0, metavar="N",
                    help="skip scipy LSA for n > N (0: never skip)")
    ap.add_argument("--emd-maxiter", type=int, default=1_000_000,
                    help="numItermax for POT emd (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time reference cost/LSA/Sinkhorn as best of R runs (emd: once)")
    ap.add_argument("--bin-timeout", type=float, default=3600.0,
                    help="seconds before the binary is killed (default %(default)s)")
    args = ap.parse_args()
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        args.regs = [float(s) for s in args.regs.split(",") if s.strip()]
    except ValueError:
        ap.error("--sizes and --regs take comma-separated numbers")
    if not args.sizes or any(n < 1 for n in args.sizes) or args.d < 1:
        ap.error("sizes and --d must be positive")

    os.makedirs(args.out, exist_ok=True)
    cases = make_cases(args.sizes, args.d, args.seed)
    points = os.path.join(args.out, "points_seed%d_d%d.safetensors" % (args.seed, args.d))
    tensors = {}
    for name, (x, y) in cases.items():
        tensors[name + ".x"] = x
        tensors[name + ".y"] = y
    write_safetensors(points, tensors, {
        "generator": "bench/compare_reference.py", "seed": str(args.seed),
        "d": str(args.d), "sizes": ",".join(map(str, args.sizes)),
        "cases": "gauss_<n>: x, y ~ N(0, I) independent; planted_<n>: y = x[perm] + 0.1*N(0, I)",
    })
    print("points: %s (%.1f MB, %d cases)" % (points, os.path.getsize(points) / 1e6,
                                              len(cases)), flush=True)

    ours = None
    if not args.reference_only:
        ours = run_binary(args.bin, points, args.bin_timeout)

    print("reference: POT %s, scipy %s, numpy %s, python %s, %d CPUs"
          % (ot.__version__, scipy.__version__, np.__version__, platform.python_version(),
             os.cpu_count() or 0), flush=True)
    refs = {}
    for name, (x, y) in cases.items():
        refs[name] = reference_case(name, x, y, args)

    print_table(refs, ours, args.regs)
    out_json = os.path.join(args.out, "compare_seed%d.json" % args.seed)
    with open(out_json, "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()},
                   "points": points, "ours": ours, "reference": refs,
                   "versions": {"pot": ot.__version__, "scipy": scipy.__version__,
                                "numpy": np.__version__}}, f, indent=1, sort_keys=True)
    print("wrote %s" % out_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
