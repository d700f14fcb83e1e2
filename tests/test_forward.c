/* Forward pass: tiny random ViT and BERT models, built by hand, against a
 * naive double-precision transcription of the Hugging Face modules written
 * here (every tap compared, padding masks, token types, every activation);
 * input validation; allocation failures; and, when the committed fixtures
 * are present, the real checkpoints against PyTorch's golden outputs and
 * otf_eval against the recorded accuracy and loss. */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/dataset.h"
#include "fusion/eval.h"
#include "fusion/forward.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

/* ---- a tiny model built in memory ------------------------------------- */

#define TINY_MAX_LAYERS 4

typedef struct tiny {
  otf_model_config cfg;
  otf_weights w;
  const float *lslots[TINY_MAX_LAYERS][OTF_SLOT_COUNT];
  float *bufs[256];
  int nbufs;
  int pooler, head; /* head: 0 none, 1 classification, 2 MLM */
} tiny;

static float *tensor(tiny *m, tu_rng *r, size_t len, double mean, double sd) {
  float *p = malloc(len * sizeof(float));
  for(size_t i = 0; i < len; i++)
    p[i] = (float)(mean + sd * tu_normal(r));
  m->bufs[m->nbufs++] = p;
  return p;
}

static void tiny_free(tiny *m) {
  for(int i = 0; i < m->nbufs; i++)
    free(m->bufs[i]);
}

static void fill_layers(tiny *m, tu_rng *r, int qkv_bias) {
  size_t D = (size_t)m->cfg.hidden_size, F = (size_t)m->cfg.intermediate_size;
  double sd = 1.0 / sqrt((double)D);
  for(int L = 0; L < m->cfg.num_layers; L++) {
    const float **s = m->lslots[L];
    s[OTF_SLOT_LN1_W] = tensor(m, r, D, 1.0, 0.1);
    s[OTF_SLOT_LN1_B] = tensor(m, r, D, 0.0, 0.1);
    s[OTF_SLOT_Q_W] = tensor(m, r, D * D, 0.0, sd);
    s[OTF_SLOT_K_W] = tensor(m, r, D * D, 0.0, sd);
    s[OTF_SLOT_V_W] = tensor(m, r, D * D, 0.0, sd);
    if(qkv_bias) {
      s[OTF_SLOT_Q_B] = tensor(m, r, D, 0.0, 0.1);
      s[OTF_SLOT_K_B] = tensor(m, r, D, 0.0, 0.1);
      s[OTF_SLOT_V_B] = tensor(m, r, D, 0.0, 0.1);
    }
    s[OTF_SLOT_O_W] = tensor(m, r, D * D, 0.0, sd);
    s[OTF_SLOT_O_B] = tensor(m, r, D, 0.0, 0.1);
    s[OTF_SLOT_LN2_W] = tensor(m, r, D, 1.0, 0.1);
    s[OTF_SLOT_LN2_B] = tensor(m, r, D, 0.0, 0.1);
    s[OTF_SLOT_FC1_W] = tensor(m, r, F * D, 0.0, sd);
    s[OTF_SLOT_FC1_B] = tensor(m, r, F, 0.0, 0.1);
    s[OTF_SLOT_FC2_W] = tensor(m, r, D * F, 0.0, 1.0 / sqrt((double)F));
    s[OTF_SLOT_FC2_B] = tensor(m, r, D, 0.0, 0.1);
  }
  m->w.num_layers = m->cfg.num_layers;
  m->w.l = m->lslots;
}

static void fill_heads(tiny *m, tu_rng *r) {
  size_t D = (size_t)m->cfg.hidden_size;
  const float **g = m->w.g;
  if(m->pooler) {
    g[OTF_SLOT_POOL_W] = tensor(m, r, D * D, 0.0, 1.0 / sqrt((double)D));
    g[OTF_SLOT_POOL_B] = tensor(m, r, D, 0.0, 0.1);
  }
  if(m->head == 1) {
    g[OTF_SLOT_CLS_W] = tensor(m, r, (size_t)m->cfg.num_labels * D, 0.0, 1.0);
    g[OTF_SLOT_CLS_B] = tensor(m, r, (size_t)m->cfg.num_labels, 0.0, 0.1);
  } else if(m->head == 2) {
    g[OTF_SLOT_MLM_DENSE_W] = tensor(m, r, D * D, 0.0, 1.0 / sqrt((double)D));
    g[OTF_SLOT_MLM_DENSE_B] = tensor(m, r, D, 0.0, 0.1);
    g[OTF_SLOT_MLM_LN_W] = tensor(m, r, D, 1.0, 0.1);
    g[OTF_SLOT_MLM_LN_B] = tensor(m, r, D, 0.0, 0.1);
    g[OTF_SLOT_MLM_DECODER_W] = g[OTF_SLOT_WORD_EMBED]; /* tied */
    g[OTF_SLOT_MLM_BIAS] = tensor(m, r, (size_t)m->cfg.vocab_size, 0.0, 0.1);
  }
}

/* ViT: 2 channels, 8x8 images in 4x4 patches (4 patches, 5 tokens). */
static void tiny_vit(tiny *m, uint64_t seed, int pooler, int head, int qkv_bias) {
  memset(m, 0, sizeof(*m));
  tu_rng r = {seed};
  otf_model_config *c = &m->cfg;
  c->family = OTF_FAMILY_VIT;
  strcpy(c->model_type, "vit");
  c->hidden_size = 8;
  c->num_layers = 2;
  c->num_heads = 2;
  c->intermediate_size = 12;
  c->act = OTF_ACT_GELU;
  c->layer_norm_eps = 1e-12;
  c->image_size = 8;
  c->patch_size = 4;
  c->num_channels = 2;
  c->qkv_bias = qkv_bias;
  c->num_labels = 3;
  m->pooler = pooler;
  m->head = head;
  size_t D = 8, K = 2 * 4 * 4;
  m->w.g[OTF_SLOT_CLS_TOKEN] = tensor(m, &r, D, 0.0, 0.5);
  m->w.g[OTF_SLOT_POS_EMBED] = tensor(m, &r, 5 * D, 0.0, 0.5);
  m->w.g[OTF_SLOT_PATCH_W] = tensor(m, &r, D * K, 0.0, 1.0 / sqrt((double)K));
  m->w.g[OTF_SLOT_PATCH_B] = tensor(m, &r, D, 0.0, 0.1);
  m->w.g[OTF_SLOT_FINAL_LN_W] = tensor(m, &r, D, 1.0, 0.1);
  m->w.g[OTF_SLOT_FINAL_LN_B] = tensor(m, &r, D, 0.0, 0.1);
  fill_layers(m, &r, qkv_bias);
  fill_heads(m, &r);
}

/* BERT: vocab 20, 10 positions, 2 token types. */
static void tiny_bert(tiny *m, uint64_t seed, int head, otf_act act) {
  memset(m, 0, sizeof(*m));
  tu_rng r = {seed};
  otf_model_config *c = &m->cfg;
  c->family = OTF_FAMILY_BERT;
  strcpy(c->model_type, "bert");
  c->hidden_size = 8;
  c->num_layers = 2;
  c->num_heads = 2;
  c->intermediate_size = 16;
  c->act = act;
  c->layer_norm_eps = 1e-12;
  c->vocab_size = 20;
  c->max_position_embeddings = 10;
  c->type_vocab_size = 2;
  c->num_labels = 3;
  m->pooler = head != 2;
  m->head = head;
  size_t D = 8;
  m->w.g[OTF_SLOT_WORD_EMBED] = tensor(m, &r, 20 * D, 0.0, 0.5);
  m->w.g[OTF_SLOT_POS_EMBED] = tensor(m, &r, 10 * D, 0.0, 0.5);
  m->w.g[OTF_SLOT_TYPE_EMBED] = tensor(m, &r, 2 * D, 0.0, 0.5);
  m->w.g[OTF_SLOT_EMB_LN_W] = tensor(m, &r, D, 1.0, 0.1);
  m->w.g[OTF_SLOT_EMB_LN_B] = tensor(m, &r, D, 0.0, 0.1);
  fill_layers(m, &r, 1);
  fill_heads(m, &r);
}

/* ---- recording taps ------------------------------------------------------ */

typedef struct rec {
  double *d[OTF_TAP_COUNT][TINY_MAX_LAYERS + 1];
  size_t rows[OTF_TAP_COUNT][TINY_MAX_LAYERS + 1], cols[OTF_TAP_COUNT][TINY_MAX_LAYERS + 1];
} rec;

static void rec_put(rec *r, otf_tap t, int layer, const double *x, size_t rows, size_t cols) {
  double **slot = &r->d[t][layer + 1];
  free(*slot);
  *slot = malloc(rows * cols * sizeof(double));
  memcpy(*slot, x, rows * cols * sizeof(double));
  r->rows[t][layer + 1] = rows;
  r->cols[t][layer + 1] = cols;
}

static void rec_free(rec *r) {
  for(int t = 0; t < OTF_TAP_COUNT; t++)
    for(int l = 0; l <= TINY_MAX_LAYERS; l++)
      free(r->d[t][l]);
}

static otf_status rec_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                          size_t cols) {
  double *tmp = malloc(rows * cols * sizeof(double));
  for(size_t i = 0; i < rows * cols; i++)
    tmp[i] = x[i];
  rec_put(ctx, tap, layer, tmp, rows, cols);
  free(tmp);
  return OTF_OK;
}

/* ---- naive reference (double, literal HF) ------------------------------- */

static double ref_act(otf_act a, double x) {
  switch(a) {
  case OTF_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case OTF_ACT_GELU_TANH:
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  case OTF_ACT_RELU: return x > 0 ? x : 0;
  case OTF_ACT_SILU: return x / (1.0 + exp(-x));
  case OTF_ACT_QUICK_GELU: return x / (1.0 + exp(-1.702 * x));
  }
  return NAN;
}

/* y [rows, out] = x [rows, in] W^T + b */
static void ref_linear(double *y, const double *x, const float *W, const float *b, size_t rows,
                       size_t in, size_t out) {
  for(size_t r = 0; r < rows; r++)
    for(size_t o = 0; o < out; o++) {
      double s = b ? b[o] : 0.0;
      for(size_t i = 0; i < in; i++)
        s += x[r * in + i] * W[o * in + i];
      y[r * out + o] = s;
    }
}

static void ref_ln(double *y, const double *x, const float *g, const float *b, size_t rows,
                   size_t D, double eps) {
  for(size_t r = 0; r < rows; r++) {
    double m = 0, v = 0;
    for(size_t i = 0; i < D; i++)
      m += x[r * D + i];
    m /= (double)D;
    for(size_t i = 0; i < D; i++)
      v += (x[r * D + i] - m) * (x[r * D + i] - m);
    v /= (double)D;
    for(size_t i = 0; i < D; i++)
      y[r * D + i] = (x[r * D + i] - m) / sqrt(v + eps) * g[i] + b[i];
  }
}

/* HF self-attention: scores/sqrt(d) + (1 - mask) * finfo(float32).min,
 * softmax, times V; ctx [n*T, D]. */
static void ref_attention(double *ctx, const double *q, const double *k, const double *v,
                          const int64_t *mask, size_t n, size_t T, size_t D, size_t H) {
  size_t hd = D / H;
  double *s = malloc(T * sizeof(double));
  for(size_t b = 0; b < n; b++)
    for(size_t h = 0; h < H; h++)
      for(size_t i = 0; i < T; i++) {
        double mx = -INFINITY, sum = 0;
        for(size_t j = 0; j < T; j++) {
          double d = 0;
          for(size_t c = 0; c < hd; c++)
            d += q[(b * T + i) * D + h * hd + c] * k[(b * T + j) * D + h * hd + c];
          d /= sqrt((double)hd);
          if(mask && !mask[b * T + j])
            d += -(double)FLT_MAX;
          s[j] = d;
          mx = d > mx ? d : mx;
        }
        for(size_t j = 0; j < T; j++)
          sum += (s[j] = exp(s[j] - mx));
        for(size_t c = 0; c < hd; c++) {
          double a = 0;
          for(size_t j = 0; j < T; j++)
            a += s[j] / sum * v[(b * T + j) * D + h * hd + c];
          ctx[(b * T + i) * D + h * hd + c] = a;
        }
      }
  free(s);
}

/* Runs the reference; records every tap in r and returns logits (malloc'd,
 * NULL for base models). */
static double *ref_forward(const tiny *m, const otf_batch *bt, rec *r) {
  const otf_model_config *c = &m->cfg;
  const float *const *g = m->w.g;
  int vit = c->family == OTF_FAMILY_VIT;
  size_t n = bt->n, D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size,
         H = (size_t)c->num_heads;
  size_t T, P = 0, grid = 0, p = 0, C = 0, K = 0, img = 0;
  if(vit) {
    p = (size_t)c->patch_size;
    img = (size_t)c->image_size;
    grid = img / p;
    P = grid * grid;
    C = (size_t)c->num_channels;
    K = C * p * p;
    T = P + 1;
  } else {
    T = bt->seq;
  }
  size_t R = n * T;
  double *x = calloc(R * D, sizeof(double)), *hbuf = calloc(R * D, sizeof(double)),
         *q = calloc(R * D, sizeof(double)), *k = calloc(R * D, sizeof(double)),
         *v = calloc(R * D, sizeof(double)), *ctx = calloc(R * D, sizeof(double)),
         *ff = calloc(R * F, sizeof(double)), *fin = calloc(R * D, sizeof(double));
  if(vit) {
    double *unf = calloc(n * P * K, sizeof(double)), *pe = calloc(n * P * D, sizeof(double));
    /* Direct convolution, no unfolding: out[d] = sum_c,kh,kw W[d,c,kh,kw] px */
    const float *W = g[OTF_SLOT_PATCH_W];
    for(size_t b = 0; b < n; b++)
      for(size_t i = 0; i < grid; i++)
        for(size_t j = 0; j < grid; j++)
          for(size_t d = 0; d < D; d++) {
            double s = g[OTF_SLOT_PATCH_B][d];
            for(size_t ch = 0; ch < C; ch++)
              for(size_t kh = 0; kh < p; kh++)
                for(size_t kw = 0; kw < p; kw++)
                  s += W[((d * C + ch) * p + kh) * p + kw] *
                       bt->pixel_values[((b * C + ch) * img + i * p + kh) * img + j * p + kw];
            pe[(b * P + i * grid + j) * D + d] = s;
          }
    rec_put(r, OTF_TAP_PATCH_EMBED, -1, pe, n * P, D);
    for(size_t b = 0; b < n; b++)
      for(size_t t = 0; t < T; t++)
        for(size_t d = 0; d < D; d++)
          x[(b * T + t) * D + d] = (t == 0 ? g[OTF_SLOT_CLS_TOKEN][d]
                                           : pe[(b * P + t - 1) * D + d]) +
                                   g[OTF_SLOT_POS_EMBED][t * D + d];
    free(unf);
    free(pe);
  } else {
    for(size_t b = 0; b < n; b++)
      for(size_t t = 0; t < T; t++) {
        size_t rr = b * T + t;
        int64_t tt = bt->token_type_ids ? bt->token_type_ids[rr] : 0;
        for(size_t d = 0; d < D; d++)
          x[rr * D + d] = (double)g[OTF_SLOT_WORD_EMBED][bt->input_ids[rr] * (int64_t)D + (int64_t)d] +
                          g[OTF_SLOT_POS_EMBED][t * D + d] +
                          g[OTF_SLOT_TYPE_EMBED][tt * (int64_t)D + (int64_t)d];
      }
    ref_ln(x, x, g[OTF_SLOT_EMB_LN_W], g[OTF_SLOT_EMB_LN_B], R, D, c->layer_norm_eps);
  }
  rec_put(r, OTF_TAP_EMBEDDINGS, -1, x, R, D);
  for(int L = 0; L < c->num_layers; L++) {
    const float *const *W = m->w.l[L];
    const double *in = x;
    if(vit) {
      ref_ln(hbuf, x, W[OTF_SLOT_LN1_W], W[OTF_SLOT_LN1_B], R, D, c->layer_norm_eps);
      in = hbuf;
    }
    ref_linear(q, in, W[OTF_SLOT_Q_W], W[OTF_SLOT_Q_B], R, D, D);
    ref_linear(k, in, W[OTF_SLOT_K_W], W[OTF_SLOT_K_B], R, D, D);
    ref_linear(v, in, W[OTF_SLOT_V_W], W[OTF_SLOT_V_B], R, D, D);
    rec_put(r, OTF_TAP_Q, L, q, R, D);
    rec_put(r, OTF_TAP_K, L, k, R, D);
    rec_put(r, OTF_TAP_V, L, v, R, D);
    ref_attention(ctx, q, k, v, vit ? NULL : bt->attention_mask, n, T, D, H);
    ref_linear(hbuf, ctx, W[OTF_SLOT_O_W], W[OTF_SLOT_O_B], R, D, D);
    rec_put(r, OTF_TAP_ATTN_OUT, L, hbuf, R, D);
    for(size_t i = 0; i < R * D; i++)
      x[i] += hbuf[i];
    if(!vit)
      ref_ln(x, x, W[OTF_SLOT_LN1_W], W[OTF_SLOT_LN1_B], R, D, c->layer_norm_eps);
    rec_put(r, OTF_TAP_RESID_ATTN, L, x, R, D);
    if(vit) {
      ref_ln(hbuf, x, W[OTF_SLOT_LN2_W], W[OTF_SLOT_LN2_B], R, D, c->layer_norm_eps);
      in = hbuf;
    }
    ref_linear(ff, in, W[OTF_SLOT_FC1_W], W[OTF_SLOT_FC1_B], R, D, F);
    rec_put(r, OTF_TAP_FFN_PRE, L, ff, R, F);
    for(size_t i = 0; i < R * F; i++)
      ff[i] = ref_act(c->act, ff[i]);
    ref_linear(hbuf, ff, W[OTF_SLOT_FC2_W], W[OTF_SLOT_FC2_B], R, F, D);
    rec_put(r, OTF_TAP_FFN_OUT, L, hbuf, R, D);
    for(size_t i = 0; i < R * D; i++)
      x[i] += hbuf[i];
    if(!vit)
      ref_ln(x, x, W[OTF_SLOT_LN2_W], W[OTF_SLOT_LN2_B], R, D, c->layer_norm_eps);
    rec_put(r, OTF_TAP_RESID_FFN, L, x, R, D);
  }
  if(vit)
    ref_ln(fin, x, g[OTF_SLOT_FINAL_LN_W], g[OTF_SLOT_FINAL_LN_B], R, D, c->layer_norm_eps);
  else
    memcpy(fin, x, R * D * sizeof(double));
  rec_put(r, OTF_TAP_FINAL, -1, fin, R, D);
  double *first = calloc(n * D, sizeof(double)), *pooled = calloc(n * D, sizeof(double));
  for(size_t b = 0; b < n; b++)
    memcpy(first + b * D, fin + b * T * D, D * sizeof(double));
  if(m->pooler) {
    ref_linear(pooled, first, g[OTF_SLOT_POOL_W], g[OTF_SLOT_POOL_B], n, D, D);
    for(size_t i = 0; i < n * D; i++)
      pooled[i] = tanh(pooled[i]);
    rec_put(r, OTF_TAP_POOLED, -1, pooled, n, D);
  }
  double *logits = NULL;
  if(m->head == 1) {
    logits = calloc(n * (size_t)c->num_labels, sizeof(double));
    ref_linear(logits, vit ? first : pooled, g[OTF_SLOT_CLS_W], g[OTF_SLOT_CLS_B], n, D,
               (size_t)c->num_labels);
  } else if(m->head == 2) {
    size_t V = (size_t)c->vocab_size;
    logits = calloc(R * V, sizeof(double));
    ref_linear(hbuf, fin, g[OTF_SLOT_MLM_DENSE_W], g[OTF_SLOT_MLM_DENSE_B], R, D, D);
    for(size_t i = 0; i < R * D; i++)
      hbuf[i] = ref_act(c->act, hbuf[i]);
    ref_ln(hbuf, hbuf, g[OTF_SLOT_MLM_LN_W], g[OTF_SLOT_MLM_LN_B], R, D, c->layer_norm_eps);
    ref_linear(logits, hbuf, g[OTF_SLOT_MLM_DECODER_W], g[OTF_SLOT_MLM_BIAS], R, D, V);
  }
  free(first);
  free(pooled);
  free(x);
  free(hbuf);
  free(q);
  free(k);
  free(v);
  free(ctx);
  free(ff);
  free(fin);
  return logits;
}

/* Runs ours with every tap and compares logits and taps with the reference. */
static void compare_with_reference(const tiny *m, const otf_batch *b, size_t max_batch,
                                   size_t max_seq) {
  otf_forward *f = NULL;
  otf_error e;
  ck_assert_int_eq(otf_forward_create(&f, &m->w, &m->cfg, NULL, max_batch, max_seq, &e), OTF_OK);
  rec want, got;
  memset(&want, 0, sizeof(want));
  memset(&got, 0, sizeof(got));
  double *ref = ref_forward(m, b, &want);
  size_t nl = otf_forward_logits_len(f, b);
  ck_assert_int_eq(nl > 0, ref != NULL);
  float *lg = malloc((nl ? nl : 1) * sizeof(float));
  otf_status rc = otf_forward_run(f, b, lg, (1u << OTF_TAP_COUNT) - 1, rec_tap, &got, &e);
  ck_assert_msg(rc == OTF_OK, "%s", e.message);
  int ntaps = 0;
  for(int t = 0; t < OTF_TAP_COUNT; t++)
    for(int l = 0; l <= TINY_MAX_LAYERS; l++) {
      ck_assert_msg((want.d[t][l] != NULL) == (got.d[t][l] != NULL),
                    "tap %d layer %d: present in %s only", t, l - 1,
                    want.d[t][l] ? "the reference" : "ours");
      if(!want.d[t][l])
        continue;
      ck_assert_uint_eq(want.rows[t][l], got.rows[t][l]);
      ck_assert_uint_eq(want.cols[t][l], got.cols[t][l]);
      char what[64];
      snprintf(what, sizeof(what), "tap %d layer %d", t, l - 1);
      ck_assert(tu_close(what, got.d[t][l], want.d[t][l], want.rows[t][l] * want.cols[t][l],
                         2e-5, 2e-5));
      ntaps++;
    }
  ck_assert_int_ge(ntaps, 2 + 8 * m->cfg.num_layers);
  if(ref) {
    double *gl = malloc(nl * sizeof(double));
    for(size_t i = 0; i < nl; i++)
      gl[i] = lg[i];
    ck_assert(tu_close("logits", gl, ref, nl, 2e-5, 2e-5));
    free(gl);
    /* Logits without taps are bit-identical to logits with them, and two
     * runs agree exactly (determinism). */
    float *lg2 = malloc(nl * sizeof(float));
    ck_assert_int_eq(otf_forward_run(f, b, lg2, 0, NULL, NULL, &e), OTF_OK);
    ck_assert(memcmp(lg, lg2, nl * sizeof(float)) == 0);
    free(lg2);
  }
  free(ref);
  free(lg);
  rec_free(&want);
  rec_free(&got);
  otf_forward_destroy(f);
}

static float *random_pixels(tu_rng *r, size_t n) {
  float *px = malloc(n * 2 * 8 * 8 * sizeof(float));
  for(size_t i = 0; i < n * 128; i++)
    px[i] = (float)tu_normal(r);
  return px;
}

START_TEST(vit_matches_reference) {
  /* _i: 0 classifier, 1 base model with pooler, 2 classifier without q/k/v bias */
  tiny m;
  tiny_vit(&m, 7 + (uint64_t)_i, _i == 1, _i == 1 ? 0 : 1, _i != 2);
  tu_rng r = {99};
  float *px = random_pixels(&r, 3);
  otf_batch b = {.n = 3, .pixel_values = px};
  compare_with_reference(&m, &b, 4, 0);
  b.n = 1; /* a smaller batch in the same plan */
  compare_with_reference(&m, &b, 4, 0);
  free(px);
  tiny_free(&m);
}
END_TEST

/* 4 samples of 6 tokens: full, right-padded, left-padded with types, fully
 * masked (HF gives uniform attention there; we must not produce NaN). */
static const int64_t ids6[24] = {1, 5, 7, 9, 3, 2,  1, 4, 4, 2, 0, 0,
                                 0, 0, 1, 8, 19, 2, 1, 6, 6, 6, 6, 2};
static const int64_t mask6[24] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
                                  0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
static const int64_t types6[24] = {0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0,
                                   0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};

START_TEST(bert_matches_reference) {
  /* _i: 0 classifier, 1 base model (pooler, no head), 2 MLM */
  static const int heads[] = {1, 0, 2};
  tiny m;
  tiny_bert(&m, 11 + (uint64_t)_i, heads[_i], OTF_ACT_GELU);
  otf_batch b = {.n = 4, .seq = 6, .input_ids = ids6, .attention_mask = mask6,
                 .token_type_ids = types6};
  compare_with_reference(&m, &b, 4, 8);
  b.attention_mask = NULL; /* all ones */
  b.token_type_ids = NULL; /* all zeros */
  compare_with_reference(&m, &b, 4, 8);
  b.seq = 3; /* shorter rows: the first 3 ids of samples taken as [n, 3] */
  b.n = 2;
  compare_with_reference(&m, &b, 4, 8);
  tiny_free(&m);
}
END_TEST

START_TEST(every_activation) {
  static const otf_act acts[] = {OTF_ACT_GELU, OTF_ACT_GELU_TANH, OTF_ACT_RELU, OTF_ACT_SILU,
                                 OTF_ACT_QUICK_GELU};
  tiny m;
  tiny_bert(&m, 21, 2, acts[_i]);
  otf_batch b = {.n = 4, .seq = 6, .input_ids = ids6, .attention_mask = mask6,
                 .token_type_ids = types6};
  compare_with_reference(&m, &b, 4, 6);
  tiny_free(&m);
}
END_TEST

START_TEST(fully_masked_sample_is_finite) {
  tiny m;
  tiny_bert(&m, 5, 1, OTF_ACT_GELU);
  otf_forward *f = NULL;
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 4, 6, NULL), OTF_OK);
  otf_batch b = {.n = 4, .seq = 6, .input_ids = ids6, .attention_mask = mask6};
  float lg[12];
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, NULL), OTF_OK);
  for(int i = 0; i < 12; i++)
    ck_assert(isfinite(lg[i]));
  otf_forward_destroy(f);
  tiny_free(&m);
}
END_TEST

START_TEST(invalid_inputs) {
  tiny m;
  tiny_bert(&m, 3, 1, OTF_ACT_GELU);
  otf_forward *f = NULL;
  otf_error e;
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 2, 8, &e), OTF_OK);
  float lg[64];
  int64_t ids[20] = {0}, mask[20], types[20] = {0};
  for(int i = 0; i < 20; i++)
    mask[i] = 1;
  otf_batch b = {.n = 2, .seq = 4, .input_ids = ids, .attention_mask = mask,
                 .token_type_ids = types};
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_OK);
  ids[5] = 20; /* = vocab */
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "input_ids[1,1] = 20") != NULL, "%s", e.message);
  ids[5] = -1;
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  ids[5] = 0;
  types[2] = 2;
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "token_type_ids") != NULL, "%s", e.message);
  types[2] = 0;
  mask[1] = 2;
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  mask[1] = 1;
  b.seq = 9; /* over the planned 8 */
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  b.seq = 0;
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  b.seq = 4;
  b.n = 3; /* over max_batch */
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  b.n = 2;
  b.input_ids = NULL;
  ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  b.input_ids = ids;
  ck_assert_int_eq(otf_forward_run(f, &b, lg, OTF_TAP_BIT(OTF_TAP_Q), NULL, NULL, &e),
                   OTF_E_INVAL);
  otf_forward_destroy(f);
  /* A plan longer than the position table is clamped to it; a sequence
   * longer than the table is refused. */
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 2, 50, &e), OTF_OK);
  int64_t ids11[22] = {0};
  otf_batch lb = {.n = 2, .seq = 11, .input_ids = ids11};
  ck_assert_int_eq(otf_forward_run(f, &lb, lg, 0, NULL, NULL, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "max_position_embeddings") != NULL, "%s", e.message);
  otf_forward_destroy(f);
  /* Bad plans. */
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 0, 8, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 2, 0, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, SIZE_MAX / 2, 8, &e),
                   OTF_E_TOO_LARGE);
  const float *saved = m.lslots[1][OTF_SLOT_FC2_W];
  m.lslots[1][OTF_SLOT_FC2_W] = NULL;
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 2, 8, &e), OTF_E_INVAL);
  m.lslots[1][OTF_SLOT_FC2_W] = saved;
  m.cfg.family = OTF_FAMILY_GPT2;
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 2, 8, &e), OTF_E_UNSUPPORTED);
  ck_assert_ptr_null(f);
  tiny_free(&m);
}
END_TEST

static otf_status stop_at_layer1(void *ctx, otf_tap tap, int layer, const float *x,
                                 size_t rows, size_t cols) {
  (void)x;
  (void)rows;
  (void)cols;
  (void)tap;
  int *calls = ctx;
  ++*calls;
  return layer == 1 ? OTF_E_CANCELLED : OTF_OK;
}

START_TEST(tap_error_stops_the_pass) {
  tiny m;
  tiny_vit(&m, 1, 0, 1, 1);
  tu_rng r = {1};
  float *px = random_pixels(&r, 1);
  otf_forward *f = NULL;
  ck_assert_int_eq(otf_forward_create(&f, &m.w, &m.cfg, NULL, 1, 0, NULL), OTF_OK);
  otf_batch b = {.n = 1, .pixel_values = px};
  int calls = 0;
  float lg[3];
  otf_error e;
  otf_error_clear(&e);
  ck_assert_int_eq(otf_forward_run(f, &b, lg, OTF_TAP_BIT(OTF_TAP_RESID_FFN), stop_at_layer1,
                                   &calls, &e),
                   OTF_E_CANCELLED);
  ck_assert_int_eq(calls, 2);
  ck_assert_int_eq(e.code, OTF_E_CANCELLED);
  otf_forward_destroy(f);
  free(px);
  tiny_free(&m);
}
END_TEST

START_TEST(allocation_failures) {
  tiny m;
  tiny_bert(&m, 9, 2, OTF_ACT_GELU);
  otf_batch b = {.n = 4, .seq = 6, .input_ids = ids6, .attention_mask = mask6,
                 .token_type_ids = types6};
  float *lg = malloc(4 * 6 * 20 * sizeof(float));
  int ok = 0;
  for(long k = 1; k <= 8; k++) {
    otf_forward *f = NULL;
    otf_alloc_fail_at(k);
    otf_status rc = otf_forward_create(&f, &m.w, &m.cfg, NULL, 4, 6, NULL);
    if(rc == OTF_OK)
      rc = otf_forward_run(f, &b, lg, 0, NULL, NULL, NULL);
    otf_alloc_fail_at(0);
    ck_assert_msg(rc == OTF_OK || rc == OTF_E_NOMEM, "k=%ld: %d", k, rc);
    if(rc == OTF_E_NOMEM)
      ck_assert_ptr_null(f);
    ok += rc == OTF_OK;
    otf_forward_destroy(f);
  }
  ck_assert_int_ge(ok, 5); /* run allocates nothing: only create's calls fail */
  free(lg);
  tiny_free(&m);
}
END_TEST

/* The vectorised activations against libm in double, over the range
 * where activations live and beyond (saturation, exp clamping). */
START_TEST(activations_match_libm) {
  static const otf_act acts[] = {OTF_ACT_GELU, OTF_ACT_GELU_TANH, OTF_ACT_RELU, OTF_ACT_SILU,
                                 OTF_ACT_QUICK_GELU};
  enum { N = 200001 };
  float *x = malloc(N * sizeof(float));
  for(int a = 0; a < 5; a++) {
    for(int i = 0; i < N; i++)
      x[i] = -30.0f + 60.0f * (float)i / (float)(N - 1);
    otf__forward_act(acts[a], x, N);
    double worst = 0.0;
    for(int i = 0; i < N; i++) {
      double xi = (double)(-30.0f + 60.0f * (float)i / (float)(N - 1));
      double want = ref_act(acts[a], xi);
      double err = fabs(x[i] - want) / (1.0 + fabs(want));
      worst = err > worst ? err : worst;
    }
    ck_assert_msg(worst < 1e-6, "activation %d: worst scaled error %.3g", (int)acts[a], worst);
  }
  free(x);
}
END_TEST

/* ---- fixtures (tests/data/models, committed) ----------------------------- */

#define MAX_FIXTURES 64
static char fixture_names[MAX_FIXTURES][64];
static int n_fixtures;

static void find_fixtures(void) {
  n_fixtures = tu_fixture_models(fixture_names, MAX_FIXTURES, 1);
}

typedef struct gold_cmp {
  const otf_st_file *g;
  double worst;
  int compared, missing;
  char worst_name[64];
  int only_final; /* compare FINAL/POOLED with last_hidden_state/pooler_output */
} gold_cmp;

static const char *const tap_golden[OTF_TAP_COUNT] = {
    "embeddings", "patch_embed", "q",       "k",         "v",     "attn_out",
    "resid_attn", "ffn_pre",     "ffn_out", "resid_ffn", "final", "pooled"};

static double max_abs_diff(const float *x, const otf_st_tensor *t) {
  float *want = malloc((size_t)t->numel * sizeof(float));
  ck_assert_int_eq(otf_st_read_f32(want, t, NULL), OTF_OK);
  double worst = 0.0;
  for(uint64_t i = 0; i < t->numel; i++) {
    double d = fabs((double)x[i] - (double)want[i]);
    if(!(d <= worst)) /* NaN counts as worst */
      worst = isnan(d) ? INFINITY : d;
  }
  free(want);
  return worst;
}

static otf_status gold_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                           size_t cols) {
  gold_cmp *c = ctx;
  char name[64];
  if(c->only_final)
    snprintf(name, sizeof(name), "%s",
             tap == OTF_TAP_FINAL ? "last_hidden_state" : "pooler_output");
  else if(layer >= 0)
    snprintf(name, sizeof(name), "layer.%d.%s", layer, tap_golden[tap]);
  else
    snprintf(name, sizeof(name), "%s", tap_golden[tap]);
  const otf_st_tensor *t = otf_st_find(c->g, name);
  if(!t) {
    c->missing++;
    return OTF_OK;
  }
  ck_assert_msg(t->numel == (uint64_t)rows * cols, "%s: golden has %llu values, ours %zu x %zu",
                name, (unsigned long long)t->numel, rows, cols);
  double d = max_abs_diff(x, t);
  c->compared++;
  if(!(d <= c->worst)) {
    c->worst = d;
    snprintf(c->worst_name, sizeof(c->worst_name), "%s", name);
  }
  return OTF_OK;
}

START_TEST(fixture_matches_golden) {
  const char *name = fixture_names[_i];
  char path[1024];
  otf_error e;
  otf_model *m = NULL;
  snprintf(path, sizeof(path), "%s/models/%s", tu_data_dir(), name);
  ck_assert_msg(otf_model_open(&m, path, 0, &e) == OTF_OK, "%s: %s", name, e.message);
  otf_weights w;
  ck_assert_msg(otf_weights_load(&w, m, &e) == OTF_OK, "%s: %s", name, e.message);
  const otf_model_config *cfg = otf_model_cfg(m);
  otf_st_file *g = NULL, *df = NULL;
  snprintf(path, sizeof(path), "%s/golden/%s.safetensors", tu_data_dir(), name);
  ck_assert_msg(otf_st_open(&g, path, &e) == OTF_OK, "%s", e.message);
  const char *evf = otf_st_metadata(g, "eval_file");
  const char *ls = otf_st_metadata(g, "logit_samples"), *ts = otf_st_metadata(g, "trace_samples");
  ck_assert_ptr_nonnull(evf);
  size_t nlog = ls ? strtoul(ls, NULL, 10) : 64, ntr = ts ? strtoul(ts, NULL, 10) : 2;
  char evpath[1024];
  snprintf(evpath, sizeof(evpath), "%s/eval/%s", tu_data_dir(), evf);
  ck_assert_msg(otf_st_open(&df, evpath, &e) == OTF_OK, "%s", e.message);

  /* 1. Logits (base models: last hidden state and pooler output) of the
   *    first nlog samples. */
  otf_batch b;
  otf_dataset *ds = NULL;
  const otf_model_config *cfgs[1] = {cfg};
  otf_dataset_opts dop = {.cfgs = cfgs, .ncfg = 1};
  ck_assert_msg(otf_dataset_open(&ds, df, &dop, &e) == OTF_OK, "%s", e.message);
  ck_assert_int_eq(otf_dataset_reserve(ds, nlog, &e), OTF_OK);
  ck_assert_int_eq(otf_dataset_fill_range(ds, &b, 0, nlog, &e), OTF_OK);
  otf_forward *f = NULL;
  ck_assert_int_eq(otf_forward_create(&f, &w, cfg, otf_model_arch(m), nlog, b.seq ? b.seq : 1,
                                      &e), OTF_OK);
  size_t nl = otf_forward_logits_len(f, &b);
  const otf_st_tensor *gl = otf_st_find(g, "logits");
  double logit_diff = 0.0;
  if(nl) {
    ck_assert_ptr_nonnull(gl);
    ck_assert_uint_eq(gl->numel, nl);
    float *lg = malloc(nl * sizeof(float));
    ck_assert_int_eq(otf_forward_run(f, &b, lg, 0, NULL, NULL, &e), OTF_OK);
    logit_diff = max_abs_diff(lg, gl);
    free(lg);
  } else {
    gold_cmp c = {.g = g, .only_final = 1};
    ck_assert_int_eq(otf_forward_run(f, &b, NULL, OTF_TAP_BIT(OTF_TAP_FINAL) |
                                     OTF_TAP_BIT(OTF_TAP_POOLED), gold_tap, &c, &e), OTF_OK);
    ck_assert_int_eq(c.compared, 2);
    logit_diff = c.worst;
  }

  /* 2. Every intermediate of the first ntr samples. */
  ck_assert_int_eq(otf_dataset_fill_range(ds, &b, 0, ntr, &e), OTF_OK);
  gold_cmp c = {.g = g};
  ck_assert_int_eq(otf_forward_run(f, &b, NULL, (1u << OTF_TAP_COUNT) - 1, gold_tap, &c, &e),
                   OTF_OK);
  otf_dataset_destroy(ds);
  printf("%-16s logits max |diff| %.3g; %d intermediates, max |diff| %.3g (%s)\n", name,
         logit_diff, c.compared, c.worst, c.worst_name);
  ck_assert_msg(logit_diff <= 1e-4, "%s: logits differ by %g", name, logit_diff);
  ck_assert_int_ge(c.compared, 2 + 8 * cfg->num_layers);
  ck_assert_msg(c.worst <= 1e-4, "%s: %s differs by %g", name, c.worst_name, c.worst);
  otf_forward_destroy(f);

  /* 3. otf_eval over the whole eval set: the recorded accuracy and loss. */
  const otf_st_tensor *ga = otf_st_find(g, "accuracy"), *gloss = otf_st_find(g, "loss");
  if(ga && gloss) {
    double acc, loss;
    ck_assert_int_eq(otf_st_read_f64(&acc, ga, NULL), OTF_OK);
    ck_assert_int_eq(otf_st_read_f64(&loss, gloss, NULL), OTF_OK);
    otf_eval_result r;
    ck_assert_msg(otf_eval_weights(&r, &w, cfg, otf_model_arch(m), evpath, 48, &e) == OTF_OK,
                  "%s: %s", name, e.message);
    printf("%-16s eval accuracy %.6f (torch %.6f), loss %.8f (torch %.8f), n %llu\n", name,
           r.accuracy, acc, r.loss, loss, (unsigned long long)r.n);
    ck_assert_msg(fabs(r.accuracy - acc) <= 1e-3, "%s: accuracy %g vs %g", name, r.accuracy, acc);
    ck_assert_msg(fabs(r.loss - loss) <= 1e-4, "%s: loss %g vs %g", name, r.loss, loss);
  }
  otf_st_close(df);
  otf_st_close(g);
  otf_weights_free(&w);
  otf_model_close(m);
}
END_TEST

/* The fixtures are committed: their absence is a broken checkout, not a
 * reason to pass. */
START_TEST(fixtures_absent) {
  ck_abort_msg("no fixture models under %s/models (run tools/train_fixtures.py?)",
               tu_data_dir());
}
END_TEST

/* Data of the wrong kind or shape is refused with a reason. */
START_TEST(eval_rejects_bad_data) {
  char mpath[1024], path[1100];
  otf_error e;
  otf_model *m = NULL;
  snprintf(mpath, sizeof(mpath), "%s/models/%s", tu_data_dir(), fixture_names[_i]);
  ck_assert_int_eq(otf_model_open(&m, mpath, 0, &e), OTF_OK);
  int vit = otf_model_cfg(m)->family == OTF_FAMILY_VIT;
  otf_eval_result r;
  const char *arch = otf_model_cfg(m)->architecture;
  if(!strcmp(arch, "ViTModel") || !strcmp(arch, "BertModel")) {
    /* A base model has nothing to score. */
    snprintf(path, sizeof(path), "%s/eval/%s", tu_data_dir(),
             vit ? "digits_eval.safetensors" : "text_cls_eval.safetensors");
    ck_assert_int_eq(otf_eval(&r, m, path, 16, &e), OTF_E_INVAL);
    ck_assert_msg(strstr(e.message, "no classification") != NULL, "%s", e.message);
    otf_model_close(m);
    return;
  }
  /* The other family's data. */
  snprintf(path, sizeof(path), "%s/eval/%s", tu_data_dir(),
           vit ? "text_cls_eval.safetensors" : "digits_eval.safetensors");
  ck_assert_int_eq(otf_eval(&r, m, path, 16, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, vit ? "pixel_values" : "input_ids") != NULL, "%s",
                e.message);
  snprintf(path, sizeof(path), "%s/eval/nonexistent.safetensors", tu_data_dir());
  ck_assert_int_ne(otf_eval(&r, m, path, 16, &e), OTF_OK);
  /* A model's own weights are not a data set. */
  snprintf(path, sizeof(path), "%s/model.safetensors", mpath);
  ck_assert_int_eq(otf_eval(&r, m, path, 16, &e), OTF_E_INVAL);
  otf_model_close(m);
}
END_TEST

static void add_fixture_tests(TCase *tc) {
  find_fixtures();
  if(n_fixtures == 0) {
    tcase_add_test(tc, fixtures_absent);
    return;
  }
  tcase_add_loop_test(tc, fixture_matches_golden, 0, n_fixtures);
  tcase_add_loop_test(tc, eval_rejects_bad_data, 0, n_fixtures);
}

int main(void) {
  Suite *s = suite_create("forward");
  TCase *tc = tcase_create("tiny");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, vit_matches_reference, 0, 3);
  tcase_add_loop_test(tc, bert_matches_reference, 0, 3);
  tcase_add_loop_test(tc, every_activation, 0, 5);
  tcase_add_test(tc, activations_match_libm);
  tcase_add_test(tc, fully_masked_sample_is_finite);
  tcase_add_test(tc, invalid_inputs);
  tcase_add_test(tc, tap_error_stops_the_pass);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  TCase *fx = tcase_create("fixtures");
  tcase_set_timeout(fx, 300);
  add_fixture_tests(fx);
  suite_add_tcase(s, fx);
  return tu_run_suite(s);
}
