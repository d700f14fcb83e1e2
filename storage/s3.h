/* An S3 client over storage/http: HEAD, GET (whole or a Range) into a
 * file, PUT from memory or a file (multipart above the part size, aborted
 * on failure), ListObjectsV2 with continuation, DELETE. Every request is
 * signed with SigV4 (storage/sigv4) and carries x-amz-content-sha256. */
#ifndef OTF_S3_H
#define OTF_S3_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/http.h"
#include "storage/manifest.h"
#include "storage/storage.h"

#define OTF_S3_MIN_PART ((size_t)5 << 20)     /* S3's minimum part size */
#define OTF_S3_DEFAULT_PART ((size_t)16 << 20)
#define OTF_S3_MAX_PARTS 10000                /* S3's limit */

typedef struct otf__s3 {
  int https;
  char host[256];   /* endpoint host (no brackets) */
  int is_ipv6;
  int port;         /* 0 = scheme default */
  int custom_endpoint;
  int path_style;
  char region[64];
  char access_key[128];
  char secret_key[256];
  char *session_token; /* owned */
  int have_creds;
  size_t part_size;
  int list_page;    /* max-keys per ListObjectsV2 page (0 = S3's default) */
  int query_keep_slash; /* see otf_sigv4_req; OTF_S3_QUERY_SLASH=raw */
  otf__http_opts http;
} otf__s3;

/* Settings from cfg, else the AWS environment and credentials file. */
otf_status otf__s3_init(otf__s3 *s3, const otf_storage_cfg *cfg, otf_error *err) OTF_WUR;
void otf__s3_free(otf__s3 *s3);

/* uri is the s3:// URI named in errors. */
otf_status otf__s3_head(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                        uint64_t *size, char *etag, size_t etag_cap, otf_error *err) OTF_WUR;
/* GET into path (created or truncated). len 0 = whole object. expect_size
 * (when not UINT64_MAX) and expect_etag (when non-NULL and not empty) are
 * checked; sha256_out (may be NULL) receives the digest of the bytes. */
otf_status otf__s3_get(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                       const char *path, uint64_t off, uint64_t len, uint64_t expect_size,
                       const char *expect_etag, char *sha256_out, otf__xprog *prog,
                       otf_error *err) OTF_WUR;
otf_status otf__s3_put_mem(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                           const void *buf, size_t len, otf_error *err) OTF_WUR;
/* Uploads a file (multipart when larger than the part size); sha256_out
 * (may be NULL) receives its digest. */
otf_status otf__s3_put_file(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                            const char *path, char *sha256_out, otf__xprog *prog,
                            otf_error *err) OTF_WUR;
/* Lists every object under prefix; names are relative to it, folder
 * markers (keys ending in '/') are skipped, and each entry carries its
 * size and ETag. */
otf_status otf__s3_list(otf__s3 *s3, const char *bucket, const char *prefix, const char *uri,
                        otf_manifest *out, otf_error *err) OTF_WUR;
/* CreateBucket in the configured region's default location (tests, bench). */
otf_status otf__s3_create_bucket(otf__s3 *s3, const char *bucket, otf_error *err) OTF_WUR;
otf_status otf__s3_delete(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                          otf_error *err) OTF_WUR;

#endif
