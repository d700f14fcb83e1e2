/* Parsing of storage URIs (file://, s3://, http(s)://) into their parts.
 * Pure string work: no disk, no network. */
#ifndef OTF_URI_H
#define OTF_URI_H

#include <stddef.h>

#include "common/error.h"

#define OTF_URI_HOST_MAX 256
#define OTF_URI_PATH_MAX 4096

typedef enum otf_uri_scheme {
  OTF_URI_FILE = 0,
  OTF_URI_S3,
  OTF_URI_HTTP,
  OTF_URI_HTTPS
} otf_uri_scheme;

typedef struct otf_uri {
  otf_uri_scheme scheme;
  /* s3: the bucket; http(s): the host (IPv6 literals without brackets);
   * file: "" */
  char host[OTF_URI_HOST_MAX];
  int port;      /* http(s): explicit port, 0 = the scheme's default */
  int is_ipv6;   /* host is an IPv6 literal */
  /* file: the absolute path, percent-decoded, without a trailing slash
   *       (except "/");
   * s3: the key or prefix as written (no leading slash; keys are not
   *     percent-encoded in s3:// URIs), trailing slash kept;
   * http(s): path and query exactly as written, starting with '/'. */
  char path[OTF_URI_PATH_MAX];
  int is_dir;    /* the URI ended with '/' */
} otf_uri;

/* Parses s into u. Rejects unknown schemes, empty or oversized parts,
 * control characters, userinfo in http URLs, NUL bytes encoded as %00,
 * and s3 bucket names S3 would refuse. The error names the URI. */
otf_status otf_uri_parse(otf_uri *u, const char *s, otf_error *err) OTF_WUR;

/* 1 when s looks like a URI (has "scheme://"), 0 for a plain path. */
int otf_uri_is_uri(const char *s);

/* 1 when the s3 key/prefix is safe to map onto a local relative path:
 * no empty, "." or ".." components, no leading '/', no backslashes or
 * control characters. */
int otf_uri_safe_relpath(const char *rel);

#endif
