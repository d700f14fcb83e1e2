/* Training kernels: see train_ops.h. Matrix products go to OpenBLAS;
 * elementwise code is plain loops with libm, accurate rather than fast
 * (training time is dominated by the SGEMMs). */
#include "fusion/train_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void otf__linear_fwd(float *y, const float *x, const float *W, const float *b, size_t rows,
                     size_t in, size_t out) {
  float beta = 0.0f;
  if(b) {
    for(size_t r = 0; r < rows; r++)
      memcpy(y + r * out, b, out * sizeof(float));
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)out,
              (blasint)in, 1.0f, x, (blasint)in, W, (blasint)in, beta, y, (blasint)out);
}

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

void otf__layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                        const float *b, size_t rows, size_t D, double eps) {
  for(size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    double s = 0.0, ss = 0.0;
    for(size_t i = 0; i < D; i++)
      s += xr[i];
    double mu = s / (double)D;
    for(size_t i = 0; i < D; i++) {
      double d = xr[i] - mu;
      ss += d * d;
    }
    float rs = (float)(1.0 / sqrt(ss / (double)D + eps)), fm = (float)mu;
    mean[r] = fm;
    rstd[r] = rs;
    for(size_t i = 0; i < D; i++)
      yr[i] = (xr[i] - fm) * rs * g[i] + (b ? b[i] : 0.0f);
  }
}

void otf__layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *g, size_t rows,
                        size_t D) {
  for(size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D, *dyr = dy + r * D;
    float *dxr = dx + r * D;
    const float m = mean[r], rs = rstd[r];
    double s1 = 0.0, s2 = 0.0;
    for(size_t i = 0; i < D; i++) {
      float xh = (xr[i] - m) * rs;
      float dxh = dyr[i] * g[i];
      dg[i] += dyr[i] * xh;
      if(db)
        db[i] += dyr[i];
      s1 += dxh;
      s2 += (double)dxh * xh;
    }
    const float a = (float)(s1 / (double)D), c = (float)(s2 / (double)D);
    for(size_t i = 0; i < D; i++) {
      float xh = (xr[i] - m) * rs;
      dxr[i] = rs * (dyr[i] * g[i] - a - xh * c);
    }
  }
}

void otf__act_fwd(otf_act act, float *y, const float *x, size_t len) {
  for(size_t i = 0; i < len; i++) {
    float v = x[i];
    switch(act) {
    case OTF_ACT_GELU: y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
    case OTF_ACT_GELU_TANH: {
      float u = 0.79788456080286536f * (v + 0.044715f * v * v * v);
      y[i] = 0.5f * v * (1.0f + tanhf(u));
      break;
    }
    case OTF_ACT_RELU: y[i] = v > 0.0f ? v : 0.0f; break;
    case OTF_ACT_SILU: y[i] = v / (1.0f + expf(-v)); break;
    case OTF_ACT_QUICK_GELU: y[i] = v / (1.0f + expf(-1.702f * v)); break;
    }
  }
}

void otf__act_bwd(otf_act act, float *dx, const float *dy, const float *x, size_t len) {
  for(size_t i = 0; i < len; i++) {
    float v = x[i], d = 0.0f;
    switch(act) {
    case OTF_ACT_GELU: {
      float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
      float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
      d = cdf + v * pdf;
      break;
    }
    case OTF_ACT_GELU_TANH: {
      const float c = 0.79788456080286536f;
      float t = tanhf(c * (v + 0.044715f * v * v * v));
      d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * v * v);
      break;
    }
    case OTF_ACT_RELU: d = v > 0.0f ? 1.0f : 0.0f; break;
    case OTF_ACT_SILU: {
      float s = 1.0f / (1.0f + expf(-v));
      d = s * (1.0f + v * (1.0f - s));
      break;
    }
    case OTF_ACT_QUICK_GELU: {
      float s = 1.0f / (1.0f + expf(-1.702f * v));
      d = s * (1.0f + 1.702f * v * (1.0f - s));
      break;
    }
    }
    dx[i] = dy[i] * d;
  }
}

void otf__softmax_masked(float *s, const float *keyok, size_t nvalid, size_t T) {
  for(size_t i = 0; i < T; i++) {
    float *row = s + i * T;
    if(nvalid == 0) {
      for(size_t j = 0; j < T; j++)
        row[j] = 1.0f / (float)T;
      continue;
    }
    float mx = -INFINITY;
    for(size_t j = 0; j < T; j++)
      if(keyok[j] != 0.0f && row[j] > mx)
        mx = row[j];
    float sum = 0.0f;
    for(size_t j = 0; j < T; j++) {
      float e = keyok[j] != 0.0f ? expf(row[j] - mx) : 0.0f;
      row[j] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
    for(size_t j = 0; j < T; j++)
      row[j] *= inv;
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
