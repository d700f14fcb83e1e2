/* Remote stores behind the cache: S3 (list, verified downloads, uploads
 * with the manifest last) and HTTP(S) (read-only: one file, or a model
 * folder described by its fusion_manifest.json). */
#include "storage/remote.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "storage/cache.h"
#include "storage/digest.h"
#include "storage/http.h"
#include "storage/manifest.h"
#include "storage/netpolicy.h"
#include "storage/s3.h"
#include "storage/sigv4.h"

#define BIG (PATH_MAX + 256)
#define OTF_DEFAULT_CACHE_BYTES ((uint64_t)20 << 30)

struct otf__remote {
  otf__s3 s3;
  otf__http_opts http;
  pthread_mutex_t mu;
  otf__cache *cache;    /* opened on first use */
  char cache_dir[PATH_MAX];
  int private_cache;    /* a temp folder of ours, removed at close */
  uint64_t cache_max;
};

otf_status otf__remote_open(otf_storage *s, const otf_storage_cfg *cfg, otf_error *err) {
  otf__http_global_init();
  struct otf__remote *rm = otf_calloc(1, sizeof(*rm));
  if(!rm)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  pthread_mutex_init(&rm->mu, NULL);
  s->rm = rm;
  if(cfg->retry_base_ms < 0 || cfg->s3_list_page < 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "retry_base_ms and s3_list_page must not be negative");
  rm->http.timeout_s = s->timeout_s;
  rm->http.max_retries = s->max_retries;
  rm->http.retry_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 250;
  otf_status rc = otf__s3_init(&rm->s3, cfg, err);
  if(rc != OTF_OK)
    return rc;
  rm->s3.http = rm->http;
  rm->s3.list_page = cfg->s3_list_page;
  rm->cache_max = cfg->cache_max_bytes ? cfg->cache_max_bytes : OTF_DEFAULT_CACHE_BYTES;
  if(cfg->cache_dir) {
    if(cfg->cache_dir[0] != '/' || strlen(cfg->cache_dir) >= sizeof(rm->cache_dir) - 200)
      return OTF_FAIL(err, OTF_E_INVAL, "cache_dir", "cache_dir must be an absolute path of reasonable length");
    snprintf(rm->cache_dir, sizeof(rm->cache_dir), "%s", cfg->cache_dir);
    rc = otf__cache_open(&rm->cache, rm->cache_dir, rm->cache_max, err);
    if(rc != OTF_OK)
      return rc;
  }
  return OTF_OK;
}

void otf__remote_close(otf_storage *s) {
  struct otf__remote *rm = s->rm;
  if(!rm)
    return;
  otf__cache_close(rm->cache);
  if(rm->private_cache)
    otf__local_rmtree(rm->cache_dir);
  otf__s3_free(&rm->s3);
  pthread_mutex_destroy(&rm->mu);
  otf_free(rm);
  s->rm = NULL;
}

static otf_status get_cache(struct otf__remote *rm, otf__cache **out, otf_error *err) {
  pthread_mutex_lock(&rm->mu);
  otf_status rc = OTF_OK;
  if(!rm->cache) {
    const char *t = getenv("TMPDIR");
    snprintf(rm->cache_dir, sizeof(rm->cache_dir), "%s/otfuse-cache-XXXXXX", t && *t == '/' ? t : "/tmp");
    if(!mkdtemp(rm->cache_dir)) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot create a cache folder: %s", strerror(errno));
    } else {
      rm->private_cache = 1;
      rc = otf__cache_open(&rm->cache, rm->cache_dir, rm->cache_max, err);
    }
  }
  *out = rm->cache;
  pthread_mutex_unlock(&rm->mu);
  return rc;
}

int otf__remote_is_endpoint(const otf_storage *s, const otf_uri *u) {
  const otf__s3 *s3 = &s->rm->s3;
  if(!s3->custom_endpoint || strcmp(u->host, s3->host))
    return 0;
  int up = u->port ? u->port : u->scheme == OTF_URI_HTTPS ? 443 : 80;
  int ep = s3->port ? s3->port : s3->https ? 443 : 80;
  return up == ep && (u->scheme == OTF_URI_HTTPS) == (s3->https != 0);
}

otf_status otf__remote_check_s3(otf_storage *s, const char *uri, otf_error *err) {
  (void)s;
  (void)uri;
  (void)err;
  return OTF_OK; /* the bucket name was checked by the parser; the endpoint is configured */
}

otf__s3 *otf__remote_s3(otf_storage *s) { return &s->rm->s3; }

const char *otf__remote_cache_dir(otf_storage *s) { return s->rm->cache_dir; }

void otf__remote_release(otf_storage *s, const char *local_path) {
  if(s->rm && s->rm->cache)
    otf__cache_release(s->rm->cache, local_path);
}

/* ---- helpers ---------------------------------------------------------------- */

static otf_status out_path(const char *uri, const char *p, char *out, size_t cap, otf_error *err) {
  if(strlen(p) >= cap)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: local path longer than the %zu-byte buffer", uri, cap);
  memcpy(out, p, strlen(p) + 1);
  return OTF_OK;
}

/* Folder prefix of a model URI: "" or ending in '/'. */
static void folder_prefix(const otf_uri *u, char *out, size_t cap) {
  size_t n = strlen(u->path);
  snprintf(out, cap, "%s%s", u->path, n && u->path[n - 1] != '/' ? "/" : "");
}

/* Local file for a relative name inside dir, creating its folders. */
static otf_status local_target(const char *dir, const char *rel, char *out, size_t cap, otf_error *err) {
  if(snprintf(out, cap, "%s/%s", dir, rel) >= (int)cap)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s/%s: path too long", dir, rel);
  char *sl = strrchr(out, '/');
  if(sl > out + strlen(dir)) {
    *sl = 0;
    otf_status rc = otf__local_mkdirs(out, err);
    *sl = '/';
    return rc;
  }
  return OTF_OK;
}

static const char *base_name(const char *path, char *buf, size_t cap) {
  size_t q = strcspn(path, "?#");
  size_t end = q;
  while(end > 0 && path[end - 1] == '/')
    end--;
  size_t b = end;
  while(b > 0 && path[b - 1] != '/')
    b--;
  size_t n = end - b;
  if(n == 0 || n >= cap || (n == 2 && path[b] == '.' && path[b + 1] == '.') || (n == 1 && path[b] == '.'))
    snprintf(buf, cap, "file");
  else
    snprintf(buf, cap, "%.*s", (int)n, path + b);
  return buf;
}

static void cache_key(char out[OTF_SHA256_HEX], const char *kind, const otf__s3 *s3, const char *uri,
                      const otf_manifest *m, const char *extra) {
  otf_digest d;
  if(otf__digest_init(&d, 0) != OTF_OK) {
    otf__sha256_hex(uri, strlen(uri), out);
    return;
  }
  char line[512];
  snprintf(line, sizeof(line), "otfuse-cache-1\n%s\n%s:%d\n", kind, s3 ? s3->host : "", s3 ? s3->port : 0);
  otf__digest_update(&d, line, strlen(line));
  otf__digest_update(&d, uri, strlen(uri) + 1);
  if(extra)
    otf__digest_update(&d, extra, strlen(extra) + 1);
  for(size_t i = 0; m && i < m->n; i++) {
    snprintf(line, sizeof(line), "\t%llu\t%s\t%s\n", (unsigned long long)m->e[i].size, m->e[i].etag,
             m->e[i].sha256);
    otf__digest_update(&d, m->e[i].name, strlen(m->e[i].name));
    otf__digest_update(&d, line, strlen(line));
  }
  otf__digest_final(&d, out, NULL);
  otf__digest_free(&d);
}

/* ---- S3 ------------------------------------------------------------------------ */

typedef struct s3fill {
  otf_storage *s;
  const char *bucket;
  const char *prefix;    /* folder prefix ("" or ends with '/'); NULL for a file */
  const char *key;       /* the object, for a file */
  const char *uri;
  const otf_manifest *m; /* what to fetch, with sizes/ETags and, from a manifest, SHA-256 */
  otf__xprog *prog;
  uint64_t file_size;
  char file_etag[100];
} s3fill;

static otf_status s3_fill_model(void *ctx, const char *dir, uint64_t *bytes, otf_error *err) {
  s3fill *f = ctx;
  otf__s3 *s3 = &f->s->rm->s3;
  uint64_t total = 0;
  for(size_t i = 0; i < f->m->n; i++) {
    const otf_manifest_entry *e = &f->m->e[i];
    char path[BIG], key[2 * OTF_URI_PATH_MAX + 16], what[3 * OTF_URI_PATH_MAX], sha[OTF_SHA256_HEX];
    otf_status rc = local_target(dir, e->name, path, sizeof(path), err);
    if(rc != OTF_OK)
      return rc;
    if(snprintf(key, sizeof(key), "%s%s", f->prefix, e->name) >= (int)sizeof(key))
      return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s%s: key too long", f->uri, e->name);
    snprintf(what, sizeof(what), "s3://%s/%s", f->bucket, key);
    rc = otf__s3_get(s3, f->bucket, key, what, path, 0, 0, e->size, e->etag, sha, f->prog, err);
    if(rc != OTF_OK)
      return rc;
    if(e->sha256[0] && strcmp(sha, e->sha256))
      return OTF_FAIL(err, OTF_E_CORRUPT, NULL, "%s: SHA-256 %s does not match the manifest's %s", what, sha,
                      e->sha256);
    total += e->size;
  }
  *bytes = total;
  return OTF_OK;
}

/* The fetch list of an S3 model folder: the listing, restricted to and
 * checked against fusion_manifest.json when there is one. */
static otf_status s3_model_list(otf_storage *s, const char *bucket, const char *prefix, const char *uri,
                                otf_manifest *out, otf_error *err) {
  otf__s3 *s3 = &s->rm->s3;
  otf_manifest listing;
  otf_status rc = otf__s3_list(s3, bucket, prefix, uri, &listing, err);
  if(rc != OTF_OK)
    return rc;
  if(listing.n == 0) {
    otf__manifest_free(&listing);
    return OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "%s: no objects under this prefix", uri);
  }
  long mi = otf__manifest_find(&listing, OTF_MANIFEST_NAME);
  if(mi < 0) {
    *out = listing;
    return OTF_OK;
  }
  /* Read the manifest through a temp file in memory-sized bounds. */
  if(listing.e[mi].size > OTF_MAX_MANIFEST_BYTES) {
    otf__manifest_free(&listing);
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s%s is too large", uri, OTF_MANIFEST_NAME);
  }
  char tmpl[] = "/tmp/otfuse-manifest-XXXXXX";
  int fd = mkstemp(tmpl);
  if(fd < 0) {
    otf__manifest_free(&listing);
    return OTF_FAIL(err, OTF_E_IO, NULL, "temp file: %s", strerror(errno));
  }
  close(fd);
  char key[2 * OTF_URI_PATH_MAX + 16], what[3 * OTF_URI_PATH_MAX];
  snprintf(key, sizeof(key), "%s%s", prefix, OTF_MANIFEST_NAME);
  snprintf(what, sizeof(what), "s3://%s/%s", bucket, key);
  rc = otf__s3_get(s3, bucket, key, what, tmpl, 0, 0, listing.e[mi].size, listing.e[mi].etag, NULL, NULL, err);
  char *text = NULL;
  size_t tlen = 0;
  if(rc == OTF_OK)
    rc = otf__local_read_small(tmpl, OTF_MAX_MANIFEST_BYTES, &text, &tlen, err);
  unlink(tmpl);
  otf_manifest man;
  if(rc == OTF_OK) {
    rc = otf__manifest_parse(&man, text, tlen, err);
    if(rc != OTF_OK)
      OTF_FAIL(err, rc, NULL, "%s: %s", what, err ? err->message : "bad manifest");
  }
  otf_free(text);
  if(rc != OTF_OK) {
    otf__manifest_free(&listing);
    return rc;
  }
  for(size_t i = 0; i < man.n && rc == OTF_OK; i++) {
    long li = otf__manifest_find(&listing, man.e[i].name);
    if(li < 0)
      rc = OTF_FAIL(err, OTF_E_CORRUPT, NULL, "%s: '%s' is in the manifest but not in the store", uri, man.e[i].name);
    else if(listing.e[li].size != man.e[i].size)
      rc = OTF_FAIL(err, OTF_E_CORRUPT, NULL, "%s: '%s' has %llu bytes, the manifest says %llu", uri, man.e[i].name,
                    (unsigned long long)listing.e[li].size, (unsigned long long)man.e[i].size);
    else
      snprintf(man.e[i].etag, sizeof(man.e[i].etag), "%s", listing.e[li].etag);
  }
  otf__manifest_free(&listing);
  if(rc != OTF_OK) {
    otf__manifest_free(&man);
    return rc;
  }
  otf__manifest_sort(&man);
  *out = man;
  return OTF_OK;
}

static otf_status s3_fill_file(void *ctx, const char *dir, uint64_t *bytes, otf_error *err) {
  s3fill *f = ctx;
  char name[256], path[BIG];
  base_name(f->key, name, sizeof(name));
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  otf_status rc = otf__s3_get(&f->s->rm->s3, f->bucket, f->key, f->uri, path, 0, 0, f->file_size, f->file_etag,
                              NULL, f->prog, err);
  if(rc == OTF_OK)
    *bytes = f->file_size;
  return rc;
}

/* ---- HTTP(S) -------------------------------------------------------------- */

typedef struct httpfill {
  otf_storage *s;
  const otf_uri *u;
  const char *uri;
  const otf_manifest *m; /* model: files relative to the folder URL */
  otf__xprog *prog;
} httpfill;

static otf_status http_get(otf_storage *s, const otf_uri *u, const char *url, const char *what, const char *path,
                           char *mem, size_t memcap, size_t *memlen, uint64_t expect, int expect_set,
                           char *sha_out, otf__xprog *prog, otf_error *err) {
  otf__http_req h;
  memset(&h, 0, sizeof(h));
  h.method = "GET";
  h.url = url;
  h.what = what;
  h.pin_host = u->host;
  h.pin_port = u->port ? u->port : u->scheme == OTF_URI_HTTPS ? 443 : 80;
  h.allow_private = s->allow_private || otf__remote_is_endpoint(s, u);
  h.down_path = path;
  h.resp = mem;
  h.resp_cap = memcap;
  h.expect_len_set = expect_set;
  h.expect_len = expect;
  otf_status rc = otf__http_do(&s->rm->http, &h, prog, err);
  if(rc == OTF_OK && sha_out)
    memcpy(sha_out, h.sha256, OTF_SHA256_HEX);
  if(memlen)
    *memlen = h.resp_len;
  return rc;
}

static void url_of(const otf_uri *u, char *out, size_t cap, const char *path) {
  const char *scheme = u->scheme == OTF_URI_HTTPS ? "https" : "http";
  if(u->port)
    snprintf(out, cap, u->is_ipv6 ? "%s://[%s]:%d%s" : "%s://%s:%d%s", scheme, u->host, u->port, path);
  else
    snprintf(out, cap, u->is_ipv6 ? "%s://[%s]%s" : "%s://%s%s", scheme, u->host, path);
}

/* The folder URL's path with the query cut off, ending in '/'. */
static void http_folder(const otf_uri *u, char *out, size_t cap) {
  size_t q = strcspn(u->path, "?");
  snprintf(out, cap, "%.*s%s", (int)q, u->path, q && u->path[q - 1] == '/' ? "" : "/");
}

static otf_status http_fill_model(void *ctx, const char *dir, uint64_t *bytes, otf_error *err) {
  httpfill *f = ctx;
  char folder[OTF_URI_PATH_MAX];
  http_folder(f->u, folder, sizeof(folder));
  uint64_t total = 0;
  for(size_t i = 0; i < f->m->n; i++) {
    const otf_manifest_entry *e = &f->m->e[i];
    char path[BIG], rel[3 * 1024], p[OTF_URI_PATH_MAX * 2], url[OTF_URI_PATH_MAX * 2 + 300], sha[OTF_SHA256_HEX];
    otf_status rc = local_target(dir, e->name, path, sizeof(path), err);
    if(rc != OTF_OK)
      return rc;
    if(otf_sigv4_encode(e->name, 1, rel, sizeof(rel)) < 0)
      return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: name too long", f->uri);
    snprintf(p, sizeof(p), "%s%s", folder, rel);
    url_of(f->u, url, sizeof(url), p);
    rc = http_get(f->s, f->u, url, url, path, NULL, 0, NULL, e->size, 1, sha, f->prog, err);
    if(rc != OTF_OK)
      return rc;
    if(strcmp(sha, e->sha256))
      return OTF_FAIL(err, OTF_E_CORRUPT, NULL, "%s: SHA-256 %s does not match the manifest's %s", url, sha, e->sha256);
    total += e->size;
  }
  *bytes = total;
  return OTF_OK;
}

static otf_status http_fill_file(void *ctx, const char *dir, uint64_t *bytes, otf_error *err) {
  httpfill *f = ctx;
  char name[256], path[BIG], url[OTF_URI_PATH_MAX + 300];
  base_name(f->u->path, name, sizeof(name));
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  url_of(f->u, url, sizeof(url), f->u->path);
  otf_status rc = http_get(f->s, f->u, url, f->uri, path, NULL, 0, NULL, 0, 0, NULL, f->prog, err);
  if(rc != OTF_OK)
    return rc;
  struct stat st;
  *bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
  return OTF_OK;
}

/* ---- entry points ------------------------------------------------------------- */

otf_status otf__remote_fetch_model(otf_storage *s, const otf_uri *u, const char *uri, char *out, size_t cap,
                                   otf__xprog *prog, otf_error *err) {
  otf__cache *c;
  otf_status rc = get_cache(s->rm, &c, err);
  if(rc != OTF_OK)
    return rc;
  otf_manifest m;
  char key[OTF_SHA256_HEX], path[BIG];
  memset(&m, 0, sizeof(m));
  if(u->scheme == OTF_URI_S3) {
    char prefix[OTF_URI_PATH_MAX + 2];
    folder_prefix(u, prefix, sizeof(prefix));
    rc = s3_model_list(s, u->host, prefix, uri, &m, err);
    if(rc != OTF_OK)
      return rc;
    for(size_t i = 0; i < m.n; i++)
      if(prog)
        prog->total += m.e[i].size;
    char norm[OTF_URI_PATH_MAX + OTF_URI_HOST_MAX + 16];
    snprintf(norm, sizeof(norm), "s3://%s/%s", u->host, prefix);
    cache_key(key, "s3-model", &s->rm->s3, norm, &m, NULL);
    s3fill f = {s, u->host, prefix, NULL, uri, &m, prog, 0, ""};
    rc = otf__cache_get(c, key, s3_fill_model, &f, prog, path, sizeof(path), NULL, err);
  } else {
    /* An HTTP model folder is described by its manifest. */
    char folder[OTF_URI_PATH_MAX], p[OTF_URI_PATH_MAX + 32], url[OTF_URI_PATH_MAX + 300];
    http_folder(u, folder, sizeof(folder));
    snprintf(p, sizeof(p), "%s%s", folder, OTF_MANIFEST_NAME);
    url_of(u, url, sizeof(url), p);
    char *text = otf_malloc(OTF_MAX_MANIFEST_BYTES + 1);
    size_t tlen = 0;
    if(!text)
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
    rc = http_get(s, u, url, url, NULL, text, OTF_MAX_MANIFEST_BYTES + 1, &tlen, 0, 0, NULL, NULL, err);
    if(rc == OTF_E_NOT_FOUND)
      OTF_FAIL(err, rc, NULL, "%s: an http(s) model folder needs a %s listing its files (%s)", uri,
               OTF_MANIFEST_NAME, err ? err->message : "");
    if(rc == OTF_OK) {
      rc = otf__manifest_parse(&m, text, tlen, err);
      if(rc == OTF_OK && m.n == 0)
        rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: the manifest lists no files", url);
    }
    char mhash[OTF_SHA256_HEX];
    otf__sha256_hex(text, tlen, mhash);
    otf_free(text);
    if(rc != OTF_OK) {
      otf__manifest_free(&m);
      return rc;
    }
    for(size_t i = 0; i < m.n; i++)
      if(prog)
        prog->total += m.e[i].size;
    char norm[OTF_URI_PATH_MAX + 300];
    url_of(u, norm, sizeof(norm), folder);
    cache_key(key, "http-model", NULL, norm, &m, mhash);
    httpfill f = {s, u, uri, &m, prog};
    rc = otf__cache_get(c, key, http_fill_model, &f, prog, path, sizeof(path), NULL, err);
  }
  otf__manifest_free(&m);
  if(rc != OTF_OK)
    return rc;
  rc = out_path(uri, path, out, cap, err);
  if(rc != OTF_OK)
    otf__cache_release(c, path);
  return rc;
}

otf_status otf__remote_fetch_file(otf_storage *s, const otf_uri *u, const char *uri, char *out, size_t cap,
                                  otf__xprog *prog, otf_error *err) {
  if(u->is_dir)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: names a folder where a file is meant", uri);
  otf__cache *c;
  otf_status rc = get_cache(s->rm, &c, err);
  if(rc != OTF_OK)
    return rc;
  char key[OTF_SHA256_HEX], path[BIG], name[256];
  if(u->scheme == OTF_URI_S3) {
    s3fill f = {s, u->host, NULL, u->path, uri, NULL, prog, 0, ""};
    rc = otf__s3_head(&s->rm->s3, u->host, u->path, uri, &f.file_size, f.file_etag, sizeof(f.file_etag), err);
    if(rc != OTF_OK)
      return rc;
    if(prog)
      prog->total += f.file_size;
    char extra[160];
    snprintf(extra, sizeof(extra), "%llu %s", (unsigned long long)f.file_size, f.file_etag);
    cache_key(key, "s3-file", &s->rm->s3, uri, NULL, extra);
    rc = otf__cache_get(c, key, s3_fill_file, &f, prog, path, sizeof(path), NULL, err);
    base_name(u->path, name, sizeof(name));
  } else {
    /* No listing or HEAD for a presigned URL (it is signed for GET only):
     * the URL itself is the key. */
    cache_key(key, "http-file", NULL, uri, NULL, NULL);
    httpfill f = {s, u, uri, NULL, prog};
    rc = otf__cache_get(c, key, http_fill_file, &f, prog, path, sizeof(path), NULL, err);
    base_name(u->path, name, sizeof(name));
  }
  if(rc != OTF_OK)
    return rc;
  char full[BIG + 300];
  snprintf(full, sizeof(full), "%s/%s", path, name);
  rc = out_path(uri, full, out, cap, err);
  if(rc != OTF_OK)
    otf__cache_release(c, path);
  return rc;
}

otf_status otf__remote_dest_empty(otf_storage *s, const otf_uri *u, const char *uri,
                                  otf_error *err) {
  char prefix[OTF_URI_PATH_MAX + 2];
  folder_prefix(u, prefix, sizeof(prefix));
  otf_manifest existing;
  otf_status rc = otf__s3_list(&s->rm->s3, u->host, prefix, uri, &existing, err);
  if(rc != OTF_OK)
    return rc;
  size_t n = existing.n;
  otf__manifest_free(&existing);
  return n ? OTF_FAIL(err, OTF_E_CONFLICT, NULL, "%s: destination is not empty (%zu objects)", uri, n)
           : OTF_OK;
}

otf_status otf__remote_put_dir(otf_storage *s, const otf_uri *u, const char *uri, const char *src,
                               otf__xprog *prog, otf_error *err) {
  otf__s3 *s3 = &s->rm->s3;
  char prefix[OTF_URI_PATH_MAX + 2];
  folder_prefix(u, prefix, sizeof(prefix));
  otf_manifest m;
  otf_status rc = otf__manifest_scan(&m, src, err);
  if(rc != OTF_OK)
    return rc;
  /* The destination must be empty: we never mix with someone's files. */
  rc = otf__remote_dest_empty(s, u, uri, err);
  if(rc != OTF_OK) {
    otf__manifest_free(&m);
    return rc;
  }
  for(size_t i = 0; prog && i < m.n; i++)
    prog->total += m.e[i].size;
  size_t done = 0;
  for(; done < m.n && rc == OTF_OK; done++) {
    char path[BIG], key[2 * OTF_URI_PATH_MAX + 16], what[3 * OTF_URI_PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", src, m.e[done].name);
    if(snprintf(key, sizeof(key), "%s%s", prefix, m.e[done].name) >= (int)sizeof(key)) {
      rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s%s: key too long", uri, m.e[done].name);
      break;
    }
    snprintf(what, sizeof(what), "s3://%s/%s", u->host, key);
    struct stat st;
    rc = otf__s3_put_file(s3, u->host, key, what, path, m.e[done].sha256, prog, err);
    if(rc == OTF_OK && (stat(path, &st) != 0 || (uint64_t)st.st_size != m.e[done].size))
      rc = OTF_FAIL(err, OTF_E_CONFLICT, NULL, "%s changed while it was uploaded", path);
  }
  char *json = NULL;
  size_t jlen = 0;
  if(rc == OTF_OK)
    rc = otf__manifest_dump(&m, &json, &jlen, err);
  if(rc == OTF_OK) {
    char key[2 * OTF_URI_PATH_MAX + 16], what[3 * OTF_URI_PATH_MAX];
    snprintf(key, sizeof(key), "%s%s", prefix, OTF_MANIFEST_NAME);
    snprintf(what, sizeof(what), "s3://%s/%s", u->host, key);
    rc = otf__s3_put_mem(s3, u->host, key, what, json, jlen, err);
  }
  otf_free(json);
  if(rc != OTF_OK) {
    /* Leave nothing half-published: remove what we uploaded (the
     * manifest was never written, so readers never took it as a model). */
    for(size_t i = 0; i < done && i < m.n; i++) {
      char key[2 * OTF_URI_PATH_MAX + 16];
      snprintf(key, sizeof(key), "%s%s", prefix, m.e[i].name);
      if(otf__s3_delete(s3, u->host, key, uri, NULL) != OTF_OK) {
        /* best effort */
      }
    }
  }
  otf__manifest_free(&m);
  return rc;
}
