/* Activation statistics on the committed fixtures: the streamed cost
 * against the cost computed the slow way (every activation kept,
 * standardised, otf_cost_matrix_naive), independence from the batch size,
 * a model against itself, heterogeneous widths, sample selection, input
 * errors, cancellation and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/actstats.h"
#include "fusion/cost.h"
#include "fusion/forward.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

#define MAXL 8 /* layers of the fixtures are 2 or 3 */

static const char *const DIGITS = "digits_eval.safetensors";
static const char *const TEXT = "text_cls_eval.safetensors";

static otf_model *open_model(const char *name) {
  char path[512];
  otf_error e;
  otf_model *m = NULL;
  snprintf(path, sizeof(path), "%s/models/%s", tu_data_dir(), name);
  ck_assert_msg(otf_model_open(&m, path, 0, &e) == OTF_OK, "%s: %s", name, e.message);
  return m;
}

static const char *data(const char *file) {
  static char path[512];
  snprintf(path, sizeof(path), "%s/eval/%s", tu_data_dir(), file);
  return path;
}

static otf_actstats *collect(const otf_model *p, const otf_model *a, const char *file,
                             size_t samples, uint64_t seed, size_t batch, uint32_t taps) {
  otf_calib_opts o = {.samples = samples, .seed = seed, .batch = batch, .taps = taps};
  otf_actstats *s = NULL;
  otf_error e;
  otf_status rc = otf_actstats_collect(&s, p, a, data(file), &o, NULL, NULL, NULL, &e);
  ck_assert_msg(rc == OTF_OK, "collect: %s", e.message);
  return s;
}

static size_t tap_width(const otf_model *m, otf_tap t) {
  const otf_model_config *c = otf_model_cfg(m);
  return (size_t)(t == OTF_TAP_FFN_PRE ? c->intermediate_size : c->hidden_size);
}

static int per_layer(otf_tap t) { return t >= OTF_TAP_Q && t <= OTF_TAP_RESID_FFN; }

/* ---- the slow way: keep every activation --------------------------------- */

typedef struct slow {
  size_t n, T;              /* current batch; T = 0 for ViT */
  const int64_t *mask;      /* current batch's mask, NULL = all kept */
  float *d[OTF_TAP_COUNT][MAXL + 1];
  size_t rows[OTF_TAP_COUNT][MAXL + 1], cols[OTF_TAP_COUNT][MAXL + 1];
} slow;

static otf_status slow_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                           size_t cols) {
  slow *s = ctx;
  int li = layer + 1;
  int masked = s->mask && s->T && rows == s->n * s->T;
  float **d = &s->d[tap][li];
  *d = realloc(*d, (s->rows[tap][li] + rows) * cols * sizeof(float));
  for(size_t r = 0; r < rows; r++)
    if(!masked || s->mask[r])
      memcpy(*d + (s->rows[tap][li]++) * cols, x + r * cols, cols * sizeof(float));
  s->cols[tap][li] = cols;
  return OTF_OK;
}

static void slow_free(slow *s) {
  for(int t = 0; t < OTF_TAP_COUNT; t++)
    for(int l = 0; l <= MAXL; l++)
      free(s->d[t][l]);
}

/* Every sample of the file through m, in file order. */
static void slow_collect(slow *s, const otf_model *m, const char *file, uint32_t taps) {
  memset(s, 0, sizeof(*s));
  otf_error e;
  otf_weights w;
  otf_st_file *f = NULL;
  ck_assert_int_eq(otf_st_open(&f, data(file), &e), OTF_OK);
  ck_assert_int_eq(otf_weights_load(&w, m, &e), OTF_OK);
  const otf_st_tensor *px = otf_st_find(f, "pixel_values"), *ids = otf_st_find(f, "input_ids"),
                      *mk = otf_st_find(f, "attention_mask"),
                      *ty = otf_st_find(f, "token_type_ids");
  size_t N = px ? (size_t)px->shape[0] : (size_t)ids->shape[0];
  size_t T = ids ? (size_t)ids->shape[1] : 0, per = px ? (size_t)(px->numel / N) : T;
  float *pix = NULL;
  int64_t *ib = NULL, *mb = NULL, *tb = NULL;
  if(px) {
    pix = malloc(px->numel * sizeof(float));
    ck_assert_int_eq(otf_st_read_f32(pix, px, &e), OTF_OK);
  } else {
    ib = malloc(ids->nbytes);
    mb = malloc(mk->nbytes);
    tb = malloc(ty->nbytes);
    memcpy(ib, ids->data, ids->nbytes);
    memcpy(mb, mk->data, mk->nbytes);
    memcpy(tb, ty->data, ty->nbytes);
  }
  const size_t B = 50;
  otf_forward *fw = NULL;
  ck_assert_int_eq(otf_forward_create(&fw, &w, otf_model_cfg(m), otf_model_arch(m), B,
                                      T ? T : 1, &e), OTF_OK);
  s->T = T;
  for(size_t s0 = 0; s0 < N; s0 += B) {
    size_t n = N - s0 < B ? N - s0 : B;
    otf_batch b = {.n = n, .seq = T};
    if(px) {
      b.pixel_values = pix + s0 * per;
    } else {
      b.input_ids = ib + s0 * T;
      b.attention_mask = mb + s0 * T;
      b.token_type_ids = tb + s0 * T;
    }
    s->n = n;
    s->mask = b.attention_mask;
    ck_assert_msg(otf_forward_run(fw, &b, NULL, taps, slow_tap, s, &e) == OTF_OK, "%s",
                  e.message);
  }
  otf_forward_destroy(fw);
  otf_weights_free(&w);
  otf_st_close(f);
  free(pix);
  free(ib);
  free(mb);
  free(tb);
}

/* x [N, n] -> out [n, N]: columns standardised (mean 0, unbiased std 1),
 * in double, then rounded to float for otf_cost_matrix_naive. */
static float *standardised_t(const float *x, size_t N, size_t n) {
  float *out = malloc(N * n * sizeof(float));
  for(size_t i = 0; i < n; i++) {
    double m = 0, v = 0;
    for(size_t t = 0; t < N; t++)
      m += x[t * n + i];
    m /= (double)N;
    for(size_t t = 0; t < N; t++) {
      double d = x[t * n + i] - m;
      v += d * d;
    }
    double sd = sqrt(v / (double)(N - 1));
    ck_assert_msg(sd > 0, "neuron %zu is constant; the slow way cannot standardise it", i);
    for(size_t t = 0; t < N; t++)
      out[i * N + t] = (float)((x[t * n + i] - m) / sd);
  }
  return out;
}

static double max_of(const double *x, size_t n) {
  double m = 0;
  for(size_t i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}

static double *cost_of(const otf_actstats *s, otf_tap t, int layer, size_t np, size_t na) {
  double *c = malloc(np * na * sizeof(double));
  otf_error e;
  ck_assert_msg(otf_actstats_cost(s, t, layer, c, np, na, &e) == OTF_OK, "%s", e.message);
  return c;
}

/* Streams pmodel vs amodel at two batch sizes and compares every collected
 * (tap, layer) with the slow way (1e-6) and the two batchings (1e-9). */
static void compare_with_slow(const char *pname, const char *aname, const char *file,
                              uint32_t taps, size_t b1, size_t b2) {
  otf_model *p = open_model(pname), *a = open_model(aname);
  slow sp, sa;
  slow_collect(&sp, p, file, taps);
  slow_collect(&sa, a, file, taps);
  otf_actstats *s1 = collect(p, a, file, 0, 0, b1, taps);
  otf_actstats *s2 = collect(p, a, file, 0, 0, b2, taps);
  ck_assert_uint_eq(otf_actstats_observations(s1), otf_actstats_observations(s2));
  int L = otf_model_cfg(p)->num_layers, compared = 0;
  for(int t = 0; t < OTF_TAP_COUNT; t++) {
    if(!(taps & OTF_TAP_BIT(t)))
      continue;
    for(int l = per_layer((otf_tap)t) ? 0 : -1; l < (per_layer((otf_tap)t) ? L : 0); l++) {
      size_t np = tap_width(p, (otf_tap)t), na = tap_width(a, (otf_tap)t);
      size_t N = sp.rows[t][l + 1];
      ck_assert_uint_eq(sa.rows[t][l + 1], N);
      ck_assert_uint_eq(sp.cols[t][l + 1], np);
      if(t != OTF_TAP_POOLED && t != OTF_TAP_PATCH_EMBED)
        ck_assert_uint_eq(otf_actstats_observations(s1), N);
      float *zp = standardised_t(sp.d[t][l + 1], N, np);
      float *za = standardised_t(sa.d[t][l + 1], N, na);
      double *want = malloc(np * na * sizeof(double));
      otf_error e;
      ck_assert_int_eq(otf_cost_matrix_naive(want, zp, za, np, na, N, OTF_METRIC_EUCLIDEAN, &e),
                       OTF_OK);
      double *c1 = cost_of(s1, (otf_tap)t, l, np, na), *c2 = cost_of(s2, (otf_tap)t, l, np, na);
      char what[96];
      double mx = max_of(want, np * na);
      snprintf(what, sizeof(what), "%s/%s tap %d layer %d vs slow", pname, aname, t, l);
      ck_assert(tu_close(what, c1, want, np * na, 1e-6 * mx, 1e-6));
      snprintf(what, sizeof(what), "%s/%s tap %d layer %d batch %zu vs %zu", pname, aname, t, l,
               b1, b2);
      ck_assert(tu_close(what, c2, c1, np * na, 1e-9 * mx, 1e-9));
      free(zp);
      free(za);
      free(want);
      free(c1);
      free(c2);
      compared++;
    }
  }
  ck_assert_int_gt(compared, 0);
  otf_actstats_free(s1);
  otf_actstats_free(s2);
  slow_free(&sp);
  slow_free(&sa);
  otf_model_close(p);
  otf_model_close(a);
}

#define B(t) OTF_TAP_BIT(OTF_TAP_##t)

START_TEST(vit_matches_slow_way) {
  compare_with_slow("vit_s0", "vit_s1", DIGITS,
                    B(Q) | B(K) | B(V) | B(FFN_PRE) | B(ATTN_OUT) | B(FFN_OUT) | B(PATCH_EMBED),
                    32, 7);
}
END_TEST

START_TEST(bert_matches_slow_way_without_padding) {
  compare_with_slow("bert_cls_s0", "bert_cls_s1", TEXT,
                    B(Q) | B(K) | B(V) | B(FFN_PRE) | B(ATTN_OUT) | B(FFN_OUT) | B(RESID_FFN) |
                        B(EMBEDDINGS) | B(POOLED),
                    32, 13);
}
END_TEST

/* The padding really is excluded: observations = tokens with mask 1. */
START_TEST(bert_observations_are_kept_tokens) {
  otf_model *m = open_model("bert_cls_s0");
  otf_st_file *f = NULL;
  otf_error e;
  ck_assert_int_eq(otf_st_open(&f, data(TEXT), &e), OTF_OK);
  const otf_st_tensor *mk = otf_st_find(f, "attention_mask");
  uint64_t kept = 0;
  for(uint64_t k = 0; k < mk->numel; k++) {
    int64_t v;
    memcpy(&v, (const char *)mk->data + 8 * k, 8);
    kept += (uint64_t)v;
  }
  ck_assert_uint_lt(kept, mk->numel); /* the fixture does pad */
  otf_actstats *s = collect(m, m, TEXT, 0, 0, 64, B(FFN_OUT));
  ck_assert_uint_eq(otf_actstats_observations(s), kept);
  otf_actstats_free(s);
  otf_st_close(f);
  otf_model_close(m);
}
END_TEST

/* Against itself, neuron i is its own best match at cost ~0. */
static void self_check(const char *name, const char *file, uint32_t taps) {
  otf_model *m = open_model(name);
  otf_actstats *s = collect(m, m, file, 0, 0, 32, taps);
  int L = otf_model_cfg(m)->num_layers;
  for(int t = 0; t < OTF_TAP_COUNT; t++) {
    if(!(taps & OTF_TAP_BIT(t)))
      continue;
    for(int l = per_layer((otf_tap)t) ? 0 : -1; l < (per_layer((otf_tap)t) ? L : 0); l++) {
      size_t n = tap_width(m, (otf_tap)t);
      double *c = cost_of(s, (otf_tap)t, l, n, n);
      double scale = max_of(c, n * n); /* ~ sqrt(2 (N-1)) * sqrt(1 - r_min) */
      size_t live = 0;
      for(size_t i = 0; i < n; i++) {
        double dg = c[i * n + i];
        if(dg > 0.5 * scale)
          continue; /* a dead neuron: r = 0 against everything, itself included */
        live++;
        ck_assert_msg(dg <= 1e-6 * scale, "%s tap %d layer %d: c[%zu,%zu] = %g (scale %g)",
                      name, t, l, i, i, dg, scale);
        for(size_t j = 0; j < n; j++)
          ck_assert_msg(dg <= c[i * n + j], "%s tap %d layer %d: c[%zu,%zu] = %g < diagonal %g",
                        name, t, l, i, j, c[i * n + j], dg);
      }
      ck_assert_uint_gt(live, n / 2);
      free(c);
    }
  }
  otf_actstats_free(s);
  otf_model_close(m);
}

START_TEST(model_against_itself) {
  self_check("vit_s0", DIGITS,
             B(Q) | B(K) | B(V) | B(FFN_PRE) | B(ATTN_OUT) | B(FFN_OUT) | B(PATCH_EMBED) |
                 B(EMBEDDINGS) | B(RESID_ATTN) | B(RESID_FFN) | B(FINAL));
  self_check("bert_cls_s0", TEXT, B(Q) | B(FFN_PRE) | B(RESID_FFN) | B(POOLED) | B(FINAL));
}
END_TEST

START_TEST(heterogeneous_widths) {
  otf_model *s0 = open_model("vit_s0"), *wide = open_model("vit_wide");
  uint32_t taps = B(Q) | B(FFN_PRE) | B(PATCH_EMBED);
  otf_actstats *s = collect(s0, wide, DIGITS, 100, 3, 16, taps);
  otf_error e;
  double *c = cost_of(s, OTF_TAP_Q, 1, 32, 64);
  double lim = sqrt(2.0 * (double)(otf_actstats_observations(s) - 1)) * 2.0;
  for(size_t k = 0; k < 32 * 64; k++)
    ck_assert(isfinite(c[k]) && c[k] >= 0 && c[k] <= lim + 1e-9);
  free(c);
  free(cost_of(s, OTF_TAP_FFN_PRE, 2, 64, 128));
  free(cost_of(s, OTF_TAP_PATCH_EMBED, -1, 32, 64));
  double one;
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_Q, 0, &one, 64, 32, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "32 parent x 64 anchor") != NULL, "%s", e.message);
  otf_actstats_free(s);
  /* And the other way round. */
  s = collect(wide, s0, DIGITS, 100, 3, 16, taps);
  free(cost_of(s, OTF_TAP_FFN_PRE, 0, 128, 64));
  otf_actstats_free(s);
  otf_model_close(s0);
  otf_model_close(wide);
}
END_TEST

static int same_bits(const double *a, const double *b, size_t n) {
  return memcmp(a, b, n * sizeof(double)) == 0;
}

START_TEST(seeded_sample_selection) {
  otf_model *p = open_model("vit_s0"), *a = open_model("vit_s1");
  uint32_t taps = B(FFN_OUT);
  otf_actstats *x = collect(p, a, DIGITS, 100, 1, 32, taps);
  otf_actstats *y = collect(p, a, DIGITS, 100, 1, 32, taps);
  otf_actstats *z = collect(p, a, DIGITS, 100, 2, 32, taps);
  ck_assert_uint_eq(otf_actstats_observations(x), 100 * 17);
  double *cx = cost_of(x, OTF_TAP_FFN_OUT, 0, 32, 32), *cy = cost_of(y, OTF_TAP_FFN_OUT, 0, 32, 32),
         *cz = cost_of(z, OTF_TAP_FFN_OUT, 0, 32, 32);
  ck_assert(same_bits(cx, cy, 32 * 32));
  ck_assert(!same_bits(cx, cz, 32 * 32));
  otf_actstats_free(x);
  otf_actstats_free(y);
  otf_actstats_free(z);
  free(cx);
  free(cy);
  free(cz);
  /* Every sample, shuffled, is every sample. */
  x = collect(p, a, DIGITS, 360, 9, 32, taps);
  y = collect(p, a, DIGITS, 0, 0, 32, taps);
  cx = cost_of(x, OTF_TAP_FFN_OUT, 2, 32, 32);
  cy = cost_of(y, OTF_TAP_FFN_OUT, 2, 32, 32);
  ck_assert(tu_close("all shuffled vs all", cx, cy, 32 * 32, 1e-9 * max_of(cy, 32 * 32), 1e-9));
  otf_actstats_free(x);
  otf_actstats_free(y);
  free(cx);
  free(cy);
  otf_model_close(p);
  otf_model_close(a);
}
END_TEST

typedef struct prog {
  int calls;
  double last;
  int monotone;
  volatile int *cancel_at_first;
} prog;

static void on_progress(void *ctx, double f) {
  prog *p = ctx;
  p->monotone = p->monotone && f > p->last && f <= 1.0;
  p->last = f;
  p->calls++;
  if(p->cancel_at_first)
    *p->cancel_at_first = 1;
}

START_TEST(progress_and_cancel) {
  otf_model *p = open_model("vit_s0");
  otf_calib_opts o = {.samples = 100, .seed = 5, .batch = 16, .taps = B(Q)};
  otf_actstats *s = NULL;
  otf_error e;
  prog pr = {0, 0.0, 1, NULL};
  ck_assert_int_eq(otf_actstats_collect(&s, p, p, data(DIGITS), &o, on_progress, &pr, NULL, &e),
                   OTF_OK);
  ck_assert_int_eq(pr.calls, 7); /* ceil(100 / 16) */
  ck_assert(pr.monotone && pr.last == 1.0);
  otf_actstats_free(s);
  volatile int cancel = 1;
  s = (otf_actstats *)&cancel; /* must be reset to NULL on failure */
  ck_assert_int_eq(otf_actstats_collect(&s, p, p, data(DIGITS), &o, NULL, NULL, &cancel, &e),
                   OTF_E_CANCELLED);
  ck_assert_ptr_null(s);
  /* Cancelled between batches, after the first. */
  cancel = 0;
  prog pc = {0, 0.0, 1, &cancel};
  ck_assert_int_eq(otf_actstats_collect(&s, p, p, data(DIGITS), &o, on_progress, &pc, &cancel, &e),
                   OTF_E_CANCELLED);
  ck_assert_int_eq(pc.calls, 1);
  ck_assert_ptr_null(s);
  otf_model_close(p);
}
END_TEST

static otf_status try_collect(const otf_model *p, const otf_model *a, const char *file,
                              size_t samples, uint32_t taps, otf_error *e) {
  otf_calib_opts o = {.samples = samples, .seed = 1, .batch = 8, .taps = taps};
  otf_actstats *s = NULL;
  otf_status rc = otf_actstats_collect(&s, p, a, file, &o, NULL, NULL, NULL, e);
  ck_assert(rc == OTF_OK ? s != NULL : s == NULL);
  otf_actstats_free(s);
  return rc;
}

static void expect(otf_status got, otf_status want, const otf_error *e, const char *needle) {
  ck_assert_msg(got == want, "got %s: %s", otf_status_name(got), e->message);
  ck_assert_msg(strstr(e->message, needle) != NULL, "'%s' lacks '%s'", e->message, needle);
}

#define EXPECT(call, code, needle) expect((call), (code), &e, (needle))

START_TEST(input_errors) {
  otf_model *vit = open_model("vit_s0"), *bert = open_model("bert_cls_s0"),
            *bert1 = open_model("bert_cls_s1");
  otf_error e;
  EXPECT(try_collect(vit, vit, data(TEXT), 0, B(Q), &e), OTF_E_INVAL, "pixel_values");
  EXPECT(try_collect(bert, bert1, data(DIGITS), 0, B(Q), &e), OTF_E_INVAL, "input_ids");
  EXPECT(try_collect(vit, bert, data(DIGITS), 0, B(Q), &e), OTF_E_INVAL, "families");
  EXPECT(try_collect(bert, vit, data(TEXT), 0, B(Q), &e), OTF_E_INVAL, "families");
  EXPECT(try_collect(vit, vit, data(DIGITS), 361, B(Q), &e), OTF_E_INVAL, "holds 360");
  EXPECT(try_collect(vit, vit, data(DIGITS), 0, 0, &e), OTF_E_INVAL, "no taps");
  EXPECT(try_collect(vit, vit, data(DIGITS), 0, 1u << OTF_TAP_COUNT, &e), OTF_E_INVAL,
         "unknown tap");
  EXPECT(try_collect(vit, vit, data(DIGITS), 0, B(POOLED), &e), OTF_E_INVAL, "pooler");
  EXPECT(try_collect(bert, bert1, data(TEXT), 0, B(PATCH_EMBED), &e), OTF_E_INVAL, "ViT tap");
  EXPECT(try_collect(vit, vit, data("nonexistent.safetensors"), 0, B(Q), &e), OTF_E_NOT_FOUND,
         "nonexistent");
  char path[512];
  snprintf(path, sizeof(path), "%s/models/vit_s0/model.safetensors", tu_data_dir());
  EXPECT(try_collect(vit, vit, path, 0, B(Q), &e), OTF_E_INVAL, "pixel_values");
  otf_calib_opts o = {.batch = 5000, .taps = B(Q)};
  otf_actstats *s = NULL;
  ck_assert_int_eq(otf_actstats_collect(&s, vit, vit, data(DIGITS), &o, NULL, NULL, NULL, &e),
                   OTF_E_INVAL);
  ck_assert_int_eq(otf_actstats_collect(&s, vit, vit, data(DIGITS), NULL, NULL, NULL, NULL, &e),
                   OTF_E_INVAL);

  /* Taps that were not collected, and too few observations. */
  o = (otf_calib_opts){.samples = 1, .taps = B(Q) | B(POOLED)};
  ck_assert_int_eq(otf_actstats_collect(&s, bert, bert1, data(TEXT), &o, NULL, NULL, NULL, &e),
                   OTF_OK);
  double c[32 * 32];
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_K, 0, c, 32, 32, &e), OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_Q, 2, c, 32, 32, &e), OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_Q, -1, c, 32, 32, &e), OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_COUNT, -1, c, 32, 32, &e), OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_Q, 1, c, 32, 32, &e), OTF_OK);
  ck_assert_int_eq(otf_actstats_cost(s, OTF_TAP_POOLED, -1, c, 32, 32, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "at least 2 observations") != NULL, "%s", e.message);
  otf_actstats_free(s);
  otf_model_close(vit);
  otf_model_close(bert);
  otf_model_close(bert1);
}
END_TEST

/* A variant of fixture `src` written to a fresh directory under /tmp:
 * tensors whose name contains `drop` left out, the position table cut to
 * `pos_rows` rows (0 = as is), and config.json with `from` replaced by
 * `to`. Returns the directory (static buffer); remove with rm_variant. */
static const char *make_variant(const char *src, const char *drop, uint64_t pos_rows,
                                const char *from, const char *to) {
  static char dir[64];
  char path[600], cfg[8192];
  otf_error e;
  snprintf(dir, sizeof(dir), "/tmp/otf_actstats_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/models/%s/config.json", tu_data_dir(), src);
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  size_t len = fread(cfg, 1, sizeof(cfg) - 1, f);
  fclose(f);
  cfg[len] = 0;
  char *at = strstr(cfg, from);
  ck_assert_ptr_nonnull(at);
  snprintf(path, sizeof(path), "%s/config.json", dir);
  f = fopen(path, "wb");
  fwrite(cfg, 1, (size_t)(at - cfg), f);
  fputs(to, f);
  fputs(at + strlen(from), f);
  fclose(f);
  otf_st_file *st = NULL;
  snprintf(path, sizeof(path), "%s/models/%s/model.safetensors", tu_data_dir(), src);
  ck_assert_int_eq(otf_st_open(&st, path, &e), OTF_OK);
  size_t n = 0, cnt = otf_st_count(st);
  otf_st_out *outs = calloc(cnt, sizeof(*outs));
  for(size_t i = 0; i < cnt; i++) {
    const otf_st_tensor *t = otf_st_at(st, i);
    if(drop && strstr(t->name, drop))
      continue;
    otf_st_out *o = &outs[n++];
    o->name = t->name;
    o->dtype = t->dtype;
    o->rank = t->rank;
    memcpy(o->shape, t->shape, sizeof(o->shape));
    o->data = t->data; /* a cut table is a prefix of the original */
    if(pos_rows && strstr(t->name, "position_embeddings"))
      o->shape[1] = pos_rows;
  }
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  ck_assert_int_eq(otf_st_write(path, outs, n, NULL, 0, &e), OTF_OK);
  free(outs);
  otf_st_close(st);
  return dir;
}

static void rm_variant(const char *dir) {
  char path[128];
  snprintf(path, sizeof(path), "%s/config.json", dir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  unlink(path);
  rmdir(dir);
}

static otf_model *open_dir(const char *dir) {
  otf_error e;
  otf_model *m = NULL;
  ck_assert_msg(otf_model_open(&m, dir, 0, &e) == OTF_OK, "%s: %s", dir, e.message);
  return m;
}

/* Models that cannot be paired: other layer counts, other image geometry. */
START_TEST(mismatched_models) {
  otf_model *vit = open_model("vit_s0");
  otf_error e;
  const char *dir = make_variant("vit_s0", "layer.2.", 0, "\"num_hidden_layers\": 3",
                                 "\"num_hidden_layers\": 2");
  otf_model *two = open_dir(dir);
  rm_variant(dir);
  EXPECT(try_collect(vit, two, data(DIGITS), 0, B(Q), &e), OTF_E_INVAL, "3 layers, anchor 2");
  otf_model_close(two);
  /* 4x4 images in 2x2 patches: 4 patches + cls, 5 positions. */
  dir = make_variant("vit_s0", NULL, 5, "\"image_size\": 8", "\"image_size\": 4");
  otf_model *small = open_dir(dir);
  rm_variant(dir);
  EXPECT(try_collect(small, vit, data(DIGITS), 0, B(Q), &e), OTF_E_INVAL, "image_size 4 vs 8");
  /* On its own, the small model refuses 8x8 images. */
  EXPECT(try_collect(small, small, data(DIGITS), 0, B(Q), &e), OTF_E_INVAL, "pixel_values");
  otf_model_close(small);
  otf_model_close(vit);
}
END_TEST

/* Fails the k-th allocation for every k a small collect makes: a clean
 * OTF_E_NOMEM (or OK, for allocations whose failure is survivable), never
 * a crash or a leak (ASan). */
START_TEST(allocation_failures) {
  otf_model *p = open_model("bert_cls_s0"), *a = open_model("bert_cls_wide");
  otf_calib_opts o = {.samples = 10, .seed = 4, .batch = 4, .taps = B(Q) | B(FFN_PRE) | B(POOLED)};
  otf_error e;
  otf_actstats *s = NULL;
  long before = otf_alloc_calls();
  ck_assert_int_eq(otf_actstats_collect(&s, p, a, data(TEXT), &o, NULL, NULL, NULL, &e), OTF_OK);
  long calls = otf_alloc_calls() - before;
  otf_actstats_free(s);
  ck_assert_int_gt(calls, 3);
  int nomem = 0;
  for(long k = 1; k <= calls + 1; k++) {
    s = NULL;
    otf_alloc_fail_at(k);
    otf_status rc = otf_actstats_collect(&s, p, a, data(TEXT), &o, NULL, NULL, NULL, &e);
    otf_alloc_fail_at(0);
    ck_assert_msg(rc == OTF_OK || rc == OTF_E_NOMEM, "k=%ld: %s %s", k, otf_status_name(rc),
                  e.message);
    ck_assert(rc == OTF_OK ? s != NULL : s == NULL);
    nomem += rc == OTF_E_NOMEM;
    otf_actstats_free(s);
  }
  ck_assert_int_gt(nomem, 0);
  otf_model_close(p);
  otf_model_close(a);
}
END_TEST

int main(void) {
  Suite *su = suite_create("actstats");
  TCase *tc = tcase_create("fixtures");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, vit_matches_slow_way);
  tcase_add_test(tc, bert_matches_slow_way_without_padding);
  tcase_add_test(tc, bert_observations_are_kept_tokens);
  tcase_add_test(tc, model_against_itself);
  tcase_add_test(tc, heterogeneous_widths);
  tcase_add_test(tc, seeded_sample_selection);
  tcase_add_test(tc, progress_and_cancel);
  tcase_add_test(tc, input_errors);
  tcase_add_test(tc, mismatched_models);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(su, tc);
  return tu_run_suite(su);
}
