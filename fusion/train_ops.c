/* Training kernels: see train_ops.h. Matrix products go to OpenBLAS;
 * elementwise code is plain loops with libm, accurate rather than fast
 * (training time is dominated by the SGEMMs). */
#include "fusion/train_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fusion/simd.h"

void otf__linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                     const float *W, size_t rows, size_t in, size_t out, int accumulate_dx) {
  /* dW [out, in] += dy^T [out, rows] x [rows, in] */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)out, (blasint)in,
              (blasint)rows, 1.0f, dy, (blasint)out, x, (blasint)in, 1.0f, dW, (blasint)in);
  if(db)
    for(size_t r = 0; r < rows; r++) {
      const float *dr = dy + r * out;
      for(size_t o = 0; o < out; o++)
        db[o] += dr[o];
    }
  if(dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)in,
                (blasint)out, 1.0f, dy, (blasint)out, W, (blasint)in,
                accumulate_dx ? 1.0f : 0.0f, dx, (blasint)in);
}

OTF_HOT_CLONES
void otf__layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                        const float *b, size_t rows, size_t D, double eps) {
  for(size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s)
    for(size_t i = 0; i < D; i++)
      s += xr[i];
    double mu = s / (double)D;
#pragma omp simd reduction(+ : ss)
    for(size_t i = 0; i < D; i++) {
      double d = xr[i] - mu;
      ss += d * d;
    }
    float rs = (float)(1.0 / sqrt(ss / (double)D + eps)), fm = (float)mu;
    mean[r] = fm;
    rstd[r] = rs;
#pragma omp simd
    for(size_t i = 0; i < D; i++)
      yr[i] = (xr[i] - fm) * rs * g[i] + (b ? b[i] : 0.0f);
  }
}

OTF_HOT_CLONES
void otf__layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *g, size_t rows,
                        size_t D) {
  for(size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D, *dyr = dy + r * D;
    float *dxr = dx + r * D;
    const float m = mean[r], rs = rstd[r];
    double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
    for(size_t i = 0; i < D; i++) {
      float xh = (xr[i] - m) * rs;
      float dxh = dyr[i] * g[i];
      dg[i] += dyr[i] * xh;
      s1 += dxh;
      s2 += (double)dxh * xh;
    }
    if(db)
#pragma omp simd
      for(size_t i = 0; i < D; i++)
        db[i] += dyr[i];
    const float a = (float)(s1 / (double)D), c = (float)(s2 / (double)D);
#pragma omp simd
    for(size_t i = 0; i < D; i++) {
      float xh = (xr[i] - m) * rs;
      dxr[i] = rs * (dyr[i] * g[i] - a - xh * c);
    }
  }
}

OTF_HOT_CLONES
void otf__act_fwd(otf_act act, float *y, float *dydx, const float *x, size_t len) {
  switch(act) {
  case OTF_ACT_GELU:
    /* Phi(x) = erfc(-x / sqrt 2) / 2 with the Chebyshev fit of erfc
     * (Press et al., Numerical Recipes, erfcc: relative error below 1.2e-7
     * for every argument, so the left tail stays accurate too):
     * erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a / 2) for a >= 0, and
     * erfc(-a) = 2 - erfc(a). The density is exp(-x^2 / 2) / sqrt(2 pi). */
#pragma omp simd
    for(size_t i = 0; i < len; i++) {
      float v = x[i], z = v * 0.70710678118654752f, az = z < 0.0f ? -z : z;
      float t = 1.0f / (1.0f + 0.5f * az);
      float p = -0.82215223f + t * 0.17087277f;
      p = 1.48851587f + t * p;
      p = -1.13520398f + t * p;
      p = 0.27886807f + t * p;
      p = -0.18628806f + t * p;
      p = 0.09678418f + t * p;
      p = 0.37409196f + t * p;
      p = 1.00002368f + t * p;
      p = -1.26551223f + t * p;
      float ec = t * otf_expf_fast(-az * az + p); /* erfc(|z|) */
      float cdf = z < 0.0f ? 0.5f * ec : 1.0f - 0.5f * ec;
      if(dydx)
        dydx[i] = cdf + v * 0.39894228040143268f * otf_expf_fast(-0.5f * v * v);
      y[i] = v * cdf;
    }
    break;
  case OTF_ACT_GELU_TANH:
#pragma omp simd
    for(size_t i = 0; i < len; i++) {
      const float c = 0.79788456080286536f;
      float v = x[i], u = c * (v + 0.044715f * v * v * v), au = u < 0.0f ? -u : u;
      float th = 1.0f - 2.0f / (otf_expf_fast(2.0f * au) + 1.0f);
      th = u < 0.0f ? -th : th;
      if(dydx)
        dydx[i] = 0.5f * (1.0f + th) +
                  0.5f * v * (1.0f - th * th) * c * (1.0f + 3.0f * 0.044715f * v * v);
      y[i] = 0.5f * v * (1.0f + th);
    }
    break;
  case OTF_ACT_RELU:
#pragma omp simd
    for(size_t i = 0; i < len; i++) {
      float v = x[i];
      if(dydx)
        dydx[i] = v > 0.0f ? 1.0f : 0.0f;
      y[i] = v > 0.0f ? v : 0.0f;
    }
    break;
  case OTF_ACT_SILU:
  case OTF_ACT_QUICK_GELU: {
    const float a = act == OTF_ACT_SILU ? 1.0f : 1.702f;
#pragma omp simd
    for(size_t i = 0; i < len; i++) {
      float v = x[i], sg = 1.0f / (1.0f + otf_expf_fast(-a * v));
      if(dydx)
        dydx[i] = sg * (1.0f + a * v * (1.0f - sg));
      y[i] = v * sg;
    }
    break;
  }
  }
}

OTF_HOT_CLONES
void otf__act_bwd(float *dx, const float *dy, const float *dydx, size_t len) {
#pragma omp simd
  for(size_t i = 0; i < len; i++)
    dx[i] = dy[i] * dydx[i];
}

void otf__act_ref(otf_act act, float *y, float *d, const float *x, size_t len) {
  for(size_t i = 0; i < len; i++) {
    double v = x[i], out = 0.0, der = 0.0;
    switch(act) {
    case OTF_ACT_GELU: {
      double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752));
      out = v * cdf;
      der = cdf + v * 0.39894228040143268 * exp(-0.5 * v * v);
      break;
    }
    case OTF_ACT_GELU_TANH: {
      const double c = 0.79788456080286536;
      double th = tanh(c * (v + 0.044715 * v * v * v));
      out = 0.5 * v * (1.0 + th);
      der = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * v * v);
      break;
    }
    case OTF_ACT_RELU:
      out = v > 0.0 ? v : 0.0;
      der = v > 0.0 ? 1.0 : 0.0;
      break;
    case OTF_ACT_SILU:
    case OTF_ACT_QUICK_GELU: {
      double a = act == OTF_ACT_SILU ? 1.0 : 1.702, sg = 1.0 / (1.0 + exp(-a * v));
      out = v * sg;
      der = sg * (1.0 + a * v * (1.0 - sg));
      break;
    }
    }
    y[i] = (float)out;
    d[i] = (float)der;
  }
}

void otf__softmax_bwd(float *dp, const float *p, size_t T) {
  for(size_t i = 0; i < T; i++) {
    float *d = dp + i * T;
    const float *pr = p + i * T;
    float dot = 0.0f;
    for(size_t j = 0; j < T; j++)
      dot += pr[j] * d[j];
    for(size_t j = 0; j < T; j++)
      d[j] = pr[j] * (d[j] - dot);
  }
}

double otf__xent(float *dlogits, size_t *scored, size_t *correct, const float *logits,
                 const int64_t *labels, size_t rows, size_t C, int64_t ignore, float scale) {
  double total = 0.0;
  size_t ns = 0, nc = 0;
  for(size_t r = 0; r < rows; r++) {
    const float *z = logits + r * C;
    float *dz = dlogits ? dlogits + r * C : NULL;
    if(labels[r] == ignore) {
      if(dz)
        memset(dz, 0, C * sizeof(float));
      continue;
    }
    size_t y = (size_t)labels[r], am = 0;
    float mx = z[0];
    for(size_t c = 1; c < C; c++)
      if(z[c] > mx) {
        mx = z[c];
        am = c;
      }
    double se = 0.0;
    for(size_t c = 0; c < C; c++)
      se += exp((double)z[c] - mx);
    double lse = (double)mx + log(se);
    total += lse - (double)z[y];
    ns++;
    nc += am == y;
    if(dz) {
      for(size_t c = 0; c < C; c++)
        dz[c] = (float)(exp((double)z[c] - lse)) * scale;
      dz[y] -= scale;
    }
  }
  *scored = ns;
  *correct = nc;
  return total;
}
