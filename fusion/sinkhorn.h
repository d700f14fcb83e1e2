/* Entropic OT (Sinkhorn). Solves min <C,P> - reg * H(P) subject to the
 * marginals, in double precision.
 *
 * Two forms share one contract:
 *  - scaling: the Sinkhorn-Knopp iteration exactly as POT 0.8.2's
 *    ot.sinkhorn(method="sinkhorn") runs it (ALGORITHM.md section 2 step 4),
 *    so plans can be compared with the reference: K = exp(-C/reg),
 *    u = 1/n, v = 1/m; each iteration v = b / (K^T u), u = a / (K v); every
 *    10th iteration (from 0) it stops when ||v * (K^T u) - b||_2 < stop_thr.
 *  - log-domain: the same fixed point computed on potentials f, g with
 *    log-sum-exp, which never under/overflows; chosen automatically when
 *    max(C)/reg is large enough that exp(-C/reg) would underflow or the
 *    scalings overflow, and as a fallback when the scaling form meets a
 *    zero, infinite or NaN value. At tiny reg its linear rate becomes very
 *    slow; when the iterations run out, Newton steps on the dual finish
 *    small and medium problems (n + m <= OTF_SINKHORN_NEWTON_MAX). */
#ifndef OTF_SINKHORN_H
#define OTF_SINKHORN_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/ot_problem.h"

typedef enum otf_sinkhorn_mode {
  OTF_SINKHORN_AUTO = 0, /* scaling when safe, else log-domain */
  OTF_SINKHORN_SCALING,  /* force the scaling form (fails instead of falling back) */
  OTF_SINKHORN_LOG,      /* force the log-domain form */
} otf_sinkhorn_mode;

typedef struct otf_sinkhorn_opts {
  double reg;           /* entropic regularisation, > 0 (reference: 0.08) */
  uint32_t max_iter;    /* 0 = 1000, POT's default */
  double stop_thr;      /* 0 = 1e-9, POT's default */
  double accept_tol;    /* 0 = 1e-6: plan accepted when its marginal error
                           is <= accept_tol * mass, even if stop_thr was
                           not reached within max_iter */
  otf_sinkhorn_mode mode;
  int finish;           /* AUTO mode: when the scaling form ends without
                           meeting accept_tol, redo the solve in the log
                           domain, whose Newton finish converges where
                           Sinkhorn crawls (n + m <= OTF_SINKHORN_NEWTON_MAX).
                           Off by default: POT returns its unconverged
                           iterate, and parity tests compare with it. */
} otf_sinkhorn_opts;

typedef struct otf_sinkhorn_stats {
  uint32_t iterations;   /* iterations run (POT's count) */
  double err;            /* last stopping-rule error computed */
  double marginal_error; /* max abs marginal deviation of the returned plan */
  int log_domain;        /* 1 when the log-domain form produced the plan */
  int converged;         /* 1 when the stopping rule fired */
  int newton;            /* 1 when Newton steps on the dual finished it */
  int nonfinite;         /* 1 when the plan has a NaN or infinite entry */
  double objective;      /* <C, P> of the returned plan */
} otf_sinkhorn_stats;

/* Scaling threshold: the scaling form is used while max(C)/reg stays below
 * this, so exp(-C/reg) >= e^-300 and the scalings stay well inside double
 * range (e^+-709). */
#define OTF_SINKHORN_SCALING_MAX_EXPONENT 300.0

/* Largest n + m - 1 for which a log-domain solve that runs out of
 * iterations is finished by Newton steps on the dual (dense O((n+m)^3)
 * factorisation, 2048^3/3 flops ~ a second; 32 MiB). */
#define OTF_SINKHORN_NEWTON_MAX 2048

/* plan:  out [n, m]; also used as the workspace for K (no extra n*m buffer).
 * stats: out (may be NULL).
 * p:     must pass otf_ot_validate.
 * Time O(iterations * n * m); memory O(n + m) besides the plan.
 * Returns OTF_E_NOT_CONVERGED when the plan misses the marginals by more
 * than accept_tol after max_iter iterations, OTF_E_NUMERIC when the forced
 * scaling form breaks down, OTF_E_INVAL for a bad option, OTF_E_NOMEM. */
otf_status otf_sinkhorn(double *plan, otf_sinkhorn_stats *stats,
                        const otf_ot_problem *p, const otf_sinkhorn_opts *opts,
                        otf_error *err) OTF_WUR;

/* otf_sinkhorn for a problem the caller has already validated with
 * otf_ot_validate_max, which gave max_cost: saves a pass over the cost. */
otf_status otf__sinkhorn_validated(double *plan, otf_sinkhorn_stats *stats,
                                   const otf_ot_problem *p,
                                   const otf_sinkhorn_opts *opts, double max_cost,
                                   otf_error *err) OTF_WUR;

/* Naive reference of the scaling form: a literal transcription of POT's
 * loop (two separate mat-vec passes, libm exp), no fusion of passes, no
 * fallback. The test oracle for otf_sinkhorn; same contract. */
otf_status otf_sinkhorn_naive(double *plan, otf_sinkhorn_stats *stats,
                              const otf_ot_problem *p,
                              const otf_sinkhorn_opts *opts, otf_error *err) OTF_WUR;

#endif
