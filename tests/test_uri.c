/* URIs, file:// confinement, the network (SSRF) policy, and the file://
 * store: fetch, check and atomic publication with a manifest. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/digest.h"
#include "storage/manifest.h"
#include "storage/netpolicy.h"
#include "storage/storage.h"
#include "storage/uri.h"
#include "tests/support/testutil.h"

START_TEST(parses_the_three_schemes) {
  otf_uri u;
  otf_error e;
  ck_assert_int_eq(otf_uri_parse(&u, "file:///data/models/vit/", &e), OTF_OK);
  ck_assert_int_eq(u.scheme, OTF_URI_FILE);
  ck_assert_str_eq(u.path, "/data/models/vit");
  ck_assert_int_eq(u.is_dir, 1);
  ck_assert_int_eq(otf_uri_parse(&u, "file://localhost/a%20b/c.bin", &e), OTF_OK);
  ck_assert_str_eq(u.path, "/a b/c.bin");
  ck_assert_int_eq(u.is_dir, 0);

  ck_assert_int_eq(otf_uri_parse(&u, "s3://my-bucket.v2/models/a b/", &e), OTF_OK);
  ck_assert_int_eq(u.scheme, OTF_URI_S3);
  ck_assert_str_eq(u.host, "my-bucket.v2");
  ck_assert_str_eq(u.path, "models/a b/");
  ck_assert_int_eq(u.is_dir, 1);
  ck_assert_int_eq(otf_uri_parse(&u, "s3://bkt", &e), OTF_OK);
  ck_assert_str_eq(u.path, "");
  ck_assert_int_eq(u.is_dir, 1);

  ck_assert_int_eq(otf_uri_parse(&u, "https://Example.COM:8443/x/y.bin?X-Amz-Signature=ab%2F#frag", &e), OTF_OK);
  ck_assert_int_eq(u.scheme, OTF_URI_HTTPS);
  ck_assert_str_eq(u.host, "example.com");
  ck_assert_int_eq(u.port, 8443);
  ck_assert_str_eq(u.path, "/x/y.bin?X-Amz-Signature=ab%2F");
  ck_assert_int_eq(otf_uri_parse(&u, "http://[::1]:9000/m/", &e), OTF_OK);
  ck_assert_str_eq(u.host, "::1");
  ck_assert_int_eq(u.is_ipv6, 1);
  ck_assert_int_eq(u.port, 9000);
  ck_assert_int_eq(u.is_dir, 1);
  ck_assert_int_eq(otf_uri_parse(&u, "http://h", &e), OTF_OK);
  ck_assert_str_eq(u.path, "/");

  ck_assert_int_eq(otf_uri_is_uri("s3://b/k"), 1);
  ck_assert_int_eq(otf_uri_is_uri("/plain/path"), 0);
  ck_assert_int_eq(otf_uri_is_uri("rel/dir"), 0);
  ck_assert_int_eq(otf_uri_is_uri("c:/x"), 0);
}
END_TEST

START_TEST(rejects_bad_uris) {
  static const struct { const char *uri; otf_status want; } cases[] = {
      {"", OTF_E_INVAL},
      {"/abs/path", OTF_E_INVAL},
      {"ftp://host/x", OTF_E_UNSUPPORTED},
      {"gs://bucket/x", OTF_E_UNSUPPORTED},
      {"file://relative/path", OTF_E_INVAL},
      {"file:///a%00b", OTF_E_INVAL},
      {"file:///a%zz", OTF_E_INVAL},
      {"file:///a%0ab", OTF_E_INVAL},
      {"s3://", OTF_E_INVAL},
      {"s3://ab/x", OTF_E_INVAL},            /* too short */
      {"s3://Upper/x", OTF_E_INVAL},         /* upper case */
      {"s3://a..b/x", OTF_E_INVAL},
      {"s3://-ab/x", OTF_E_INVAL},
      {"s3://192.168.1.1/x", OTF_E_INVAL},   /* IP-like */
      {"s3://bucket_x/k", OTF_E_INVAL},
      {"http://user:pw@host/x", OTF_E_INVAL},
      {"http:///x", OTF_E_INVAL},
      {"http://host:0/x", OTF_E_INVAL},
      {"http://host:65536/x", OTF_E_INVAL},
      {"http://host:12a/x", OTF_E_INVAL},
      {"http://[::1/x", OTF_E_INVAL},
      {"http://ho st/x", OTF_E_INVAL},
      {"http://host/a b", OTF_E_INVAL},
      {"http://host/a\tb", OTF_E_INVAL},
  };
  for(size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    otf_uri u;
    otf_error e;
    otf_error_clear(&e);
    otf_status rc = otf_uri_parse(&u, cases[i].uri, &e);
    ck_assert_msg(rc == cases[i].want, "'%s': got %d want %d (%s)", cases[i].uri, rc, cases[i].want,
                  e.message);
    ck_assert_msg(strlen(e.message) > 0, "'%s': no message", cases[i].uri);
  }
  char longuri[5000] = "s3://bucket/";
  memset(longuri + 12, 'k', sizeof(longuri) - 13);
  longuri[sizeof(longuri) - 1] = 0;
  otf_uri u;
  ck_assert_int_eq(otf_uri_parse(&u, longuri, NULL), OTF_E_TOO_LARGE);
}
END_TEST

START_TEST(relative_names_are_checked) {
  ck_assert_int_eq(otf_uri_safe_relpath("config.json"), 1);
  ck_assert_int_eq(otf_uri_safe_relpath("sub/model.safetensors"), 1);
  ck_assert_int_eq(otf_uri_safe_relpath("..hidden"), 1);
  ck_assert_int_eq(otf_uri_safe_relpath(""), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("/abs"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("../x"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("a/../../x"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("a/./x"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("a//x"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("a/"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("a\\..\\x"), 0);
  ck_assert_int_eq(otf_uri_safe_relpath("a\nb"), 0);
}
END_TEST

static const char *addr_class(const char *txt, int *always) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if(strchr(txt, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, txt, &s6->sin6_addr), 1);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, txt, &s4->sin_addr), 1);
  }
  return otf__net_addr_class((struct sockaddr *)&ss, always);
}

START_TEST(network_policy_classifies_addresses) {
  static const struct { const char *a; int blocked, always; } cases[] = {
      {"8.8.8.8", 0, 0},         {"93.184.216.34", 0, 0},   {"2606:4700::1111", 0, 0},
      {"169.254.169.254", 1, 1}, {"169.254.1.2", 1, 1},     {"fe80::1", 1, 1},
      {"fd00:ec2::254", 1, 1},   {"127.0.0.1", 1, 0},       {"127.9.9.9", 1, 0},
      {"::1", 1, 0},             {"10.1.2.3", 1, 0},        {"172.16.0.1", 1, 0},
      {"172.31.255.255", 1, 0},  {"172.32.0.1", 0, 0},      {"192.168.0.1", 1, 0},
      {"100.64.0.1", 1, 0},      {"0.0.0.0", 1, 0},         {"::", 1, 0},
      {"fd12:3456::1", 1, 0},    {"fc00::1", 1, 0},         {"::ffff:169.254.169.254", 1, 1},
      {"::ffff:127.0.0.1", 1, 0}, {"::ffff:8.8.4.4", 0, 0}, {"224.0.0.1", 1, 0},
  };
  for(size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    int always = -1;
    const char *why = addr_class(cases[i].a, &always);
    ck_assert_msg((why != NULL) == cases[i].blocked, "%s: %s", cases[i].a, why ? why : "allowed");
    ck_assert_msg(always == cases[i].always, "%s: always=%d", cases[i].a, always);
  }
}
END_TEST

START_TEST(network_policy_checks_names) {
  otf_error e;
  ck_assert_int_eq(otf__net_check_name("u", "169.254.169.254", 1, &e), OTF_E_ACCESS);
  ck_assert_ptr_nonnull(strstr(e.message, "metadata"));
  ck_assert_int_eq(otf__net_check_name("u", "metadata.google.internal", 1, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "METADATA.google.internal.", 1, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "127.0.0.1", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "127.0.0.1", 1, &e), OTF_OK);
  ck_assert_int_eq(otf__net_check_name("u", "localhost", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "a.localhost", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "2130706433", 0, &e), OTF_E_ACCESS); /* 127.0.0.1 */
  ck_assert_int_eq(otf__net_check_name("u", "0x7f.1", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "0xa9.0xfe.0xa9.0xfe", 1, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_check_name("u", "example.com", 0, &e), OTF_OK);
  /* Resolution pins what it checked; localhost resolves to loopback. */
  char pin[256];
  ck_assert_int_eq(otf__net_resolve_pin("u", "localhost", 80, 0, pin, sizeof(pin), &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf__net_resolve_pin("u", "127.0.0.1", 8080, 1, pin, sizeof(pin), &e), OTF_OK);
  ck_assert_str_eq(pin, "127.0.0.1:8080:127.0.0.1");
}
END_TEST

/* ---- file:// store ---------------------------------------------------- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static otf_storage *open_rooted(const char *root) {
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.file_roots[0] = root;
  cfg.n_file_roots = 1;
  cfg.s3_path_style = -1;
  otf_storage *s = NULL;
  otf_error e;
  ck_assert_msg(otf_storage_open(&s, &cfg, &e) == OTF_OK, "%s", e.message);
  return s;
}

static void make_tree(void) {
  char p[1024];
  snprintf(p, sizeof(p), "mkdir -p %s/root/models/m1 %s/outside && ln -s %s/outside %s/root/escape",
           tu_scratch(), tu_scratch(), tu_scratch(), tu_scratch());
  ck_assert_int_eq(system(p), 0);
  write_file(tu_scratch_path("root/models/m1/config.json"), "{\"a\":1}\n");
  write_file(tu_scratch_path("root/models/m1/model.safetensors"), "weights-bytes");
  write_file(tu_scratch_path("outside/secret.txt"), "secret");
  write_file(tu_scratch_path("root/calib.safetensors"), "calib");
}

static otf_status check_uri(otf_storage *s, const char *fmt, int for_write, otf_error *e) {
  char uri[1024];
  snprintf(uri, sizeof(uri), fmt, tu_scratch());
  return otf_storage_check(s, uri, for_write, e);
}

START_TEST(file_uris_are_confined_to_roots) {
  make_tree();
  otf_storage *s = open_rooted(tu_scratch_path("root"));
  otf_error e;
  ck_assert_int_eq(check_uri(s, "file://%s/root/models/m1/", 0, &e), OTF_OK);
  ck_assert_int_eq(check_uri(s, "file://%s/root/calib.safetensors", 0, &e), OTF_OK);
  ck_assert_int_eq(check_uri(s, "file://%s/outside/secret.txt", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(check_uri(s, "file://%s/root/../outside/secret.txt", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(check_uri(s, "file://%s/root/models/../../outside/", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(check_uri(s, "file://%s/root/escape/secret.txt", 0, &e), OTF_E_ACCESS);
  ck_assert_ptr_nonnull(strstr(e.message, "outside the allowed roots"));
  ck_assert_int_eq(check_uri(s, "file://%s/root/%%2e%%2e/outside/", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(check_uri(s, "file://%s/root/missing/", 0, &e), OTF_E_NOT_FOUND);
  /* Writes may name a folder that does not exist yet, inside a root. */
  ck_assert_int_eq(check_uri(s, "file://%s/root/new/deeper/out/", 1, &e), OTF_OK);
  ck_assert_int_eq(check_uri(s, "file://%s/root/new/../../outside/x/", 1, &e), OTF_E_ACCESS);
  ck_assert_int_eq(check_uri(s, "file://%s/root/escape/newdir/", 1, &e), OTF_E_ACCESS);
  ck_assert_int_eq(check_uri(s, "file://%s/outside/new/", 1, &e), OTF_E_ACCESS);
  /* A file root prefix is not a folder prefix: root2 is not inside root. */
  char p[1024];
  snprintf(p, sizeof(p), "mkdir -p %s/root2", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  ck_assert_int_eq(check_uri(s, "file://%s/root2/", 0, &e), OTF_E_ACCESS);
  /* Remote schemes: s3 is writable, http(s) is read-only and policed. */
  ck_assert_int_eq(otf_storage_check(s, "s3://bucket/prefix/", 1, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_check(s, "https://example.com/x", 1, &e), OTF_E_UNSUPPORTED);
  ck_assert_int_eq(otf_storage_check(s, "https://example.com/x", 0, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_check(s, "http://169.254.169.254/latest/meta-data/", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_check(s, "http://127.0.0.1:8080/m/", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_check(s, "http://[::1]:8080/m/", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_check(s, "http://10.0.0.5/m/", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_check(s, "gopher://x/", 0, &e), OTF_E_UNSUPPORTED);
  otf_storage_close(s);

  /* No roots: file:// refused altogether. */
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.allow_private_hosts = 1;
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_OK);
  ck_assert_int_eq(check_uri(s, "file://%s/root/calib.safetensors", 0, &e), OTF_E_ACCESS);
  ck_assert_int_eq(otf_storage_check(s, "http://127.0.0.1:8080/m/", 0, &e), OTF_OK);
  ck_assert_int_eq(otf_storage_check(s, "http://169.254.169.254/", 0, &e), OTF_E_ACCESS);
  otf_storage_close(s);
  /* Roots must exist. */
  cfg.file_roots[0] = "/nonexistent/otf/root";
  cfg.n_file_roots = 1;
  ck_assert_int_eq(otf_storage_open(&s, &cfg, &e), OTF_E_INVAL);
  ck_assert_ptr_null(s);
}
END_TEST

START_TEST(file_fetch_gives_the_folder_itself) {
  make_tree();
  otf_storage *s = open_rooted(tu_scratch_path("root"));
  otf_error e;
  char uri[1024], out[1024], want[1024];
  snprintf(uri, sizeof(uri), "file://%s/root/models/m1/", tu_scratch());
  ck_assert_int_eq(otf_storage_fetch_model(s, uri, out, sizeof(out), NULL, NULL, &e), OTF_OK);
  ck_assert_ptr_nonnull(realpath(tu_scratch_path("root/models/m1"), want));
  ck_assert_str_eq(out, want);
  otf_storage_release(s, out);
  /* A file where a folder is meant, and the reverse. */
  snprintf(uri, sizeof(uri), "file://%s/root/calib.safetensors", tu_scratch());
  ck_assert_int_eq(otf_storage_fetch_model(s, uri, out, sizeof(out), NULL, NULL, &e), OTF_E_INVAL);
  ck_assert_int_eq(otf_storage_fetch_file(s, uri, out, sizeof(out), NULL, NULL, &e), OTF_OK);
  snprintf(uri, sizeof(uri), "file://%s/root/models/m1/", tu_scratch());
  ck_assert_int_eq(otf_storage_fetch_file(s, uri, out, sizeof(out), NULL, NULL, &e), OTF_E_INVAL);
  /* Too small an output buffer is an error, not a truncated path. */
  ck_assert_int_eq(otf_storage_fetch_model(s, uri, out, 8, NULL, NULL, &e), OTF_E_TOO_LARGE);
  snprintf(uri, sizeof(uri), "file://%s/root/escape/secret.txt", tu_scratch());
  ck_assert_int_eq(otf_storage_fetch_file(s, uri, out, sizeof(out), NULL, NULL, &e), OTF_E_ACCESS);
  otf_storage_close(s);
}
END_TEST

START_TEST(file_put_dir_publishes_with_manifest_last) {
  make_tree();
  otf_storage *s = open_rooted(tu_scratch_path("root"));
  otf_error e;
  char uri[1024];
  /* Source: the m1 folder plus a subfolder and a stale manifest (replaced). */
  char p[1024];
  snprintf(p, sizeof(p), "mkdir -p %s/root/models/m1/sub", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  write_file(tu_scratch_path("root/models/m1/sub/tok.json"), "{}");
  write_file(tu_scratch_path("root/models/m1/fusion_manifest.json"), "stale");
  snprintf(uri, sizeof(uri), "file://%s/root/out/fused/", tu_scratch());
  ck_assert_msg(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), uri, NULL, NULL, &e) == OTF_OK,
                "%s", e.message);
  json_error_t je;
  json_t *m = json_load_file(tu_scratch_path("root/out/fused/fusion_manifest.json"), 0, &je);
  ck_assert_ptr_nonnull(m);
  json_t *files = json_object_get(m, "files");
  ck_assert_int_eq(json_array_size(files), 3);
  const char *names[] = {"config.json", "model.safetensors", "sub/tok.json"};
  const char *texts[] = {"{\"a\":1}\n", "weights-bytes", "{}"};
  for(size_t i = 0; i < 3; i++) {
    json_t *f = json_array_get(files, i);
    ck_assert_str_eq(json_string_value(json_object_get(f, "name")), names[i]);
    ck_assert_int_eq(json_integer_value(json_object_get(f, "size")), (json_int_t)strlen(texts[i]));
    char sha[OTF_SHA256_HEX];
    otf__sha256_hex(texts[i], strlen(texts[i]), sha);
    ck_assert_str_eq(json_string_value(json_object_get(f, "sha256")), sha);
  }
  json_decref(m);
  /* No temporary folder is left beside it. */
  snprintf(p, sizeof(p), "test -z \"$(ls -A %s/root/out | grep -v '^fused$')\"", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  /* A second publish onto a non-empty destination conflicts and leaves it. */
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), uri, NULL, NULL, &e),
                   OTF_E_CONFLICT);
  snprintf(p, sizeof(p), "test -z \"$(ls -A %s/root/out | grep -v '^fused$')\"", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  /* An empty destination folder is fine. */
  snprintf(p, sizeof(p), "mkdir -p %s/root/out/empty", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  snprintf(uri, sizeof(uri), "file://%s/root/out/empty", tu_scratch());
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), uri, NULL, NULL, &e), OTF_OK);
  struct stat st;
  ck_assert_int_eq(stat(tu_scratch_path("root/out/empty/sub/tok.json"), &st), 0);
  /* Escapes and read-only schemes are refused before anything is written. */
  snprintf(uri, sizeof(uri), "file://%s/root/escape/x/", tu_scratch());
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), uri, NULL, NULL, &e), OTF_E_ACCESS);
  ck_assert_int_ne(stat(tu_scratch_path("outside/x"), &st), 0);
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), "https://example.com/x/", NULL, NULL, &e),
                   OTF_E_UNSUPPORTED);
  /* A source with a symbolic link is refused (and nothing is published). */
  snprintf(p, sizeof(p), "ln -s /etc/passwd %s/root/models/m1/link", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  snprintf(uri, sizeof(uri), "file://%s/root/out/withlink/", tu_scratch());
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), uri, NULL, NULL, &e), OTF_E_UNSUPPORTED);
  ck_assert_int_ne(stat(tu_scratch_path("root/out/withlink"), &st), 0);
  otf_storage_close(s);
}
END_TEST

static int cancel_after_first(void *ctx, uint64_t done, uint64_t total) {
  (void)total;
  int *calls = ctx;
  ++*calls;
  return done > 0;
}

START_TEST(file_put_dir_cancel_leaves_nothing) {
  make_tree();
  otf_storage *s = open_rooted(tu_scratch_path("root"));
  otf_error e;
  char uri[1024], p[1024];
  snprintf(uri, sizeof(uri), "file://%s/root/out/cancelled/", tu_scratch());
  int calls = 0;
  ck_assert_int_eq(otf_storage_put_dir(s, tu_scratch_path("root/models/m1"), uri, cancel_after_first, &calls, &e),
                   OTF_E_CANCELLED);
  ck_assert_int_ge(calls, 1);
  snprintf(p, sizeof(p), "test -z \"$(ls -A %s/root/out)\"", tu_scratch());
  ck_assert_int_eq(system(p), 0);
  otf_storage_close(s);
}
END_TEST

START_TEST(manifest_parse_validates) {
  otf_manifest m;
  otf_error e;
  const char *good = "{\"files\":[{\"name\":\"a/b.bin\",\"size\":3,\"sha256\":"
                     "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]}";
  ck_assert_int_eq(otf__manifest_parse(&m, good, strlen(good), &e), OTF_OK);
  ck_assert_uint_eq(m.n, 1);
  ck_assert_str_eq(m.e[0].name, "a/b.bin");
  otf__manifest_free(&m);
  static const char *bad[] = {
      "[]", "{\"files\":{}}", "{\"files\":[{\"name\":\"../x\",\"size\":1,\"sha256\":\"" 
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]}",
      "{\"files\":[{\"name\":\"x\",\"size\":-1,\"sha256\":\""
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]}",
      "{\"files\":[{\"name\":\"x\",\"size\":1,\"sha256\":\"zz\"}]}",
      "{\"files\":[{\"name\":\"x\",\"size\":1,\"sha256\":\""
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"},{\"name\":\"x\",\"size\":1,"
      "\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]}",
      "{\"files\":[],\"files\":[]}",
  };
  for(size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    ck_assert_msg(otf__manifest_parse(&m, bad[i], strlen(bad[i]), &e) == OTF_E_FORMAT, "case %zu", i);
}
END_TEST

int main(void) {
  Suite *s = suite_create("uri");
  TCase *tc = tcase_create("uri");
  tcase_add_test(tc, parses_the_three_schemes);
  tcase_add_test(tc, rejects_bad_uris);
  tcase_add_test(tc, relative_names_are_checked);
  tcase_add_test(tc, network_policy_classifies_addresses);
  tcase_add_test(tc, network_policy_checks_names);
  suite_add_tcase(s, tc);
  TCase *tf = tcase_create("file");
  tcase_add_checked_fixture(tf, tu_scratch_setup, tu_scratch_teardown);
  tcase_add_test(tf, file_uris_are_confined_to_roots);
  tcase_add_test(tf, file_fetch_gives_the_folder_itself);
  tcase_add_test(tf, file_put_dir_publishes_with_manifest_last);
  tcase_add_test(tf, file_put_dir_cancel_leaves_nothing);
  tcase_add_test(tf, manifest_parse_validates);
  suite_add_tcase(s, tf);
  return tu_run_suite(s);
}
