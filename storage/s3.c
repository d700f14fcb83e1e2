#include "storage/s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "common/alloc.h"
#include "storage/sigv4.h"
#include "storage/uri.h"
#include "storage/xml.h"

/* ---- configuration ------------------------------------------------------ */

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static void trim(char *s) {
  size_t n = strlen(s);
  while(n && isspace((unsigned char)s[n - 1]))
    s[--n] = 0;
  size_t i = 0;
  while(s[i] && isspace((unsigned char)s[i]))
    i++;
  memmove(s, s + i, n - i + 1);
}

/* Reads aws_access_key_id / aws_secret_access_key / aws_session_token
 * of one profile from an INI credentials file. Missing file: no error. */
static otf_status read_credentials_file(otf__s3 *s3, otf_error *err) {
  char path[1024];
  const char *f = env("AWS_SHARED_CREDENTIALS_FILE");
  if(f) {
    snprintf(path, sizeof(path), "%s", f);
  } else {
    const char *home = env("HOME");
    if(!home)
      return OTF_OK;
    snprintf(path, sizeof(path), "%s/.aws/credentials", home);
  }
  const char *profile = env("AWS_PROFILE");
  if(!profile)
    profile = "default";
  FILE *fp = fopen(path, "r");
  if(!fp)
    return OTF_OK;
  char line[2048];
  int in = 0;
  char ak[sizeof(s3->access_key)] = "", sk[sizeof(s3->secret_key)] = "", tok[4096] = "";
  while(fgets(line, sizeof(line), fp)) {
    trim(line);
    if(!line[0] || line[0] == '#' || line[0] == ';')
      continue;
    if(line[0] == '[') {
      char *e = strchr(line, ']');
      if(e)
        *e = 0;
      char *name = line + 1;
      trim(name);
      in = !strcmp(name, profile);
      continue;
    }
    if(!in)
      continue;
    char *eq = strchr(line, '=');
    if(!eq)
      continue;
    *eq = 0;
    char *k = line, *v = eq + 1;
    trim(k);
    trim(v);
    if(!strcmp(k, "aws_access_key_id"))
      snprintf(ak, sizeof(ak), "%s", v);
    else if(!strcmp(k, "aws_secret_access_key"))
      snprintf(sk, sizeof(sk), "%s", v);
    else if(!strcmp(k, "aws_session_token"))
      snprintf(tok, sizeof(tok), "%s", v);
  }
  fclose(fp);
  memset(line, 0, sizeof(line));
  if(*ak && *sk) {
    snprintf(s3->access_key, sizeof(s3->access_key), "%s", ak);
    snprintf(s3->secret_key, sizeof(s3->secret_key), "%s", sk);
    if(*tok) {
      size_t n = strlen(tok);
      s3->session_token = otf_malloc(n + 1);
      if(!s3->session_token)
        return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
      memcpy(s3->session_token, tok, n + 1);
    }
    s3->have_creds = 1;
  }
  memset(sk, 0, sizeof(sk));
  memset(tok, 0, sizeof(tok));
  return OTF_OK;
}

static otf_status parse_endpoint(otf__s3 *s3, const char *ep, otf_error *err) {
  otf_uri u;
  otf_error ue;
  if(otf_uri_parse(&u, ep, &ue) != OTF_OK || (u.scheme != OTF_URI_HTTP && u.scheme != OTF_URI_HTTPS))
    return OTF_FAIL(err, OTF_E_INVAL, "s3_endpoint", "S3 endpoint '%s' is not an http(s) URL", ep);
  if(strcmp(u.path, "/") && strcmp(u.path, ""))
    return OTF_FAIL(err, OTF_E_INVAL, "s3_endpoint", "S3 endpoint '%s' must not have a path", ep);
  s3->https = u.scheme == OTF_URI_HTTPS;
  snprintf(s3->host, sizeof(s3->host), "%s", u.host);
  s3->is_ipv6 = u.is_ipv6;
  s3->port = u.port;
  return OTF_OK;
}

otf_status otf__s3_init(otf__s3 *s3, const otf_storage_cfg *cfg, otf_error *err) {
  memset(s3, 0, sizeof(*s3));
  const char *region = cfg->s3_region ? cfg->s3_region : env("AWS_REGION");
  if(!region)
    region = env("AWS_DEFAULT_REGION");
  if(!region)
    region = "us-east-1";
  if(strlen(region) >= sizeof(s3->region))
    return OTF_FAIL(err, OTF_E_INVAL, "s3_region", "S3 region too long");
  snprintf(s3->region, sizeof(s3->region), "%s", region);
  const char *ep = cfg->s3_endpoint ? cfg->s3_endpoint : env("AWS_ENDPOINT_URL_S3");
  if(!ep)
    ep = env("AWS_ENDPOINT_URL");
  otf_status rc;
  if(ep) {
    if((rc = parse_endpoint(s3, ep, err)) != OTF_OK)
      return rc;
    s3->custom_endpoint = 1;
  } else {
    s3->https = 1;
    snprintf(s3->host, sizeof(s3->host), "s3.%s.amazonaws.com", s3->region);
  }
  /* moto_server checks signatures over the query as werkzeug hands it
   * over, with %2F decoded to '/'; AWS wants %2F. Opt-in, for such
   * servers only. */
  const char *qs = env("OTF_S3_QUERY_SLASH");
  s3->query_keep_slash = qs && !strcmp(qs, "raw");
  s3->path_style = cfg->s3_path_style < 0 ? s3->custom_endpoint : cfg->s3_path_style != 0;
  if(cfg->s3_part_size && cfg->s3_part_size < OTF_S3_MIN_PART)
    return OTF_FAIL(err, OTF_E_INVAL, "s3_part_size", "S3 part size must be at least 5 MiB, got %zu",
                    cfg->s3_part_size);
  s3->part_size = cfg->s3_part_size ? cfg->s3_part_size : OTF_S3_DEFAULT_PART;
  const char *ak = cfg->s3_access_key, *sk = cfg->s3_secret_key, *tok = cfg->s3_session_token;
  if(!ak && !sk) {
    ak = env("AWS_ACCESS_KEY_ID");
    sk = env("AWS_SECRET_ACCESS_KEY");
    if(!tok)
      tok = env("AWS_SESSION_TOKEN");
  }
  if(ak && sk) {
    if(strlen(ak) >= sizeof(s3->access_key) || strlen(sk) >= sizeof(s3->secret_key))
      return OTF_FAIL(err, OTF_E_INVAL, "s3_access_key", "S3 credentials too long");
    snprintf(s3->access_key, sizeof(s3->access_key), "%s", ak);
    snprintf(s3->secret_key, sizeof(s3->secret_key), "%s", sk);
    if(tok) {
      size_t n = strlen(tok);
      if(!(s3->session_token = otf_malloc(n + 1)))
        return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
      memcpy(s3->session_token, tok, n + 1);
    }
    s3->have_creds = 1;
  } else if(ak || sk) {
    return OTF_FAIL(err, OTF_E_INVAL, "s3_access_key", "S3 access key and secret key must be given together");
  } else if((rc = read_credentials_file(s3, err)) != OTF_OK) {
    return rc;
  }
  return OTF_OK;
}

void otf__s3_free(otf__s3 *s3) {
  if(s3->session_token) {
    memset(s3->session_token, 0, strlen(s3->session_token));
    otf_free(s3->session_token);
  }
  memset(s3->secret_key, 0, sizeof(s3->secret_key));
  s3->session_token = NULL;
}

/* ---- requests ------------------------------------------------------------ */

typedef struct s3req {
  otf__s3 *s3;
  const char *method;
  char path[3 * 1200];     /* canonical (encoded) path */
  char hosthdr[300];
  const otf_sigv4_kv *query;
  size_t n_query;
  const char *payload_sha;
  const otf_sigv4_kv *extra; /* extra signed headers (Range, Content-MD5, ...) */
  size_t n_extra;
  char url[8192];
} s3req;

static otf_status sign_cb(void *ctx, struct curl_slist **out, otf_error *err) {
  s3req *q = ctx;
  otf__s3 *s3 = q->s3;
  char date[17];
  otf_sigv4_amz_date((long long)time(NULL), date);
  otf_sigv4_kv h[12];
  size_t n = 0;
  h[n++] = (otf_sigv4_kv){"host", q->hosthdr};
  h[n++] = (otf_sigv4_kv){"x-amz-date", date};
  h[n++] = (otf_sigv4_kv){"x-amz-content-sha256", q->payload_sha};
  if(s3->session_token)
    h[n++] = (otf_sigv4_kv){"x-amz-security-token", s3->session_token};
  for(size_t i = 0; i < q->n_extra && n < sizeof(h) / sizeof(*h); i++)
    h[n++] = q->extra[i];
  otf_sigv4_req r = {.method = q->method, .path = q->path, .encode_path = 0, .query = q->query,
                     .n_query = q->n_query, .headers = h, .n_headers = n,
                     .payload_sha256 = q->payload_sha, .region = s3->region, .service = "s3",
                     .access_key = s3->access_key, .secret_key = s3->secret_key, .amz_date = date,
                     .query_keep_slash = s3->query_keep_slash};
  char auth[1024];
  otf_status rc = otf_sigv4_sign(&r, auth, sizeof(auth), NULL, 0, NULL, 0, err);
  if(rc != OTF_OK)
    return rc;
  struct curl_slist *l = NULL;
  char line[8192];
  int ok = 1;
  for(size_t i = 0; i < n && ok; i++) {
    snprintf(line, sizeof(line), "%s: %s", h[i].name, h[i].value);
    struct curl_slist *nl = curl_slist_append(l, line);
    ok = nl != NULL;
    if(nl)
      l = nl;
  }
  snprintf(line, sizeof(line), "Authorization: %s", auth);
  struct curl_slist *nl = ok ? curl_slist_append(l, line) : NULL;
  memset(line, 0, sizeof(line));
  if(!nl) {
    curl_slist_free_all(l);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  }
  *out = nl;
  return OTF_OK;
}

/* Fills the URL, canonical path and Host header of a request on
 * bucket/key with the given query. */
static otf_status prepare(s3req *q, otf__s3 *s3, const char *method, const char *bucket, const char *key,
                          const otf_sigv4_kv *query, size_t nq, const char *uri, otf_error *err) {
  memset(q, 0, sizeof(*q));
  q->s3 = s3;
  q->method = method;
  q->query = query;
  q->n_query = nq;
  q->payload_sha = OTF_SIGV4_EMPTY_SHA256;
  if(!s3->have_creds)
    return OTF_FAIL(err, OTF_E_UNAUTHORIZED, NULL,
                    "%s: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "a credentials file, or the storage configuration)", uri);
  char hp[280];
  if(s3->is_ipv6)
    snprintf(hp, sizeof(hp), "[%s]", s3->host);
  else
    snprintf(hp, sizeof(hp), "%s", s3->host);
  if(s3->port)
    snprintf(hp + strlen(hp), sizeof(hp) - strlen(hp), ":%d", s3->port);
  char enc_key[3 * 1100];
  if(otf_sigv4_encode(key, 1, enc_key, sizeof(enc_key)) < 0)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: key too long", uri);
  int w;
  if(s3->path_style) {
    /* Bucket-level requests (list, create) are "/bucket", no slash. */
    snprintf(q->hosthdr, sizeof(q->hosthdr), "%s", hp);
    w = snprintf(q->path, sizeof(q->path), *key ? "/%s/%s" : "/%s", bucket, enc_key);
  } else {
    snprintf(q->hosthdr, sizeof(q->hosthdr), "%s.%s", bucket, hp);
    w = snprintf(q->path, sizeof(q->path), "/%s", enc_key);
  }
  if(w < 0 || (size_t)w >= sizeof(q->path))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: key too long", uri);
  char qs[4096] = "";
  if(nq && otf_sigv4_query_ex(query, nq, s3->query_keep_slash, qs, sizeof(qs)) < 0)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: query too long", uri);
  w = snprintf(q->url, sizeof(q->url), "%s://%s%s%s%s", s3->https ? "https" : "http", q->hosthdr, q->path,
               nq ? "?" : "", qs);
  if(w < 0 || (size_t)w >= sizeof(q->url))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: URL too long", uri);
  return OTF_OK;
}

static void init_http(otf__http_req *h, s3req *q, const char *uri) {
  memset(h, 0, sizeof(*h));
  h->method = q->method;
  h->url = q->url;
  h->what = uri;
  h->sign = sign_cb;
  h->sign_ctx = q;
}

otf_status otf__s3_head(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                        uint64_t *size, char *etag, size_t etag_cap, otf_error *err) {
  s3req q;
  otf_status rc = prepare(&q, s3, "HEAD", bucket, key, NULL, 0, uri, err);
  if(rc != OTF_OK)
    return rc;
  otf__http_req h;
  init_http(&h, &q, uri);
  rc = otf__http_do(&s3->http, &h, NULL, err);
  if(rc != OTF_OK)
    return rc;
  if(h.content_length < 0)
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: the store gave no object size", uri);
  if(size)
    *size = (uint64_t)h.content_length;
  if(etag)
    snprintf(etag, etag_cap, "%s", h.etag);
  return OTF_OK;
}

otf_status otf__s3_get(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                       const char *path, uint64_t off, uint64_t len, uint64_t expect_size,
                       const char *expect_etag, char *sha256_out, otf__xprog *prog, otf_error *err) {
  s3req q;
  otf_status rc = prepare(&q, s3, "GET", bucket, key, NULL, 0, uri, err);
  if(rc != OTF_OK)
    return rc;
  otf_sigv4_kv extra[2];
  char range[64], ifm[100];
  size_t ne = 0;
  if(len) {
    snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)off,
             (unsigned long long)(off + len - 1));
    extra[ne++] = (otf_sigv4_kv){"range", range};
  }
  if(expect_etag && *expect_etag) {
    /* The object must still be the one we listed. */
    snprintf(ifm, sizeof(ifm), "\"%s\"", expect_etag);
    extra[ne++] = (otf_sigv4_kv){"if-match", ifm};
  }
  q.extra = extra;
  q.n_extra = ne;
  otf__http_req h;
  init_http(&h, &q, uri);
  h.down_path = path;
  h.verify_md5_etag = len == 0;
  if(len) {
    h.expect_len_set = 1;
    h.expect_len = len;
  } else if(expect_size != UINT64_MAX) {
    h.expect_len_set = 1;
    h.expect_len = expect_size;
  }
  rc = otf__http_do(&s3->http, &h, prog, err);
  if(rc != OTF_OK)
    return rc;
  if(len && h.status != 206)
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: the store ignored the Range request (HTTP %ld)", uri,
                    h.status);
  if(sha256_out)
    memcpy(sha256_out, h.sha256, OTF_SHA256_HEX);
  return OTF_OK;
}

static int is_md5(const char *s) {
  if(strlen(s) != 32)
    return 0;
  for(; *s; s++)
    if(!isxdigit((unsigned char)*s))
      return 0;
  return 1;
}

/* An upload's ETag, when it is a plain MD5, must be the MD5 we sent. */
static otf_status check_put_etag(const char *uri, const otf__http_req *h, const char *md5, otf_error *err) {
  if(is_md5(h->etag) && strcasecmp(h->etag, md5))
    return OTF_FAIL(err, OTF_E_CORRUPT, NULL, "%s: the store's ETag %s is not the MD5 %s of what we sent", uri,
                    h->etag, md5);
  return OTF_OK;
}

otf_status otf__s3_put_mem(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                           const void *buf, size_t len, otf_error *err) {
  s3req q;
  otf_status rc = prepare(&q, s3, "PUT", bucket, key, NULL, 0, uri, err);
  if(rc != OTF_OK)
    return rc;
  char sha[OTF_SHA256_HEX], md5[OTF_MD5_HEX];
  otf_digest d;
  if(otf__digest_init(&d, 1) != OTF_OK)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  otf__digest_update(&d, buf, len);
  otf__digest_final(&d, sha, md5);
  otf__digest_free(&d);
  q.payload_sha = sha;
  otf__http_req h;
  init_http(&h, &q, uri);
  h.body = buf;
  h.body_len = len;
  rc = otf__http_do(&s3->http, &h, NULL, err);
  if(rc != OTF_OK)
    return rc;
  return check_put_etag(uri, &h, md5, err);
}

/* Hashes [off, off+len) of path: part digest (SHA-256 + MD5) and, when
 * whole is given, the running digest of the whole file. */
static otf_status hash_range(const char *path, uint64_t off, uint64_t len, char *sha, char *md5,
                             otf_digest *whole, otf_error *err) {
  FILE *f = fopen(path, "rb");
  if(!f)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
  otf_digest d;
  if(otf__digest_init(&d, 1) != OTF_OK) {
    fclose(f);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  }
  size_t cap = 1 << 20;
  unsigned char *buf = otf_malloc(cap);
  otf_status rc = buf ? OTF_OK : OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  if(rc == OTF_OK && fseeko(f, (off_t)off, SEEK_SET) != 0)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
  uint64_t done = 0;
  while(rc == OTF_OK && done < len) {
    size_t want = len - done < cap ? (size_t)(len - done) : cap;
    size_t got = fread(buf, 1, want, f);
    if(got == 0) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: shorter than expected (changed while uploading?)", path);
      break;
    }
    otf__digest_update(&d, buf, got);
    if(whole)
      otf__digest_update(whole, buf, got);
    done += got;
  }
  if(rc == OTF_OK)
    otf__digest_final(&d, sha, md5);
  otf__digest_free(&d);
  otf_free(buf);
  fclose(f);
  return rc;
}

static void abort_upload(otf__s3 *s3, const char *bucket, const char *key, const char *uri, const char *upload_id) {
  s3req q;
  otf_sigv4_kv qp[] = {{"uploadId", upload_id}};
  if(prepare(&q, s3, "DELETE", bucket, key, qp, 1, uri, NULL) != OTF_OK)
    return;
  otf__http_req h;
  init_http(&h, &q, uri);
  if(otf__http_do(&s3->http, &h, NULL, NULL) != OTF_OK) {
    /* Best effort: a bucket lifecycle rule cleans up what is left. */
  }
}

static otf_status put_multipart(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                                const char *path, uint64_t size, char *sha256_out, otf__xprog *prog,
                                otf_error *err) {
  uint64_t ps = s3->part_size;
  if((size + ps - 1) / ps > OTF_S3_MAX_PARTS)
    ps = (size + OTF_S3_MAX_PARTS - 1) / OTF_S3_MAX_PARTS;
  size_t nparts = (size_t)((size + ps - 1) / ps);
  char (*etags)[OTF_MD5_HEX] = otf_calloc(nparts, sizeof(*etags));
  char resp[8192];
  char upload_id[1024] = "";
  char *xml = NULL;
  otf_digest whole;
  int have_whole = 0;
  otf_status rc = etags ? OTF_OK : OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  if(rc == OTF_OK) {
    rc = otf__digest_init(&whole, 0);
    if(rc != OTF_OK)
      OTF_FAIL(err, rc, NULL, "out of memory");
    have_whole = rc == OTF_OK;
  }
  /* 1. initiate */
  if(rc == OTF_OK) {
    s3req q;
    otf_sigv4_kv qp[] = {{"uploads", NULL}};
    rc = prepare(&q, s3, "POST", bucket, key, qp, 1, uri, err);
    if(rc == OTF_OK) {
      otf__http_req h;
      init_http(&h, &q, uri);
      h.resp = resp;
      h.resp_cap = sizeof(resp);
      h.body = "";
      h.body_len = 0;
      rc = otf__http_do(&s3->http, &h, NULL, err);
      if(rc == OTF_OK && otf__xml_get(resp, h.resp_len, "UploadId", upload_id, sizeof(upload_id), NULL) != 0)
        rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: no UploadId in the store's answer", uri);
    }
  }
  /* 2. parts, in order (the whole-file digest runs along) */
  for(size_t i = 0; rc == OTF_OK && i < nparts; i++) {
    uint64_t off = (uint64_t)i * ps, len = size - off < ps ? size - off : ps;
    char sha[OTF_SHA256_HEX];
    rc = hash_range(path, off, len, sha, etags[i], &whole, err);
    if(rc != OTF_OK)
      break;
    char pn[24];
    snprintf(pn, sizeof(pn), "%zu", i + 1);
    otf_sigv4_kv qp[] = {{"partNumber", pn}, {"uploadId", upload_id}};
    s3req q;
    rc = prepare(&q, s3, "PUT", bucket, key, qp, 2, uri, err);
    if(rc != OTF_OK)
      break;
    q.payload_sha = sha;
    otf__http_req h;
    init_http(&h, &q, uri);
    h.up_path = path;
    h.up_off = off;
    h.up_len = len;
    rc = otf__http_do(&s3->http, &h, prog, err);
    if(rc == OTF_OK)
      rc = check_put_etag(uri, &h, etags[i], err);
  }
  /* 3. complete */
  if(rc == OTF_OK) {
    size_t cap = 128 + nparts * 100;
    xml = otf_malloc(cap);
    if(!xml) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
    } else {
      size_t n = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
      for(size_t i = 0; i < nparts; i++)
        n += (size_t)snprintf(xml + n, cap - n, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
                              i + 1, etags[i]);
      n += (size_t)snprintf(xml + n, cap - n, "</CompleteMultipartUpload>");
      char sha[OTF_SHA256_HEX];
      otf__sha256_hex(xml, n, sha);
      otf_sigv4_kv qp[] = {{"uploadId", upload_id}};
      s3req q;
      rc = prepare(&q, s3, "POST", bucket, key, qp, 1, uri, err);
      if(rc == OTF_OK) {
        otf_sigv4_kv ct = {"content-type", "application/xml"};
        q.payload_sha = sha;
        q.extra = &ct;
        q.n_extra = 1;
        otf__http_req h;
        init_http(&h, &q, uri);
        h.body = xml;
        h.body_len = n;
        h.resp = resp;
        h.resp_cap = sizeof(resp);
        rc = otf__http_do(&s3->http, &h, NULL, err);
        /* S3 can answer 200 and still fail: the error is in the body. */
        char code[64] = "", etag[128] = "";
        if(rc == OTF_OK && otf__xml_get(resp, h.resp_len, "Code", code, sizeof(code), NULL) == 0 &&
           strstr(resp, "<Error>"))
          rc = OTF_FAIL(err, OTF_E_UNREACHABLE, NULL, "%s: completing the upload failed: %s", uri, code);
        if(rc == OTF_OK && otf__xml_get(resp, h.resp_len, "ETag", etag, sizeof(etag), NULL) == 0) {
          /* The multipart ETag is MD5(concatenated part MD5s)-N. */
          unsigned char bin[16];
          otf_digest md;
          if(otf__digest_init(&md, 1) == OTF_OK) {
            for(size_t i = 0; i < nparts; i++) {
              for(int k = 0; k < 16; k++) {
                unsigned v;
                sscanf(etags[i] + 2 * k, "%2x", &v);
                bin[k] = (unsigned char)v;
              }
              otf__digest_update(&md, bin, 16);
            }
            char want[OTF_MD5_HEX + 16], got_md5[OTF_MD5_HEX];
            otf__digest_final(&md, NULL, got_md5);
            otf__digest_free(&md);
            snprintf(want, sizeof(want), "%s-%zu", got_md5, nparts);
            const char *e = etag;
            while(*e == '"')
              e++;
            char clean[128];
            snprintf(clean, sizeof(clean), "%s", e);
            char *qt = strchr(clean, '"');
            if(qt)
              *qt = 0;
            if(strchr(clean, '-') && strcasecmp(clean, want))
              rc = OTF_FAIL(err, OTF_E_CORRUPT, NULL, "%s: multipart ETag %s, expected %s", uri, clean, want);
          }
        }
      }
    }
  }
  if(rc != OTF_OK && *upload_id)
    abort_upload(s3, bucket, key, uri, upload_id);
  if(rc == OTF_OK && sha256_out)
    otf__digest_final(&whole, sha256_out, NULL);
  if(have_whole)
    otf__digest_free(&whole);
  otf_free(xml);
  otf_free(etags);
  return rc;
}

otf_status otf__s3_put_file(otf__s3 *s3, const char *bucket, const char *key, const char *uri,
                            const char *path, char *sha256_out, otf__xprog *prog, otf_error *err) {
  struct stat st;
  if(stat(path, &st) != 0 || !S_ISREG(st.st_mode))
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: not a readable file", path);
  uint64_t size = (uint64_t)st.st_size;
  if(size > s3->part_size)
    return put_multipart(s3, bucket, key, uri, path, size, sha256_out, prog, err);
  char sha[OTF_SHA256_HEX], md5[OTF_MD5_HEX];
  otf_status rc = hash_range(path, 0, size, sha, md5, NULL, err);
  if(rc != OTF_OK)
    return rc;
  s3req q;
  rc = prepare(&q, s3, "PUT", bucket, key, NULL, 0, uri, err);
  if(rc != OTF_OK)
    return rc;
  q.payload_sha = sha;
  otf__http_req h;
  init_http(&h, &q, uri);
  h.up_path = path;
  h.up_off = 0;
  h.up_len = size;
  rc = otf__http_do(&s3->http, &h, prog, err);
  if(rc == OTF_OK)
    rc = check_put_etag(uri, &h, md5, err);
  if(rc == OTF_OK && sha256_out)
    memcpy(sha256_out, sha, OTF_SHA256_HEX);
  return rc;
}

/* Response of one ListObjectsV2 page: 1000 keys of up to 1 KiB each. */
#define LIST_PAGE_BYTES ((size_t)2 << 20)

otf_status otf__s3_list(otf__s3 *s3, const char *bucket, const char *prefix, const char *uri,
                        otf_manifest *out, otf_error *err) {
  memset(out, 0, sizeof(*out));
  char *resp = otf_malloc(LIST_PAGE_BYTES);
  char *token = otf_malloc(4096);
  char *key = otf_malloc(2048);
  otf_status rc = resp && token && key ? OTF_OK : OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  if(token)
    token[0] = 0;
  size_t plen = strlen(prefix);
  for(int page = 0; rc == OTF_OK; page++) {
    otf_sigv4_kv qp[4];
    size_t nq = 0;
    char mk[16];
    qp[nq++] = (otf_sigv4_kv){"list-type", "2"};
    qp[nq++] = (otf_sigv4_kv){"prefix", prefix};
    if(s3->list_page > 0) {
      snprintf(mk, sizeof(mk), "%d", s3->list_page);
      qp[nq++] = (otf_sigv4_kv){"max-keys", mk};
    }
    if(*token)
      qp[nq++] = (otf_sigv4_kv){"continuation-token", token};
    s3req q;
    rc = prepare(&q, s3, "GET", bucket, "", qp, nq, uri, err);
    if(rc != OTF_OK)
      break;
    otf__http_req h;
    init_http(&h, &q, uri);
    h.resp = resp;
    h.resp_cap = LIST_PAGE_BYTES;
    rc = otf__http_do(&s3->http, &h, NULL, err);
    if(rc != OTF_OK)
      break;
    const char *p = resp, *end = resp + h.resp_len;
    const char *b, *e;
    while(rc == OTF_OK && otf__xml_span(p, (size_t)(end - p), "Contents", &b, &e) == 0) {
      char size_s[32] = "", etag[100] = "";
      if(otf__xml_get(b, (size_t)(e - b), "Key", key, 2048, NULL) != 0 ||
         otf__xml_get(b, (size_t)(e - b), "Size", size_s, sizeof(size_s), NULL) != 0) {
        rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: malformed listing from the store", uri);
        break;
      }
      otf__xml_get(b, (size_t)(e - b), "ETag", etag, sizeof(etag), NULL);
      p = e + 11;
      if(strncmp(key, prefix, plen) != 0)
        continue;
      const char *rel = key + plen;
      size_t rl = strlen(rel);
      if(rl == 0 || rel[rl - 1] == '/')
        continue; /* the folder itself, or a folder marker */
      if(!otf_uri_safe_relpath(rel)) {
        rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: object name '%s' cannot be mapped to a local file", uri, rel);
        break;
      }
      char *endp;
      unsigned long long sz = strtoull(size_s, &endp, 10);
      if(*endp || size_s[0] == '-') {
        rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: bad size for '%s'", uri, rel);
        break;
      }
      const char *et = etag;
      while(*et == '"')
        et++;
      char clean[100];
      snprintf(clean, sizeof(clean), "%s", et);
      char *qt = strchr(clean, '"');
      if(qt)
        *qt = 0;
      rc = otf__manifest_add(out, rel, sz, NULL, clean);
      if(rc != OTF_OK)
        OTF_FAIL(err, rc, NULL, "%s: more than %d objects, or out of memory", uri, OTF_MAX_MODEL_FILES);
    }
    if(rc != OTF_OK)
      break;
    char trunc[16] = "";
    otf__xml_get(resp, h.resp_len, "IsTruncated", trunc, sizeof(trunc), NULL);
    if(strcmp(trunc, "true"))
      break;
    if(otf__xml_get(resp, h.resp_len, "NextContinuationToken", token, 4096, NULL) != 0 || !*token) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: truncated listing without a continuation token", uri);
      break;
    }
    if(page > 100000) {
      rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: listing does not end", uri);
      break;
    }
  }
  otf_free(resp);
  otf_free(token);
  otf_free(key);
  if(rc != OTF_OK)
    otf__manifest_free(out);
  else
    otf__manifest_sort(out);
  return rc;
}

otf_status otf__s3_delete(otf__s3 *s3, const char *bucket, const char *key, const char *uri, otf_error *err) {
  s3req q;
  otf_status rc = prepare(&q, s3, "DELETE", bucket, key, NULL, 0, uri, err);
  if(rc != OTF_OK)
    return rc;
  otf__http_req h;
  init_http(&h, &q, uri);
  return otf__http_do(&s3->http, &h, NULL, err);
}

otf_status otf__s3_create_bucket(otf__s3 *s3, const char *bucket, otf_error *err) {
  char uri[300];
  snprintf(uri, sizeof(uri), "s3://%s", bucket);
  s3req q;
  otf_status rc = prepare(&q, s3, "PUT", bucket, "", NULL, 0, uri, err);
  if(rc != OTF_OK)
    return rc;
  otf__http_req h;
  init_http(&h, &q, uri);
  h.body = "";
  h.body_len = 0;
  return otf__http_do(&s3->http, &h, NULL, err);
}
