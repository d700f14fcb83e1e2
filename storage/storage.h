/* Where bytes live: model folders and single files behind URIs.
 *
 *   file:///abs/path/      local files, confined to the configured roots
 *   s3://bucket/prefix/    S3 or an S3-compatible store (SigV4 over libcurl)
 *   http(s)://host/path    read-only (presigned URLs, model hosts)
 *
 * A model URI names a folder (config.json + model.safetensors or shards +
 * index, plus tokenizer/preprocessor files); a file URI names one object.
 * Remote models are fetched into a content-addressed local cache; local
 * file:// folders are used where they are. Writes of a folder are atomic
 * for readers: every file is uploaded, then fusion_manifest.json (files,
 * sizes, SHA-256) last.
 *
 * This is the contract the CLI (`otfuse fuse`, `otfuse cp`) and the
 * service (job runner, spec validation) build on. An otf_storage is
 * thread-safe: several jobs may fetch through one at once. */
#ifndef OTF_STORAGE_H
#define OTF_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define OTF_STORAGE_MAX_ROOTS 16

typedef struct otf_storage_cfg {
  /* file:// URIs must resolve (after realpath) inside one of these
   * folders; none configured = file:// refused. */
  const char *file_roots[OTF_STORAGE_MAX_ROOTS];
  size_t n_file_roots;
  /* S3: NULL members fall back to the AWS environment (AWS_ENDPOINT_URL_S3,
   * AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
   * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_SHARED_CREDENTIALS_FILE /
   * ~/.aws/credentials with AWS_PROFILE). */
  const char *s3_endpoint;      /* e.g. http://127.0.0.1:9000; NULL = AWS */
  const char *s3_region;
  const char *s3_access_key;
  const char *s3_secret_key;
  const char *s3_session_token;
  int s3_path_style;            /* -1 = auto (path style when an endpoint is set) */
  size_t s3_part_size;          /* multipart part size, >= 5 MiB; 0 = default */
  /* Local cache of fetched models; NULL = a private temp folder. */
  const char *cache_dir;
  uint64_t cache_max_bytes;     /* 0 = default (20 GiB) */
  /* Network policy: hosts that resolve to loopback / private / link-local
   * (169.254.0.0/16, fd00::/8, the cloud metadata address) are refused
   * unless allowed. The configured S3 endpoint is always allowed. */
  int allow_private_hosts;
  long timeout_s;               /* per request (stall), 0 = default 30 s */
  int max_retries;              /* 5xx / 429 / connection errors; 0 = default 4 */
  /* Added with the S3 client (members only ever appended): */
  long retry_base_ms;           /* first backoff (doubles, jittered); 0 = default 250 */
  int s3_list_page;             /* max-keys per ListObjectsV2 page; 0 = the store's default */
} otf_storage_cfg;

typedef struct otf_storage otf_storage;

/* Progress of a transfer: bytes done of total (total 0 = unknown). Return
 * non-zero to cancel (the call then fails with OTF_E_CANCELLED). */
typedef int (*otf_xfer_progress)(void *ctx, uint64_t done, uint64_t total);

otf_status otf_storage_open(otf_storage **out, const otf_storage_cfg *cfg,
                            otf_error *err) OTF_WUR;
void otf_storage_close(otf_storage *s);

/* Checks a URI against the policy without touching the network or disk
 * beyond realpath: scheme known, file:// inside a root, no link-local or
 * metadata hosts, writable scheme when for_write. The error names the
 * URI and why. Cheap: the service calls it while validating a job spec. */
otf_status otf_storage_check(otf_storage *s, const char *uri, int for_write,
                             otf_error *err) OTF_WUR;

/* Makes a model folder available locally and writes its path into
 * local_dir (cap bytes). file:// gives the folder itself; s3/http fetch
 * it into the cache (verified; one download when two callers ask at once;
 * the entry is pinned until otf_storage_release). */
otf_status otf_storage_fetch_model(otf_storage *s, const char *uri, char *local_dir,
                                   size_t cap, otf_xfer_progress progress, void *ctx,
                                   otf_error *err) OTF_WUR;

/* The same for one file (a calibration set): local_path receives it. */
otf_status otf_storage_fetch_file(otf_storage *s, const char *uri, char *local_path,
                                  size_t cap, otf_xfer_progress progress, void *ctx,
                                  otf_error *err) OTF_WUR;

/* Unpins what a fetch returned (no-op for file://). */
void otf_storage_release(otf_storage *s, const char *local_path);

/* Whether a folder URI is free to publish to: absent or empty. OTF_OK, or
 * OTF_E_CONFLICT naming what is there (also the policy errors of
 * otf_storage_check). Lets a job fail before its work rather than at
 * publication; otf_storage_put_dir checks again. */
otf_status otf_storage_check_dest(otf_storage *s, const char *uri, otf_error *err) OTF_WUR;

/* Publishes a local folder at a folder URI: every file, then
 * fusion_manifest.json (name, size, sha256 of each) last. file://
 * destinations are written to a sibling temporary folder and renamed; the
 * destination must not exist or be empty. */
otf_status otf_storage_put_dir(otf_storage *s, const char *local_dir, const char *uri,
                               otf_xfer_progress progress, void *ctx,
                               otf_error *err) OTF_WUR;

#endif
