#include "fusion/ot.h"

#include <string.h>

#include "common/alloc.h"
#include "fusion/assign.h"
#include "fusion/transport.h"

#define EXACT_TOL 1e-9

int otf_solver_parse(otf_solver *out, const char *name) {
  if(name && !strcmp(name, "exact")) {
    *out = OTF_SOLVER_EXACT;
    return 0;
  }
  if(name && !strcmp(name, "sinkhorn")) {
    *out = OTF_SOLVER_SINKHORN;
    return 0;
  }
  return -1;
}

const char *otf_solver_name(otf_solver s) {
  return s == OTF_SOLVER_EXACT ? "exact" : s == OTF_SOLVER_SINKHORN ? "sinkhorn" : "?";
}

/* Square, uniform marginals: the optimal plan is a permutation / n. */
static otf_status solve_assignment(double *plan, otf_ot_result *r,
                                   const otf_ot_problem *p, otf_error *err) {
  size_t n = p->n;
  int32_t *col = otf_malloc_array(n, sizeof(*col));
  if(!col)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for an assignment of %zu", n);
  double obj = 0.0;
  otf_status rc = otf_assign_jv(col, &obj, p->cost, n, err);
  if(rc == OTF_OK) {
    memset(plan, 0, n * n * sizeof(*plan));
    for(size_t i = 0; i < n; i++)
      plan[i * n + (size_t)col[i]] = 1.0 / (double)n;
    r->method = "assignment";
    r->objective = obj / (double)n;
    r->iterations = 0;
  }
  otf_free(col);
  return rc;
}

otf_status otf_ot_solve(double *plan, otf_ot_result *res, const otf_ot_problem *p,
                        const otf_ot_opts *opts, otf_error *err) {
  otf_ot_result r;
  memset(&r, 0, sizeof(r));
  if(!opts)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "no solver options");
  double cmax;
  otf_status rc = otf_ot_validate_max(p, &cmax, err);
  if(rc != OTF_OK)
    return rc;
  if(opts->solver == OTF_SOLVER_SINKHORN) {
    otf_sinkhorn_stats st;
    memset(&st, 0, sizeof(st));
    rc = otf__sinkhorn_validated(plan, &st, p, &opts->sinkhorn, cmax, err);
    r.method = st.log_domain ? "sinkhorn-log" : "sinkhorn";
    r.iterations = st.iterations;
    r.marginal_error = st.marginal_error;
    r.converged = st.converged;
    r.objective = st.objective;
  } else if(opts->solver == OTF_SOLVER_EXACT) {
    if(p->n == p->m && !p->a && !p->b) {
      rc = solve_assignment(plan, &r, p, err);
    } else {
      otf_emd_stats st = {0};
      rc = otf_emd(plan, &st, p, opts->emd_max_iter, err);
      r.method = "network-simplex";
      r.objective = st.objective;
      r.iterations = st.iterations;
    }
    if(rc == OTF_OK) {
      r.converged = 1;
      rc = otf_plan_verify(plan, p, EXACT_TOL, r.method, &r.marginal_error, err);
    }
  } else {
    return OTF_FAIL(err, OTF_E_INVAL, "solver", "unknown solver %d", (int)opts->solver);
  }
  if(res)
    *res = r;
  return rc;
}
