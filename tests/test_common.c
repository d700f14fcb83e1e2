/* Status table, error detail and the allocation wrapper's failure hook. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/status.h"
#include "tests/support/testutil.h"

START_TEST(status_table_is_consistent) {
  ck_assert_int_eq(OTF_OK, 0);
  ck_assert_str_eq(otf_status_name(OTF_E_INVAL), "E_INVAL");
  ck_assert_str_eq(otf_strerror(OTF_E_NOT_CONVERGED), "solver did not converge");
  ck_assert_int_eq(otf_status_http(OTF_E_NOT_FOUND), 404);
  ck_assert_int_eq(otf_status_http(OTF_E_TOO_LARGE), 413);
  ck_assert_int_eq(otf_status_http((otf_status)-999), 500);
  ck_assert_str_eq(otf_status_name((otf_status)-999), "E_UNKNOWN");
  /* Every code has a distinct name and a non-empty text. */
  static const otf_status all[] = {
#define X(name, code, http, msg) OTF_##name,
      OTF_STATUS_MAP(X)
#undef X
  };
  size_t n = sizeof(all) / sizeof(all[0]);
  for(size_t i = 0; i < n; i++) {
    ck_assert_int_gt((int)strlen(otf_strerror(all[i])), 0);
    ck_assert_int_ge(otf_status_http(all[i]), 200);
    for(size_t j = i + 1; j < n; j++) {
      ck_assert_int_ne(all[i], all[j]);
      ck_assert_str_ne(otf_status_name(all[i]), otf_status_name(all[j]));
    }
  }
}
END_TEST

START_TEST(error_detail_is_filled) {
  otf_error e;
  otf_error_clear(&e);
  ck_assert_int_eq(e.code, OTF_OK);
  otf_status rc = OTF_FAIL(&e, OTF_E_INVAL, "/ot/reg", "reg must be > 0, got %g", -1.0);
  ck_assert_int_eq(rc, OTF_E_INVAL);
  ck_assert_int_eq(e.code, OTF_E_INVAL);
  ck_assert_str_eq(e.message, "reg must be > 0, got -1");
  ck_assert_str_eq(e.pointer, "/ot/reg");
  ck_assert_ptr_nonnull(e.file);
  ck_assert_int_gt(e.line, 0);
  /* NULL error is allowed and still returns the code. */
  ck_assert_int_eq(OTF_FAIL(NULL, OTF_E_IO, NULL, "x"), OTF_E_IO);
  /* Long messages are truncated, not overflowed. */
  char big[1000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  OTF_FAIL(&e, OTF_E_FORMAT, NULL, "%s", big);
  ck_assert_uint_eq(strlen(e.message), OTF_ERROR_MSG_MAX - 1);
}
END_TEST

START_TEST(alloc_fails_exactly_the_kth_call) {
  otf_alloc_fail_at(3);
  void *a = otf_malloc(8), *b = otf_calloc(2, 8), *c = otf_malloc(8), *d = otf_malloc(8);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_ptr_null(c);
  ck_assert_ptr_nonnull(d);
  otf_free(a);
  otf_free(b);
  otf_free(d);
  otf_alloc_fail_at(0);
  ck_assert_ptr_null(otf_malloc_array(SIZE_MAX / 2, 4)); /* overflow */
  ck_assert_ptr_null(otf_malloc_aligned(SIZE_MAX - 10));
  void *al = otf_malloc_aligned(100);
  ck_assert_ptr_nonnull(al);
  ck_assert_uint_eq((uintptr_t)al % 64, 0);
  otf_free(al);
}
END_TEST

int main(void) {
  Suite *s = suite_create("common");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, status_table_is_consistent);
  tcase_add_test(tc, error_detail_is_filled);
  tcase_add_test(tc, alloc_fails_exactly_the_kth_call);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
