#include "tests/support/testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t tu_next(tu_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * 0x1.0p-53; }

double tu_normal(tu_rng *r) {
  double u1 = tu_uniform(r), u2 = tu_uniform(r);
  if(u1 < 1e-300)
    u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_fill_uniform(tu_rng *r, double *x, size_t n, double lo, double hi) {
  for(size_t i = 0; i < n; i++)
    x[i] = lo + (hi - lo) * tu_uniform(r);
}

int tu_close(const char *what, const double *got, const double *want, size_t len,
             double atol, double rtol) {
  size_t first = len, worst_i = 0;
  double worst = 0.0;
  for(size_t i = 0; i < len; i++) {
    double d = fabs(got[i] - want[i]);
    if(!(d <= atol + rtol * fabs(want[i])) && first == len)
      first = i;
    if(d > worst || isnan(d)) {
      worst = d;
      worst_i = i;
    }
  }
  if(first == len)
    return 1;
  fprintf(stderr,
          "%s: mismatch at [%zu]: got %.17g want %.17g; largest |diff| %.3g at "
          "[%zu] (atol %.3g, rtol %.3g)\n",
          what, first, got[first], want[first], worst, worst_i, atol, rtol);
  return 0;
}

const char *tu_data_dir(void) {
  const char *d = getenv("OTF_TEST_DATA");
  return d && *d ? d : "tests/data";
}

int tu_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

int tu_fixture_models(char (*names)[64], int cap, int need_golden) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/models", tu_data_dir());
  DIR *d = opendir(path);
  if(!d)
    return 0;
  int n = 0;
  struct dirent *de;
  while((de = readdir(d)) && n < cap) {
    size_t len = strlen(de->d_name);
    if(de->d_name[0] == '.' || len >= 64)
      continue;
    snprintf(path, sizeof(path), "%s/models/%s/config.json", tu_data_dir(), de->d_name);
    if(access(path, R_OK) != 0)
      continue;
    snprintf(path, sizeof(path), "%s/golden/%s.safetensors", tu_data_dir(), de->d_name);
    if(need_golden && access(path, R_OK) != 0)
      continue;
    memcpy(names[n++], de->d_name, len + 1);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof(names[0]), cmp_name);
  return n;
}

enum { ROTATE = 8, PATH_LEN = 600 };

/* A few static buffers per kind of path, used in turn: a result stays
 * valid until ROTATE more paths of the same kind have been made (callers
 * keep e.g. a calibration path in their options while making model paths). */
typedef struct rotation {
  char buf[ROTATE][PATH_LEN];
  int k;
} rotation;

static const char *rotating_path(rotation *r, const char *a, const char *b, const char *c) {
  r->k = (r->k + 1) % ROTATE;
  if(b)
    snprintf(r->buf[r->k], PATH_LEN, "%s/%s/%s", a, b, c);
  else
    snprintf(r->buf[r->k], PATH_LEN, "%s/%s", a, c);
  return r->buf[r->k];
}

static rotation g_models, g_evals, g_scratches;

const char *tu_model_path(const char *name) {
  return rotating_path(&g_models, tu_data_dir(), "models", name);
}
const char *tu_eval_path(const char *name) {
  return rotating_path(&g_evals, tu_data_dir(), "eval", name);
}

static char g_scratch[128];

const char *tu_scratch(void) { return g_scratch; }

const char *tu_scratch_path(const char *name) {
  return rotating_path(&g_scratches, g_scratch, NULL, name);
}

void tu_scratch_setup(void) {
  snprintf(g_scratch, sizeof(g_scratch), "/tmp/otf_scratch_%ld", (long)getpid());
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", g_scratch, g_scratch);
  ck_assert_int_eq(system(cmd), 0);
}

void tu_scratch_teardown(void) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_scratch);
  ck_assert_int_eq(system(cmd), 0);
}
