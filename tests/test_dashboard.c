/* Dashboard assets: every file in api/dashboard/ is embedded byte for byte
 * (the generator's escaping of backslashes, quotes, '?' and line ends), is
 * found under /ui/NAME with the right media type, "/" is index.html, and
 * every other path is refused. Run from the repository root. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/dashboard.h"
#include "tests/support/testutil.h"

#define ASSET_DIR "api/dashboard"

static unsigned char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  ck_assert_int_ge(n, 0);
  rewind(f);
  unsigned char *buf = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

START_TEST(every_file_is_embedded_byte_for_byte) {
  DIR *d = opendir(ASSET_DIR);
  ck_assert_ptr_nonnull(d);
  size_t files = 0;
  struct dirent *e;
  while((e = readdir(d)) != NULL) {
    if(e->d_name[0] == '.') continue;
    char path[512], url[512];
    snprintf(path, sizeof path, "%s/%s", ASSET_DIR, e->d_name);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    if(!S_ISREG(st.st_mode)) continue;
    files++;
    size_t want_len;
    unsigned char *want = read_all(path, &want_len);
    snprintf(url, sizeof url, "/ui/%s", e->d_name);
    const unsigned char *data = NULL;
    size_t len = 0;
    const char *type = NULL;
    ck_assert_msg(otf_dashboard_asset(url, &data, &len, &type) == 0, "%s not embedded", url);
    ck_assert_msg(len == want_len, "%s: %zu bytes embedded, %zu on disk", url, len, want_len);
    ck_assert_msg(memcmp(data, want, len) == 0, "%s: embedded bytes differ", url);
    ck_assert_ptr_nonnull(type);
    free(want);
  }
  closedir(d);
  /* The table holds exactly the files on disk (a stale build would not). */
  ck_assert_uint_eq(files, otf__dashboard_file_count);
  ck_assert_uint_ge(files, 3);
}
END_TEST

START_TEST(root_is_index_and_types_are_right) {
  const unsigned char *root = NULL, *idx = NULL, *p = NULL;
  size_t root_len = 0, idx_len = 0, len = 0;
  const char *type = NULL;
  ck_assert_int_eq(otf_dashboard_asset("/", &root, &root_len, &type), 0);
  ck_assert_str_eq(type, "text/html; charset=utf-8");
  ck_assert_int_eq(otf_dashboard_asset("/ui/index.html", &idx, &idx_len, &type), 0);
  ck_assert_ptr_eq(root, idx);
  ck_assert_uint_eq(root_len, idx_len);
  ck_assert_int_eq(otf_dashboard_asset("/ui/", &p, &len, &type), 0);
  ck_assert_ptr_eq(p, idx);
  ck_assert_int_eq(otf_dashboard_asset("/ui", &p, &len, &type), 0);
  ck_assert_ptr_eq(p, idx);
  ck_assert_ptr_nonnull(strstr((const char *)root, "<!doctype html>"));
  ck_assert_int_eq(otf_dashboard_asset("/ui/app.js", &p, &len, &type), 0);
  ck_assert_str_eq(type, "text/javascript; charset=utf-8");
  ck_assert_int_eq(otf_dashboard_asset("/ui/style.css", &p, &len, &type), 0);
  ck_assert_str_eq(type, "text/css; charset=utf-8");
}
END_TEST

START_TEST(other_paths_are_refused_and_outputs_untouched) {
  static const char *bad[] = {
      "",           "/index.html",     "/ui/missing.js", "/ui/../Makefile", "/ui/./app.js",
      "/ui//app.js", "/ui/.hidden",    "/uiapp.js",      "/v1/jobs",        "/ui/app.js/",
      "/ui/APP.JS", "/ui/app.js?x=1", "ui/app.js",      "/livez",
  };
  for(size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const unsigned char *data = (const unsigned char *)"sentinel";
    size_t len = 77;
    const char *type = "sentinel";
    ck_assert_msg(otf_dashboard_asset(bad[i], &data, &len, &type) == -1, "accepted \"%s\"", bad[i]);
    ck_assert_str_eq((const char *)data, "sentinel");
    ck_assert_uint_eq(len, 77);
    ck_assert_str_eq(type, "sentinel");
  }
  const unsigned char *data;
  size_t len;
  const char *type;
  ck_assert_int_eq(otf_dashboard_asset(NULL, &data, &len, &type), -1);
  ck_assert_int_eq(otf_dashboard_asset("/", NULL, &len, &type), -1);
  ck_assert_int_eq(otf_dashboard_asset("/", &data, NULL, &type), -1);
  ck_assert_int_eq(otf_dashboard_asset("/", &data, &len, NULL), -1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("dashboard");
  TCase *tc = tcase_create("assets");
  tcase_add_test(tc, every_file_is_embedded_byte_for_byte);
  tcase_add_test(tc, root_is_index_and_types_are_right);
  tcase_add_test(tc, other_paths_are_refused_and_outputs_untouched);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
