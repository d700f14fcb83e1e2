/* Checkpoints: single files, folders, sharded folders with an index, and
 * every way an index can disagree with its shards or point outside its
 * folder (each must be a clear error naming the file and the tensor). */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/checkpoint.h"
#include "tests/support/testutil.h"

static char g_dir[64];

/* A fresh folder under /tmp for each test; removed by rm_dir. */
static const char *make_dir(void) {
  snprintf(g_dir, sizeof(g_dir), "/tmp/otf_ckpt_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
  return g_dir;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void rm_dir(const char *dir) {
  ck_assert_int_eq(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static char *path_in(char *buf, size_t size, const char *dir, const char *name) {
  snprintf(buf, size, "%s/%s", dir, name);
  return buf;
}

/* Writes a shard holding the named tensors (comma-separated), each an F32
 * [2] whose values encode the name's first byte, so reads can be checked. */
static float g_vals[64][2];
static void write_shard(const char *dir, const char *file, const char *names) {
  char copy[512], path[512];
  snprintf(copy, sizeof(copy), "%s", names);
  otf_st_out t[64];
  size_t n = 0;
  for(char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
      tok = strtok_r(NULL, ",", &save)) {
    g_vals[n][0] = (float)(unsigned char)tok[0];
    g_vals[n][1] = (float)strlen(tok);
    t[n] = (otf_st_out){
        .name = tok, .dtype = OTF_DT_F32, .rank = 1, .shape = {2}, .data = g_vals[n]};
    n++;
  }
  otf_error e;
  ck_assert_msg(otf_st_write(path_in(path, sizeof(path), dir, file), t, n, NULL, 0, &e) ==
                    OTF_OK,
                "%s", e.message);
}

static void write_text(const char *dir, const char *file, const char *text) {
  char path[512];
  FILE *fp = fopen(path_in(path, sizeof(path), dir, file), "wb");
  ck_assert_ptr_nonnull(fp);
  ck_assert_uint_eq(fwrite(text, 1, strlen(text), fp), strlen(text));
  ck_assert_int_eq(fclose(fp), 0);
}

static uint64_t file_size(const char *dir, const char *file) {
  char path[512];
  struct stat st;
  ck_assert_int_eq(stat(path_in(path, sizeof(path), dir, file), &st), 0);
  return (uint64_t)st.st_size;
}

#define INDEX "model.safetensors.index.json"

/* Three shards; names interleave across them so the merged order is not
 * the shard order. */
static void write_sharded(const char *dir) {
  write_shard(dir, "model-00001-of-00003.safetensors", "b.weight,e.bias");
  write_shard(dir, "model-00002-of-00003.safetensors", "a.weight,d.weight");
  write_shard(dir, "model-00003-of-00003.safetensors", "c.weight");
  write_text(dir, INDEX,
             "{\"metadata\": {\"total_size\": 40},\n"
             " \"weight_map\": {\n"
             "  \"a.weight\": \"model-00002-of-00003.safetensors\",\n"
             "  \"b.weight\": \"model-00001-of-00003.safetensors\",\n"
             "  \"c.weight\": \"model-00003-of-00003.safetensors\",\n"
             "  \"d.weight\": \"model-00002-of-00003.safetensors\",\n"
             "  \"e.bias\": \"model-00001-of-00003.safetensors\"}}\n");
}

/* Opens dir and expects want; the message must contain each non-NULL
 * substring. Returns nothing: a failure stops the test. */
static void expect_open(const char *path, otf_status want, const char *s1,
                        const char *s2) {
  otf_ckpt *c = NULL;
  otf_error e;
  otf_error_clear(&e);
  otf_status rc = otf_ckpt_open(&c, path, &e);
  ck_assert_msg(rc == want, "open %s: got %s (%s), want %s", path, otf_status_name(rc),
                e.message, otf_status_name(want));
  ck_assert((rc == OTF_OK) == (c != NULL));
  ck_assert_msg(!s1 || strstr(e.message, s1), "message '%s' lacks '%s'", e.message, s1);
  ck_assert_msg(!s2 || strstr(e.message, s2), "message '%s' lacks '%s'", e.message, s2);
  otf_ckpt_close(c);
}

START_TEST(single_file) {
  const char *dir = make_dir();
  char path[512];
  write_shard(dir, "weights.safetensors", "z,y,x");
  otf_ckpt *c = NULL;
  otf_error e;
  ck_assert_int_eq(
      otf_ckpt_open(&c, path_in(path, sizeof(path), dir, "weights.safetensors"), &e),
      OTF_OK);
  ck_assert_uint_eq(otf_ckpt_count(c), 3);
  ck_assert_uint_eq(otf_ckpt_shards(c), 1);
  ck_assert_uint_eq(otf_ckpt_bytes(c), file_size(dir, "weights.safetensors"));
  ck_assert_str_eq(otf_ckpt_at(c, 0)->name, "x");
  ck_assert_str_eq(otf_ckpt_at(c, 2)->name, "z");
  ck_assert_ptr_null(otf_ckpt_at(c, 3));
  ck_assert_ptr_nonnull(otf_ckpt_find(c, "y"));
  ck_assert_ptr_null(otf_ckpt_find(c, "w"));
  otf_ckpt_close(c);
  /* A corrupt single file: the error names it. */
  write_text(dir, "bad.safetensors", "\x08\0\0\0\0\0\0\0{\"a\":1} ");
  expect_open(path_in(path, sizeof(path), dir, "bad.safetensors"), OTF_E_FORMAT,
              "bad.safetensors", NULL);
  rm_dir(dir);
}
END_TEST

START_TEST(folder_with_model_safetensors) {
  const char *dir = make_dir();
  write_shard(dir, "model.safetensors", "encoder.w,decoder.w");
  otf_ckpt *c = NULL;
  ck_assert_int_eq(otf_ckpt_open(&c, dir, NULL), OTF_OK);
  ck_assert_uint_eq(otf_ckpt_count(c), 2);
  ck_assert_uint_eq(otf_ckpt_shards(c), 1);
  ck_assert_uint_eq(otf_ckpt_bytes(c), file_size(dir, "model.safetensors"));
  ck_assert_str_eq(otf_ckpt_at(c, 0)->name, "decoder.w");
  otf_ckpt_close(c);
  /* A trailing slash names the same folder. */
  char slash[128];
  snprintf(slash, sizeof(slash), "%s/", dir);
  ck_assert_int_eq(otf_ckpt_open(&c, slash, NULL), OTF_OK);
  otf_ckpt_close(c);
  rm_dir(dir);
}
END_TEST

START_TEST(sharded_folder) {
  const char *dir = make_dir();
  write_sharded(dir);
  otf_ckpt *c = NULL;
  otf_error e;
  ck_assert_msg(otf_ckpt_open(&c, dir, &e) == OTF_OK, "%s", e.message);
  ck_assert_uint_eq(otf_ckpt_count(c), 5);
  ck_assert_uint_eq(otf_ckpt_shards(c), 3);
  ck_assert_uint_eq(otf_ckpt_bytes(c),
                    file_size(dir, "model-00001-of-00003.safetensors") +
                        file_size(dir, "model-00002-of-00003.safetensors") +
                        file_size(dir, "model-00003-of-00003.safetensors"));
  static const char *order[] = {"a.weight", "b.weight", "c.weight", "d.weight", "e.bias"};
  for(size_t k = 0; k < 5; k++) {
    const otf_st_tensor *t = otf_ckpt_at(c, k);
    ck_assert_str_eq(t->name, order[k]);
    ck_assert_ptr_eq(otf_ckpt_find(c, order[k]), t);
    ck_assert_ptr_eq(otf_ckpt_at(c, 0) + k, t); /* one array: index = offset */
    float v[2];
    ck_assert_int_eq(otf_st_read_f32(v, t, NULL), OTF_OK);
    ck_assert(v[0] == (float)order[k][0] && v[1] == (float)strlen(order[k]));
  }
  ck_assert_ptr_null(otf_ckpt_find(c, "a"));
  ck_assert_ptr_null(otf_ckpt_find(c, "zz"));
  otf_ckpt_close(c);
  rm_dir(dir);
}
END_TEST

START_TEST(index_wins_over_single_file) {
  const char *dir = make_dir();
  write_sharded(dir);
  write_shard(dir, "model.safetensors", "old.weight");
  otf_ckpt *c = NULL;
  ck_assert_int_eq(otf_ckpt_open(&c, dir, NULL), OTF_OK);
  ck_assert_uint_eq(otf_ckpt_shards(c), 3);
  ck_assert_ptr_null(otf_ckpt_find(c, "old.weight"));
  ck_assert_ptr_nonnull(otf_ckpt_find(c, "c.weight"));
  otf_ckpt_close(c);
  /* ... even when the index is broken: no silent fallback to the old file. */
  write_text(dir, INDEX, "{");
  expect_open(dir, OTF_E_FORMAT, INDEX, NULL);
  rm_dir(dir);
}
END_TEST

START_TEST(index_disagrees_with_shards) {
  const char *dir = make_dir();
  char path[512];
  write_sharded(dir);
  /* Missing shard. */
  ck_assert_int_eq(
      unlink(path_in(path, sizeof(path), dir, "model-00003-of-00003.safetensors")), 0);
  expect_open(dir, OTF_E_FORMAT, "model-00003-of-00003.safetensors", "does not exist");
  /* Tensor in the wrong shard: the map says shard 3, it is in shard 1. */
  write_shard(dir, "model-00003-of-00003.safetensors", "f.weight");
  write_shard(dir, "model-00001-of-00003.safetensors", "b.weight,e.bias,c.weight");
  write_text(dir, INDEX,
             "{\"weight_map\": {\"a.weight\": \"model-00002-of-00003.safetensors\","
             "\"b.weight\": \"model-00001-of-00003.safetensors\","
             "\"c.weight\": \"model-00003-of-00003.safetensors\","
             "\"d.weight\": \"model-00002-of-00003.safetensors\","
             "\"e.bias\": \"model-00001-of-00003.safetensors\"}}");
  expect_open(dir, OTF_E_FORMAT, "'c.weight'", "does not hold it");
  /* Tensor in two shards, the map naming one of them. */
  write_shard(dir, "model-00003-of-00003.safetensors", "c.weight");
  expect_open(dir, OTF_E_FORMAT, "'c.weight'", "two shards");
  /* The error points at the map entry, for an API client. */
  otf_ckpt *c = NULL;
  otf_error e;
  ck_assert_int_eq(otf_ckpt_open(&c, dir, &e), OTF_E_FORMAT);
  ck_assert_str_eq(e.pointer, "/weight_map/c.weight");
  /* Tensor in a shard but not in the map. */
  write_shard(dir, "model-00001-of-00003.safetensors", "b.weight,e.bias,stray");
  expect_open(dir, OTF_E_FORMAT, "'stray'", "not in the weight_map");
  /* A shard that is itself corrupt: the error names it. */
  write_text(dir, "model-00001-of-00003.safetensors", "\x02\0\0\0\0\0\0\0{}x");
  expect_open(dir, OTF_E_FORMAT, "model-00001-of-00003.safetensors", NULL);
  rm_dir(dir);
}
END_TEST

START_TEST(shard_names_outside_the_folder) {
  const char *dir = make_dir();
  write_shard(dir, "s.safetensors", "a");
  static const char *bad[] = {"../x.safetensors",  "/etc/passwd",    "", ".", "..",
                              "sub/s.safetensors", "./s.safetensors"};
  for(size_t k = 0; k < sizeof(bad) / sizeof(*bad); k++) {
    char idx[256];
    snprintf(idx, sizeof(idx), "{\"weight_map\": {\"a\": \"%s\"}}", bad[k]);
    write_text(dir, INDEX, idx);
    expect_open(dir, OTF_E_FORMAT, INDEX, "shard file name");
  }
  /* A symlinked shard pointing outside the folder is refused ... */
  char outside_dir[64], target[512], link[512];
  snprintf(outside_dir, sizeof(outside_dir), "/tmp/otf_ckpt_out_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(outside_dir));
  write_shard(outside_dir, "secret.safetensors", "a");
  ck_assert_int_eq(
      symlink(path_in(target, sizeof(target), outside_dir, "secret.safetensors"),
              path_in(link, sizeof(link), dir, "link.safetensors")),
      0);
  write_text(dir, INDEX, "{\"weight_map\": {\"a\": \"link.safetensors\"}}");
  expect_open(dir, OTF_E_FORMAT, "link.safetensors", "outside the folder");
  /* ... also through a relative link ... */
  unlink(link);
  char rel[512];
  snprintf(rel, sizeof(rel), "../%s/secret.safetensors", outside_dir + strlen("/tmp/"));
  ck_assert_int_eq(symlink(rel, link), 0);
  expect_open(dir, OTF_E_FORMAT, "link.safetensors", "outside the folder");
  /* ... while one to a file inside the folder is fine. */
  unlink(link);
  ck_assert_int_eq(symlink("s.safetensors", link), 0);
  expect_open(dir, OTF_OK, NULL, NULL);
  /* A dangling link is a missing shard. */
  unlink(link);
  ck_assert_int_eq(symlink("nowhere.safetensors", link), 0);
  expect_open(dir, OTF_E_FORMAT, "link.safetensors", "does not exist");
  rm_dir(outside_dir);
  rm_dir(dir);
}
END_TEST

START_TEST(malformed_index) {
  const char *dir = make_dir();
  write_shard(dir, "s.safetensors", "a");
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"", "invalid JSON"},
      {"{", "invalid JSON"},
      {"{\"weight_map\": {\"a\": \"s.safetensors\"}} x", "invalid JSON"},
      {"[]", "not a JSON object"},
      {"{}", "weight_map"},
      {"{\"weight_map\": []}", "weight_map"},
      {"{\"weight_map\": {}}", "names no tensors"},
      {"{\"weight_map\": {\"a\": 1}}", "'a'"},
      {"{\"weight_map\": {\"a\": null}}", "'a'"},
      {"{\"weight_map\": {\"a\": \"s\\u0000.safetensors\"}}", "invalid JSON"},
      {"{\"weight_map\": {\"a\": \"s.safetensors\", \"a\": \"s.safetensors\"}}",
       "duplicate"},
      {"{\"weight_map\": {\"a\": \"s.safetensors\"}, \"weight_map\": {}}", "duplicate"},
  };
  for(size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
    write_text(dir, INDEX, cases[k].text);
    expect_open(dir, OTF_E_FORMAT, INDEX, cases[k].msg);
  }
  /* The index may carry other keys. */
  write_text(dir, INDEX,
             "{\"metadata\": {\"total_size\": 8}, \"weight_map\": {\"a\": "
             "\"s.safetensors\"}, \"extra\": [1, 2]}");
  expect_open(dir, OTF_OK, NULL, NULL);
  rm_dir(dir);
}
END_TEST

START_TEST(too_many_shards) {
  const char *dir = make_dir();
  size_t cap = 64 + (size_t)(OTF_MAX_SHARDS + 1) * 40;
  char *text = malloc(cap);
  ck_assert_ptr_nonnull(text);
  size_t at = (size_t)snprintf(text, cap, "{\"weight_map\": {");
  for(int k = 0; k <= OTF_MAX_SHARDS; k++)
    at += (size_t)snprintf(text + at, cap - at, "%s\"t%d\": \"s%d.safetensors\"",
                           k ? "," : "", k, k);
  snprintf(text + at, cap - at, "}}");
  write_text(dir, INDEX, text);
  free(text);
  expect_open(dir, OTF_E_TOO_LARGE, INDEX, "shards exceed");
  rm_dir(dir);
}
END_TEST

START_TEST(nothing_there) {
  const char *dir = make_dir();
  expect_open(dir, OTF_E_NOT_FOUND, dir, INDEX);
  expect_open(dir, OTF_E_NOT_FOUND, "model.safetensors", NULL);
  /* Other files do not count. */
  write_shard(dir, "pytorch_model.safetensors", "a");
  expect_open(dir, OTF_E_NOT_FOUND, dir, NULL);
  char path[512];
  expect_open(path_in(path, sizeof(path), dir, "missing"), OTF_E_NOT_FOUND, "missing",
              NULL);
  rm_dir(dir);
}
END_TEST

/* Every allocation of a sharded open fails once in turn: each must give
 * OTF_E_NOMEM (or OTF_OK where the failed call was optional), never a
 * crash, and ASan's leak check must stay quiet. */
START_TEST(allocation_failures_are_clean) {
  const char *dir = make_dir();
  write_sharded(dir);
  otf_ckpt *c = NULL;
  long before = otf_alloc_calls();
  ck_assert_int_eq(otf_ckpt_open(&c, dir, NULL), OTF_OK);
  long calls = otf_alloc_calls() - before;
  otf_ckpt_close(c);
  ck_assert_int_gt(calls, 5);
  for(long k = 1; k <= calls + 1; k++) {
    otf_error e;
    otf_error_clear(&e);
    c = NULL;
    otf_alloc_fail_at(k);
    otf_status rc = otf_ckpt_open(&c, dir, &e);
    otf_alloc_fail_at(0);
    ck_assert_msg(rc == OTF_OK || rc == OTF_E_NOMEM, "k = %ld: %s (%s)", k,
                  otf_status_name(rc), e.message);
    ck_assert((rc == OTF_OK) == (c != NULL));
    if(k <= calls)
      ck_assert_msg(rc == OTF_E_NOMEM, "k = %ld: an allocation failure went unnoticed",
                    k);
    otf_ckpt_close(c);
  }
  rm_dir(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("checkpoint");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, single_file);
  tcase_add_test(tc, folder_with_model_safetensors);
  tcase_add_test(tc, sharded_folder);
  tcase_add_test(tc, index_wins_over_single_file);
  tcase_add_test(tc, index_disagrees_with_shards);
  tcase_add_test(tc, shard_names_outside_the_folder);
  tcase_add_test(tc, malformed_index);
  tcase_add_test(tc, too_many_shards);
  tcase_add_test(tc, nothing_there);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
