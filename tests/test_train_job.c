/* The finetuning job (otf_finetune_dir): a one-shot OT fusion of two ViT
 * fixtures recovers most of the parents' accuracy after one epoch; the
 * saved folder reopens and scores what the job reported; masked-LM
 * finetuning keeps the decoder tied; callbacks; determinism for a seed;
 * cancellation and bad options leave no output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/alloc.h"
#include "fusion/eval.h"
#include "fusion/fuse.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "fusion/train_job.h"
#include "tests/support/testutil.h"

typedef struct rec {
  uint64_t last_step, calls, steps;
  int nondecreasing;
  int n_eval, n_epoch, n_step;
  uint64_t cancel_at;
  volatile int cancel;
} rec;

static void on_progress(void *ctx, uint64_t step, uint64_t steps) {
  rec *r = ctx;
  if(step < r->last_step + 1)
    r->nondecreasing = 0;
  r->last_step = step;
  r->steps = steps;
  r->calls++;
  if(r->cancel_at && step >= r->cancel_at)
    r->cancel = 1;
}

static void on_metrics(void *ctx, const char *js) {
  rec *r = ctx;
  json_t *j = json_loads(js, 0, NULL);
  ck_assert_msg(j != NULL, "metrics line is not JSON: %s", js);
  const char *ev = json_string_value(json_object_get(j, "event"));
  ck_assert(ev);
  if(!strcmp(ev, "eval"))
    r->n_eval++;
  else if(!strcmp(ev, "epoch")) {
    r->n_epoch++;
    ck_assert(json_is_number(json_object_get(j, "loss")));
  } else if(!strcmp(ev, "step"))
    r->n_step++;
  json_decref(j);
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static double summary_num(const char *summary, const char *key) {
  json_t *j = json_loads(summary, 0, NULL);
  ck_assert(j);
  json_t *v = json_object_get(j, key);
  ck_assert_msg(json_is_number(v), "summary lacks %s: %s", key, summary);
  double x = json_number_value(v);
  json_decref(j);
  return x;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void vit_opts(otf_finetune_opts *o) {
  otf_finetune_opts_default(o);
  o->epochs = 1.0;
  o->lr = 3e-3;
  o->weight_decay = 0.05;
  o->augment_shift = 1;
}

START_TEST(fused_vit_recovers) {
  otf_error err;
  const char *parents[2] = {tu_model_path("vit_s0"), tu_model_path("vit_s1")};
  otf_fuse_opts fo;
  otf_fuse_opts_default(&fo);
  const char *fused = tu_scratch_path("fused");
  ck_assert_msg(otf_fuse_dirs(parents, 2, &fo, NULL, fused, OTF_DT_COUNT, NULL, &err) == OTF_OK,
                "%s", err.message);
  otf_finetune_opts o;
  vit_opts(&o);
  o.log_every = 5;
  rec r = {0};
  r.nondecreasing = 1;
  otf_finetune_ctl ctl = {on_progress, on_metrics, &r, NULL};
  char *summary = NULL;
  const char *out = tu_scratch_path("ft");
  ck_assert_msg(otf_finetune_dir(fused, tu_eval_path("digits_train.safetensors"),
                                 tu_eval_path("digits_eval.safetensors"), &o, &ctl, out,
                                 "{\"note\":\"test\"}", &summary, &err) == OTF_OK,
                "%s", err.message);
  printf("fused ViT pair, 1 epoch: %s\n", summary);
  double before = summary_num(summary, "eval_accuracy_before");
  double after = summary_num(summary, "eval_accuracy");
  /* one-shot OT fusion of this pair scores about 31 %; one epoch (1/150 of
   * the parents' training) brings it past 60 % */
  ck_assert(before < 0.6);
  ck_assert_msg(after > 0.6 && after > before + 0.25, "before %g after %g", before, after);
  ck_assert_uint_eq(summary_num(summary, "steps"), 23); /* ceil(1437 / 64) */
  ck_assert(r.nondecreasing && r.calls == 23 && r.steps == 23 && r.last_step == 23);
  ck_assert_int_eq(r.n_eval, 1);
  ck_assert_int_eq(r.n_epoch, 1);
  ck_assert_int_eq(r.n_step, 4); /* steps 5, 10, 15, 20 */
  /* the folder reopens and scores exactly what the job reported */
  otf_model *m = NULL;
  ck_assert_msg(otf_model_open(&m, out, 0, &err) == OTF_OK, "%s", err.message);
  otf_eval_result er;
  ck_assert(otf_eval(&er, m, tu_eval_path("digits_eval.safetensors"), 64, &err) == OTF_OK);
  ck_assert(fabs(er.accuracy - after) < 1e-8); /* the summary has 9 digits */
  otf_model_close(m);
  /* provenance: finetune settings, the extra object, the fusion as source */
  char p[1024];
  snprintf(p, sizeof(p), "%s/config.json", out);
  json_t *cfg = json_load_file(p, 0, NULL);
  ck_assert(cfg);
  json_t *prov = json_object_get(cfg, "otfuse");
  ck_assert(json_is_object(json_object_get(prov, "finetune")));
  ck_assert_str_eq(json_string_value(json_object_get(prov, "note")), "test");
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(prov, "source"),
                                                     "producer")),
                   "otfuse fuse");
  json_decref(cfg);
  snprintf(p, sizeof(p), "%s/fusion_report.json", out);
  ck_assert(file_exists(p)); /* the source's other files come along */
  otf_free(summary);
}
END_TEST

START_TEST(deterministic_for_a_seed) {
  otf_error err;
  otf_finetune_opts o;
  vit_opts(&o);
  o.epochs = 0.0;
  o.steps = 6;
  const char *outs[3] = {tu_scratch_path("d1"), tu_scratch_path("d2"), tu_scratch_path("d3")};
  for(int i = 0; i < 3; i++) {
    o.seed = i == 2 ? 7 : 1;
    ck_assert_msg(otf_finetune_dir(tu_model_path("vit_narrow"),
                                   tu_eval_path("digits_train.safetensors"), NULL, &o, NULL,
                                   outs[i], NULL, NULL, &err) == OTF_OK,
                  "%s", err.message);
  }
  char p[3][1024];
  size_t len[3];
  char *b[3];
  for(int i = 0; i < 3; i++) {
    snprintf(p[i], sizeof(p[i]), "%s/model.safetensors", outs[i]);
    b[i] = slurp(p[i], &len[i]);
  }
  ck_assert(len[0] == len[1] && memcmp(b[0], b[1], len[0]) == 0);
  ck_assert(len[0] == len[2] && memcmp(b[0], b[2], len[0]) != 0);
  for(int i = 0; i < 3; i++)
    free(b[i]);
}
END_TEST

START_TEST(mlm_keeps_the_tie) {
  otf_error err;
  otf_finetune_opts o;
  otf_finetune_opts_default(&o);
  o.epochs = 0.0;
  o.steps = 3;
  o.batch = 16;
  char *summary = NULL;
  const char *out = tu_scratch_path("mlm");
  ck_assert_msg(otf_finetune_dir(tu_model_path("bert_mlm_s0"),
                                 tu_eval_path("text_mlm_train.safetensors"),
                                 tu_eval_path("text_mlm_eval.safetensors"), &o, NULL, out, NULL,
                                 &summary, &err) == OTF_OK,
                "%s", err.message);
  ck_assert(summary_num(summary, "eval_accuracy") > 0.3);
  otf_free(summary);
  char p[1024];
  snprintf(p, sizeof(p), "%s/model.safetensors", out);
  otf_st_file *f = NULL;
  ck_assert(otf_st_open(&f, p, &err) == OTF_OK);
  ck_assert(otf_st_find(f, "cls.predictions.decoder.weight") == NULL);
  ck_assert(otf_st_find(f, "bert.embeddings.word_embeddings.weight") != NULL);
  otf_st_close(f);
  otf_model *m = NULL;
  ck_assert(otf_model_open(&m, out, 0, &err) == OTF_OK);
  otf_model_close(m);
}
END_TEST

START_TEST(cancel_and_bad_inputs) {
  otf_error err;
  otf_finetune_opts o;
  vit_opts(&o);
  rec r = {0};
  r.cancel_at = 3;
  otf_finetune_ctl ctl = {on_progress, NULL, &r, &r.cancel};
  const char *out = tu_scratch_path("cancelled");
  const char *train = tu_eval_path("digits_train.safetensors");
  const char *vit = tu_model_path("vit_narrow");
  ck_assert(otf_finetune_dir(vit, train, NULL, &o, &ctl, out, NULL, NULL, &err) ==
            OTF_E_CANCELLED);
  ck_assert_uint_eq(r.last_step, 3);
  ck_assert(!file_exists(out));
  /* options */
  otf_finetune_opts b = o;
  b.lr = 0.0;
  ck_assert(otf_finetune_dir(vit, train, NULL, &b, NULL, out, NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert_str_eq(err.pointer, "lr");
  b = o;
  b.batch = 0;
  ck_assert(otf_finetune_dir(vit, train, NULL, &b, NULL, out, NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert_str_eq(err.pointer, "batch");
  b = o;
  b.epochs = 0.0;
  b.steps = 0;
  ck_assert(otf_finetune_dir(vit, train, NULL, &b, NULL, out, NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert_str_eq(err.pointer, "steps");
  b = o;
  b.warmup = 1.5;
  ck_assert(otf_finetune_dir(vit, train, NULL, &b, NULL, out, NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert(otf_finetune_dir(vit, train, NULL, &o, NULL, out, "[1]", NULL, &err) ==
            OTF_E_INVAL);
  /* data of the wrong kind, missing files, models without a head */
  ck_assert(otf_finetune_dir(vit, tu_eval_path("text_cls_train.safetensors"), NULL, &o, NULL, out,
                             NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert(otf_finetune_dir(vit, tu_scratch_path("nope.safetensors"), NULL, &o, NULL, out, NULL,
                             NULL, &err) != OTF_OK);
  ck_assert(otf_finetune_dir(tu_model_path("vit_model_s0"), train, NULL, &o, NULL, out, NULL,
                             NULL, &err) == OTF_E_UNSUPPORTED);
  ck_assert(otf_finetune_dir(vit, train, tu_eval_path("text_cls_eval.safetensors"), &o, NULL, out,
                             NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert(!file_exists(out));
  /* an output folder that is not empty is refused, and left alone */
  mkdir(out, 0755);
  char p[1024];
  snprintf(p, sizeof(p), "%s/keep", out);
  FILE *f = fopen(p, "w");
  fclose(f);
  b = o;
  b.epochs = 0.0;
  b.steps = 1;
  ck_assert(otf_finetune_dir(vit, train, NULL, &b, NULL, out, NULL, NULL, &err) == OTF_E_INVAL);
  ck_assert(file_exists(p));
}
END_TEST

int main(void) {
  Suite *su = suite_create("train_job");
  TCase *tc = tcase_create("train_job");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, tu_scratch_setup, tu_scratch_teardown);
  tcase_add_test(tc, fused_vit_recovers);
  tcase_add_test(tc, deterministic_for_a_seed);
  tcase_add_test(tc, mlm_keeps_the_tie);
  tcase_add_test(tc, cancel_and_bad_inputs);
  suite_add_tcase(su, tc);
  return tu_run_suite(su);
}
