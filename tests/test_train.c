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

int main(void) {
  Suite *su = suite_create("train");
  TCase *tc = tcase_create("train");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, golden_vit);
  tcase_add_test(tc, golden_bert_cls);
  tcase_add_test(tc, golden_bert_mlm);
  suite_add_tcase(su, tc);
  return tu_run_suite(su);
}
