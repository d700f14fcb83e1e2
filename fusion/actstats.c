/* Activation statistics: streams a calibration set through the anchor and
 * a parent, batch by batch, and accumulates for every collected (tap,
 * layer) the per-neuron sums and sums of squares of both models and the
 * parent x anchor cross-product matrix, all in double.
 *
 * Order within a batch: the anchor runs first and its tap callback copies
 * the kept rows of every collected (tap, layer) into a float buffer sized
 * for the largest batch; then the parent runs, and its callback, holding
 * the parent's rows and the anchor's stored rows of the same (tap, layer),
 * converts both to double in chunks and adds them to the accumulators
 * (one DGEMM per chunk for the cross-products). So only one batch of the
 * anchor's activations is ever held, never the whole calibration set.
 *
 * Precision: the raw sums S_ij - N m_i m_j cancel badly when a neuron's
 * mean is large next to its spread (LayerNorm outputs, biased FFN
 * pre-activations), and the cost sqrt(2 (N-1) (1-r)) amplifies any error
 * in r near 1. Every value is therefore shifted by its neuron's mean over
 * the first batch before it is accumulated (correlations do not depend on
 * the shift; the sums then stay of the order of the spread), and the sums
 * are kept in double. Everything below the Pearson formula works on the
 * shifted values.
 *
 * Projections (Q, K, V, FFN_PRE) are not accumulated themselves: their
 * input tap (QKV_IN, FFN_IN) is, with both models' full Gram matrices
 * besides the cross-product (DSYRK), and otf_actstats_cost maps those
 * centred moments through the two models' weights (header: "Projections").
 * With the FFN four times wider than the stream this is most of the
 * saving: per observation 3 d^2 multiply-adds for the input instead of
 * F^2 = 16 d^2 for FFN_PRE, and Q, K, V share one input. */
#include "fusion/actstats.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "fusion/dataset.h"
#include "fusion/safetensors.h"

#define DEFAULT_BATCH 32
/* Rows (tokens) per forward pass when the caller leaves the batch to us:
 * enough for full-speed GEMMs, few enough that the anchor's held rows stay
 * small (BERT-base: 12 layers x 4 taps x 768 x 1024 x 4 B = 151 MB). */
#define DEFAULT_ROWS 1024
/* Samples per forward pass: as for evaluation, beyond this the workspace
 * grows without making the BLAS calls any faster. */
#define MAX_BATCH 4096
/* Rows converted to double per DGEMM: bounds the double scratch to
 * CHUNK_ROWS * (widest parent + widest anchor width) while keeping the
 * inner dimension of the GEMM long enough to run at full speed. */
#define CHUNK_ROWS 1024
/* A neuron is dead when its std is below this fraction of the median std
 * of its tap and layer in the same model (ALGORITHM.md section 12: the
 * reference would divide rounding noise by 1e-9). */
#define DEAD_REL 1e-6

/* How a (tap, layer)'s statistics are kept. */
typedef enum pair_kind {
  PAIR_DIRECT = 0, /* sums and the cross-product of the tap's own values */
  PAIR_INPUT,      /* an internal input tap (QKV_IN, FFN_IN): as DIRECT,
                      plus both models' full Gram matrices */
  PAIR_DERIVED,    /* Q, K, V, FFN_PRE: nothing accumulated; the cost comes
                      from the input pair's moments and the weights */
} pair_kind;

/* One collected (tap, layer). */
typedef struct pair {
  otf_tap tap;
  int layer;            /* -1 outside the layers */
  size_t np, na;        /* widths: parent, anchor */
  size_t rps;           /* rows per sample the tap delivers */
  pair_kind kind;
  struct pair *src;     /* PAIR_DERIVED: the input pair of the same layer */
  otf_slot slot;        /* PAIR_DERIVED: the projection's weight slot */
  double *gram_p, *gram_a; /* PAIR_INPUT: [np, np], [na, na], upper triangles
                              of sum_t (x - shift)(x - shift)^T */
  /* Accumulators (carved from the stats' block), all over shifted values. */
  double *shift_p, *shift_a; /* [np], [na]: first batch's means */
  double *sum_p, *sum_a;     /* sum_t (x - shift) */
  double *sq_p, *sq_a;       /* sum_t (x - shift)^2 */
  double *inv_p, *inv_a;     /* 1 / std after collection, 0 for dead */
  double *cross;             /* [np, na]: sum_t xp_i(t) xa_j(t) */
  uint64_t n;                /* observations */
  int shifted;               /* shift_* set (first batch with rows) */
  /* Per-batch state, valid during collection only. */
  float *abuf;               /* anchor's kept rows [kept, na] */
  size_t akept;
  size_t abatch;             /* batch number the anchor last delivered */
} pair;

struct otf_actstats {
  size_t npairs;
  pair *pairs;
  int base[OTF_TAP_ALL_COUNT]; /* first pair of a tap; -1: not collected */
  uint32_t fwd_taps;       /* what the forward passes deliver */
  const otf_model *parent, *anchor; /* borrowed: weights of derived taps */
  int layers;
  size_t tps;              /* tokens per sample (ViT: patches + cls) */
  uint64_t tokens;         /* kept tokens over all samples */
  double *acc;             /* every accumulator, one block */
};

/* Taps delivered once per encoder layer (the others come once per pass). */
static int per_layer(otf_tap t) {
  return (t >= OTF_TAP_Q && t <= OTF_TAP_RESID_FFN) || t == OTF_TAP_QKV_IN ||
         t == OTF_TAP_FFN_IN;
}

/* The weight slot of a tap that is a linear map of an input tap, and that
 * input; OTF_SLOT_COUNT when the tap is collected directly. The Q/K/V and
 * intermediate projections are the costly taps to collect directly (the
 * intermediate's F x F cross-product per observation is most of the work
 * at BERT-base size); their input's d x d moments give the same
 * correlations, because a linear map's covariances are W Cov W^T (biases
 * drop out). */
static otf_slot derived_slot(otf_tap t, otf_tap *input) {
  *input = t == OTF_TAP_FFN_PRE ? OTF_TAP_FFN_IN : OTF_TAP_QKV_IN;
  switch(t) {
  case OTF_TAP_Q: return OTF_SLOT_Q_W;
  case OTF_TAP_K: return OTF_SLOT_K_W;
  case OTF_TAP_V: return OTF_SLOT_V_W;
  case OTF_TAP_FFN_PRE: return OTF_SLOT_FC1_W;
  default: return OTF_SLOT_COUNT;
  }
}

static const char *tap_name(otf_tap t) {
  static const char *const names[OTF_TAP_ALL_COUNT] = {
      "EMBEDDINGS", "PATCH_EMBED", "Q",       "K",         "V",     "ATTN_OUT",
      "RESID_ATTN", "FFN_PRE",     "FFN_OUT", "RESID_FFN", "FINAL", "POOLED",
      "QKV_IN",     "FFN_IN"};
  return (unsigned)t < OTF_TAP_ALL_COUNT ? names[t] : "?";
}

static pair *find_pair(const otf_actstats *s, otf_tap tap, int layer) {
  if((unsigned)tap >= OTF_TAP_ALL_COUNT || s->base[tap] < 0)
    return NULL;
  if(per_layer(tap)) {
    if(layer < 0 || layer >= s->layers)
      return NULL;
    return &s->pairs[s->base[tap] + layer];
  }
  return layer == -1 ? &s->pairs[s->base[tap]] : NULL;
}

/* Both models must read the same inputs and pair their layers one to one. */
static otf_status check_models(const otf_model_config *cp, const otf_model_config *ca,
                               otf_error *err) {
  if(cp->family != ca->family)
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "parent (%s) and anchor (%s) are of different families", cp->model_type,
                    ca->model_type);
  if(cp->family != OTF_FAMILY_VIT && cp->family != OTF_FAMILY_BERT)
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL,
                    "no forward pass for model type '%s' (ViT and BERT only)", cp->model_type);
  if(cp->num_layers != ca->num_layers)
    return OTF_FAIL(err, OTF_E_INVAL, "num_hidden_layers",
                    "parent has %d layers, anchor %d; statistics pair layers one to one",
                    cp->num_layers, ca->num_layers);
  if(cp->family == OTF_FAMILY_VIT) {
    const struct { const char *name; int p, a; } geo[] = {
        {"image_size", cp->image_size, ca->image_size},
        {"patch_size", cp->patch_size, ca->patch_size},
        {"num_channels", cp->num_channels, ca->num_channels}};
    for(size_t g = 0; g < sizeof(geo) / sizeof(geo[0]); g++)
      if(geo[g].p != geo[g].a)
        return OTF_FAIL(err, OTF_E_INVAL, geo[g].name,
                        "parent and anchor take different inputs: %s %d vs %d", geo[g].name,
                        geo[g].p, geo[g].a);
    if(cp->patch_size <= 0 || cp->image_size < cp->patch_size)
      return OTF_FAIL(err, OTF_E_INVAL, "patch_size", "inconsistent ViT geometry");
  }
  return OTF_OK;
}

/* ---- sample selection ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

/* sel [N]: the first k entries become the chosen sample indices. k == N
 * with shuffle == 0 is every sample in file order. Otherwise a partial
 * Fisher-Yates shuffle seeded by seed (the modulo bias is below N / 2^64)
 * picks k, which are then sorted: statistics do not depend on the order,
 * and file order reads the mapping sequentially. */
static void select_samples(size_t *sel, size_t N, size_t k, int shuffle, uint64_t seed) {
  for(size_t i = 0; i < N; i++)
    sel[i] = i;
  if(!shuffle)
    return;
  uint64_t st = seed;
  for(size_t i = 0; i < k && i + 1 < N; i++) {
    size_t j = i + (size_t)(splitmix64(&st) % (uint64_t)(N - i));
    size_t t = sel[i];
    sel[i] = sel[j];
    sel[j] = t;
  }
  qsort(sel, k, sizeof(size_t), cmp_size);
}

/* ---- accumulation -------------------------------------------------------- */

typedef struct run {
  otf_actstats *s;
  size_t n;            /* samples in the current batch */
  size_t T;            /* BERT tokens per sample (0 for ViT) */
  const size_t *keep;  /* kept rows of the token taps; NULL = all */
  size_t nkeep;
  size_t batch_no;     /* 1-based */
  /* ViT token window: kept rows for taps with win_rps[k] rows per sample,
   * listed for a full batch (a shorter batch uses the prefix). */
  const size_t *win_keep[2];
  size_t win_rps[2], win_per[2];
  int windowed;
  double *xp, *xa;     /* scratch [CHUNK_ROWS * max np], [CHUNK_ROWS * max na] */
  size_t chunk;        /* rows per DGEMM */
  otf_error *err;
} run;

/* The rows of pair p kept in this batch: the attention mask applies to the
 * BERT token taps only (the pooled tap has one row per sample). */
static size_t kept_rows(const run *r, const pair *p, const size_t **keep) {
  for(int k = 0; r->windowed && k < 2; k++)
    if(p->rps == r->win_rps[k]) {
      *keep = r->win_keep[k];
      return r->n * r->win_per[k];
    }
  if(r->keep && p->rps == r->T) {
    *keep = r->keep;
    return r->nkeep;
  }
  *keep = NULL;
  return r->n * p->rps;
}

static otf_status check_shape(const run *r, const pair *p, const char *who, size_t rows,
                              size_t cols, size_t want_cols) {
  if(cols != want_cols || rows != r->n * p->rps)
    return OTF_FAIL(r->err, OTF_E_INTERNAL, NULL,
                    "%s tap %s layer %d delivered [%zu, %zu], expected [%zu, %zu]", who,
                    tap_name(p->tap), p->layer, rows, cols, r->n * p->rps, want_cols);
  return OTF_OK;
}

static otf_status anchor_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                             size_t cols) {
  run *r = ctx;
  pair *p = find_pair(r->s, tap, layer);
  if(!p)
    return OTF_OK;
  otf_status rc = check_shape(r, p, "anchor", rows, cols, p->na);
  if(rc != OTF_OK)
    return rc;
  const size_t *keep;
  size_t k = kept_rows(r, p, &keep);
  if(!keep)
    memcpy(p->abuf, x, k * cols * sizeof(float));
  else
    for(size_t t = 0; t < k; t++)
      memcpy(p->abuf + t * cols, x + keep[t] * cols, cols * sizeof(float));
  p->akept = k;
  p->abatch = r->batch_no;
  return OTF_OK;
}

/* Means over the first batch's kept rows: the shift of section "Precision"
 * at the top of the file. */
static void set_shift(pair *p, const float *x, const size_t *keep, size_t k) {
  memset(p->shift_p, 0, p->np * sizeof(double));
  memset(p->shift_a, 0, p->na * sizeof(double));
  for(size_t t = 0; t < k; t++) {
    const float *xp = x + (keep ? keep[t] : t) * p->np, *xa = p->abuf + t * p->na;
    for(size_t i = 0; i < p->np; i++)
      p->shift_p[i] += xp[i];
    for(size_t j = 0; j < p->na; j++)
      p->shift_a[j] += xa[j];
  }
  for(size_t i = 0; i < p->np; i++)
    p->shift_p[i] /= (double)k;
  for(size_t j = 0; j < p->na; j++)
    p->shift_a[j] /= (double)k;
  p->shifted = 1;
}

static otf_status parent_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                             size_t cols) {
  run *r = ctx;
  pair *p = find_pair(r->s, tap, layer);
  if(!p)
    return OTF_OK;
  otf_status rc = check_shape(r, p, "parent", rows, cols, p->np);
  if(rc != OTF_OK)
    return rc;
  const size_t *keep;
  size_t k = kept_rows(r, p, &keep);
  if(p->abatch != r->batch_no || p->akept != k)
    return OTF_FAIL(r->err, OTF_E_INTERNAL, NULL,
                    "anchor delivered no matching rows for tap %s layer %d", tap_name(tap),
                    layer);
  if(k == 0)
    return OTF_OK;
  if(!p->shifted)
    set_shift(p, x, keep, k);
  const size_t np = p->np, na = p->na;
  for(size_t c0 = 0; c0 < k; c0 += r->chunk) {
    size_t m = k - c0 < r->chunk ? k - c0 : r->chunk;
    for(size_t t = 0; t < m; t++) {
      const float *src = x + (keep ? keep[c0 + t] : c0 + t) * np;
      double *dst = r->xp + t * np;
      for(size_t i = 0; i < np; i++) {
        double v = (double)src[i] - p->shift_p[i];
        dst[i] = v;
        p->sum_p[i] += v;
        p->sq_p[i] += v * v;
      }
      const float *asrc = p->abuf + (c0 + t) * na;
      double *adst = r->xa + t * na;
      for(size_t j = 0; j < na; j++) {
        double v = (double)asrc[j] - p->shift_a[j];
        adst[j] = v;
        p->sum_a[j] += v;
        p->sq_a[j] += v * v;
      }
    }
    /* cross [np, na] += xp^T [np, m] xa [m, na] */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)np, (blasint)na, (blasint)m,
                1.0, r->xp, (blasint)np, r->xa, (blasint)na, 1.0, p->cross, (blasint)na);
    if(p->kind == PAIR_INPUT) {
      /* gram (upper) += x^T x, for both models */
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)np, (blasint)m, 1.0, r->xp,
                  (blasint)np, 1.0, p->gram_p, (blasint)np);
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)na, (blasint)m, 1.0, r->xa,
                  (blasint)na, 1.0, p->gram_a, (blasint)na);
    }
  }
  p->n += k;
  return OTF_OK;
}

/* ---- finishing ------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* inv [n] = 1 / std of each neuron from its shifted sums, 0 for dead ones
 * (std == 0 or below DEAD_REL times the median std). scratch: [n]. */
static void dead_rule(double *inv, size_t n, double *scratch);

static void inverse_stds(double *inv, const double *sum, const double *sq, size_t n,
                         uint64_t N, double *scratch) {
  double Nd = (double)N;
  for(size_t i = 0; i < n; i++) {
    double var = (sq[i] - sum[i] * (sum[i] / Nd)) / (Nd - 1.0);
    inv[i] = var > 0.0 ? sqrt(var) : 0.0; /* std for now */
  }
  dead_rule(inv, n, scratch);
}

/* inv [n] holds stds; becomes 1 / std, 0 for dead neurons. scratch: [n]. */
static void dead_rule(double *inv, size_t n, double *scratch) {
  for(size_t i = 0; i < n; i++)
    scratch[i] = inv[i];
  qsort(scratch, n, sizeof(double), cmp_double);
  double med = n % 2 ? scratch[n / 2] : 0.5 * (scratch[n / 2 - 1] + scratch[n / 2]);
  for(size_t i = 0; i < n; i++)
    inv[i] = (inv[i] == 0.0 || inv[i] < DEAD_REL * med) ? 0.0 : 1.0 / inv[i];
}

static int all_finite(const double *x, size_t n) {
  for(size_t i = 0; i < n; i++)
    if(!isfinite(x[i]))
      return 0;
  return 1;
}

static otf_status finish(otf_actstats *s, double *scratch, otf_error *err) {
  for(size_t q = 0; q < s->npairs; q++) {
    pair *p = &s->pairs[q];
    if(p->kind == PAIR_DERIVED) {
      p->n = p->src->n;
      continue;
    }
    if(!all_finite(p->sum_p, p->np) || !all_finite(p->sq_p, p->np) ||
       !all_finite(p->sum_a, p->na) || !all_finite(p->sq_a, p->na) ||
       !all_finite(p->cross, p->np * p->na) ||
       (p->kind == PAIR_INPUT &&
        (!all_finite(p->gram_p, p->np * p->np) || !all_finite(p->gram_a, p->na * p->na))))
      return OTF_FAIL(err, OTF_E_NUMERIC, NULL,
                      "non-finite activations at tap %s layer %d", tap_name(p->tap), p->layer);
    if(p->n < 2)
      continue; /* otf_actstats_cost refuses it */
    inverse_stds(p->inv_p, p->sum_p, p->sq_p, p->np, p->n, scratch);
    inverse_stds(p->inv_a, p->sum_a, p->sq_a, p->na, p->n, scratch);
  }
  return OTF_OK;
}

/* ---- planning --------------------------------------------------------- */

/* *acc += a * b, false on overflow. */
static int add_mul(size_t *acc, size_t a, size_t b) {
  size_t m;
  return !__builtin_mul_overflow(a, b, &m) && !__builtin_add_overflow(*acc, m, acc);
}

/* Rounds a count of 8-byte words up to 64 bytes so that carved arrays
 * start cache-line aligned. */
static size_t up8(size_t words) { return (words + 7) & ~(size_t)7; }

/* Allocates the stats and their pairs for the requested taps: the
 * projections Q, K, V and FFN_PRE become derived pairs over the internal
 * input taps, which are collected in their place. */
static otf_status plan_pairs(otf_actstats **out, const otf_model_config *cp,
                             const otf_model_config *ca, uint32_t taps, size_t T,
                             otf_error *err) {
  otf_status rc = OTF_OK;
  otf_actstats *s = otf_calloc(1, sizeof(*s));
  if(!s)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for activation statistics");
  int vit = cp->family == OTF_FAMILY_VIT;
  s->layers = cp->num_layers;
  size_t P = 0;
  if(vit) {
    size_t grid = (size_t)cp->image_size / (size_t)cp->patch_size;
    P = grid * grid;
    T = P + 1;
  }
  s->tps = T;
  uint32_t all = taps;
  for(int t = 0; t < OTF_TAP_COUNT; t++) {
    otf_tap in;
    if((taps & OTF_TAP_BIT(t)) && derived_slot((otf_tap)t, &in) != OTF_SLOT_COUNT)
      all |= OTF_TAP_BIT(in);
  }
  s->fwd_taps = 0;
  for(int t = 0; t < OTF_TAP_ALL_COUNT; t++) {
    s->base[t] = -1;
    otf_tap in;
    if(!(all & OTF_TAP_BIT(t)))
      continue;
    if(derived_slot((otf_tap)t, &in) == OTF_SLOT_COUNT)
      s->fwd_taps |= OTF_TAP_BIT(t);
    s->base[t] = (int)s->npairs;
    s->npairs += per_layer((otf_tap)t) ? (size_t)s->layers : 1;
  }
  size_t words = 0;
  if(s->npairs == 0) {
    rc = OTF_FAIL(err, OTF_E_INVAL, "taps", "no taps to collect%s",
                  taps ? " (the models have no layers)" : "");
    goto fail;
  }
  s->pairs = otf_calloc(s->npairs, sizeof(pair));
  if(!s->pairs) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for %zu tap statistics", s->npairs);
    goto fail;
  }
  for(int t = 0; t < OTF_TAP_ALL_COUNT; t++) {
    if(s->base[t] < 0)
      continue;
    int nl = per_layer((otf_tap)t) ? s->layers : 1;
    otf_tap in;
    otf_slot slot = derived_slot((otf_tap)t, &in);
    for(int l = 0; l < nl; l++) {
      pair *p = &s->pairs[s->base[t] + l];
      p->tap = (otf_tap)t;
      p->layer = per_layer((otf_tap)t) ? l : -1;
      int ffn = t == OTF_TAP_FFN_PRE;
      p->np = (size_t)(ffn ? cp->intermediate_size : cp->hidden_size);
      p->na = (size_t)(ffn ? ca->intermediate_size : ca->hidden_size);
      p->rps = t == OTF_TAP_POOLED ? 1 : t == OTF_TAP_PATCH_EMBED ? P : T;
      p->kind = slot != OTF_SLOT_COUNT                         ? PAIR_DERIVED
                : t == OTF_TAP_QKV_IN || t == OTF_TAP_FFN_IN ? PAIR_INPUT
                                                               : PAIR_DIRECT;
      p->slot = slot;
      if(p->kind == PAIR_DERIVED) {
        p->src = &s->pairs[s->base[in] + l];
        continue;
      }
      size_t w = 0;
      if(!add_mul(&w, p->np, p->na) || !add_mul(&w, 4, p->np + p->na) ||
         (p->kind == PAIR_INPUT && (!add_mul(&w, p->np, p->np) || !add_mul(&w, p->na, p->na))) ||
         !add_mul(&words, up8(w), 1)) {
        rc = OTF_FAIL(err, OTF_E_TOO_LARGE, "taps", "statistics for widths %zu x %zu overflow",
                      p->np, p->na);
        goto fail;
      }
    }
  }
  if(words > SIZE_MAX / sizeof(double)) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, "taps", "statistics too large");
    goto fail;
  }
  s->acc = otf_malloc_aligned((words ? words : 1) * sizeof(double));
  if(!s->acc) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for %zu bytes of statistics",
                  words * sizeof(double));
    goto fail;
  }
  memset(s->acc, 0, words * sizeof(double));
  double *cur = s->acc;
  for(size_t q = 0; q < s->npairs; q++) {
    pair *p = &s->pairs[q];
    if(p->kind == PAIR_DERIVED)
      continue;
    double *start = cur;
    double **vp[] = {&p->shift_p, &p->sum_p, &p->sq_p, &p->inv_p};
    double **va[] = {&p->shift_a, &p->sum_a, &p->sq_a, &p->inv_a};
    for(int i = 0; i < 4; i++) {
      *vp[i] = cur;
      cur += p->np;
      *va[i] = cur;
      cur += p->na;
    }
    p->cross = cur;
    cur += p->np * p->na;
    size_t w = p->np * p->na + 4 * (p->np + p->na);
    if(p->kind == PAIR_INPUT) {
      p->gram_p = cur;
      cur += p->np * p->np;
      p->gram_a = cur;
      w += p->np * p->np + p->na * p->na;
    }
    cur = start + up8(w);
  }
  *out = s;
  return OTF_OK;
fail:
  otf_actstats_free(s);
  return rc;
}

/* Collection-time buffers, carved from one block. */
typedef struct work {
  void *block;
  size_t *keep;         /* [B * T] */
  double *xp, *xa;      /* DGEMM scratch */
  size_t chunk;
} work;

static otf_status plan_work(work *wk, otf_actstats *s, size_t T, size_t B, otf_error *err) {
  size_t maxp = 0, maxa = 0, maxrows = 0, floats = 0;
  int ok = 1;
  for(size_t q = 0; q < s->npairs; q++) {
    const pair *p = &s->pairs[q];
    if(p->kind == PAIR_DERIVED)
      continue;
    /* B x tokens was bounded by INT_MAX in otf_forward_create. */
    size_t rows = B * p->rps;
    maxp = p->np > maxp ? p->np : maxp;
    maxa = p->na > maxa ? p->na : maxa;
    maxrows = rows > maxrows ? rows : maxrows;
    size_t f = 0;
    ok = ok && add_mul(&f, rows, p->na) && add_mul(&floats, (f + 15) & ~(size_t)15, 1);
  }
  wk->chunk = maxrows < CHUNK_ROWS ? maxrows : CHUNK_ROWS;
  if(wk->chunk == 0)
    wk->chunk = 1;
  size_t tok = B * T, bytes = 0;
  ok = ok && add_mul(&bytes, floats, sizeof(float)) &&
       add_mul(&bytes, up8(wk->chunk * maxp) + up8(wk->chunk * maxa), sizeof(double)) &&
       add_mul(&bytes, up8(tok), sizeof(size_t));
  if(!ok)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, "batch", "collection buffers for batch %zu overflow",
                    B);
  wk->block = otf_malloc_aligned(bytes);
  if(!wk->block)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for %zu bytes of collection buffers",
                    bytes);
  char *cur = wk->block;
  wk->xp = (double *)(void *)cur;
  cur += up8(wk->chunk * maxp) * sizeof(double);
  wk->xa = (double *)(void *)cur;
  cur += up8(wk->chunk * maxa) * sizeof(double);
  wk->keep = (size_t *)(void *)cur;
  cur += up8(tok) * sizeof(size_t);
  for(size_t q = 0; q < s->npairs; q++) {
    pair *p = &s->pairs[q];
    if(p->kind == PAIR_DERIVED)
      continue;
    p->abuf = (float *)(void *)cur;
    cur += ((B * p->rps * p->na + 15) & ~(size_t)15) * sizeof(float);
  }
  return OTF_OK;
}

/* Kept rows of a ViT token window for a batch of B samples with rps rows
 * each (cls first when has_cls): keep [B * rps] gets the row indices,
 * returns how many per sample. grid: patches per side. */
static size_t window_rows(size_t *keep, size_t B, size_t rps, int has_cls, size_t grid,
                          int window) {
  size_t per = 0;
  size_t lo = 0, hi = grid; /* central [lo, hi) along each side */
  if(window > 0 && (size_t)window < grid) {
    lo = (grid - (size_t)window) / 2;
    hi = lo + (size_t)window;
  }
  for(size_t t = 0; t < rps; t++) {
    size_t patch = has_cls ? t - 1 : t;
    int keep_it = has_cls && t == 0;
    if(!(has_cls && t == 0) && !(window < 0 && has_cls))
      keep_it = patch / grid >= lo && patch / grid < hi && patch % grid >= lo && patch % grid < hi;
    if(keep_it)
      keep[per++] = t;
  }
  for(size_t i = 1; i < B; i++)
    for(size_t k = 0; k < per; k++)
      keep[i * per + k] = i * rps + keep[k];
  return per;
}

/* Fills the batch with the samples sel [n] and lists the kept rows
 * (attention_mask 1) of the token taps. */
static otf_status fill_batch(otf_batch *b, run *r, const work *wk, otf_dataset *ds,
                             const size_t *sel, size_t n, otf_error *err) {
  otf_status rc = otf_dataset_fill(ds, b, sel, n, err);
  if(rc != OTF_OK)
    return rc;
  r->n = n;
  r->keep = NULL;
  r->nkeep = 0;
  if(b->attention_mask) {
    size_t k = 0;
    for(size_t t = 0; t < n * b->seq; t++)
      if(b->attention_mask[t])
        wk->keep[k++] = t;
    r->keep = wk->keep;
    r->nkeep = k;
  }
  return OTF_OK;
}

/* Which taps the two models can deliver. */
static otf_status check_taps(uint32_t taps, const otf_model_config *cp, const otf_weights *wp,
                             const otf_weights *wa, otf_error *err) {
  if(taps == 0)
    return OTF_FAIL(err, OTF_E_INVAL, "taps", "no taps to collect");
  if(taps >> OTF_TAP_COUNT)
    return OTF_FAIL(err, OTF_E_INVAL, "taps", "unknown tap bits 0x%x", (unsigned)taps);
  if((taps & OTF_TAP_BIT(OTF_TAP_PATCH_EMBED)) && cp->family != OTF_FAMILY_VIT)
    return OTF_FAIL(err, OTF_E_INVAL, "taps", "PATCH_EMBED is a ViT tap; these are %s models",
                    cp->model_type);
  if((taps & OTF_TAP_BIT(OTF_TAP_POOLED)) &&
     (!wp->g[OTF_SLOT_POOL_W] || !wa->g[OTF_SLOT_POOL_W]))
    return OTF_FAIL(err, OTF_E_INVAL, "taps", "POOLED needs a pooler, and the %s has none",
                    !wp->g[OTF_SLOT_POOL_W] ? "parent" : "anchor");
  return OTF_OK;
}

otf_status otf_actstats_collect(otf_actstats **out, const otf_model *parent,
                                const otf_model *anchor, const char *calibration_path,
                                const otf_calib_opts *opts,
                                void (*progress)(void *ctx, double fraction), void *ctx,
                                const volatile int *cancel, otf_error *err) {
  otf_status rc;
  otf_actstats *s = NULL;
  otf_st_file *f = NULL;
  otf_dataset *ds = NULL;
  otf_weights wp, wa;
  otf_forward *fp = NULL, *fa = NULL;
  size_t *sel = NULL, *win = NULL;
  work wk = {0};
  memset(&wp, 0, sizeof(wp));
  memset(&wa, 0, sizeof(wa));
  if(!out)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "an output pointer is required");
  *out = NULL;
  if(!parent || !anchor || !calibration_path || !opts)
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "parent, anchor, calibration path and options are required");
  const otf_model_config *cp = otf_model_cfg(parent), *ca = otf_model_cfg(anchor);
  rc = check_models(cp, ca, err);
  if(rc != OTF_OK)
    return rc;
  size_t B = opts->batch;
  if(B > MAX_BATCH)
    return OTF_FAIL(err, OTF_E_INVAL, "batch", "batch %zu exceeds %d", B, MAX_BATCH);
  rc = otf_st_open(&f, calibration_path, err);
  if(rc != OTF_OK)
    return rc;
  const otf_model_config *cfgs[2] = {cp, ca};
  const char *const names[2] = {"parent", "anchor"};
  otf_dataset_opts dopts = {.cfgs = cfgs, .names = names, .ncfg = 2, .what = "calibration file"};
  rc = otf_dataset_open(&ds, f, &dopts, err);
  if(rc != OTF_OK)
    goto fail;
  const size_t N = otf_dataset_count(ds), T = otf_dataset_seq(ds);
  if(opts->samples > N) {
    rc = OTF_FAIL(err, OTF_E_INVAL, "samples", "%zu samples requested; the file holds %zu",
                  opts->samples, N);
    goto fail;
  }
  size_t nsel = opts->samples ? opts->samples : N;
  if(B == 0) {
    /* About DEFAULT_ROWS rows per pass: the anchor's kept rows of every
     * collected tap and layer are held for one batch. */
    size_t tps = cp->family == OTF_FAMILY_VIT
                     ? (size_t)(cp->image_size / cp->patch_size) *
                               (size_t)(cp->image_size / cp->patch_size) + 1
                     : (T ? T : 1);
    B = DEFAULT_ROWS / tps;
    B = B < 1 ? 1 : B > DEFAULT_BATCH ? DEFAULT_BATCH : B;
  }
  B = B < nsel ? B : nsel;
  sel = otf_malloc_array(N, sizeof(size_t));
  if(!sel) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to select %zu samples", N);
    goto fail;
  }
  select_samples(sel, N, nsel, opts->samples != 0, opts->seed);
  if((rc = otf_weights_load(&wp, parent, err)) != OTF_OK ||
     (rc = otf_weights_load(&wa, anchor, err)) != OTF_OK ||
     (rc = check_taps(opts->taps, cp, &wp, &wa, err)) != OTF_OK ||
     (rc = otf_forward_create(&fp, &wp, cp, otf_model_arch(parent), B, T ? T : 1, err)) !=
         OTF_OK ||
     (rc = otf_forward_create(&fa, &wa, ca, otf_model_arch(anchor), B, T ? T : 1, err)) !=
         OTF_OK ||
     (rc = plan_pairs(&s, cp, ca, opts->taps, T, err)) != OTF_OK ||
     (rc = plan_work(&wk, s, T, B, err)) != OTF_OK ||
     (rc = otf_dataset_reserve(ds, B, err)) != OTF_OK)
    goto fail;

  run r = {.s = s, .T = T, .xp = wk.xp, .xa = wk.xa, .chunk = wk.chunk, .err = err};
  if(opts->window != 0) {
    if(cp->family != OTF_FAMILY_VIT) {
      rc = OTF_FAIL(err, OTF_E_INVAL, "window", "token windows apply to ViT models only");
      goto fail;
    }
    size_t grid = (size_t)(cp->image_size / cp->patch_size), P = grid * grid;
    win = otf_malloc_array(B * (2 * P + 1), sizeof(size_t));
    if(!win) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the token window");
      goto fail;
    }
    r.windowed = 1;
    r.win_rps[0] = P + 1;
    r.win_keep[0] = win;
    r.win_per[0] = window_rows(win, B, P + 1, 1, grid, opts->window);
    r.win_rps[1] = P;
    r.win_keep[1] = win + B * (P + 1);
    r.win_per[1] = window_rows(win + B * (P + 1), B, P, 0, grid, opts->window);
  }
  size_t nbatches = (nsel + B - 1) / B;
  for(size_t bi = 0; bi < nbatches; bi++) {
    if(cancel && *cancel) {
      rc = OTF_FAIL(err, OTF_E_CANCELLED, NULL, "activation statistics cancelled after %zu of %zu batches",
                    bi, nbatches);
      goto fail;
    }
    size_t s0 = bi * B, n = nsel - s0 < B ? nsel - s0 : B;
    otf_batch b;
    r.batch_no = bi + 1;
    if((rc = fill_batch(&b, &r, &wk, ds, sel + s0, n, err)) != OTF_OK ||
       (rc = otf_forward_run(fa, &b, NULL, s->fwd_taps, anchor_tap, &r, err)) != OTF_OK ||
       (rc = otf_forward_run(fp, &b, NULL, s->fwd_taps, parent_tap, &r, err)) != OTF_OK)
      goto fail;
    s->tokens += r.windowed ? (uint64_t)n * r.win_per[0]
                 : r.keep    ? (uint64_t)r.nkeep
                             : (uint64_t)n * s->tps;
    if(progress)
      progress(ctx, (double)(bi + 1) / (double)nbatches);
  }
  rc = finish(s, wk.xp, err);
  if(rc != OTF_OK)
    goto fail;
  s->parent = parent;
  s->anchor = anchor;
  *out = s;
  s = NULL;
fail:
  otf_actstats_free(s);
  otf_free(wk.block);
  otf_forward_destroy(fp);
  otf_forward_destroy(fa);
  otf_weights_free(&wp);
  otf_weights_free(&wa);
  otf_free(sel);
  otf_free(win);
  otf_dataset_destroy(ds);
  otf_st_close(f);
  return rc;
}

/* A projection weight of m at layer as double [rows, cols] = [out, in],
 * whatever its storage order. ftmp: [rows * cols]. */
static otf_status load_weight(double *out, float *ftmp, const otf_model *m, otf_slot slot,
                              int layer, size_t rows, size_t cols, otf_error *err) {
  const otf_arch *a = otf_model_arch(m);
  const otf_tensor_spec *spec = NULL;
  for(size_t i = 0; a && i < a->n_layer && !spec; i++)
    if(a->layer[i].slot == slot)
      spec = &a->layer[i];
  const otf_st_tensor *t = spec ? otf_model_tensor(m, spec, layer) : NULL;
  if(!t || t->numel != (uint64_t)rows * cols)
    return OTF_FAIL(err, OTF_E_INTERNAL, NULL, "%s: no %zu x %zu weight for slot %d of layer %d",
                    otf_model_dir(m), rows, cols, (int)slot, layer);
  otf_status rc = otf_st_read_f32(ftmp, t, err);
  otf_st_release(t);
  if(rc != OTF_OK)
    return rc;
  int tr = (spec->flags & OTF_TF_TRANSPOSED) != 0;
  for(size_t r = 0; r < rows; r++)
    for(size_t c = 0; c < cols; c++)
      out[r * cols + c] = (double)(tr ? ftmp[c * rows + r] : ftmp[r * cols + c]);
  return OTF_OK;
}

/* cov [n, m] = (x - shift)(y - shift)^T sums minus sum_x sum_y^T / N: the
 * centred second moments. src [n, m], or the upper triangle of a square
 * [n, n] when sym (the lower is filled from it). */
static void centred(double *cov, const double *src, const double *sx, const double *sy,
                    size_t n, size_t m, int sym, double N) {
  for(size_t i = 0; i < n; i++)
    for(size_t j = 0; j < m; j++) {
      double v = sym && j < i ? src[j * m + i] : src[i * m + j];
      cov[i * m + j] = v - sx[i] * (sy[j] / N);
    }
}

/* Derived pair p: with Cp, Ca, Cpa the input's centred moments and Wp, Wa
 * the projection weights, the output's centred cross-products are
 * Wp Cpa Wa^T (into cost) and its centred sums of squares diag(Wp Cp Wp^T)
 * (into varp) and diag(Wa Ca Wa^T) (into vara). Everything in double. */
static otf_status derived_moments(const otf_actstats *s, const pair *p, double *cost,
                                  double *varp, double *vara, otf_error *err) {
  const pair *in = p->src;
  const size_t dp = in->np, da = in->na, np = p->np, na = p->na;
  const double N = (double)in->n;
  size_t dmax = dp > da ? dp : da, nmax = np > na ? np : na;
  double *cpa = otf_malloc_array(dp * da, sizeof(double));
  double *cp = otf_malloc_array(dp * dp, sizeof(double));
  double *ca = otf_malloc_array(da * da, sizeof(double));
  double *wp = otf_malloc_array(np * dp, sizeof(double));
  double *wa = otf_malloc_array(na * da, sizeof(double));
  double *t = otf_malloc_array(nmax * dmax, sizeof(double));
  float *ft = otf_malloc_array(nmax * dmax, sizeof(float));
  otf_status rc = OTF_OK;
  if(!cpa || !cp || !ca || !wp || !wa || !t || !ft) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the cost of tap %s layer %d",
                  tap_name(p->tap), p->layer);
    goto done;
  }
  if((rc = load_weight(wp, ft, s->parent, p->slot, p->layer, np, dp, err)) != OTF_OK ||
     (rc = load_weight(wa, ft, s->anchor, p->slot, p->layer, na, da, err)) != OTF_OK)
    goto done;
  centred(cpa, in->cross, in->sum_p, in->sum_a, dp, da, 0, N);
  centred(cp, in->gram_p, in->sum_p, in->sum_p, dp, dp, 1, N);
  centred(ca, in->gram_a, in->sum_a, in->sum_a, da, da, 1, N);
  /* t [np, da] = Wp Cpa; cost [np, na] = t Wa^T */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)np, (blasint)da, (blasint)dp,
              1.0, wp, (blasint)dp, cpa, (blasint)da, 0.0, t, (blasint)da);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)np, (blasint)na, (blasint)da,
              1.0, t, (blasint)da, wa, (blasint)da, 0.0, cost, (blasint)na);
  /* t [np, dp] = Wp Cp; varp_i = t_i . wp_i; the same for the anchor */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)np, (blasint)dp, (blasint)dp,
              1.0, wp, (blasint)dp, cp, (blasint)dp, 0.0, t, (blasint)dp);
  for(size_t i = 0; i < np; i++) {
    double v = 0.0;
    for(size_t k = 0; k < dp; k++)
      v += t[i * dp + k] * wp[i * dp + k];
    varp[i] = v;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)na, (blasint)da, (blasint)da,
              1.0, wa, (blasint)da, ca, (blasint)da, 0.0, t, (blasint)da);
  for(size_t j = 0; j < na; j++) {
    double v = 0.0;
    for(size_t k = 0; k < da; k++)
      v += t[j * da + k] * wa[j * da + k];
    vara[j] = v;
  }
done:
  otf_free(cpa);
  otf_free(cp);
  otf_free(ca);
  otf_free(wp);
  otf_free(wa);
  otf_free(t);
  otf_free(ft);
  return rc;
}

/* Cost of a derived pair from its centred cross-products (already in cost)
 * and sums of squares: the same Pearson form and dead-neuron rule as the
 * collected taps. */
static otf_status derived_cost(const otf_actstats *s, const pair *p, double *cost,
                               otf_error *err) {
  const size_t np = p->np, na = p->na;
  double *v = otf_malloc_array(2 * (np + na) + (np > na ? np : na), sizeof(double));
  if(!v)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the cost of tap %s layer %d",
                    tap_name(p->tap), p->layer);
  double *invp = v, *inva = v + np, *scratch = v + np + na;
  otf_status rc = derived_moments(s, p, cost, invp, inva, err);
  if(rc == OTF_OK) {
    const double n1 = (double)p->n - 1.0;
    for(size_t i = 0; i < np; i++)
      invp[i] = invp[i] > 0.0 ? sqrt(invp[i] / n1) : 0.0;
    for(size_t j = 0; j < na; j++)
      inva[j] = inva[j] > 0.0 ? sqrt(inva[j] / n1) : 0.0;
    dead_rule(invp, np, scratch);
    dead_rule(inva, na, scratch);
    for(size_t i = 0; i < np; i++) {
      const double ii = invp[i] / n1;
      double *out = cost + i * na;
      for(size_t j = 0; j < na; j++) {
        double r = out[j] * ii * inva[j];
        r = r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
        double c2 = 2.0 * n1 * (1.0 - r);
        out[j] = c2 > 0.0 ? sqrt(c2) : 0.0;
      }
    }
  }
  otf_free(v);
  return rc;
}

otf_status otf_actstats_cost(const otf_actstats *s, otf_tap tap, int layer, double *cost,
                             size_t n_parent, size_t n_anchor, otf_error *err) {
  if(!s || !cost)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "statistics and a cost buffer are required");
  const pair *p = (unsigned)tap < OTF_TAP_COUNT ? find_pair(s, tap, layer) : NULL;
  if(!p)
    return OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "tap %s layer %d was not collected",
                    tap_name(tap), layer);
  if(n_parent != p->np || n_anchor != p->na)
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "tap %s layer %d has %zu parent x %zu anchor neurons, not %zu x %zu",
                    tap_name(tap), layer, p->np, p->na, n_parent, n_anchor);
  if(p->n < 2)
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "need at least 2 observations for tap %s layer %d, have %llu",
                    tap_name(tap), layer, (unsigned long long)p->n);
  if(p->kind == PAIR_DERIVED)
    return derived_cost(s, p, cost, err);
  const double N = (double)p->n, n1 = N - 1.0;
  const size_t np = p->np, na = p->na;
  for(size_t i = 0; i < np; i++) {
    const double mi = p->sum_p[i] / N, ii = p->inv_p[i] / n1;
    const double *cr = p->cross + i * na;
    double *out = cost + i * na;
    for(size_t j = 0; j < na; j++) {
      /* r = (S_ij - N m_i m_j) / ((N-1) s_i s_j) on the shifted values */
      double r = (cr[j] - mi * p->sum_a[j]) * ii * p->inv_a[j];
      r = r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
      double c2 = 2.0 * n1 * (1.0 - r);
      out[j] = c2 > 0.0 ? sqrt(c2) : 0.0;
    }
  }
  return OTF_OK;
}

uint64_t otf_actstats_observations(const otf_actstats *s) { return s ? s->tokens : 0; }

void otf_actstats_free(otf_actstats *s) {
  if(!s)
    return;
  otf_free(s->acc);
  otf_free(s->pairs);
  otf_free(s);
}
