/* float <-> half / bfloat16 conversions: every half value exhaustively,
 * every rounding tie of the half grid, crafted bfloat16 edge cases, and a
 * few million random floats against a slow reference that rounds with
 * double arithmetic (rint) instead of bit tricks. Set OTF_EXHAUSTIVE=1 to
 * compare all 2^32 floats against the reference as well (minutes). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/safetensors.h"
#include "tests/support/testutil.h"

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof(f));
  return f;
}

static uint32_t to_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof(b));
  return b;
}

/* The reference: rounds f to a binary format with mbits stored mantissa
 * bits and ebits exponent bits (IEEE layout, gradual underflow), ties to
 * even, and returns its bit pattern. The scaling by ulp is exact (a power
 * of two), so rint does the only rounding, in the default RNE mode. */
static uint32_t ref_round(float f, int mbits, int ebits) {
  int bias = (1 << (ebits - 1)) - 1, emin = 1 - bias;
  uint32_t sign = signbit(f) ? 1u << (mbits + ebits) : 0;
  uint32_t inf = ((1u << ebits) - 1) << mbits;
  if(isnan(f)) /* quiet bit forced, top payload bits kept */
    return sign | inf | (1u << (mbits - 1)) | ((to_bits(f) & 0x7fffffu) >> (23 - mbits));
  if(isinf(f))
    return sign | inf;
  double ax = fabs((double)f);
  if(ax == 0.0)
    return sign;
  int ex;
  (void)frexp(ax, &ex);
  int e = ex - 1 < emin ? emin : ex - 1; /* below emin: the subnormal grid */
  double r = rint(ax / ldexp(1.0, e - mbits));
  /* r in [0, 2^(mbits+1)]; a carry to 2^(mbits+1) moves into the exponent,
   * and for e == emin the formula reduces to r, the subnormal encoding. */
  uint32_t bits = ((uint32_t)(e + bias) << mbits) + (uint32_t)r - (1u << mbits);
  return sign | (bits >= inf ? inf : bits);
}

static uint32_t ref_f16(float f) { return ref_round(f, 10, 5); }
static uint32_t ref_bf16(float f) { return ref_round(f, 7, 8); }

/* Value of a half by its definition. */
static double half_value(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0    ? ldexp(m, -24)
             : e == 31 ? (m ? NAN : INFINITY)
                       : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}

START_TEST(f16_all_values_round_trip) {
  for(uint32_t h = 0; h < 65536; h++) {
    float f = otf_f16_to_f32((uint16_t)h);
    uint16_t back = otf_f32_to_f16(f);
    int is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
    if(is_nan) {
      ck_assert_msg(isnan(f), "half 0x%04x: got %g, want NaN", h, f);
      /* A signalling NaN comes back quiet with the same payload. */
      ck_assert_msg(back == (h | 0x200u), "half 0x%04x: back 0x%04x", h, back);
    } else {
      double want = half_value((uint16_t)h);
      ck_assert_msg((double)f == want && !signbit(f) == !signbit(want),
                    "half 0x%04x: decoded %.9g, want %.9g", h, f, want);
      ck_assert_msg(back == h, "half 0x%04x: round trip gave 0x%04x", h, back);
    }
  }
}
END_TEST

/* Every midpoint between two adjacent finite halves (a float: 12
 * significant bits) rounds to the even one, and the floats just beside
 * the midpoint round to the nearer one. */
START_TEST(f16_every_tie) {
  for(uint32_t h = 0; h < 0x7c00; h++) {
    for(int s = 0; s < 2; s++) {
      uint16_t sg = s ? 0x8000 : 0;
      uint16_t lo = (uint16_t)(h | sg), hi = (uint16_t)((h + 1) | sg);
      /* Above 65504 the next "half" is 2^16, which overflows to inf. */
      double mid = h + 1 == 0x7c00
                       ? 65520.0
                       : (half_value((uint16_t)h) + half_value((uint16_t)(h + 1))) / 2;
      float m = (float)(s ? -mid : mid);
      ck_assert_msg((double)fabsf(m) == mid, "midpoint of 0x%04x is not a float", h);
      uint16_t even = (h & 1) ? hi : lo;
      ck_assert_msg(otf_f32_to_f16(m) == even, "tie above 0x%04x: got 0x%04x want 0x%04x",
                    lo, otf_f32_to_f16(m), even);
      float below = nextafterf(m, 0.0f), above = nextafterf(m, s ? -INFINITY : INFINITY);
      ck_assert_msg(otf_f32_to_f16(below) == lo, "below tie of 0x%04x: got 0x%04x", lo,
                    otf_f32_to_f16(below));
      ck_assert_msg(otf_f32_to_f16(above) == hi, "above tie of 0x%04x: got 0x%04x", lo,
                    otf_f32_to_f16(above));
    }
  }
}
END_TEST

START_TEST(f16_edges) {
  ck_assert_uint_eq(otf_f32_to_f16(65504.0f), 0x7bff);
  ck_assert_uint_eq(otf_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
  ck_assert_uint_eq(otf_f32_to_f16(65520.0f), 0x7c00);
  ck_assert_uint_eq(otf_f32_to_f16(-65520.0f), 0xfc00);
  ck_assert_uint_eq(otf_f32_to_f16(FLT_MAX), 0x7c00);
  ck_assert_uint_eq(otf_f32_to_f16(INFINITY), 0x7c00);
  ck_assert_uint_eq(otf_f32_to_f16(-INFINITY), 0xfc00);
  ck_assert_uint_eq(otf_f32_to_f16(-0.0f), 0x8000);
  ck_assert_uint_eq(otf_f32_to_f16(0x1p-24f), 0x0001); /* smallest subnormal */
  ck_assert_uint_eq(otf_f32_to_f16(0x1p-25f), 0x0000); /* tie -> even 0 */
  ck_assert_uint_eq(otf_f32_to_f16(-0x1p-25f), 0x8000);
  ck_assert_uint_eq(otf_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
  ck_assert_uint_eq(otf_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 ulp: tie -> 2 */
  ck_assert_uint_eq(otf_f32_to_f16(0x1.4p-23f), 0x0002); /* 2.5 ulp: tie -> 2 */
  ck_assert_uint_eq(otf_f32_to_f16(0x1p-14f), 0x0400); /* smallest normal */
  ck_assert_uint_eq(otf_f32_to_f16(nextafterf(0x1p-14f, 0.0f)),
                    0x0400); /* rounds up into it */
  ck_assert_uint_eq(otf_f32_to_f16(FLT_TRUE_MIN), 0x0000);
  ck_assert_uint_eq(otf_f32_to_f16(1.0f), 0x3c00);
  ck_assert_uint_eq(otf_f32_to_f16(0.1f), 0x2e66);
  /* NaNs stay NaN (never inf), quiet, sign and top payload kept. */
  ck_assert_uint_eq(otf_f32_to_f16(from_bits(0x7fc00000u)), 0x7e00);
  ck_assert_uint_eq(otf_f32_to_f16(from_bits(0x7f800001u)), 0x7e00);
  ck_assert_uint_eq(otf_f32_to_f16(from_bits(0xff800001u)), 0xfe00);
  ck_assert_uint_eq(otf_f32_to_f16(from_bits(0x7fa02000u)), 0x7f01);
}
END_TEST

START_TEST(bf16_edges) {
  static const struct {
    uint32_t in;
    uint16_t want;
  } cases[] = {
      {0x3f800000u, 0x3f80}, /* 1 */
      {0x3f808000u, 0x3f80}, /* tie, even below */
      {0x3f818000u, 0x3f82}, /* tie, even above */
      {0x3f808001u, 0x3f81}, /* just above a tie */
      {0x3f807fffu, 0x3f80}, /* just below a tie */
      {0xbf818000u, 0xbf82}, /* negative tie */
      {0x7f7f7fffu, 0x7f7f}, /* stays the largest finite */
      {0x7f7f8000u, 0x7f80}, /* tie above the largest finite: odd, so overflow */
      {0x7f7fffffu, 0x7f80}, /* FLT_MAX overflows */
      {0xff7fffffu, 0xff80},
      {0x7f800000u, 0x7f80}, /* inf */
      {0xff800000u, 0xff80},
      {0x00008000u, 0x0000}, /* subnormal tie to even 0 */
      {0x00018000u, 0x0002}, /* subnormal tie to even 2 */
      {0x00008001u, 0x0001},
      {0x007fffffu, 0x0080}, /* largest subnormal rounds up to the smallest normal */
      {0x80000000u, 0x8000}, /* -0 */
      {0x7fc00000u, 0x7fc0}, /* quiet NaN */
      {0x7f800001u, 0x7fc0}, /* signalling NaN, payload only in the low bits: not inf */
      {0xff800001u, 0xffc0},
      {0x7f810000u, 0x7fc1}, /* payload in the kept bits survives */
  };
  for(size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
    uint16_t got = otf_f32_to_bf16(from_bits(cases[k].in));
    ck_assert_msg(got == cases[k].want, "bf16(0x%08x) = 0x%04x, want 0x%04x", cases[k].in,
                  got, cases[k].want);
    ck_assert_uint_eq(got, ref_bf16(from_bits(cases[k].in)));
  }
  /* bf16 -> f32 is a shift: every bf16 (but NaNs quieted) round-trips. */
  for(uint32_t b = 0; b < 65536; b++) {
    uint16_t back = otf_f32_to_bf16(from_bits(b << 16));
    int is_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f);
    ck_assert_msg(back == (is_nan ? (b | 0x40u) : b), "bf16 0x%04x came back 0x%04x", b,
                  back);
  }
}
END_TEST

/* Random floats: bit patterns uniform over all floats, patterns confined
 * to the exponents where halves live, and patterns with exact ties forced
 * into the low bits, each against the reference. */
START_TEST(random_against_reference) {
  tu_rng r = {.s = 0x5eed};
  long bad = 0;
  for(long i = 0; i < 3000000; i++) {
    uint32_t b = (uint32_t)tu_next(&r);
    switch(i % 4) {
    case 1: /* exponents 2^-28 .. 2^17: half subnormals through overflow */
      b = (b & 0x807fffffu) | ((99u + (b >> 23) % 46u) << 23);
      break;
    case 2: /* an exact f16 tie (normal range) */
      b = (b & 0xffffe000u) | 0x1000u;
      break;
    case 3: /* an exact bf16 tie */
      b = (b & 0xffff0000u) | 0x8000u;
      break;
    default:
      break;
    }
    float f = from_bits(b);
    uint16_t h = otf_f32_to_f16(f), bf = otf_f32_to_bf16(f);
    if(h != ref_f16(f) || bf != ref_bf16(f)) {
      if(bad++ < 5)
        fprintf(stderr, "0x%08x: f16 0x%04x (ref 0x%04x), bf16 0x%04x (ref 0x%04x)\n", b,
                h, ref_f16(f), bf, ref_bf16(f));
    }
  }
  ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(all_floats_against_reference) {
  const char *on = getenv("OTF_EXHAUSTIVE");
  if(!on || strcmp(on, "1") != 0)
    return;
  long bad = 0;
  for(uint64_t b = 0; b <= UINT32_MAX; b++) {
    float f = from_bits((uint32_t)b);
    if(otf_f32_to_f16(f) != ref_f16(f) || otf_f32_to_bf16(f) != ref_bf16(f)) {
      if(bad++ < 5)
        fprintf(stderr, "mismatch at 0x%08llx\n", (unsigned long long)b);
    }
  }
  ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(convert_buffers) {
  const float in[6] = {1.0f, -2.5f, 0x1p-24f, 70000.0f, NAN, 0.1f};
  uint8_t buf[1 + 6 * 8];
  otf_error e;
  /* Offset by one byte: the output may be unaligned. */
  ck_assert_int_eq(otf_st_convert_f32(buf + 1, OTF_DT_F16, in, 6, &e), OTF_OK);
  for(int k = 0; k < 6; k++) {
    uint16_t h = (uint16_t)(buf[1 + 2 * k] | buf[2 + 2 * k] << 8); /* little-endian */
    ck_assert_uint_eq(h, otf_f32_to_f16(in[k]));
  }
  ck_assert_int_eq(otf_st_convert_f32(buf + 1, OTF_DT_BF16, in, 6, &e), OTF_OK);
  for(int k = 0; k < 6; k++) {
    uint16_t h = (uint16_t)(buf[1 + 2 * k] | buf[2 + 2 * k] << 8);
    ck_assert_uint_eq(h, otf_f32_to_bf16(in[k]));
  }
  ck_assert_int_eq(otf_st_convert_f32(buf + 1, OTF_DT_F32, in, 6, &e), OTF_OK);
  ck_assert(memcmp(buf + 1, in, sizeof(in)) == 0);
  ck_assert_int_eq(otf_st_convert_f32(buf + 1, OTF_DT_F64, in, 6, &e), OTF_OK);
  for(int k = 0; k < 6; k++) {
    double d;
    memcpy(&d, buf + 1 + 8 * k, 8);
    ck_assert(isnan(in[k]) ? isnan(d) : d == (double)in[k]);
  }
  ck_assert_int_eq(otf_st_convert_f32(buf, OTF_DT_I32, in, 6, &e), OTF_E_UNSUPPORTED);
  ck_assert(strstr(e.message, "I32") != NULL);
  ck_assert_int_eq(otf_st_convert_f32(buf, OTF_DT_F16, in, 0, NULL), OTF_OK);
}
END_TEST

/* Converted buffers written by otf_st_write read back as the same values. */
START_TEST(convert_write_read) {
  enum { N = 1000 };
  float in[N], back[N];
  tu_rng r = {.s = 7};
  for(int k = 0; k < N; k++)
    in[k] = (float)(tu_normal(&r) * 10.0);
  uint16_t h[N], bf[N];
  ck_assert_int_eq(otf_st_convert_f32(h, OTF_DT_F16, in, N, NULL), OTF_OK);
  ck_assert_int_eq(otf_st_convert_f32(bf, OTF_DT_BF16, in, N, NULL), OTF_OK);
  otf_st_out t[2] = {
      {.name = "h", .dtype = OTF_DT_F16, .rank = 1, .shape = {N}, .data = h},
      {.name = "b", .dtype = OTF_DT_BF16, .rank = 1, .shape = {N}, .data = bf}};
  char path[64];
  snprintf(path, sizeof(path), "/tmp/otf_halfconv_%ld.safetensors", (long)getpid());
  ck_assert_int_eq(otf_st_write(path, t, 2, NULL, 0, NULL), OTF_OK);
  otf_st_file *f = NULL;
  ck_assert_int_eq(otf_st_open(&f, path, NULL), OTF_OK);
  ck_assert_int_eq(otf_st_read_f32(back, otf_st_find(f, "h"), NULL), OTF_OK);
  for(int k = 0; k < N; k++) {
    ck_assert(back[k] == otf_f16_to_f32(h[k]));
    ck_assert(fabsf(back[k] - in[k]) <= fabsf(in[k]) * 0x1p-11f + 0x1p-25f);
  }
  ck_assert_int_eq(otf_st_read_f32(back, otf_st_find(f, "b"), NULL), OTF_OK);
  for(int k = 0; k < N; k++)
    ck_assert(fabsf(back[k] - in[k]) <= fabsf(in[k]) * 0x1p-8f);
  otf_st_close(f);
  unlink(path);
}
END_TEST

int main(void) {
  Suite *s = suite_create("halfconv");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, f16_all_values_round_trip);
  tcase_add_test(tc, f16_every_tie);
  tcase_add_test(tc, f16_edges);
  tcase_add_test(tc, bf16_edges);
  tcase_add_test(tc, random_against_reference);
  tcase_add_test(tc, convert_buffers);
  tcase_add_test(tc, convert_write_read);
  suite_add_tcase(s, tc);
  TCase *ex = tcase_create("exhaustive");
  tcase_set_timeout(ex, 3600);
  tcase_add_test(ex, all_floats_against_reference);
  suite_add_tcase(s, ex);
  return tu_run_suite(s);
}
