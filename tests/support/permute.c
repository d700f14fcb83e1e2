/* Functionally equivalent permuted copies of a model folder, driven by the
 * architecture table. The reasoning for each space is in permute.h. */
#include "tests/support/permute.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/alloc.h"
#include "fusion/arch.h"
#include "fusion/fsutil.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/rewrite.h"
#include "tests/support/testutil.h"

#define PATH_CAP 4096
#define NAME_CAP 512

/* Every permutation of one run, as gathers, plus K's within-head order
 * (equal to tau_qk unless TU_PERM_BREAK_QK). */
typedef struct perms {
  tu_perm_record r;
  int32_t *tau_k; /* [layers * head_dim] */
} perms;

void tu_perm_record_free(tu_perm_record *rec) {
  if(!rec)
    return;
  otf_free(rec->resid);
  otf_free(rec->sigma);
  otf_free(rec->tau_qk);
  otf_free(rec->tau_v);
  otf_free(rec->ffn_perm);
  otf_free(rec->pool);
  memset(rec, 0, sizeof(*rec));
}

static void identity(int32_t *p, int n) {
  for(int i = 0; i < n; i++)
    p[i] = i;
}

/* p [n]: a uniformly random derangement when n >= 2 (Fisher-Yates, redrawn
 * while a unit keeps its index; e ~ 2.7 draws on average), the identity
 * for n = 1. When !enabled the draws still happen (so that the stream, and
 * every later permutation, does not depend on which parts are enabled) and
 * p is reset to the identity. */
static void draw(tu_rng *r, int32_t *p, int n, int enabled) {
  for(;;) {
    identity(p, n);
    for(int i = n - 1; i > 0; i--) {
      int j = (int)(tu_next(r) % (uint64_t)(i + 1));
      int32_t t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    int fixed = 0;
    for(int i = 0; i < n && !fixed; i++)
      fixed = p[i] == i;
    if(n < 2 || !fixed)
      break;
  }
  if(!enabled)
    identity(p, n);
}

static otf_status perms_make(perms *P, const otf_model_config *cfg, uint64_t seed,
                             unsigned what, otf_error *err) {
  memset(P, 0, sizeof(*P));
  tu_perm_record *r = &P->r;
  r->hidden = cfg->hidden_size;
  r->layers = cfg->num_layers;
  r->heads = cfg->num_heads;
  r->head_dim = cfg->num_heads > 0 ? cfg->hidden_size / cfg->num_heads : 0;
  r->ffn = cfg->intermediate_size;
  if(r->hidden <= 0 || r->layers <= 0 || r->heads <= 0 || r->head_dim <= 0 || r->ffn <= 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "model sizes must be positive");
  if((what & TU_PERM_BREAK_QK) && r->head_dim < 2)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "TU_PERM_BREAK_QK needs head_dim >= 2");
  size_t L = (size_t)r->layers, hd = (size_t)r->head_dim;
  r->resid = otf_malloc_array((size_t)r->hidden, sizeof(int32_t));
  r->sigma = otf_malloc_array(L * (size_t)r->heads, sizeof(int32_t));
  r->tau_qk = otf_malloc_array(L * hd, sizeof(int32_t));
  r->tau_v = otf_malloc_array(L * hd, sizeof(int32_t));
  r->ffn_perm = otf_malloc_array(L * (size_t)r->ffn, sizeof(int32_t));
  r->pool = otf_malloc_array((size_t)r->hidden, sizeof(int32_t));
  P->tau_k = otf_malloc_array(L * hd, sizeof(int32_t));
  if(!r->resid || !r->sigma || !r->tau_qk || !r->tau_v || !r->ffn_perm || !r->pool ||
     !P->tau_k) {
    tu_perm_record_free(r);
    otf_free(P->tau_k);
    P->tau_k = NULL;
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the permutations");
  }
  tu_rng rng = {seed};
  draw(&rng, r->resid, r->hidden, (what & TU_PERM_RESID) != 0);
  for(size_t l = 0; l < L; l++) {
    draw(&rng, r->sigma + l * (size_t)r->heads, r->heads, (what & TU_PERM_HEADS) != 0);
    draw(&rng, r->tau_qk + l * hd, r->head_dim, (what & TU_PERM_WITHIN_HEAD) != 0);
    draw(&rng, r->tau_v + l * hd, r->head_dim, (what & TU_PERM_WITHIN_HEAD) != 0);
    draw(&rng, r->ffn_perm + l * (size_t)r->ffn, r->ffn, (what & TU_PERM_FFN) != 0);
    for(size_t d = 0; d < hd; d++)
      P->tau_k[l * hd + d] = (what & TU_PERM_BREAK_QK) ? r->tau_qk[l * hd + (d + 1) % hd]
                                                       : r->tau_qk[l * hd + d];
  }
  draw(&rng, r->pool, r->hidden, (what & TU_PERM_POOL) != 0);
  return OTF_OK;
}

static void perms_free(perms *P) {
  tu_perm_record_free(&P->r);
  otf_free(P->tau_k);
  P->tau_k = NULL;
}

/* Head-split map for one Q/K/V block: out[h*hd + d] = base + sigma[h]*hd +
 * tau[d]. */
static void head_map(int32_t *out, int32_t base, const int32_t *sigma, const int32_t *tau,
                     int heads, int hd) {
  for(int h = 0; h < heads; h++)
    for(int d = 0; d < hd; d++)
      out[h * hd + d] = base + sigma[h] * hd + tau[d];
}

/* Fills map [n] for an axis of space sp at layer (-1 outside the layers).
 * Returns 1 when the axis is permuted, 0 when it keeps its order, -1 when
 * n is not the space's size (a table / config mismatch) or a per-layer
 * space appears outside the layers. */
static int axis_map(int32_t *map, uint64_t n, otf_space sp, int layer, const perms *P) {
  const tu_perm_record *r = &P->r;
  size_t D = (size_t)r->hidden, hd = (size_t)r->head_dim, H = (size_t)r->heads;
  int per_layer = sp == OTF_SP_Q || sp == OTF_SP_K || sp == OTF_SP_V || sp == OTF_SP_QKV ||
                  sp == OTF_SP_FFN;
  if(per_layer && (layer < 0 || layer >= r->layers))
    return -1;
  size_t l = per_layer ? (size_t)layer : 0;
  const int32_t *sigma = r->sigma + l * H;
  switch(sp) {
  case OTF_SP_RESID:
  case OTF_SP_MLM: /* tied decoder: see permute.h */
    if(n != D)
      return -1;
    memcpy(map, r->resid, D * sizeof(int32_t));
    return 1;
  case OTF_SP_POOL:
    if(n != D)
      return -1;
    memcpy(map, r->pool, D * sizeof(int32_t));
    return 1;
  case OTF_SP_Q:
  case OTF_SP_K:
  case OTF_SP_V: {
    if(n != D)
      return -1;
    const int32_t *tau = sp == OTF_SP_Q   ? r->tau_qk + l * hd
                         : sp == OTF_SP_K ? P->tau_k + l * hd
                                          : r->tau_v + l * hd;
    head_map(map, 0, sigma, tau, r->heads, r->head_dim);
    return 1;
  }
  case OTF_SP_QKV:
    if(n != 3 * D)
      return -1;
    head_map(map, 0, sigma, r->tau_qk + l * hd, r->heads, r->head_dim);
    head_map(map + D, (int32_t)D, sigma, P->tau_k + l * hd, r->heads, r->head_dim);
    head_map(map + 2 * D, (int32_t)(2 * D), sigma, r->tau_v + l * hd, r->heads, r->head_dim);
    return 1;
  case OTF_SP_FFN:
    if(n != (uint64_t)r->ffn)
      return -1;
    memcpy(map, r->ffn_perm + l * (size_t)r->ffn, (size_t)r->ffn * sizeof(int32_t));
    return 1;
  case OTF_SP_ONE:
  case OTF_SP_POS:
  case OTF_SP_PATCH:
  case OTF_SP_CLASS:
  case OTF_SP_VOCAB:
  case OTF_SP_TYPE:
  case OTF_SP_COUNT: break;
  }
  return 0;
}

/* out[i_0, ..., i_{r-1}] = in[m_0(i_0), ..., m_{r-1}(i_{r-1})], maps[k]
 * NULL = identity. out, in: [prod shape], row-major. */
static void gather(float *out, const float *in, const uint64_t *shape, int rank,
                   int32_t *const *maps) {
  uint64_t stride[OTF_MAX_TENSOR_RANK], idx[OTF_MAX_TENSOR_RANK] = {0}, numel = 1;
  for(int k = rank - 1; k >= 0; k--) {
    stride[k] = numel;
    numel *= shape[k];
  }
  for(uint64_t o = 0; o < numel; o++) {
    uint64_t src = 0;
    for(int k = 0; k < rank; k++)
      src += (maps[k] ? (uint64_t)maps[k][idx[k]] : idx[k]) * stride[k];
    out[o] = in[src];
    for(int k = rank - 1; k >= 0; k--) { /* odometer */
      if(++idx[k] < shape[k])
        break;
      idx[k] = 0;
    }
  }
}

/* Permutes one tensor into an owned F32 buffer (*data), filling o. */
static otf_status permute_tensor(otf_st_out *o, float **data, const otf_st_tensor *t,
                                 const otf_tensor_spec *s, int layer, const perms *P,
                                 otf_error *err) {
  otf_status rc = OTF_OK;
  int32_t *maps[OTF_MAX_TENSOR_RANK] = {0};
  float *in = NULL, *out = NULL;
  if(t->rank != s->rank) {
    rc = OTF_FAIL(err, OTF_E_INTERNAL, t->name, "%s: rank %d, table says %d", t->name,
                  t->rank, s->rank);
    goto fail;
  }
  for(int k = 0; k < t->rank; k++) {
    maps[k] = otf_malloc_array(t->shape[k] ? (size_t)t->shape[k] : 1, sizeof(int32_t));
    if(!maps[k]) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, t->name, "no memory for %s", t->name);
      goto fail;
    }
    int res = axis_map(maps[k], t->shape[k], s->axes[k], layer, P);
    if(res < 0) {
      rc = OTF_FAIL(err, OTF_E_INTERNAL, t->name, "%s: axis %d (%s) has %llu units", t->name,
                    k, otf_space_name(s->axes[k]), (unsigned long long)t->shape[k]);
      goto fail;
    }
    if(res == 0) {
      otf_free(maps[k]);
      maps[k] = NULL;
    }
  }
  size_t n = t->numel ? (size_t)t->numel : 1;
  in = otf_malloc_array(n, sizeof(float));
  out = otf_malloc_array(n, sizeof(float));
  if(!in || !out) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, t->name, "no memory for %s", t->name);
    goto fail;
  }
  rc = otf_st_read_f32(in, t, err);
  if(rc != OTF_OK)
    goto fail;
  gather(out, in, t->shape, t->rank, maps);
  o->name = t->name;
  o->dtype = OTF_DT_F32;
  o->rank = t->rank;
  memcpy(o->shape, t->shape, sizeof(o->shape));
  o->data = out;
  *data = out;
  out = NULL;
fail:
  for(int k = 0; k < OTF_MAX_TENSOR_RANK; k++)
    otf_free(maps[k]);
  otf_free(in);
  otf_free(out);
  return rc;
}

static otf_status permute_cb(void *ctx, otf_st_out *o, float **owned,
                             const otf_st_tensor *t, const otf_tensor_spec *s, int layer,
                             otf_error *err) {
  return permute_tensor(o, owned, t, s, layer, ctx, err);
}

otf_status tu_permute_model(const char *src_dir, const char *dst_dir, uint64_t seed,
                            unsigned what, tu_perm_record *rec, otf_error *err) {
  otf_status rc = OTF_OK;
  otf_model *m = NULL;
  perms P;
  char path[PATH_CAP], path2[PATH_CAP];
  memset(&P, 0, sizeof(P));
  if(rec)
    memset(rec, 0, sizeof(*rec));
  otf_error_clear(err);
  if(!src_dir || !dst_dir || (what & ~(TU_PERM_ALL | TU_PERM_BREAK_QK))) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "bad arguments to tu_permute_model");
    goto fail;
  }
  rc = otf_model_open(&m, src_dir, 0, err);
  if(rc != OTF_OK)
    goto fail;
  const otf_model_config *cfg = otf_model_cfg(m);
  rc = perms_make(&P, cfg, seed, what, err);
  if(rc != OTF_OK)
    goto fail;

  rc = tu_rewrite_weights(m, dst_dir, permute_cb, &P, err);
  if(rc != OTF_OK)
    goto fail;
  int n1 = snprintf(path, sizeof(path), "%s/config.json", src_dir);
  int n2 = snprintf(path2, sizeof(path2), "%s/config.json", dst_dir);
  if(n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(path) || (size_t)n2 >= sizeof(path2)) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "path too long");
    goto fail;
  }
  rc = otf_fs_copy_file(path, path2, err);
  if(rc != OTF_OK)
    goto fail;
  if(rec) {
    *rec = P.r; /* hand the arrays over */
    memset(&P.r, 0, sizeof(P.r));
  }
fail:
  perms_free(&P);
  otf_model_close(m);
  return rc;
}
