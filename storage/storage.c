/* otf_storage: the URI policy and the dispatch to the file, S3 and HTTP
 * stores and the local cache. */
#include "storage/storage.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "storage/local.h"
#include "storage/netpolicy.h"
#include "storage/remote.h"
#include "storage/uri.h"

static char *dupstr(const char *s) {
  if(!s)
    return NULL;
  size_t n = strlen(s);
  char *d = otf_malloc(n + 1);
  if(d)
    memcpy(d, s, n + 1);
  return d;
}

void otf_storage_close(otf_storage *s) {
  if(!s)
    return;
  otf__remote_close(s);
  for(size_t i = 0; i < s->n_roots; i++)
    otf_free(s->roots[i]);
  otf_free(s);
}

otf_status otf_storage_open(otf_storage **out, const otf_storage_cfg *cfg, otf_error *err) {
  *out = NULL;
  otf_storage_cfg empty;
  if(!cfg) {
    memset(&empty, 0, sizeof(empty));
    empty.s3_path_style = -1;
    cfg = &empty;
  }
  if(cfg->n_file_roots > OTF_STORAGE_MAX_ROOTS)
    return OTF_FAIL(err, OTF_E_INVAL, "file_roots", "at most %d file roots", OTF_STORAGE_MAX_ROOTS);
  otf_storage *s = otf_calloc(1, sizeof(*s));
  if(!s)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory opening storage");
  otf_status rc = OTF_OK;
  for(size_t i = 0; i < cfg->n_file_roots; i++) {
    const char *r = cfg->file_roots[i];
    char real[PATH_MAX];
    struct stat st;
    if(!r || r[0] != '/' || !realpath(r, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
      rc = OTF_FAIL(err, OTF_E_INVAL, "file_roots", "file root '%s' is not an existing absolute folder",
                    r ? r : "(null)");
      goto fail;
    }
    if(!(s->roots[s->n_roots++] = dupstr(real))) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory opening storage");
      goto fail;
    }
  }
  s->allow_private = cfg->allow_private_hosts != 0;
  s->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 30;
  s->max_retries = cfg->max_retries > 0 ? cfg->max_retries : 4;
  if(cfg->timeout_s < 0 || cfg->max_retries < 0) {
    rc = OTF_FAIL(err, OTF_E_INVAL, cfg->timeout_s < 0 ? "timeout_s" : "max_retries",
                  "timeout_s and max_retries must not be negative");
    goto fail;
  }
  rc = otf__remote_open(s, cfg, err);
  if(rc != OTF_OK)
    goto fail;
  *out = s;
  return OTF_OK;
fail:
  otf_storage_close(s);
  return rc;
}

otf_status otf_storage_check(otf_storage *s, const char *uri, int for_write, otf_error *err) {
  otf_uri u;
  otf_status rc = otf_uri_parse(&u, uri, err);
  if(rc != OTF_OK)
    return rc;
  char path[PATH_MAX];
  switch(u.scheme) {
  case OTF_URI_FILE:
    return otf__local_resolve(s->roots, s->n_roots, uri, u.path, for_write, path, sizeof(path), err);
  case OTF_URI_S3:
    return otf__remote_check_s3(s, uri, err);
  case OTF_URI_HTTP:
  case OTF_URI_HTTPS:
    if(for_write)
      return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: http(s) URIs are read-only", uri);
    return otf__net_check_name(uri, u.host, s->allow_private || otf__remote_is_endpoint(s, &u), err);
  }
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: unsupported scheme", uri);
}

static otf_status copy_out(const char *uri, const char *path, char *out, size_t cap, otf_error *err) {
  if(strlen(path) >= cap)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: local path longer than the %zu-byte buffer", uri, cap);
  memcpy(out, path, strlen(path) + 1);
  return OTF_OK;
}

static otf_status fetch(otf_storage *s, const char *uri, int want_dir, char *out, size_t cap,
                        otf_xfer_progress progress, void *ctx, otf_error *err) {
  otf_uri u;
  otf_status rc = otf_uri_parse(&u, uri, err);
  if(rc != OTF_OK)
    return rc;
  if(u.scheme == OTF_URI_FILE) {
    char path[PATH_MAX];
    rc = otf__local_resolve(s->roots, s->n_roots, uri, u.path, 0, path, sizeof(path), err);
    if(rc != OTF_OK)
      return rc;
    struct stat st;
    if(stat(path, &st) != 0)
      return OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "%s: %s", uri, strerror(errno));
    if(want_dir && !S_ISDIR(st.st_mode))
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: not a folder (a model URI names a folder)", uri);
    if(!want_dir && !S_ISREG(st.st_mode))
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: not a regular file", uri);
    if(progress && progress(ctx, (uint64_t)st.st_size, (uint64_t)st.st_size))
      return OTF_FAIL(err, OTF_E_CANCELLED, NULL, "%s: cancelled", uri);
    return copy_out(uri, path, out, cap, err);
  }
  if(u.scheme == OTF_URI_HTTP || u.scheme == OTF_URI_HTTPS) {
    rc = otf__net_check_name(uri, u.host, s->allow_private || otf__remote_is_endpoint(s, &u), err);
    if(rc != OTF_OK)
      return rc;
  }
  otf__xprog prog = {progress, ctx, 0, 0};
  return want_dir ? otf__remote_fetch_model(s, &u, uri, out, cap, &prog, err)
                  : otf__remote_fetch_file(s, &u, uri, out, cap, &prog, err);
}

otf_status otf_storage_fetch_model(otf_storage *s, const char *uri, char *local_dir, size_t cap,
                                   otf_xfer_progress progress, void *ctx, otf_error *err) {
  return fetch(s, uri, 1, local_dir, cap, progress, ctx, err);
}

otf_status otf_storage_fetch_file(otf_storage *s, const char *uri, char *local_path, size_t cap,
                                  otf_xfer_progress progress, void *ctx, otf_error *err) {
  return fetch(s, uri, 0, local_path, cap, progress, ctx, err);
}

void otf_storage_release(otf_storage *s, const char *local_path) {
  if(s && local_path)
    otf__remote_release(s, local_path);
}

otf_status otf_storage_check_dest(otf_storage *s, const char *uri, otf_error *err) {
  otf_status rc = otf_storage_check(s, uri, 1, err);
  otf_uri u;
  if(rc == OTF_OK)
    rc = otf_uri_parse(&u, uri, err);
  if(rc != OTF_OK)
    return rc;
  if(u.scheme == OTF_URI_S3)
    return otf__remote_dest_empty(s, &u, uri, err);
  if(u.scheme != OTF_URI_FILE)
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: http(s) URIs are read-only", uri);
  char path[PATH_MAX];
  rc = otf__local_resolve(s->roots, s->n_roots, uri, u.path, 1, path, sizeof(path), err);
  if(rc != OTF_OK)
    return rc;
  DIR *d = opendir(path);
  if(!d) /* absent is free; a file there is found by put_dir */
    return OTF_OK;
  size_t n = 0;
  struct dirent *e;
  while((e = readdir(d)))
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n ? OTF_FAIL(err, OTF_E_CONFLICT, NULL, "%s: destination is not empty (%zu entries)", uri, n)
           : OTF_OK;
}

otf_status otf_storage_put_dir(otf_storage *s, const char *local_dir, const char *uri,
                               otf_xfer_progress progress, void *ctx, otf_error *err) {
  otf_uri u;
  otf_status rc = otf_uri_parse(&u, uri, err);
  if(rc != OTF_OK)
    return rc;
  struct stat st;
  if(!local_dir || stat(local_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: not a folder", local_dir ? local_dir : "(null)");
  otf__xprog prog = {progress, ctx, 0, 0};
  switch(u.scheme) {
  case OTF_URI_FILE: {
    char path[PATH_MAX];
    rc = otf__local_resolve(s->roots, s->n_roots, uri, u.path, 1, path, sizeof(path), err);
    if(rc != OTF_OK)
      return rc;
    return otf__local_put_dir(local_dir, path, &prog, err);
  }
  case OTF_URI_S3:
    return otf__remote_put_dir(s, &u, uri, local_dir, &prog, err);
  case OTF_URI_HTTP:
  case OTF_URI_HTTPS:
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: http(s) URIs are read-only", uri);
  }
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: unsupported scheme", uri);
}
