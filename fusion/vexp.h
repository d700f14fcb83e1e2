/* Vectorisable exponential for the Sinkhorn kernel K = exp(-C/reg).
 * glibc's exp() is scalar; this one is a branch-free loop the compiler turns
 * into SIMD code, accurate to a few ulp. */
#ifndef OTF_VEXP_H
#define OTF_VEXP_H

#include <stddef.h>

/* out[k] = exp(scale * in[k]) for k < len. Arguments below -708 (where exp
 * leaves the normal double range) give 0, above +709 give +inf; NaN gives
 * NaN. Relative error <= 4e-16 elsewhere (checked against libm in
 * tests/test_sinkhorn.c). out may alias in. O(len). */
void otf_vexp_scaled(double *out, const double *in, double scale, size_t len);

#endif
