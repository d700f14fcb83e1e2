#include "fusion/vexp.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fusion/simd.h"

/* exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 with
 * |r| <= ln(2)/2, exp(r) by its Taylor series to degree 13 (truncation
 * error < 5e-18 there). k comes from the round-to-nearest "magic number"
 * trick, and 2^k is built in the exponent bits directly, so the loop has
 * no branches and no int/float conversions the vectoriser cannot do. */
OTF_HOT_CLONES
void otf_vexp_scaled(double *out, const double *in, double scale, size_t len) {
  const double log2e = 1.4426950408889634;
  const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
  const double magic = 0x1.8p52;
#pragma omp simd
  for(size_t k = 0; k < len; k++) {
    double x = scale * in[k];
    double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    double t = xc * log2e + magic;
    double kd = t - magic;
    double r = (xc - kd * ln2_hi) - kd * ln2_lo;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t tb, sb;
    memcpy(&tb, &t, sizeof(tb));
    sb = (tb + 1023u) << 52;
    double s;
    memcpy(&s, &sb, sizeof(s));
    double y = p * s;
    y = x < -708.0 ? 0.0 : y;
    y = x > 709.0 ? INFINITY : y;
    out[k] = x != x ? x : y;
  }
}
