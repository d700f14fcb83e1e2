/* An optimal-transport problem and what every OT solver shares: input
 * validation and the marginal check of a returned plan.
 *
 * Problem: minimise <C, P> over plans P >= 0 of shape [n, m] with row sums
 * a and column sums b. Cost and plans are dense, row-major, double. */
#ifndef OTF_OT_PROBLEM_H
#define OTF_OT_PROBLEM_H

#include <stddef.h>

#include "common/error.h"

typedef struct otf_ot_problem {
  const double *cost; /* [n, m], row-major (stride m), borrowed */
  const double *a;    /* [n] source marginal, borrowed; NULL = uniform 1/n */
  const double *b;    /* [m] target marginal, borrowed; NULL = uniform 1/m */
  size_t n, m;
} otf_ot_problem;

/* Relative tolerance on |sum(a) - sum(b)|, as POT's emd asserts (1e-6):
 * within it b is rescaled to a's mass, beyond it the problem is infeasible. */
#define OTF_OT_MASS_TOL 1e-6

/* i-th source weight (a_i, or 1/n when a is NULL). */
static inline double otf_ot_a(const otf_ot_problem *p, size_t i) {
  return p->a ? p->a[i] : 1.0 / (double)p->n;
}
/* j-th target weight (b_j, or 1/m when b is NULL). */
static inline double otf_ot_b(const otf_ot_problem *p, size_t j) {
  return p->b ? p->b[j] : 1.0 / (double)p->m;
}

/* Checks a problem before solving: n, m in [1, OTF_MAX_OT_SIDE] and n*m
 * within OTF_MAX_OT_CELLS; every cost finite and >= 0 (the fusion costs are
 * distances; a negative or NaN entry means corrupt input); marginals finite,
 * >= 0, with positive mass, and sum(a) == sum(b) within OTF_OT_MASS_TOL
 * relative. The message names the first bad entry ("cost[3,7] is NaN").
 * O(n*m). */
otf_status otf_ot_validate(const otf_ot_problem *p, otf_error *err) OTF_WUR;

/* The same, also giving the largest cost entry (in the same pass). */
otf_status otf_ot_validate_max(const otf_ot_problem *p, double *max_cost,
                               otf_error *err) OTF_WUR;

/* Largest absolute deviation of the plan's row sums from a and column sums
 * from b: max(max_i |sum_j P_ij - a_i|, max_j |sum_i P_ij - b_j|).
 * plan: [n, m]. O(n*m), no allocation beyond O(1) (two passes). */
double otf_plan_marginal_error(const double *plan, const otf_ot_problem *p);

/* <C, P> = sum_ij C_ij P_ij, summed row by row, then over rows. O(n*m). */
double otf_plan_objective(const double *plan, const otf_ot_problem *p);

/* Verifies a solver's plan: every entry finite and >= 0 (negative entries
 * down to -1e-12 * mass, rounding noise, are clamped to 0), and marginal
 * error <= tol * mass, where mass = sum(a).
 * Writes the marginal error to *marginal_error when non-NULL. Returns
 * OTF_E_NUMERIC or OTF_E_NOT_CONVERGED (with a message naming solver)
 * otherwise. */
otf_status otf_plan_verify(double *plan, const otf_ot_problem *p, double tol,
                           const char *solver, double *marginal_error,
                           otf_error *err) OTF_WUR;

#endif
