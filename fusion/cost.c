#include "fusion/cost.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/simd.h"

#define ROW_BLOCK 256
#define REFINE_FRACTION 0.05

static const char *const metric_names[] = {"euclidean", "sqeuclidean", "cosine"};
static const char *const norm_names[] = {"none", "max", "mean", "median", "log"};

int otf_metric_parse(otf_metric *out, const char *name) {
  for(size_t k = 0; k < sizeof(metric_names) / sizeof(*metric_names); k++)
    if(name && !strcmp(name, metric_names[k])) {
      *out = (otf_metric)k;
      return 0;
    }
  return -1;
}

int otf_cost_norm_parse(otf_cost_norm *out, const char *name) {
  for(size_t k = 0; k < sizeof(norm_names) / sizeof(*norm_names); k++)
    if(name && !strcmp(name, norm_names[k])) {
      *out = (otf_cost_norm)k;
      return 0;
    }
  return -1;
}

const char *otf_metric_name(otf_metric m) {
  return (unsigned)m < 3 ? metric_names[m] : "unknown";
}

const char *otf_cost_norm_name(otf_cost_norm n) {
  return (unsigned)n < 5 ? norm_names[n] : "unknown";
}

static otf_status check_args(const float *x, const float *y, size_t n, size_t m,
                             size_t d, otf_metric metric, otf_error *err) {
  if(n == 0 || m == 0 || d == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "empty point set (%zu x %zu, dim %zu)", n,
                    m, d);
  if((unsigned)metric > OTF_METRIC_COSINE)
    return OTF_FAIL(err, OTF_E_INVAL, "metric", "unknown metric %d", (int)metric);
  if(d > (size_t)INT32_MAX || n > (size_t)INT32_MAX || m > (size_t)INT32_MAX)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "point sets too large for BLAS");
  for(size_t i = 0; i < n * d; i++)
    if(!isfinite(x[i]))
      return OTF_FAIL(err, OTF_E_NUMERIC, "x", "x row %zu has a non-finite value",
                      i / d);
  for(size_t i = 0; i < m * d; i++)
    if(!isfinite(y[i]))
      return OTF_FAIL(err, OTF_E_NUMERIC, "y", "y row %zu has a non-finite value",
                      i / d);
  return OTF_OK;
}

/* Exact double-precision value of one entry; the naive kernel and the
 * refinement of near-duplicate pairs both use it. For cosine, nx and ny are
 * the rows' norms. */
static double entry_direct(const float *xr, const float *yr, size_t d,
                           otf_metric metric, double nx, double ny) {
  double s = 0.0;
  if(metric == OTF_METRIC_COSINE) {
    if(nx == 0.0 || ny == 0.0)
      return 1.0;
    for(size_t k = 0; k < d; k++) {
      double t = (double)xr[k] / nx - (double)yr[k] / ny;
      s += t * t;
    }
    return fmin(0.5 * s, 2.0);
  }
  for(size_t k = 0; k < d; k++) {
    double t = (double)xr[k] - (double)yr[k];
    s += t * t;
  }
  return metric == OTF_METRIC_SQEUCLIDEAN ? s : sqrt(s);
}

static double row_norm(const float *r, size_t d) {
  double s = 0.0;
  for(size_t k = 0; k < d; k++)
    s += (double)r[k] * r[k];
  return sqrt(s);
}

otf_status otf_cost_matrix_naive(double *cost, const float *x, const float *y,
                                 size_t n, size_t m, size_t d, otf_metric metric,
                                 otf_error *err) {
  otf_status rc = check_args(x, y, n, m, d, metric, err);
  if(rc != OTF_OK)
    return rc;
  for(size_t i = 0; i < n; i++) {
    double nx = row_norm(x + i * d, d);
    for(size_t j = 0; j < m; j++)
      cost[i * m + j] =
          entry_direct(x + i * d, y + j * d, d, metric, nx, row_norm(y + j * d, d));
  }
  return OTF_OK;
}

/* dst [rows, d] = src rows divided by their norms (zero rows stay zero),
 * norm [rows] = the norms, in double. */
static void unit_rows(float *dst, double *norm, const float *src, size_t rows, size_t d) {
  for(size_t i = 0; i < rows; i++) {
    norm[i] = row_norm(src + i * d, d);
    for(size_t k = 0; k < d; k++)
      dst[i * d + k] = norm[i] > 0.0 ? (float)(src[i * d + k] / norm[i]) : 0.0f;
  }
}

/* dst [rows, d] = src - mean (float), sq [rows] = squared norms of the
 * centred rows, accumulated in double. */
static void center_rows(float *dst, double *sq, const float *src, size_t rows, size_t d,
                        const double *mean) {
  for(size_t i = 0; i < rows; i++) {
    double s = 0.0;
    for(size_t k = 0; k < d; k++) {
      float v = (float)(src[i * d + k] - mean[k]);
      dst[i * d + k] = v;
      s += (double)v * v;
    }
    sq[i] = s;
  }
}

/* One output row of a (squared) Euclidean cost from the Gram row g:
 * out_j = nx + ny_j - 2 g_j (clamped at 0, square-rooted unless squared).
 * Branch-free so it vectorises; returns whether any entry is small enough
 * relative to the norms to need the exact recomputation. */
OTF_HOT_CLONES
static int finish_row_dist(double *out, const float *g, double nx, const double *ny,
                           size_t m, int take_sqrt) {
  int refine = 0;
#pragma omp simd reduction(| : refine)
  for(size_t j = 0; j < m; j++) {
    double s = nx + ny[j];
    double v = s - 2.0 * (double)g[j];
    refine |= v < REFINE_FRACTION * s;
    v = v < 0.0 ? 0.0 : v;
    out[j] = take_sqrt ? sqrt(v) : v;
  }
  return refine;
}

/* Cosine distance row from cosines g: out_j = clamp(1 - g_j, 0, 2). */
OTF_HOT_CLONES
static int finish_row_cosine(double *out, const float *g, size_t m) {
  int refine = 0;
#pragma omp simd reduction(| : refine)
  for(size_t j = 0; j < m; j++) {
    double v = 1.0 - (double)g[j];
    refine |= v < REFINE_FRACTION;
    v = v < 0.0 ? 0.0 : v;
    out[j] = v > 2.0 ? 2.0 : v;
  }
  return refine;
}

otf_status otf_cost_matrix(double *cost, const float *x, const float *y, size_t n,
                           size_t m, size_t d, otf_metric metric, otf_error *err) {
  otf_status rc = check_args(x, y, n, m, d, metric, err);
  if(rc != OTF_OK)
    return rc;
  int cosine = metric == OTF_METRIC_COSINE;
  size_t blk = n < ROW_BLOCK ? n : ROW_BLOCK;
  /* Scratch: centred/normalised copies xs [n,d], ys [m,d], the GEMM block
   * g [blk,m] (float), norms nx [n], ny [m] and the mean [d] (double). */
  float *xs = otf_malloc_array((n + m) * d + blk * m, sizeof(float));
  double *nrm = otf_malloc_array(n + m + d, sizeof(double));
  if(!xs || !nrm) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a %zu x %zu cost matrix", n, m);
    goto done;
  }
  float *ys = xs + n * d, *g = ys + m * d;
  double *nx = nrm, *ny = nx + n, *mean = ny + m;

  if(cosine) {
    /* Unit rows: the GEMM gives cosines directly. Norms of the originals
     * are kept for the exact refinement. */
    unit_rows(xs, nx, x, n, d);
    unit_rows(ys, ny, y, m, d);
  } else {
    memset(mean, 0, d * sizeof(*mean));
    for(size_t i = 0; i < n; i++)
      for(size_t k = 0; k < d; k++)
        mean[k] += x[i * d + k];
    for(size_t j = 0; j < m; j++)
      for(size_t k = 0; k < d; k++)
        mean[k] += y[j * d + k];
    for(size_t k = 0; k < d; k++)
      mean[k] /= (double)(n + m);
    center_rows(xs, nx, x, n, d, mean);
    center_rows(ys, ny, y, m, d, mean);
  }

  for(size_t i0 = 0; i0 < n; i0 += blk) {
    size_t rows = n - i0 < blk ? n - i0 : blk;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)m, (int)d,
                1.0f, xs + i0 * d, (int)d, ys, (int)d, 0.0f, g, (int)m);
    for(size_t r = 0; r < rows; r++) {
      size_t i = i0 + r;
      int refine = cosine ? finish_row_cosine(cost + i * m, g + r * m, m)
                          : finish_row_dist(cost + i * m, g + r * m, nx[i], ny, m,
                                            metric == OTF_METRIC_EUCLIDEAN);
      if(!refine)
        continue;
      /* Rare: recompute the flagged entries directly in double. */
      const float *gr = g + r * m;
      for(size_t j = 0; j < m; j++) {
        int flag = cosine ? 1.0 - (double)gr[j] < REFINE_FRACTION
                          : nx[i] + ny[j] - 2.0 * (double)gr[j] <
                                REFINE_FRACTION * (nx[i] + ny[j]);
        if(flag)
          cost[i * m + j] = entry_direct(x + i * d, y + j * d, d, metric,
                                         cosine ? nx[i] : 0.0, cosine ? ny[j] : 0.0);
      }
    }
  }
  rc = OTF_OK;
done:
  otf_free(xs);
  otf_free(nrm);
  return rc;
}

/* Quickselect for the k-th smallest of v [len] (reorders v). Deterministic
 * middle pivot with three-way partition; expected O(len). */
static double select_kth(double *v, size_t len, size_t k) {
  size_t lo = 0, hi = len; /* search in [lo, hi) */
  while(hi - lo > 1) {
    double pivot = v[lo + (hi - lo) / 2];
    size_t lt = lo, i = lo, gt = hi;
    while(i < gt) {
      if(v[i] < pivot) {
        double t = v[lt]; v[lt] = v[i]; v[i] = t;
        lt++; i++;
      } else if(v[i] > pivot) {
        gt--;
        double t = v[gt]; v[gt] = v[i]; v[i] = t;
      } else {
        i++;
      }
    }
    if(k < lt)
      hi = lt;
    else if(k >= gt)
      lo = gt;
    else
      return pivot;
  }
  return v[lo];
}

otf_status otf_cost_normalize(double *cost, size_t n, size_t m, otf_cost_norm norm,
                              double *scale, otf_error *err) {
  size_t len = n * m;
  double div = 1.0;
  if(scale)
    *scale = 1.0;
  switch(norm) {
  case OTF_COSTNORM_NONE:
    return OTF_OK;
  case OTF_COSTNORM_LOG:
    for(size_t k = 0; k < len; k++)
      cost[k] = log1p(cost[k]);
    return OTF_OK;
  case OTF_COSTNORM_MAX:
    div = 0.0;
    for(size_t k = 0; k < len; k++)
      div = fmax(div, cost[k]);
    break;
  case OTF_COSTNORM_MEAN:
    div = 0.0;
    for(size_t k = 0; k < len; k++)
      div += cost[k];
    div = len ? div / (double)len : 0.0;
    break;
  case OTF_COSTNORM_MEDIAN: {
    if(len == 0)
      return OTF_OK;
    double *tmp = otf_malloc_array(len, sizeof(double));
    if(!tmp)
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to take the median of the cost");
    memcpy(tmp, cost, len * sizeof(double));
    div = select_kth(tmp, len, len / 2);
    if(len % 2 == 0) {
      /* The lower middle is the largest of the elements left of len/2. */
      double lower = tmp[0];
      for(size_t k = 1; k < len / 2; k++)
        lower = fmax(lower, tmp[k]);
      div = 0.5 * (div + lower);
    }
    otf_free(tmp);
    if(div == 0.0) {
      for(size_t k = 0; k < len; k++)
        if(cost[k] != 0.0)
          return OTF_FAIL(err, OTF_E_NUMERIC, "norm",
                          "median of the cost is 0; median normalisation would "
                          "make entries infinite");
    }
    break;
  }
  default:
    return OTF_FAIL(err, OTF_E_INVAL, "norm", "unknown cost normalisation %d", (int)norm);
  }
  if(div == 0.0)
    return OTF_OK; /* all zeros: nothing to scale */
  if(!isfinite(div))
    return OTF_FAIL(err, OTF_E_NUMERIC, "norm", "cost normalisation divisor is not finite");
  double inv = 1.0 / div;
  for(size_t k = 0; k < len; k++)
    cost[k] *= inv;
  if(scale)
    *scale = div;
  return OTF_OK;
}
