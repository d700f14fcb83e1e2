#include "storage/uri.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int otf_uri_is_uri(const char *s) {
  if(!s || !isalpha((unsigned char)s[0]))
    return 0;
  const char *p = s;
  while(isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
    p++;
  return p[0] == ':' && p[1] == '/' && p[2] == '/';
}

static int hexval(int c) {
  if(c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  if(c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static int has_ctl(const char *s) {
  for(; *s; s++)
    if((unsigned char)*s < 0x20 || *s == 0x7f)
      return 1;
  return 0;
}

/* Percent-decodes src into dst (cap bytes); -1 on bad escapes, %00,
 * decoded control characters or overflow. */
static int pct_decode(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  for(const char *p = src; *p; p++) {
    int c = (unsigned char)*p;
    if(c == '%') {
      int hi = hexval((unsigned char)p[1]), lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
      if(hi < 0 || lo < 0)
        return -1;
      c = hi * 16 + lo;
      p += 2;
      if(c < 0x20 || c == 0x7f)
        return -1;
    }
    if(n + 1 >= cap)
      return -1;
    dst[n++] = (char)c;
  }
  dst[n] = 0;
  return 0;
}

/* S3 bucket naming rules: 3-63 characters of lowercase letters, digits,
 * dots and hyphens, starting and ending with a letter or digit, no "..",
 * not an IPv4 address. */
static int valid_bucket(const char *b, size_t len) {
  if(len < 3 || len > 63)
    return 0;
  int all_digit_dot = 1;
  for(size_t i = 0; i < len; i++) {
    char c = b[i];
    if(!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '.' || c == '-'))
      return 0;
    if(c == '.' && i + 1 < len && b[i + 1] == '.')
      return 0;
    if(!(isdigit((unsigned char)c) || c == '.'))
      all_digit_dot = 0;
  }
  if(!isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[len - 1]))
    return 0;
  return !all_digit_dot;
}

int otf_uri_safe_relpath(const char *rel) {
  if(!rel || !*rel || rel[0] == '/' || has_ctl(rel) || strchr(rel, '\\'))
    return 0;
  const char *p = rel;
  while(*p) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if(n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
      return 0;
    if(!e)
      break;
    p = e + 1;
    if(!*p)
      return 0; /* trailing slash: a folder marker, not a file */
  }
  return 1;
}

static otf_status parse_file(otf_uri *u, const char *uri, const char *rest, otf_error *err) {
  /* file:///abs or file://localhost/abs */
  if(!strncmp(rest, "localhost/", 10))
    rest += 9;
  if(rest[0] != '/')
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "%s: file URIs need an absolute path (file:///abs/path)", uri);
  if(pct_decode(u->path, sizeof(u->path), rest) != 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad percent-escape or path too long", uri);
  size_t n = strlen(u->path);
  u->is_dir = n > 0 && u->path[n - 1] == '/';
  while(n > 1 && u->path[n - 1] == '/')
    u->path[--n] = 0;
  return OTF_OK;
}

static otf_status parse_s3(otf_uri *u, const char *uri, const char *rest, otf_error *err) {
  const char *slash = strchr(rest, '/');
  size_t blen = slash ? (size_t)(slash - rest) : strlen(rest);
  if(!valid_bucket(rest, blen))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: '%.*s' is not a valid S3 bucket name", uri,
                    (int)(blen > 64 ? 64 : blen), rest);
  memcpy(u->host, rest, blen);
  u->host[blen] = 0;
  const char *key = slash ? slash + 1 : "";
  if(strlen(key) >= sizeof(u->path) || strlen(key) > 1024)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: S3 key longer than 1024 bytes", uri);
  snprintf(u->path, sizeof(u->path), "%s", key);
  size_t n = strlen(u->path);
  u->is_dir = n == 0 || u->path[n - 1] == '/';
  return OTF_OK;
}

static otf_status parse_http(otf_uri *u, const char *uri, const char *rest, otf_error *err) {
  const char *pathp = rest + strcspn(rest, "/?#");
  size_t alen = (size_t)(pathp - rest);
  if(alen == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: no host", uri);
  if(memchr(rest, '@', alen))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: user names or passwords in URLs are refused", uri);
  const char *portp = NULL;
  if(rest[0] == '[') {
    const char *close = memchr(rest, ']', alen);
    if(!close)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: unterminated IPv6 literal", uri);
    size_t hl = (size_t)(close - rest - 1);
    if(hl == 0 || hl >= sizeof(u->host))
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad IPv6 literal", uri);
    memcpy(u->host, rest + 1, hl);
    u->host[hl] = 0;
    u->is_ipv6 = 1;
    for(const char *c = u->host; *c; c++)
      if(!(isxdigit((unsigned char)*c) || *c == ':' || *c == '.'))
        return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad IPv6 literal", uri);
    if(close + 1 < pathp) {
      if(close[1] != ':')
        return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad host", uri);
      portp = close + 2;
    }
  } else {
    const char *colon = memchr(rest, ':', alen);
    size_t hl = colon ? (size_t)(colon - rest) : alen;
    if(hl == 0 || hl >= sizeof(u->host))
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad host", uri);
    memcpy(u->host, rest, hl);
    u->host[hl] = 0;
    for(char *c = u->host; *c; c++) {
      if(!(isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_'))
        return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad character in host", uri);
      *c = (char)tolower((unsigned char)*c);
    }
    if(colon)
      portp = colon + 1;
  }
  if(portp) {
    long port = 0;
    const char *c = portp;
    for(; c < pathp; c++) {
      if(!isdigit((unsigned char)*c) || port > 65535)
        return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad port", uri);
      port = port * 10 + (*c - '0');
    }
    if(c == portp || port < 1 || port > 65535)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad port", uri);
    u->port = (int)port;
  }
  const char *path = *pathp == '/' ? pathp : "/";
  size_t plen = strcspn(path, "#");
  if(*pathp == '?') {
    /* "http://h?q": path "/" then the query */
    if(plen + 2 >= sizeof(u->path))
      return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: URL too long", uri);
    snprintf(u->path, sizeof(u->path), "/%.*s", (int)strcspn(pathp, "#"), pathp);
  } else {
    if(plen >= sizeof(u->path))
      return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: URL too long", uri);
    memcpy(u->path, path, plen);
    u->path[plen] = 0;
  }
  for(const char *c = u->path; *c; c++)
    if(*c == ' ' || (unsigned char)*c > 0x7e)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: unencoded character in URL path", uri);
  size_t qpos = strcspn(u->path, "?");
  u->is_dir = qpos > 0 && u->path[qpos - 1] == '/';
  return OTF_OK;
}

otf_status otf_uri_parse(otf_uri *u, const char *s, otf_error *err) {
  memset(u, 0, sizeof(*u));
  if(!s || !*s)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "empty URI");
  if(strlen(s) >= OTF_URI_PATH_MAX)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "URI longer than %d bytes", OTF_URI_PATH_MAX - 1);
  if(has_ctl(s))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "URI contains control characters");
  if(!otf_uri_is_uri(s))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: not a URI (want file://, s3://, http:// or https://)", s);
  size_t sl = strcspn(s, ":");
  const char *rest = s + sl + 3;
  if(sl == 4 && !strncasecmp(s, "file", 4)) {
    u->scheme = OTF_URI_FILE;
    return parse_file(u, s, rest, err);
  }
  if(sl == 2 && !strncasecmp(s, "s3", 2)) {
    u->scheme = OTF_URI_S3;
    return parse_s3(u, s, rest, err);
  }
  if(sl == 4 && !strncasecmp(s, "http", 4)) {
    u->scheme = OTF_URI_HTTP;
    return parse_http(u, s, rest, err);
  }
  if(sl == 5 && !strncasecmp(s, "https", 5)) {
    u->scheme = OTF_URI_HTTPS;
    return parse_http(u, s, rest, err);
  }
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: unsupported scheme '%.*s' (want file, s3, http or https)",
                  s, (int)(sl > 16 ? 16 : sl), s);
}
