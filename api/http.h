/* The REST surface seen without an HTTP library: a parsed request in, a
 * response out. server/http.c turns libmicrohttpd connections into these,
 * so that routes, validation and resource JSON are testable on their own. */
#ifndef OTF_API_HTTP_H
#define OTF_API_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define OTF_HTTP_MAX_HEADERS 8

typedef struct otf_http_req {
  const char *method;      /* "GET", "POST", ... */
  const char *path;        /* decoded path, no query */
  const char *body;        /* may be NULL when body_len == 0 */
  size_t body_len;
  const char *request_id;
  /* header and query lookups (case-insensitive names); NULL when absent */
  const char *(*header)(void *conn, const char *name);
  const char *(*query)(void *conn, const char *name);
  void *conn;
} otf_http_req;

typedef struct otf_http_resp {
  int status;
  const char *content_type; /* static string */
  char *body;               /* malloc'd, or NULL */
  size_t body_len;
  int fd;                   /* >= 0: send length bytes of fd from offset (body unused) */
  uint64_t offset, length;
  size_t n_headers;
  char *hname[OTF_HTTP_MAX_HEADERS]; /* malloc'd */
  char *hvalue[OTF_HTTP_MAX_HEADERS];
  const unsigned char *static_body; /* static data (dashboard assets), not freed */
} otf_http_resp;

void otf_http_resp_init(otf_http_resp *r);
void otf_http_resp_free(otf_http_resp *r);
/* Adds a header (copied); ignored past OTF_HTTP_MAX_HEADERS. */
void otf_http_resp_header(otf_http_resp *r, const char *name, const char *value);

#endif
