/* tu_permute_model (tests/support/permute.c): for every committed fixture
 * model, the permuted copy opens, computes the same function (logits, or
 * for base models the last hidden state and pooler output mapped back by
 * the recorded permutations) on the first 32 eval samples, and really is
 * permuted (the weights changed, exactly where the enabled parts say, and
 * the record matches the weights). A negative control (K with a different
 * within-head order than Q) must change the outputs, and the same seed must
 * give the same bytes. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusion/dataset.h"
#include "fusion/forward.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/permute.h"
#include "tests/support/testutil.h"

#define NSAMPLES 32
#define SEED 20240611u

/* ---- fixtures --------------------------------------------------------- */

#define MAX_FIXTURES 64
static char fixture_names[MAX_FIXTURES][64];
static int n_fixtures;

static void find_fixtures(void) {
  n_fixtures = tu_fixture_models(fixture_names, MAX_FIXTURES, 0);
}

static void fixture_dir(char *buf, size_t cap, int i) {
  snprintf(buf, cap, "%s/models/%s", tu_data_dir(), fixture_names[i]);
}

/* ---- scratch folders ---------------------------------------------------- */

typedef struct scratch {
  char root[64];
  char dst[128];
} scratch;

static void scratch_make(scratch *s, const char *leaf) {
  snprintf(s->root, sizeof(s->root), "/tmp/otf_permute_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(s->root));
  snprintf(s->dst, sizeof(s->dst), "%s/%s", s->root, leaf);
}

static void remove_dir(const char *dir) {
  static const char *const files[] = {"config.json", "model.safetensors"};
  char p[256];
  for(size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
    snprintf(p, sizeof(p), "%s/%s", dir, files[k]);
    unlink(p);
  }
  rmdir(dir);
}

static void scratch_drop(scratch *s) {
  remove_dir(s->dst);
  rmdir(s->root);
}

/* ---- eval inputs --------------------------------------------------------- */

static const char *eval_file(const otf_model_config *cfg) {
  if(cfg->family == OTF_FAMILY_VIT)
    return "digits_eval.safetensors";
  return strcmp(cfg->architecture, "BertForMaskedLM") ? "text_cls_eval.safetensors"
                                                      : "text_mlm_eval.safetensors";
}

/* ---- running a model ------------------------------------------------------ */

/* What one model computes on the batch: logits for models with a head,
 * the FINAL and POOLED taps for base models. */
typedef struct outputs {
  float *logits;
  size_t nlogits;
  float *final, *pooled;
  size_t final_rows, pooled_rows, cols;
} outputs;

static otf_status keep_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                           size_t cols) {
  outputs *o = ctx;
  (void)layer;
  float **dst = tap == OTF_TAP_FINAL ? &o->final : tap == OTF_TAP_POOLED ? &o->pooled : NULL;
  if(!dst)
    return OTF_OK;
  free(*dst);
  *dst = malloc(rows * cols * sizeof(float));
  memcpy(*dst, x, rows * cols * sizeof(float));
  *(tap == OTF_TAP_FINAL ? &o->final_rows : &o->pooled_rows) = rows;
  o->cols = cols;
  return OTF_OK;
}

static void outputs_free(outputs *o) {
  free(o->logits);
  free(o->final);
  free(o->pooled);
  memset(o, 0, sizeof(*o));
}

static void run_model(outputs *o, const char *dir) {
  otf_error e;
  otf_model *m = NULL;
  otf_weights w;
  otf_forward *f = NULL;
  otf_batch b;
  otf_st_file *df = NULL;
  otf_dataset *ds = NULL;
  memset(o, 0, sizeof(*o));
  ck_assert_msg(otf_model_open(&m, dir, 0, &e) == OTF_OK, "%s: %s", dir, e.message);
  ck_assert_msg(otf_weights_load(&w, m, &e) == OTF_OK, "%s: %s", dir, e.message);
  const otf_model_config *cfg = otf_model_cfg(m);
  /* The first NSAMPLES samples of the matching eval file. */
  ck_assert_msg(otf_st_open(&df, tu_eval_path(eval_file(cfg)), &e) == OTF_OK, "%s", e.message);
  const otf_model_config *cfgs[1] = {cfg};
  otf_dataset_opts dop = {.cfgs = cfgs, .ncfg = 1};
  ck_assert_msg(otf_dataset_open(&ds, df, &dop, &e) == OTF_OK, "%s", e.message);
  ck_assert_int_eq(otf_dataset_reserve(ds, NSAMPLES, &e), OTF_OK);
  ck_assert_int_eq(otf_dataset_fill_range(ds, &b, 0, NSAMPLES, &e), OTF_OK);
  ck_assert_msg(otf_forward_create(&f, &w, cfg, otf_model_arch(m), NSAMPLES,
                                   b.seq ? b.seq : 1, &e) == OTF_OK, "%s", e.message);
  o->nlogits = otf_forward_logits_len(f, &b);
  if(o->nlogits) {
    o->logits = malloc(o->nlogits * sizeof(float));
    ck_assert_msg(otf_forward_run(f, &b, o->logits, 0, NULL, NULL, &e) == OTF_OK, "%s",
                  e.message);
  } else {
    ck_assert_msg(otf_forward_run(f, &b, NULL,
                                  OTF_TAP_BIT(OTF_TAP_FINAL) | OTF_TAP_BIT(OTF_TAP_POOLED),
                                  keep_tap, o, &e) == OTF_OK, "%s", e.message);
    ck_assert_ptr_nonnull(o->final);
  }
  otf_forward_destroy(f);
  otf_dataset_destroy(ds);
  otf_st_close(df);
  otf_weights_free(&w);
  otf_model_close(m);
}

/* Largest |output| of a model (the scale the equivalence tolerance is
 * relative to). */
static double output_scale(const outputs *o) {
  double m = 0.0;
  for(size_t i = 0; i < o->nlogits; i++)
    m = fmax(m, fabs((double)o->logits[i]));
  for(size_t i = 0; o->final && i < o->final_rows * o->cols; i++)
    m = fmax(m, fabs((double)o->final[i]));
  for(size_t i = 0; o->pooled && i < o->pooled_rows * o->cols; i++)
    m = fmax(m, fabs((double)o->pooled[i]));
  return m;
}

/* Largest |orig - perm| over the outputs; base models' taps are compared
 * with the copy's column c against the original's column p[c] (pi_R for
 * the last hidden state, pi_P for the pooler output). */
static double output_diff(const outputs *a, const outputs *p, const tu_perm_record *rec) {
  double worst = 0.0;
  ck_assert_uint_eq(a->nlogits, p->nlogits);
  for(size_t i = 0; i < a->nlogits; i++) {
    double d = fabs((double)a->logits[i] - (double)p->logits[i]);
    worst = d > worst || isnan(d) ? d : worst;
  }
  if(a->nlogits)
    return worst;
  ck_assert_uint_eq(a->cols, (size_t)rec->hidden);
  size_t D = a->cols;
  for(size_t r = 0; r < a->final_rows; r++)
    for(size_t c = 0; c < D; c++) {
      double d = fabs((double)a->final[r * D + (size_t)rec->resid[c]] - (double)p->final[r * D + c]);
      worst = d > worst || isnan(d) ? d : worst;
    }
  ck_assert((a->pooled == NULL) == (p->pooled == NULL));
  for(size_t r = 0; a->pooled && r < a->pooled_rows; r++)
    for(size_t c = 0; c < D; c++) {
      double d = fabs((double)a->pooled[r * D + (size_t)rec->pool[c]] - (double)p->pooled[r * D + c]);
      worst = d > worst || isnan(d) ? d : worst;
    }
  return worst;
}

/* ---- weights: changed where they should be, untouched elsewhere ---------- */

/* Whether a space is renumbered under `what`. */
static int space_moves(otf_space sp, unsigned what) {
  switch(sp) {
  case OTF_SP_RESID:
  case OTF_SP_MLM: return (what & TU_PERM_RESID) != 0;
  case OTF_SP_Q:
  case OTF_SP_K:
  case OTF_SP_V:
  case OTF_SP_QKV: return (what & (TU_PERM_HEADS | TU_PERM_WITHIN_HEAD)) != 0;
  case OTF_SP_FFN: return (what & TU_PERM_FFN) != 0;
  case OTF_SP_POOL: return (what & TU_PERM_POOL) != 0;
  default: return 0;
  }
}

typedef struct weight_diff {
  uint64_t total, differ;           /* all parameters */
  uint64_t touched, touched_differ; /* in tensors with a renumbered axis */
  uint64_t untouched_differ;        /* must stay 0 */
  char first_bad[128];
} weight_diff;

static void compare_weights(weight_diff *wd, const char *orig_dir, const char *perm_dir,
                            unsigned what) {
  otf_error e;
  otf_model *a = NULL, *p = NULL;
  memset(wd, 0, sizeof(*wd));
  ck_assert_msg(otf_model_open(&a, orig_dir, 0, &e) == OTF_OK, "%s", e.message);
  ck_assert_msg(otf_model_open(&p, perm_dir, 0, &e) == OTF_OK, "%s", e.message);
  /* The same tensor set: nothing added, nothing dropped. */
  const otf_ckpt *ca = otf_model_ckpt(a), *cp = otf_model_ckpt(p);
  ck_assert_uint_eq(otf_ckpt_count(ca), otf_ckpt_count(cp));
  for(size_t k = 0; k < otf_ckpt_count(ca); k++) {
    const otf_st_tensor *ta = otf_ckpt_at(ca, k), *tp = otf_ckpt_at(cp, k);
    ck_assert_str_eq(ta->name, tp->name);
    ck_assert_int_eq(ta->rank, tp->rank);
    for(int r = 0; r < ta->rank; r++)
      ck_assert_uint_eq(ta->shape[r], tp->shape[r]);
  }
  const otf_arch *arch = otf_model_arch(a);
  int layers = otf_model_cfg(a)->num_layers;
  for(int part = 0; part < 3; part++) {
    const otf_tensor_spec *specs = part == 0 ? arch->pre : part == 1 ? arch->layer : arch->post;
    size_t ns = part == 0 ? arch->n_pre : part == 1 ? arch->n_layer : arch->n_post;
    for(int l = 0; l < (part == 1 ? layers : 1); l++) {
      int lay = part == 1 ? l : -1;
      for(size_t k = 0; k < ns; k++) {
        const otf_tensor_spec *s = &specs[k];
        if(s->role == OTF_ROLE_MERGE || s->role == OTF_ROLE_BUFFER)
          continue;
        const otf_st_tensor *ta = otf_model_tensor(a, s, lay), *tp = otf_model_tensor(p, s, lay);
        ck_assert((ta == NULL) == (tp == NULL));
        if(!ta || ((s->flags & OTF_TF_TIED) && !strcmp(ta->name, s->tied_to)))
          continue; /* absent, or the tie (counted once, under its own name) */
        int moves = 0;
        for(int r = 0; r < s->rank; r++)
          moves |= space_moves(s->axes[r], what);
        float *va = malloc((size_t)ta->numel * sizeof(float));
        float *vp = malloc((size_t)tp->numel * sizeof(float));
        ck_assert_uint_eq(ta->numel, tp->numel);
        ck_assert_int_eq(tp->dtype, OTF_DT_F32);
        ck_assert_int_eq(otf_st_read_f32(va, ta, NULL), OTF_OK);
        ck_assert_int_eq(otf_st_read_f32(vp, tp, NULL), OTF_OK);
        uint64_t differ = 0;
        for(uint64_t i = 0; i < ta->numel; i++)
          differ += va[i] != vp[i];
        wd->total += ta->numel;
        wd->differ += differ;
        if(moves) {
          wd->touched += ta->numel;
          wd->touched_differ += differ;
        } else if(differ) {
          if(!wd->untouched_differ)
            snprintf(wd->first_bad, sizeof(wd->first_bad), "%s", ta->name);
          wd->untouched_differ += differ;
        }
        free(va);
        free(vp);
      }
    }
  }
  otf_model_close(p);
  otf_model_close(a);
}

/* The record against the weights: the copy's unit i holds the original's
 * unit p[i] (biases and LayerNorm gains read through the slots). */
static void check_record(const char *orig_dir, const char *perm_dir, const tu_perm_record *rec) {
  otf_error e;
  otf_model *a = NULL, *p = NULL;
  otf_weights wa, wp;
  ck_assert_int_eq(otf_model_open(&a, orig_dir, 0, &e), OTF_OK);
  ck_assert_int_eq(otf_model_open(&p, perm_dir, 0, &e), OTF_OK);
  ck_assert_int_eq(otf_weights_load(&wa, a, &e), OTF_OK);
  ck_assert_int_eq(otf_weights_load(&wp, p, &e), OTF_OK);
  const otf_model_config *cfg = otf_model_cfg(a);
  ck_assert_int_eq(rec->hidden, cfg->hidden_size);
  ck_assert_int_eq(rec->layers, cfg->num_layers);
  ck_assert_int_eq(rec->heads, cfg->num_heads);
  ck_assert_int_eq(rec->head_dim * rec->heads, cfg->hidden_size);
  ck_assert_int_eq(rec->ffn, cfg->intermediate_size);
  int D = rec->hidden, H = rec->heads, hd = rec->head_dim, F = rec->ffn;
  for(int l = 0; l < rec->layers; l++) {
    const float *const *sa = wa.l[l], *const *sp = wp.l[l];
    const int32_t *sig = rec->sigma + l * H, *tqk = rec->tau_qk + l * hd,
                  *tv = rec->tau_v + l * hd, *pf = rec->ffn_perm + l * F;
    for(int i = 0; i < D; i++)
      ck_assert(sp[OTF_SLOT_LN1_W][i] == sa[OTF_SLOT_LN1_W][rec->resid[i]]);
    for(int h = 0; h < H; h++)
      for(int d = 0; d < hd; d++) {
        int i = h * hd + d;
        if(sa[OTF_SLOT_Q_B]) {
          ck_assert(sp[OTF_SLOT_Q_B][i] == sa[OTF_SLOT_Q_B][sig[h] * hd + tqk[d]]);
          ck_assert(sp[OTF_SLOT_K_B][i] == sa[OTF_SLOT_K_B][sig[h] * hd + tqk[d]]);
          ck_assert(sp[OTF_SLOT_V_B][i] == sa[OTF_SLOT_V_B][sig[h] * hd + tv[d]]);
        }
        /* W_O [D, D]: rows by pi_R, columns like V. */
        ck_assert(sp[OTF_SLOT_O_W][i] == sa[OTF_SLOT_O_W][rec->resid[0] * D + sig[h] * hd + tv[d]]);
      }
    for(int i = 0; i < F; i++)
      ck_assert(sp[OTF_SLOT_FC1_B][i] == sa[OTF_SLOT_FC1_B][pf[i]]);
  }
  if(wa.g[OTF_SLOT_POOL_B])
    for(int i = 0; i < D; i++)
      ck_assert(wp.g[OTF_SLOT_POOL_B][i] == wa.g[OTF_SLOT_POOL_B][rec->pool[i]]);
  if(wa.g[OTF_SLOT_MLM_LN_W]) /* MLM follows pi_R (tied decoder) */
    for(int i = 0; i < D; i++)
      ck_assert(wp.g[OTF_SLOT_MLM_LN_W][i] == wa.g[OTF_SLOT_MLM_LN_W][rec->resid[i]]);
  otf_weights_free(&wp);
  otf_weights_free(&wa);
  otf_model_close(p);
  otf_model_close(a);
}

/* Every array a permutation, a derangement when enabled and of size >= 2,
 * the identity when disabled. */
static void check_perm(const int32_t *p, int n, int enabled, const char *what) {
  unsigned char *seen = calloc((size_t)n, 1);
  int fixed = 0;
  for(int i = 0; i < n; i++) {
    ck_assert_msg(p[i] >= 0 && p[i] < n && !seen[p[i]], "%s is not a permutation", what);
    seen[p[i]] = 1;
    fixed += p[i] == i;
  }
  free(seen);
  if(!enabled)
    ck_assert_msg(fixed == n, "%s: disabled but not the identity", what);
  else if(n >= 2)
    ck_assert_msg(fixed == 0, "%s: %d fixed points", what, fixed);
}

static void check_record_shape(const tu_perm_record *r, unsigned what) {
  check_perm(r->resid, r->hidden, (what & TU_PERM_RESID) != 0, "pi_R");
  check_perm(r->pool, r->hidden, (what & TU_PERM_POOL) != 0, "pi_P");
  for(int l = 0; l < r->layers; l++) {
    check_perm(r->sigma + l * r->heads, r->heads, (what & TU_PERM_HEADS) != 0, "sigma");
    check_perm(r->tau_qk + l * r->head_dim, r->head_dim, (what & TU_PERM_WITHIN_HEAD) != 0,
               "tau_qk");
    check_perm(r->tau_v + l * r->head_dim, r->head_dim, (what & TU_PERM_WITHIN_HEAD) != 0,
               "tau_v");
    check_perm(r->ffn_perm + l * r->ffn, r->ffn, (what & TU_PERM_FFN) != 0, "pi_F");
  }
}

/* ---- tests ------------------------------------------------------------------ */

static const unsigned variants[] = {
    TU_PERM_ALL,
    TU_PERM_RESID,
    TU_PERM_HEADS | TU_PERM_WITHIN_HEAD,
    TU_PERM_FFN | TU_PERM_POOL,
};
#define NVARIANTS ((int)(sizeof(variants) / sizeof(variants[0])))

/* Loop index: fixture * NVARIANTS + variant. */
START_TEST(permuted_copy_is_equivalent) {
  int fx = _i / NVARIANTS;
  unsigned what = variants[_i % NVARIANTS];
  char src[1024];
  fixture_dir(src, sizeof(src), fx);
  scratch s;
  scratch_make(&s, "copy");
  tu_perm_record rec;
  otf_error e;
  ck_assert_msg(tu_permute_model(src, s.dst, SEED + (uint64_t)fx, what, &rec, &e) == OTF_OK,
                "%s: %s", fixture_names[fx], e.message);
  check_record_shape(&rec, what);

  outputs oa, op;
  run_model(&oa, src);
  run_model(&op, s.dst);
  double diff = output_diff(&oa, &op, &rec);
  /* Renumbering changes the order of every float sum, so the copy can only
   * match to rounding: 1e-5 absolute for outputs up to 1 in magnitude,
   * relative above that (ViT logits reach ~20, where a float's ulp is
   * 2e-6; -O2 builds stay under 1e-5 absolute, the -O1 sanitizer build
   * reaches 1.5e-5 there). */
  double scale = fmax(1.0, output_scale(&oa)), tol = 1e-5 * scale;

  weight_diff wd;
  compare_weights(&wd, src, s.dst, what);
  double frac = (double)wd.differ / (double)wd.total;
  double tfrac = wd.touched ? (double)wd.touched_differ / (double)wd.touched : 0.0;
  printf("%-16s what=%2u  %s max |diff| %.3g (max |output| %.3g); weights differing %.4f (in "
         "renumbered tensors %.4f)\n",
         fixture_names[fx], what, oa.nlogits ? "logits" : "final/pooled", diff, scale, frac,
         tfrac);
  ck_assert_msg(diff <= tol, "%s what=%u: outputs differ by %g (tolerance %g)",
                fixture_names[fx], what, diff, tol);
  ck_assert_msg(wd.untouched_differ == 0, "%s what=%u: %llu values changed in tensors no "
                "enabled part renumbers (first: %s)", fixture_names[fx], what,
                (unsigned long long)wd.untouched_differ, wd.first_bad);
  ck_assert_msg(tfrac >= 0.9, "%s what=%u: only %.3f of the renumbered tensors' values moved",
                fixture_names[fx], what, tfrac);
  if(what == TU_PERM_ALL || what == TU_PERM_RESID) {
    ck_assert_msg(frac >= 0.9, "%s what=%u: only %.3f of the weights differ", fixture_names[fx],
                  what, frac);
    check_record(src, s.dst, &rec);
  }
  outputs_free(&oa);
  outputs_free(&op);
  tu_perm_record_free(&rec);
  tu_perm_record_free(&rec); /* idempotent */
  scratch_drop(&s);
}
END_TEST

/* Q and K with different within-head orders: every q.k changes, and so
 * does the model's output. Shows the equivalence test can fail. */
START_TEST(mismatched_qk_changes_outputs) {
  char src[1024];
  fixture_dir(src, sizeof(src), _i);
  scratch s;
  scratch_make(&s, "broken");
  tu_perm_record rec;
  otf_error e;
  ck_assert_msg(tu_permute_model(src, s.dst, SEED, TU_PERM_ALL | TU_PERM_BREAK_QK, &rec, &e) ==
                OTF_OK, "%s", e.message);
  outputs oa, op;
  run_model(&oa, src);
  run_model(&op, s.dst);
  double diff = output_diff(&oa, &op, &rec);
  printf("%-16s Q/K within-head mismatch: max |diff| %.3g\n", fixture_names[_i], diff);
  ck_assert_msg(diff > 1e-3, "%s: mismatched Q/K left the outputs unchanged (%g)",
                fixture_names[_i], diff);
  outputs_free(&oa);
  outputs_free(&op);
  tu_perm_record_free(&rec);
  scratch_drop(&s);
}
END_TEST

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  ck_assert_int_ge(n, 0);
  rewind(f);
  unsigned char *buf = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static int same_file(const char *a, const char *b) {
  size_t la, lb;
  unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
  int same = la == lb && !memcmp(x, y, la);
  free(x);
  free(y);
  return same;
}

/* Same seed: the same bytes; another seed: other bytes; config.json a
 * byte copy. Loop index: fixture. */
START_TEST(same_seed_same_bytes) {
  char src[1024], pa[256], pb[256], pc[256], cfg_src[1100], cfg_dst[256];
  fixture_dir(src, sizeof(src), _i);
  scratch s1, s2, s3;
  scratch_make(&s1, "a");
  scratch_make(&s2, "b");
  scratch_make(&s3, "c");
  otf_error e;
  ck_assert_int_eq(tu_permute_model(src, s1.dst, 7, TU_PERM_ALL, NULL, &e), OTF_OK);
  ck_assert_int_eq(tu_permute_model(src, s2.dst, 7, TU_PERM_ALL, NULL, &e), OTF_OK);
  ck_assert_int_eq(tu_permute_model(src, s3.dst, 8, TU_PERM_ALL, NULL, &e), OTF_OK);
  snprintf(pa, sizeof(pa), "%s/model.safetensors", s1.dst);
  snprintf(pb, sizeof(pb), "%s/model.safetensors", s2.dst);
  snprintf(pc, sizeof(pc), "%s/model.safetensors", s3.dst);
  ck_assert_msg(same_file(pa, pb), "%s: same seed, different bytes", fixture_names[_i]);
  ck_assert_msg(!same_file(pa, pc), "%s: different seeds, same bytes", fixture_names[_i]);
  snprintf(cfg_src, sizeof(cfg_src), "%s/config.json", src);
  snprintf(cfg_dst, sizeof(cfg_dst), "%s/config.json", s1.dst);
  ck_assert(same_file(cfg_src, cfg_dst));
  /* Writing over an existing copy is fine and gives the same bytes. */
  ck_assert_int_eq(tu_permute_model(src, s2.dst, 7, TU_PERM_ALL, NULL, &e), OTF_OK);
  ck_assert(same_file(pa, pb));
  scratch_drop(&s1);
  scratch_drop(&s2);
  scratch_drop(&s3);
}
END_TEST

START_TEST(bad_arguments) {
  char src[1024], bogus[1100];
  fixture_dir(src, sizeof(src), 0);
  scratch s;
  scratch_make(&s, "x");
  tu_perm_record rec;
  otf_error e;
  snprintf(bogus, sizeof(bogus), "%s/no-such-model", s.root);
  ck_assert_int_ne(tu_permute_model(bogus, s.dst, 1, TU_PERM_ALL, &rec, &e), OTF_OK);
  ck_assert_ptr_null(rec.resid);
  ck_assert_int_eq(tu_permute_model(src, s.dst, 1, 1u << 10, &rec, &e), OTF_E_INVAL);
  ck_assert_ptr_null(rec.sigma);
  ck_assert_int_eq(tu_permute_model(NULL, s.dst, 1, TU_PERM_ALL, NULL, &e), OTF_E_INVAL);
  /* The destination's parent must exist. */
  snprintf(bogus, sizeof(bogus), "%s/missing/copy", s.root);
  ck_assert_int_eq(tu_permute_model(src, bogus, 1, TU_PERM_ALL, &rec, &e), OTF_E_IO);
  ck_assert_ptr_null(rec.pool);
  struct stat st;
  ck_assert_int_ne(stat(s.dst, &st), 0); /* nothing was written */
  scratch_drop(&s);
}
END_TEST

START_TEST(fixtures_absent) {
  ck_abort_msg("no fixture models under %s/models (run tools/train_fixtures.py?)",
               tu_data_dir());
}
END_TEST

int main(void) {
  Suite *s = suite_create("permute");
  TCase *tc = tcase_create("fixtures");
  tcase_set_timeout(tc, 300);
  find_fixtures();
  if(n_fixtures == 0) {
    tcase_add_test(tc, fixtures_absent);
  } else {
    tcase_add_loop_test(tc, permuted_copy_is_equivalent, 0, n_fixtures * NVARIANTS);
    tcase_add_loop_test(tc, mismatched_qk_changes_outputs, 0, n_fixtures);
    tcase_add_loop_test(tc, same_seed_same_bytes, 0, n_fixtures);
    tcase_add_test(tc, bad_arguments);
  }
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
