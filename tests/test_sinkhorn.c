/* Sinkhorn: the vectorised exp, the fused scaling loop against its naive
 * transcription of POT, the log-domain form, and failure paths. Golden
 * comparisons with POT itself are in test_golden.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/sinkhorn.h"
#include "fusion/vexp.h"
#include "tests/support/testutil.h"

START_TEST(vexp_matches_libm) {
  tu_rng r = {42};
  enum { N = 200000 };
  double *x = malloc(N * sizeof(double)), *y = malloc(N * sizeof(double));
  for(int k = 0; k < N; k++)
    x[k] = -708.0 + 1417.0 * tu_uniform(&r);
  x[0] = 0.0;
  x[1] = -1e-300;
  x[2] = 1e-17;
  x[3] = -707.99;
  otf_vexp_scaled(y, x, 1.0, N);
  double worst = 0.0;
  for(int k = 0; k < N; k++) {
    double want = exp(x[k]);
    double rel = fabs(y[k] - want) / want;
    if(rel > worst)
      worst = rel;
  }
  ck_assert_msg(worst < 4e-16, "worst relative error %.3g", worst);
  ck_assert(y[0] == 1.0);
  double sp[5] = {-1000.0, 1000.0, NAN, -0.5, 2.0}, so[5];
  otf_vexp_scaled(so, sp, 2.0, 5);
  ck_assert(so[0] == 0.0);
  ck_assert(isinf(so[1]) && so[1] > 0);
  ck_assert(isnan(so[2]));
  ck_assert(fabs(so[3] - exp(-1.0)) < 1e-16);
  ck_assert(fabs(so[4] - exp(4.0)) < 4e-16 * exp(4.0));
  free(x);
  free(y);
}
END_TEST

static double *random_cost(tu_rng *r, size_t n, size_t m) {
  double *c = malloc(n * m * sizeof(double));
  tu_fill_uniform(r, c, n * m, 0.0, 1.0);
  return c;
}

static double *random_marginal(tu_rng *r, size_t n, double mass) {
  double *w = malloc(n * sizeof(double)), s = 0.0;
  for(size_t i = 0; i < n; i++)
    s += (w[i] = 0.1 + tu_uniform(r));
  for(size_t i = 0; i < n; i++)
    w[i] *= mass / s;
  return w;
}

START_TEST(fused_matches_naive) {
  static const size_t shapes[][2] = {{1, 1}, {1, 5}, {5, 1}, {7, 7}, {30, 20}, {64, 64}, {17, 90}};
  static const double regs[] = {0.01, 0.08, 0.5};
  tu_rng r = {7};
  int converged = 0;
  for(size_t s = 0; s < sizeof(shapes) / sizeof(*shapes); s++) {
    for(size_t q = 0; q < 3; q++) {
      for(int marg = 0; marg < 2; marg++) {
        size_t n = shapes[s][0], m = shapes[s][1];
        double *c = random_cost(&r, n, m);
        double *a = marg ? random_marginal(&r, n, 1.0) : NULL;
        double *b = marg ? random_marginal(&r, m, 1.0) : NULL;
        otf_ot_problem p = {.cost = c, .a = a, .b = b, .n = n, .m = m};
        otf_sinkhorn_opts o = {.reg = regs[q]};
        double *p1 = malloc(n * m * sizeof(double)), *p2 = malloc(n * m * sizeof(double));
        otf_sinkhorn_stats s1, s2;
        otf_error e;
        /* At reg 0.01 some of these do not converge in 1000 iterations;
         * both forms must then agree on that too, iterate for iterate. */
        otf_status r1 = otf_sinkhorn(p1, &s1, &p, &o, &e);
        otf_status r2 = otf_sinkhorn_naive(p2, &s2, &p, &o, &e);
        ck_assert_int_eq(r1, r2);
        ck_assert(r1 == OTF_OK || r1 == OTF_E_NOT_CONVERGED);
        ck_assert_int_eq(s1.log_domain, 0);
        ck_assert_uint_eq(s1.iterations, s2.iterations);
        ck_assert_int_eq(s1.converged, s2.converged);
        ck_assert(tu_close("fused vs naive plan", p1, p2, n * m, 1e-15, 1e-10));
        converged += s1.converged;
        if(s1.converged)
          ck_assert(s1.marginal_error < 1e-8);
        free(p1);
        free(p2);
        free(c);
        free(a);
        free(b);
      }
    }
  }
  ck_assert_int_ge(converged, 30); /* of 42 */
}
END_TEST

START_TEST(log_domain_reaches_the_same_plan) {
  tu_rng r = {11};
  size_t n = 20, m = 30;
  double *c = random_cost(&r, n, m);
  double *a = random_marginal(&r, n, 1.0), *b = random_marginal(&r, m, 1.0);
  otf_ot_problem p = {.cost = c, .a = a, .b = b, .n = n, .m = m};
  double *p1 = malloc(n * m * sizeof(double)), *p2 = malloc(n * m * sizeof(double));
  otf_sinkhorn_stats s1, s2;
  otf_sinkhorn_opts o = {.reg = 0.05, .max_iter = 100000, .stop_thr = 1e-13,
                         .mode = OTF_SINKHORN_SCALING};
  ck_assert_int_eq(otf_sinkhorn(p1, &s1, &p, &o, NULL), OTF_OK);
  o.mode = OTF_SINKHORN_LOG;
  ck_assert_int_eq(otf_sinkhorn(p2, &s2, &p, &o, NULL), OTF_OK);
  ck_assert_int_eq(s2.log_domain, 1);
  ck_assert(s1.converged && s2.converged);
  ck_assert(tu_close("log vs scaling plan", p2, p1, n * m, 1e-12, 1e-8));
  free(p1);
  free(p2);
  free(c);
  free(a);
  free(b);
}
END_TEST

START_TEST(tiny_reg_switches_to_log_domain) {
  tu_rng r = {5};
  size_t n = 20;
  double *c = random_cost(&r, n, n);
  otf_ot_problem p = {.cost = c, .n = n, .m = n};
  double *plan = malloc(n * n * sizeof(double));
  otf_sinkhorn_stats st;
  otf_error e;
  otf_sinkhorn_opts o = {.reg = 1e-3};
  ck_assert_int_eq(otf_sinkhorn(plan, &st, &p, &o, &e), OTF_OK);
  ck_assert_int_eq(st.log_domain, 1);
  ck_assert_int_eq(st.converged, 1);
  ck_assert(st.marginal_error < 1e-9);
  for(size_t k = 0; k < n * n; k++)
    ck_assert(isfinite(plan[k]) && plan[k] >= 0.0);
  /* The scaling form alone cannot do it: exp(-C/1e-3) underflows. */
  o.mode = OTF_SINKHORN_SCALING;
  otf_status rc = otf_sinkhorn(plan, &st, &p, &o, &e);
  ck_assert_msg(rc == OTF_E_NOT_CONVERGED || rc == OTF_E_NUMERIC, "got %s",
                otf_status_name(rc));
  ck_assert(strlen(e.message) > 0);
  free(plan);
  free(c);
}
END_TEST

START_TEST(zero_marginal_rows_get_no_mass) {
  size_t n = 4, m = 3;
  double c[12] = {0.1, 0.5, 0.9, 0.3, 0.2, 0.7, 0.4, 0.4, 0.4, 0.8, 0.6, 0.1};
  double a[4] = {0.5, 0.0, 0.25, 0.25}, b[3] = {0.2, 0.3, 0.5};
  otf_ot_problem p = {.cost = c, .a = a, .b = b, .n = n, .m = m};
  double plan[12];
  for(int mode = OTF_SINKHORN_SCALING; mode <= OTF_SINKHORN_LOG; mode++) {
    otf_sinkhorn_opts o = {.reg = 0.1, .mode = (otf_sinkhorn_mode)mode};
    otf_sinkhorn_stats st;
    ck_assert_int_eq(otf_sinkhorn(plan, &st, &p, &o, NULL), OTF_OK);
    for(size_t j = 0; j < m; j++)
      ck_assert(plan[1 * m + j] == 0.0);
    ck_assert(otf_plan_marginal_error(plan, &p) < 1e-9);
  }
}
END_TEST

START_TEST(bad_input_is_rejected) {
  double c[4] = {0.1, 0.2, 0.3, 0.4}, plan[4];
  otf_ot_problem p = {.cost = c, .n = 2, .m = 2};
  otf_sinkhorn_opts o = {.reg = 0.1};
  otf_error e;
  c[2] = NAN;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_NUMERIC);
  ck_assert_str_eq(e.message, "cost[1,0] is NaN");
  c[2] = INFINITY;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_NUMERIC);
  c[2] = -0.5;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_NUMERIC);
  c[2] = 0.3;
  o.reg = 0.0;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_INVAL);
  o.reg = NAN;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_INVAL);
  o.reg = 0.1;
  double a[2] = {0.5, 0.5}, b[2] = {0.5, 0.6};
  p.a = a;
  p.b = b;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_INFEASIBLE);
  p.a = p.b = NULL;
  p.n = 0;
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, &o, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_sinkhorn(plan, NULL, &p, NULL, &e), OTF_E_INVAL);
}
END_TEST

START_TEST(running_out_of_iterations_is_an_error) {
  tu_rng r = {3};
  size_t n = 30;
  double *c = random_cost(&r, n, n);
  otf_ot_problem p = {.cost = c, .n = n, .m = n};
  double *plan = malloc(n * n * sizeof(double));
  otf_sinkhorn_opts o = {.reg = 0.01, .max_iter = 1, .accept_tol = 1e-15};
  otf_sinkhorn_stats st;
  otf_error e;
  ck_assert_int_eq(otf_sinkhorn(plan, &st, &p, &o, &e), OTF_E_NOT_CONVERGED);
  ck_assert_int_eq(st.converged, 0);
  ck_assert_uint_eq(st.iterations, 1);
  free(plan);
  free(c);
}
END_TEST

/* With finish set, a scaling solve that runs out of iterations is redone
 * in the log domain (Newton finish) instead of failing; without it the
 * result stays POT's unconverged iterate and an error. */
START_TEST(finish_rescues_a_slow_scaling_solve) {
  tu_rng r = {21};
  size_t n = 25;
  double *c = random_cost(&r, n, n);
  otf_ot_problem p = {.cost = c, .n = n, .m = n};
  double *plan = malloc(n * n * sizeof(double));
  otf_sinkhorn_opts o = {.reg = 0.01, .max_iter = 20};
  otf_sinkhorn_stats st;
  ck_assert_int_eq(otf_sinkhorn(plan, &st, &p, &o, NULL), OTF_E_NOT_CONVERGED);
  ck_assert_int_eq(st.log_domain, 0);
  o.finish = 1;
  ck_assert_int_eq(otf_sinkhorn(plan, &st, &p, &o, NULL), OTF_OK);
  ck_assert_int_eq(st.log_domain, 1);
  ck_assert(st.marginal_error < 1e-9);
  free(plan);
  free(c);
}
END_TEST

START_TEST(allocation_failures_are_clean) {
  tu_rng r = {9};
  size_t n = 12, m = 9;
  double *c = random_cost(&r, n, m);
  double *plan = malloc(n * m * sizeof(double));
  otf_ot_problem p = {.cost = c, .n = n, .m = m};
  otf_sinkhorn_opts o = {.reg = 0.08};
  int failures = 0;
  for(long k = 1; k <= 4; k++) {
    otf_alloc_fail_at(k);
    otf_status rc = otf_sinkhorn(plan, NULL, &p, &o, NULL);
    ck_assert(rc == OTF_OK || rc == OTF_E_NOMEM);
    failures += rc == OTF_E_NOMEM;
    otf_alloc_fail_at(k);
    rc = otf_sinkhorn_naive(plan, NULL, &p, &o, NULL);
    ck_assert(rc == OTF_OK || rc == OTF_E_NOMEM);
  }
  otf_alloc_fail_at(0);
  ck_assert_int_ge(failures, 1);
  free(plan);
  free(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("sinkhorn");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, vexp_matches_libm);
  tcase_add_test(tc, fused_matches_naive);
  tcase_add_test(tc, log_domain_reaches_the_same_plan);
  tcase_add_test(tc, tiny_reg_switches_to_log_domain);
  tcase_add_test(tc, zero_marginal_rows_get_no_mass);
  tcase_add_test(tc, bad_input_is_rejected);
  tcase_add_test(tc, running_out_of_iterations_is_an_error);
  tcase_add_test(tc, finish_rescues_a_slow_scaling_solve);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
