/* AWS Signature Version 4 (header form) on libcrypto. We sign every S3
 * request ourselves rather than through libcurl's CURLOPT_AWS_SIGV4, which
 * in curl 7.88 mis-signs valueless and unsorted query parameters.
 *
 * Canonical request (what is signed):
 *   METHOD \n canonical-path \n canonical-query \n canonical-headers \n
 *   signed-headers \n payload-hash
 * with the path percent-encoded once per segment (S3; slashes kept), query
 * parameters percent-encoded, sorted by name then value, valueless ones
 * written "name=", header names lowercased, values trimmed with inner runs
 * of spaces collapsed, sorted by name. */
#ifndef OTF_SIGV4_H
#define OTF_SIGV4_H

#include <stddef.h>

#include "common/error.h"

#define OTF_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct otf_sigv4_kv {
  const char *name;
  const char *value; /* query: NULL = valueless parameter */
} otf_sigv4_kv;

typedef struct otf_sigv4_req {
  const char *method;       /* "GET" */
  const char *path;         /* unencoded, e.g. "/bucket/a b/c" (encode_path=1) */
  int encode_path;          /* 1: percent-encode path segments; 0: already encoded */
  const otf_sigv4_kv *query;
  size_t n_query;
  const otf_sigv4_kv *headers; /* must include host and x-amz-date */
  size_t n_headers;
  const char *payload_sha256; /* hex, or "UNSIGNED-PAYLOAD" */
  const char *region;
  const char *service;
  const char *access_key;
  const char *secret_key;
  const char *amz_date;     /* "YYYYMMDDTHHMMSSZ" */
  /* 0 (AWS): '/' in query names and values is encoded as %2F. 1: kept,
   * for servers that canonicalise the query they received with '/'
   * decoded (moto_server behind werkzeug does). */
  int query_keep_slash;
} otf_sigv4_req;

/* Writes the Authorization header value into auth (cap bytes), and when
 * given, the canonical request and the string to sign (for tests and
 * debugging; they hold no secret). Any output may be too small: then
 * OTF_E_TOO_LARGE. */
otf_status otf_sigv4_sign(const otf_sigv4_req *r, char *auth, size_t cap, char *creq,
                          size_t creq_cap, char *sts, size_t sts_cap, otf_error *err) OTF_WUR;

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved characters
 * (A-Z a-z 0-9 - _ . ~) kept, '/' kept when keep_slash, everything else
 * %XX (upper-case hex). Returns the length, or -1 when cap is too small. */
long otf_sigv4_encode(const char *s, int keep_slash, char *out, size_t cap);

/* The canonical query string (also what goes into the URL, so that the
 * request sent is the request signed). -1 when cap is too small. */
long otf_sigv4_query(const otf_sigv4_kv *q, size_t n, char *out, size_t cap);
/* The same, keeping '/' unencoded when keep_slash. */
long otf_sigv4_query_ex(const otf_sigv4_kv *q, size_t n, int keep_slash, char *out, size_t cap);

/* "YYYYMMDDTHHMMSSZ" for a UNIX time. */
void otf_sigv4_amz_date(long long unix_time, char out[17]);

#endif
