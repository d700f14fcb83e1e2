/* Compiler helpers for the few hot numeric kernels.
 *
 * OTF_HOT_CLONES compiles a function twice, for AVX2+FMA and for baseline
 * x86-64, and picks one at load time (GCC function multi-versioning), so the
 * binaries still run on any x86-64 while using the wide units where they
 * exist. Elsewhere it expands to nothing. */
#ifndef OTF_SIMD_H
#define OTF_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define OTF_HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define OTF_HOT_CLONES
#endif

/* exp for float, branch-free so the loops around it vectorise: x = k ln2 +
 * r with |r| <= ln2/2, exp(r) by a degree-7 Taylor polynomial (truncation
 * below 1e-8 there), 2^k put in the exponent bits. Arguments are clamped
 * to [-87, 88]: the callers need exp(x) for x <= 0 in softmax and moderate
 * x in activations, where exp(-87) ~ 1.6e-38 is as good as 0 after the
 * sums it feeds. Shared by inference (forward) and training (train_ops). */
static inline float otf_expf_fast(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float shift = 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
  float t = x * 1.44269504088896341f + shift;
  float k = t - shift;
  float r = (x - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)k + 127) << 23;
  float sc;
  memcpy(&sc, &bits, sizeof(sc));
  return p * sc;
}

#endif
