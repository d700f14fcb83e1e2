/* SigV4 known-answer tests: AWS's published examples (the SigV4 test
 * suite's get-vanilla cases, and the four header-signing examples of the
 * S3 API reference with examplebucket), plus the encoding rules. */
#include <string.h>

#include "storage/digest.h"
#include "storage/sigv4.h"
#include "tests/support/testutil.h"

/* The S3 documentation's example credentials and time. */
#define S3_AK "AKIAIOSFODNN7EXAMPLE"
#define S3_SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DATE "20130524T000000Z"
#define S3_HOST "examplebucket.s3.amazonaws.com"

static const char *sig_of(const char *auth) {
  const char *p = strstr(auth, "Signature=");
  ck_assert_ptr_nonnull(p);
  return p + 10;
}

START_TEST(suite_get_vanilla) {
  /* SigV4 test suite, get-vanilla: GET / with host and x-amz-date only. */
  otf_sigv4_kv h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  otf_sigv4_req r = {.method = "GET", .path = "/", .encode_path = 1, .headers = h, .n_headers = 2,
                     .payload_sha256 = OTF_SIGV4_EMPTY_SHA256, .region = "us-east-1",
                     .service = "service", .access_key = "AKIDEXAMPLE",
                     .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                     .amz_date = "20150830T123600Z"};
  char auth[512], creq[1024], sts[512];
  otf_error e;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), creq, sizeof(creq), sts, sizeof(sts), &e), OTF_OK);
  ck_assert_str_eq(creq, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                         "host;x-amz-date\n" OTF_SIGV4_EMPTY_SHA256);
  ck_assert_str_eq(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                         "SignedHeaders=host;x-amz-date, "
                         "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  ck_assert_ptr_nonnull(strstr(sts, "20150830/us-east-1/service/aws4_request\n"));

  /* get-vanilla-query-order-key-case: Param2 before Param1 in the URL. */
  otf_sigv4_kv q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
  r.query = q;
  r.n_query = 2;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), NULL, 0, NULL, 0, &e), OTF_OK);
  ck_assert_str_eq(sig_of(auth), "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}
END_TEST

START_TEST(s3_get_object_with_range) {
  otf_sigv4_kv h[] = {{"Host", S3_HOST}, {"Range", "bytes=0-9"},
                      {"x-amz-content-sha256", OTF_SIGV4_EMPTY_SHA256}, {"x-amz-date", S3_DATE}};
  otf_sigv4_req r = {.method = "GET", .path = "/test.txt", .encode_path = 1, .headers = h,
                     .n_headers = 4, .payload_sha256 = OTF_SIGV4_EMPTY_SHA256, .region = "us-east-1",
                     .service = "s3", .access_key = S3_AK, .secret_key = S3_SK, .amz_date = S3_DATE};
  char auth[512], creq[1024], sts[512];
  otf_error e;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), creq, sizeof(creq), sts, sizeof(sts), &e), OTF_OK);
  ck_assert_str_eq(creq, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                         "x-amz-content-sha256:" OTF_SIGV4_EMPTY_SHA256 "\nx-amz-date:20130524T000000Z\n\n"
                         "host;range;x-amz-content-sha256;x-amz-date\n" OTF_SIGV4_EMPTY_SHA256);
  ck_assert_str_eq(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  ck_assert_str_eq(sig_of(auth), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  ck_assert_ptr_nonnull(strstr(auth, "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"));
  ck_assert_ptr_nonnull(strstr(auth, "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"));
  /* The secret appears nowhere in what we produce. */
  ck_assert_ptr_null(strstr(auth, S3_SK));
  ck_assert_ptr_null(strstr(creq, S3_SK));
  ck_assert_ptr_null(strstr(sts, S3_SK));
}
END_TEST

START_TEST(s3_put_object) {
  const char *body = "Welcome to Amazon S3.";
  char hash[OTF_SHA256_HEX];
  otf__sha256_hex(body, strlen(body), hash);
  ck_assert_str_eq(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  /* Header names in any case and order; the key has a '$' to encode. */
  otf_sigv4_kv h[] = {{"X-Amz-Storage-Class", "REDUCED_REDUNDANCY"}, {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                      {"Host", S3_HOST}, {"x-amz-date", S3_DATE}, {"x-amz-content-sha256", hash}};
  otf_sigv4_req r = {.method = "PUT", .path = "/test$file.text", .encode_path = 1, .headers = h,
                     .n_headers = 5, .payload_sha256 = hash, .region = "us-east-1", .service = "s3",
                     .access_key = S3_AK, .secret_key = S3_SK, .amz_date = S3_DATE};
  char auth[512], creq[1024];
  otf_error e;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), creq, sizeof(creq), NULL, 0, &e), OTF_OK);
  ck_assert_int_eq(strncmp(creq, "PUT\n/test%24file.text\n\n", 23), 0);
  ck_assert_str_eq(sig_of(auth), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}
END_TEST

START_TEST(s3_get_bucket_lifecycle_valueless_param) {
  otf_sigv4_kv h[] = {{"Host", S3_HOST}, {"x-amz-content-sha256", OTF_SIGV4_EMPTY_SHA256}, {"x-amz-date", S3_DATE}};
  otf_sigv4_kv q[] = {{"lifecycle", NULL}};
  otf_sigv4_req r = {.method = "GET", .path = "/", .encode_path = 1, .query = q, .n_query = 1, .headers = h,
                     .n_headers = 3, .payload_sha256 = OTF_SIGV4_EMPTY_SHA256, .region = "us-east-1",
                     .service = "s3", .access_key = S3_AK, .secret_key = S3_SK, .amz_date = S3_DATE};
  char auth[512], creq[1024];
  otf_error e;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), creq, sizeof(creq), NULL, 0, &e), OTF_OK);
  ck_assert_int_eq(strncmp(creq, "GET\n/\nlifecycle=\n", 17), 0);
  char chash[OTF_SHA256_HEX];
  otf__sha256_hex(creq, strlen(creq), chash);
  ck_assert_str_eq(chash, "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  ck_assert_str_eq(sig_of(auth), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}
END_TEST

START_TEST(s3_list_objects_sorted_query) {
  otf_sigv4_kv h[] = {{"Host", S3_HOST}, {"x-amz-content-sha256", OTF_SIGV4_EMPTY_SHA256}, {"x-amz-date", S3_DATE}};
  otf_sigv4_kv q[] = {{"prefix", "J"}, {"max-keys", "2"}}; /* unsorted on purpose */
  otf_sigv4_req r = {.method = "GET", .path = "/", .encode_path = 1, .query = q, .n_query = 2, .headers = h,
                     .n_headers = 3, .payload_sha256 = OTF_SIGV4_EMPTY_SHA256, .region = "us-east-1",
                     .service = "s3", .access_key = S3_AK, .secret_key = S3_SK, .amz_date = S3_DATE};
  char auth[512], creq[1024];
  otf_error e;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), creq, sizeof(creq), NULL, 0, &e), OTF_OK);
  ck_assert_int_eq(strncmp(creq, "GET\n/\nmax-keys=2&prefix=J\n", 26), 0);
  ck_assert_str_eq(sig_of(auth), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  /* A wrong secret gives a different signature. */
  r.secret_key = "wrong";
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), NULL, 0, NULL, 0, &e), OTF_OK);
  ck_assert_str_ne(sig_of(auth), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}
END_TEST

START_TEST(encoding_rules) {
  char out[256];
  ck_assert_int_eq(otf_sigv4_encode("a b+c/d~e_f.g-h", 1, out, sizeof(out)), 19);
  ck_assert_str_eq(out, "a%20b%2Bc/d~e_f.g-h");
  ck_assert_int_ge(otf_sigv4_encode("a/b=c&d", 0, out, sizeof(out)), 0);
  ck_assert_str_eq(out, "a%2Fb%3Dc%26d");
  ck_assert_int_ge(otf_sigv4_encode("\xc3\xa9*", 0, out, sizeof(out)), 0);
  ck_assert_str_eq(out, "%C3%A9%2A");
  ck_assert_int_eq(otf_sigv4_encode("abc", 0, out, 3), -1); /* no room for the NUL */
  /* Query: sorted by name then value, valueless as "name=", values encoded. */
  otf_sigv4_kv q[] = {{"uploads", NULL}, {"prefix", "models/a b/"}, {"list-type", "2"},
                      {"continuation-token", "1/x+y=="}};
  ck_assert_int_ge(otf_sigv4_query(q, 4, out, sizeof(out)), 0);
  ck_assert_str_eq(out, "continuation-token=1%2Fx%2By%3D%3D&list-type=2&prefix=models%2Fa%20b%2F&uploads=");
  ck_assert_int_eq(otf_sigv4_query(q, 4, out, 10), -1);
  char d[17];
  otf_sigv4_amz_date(1369353600LL, d);
  ck_assert_str_eq(d, "20130524T000000Z");
  /* Header values: trimmed, inner space runs collapsed; duplicates refused. */
  otf_sigv4_kv h[] = {{"host", "h"}, {"X-Amz-Date", "  20130524T000000Z "}, {"x-amz-meta-a", "a   b"}};
  otf_sigv4_req r = {.method = "GET", .path = "/k", .encode_path = 1, .headers = h, .n_headers = 3,
                     .payload_sha256 = "UNSIGNED-PAYLOAD", .region = "r", .service = "s3",
                     .access_key = "AK", .secret_key = "SK", .amz_date = S3_DATE};
  char auth[512], creq[512];
  otf_error e;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), creq, sizeof(creq), NULL, 0, &e), OTF_OK);
  ck_assert_ptr_nonnull(strstr(creq, "x-amz-date:20130524T000000Z\nx-amz-meta-a:a b\n"));
  otf_sigv4_kv dup[] = {{"host", "h"}, {"Host", "h"}};
  r.headers = dup;
  r.n_headers = 2;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), NULL, 0, NULL, 0, &e), OTF_E_INVAL);
  r.headers = h;
  r.n_headers = 3;
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, 20, NULL, 0, NULL, 0, &e), OTF_E_TOO_LARGE);
  r.amz_date = "bad";
  ck_assert_int_eq(otf_sigv4_sign(&r, auth, sizeof(auth), NULL, 0, NULL, 0, &e), OTF_E_INVAL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("sigv4");
  TCase *tc = tcase_create("kat");
  tcase_add_test(tc, suite_get_vanilla);
  tcase_add_test(tc, s3_get_object_with_range);
  tcase_add_test(tc, s3_put_object);
  tcase_add_test(tc, s3_get_bucket_lifecycle_valueless_param);
  tcase_add_test(tc, s3_list_objects_sorted_query);
  tcase_add_test(tc, encoding_rules);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
