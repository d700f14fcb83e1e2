/* Data sets (fusion/dataset.h): the committed ViT, BERT and MLM files
 * accepted, batches for arbitrary index lists equal to the file's rows,
 * hostile files (written here with otf_st_write) refused with a message
 * naming the tensor and the problem, several configs (the refusing model
 * named), bad calls, and allocation failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/dataset.h"
#include "fusion/hfconfig.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

/* ---- helpers ----------------------------------------------------------- */

static const char *tmp_path(void) {
  static char path[128];
  snprintf(path, sizeof(path), "/tmp/otf_dataset_test_%ld.safetensors", (long)getpid());
  return path;
}

static const char *eval_path(const char *file) {
  static char path[512];
  snprintf(path, sizeof(path), "%s/eval/%s", tu_data_dir(), file);
  return path;
}

static otf_model_config fixture_cfg(const char *model) {
  char path[512];
  otf_model_config c;
  otf_error e;
  snprintf(path, sizeof(path), "%s/models/%s/config.json", tu_data_dir(), model);
  ck_assert_msg(otf_model_config_load(&c, path, &e) == OTF_OK, "%s: %s", model, e.message);
  return c;
}

static otf_model_config text_cfg(int vocab, int maxpos, int tvocab, int labels) {
  otf_model_config c;
  memset(&c, 0, sizeof(c));
  c.family = OTF_FAMILY_BERT;
  snprintf(c.architecture, sizeof(c.architecture), "BertForSequenceClassification");
  c.vocab_size = vocab;
  c.max_position_embeddings = maxpos;
  c.type_vocab_size = tvocab;
  c.num_labels = labels;
  return c;
}

static otf_model_config image_cfg(int channels, int size, int labels) {
  otf_model_config c;
  memset(&c, 0, sizeof(c));
  c.family = OTF_FAMILY_VIT;
  snprintf(c.architecture, sizeof(c.architecture), "ViTForImageClassification");
  c.num_channels = channels;
  c.image_size = size;
  c.patch_size = 4;
  c.num_labels = labels;
  return c;
}

/* A file and the data set over it (the data set borrows the file). */
typedef struct opened {
  otf_st_file *f;
  otf_dataset *ds;
} opened;

static otf_status try_open(opened *o, const char *path, const otf_model_config *const *cfgs,
                           const char *const *names, size_t ncfg, unsigned labels,
                           otf_error *e) {
  o->f = NULL;
  o->ds = NULL;
  otf_status rc = otf_st_open(&o->f, path, e);
  if(rc != OTF_OK)
    return rc;
  otf_dataset_opts opts = {.cfgs = cfgs, .names = names, .ncfg = ncfg, .labels = labels};
  rc = otf_dataset_open(&o->ds, o->f, &opts, e);
  if(rc != OTF_OK) {
    ck_assert_ptr_null(o->ds);
    otf_st_close(o->f);
    o->f = NULL;
  }
  return rc;
}

static void close_opened(opened *o) {
  otf_dataset_destroy(o->ds);
  otf_st_close(o->f);
}

static otf_st_out tensor(const char *name, otf_dtype dt, int rank, const uint64_t *shape,
                         const void *data) {
  otf_st_out t;
  memset(&t, 0, sizeof(t));
  t.name = name;
  t.dtype = dt;
  t.rank = rank;
  for(int i = 0; i < rank; i++)
    t.shape[i] = shape[i];
  t.data = data;
  return t;
}

static void write_tensors(const otf_st_out *t, size_t n) {
  otf_error e;
  ck_assert_msg(otf_st_write(tmp_path(), t, n, NULL, 0, &e) == OTF_OK, "%s", e.message);
}

/* Opens the temporary file against cfgs and expects OTF_E_INVAL with a
 * message containing needle. */
static void expect_refused(const otf_model_config *const *cfgs, const char *const *names,
                           size_t ncfg, unsigned labels, const char *needle, int line) {
  opened o;
  otf_error e;
  otf_status rc = try_open(&o, tmp_path(), cfgs, names, ncfg, labels, &e);
  ck_assert_msg(rc == OTF_E_INVAL, "line %d: got %s (%s), want INVAL with '%s'", line,
                otf_status_name(rc), rc == OTF_OK ? "" : e.message, needle);
  ck_assert_msg(strstr(e.message, needle) != NULL, "line %d: '%s' lacks '%s'", line, e.message,
                needle);
  unlink(tmp_path());
}

#define REFUSED1(cfg, labels, needle)                                      \
  do {                                                                     \
    const otf_model_config *one_[1] = {&(cfg)};                            \
    expect_refused(one_, NULL, 1, (labels), (needle), __LINE__);           \
  } while(0)

static void expect_accepted(const otf_model_config *cfg, unsigned labels) {
  opened o;
  otf_error e;
  const otf_model_config *one[1] = {cfg};
  otf_status rc = try_open(&o, tmp_path(), one, NULL, 1, labels, &e);
  ck_assert_msg(rc == OTF_OK, "%s", e.message);
  close_opened(&o);
  unlink(tmp_path());
}

/* ---- the committed files ---------------------------------------------- */

/* Checks rows of a filled image batch against the whole tensor as float. */
static void check_image_rows(const otf_batch *b, const float *all, size_t per,
                             const size_t *idx, size_t n) {
  ck_assert_uint_eq(b->n, n);
  ck_assert_ptr_nonnull(b->pixel_values);
  ck_assert_ptr_null(b->input_ids);
  for(size_t i = 0; i < n; i++)
    ck_assert_msg(memcmp(b->pixel_values + i * per, all + idx[i] * per, per * sizeof(float)) == 0,
                  "row %zu (sample %zu) differs", i, idx[i]);
}

static void check_i64_rows(const int64_t *got, const otf_st_tensor *t, size_t T,
                           const size_t *idx, size_t n) {
  ck_assert_ptr_nonnull(got);
  for(size_t i = 0; i < n; i++)
    ck_assert_msg(memcmp(got + i * T, (const char *)t->data + idx[i] * T * sizeof(int64_t),
                         T * sizeof(int64_t)) == 0,
                  "%s row %zu (sample %zu) differs", t->name, i, idx[i]);
}

START_TEST(vit_file_batches_equal_rows) {
  otf_model_config cfg = fixture_cfg("vit_s0");
  const otf_model_config *cfgs[1] = {&cfg};
  opened o;
  otf_error e;
  ck_assert_msg(try_open(&o, eval_path("digits_eval.safetensors"), cfgs, NULL, 1,
                         OTF_DATASET_LABELS_CLS, &e) == OTF_OK,
                "%s", e.message);
  ck_assert_uint_eq(otf_dataset_count(o.ds), 360);
  ck_assert_uint_eq(otf_dataset_seq(o.ds), 0);
  ck_assert_int_eq(otf_dataset_mlm(o.ds), 0);
  const otf_st_tensor *px = otf_st_find(o.f, "pixel_values"), *lb = otf_st_find(o.f, "labels");
  size_t per = (size_t)(px->numel / 360);
  float *all = malloc(px->numel * sizeof(float));
  ck_assert_int_eq(otf_st_read_f32(all, px, &e), OTF_OK);
  for(uint64_t k = 0; k < 360; k++) {
    int64_t y;
    memcpy(&y, (const char *)lb->data + k * 8, 8);
    ck_assert_int_eq(otf_dataset_label(o.ds, k), y);
  }
  ck_assert_int_eq(otf_dataset_reserve(o.ds, 7, &e), OTF_OK);
  otf_batch b;
  const size_t idx[] = {359, 0, 5, 5, 100, 17, 358};
  ck_assert_int_eq(otf_dataset_fill(o.ds, &b, idx, 7, &e), OTF_OK);
  check_image_rows(&b, all, per, idx, 7);
  ck_assert_int_eq(otf_dataset_fill(o.ds, &b, idx + 2, 3, &e), OTF_OK);
  check_image_rows(&b, all, per, idx + 2, 3);
  ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b, 353, 7, &e), OTF_OK);
  const size_t tail[] = {353, 354, 355, 356, 357, 358, 359};
  check_image_rows(&b, all, per, tail, 7);
  /* Out of range, too many, none. */
  const size_t bad[] = {1, 360};
  ck_assert_int_eq(otf_dataset_fill(o.ds, &b, bad, 2, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_fill(o.ds, &b, tail, 0, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_fill(o.ds, &b, NULL, 2, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b, 354, 7, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b, 0, 8, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_reserve(o.ds, 0, &e), OTF_E_INVAL);
  /* A larger reservation replaces the buffers. */
  ck_assert_int_eq(otf_dataset_reserve(o.ds, 360, &e), OTF_OK);
  ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b, 0, 360, &e), OTF_OK);
  ck_assert(memcmp(b.pixel_values, all, px->numel * sizeof(float)) == 0);
  free(all);
  close_opened(&o);
  otf_model_config_free(&cfg);
}
END_TEST

START_TEST(text_files_batches_equal_rows) {
  struct {
    const char *model, *file;
    unsigned labels;
    int mlm;
  } cases[] = {{"bert_cls_s0", "text_cls_eval.safetensors", OTF_DATASET_LABELS_CLS, 0},
               {"bert_mlm_s0", "text_mlm_eval.safetensors", OTF_DATASET_LABELS_MLM, 1},
               {"bert_model_s0", "text_mlm_train.safetensors", 0, 0}};
  for(size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    otf_model_config cfg = fixture_cfg(cases[c].model);
    const otf_model_config *cfgs[1] = {&cfg};
    opened o;
    otf_error e;
    ck_assert_msg(try_open(&o, eval_path(cases[c].file), cfgs, NULL, 1, cases[c].labels, &e) ==
                      OTF_OK,
                  "%s: %s", cases[c].file, e.message);
    size_t N = otf_dataset_count(o.ds), T = otf_dataset_seq(o.ds);
    ck_assert_uint_eq(T, 20);
    ck_assert_int_eq(otf_dataset_mlm(o.ds), cases[c].mlm);
    const otf_st_tensor *ids = otf_st_find(o.f, "input_ids"),
                        *mask = otf_st_find(o.f, "attention_mask"),
                        *types = otf_st_find(o.f, "token_type_ids"),
                        *lb = otf_st_find(o.f, "labels");
    if(cases[c].labels)
      for(uint64_t k = 0; k < lb->numel; k++) {
        int64_t y;
        memcpy(&y, (const char *)lb->data + k * 8, 8);
        ck_assert_int_eq(otf_dataset_label(o.ds, k), y);
      }
    ck_assert_int_eq(otf_dataset_reserve(o.ds, 5, &e), OTF_OK);
    otf_batch b;
    size_t idx[5] = {N - 1, 3, 3, 0, N / 2};
    ck_assert_int_eq(otf_dataset_fill(o.ds, &b, idx, 5, &e), OTF_OK);
    ck_assert_uint_eq(b.n, 5);
    ck_assert_uint_eq(b.seq, T);
    ck_assert_ptr_null(b.pixel_values);
    check_i64_rows(b.input_ids, ids, T, idx, 5);
    check_i64_rows(b.attention_mask, mask, T, idx, 5);
    check_i64_rows(b.token_type_ids, types, T, idx, 5);
    ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b, N - 4, 4, &e), OTF_OK);
    size_t tail[4] = {N - 4, N - 3, N - 2, N - 1};
    check_i64_rows(b.input_ids, ids, T, tail, 4);
    check_i64_rows(b.attention_mask, mask, T, tail, 4);
    close_opened(&o);
    otf_model_config_free(&cfg);
  }
}
END_TEST

/* Half-precision pixels are converted; a text file without a mask or type
 * ids gives NULL for them. */
START_TEST(f16_pixels_and_missing_companions) {
  otf_model_config vit = image_cfg(1, 2, 3);
  uint16_t h[3 * 4];
  float want[3 * 4];
  for(int i = 0; i < 12; i++) {
    h[i] = otf_f32_to_f16((float)i * 0.25f - 1.0f);
    want[i] = otf_f16_to_f32(h[i]);
  }
  int64_t y[3] = {2, 0, 1};
  const uint64_t sp[4] = {3, 1, 2, 2}, sl[1] = {3};
  otf_st_out t[2] = {tensor("pixel_values", OTF_DT_F16, 4, sp, h),
                     tensor("labels", OTF_DT_I64, 1, sl, y)};
  write_tensors(t, 2);
  const otf_model_config *cfgs[1] = {&vit};
  opened o;
  otf_error e;
  ck_assert_int_eq(try_open(&o, tmp_path(), cfgs, NULL, 1, OTF_DATASET_LABELS_CLS, &e), OTF_OK);
  ck_assert_int_eq(otf_dataset_reserve(o.ds, 3, &e), OTF_OK);
  otf_batch b;
  const size_t idx[3] = {2, 0, 1};
  ck_assert_int_eq(otf_dataset_fill(o.ds, &b, idx, 3, &e), OTF_OK);
  check_image_rows(&b, want, 4, idx, 3);
  ck_assert_int_eq(otf_dataset_label(o.ds, 0), 2);
  close_opened(&o);

  otf_model_config bert = text_cfg(10, 8, 2, 3);
  int64_t ids[2 * 3] = {1, 2, 3, 4, 5, 6};
  const uint64_t si[2] = {2, 3};
  t[0] = tensor("input_ids", OTF_DT_I64, 2, si, ids);
  write_tensors(t, 1);
  cfgs[0] = &bert;
  ck_assert_int_eq(try_open(&o, tmp_path(), cfgs, NULL, 1, 0, &e), OTF_OK);
  ck_assert_int_eq(otf_dataset_mlm(o.ds), 0);
  otf_batch b2;
  /* Filling before reserving is refused. */
  ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b2, 0, 1, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_reserve(o.ds, 2, &e), OTF_OK);
  ck_assert_int_eq(otf_dataset_fill_range(o.ds, &b2, 1, 1, &e), OTF_OK);
  ck_assert_ptr_null(b2.attention_mask);
  ck_assert_ptr_null(b2.token_type_ids);
  ck_assert_int_eq(b2.input_ids[0], 4);
  ck_assert_int_eq(b2.input_ids[2], 6);
  close_opened(&o);
  unlink(tmp_path());
}
END_TEST

/* ---- hostile files ------------------------------------------------------- */

START_TEST(hostile_text_files) {
  otf_model_config c = text_cfg(10, 8, 2, 3);
  const unsigned CLS = OTF_DATASET_LABELS_CLS, MLM = OTF_DATASET_LABELS_MLM;
  int64_t ids[2 * 9] = {0}, mask[2 * 3] = {1, 1, 1, 1, 1, 0}, types[3 * 3] = {0};
  float fl[2 * 3] = {0};
  int32_t i32[2 * 3] = {0};
  const uint64_t s23[2] = {2, 3}, s22[2] = {2, 2}, s33[2] = {3, 3}, s6[1] = {6}, s09[2] = {0, 3},
                 s29[2] = {2, 9}, s2[1] = {2}, s3[1] = {3}, s231[3] = {2, 3, 1};
  otf_st_out t[4] = {{0}};

  /* Empty file, and a file without input_ids. */
  write_tensors(t, 0);
  REFUSED1(c, 0, "data file has no tensor 'input_ids'");
  t[0] = tensor("pixel_values", OTF_DT_F32, 2, s23, fl);
  write_tensors(t, 1);
  REFUSED1(c, 0, "(it holds images: pixel_values)");
  /* Dtype, rank, length. */
  t[0] = tensor("input_ids", OTF_DT_F32, 2, s23, fl);
  write_tensors(t, 1);
  REFUSED1(c, 0, "'input_ids' has dtype F32; I64 is needed");
  t[0] = tensor("input_ids", OTF_DT_I64, 1, s6, ids);
  write_tensors(t, 1);
  REFUSED1(c, 0, "'input_ids' has rank 1, expected 2");
  t[0] = tensor("input_ids", OTF_DT_I64, 2, s29, ids);
  write_tensors(t, 1);
  REFUSED1(c, 0, "sequences of 9 tokens; the model takes 1 to 8");
  /* No samples. */
  t[0] = tensor("input_ids", OTF_DT_I64, 2, s09, ids);
  write_tensors(t, 1);
  REFUSED1(c, 0, "data file holds no samples");
  /* Ids out of range, both sides. */
  t[0] = tensor("input_ids", OTF_DT_I64, 2, s23, ids);
  ids[5] = 10;
  write_tensors(t, 1);
  REFUSED1(c, 0, "input_ids[1,2] = 10 is outside the vocabulary [0, 10)");
  ids[5] = -1;
  write_tensors(t, 1);
  REFUSED1(c, 0, "input_ids[1,2] = -1 is outside");
  ids[5] = 9;
  write_tensors(t, 1);
  expect_accepted(&c, 0);
  /* Companions: dtype, rank, shape, values. */
  t[1] = tensor("attention_mask", OTF_DT_I32, 2, s23, i32);
  write_tensors(t, 2);
  REFUSED1(c, 0, "'attention_mask' has dtype I32; I64 is needed");
  t[1] = tensor("attention_mask", OTF_DT_I64, 3, s231, mask);
  write_tensors(t, 2);
  REFUSED1(c, 0, "'attention_mask' has rank 3, expected 2");
  t[1] = tensor("attention_mask", OTF_DT_I64, 2, s22, mask);
  write_tensors(t, 2);
  REFUSED1(c, 0, "'attention_mask' has shape [2, 2]; input_ids has [2, 3]");
  t[1] = tensor("attention_mask", OTF_DT_I64, 2, s23, mask);
  t[2] = tensor("token_type_ids", OTF_DT_I64, 2, s33, types);
  write_tensors(t, 3);
  REFUSED1(c, 0, "'token_type_ids' has shape [3, 3]; input_ids has [2, 3]");
  t[2] = tensor("token_type_ids", OTF_DT_I64, 2, s23, types);
  mask[1] = 2;
  write_tensors(t, 3);
  REFUSED1(c, 0, "attention_mask[0,1] = 2; only 0 and 1 are allowed");
  mask[1] = -1;
  write_tensors(t, 3);
  REFUSED1(c, 0, "attention_mask[0,1] = -1");
  mask[1] = 0;
  types[4] = 2;
  write_tensors(t, 3);
  REFUSED1(c, 0, "token_type_ids[1,1] = 2 is outside [0, 2)");
  types[4] = -3;
  write_tensors(t, 3);
  REFUSED1(c, 0, "token_type_ids[1,1] = -3");
  types[4] = 1;
  write_tensors(t, 3);
  expect_accepted(&c, 0);

  /* Labels: required when asked for, dtype, shape, kind, range. */
  write_tensors(t, 3);
  REFUSED1(c, CLS, "data file has no tensor 'labels'");
  int64_t y[2 * 3] = {0, 2, 0, 0, 0, 0};
  t[3] = tensor("labels", OTF_DT_I32, 1, s2, i32);
  write_tensors(t, 4);
  REFUSED1(c, CLS, "'labels' has dtype I32; I64 is needed");
  t[3] = tensor("labels", OTF_DT_I64, 1, s3, y);
  write_tensors(t, 4);
  REFUSED1(c, CLS, "'labels' has shape [3]; expected [2] (classification) or [N, T]");
  t[3] = tensor("labels", OTF_DT_I64, 3, s231, y);
  write_tensors(t, 4);
  REFUSED1(c, CLS | MLM, "'labels' has shape [2, 3, 1]");
  t[3] = tensor("labels", OTF_DT_I64, 2, s22, y);
  write_tensors(t, 4);
  REFUSED1(c, CLS | MLM, "'labels' has shape [2, 2]");
  t[3] = tensor("labels", OTF_DT_I64, 1, s2, y);
  write_tensors(t, 4);
  expect_accepted(&c, CLS);
  write_tensors(t, 4);
  expect_accepted(&c, 0); /* labels not read */
  write_tensors(t, 4);
  REFUSED1(c, MLM, "per-sample labels (classification) but model");
  y[1] = 3;
  write_tensors(t, 4);
  REFUSED1(c, CLS, "labels[1] = 3 is outside [0, 3)");
  y[1] = -100;
  write_tensors(t, 4);
  REFUSED1(c, CLS, "labels[1] = -100 is outside [0, 3)");
  /* Per-token labels: -100 allowed, the vocabulary bounds the rest. */
  t[3] = tensor("labels", OTF_DT_I64, 2, s23, y);
  y[1] = -100;
  y[4] = 9;
  write_tensors(t, 4);
  REFUSED1(c, CLS, "per-token labels (masked LM) but model BertForSequenceClassification");
  write_tensors(t, 4);
  expect_accepted(&c, MLM);
  y[4] = 10;
  write_tensors(t, 4);
  REFUSED1(c, MLM, "labels[4] = 10 is outside [0, 10) and not -100");
  y[4] = -2;
  write_tensors(t, 4);
  REFUSED1(c, MLM, "labels[4] = -2");
}
END_TEST

START_TEST(hostile_image_files) {
  otf_model_config c = image_cfg(1, 2, 3);
  float px[2 * 8] = {0};
  int64_t i64[2 * 8] = {0}, y[2] = {1, 1};
  const uint64_t s4[4] = {2, 1, 2, 2}, s0[4] = {0, 1, 2, 2}, sw[4] = {2, 2, 2, 2},
                 sh[4] = {2, 1, 2, 4}, s3[3] = {2, 4, 2}, sl2[2] = {2, 4}, sl[1] = {2};
  otf_st_out t[2] = {{0}};
  write_tensors(t, 0);
  REFUSED1(c, 0, "data file has no tensor 'pixel_values'; a ViT needs images");
  t[0] = tensor("input_ids", OTF_DT_I64, 2, sl2, i64);
  write_tensors(t, 1);
  REFUSED1(c, 0, "(it holds text: input_ids)");
  t[0] = tensor("pixel_values", OTF_DT_I64, 4, s4, i64);
  write_tensors(t, 1);
  REFUSED1(c, 0, "'pixel_values' has dtype I64; F32, F16 or BF16 is needed");
  t[0] = tensor("pixel_values", OTF_DT_F32, 3, s3, px);
  write_tensors(t, 1);
  REFUSED1(c, 0, "'pixel_values' has shape [2, 4, 2]; the model needs [N, 1, 2, 2]");
  t[0] = tensor("pixel_values", OTF_DT_F32, 4, sw, px);
  write_tensors(t, 1);
  REFUSED1(c, 0, "'pixel_values' has shape [2, 2, 2, 2]");
  t[0] = tensor("pixel_values", OTF_DT_F32, 4, sh, px);
  write_tensors(t, 1);
  REFUSED1(c, 0, "'pixel_values' has shape [2, 1, 2, 4]");
  t[0] = tensor("pixel_values", OTF_DT_F32, 4, s0, px);
  write_tensors(t, 1);
  REFUSED1(c, 0, "data file holds no samples");
  t[0] = tensor("pixel_values", OTF_DT_F32, 4, s4, px);
  t[1] = tensor("labels", OTF_DT_I64, 1, sl, y);
  write_tensors(t, 2);
  expect_accepted(&c, OTF_DATASET_LABELS_CLS);
  /* Per-token labels make no sense for images. */
  t[1] = tensor("labels", OTF_DT_I64, 2, sl2, i64);
  write_tensors(t, 2);
  REFUSED1(c, OTF_DATASET_LABELS_CLS | OTF_DATASET_LABELS_MLM,
           "'labels' has shape [2, 4]; expected [2] (classification)");
}
END_TEST

/* Every config must accept the data; the first that refuses is named. */
START_TEST(several_configs_name_the_refusing_model) {
  const char *const names[2] = {"parent", "anchor"};
  otf_model_config p = text_cfg(10, 8, 2, 3), a = text_cfg(6, 8, 2, 2);
  const otf_model_config *cfgs[2] = {&p, &a};
  int64_t ids[2 * 3] = {0, 1, 2, 3, 4, 5}, types[2 * 3] = {0, 0, 0, 1, 1, 1}, y[2] = {0, 1};
  const uint64_t s23[2] = {2, 3}, s2[1] = {2};
  otf_st_out t[3] = {tensor("input_ids", OTF_DT_I64, 2, s23, ids),
                     tensor("token_type_ids", OTF_DT_I64, 2, s23, types),
                     tensor("labels", OTF_DT_I64, 1, s2, y)};
  write_tensors(t, 3);
  opened o;
  otf_error e;
  ck_assert_int_eq(try_open(&o, tmp_path(), cfgs, names, 2, OTF_DATASET_LABELS_CLS, &e), OTF_OK);
  close_opened(&o);
  ids[4] = 7;
  write_tensors(t, 3);
  expect_refused(cfgs, names, 2, 0, "input_ids[1,1] = 7 is outside the anchor's vocabulary [0, 6)",
                 __LINE__);
  ids[4] = 4;
  a.type_vocab_size = 1;
  write_tensors(t, 3);
  expect_refused(cfgs, names, 2, 0, "token_type_ids[1,0] = 1 is outside the anchor's [0, 1)",
                 __LINE__);
  a.type_vocab_size = 2;
  p.max_position_embeddings = 2;
  write_tensors(t, 3);
  expect_refused(cfgs, names, 2, 0, "sequences of 3 tokens; the parent takes 1 to 2", __LINE__);
  p.max_position_embeddings = 8;
  y[1] = 2;
  write_tensors(t, 3);
  expect_refused(cfgs, names, 2, OTF_DATASET_LABELS_CLS,
                 "labels[1] = 2 is outside the anchor's [0, 2)", __LINE__);
  /* Ties go to the first config. */
  p.vocab_size = 6;
  ids[4] = 7;
  write_tensors(t, 3);
  expect_refused(cfgs, names, 2, 0, "is outside the parent's vocabulary [0, 6)", __LINE__);
  write_tensors(t + 1, 1);
  expect_refused(cfgs, names, 2, 0, "has no tensor 'input_ids'; BERT models need token ids",
                 __LINE__);
}
END_TEST

START_TEST(several_image_configs) {
  const char *const names[2] = {"parent", "anchor"};
  otf_model_config p = image_cfg(1, 2, 3), a = image_cfg(1, 4, 3);
  const otf_model_config *cfgs[2] = {&p, &a};
  float px[2 * 4] = {0};
  const uint64_t s4[4] = {2, 1, 2, 2};
  otf_st_out t[1] = {tensor("pixel_values", OTF_DT_F32, 4, s4, px)};
  write_tensors(t, 1);
  expect_refused(cfgs, names, 2, 0, "'pixel_values' has shape [2, 1, 2, 2]; the anchor needs [N, 1, 4, 4]",
                 __LINE__);
  write_tensors(t, 0);
  expect_refused(cfgs, names, 2, 0, "ViT models need images", __LINE__);
  /* Configs that take different kinds of input. */
  otf_model_config b = text_cfg(10, 8, 2, 3);
  cfgs[1] = &b;
  write_tensors(t, 1);
  expect_refused(cfgs, names, 2, 0, "takes other inputs", __LINE__);
}
END_TEST

START_TEST(bad_calls) {
  otf_model_config c = text_cfg(10, 64, 2, 3);
  const otf_model_config *cfgs[1] = {&c};
  otf_st_file *f = NULL;
  otf_error e;
  ck_assert_int_eq(otf_st_open(&f, eval_path("text_cls_eval.safetensors"), &e), OTF_OK);
  otf_dataset *ds = (otf_dataset *)&c;
  otf_dataset_opts o = {.cfgs = cfgs, .ncfg = 0};
  ck_assert_int_eq(otf_dataset_open(&ds, f, &o, &e), OTF_E_INVAL);
  ck_assert_ptr_null(ds);
  o.ncfg = 1;
  ck_assert_int_eq(otf_dataset_open(&ds, NULL, &o, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_open(&ds, f, NULL, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_open(NULL, f, &o, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_dataset_reserve(NULL, 4, &e), OTF_E_INVAL);
  otf_batch b;
  ck_assert_int_eq(otf_dataset_fill_range(NULL, &b, 0, 1, &e), OTF_E_INVAL);
  /* The committed text uses ids past this small vocabulary. */
  ck_assert_int_eq(otf_dataset_open(&ds, f, &o, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "outside the vocabulary [0, 10)"), "%s", e.message);
  ck_assert_uint_eq(otf_dataset_count(NULL), 0);
  ck_assert_uint_eq(otf_dataset_seq(NULL), 0);
  ck_assert_int_eq(otf_dataset_mlm(NULL), 0);
  otf_dataset_destroy(NULL);
  otf_st_close(f);
}
END_TEST

/* Fails the k-th allocation of open + reserve + fill for every k: a clean
 * OTF_E_NOMEM and no half-built handle, never a crash or a leak (ASan). */
START_TEST(allocation_failures) {
  otf_model_config cfg = fixture_cfg("bert_cls_s0");
  const otf_model_config *cfgs[1] = {&cfg};
  otf_st_file *f = NULL;
  otf_error e;
  ck_assert_int_eq(otf_st_open(&f, eval_path("text_cls_eval.safetensors"), &e), OTF_OK);
  otf_dataset_opts o = {.cfgs = cfgs, .ncfg = 1, .labels = OTF_DATASET_LABELS_CLS};
  const size_t idx[3] = {9, 2, 399};
  long calls = 0;
  int nomem = 0;
  for(long k = 0; k <= calls + 1; k++) {
    long before = otf_alloc_calls();
    otf_alloc_fail_at(k);
    otf_dataset *ds = NULL;
    otf_batch b;
    otf_status rc = otf_dataset_open(&ds, f, &o, &e);
    if(rc == OTF_OK)
      rc = otf_dataset_reserve(ds, 3, &e);
    if(rc == OTF_OK)
      rc = otf_dataset_fill(ds, &b, idx, 3, &e);
    otf_alloc_fail_at(0);
    if(k == 0) {
      calls = otf_alloc_calls() - before;
      ck_assert_int_ge(calls, 2);
    }
    ck_assert_msg(rc == OTF_OK || rc == OTF_E_NOMEM, "k=%ld: %s %s", k, otf_status_name(rc),
                  e.message);
    ck_assert(rc == OTF_OK || k > 0);
    if(rc != OTF_OK && !ds)
      ck_assert_int_eq(rc, OTF_E_NOMEM);
    nomem += rc == OTF_E_NOMEM;
    otf_dataset_destroy(ds);
  }
  ck_assert_int_eq(nomem, (int)calls);
  otf_st_close(f);
  otf_model_config_free(&cfg);
}
END_TEST

int main(void) {
  Suite *su = suite_create("dataset");
  TCase *tc = tcase_create("dataset");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, vit_file_batches_equal_rows);
  tcase_add_test(tc, text_files_batches_equal_rows);
  tcase_add_test(tc, f16_pixels_and_missing_companions);
  tcase_add_test(tc, hostile_text_files);
  tcase_add_test(tc, hostile_image_files);
  tcase_add_test(tc, several_configs_name_the_refusing_model);
  tcase_add_test(tc, several_image_configs);
  tcase_add_test(tc, bad_calls);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(su, tc);
  return tu_run_suite(su) ? EXIT_FAILURE : EXIT_SUCCESS;
}
