/* Exact transport: network simplex (otf_emd) against the successive
 * shortest path oracle (otf_emd_naive) and brute force, plus the contract's
 * edge cases (shapes, zeros, ties, rescaling, pivot cap, determinism,
 * allocation failure). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "fusion/ot_problem.h"
#include "fusion/transport.h"
#include "tests/support/testutil.h"

/* Kinds of random cost matrices the comparison tests draw. */
enum cost_kind { COST_UNIFORM, COST_INT_TIES, COST_ALL_EQUAL, COST_DUP_ROWS,
                 COST_KINDS };

/* Fills cost [n, m] with the given kind. */
static void fill_cost(tu_rng *r, double *c, size_t n, size_t m, int kind) {
  for(size_t e = 0; e < n * m; e++) {
    switch(kind) {
    case COST_UNIFORM: c[e] = tu_uniform(r); break;
    case COST_INT_TIES: c[e] = (double)(tu_next(r) % 4); break;
    case COST_ALL_EQUAL: c[e] = 2.5; break;
    default: c[e] = (double)(tu_next(r) % 5); break;
    }
  }
  if(kind == COST_DUP_ROWS && n > 1) /* every other row copies row 0 */
    for(size_t i = 1; i < n; i += 2)
      memcpy(c + i * m, c, m * sizeof(double));
}

/* Random marginal of length k with total mass `mass`; with zeros set, about
 * a third of the entries are 0 (never all). */
static void fill_marginal(tu_rng *r, double *w, size_t k, double mass,
                          int zeros) {
  double s = 0.0;
  for(size_t i = 0; i < k; i++) {
    w[i] = 0.05 + tu_uniform(r);
    if(zeros && k > 1 && tu_next(r) % 3 == 0)
      w[i] = 0.0;
    s += w[i];
  }
  if(s == 0.0) {
    w[0] = 1.0;
    s = 1.0;
  }
  for(size_t i = 0; i < k; i++)
    w[i] *= mass / s;
}

/* Non-zero entries of x [len]: a basic plan has at most n+m-1. */
static size_t count_nonzeros(const double *x, size_t len) {
  size_t c = 0;
  for(size_t i = 0; i < len; i++)
    c += x[i] != 0.0;
  return c;
}

/* Checks one plan: entries finite and >= 0, marginal error <= 1e-12,
 * at most n+m-1 non-zeros, objective consistent with the plan. */
static void check_plan(const double *plan, const otf_ot_problem *p,
                       const otf_emd_stats *st, int basic) {
  for(size_t e = 0; e < p->n * p->m; e++) {
    ck_assert_msg(isfinite(plan[e]) && plan[e] >= 0.0, "plan[%zu] = %g", e,
                  plan[e]);
  }
  double me = otf_plan_marginal_error(plan, p);
  ck_assert_msg(me <= 1e-12, "marginal error %g (%zu x %zu)", me, p->n, p->m);
  if(basic)
    ck_assert_uint_le(count_nonzeros(plan, p->n * p->m), p->n + p->m - 1);
  double obj = otf_plan_objective(plan, p);
  ck_assert_msg(fabs(obj - st->objective) <= 1e-12 * (1.0 + fabs(obj)),
                "stats objective %.17g vs plan %.17g", st->objective, obj);
}

/* Solves p with both solvers and compares objectives (1e-9 relative). */
static void compare_with_naive(const otf_ot_problem *p) {
  size_t nm = p->n * p->m;
  double *pe = malloc(nm * sizeof(double)), *pn = malloc(nm * sizeof(double));
  ck_assert_ptr_nonnull(pe);
  ck_assert_ptr_nonnull(pn);
  otf_emd_stats se, sn;
  otf_error err;
  otf_status rc = otf_emd(pe, &se, p, 0, &err);
  ck_assert_msg(rc == OTF_OK, "otf_emd: %s", err.message);
  rc = otf_emd_naive(pn, &sn, p, 0, &err);
  ck_assert_msg(rc == OTF_OK, "otf_emd_naive: %s", err.message);
  check_plan(pe, p, &se, 1);
  check_plan(pn, p, &sn, 0);
  double scale = fmax(fabs(sn.objective), 1e-300);
  ck_assert_msg(fabs(se.objective - sn.objective) <= 1e-9 * scale + 1e-15,
                "%zu x %zu: emd %.17g naive %.17g", p->n, p->m, se.objective,
                sn.objective);
  free(pe);
  free(pn);
}

/* The smallest problem: one arc carrying all the mass. */
START_TEST(one_by_one) {
  double c = 3.0, a = 2.0, b = 2.0, plan = -1.0;
  otf_ot_problem p = {&c, &a, &b, 1, 1};
  otf_emd_stats st;
  ck_assert_int_eq(otf_emd(&plan, &st, &p, 0, NULL), OTF_OK);
  ck_assert(plan == 2.0);
  ck_assert(st.objective == 6.0);
  ck_assert_int_eq(otf_emd_naive(&plan, &st, &p, 0, NULL), OTF_OK);
  ck_assert(plan == 2.0);
}
END_TEST

/* Only one feasible plan exists for 1 x m and n x 1; uniform too. */
START_TEST(single_row_and_column) {
  /* 1 x m: the plan is b; n x 1: the plan is a. */
  tu_rng r = {11};
  double c[7], a[7], plan[7];
  tu_fill_uniform(&r, c, 7, 0.0, 1.0);
  fill_marginal(&r, a, 7, 1.0, 1);
  double one = 1.0;
  otf_ot_problem row = {c, &one, a, 1, 7};
  otf_emd_stats st;
  ck_assert_int_eq(otf_emd(plan, &st, &row, 0, NULL), OTF_OK);
  ck_assert(tu_close("1 x m", plan, a, 7, 1e-15, 0.0));
  otf_ot_problem col = {c, a, &one, 7, 1};
  ck_assert_int_eq(otf_emd(plan, &st, &col, 0, NULL), OTF_OK);
  ck_assert(tu_close("n x 1", plan, a, 7, 1e-15, 0.0));
  otf_ot_problem uni = {c, NULL, NULL, 1, 7};
  ck_assert_int_eq(otf_emd(plan, &st, &uni, 0, NULL), OTF_OK);
  for(int j = 0; j < 7; j++)
    ck_assert(fabs(plan[j] - 1.0 / 7.0) <= 1e-15);
}
END_TEST

/* Many random small problems of every cost kind, square and rectangular,
 * uniform, random and zero-containing marginals. */
START_TEST(matches_naive_on_random_problems) {
  tu_rng r = {2024 + (uint64_t)_i};
  double c[24 * 24], a[24], b[24];
  for(int rep = 0; rep < 60; rep++) {
    size_t n = 1 + tu_next(&r) % 12, m = 1 + tu_next(&r) % 12;
    if(_i == 1) { /* larger */
      n = 10 + tu_next(&r) % 15;
      m = 10 + tu_next(&r) % 15;
    }
    int kind = (int)(tu_next(&r) % COST_KINDS);
    int marg = (int)(tu_next(&r) % 3); /* 0 uniform, 1 random, 2 zeros */
    fill_cost(&r, c, n, m, kind);
    fill_marginal(&r, a, n, 1.0, marg == 2);
    fill_marginal(&r, b, m, 1.0, marg == 2);
    otf_ot_problem p = {c, marg ? a : NULL, marg ? b : NULL, n, m};
    compare_with_naive(&p);
  }
}
END_TEST

/* Square uniform problems: objective equals min over permutations / n. */
START_TEST(matches_brute_force_permutations) {
  tu_rng r = {77};
  double c[36], plan[36];
  for(int rep = 0; rep < 40; rep++) {
    size_t n = 1 + (size_t)rep % 6;
    fill_cost(&r, c, n, n, rep % 2 ? COST_INT_TIES : COST_UNIFORM);
    /* Heap's algorithm over all permutations. */
    int perm[6], cnt[6] = {0};
    for(size_t i = 0; i < n; i++)
      perm[i] = (int)i;
    double best = INFINITY;
    for(size_t i = 0;;) {
      double s = 0.0;
      for(size_t k = 0; k < n; k++)
        s += c[k * n + (size_t)perm[k]];
      best = fmin(best, s);
      while(i < n && cnt[i] >= (int)i) {
        cnt[i] = 0;
        i++;
      }
      if(i >= n)
        break;
      size_t sw = i % 2 ? (size_t)cnt[i] : 0;
      int t = perm[sw];
      perm[sw] = perm[i];
      perm[i] = t;
      cnt[i]++;
      i = 1;
    }
    otf_ot_problem p = {c, NULL, NULL, n, n};
    otf_emd_stats st;
    otf_error err;
    ck_assert_msg(otf_emd(plan, &st, &p, 0, &err) == OTF_OK, "%s", err.message);
    check_plan(plan, &p, &st, 1);
    ck_assert_msg(fabs(st.objective - best / (double)n) <= 1e-12,
                  "n=%zu emd %.17g brute %.17g", n, st.objective,
                  best / (double)n);
  }
}
END_TEST

/* Degenerate structure: all-equal costs and zero marginals on both sides. */
START_TEST(degenerate_inputs) {
  double c[30], a[5] = {0.2, 0.0, 0.3, 0.0, 0.5}, b[6] = {0, 0.5, 0, 0.25, 0.25, 0};
  for(int k = 0; k < 30; k++)
    c[k] = 1.0;
  otf_ot_problem p = {c, a, b, 5, 6};
  compare_with_naive(&p);
  /* All-zero costs. */
  for(int k = 0; k < 30; k++)
    c[k] = 0.0;
  compare_with_naive(&p);
  double plan[30];
  otf_emd_stats st;
  ck_assert_int_eq(otf_emd(plan, &st, &p, 0, NULL), OTF_OK);
  ck_assert(st.objective == 0.0);
}
END_TEST

/* b within OTF_OT_MASS_TOL of a's mass is rescaled: the plan's column sums
 * are b * sum(a)/sum(b). */
START_TEST(rescales_b_within_tolerance) {
  tu_rng r = {5};
  double c[8 * 5], a[8], b[5], plan[8 * 5], bs[5];
  tu_fill_uniform(&r, c, 40, 0.0, 1.0);
  fill_marginal(&r, a, 8, 1.0, 0);
  fill_marginal(&r, b, 5, 1.0 + 5e-7, 0);
  double sb = 0.0;
  for(int j = 0; j < 5; j++)
    sb += b[j];
  for(int j = 0; j < 5; j++)
    bs[j] = b[j] / sb;
  otf_ot_problem p = {c, a, b, 8, 5};
  otf_emd_stats st;
  otf_error err;
  ck_assert_msg(otf_emd(plan, &st, &p, 0, &err) == OTF_OK, "%s", err.message);
  otf_ot_problem ps = {c, a, bs, 8, 5};
  ck_assert(otf_plan_marginal_error(plan, &ps) <= 1e-12);
  double pn[40];
  otf_emd_stats sn;
  ck_assert_int_eq(otf_emd_naive(pn, &sn, &p, 0, NULL), OTF_OK);
  ck_assert(otf_plan_marginal_error(pn, &ps) <= 1e-12);
  ck_assert(fabs(st.objective - sn.objective) <= 1e-9 * sn.objective);
  /* Beyond the tolerance: an error, not a plan. */
  b[0] += 1e-3;
  ck_assert_int_eq(otf_emd(plan, &st, &p, 0, &err), OTF_E_INFEASIBLE);
  ck_assert_int_eq(otf_emd_naive(plan, &st, &p, 0, &err), OTF_E_INFEASIBLE);
}
END_TEST

/* Called on a bad problem, both solvers return an error, never crash. */
START_TEST(rejects_bad_problems) {
  double c[4] = {0, 1, 1, NAN}, plan[4];
  otf_ot_problem p = {c, NULL, NULL, 2, 2};
  otf_error err;
  ck_assert_int_eq(otf_emd(plan, NULL, &p, 0, &err), OTF_E_NUMERIC);
  ck_assert_int_eq(otf_emd_naive(plan, NULL, &p, 0, &err), OTF_E_NUMERIC);
  ck_assert_int_eq(otf_emd(plan, NULL, NULL, 0, &err), OTF_E_INVAL);
  otf_ot_problem empty = {c, NULL, NULL, 0, 2};
  ck_assert_int_eq(otf_emd(plan, NULL, &empty, 0, &err), OTF_E_INVAL);
  c[3] = 1.0;
  ck_assert_int_eq(otf_emd(NULL, NULL, &p, 0, &err), OTF_E_INVAL);
}
END_TEST

/* Hitting max_iter is OTF_E_ITER_LIMIT, never a suboptimal plan. */
START_TEST(pivot_cap_is_an_error) {
  tu_rng r = {9};
  double c[20 * 15], plan[20 * 15];
  tu_fill_uniform(&r, c, 300, 0.0, 1.0);
  otf_ot_problem p = {c, NULL, NULL, 20, 15};
  otf_error err;
  otf_emd_stats st;
  ck_assert_int_eq(otf_emd(plan, &st, &p, 1, &err), OTF_E_ITER_LIMIT);
  ck_assert_int_eq(err.code, OTF_E_ITER_LIMIT);
  ck_assert_ptr_nonnull(strstr(err.message, "limit"));
  ck_assert_int_eq(otf_emd_naive(plan, &st, &p, 1, &err), OTF_E_ITER_LIMIT);
  /* The exact pivot count found by an uncapped run is enough. */
  ck_assert_int_eq(otf_emd(plan, &st, &p, 0, &err), OTF_OK);
  uint64_t need = st.iterations;
  ck_assert_int_eq(otf_emd(plan, &st, &p, need, &err), OTF_OK);
  ck_assert_int_eq(otf_emd(plan, &st, &p, need - 1, &err), OTF_E_ITER_LIMIT);
}
END_TEST

/* Same input, bit-identical plan and pivot count (ties everywhere). */
START_TEST(is_deterministic) {
  tu_rng r = {31};
  size_t n = 40, m = 33;
  double *c = malloc(n * m * sizeof(double));
  double *p1 = malloc(n * m * sizeof(double)), *p2 = malloc(n * m * sizeof(double));
  ck_assert(c && p1 && p2);
  double a[40], b[33];
  fill_cost(&r, c, n, m, COST_INT_TIES);
  fill_marginal(&r, a, n, 1.0, 1);
  fill_marginal(&r, b, m, 1.0, 1);
  otf_ot_problem p = {c, a, b, n, m};
  otf_emd_stats s1, s2;
  ck_assert_int_eq(otf_emd(p1, &s1, &p, 0, NULL), OTF_OK);
  ck_assert_int_eq(otf_emd(p2, &s2, &p, 0, NULL), OTF_OK);
  ck_assert(memcmp(p1, p2, n * m * sizeof(double)) == 0);
  ck_assert_uint_eq(s1.iterations, s2.iterations);
  free(c);
  free(p1);
  free(p2);
}
END_TEST

/* A medium problem (uniform random costs, random marginals) stays basic and
 * feasible; also a check that pivoting with long paths works. */
START_TEST(medium_problem_is_consistent) {
  tu_rng r = {101};
  size_t n = 150, m = 90;
  double *c = malloc(n * m * sizeof(double)), *plan = malloc(n * m * sizeof(double));
  ck_assert(c && plan);
  double a[150], b[90];
  tu_fill_uniform(&r, c, n * m, 0.0, 1.0);
  fill_marginal(&r, a, n, 1.0, 1);
  fill_marginal(&r, b, m, 1.0, 0);
  otf_ot_problem p = {c, a, b, n, m};
  otf_emd_stats st;
  otf_error err;
  ck_assert_msg(otf_emd(plan, &st, &p, 0, &err) == OTF_OK, "%s", err.message);
  check_plan(plan, &p, &st, 1);
  fill_marginal(&r, a, 40, 1.0, 1);
  compare_with_naive(&(otf_ot_problem){c, a, b, 40, 90});
  free(c);
  free(plan);
}
END_TEST

/* Every allocation of a solve failing in turn yields OTF_E_NOMEM or OTF_OK
 * (the latter if the call is not reached), never a crash or leak. */
START_TEST(allocation_failures_are_clean) {
  tu_rng r = {3};
  double c[9 * 7], plan[9 * 7], a[9], b[7];
  tu_fill_uniform(&r, c, 63, 0.0, 1.0);
  fill_marginal(&r, a, 9, 1.0, 1);
  fill_marginal(&r, b, 7, 1.0, 1);
  otf_ot_problem p = {c, a, b, 9, 7};
  for(int which = 0; which < 2; which++) {
    long before = otf_alloc_calls();
    otf_emd_stats st;
    otf_status rc = which ? otf_emd_naive(plan, &st, &p, 0, NULL)
                          : otf_emd(plan, &st, &p, 0, NULL);
    ck_assert_int_eq(rc, OTF_OK);
    long count = otf_alloc_calls() - before;
    ck_assert_int_gt(count, 0);
    for(long k = 1; k <= count; k++) {
      otf_error err;
      otf_alloc_fail_at(k);
      rc = which ? otf_emd_naive(plan, &st, &p, 0, &err)
                 : otf_emd(plan, &st, &p, 0, &err);
      otf_alloc_fail_at(0);
      ck_assert_msg(rc == OTF_E_NOMEM || rc == OTF_OK, "k=%ld rc=%d", k, rc);
      if(rc == OTF_E_NOMEM)
        ck_assert_int_eq(err.code, OTF_E_NOMEM);
    }
  }
}
END_TEST

/* One tcase; the timeout leaves room for ASan builds. */
int main(void) {
  Suite *s = suite_create("transport");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, one_by_one);
  tcase_add_test(tc, single_row_and_column);
  tcase_add_loop_test(tc, matches_naive_on_random_problems, 0, 2);
  tcase_add_test(tc, matches_brute_force_permutations);
  tcase_add_test(tc, degenerate_inputs);
  tcase_add_test(tc, rescales_b_within_tolerance);
  tcase_add_test(tc, rejects_bad_problems);
  tcase_add_test(tc, pivot_cap_is_an_error);
  tcase_add_test(tc, is_deterministic);
  tcase_add_test(tc, medium_problem_is_consistent);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
