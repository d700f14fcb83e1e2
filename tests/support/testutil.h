/* Shared helpers for the check suites: a deterministic RNG, random problem
 * generators and array comparison that reports the first bad value and the
 * largest difference. */
#ifndef OTF_TESTUTIL_H
#define OTF_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: deterministic across platforms. */
typedef struct tu_rng { uint64_t s; } tu_rng;
uint64_t tu_next(tu_rng *r);
double tu_uniform(tu_rng *r);  /* [0, 1) */
double tu_normal(tu_rng *r);   /* standard normal (Box-Muller) */

/* Fills x [n] with values in [lo, hi). */
void tu_fill_uniform(tu_rng *r, double *x, size_t n, double lo, double hi);

/* Compares got vs want (len values) with |got - want| <= atol + rtol*|want|.
 * On failure prints what, the first offending index, both values and the
 * largest absolute difference, and returns 0. */
int tu_close(const char *what, const double *got, const double *want, size_t len,
             double atol, double rtol);

/* Directory of committed fixtures: $OTF_TEST_DATA or "tests/data". */
const char *tu_data_dir(void);

/* Names of the fixture model folders under <data>/models that have a
 * config.json (and, when need_golden, a <data>/golden/<name>.safetensors),
 * sorted; at most cap. Returns how many. */
int tu_fixture_models(char (*names)[64], int cap, int need_golden);

/* Paths of committed fixtures: <data>/models/<name>, <data>/eval/<name>.
 * Each returns one of 8 static buffers per kind, used in turn: a result
 * stays valid until 8 more paths of the same kind have been made. */
const char *tu_model_path(const char *name);
const char *tu_eval_path(const char *name);

/* A scratch folder per test process, /tmp/otf_scratch_<pid>: created empty
 * by tu_scratch_setup, removed by tu_scratch_teardown (a checked fixture
 * pair). tu_scratch() is the folder, tu_scratch_path(name) a path in it. */
void tu_scratch_setup(void);
void tu_scratch_teardown(void);
const char *tu_scratch(void);
const char *tu_scratch_path(const char *name);

/* Runs a suite (fork mode unless CK_FORK=no) and returns 0 if all passed.
 * Prints check's summary line. */
int tu_run_suite(Suite *s);

#endif
