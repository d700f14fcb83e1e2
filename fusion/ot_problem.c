#include "fusion/ot_problem.h"

#include <float.h>
#include <math.h>

#include "common/limits.h"

static otf_status check_marginal(const double *w, size_t len, const char *name,
                                 double *mass, otf_error *err) {
  if(!w) {
    *mass = 1.0;
    return OTF_OK;
  }
  double s = 0.0;
  for(size_t i = 0; i < len; i++) {
    if(!isfinite(w[i]))
      return OTF_FAIL(err, OTF_E_NUMERIC, name, "%s[%zu] is not finite", name, i);
    if(w[i] < 0.0)
      return OTF_FAIL(err, OTF_E_NUMERIC, name, "%s[%zu] = %g is negative", name,
                      i, w[i]);
    s += w[i];
  }
  if(!(s > 0.0))
    return OTF_FAIL(err, OTF_E_INFEASIBLE, name, "%s has no mass (all zero)", name);
  *mass = s;
  return OTF_OK;
}

otf_status otf_ot_validate(const otf_ot_problem *p, otf_error *err) {
  double mx;
  return otf_ot_validate_max(p, &mx, err);
}

/* Scans one row for the first entry that is NaN, infinite or negative;
 * returns its column or len when the row is clean, and the row's max. The
 * common all-clean case is one branch-free, vectorisable loop. */
static size_t first_bad(const double *row, size_t len, double *row_max) {
  double mx = 0.0;
  int bad = 0;
  for(size_t j = 0; j < len; j++) {
    double v = row[j];
    bad |= !(v >= 0.0 && v <= DBL_MAX);
    mx = v > mx ? v : mx;
  }
  *row_max = mx;
  if(!bad)
    return len;
  for(size_t j = 0; j < len; j++)
    if(!(row[j] >= 0.0 && row[j] <= DBL_MAX))
      return j;
  return len;
}

otf_status otf_ot_validate_max(const otf_ot_problem *p, double *max_cost,
                               otf_error *err) {
  if(!p || !p->cost)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "no cost matrix given");
  if(p->n == 0 || p->m == 0)
    return OTF_FAIL(err, OTF_E_INVAL, "cost", "cost matrix is empty (%zu x %zu)",
                    p->n, p->m);
  if(p->n > OTF_MAX_OT_SIDE || p->m > OTF_MAX_OT_SIDE ||
     (uint64_t)p->n * p->m > OTF_MAX_OT_CELLS)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, "cost",
                    "cost matrix %zu x %zu exceeds the limit (side %d, %llu cells)",
                    p->n, p->m, OTF_MAX_OT_SIDE,
                    (unsigned long long)OTF_MAX_OT_CELLS);
  double cmax = 0.0;
  for(size_t i = 0; i < p->n; i++) {
    double rmax;
    size_t j = first_bad(p->cost + i * p->m, p->m, &rmax);
    cmax = fmax(cmax, rmax);
    if(j == p->m)
      continue;
    double v = p->cost[i * p->m + j];
    if(isnan(v))
      return OTF_FAIL(err, OTF_E_NUMERIC, "cost", "cost[%zu,%zu] is NaN", i, j);
    if(isinf(v))
      return OTF_FAIL(err, OTF_E_NUMERIC, "cost", "cost[%zu,%zu] is infinite", i, j);
    return OTF_FAIL(err, OTF_E_NUMERIC, "cost",
                    "cost[%zu,%zu] = %g is negative; costs are distances", i, j, v);
  }
  *max_cost = cmax;
  double ma, mb;
  otf_status rc = check_marginal(p->a, p->n, "a", &ma, err);
  if(rc != OTF_OK)
    return rc;
  rc = check_marginal(p->b, p->m, "b", &mb, err);
  if(rc != OTF_OK)
    return rc;
  if(fabs(ma - mb) > OTF_OT_MASS_TOL * fmax(ma, mb))
    return OTF_FAIL(err, OTF_E_INFEASIBLE, "b",
                    "marginals carry different mass: sum(a) = %.17g, sum(b) = %.17g",
                    ma, mb);
  return OTF_OK;
}

double otf_plan_marginal_error(const double *plan, const otf_ot_problem *p) {
  double worst = 0.0;
  for(size_t i = 0; i < p->n; i++) {
    double s = 0.0;
    const double *row = plan + i * p->m;
    for(size_t j = 0; j < p->m; j++)
      s += row[j];
    worst = fmax(worst, fabs(s - otf_ot_a(p, i)));
  }
  /* Column sums a stripe of 64 columns at a time, walking the rows, so the
   * reads stay contiguous (a column-major walk of a 3072^2 plan is ~10x
   * slower). */
  enum { STRIPE = 64 };
  for(size_t j0 = 0; j0 < p->m; j0 += STRIPE) {
    size_t w = p->m - j0 < STRIPE ? p->m - j0 : STRIPE;
    double s[STRIPE] = {0};
    for(size_t i = 0; i < p->n; i++) {
      const double *row = plan + i * p->m + j0;
      for(size_t k = 0; k < w; k++)
        s[k] += row[k];
    }
    for(size_t k = 0; k < w; k++)
      worst = fmax(worst, fabs(s[k] - otf_ot_b(p, j0 + k)));
  }
  return worst;
}

double otf_plan_objective(const double *plan, const otf_ot_problem *p) {
  double total = 0.0;
  for(size_t i = 0; i < p->n; i++) {
    double s = 0.0;
    const double *pr = plan + i * p->m, *cr = p->cost + i * p->m;
    for(size_t j = 0; j < p->m; j++)
      s += pr[j] * cr[j];
    total += s;
  }
  return total;
}

otf_status otf_plan_verify(double *plan, const otf_ot_problem *p, double tol,
                           const char *solver, double *marginal_error,
                           otf_error *err) {
  size_t cells = p->n * p->m;
  double mass = 0.0;
  for(size_t i = 0; i < p->n; i++)
    mass += otf_ot_a(p, i);
  for(size_t k = 0; k < cells; k++) {
    double v = plan[k];
    if(!isfinite(v))
      return OTF_FAIL(err, OTF_E_NUMERIC, NULL,
                      "%s produced a non-finite plan entry at [%zu,%zu]", solver,
                      k / p->m, k % p->m);
    if(v < 0.0) {
      if(v < -1e-12 * mass)
        return OTF_FAIL(err, OTF_E_NUMERIC, NULL,
                        "%s produced a negative plan entry %g at [%zu,%zu]",
                        solver, v, k / p->m, k % p->m);
      plan[k] = 0.0;
    }
  }
  double e = otf_plan_marginal_error(plan, p);
  if(marginal_error)
    *marginal_error = e;
  if(!(e <= tol * mass))
    return OTF_FAIL(err, OTF_E_NOT_CONVERGED, NULL,
                    "%s plan misses the marginals by %.3g (tolerance %.3g)",
                    solver, e, tol * mass);
  return OTF_OK;
}
