#!/usr/bin/python3
"""Generate golden fixtures for the C optimal-transport solvers' tests.

Writes tests/data/ot/*.safetensors and tests/data/ot/README.md.

Run from the repository root:

    /usr/bin/python3 tools/gen_ot_fixtures.py

Reference values come from POT 0.8.2 (`import ot`) and scipy; every reference
is computed on exactly the values stored in the file (upcast to float64), so a
C test that reads the file sees the same problem the reference solved.

The output is deterministic: every case has a fixed seed (stored in the file's
metadata), tensor names are sorted, and the JSON header is written with sorted
keys, so re-running the script reproduces the files byte for byte.
"""

import argparse
import json
import math
import os
import struct
import sys
import warnings
import zlib

import numpy as np
import ot
import scipy
import scipy.optimize

OUT_DIR_DEFAULT = os.path.join("tests", "data", "ot")
GENERATOR = "tools/gen_ot_fixtures.py"
COMMAND = "/usr/bin/python3 tools/gen_ot_fixtures.py"
F64_MAX_ELEMS = 4096          # cost stored as F64 when n*m <= this, else F32
DYADIC_TOTAL = 1 << 20        # non-uniform marginals are k_i / 2**20 (exact sums)
SINKHORN_REGS = (0.01, 0.06, 0.08, 0.5)
SINKHORN_MAXITER = 1000
SINKHORN_STOPTHR = 1e-9

# --------------------------------------------------------------------------
# safetensors writer (hand-written; no safetensors package)
# --------------------------------------------------------------------------

_DTYPES = {
    np.dtype("<f8"): "F64",
    np.dtype("<f4"): "F32",
    np.dtype("<i8"): "I64",
}


def write_safetensors(path, tensors, metadata):
    """Write `tensors` (name -> numpy array) and string `metadata`.

    Layout: u64 LE header length N, N bytes of JSON header padded with spaces
    so that 8 + N is a multiple of 8, then the tensor bytes contiguously in
    sorted-name order.
    """
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        dt = arr.dtype.newbyteorder("<")
        if dt not in _DTYPES:
            raise TypeError("unsupported dtype %s for %s" % (arr.dtype, name))
        data = np.ascontiguousarray(arr, dtype=dt).tobytes(order="C")
        header[name] = {
            "dtype": _DTYPES[dt],
            "shape": [int(s) for s in arr.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata must be str -> str (%r)" % (k,))
        header["__metadata__"] = dict(metadata)
    hjson = json.dumps(header, sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False).encode("utf-8")
    pad = (-(8 + len(hjson))) % 8
    hjson += b" " * pad
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    """Minimal reader used to self-check what was written."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    rev = {v: k for k, v in _DTYPES.items()}
    out = {}
    end_prev = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        assert b == end_prev, "gap or overlap in %s" % path
        end_prev = e
        out[name] = np.frombuffer(raw[base + b:base + e],
                                  dtype=rev[info["dtype"]]).reshape(info["shape"])
    assert base + end_prev == len(raw), "trailing bytes in %s" % path
    return out, meta


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def case_seed(name):
    """Stable per-case seed (independent of case order)."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def dyadic_marginal(rng, n, zeros=0):
    """Random positive weights k_i / 2**20 with sum exactly 1.0 in float64.

    `zeros` entries (random positions) are exactly 0.
    """
    w = rng.uniform(0.2, 1.0, size=n)
    if zeros:
        w[rng.choice(n, size=zeros, replace=False)] = 0.0
    k = np.floor(w / w.sum() * DYADIC_TOTAL).astype(np.int64)
    k[w == 0] = 0
    # distribute the remainder over nonzero entries, deterministically
    rem = DYADIC_TOTAL - int(k.sum())
    nz = np.flatnonzero(k > 0)
    k[nz[:rem]] += 1
    assert int(k.sum()) == DYADIC_TOTAL
    a = k.astype(np.float64) / DYADIC_TOTAL
    assert a.sum() == 1.0
    return a


def euclid(x, y):
    """Euclidean (not squared) distances in float64, exact-ish formula."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    diff = x[:, None, :] - y[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def max_normalise(c):
    return c / c.max()


def stored_cost(c):
    """Cost as stored: F64 when small, else F32. Returns (stored, as_f64)."""
    n, m = c.shape
    if n * m <= F64_MAX_ELEMS:
        s = np.ascontiguousarray(c, dtype=np.float64)
    else:
        s = np.ascontiguousarray(c, dtype=np.float32)
    return s, np.ascontiguousarray(s, dtype=np.float64)


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def lsa_objective(c64, n, m):
    """Uniform-marginal OT objective via assignment on the lcm-blown-up matrix."""
    L = n * m // math.gcd(n, m)
    big = np.repeat(np.repeat(c64, L // n, axis=0), L // m, axis=1)
    r, cidx = scipy.optimize.linear_sum_assignment(big)
    return float(big[r, cidx].sum()) / L, L


def linprog_objective(c64, a, b):
    n, m = c64.shape
    A_eq = np.zeros((n + m, n * m))
    for i in range(n):
        A_eq[i, i * m:(i + 1) * m] = 1.0
    for j in range(m):
        A_eq[n + j, j::m] = 1.0
    res = scipy.optimize.linprog(c64.ravel(), A_eq=A_eq,
                                 b_eq=np.concatenate([a, b]),
                                 bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def emd2_checked(a, b, c64):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        obj = ot.emd2(a, b, c64, numItermax=10_000_000)
    msgs = [str(x.message) for x in w]
    assert not msgs, "POT emd2 warned: %s" % msgs
    return float(obj)


def base_meta(case, kind, seed, description):
    return {
        "case": case,
        "kind": kind,
        "description": description,
        "generator": GENERATOR,
        "command": COMMAND,
        "seed": str(seed),
        "rng": "numpy.random.default_rng(seed), seed = crc32(case name) & 0x7fffffff",
        "pot_version": ot.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
    }


# --------------------------------------------------------------------------
# exact OT cases
# --------------------------------------------------------------------------

def exact_cases():
    """Yield (name, description, builder) where builder(rng) -> (cost, a, b)."""
    cases = []

    def add(name, desc, fn):
        cases.append((name, desc, fn))

    for n in (1, 2, 3, 5, 8, 17, 64, 128, 256, 512):
        add("square_uniform_n%d" % n,
            "square %dx%d cost U[0,1), uniform marginals" % (n, n),
            lambda rng, n=n: (rng.random((n, n)), None, None))
    for n, m in ((7, 3), (3, 7), (64, 32), (32, 64), (100, 37), (512, 128), (128, 512)):
        add("rect_uniform_%dx%d" % (n, m),
            "rectangular %dx%d cost U[0,1), uniform marginals 1/n, 1/m" % (n, m),
            lambda rng, n=n, m=m: (rng.random((n, m)), None, None))
    for n, m in ((50, 50), (40, 60)):
        # zeros are rare (p=0.01) so that no zero-cost assignment exists and the
        # optimum is a nontrivial choice among many tied 1s and 2s
        add("ties_int4_%dx%d" % (n, m),
            "%dx%d integer costs in {0,1,2,3} drawn with probabilities "
            "(0.01, 0.09, 0.3, 0.6) (many ties), uniform marginals" % (n, m),
            lambda rng, n=n, m=m: (rng.choice(4, size=(n, m), p=[0.01, 0.09, 0.3, 0.6])
                                   .astype(np.float64), None, None))

    def dup_rows(rng):
        base = rng.random((20, 60))
        c = np.repeat(base, 3, axis=0)
        return c[rng.permutation(60)], None, None

    def dup_cols(rng):
        base = rng.random((60, 15))
        c = np.repeat(base, 4, axis=1)
        return c[:, rng.permutation(60)], None, None

    add("dup_rows_60", "60x60 U[0,1) cost built from 20 distinct rows each repeated 3 "
        "times (rows shuffled), uniform marginals", dup_rows)
    add("dup_cols_60", "60x60 U[0,1) cost built from 15 distinct columns each repeated 4 "
        "times (columns shuffled), uniform marginals", dup_cols)

    for n, m in ((30, 45), (80, 80)):
        add("nonuniform_%dx%d" % (n, m),
            "%dx%d cost U[0,1), random non-uniform dyadic marginals (k/2^20, sum exactly 1)"
            % (n, m),
            lambda rng, n=n, m=m: (rng.random((n, m)), dyadic_marginal(rng, n),
                                   dyadic_marginal(rng, m)))
    add("zero_marginals_25x25",
        "25x25 cost U[0,1), dyadic marginals with 4 zero entries in a and 5 in b",
        lambda rng: (rng.random((25, 25)), dyadic_marginal(rng, 25, zeros=4),
                     dyadic_marginal(rng, 25, zeros=5)))

    for n, m in ((200, 200), (300, 150)):
        add("euclid_gauss64_%dx%d" % (n, m),
            "Euclidean distances between independent N(0,I) clouds in R^64 "
            "(%d and %d points), divided by the max; uniform marginals" % (n, m),
            lambda rng, n=n, m=m: (max_normalise(euclid(rng.standard_normal((n, 64)),
                                                         rng.standard_normal((m, 64)))),
                                   None, None))

    def planted(rng):
        n = 256
        x = rng.standard_normal((n, 64))
        perm = rng.permutation(n)
        y = x[perm] + 0.05 * rng.standard_normal((n, 64))
        return max_normalise(euclid(x, y)), None, None

    add("planted_perm_256",
        "256x256 planted near-permutation: x ~ N(0,I) in R^64, y = x[perm] + 0.05*N(0,I), "
        "Euclidean distances divided by the max; uniform marginals", planted)
    return cases


def gen_exact(out_dir, table):
    for name, desc, build in exact_cases():
        seed = case_seed("exact_" + name)
        rng = np.random.default_rng(seed)
        c, a, b = build(rng)
        n, m = c.shape
        cs, c64 = stored_cost(c)
        uniform = a is None
        aa = np.full(n, 1.0 / n) if uniform else a
        bb = np.full(m, 1.0 / m) if uniform else b
        obj = emd2_checked(aa, bb, c64)
        checks = ["POT emd2 (numItermax=1e7, no warning)"]
        if uniform:
            L = n * m // math.gcd(n, m)
            if L <= 4096:
                lsa, L = lsa_objective(c64, n, m)
                assert rel(obj, lsa) <= 1e-12, (name, obj, lsa)
                checks.append("scipy linear_sum_assignment%s agrees %.1e rel"
                              % ("" if L == n == m else " on %dx%d lcm blow-up" % (L, L),
                                 rel(obj, lsa)))
        elif n * m <= 6400:
            lp = linprog_objective(c64, aa, bb)
            assert rel(obj, lp) <= 1e-9, (name, obj, lp)
            checks.append("scipy linprog(highs) agrees %.1e rel" % rel(obj, lp))
        tensors = {"cost": cs, "objective": np.array([obj], dtype=np.float64)}
        if not uniform:
            tensors["a"] = aa.astype(np.float64)
            tensors["b"] = bb.astype(np.float64)
        meta = base_meta(name, "exact", seed, desc)
        meta.update({
            "marginals": "uniform (a, b omitted)" if uniform else "a, b stored (F64)",
            "cost_dtype": str(cs.dtype),
            "reference": "objective = ot.emd2(a, b, float64(cost), numItermax=10_000_000)",
            "checks": "; ".join(checks),
        })
        fname = "exact_%s.safetensors" % name
        write_safetensors(os.path.join(out_dir, fname), tensors, meta)
        table.append(("exact", fname, "%dx%d" % (n, m),
                      "F64" if cs.dtype == np.float64 else "F32",
                      "uniform" if uniform else "a,b",
                      "%.17g" % obj, desc))
        print("exact %-28s %4dx%-4d %s obj=%.17g  [%s]" % (name, n, m, cs.dtype, obj,
                                                            "; ".join(checks[1:])))


# --------------------------------------------------------------------------
# Sinkhorn cases
# --------------------------------------------------------------------------

def sinkhorn_numpy(a, b, M, reg, numItermax, stopThr):
    """Re-implementation of POT 0.8.2 sinkhorn_knopp (1-D b), for cross-checking."""
    u = np.ones(len(a)) / len(a)
    v = np.ones(len(b)) / len(b)
    K = np.exp(M / (-reg))
    Kp = (1 / a).reshape(-1, 1) * K
    converged = False
    numerr = False
    for ii in range(numItermax):
        uprev, vprev = u, v
        KtU = K.T.dot(u)
        v = b / KtU
        u = 1.0 / Kp.dot(v)
        if (np.any(KtU == 0) or np.any(np.isnan(u)) or np.any(np.isnan(v))
                or np.any(np.isinf(u)) or np.any(np.isinf(v))):
            u, v = uprev, vprev
            numerr = True
            break
        if ii % 10 == 0:
            tmp2 = np.einsum("i,ij,j->j", u, K, v)
            err = np.linalg.norm(tmp2 - b)
            if err < stopThr:
                converged = True
                break
    return u.reshape(-1, 1) * K * v.reshape(1, -1), ii, converged, numerr


def pot_sinkhorn(a, b, c, reg, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plan, log = ot.sinkhorn(a, b, c, reg, log=True, **kw)
    return plan, log, [str(x.message) for x in w]


def marginal_errors(plan, a, b):
    """(L2 row-marginal error, L2 column-marginal error); inf if plan non-finite."""
    if not np.all(np.isfinite(plan)):
        return math.inf, math.inf
    return (float(np.linalg.norm(plan.sum(1) - a)), float(np.linalg.norm(plan.sum(0) - b)))


def sinkhorn_cases():
    cases = []

    def add(name, desc, fn):
        cases.append((name, desc, fn))

    for n, m in ((5, 5), (16, 16), (40, 25)):
        add("rand_%dx%d" % (n, m),
            "%dx%d cost U[0,1) divided by its max, uniform marginals" % (n, m),
            lambda rng, n=n, m=m: (max_normalise(rng.random((n, m))), None, None))
    add("euclid_64x64",
        "64x64 Euclidean distances between N(0,I) clouds in R^16, divided by the max, "
        "uniform marginals",
        lambda rng: (max_normalise(euclid(rng.standard_normal((64, 16)),
                                          rng.standard_normal((64, 16)))), None, None))
    add("euclid_nonuniform_96x128",
        "96x128 Euclidean distances between N(0,I) clouds in R^16, divided by the max, "
        "random non-uniform dyadic marginals (k/2^20, sum exactly 1, all > 0)",
        lambda rng: (max_normalise(euclid(rng.standard_normal((96, 16)),
                                          rng.standard_normal((128, 16)))),
                     dyadic_marginal(rng, 96), dyadic_marginal(rng, 128)))
    return cases


def fmt_reg(r):
    return ("%g" % r)


def gen_sinkhorn(out_dir, table, notes):
    for name, desc, build in sinkhorn_cases():
        seed = case_seed("sinkhorn_" + name)
        rng = np.random.default_rng(seed)
        c, a, b = build(rng)
        c = np.ascontiguousarray(c, dtype=np.float64)
        assert c.min() >= 0.0 and c.max() == 1.0
        n, m = c.shape
        uniform = a is None
        aa = np.full(n, 1.0 / n) if uniform else a
        bb = np.full(m, 1.0 / m) if uniform else b
        for reg in SINKHORN_REGS:
            plan, log, msgs = pot_sinkhorn(aa, bb, c, reg, numItermax=SINKHORN_MAXITER,
                                           stopThr=SINKHORN_STOPTHR)
            numerr = any("numerical errors" in s for s in msgs)
            notconv = any("did not converge" in s for s in msgs)
            niter = int(log["niter"])
            converged = (not numerr) and (not notconv)
            # cross-check against our re-implementation of POT's loop
            p2, ii2, conv2, numerr2 = sinkhorn_numpy(aa, bb, c, reg, SINKHORN_MAXITER,
                                                     SINKHORN_STOPTHR)
            assert ii2 == niter and conv2 == converged and numerr2 == numerr, name
            assert np.max(np.abs(p2 - plan)) <= 1e-15, (name, reg)
            assert np.all(np.isfinite(plan)), (name, reg)
            # number of (v, u) update sweeps whose result is in the returned plan
            if numerr:
                iters = niter
            else:
                iters = niter + 1
            er, ec = marginal_errors(plan, aa, bb)
            tensors = {
                "cost": c,
                "reg": np.array([reg], dtype=np.float64),
                "plan": np.ascontiguousarray(plan, dtype=np.float64),
                "iterations": np.array([iters], dtype=np.int64),
                "pot_niter": np.array([niter], dtype=np.int64),
                "converged": np.array([1 if converged else 0], dtype=np.int64),
            }
            if not uniform:
                tensors["a"] = aa
                tensors["b"] = bb
            meta = base_meta(name, "sinkhorn", seed, desc)
            meta.update({
                "reg": repr(reg),
                "marginals": "uniform (a, b omitted)" if uniform else "a, b stored (F64)",
                "reference": "plan, log = ot.sinkhorn(a, b, cost, reg, method='sinkhorn', "
                             "numItermax=%d, stopThr=%g, log=True) in float64"
                             % (SINKHORN_MAXITER, SINKHORN_STOPTHR),
                "iterations": "number of (v,u) update sweeps POT ran = log['niter'] + 1 "
                              "(pot_niter = raw log['niter'], the 0-based index of the "
                              "last loop pass); POT tests the column-marginal L2 error "
                              "only when the 0-based index is a multiple of 10",
                "pot_warnings": " | ".join(msgs) if msgs else "none",
                "row_marginal_l2_error": "%.3e" % er,
                "col_marginal_l2_error": "%.3e" % ec,
            })
            fname = "sinkhorn_%s_reg%s.safetensors" % (name, fmt_reg(reg))
            write_safetensors(os.path.join(out_dir, fname), tensors, meta)
            table.append(("sinkhorn", fname, "%dx%d" % (n, m), fmt_reg(reg), str(iters),
                          "yes" if converged else "no", "%.1e / %.1e" % (er, ec)))
            print("sinkhorn %-26s reg=%-5s iters=%4d converged=%d rowerr=%.2e colerr=%.2e%s"
                  % (name, fmt_reg(reg), iters, converged, er, ec,
                     ("  warn: " + " | ".join(msgs)) if msgs else ""))
            if not converged:
                notes.append("sinkhorn %s reg=%s: POT did not converge in %d iterations "
                             "(col-marginal L2 error %.1e); stored with converged=0"
                             % (name, fmt_reg(reg), SINKHORN_MAXITER, ec))


# --------------------------------------------------------------------------
# tiny-reg case
# --------------------------------------------------------------------------

def gen_tinyreg(out_dir, table, notes):
    name = "tinyreg"
    seed = case_seed("sinkhorn_" + name)
    rng = np.random.default_rng(seed)
    n = 20
    reg = 1e-3
    c = max_normalise(euclid(rng.standard_normal((n, 64)), rng.standard_normal((n, 64))))
    c = np.ascontiguousarray(c, dtype=np.float64)
    a = np.full(n, 1.0 / n)
    b = np.full(n, 1.0 / n)

    plan_s, log_s, msgs_s = pot_sinkhorn(a, b, c, reg, numItermax=SINKHORN_MAXITER,
                                         stopThr=SINKHORN_STOPTHR)
    er_s, ec_s = marginal_errors(plan_s, a, b)
    pot_err = max(er_s, ec_s)
    failed = (any("numerical errors" in s for s in msgs_s) or not math.isfinite(pot_err)
              or pot_err > 1e-3)
    assert failed, "POT scaling Sinkhorn unexpectedly succeeded at reg=1e-3 (err %g)" % pot_err

    # POT's log-domain Sinkhorn, as the brief asks. At reg=1e-3 its marginal error
    # decays only sublinearly (about 1e-6 after 2e5 passes), so it does not reach
    # stopThr=1e-12 within 1e6 passes; it is recorded and then refined below.
    plan_p, log_p, msgs_p = pot_sinkhorn(a, b, c, reg, method="sinkhorn_log",
                                         numItermax=1_000_000, stopThr=1e-12)
    # "overflow encountered in exp" comes from POT filling log['u'] = exp(log_u)
    # (log_u is ~ +600 here); the plan itself is computed in the log domain.
    unexpected = [s for s in msgs_p if "did not converge" not in s
                  and "overflow encountered in exp" not in s]
    assert not unexpected, unexpected
    assert np.all(np.isfinite(plan_p))
    pot_log_conv = not any("did not converge" in s for s in msgs_p)
    er_p, ec_p = marginal_errors(plan_p, a, b)
    pot_log_err = max(er_p, ec_p)

    # Converge to the same (unique) entropic optimum: Newton's method on the dual
    # from POT's log-domain potentials, then exact log-domain Sinkhorn sweeps.
    plan_l, f, g, newton_steps = entropic_newton(a, b, c, reg, reg * log_p["log_u"],
                                                 reg * log_p["log_v"])
    er_l, ec_l = marginal_errors(plan_l, a, b)
    ref_err = max(er_l, ec_l)
    assert ref_err < 1e-13, ref_err
    diff_pot_log = float(np.max(np.abs(plan_l - plan_p)))
    assert diff_pot_log < 1e-4, diff_pot_log
    exact = emd2_checked(a, b, c)
    plan_cost = float((plan_l * c).sum())
    assert exact <= plan_cost <= exact + 0.01, (exact, plan_cost)
    tensors = {
        "cost": c,
        "reg": np.array([reg], dtype=np.float64),
        "plan": np.ascontiguousarray(plan_l, dtype=np.float64),
        "marginal_error": np.array([ref_err], dtype=np.float64),
        "converged": np.array([1], dtype=np.int64),
        "pot_scaling_marginal_error": np.array([pot_err], dtype=np.float64),
        "pot_scaling_iterations": np.array([int(log_s["niter"])], dtype=np.int64),
        "pot_log_marginal_error": np.array([pot_log_err], dtype=np.float64),
        "pot_log_iterations": np.array([int(log_p["niter"]) + 1], dtype=np.int64),
        "exact_objective": np.array([exact], dtype=np.float64),
    }
    meta = base_meta(name, "sinkhorn_tinyreg", seed,
                     "20x20 Euclidean distances between N(0,I) clouds in R^64, divided by "
                     "the max, uniform marginals, reg=1e-3: POT's scaling-form Sinkhorn "
                     "fails here; plan is a converged log-domain reference")
    meta.update({
        "reg": repr(reg),
        "reference": "POT ot.sinkhorn(a, b, cost, 1e-3, method='sinkhorn_log', "
                     "numItermax=1_000_000, stopThr=1e-12, log=True) (did not reach "
                     "stopThr: see pot_log_marginal_error), then Newton's method on the "
                     "entropic dual started from its potentials (%d steps), then %d exact "
                     "log-domain Sinkhorn sweeps (v then u, as POT); plan = "
                     "exp((f_i + g_j - C_ij)/reg)" % (newton_steps, POLISH_SWEEPS),
        "marginal_error": "max(L2 row-marginal error, L2 column-marginal error) of plan",
        "pot_scaling_call": "ot.sinkhorn(a, b, cost, 1e-3) (method='sinkhorn', "
                            "numItermax=1000, stopThr=1e-9)",
        "pot_scaling_warnings": " | ".join(msgs_s) if msgs_s else "none",
        "pot_scaling_marginal_error": "max(L2 row, L2 col) marginal error of the returned "
                                      "plan (inf if the plan has non-finite entries)",
        "pot_scaling_iterations": "raw log['niter'] of the failing scaling run (0-based "
                                  "index of the pass where it stopped)",
        "pot_log_warnings": " | ".join(msgs_p) if msgs_p else "none",
        "pot_log_marginal_error": "max(L2 row, L2 col) marginal error of POT's "
                                  "sinkhorn_log plan after its 1e6-pass budget",
        "pot_log_max_abs_diff_to_plan": "%.3e" % diff_pot_log,
        "exact_objective": "ot.emd2 objective of the unregularised problem",
        "plan_cost": "%.17g" % plan_cost,
    })
    fname = "sinkhorn_tinyreg.safetensors"
    write_safetensors(os.path.join(out_dir, fname), tensors, meta)
    print("tinyreg: POT scaling: niter=%d err=%g warnings=%s" % (log_s["niter"], pot_err, msgs_s))
    print("tinyreg: POT sinkhorn_log: passes=%d converged=%d err=%.3e warnings=%s"
          % (log_p["niter"] + 1, pot_log_conv, pot_log_err, msgs_p))
    print("tinyreg: reference: newton_steps=%d err=%.3e max|P-P_pot_log|=%.2e <C,P>=%.12g "
          "exact=%.12g" % (newton_steps, ref_err, diff_pot_log, plan_cost, exact))
    table.append(("tinyreg", fname, "20x20", "1e-3", "n/a (reference refined by Newton)",
                  "yes", "%.1e (POT scaling: %.1e; POT log after 1e6: %.1e)"
                  % (ref_err, pot_err, pot_log_err)))
    notes.append("tinyreg: POT's scaling Sinkhorn at reg=1e-3 stops at log['niter']=%d with "
                 "warnings [%s]; its returned plan's marginal error is %.3g. POT's "
                 "sinkhorn_log converges only sublinearly there: after %d passes its "
                 "marginal error is still %.2e (stopThr 1e-12 not reached), so the stored "
                 "plan was refined by %d Newton steps on the dual to %.1e; it differs from "
                 "POT's log-domain plan by at most %.1e."
                 % (log_s["niter"], " | ".join(msgs_s) or "none", pot_err,
                    int(log_p["niter"]) + 1, pot_log_err, newton_steps, ref_err,
                    diff_pot_log))


POLISH_SWEEPS = 5


def entropic_newton(a, b, c, reg, f0, g0, max_steps=100):
    """Newton's method on the entropic OT dual, in the log domain.

    Dual: max_{f,g} <f,a> + <g,b> - reg * sum_ij exp((f_i + g_j - C_ij)/reg).
    Gradient (a - P1, b - P^T 1); Hessian -(1/reg) [[diag(P1), P], [P^T, diag(P^T1)]],
    singular along (1, -1): g_{m-1} is held fixed. Step accepted when the
    gradient norm decreases (halving otherwise). Followed by POLISH_SWEEPS
    log-domain Sinkhorn sweeps (v then u), so that row marginals are exact to
    rounding. Returns (plan, f, g, newton_steps).
    """
    from scipy.special import logsumexp
    n, m = c.shape
    f = np.array(f0, dtype=np.float64)
    g = np.array(g0, dtype=np.float64)

    def plan_of(f, g):
        return np.exp((f[:, None] + g[None, :] - c) / reg)

    def grad_of(P):
        return np.concatenate([a - P.sum(1), b - P.sum(0)])

    P = plan_of(f, g)
    gr = grad_of(P)
    gn = np.linalg.norm(gr)
    steps = 0
    for _ in range(max_steps):
        if gn < 1e-16:
            break
        H = np.zeros((n + m, n + m))
        H[:n, :n] = np.diag(P.sum(1))
        H[n:, n:] = np.diag(P.sum(0))
        H[:n, n:] = P
        H[n:, :n] = P.T
        H /= reg
        k = n + m - 1
        d = np.zeros(n + m)
        d[:k] = np.linalg.solve(H[:k, :k], gr[:k])
        t = 1.0
        improved = False
        for _ in range(40):
            fn = f + t * d[:n]
            gn_ = g + t * d[n:]
            Pn = plan_of(fn, gn_)
            grn = grad_of(Pn)
            if np.all(np.isfinite(Pn)) and np.linalg.norm(grn) < gn:
                improved = True
                break
            t *= 0.5
        if not improved:
            break
        f, g, P, gr, gn = fn, gn_, Pn, grn, np.linalg.norm(grn)
        steps += 1
    for _ in range(POLISH_SWEEPS):
        g = reg * (np.log(b) - logsumexp((f[:, None] - c) / reg, axis=0))
        f = reg * (np.log(a) - logsumexp((g[None, :] - c) / reg, axis=1))
    return plan_of(f, g), f, g, steps


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

def write_readme(out_dir, table, notes):
    exact = [r for r in table if r[0] == "exact"]
    sk = [r for r in table if r[0] in ("sinkhorn", "tinyreg")]
    L = []
    L.append("# OT solver golden fixtures")
    L.append("")
    L.append("Generated by `tools/gen_ot_fixtures.py` (do not edit by hand). Regenerate from")
    L.append("the repository root with:")
    L.append("")
    L.append("    %s" % COMMAND)
    L.append("")
    L.append("Reference libraries: POT %s, scipy %s, numpy %s. The output is deterministic"
             % (ot.__version__, scipy.__version__, np.__version__))
    L.append("(fixed per-case seeds, `numpy.random.default_rng(crc32(name) & 0x7fffffff)`;")
    L.append("the seed is in each file's `__metadata__`).")
    L.append("")
    L.append("## File format")
    L.append("")
    L.append("safetensors: u64 LE header length N, N bytes of JSON header (sorted keys,")
    L.append("space-padded so that 8+N is a multiple of 8), then the tensors' little-endian")
    L.append("bytes, contiguous, in sorted-name order. `__metadata__` holds strings: `case`,")
    L.append("`description`, `seed`, `generator`, `command`, `reference` (the exact call that")
    L.append("produced the reference values), library versions, and the checks performed.")
    L.append("")
    L.append("## Conventions")
    L.append("")
    L.append("### `exact_<case>.safetensors`")
    L.append("")
    L.append("* `cost` [n,m]: F64 when n*m <= %d, otherwise F32 (to keep the repo small)."
             % F64_MAX_ELEMS)
    L.append("  The reference was computed on exactly the stored values upcast to float64.")
    L.append("* `a` [n], `b` [m] (F64): present only for non-uniform marginals; absent means")
    L.append("  uniform 1/n, 1/m. Non-uniform marginals are dyadic, k_i / 2^20 with integer")
    L.append("  k_i, so they sum to exactly 1.0 in float64 (some entries are 0 in the")
    L.append("  `zero_marginals` case).")
    L.append("* `objective` F64 [1]: `ot.emd2(a, b, cost, numItermax=10_000_000)`; the script")
    L.append("  asserts POT raised no warning (e.g. iteration cap). Uniform cases whose")
    L.append("  lcm(n,m) <= 4096 are cross-checked with `scipy.optimize.linear_sum_assignment`")
    L.append("  (square: directly, objective/n; rectangular: on the cost with rows/columns")
    L.append("  repeated up to lcm(n,m)) to 1e-12 relative; non-uniform cases are")
    L.append("  cross-checked with `scipy.optimize.linprog(method='highs')` to 1e-9 relative.")
    L.append("")
    L.append("### `sinkhorn_<case>_reg<r>.safetensors`")
    L.append("")
    L.append("* `cost` F64 [n,m], max-normalised (entries in [0,1], max exactly 1).")
    L.append("* `a`, `b` F64: only for non-uniform marginals (dyadic, as above, all > 0).")
    L.append("* `reg` F64 [1].")
    L.append("* `plan` F64 [n,m]: `ot.sinkhorn(a, b, cost, reg)` with the defaults")
    L.append("  (method='sinkhorn', numItermax=%d, stopThr=%g), float64."
             % (SINKHORN_MAXITER, SINKHORN_STOPTHR))
    L.append("* `iterations` I64 [1]: number of (v, u) update sweeps POT ran,")
    L.append("  = `log['niter'] + 1`. `pot_niter` I64 [1] is the raw `log['niter']` (the")
    L.append("  0-based index of the last loop pass). POT 0.8.2 computes the stopping error")
    L.append("  (L2 norm of column-marginal violation; the row marginal is exact after the")
    L.append("  u update) only when the 0-based index is a multiple of 10, so a converged")
    L.append("  run always has iterations = 1 (mod 10). A solver that tests every sweep")
    L.append("  stops up to 9 sweeps earlier.")
    L.append("* `converged` I64 [1]: 1 if POT stopped on err < stopThr, 0 if it hit")
    L.append("  numItermax (the plan is then POT's plan after %d sweeps)." % SINKHORN_MAXITER)
    L.append("* The script re-implements POT's loop in numpy and asserts the plan matches to")
    L.append("  1e-15 absolute and the iteration count is identical.")
    L.append("")
    L.append("### `sinkhorn_tinyreg.safetensors`")
    L.append("")
    L.append("20x20 max-normalised Euclidean cost, uniform marginals, `reg` = 1e-3, where")
    L.append("POT's scaling-form `ot.sinkhorn` fails. Tensors: `cost`, `reg`, `plan`")
    L.append("(converged log-domain reference, see below), `marginal_error` (max of L2 row")
    L.append("and column marginal errors of `plan`), `converged`,")
    L.append("`pot_scaling_marginal_error` (same measure for the plain scaling run; inf if")
    L.append("its plan is non-finite), `pot_scaling_iterations` (its raw `log['niter']`),")
    L.append("`pot_log_marginal_error` / `pot_log_iterations` (POT's")
    L.append("`ot.sinkhorn(..., method='sinkhorn_log', numItermax=1_000_000, stopThr=1e-12)`,")
    L.append("which does not reach stopThr here), `exact_objective` (unregularised")
    L.append("`ot.emd2`, for comparison). Because POT's log-domain run stalls, the stored")
    L.append("`plan` is obtained from its dual potentials by Newton's method on the")
    L.append("entropic dual (gauge g_{m-1} fixed) followed by a few exact log-domain")
    L.append("Sinkhorn sweeps; plan = exp((f_i + g_j - C_ij)/reg). The entropic optimum is")
    L.append("unique, so this is the fixed point POT's iteration converges to.")
    L.append("")
    L.append("## Exact cases")
    L.append("")
    L.append("| file | n x m | cost dtype | marginals | objective | description |")
    L.append("|---|---|---|---|---|---|")
    for _, f, shape, dt, marg, obj, desc in exact:
        L.append("| `%s` | %s | %s | %s | %s | %s |" % (f, shape, dt, marg, obj, desc))
    L.append("")
    L.append("## Sinkhorn cases")
    L.append("")
    L.append("| file | n x m | reg | iterations | converged | L2 marginal error (row / col) |")
    L.append("|---|---|---|---|---|---|")
    for _, f, shape, reg, it, conv, err in sk:
        L.append("| `%s` | %s | %s | %s | %s | %s |" % (f, shape, reg, it, conv, err))
    L.append("")
    if notes:
        L.append("## Observations")
        L.append("")
        for s in notes:
            L.append("* " + s)
        L.append("")
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(L))


def self_check(out_dir):
    total = 0
    for f in sorted(os.listdir(out_dir)):
        p = os.path.join(out_dir, f)
        total += os.path.getsize(p)
        if f.endswith(".safetensors"):
            tensors, meta = read_safetensors(p)
            assert "cost" in tensors and meta.get("generator") == GENERATOR, f
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", default=OUT_DIR_DEFAULT, help="output directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(args.out, f))
    table, notes = [], []
    gen_exact(args.out, table)
    gen_sinkhorn(args.out, table, notes)
    gen_tinyreg(args.out, table, notes)
    write_readme(args.out, table, notes)
    total = self_check(args.out)
    print("wrote %d files, %.2f MB total in %s" % (len(os.listdir(args.out)), total / 1e6,
                                                   args.out))
    assert total < 6_000_000, "fixtures too large"
    return 0


if __name__ == "__main__":
    sys.exit(main())
