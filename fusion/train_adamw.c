/* AdamW, schedule and clipping: see train_adamw.h. */
#include "fusion/train_adamw.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/simd.h"

struct otf_adamw {
  otf_adamw_opts o;
  size_t numel, ngroups;
  otf_adamw_group *groups;
  float *m, *v;
  uint64_t t;
};

void otf_adamw_opts_default(otf_adamw_opts *o) {
  o->lr = 1e-3;
  o->beta1 = 0.9;
  o->beta2 = 0.999;
  o->eps = 1e-8;
  o->weight_decay = 0.01;
}

void otf_adamw_destroy(otf_adamw *a) {
  if(!a)
    return;
  otf_free(a->groups);
  otf_free(a->m);
  otf_free(a->v);
  otf_free(a);
}

otf_status otf_adamw_create(otf_adamw **out, size_t numel, const otf_adamw_group *groups,
                            size_t ngroups, const otf_adamw_opts *o, otf_error *err) {
  *out = NULL;
  if(!o || !(o->lr >= 0.0) || !(o->beta1 >= 0.0 && o->beta1 < 1.0) ||
     !(o->beta2 >= 0.0 && o->beta2 < 1.0) || !(o->eps > 0.0) || !(o->weight_decay >= 0.0) ||
     !isfinite(o->lr) || !isfinite(o->weight_decay))
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "AdamW needs lr >= 0, betas in [0, 1), eps > 0 and weight decay >= 0");
  for(size_t i = 0; i < ngroups; i++)
    if(groups[i].offset > numel || groups[i].numel > numel - groups[i].offset)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "optimizer group %zu is outside the parameters",
                      i);
  otf_adamw *a = otf_calloc(1, sizeof(*a));
  if(!a)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the optimizer");
  a->o = *o;
  a->numel = numel;
  a->ngroups = ngroups;
  a->groups = otf_malloc_array(ngroups ? ngroups : 1, sizeof(*groups));
  a->m = otf_calloc(numel ? numel : 1, sizeof(float));
  a->v = otf_calloc(numel ? numel : 1, sizeof(float));
  if(!a->groups || !a->m || !a->v) {
    otf_adamw_destroy(a);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the optimizer state");
  }
  if(ngroups)
    memcpy(a->groups, groups, ngroups * sizeof(*groups));
  *out = a;
  return OTF_OK;
}

uint64_t otf_adamw_steps(const otf_adamw *a) { return a->t; }

OTF_HOT_CLONES
void otf_adamw_step(otf_adamw *a, float *params, const float *grads, double lr) {
  a->t++;
  const double b1 = a->o.beta1, b2 = a->o.beta2;
  const double bc1 = 1.0 - pow(b1, (double)a->t), bc2 = 1.0 - pow(b2, (double)a->t);
  const float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2);
  const float fb1 = (float)b1, fb2 = (float)b2, c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2);
  const float eps = (float)a->o.eps;
  for(size_t gi = 0; gi < a->ngroups; gi++) {
    const otf_adamw_group *g = &a->groups[gi];
    float *p = params + g->offset, *m = a->m + g->offset, *v = a->v + g->offset;
    const float *gr = grads + g->offset;
    const float keep = g->decay ? (float)(1.0 - lr * a->o.weight_decay) : 1.0f;
#pragma omp simd
    for(size_t i = 0; i < g->numel; i++) {
      p[i] *= keep;
      m[i] = m[i] * fb1 + c1 * gr[i];
      v[i] = v[i] * fb2 + c2 * gr[i] * gr[i];
      float denom = sqrtf(v[i]) / bc2s + eps;
      p[i] -= step_size * m[i] / denom;
    }
  }
}

double otf_lr_schedule(uint64_t step, uint64_t total, double peak, double warmup) {
  uint64_t w = (uint64_t)(warmup * (double)total);
  if(w < 1)
    w = 1;
  if(step < w)
    return peak * (double)(step + 1) / (double)w;
  uint64_t span = total > w ? total - w : 1;
  double x = (double)(step - w) / (double)span;
  return peak * 0.5 * (1.0 + cos(M_PI * x));
}

OTF_HOT_CLONES
double otf_clip_grad_norm(float *grads, size_t n, double max_norm) {
  double ss = 0.0;
#pragma omp simd reduction(+ : ss)
  for(size_t i = 0; i < n; i++)
    ss += (double)grads[i] * grads[i];
  double norm = sqrt(ss);
  if(max_norm > 0.0) {
    double c = max_norm / (norm + 1e-6);
    if(c < 1.0) {
      float fc = (float)c;
#pragma omp simd
      for(size_t i = 0; i < n; i++)
        grads[i] *= fc;
    }
  }
  return norm;
}
