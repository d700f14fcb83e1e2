/* One entry point for every OT solver: validates the problem, picks the
 * exact method that fits (assignment when square with uniform marginals,
 * network simplex otherwise) or runs Sinkhorn, verifies the plan, and
 * reports what it did. The fusion layer and `otfuse ot` both call this. */
#ifndef OTF_OT_H
#define OTF_OT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/ot_problem.h"
#include "fusion/sinkhorn.h"

typedef enum otf_solver {
  OTF_SOLVER_EXACT = 0, /* hard alignment: assignment or network simplex */
  OTF_SOLVER_SINKHORN,  /* soft alignment: entropic OT */
} otf_solver;

/* "exact" | "sinkhorn" -> solver; -1 if unknown. */
int otf_solver_parse(otf_solver *out, const char *name);
const char *otf_solver_name(otf_solver s);

typedef struct otf_ot_opts {
  otf_solver solver;
  otf_sinkhorn_opts sinkhorn; /* used when solver == SINKHORN */
  uint64_t emd_max_iter;      /* network simplex pivot cap, 0 = default */
} otf_ot_opts;

typedef struct otf_ot_result {
  const char *method;    /* "assignment", "network-simplex", "sinkhorn",
                            "sinkhorn-log" (static strings) */
  double objective;      /* <C, P> */
  uint64_t iterations;   /* assignment: 0; simplex: pivots; Sinkhorn: sweeps */
  double marginal_error; /* max abs deviation of the row/column sums */
  int converged;         /* Sinkhorn: its stopping rule fired; exact: 1 */
} otf_ot_result;

/* plan: out [n, m] (caller allocates n*m doubles).
 * res:  out (may be NULL).
 * Exact plans are verified to 1e-9 * mass on the marginals, Sinkhorn plans
 * to the accept tolerance of its options. Errors: those of
 * otf_ot_validate, the solvers, and OTF_E_NOMEM. */
otf_status otf_ot_solve(double *plan, otf_ot_result *res, const otf_ot_problem *p,
                        const otf_ot_opts *opts, otf_error *err) OTF_WUR;

#endif
