/* safetensors: round trips, dtype decoding, and hostile files (every one
 * must give a clear error, never a crash or an out-of-bounds read). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

static char g_path[256];

static const char *tmp_path(void) {
  snprintf(g_path, sizeof(g_path), "/tmp/otf_st_test_%ld.safetensors", (long)getpid());
  return g_path;
}

/* Writes a file with an explicit header length field, header text and
 * payload bytes. */
static void write_raw(uint64_t hlen_field, const char *hdr, const void *data, size_t dlen) {
  FILE *f = fopen(tmp_path(), "wb");
  ck_assert_ptr_nonnull(f);
  uint8_t b[8];
  for(int k = 0; k < 8; k++)
    b[k] = (uint8_t)(hlen_field >> (8 * k));
  fwrite(b, 1, 8, f);
  fwrite(hdr, 1, strlen(hdr), f);
  if(dlen)
    fwrite(data, 1, dlen, f);
  fclose(f);
}

static otf_status open_raw(const char *hdr, size_t dlen, otf_error *e) {
  static uint8_t zeros[4096];
  write_raw(strlen(hdr), hdr, zeros, dlen);
  otf_st_file *f = NULL;
  otf_status rc = otf_st_open(&f, tmp_path(), e);
  otf_st_close(f);
  unlink(tmp_path());
  return rc;
}

START_TEST(round_trip) {
  double d[6] = {1, -2, 3.5, 1e300, -0.0, 7};
  float fl[3] = {1.5f, -2.25f, 3e-38f};
  int64_t iv[2] = {-5, 1ll << 40};
  otf_st_out t[3] = {
      {.name = "z.weight", .dtype = OTF_DT_F64, .rank = 2, .shape = {2, 3}, .data = d},
      {.name = "a.bias", .dtype = OTF_DT_F32, .rank = 1, .shape = {3}, .data = fl},
      {.name = "ids", .dtype = OTF_DT_I64, .rank = 1, .shape = {2}, .data = iv},
  };
  const char *meta[] = {"producer", "test"};
  otf_error e;
  ck_assert_int_eq(otf_st_write(tmp_path(), t, 3, meta, 1, &e), OTF_OK);
  otf_st_file *f = NULL;
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_OK);
  ck_assert_uint_eq(otf_st_count(f), 3);
  ck_assert_str_eq(otf_st_at(f, 0)->name, "a.bias"); /* name order */
  ck_assert_str_eq(otf_st_metadata(f, "format"), "pt");
  ck_assert_str_eq(otf_st_metadata(f, "producer"), "test");
  ck_assert_ptr_null(otf_st_metadata(f, "nope"));
  const otf_st_tensor *w = otf_st_find(f, "z.weight");
  ck_assert_ptr_nonnull(w);
  ck_assert_int_eq(w->rank, 2);
  ck_assert_uint_eq(w->shape[1], 3);
  double back[6];
  ck_assert_int_eq(otf_st_read_f64(back, w, &e), OTF_OK);
  ck_assert(memcmp(back, d, sizeof(d)) == 0);
  float fb[3];
  ck_assert_int_eq(otf_st_read_f32(fb, otf_st_find(f, "a.bias"), &e), OTF_OK);
  ck_assert(memcmp(fb, fl, sizeof(fl)) == 0);
  ck_assert_int_eq(otf_st_read_f64(back, otf_st_find(f, "ids"), &e), OTF_E_UNSUPPORTED);
  ck_assert_ptr_null(otf_st_find(f, "missing"));
  otf_st_close(f);
  /* The header is 8-byte aligned. */
  FILE *fp = fopen(tmp_path(), "rb");
  uint8_t lb[8];
  ck_assert_uint_eq(fread(lb, 1, 8, fp), 8);
  fclose(fp);
  ck_assert_uint_eq(lb[0] % 8, 0);
  /* Same input, same bytes. */
  char p2[300];
  snprintf(p2, sizeof(p2), "%s.2", tmp_path());
  ck_assert_int_eq(otf_st_write(p2, t, 3, meta, 1, &e), OTF_OK);
  FILE *a = fopen(tmp_path(), "rb"), *b = fopen(p2, "rb");
  int ca, cb;
  do {
    ca = fgetc(a);
    cb = fgetc(b);
    ck_assert_int_eq(ca, cb);
  } while(ca != EOF);
  fclose(a);
  fclose(b);
  unlink(p2);
  unlink(tmp_path());
  /* Duplicate names are refused by the writer. */
  otf_st_out dup[2] = {t[1], t[1]};
  ck_assert_int_eq(otf_st_write(tmp_path(), dup, 2, NULL, 0, &e), OTF_E_INVAL);
  ck_assert(access(tmp_path(), F_OK) != 0);
}
END_TEST

START_TEST(half_and_bfloat_decode) {
  /* F16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), inf, 0.5 */
  uint16_t h[6] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3800};
  /* BF16: 1.0, -3.0, (1 + 22/128) * 2^126, 2^-133 (subnormal) */
  uint16_t bf[4] = {0x3f80, 0xc040, 0x7e96, 0x0001};
  otf_st_out t[2] = {{.name = "h", .dtype = OTF_DT_F16, .rank = 1, .shape = {6}, .data = h},
                     {.name = "b", .dtype = OTF_DT_BF16, .rank = 1, .shape = {4}, .data = bf}};
  ck_assert_int_eq(otf_st_write(tmp_path(), t, 2, NULL, 0, NULL), OTF_OK);
  otf_st_file *f = NULL;
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), NULL), OTF_OK);
  double v[6];
  ck_assert_int_eq(otf_st_read_f64(v, otf_st_find(f, "h"), NULL), OTF_OK);
  ck_assert(v[0] == 1.0 && v[1] == -2.0 && v[2] == 65504.0);
  ck_assert(v[3] == ldexp(1.0, -24));
  ck_assert(isinf(v[4]) && v[5] == 0.5);
  ck_assert_int_eq(otf_st_read_f64(v, otf_st_find(f, "b"), NULL), OTF_OK);
  ck_assert(v[0] == 1.0 && v[1] == -3.0);
  ck_assert(v[2] == ldexp(1.0 + 22.0 / 128.0, 126));
  ck_assert(v[3] == ldexp(1.0, -133));
  otf_st_close(f);
  unlink(tmp_path());
}
END_TEST

START_TEST(hostile_headers) {
  static const struct {
    const char *hdr;
    size_t dlen;
    otf_status want;
    const char *msg; /* substring of the message */
  } cases[] = {
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, OTF_OK, ""},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", 8, OTF_OK, ""},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, OTF_E_FORMAT, "cover"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, OTF_E_FORMAT, "cover"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, OTF_E_FORMAT, "needs 8"},
      {"{\"t\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, OTF_E_FORMAT, "dtype"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, OTF_E_FORMAT, "shape[0]"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, OTF_E_FORMAT, "rank 9"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, OTF_E_FORMAT, "overflow"},
      {"{\"t\":{\"dtype\":\"F64\",\"shape\":[3037000500,3037000500],\"data_offsets\":[0,8]}}", 8, OTF_E_FORMAT, "overflow"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, OTF_E_FORMAT, "negative"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, OTF_E_FORMAT, "data_offsets"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, OTF_E_FORMAT, "overlap"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, OTF_E_FORMAT, "gap"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, OTF_E_FORMAT, "JSON"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, OTF_E_FORMAT, "unknown field"},
      {"{\"t\":[1,2]}", 0, OTF_E_FORMAT, "not an object"},
      {"{\"__metadata__\":{\"k\":1}}", 0, OTF_E_FORMAT, "__metadata__"},
      {"{\"__metadata__\":[]}", 0, OTF_E_FORMAT, "__metadata__"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, OTF_E_FORMAT, "trailing"},
      {"[1,2,3]", 0, OTF_E_FORMAT, "JSON object"},
      {"{\"t\":", 0, OTF_E_FORMAT, "JSON"},
      {"{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, OTF_E_FORMAT, "JSON"},
      {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 4, OTF_E_FORMAT, "JSON"},
      {"", 0, OTF_E_FORMAT, "JSON object"},
      {"{}", 0, OTF_OK, ""},
      {"{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0, OTF_OK, ""},
  };
  for(size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
    otf_error e;
    otf_error_clear(&e);
    otf_status rc = open_raw(cases[k].hdr, cases[k].dlen, &e);
    ck_assert_msg(rc == cases[k].want, "case %zu: got %s (%s), want %s", k,
                  otf_status_name(rc), e.message, otf_status_name(cases[k].want));
    ck_assert_msg(strstr(e.message, cases[k].msg) != NULL, "case %zu: message '%s' lacks '%s'",
                  k, e.message, cases[k].msg);
  }
}
END_TEST

START_TEST(hostile_lengths_and_files) {
  otf_st_file *f = NULL;
  otf_error e;
  const char *hdr = "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  uint8_t four[4] = {0};
  /* Header length beyond the file. */
  write_raw(1000, hdr, four, 4);
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_FORMAT);
  ck_assert(strstr(e.message, "larger than the file") != NULL);
  /* 2^63 and 2^64-1 header lengths. */
  write_raw(1ull << 63, hdr, four, 4);
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_FORMAT);
  ck_assert(strstr(e.message, "exceeds the limit") != NULL);
  write_raw(UINT64_MAX, hdr, four, 4);
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_FORMAT);
  /* Truncated below 8 bytes, and empty. */
  FILE *fp = fopen(tmp_path(), "wb");
  fwrite("abc", 1, 3, fp);
  fclose(fp);
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_FORMAT);
  fp = fopen(tmp_path(), "wb");
  fclose(fp);
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_FORMAT);
  unlink(tmp_path());
  ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_NOT_FOUND);
  ck_assert_int_eq(otf_st_open(&f, "/tmp", &e), OTF_E_IO);
  ck_assert_ptr_null(f);
  /* Every truncation of a valid file fails cleanly. */
  double d[4] = {1, 2, 3, 4};
  otf_st_out t = {.name = "x", .dtype = OTF_DT_F64, .rank = 1, .shape = {4}, .data = d};
  ck_assert_int_eq(otf_st_write(tmp_path(), &t, 1, NULL, 0, &e), OTF_OK);
  fp = fopen(tmp_path(), "rb");
  uint8_t buf[512];
  size_t len = fread(buf, 1, sizeof(buf), fp);
  fclose(fp);
  for(size_t cut = 0; cut < len; cut++) {
    fp = fopen(tmp_path(), "wb");
    fwrite(buf, 1, cut, fp);
    fclose(fp);
    ck_assert_int_eq(otf_st_open(&f, tmp_path(), &e), OTF_E_FORMAT);
  }
  unlink(tmp_path());
}
END_TEST

START_TEST(allocation_failures_are_clean) {
  double d[4] = {1, 2, 3, 4};
  otf_st_out t = {.name = "x", .dtype = OTF_DT_F64, .rank = 1, .shape = {4}, .data = d};
  ck_assert_int_eq(otf_st_write(tmp_path(), &t, 1, NULL, 0, NULL), OTF_OK);
  for(long k = 1; k <= 4; k++) {
    otf_st_file *f = NULL;
    otf_alloc_fail_at(k);
    otf_status rc = otf_st_open(&f, tmp_path(), NULL);
    otf_alloc_fail_at(0);
    ck_assert(rc == OTF_OK || rc == OTF_E_NOMEM);
    ck_assert((rc == OTF_OK) == (f != NULL));
    otf_st_close(f);
  }
  unlink(tmp_path());
}
END_TEST

int main(void) {
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, round_trip);
  tcase_add_test(tc, half_and_bfloat_decode);
  tcase_add_test(tc, hostile_headers);
  tcase_add_test(tc, hostile_lengths_and_files);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
