/* One HTTP request over libcurl, with the robustness every store needs:
 * stall detection (low-speed limit), bounded retries with jittered
 * exponential backoff on 5xx / 429 / connection errors (never on other
 * 4xx), streaming to and from files with hashing on the way, length and
 * MD5-ETag verification of downloads, optional address pinning for the
 * SSRF policy, and errors that name the URI and the cause. */
#ifndef OTF_HTTP_H
#define OTF_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/digest.h"
#include "storage/local.h"

/* Error bodies kept for the message (S3 XML errors are < 1 KiB). */
#define OTF_HTTP_ERR_BODY 4096

typedef struct otf__http_opts {
  long timeout_s;     /* connect timeout and stall window */
  int max_retries;    /* extra attempts after the first */
  long retry_base_ms; /* first backoff; doubles each retry, full jitter */
} otf__http_opts;

/* Builds the request headers of one attempt (signing needs a fresh date
 * each time). *h starts NULL; append with curl_slist_append. */
typedef otf_status (*otf__http_sign_fn)(void *ctx, struct curl_slist **h, otf_error *err);

typedef struct otf__http_req {
  const char *method; /* GET HEAD PUT POST DELETE */
  const char *url;
  const char *what;   /* the URI named in errors */
  otf__http_sign_fn sign;
  void *sign_ctx;
  /* SSRF pinning: when pin_host is set, it is resolved and checked, and
   * the connection goes only to the addresses checked. */
  const char *pin_host;
  int pin_port;
  int allow_private;
  /* Request body: memory (body, body_len) or a file range. */
  const void *body;
  size_t body_len;
  const char *up_path;
  uint64_t up_off, up_len;
  /* Response body: a file (created/truncated per attempt) or memory. */
  const char *down_path;
  char *resp;          /* caller's buffer, resp_cap bytes; NUL-terminated */
  size_t resp_cap;
  int verify_md5_etag; /* a 200 whose ETag is a plain MD5 must match the bytes */
  int expect_len_set;
  uint64_t expect_len;
  /* Results. */
  long status;
  char etag[80];       /* unquoted */
  uint64_t got;        /* body bytes received (last attempt) */
  char sha256[OTF_SHA256_HEX]; /* of the downloaded body */
  char md5[OTF_MD5_HEX];
  size_t resp_len;
  int64_t content_length; /* Content-Length of the response, -1 unknown */
  int attempts;
} otf__http_req;

otf_status otf__http_do(const otf__http_opts *o, otf__http_req *r, otf__xprog *prog,
                        otf_error *err) OTF_WUR;

/* One-time libcurl initialisation (thread-safe). */
void otf__http_global_init(void);

#endif
