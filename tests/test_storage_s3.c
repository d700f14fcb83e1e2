/* The S3 client and the S3 side of otf_storage against a real
 * S3-compatible server: moto_server on 127.0.0.1, with signature checking
 * on (an IAM user's key; a wrongly signed request fails). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/digest.h"
#include "storage/manifest.h"
#include "storage/remote.h"
#include "storage/s3.h"
#include "storage/storage.h"
#include "tests/support/moto.h"
#include "tests/support/testutil.h"

static tu_moto g_moto;
static int g_moto_ok;

static void moto_up(void) {
  /* Runs in the parent before the tests fork; they all share one server.
   * moto verifies signatures over the query with %2F decoded to '/'
   * (werkzeug), unlike AWS: sign it that way here. */
  setenv("OTF_S3_QUERY_SLASH", "raw", 1);
  g_moto_ok = tu_moto_start(&g_moto) == 0;
}

static void moto_down(void) { tu_moto_stop(&g_moto); }

static otf_storage *open_s3(const char *secret, size_t part, int page) {
  ck_assert_msg(g_moto_ok, "moto_server is not running (see the message above)");
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.file_roots[0] = "/";
  cfg.n_file_roots = 1;
  cfg.s3_endpoint = g_moto.endpoint;
  cfg.s3_region = "us-east-1";
  cfg.s3_access_key = g_moto.access_key;
  cfg.s3_secret_key = secret ? secret : g_moto.secret_key;
  cfg.s3_path_style = -1;
  cfg.s3_part_size = part;
  cfg.s3_list_page = page;
  cfg.cache_dir = tu_scratch_path("cache");
  cfg.timeout_s = 10;
  cfg.max_retries = 1;
  cfg.retry_base_ms = 50;
  otf_storage *s = NULL;
  otf_error e;
  ck_assert_msg(otf_storage_open(&s, &cfg, &e) == OTF_OK, "%s", e.message);
  return s;
}

static void make_bucket(otf_storage *s, const char *b) {
  otf_error e;
  otf_status rc = otf__s3_create_bucket(otf__remote_s3(s), b, &e);
  ck_assert_msg(rc == OTF_OK, "create bucket %s: %s", b, e.message);
}

static void write_random(const char *path, size_t n, uint64_t seed) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  tu_rng r = {seed};
  unsigned char buf[65536];
  for(size_t done = 0; done < n;) {
    size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
    for(size_t i = 0; i < k; i += 8) {
      uint64_t v = tu_next(&r);
      memcpy(buf + i, &v, k - i < 8 ? k - i : 8);
    }
    ck_assert_uint_eq(fwrite(buf, 1, k, f), k);
    done += k;
  }
  fclose(f);
}

static void sha_file(const char *path, char *out) {
  otf_error e;
  ck_assert_int_eq(otf__digest_file(path, 0, UINT64_MAX, out, NULL, NULL, &e), OTF_OK);
}

static int same_files(const char *a, const char *b) {
  char cmd[8500];
  snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
  return system(cmd) == 0;
}

START_TEST(model_round_trip_through_s3) {
  otf_storage *s = open_s3(NULL, 0, 0);
  make_bucket(s, "models");
  otf_error e;
  const char *src = tu_model_path("vit_s0");
  ck_assert_msg(otf_storage_put_dir(s, src, "s3://models/parents/a/", NULL, NULL, &e) == OTF_OK, "%s", e.message);
  char dir[4096];
  ck_assert_msg(otf_storage_fetch_model(s, "s3://models/parents/a/", dir, sizeof(dir), NULL, NULL, &e) == OTF_OK,
                "%s", e.message);
  char a[4200], b[4200];
  snprintf(a, sizeof(a), "%s/model.safetensors", src);
  snprintf(b, sizeof(b), "%s/model.safetensors", dir);
  ck_assert(same_files(a, b));
  snprintf(a, sizeof(a), "%s/config.json", src);
  snprintf(b, sizeof(b), "%s/config.json", dir);
  ck_assert(same_files(a, b));
  /* The manifest is verified on the way in and not part of the model. */
  struct stat st;
  snprintf(b, sizeof(b), "%s/%s", dir, OTF_MANIFEST_NAME);
  ck_assert_int_ne(stat(b, &st), 0);
  /* Same URI again (no trailing slash): a cache hit on the same folder. */
  char dir2[4096];
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://models/parents/a", dir2, sizeof(dir2), NULL, NULL, &e), OTF_OK);
  ck_assert_str_eq(dir, dir2);
  otf_storage_release(s, dir);
  otf_storage_release(s, dir2);
  /* Publishing onto a non-empty prefix is refused. */
  ck_assert_int_eq(otf_storage_put_dir(s, src, "s3://models/parents/a/", NULL, NULL, &e), OTF_E_CONFLICT);
  /* A missing prefix, a missing bucket. */
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://models/nothing/", dir, sizeof(dir), NULL, NULL, &e),
                   OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://no-such-bucket/x/", dir, sizeof(dir), NULL, NULL, &e),
                   OTF_E_NOT_FOUND);
  ck_assert_msg(strstr(e.message, "s3://no-such-bucket/x/") && strstr(e.message, "NoSuchBucket"), "%s", e.message);
  otf_storage_close(s);
}
END_TEST

START_TEST(list_with_continuation) {
  otf_storage *s = open_s3(NULL, 0, 2); /* two keys per page */
  make_bucket(s, "listing");
  char p[4200];
  snprintf(p, sizeof(p), "mkdir -p %s/many/sub", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  for(int i = 0; i < 7; i++) {
    snprintf(p, sizeof(p), "%s/many/%sf%d.bin", tu_scratch(), i % 3 ? "" : "sub/", i);
    write_random(p, 100 + (size_t)i, (uint64_t)i);
  }
  otf_error e;
  ck_assert_msg(otf_storage_put_dir(s, tu_scratch_path("many"), "s3://listing/m/", NULL, NULL, &e) == OTF_OK, "%s",
                e.message);
  otf_manifest m;
  ck_assert_msg(otf__s3_list(otf__remote_s3(s), "listing", "m/", "s3://listing/m/", &m, &e) == OTF_OK, "%s",
                e.message);
  ck_assert_uint_eq(m.n, 8); /* 7 files + the manifest, over 4 pages */
  ck_assert_str_eq(m.e[0].name, "f1.bin");
  ck_assert_uint_eq(m.e[0].size, 101);
  ck_assert_int_eq((int)strlen(m.e[0].etag), 32);
  ck_assert_str_eq(m.e[4].name, OTF_MANIFEST_NAME);
  ck_assert_str_eq(m.e[5].name, "sub/f0.bin");
  ck_assert_str_eq(m.e[7].name, "sub/f6.bin");
  otf__manifest_free(&m);
  /* A folder whose name extends another's is not listed with it. */
  ck_assert_int_eq(otf_storage_put_dir(s, tu_model_path("vit_s0"), "s3://listing/m2/", NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(otf__s3_list(otf__remote_s3(s), "listing", "m/", "s3://listing/m/", &m, &e), OTF_OK);
  ck_assert_uint_eq(m.n, 8);
  otf__manifest_free(&m);
  char dir[4096];
  ck_assert_msg(otf_storage_fetch_model(s, "s3://listing/m/", dir, sizeof(dir), NULL, NULL, &e) == OTF_OK, "%s",
                e.message);
  snprintf(p, sizeof(p), "diff -r %s/many %s", tu_scratch(), dir);
  ck_assert_int_eq(system(p), 0);
  otf_storage_release(s, dir);
  otf_storage_close(s);
}
END_TEST

START_TEST(get_ranges) {
  otf_storage *s = open_s3(NULL, 0, 0);
  make_bucket(s, "ranges");
  write_random(tu_scratch_path("obj"), 100000, 7);
  otf_error e;
  otf__s3 *s3 = otf__remote_s3(s);
  ck_assert_int_eq(otf__s3_put_file(s3, "ranges", "o/obj", "s3://ranges/o/obj", tu_scratch_path("obj"), NULL, NULL, &e),
                   OTF_OK);
  static const struct { uint64_t off, len; } r[] = {{0, 1}, {0, 10}, {12345, 4096}, {99990, 10}, {0, 100000}};
  FILE *f = fopen(tu_scratch_path("obj"), "rb");
  static unsigned char want[100000], got[100000];
  ck_assert_uint_eq(fread(want, 1, sizeof(want), f), sizeof(want));
  fclose(f);
  for(size_t i = 0; i < sizeof(r) / sizeof(*r); i++) {
    ck_assert_msg(otf__s3_get(s3, "ranges", "o/obj", "s3://ranges/o/obj", tu_scratch_path("part"), r[i].off, r[i].len,
                              UINT64_MAX, NULL, NULL, NULL, &e) == OTF_OK, "%s", e.message);
    f = fopen(tu_scratch_path("part"), "rb");
    size_t n = fread(got, 1, sizeof(got), f);
    fclose(f);
    ck_assert_uint_eq(n, r[i].len);
    ck_assert_int_eq(memcmp(got, want + r[i].off, n), 0);
  }
  /* A range past the end is a clean error. */
  ck_assert_int_eq(otf__s3_get(s3, "ranges", "o/obj", "s3://ranges/o/obj", tu_scratch_path("part"), 200000, 10,
                               UINT64_MAX, NULL, NULL, NULL, &e), OTF_E_INVAL);
  /* HEAD gives the size and the ETag. */
  uint64_t size = 0;
  char etag[100];
  ck_assert_int_eq(otf__s3_head(s3, "ranges", "o/obj", "s3://ranges/o/obj", &size, etag, sizeof(etag), &e), OTF_OK);
  ck_assert_uint_eq(size, 100000);
  ck_assert_int_eq((int)strlen(etag), 32);
  ck_assert_int_eq(otf__s3_head(s3, "ranges", "o/nope", "s3://ranges/o/nope", &size, etag, sizeof(etag), &e),
                   OTF_E_NOT_FOUND);
  /* DELETE, then it is gone. */
  ck_assert_int_eq(otf__s3_delete(s3, "ranges", "o/obj", "s3://ranges/o/obj", &e), OTF_OK);
  ck_assert_int_eq(otf__s3_head(s3, "ranges", "o/obj", "s3://ranges/o/obj", &size, etag, sizeof(etag), &e),
                   OTF_E_NOT_FOUND);
  otf_storage_close(s);
}
END_TEST

START_TEST(multipart_20_mib) {
  otf_storage *s = open_s3(NULL, (size_t)5 << 20, 0);
  make_bucket(s, "big");
  const size_t n = (size_t)20 << 20;
  write_random(tu_scratch_path("big.bin"), n + 12345, 11); /* 5 parts, the last one short */
  otf_error e;
  otf__s3 *s3 = otf__remote_s3(s);
  char sha[OTF_SHA256_HEX], want[OTF_SHA256_HEX];
  sha_file(tu_scratch_path("big.bin"), want);
  ck_assert_msg(otf__s3_put_file(s3, "big", "m/big.bin", "s3://big/m/big.bin", tu_scratch_path("big.bin"), sha, NULL,
                                 &e) == OTF_OK, "%s", e.message);
  ck_assert_str_eq(sha, want);
  uint64_t size;
  char etag[100];
  ck_assert_int_eq(otf__s3_head(s3, "big", "m/big.bin", "s3://big/m/big.bin", &size, etag, sizeof(etag), &e), OTF_OK);
  ck_assert_uint_eq(size, n + 12345);
  ck_assert_msg(strstr(etag, "-5") != NULL, "multipart ETag %s", etag);
  /* Fetch it back as a file through the cache: same bytes. */
  char local[4096];
  ck_assert_msg(otf_storage_fetch_file(s, "s3://big/m/big.bin", local, sizeof(local), NULL, NULL, &e) == OTF_OK, "%s",
                e.message);
  sha_file(local, sha);
  ck_assert_str_eq(sha, want);
  otf_storage_release(s, local);
  otf_storage_close(s);
}
END_TEST

START_TEST(wrong_secret_is_access_denied) {
  otf_storage *good = open_s3(NULL, 0, 0);
  make_bucket(good, "secret");
  otf_error e;
  ck_assert_int_eq(otf_storage_put_dir(good, tu_model_path("vit_s0"), "s3://secret/a/", NULL, NULL, &e), OTF_OK);
  otf_storage_close(good);
  otf_storage *s = open_s3("not-the-secret-key", 0, 0);
  char dir[4096];
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://secret/a/", dir, sizeof(dir), NULL, NULL, &e), OTF_E_ACCESS);
  ck_assert_msg(strstr(e.message, "s3://secret/a/") && strstr(e.message, "403"), "%s", e.message);
  /* The secret never appears in an error. */
  ck_assert_ptr_null(strstr(e.message, "not-the-secret-key"));
  ck_assert_int_eq(otf_storage_put_dir(s, tu_model_path("vit_s0"), "s3://secret/b/", NULL, NULL, &e), OTF_E_ACCESS);
  otf_storage_close(s);
  /* An unknown access key too. */
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.s3_endpoint = g_moto.endpoint;
  cfg.s3_access_key = "AKIANOTAKEY000000000";
  cfg.s3_secret_key = g_moto.secret_key;
  cfg.s3_path_style = -1;
  cfg.cache_dir = tu_scratch_path("cache");
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://secret/a/", dir, sizeof(dir), NULL, NULL, &e), OTF_E_ACCESS);
  otf_storage_close(s);
}
END_TEST

START_TEST(credentials_from_env_and_file) {
  ck_assert(g_moto_ok);
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.s3_path_style = -1;
  cfg.cache_dir = tu_scratch_path("cache");
  otf_error e;
  otf_storage *s;
  /* Endpoint and keys from the AWS environment. */
  setenv("AWS_ENDPOINT_URL_S3", g_moto.endpoint, 1);
  setenv("AWS_ACCESS_KEY_ID", g_moto.access_key, 1);
  setenv("AWS_SECRET_ACCESS_KEY", g_moto.secret_key, 1);
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  ck_assert_int_eq(otf__s3_create_bucket(otf__remote_s3(s), "envbucket", &e), OTF_OK);
  otf_storage_close(s);
  /* From a credentials file with a profile; the generic endpoint variable. */
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_ENDPOINT_URL_S3");
  setenv("AWS_ENDPOINT_URL", g_moto.endpoint, 1);
  FILE *f = fopen(tu_scratch_path("creds"), "w");
  fprintf(f, "[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[otf]\n"
             "aws_access_key_id = %s\naws_secret_access_key = %s\n", g_moto.access_key, g_moto.secret_key);
  fclose(f);
  setenv("AWS_SHARED_CREDENTIALS_FILE", tu_scratch_path("creds"), 1);
  setenv("AWS_PROFILE", "otf", 1);
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  ck_assert_msg(otf_storage_put_dir(s, tu_model_path("vit_s1"), "s3://envbucket/m/", NULL, NULL, &e) == OTF_OK, "%s",
                e.message);
  otf_storage_close(s);
  setenv("AWS_PROFILE", "default", 1);
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  char dir[4096];
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://envbucket/m/", dir, sizeof(dir), NULL, NULL, &e), OTF_E_ACCESS);
  otf_storage_close(s);
  /* No credentials at all: a clear error before any request. */
  unsetenv("AWS_SHARED_CREDENTIALS_FILE");
  unsetenv("AWS_PROFILE");
  setenv("HOME", tu_scratch(), 1);
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_fetch_model(s, "s3://envbucket/m/", dir, sizeof(dir), NULL, NULL, &e),
                   OTF_E_UNAUTHORIZED);
  ck_assert_ptr_nonnull(strstr(e.message, "AWS_ACCESS_KEY_ID"));
  otf_storage_close(s);
  /* Bad settings are refused at open. */
  cfg.s3_part_size = 1 << 20;
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_E_INVAL);
  cfg.s3_part_size = 0;
  cfg.s3_endpoint = "ftp://x";
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_E_INVAL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("storage_s3");
  TCase *tc = tcase_create("moto");
  tcase_set_timeout(tc, 120);
  tcase_add_unchecked_fixture(tc, moto_up, moto_down);
  tcase_add_checked_fixture(tc, tu_scratch_setup, tu_scratch_teardown);
  tcase_add_test(tc, model_round_trip_through_s3);
  tcase_add_test(tc, list_with_continuation);
  tcase_add_test(tc, get_ranges);
  tcase_add_test(tc, multipart_20_mib);
  tcase_add_test(tc, wrong_secret_is_access_denied);
  tcase_add_test(tc, credentials_from_env_and_file);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
