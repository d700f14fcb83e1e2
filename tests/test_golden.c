/* Golden tests: every fixture in tests/data/ot (written by
 * tools/gen_ot_fixtures.py with POT 0.8.2 and scipy) solved through
 * otf_ot_solve and compared with the reference: exact objectives to 1e-9
 * relative, Sinkhorn plans to 1e-6 (relative to the largest entry) with
 * the same iteration count, and the tiny-reg case where POT's scaling form
 * fails. Also the property every plan must have: its marginals. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/ot.h"
#include "fusion/transport.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

typedef struct fixture {
  otf_st_file *f;
  double *cost, *a, *b;
  size_t n, m;
} fixture;

static double *load_opt(otf_st_file *f, const char *name, uint64_t want) {
  const otf_st_tensor *t = otf_st_find(f, name);
  if(!t)
    return NULL;
  ck_assert_uint_eq(t->numel, want);
  double *d = malloc(t->numel * sizeof(double));
  ck_assert_int_eq(otf_st_read_f64(d, t, NULL), OTF_OK);
  return d;
}

static double scalar(otf_st_file *f, const char *name) {
  const otf_st_tensor *t = otf_st_find(f, name);
  ck_assert_msg(t != NULL, "fixture lacks '%s'", name);
  if(t->dtype == OTF_DT_I64) {
    int64_t v;
    memcpy(&v, t->data, 8);
    return (double)v;
  }
  double v;
  ck_assert_int_eq(otf_st_read_f64(&v, t, NULL), OTF_OK);
  return v;
}

static void fixture_open(fixture *fx, const char *file) {
  char path[512];
  snprintf(path, sizeof(path), "%s/ot/%s", tu_data_dir(), file);
  otf_error e;
  ck_assert_msg(otf_st_open(&fx->f, path, &e) == OTF_OK, "%s: %s", path, e.message);
  const otf_st_tensor *c = otf_st_find(fx->f, "cost");
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(c->rank, 2);
  fx->n = c->shape[0];
  fx->m = c->shape[1];
  fx->cost = load_opt(fx->f, "cost", fx->n * fx->m);
  fx->a = load_opt(fx->f, "a", fx->n);
  fx->b = load_opt(fx->f, "b", fx->m);
}

static void fixture_close(fixture *fx) {
  free(fx->cost);
  free(fx->a);
  free(fx->b);
  otf_st_close(fx->f);
}

/* Calls fn on every fixture file whose name starts with prefix; returns
 * how many there were. */
static int for_each(const char *prefix, void (*fn)(const char *)) {
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/ot", tu_data_dir());
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "cannot open %s", dir);
  int count = 0;
  struct dirent *de;
  while((de = readdir(d))) {
    if(strncmp(de->d_name, prefix, strlen(prefix)) || !strstr(de->d_name, ".safetensors"))
      continue;
    fn(de->d_name);
    count++;
  }
  closedir(d);
  return count;
}

static void check_exact(const char *file) {
  fixture fx;
  fixture_open(&fx, file);
  otf_ot_problem p = {.cost = fx.cost, .a = fx.a, .b = fx.b, .n = fx.n, .m = fx.m};
  double want = scalar(fx.f, "objective");
  double *plan = malloc(fx.n * fx.m * sizeof(double));
  otf_ot_opts o = {.solver = OTF_SOLVER_EXACT};
  otf_ot_result r;
  otf_error e;
  ck_assert_msg(otf_ot_solve(plan, &r, &p, &o, &e) == OTF_OK, "%s: %s", file, e.message);
  ck_assert_msg(fabs(r.objective - want) <= 1e-9 * fabs(want) + 1e-15,
                "%s (%s): objective %.17g, POT %.17g", file, r.method, r.objective, want);
  ck_assert_msg(fabs(otf_plan_objective(plan, &p) - want) <= 1e-9 * fabs(want) + 1e-15,
                "%s: plan objective disagrees", file);
  ck_assert_msg(r.marginal_error <= 1e-12, "%s: marginal error %g", file, r.marginal_error);
  size_t nnz = 0;
  for(size_t k = 0; k < fx.n * fx.m; k++) {
    ck_assert(plan[k] >= 0.0);
    nnz += plan[k] > 0.0;
  }
  ck_assert_msg(nnz <= fx.n + fx.m - 1, "%s: %zu non-zeros, not a basic solution", file, nnz);
  /* Square uniform cases also through the network simplex directly. */
  if(!fx.a && !fx.b && fx.n == fx.m) {
    ck_assert_str_eq(r.method, "assignment");
    otf_emd_stats st;
    ck_assert_int_eq(otf_emd(plan, &st, &p, 0, &e), OTF_OK);
    ck_assert_msg(fabs(st.objective - want) <= 1e-9 * fabs(want) + 1e-15,
                  "%s: network simplex objective %.17g, POT %.17g", file, st.objective, want);
  }
  free(plan);
  fixture_close(&fx);
}

START_TEST(exact_objectives_match_pot) {
  ck_assert_int_ge(for_each("exact_", check_exact), 25);
}
END_TEST

static void check_sinkhorn(const char *file) {
  if(strstr(file, "tinyreg"))
    return; /* its own test below */
  fixture fx;
  fixture_open(&fx, file);
  otf_ot_problem p = {.cost = fx.cost, .a = fx.a, .b = fx.b, .n = fx.n, .m = fx.m};
  size_t cells = fx.n * fx.m;
  double *want = load_opt(fx.f, "plan", cells);
  double reg = scalar(fx.f, "reg");
  int pot_iters = (int)scalar(fx.f, "iterations");
  int pot_conv = (int)scalar(fx.f, "converged");
  double *plan = malloc(cells * sizeof(double));
  otf_ot_opts o = {.solver = OTF_SOLVER_SINKHORN, .sinkhorn = {.reg = reg}};
  otf_ot_result r;
  otf_error e;
  otf_status rc = otf_ot_solve(plan, &r, &p, &o, &e);
  /* POT returns its last iterate when it runs out; we return it too but
   * call it what it is unless it meets the marginals. */
  ck_assert_msg(rc == OTF_OK || (!pot_conv && rc == OTF_E_NOT_CONVERGED), "%s: %s", file,
                e.message);
  ck_assert_str_eq(r.method, "sinkhorn");
  ck_assert_msg((int)r.iterations == pot_iters, "%s: %d iterations, POT %d", file,
                (int)r.iterations, pot_iters);
  ck_assert_int_eq(r.converged, pot_conv);
  double mx = 0.0;
  for(size_t k = 0; k < cells; k++)
    mx = fmax(mx, want[k]);
  ck_assert_msg(tu_close(file, plan, want, cells, 1e-6 * mx, 0.0), "%s", file);
  /* And much closer than the spec asks: the same arithmetic up to order. */
  ck_assert_msg(tu_close(file, plan, want, cells, 1e-12 * mx, 1e-9), "%s (tight)", file);
  free(want);
  free(plan);
  fixture_close(&fx);
}

START_TEST(sinkhorn_plans_match_pot) {
  ck_assert_int_ge(for_each("sinkhorn_", check_sinkhorn) - 1, 20); /* minus tinyreg */
}
END_TEST

START_TEST(tiny_reg_where_pot_scaling_fails) {
  fixture fx;
  fixture_open(&fx, "sinkhorn_tinyreg.safetensors");
  otf_ot_problem p = {.cost = fx.cost, .n = fx.n, .m = fx.m};
  size_t cells = fx.n * fx.m;
  double *want = load_opt(fx.f, "plan", cells);
  double reg = scalar(fx.f, "reg");
  ck_assert(reg <= 1e-3);
  /* The reference documents that POT's scaling form fails here. */
  double pot_err = scalar(fx.f, "pot_scaling_marginal_error");
  ck_assert_msg(!(pot_err < 1e-3), "POT's scaling error %g: the case is not hard", pot_err);
  double *plan = malloc(cells * sizeof(double));
  otf_ot_opts o = {.solver = OTF_SOLVER_SINKHORN, .sinkhorn = {.reg = reg}};
  otf_ot_result r;
  otf_error e;
  ck_assert_msg(otf_ot_solve(plan, &r, &p, &o, &e) == OTF_OK, "%s", e.message);
  ck_assert_str_eq(r.method, "sinkhorn-log");
  ck_assert_int_eq(r.converged, 1);
  ck_assert(r.marginal_error < 1e-9);
  ck_assert(tu_close("tinyreg plan", plan, want, cells, 1e-6 / (double)cells, 1e-6));
  /* Near the exact optimum, as reg -> 0 should be. */
  double exact = scalar(fx.f, "exact_objective");
  ck_assert(r.objective >= exact - 1e-12 && r.objective <= exact + 0.01);
  /* Forcing the scaling form reproduces POT's failure as an error. */
  o.sinkhorn.mode = OTF_SINKHORN_SCALING;
  otf_status rc = otf_ot_solve(plan, &r, &p, &o, &e);
  ck_assert(rc == OTF_E_NOT_CONVERGED || rc == OTF_E_NUMERIC);
  free(want);
  free(plan);
  fixture_close(&fx);
}
END_TEST

START_TEST(marginals_of_every_plan) {
  /* Property test on random problems of many shapes, both solvers. */
  tu_rng r = {2024};
  for(int trial = 0; trial < 60; trial++) {
    size_t n = 1 + tu_next(&r) % 40, m = 1 + tu_next(&r) % 40;
    int uniform = trial % 3 == 0;
    double *c = malloc(n * m * sizeof(double)), *a = malloc(n * sizeof(double)),
           *b = malloc(m * sizeof(double)), *plan = malloc(n * m * sizeof(double));
    tu_fill_uniform(&r, c, n * m, 0.0, 1.0);
    double sa = 0, sb = 0;
    for(size_t i = 0; i < n; i++)
      sa += (a[i] = tu_uniform(&r) < 0.1 ? 0.0 : tu_uniform(&r));
    for(size_t j = 0; j < m; j++)
      sb += (b[j] = 0.05 + tu_uniform(&r));
    if(sa == 0.0)
      sa += (a[0] = 1.0);
    for(size_t i = 0; i < n; i++)
      a[i] /= sa;
    for(size_t j = 0; j < m; j++)
      b[j] /= sb;
    otf_ot_problem p = {.cost = c, .a = uniform ? NULL : a, .b = uniform ? NULL : b,
                        .n = n, .m = m};
    for(int s = 0; s < 2; s++) {
      otf_ot_opts o = {.solver = s ? OTF_SOLVER_SINKHORN : OTF_SOLVER_EXACT,
                       .sinkhorn = {.reg = 0.1}};
      otf_ot_result res;
      otf_error e;
      ck_assert_msg(otf_ot_solve(plan, &res, &p, &o, &e) == OTF_OK, "%zux%zu: %s", n, m,
                    e.message);
      double err = otf_plan_marginal_error(plan, &p);
      ck_assert_msg(err <= (s ? 1e-6 : 1e-12), "%zux%zu %s: marginal error %g", n, m,
                    res.method, err);
      for(size_t k = 0; k < n * m; k++)
        ck_assert(plan[k] >= 0.0 && isfinite(plan[k]));
    }
    free(c);
    free(a);
    free(b);
    free(plan);
  }
}
END_TEST

START_TEST(bad_costs_are_rejected_by_every_solver) {
  double c[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, plan[6];
  static const double bad[] = {NAN, INFINITY, -INFINITY, -1e-3};
  static const char *const what[] = {"NaN", "infinite", "infinite", "negative"};
  for(size_t k = 0; k < 4; k++) {
    c[4] = bad[k];
    for(int s = 0; s < 2; s++) {
      for(size_t m = 2; m <= 3; m++) {
        otf_ot_problem p = {.cost = c, .n = 6 / m, .m = m};
        otf_ot_opts o = {.solver = s ? OTF_SOLVER_SINKHORN : OTF_SOLVER_EXACT,
                         .sinkhorn = {.reg = 0.1}};
        otf_error e;
        ck_assert_int_eq(otf_ot_solve(plan, NULL, &p, &o, &e), OTF_E_NUMERIC);
        ck_assert_msg(strstr(e.message, what[k]) && strstr(e.message, "cost["),
                      "message: %s", e.message);
      }
    }
  }
}
END_TEST

START_TEST(allocation_failure_loop) {
  /* Every allocation of create/solve/destroy, failed in turn: a clean
   * OTF_E_NOMEM or success, never a crash or a leak (ASan checks). */
  tu_rng r = {77};
  size_t n = 9, m = 7;
  double *c = malloc(n * n * sizeof(double)), *plan = malloc(n * n * sizeof(double));
  tu_fill_uniform(&r, c, n * n, 0.0, 1.0);
  double a[9] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2};
  otf_ot_problem probs[3] = {{.cost = c, .n = n, .m = n},
                             {.cost = c, .n = n, .m = m},
                             {.cost = c, .a = a, .n = n, .m = n}};
  for(int s = 0; s < 2; s++) {
    for(int q = 0; q < 3; q++) {
      otf_ot_opts o = {.solver = s ? OTF_SOLVER_SINKHORN : OTF_SOLVER_EXACT,
                       .sinkhorn = {.reg = 0.05}};
      long before = otf_alloc_calls();
      ck_assert_int_eq(otf_ot_solve(plan, NULL, &probs[q], &o, NULL), OTF_OK);
      long calls = otf_alloc_calls() - before;
      ck_assert_int_ge(calls, 1);
      for(long k = 1; k <= calls; k++) {
        otf_alloc_fail_at(k);
        otf_error e;
        otf_status rc = otf_ot_solve(plan, NULL, &probs[q], &o, &e);
        otf_alloc_fail_at(0);
        ck_assert_msg(rc == OTF_E_NOMEM, "solver %d problem %d: call %ld of %ld gave %s", s,
                      q, k, calls, otf_status_name(rc));
      }
    }
  }
  free(c);
  free(plan);
}
END_TEST

int main(void) {
  Suite *s = suite_create("golden");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, exact_objectives_match_pot);
  tcase_add_test(tc, sinkhorn_plans_match_pot);
  tcase_add_test(tc, tiny_reg_where_pot_scaling_fails);
  tcase_add_test(tc, marginals_of_every_plan);
  tcase_add_test(tc, bad_costs_are_rejected_by_every_solver);
  tcase_add_test(tc, allocation_failure_loop);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
