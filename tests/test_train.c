/* Training: gradients of every parameter against PyTorch (float64 golden
 * files from tools/gen_grad_golden.py) for one batch of each trainable
 * fixture architecture; central finite differences on tiny random models
 * (every activation, padding masks, token types, tied MLM decoder); a few
 * AdamW steps against PyTorch's trajectory; the schedule and clipping;
 * determinism; bad inputs and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "fusion/arch.h"
#include "fusion/dataset.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "fusion/train.h"
#include "fusion/train_adamw.h"
#include "fusion/train_ops.h"
#include "tests/support/testutil.h"

/* ---- helpers ---------------------------------------------------------- */

typedef struct loaded {
  otf_model *m;
  otf_st_file *f;
  otf_dataset *ds;
  otf_batch b;
  int64_t *labels;
} loaded;

/* Opens model `name` and data file `data`, fills b with samples idx [n]. */
static void load_batch(loaded *L, const char *model_dir, const char *data_path,
                       const size_t *idx, size_t n) {
  otf_error err;
  memset(L, 0, sizeof(*L));
  ck_assert_msg(otf_model_open(&L->m, model_dir, 0, &err) == OTF_OK, "%s", err.message);
  ck_assert_msg(otf_st_open(&L->f, data_path, &err) == OTF_OK, "%s", err.message);
  const otf_model_config *cfg = otf_model_cfg(L->m);
  int mlm = !strcmp(cfg->architecture, "BertForMaskedLM");
  otf_dataset_opts o = {&cfg, NULL, 1, NULL, mlm ? OTF_DATASET_LABELS_MLM : OTF_DATASET_LABELS_CLS};
  ck_assert_msg(otf_dataset_open(&L->ds, L->f, &o, &err) == OTF_OK, "%s", err.message);
  ck_assert(otf_dataset_reserve(L->ds, n, &err) == OTF_OK);
  ck_assert(otf_dataset_fill(L->ds, &L->b, idx, n, &err) == OTF_OK);
  size_t per = mlm ? otf_dataset_seq(L->ds) : 1;
  L->labels = malloc(n * per * sizeof(int64_t));
  for(size_t i = 0; i < n; i++)
    for(size_t j = 0; j < per; j++)
      L->labels[i * per + j] = otf_dataset_label(L->ds, idx[i] * per + j);
}

static void unload(loaded *L) {
  free(L->labels);
  otf_dataset_destroy(L->ds);
  otf_st_close(L->f);
  otf_model_close(L->m);
}

static const char *golden_path(const char *name) {
  static char p[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof(p[k]), "%s/golden/%s.safetensors", tu_data_dir(), name);
  return p[k];
}

/* Element-wise |got - want| <= atol + rtol |want|; prints the worst. */
static int close_f(const char *what, const float *got, const float *want, size_t n, double atol,
                   double rtol, double *max_rel_out) {
  size_t bad = 0, first = 0;
  double worst = 0.0, max_rel = 0.0;
  for(size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    double lim = atol + rtol * fabs((double)want[i]);
    if(fabs((double)want[i]) > 1e-6 && d / fabs((double)want[i]) > max_rel)
      max_rel = d / fabs((double)want[i]);
    if(!(d <= lim)) {
      if(!bad)
        first = i;
      bad++;
    }
    if(d > worst)
      worst = d;
  }
  if(max_rel_out && max_rel > *max_rel_out)
    *max_rel_out = max_rel;
  if(bad)
    printf("%s: %zu of %zu outside; first [%zu] got %.9g want %.9g; max |diff| %.3g\n", what,
           bad, n, first, (double)got[first], (double)want[first], worst);
  return bad == 0;
}

/* ---- golden gradients ------------------------------------------------- */

static void check_golden_grads(const char *model, const char *data) {
  otf_error err;
  otf_st_file *g = NULL;
  ck_assert_msg(otf_st_open(&g, golden_path(model[0] ? model : ""), &err) == OTF_OK, "%s",
                err.message);
  const otf_st_tensor *ti = otf_st_find(g, "index"), *tl = otf_st_find(g, "loss");
  ck_assert(ti && tl && ti->dtype == OTF_DT_I64);
  size_t n = (size_t)ti->numel;
  size_t *idx = malloc(n * sizeof(size_t));
  for(size_t i = 0; i < n; i++) {
    int64_t v;
    memcpy(&v, (const char *)ti->data + 8 * i, 8);
    idx[i] = (size_t)v;
  }
  double want_loss;
  ck_assert(otf_st_read_f64(&want_loss, tl, &err) == OTF_OK);
  loaded L;
  load_batch(&L, tu_model_path(model + 5), tu_eval_path(data), idx, n);
  otf_train *t = NULL;
  ck_assert_msg(otf_train_create(&t, L.m, n, L.b.seq ? L.b.seq : 1, &err) == OTF_OK, "%s",
                err.message);
  otf_train_stats st;
  ck_assert_msg(otf_train_step(t, &L.b, L.labels, 1, &st, &err) == OTF_OK, "%s", err.message);
  ck_assert_msg(fabs(st.loss - want_loss) <= 1e-5 * want_loss + 1e-7, "loss %.9g want %.9g",
                st.loss, want_loss);
  /* every stored gradient has a parameter and vice versa */
  size_t ngrad = 0, bad = 0;
  double max_rel = 0.0;
  for(size_t i = 0; i < otf_st_count(g); i++) {
    const otf_st_tensor *gt = otf_st_at(g, i);
    if(strncmp(gt->name, "grad.", 5))
      continue;
    ngrad++;
    const otf_train_param *p = otf_train_param_find(t, gt->name + 5);
    ck_assert_msg(p, "no parameter %s", gt->name + 5);
    ck_assert_uint_eq(p->numel, gt->numel);
    float *want = malloc(p->numel * sizeof(float));
    ck_assert(otf_st_read_f32(want, gt, &err) == OTF_OK);
    bad += !close_f(gt->name, otf_train_grads(t) + p->offset, want, p->numel, 1e-6, 1e-4,
                    &max_rel);
    free(want);
  }
  printf("%s: %zu gradients, loss %.7f (torch %.7f), max relative difference %.2e "
         "(elements above 1e-6)\n",
         model + 5, ngrad, st.loss, want_loss, max_rel);
  ck_assert_uint_eq(ngrad, otf_train_param_count(t));
  ck_assert_uint_eq(bad, 0);
  otf_train_destroy(t);
  unload(&L);
  otf_st_close(g);
  free(idx);
}

START_TEST(golden_vit) { check_golden_grads("grad_vit_narrow", "digits_eval.safetensors"); }
END_TEST
START_TEST(golden_bert_cls) {
  check_golden_grads("grad_bert_cls_narrow", "text_cls_eval.safetensors");
}
END_TEST
START_TEST(golden_bert_mlm) {
  check_golden_grads("grad_bert_mlm_s0", "text_mlm_eval.safetensors");
}
END_TEST


/* ---- finite differences on tiny random models -------------------------- */

/* Writes a random model of the given config text into dir (every required
 * tensor of the architecture table; weights ~ N(0, sd), LayerNorm gains
 * around 1). */
static void write_random_model(const char *dir, const char *cfg_text, uint64_t seed, double sd) {
  otf_error err;
  otf_model_config cfg;
  ck_assert_msg(otf_model_config_parse(&cfg, cfg_text, strlen(cfg_text), &err) == OTF_OK, "%s",
                err.message);
  const otf_arch *a = otf_arch_find(cfg.architecture);
  ck_assert(a);
  mkdir(dir, 0755);
  char p[1024];
  snprintf(p, sizeof(p), "%s/config.json", dir);
  FILE *f = fopen(p, "w");
  ck_assert(f);
  fputs(cfg_text, f);
  fclose(f);
  otf_st_out outs[256];
  float *bufs[256];
  char names[256][128];
  size_t k = 0;
  tu_rng r = {seed};
  const otf_tensor_spec *groups[3] = {a->pre, a->layer, a->post};
  size_t counts[3] = {a->n_pre, a->n_layer, a->n_post};
  for(int gi = 0; gi < 3; gi++)
    for(int L = 0; L < (gi == 1 ? cfg.num_layers : 1); L++)
      for(size_t i = 0; i < counts[gi]; i++) {
        const otf_tensor_spec *s = &groups[gi][i];
        if(s->role == OTF_ROLE_MERGE || s->role == OTF_ROLE_BUFFER ||
           (s->flags & (OTF_TF_TIED | OTF_TF_OPTIONAL)))
          continue;
        uint64_t shape[OTF_MAX_TENSOR_RANK];
        int rank;
        otf_arch_shape(s, &cfg, shape, &rank);
        size_t numel = 1;
        for(int d = 0; d < rank; d++)
          numel *= (size_t)shape[d];
        ck_assert(k < 256);
        bufs[k] = malloc(numel * sizeof(float));
        int norm_w = s->role == OTF_ROLE_NORM_W;
        for(size_t e = 0; e < numel; e++)
          bufs[k][e] = (float)((norm_w ? 1.0 : 0.0) + (norm_w ? 0.2 : sd) * tu_normal(&r));
        otf_arch_name(names[k], sizeof(names[k]), s, gi == 1 ? L : -1, 0);
        outs[k].name = names[k];
        outs[k].dtype = OTF_DT_F32;
        outs[k].rank = rank;
        memcpy(outs[k].shape, shape, sizeof(shape));
        outs[k].data = bufs[k];
        k++;
      }
  snprintf(p, sizeof(p), "%s/model.safetensors", dir);
  ck_assert_msg(otf_st_write(p, outs, k, NULL, 0, &err) == OTF_OK, "%s", err.message);
  for(size_t i = 0; i < k; i++)
    free(bufs[i]);
  otf_model_config_free(&cfg);
}

static const char *vit_cfg_fmt =
    "{\"architectures\": [\"ViTForImageClassification\"], \"model_type\": \"vit\","
    " \"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 2, \"image_size\": 4, \"patch_size\": 2, \"num_channels\": 2,"
    " \"hidden_act\": \"%s\", \"layer_norm_eps\": 1e-12, \"qkv_bias\": true,"
    " \"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}}";
static const char *bert_cfg_fmt =
    "{\"architectures\": [\"%s\"], \"model_type\": \"bert\", \"vocab_size\": 11,"
    " \"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 2, \"max_position_embeddings\": 8, \"type_vocab_size\": 2,"
    " \"hidden_act\": \"%s\", \"layer_norm_eps\": 1e-12, \"pad_token_id\": 0,"
    " \"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}}";

/* Central differences of the loss against the analytic gradient for a few
 * elements of every parameter. */
static void fd_check(const char *what, const char *cfg_text, uint64_t seed) {
  otf_error err;
  char dir[1024];
  snprintf(dir, sizeof(dir), "%s/%s", tu_scratch(), what);
  write_random_model(dir, cfg_text, seed, 0.5);
  otf_model *m = NULL;
  ck_assert_msg(otf_model_open(&m, dir, 0, &err) == OTF_OK, "%s", err.message);
  const otf_model_config *cfg = otf_model_cfg(m);
  const size_t n = 3, T = 6;
  int vit = cfg->family == OTF_FAMILY_VIT;
  int mlm = !strcmp(cfg->architecture, "BertForMaskedLM");
  tu_rng r = {seed * 7 + 1};
  float pix[3 * 2 * 4 * 4];
  int64_t ids[3 * 6], mask[3 * 6], types[3 * 6], labels[3 * 6];
  for(size_t i = 0; i < sizeof(pix) / sizeof(pix[0]); i++)
    pix[i] = (float)tu_normal(&r);
  for(size_t s = 0; s < n; s++) {
    size_t len = T - s; /* 6, 5, 4 real tokens: padding masks in play */
    for(size_t j = 0; j < T; j++) {
      size_t q = s * T + j;
      ids[q] = j < len ? 1 + (int64_t)(tu_next(&r) % 10) : 0;
      mask[q] = j < len;
      types[q] = j < len && j >= 3;
      labels[q] = j < len && (j % 2 == 1) ? (int64_t)(tu_next(&r) % 11) : -100;
    }
    if(!mlm)
      labels[s] = (int64_t)(s % 3);
  }
  otf_batch b = {0};
  b.n = n;
  if(vit) {
    b.pixel_values = pix;
  } else {
    b.seq = T;
    b.input_ids = ids;
    b.attention_mask = mask;
    b.token_type_ids = types;
  }
  otf_train *t = NULL;
  ck_assert_msg(otf_train_create(&t, m, n, T, &err) == OTF_OK, "%s", err.message);
  otf_train_stats st;
  ck_assert(otf_train_step(t, &b, labels, 1, &st, &err) == OTF_OK);
  ck_assert(st.loss > 0.05);
  float *P = otf_train_params(t), *G = otf_train_grads(t);
  size_t nel = otf_train_numel(t);
  float *g = malloc(nel * sizeof(float));
  memcpy(g, G, nel * sizeof(float));
  size_t checked = 0, bad = 0;
  double worst = 0.0;
  for(size_t i = 0; i < otf_train_param_count(t); i++) {
    const otf_train_param *p = otf_train_param_at(t, i);
    for(int e = 0; e < 4; e++) {
      size_t k = (size_t)(tu_next(&r) % p->numel);
      if(p->slot == OTF_SLOT_WORD_EMBED && k / (size_t)cfg->hidden_size == 0)
        k += (size_t)cfg->hidden_size; /* the padding row: torch zeroes its gradient */
      float *x = P + p->offset + k, keep = *x;
      const double h = 3e-3;
      otf_train_stats sp, sm;
      *x = (float)(keep + h);
      ck_assert(otf_train_step(t, &b, labels, 0, &sp, &err) == OTF_OK);
      *x = (float)(keep - h);
      ck_assert(otf_train_step(t, &b, labels, 0, &sm, &err) == OTF_OK);
      *x = keep;
      double fd = (sp.loss - sm.loss) / (2 * h), an = g[p->offset + k];
      double d = fabs(fd - an);
      if(d > worst)
        worst = d;
      if(d > 5e-4 + 2e-2 * fabs(fd)) {
        if(bad < 5)
          printf("%s: %s[%zu] finite difference %.6g, backward %.6g\n", what, p->name, k, fd, an);
        bad++;
      }
      checked++;
    }
  }
  printf("%s: %zu elements of %zu tensors by central differences, max |diff| %.2e, loss %.4f\n",
         what, checked, otf_train_param_count(t), worst, st.loss);
  ck_assert_uint_eq(bad, 0);
  free(g);
  otf_train_destroy(t);
  otf_model_close(m);
}

START_TEST(fd_vit_activations) {
  static const char *acts[] = {"gelu", "gelu_new", "relu", "silu", "quick_gelu"};
  char text[1024], what[64];
  for(size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
    snprintf(text, sizeof(text), vit_cfg_fmt, acts[i]);
    snprintf(what, sizeof(what), "vit_%s", acts[i]);
    fd_check(what, text, 11 + i);
  }
}
END_TEST

START_TEST(fd_bert) {
  char text[1024];
  snprintf(text, sizeof(text), bert_cfg_fmt, "BertForSequenceClassification", "gelu_new");
  fd_check("bert_cls", text, 21);
  snprintf(text, sizeof(text), bert_cfg_fmt, "BertForMaskedLM", "gelu");
  fd_check("bert_mlm", text, 22);
}
END_TEST

/* ---- AdamW trajectory ---------------------------------------------------- */

START_TEST(adamw_trajectory) {
  otf_error err;
  otf_st_file *g = NULL;
  ck_assert(otf_st_open(&g, golden_path("grad_traj_vit_narrow"), &err) == OTF_OK);
  double hp[6], want_loss[16], want_norm[16], want_lr[16];
  ck_assert(otf_st_read_f64(hp, otf_st_find(g, "hp"), &err) == OTF_OK);
  const otf_st_tensor *tl = otf_st_find(g, "loss");
  size_t steps = (size_t)tl->numel, B = (size_t)hp[4];
  ck_assert(steps <= 16);
  ck_assert(otf_st_read_f64(want_loss, tl, &err) == OTF_OK);
  ck_assert(otf_st_read_f64(want_norm, otf_st_find(g, "grad_norm"), &err) == OTF_OK);
  ck_assert(otf_st_read_f64(want_lr, otf_st_find(g, "lr"), &err) == OTF_OK);
  size_t idx[256];
  for(size_t i = 0; i < steps * B; i++)
    idx[i] = i;
  loaded L;
  load_batch(&L, tu_model_path("vit_narrow"), tu_eval_path("digits_train.safetensors"), idx,
             steps * B);
  otf_train *t = NULL;
  ck_assert(otf_train_create(&t, L.m, B, 1, &err) == OTF_OK);
  otf_adamw_group groups[128];
  size_t ng = otf_train_param_count(t);
  ck_assert(ng <= 128);
  for(size_t i = 0; i < ng; i++) {
    const otf_train_param *p = otf_train_param_at(t, i);
    groups[i] = (otf_adamw_group){p->offset, p->numel, p->decay};
  }
  otf_adamw_opts ao;
  otf_adamw_opts_default(&ao);
  ao.lr = hp[0];
  ao.weight_decay = hp[1];
  otf_adamw *opt = NULL;
  ck_assert(otf_adamw_create(&opt, otf_train_numel(t), groups, ng, &ao, &err) == OTF_OK);
  const size_t per = 1 * 8 * 8;
  for(size_t s = 0; s < steps; s++) {
    otf_batch b = L.b;
    b.n = B;
    b.pixel_values = L.b.pixel_values + s * B * per;
    otf_train_stats st;
    ck_assert(otf_train_step(t, &b, L.labels + s * B, 1, &st, &err) == OTF_OK);
    double norm = otf_clip_grad_norm(otf_train_grads(t), otf_train_numel(t), hp[3]);
    double lr = otf_lr_schedule(s, (uint64_t)hp[5], hp[0], hp[2]);
    printf("step %zu: loss %.7f (torch %.7f) grad norm %.6f (torch %.6f) lr %.6g\n", s,
           st.loss, want_loss[s], norm, want_norm[s], lr);
    ck_assert_msg(fabs(lr - want_lr[s]) <= 1e-12 * want_lr[s], "lr %g want %g", lr, want_lr[s]);
    ck_assert(fabs(st.loss - want_loss[s]) <= 1e-4 * want_loss[s] + 1e-6);
    ck_assert(fabs(norm - want_norm[s]) <= 1e-4 * want_norm[s]);
    otf_adamw_step(opt, otf_train_params(t), otf_train_grads(t), lr);
  }
  ck_assert_uint_eq(otf_adamw_steps(opt), steps);
  size_t bad = 0, np = 0, nkb = 0;
  double max_rel = 0.0;
  for(size_t i = 0; i < otf_st_count(g); i++) {
    const otf_st_tensor *gt = otf_st_at(g, i);
    if(strncmp(gt->name, "param.", 6))
      continue;
    const otf_train_param *p = otf_train_param_find(t, gt->name + 6);
    ck_assert_msg(p, "no parameter %s", gt->name + 6);
    float *want = malloc(p->numel * sizeof(float));
    ck_assert(otf_st_read_f32(want, gt, &err) == OTF_OK);
    /* Adam moves each element by about lr per step whatever the gradient's
     * size, so an element whose gradient is float noise can differ by a
     * fraction of lr: 1e-5 absolute is 1 % of lr = 1e-3. */
    if(strstr(gt->name, "attention.key.bias")) {
      /* The key bias adds q.b_k to every score of a query row, which the
       * softmax cancels: its true gradient is exactly 0, both sides hold
       * rounding noise (1e-9 here, 1e-17 in float64), and Adam turns any
       * noise into steps of about lr. Only the bound can be checked. */
      for(size_t e = 0; e < p->numel; e++)
        ck_assert(fabs((double)otf_train_params(t)[p->offset + e] - want[e]) <=
                  2.0 * (double)steps * hp[0] * 1.01);
      nkb++;
    } else {
      bad += !close_f(gt->name, otf_train_params(t) + p->offset, want, p->numel, 1e-5, 1e-4,
                      &max_rel);
    }
    np++;
    free(want);
  }
  printf("trajectory: %zu parameter tensors after %zu steps match (%zu key biases bounded)\n",
         np - nkb, steps, nkb);
  ck_assert_uint_eq(np, otf_train_param_count(t));
  ck_assert_uint_eq(nkb, 3);
  ck_assert_uint_eq(bad, 0);
  otf_adamw_destroy(opt);
  otf_train_destroy(t);
  unload(&L);
  otf_st_close(g);
}
END_TEST

START_TEST(schedule_and_clipping) {
  /* warm-up 0.1 of 100 steps: w = 10 */
  ck_assert(fabs(otf_lr_schedule(0, 100, 1.0, 0.1) - 0.1) < 1e-15);
  ck_assert(fabs(otf_lr_schedule(9, 100, 1.0, 0.1) - 1.0) < 1e-15);
  ck_assert(fabs(otf_lr_schedule(10, 100, 1.0, 0.1) - 1.0) < 1e-15);
  ck_assert(fabs(otf_lr_schedule(55, 100, 1.0, 0.1) - 0.5) < 1e-12);
  ck_assert(otf_lr_schedule(99, 100, 1.0, 0.1) < 1e-3);
  ck_assert(fabs(otf_lr_schedule(0, 5, 2.0, 0.0) - 2.0) < 1e-15); /* w = 1 at least */
  float g[4] = {3, 4, 0, 0};
  ck_assert(fabs(otf_clip_grad_norm(g, 4, 10.0) - 5.0) < 1e-12);
  ck_assert(g[0] == 3.0f && g[1] == 4.0f); /* under the limit: unchanged */
  ck_assert(fabs(otf_clip_grad_norm(g, 4, 1.0) - 5.0) < 1e-12);
  ck_assert(fabs(g[0] - 0.6) < 1e-6 && fabs(g[1] - 0.8) < 1e-6);
  ck_assert(fabs(otf_clip_grad_norm(g, 4, 0.0) - 1.0) < 1e-6); /* off */
  /* one AdamW step from zero state moves each element by lr (bias-corrected
   * m / sqrt(v) = sign), decayed elements first shrink by lr * wd */
  otf_adamw_group grp[2] = {{0, 2, 1}, {2, 2, 0}};
  otf_adamw_opts o;
  otf_adamw_opts_default(&o);
  o.weight_decay = 0.5;
  otf_adamw *a = NULL;
  otf_error err;
  ck_assert(otf_adamw_create(&a, 4, grp, 2, &o, &err) == OTF_OK);
  float p[4] = {1, 1, 1, 1}, gr[4] = {0.5f, -2.0f, 0.5f, -2.0f};
  otf_adamw_step(a, p, gr, 0.1);
  ck_assert(fabs(p[0] - (0.95 - 0.1)) < 1e-6 && fabs(p[1] - (0.95 + 0.1)) < 1e-6);
  ck_assert(fabs(p[2] - 0.9) < 1e-6 && fabs(p[3] - 1.1) < 1e-6);
  otf_adamw_destroy(a);
  otf_adamw_group out[1] = {{3, 2, 0}};
  ck_assert(otf_adamw_create(&a, 4, out, 1, &o, &err) == OTF_E_INVAL);
  o.beta1 = 1.0;
  ck_assert(otf_adamw_create(&a, 4, grp, 2, &o, &err) == OTF_E_INVAL);
}
END_TEST

/* ---- determinism, bad inputs, allocation failures ----------------------- */

START_TEST(deterministic_and_bad_inputs) {
  otf_error err;
  size_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  loaded L;
  load_batch(&L, tu_model_path("bert_cls_narrow"), tu_eval_path("text_cls_eval.safetensors"), idx,
             8);
  otf_train *t = NULL;
  ck_assert(otf_train_create(&t, L.m, 8, L.b.seq, &err) == OTF_OK);
  otf_train_stats st;
  ck_assert(otf_train_step(t, &L.b, L.labels, 1, &st, &err) == OTF_OK);
  size_t nel = otf_train_numel(t);
  float *g1 = malloc(nel * sizeof(float));
  memcpy(g1, otf_train_grads(t), nel * sizeof(float));
  ck_assert(otf_train_step(t, &L.b, L.labels, 1, &st, &err) == OTF_OK);
  ck_assert(memcmp(g1, otf_train_grads(t), nel * sizeof(float)) == 0);
  /* a forward-only step leaves the gradients alone */
  otf_batch b4 = L.b;
  b4.n = 4;
  ck_assert(otf_train_step(t, &b4, L.labels, 0, &st, &err) == OTF_OK);
  ck_assert(memcmp(g1, otf_train_grads(t), nel * sizeof(float)) == 0);
  free(g1);
  /* labels out of range, batch over the plan, ids out of range */
  int64_t bad_labels[8] = {0, 1, 2, 3, 4, 0, 0, 0};
  ck_assert(otf_train_step(t, &L.b, bad_labels, 1, &st, &err) == OTF_E_INVAL);
  ck_assert_str_eq(err.pointer, "labels");
  ck_assert(otf_train_step(t, &L.b, NULL, 1, &st, &err) == OTF_E_INVAL);
  otf_batch big = L.b;
  big.n = 9;
  ck_assert(otf_train_step(t, &big, L.labels, 1, &st, &err) == OTF_E_INVAL);
  int64_t ids[8 * 32];
  memcpy(ids, L.b.input_ids, 8 * L.b.seq * sizeof(int64_t));
  ids[5] = 64;
  otf_batch bid = L.b;
  bid.input_ids = ids;
  ck_assert(otf_train_step(t, &bid, L.labels, 1, &st, &err) == OTF_E_INVAL);
  ck_assert_str_eq(err.pointer, "input_ids");
  otf_train_destroy(t);
  unload(&L);
  /* models without a training head */
  otf_model *m = NULL;
  ck_assert(otf_model_open(&m, tu_model_path("vit_model_s0"), 0, &err) == OTF_OK);
  ck_assert(otf_train_create(&t, m, 4, 1, &err) == OTF_E_UNSUPPORTED);
  ck_assert(t == NULL);
  ck_assert(otf_train_create(&t, m, 0, 1, &err) != OTF_OK);
  otf_model_close(m);
}
END_TEST

START_TEST(allocation_failures) {
  otf_error err;
  otf_model *m = NULL;
  ck_assert(otf_model_open(&m, tu_model_path("bert_mlm_s0"), 0, &err) == OTF_OK);
  int failed = 0;
  for(long k = 1; k < 200; k++) {
    otf_train *t = NULL;
    otf_alloc_fail_at(k);
    otf_status rc = otf_train_create(&t, m, 4, 20, &err);
    otf_alloc_fail_at(0);
    if(rc == OTF_OK) {
      otf_train_destroy(t);
      break;
    }
    ck_assert_int_eq(rc, OTF_E_NOMEM);
    ck_assert(t == NULL);
    failed++;
  }
  ck_assert(failed >= 5);
  otf_model_close(m);
}
END_TEST


/* ---- activation kernels against their libm references ------------------ */

START_TEST(activations_match_libm) {
  static const otf_act acts[] = {OTF_ACT_GELU, OTF_ACT_GELU_TANH, OTF_ACT_RELU, OTF_ACT_SILU,
                                 OTF_ACT_QUICK_GELU};
  enum { N = 24001 };
  static float x[N], y[N], d[N], yr[N], dr[N];
  for(int i = 0; i < N; i++)
    x[i] = -12.0f + 0.001f * (float)i;
  for(size_t a = 0; a < sizeof(acts) / sizeof(acts[0]); a++) {
    otf__act_fwd(acts[a], y, d, x, N);
    otf__act_ref(acts[a], yr, dr, x, N);
    double ey = 0.0, ed = 0.0;
    for(int i = 0; i < N; i++) {
      /* error relative to 1 + |reference|: relative for large values,
       * absolute near 0 (GELU's derivative crosses 0 at x = -0.75 by
       * cancellation of two O(0.3) terms) */
      double e1 = fabs((double)y[i] - yr[i]) / (1.0 + fabs((double)yr[i]));
      double e2 = fabs((double)d[i] - dr[i]) / (1.0 + fabs((double)dr[i]));
      ey = e1 > ey ? e1 : ey;
      ed = e2 > ed ? e2 : ed;
    }
    printf("activation %s: max error value %.2e, derivative %.2e (relative to 1 + |ref|)\n",
           otf_act_name(acts[a]), ey, ed);
    ck_assert(ey < 1e-6 && ed < 1e-6);
    /* y may alias x; dydx optional */
    memcpy(yr, x, sizeof(x));
    otf__act_fwd(acts[a], yr, NULL, yr, N);
    ck_assert(memcmp(yr, y, sizeof(y)) == 0);
  }
}
END_TEST

int main(void) {
  Suite *su = suite_create("train");
  TCase *tc = tcase_create("train");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, golden_vit);
  tcase_add_test(tc, golden_bert_cls);
  tcase_add_test(tc, golden_bert_mlm);
  tcase_add_test(tc, adamw_trajectory);
  tcase_add_test(tc, schedule_and_clipping);
  tcase_add_test(tc, activations_match_libm);
  tcase_add_test(tc, deterministic_and_bad_inputs);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(su, tc);
  TCase *fd = tcase_create("finite_differences");
  tcase_set_timeout(fd, 120);
  tcase_add_unchecked_fixture(fd, tu_scratch_setup, tu_scratch_teardown);
  tcase_add_test(fd, fd_vit_activations);
  tcase_add_test(fd, fd_bert);
  suite_add_tcase(su, fd);
  return tu_run_suite(su);
}
