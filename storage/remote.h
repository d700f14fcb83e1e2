/* Internal to storage/: the otf_storage object and the remote (S3, HTTP)
 * half of it, with the cache in front. */
#ifndef OTF_REMOTE_H
#define OTF_REMOTE_H

#include <stddef.h>

#include "storage/local.h"
#include "storage/storage.h"
#include "storage/uri.h"

struct otf__remote;

struct otf_storage {
  char *roots[OTF_STORAGE_MAX_ROOTS]; /* canonical folders */
  size_t n_roots;
  int allow_private;
  long timeout_s;
  int max_retries;
  struct otf__remote *rm; /* S3 settings, HTTP engine, cache */
};

otf_status otf__remote_open(otf_storage *s, const otf_storage_cfg *cfg, otf_error *err) OTF_WUR;
void otf__remote_close(otf_storage *s);
/* 1 when u's host:port is the configured S3 endpoint (always allowed). */
int otf__remote_is_endpoint(const otf_storage *s, const otf_uri *u);
otf_status otf__remote_check_s3(otf_storage *s, const char *uri, otf_error *err) OTF_WUR;
otf_status otf__remote_fetch_model(otf_storage *s, const otf_uri *u, const char *uri, char *out,
                                   size_t cap, otf__xprog *prog, otf_error *err) OTF_WUR;
otf_status otf__remote_fetch_file(otf_storage *s, const otf_uri *u, const char *uri, char *out,
                                  size_t cap, otf__xprog *prog, otf_error *err) OTF_WUR;
/* OTF_OK when nothing is stored under the folder URI u, else OTF_E_CONFLICT. */
otf_status otf__remote_dest_empty(otf_storage *s, const otf_uri *u, const char *uri,
                                  otf_error *err) OTF_WUR;
otf_status otf__remote_put_dir(otf_storage *s, const otf_uri *u, const char *uri, const char *src,
                               otf__xprog *prog, otf_error *err) OTF_WUR;
void otf__remote_release(otf_storage *s, const char *local_path);
/* The S3 client of s (tests and tools use it for bucket set-up). */
struct otf__s3 *otf__remote_s3(otf_storage *s);
/* The cache folder of s ("" before the first remote fetch). */
const char *otf__remote_cache_dir(otf_storage *s);

#endif
