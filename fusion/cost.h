/* Ground-metric cost matrices between two sets of row vectors, and their
 * normalisations (ALGORITHM.md section 2 step 3).
 *
 * In fusion each row is one neuron: its activations over the calibration
 * samples, or its (input-aligned) weight row. */
#ifndef OTF_COST_H
#define OTF_COST_H

#include <stddef.h>

#include "common/error.h"

typedef enum otf_metric {
  OTF_METRIC_EUCLIDEAN = 0, /* ||x - y||_2, the reference default */
  OTF_METRIC_SQEUCLIDEAN,   /* ||x - y||_2^2 */
  OTF_METRIC_COSINE,        /* 1 - cos(x, y), clamped to [0, 2]; a zero
                               vector is at cost 1 from everything */
} otf_metric;

typedef enum otf_cost_norm {
  OTF_COSTNORM_NONE = 0,
  OTF_COSTNORM_MAX,    /* C / max(C): the reference default, C in [0, 1] */
  OTF_COSTNORM_MEAN,   /* C / mean(C) */
  OTF_COSTNORM_MEDIAN, /* C / median(C) (mean of the middle two if even) */
  OTF_COSTNORM_LOG,    /* log(1 + C) */
} otf_cost_norm;

/* Parses "euclidean" | "sqeuclidean" | "cosine" and
 * "none" | "max" | "mean" | "median" | "log". Return 0 on success, -1 if
 * the name is unknown. */
int otf_metric_parse(otf_metric *out, const char *name);
int otf_cost_norm_parse(otf_cost_norm *out, const char *name);
const char *otf_metric_name(otf_metric m);
const char *otf_cost_norm_name(otf_cost_norm n);

/* cost: out [n, m], cost[i, j] = metric(x_i, y_j), double.
 * x: [n, d] float, row-major; y: [m, d] float, row-major.
 *
 * The inner products come from one SGEMM per block of rows (the GEMM floor:
 * 2*n*m*d flops), norms are accumulated in double, and the data are centred
 * on their joint mean first (distances do not change; the norms, and with
 * them the cancellation in ||x||^2 + ||y||^2 - 2 x.y, shrink). Entries where
 * the result is still small relative to the norms (squared distance below
 * 5 % of ||x||^2 + ||y||^2, or 1 - cos below 0.05) are recomputed directly
 * in double, so every entry is accurate to about 1e-5 relative; near-equal
 * neurons, the ones alignment cares about, are exact to double rounding.
 * Time O(n*m*d) in BLAS; memory O((n + m) * d + 256 * m) floats scratch.
 * Non-finite inputs give OTF_E_NUMERIC naming the row. */
otf_status otf_cost_matrix(double *cost, const float *x, const float *y, size_t n,
                           size_t m, size_t d, otf_metric metric,
                           otf_error *err) OTF_WUR;

/* Naive reference: every entry computed directly in double, O(n*m*d). */
otf_status otf_cost_matrix_naive(double *cost, const float *x, const float *y,
                                 size_t n, size_t m, size_t d, otf_metric metric,
                                 otf_error *err) OTF_WUR;

/* Normalises cost [n, m] in place. *scale (may be NULL) receives the
 * divisor used (1 for none/log). A max or mean of 0 means the matrix is all
 * zeros and is left as it is; a median of 0 with positive entries would
 * turn them into infinities and returns OTF_E_NUMERIC. The median needs an
 * n*m scratch copy (OTF_E_NOMEM). O(n*m). */
otf_status otf_cost_normalize(double *cost, size_t n, size_t m, otf_cost_norm norm,
                              double *scale, otf_error *err) OTF_WUR;

#endif
