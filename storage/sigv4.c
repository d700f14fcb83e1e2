#include "storage/sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "storage/digest.h"

long otf_sigv4_encode(const char *s, int keep_slash, char *out, size_t cap) {
  static const char hx[] = "0123456789ABCDEF";
  size_t n = 0;
  for(const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int keep = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
               (keep_slash && *p == '/');
    if(keep && *p < 0x80) {
      if(n + 1 >= cap)
        return -1;
      out[n++] = (char)*p;
    } else {
      if(n + 3 >= cap)
        return -1;
      out[n++] = '%';
      out[n++] = hx[*p >> 4];
      out[n++] = hx[*p & 15];
    }
  }
  if(n >= cap)
    return -1;
  out[n] = 0;
  return (long)n;
}

/* A growable string with a hard ceiling (the Authorization inputs are
 * small: a few KiB). */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int bad;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t len) {
  if(b->bad)
    return;
  if(b->n + len + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while(nc < b->n + len + 1)
      nc *= 2;
    if(nc > ((size_t)1 << 20)) {
      b->bad = 1;
      return;
    }
    char *np = otf_realloc(b->p, nc);
    if(!np) {
      b->bad = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_enc(sbuf *b, const char *s, int keep_slash) {
  char tmp[3 * 1024 + 1];
  size_t len = strlen(s);
  if(len > 1024) { /* encode in pieces */
    char piece[1025];
    for(size_t off = 0; off < len; off += 1024) {
      size_t k = len - off < 1024 ? len - off : 1024;
      memcpy(piece, s + off, k);
      piece[k] = 0;
      sb_enc(b, piece, keep_slash);
    }
    return;
  }
  long w = otf_sigv4_encode(s, keep_slash, tmp, sizeof(tmp));
  if(w < 0)
    b->bad = 1;
  else
    sb_add(b, tmp, (size_t)w);
}

typedef struct enc_kv {
  char *k, *v;
} enc_kv;

static int cmp_kv(const void *a, const void *b) {
  const enc_kv *x = a, *y = b;
  int c = strcmp(x->k, y->k);
  return c ? c : strcmp(x->v, y->v);
}

static char *encdup(const char *s, int keep_slash) {
  size_t cap = 3 * strlen(s) + 1;
  char *o = otf_malloc(cap);
  if(o && otf_sigv4_encode(s, keep_slash, o, cap) < 0) {
    otf_free(o);
    o = NULL;
  }
  return o;
}

long otf_sigv4_query(const otf_sigv4_kv *q, size_t n, char *out, size_t cap) {
  return otf_sigv4_query_ex(q, n, 0, out, cap);
}

long otf_sigv4_query_ex(const otf_sigv4_kv *q, size_t n, int keep_slash, char *out, size_t cap) {
  if(cap == 0)
    return -1;
  out[0] = 0;
  if(n == 0)
    return 0;
  enc_kv *e = otf_calloc(n, sizeof(*e));
  if(!e)
    return -1;
  long total = 0;
  int ok = 1;
  for(size_t i = 0; i < n && ok; i++) {
    e[i].k = encdup(q[i].name, keep_slash);
    e[i].v = encdup(q[i].value ? q[i].value : "", keep_slash);
    ok = e[i].k && e[i].v;
  }
  if(ok) {
    /* Sort by the encoded names (byte order), as SigV4 specifies. */
    qsort(e, n, sizeof(*e), cmp_kv);
    size_t used = 0;
    for(size_t i = 0; i < n && ok; i++) {
      int w = snprintf(out + used, cap - used, "%s%s=%s", i ? "&" : "", e[i].k, e[i].v);
      if(w < 0 || used + (size_t)w >= cap)
        ok = 0;
      else
        used += (size_t)w;
    }
    total = (long)used;
  }
  for(size_t i = 0; i < n; i++) {
    otf_free(e[i].k);
    otf_free(e[i].v);
  }
  otf_free(e);
  return ok ? total : -1;
}

typedef struct hdr {
  char *name;  /* lowercased */
  char *value; /* trimmed, spaces collapsed */
} hdr;

static int cmp_hdr(const void *a, const void *b) {
  return strcmp(((const hdr *)a)->name, ((const hdr *)b)->name);
}

static char *canon_value(const char *v) {
  while(*v == ' ' || *v == '\t')
    v++;
  size_t n = strlen(v);
  while(n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  char *o = otf_malloc(n + 1);
  if(!o)
    return NULL;
  size_t k = 0;
  for(size_t i = 0; i < n; i++) {
    char c = v[i] == '\t' ? ' ' : v[i];
    if(c == ' ' && k && o[k - 1] == ' ')
      continue;
    o[k++] = c;
  }
  o[k] = 0;
  return o;
}

otf_status otf_sigv4_sign(const otf_sigv4_req *r, char *auth, size_t cap, char *creq,
                          size_t creq_cap, char *sts, size_t sts_cap, otf_error *err) {
  if(!r->amz_date || strlen(r->amz_date) != 16 || !r->region || !*r->region || !r->service ||
     !r->access_key || !*r->access_key || !r->secret_key || !r->payload_sha256 || !r->method ||
     !r->path || r->path[0] != '/')
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "SigV4: incomplete request or credentials");
  otf_status rc = OTF_OK;
  sbuf c = {0}, s = {0}, sh = {0};
  hdr *h = otf_calloc(r->n_headers ? r->n_headers : 1, sizeof(*h));
  char *query = NULL;
  if(!h) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "SigV4: out of memory");
    goto done;
  }
  /* 1. canonical request */
  sb_str(&c, r->method);
  sb_str(&c, "\n");
  if(r->encode_path)
    sb_enc(&c, r->path, 1);
  else
    sb_str(&c, r->path);
  sb_str(&c, "\n");
  size_t qcap = 64;
  for(size_t i = 0; i < r->n_query; i++)
    qcap += 3 * (strlen(r->query[i].name) + (r->query[i].value ? strlen(r->query[i].value) : 0)) + 2;
  query = otf_malloc(qcap);
  if(!query || otf_sigv4_query_ex(r->query, r->n_query, r->query_keep_slash, query, qcap) < 0) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "SigV4: out of memory");
    goto done;
  }
  sb_str(&c, query);
  sb_str(&c, "\n");
  for(size_t i = 0; i < r->n_headers; i++) {
    size_t nl = strlen(r->headers[i].name);
    h[i].name = otf_malloc(nl + 1);
    h[i].value = canon_value(r->headers[i].value ? r->headers[i].value : "");
    if(!h[i].name || !h[i].value) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "SigV4: out of memory");
      goto done;
    }
    for(size_t k = 0; k <= nl; k++)
      h[i].name[k] = (char)tolower((unsigned char)r->headers[i].name[k]);
  }
  qsort(h, r->n_headers, sizeof(*h), cmp_hdr);
  for(size_t i = 0; i < r->n_headers; i++) {
    if(i && !strcmp(h[i].name, h[i - 1].name)) {
      rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "SigV4: header '%s' given twice", h[i].name);
      goto done;
    }
    sb_str(&c, h[i].name);
    sb_str(&c, ":");
    sb_str(&c, h[i].value);
    sb_str(&c, "\n");
    if(i)
      sb_str(&sh, ";");
    sb_str(&sh, h[i].name);
  }
  sb_str(&c, "\n");
  sb_str(&c, sh.p ? sh.p : "");
  sb_str(&c, "\n");
  sb_str(&c, r->payload_sha256);
  if(c.bad || sh.bad) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "SigV4: request too large to sign");
    goto done;
  }
  /* 2. string to sign */
  char date[9], chash[OTF_SHA256_HEX];
  memcpy(date, r->amz_date, 8);
  date[8] = 0;
  otf__sha256_hex(c.p, c.n, chash);
  sb_str(&s, "AWS4-HMAC-SHA256\n");
  sb_str(&s, r->amz_date);
  sb_str(&s, "\n");
  sb_str(&s, date);
  sb_str(&s, "/");
  sb_str(&s, r->region);
  sb_str(&s, "/");
  sb_str(&s, r->service);
  sb_str(&s, "/aws4_request\n");
  sb_str(&s, chash);
  if(s.bad) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "SigV4: out of memory");
    goto done;
  }
  /* 3. signing key and signature */
  unsigned char k[32];
  size_t sklen = strlen(r->secret_key);
  char *kin = otf_malloc(sklen + 5);
  if(!kin) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "SigV4: out of memory");
    goto done;
  }
  memcpy(kin, "AWS4", 4);
  memcpy(kin + 4, r->secret_key, sklen + 1);
  otf__hmac_sha256(kin, sklen + 4, date, 8, k);
  memset(kin, 0, sklen + 4); /* no copy of the secret left behind */
  otf_free(kin);
  otf__hmac_sha256(k, 32, r->region, strlen(r->region), k);
  otf__hmac_sha256(k, 32, r->service, strlen(r->service), k);
  otf__hmac_sha256(k, 32, "aws4_request", 12, k);
  unsigned char sig[32];
  otf__hmac_sha256(k, 32, s.p, s.n, sig);
  memset(k, 0, sizeof(k));
  char sighex[65];
  otf__hex(sig, 32, sighex);
  int w = snprintf(auth, cap, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
                   r->access_key, date, r->region, r->service, sh.p ? sh.p : "", sighex);
  if(w < 0 || (size_t)w >= cap)
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "SigV4: Authorization buffer too small");
  if(rc == OTF_OK && creq && snprintf(creq, creq_cap, "%s", c.p) >= (int)creq_cap)
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "SigV4: canonical request buffer too small");
  if(rc == OTF_OK && sts && snprintf(sts, sts_cap, "%s", s.p) >= (int)sts_cap)
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "SigV4: string-to-sign buffer too small");
done:
  if(h)
    for(size_t i = 0; i < r->n_headers; i++) {
      otf_free(h[i].name);
      otf_free(h[i].value);
    }
  otf_free(h);
  otf_free(query);
  otf_free(c.p);
  otf_free(s.p);
  otf_free(sh.p);
  return rc;
}

void otf_sigv4_amz_date(long long unix_time, char out[17]) {
  time_t t = (time_t)unix_time;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}
