/* Storage against a misbehaving HTTP server of our own on loopback:
 * retries on 5xx/429 (bounded, not on other 4xx), bodies cut short and
 * stalls detected, nothing partial ever cached or published; and the
 * cache: one download for concurrent callers (threads and processes), LRU
 * eviction that spares pinned entries, entries surviving a restart. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storage/digest.h"
#include "storage/manifest.h"
#include "storage/remote.h"
#include "storage/s3.h"
#include "storage/storage.h"
#include "tests/support/faultsrv.h"
#include "tests/support/testutil.h"

static tu_fault F;
static unsigned char BODY_A[200000], BODY_B[150000], BODY_C[120000];

static void fill(unsigned char *p, size_t n, uint64_t seed) {
  tu_rng r = {seed};
  for(size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(tu_next(&r) >> 56);
}

static void setup(void) {
  tu_scratch_setup();
  memset(&F, 0, sizeof(F));
  ck_assert_int_eq(tu_fault_start(&F), 0);
  fill(BODY_A, sizeof(BODY_A), 1);
  fill(BODY_B, sizeof(BODY_B), 2);
  fill(BODY_C, sizeof(BODY_C), 3);
}

static void teardown(void) {
  tu_fault_stop(&F);
  tu_scratch_teardown();
}

static otf_storage *open_st(int retries, long timeout, uint64_t cache_max, int allow_private) {
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.allow_private_hosts = allow_private;
  cfg.s3_path_style = -1;
  cfg.s3_endpoint = F.base;
  cfg.s3_access_key = "AKIDTEST";
  cfg.s3_secret_key = "secret";
  cfg.cache_dir = tu_scratch_path("cache");
  cfg.cache_max_bytes = cache_max;
  cfg.timeout_s = timeout;
  cfg.max_retries = retries;
  cfg.retry_base_ms = 10;
  otf_storage *s = NULL;
  otf_error e;
  ck_assert_msg(otf_storage_open(&s, &cfg, &e) == OTF_OK, "%s", e.message);
  return s;
}

static char *url(const char *path) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s%s", F.base, path);
  return b;
}

/* Entries in the cache (complete ones) and leftovers in its tmp/. */
static int count_dir(const char *sub) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/%s", tu_scratch_path("cache"), sub);
  DIR *d = opendir(p);
  if(!d)
    return 0;
  int n = 0;
  struct dirent *e;
  while((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static int file_equals(const char *path, const void *want, size_t n) {
  FILE *f = fopen(path, "rb");
  if(!f)
    return 0;
  unsigned char *b = malloc(n + 1);
  size_t got = fread(b, 1, n + 1, f);
  fclose(f);
  int ok = got == n && !memcmp(b, want, n);
  free(b);
  return ok;
}

START_TEST(server_errors_are_retried_then_succeed) {
  tu_fault_route *r = tu_fault_add(&F, "/files/a.bin", BODY_A, sizeof(BODY_A));
  r->fail_first = 2; /* 500, 500, then the body */
  tu_fault_route *t = tu_fault_add(&F, "/files/b.bin", BODY_B, sizeof(BODY_B));
  t->fail_first = 1;
  t->fail_status = 429;
  otf_storage *s = open_st(3, 5, 0, 1);
  char local[4096];
  otf_error e;
  ck_assert_msg(otf_storage_fetch_file(s, url("/files/a.bin"), local, sizeof(local), NULL, NULL, &e) == OTF_OK, "%s",
                e.message);
  ck_assert_int_eq(tu_fault_count(&F, "/files/a.bin", "GET"), 3);
  ck_assert(file_equals(local, BODY_A, sizeof(BODY_A)));
  otf_storage_release(s, local);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/files/b.bin"), local, sizeof(local), NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(tu_fault_count(&F, "/files/b.bin", "GET"), 2);
  otf_storage_release(s, local);
  otf_storage_close(s);
}
END_TEST

START_TEST(retries_are_bounded_and_4xx_not_retried) {
  tu_fault_route *r = tu_fault_add(&F, "/down", BODY_A, sizeof(BODY_A));
  r->fail_first = 100;
  tu_fault_route *d = tu_fault_add(&F, "/denied", BODY_A, 10);
  d->status = 403;
  tu_fault_add(&F, "/gone", BODY_A, 10)->status = 410;
  otf_storage *s = open_st(3, 5, 0, 1);
  char local[4096];
  otf_error e;
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/down"), local, sizeof(local), NULL, NULL, &e), OTF_E_UNREACHABLE);
  ck_assert_int_eq(tu_fault_count(&F, "/down", "GET"), 4); /* 1 + 3 retries */
  ck_assert_msg(strstr(e.message, url("/down")) && strstr(e.message, "HTTP 500") && strstr(e.message, "4 attempts"),
                "%s", e.message);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/denied"), local, sizeof(local), NULL, NULL, &e), OTF_E_ACCESS);
  ck_assert_int_eq(tu_fault_count(&F, "/denied", "GET"), 1);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/missing"), local, sizeof(local), NULL, NULL, &e), OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/gone"), local, sizeof(local), NULL, NULL, &e), OTF_E_INVAL);
  ck_assert_int_eq(tu_fault_count(&F, "/gone", "GET"), 1);
  /* Nothing of the failures is cached. */
  ck_assert_int_eq(count_dir("entries"), 0);
  ck_assert_int_eq(count_dir("tmp"), 0);
  /* Connection refused: unreachable, named. */
  ck_assert_int_eq(otf_storage_fetch_file(s, "http://127.0.0.1:1/x", local, sizeof(local), NULL, NULL, &e),
                   OTF_E_UNREACHABLE);
  ck_assert_ptr_nonnull(strstr(e.message, "http://127.0.0.1:1/x"));
  otf_storage_close(s);
}
END_TEST

START_TEST(short_bodies_are_detected) {
  tu_fault_route *r = tu_fault_add(&F, "/cut-once", BODY_A, sizeof(BODY_A));
  r->cut_first = 1;
  tu_fault_route *a = tu_fault_add(&F, "/cut-always", BODY_B, sizeof(BODY_B));
  a->cut_first = 100;
  otf_storage *s = open_st(2, 5, 0, 1);
  char local[4096];
  otf_error e;
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/cut-once"), local, sizeof(local), NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(tu_fault_count(&F, "/cut-once", "GET"), 2);
  ck_assert(file_equals(local, BODY_A, sizeof(BODY_A)));
  otf_storage_release(s, local);
  ck_assert_int_eq(count_dir("entries"), 1);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/cut-always"), local, sizeof(local), NULL, NULL, &e), OTF_E_CORRUPT);
  ck_assert_int_eq(tu_fault_count(&F, "/cut-always", "GET"), 3);
  ck_assert_msg(strstr(e.message, "cut short") || strstr(e.message, "received"), "%s", e.message);
  /* The partial download never became an entry. */
  ck_assert_int_eq(count_dir("entries"), 1);
  ck_assert_int_eq(count_dir("tmp"), 0);
  otf_storage_close(s);
}
END_TEST

START_TEST(stalls_time_out) {
  tu_fault_route *r = tu_fault_add(&F, "/stall", BODY_A, sizeof(BODY_A));
  r->stall_first = 100;
  r->stall_ms = 4000;
  otf_storage *s = open_st(1, 1, 0, 1);
  char local[4096];
  otf_error e;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/stall"), local, sizeof(local), NULL, NULL, &e), OTF_E_TIMEOUT);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  ck_assert_msg(dt < 12.0, "took %.1f s", dt);
  ck_assert_int_ge(tu_fault_count(&F, "/stall", "GET"), 1);
  ck_assert_msg(strstr(e.message, "timed out"), "%s", e.message);
  ck_assert_int_eq(count_dir("entries"), 0);
  ck_assert_int_eq(count_dir("tmp"), 0);
  otf_storage_close(s);
}
END_TEST

/* An http(s) model folder: its manifest lists the files. */
static char MANIFEST[4096];

static void add_model(const char *dir) {
  char p[600], sa[OTF_SHA256_HEX], sb[OTF_SHA256_HEX];
  otf__sha256_hex(BODY_A, sizeof(BODY_A), sa);
  otf__sha256_hex(BODY_B, sizeof(BODY_B), sb);
  snprintf(MANIFEST, sizeof(MANIFEST),
           "{\"files\":[{\"name\":\"config.json\",\"size\":%zu,\"sha256\":\"%s\"},"
           "{\"name\":\"sub/model.safetensors\",\"size\":%zu,\"sha256\":\"%s\"}]}",
           sizeof(BODY_A), sa, sizeof(BODY_B), sb);
  snprintf(p, sizeof(p), "%s/fusion_manifest.json", dir);
  tu_fault_add(&F, p, MANIFEST, strlen(MANIFEST));
  snprintf(p, sizeof(p), "%s/config.json", dir);
  tu_fault_add(&F, p, BODY_A, sizeof(BODY_A));
  snprintf(p, sizeof(p), "%s/sub/model.safetensors", dir);
  tu_fault_add(&F, p, BODY_B, sizeof(BODY_B));
}

START_TEST(http_model_partial_never_counts) {
  add_model("/m");
  tu_fault_lock(&F);
  F.routes[2].cut_first = 100; /* sub/model.safetensors always cut */
  tu_fault_unlock(&F);
  otf_storage *s = open_st(1, 5, 0, 1);
  char dir[4096];
  otf_error e;
  ck_assert_int_eq(otf_storage_fetch_model(s, url("/m/"), dir, sizeof(dir), NULL, NULL, &e), OTF_E_CORRUPT);
  ck_assert_int_eq(count_dir("entries"), 0);
  ck_assert_int_eq(count_dir("tmp"), 0);
  /* Served whole again, the same URI fetches completely. */
  tu_fault_lock(&F);
  F.routes[2].cut_first = 0;
  tu_fault_unlock(&F);
  ck_assert_msg(otf_storage_fetch_model(s, url("/m/"), dir, sizeof(dir), NULL, NULL, &e) == OTF_OK, "%s", e.message);
  char p[4200];
  snprintf(p, sizeof(p), "%s/sub/model.safetensors", dir);
  ck_assert(file_equals(p, BODY_B, sizeof(BODY_B)));
  otf_storage_release(s, dir);
  /* Bytes that do not match the manifest's SHA-256 are refused. */
  add_model("/bad");
  tu_fault_lock(&F);
  F.routes[5].body = BODY_A; /* sub/model.safetensors: right length, wrong bytes */
  tu_fault_unlock(&F);
  ck_assert_int_eq(otf_storage_fetch_model(s, url("/bad/"), dir, sizeof(dir), NULL, NULL, &e), OTF_E_CORRUPT);
  ck_assert_ptr_nonnull(strstr(e.message, "SHA-256"));
  /* A folder without a manifest cannot be fetched over http. */
  ck_assert_int_eq(otf_storage_fetch_model(s, url("/nomanifest/"), dir, sizeof(dir), NULL, NULL, &e), OTF_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(e.message, OTF_MANIFEST_NAME));
  ck_assert_int_eq(count_dir("entries"), 1);
  otf_storage_close(s);
}
END_TEST

START_TEST(network_policy_and_redirects) {
  tu_fault_add(&F, "/x", BODY_A, 100);
  tu_fault_route *r = tu_fault_add(&F, "/redir", BODY_A, 10);
  r->status = 302;
  snprintf(r->location, sizeof(r->location), "http://169.254.169.254/latest/meta-data/");
  otf_storage *s = open_st(1, 5, 0, 0); /* private hosts not allowed */
  char local[4096];
  otf_error e;
  /* Loopback refused (the fault server is not the S3 endpoint's port... it
   * is: the configured endpoint is always allowed, so use another port). */
  ck_assert_int_eq(otf_storage_fetch_file(s, "http://127.0.0.1:9/x", local, sizeof(local), NULL, NULL, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_fetch_file(s, "http://169.254.169.254/latest/meta-data/", local, sizeof(local), NULL,
                                          NULL, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_fetch_file(s, "http://localhost:9/x", local, sizeof(local), NULL, NULL, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_fetch_model(s, "http://[::1]:9/m/", local, sizeof(local), NULL, NULL, &e), OTF_E_ACCESS);
  /* The configured S3 endpoint is always allowed. */
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/x"), local, sizeof(local), NULL, NULL, &e), OTF_OK);
  otf_storage_release(s, local);
  /* Redirects are not followed (they could point anywhere). */
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/redir"), local, sizeof(local), NULL, NULL, &e), OTF_E_UNSUPPORTED);
  ck_assert_int_eq(tu_fault_count(&F, "/redir", "GET"), 1);
  otf_storage_close(s);
}
END_TEST

static int cancel_soon(void *ctx, uint64_t done, uint64_t total) {
  (void)total;
  (void)ctx;
  return done > 1000;
}

START_TEST(cancel_leaves_nothing) {
  tu_fault_add(&F, "/a.bin", BODY_A, sizeof(BODY_A));
  otf_storage *s = open_st(1, 5, 0, 1);
  char local[4096];
  otf_error e;
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/a.bin"), local, sizeof(local), cancel_soon, NULL, &e),
                   OTF_E_CANCELLED);
  ck_assert_int_eq(count_dir("entries"), 0);
  ck_assert_int_eq(count_dir("tmp"), 0);
  otf_storage_close(s);
}
END_TEST

/* ---- S3 protocol faults (the fault server as the S3 endpoint) ---------- */

START_TEST(s3_get_retries_and_verifies_md5) {
  char md5[OTF_MD5_HEX], sha[OTF_SHA256_HEX];
  otf_digest d;
  ck_assert_int_eq(otf__digest_init(&d, 1), OTF_OK);
  otf__digest_update(&d, BODY_A, sizeof(BODY_A));
  otf__digest_final(&d, sha, md5);
  otf__digest_free(&d);
  tu_fault_route *r = tu_fault_add(&F, "/bkt/m/a.bin", BODY_A, sizeof(BODY_A));
  r->fail_first = 1;
  snprintf(r->etag, sizeof(r->etag), "%s", md5);
  tu_fault_route *bad = tu_fault_add(&F, "/bkt/m/bad.bin", BODY_A, sizeof(BODY_A));
  snprintf(bad->etag, sizeof(bad->etag), "0123456789abcdef0123456789abcdef");
  otf_storage *s = open_st(2, 5, 0, 0);
  otf_error e;
  char got[OTF_SHA256_HEX];
  otf__s3 *s3 = otf__remote_s3(s);
  ck_assert_msg(otf__s3_get(s3, "bkt", "m/a.bin", "s3://bkt/m/a.bin", tu_scratch_path("a"), 0, 0, UINT64_MAX, NULL, got,
                            NULL, &e) == OTF_OK, "%s", e.message);
  ck_assert_str_eq(got, sha);
  ck_assert_int_eq(tu_fault_count(&F, "/bkt/m/a.bin", "GET"), 2);
  ck_assert_int_eq(otf__s3_get(s3, "bkt", "m/bad.bin", "s3://bkt/m/bad.bin", tu_scratch_path("b"), 0, 0, UINT64_MAX,
                               NULL, NULL, NULL, &e), OTF_E_CORRUPT);
  ck_assert_int_eq(tu_fault_count(&F, "/bkt/m/bad.bin", "GET"), 3);
  ck_assert_ptr_nonnull(strstr(e.message, "MD5"));
  /* A size other than the listed one is corrupt too. */
  ck_assert_int_eq(otf__s3_get(s3, "bkt", "m/a.bin", "s3://bkt/m/a.bin", tu_scratch_path("a"), 0, 0, 5, NULL, NULL,
                               NULL, &e), OTF_E_CORRUPT);
  otf_storage_close(s);
}
END_TEST

static const char EMPTY_LIST[] =
    "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";

START_TEST(s3_failed_publish_leaves_no_artifact) {
  /* Source folder of three files; the manifest upload fails. */
  char p[1024];
  snprintf(p, sizeof(p), "mkdir -p %s/src", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  const char *names[] = {"a.bin", "b.bin", "config.json"};
  const unsigned char *bodies[] = {BODY_A, BODY_B, BODY_C};
  size_t lens[] = {1000, 2000, 300};
  for(int i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/src/%s", tu_scratch(), names[i]);
    FILE *f = fopen(p, "wb");
    fwrite(bodies[i], 1, lens[i], f);
    fclose(f);
    char route[128];
    snprintf(route, sizeof(route), "/bkt/out/%s", names[i]);
    tu_fault_add(&F, route, "", 0);
  }
  tu_fault_add(&F, "/bkt", EMPTY_LIST, strlen(EMPTY_LIST));
  tu_fault_route *m = tu_fault_add(&F, "/bkt/out/fusion_manifest.json", "", 0);
  m->fail_first = 100;
  otf_storage *s = open_st(1, 5, 0, 0);
  otf_error e;
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("src"), "s3://bkt/out/", NULL, NULL, &e), OTF_E_UNREACHABLE);
  /* Every file went up once, the manifest never landed, and each file was
   * deleted again. */
  for(int i = 0; i < 3; i++) {
    char route[128];
    snprintf(route, sizeof(route), "/bkt/out/%s", names[i]);
    ck_assert_int_eq(tu_fault_count(&F, route, "PUT"), 1);
    ck_assert_int_eq(tu_fault_count(&F, route, "DELETE"), 1);
  }
  ck_assert_int_eq(tu_fault_count(&F, "/bkt/out/fusion_manifest.json", "PUT"), 2);
  otf_storage_close(s);
}
END_TEST


START_TEST(s3_virtual_hosted_addressing) {
  /* bucket.localhost:PORT resolves to loopback (curl maps *.localhost);
   * the key is then the whole path. */
  tu_fault_route *r = tu_fault_add(&F, "/m/a.bin", BODY_A, 1000);
  (void)r;
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  char ep[64];
  snprintf(ep, sizeof(ep), "http://localhost:%d", F.port);
  cfg.s3_endpoint = ep;
  cfg.s3_path_style = 0;
  cfg.s3_access_key = "AKIDTEST";
  cfg.s3_secret_key = "secret";
  cfg.s3_session_token = "token-value";
  cfg.cache_dir = tu_scratch_path("cache");
  cfg.timeout_s = 5;
  otf_storage *s = NULL;
  otf_error e;
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  ck_assert_msg(otf__s3_get(otf__remote_s3(s), "bkt", "m/a.bin", "s3://bkt/m/a.bin", tu_scratch_path("a"), 0, 0, 1000,
                            NULL, NULL, NULL, &e) == OTF_OK, "%s", e.message);
  ck_assert_int_eq(tu_fault_count(&F, "/m/a.bin", "GET"), 1);
  ck_assert(file_equals(tu_scratch_path("a"), BODY_A, 1000));
  otf_storage_close(s);
}
END_TEST

/* ---- the cache ---------------------------------------------------------------- */

typedef struct th_arg {
  otf_storage *s;
  const char *uri;
  otf_status rc;
  char dir[4096];
} th_arg;

static void *fetch_thread(void *p) {
  th_arg *a = p;
  otf_error e;
  a->rc = otf_storage_fetch_model(a->s, a->uri, a->dir, sizeof(a->dir), NULL, NULL, &e);
  return NULL;
}

START_TEST(one_download_for_concurrent_threads) {
  add_model("/m");
  tu_fault_lock(&F);
  F.routes[2].stall_first = 0;
  tu_fault_unlock(&F);
  otf_storage *s = open_st(1, 5, 0, 1);
  th_arg a[4];
  pthread_t t[4];
  for(int i = 0; i < 4; i++) {
    a[i].s = s;
    a[i].uri = url("/m/");
    pthread_create(&t[i], NULL, fetch_thread, &a[i]);
  }
  for(int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(a[i].rc, OTF_OK);
    ck_assert_str_eq(a[i].dir, a[0].dir);
  }
  ck_assert_int_eq(tu_fault_count(&F, "/m/config.json", "GET"), 1);
  ck_assert_int_eq(tu_fault_count(&F, "/m/sub/model.safetensors", "GET"), 1);
  for(int i = 0; i < 4; i++)
    otf_storage_release(s, a[i].dir);
  otf_storage_close(s);
}
END_TEST

START_TEST(one_download_for_concurrent_processes_and_restart) {
  add_model("/m");
  pid_t kids[3];
  for(int i = 0; i < 3; i++) {
    kids[i] = fork();
    ck_assert_int_ge(kids[i], 0);
    if(kids[i] == 0) {
      otf_storage *s = open_st(1, 5, 0, 1);
      char dir[4096];
      otf_error e;
      int rc = otf_storage_fetch_model(s, url("/m/"), dir, sizeof(dir), NULL, NULL, &e);
      otf_storage_close(s);
      _exit(rc == OTF_OK ? 0 : 1);
    }
  }
  for(int i = 0; i < 3; i++) {
    int st;
    ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  ck_assert_int_eq(tu_fault_count(&F, "/m/sub/model.safetensors", "GET"), 1);
  /* A new storage on the same cache folder (a restart) finds the entry:
   * only the manifest is read again. */
  otf_storage *s = open_st(1, 5, 0, 1);
  char dir[4096];
  otf_error e;
  ck_assert_int_eq(otf_storage_fetch_model(s, url("/m/"), dir, sizeof(dir), NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(tu_fault_count(&F, "/m/sub/model.safetensors", "GET"), 1);
  ck_assert_int_eq(tu_fault_count(&F, "/m/fusion_manifest.json", "GET"), 4);
  otf_storage_release(s, dir);
  otf_storage_close(s);
}
END_TEST

START_TEST(lru_eviction_spares_pinned_entries) {
  tu_fault_add(&F, "/a", BODY_A, sizeof(BODY_A)); /* 200000 */
  tu_fault_add(&F, "/b", BODY_B, sizeof(BODY_B)); /* 150000 */
  tu_fault_add(&F, "/c", BODY_C, sizeof(BODY_C)); /* 120000 */
  otf_storage *s = open_st(1, 5, 400000, 1);
  char pa[4096], pb[4096], pc[4096];
  otf_error e;
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/a"), pa, sizeof(pa), NULL, NULL, &e), OTF_OK);
  otf_storage_release(s, pa);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/b"), pb, sizeof(pb), NULL, NULL, &e), OTF_OK);
  otf_storage_release(s, pb);
  /* Use a again: now b is the least recently used. */
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/a"), pa, sizeof(pa), NULL, NULL, &e), OTF_OK);
  otf_storage_release(s, pa);
  ck_assert_int_eq(tu_fault_count(&F, "/a", "GET"), 1);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/c"), pc, sizeof(pc), NULL, NULL, &e), OTF_OK);
  otf_storage_release(s, pc);
  ck_assert_int_eq(count_dir("entries"), 2); /* 470000 > 400000: b went */
  struct stat st;
  ck_assert_int_ne(stat(pb, &st), 0);
  ck_assert_int_eq(stat(pa, &st), 0);
  /* Pinned entries stay even over the bound. */
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/a"), pa, sizeof(pa), NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/c"), pc, sizeof(pc), NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_fetch_file(s, url("/b"), pb, sizeof(pb), NULL, NULL, &e), OTF_OK);
  ck_assert_int_eq(count_dir("entries"), 3);
  ck_assert(file_equals(pa, BODY_A, sizeof(BODY_A)));
  ck_assert(file_equals(pc, BODY_C, sizeof(BODY_C)));
  otf_storage_release(s, pa);
  otf_storage_release(s, pb);
  otf_storage_release(s, pc);
  otf_storage_close(s);
}
END_TEST

int main(void) {
  Suite *s = suite_create("storage_fault");
  TCase *tf = tcase_create("faults");
  tcase_set_timeout(tf, 60);
  tcase_add_checked_fixture(tf, setup, teardown);
  tcase_add_test(tf, server_errors_are_retried_then_succeed);
  tcase_add_test(tf, retries_are_bounded_and_4xx_not_retried);
  tcase_add_test(tf, short_bodies_are_detected);
  tcase_add_test(tf, stalls_time_out);
  tcase_add_test(tf, http_model_partial_never_counts);
  tcase_add_test(tf, network_policy_and_redirects);
  tcase_add_test(tf, cancel_leaves_nothing);
  tcase_add_test(tf, s3_get_retries_and_verifies_md5);
  tcase_add_test(tf, s3_failed_publish_leaves_no_artifact);
  tcase_add_test(tf, s3_virtual_hosted_addressing);
  suite_add_tcase(s, tf);
  TCase *tc = tcase_create("cache");
  tcase_set_timeout(tc, 60);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, one_download_for_concurrent_threads);
  tcase_add_test(tc, one_download_for_concurrent_processes_and_restart);
  tcase_add_test(tc, lru_eviction_spares_pinned_entries);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
