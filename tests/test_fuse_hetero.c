/* Heterogeneous fusion with a known answer: a parent and a wider copy of
 * itself whose extra FFN units have all-zero weights (tests/support/pad.h).
 *
 * 1. The padded copy computes the same function: logits equal to the
 *    original's within 1e-5 on the first 32 eval samples (ViT, BERT).
 * 2. The original (anchor) fused with its padded copy, and the padded copy
 *    (anchor, so into the wider shape) fused with the original, for exact
 *    OT and Sinkhorn 0.08 on weights and on activations: the accuracy is
 *    measured on the whole eval set and compared with the parent's and with
 *    self-fusion (original + original under the same setting, which
 *    separates what the padding costs from what soft alignment costs by
 *    itself).
 *
 * The expectation was "a parent fused with a wider copy of itself
 * padded with zero-weight units loses no accuracy". That is not what the
 * maps give, and not what they can give with uniform marginals: the F + E
 * units of the padded copy each carry mass 1/(F + E) and the anchor's F
 * units 1/F, so every transport plan must send the E zero units' mass
 * (E/(F + E) of the total) onto real anchor units. Under exact OT with
 * E = F each anchor FFN unit receives half its mass from its real twin and
 * half from a zero unit; the clean (column-stochastic) output map then
 * averages them, so the aligned copy's incoming FFN weights and biases are
 * scaled by F/(F + E) = 1/2 while its outgoing weights (row-stochastic
 * input map) stay whole: it computes W2 act(z/2) instead of W2 act(z).
 * Averaged with the anchor: W2 act(3z/4) -- a different function, and a
 * different model. The measured numbers and what is asserted are in
 * padded_copy_fusion below; the explanation is repeated with the numbers
 * in the commit that added this file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/eval.h"
#include "fusion/forward.h"
#include "fusion/fuse.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/pad.h"
#include "tests/support/testutil.h"

#define NSAMPLES 32


typedef struct fixture {
  const char *name, *eval, *calib;
} fixture;

static const fixture fixtures[] = {
    {"vit_s0", "digits_eval.safetensors", "digits_train.safetensors"},
    {"bert_cls_s0", "text_cls_eval.safetensors", "text_cls_train.safetensors"},
};

/* The first NSAMPLES rows of an eval file as a batch; the buffers are
 * owned by the caller (free px, ids, mask, types). */
typedef struct batch_buf {
  otf_batch b;
  float *px;
  int64_t *ids, *mask, *types;
} batch_buf;

static int64_t *read_i64(const otf_st_file *f, const char *name, size_t rows, size_t *cols) {
  const otf_st_tensor *t = otf_st_find(f, name);
  if(!t)
    return NULL;
  ck_assert_int_eq(t->dtype, OTF_DT_I64);
  ck_assert_int_eq(t->rank, 2);
  ck_assert(t->shape[0] >= rows);
  *cols = (size_t)t->shape[1];
  int64_t *v = malloc(rows * *cols * sizeof(int64_t));
  ck_assert_ptr_nonnull(v);
  memcpy(v, t->data, rows * *cols * sizeof(int64_t)); /* possibly unaligned in the map */
  return v;
}

static void batch_load(batch_buf *bb, const char *file) {
  memset(bb, 0, sizeof(*bb));
  otf_st_file *f = NULL;
  otf_error e;
  ck_assert_msg(otf_st_open(&f, tu_eval_path(file), &e) == OTF_OK, "%s", e.message);
  bb->b.n = NSAMPLES;
  const otf_st_tensor *px = otf_st_find(f, "pixel_values");
  if(px) {
    size_t per = (size_t)(px->numel / px->shape[0]);
    float *all = malloc(px->numel * sizeof(float));
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(otf_st_read_f32(all, px, &e), OTF_OK);
    bb->px = malloc(NSAMPLES * per * sizeof(float));
    ck_assert_ptr_nonnull(bb->px);
    memcpy(bb->px, all, NSAMPLES * per * sizeof(float));
    free(all);
    bb->b.pixel_values = bb->px;
  } else {
    size_t c1 = 0, c2 = 0, c3 = 0;
    bb->ids = read_i64(f, "input_ids", NSAMPLES, &c1);
    bb->mask = read_i64(f, "attention_mask", NSAMPLES, &c2);
    bb->types = read_i64(f, "token_type_ids", NSAMPLES, &c3);
    ck_assert_ptr_nonnull(bb->ids);
    ck_assert(!bb->mask || c2 == c1);
    ck_assert(!bb->types || c3 == c1);
    bb->b.seq = c1;
    bb->b.input_ids = bb->ids;
    bb->b.attention_mask = bb->mask;
    bb->b.token_type_ids = bb->types;
  }
  otf_st_close(f);
}

static void batch_free(batch_buf *bb) {
  free(bb->px);
  free(bb->ids);
  free(bb->mask);
  free(bb->types);
}

/* Logits of the model in dir on the batch: malloc'd, *len floats. */
static float *logits_of(const char *dir, const otf_batch *b, size_t *len) {
  otf_model *m = NULL;
  otf_weights w;
  otf_forward *f = NULL;
  otf_error e;
  memset(&w, 0, sizeof(w));
  ck_assert_msg(otf_model_open(&m, dir, 0, &e) == OTF_OK, "%s", e.message);
  ck_assert_msg(otf_weights_load(&w, m, &e) == OTF_OK, "%s", e.message);
  ck_assert_msg(otf_forward_create(&f, &w, otf_model_cfg(m), otf_model_arch(m), b->n,
                                   b->seq ? b->seq : 1, &e) == OTF_OK,
                "%s", e.message);
  *len = otf_forward_logits_len(f, b);
  ck_assert(*len > 0);
  float *lg = malloc(*len * sizeof(float));
  ck_assert_ptr_nonnull(lg);
  ck_assert_msg(otf_forward_run(f, b, lg, 0, NULL, NULL, &e) == OTF_OK, "%s", e.message);
  otf_forward_destroy(f);
  otf_weights_free(&w);
  otf_model_close(m);
  return lg;
}

static void eval_dir(const char *dir, const char *file, double *acc, double *loss) {
  otf_model *m = NULL;
  otf_eval_result r;
  otf_error e;
  ck_assert_msg(otf_model_open(&m, dir, 0, &e) == OTF_OK, "%s", e.message);
  ck_assert_msg(otf_eval(&r, m, tu_eval_path(file), 64, &e) == OTF_OK, "%s", e.message);
  otf_model_close(m);
  *acc = r.accuracy;
  *loss = r.loss;
}

/* 1. The padded copy: wider config, the right parameter count, the same
 *    logits. Seeds 0 (zero units appended) and 7 (scattered); extra 0 is
 *    a plain copy. */
START_TEST(padded_copy_is_equivalent) {
  const fixture *fx = &fixtures[_i];
  otf_error e;
  otf_model *orig = NULL;
  ck_assert_int_eq(otf_model_open(&orig, tu_model_path(fx->name), 0, &e), OTF_OK);
  const otf_model_config *oc = otf_model_cfg(orig);
  int F = oc->intermediate_size, D = oc->hidden_size, L = oc->num_layers;
  uint64_t params = otf_model_param_count(orig);
  otf_model_close(orig);

  batch_buf bb;
  batch_load(&bb, fx->eval);
  size_t n0, n1;
  float *want = logits_of(tu_model_path(fx->name), &bb.b, &n0);
  static const struct { int extra; uint64_t seed; } cases[] = {{0, 0}, {64, 0}, {64, 7}, {5, 3}};
  for(size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
    char name[64];
    snprintf(name, sizeof(name), "pad%zu", k);
    const char *dst = tu_scratch_path(name);
    ck_assert_msg(tu_pad_ffn_model(tu_model_path(fx->name), dst, cases[k].extra, cases[k].seed, &e) ==
                      OTF_OK,
                  "%s", e.message);
    otf_model *m = NULL;
    ck_assert_msg(otf_model_open(&m, dst, 0, &e) == OTF_OK, "%s", e.message);
    const otf_model_config *c = otf_model_cfg(m);
    ck_assert_int_eq(c->intermediate_size, F + cases[k].extra);
    ck_assert_int_eq(c->hidden_size, D);
    ck_assert_int_eq(c->num_layers, L);
    /* fc1 rows (D each) + fc1 bias + fc2 columns (D each) per new unit. */
    ck_assert_uint_eq(otf_model_param_count(m),
                      params + (uint64_t)L * (uint64_t)cases[k].extra * (2u * (uint64_t)D + 1u));
    otf_model_close(m);
    float *got = logits_of(dst, &bb.b, &n1);
    ck_assert_uint_eq(n0, n1);
    double worst = 0.0;
    for(size_t i = 0; i < n0; i++)
      worst = fmax(worst, fabs((double)got[i] - want[i]));
    printf("pad %s extra %d seed %llu: max |logit diff| %.3g over %zu logits\n", fx->name,
           cases[k].extra, (unsigned long long)cases[k].seed, worst, n0);
    ck_assert_msg(worst <= 1e-5, "%s extra %d seed %llu: max logit diff %g", fx->name,
                  cases[k].extra, (unsigned long long)cases[k].seed, worst);
    free(got);
  }
  /* Same seed, same bytes; a different placement differs. */
  ck_assert_int_eq(tu_pad_ffn_model(tu_model_path(fx->name), tu_scratch_path("again"), 64, 7, &e), OTF_OK);
  char cmd[1400];
  snprintf(cmd, sizeof(cmd), "cmp -s %s/model.safetensors %s/model.safetensors", tu_scratch_path("pad2"),
           tu_scratch_path("again"));
  ck_assert_int_eq(system(cmd), 0);
  snprintf(cmd, sizeof(cmd), "cmp -s %s/model.safetensors %s/model.safetensors", tu_scratch_path("pad1"),
           tu_scratch_path("pad2"));
  ck_assert_int_ne(system(cmd), 0);
  free(want);
  batch_free(&bb);
}
END_TEST

START_TEST(bad_arguments) {
  otf_error e;
  ck_assert_int_eq(tu_pad_ffn_model(tu_model_path("vit_s0"), tu_scratch_path("neg"), -1, 0, &e), OTF_E_INVAL);
  ck_assert_int_eq(tu_pad_ffn_model(NULL, tu_scratch_path("neg"), 1, 0, &e), OTF_E_INVAL);
  ck_assert_int_ne(tu_pad_ffn_model(tu_scratch_path("missing"), tu_scratch_path("neg"), 1, 0, &e), OTF_OK);
  struct stat st;
  ck_assert_int_ne(stat(tu_scratch_path("neg"), &st), 0);
}
END_TEST

/* 2. Fusion with the padded copy (zero units scattered, seed 7). */
typedef struct setting {
  const char *label;
  otf_fuse_solver solver;
  otf_align align;
  otf_tmnorm maps;
} setting;

static const setting settings[] = {
    {"exact weights", OTF_FSOLVER_EXACT, OTF_ALIGN_WEIGHTS, OTF_TMNORM_CLEAN},
    {"exact activations", OTF_FSOLVER_EXACT, OTF_ALIGN_ACTIVATIONS, OTF_TMNORM_CLEAN},
    {"sinkhorn 0.08 weights", OTF_FSOLVER_SINKHORN, OTF_ALIGN_WEIGHTS, OTF_TMNORM_CLEAN},
    {"sinkhorn 0.08 activations", OTF_FSOLVER_SINKHORN, OTF_ALIGN_ACTIVATIONS, OTF_TMNORM_CLEAN},
    {"exact weights, reference maps", OTF_FSOLVER_EXACT, OTF_ALIGN_WEIGHTS, OTF_TMNORM_REFERENCE},
};
#define NSET (sizeof(settings) / sizeof(*settings))
enum { S_EXACT_W, S_EXACT_A, S_SINK_W, S_SINK_A, S_REF_W };

static void fuse_pair(const char *a, const char *b, const setting *s, const fixture *fx,
                      const char *out) {
  otf_fuse_opts o;
  otf_fuse_opts_default(&o);
  o.solver = s->solver;
  o.reg = 0.08;
  o.align = s->align;
  o.tmnorm = s->maps;
  o.calibration = tu_eval_path(fx->calib);
  o.samples = 200;
  o.anchor = 0;
  const char *dirs[2] = {a, b};
  otf_error e;
  ck_assert_msg(otf_fuse_dirs(dirs, 2, &o, NULL, out, OTF_DT_F32, NULL, &e) == OTF_OK, "%s: %s",
                s->label, e.message);
}

static const otf_tensor_spec *part_specs(const otf_arch *a, int part, size_t *n) {
  *n = part == 0 ? a->n_pre : part == 1 ? a->n_layer : a->n_post;
  return part == 0 ? a->pre : part == 1 ? a->layer : a->post;
}

/* Largest deviation of the fused model from `scale` x the original on
 * every tensor whose output axis is the FFN space (fc1 weight and bias)
 * and from the original on every other tensor, walked through the
 * architecture table; both models have the original's shapes. */
static double scaled_diff(const char *fused, const char *orig, double scale) {
  otf_model *mf = NULL, *mo = NULL;
  otf_error e;
  ck_assert_msg(otf_model_open(&mf, fused, 0, &e) == OTF_OK, "%s", e.message);
  ck_assert_msg(otf_model_open(&mo, orig, 0, &e) == OTF_OK, "%s", e.message);
  const otf_arch *a = otf_model_arch(mo);
  int L = otf_model_cfg(mo)->num_layers;
  double worst = 0.0;
  for(int part = 0; part < 3; part++) {
    size_t ns;
    const otf_tensor_spec *specs = part_specs(a, part, &ns);
    for(int layer = 0; layer < (part == 1 ? L : 1); layer++)
      for(size_t k = 0; k < ns; k++) {
        const otf_tensor_spec *sp = &specs[k];
        if(sp->role == OTF_ROLE_MERGE || sp->role == OTF_ROLE_BUFFER)
          continue;
        int lay = part == 1 ? layer : -1;
        const otf_st_tensor *tf = otf_model_tensor(mf, sp, lay), *to = otf_model_tensor(mo, sp, lay);
        ck_assert((tf == NULL) == (to == NULL));
        if(!tf)
          continue;
        ck_assert_uint_eq(tf->numel, to->numel);
        float *x = malloc(tf->numel * sizeof(float) + 4), *y = malloc(to->numel * sizeof(float) + 4);
        ck_assert(x && y);
        ck_assert_int_eq(otf_st_read_f32(x, tf, NULL), OTF_OK);
        ck_assert_int_eq(otf_st_read_f32(y, to, NULL), OTF_OK);
        double sc = sp->axes[0] == OTF_SP_FFN ? scale : 1.0;
        for(size_t i = 0; i < tf->numel; i++)
          worst = fmax(worst, fabs((double)x[i] - sc * y[i]));
        free(x);
        free(y);
      }
  }
  otf_model_close(mf);
  otf_model_close(mo);
  return worst;
}

/* The mechanism, exactly: under exact OT with clean maps, the original
 * (anchor, F units) fused with a copy padded by E zero units comes out as
 * the original with its FFN's incoming weights and biases scaled by
 * (1 + F/(F + E)) / 2 and everything else unchanged. Each anchor unit
 * receives mass 1/(F + E) from its real twin (cost 0) and the rest of its
 * 1/F from zero units; the column-stochastic output map averages them
 * (F/(F + E) of the real row), the row-stochastic input map keeps the
 * twin's outgoing column whole (a zero unit's column adds nothing), and
 * the fusion averages with the anchor. E = 64: 0.75; E = 32: 5/6. With the
 * released code's n * plan maps the twin and the zero units are summed,
 * so the original comes back (scale 1). */
START_TEST(padded_copy_mechanism) {
  const fixture *fx = &fixtures[_i];
  otf_error e;
  const char *orig = tu_model_path(fx->name);
  static const struct { int extra; otf_tmnorm maps; double scale; } cases[] = {
      {64, OTF_TMNORM_CLEAN, 0.75},
      {32, OTF_TMNORM_CLEAN, (1.0 + 64.0 / 96.0) / 2.0},
      {64, OTF_TMNORM_REFERENCE, 1.0},
  };
  for(size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
    char name[64];
    snprintf(name, sizeof(name), "mpad%zu", k);
    char padded[512];
    snprintf(padded, sizeof(padded), "%s", tu_scratch_path(name));
    ck_assert_msg(tu_pad_ffn_model(orig, padded, cases[k].extra, 7, &e) == OTF_OK, "%s",
                  e.message);
    for(int align = 0; align < 2; align++) {
      setting s = {"mechanism", OTF_FSOLVER_EXACT,
                   align ? OTF_ALIGN_ACTIVATIONS : OTF_ALIGN_WEIGHTS, cases[k].maps};
      snprintf(name, sizeof(name), "mfused%zu_%d", k, align);
      fuse_pair(orig, padded, &s, fx, tu_scratch_path(name));
      double d = scaled_diff(tu_scratch_path(name), orig, cases[k].scale);
      printf("%s + pad %d (%s maps, %s): fused = original with FFN-in x %.4f, max dev %.2g\n",
             fx->name, cases[k].extra, cases[k].maps == OTF_TMNORM_CLEAN ? "clean" : "reference",
             align ? "activations" : "weights", cases[k].scale, d);
      ck_assert_msg(d <= 1e-5, "%s extra %d maps %d align %d: max deviation %g from scale %g",
                    fx->name, cases[k].extra, (int)cases[k].maps, align, d, cases[k].scale);
    }
  }
}
END_TEST

/* Accuracy and loss on the whole eval set. Measured (F = 64, E = 64):
 *
 *   ViT vit_s0, parent 0.9722 / loss 0.0870
 *   setting              self-fusion     anchor=orig     anchor=padded
 *   exact weights        0.9722          0.9694 (-1/360) 0.9778 (+2/360)
 *   exact activations    0.9722          0.9694          0.9778
 *   sinkhorn .08 wts     0.9639          0.9694          0.9611
 *   sinkhorn .08 acts    0.9556          0.9611          0.9611
 *   exact wts, ref maps  0.9722          0.9722 (exact)  0.9611 (-4/360)
 *
 *   BERT bert_cls_s0, parent 0.9675 / loss 0.1677
 *   exact weights        0.9675          0.9725 (+2/400) 0.9675
 *   exact activations    0.9675          0.9725          0.9675
 *   sinkhorn .08 wts     0.9625          0.9575 (-4/400) 0.9575
 *   sinkhorn .08 acts    0.9625          0.9625          0.9600
 *   exact wts, ref maps  0.9675          0.9675 (exact)  0.9700
 *
 * So "loses no accuracy" holds only loosely: the fused models are not the
 * parent (see padded_copy_mechanism), and accuracy moves by up to 1.1
 * points either way. Asserted, with margins over the measurements: exact
 * OT within 1.5 points of the parent (measured at most 0.56 with clean
 * maps, 1.11 with reference maps into the wider shape); Sinkhorn
 * within 2.5 points of the parent (measured at most 1.11) and 1.5 of
 * self-fusion under the same setting (measured at most 0.5 below);
 * reference maps with the original as anchor: the parent's accuracy and
 * loss (it is the parent, to float rounding). */
START_TEST(padded_copy_fusion) {
  const fixture *fx = &fixtures[_i];
  otf_error e;
  const char *orig = tu_model_path(fx->name);
  char padded[512];
  snprintf(padded, sizeof(padded), "%s", tu_scratch_path("padded"));
  ck_assert_msg(tu_pad_ffn_model(orig, padded, 64, 7, &e) == OTF_OK, "%s", e.message);
  double pacc, ploss;
  eval_dir(orig, fx->eval, &pacc, &ploss);
  printf("%s parent: accuracy %.4f loss %.4f (FFN 64, padded copy 128)\n", fx->name, pacc, ploss);
  printf("  %-30s | %-16s | %-16s | %-16s | loss self / orig / padded\n", "setting",
         "self-fusion", "anchor=orig", "anchor=padded");
  double acc[NSET][3], loss[NSET][3];
  for(size_t k = 0; k < NSET; k++) {
    const setting *s = &settings[k];
    char name[64];
    snprintf(name, sizeof(name), "self%zu", k);
    fuse_pair(orig, orig, s, fx, tu_scratch_path(name));
    eval_dir(tu_scratch_path(name), fx->eval, &acc[k][0], &loss[k][0]);
    snprintf(name, sizeof(name), "narrow%zu", k);
    fuse_pair(orig, padded, s, fx, tu_scratch_path(name));
    eval_dir(tu_scratch_path(name), fx->eval, &acc[k][1], &loss[k][1]);
    otf_model *m = NULL;
    ck_assert_int_eq(otf_model_open(&m, tu_scratch_path(name), 0, &e), OTF_OK);
    ck_assert_int_eq(otf_model_cfg(m)->intermediate_size, 64);
    otf_model_close(m);
    snprintf(name, sizeof(name), "wide%zu", k);
    fuse_pair(padded, orig, s, fx, tu_scratch_path(name));
    eval_dir(tu_scratch_path(name), fx->eval, &acc[k][2], &loss[k][2]);
    ck_assert_int_eq(otf_model_open(&m, tu_scratch_path(name), 0, &e), OTF_OK);
    ck_assert_int_eq(otf_model_cfg(m)->intermediate_size, 128);
    otf_model_close(m);
    printf("  %-30s | %.4f (%+.4f) | %.4f (%+.4f) | %.4f (%+.4f) | %.4f / %.4f / %.4f\n",
           s->label, acc[k][0], acc[k][0] - pacc, acc[k][1], acc[k][1] - pacc, acc[k][2],
           acc[k][2] - pacc, loss[k][0], loss[k][1], loss[k][2]);
  }
  for(size_t k = 0; k < NSET; k++) {
    const setting *s = &settings[k];
    /* Exact self-fusion is the identity under any maps. */
    if(s->solver == OTF_FSOLVER_EXACT)
      ck_assert_msg(acc[k][0] == pacc && fabs(loss[k][0] - ploss) <= 1e-6, "%s: self-fusion",
                    s->label);
    for(int j = 1; j < 3; j++) {
      const char *which = j == 1 ? "anchor=orig" : "anchor=padded";
      if(k == S_REF_W && j == 1) {
        ck_assert_msg(acc[k][j] == pacc && fabs(loss[k][j] - ploss) <= 1e-5,
                      "%s %s: %.4f / %.5f vs parent %.4f / %.5f", s->label, which, acc[k][j],
                      loss[k][j], pacc, ploss);
      } else if(s->solver == OTF_FSOLVER_EXACT) {
        ck_assert_msg(fabs(acc[k][j] - pacc) <= 0.015, "%s %s: %.4f vs parent %.4f", s->label,
                      which, acc[k][j], pacc);
      } else {
        ck_assert_msg(acc[k][j] >= pacc - 0.025 && acc[k][j] >= acc[k][0] - 0.015,
                      "%s %s: %.4f vs parent %.4f, self-fusion %.4f", s->label, which, acc[k][j],
                      pacc, acc[k][0]);
      }
    }
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("fuse_hetero");
  TCase *tc = tcase_create("padded");
  tcase_add_checked_fixture(tc, tu_scratch_setup, tu_scratch_teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, padded_copy_is_equivalent, 0, 2);
  tcase_add_test(tc, bad_arguments);
  tcase_add_loop_test(tc, padded_copy_mechanism, 0, 2);
  tcase_add_loop_test(tc, padded_copy_fusion, 0, 2);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
