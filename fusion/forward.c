/* Inference for ViT (pre-LN) and BERT (post-LN) on OpenBLAS.
 *
 * Layout: every activation is a row-major [rows, cols] matrix with
 * rows = n * T (a sample's T tokens contiguous), so each Linear layer is one
 * SGEMM over the whole batch, and attention is two SGEMMs per (sample, head)
 * reading the head's column block in place (leading dimension D), without
 * copying heads out. All buffers are carved from one aligned block sized in
 * otf_forward_create for (max_batch, max tokens); otf_forward_run allocates
 * nothing.
 *
 * Numerics follow Hugging Face transformers: LayerNorm with biased variance
 * (statistics accumulated in double), softmax with the max subtracted,
 * masked keys at the most negative float (a masked key gets weight exactly
 * 0; when every key of a sample is masked HF's scores all round to
 * finfo.min and its softmax is uniform, which we reproduce instead of
 * dividing 0 by 0). */
#include "fusion/forward.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/simd.h"

typedef enum head_kind { HEAD_NONE = 0, HEAD_CLS, HEAD_MLM } head_kind;

struct otf_forward {
  const otf_weights *w;
  const otf_model_config *cfg;
  const otf_arch *arch;
  int vit;
  head_kind head;
  int pooler; /* POOL_W/POOL_B present */
  size_t max_batch, max_tok;
  size_t D, F, H, hd;
  /* ViT geometry: channels, patch side, patches per side, patches, C*p*p */
  size_t C, p, grid, P, K;
  void *block;
  float *x;     /* [R, D] residual stream */
  float *h;     /* [R, D] LayerNorm output / branch output */
  float *q;     /* [R, D] queries, overwritten head by head with the context */
  float *k;     /* [R, D] */
  float *v;     /* [R, D] */
  float *ff;    /* [R, F] FFN units */
  float *sc;    /* [Tmax, Tmax] scores of one (sample, head) */
  float *keyok; /* [R] 1 for an attended key, 0 for a masked one */
  float *cls;   /* [B, D] first-token rows gathered */
  float *pool;  /* [B, D] pooler output */
  float *unf;   /* ViT: [B*P, K] unfolded patches */
  float *pe;    /* ViT: [B*P, D] patch embeddings */
  size_t *nvalid; /* [B] attended keys per sample */
};

/* ---- elementwise kernels ------------------------------------------------ */

/* erf for float: the rational approximation Eigen and XLA use
 * (x P(x^2) / Q(x^2) on [-4, 4], saturating outside), a few ulp from the
 * libm value and branch-free. */
static inline float erf_f(float x) {
  x = x < -4.0f ? -4.0f : x;
  x = x > 4.0f ? 4.0f : x;
  float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

static inline float tanh_f(float x) {
  /* tanh(x) = 1 - 2 / (exp(2x) + 1); exact enough away from 0, and near 0
   * the odd polynomial keeps the relative error small. */
  float ax = x < 0.0f ? -x : x;
  float t = 1.0f - 2.0f / (otf_expf_fast(2.0f * ax) + 1.0f);
  float x2 = x * x;
  float small = ax * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
  t = ax < 0.0625f ? small : t;
  return x < 0.0f ? -t : t;
}

/* x [len] = act(x) in place. */
OTF_HOT_CLONES
static void act_inplace(otf_act act, float *x, size_t len) {
  switch(act) {
  case OTF_ACT_GELU:
#pragma omp simd
    for(size_t i = 0; i < len; i++)
      x[i] = 0.5f * x[i] * (1.0f + erf_f(x[i] * 0.70710678118654752f));
    break;
  case OTF_ACT_GELU_TANH:
#pragma omp simd
    for(size_t i = 0; i < len; i++) {
      float u = 0.79788456080286536f * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
      x[i] = 0.5f * x[i] * (1.0f + tanh_f(u));
    }
    break;
  case OTF_ACT_RELU:
#pragma omp simd
    for(size_t i = 0; i < len; i++)
      x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    break;
  case OTF_ACT_SILU:
#pragma omp simd
    for(size_t i = 0; i < len; i++)
      x[i] = x[i] / (1.0f + otf_expf_fast(-x[i]));
    break;
  case OTF_ACT_QUICK_GELU:
#pragma omp simd
    for(size_t i = 0; i < len; i++)
      x[i] = x[i] / (1.0f + otf_expf_fast(-1.702f * x[i]));
    break;
  }
}

void otf__forward_act(otf_act act, float *x, size_t len) { act_inplace(act, x, len); }

/* y [rows, D] = LayerNorm(x [rows, D]) * g [D] + b [D]; y may alias x.
 * Mean and biased variance in double (two passes) so that a large mean
 * cannot cancel the variance. */
OTF_HOT_CLONES
static void layernorm(float *y, const float *x, const float *g, const float *b, size_t rows,
                      size_t D, double eps) {
  for(size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for(size_t i = 0; i < D; i++)
      s += xr[i];
    double mean = s / (double)D, ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for(size_t i = 0; i < D; i++) {
      double d = xr[i] - mean;
      ss += d * d;
    }
    float rstd = (float)(1.0 / sqrt(ss / (double)D + eps)), fm = (float)mean;
#pragma omp simd
    for(size_t i = 0; i < D; i++)
      yr[i] = (xr[i] - fm) * rstd * g[i] + (b ? b[i] : 0.0f);
  }
}

/* x [len] += y [len] */
OTF_HOT_CLONES
static void add_inplace(float *x, const float *y, size_t len) {
#pragma omp simd
  for(size_t i = 0; i < len; i++)
    x[i] += y[i];
}

/* y [rows, out] = x [rows, in] W^T + b, with W [out, in] (PyTorch Linear)
 * and b [out] or NULL. The bias is written first and accumulated into with
 * beta = 1, saving a pass over y. */
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

/* Softmax of each row of s [T, T] over the keys with keyok[j] = 1; masked
 * keys get 0. nvalid = number of attended keys; 0 gives uniform rows (what
 * HF computes when every score is finfo.min). */
OTF_HOT_CLONES
void otf__softmax_masked(float *s, const float *keyok, size_t nvalid, size_t T) {
  for(size_t i = 0; i < T; i++) {
    float *row = s + i * T;
    if(nvalid == 0) {
      for(size_t j = 0; j < T; j++)
        row[j] = 1.0f / (float)T;
      continue;
    }
    float mx = -INFINITY;
    if(nvalid == T) {
      for(size_t j = 0; j < T; j++)
        mx = row[j] > mx ? row[j] : mx;
    } else {
      for(size_t j = 0; j < T; j++)
        if(keyok[j] != 0.0f && row[j] > mx)
          mx = row[j];
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for(size_t j = 0; j < T; j++) {
      float e = otf_expf_fast(row[j] - mx) * keyok[j];
      row[j] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for(size_t j = 0; j < T; j++)
      row[j] *= inv;
  }
}

/* ---- create / destroy ---------------------------------------------------- */

static int mul_ok(size_t *out, size_t a, size_t b) {
  if(a && b > SIZE_MAX / a)
    return 0;
  *out = a * b;
  return 1;
}

void otf_forward_destroy(otf_forward *f) {
  if(!f)
    return;
  otf_free(f->block);
  otf_free(f);
}

#define G(f, s) ((f)->w->g[(s)])

/* Checks that the slots this family reads are present. */
static otf_status check_slots(const otf_forward *f, otf_error *err) {
  static const otf_slot layer_req[] = {
      OTF_SLOT_LN1_W, OTF_SLOT_LN1_B, OTF_SLOT_Q_W,   OTF_SLOT_K_W,   OTF_SLOT_V_W,
      OTF_SLOT_O_W,   OTF_SLOT_O_B,   OTF_SLOT_LN2_W, OTF_SLOT_LN2_B, OTF_SLOT_FC1_W,
      OTF_SLOT_FC1_B, OTF_SLOT_FC2_W, OTF_SLOT_FC2_B};
  const otf_weights *w = f->w;
  if(w->num_layers != f->cfg->num_layers || (w->num_layers > 0 && !w->l))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "weights have %d layers, the config %d",
                    w->num_layers, f->cfg->num_layers);
  for(int L = 0; L < w->num_layers; L++)
    for(size_t i = 0; i < sizeof(layer_req) / sizeof(layer_req[0]); i++)
      if(!w->l[L][layer_req[i]])
        return OTF_FAIL(err, OTF_E_INVAL, NULL, "layer %d lacks weight slot %d", L,
                        (int)layer_req[i]);
  if(f->vit) {
    if(!G(f, OTF_SLOT_PATCH_W) || !G(f, OTF_SLOT_CLS_TOKEN) || !G(f, OTF_SLOT_POS_EMBED) ||
       !G(f, OTF_SLOT_FINAL_LN_W))
      return OTF_FAIL(err, OTF_E_INVAL, NULL,
                      "ViT weights lack the patch embedding, cls token, positions or "
                      "final LayerNorm");
  } else {
    if(!G(f, OTF_SLOT_WORD_EMBED) || !G(f, OTF_SLOT_POS_EMBED) || !G(f, OTF_SLOT_EMB_LN_W))
      return OTF_FAIL(err, OTF_E_INVAL, NULL,
                      "BERT weights lack the word or position embeddings or their "
                      "LayerNorm");
  }
  if(f->head == HEAD_CLS && !f->vit && !f->pooler)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "BERT classifier without a pooler");
  if(f->head == HEAD_MLM &&
     (!G(f, OTF_SLOT_MLM_DENSE_W) || !G(f, OTF_SLOT_MLM_LN_W)))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "MLM head lacks its transform weights");
  return OTF_OK;
}

otf_status otf_forward_create(otf_forward **out, const otf_weights *w,
                              const otf_model_config *cfg, const otf_arch *arch,
                              size_t max_batch, size_t max_seq, otf_error *err) {
  otf_status rc = OTF_OK;
  *out = NULL;
  if(!w || !cfg)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "weights and config are required");
  if(cfg->family != OTF_FAMILY_VIT && cfg->family != OTF_FAMILY_BERT)
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL,
                    "no forward pass for model type '%s' (ViT and BERT only)",
                    cfg->model_type);
  if(max_batch == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "max_batch must be at least 1");
  if(cfg->hidden_size <= 0 || cfg->num_heads <= 0 || cfg->hidden_size % cfg->num_heads ||
     cfg->intermediate_size <= 0 || cfg->num_layers < 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "inconsistent config sizes");
  otf_forward *f = otf_calloc(1, sizeof(*f));
  if(!f)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the forward pass");
  f->w = w;
  f->cfg = cfg;
  f->arch = arch;
  f->vit = cfg->family == OTF_FAMILY_VIT;
  f->D = (size_t)cfg->hidden_size;
  f->F = (size_t)cfg->intermediate_size;
  f->H = (size_t)cfg->num_heads;
  f->hd = f->D / f->H;
  f->max_batch = max_batch;
  f->pooler = G(f, OTF_SLOT_POOL_W) != NULL;
  if(G(f, OTF_SLOT_CLS_W))
    f->head = HEAD_CLS;
  else if(G(f, OTF_SLOT_MLM_DECODER_W))
    f->head = HEAD_MLM;
  else
    f->head = HEAD_NONE;
  if(f->head == HEAD_CLS && cfg->num_labels <= 0) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "classifier with num_labels %d", cfg->num_labels);
    goto fail;
  }
  if(f->vit) {
    if(cfg->patch_size <= 0 || cfg->image_size < cfg->patch_size || cfg->num_channels <= 0) {
      rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "inconsistent ViT geometry");
      goto fail;
    }
    f->C = (size_t)cfg->num_channels;
    f->p = (size_t)cfg->patch_size;
    f->grid = (size_t)cfg->image_size / f->p;
    f->P = f->grid * f->grid;
    f->K = f->C * f->p * f->p;
    f->max_tok = f->P + 1;
  } else {
    if(max_seq == 0 || cfg->vocab_size <= 0 || cfg->max_position_embeddings <= 0 ||
       cfg->type_vocab_size <= 0) {
      rc = OTF_FAIL(err, OTF_E_INVAL, NULL,
                    max_seq == 0 ? "max_seq must be at least 1" : "inconsistent BERT sizes");
      goto fail;
    }
    /* Longer sequences are refused at run time anyway. */
    f->max_tok = max_seq < (size_t)cfg->max_position_embeddings
                     ? max_seq
                     : (size_t)cfg->max_position_embeddings;
  }
  rc = check_slots(f, err);
  if(rc != OTF_OK)
    goto fail;

  /* Plan: sizes in floats, each rounded up to 16 floats (64 bytes) so that
   * every buffer starts aligned. */
  size_t R, RD, RF, TT, BD, unf = 0, pe = 0;
  if(!mul_ok(&R, max_batch, f->max_tok) || R > INT_MAX || !mul_ok(&RD, R, f->D) ||
     !mul_ok(&RF, R, f->F) || !mul_ok(&TT, f->max_tok, f->max_tok) ||
     !mul_ok(&BD, max_batch, f->D) ||
     (f->vit && (!mul_ok(&unf, max_batch * f->P, f->K) || !mul_ok(&pe, max_batch * f->P, f->D)))) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "workspace for batch %zu x %zu tokens is too large",
                  max_batch, f->max_tok);
    goto fail;
  }
  size_t sizes[] = {RD, RD, RD, RD, RD, RF, TT, R, BD, BD, unf, pe};
  float **ptrs[] = {&f->x, &f->h, &f->q, &f->k, &f->v, &f->ff, &f->sc,
                    &f->keyok, &f->cls, &f->pool, &f->unf, &f->pe};
  size_t nbuf = sizeof(sizes) / sizeof(sizes[0]), total = 0;
  for(size_t i = 0; i < nbuf; i++) {
    size_t s = (sizes[i] + 15) & ~(size_t)15;
    if(s < sizes[i] || total > SIZE_MAX / sizeof(float) - s) {
      rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "workspace too large");
      goto fail;
    }
    total += s;
  }
  size_t nv_off = total * sizeof(float);
  if(max_batch > (SIZE_MAX - nv_off) / sizeof(size_t)) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "workspace too large");
    goto fail;
  }
  f->block = otf_malloc_aligned(nv_off + max_batch * sizeof(size_t));
  if(!f->block) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a %zu-byte forward workspace",
                  nv_off + max_batch * sizeof(size_t));
    goto fail;
  }
  float *cur = f->block;
  for(size_t i = 0; i < nbuf; i++) {
    *ptrs[i] = sizes[i] ? cur : NULL;
    cur += (sizes[i] + 15) & ~(size_t)15;
  }
  f->nvalid = (size_t *)(void *)((char *)f->block + nv_off);
  *out = f;
  return OTF_OK;
fail:
  otf_forward_destroy(f);
  return rc;
}

size_t otf_forward_logits_len(const otf_forward *f, const otf_batch *b) {
  if(!f || !b)
    return 0;
  switch(f->head) {
  case HEAD_CLS:
    return b->n * (size_t)f->cfg->num_labels;
  case HEAD_MLM:
    return b->n * b->seq * (size_t)f->cfg->vocab_size;
  case HEAD_NONE:
    break;
  }
  return 0;
}

/* ---- the passes ---------------------------------------------------------- */

typedef struct tapper {
  uint32_t mask;
  otf_tap_fn fn;
  void *ctx;
} tapper;

static otf_status emit(const tapper *t, otf_tap tap, int layer, const float *x, size_t rows,
                       size_t cols) {
  if(!(t->mask & OTF_TAP_BIT(tap)))
    return OTF_OK;
  return t->fn(t->ctx, tap, layer, x, rows, cols);
}

void otf__unfold_patches(float *unf, const float *pixels, size_t n, size_t C, size_t img,
                         size_t p) {
  const size_t grid = img / p, P = grid * grid, K = C * p * p;
  for(size_t s = 0; s < n; s++)
    for(size_t i = 0; i < grid; i++)
      for(size_t j = 0; j < grid; j++) {
        float *row = unf + ((s * P) + i * grid + j) * K;
        for(size_t c = 0; c < C; c++)
          for(size_t kh = 0; kh < p; kh++)
            memcpy(row + (c * p + kh) * p, pixels + ((s * C + c) * img + i * p + kh) * img + j * p,
                   p * sizeof(float));
      }
}

/* x [n*(P+1), D] = [cls; unfold(pixels) W^T + b] + pos, per sample. */
static otf_status vit_embed(otf_forward *f, const otf_batch *b, const tapper *t) {
  const size_t n = b->n, C = f->C, p = f->p, P = f->P, K = f->K, D = f->D;
  const size_t img = (size_t)f->cfg->image_size, T = P + 1;
  otf__unfold_patches(f->unf, b->pixel_values, n, C, img, p);
  otf__linear_fwd(f->pe, f->unf, G(f, OTF_SLOT_PATCH_W), G(f, OTF_SLOT_PATCH_B), n * P, K, D);
  otf_status rc = emit(t, OTF_TAP_PATCH_EMBED, -1, f->pe, n * P, D);
  if(rc != OTF_OK)
    return rc;
  const float *cls = G(f, OTF_SLOT_CLS_TOKEN), *pos = G(f, OTF_SLOT_POS_EMBED);
  for(size_t s = 0; s < n; s++) {
    float *xs = f->x + s * T * D;
    memcpy(xs, cls, D * sizeof(float));
    memcpy(xs + D, f->pe + s * P * D, P * D * sizeof(float));
    add_inplace(xs, pos, T * D);
    f->nvalid[s] = T;
  }
  for(size_t r = 0; r < n * T; r++)
    f->keyok[r] = 1.0f;
  return emit(t, OTF_TAP_EMBEDDINGS, -1, f->x, n * T, D);
}

/* x [n*T, D] = LN(word[id] + pos[t] + type[tt]). Inputs already validated. */
static otf_status bert_embed(otf_forward *f, const otf_batch *b, const tapper *t) {
  const size_t n = b->n, T = b->seq, D = f->D;
  const float *word = G(f, OTF_SLOT_WORD_EMBED), *pos = G(f, OTF_SLOT_POS_EMBED),
              *type = G(f, OTF_SLOT_TYPE_EMBED);
  for(size_t s = 0; s < n; s++) {
    size_t nv = 0;
    for(size_t j = 0; j < T; j++) {
      size_t r = s * T + j;
      float *xr = f->x + r * D;
      memcpy(xr, word + (size_t)b->input_ids[r] * D, D * sizeof(float));
      add_inplace(xr, pos + j * D, D);
      if(type)
        add_inplace(xr, type + (size_t)(b->token_type_ids ? b->token_type_ids[r] : 0) * D, D);
      int ok = !b->attention_mask || b->attention_mask[r] != 0;
      f->keyok[r] = ok ? 1.0f : 0.0f;
      nv += (size_t)ok;
    }
    f->nvalid[s] = nv;
  }
  layernorm(f->x, f->x, G(f, OTF_SLOT_EMB_LN_W), G(f, OTF_SLOT_EMB_LN_B), n * T, D,
            f->cfg->layer_norm_eps);
  return emit(t, OTF_TAP_EMBEDDINGS, -1, f->x, n * T, D);
}

/* Multi-head attention over q, k, v [n*T, D]; the context of head h of
 * sample s replaces that head's block of q (the block is read only by the
 * score SGEMM just before). */
static void attention(otf_forward *f, size_t n, size_t T) {
  const size_t D = f->D, hd = f->hd;
  const float scale = (float)(1.0 / sqrt((double)hd));
  for(size_t s = 0; s < n; s++)
    for(size_t hh = 0; hh < f->H; hh++) {
      float *q = f->q + s * T * D + hh * hd;
      const float *k = f->k + s * T * D + hh * hd, *v = f->v + s * T * D + hh * hd;
      /* sc [T, T] = scale * q [T, hd] k^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)T, (blasint)T,
                  (blasint)hd, scale, q, (blasint)D, k, (blasint)D, 0.0f, f->sc, (blasint)T);
      otf__softmax_masked(f->sc, f->keyok + s * T, f->nvalid[s], T);
      /* q-block [T, hd] = sc [T, T] v [T, hd] */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)T, (blasint)hd,
                  (blasint)T, 1.0f, f->sc, (blasint)T, v, (blasint)D, 0.0f, q, (blasint)D);
    }
}

static otf_status layer_pass(otf_forward *f, int L, size_t n, size_t T, const tapper *t) {
  const float *const *W = f->w->l[L];
  const size_t R = n * T, D = f->D, F = f->F;
  const double eps = f->cfg->layer_norm_eps;
  otf_status rc;
  const float *in = f->x;
  if(f->vit) {
    layernorm(f->h, f->x, W[OTF_SLOT_LN1_W], W[OTF_SLOT_LN1_B], R, D, eps);
    in = f->h;
  }
  if((rc = emit(t, OTF_TAP_QKV_IN, L, in, R, D)) != OTF_OK)
    return rc;
  otf__linear_fwd(f->q, in, W[OTF_SLOT_Q_W], W[OTF_SLOT_Q_B], R, D, D);
  otf__linear_fwd(f->k, in, W[OTF_SLOT_K_W], W[OTF_SLOT_K_B], R, D, D);
  otf__linear_fwd(f->v, in, W[OTF_SLOT_V_W], W[OTF_SLOT_V_B], R, D, D);
  if((rc = emit(t, OTF_TAP_Q, L, f->q, R, D)) != OTF_OK ||
     (rc = emit(t, OTF_TAP_K, L, f->k, R, D)) != OTF_OK ||
     (rc = emit(t, OTF_TAP_V, L, f->v, R, D)) != OTF_OK)
    return rc;
  attention(f, n, T);
  otf__linear_fwd(f->h, f->q, W[OTF_SLOT_O_W], W[OTF_SLOT_O_B], R, D, D);
  if((rc = emit(t, OTF_TAP_ATTN_OUT, L, f->h, R, D)) != OTF_OK)
    return rc;
  add_inplace(f->x, f->h, R * D);
  if(f->vit) {
    if((rc = emit(t, OTF_TAP_RESID_ATTN, L, f->x, R, D)) != OTF_OK)
      return rc;
    layernorm(f->h, f->x, W[OTF_SLOT_LN2_W], W[OTF_SLOT_LN2_B], R, D, eps);
    in = f->h;
  } else {
    layernorm(f->x, f->x, W[OTF_SLOT_LN1_W], W[OTF_SLOT_LN1_B], R, D, eps);
    if((rc = emit(t, OTF_TAP_RESID_ATTN, L, f->x, R, D)) != OTF_OK)
      return rc;
    in = f->x;
  }
  if((rc = emit(t, OTF_TAP_FFN_IN, L, in, R, D)) != OTF_OK)
    return rc;
  otf__linear_fwd(f->ff, in, W[OTF_SLOT_FC1_W], W[OTF_SLOT_FC1_B], R, D, F);
  if((rc = emit(t, OTF_TAP_FFN_PRE, L, f->ff, R, F)) != OTF_OK)
    return rc;
  act_inplace(f->cfg->act, f->ff, R * F);
  otf__linear_fwd(f->h, f->ff, W[OTF_SLOT_FC2_W], W[OTF_SLOT_FC2_B], R, F, D);
  if((rc = emit(t, OTF_TAP_FFN_OUT, L, f->h, R, D)) != OTF_OK)
    return rc;
  add_inplace(f->x, f->h, R * D);
  if(!f->vit)
    layernorm(f->x, f->x, W[OTF_SLOT_LN2_W], W[OTF_SLOT_LN2_B], R, D, eps);
  return emit(t, OTF_TAP_RESID_FFN, L, f->x, R, D);
}

otf_status otf__batch_check_tokens(const otf_model_config *cfg, const otf_batch *b,
                                   int has_type_embed, otf_error *err) {
  const size_t R = b->n * b->seq, T = b->seq;
  for(size_t r = 0; r < R; r++) {
    int64_t id = b->input_ids[r];
    if(id < 0 || id >= cfg->vocab_size)
      return OTF_FAIL(err, OTF_E_INVAL, "input_ids",
                      "input_ids[%zu,%zu] = %lld is outside the vocabulary [0, %d)", r / T,
                      r % T, (long long)id, cfg->vocab_size);
    if(b->token_type_ids) {
      int64_t tt = b->token_type_ids[r];
      if(tt < 0 || tt >= cfg->type_vocab_size || (tt != 0 && !has_type_embed))
        return OTF_FAIL(err, OTF_E_INVAL, "token_type_ids",
                        "token_type_ids[%zu,%zu] = %lld is outside [0, %d)", r / T, r % T,
                        (long long)tt, cfg->type_vocab_size);
    }
    if(b->attention_mask && b->attention_mask[r] != 0 && b->attention_mask[r] != 1)
      return OTF_FAIL(err, OTF_E_INVAL, "attention_mask",
                      "attention_mask[%zu,%zu] = %lld; only 0 and 1 are allowed", r / T,
                      r % T, (long long)b->attention_mask[r]);
  }
  return OTF_OK;
}

static otf_status validate(const otf_forward *f, const otf_batch *b, float *logits,
                           uint32_t taps, otf_tap_fn tap, otf_error *err) {
  const otf_model_config *cfg = f->cfg;
  if(b->n > f->max_batch)
    return OTF_FAIL(err, OTF_E_INVAL, "n", "batch of %zu samples exceeds the planned %zu",
                    b->n, f->max_batch);
  if(taps && !tap)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "taps requested without a tap callback");
  if(taps >> OTF_TAP_ALL_COUNT)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "unknown tap bits 0x%x", (unsigned)taps);
  (void)logits;
  if(b->n == 0)
    return OTF_OK;
  if(f->vit) {
    if(!b->pixel_values)
      return OTF_FAIL(err, OTF_E_INVAL, "pixel_values", "ViT needs pixel_values");
    return OTF_OK;
  }
  if(!b->input_ids)
    return OTF_FAIL(err, OTF_E_INVAL, "input_ids", "BERT needs input_ids");
  if(b->seq == 0)
    return OTF_FAIL(err, OTF_E_INVAL, "seq", "sequence length must be at least 1");
  if(b->seq > (size_t)cfg->max_position_embeddings)
    return OTF_FAIL(err, OTF_E_INVAL, "seq",
                    "sequence length %zu exceeds max_position_embeddings %d", b->seq,
                    cfg->max_position_embeddings);
  if(b->seq > f->max_tok)
    return OTF_FAIL(err, OTF_E_INVAL, "seq", "sequence length %zu exceeds the planned %zu",
                    b->seq, f->max_tok);
  return otf__batch_check_tokens(cfg, b, G(f, OTF_SLOT_TYPE_EMBED) != NULL, err);
}

otf_status otf_forward_run(otf_forward *f, const otf_batch *b, float *logits, uint32_t taps,
                           otf_tap_fn tap, void *ctx, otf_error *err) {
  if(!f || !b)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "forward handle and batch are required");
  otf_status rc = validate(f, b, logits, taps, tap, err);
  if(rc != OTF_OK || b->n == 0)
    return rc;
  const tapper t = {taps, tap, ctx};
  const size_t n = b->n, D = f->D, T = f->vit ? f->P + 1 : b->seq, R = n * T;
  rc = f->vit ? vit_embed(f, b, &t) : bert_embed(f, b, &t);
  for(int L = 0; rc == OTF_OK && L < f->cfg->num_layers; L++)
    rc = layer_pass(f, L, n, T, &t);
  if(rc != OTF_OK)
    goto done;
  const float *fin = f->x;
  if(f->vit) {
    layernorm(f->h, f->x, G(f, OTF_SLOT_FINAL_LN_W), G(f, OTF_SLOT_FINAL_LN_B), R, D,
              f->cfg->layer_norm_eps);
    fin = f->h;
  }
  if((rc = emit(&t, OTF_TAP_FINAL, -1, fin, R, D)) != OTF_OK)
    goto done;
  /* cls [n, D]: the first token of every sample. */
  for(size_t s = 0; s < n; s++)
    memcpy(f->cls + s * D, fin + s * T * D, D * sizeof(float));
  int want_pool = f->pooler && ((taps & OTF_TAP_BIT(OTF_TAP_POOLED)) ||
                                (f->head == HEAD_CLS && !f->vit && logits));
  if(want_pool) {
    otf__linear_fwd(f->pool, f->cls, G(f, OTF_SLOT_POOL_W), G(f, OTF_SLOT_POOL_B), n, D, D);
    for(size_t i = 0; i < n * D; i++)
      f->pool[i] = tanhf(f->pool[i]);
    if((rc = emit(&t, OTF_TAP_POOLED, -1, f->pool, n, D)) != OTF_OK)
      goto done;
  }
  if(!logits)
    goto done;
  if(f->head == HEAD_CLS) {
    /* logits [n, labels] = (ViT: cls; BERT: pooled) Wc^T + bc */
    otf__linear_fwd(logits, f->vit ? f->cls : f->pool, G(f, OTF_SLOT_CLS_W), G(f, OTF_SLOT_CLS_B), n,
           D, (size_t)f->cfg->num_labels);
  } else if(f->head == HEAD_MLM) {
    /* h [R, D] = LN(act(x Wd^T + bd)); logits [R, V] = h E^T + bias */
    otf__linear_fwd(f->h, f->x, G(f, OTF_SLOT_MLM_DENSE_W), G(f, OTF_SLOT_MLM_DENSE_B), R, D, D);
    act_inplace(f->cfg->act, f->h, R * D);
    layernorm(f->h, f->h, G(f, OTF_SLOT_MLM_LN_W), G(f, OTF_SLOT_MLM_LN_B), R, D,
              f->cfg->layer_norm_eps);
    otf__linear_fwd(logits, f->h, G(f, OTF_SLOT_MLM_DECODER_W), G(f, OTF_SLOT_MLM_BIAS), R, D,
           (size_t)f->cfg->vocab_size);
  }
done:
  if(rc != OTF_OK && err && err->code != rc)
    (void)OTF_FAIL(err, rc, NULL, "a tap callback stopped the forward pass (%s)",
                   otf_strerror(rc));
  return rc;
}
