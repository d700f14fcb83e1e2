/* libmicrohttpd glue: see http.h. */
#include "server/http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/limits.h"
#include "server/log.h"

typedef struct conn {
  struct conn *next;          /* pending queue for slow routes */
  otf_httpd *h;
  struct MHD_Connection *c;
  char *body;
  size_t len, cap;
  int too_large;
  char rid[40];
  char method[12];
  char *path;
  otf_route route;
  struct timespec t0;
  int state;                  /* 0 new, 1 suspended (slow route running), 2 answered */
  otf_http_resp resp;
  uv_work_t work;
  int status;                 /* for metrics and logs */
} conn;

struct otf_httpd {
  struct MHD_Daemon *d;
  otf_api *api;
  uv_loop_t *loop;
  uv_async_t async;
  pthread_mutex_t mu;
  conn *head, *tail;
  atomic_ullong seq;
  unsigned long long boot;
};

static const char *hdr(void *c, const char *name) {
  return MHD_lookup_connection_value(((conn *)c)->c, MHD_HEADER_KIND, name);
}

static const char *arg(void *c, const char *name) {
  return MHD_lookup_connection_value(((conn *)c)->c, MHD_GET_ARGUMENT_KIND, name);
}

static void build_req(conn *k, otf_http_req *q) {
  q->method = k->method;
  q->path = k->path;
  q->body = k->body;
  q->body_len = k->len;
  q->request_id = k->rid;
  q->header = hdr;
  q->query = arg;
  q->conn = k;
}

/* Turns an otf_http_resp into a queued MHD response. */
static enum MHD_Result send_resp(conn *k) {
  otf_http_resp *r = &k->resp;
  struct MHD_Response *mr;
  if(r->fd >= 0) {
    mr = MHD_create_response_from_fd_at_offset64(r->length, r->fd, r->offset);
    if(mr)
      r->fd = -1; /* MHD closes it */
  } else if(r->static_body) {
    mr = MHD_create_response_from_buffer(r->body_len, (void *)r->static_body,
                                         MHD_RESPMEM_PERSISTENT);
  } else if(r->body) {
    mr = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
    if(mr)
      r->body = NULL;
  } else {
    mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  }
  if(!mr)
    return MHD_NO;
  if(r->content_type)
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
  MHD_add_response_header(mr, "X-Request-Id", k->rid);
  MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff");
  for(size_t i = 0; i < r->n_headers; i++)
    MHD_add_response_header(mr, r->hname[i], r->hvalue[i]);
  k->status = r->status;
  enum MHD_Result ok = MHD_queue_response(k->c, (unsigned)r->status, mr);
  MHD_destroy_response(mr);
  k->state = 2;
  return ok;
}

/* A problem answer made here (before the API sees the request). */
static enum MHD_Result send_problem(conn *k, int status, otf_status code, const char *detail) {
  otf_http_resp_init(&k->resp);
  json_t *p = otf_api_problem(code, detail, NULL, k->path, k->rid);
  if(p)
    json_object_set_new(p, "status", json_integer(status));
  k->resp.status = status;
  k->resp.content_type = "application/problem+json";
  k->resp.body = p ? json_dumps(p, JSON_COMPACT) : NULL;
  k->resp.body_len = k->resp.body ? strlen(k->resp.body) : 0;
  json_decref(p);
  return send_resp(k);
}

/* ---- slow routes: run on the libuv pool while the connection sleeps ---- */

static void slow_work(uv_work_t *w) {
  conn *k = w->data;
  otf_http_req q;
  build_req(k, &q);
  otf_api_handle(k->h->api, &q, &k->resp);
}

static void slow_done(uv_work_t *w, int status) {
  conn *k = w->data;
  if(status != 0) {
    otf_http_resp_init(&k->resp);
    k->resp.status = 503;
  }
  k->state = 3; /* answer ready */
  MHD_resume_connection(k->c);
}

static void on_async(uv_async_t *a) {
  otf_httpd *h = a->data;
  pthread_mutex_lock(&h->mu);
  conn *k = h->head;
  h->head = h->tail = NULL;
  pthread_mutex_unlock(&h->mu);
  while(k) {
    conn *n = k->next;
    k->next = NULL;
    k->work.data = k;
    if(uv_queue_work(h->loop, &k->work, slow_work, slow_done) != 0) {
      otf_http_resp_init(&k->resp);
      k->resp.status = 503;
      k->state = 3;
      MHD_resume_connection(k->c);
    }
    k = n;
  }
}

/* ---- MHD callbacks ---- */

static void new_rid(otf_httpd *h, conn *k) {
  const char *given = MHD_lookup_connection_value(k->c, MHD_HEADER_KIND, "X-Request-Id");
  if(given) {
    size_t n = strlen(given);
    int ok = n > 0 && n < sizeof(k->rid);
    for(size_t i = 0; ok && i < n; i++)
      ok = (given[i] >= '0' && given[i] <= '9') || (given[i] >= 'a' && given[i] <= 'z') ||
           (given[i] >= 'A' && given[i] <= 'Z') || given[i] == '-' || given[i] == '_';
    if(ok) {
      memcpy(k->rid, given, n + 1);
      return;
    }
  }
  unsigned long long s = atomic_fetch_add(&h->seq, 1);
  snprintf(k->rid, sizeof(k->rid), "r%llx-%llx", h->boot, s);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  otf_httpd *h = cls;
  conn *k = *con_cls;
  if(!k) {
    k = calloc(1, sizeof(*k));
    if(!k)
      return MHD_NO;
    k->h = h;
    k->c = c;
    k->resp.fd = -1;
    clock_gettime(CLOCK_MONOTONIC, &k->t0);
    snprintf(k->method, sizeof(k->method), "%s", method);
    k->path = strdup(url);
    *con_cls = k;
    if(!k->path)
      return MHD_NO;
    new_rid(h, k);
    k->route = otf_api_route(method, url);
    if(strlen(url) > OTF_MAX_URL_BYTES)
      return send_problem(k, 414, OTF_E_TOO_LARGE, "the request target is too long");
    return MHD_YES;
  }
  if(k->state == 2)
    return MHD_YES; /* answered early (too large); discard the rest */
  if(*upload_size) {
    if(!k->too_large) {
      if(k->len + *upload_size > OTF_MAX_BODY_BYTES) {
        k->too_large = 1;
        free(k->body);
        k->body = NULL;
        k->len = k->cap = 0;
      } else {
        if(k->len + *upload_size + 1 > k->cap) {
          size_t nc = k->cap ? k->cap * 2 : 4096;
          while(nc < k->len + *upload_size + 1)
            nc *= 2;
          char *b = realloc(k->body, nc);
          if(!b)
            return MHD_NO;
          k->body = b;
          k->cap = nc;
        }
        memcpy(k->body + k->len, upload, *upload_size);
        k->len += *upload_size;
        k->body[k->len] = '\0';
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if(k->too_large) {
    char d[96];
    snprintf(d, sizeof(d), "the request body is over the %zu-byte limit", OTF_MAX_BODY_BYTES);
    return send_problem(k, 413, OTF_E_TOO_LARGE, d);
  }
  if(k->state == 3)
    return send_resp(k);
  if(otf_api_route_slow(k->route) && !strcmp(method, "POST")) {
    k->state = 1;
    MHD_suspend_connection(c);
    pthread_mutex_lock(&h->mu);
    if(h->tail)
      h->tail->next = k;
    else
      h->head = k;
    h->tail = k;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->async);
    return MHD_YES;
  }
  otf_http_req q;
  build_req(k, &q);
  otf_api_handle(h->api, &q, &k->resp);
  return send_resp(k);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)c;
  otf_httpd *h = cls;
  conn *k = *con_cls;
  if(!k)
    return;
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - k->t0.tv_sec) + (double)(t1.tv_nsec - k->t0.tv_nsec) / 1e9;
  int status = k->status ? k->status : 499;
  otf_metrics_http(h->api->metrics, k->route, k->method, status, secs);
  if(status >= 400 || strcmp(k->method, "GET") != 0 || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
    json_t *x = json_pack("{s:s, s:s, s:i, s:f}", "method", k->method, "path",
                          k->path ? k->path : "", "status", status, "seconds", secs);
    otf_log(status >= 500 ? "error" : "info", k->rid, NULL, x, "request");
    json_decref(x);
  }
  otf_http_resp_free(&k->resp);
  free(k->body);
  free(k->path);
  free(k);
  *con_cls = NULL;
}

otf_status otf_httpd_start(otf_httpd **out, const char *host, int port, size_t max_conns,
                           otf_api *api, uv_loop_t *loop, int *bound_port, otf_error *err) {
  *out = NULL;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
  struct addrinfo *ai = NULL;
  char ps[16];
  snprintf(ps, sizeof(ps), "%d", port);
  int g = getaddrinfo(host, ps, &hints, &ai);
  if(g != 0 || !ai)
    return OTF_FAIL(err, OTF_E_INVAL, "--listen", "cannot resolve listen address %s: %s", host,
                    gai_strerror(g));
  otf_httpd *h = otf_calloc(1, sizeof(*h));
  if(!h) {
    freeaddrinfo(ai);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  }
  h->api = api;
  h->loop = loop;
  h->boot = (unsigned long long)time(NULL) & 0xffffff;
  pthread_mutex_init(&h->mu, NULL);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                          MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conns,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
                          MHD_OPTION_END);
  freeaddrinfo(ai);
  if(!h->d) {
    pthread_mutex_destroy(&h->mu);
    otf_free(h);
    return OTF_FAIL(err, OTF_E_IO, "--listen",
                    "cannot listen on %s:%d (address in use, or not allowed)", host, port);
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  if(bound_port)
    *bound_port = di ? di->port : port;
  uv_async_init(loop, &h->async, on_async);
  h->async.data = h;
  *out = h;
  return OTF_OK;
}

void otf_httpd_stop(otf_httpd *h) {
  if(!h)
    return;
  if(h->d) {
    MHD_stop_daemon(h->d);
    h->d = NULL;
  }
  uv_close((uv_handle_t *)&h->async, NULL);
}

void otf_httpd_free(otf_httpd *h) {
  if(!h)
    return;
  pthread_mutex_destroy(&h->mu);
  otf_free(h);
}
