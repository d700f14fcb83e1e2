/* Functionally identical copies of a model folder with zero FFN units
 * added, driven by the architecture table. The reasoning is in pad.h. */
#include "tests/support/pad.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/alloc.h"
#include "common/limits.h"
#include "fusion/arch.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/rewrite.h"
#include "tests/support/testutil.h"

#define PATH_CAP 4096
#define NAME_CAP 512

/* Where each padded FFN slot comes from, per layer: src[l * wide + j] is
 * the original unit, or -1 for a zero unit. */
typedef struct pad_plan {
  int layers, ffn, wide;
  int32_t *src; /* [layers * wide] */
} pad_plan;

static otf_status plan_make(pad_plan *P, const otf_model_config *cfg, int extra,
                            uint64_t seed, otf_error *err) {
  memset(P, 0, sizeof(*P));
  P->layers = cfg->num_layers;
  P->ffn = cfg->intermediate_size;
  if(P->layers <= 0 || P->ffn <= 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "model sizes must be positive");
  if(extra < 0 || extra > OTF_MAX_HIDDEN * 16 - P->ffn)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "extra = %d: the padded FFN must have 0..%d units",
                    extra, OTF_MAX_HIDDEN * 16);
  P->wide = P->ffn + extra;
  P->src = otf_malloc_array((size_t)P->layers * (size_t)P->wide, sizeof(int32_t));
  if(!P->src)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the padding plan");
  tu_rng rng = {seed};
  for(int l = 0; l < P->layers; l++) {
    int32_t *s = P->src + (size_t)l * (size_t)P->wide;
    /* Flags first (1 = zero unit), shuffled unless seed is 0 ... */
    for(int j = 0; j < P->wide; j++)
      s[j] = j >= P->ffn;
    if(seed != 0)
      for(int j = P->wide - 1; j > 0; j--) {
        int k = (int)(tu_next(&rng) % (uint64_t)(j + 1));
        int32_t t = s[j];
        s[j] = s[k];
        s[k] = t;
      }
    /* ... then the original units in order into the other slots. */
    int32_t next = 0;
    for(int j = 0; j < P->wide; j++)
      s[j] = s[j] ? -1 : next++;
  }
  return OTF_OK;
}

/* out[i_0, ..., i_{r-1}] = in[m_0(i_0), ..., m_{r-1}(i_{r-1})] over the
 * output shape, 0 where some map gives -1; maps[k] NULL = identity.
 * in: row-major over in_shape. */
static void gather_pad(float *out, const uint64_t *out_shape, const float *in,
                       const uint64_t *in_shape, int rank, const int32_t *const *maps) {
  uint64_t stride[OTF_MAX_TENSOR_RANK], idx[OTF_MAX_TENSOR_RANK] = {0}, numel = 1, s = 1;
  for(int k = rank - 1; k >= 0; k--) {
    stride[k] = s;
    s *= in_shape[k];
    numel *= out_shape[k];
  }
  for(uint64_t o = 0; o < numel; o++) {
    uint64_t src = 0;
    int zero = 0;
    for(int k = 0; k < rank && !zero; k++) {
      int64_t i = maps[k] ? maps[k][idx[k]] : (int64_t)idx[k];
      zero = i < 0;
      src += (uint64_t)(zero ? 0 : i) * stride[k];
    }
    out[o] = zero ? 0.0f : in[src];
    for(int k = rank - 1; k >= 0; k--) { /* odometer */
      if(++idx[k] < out_shape[k])
        break;
      idx[k] = 0;
    }
  }
}

/* Pads one tensor into an owned F32 buffer (*data), filling o. */
static otf_status pad_tensor(otf_st_out *o, float **data, const otf_st_tensor *t,
                             const otf_tensor_spec *s, int layer, const pad_plan *P,
                             otf_error *err) {
  otf_status rc = OTF_OK;
  const int32_t *maps[OTF_MAX_TENSOR_RANK] = {0};
  uint64_t shape[OTF_MAX_TENSOR_RANK] = {0}, n = 1;
  float *in = NULL, *out = NULL;
  if(t->rank != s->rank) {
    rc = OTF_FAIL(err, OTF_E_INVAL, t->name, "%s: rank %d, the table says %d", t->name,
                  t->rank, s->rank);
    goto fail;
  }
  for(int k = 0; k < t->rank; k++) {
    shape[k] = t->shape[k];
    if(s->axes[k] == OTF_SP_FFN) {
      if(layer < 0 || layer >= P->layers || t->shape[k] != (uint64_t)P->ffn) {
        rc = OTF_FAIL(err, OTF_E_INVAL, t->name,
                      "%s: FFN axis %d has %llu entries, the config says %d", t->name, k,
                      (unsigned long long)t->shape[k], P->ffn);
        goto fail;
      }
      maps[k] = P->src + (size_t)layer * (size_t)P->wide;
      shape[k] = (uint64_t)P->wide;
    }
    n *= shape[k];
  }
  in = otf_malloc_array(t->numel ? t->numel : 1, sizeof(float));
  out = otf_malloc_array(n ? n : 1, sizeof(float));
  if(!in || !out) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, t->name, "no memory for %s", t->name);
    goto fail;
  }
  rc = otf_st_read_f32(in, t, err);
  if(rc != OTF_OK)
    goto fail;
  gather_pad(out, shape, in, t->shape, t->rank, maps);
  o->name = t->name;
  o->dtype = OTF_DT_F32;
  o->rank = t->rank;
  memcpy(o->shape, shape, sizeof(o->shape));
  o->data = out;
  *data = out;
  out = NULL;
fail:
  otf_free(in);
  otf_free(out);
  return rc;
}

/* dst = src's config with the FFN width key set to wide. */
static otf_status write_config(const char *src, const char *dst, const otf_model_config *cfg,
                               int wide, otf_error *err) {
  otf_status rc = OTF_OK;
  json_error_t je;
  json_t *root = json_load_file(src, JSON_REJECT_DUPLICATES, &je);
  if(!root || !json_is_object(root)) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot read %s: %s", src, root ? "not an object" : je.text);
    goto fail;
  }
  const char *key = cfg->family == OTF_FAMILY_GPT2 ? "n_inner" : "intermediate_size";
  if(json_object_set_new(root, key, json_integer(wide)) != 0) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "cannot set %s", key);
    goto fail;
  }
  if(json_dump_file(root, dst, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot write %s: %s", dst, strerror(errno));
    goto fail;
  }
fail:
  json_decref(root);
  return rc;
}

static otf_status pad_cb(void *ctx, otf_st_out *o, float **owned, const otf_st_tensor *t,
                         const otf_tensor_spec *s, int layer, otf_error *err) {
  return pad_tensor(o, owned, t, s, layer, ctx, err);
}

otf_status tu_pad_ffn_model(const char *src_dir, const char *dst_dir, int extra, uint64_t seed,
                            otf_error *err) {
  otf_status rc = OTF_OK;
  otf_model *m = NULL;
  pad_plan P;
  char path[PATH_CAP], path2[PATH_CAP];
  memset(&P, 0, sizeof(P));
  otf_error_clear(err);
  if(!src_dir || !dst_dir || extra < 0) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "bad arguments to tu_pad_ffn_model");
    goto fail;
  }
  rc = otf_model_open(&m, src_dir, 0, err);
  if(rc != OTF_OK)
    goto fail;
  const otf_model_config *cfg = otf_model_cfg(m);
  rc = plan_make(&P, cfg, extra, seed, err);
  if(rc != OTF_OK)
    goto fail;

  rc = tu_rewrite_weights(m, dst_dir, pad_cb, &P, err);
  if(rc != OTF_OK)
    goto fail;
  int n1 = snprintf(path, sizeof(path), "%s/config.json", src_dir);
  int n2 = snprintf(path2, sizeof(path2), "%s/config.json", dst_dir);
  if(n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(path) || (size_t)n2 >= sizeof(path2)) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "path too long");
    goto fail;
  }
  rc = write_config(path, path2, cfg, P.wide, err);
fail:
  otf_free(P.src);
  otf_model_close(m);
  return rc;
}
