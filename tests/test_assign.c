/* Exact linear assignment: otf_assign_jv against brute force (n <= 7) and
 * against the Hungarian oracle otf_assign_naive (random sizes, tie-heavy and
 * badly scaled costs), planted optima, determinism, input errors and every
 * allocation failure. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/limits.h"
#include "fusion/assign.h"
#include "tests/support/testutil.h"

typedef otf_status (*solver_fn)(int32_t *, double *, const double *, size_t,
                                otf_error *);

/* 1 if x [n] is a permutation of 0..n-1. */
static int is_permutation(const int32_t *x, size_t n) {
  char *seen = calloc(n ? n : 1, 1);
  ck_assert_ptr_nonnull(seen);
  int ok = 1;
  for(size_t i = 0; i < n && ok; i++) {
    if(x[i] < 0 || (size_t)x[i] >= n || seen[x[i]])
      ok = 0;
    else
      seen[x[i]] = 1;
  }
  free(seen);
  return ok;
}

/* sum_i c[i, x[i]] in row order, as the solvers report it. */
static double perm_cost(const double *c, const int32_t *x, size_t n) {
  double s = 0.0;
  for(size_t i = 0; i < n; i++)
    s += c[i * n + (size_t)x[i]];
  return s;
}

static double max_abs(const double *c, size_t len) {
  double m = 0.0;
  for(size_t k = 0; k < len; k++)
    m = fmax(m, fabs(c[k]));
  return m;
}

/* Runs one solver, checks OTF_OK, a valid permutation and that the reported
 * objective is the cost of that permutation. Returns the objective. */
static double solve_ok(solver_fn f, const char *name, int32_t *x, const double *c,
                       size_t n) {
  otf_error e;
  double obj = NAN;
  otf_status rc = f(x, &obj, c, n, &e);
  if(rc != OTF_OK)
    ck_abort_msg("%s n=%zu: %s (%s)", name, n, otf_status_name(rc), e.message);
  ck_assert_msg(is_permutation(x, n), "%s n=%zu: not a permutation", name, n);
  ck_assert_msg(obj == perm_cost(c, x, n), "%s n=%zu: objective %.17g != sum %.17g",
                name, n, obj, perm_cost(c, x, n));
  return obj;
}

/* Smallest sum over all permutations (Heap's algorithm), n <= 8. */
static double brute_force(const double *c, size_t n) {
  int32_t p[8], cnt[8] = {0};
  for(size_t i = 0; i < n; i++)
    p[i] = (int32_t)i;
  double best = perm_cost(c, p, n);
  size_t i = 1;
  while(i < n) {
    if(cnt[i] < (int32_t)i) {
      size_t a = (i % 2 == 0) ? 0 : (size_t)cnt[i];
      int32_t t = p[a];
      p[a] = p[i];
      p[i] = t;
      best = fmin(best, perm_cost(c, p, n));
      cnt[i]++;
      i = 1;
    } else {
      cnt[i] = 0;
      i++;
    }
  }
  return best;
}

/* Cost generators, all [n, n]. */
enum gen {
  G_UNIFORM,      /* [0, 1) */
  G_INT_SMALL,    /* integers 0..3: many ties */
  G_INT_WIDE,     /* integers 0..n */
  G_ALL_EQUAL,    /* every entry 0.7 */
  G_DUP_ROWS,     /* rows drawn from a handful of distinct rows */
  G_DUP_COLS,     /* columns drawn from a handful of distinct columns */
  G_RANK1,        /* a_i * b_j */
  G_HUGE,         /* uniform times 1e150 */
  G_TINY,         /* uniform times 1e-150 */
  G_NEGATIVE,     /* uniform in [-1e6, 1e6) */
  G_OFFSET,       /* 1e16 + integers 0..7: spacing 2 ulp-scale, ties, rounding */
  G_NEAR_TIES,    /* 1 + k ulp, k in 0..15 */
  G_EUCLID,       /* distances between two Gaussian clouds, concentrated */
  G_COUNT
};

static void gen_cost(double *c, size_t n, enum gen g, tu_rng *r) {
  size_t nn = n * n;
  switch(g) {
  case G_UNIFORM:
    tu_fill_uniform(r, c, nn, 0.0, 1.0);
    break;
  case G_INT_SMALL:
    for(size_t k = 0; k < nn; k++)
      c[k] = (double)(tu_next(r) % 4);
    break;
  case G_INT_WIDE:
    for(size_t k = 0; k < nn; k++)
      c[k] = (double)(tu_next(r) % (n + 1));
    break;
  case G_ALL_EQUAL:
    for(size_t k = 0; k < nn; k++)
      c[k] = 0.7;
    break;
  case G_DUP_ROWS:
  case G_DUP_COLS: {
    size_t distinct = 1 + tu_next(r) % 4;
    double *base = malloc(distinct * n * sizeof(double));
    ck_assert_ptr_nonnull(base);
    tu_fill_uniform(r, base, distinct * n, 0.0, 1.0);
    for(size_t i = 0; i < n; i++) {
      const double *src = base + (tu_next(r) % distinct) * n;
      for(size_t j = 0; j < n; j++) {
        if(g == G_DUP_ROWS)
          c[i * n + j] = src[j];
        else
          c[j * n + i] = src[j];
      }
    }
    free(base);
    break;
  }
  case G_RANK1: {
    double *a = malloc(2 * n * sizeof(double));
    ck_assert_ptr_nonnull(a);
    tu_fill_uniform(r, a, 2 * n, -1.0, 1.0);
    for(size_t i = 0; i < n; i++)
      for(size_t j = 0; j < n; j++)
        c[i * n + j] = a[i] * a[n + j];
    free(a);
    break;
  }
  case G_HUGE:
    tu_fill_uniform(r, c, nn, 0.0, 1e150);
    break;
  case G_TINY:
    tu_fill_uniform(r, c, nn, 0.0, 1e-150);
    break;
  case G_NEGATIVE:
    tu_fill_uniform(r, c, nn, -1e6, 1e6);
    break;
  case G_OFFSET:
    for(size_t k = 0; k < nn; k++)
      c[k] = 1e16 + (double)(tu_next(r) % 8);
    break;
  case G_NEAR_TIES:
    for(size_t k = 0; k < nn; k++)
      c[k] = 1.0 + (double)(tu_next(r) % 16) * 0x1p-52;
    break;
  case G_EUCLID: {
    size_t dim = 16;
    double *p = malloc(2 * n * dim * sizeof(double)), mx = 0.0;
    ck_assert_ptr_nonnull(p);
    for(size_t k = 0; k < 2 * n * dim; k++)
      p[k] = tu_normal(r);
    for(size_t i = 0; i < n; i++)
      for(size_t j = 0; j < n; j++) {
        double s = 0.0;
        for(size_t k = 0; k < dim; k++) {
          double t = p[i * dim + k] - p[(n + j) * dim + k];
          s += t * t;
        }
        c[i * n + j] = sqrt(s);
        mx = fmax(mx, c[i * n + j]);
      }
    for(size_t k = 0; k < nn; k++)
      c[k] /= mx;
    free(p);
    break;
  }
  case G_COUNT:
    break;
  }
}

/* Tolerance on an objective: 1e-12 relative, with an absolute floor of
 * 1e-12 * n * max|C| for objectives near zero (mixed signs). */
static int objective_close(const char *what, double got, double want,
                           const double *c, size_t n) {
  double atol = 1e-12 * (double)n * max_abs(c, n * n);
  return tu_close(what, &got, &want, 1, atol, 1e-12);
}

START_TEST(tiny_cases) {
  int32_t x[3];
  double obj;
  const double c1[] = {-2.5};
  ck_assert_int_eq(otf_assign_jv(x, &obj, c1, 1, NULL), OTF_OK);
  ck_assert_int_eq(x[0], 0);
  ck_assert(obj == -2.5);
  ck_assert_int_eq(otf_assign_naive(x, &obj, c1, 1, NULL), OTF_OK);
  ck_assert_int_eq(x[0], 0);

  const double c2[] = {4, 1, 2, 8}; /* anti-diagonal: 1 + 2 */
  ck_assert_int_eq(otf_assign_jv(x, &obj, c2, 2, NULL), OTF_OK);
  ck_assert_int_eq(x[0], 1);
  ck_assert_int_eq(x[1], 0);
  ck_assert(obj == 3.0);
  ck_assert_int_eq(otf_assign_naive(x, &obj, c2, 2, NULL), OTF_OK);
  ck_assert_int_eq(x[0], 1);
  ck_assert_int_eq(x[1], 0);

  const double c2d[] = {1, 5, 5, 1}; /* diagonal */
  ck_assert_int_eq(otf_assign_jv(x, &obj, c2d, 2, NULL), OTF_OK);
  ck_assert_int_eq(x[0], 0);
  ck_assert_int_eq(x[1], 1);

  /* 3x3 with a greedy trap: row 0's best column (0) is wrong.
   * Optimum: 0->1, 1->0, 2->2 = 2 + 2 + 1 = 5. */
  const double c3[] = {1, 2, 9, /**/ 2, 9, 9, /**/ 9, 9, 1};
  ck_assert_int_eq(otf_assign_jv(x, &obj, c3, 3, NULL), OTF_OK);
  ck_assert_int_eq(x[0], 1);
  ck_assert_int_eq(x[1], 0);
  ck_assert_int_eq(x[2], 2);
  ck_assert(obj == 5.0);
  ck_assert_int_eq(otf_assign_naive(x, NULL, c3, 3, NULL), OTF_OK); /* NULL objective */
  ck_assert_int_eq(x[0], 1);
  ck_assert_int_eq(x[1], 0);
  ck_assert_int_eq(x[2], 2);
}
END_TEST

START_TEST(brute_force_up_to_7) {
  tu_rng r = {11};
  double c[49];
  int32_t x[7];
  for(size_t n = 1; n <= 7; n++) {
    int reps = n <= 5 ? 300 : 60;
    for(int rep = 0; rep < reps; rep++) {
      enum gen g = (enum gen)(rep % G_COUNT);
      gen_cost(c, n, g, &r);
      double want = brute_force(c, n);
      double jv = solve_ok(otf_assign_jv, "jv", x, c, n);
      double nv = solve_ok(otf_assign_naive, "naive", x, c, n);
      ck_assert_msg(objective_close("jv vs brute force", jv, want, c, n),
                    "n=%zu gen=%d rep=%d", n, (int)g, rep);
      ck_assert_msg(objective_close("naive vs brute force", nv, want, c, n),
                    "n=%zu gen=%d rep=%d", n, (int)g, rep);
    }
  }
}
END_TEST

START_TEST(jv_matches_naive_random_sizes) {
  tu_rng r = {2024};
  size_t cap = 300;
  double *c = malloc(cap * cap * sizeof(double));
  int32_t *x = malloc(cap * sizeof(int32_t));
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_nonnull(x);
  for(int g = 0; g < G_COUNT; g++) {
    for(int rep = 0; rep < 6; rep++) {
      /* sizes: tiny, around the vector width, and up to cap */
      size_t n = rep == 0 ? 2 + tu_next(&r) % 9 : 1 + tu_next(&r) % cap;
      gen_cost(c, n, (enum gen)g, &r);
      double jv = solve_ok(otf_assign_jv, "jv", x, c, n);
      double nv = solve_ok(otf_assign_naive, "naive", x, c, n);
      ck_assert_msg(objective_close("jv vs naive", jv, nv, c, n),
                    "gen=%d n=%zu rep=%d", g, n, rep);
    }
  }
  free(c);
  free(x);
}
END_TEST

/* All-equal and heavily tied costs at a size where a looping augmenting row
 * reduction would show up as a timeout. */
START_TEST(massive_ties_terminate) {
  tu_rng r = {7};
  size_t n = 600;
  double *c = malloc(n * n * sizeof(double));
  int32_t *x = malloc(n * sizeof(int32_t));
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_nonnull(x);
  const enum gen gens[] = {G_ALL_EQUAL, G_INT_SMALL, G_DUP_ROWS, G_DUP_COLS,
                           G_OFFSET, G_NEAR_TIES};
  for(size_t k = 0; k < sizeof(gens) / sizeof(gens[0]); k++) {
    gen_cost(c, n, gens[k], &r);
    double obj = solve_ok(otf_assign_jv, "jv", x, c, n);
    if(gens[k] == G_ALL_EQUAL)
      ck_assert(obj == perm_cost(c, x, n));
  }
  /* {0, 1} costs with a perfect zero matching hidden: objective 0 */
  for(size_t i = 0; i < n; i++)
    for(size_t j = 0; j < n; j++)
      c[i * n + j] = (j == (i * 7 + 3) % n) ? 0.0 : (double)(tu_next(&r) % 2);
  double obj = solve_ok(otf_assign_jv, "jv", x, c, n);
  ck_assert(obj == 0.0);
  free(c);
  free(x);
}
END_TEST

START_TEST(deterministic) {
  tu_rng r = {99};
  size_t n = 257;
  double *c = malloc(n * n * sizeof(double));
  int32_t *x1 = malloc(n * sizeof(int32_t)), *x2 = malloc(n * sizeof(int32_t));
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_nonnull(x1);
  ck_assert_ptr_nonnull(x2);
  const enum gen gens[] = {G_UNIFORM, G_INT_SMALL, G_ALL_EQUAL, G_EUCLID};
  for(size_t k = 0; k < sizeof(gens) / sizeof(gens[0]); k++) {
    gen_cost(c, n, gens[k], &r);
    double o1 = solve_ok(otf_assign_jv, "jv", x1, c, n);
    double o2 = solve_ok(otf_assign_jv, "jv", x2, c, n);
    ck_assert(memcmp(x1, x2, n * sizeof(int32_t)) == 0);
    ck_assert(o1 == o2);
    o1 = solve_ok(otf_assign_naive, "naive", x1, c, n);
    o2 = solve_ok(otf_assign_naive, "naive", x2, c, n);
    ck_assert(memcmp(x1, x2, n * sizeof(int32_t)) == 0);
    ck_assert(o1 == o2);
  }
  free(c);
  free(x1);
  free(x2);
}
END_TEST

/* cost[i, j] = |a_i - a_{q(j)}| with distinct a: the planted permutation
 * (q^-1) costs 0 and every other one costs more, so it is the unique
 * optimum. Likewise (a_i - b_j)^2 in 1-D is uniquely solved by matching
 * ranks (strictly convex cost, distinct points). */
START_TEST(planted_permutation_recovered) {
  tu_rng r = {5};
  for(int rep = 0; rep < 8; rep++) {
    size_t n = 50 + tu_next(&r) % 400;
    double *c = malloc(n * n * sizeof(double));
    double *a = malloc(2 * n * sizeof(double));
    int32_t *q = malloc(n * sizeof(int32_t)), *x = malloc(n * sizeof(int32_t));
    int32_t *ra = malloc(2 * n * sizeof(int32_t));
    ck_assert(c && a && q && x && ra);
    for(size_t i = 0; i < n; i++)
      a[i] = (double)i + 0.25 * tu_uniform(&r); /* distinct */
    for(size_t i = 0; i < n; i++)
      q[i] = (int32_t)i;
    for(size_t i = n; i-- > 1;) {
      size_t k = tu_next(&r) % (i + 1);
      int32_t t = q[i];
      q[i] = q[k];
      q[k] = t;
    }
    /* column j holds point a[q[j]]; row i must go to the j with q[j] == i */
    for(size_t i = 0; i < n; i++)
      for(size_t j = 0; j < n; j++)
        c[i * n + j] = fabs(a[i] - a[q[j]]);
    for(int s = 0; s < 2; s++) {
      solver_fn f = s ? otf_assign_naive : otf_assign_jv;
      double obj = solve_ok(f, s ? "naive" : "jv", x, c, n);
      ck_assert(obj == 0.0);
      for(size_t j = 0; j < n; j++)
        ck_assert_int_eq(x[q[j]], (int32_t)j);
    }
    /* 1-D squared distance between two random clouds: rank matching */
    tu_fill_uniform(&r, a, 2 * n, 0.0, 1.0);
    for(size_t i = 0; i < n; i++)
      for(size_t j = 0; j < n; j++) {
        double t = a[i] - a[n + j];
        c[i * n + j] = t * t;
      }
    for(size_t k = 0; k < 2 * n; k++) { /* rank of a[k] within its cloud */
      size_t base = k < n ? 0 : n, rank = 0;
      for(size_t l = base; l < base + n; l++)
        rank += a[l] < a[k];
      ra[k] = (int32_t)rank;
    }
    for(int s = 0; s < 2; s++) {
      solver_fn f = s ? otf_assign_naive : otf_assign_jv;
      (void)solve_ok(f, s ? "naive" : "jv", x, c, n);
      for(size_t i = 0; i < n; i++)
        ck_assert_int_eq(ra[n + (size_t)x[i]], ra[i]);
    }
    free(c);
    free(a);
    free(q);
    free(x);
    free(ra);
  }
}
END_TEST

START_TEST(bad_input_is_refused) {
  size_t n = 9;
  double c[81];
  int32_t x[9];
  otf_error e;
  tu_rng r = {3};
  const double bad[] = {NAN, INFINITY, -INFINITY, 1e305};
  for(int s = 0; s < 2; s++) {
    solver_fn f = s ? otf_assign_naive : otf_assign_jv;
    for(size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
      tu_fill_uniform(&r, c, n * n, 0.0, 1.0);
      c[(k * 17 + 5) % (n * n)] = bad[k];
      ck_assert_int_eq(f(x, NULL, c, n, &e), OTF_E_NUMERIC);
      ck_assert_int_eq(e.code, OTF_E_NUMERIC);
      ck_assert_int_gt((int)strlen(e.message), 0);
    }
    tu_fill_uniform(&r, c, n * n, 0.0, 1.0);
    ck_assert_int_eq(f(x, NULL, c, 0, &e), OTF_E_INVAL);
    ck_assert_int_eq(f(x, NULL, NULL, n, &e), OTF_E_INVAL);
    ck_assert_int_eq(f(NULL, NULL, c, n, &e), OTF_E_INVAL);
    /* the size is checked before the matrix is read */
    ck_assert_int_eq(f(x, NULL, c, (size_t)OTF_MAX_OT_SIDE + 1, &e), OTF_E_TOO_LARGE);
    ck_assert_int_eq(e.code, OTF_E_TOO_LARGE);
    ck_assert_int_eq(f(x, NULL, c, n, NULL), OTF_OK); /* NULL err is fine */
  }
}
END_TEST

/* Every allocation of a solve fails in turn: the solver reports
 * OTF_E_NOMEM (or succeeds when the failing call was not its own) and
 * never crashes or leaks (ASan checks the latter). */
START_TEST(allocation_failures) {
  tu_rng r = {8};
  size_t n = 40;
  double c[1600];
  int32_t x[40];
  tu_fill_uniform(&r, c, n * n, 0.0, 1.0);
  for(int s = 0; s < 2; s++) {
    solver_fn f = s ? otf_assign_naive : otf_assign_jv;
    long before = otf_alloc_calls();
    ck_assert_int_eq(f(x, NULL, c, n, NULL), OTF_OK);
    long calls = otf_alloc_calls() - before;
    ck_assert_int_ge(calls, 1);
    for(long k = 1; k <= calls + 1; k++) {
      otf_error e;
      otf_alloc_fail_at(k);
      otf_status rc = f(x, NULL, c, n, &e);
      otf_alloc_fail_at(0);
      ck_assert_msg(rc == OTF_OK || rc == OTF_E_NOMEM, "k=%ld: %s", k,
                    otf_status_name(rc));
      if(rc == OTF_E_NOMEM)
        ck_assert_int_eq(e.code, OTF_E_NOMEM);
      else
        ck_assert(is_permutation(x, n));
      if(k <= calls)
        ck_assert_int_eq(rc, OTF_E_NOMEM);
    }
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("assign");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600); /* generous for ASan + UBSan builds */
  tcase_add_test(tc, tiny_cases);
  tcase_add_test(tc, brute_force_up_to_7);
  tcase_add_test(tc, jv_matches_naive_random_sizes);
  tcase_add_test(tc, massive_ties_terminate);
  tcase_add_test(tc, deterministic);
  tcase_add_test(tc, planted_permutation_recovered);
  tcase_add_test(tc, bad_input_is_refused);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
