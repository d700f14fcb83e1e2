#include "fusion/sinkhorn.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/limits.h"
#include "fusion/simd.h"
#include "fusion/vexp.h"

#define DEFAULT_MAX_ITER 1000u
#define DEFAULT_STOP_THR 1e-9
#define DEFAULT_ACCEPT_TOL 1e-6

typedef struct resolved_opts {
  double reg, stop_thr, accept_tol;
  uint32_t max_iter;
  otf_sinkhorn_mode mode;
} resolved_opts;

static otf_status resolve_opts(resolved_opts *r, const otf_sinkhorn_opts *o,
                               otf_error *err) {
  if(!o)
    return OTF_FAIL(err, OTF_E_INVAL, "reg", "Sinkhorn needs options (reg)");
  if(!(o->reg > 0.0) || !isfinite(o->reg))
    return OTF_FAIL(err, OTF_E_INVAL, "reg", "reg must be a finite number > 0, got %g",
                    o->reg);
  if(o->max_iter > OTF_MAX_SINKHORN_ITER)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, "max_iter",
                    "max_iter %u exceeds the limit %d", o->max_iter,
                    OTF_MAX_SINKHORN_ITER);
  if(o->stop_thr < 0.0 || !isfinite(o->stop_thr) || o->accept_tol < 0.0 ||
     !isfinite(o->accept_tol))
    return OTF_FAIL(err, OTF_E_INVAL, "stop_thr",
                    "stop_thr and accept_tol must be finite and >= 0");
  if(o->mode != OTF_SINKHORN_AUTO && o->mode != OTF_SINKHORN_SCALING &&
     o->mode != OTF_SINKHORN_LOG)
    return OTF_FAIL(err, OTF_E_INVAL, "mode", "unknown Sinkhorn mode %d", (int)o->mode);
  r->reg = o->reg;
  r->max_iter = o->max_iter ? o->max_iter : DEFAULT_MAX_ITER;
  r->stop_thr = o->stop_thr > 0.0 ? o->stop_thr : DEFAULT_STOP_THR;
  r->accept_tol = o->accept_tol > 0.0 ? o->accept_tol : DEFAULT_ACCEPT_TOL;
  r->mode = o->mode;
  return OTF_OK;
}

static double max_cost(const otf_ot_problem *p) {
  double mx = 0.0;
  size_t cells = p->n * p->m;
  for(size_t k = 0; k < cells; k++)
    mx = fmax(mx, p->cost[k]);
  return mx;
}

/* ---- plan summaries ------------------------------------------------ */

/* Row and column sums, objective and a non-finite flag, accumulated while
 * the final plan is written row by row, so verifying it costs no extra
 * pass over n*m memory. colsum: [m] scratch. */
typedef struct plan_sums {
  double *colsum;
  double objective, row_err;
  int bad;
} plan_sums;

static void sums_begin(plan_sums *ps, double *colsum, size_t m) {
  memset(colsum, 0, m * sizeof(*colsum));
  ps->colsum = colsum;
  ps->objective = ps->row_err = 0.0;
  ps->bad = 0;
}

OTF_HOT_CLONES
static void sums_row(plan_sums *ps, const double *row, const double *c, double ai,
                     size_t m) {
  double rs = 0.0, obj = 0.0;
  int bad = 0;
  double *cs = ps->colsum;
#pragma omp simd reduction(+ : rs, obj) reduction(| : bad)
  for(size_t j = 0; j < m; j++) {
    double v = row[j];
    bad |= !(v >= 0.0 && v <= DBL_MAX);
    rs += v;
    obj += v * c[j];
    cs[j] += v;
  }
  ps->objective += obj;
  ps->row_err = fmax(ps->row_err, fabs(rs - ai));
  ps->bad |= bad;
}

static void sums_end(const plan_sums *ps, otf_sinkhorn_stats *st, const otf_ot_problem *p) {
  double e = ps->row_err;
  for(size_t j = 0; j < p->m; j++)
    e = fmax(e, fabs(ps->colsum[j] - otf_ot_b(p, j)));
  st->marginal_error = ps->bad ? INFINITY : e;
  st->objective = ps->objective;
  st->nonfinite = ps->bad;
}

OTF_HOT_CLONES
static void axpy_row(double *w, const double *k, double alpha, size_t m) {
#pragma omp simd
  for(size_t j = 0; j < m; j++)
    w[j] += k[j] * alpha;
}

OTF_HOT_CLONES
static void scale_row(double *row, double ui, const double *v, size_t m) {
#pragma omp simd
  for(size_t j = 0; j < m; j++)
    row[j] *= ui * v[j];
}

/* ---- scaling form --------------------------------------------------- */

/* One fused pass over K [n, m] (the plan buffer):
 *   u_i = a_i / (K v)_i   for every row, then, while row i is still in
 *   cache, w += u_i * K[i, :]  so that w = K^T u for the next v update.
 * Halves the memory traffic of the two separate mat-vecs POT runs; the
 * arithmetic per element is the same. */
OTF_HOT_CLONES
static void scaling_pass(double *u, double *w, const double *K, const double *v,
                         const otf_ot_problem *p) {
  size_t n = p->n, m = p->m;
  memset(w, 0, m * sizeof(*w));
  for(size_t i = 0; i < n; i++) {
    const double *k = K + i * m;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for(size_t j = 0; j < m; j++)
      s += k[j] * v[j];
    double ui = otf_ot_a(p, i) / s;
    u[i] = ui;
#pragma omp simd
    for(size_t j = 0; j < m; j++)
      w[j] += k[j] * ui;
  }
}

static int all_finite(const double *x, size_t len) {
  for(size_t k = 0; k < len; k++)
    if(!isfinite(x[k]))
      return 0;
  return 1;
}

/* The scaling iteration of POT 0.8.2, in its order: v from K^T u, u from
 * K v, and every tenth iteration (counting from 0) the column-marginal
 * error ||v * K^T u - b||_2 against stop_thr. On a zero in K^T u or a
 * non-finite scaling it keeps the previous u, v and stops, as POT does,
 * and reports it through *breakdown. Leaves the plan diag(u) K diag(v) in
 * `plan`. Scratch: u [n], v [m], w [m], uprev [n], vprev [m]. */
static void run_scaling(double *plan, otf_sinkhorn_stats *st, const otf_ot_problem *p,
                        const resolved_opts *o, double *scratch, int *breakdown) {
  size_t n = p->n, m = p->m;
  double *u = scratch, *v = u + n, *w = v + m, *uprev = w + m, *vprev = uprev + n;
  for(size_t i = 0; i < n; i++)
    u[i] = 1.0 / (double)n;
  for(size_t j = 0; j < m; j++)
    v[j] = 1.0 / (double)m;
  /* K = exp(-C/reg) row by row, accumulating w = K^T u for the initial u
   * while each row is in cache. */
  memset(w, 0, m * sizeof(*w));
  for(size_t i = 0; i < n; i++) {
    double *k = plan + i * m;
    otf_vexp_scaled(k, p->cost + i * m, -1.0 / o->reg, m);
    axpy_row(w, k, u[i], m);
  }
  *breakdown = 0;
  uint32_t it = 0;
  double e = INFINITY;
  while(e > o->stop_thr && it < o->max_iter) {
    memcpy(uprev, u, n * sizeof(*u));
    memcpy(vprev, v, m * sizeof(*v));
    int zero = 0;
    for(size_t j = 0; j < m; j++) {
      zero |= w[j] == 0.0;
      v[j] = otf_ot_b(p, j) / w[j];
    }
    scaling_pass(u, w, plan, v, p);
    if(zero || !all_finite(u, n) || !all_finite(v, m)) {
      memcpy(u, uprev, n * sizeof(*u));
      memcpy(v, vprev, m * sizeof(*v));
      *breakdown = 1;
      break;
    }
    if(it % 10 == 0) {
      double s = 0.0;
      for(size_t j = 0; j < m; j++) {
        double d = v[j] * w[j] - otf_ot_b(p, j);
        s += d * d;
      }
      e = sqrt(s);
    }
    it++;
  }
  plan_sums ps;
  sums_begin(&ps, w, m);
  for(size_t i = 0; i < n; i++) {
    double *row = plan + i * m;
    scale_row(row, u[i], v, m);
    sums_row(&ps, row, p->cost + i * m, otf_ot_a(p, i), m);
  }
  sums_end(&ps, st, p);
  st->iterations = it;
  st->err = e;
  st->converged = e <= o->stop_thr;
}

/* ---- log-domain form ------------------------------------------------ */

/* Row update in the log domain, for every row i:
 *   f_i = reg * (log a_i - LSE_j((g_j - C_ij) / reg))
 * with the LSE taken around its maximum, so nothing overflows. Rows with
 * a_i = 0 get f_i = -inf (they carry no mass). tmp: [m]. */
static void log_update_f(double *f, const double *g, const otf_ot_problem *p,
                         double reg, double *tmp) {
  size_t n = p->n, m = p->m;
  for(size_t i = 0; i < n; i++) {
    const double *c = p->cost + i * m;
    double ai = otf_ot_a(p, i);
    if(ai == 0.0) {
      f[i] = -INFINITY;
      continue;
    }
    double mx = -INFINITY;
    for(size_t j = 0; j < m; j++) {
      tmp[j] = g[j] - c[j];
      mx = fmax(mx, tmp[j]);
    }
    if(mx == -INFINITY) {
      f[i] = -INFINITY;
      continue;
    }
    for(size_t j = 0; j < m; j++)
      tmp[j] -= mx;
    otf_vexp_scaled(tmp, tmp, 1.0 / reg, m);
    double s = 0.0;
    for(size_t j = 0; j < m; j++)
      s += tmp[j];
    f[i] = reg * log(ai) - mx - reg * log(s);
  }
}

/* Column update: g_j = reg * (log b_j - LSE_i((f_i - C_ij) / reg)).
 * Runs row-wise over C (contiguous) with per-column running maxima, then
 * sums. colmax, colsum, tmp: [m]. */
static void log_update_g(double *g, const double *f, const otf_ot_problem *p,
                         double reg, double *colmax, double *colsum, double *tmp) {
  size_t n = p->n, m = p->m;
  for(size_t j = 0; j < m; j++) {
    colmax[j] = -INFINITY;
    colsum[j] = 0.0;
  }
  for(size_t i = 0; i < n; i++) {
    if(f[i] == -INFINITY)
      continue;
    const double *c = p->cost + i * m;
    for(size_t j = 0; j < m; j++)
      colmax[j] = fmax(colmax[j], f[i] - c[j]);
  }
  for(size_t i = 0; i < n; i++) {
    if(f[i] == -INFINITY)
      continue;
    const double *c = p->cost + i * m;
    for(size_t j = 0; j < m; j++)
      tmp[j] = f[i] - c[j] - colmax[j];
    otf_vexp_scaled(tmp, tmp, 1.0 / reg, m);
    for(size_t j = 0; j < m; j++)
      colsum[j] += tmp[j];
  }
  for(size_t j = 0; j < m; j++) {
    double bj = otf_ot_b(p, j);
    g[j] = (bj == 0.0 || colmax[j] == -INFINITY)
               ? -INFINITY
               : reg * log(bj) - colmax[j] - reg * log(colsum[j]);
  }
}

/* ||colsum(exp((f_i + g_j - C_ij)/reg)) - b||_2, the same stopping error
 * as the scaling form. colsum, tmp: [m]. */
static double log_column_error(const double *f, const double *g,
                               const otf_ot_problem *p, double reg,
                               double *colsum, double *tmp) {
  size_t n = p->n, m = p->m;
  memset(colsum, 0, m * sizeof(*colsum));
  for(size_t i = 0; i < n; i++) {
    if(f[i] == -INFINITY)
      continue;
    const double *c = p->cost + i * m;
    for(size_t j = 0; j < m; j++)
      tmp[j] = f[i] + g[j] - c[j];
    otf_vexp_scaled(tmp, tmp, 1.0 / reg, m);
    for(size_t j = 0; j < m; j++)
      colsum[j] += tmp[j];
  }
  double s = 0.0;
  for(size_t j = 0; j < m; j++) {
    double d = colsum[j] - otf_ot_b(p, j);
    s += d * d;
  }
  return sqrt(s);
}

/* In-place Cholesky factorisation of the symmetric positive definite
 * A [N, N] (row-major; lower triangle used and overwritten with L), then
 * solves L L^T x = rhs in place. Returns -1 when A is not numerically
 * positive definite. O(N^3 / 3). */
static int cholesky_solve(double *A, double *rhs, size_t N) {
  for(size_t j = 0; j < N; j++) {
    double *aj = A + j * N;
    double d = aj[j];
    for(size_t k = 0; k < j; k++)
      d -= aj[k] * aj[k];
    if(!(d > 0.0))
      return -1;
    d = sqrt(d);
    aj[j] = d;
    for(size_t i = j + 1; i < N; i++) {
      double *ai = A + i * N;
      double s = ai[j];
      for(size_t k = 0; k < j; k++)
        s -= ai[k] * aj[k];
      ai[j] = s / d;
    }
  }
  for(size_t i = 0; i < N; i++) {
    double s = rhs[i];
    for(size_t k = 0; k < i; k++)
      s -= A[i * N + k] * rhs[k];
    rhs[i] = s / A[i * N + i];
  }
  for(size_t i = N; i-- > 0;) {
    double s = rhs[i];
    for(size_t k = i + 1; k < N; k++)
      s -= A[k * N + i] * rhs[k];
    rhs[i] = s / A[i * N + i];
  }
  return 0;
}

/* Marginal residuals of the plan exp((f_i + g_j - C_ij)/reg), written to
 * P [n, m]: rres = a - P1 [n], cres = b - P^T 1 [m]. Returns the L2 norm of
 * both together. */
static double dual_residual(double *P, double *rres, double *cres, const double *f,
                            const double *g, const otf_ot_problem *p, double reg) {
  size_t n = p->n, m = p->m;
  for(size_t j = 0; j < m; j++)
    cres[j] = otf_ot_b(p, j);
  double s2 = 0.0;
  for(size_t i = 0; i < n; i++) {
    double *row = P + i * m;
    const double *c = p->cost + i * m;
    if(f[i] == -INFINITY) {
      memset(row, 0, m * sizeof(*row));
      rres[i] = otf_ot_a(p, i);
    } else {
      for(size_t j = 0; j < m; j++)
        row[j] = f[i] + g[j] - c[j];
      otf_vexp_scaled(row, row, 1.0 / reg, m);
      double rs = 0.0;
      for(size_t j = 0; j < m; j++) {
        rs += row[j];
        cres[j] -= row[j];
      }
      rres[i] = otf_ot_a(p, i) - rs;
    }
    s2 += rres[i] * rres[i];
  }
  for(size_t j = 0; j < m; j++)
    s2 += cres[j] * cres[j];
  return sqrt(s2);
}

/* Newton's method on the entropic dual, for when Sinkhorn's linear rate
 * has become too slow (tiny reg: the dual is nearly flat in some
 * directions, and alternating updates crawl along them). The dual
 * D(f, g) = <a, f> + <b, g> - reg * sum exp((f_i + g_j - C_ij)/reg) has
 * gradient (a - P1, b - P^T 1) and Hessian -(1/reg) [[diag(P1), P],
 * [P^T, diag(P^T 1)]]; fixing g_{m-1} removes the shift invariance, leaving
 * an SPD system of size N = n + m - 1, solved densely. Damped by halving
 * the step until the residual falls. Converges quadratically near the
 * optimum; a handful of steps. Rows or columns of zero mass are kept out
 * (their potential stays -inf). Work: O(N^3) per step, so only used for
 * N <= OTF_SINKHORN_NEWTON_MAX. Returns OTF_E_NOMEM or OTF_OK (whether it
 * converged is for the caller's stopping rule). */
static otf_status newton_polish(double *plan, double *f, double *g,
                                const otf_ot_problem *p, double reg, double stop_thr) {
  size_t n = p->n, m = p->m, N = n + m - 1;
  double *H = otf_malloc_array(N * N + N + 2 * (n + m), sizeof(double));
  if(!H)
    return OTF_E_NOMEM;
  double *rhs = H + N * N, *rres = rhs + N, *cres = rres + n, *f2 = cres + m,
         *g2 = f2 + n;
  double res = dual_residual(plan, rres, cres, f, g, p, reg);
  for(int step = 0; step < 50 && res > 0.1 * stop_thr; step++) {
    /* Build (1/reg)^-1-scaled Hessian M and the gradient; delta = reg M^-1 grad. */
    memset(H, 0, N * N * sizeof(double));
    for(size_t i = 0; i < n; i++) {
      double rs = otf_ot_a(p, i) - rres[i];
      H[i * N + i] = f[i] == -INFINITY ? 1.0 : rs;
      rhs[i] = f[i] == -INFINITY ? 0.0 : rres[i];
      for(size_t j = 0; j + 1 < m; j++) {
        double v = plan[i * m + j];
        H[i * N + n + j] = v;
        H[(n + j) * N + i] = v;
      }
    }
    for(size_t j = 0; j + 1 < m; j++) {
      double cs = otf_ot_b(p, j) - cres[j];
      int dead = g[j] == -INFINITY;
      H[(n + j) * N + n + j] = dead ? 1.0 : cs;
      rhs[n + j] = dead ? 0.0 : cres[j];
      if(dead)
        for(size_t i = 0; i < n; i++)
          H[(n + j) * N + i] = H[i * N + n + j] = 0.0;
    }
    /* A whisker of ridge keeps the factorisation defined when some
     * entries of P underflow to 0 (a row with no live column). */
    for(size_t k = 0; k < N; k++)
      H[k * N + k] += 1e-300 + 1e-14 * H[k * N + k];
    if(cholesky_solve(H, rhs, N) != 0)
      break;
    double t = 1.0, newres = res;
    int accepted = 0;
    for(int half = 0; half < 30; half++, t *= 0.5) {
      for(size_t i = 0; i < n; i++)
        f2[i] = f[i] == -INFINITY ? f[i] : f[i] + t * reg * rhs[i];
      for(size_t j = 0; j < m; j++)
        g2[j] = (j + 1 == m || g[j] == -INFINITY) ? g[j] : g[j] + t * reg * rhs[n + j];
      newres = dual_residual(plan, rres, cres, f2, g2, p, reg);
      if(newres < res) {
        accepted = 1;
        break;
      }
    }
    if(!accepted) {
      dual_residual(plan, rres, cres, f, g, p, reg); /* restore P */
      break;
    }
    memcpy(f, f2, n * sizeof(*f));
    memcpy(g, g2, m * sizeof(*g));
    res = newres;
  }
  otf_free(H);
  return OTF_OK;
}

/* Log-domain Sinkhorn with epsilon scaling: the potentials are first
 * brought near their optimum at a large regularisation (max C), which is
 * then halved stage by stage down to reg, a few iterations each, before
 * the final stage runs POT's stopping rule at reg. The fixed point is the
 * same as without the warm start (the entropic problem at reg has one
 * solution); the warm start only saves iterations. When the final stage
 * runs out of iterations without meeting the stopping rule (tiny reg,
 * where Sinkhorn's rate degrades), Newton steps on the dual finish the job
 * for problems small enough to factorise. Scratch: f [n], g [m], 3 * [m]. */
static otf_status run_log(double *plan, otf_sinkhorn_stats *st, const otf_ot_problem *p,
                          const resolved_opts *o, double *scratch) {
  size_t n = p->n, m = p->m;
  double *f = scratch, *g = f + n, *t1 = g + m, *t2 = t1 + m, *t3 = t2 + m;
  for(size_t i = 0; i < n; i++)
    f[i] = 0.0;
  for(size_t j = 0; j < m; j++)
    g[j] = 0.0;
  uint32_t warm = 0;
  double cmax = max_cost(p);
  for(double eps = cmax; eps > 2.0 * o->reg; eps *= 0.5) {
    for(int k = 0; k < 10; k++, warm++) {
      log_update_g(g, f, p, eps, t1, t2, t3);
      log_update_f(f, g, p, eps, t1);
    }
  }
  uint32_t it = 0;
  double e = INFINITY;
  while(e > o->stop_thr && it < o->max_iter) {
    log_update_g(g, f, p, o->reg, t1, t2, t3);
    log_update_f(f, g, p, o->reg, t1);
    if(it % 10 == 0)
      e = log_column_error(f, g, p, o->reg, t1, t2);
    it++;
  }
  if(e > o->stop_thr && n + m - 1 <= OTF_SINKHORN_NEWTON_MAX) {
    if(newton_polish(plan, f, g, p, o->reg, o->stop_thr) != OTF_OK)
      return OTF_E_NOMEM;
    log_update_f(f, g, p, o->reg, t1); /* rows exact, as after a sweep */
    e = log_column_error(f, g, p, o->reg, t1, t2);
    st->newton = 1;
  }
  plan_sums ps;
  sums_begin(&ps, t2, m);
  for(size_t i = 0; i < n; i++) {
    double *row = plan + i * m;
    const double *c = p->cost + i * m;
    if(f[i] == -INFINITY) {
      memset(row, 0, m * sizeof(*row));
    } else {
      for(size_t j = 0; j < m; j++)
        row[j] = f[i] + g[j] - c[j];
      otf_vexp_scaled(row, row, 1.0 / o->reg, m);
    }
    sums_row(&ps, row, c, otf_ot_a(p, i), m);
  }
  sums_end(&ps, st, p);
  st->iterations = warm + it;
  st->err = e;
  st->converged = e <= o->stop_thr;
  st->log_domain = 1;
  return OTF_OK;
}

otf_status otf_sinkhorn(double *plan, otf_sinkhorn_stats *stats,
                        const otf_ot_problem *p, const otf_sinkhorn_opts *opts,
                        otf_error *err) {
  double cmax;
  otf_status rc = otf_ot_validate_max(p, &cmax, err);
  if(rc != OTF_OK)
    return rc;
  return otf__sinkhorn_validated(plan, stats, p, opts, cmax, err);
}

otf_status otf__sinkhorn_validated(double *plan, otf_sinkhorn_stats *stats,
                                   const otf_ot_problem *p, const otf_sinkhorn_opts *opts,
                                   double cmax, otf_error *err) {
  resolved_opts o;
  otf_sinkhorn_stats st;
  memset(&st, 0, sizeof(st));
  otf_status rc = resolve_opts(&o, opts, err);
  if(rc != OTF_OK)
    return rc;
  size_t n = p->n, m = p->m;
  double *scratch = otf_malloc_array(2 * n + 4 * m, sizeof(double));
  if(!scratch)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for Sinkhorn scratch (%zu x %zu)",
                    n, m);
  int use_log = o.mode == OTF_SINKHORN_LOG ||
                (o.mode == OTF_SINKHORN_AUTO &&
                 cmax / o.reg > OTF_SINKHORN_SCALING_MAX_EXPONENT);
  const char *name = "sinkhorn";
  if(!use_log) {
    int breakdown = 0;
    run_scaling(plan, &st, p, &o, scratch, &breakdown);
    double mass = 0.0;
    for(size_t i = 0; i < n; i++)
      mass += otf_ot_a(p, i);
    int missed = !(st.marginal_error <= o.accept_tol * mass);
    if(o.mode == OTF_SINKHORN_AUTO &&
       (breakdown || (opts->finish && missed && n + m - 1 <= OTF_SINKHORN_NEWTON_MAX)))
      use_log = 1;
  }
  if(use_log) {
    memset(&st, 0, sizeof(st));
    rc = run_log(plan, &st, p, &o, scratch);
    name = "log-domain sinkhorn";
  }
  otf_free(scratch);
  if(stats)
    *stats = st;
  if(rc != OTF_OK)
    return OTF_FAIL(err, rc, NULL, "no memory for the Newton refinement (%zu x %zu)", n, m);
  double mass = 0.0;
  for(size_t i = 0; i < n; i++)
    mass += otf_ot_a(p, i);
  if(st.nonfinite)
    return OTF_FAIL(err, OTF_E_NUMERIC, NULL, "%s produced non-finite plan entries", name);
  if(!(st.marginal_error <= o.accept_tol * mass))
    return OTF_FAIL(err, OTF_E_NOT_CONVERGED, NULL,
                    "%s plan misses the marginals by %.3g (tolerance %.3g) after %u "
                    "iterations; raise reg or max_iter, or use the exact solver",
                    name, st.marginal_error, o.accept_tol * mass, st.iterations);
  return OTF_OK;
}

/* ---- naive reference ------------------------------------------------ */

otf_status otf_sinkhorn_naive(double *plan, otf_sinkhorn_stats *stats,
                              const otf_ot_problem *p,
                              const otf_sinkhorn_opts *opts, otf_error *err) {
  resolved_opts o;
  otf_sinkhorn_stats st;
  memset(&st, 0, sizeof(st));
  otf_status rc = resolve_opts(&o, opts, err);
  if(rc != OTF_OK)
    return rc;
  rc = otf_ot_validate(p, err);
  if(rc != OTF_OK)
    return rc;
  size_t n = p->n, m = p->m;
  double *u = otf_malloc_array(2 * n + 3 * m, sizeof(double));
  if(!u)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for Sinkhorn scratch");
  double *v = u + n, *ktu = v + m, *uprev = ktu + m, *vprev = uprev + n;
  double *K = plan;
  for(size_t k = 0; k < n * m; k++)
    K[k] = exp(-p->cost[k] / o.reg);
  for(size_t i = 0; i < n; i++)
    u[i] = 1.0 / (double)n;
  for(size_t j = 0; j < m; j++)
    v[j] = 1.0 / (double)m;
  uint32_t it = 0;
  double e = INFINITY;
  while(e > o.stop_thr && it < o.max_iter) {
    memcpy(uprev, u, n * sizeof(*u));
    memcpy(vprev, v, m * sizeof(*v));
    int bad = 0;
    for(size_t j = 0; j < m; j++) {
      double s = 0.0;
      for(size_t i = 0; i < n; i++)
        s += K[i * m + j] * u[i];
      bad |= s == 0.0;
      ktu[j] = s;
      v[j] = otf_ot_b(p, j) / s;
    }
    for(size_t i = 0; i < n; i++) {
      double s = 0.0;
      for(size_t j = 0; j < m; j++)
        s += K[i * m + j] / otf_ot_a(p, i) * v[j];
      u[i] = 1.0 / s;
    }
    if(bad || !all_finite(u, n) || !all_finite(v, m)) {
      memcpy(u, uprev, n * sizeof(*u));
      memcpy(v, vprev, m * sizeof(*v));
      break;
    }
    if(it % 10 == 0) {
      double s = 0.0;
      for(size_t j = 0; j < m; j++) {
        double col = 0.0;
        for(size_t i = 0; i < n; i++)
          col += u[i] * K[i * m + j] * v[j];
        s += (col - otf_ot_b(p, j)) * (col - otf_ot_b(p, j));
      }
      e = sqrt(s);
    }
    it++;
  }
  for(size_t i = 0; i < n; i++)
    for(size_t j = 0; j < m; j++)
      plan[i * m + j] = u[i] * K[i * m + j] * v[j];
  otf_free(u);
  st.iterations = it;
  st.err = e;
  st.converged = e <= o.stop_thr;
  rc = otf_plan_verify(plan, p, o.accept_tol, "sinkhorn (naive)", &st.marginal_error, err);
  if(stats)
    *stats = st;
  return rc;
}
