/* The optimizer side of training, as PyTorch does it: AdamW with
 * decoupled weight decay (torch.optim.AdamW), the learning-rate schedule
 * tools/train_fixtures.py trains with (linear warm-up, then cosine to 0),
 * and gradient clipping by the global L2 norm (clip_grad_norm_). */
#ifndef OTF_TRAIN_ADAMW_H
#define OTF_TRAIN_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct otf_adamw_opts {
  double lr;            /* peak learning rate */
  double beta1, beta2;  /* 0.9, 0.999 */
  double eps;           /* 1e-8 */
  double weight_decay;  /* applied to tensors marked for decay only */
} otf_adamw_opts;

/* PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, decay 0.01. */
void otf_adamw_opts_default(otf_adamw_opts *o);

/* One parameter tensor the optimizer updates: offset and length into the
 * parameter / gradient blocks, and whether weight decay applies. */
typedef struct otf_adamw_group {
  size_t offset, numel;
  int decay;
} otf_adamw_group;

typedef struct otf_adamw otf_adamw;

/* State (first and second moments) for numel parameters, zero; the
 * groups [ngroups] are copied. *out: caller owns, otf_adamw_destroy.
 * Errors: OTF_E_INVAL (a group outside numel, bad hyper-parameters),
 * OTF_E_NOMEM. */
otf_status otf_adamw_create(otf_adamw **out, size_t numel, const otf_adamw_group *groups,
                            size_t ngroups, const otf_adamw_opts *o, otf_error *err) OTF_WUR;
void otf_adamw_destroy(otf_adamw *a);

/* One update of params [numel] with grads [numel] at learning rate lr
 * (the schedule's value for this step), torch.optim.AdamW's arithmetic:
 * p *= 1 - lr wd (decayed tensors); m, v updated; p -= lr / (1 - b1^t)
 * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
void otf_adamw_step(otf_adamw *a, float *params, const float *grads, double lr);

/* Steps taken so far. */
uint64_t otf_adamw_steps(const otf_adamw *a);

/* Learning rate at step (0-based) of total: peak * (step + 1) / w for
 * step < w = max(1, floor(warmup * total)), then peak * (1 + cos(pi (step -
 * w) / max(1, total - w))) / 2. */
double otf_lr_schedule(uint64_t step, uint64_t total, double peak, double warmup);

/* Scales grads [n] so that their global L2 norm is at most max_norm, as
 * clip_grad_norm_ does (factor max_norm / (norm + 1e-6), capped at 1);
 * max_norm <= 0 disables. Returns the norm before clipping (double sum). */
double otf_clip_grad_norm(float *grads, size_t n, double max_norm);

#endif
