/* Kernels of training: the forward pieces whose inputs the backward pass
 * needs, and the backward of every operation of the ViT / BERT forward
 * pass (linear, LayerNorm, activations, masked attention softmax,
 * softmax cross-entropy). Internal to the training modules (otf__ names).
 *
 * Shapes are row-major; every kernel takes outputs first, then const
 * inputs, then dimensions. "+=" in a comment means the kernel accumulates
 * into its output (parameter gradients are summed over a batch); "=" means
 * it overwrites. Nothing here allocates. */
#ifndef OTF_TRAIN_OPS_H
#define OTF_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "fusion/hfconfig.h"

/* (The forward of a linear layer, otf__linear_fwd, is shared with
 * inference: fusion/forward.h.) */

/* Backward of otf__linear_fwd given dy [rows, out]:
 *   dW [out, in] += dy^T x;  db [out] += column sums of dy (db may be NULL);
 *   dx [rows, in] = dy W (+= when accumulate_dx; dx may be NULL). */
void otf__linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                     const float *W, size_t rows, size_t in, size_t out, int accumulate_dx);

/* y [rows, D] = LayerNorm(x) * g + b (biased variance, statistics in
 * double); mean [rows] and rstd [rows] are saved for the backward. y may
 * alias x only when the caller does not need x afterwards. */
void otf__layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                        const float *b, size_t rows, size_t D, double eps);

/* Backward of otf__layernorm_fwd with the saved x, mean, rstd:
 *   dg [D] += sum dy * xhat;  db [D] += sum dy;
 *   dx [rows, D] = rstd (dy g - mean(dy g) - xhat mean(dy g xhat)).
 * dx may alias dy (each row is read before it is written). */
void otf__layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *g, size_t rows,
                        size_t D);

/* y [len] = act(x [len]) and, when dydx is not NULL, dydx [len] = act'(x),
 * in one branch-free vectorised pass (own float exp; the exact GELU's
 * normal CDF from a Chebyshev fit of erfc with relative error below 1.2e-7
 * for every argument). y may alias x; dydx may not. */
void otf__act_fwd(otf_act act, float *y, float *dydx, const float *x, size_t len);
/* dx [len] = dy * dydx (the derivative saved by otf__act_fwd); dx may alias dy. */
void otf__act_bwd(float *dx, const float *dy, const float *dydx, size_t len);

/* Scalar libm references of the two above, the oracle of the tests:
 * y = act(x), d = act'(x). */
void otf__act_ref(otf_act act, float *y, float *d, const float *x, size_t len);

/* (The masked softmax itself is shared with inference: fusion/forward.h.) */

/* Softmax backward in place: dp [T, T] (gradient of the probabilities)
 * becomes the gradient of the scores, ds = p (dp - rowsum(p dp)). */
void otf__softmax_bwd(float *dp, const float *p, size_t T);

/* Softmax cross-entropy over logits [rows, C] with labels [rows] (a label
 * of ignore is not scored). Returns the sum of the losses (natural log,
 * double) over scored rows, their number in *scored and the number whose
 * argmax equals the label in *correct. When dlogits is not NULL it gets
 * (softmax - onehot) * scale per scored row and 0 on the others (dlogits
 * may alias logits). Labels must be in [0, C) or equal to ignore. */
double otf__xent(float *dlogits, size_t *scored, size_t *correct, const float *logits,
                 const int64_t *labels, size_t rows, size_t C, int64_t ignore, float scale);

#endif
