/* Streamed output: the incremental safetensors writer (same bytes as
 * otf_st_write whatever order the tensors come in; nothing left behind when
 * a tensor is missing or the writer is dropped), and otf_fuse_dirs, which
 * streams the fused weights into the output file layer by layer, against
 * otf_fuse + otf_fused_save, which holds the whole fused model first: the
 * files must be identical, byte for byte, for every output dtype. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusion/fuse.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
  ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Three tensors of different dtypes, given out of name order. */
typedef struct three {
  float a[6];
  uint16_t b[5];
  double c[1];
  otf_st_out t[3];
} three;

static void three_init(three *x) {
  memset(x, 0, sizeof(*x));
  for(int i = 0; i < 6; i++)
    x->a[i] = (float)i * 0.5f - 1.0f;
  for(int i = 0; i < 5; i++)
    x->b[i] = (uint16_t)(0x3c00 + i);
  x->c[0] = 3.25;
  x->t[0] = (otf_st_out){.name = "zeta", .dtype = OTF_DT_F32, .rank = 2, .shape = {2, 3},
                         .data = x->a};
  x->t[1] = (otf_st_out){.name = "alpha", .dtype = OTF_DT_F16, .rank = 1, .shape = {5},
                         .data = x->b};
  x->t[2] = (otf_st_out){.name = "mid", .dtype = OTF_DT_F64, .rank = 0, .data = x->c};
}

START_TEST(writer_matches_write_in_any_order) {
  three x;
  three_init(&x);
  otf_error e;
  const char *meta[] = {"k", "v"};
  const char *ref = tu_scratch_path("ref.safetensors"), *inc = tu_scratch_path("inc.safetensors");
  ck_assert_int_eq(otf_st_write(ref, x.t, 3, meta, 1, &e), OTF_OK);
  static const size_t orders[3][3] = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}};
  for(int o = 0; o < 3; o++) {
    unlink(inc);
    otf_st_writer *w = NULL;
    ck_assert_int_eq(otf_st_writer_open(&w, inc, x.t, 3, meta, 1, &e), OTF_OK);
    ck_assert(!exists(inc)); /* only the temporary file exists until finish */
    for(int k = 0; k < 3; k++)
      ck_assert_int_eq(otf_st_writer_put(w, orders[o][k], x.t[orders[o][k]].data, &e), OTF_OK);
    ck_assert_int_eq(otf_st_writer_finish(w, &e), OTF_OK);
    otf_st_writer_free(w);
    size_t n1, n2;
    unsigned char *a = slurp(ref, &n1), *b = slurp(inc, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(memcmp(a, b, n1) == 0, "order %d: bytes differ from otf_st_write", o);
    free(a);
    free(b);
  }
  /* And it reads back. */
  otf_st_file *f = NULL;
  ck_assert_int_eq(otf_st_open(&f, inc, &e), OTF_OK);
  const otf_st_tensor *t = otf_st_find(f, "zeta");
  ck_assert_ptr_nonnull(t);
  ck_assert(memcmp(t->data, x.a, sizeof(x.a)) == 0);
  otf_st_close(f);
}
END_TEST

static int dir_is_empty(const char *dir) {
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", dir);
  return system(cmd) == 0;
}

START_TEST(writer_failures_leave_nothing) {
  three x;
  three_init(&x);
  otf_error e;
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/w", tu_scratch());
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  char path[800];
  snprintf(path, sizeof(path), "%s/out.safetensors", dir);
  otf_st_writer *w = NULL;
  /* A missing tensor: finish refuses, free removes the temporary file. */
  ck_assert_int_eq(otf_st_writer_open(&w, path, x.t, 3, NULL, 0, &e), OTF_OK);
  ck_assert_int_eq(otf_st_writer_put(w, 0, x.t[0].data, &e), OTF_OK);
  ck_assert_int_eq(otf_st_writer_put(w, 0, x.t[0].data, &e), OTF_E_INVAL);
  ck_assert_msg(strstr(e.message, "twice") != NULL, "%s", e.message);
  ck_assert_int_eq(otf_st_writer_put(w, 3, x.t[0].data, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_st_writer_finish(w, &e), OTF_E_INTERNAL);
  ck_assert_msg(strstr(e.message, "1 of 3") != NULL, "%s", e.message);
  otf_st_writer_free(w);
  ck_assert(dir_is_empty(dir));
  /* Dropped half way. */
  ck_assert_int_eq(otf_st_writer_open(&w, path, x.t, 3, NULL, 0, &e), OTF_OK);
  ck_assert_int_eq(otf_st_writer_put(w, 1, x.t[1].data, &e), OTF_OK);
  otf_st_writer_free(w);
  ck_assert(dir_is_empty(dir));
  /* Duplicate names are refused before anything is created. */
  x.t[2].name = "zeta";
  ck_assert_int_eq(otf_st_writer_open(&w, path, x.t, 3, NULL, 0, &e), OTF_E_INVAL);
  ck_assert_ptr_null(w);
  ck_assert(dir_is_empty(dir));
  /* A folder that does not exist. */
  snprintf(path, sizeof(path), "%s/nope/out.safetensors", dir);
  x.t[2].name = "mid";
  ck_assert_int_eq(otf_st_writer_open(&w, path, x.t, 3, NULL, 0, &e), OTF_E_IO);
  ck_assert_ptr_null(w);
}
END_TEST

/* otf_fuse_dirs (streamed) vs otf_fuse + otf_fused_save (held). */
static void streamed_equals_held(const char *m1, const char *m2, otf_align align,
                                 otf_dtype dt, const char *tag) {
  otf_fuse_opts o;
  otf_fuse_opts_default(&o);
  o.align = align;
  if(align == OTF_ALIGN_ACTIVATIONS) {
    o.calibration = tu_eval_path(strncmp(m1, "vit", 3) ? "text_cls_train.safetensors"
                                                        : "digits_train.safetensors");
    o.samples = 40;
  }
  otf_error e;
  const char *dirs[2] = {tu_model_path(m1), tu_model_path(m2)};
  char streamed[512], held[512], p1[700], p2[700];
  snprintf(streamed, sizeof(streamed), "%s/%s_streamed", tu_scratch(), tag);
  snprintf(held, sizeof(held), "%s/%s_held", tu_scratch(), tag);
  ck_assert_msg(otf_fuse_dirs(dirs, 2, &o, NULL, streamed, dt, NULL, &e) == OTF_OK, "%s",
                e.message);
  otf_model *m[2] = {NULL, NULL};
  for(int k = 0; k < 2; k++)
    ck_assert_msg(otf_model_open(&m[k], dirs[k], 0, &e) == OTF_OK, "%s", e.message);
  otf_fused *f = NULL;
  ck_assert_msg(otf_fuse(&f, (const otf_model *const *)m, 2, &o, NULL, &e) == OTF_OK, "%s",
                e.message);
  ck_assert_msg(otf_fused_save(f, held, dt, &e) == OTF_OK, "%s", e.message);
  otf_fused_free(f);
  otf_model_close(m[0]);
  otf_model_close(m[1]);
  static const char *const files[] = {"model.safetensors", "config.json"};
  for(size_t i = 0; i < 2; i++) {
    snprintf(p1, sizeof(p1), "%s/%s", streamed, files[i]);
    snprintf(p2, sizeof(p2), "%s/%s", held, files[i]);
    size_t n1, n2;
    unsigned char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
    ck_assert_msg(n1 == n2 && memcmp(a, b, n1) == 0, "%s: %s differs (%zu vs %zu bytes)", tag,
                  files[i], n1, n2);
    free(a);
    free(b);
  }
  /* No partial folder is left beside the output. */
  snprintf(p1, sizeof(p1), "ls -d %s.partial.* >/dev/null 2>&1", streamed);
  ck_assert(system(p1) != 0);
}

START_TEST(fuse_streams_the_same_bytes) {
  streamed_equals_held("vit_s0", "vit_s1", OTF_ALIGN_WEIGHTS, OTF_DT_COUNT, "vit_w");
  streamed_equals_held("vit_s0", "vit_s1", OTF_ALIGN_WEIGHTS, OTF_DT_F16, "vit_w16");
  streamed_equals_held("bert_cls_s0", "bert_cls_s1", OTF_ALIGN_WEIGHTS, OTF_DT_BF16, "bert_wb");
  streamed_equals_held("bert_cls_s0", "bert_cls_s1", OTF_ALIGN_ACTIVATIONS, OTF_DT_F32,
                       "bert_a");
  streamed_equals_held("vit_s0", "vit_wide", OTF_ALIGN_ACTIVATIONS, OTF_DT_COUNT, "vit_het");
}
END_TEST

/* A fusion that fails half way (here: cancelled before the first layer)
 * leaves neither the output nor its partial folder. */
static int cancel_flag = 0;
static void cancel_on_align(void *ctx, const char *stage, double frac) {
  (void)ctx;
  (void)frac;
  if(!strcmp(stage, "aligning"))
    cancel_flag = 1;
}

START_TEST(failed_fusion_leaves_nothing) {
  otf_fuse_opts o;
  otf_fuse_opts_default(&o);
  otf_error e;
  const char *dirs[2] = {tu_model_path("vit_s0"), tu_model_path("vit_s1")};
  cancel_flag = 0;
  otf_fuse_ctl ctl = {.progress = cancel_on_align, .cancel = &cancel_flag};
  char out[512], cmd[700];
  snprintf(out, sizeof(out), "%s/cancelled", tu_scratch());
  ck_assert_int_eq(otf_fuse_dirs(dirs, 2, &o, &ctl, out, OTF_DT_F32, NULL, &e), OTF_E_CANCELLED);
  ck_assert(!exists(out));
  snprintf(cmd, sizeof(cmd), "ls -d %s.partial.* >/dev/null 2>&1", out);
  ck_assert(system(cmd) != 0);
  /* A bad dtype is refused before anything is made. */
  ck_assert_int_eq(otf_fuse_dirs(dirs, 2, &o, NULL, out, OTF_DT_I64, NULL, &e), OTF_E_INVAL);
  ck_assert(!exists(out));
}
END_TEST

int main(void) {
  Suite *s = suite_create("stream");
  TCase *tc = tcase_create("stream");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, tu_scratch_setup, tu_scratch_teardown);
  tcase_add_test(tc, writer_matches_write_in_any_order);
  tcase_add_test(tc, writer_failures_leave_nothing);
  tcase_add_test(tc, fuse_streams_the_same_bytes);
  tcase_add_test(tc, failed_fusion_leaves_nothing);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) ? 1 : 0;
}
