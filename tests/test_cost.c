/* Cost matrices: the BLAS kernel against the direct double-precision
 * reference, the cancellation refinement, and the normalisations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/cost.h"
#include "tests/support/testutil.h"

static float *gaussian(tu_rng *r, size_t rows, size_t d, double offset) {
  float *x = malloc(rows * d * sizeof(float));
  for(size_t k = 0; k < rows * d; k++)
    x[k] = (float)(offset + tu_normal(r));
  return x;
}

START_TEST(blas_matches_naive_for_every_metric) {
  static const size_t dims[][3] = {{1, 1, 1}, {3, 5, 2}, {40, 31, 17}, {300, 260, 64}, {7, 9, 700}};
  tu_rng r = {1};
  for(size_t s = 0; s < sizeof(dims) / sizeof(*dims); s++) {
    size_t n = dims[s][0], m = dims[s][1], d = dims[s][2];
    /* A large common offset is the classic cancellation trap. */
    float *x = gaussian(&r, n, d, 100.0), *y = gaussian(&r, m, d, 100.0);
    double *c1 = malloc(n * m * sizeof(double)), *c2 = malloc(n * m * sizeof(double));
    for(int met = OTF_METRIC_EUCLIDEAN; met <= OTF_METRIC_COSINE; met++) {
      ck_assert_int_eq(otf_cost_matrix(c1, x, y, n, m, d, (otf_metric)met, NULL), OTF_OK);
      ck_assert_int_eq(otf_cost_matrix_naive(c2, x, y, n, m, d, (otf_metric)met, NULL), OTF_OK);
      double rtol = met == OTF_METRIC_COSINE ? 1e-4 : 2e-5;
      ck_assert_msg(tu_close(otf_metric_name((otf_metric)met), c1, c2, n * m, 1e-12, rtol),
                    "n=%zu m=%zu d=%zu", n, m, d);
    }
    free(x);
    free(y);
    free(c1);
    free(c2);
  }
}
END_TEST

START_TEST(near_duplicates_are_exact) {
  /* y_j = x_perm(j) + tiny noise: the planted pairs' distances are 1e-3 of
   * the norms; the Gram expansion in float would lose them entirely. */
  tu_rng r = {2};
  size_t n = 64, d = 256;
  float *x = gaussian(&r, n, d, 10.0), *y = malloc(n * d * sizeof(float));
  for(size_t j = 0; j < n; j++)
    for(size_t k = 0; k < d; k++)
      y[j * d + k] = x[((j * 7) % n) * d + k] + (float)(1e-4 * tu_normal(&r));
  double *c1 = malloc(n * n * sizeof(double)), *c2 = malloc(n * n * sizeof(double));
  for(int met = OTF_METRIC_EUCLIDEAN; met <= OTF_METRIC_COSINE; met++) {
    ck_assert_int_eq(otf_cost_matrix(c1, x, y, n, n, d, (otf_metric)met, NULL), OTF_OK);
    ck_assert_int_eq(otf_cost_matrix_naive(c2, x, y, n, n, d, (otf_metric)met, NULL), OTF_OK);
    for(size_t j = 0; j < n; j++) {
      size_t i = (j * 7) % n;
      double got = c1[i * n + j], want = c2[i * n + j];
      ck_assert_msg(fabs(got - want) <= 1e-12 * fabs(want) + 1e-300,
                    "%s pair (%zu,%zu): %.17g vs %.17g", otf_metric_name((otf_metric)met),
                    i, j, got, want);
      ck_assert(want > 0.0);
    }
  }
  free(x);
  free(y);
  free(c1);
  free(c2);
}
END_TEST

START_TEST(identical_and_zero_rows) {
  float x[6] = {1, 2, 3, 0, 0, 0}, y[6] = {1, 2, 3, 0, 0, 0};
  double c[4];
  ck_assert_int_eq(otf_cost_matrix(c, x, y, 2, 2, 3, OTF_METRIC_EUCLIDEAN, NULL), OTF_OK);
  ck_assert(c[0] == 0.0 && c[3] == 0.0);
  ck_assert(fabs(c[1] - sqrt(14.0)) < 1e-12);
  ck_assert_int_eq(otf_cost_matrix(c, x, y, 2, 2, 3, OTF_METRIC_COSINE, NULL), OTF_OK);
  ck_assert(c[0] == 0.0);
  ck_assert(c[1] == 1.0 && c[2] == 1.0 && c[3] == 1.0); /* zero vector: cost 1 */
  float z[3] = {-1, -2, -3};
  ck_assert_int_eq(otf_cost_matrix(c, x, z, 1, 1, 3, OTF_METRIC_COSINE, NULL), OTF_OK);
  ck_assert(fabs(c[0] - 2.0) < 1e-12);
  ck_assert_int_eq(otf_cost_matrix(c, x, z, 1, 1, 3, OTF_METRIC_SQEUCLIDEAN, NULL), OTF_OK);
  ck_assert(fabs(c[0] - 56.0) < 1e-12);
}
END_TEST

START_TEST(normalisations) {
  double c[6] = {1, 2, 3, 4, 6, 8}, s;
  ck_assert_int_eq(otf_cost_normalize(c, 2, 3, OTF_COSTNORM_MAX, &s, NULL), OTF_OK);
  ck_assert(s == 8.0 && c[5] == 1.0 && c[0] == 0.125);
  double c2[6] = {1, 2, 3, 4, 6, 8};
  ck_assert_int_eq(otf_cost_normalize(c2, 2, 3, OTF_COSTNORM_MEAN, &s, NULL), OTF_OK);
  ck_assert(s == 4.0 && c2[4] == 1.5);
  double c3[6] = {8, 1, 6, 3, 2, 4}; /* median of an even count: (3 + 4) / 2 */
  ck_assert_int_eq(otf_cost_normalize(c3, 2, 3, OTF_COSTNORM_MEDIAN, &s, NULL), OTF_OK);
  ck_assert(s == 3.5);
  double c4[5] = {9, 1, 5, 5, 2}; /* odd count with a tie: 5 */
  ck_assert_int_eq(otf_cost_normalize(c4, 1, 5, OTF_COSTNORM_MEDIAN, &s, NULL), OTF_OK);
  ck_assert(s == 5.0 && c4[0] == 1.8);
  double c5[3] = {0, 1, 3};
  ck_assert_int_eq(otf_cost_normalize(c5, 1, 3, OTF_COSTNORM_LOG, &s, NULL), OTF_OK);
  ck_assert(s == 1.0 && c5[0] == 0.0 && fabs(c5[2] - log(4.0)) < 1e-15);
  double c6[3] = {0, 0, 0};
  ck_assert_int_eq(otf_cost_normalize(c6, 1, 3, OTF_COSTNORM_MAX, &s, NULL), OTF_OK);
  ck_assert(c6[0] == 0.0 && s == 1.0);
  double c7[5] = {0, 0, 0, 1, 2};
  otf_error e;
  ck_assert_int_eq(otf_cost_normalize(c7, 1, 5, OTF_COSTNORM_MEDIAN, &s, &e), OTF_E_NUMERIC);
  ck_assert(strstr(e.message, "median") != NULL);
  /* A larger random median against a sort. */
  tu_rng r = {3};
  size_t len = 1001;
  double *v = malloc(len * sizeof(double)), *sorted = malloc(len * sizeof(double));
  tu_fill_uniform(&r, v, len, 0.0, 1.0);
  memcpy(sorted, v, len * sizeof(double));
  for(size_t i = 1; i < len; i++)
    for(size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
      double t = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = t;
    }
  ck_assert_int_eq(otf_cost_normalize(v, 1, len, OTF_COSTNORM_MEDIAN, &s, NULL), OTF_OK);
  ck_assert(s == sorted[len / 2]);
  free(v);
  free(sorted);
}
END_TEST

START_TEST(names_parse) {
  otf_metric m;
  otf_cost_norm c;
  ck_assert_int_eq(otf_metric_parse(&m, "cosine"), 0);
  ck_assert_int_eq(m, OTF_METRIC_COSINE);
  ck_assert_int_eq(otf_metric_parse(&m, "manhattan"), -1);
  ck_assert_int_eq(otf_cost_norm_parse(&c, "median"), 0);
  ck_assert_int_eq(c, OTF_COSTNORM_MEDIAN);
  ck_assert_int_eq(otf_cost_norm_parse(&c, NULL), -1);
  ck_assert_str_eq(otf_cost_norm_name(OTF_COSTNORM_LOG), "log");
}
END_TEST

START_TEST(bad_input_and_allocation_failures) {
  float x[4] = {1, 2, 3, NAN}, y[4] = {1, 2, 3, 4};
  double c[4];
  otf_error e;
  ck_assert_int_eq(otf_cost_matrix(c, x, y, 2, 2, 2, OTF_METRIC_EUCLIDEAN, &e), OTF_E_NUMERIC);
  ck_assert_str_eq(e.message, "x row 1 has a non-finite value");
  ck_assert_int_eq(otf_cost_matrix(c, y, y, 0, 2, 2, OTF_METRIC_EUCLIDEAN, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_cost_matrix(c, y, y, 2, 2, 2, (otf_metric)9, &e), OTF_E_INVAL);
  for(long k = 1; k <= 3; k++) {
    otf_alloc_fail_at(k);
    otf_status rc = otf_cost_matrix(c, y, y, 2, 2, 2, OTF_METRIC_EUCLIDEAN, NULL);
    ck_assert(rc == OTF_OK || rc == OTF_E_NOMEM);
    for(int q = 0; q < 4; q++)
      c[q] = q + 1.0;
    otf_alloc_fail_at(k);
    rc = otf_cost_normalize(c, 2, 2, OTF_COSTNORM_MEDIAN, NULL, NULL);
    ck_assert(rc == OTF_OK || rc == OTF_E_NOMEM);
  }
  otf_alloc_fail_at(1);
  ck_assert_int_eq(otf_cost_matrix(c, y, y, 2, 2, 2, OTF_METRIC_EUCLIDEAN, NULL), OTF_E_NOMEM);
  otf_alloc_fail_at(0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cost");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, blas_matches_naive_for_every_metric);
  tcase_add_test(tc, near_duplicates_are_exact);
  tcase_add_test(tc, identical_and_zero_rows);
  tcase_add_test(tc, normalisations);
  tcase_add_test(tc, names_parse);
  tcase_add_test(tc, bad_input_and_allocation_failures);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
