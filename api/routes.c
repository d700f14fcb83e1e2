/* The REST API: see api.h. One function per route; every error is a
 * problem+json body with the request id and, for bad fields, a JSON
 * pointer. */
#include "api/api.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/dashboard.h"
#include "api/jobspec.h"
#include "api/openapi.h"
#include "common/alloc.h"
#include "common/limits.h"
#include "fusion/fsutil.h"
#include "fusion/model.h"
#include "storage/digest.h"

/* ---- responses ---- */

void otf_http_resp_init(otf_http_resp *r) {
  memset(r, 0, sizeof(*r));
  r->fd = -1;
  r->status = 500;
  r->content_type = "application/json";
}

void otf_http_resp_free(otf_http_resp *r) {
  free(r->body);
  for(size_t i = 0; i < r->n_headers; i++) {
    free(r->hname[i]);
    free(r->hvalue[i]);
  }
  if(r->fd >= 0)
    close(r->fd);
  otf_http_resp_init(r);
}

void otf_http_resp_header(otf_http_resp *r, const char *name, const char *value) {
  if(r->n_headers >= OTF_HTTP_MAX_HEADERS)
    return;
  r->hname[r->n_headers] = strdup(name);
  r->hvalue[r->n_headers] = strdup(value);
  if(r->hname[r->n_headers] && r->hvalue[r->n_headers])
    r->n_headers++;
  else {
    free(r->hname[r->n_headers]);
    free(r->hvalue[r->n_headers]);
  }
}

static void send_json(otf_http_resp *r, int status, json_t *body) {
  r->status = status;
  r->content_type = "application/json";
  r->body = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  r->body_len = r->body ? strlen(r->body) : 0;
  json_decref(body);
}

static const char *http_title(int status) {
  switch(status) {
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return status >= 500 ? "Internal Server Error" : "Error";
  }
}

json_t *otf_api_problem(otf_status code, const char *detail, const char *pointer,
                        const char *instance, const char *request_id) {
  int status = otf_status_http(code);
  if(status < 400)
    status = 500;
  char type[96];
  snprintf(type, sizeof(type), "urn:otfuse:problem:%s", otf_status_name(code));
  for(char *c = type + 19; *c; c++)
    *c = (*c == '_') ? '-' : (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
  json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", http_title(status),
                        "status", status, "detail", detail && *detail ? detail
                                                                      : otf_strerror(code));
  if(!p)
    return NULL;
  if(instance)
    json_object_set_new(p, "instance", json_string(instance));
  if(request_id)
    json_object_set_new(p, "request_id", json_string(request_id));
  if(pointer && *pointer)
    json_object_set_new(p, "pointer", json_string(pointer));
  return p;
}

/* A problem response with an explicit HTTP status. */
static void problem_status(otf_http_resp *r, const otf_http_req *q, int status,
                           otf_status code, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void problem_status(otf_http_resp *r, const otf_http_req *q, int status,
                           otf_status code, const char *pointer, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  otf_utf8_fix(detail);
  json_t *p = otf_api_problem(code, detail, pointer, q->path, q->request_id);
  if(p) {
    json_object_set_new(p, "status", json_integer(status));
    json_object_set_new(p, "title", json_string(http_title(status)));
  }
  send_json(r, status, p);
  r->content_type = "application/problem+json";
}

/* A problem response from an otf_error. */
static void problem_err(otf_http_resp *r, const otf_http_req *q, const otf_error *e) {
  int status = otf_status_http(e->code);
  problem_status(r, q, status < 400 ? 500 : status, e->code, e->pointer, "%s", e->message);
}

/* ---- small helpers ---- */

static void rfc3339(int64_t ms, char out[32]) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static json_t *time_or_null(const json_t *row, const char *key) {
  int64_t ms = json_integer_value(json_object_get(row, key));
  if(ms <= 0)
    return json_null();
  char buf[32];
  rfc3339(ms, buf);
  return json_string(buf);
}

int otf_api_job_dir(const otf_api *api, const char *id, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s/jobs/%s/out", api->data_dir, id);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Job ids as the store makes them: 'j' + 20 hex digits. Anything else is
 * not found without touching the store. */
static int id_ok(const char *id, size_t len) {
  if(len < 2 || len >= OTF_JOB_ID_MAX || id[0] != 'j')
    return 0;
  for(size_t i = 1; i < len; i++)
    if(!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return 1;
}

static int parse_u64(const char *s, uint64_t *out) {
  if(!s || !*s)
    return -1;
  uint64_t v = 0;
  for(const char *c = s; *c; c++) {
    if(*c < '0' || *c > '9' || v > (UINT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (uint64_t)(*c - '0');
  }
  *out = v;
  return 0;
}

json_t *otf_api_job_json(const json_t *row) {
  const char *id = json_string_value(json_object_get(row, "id"));
  const char *status = json_string_value(json_object_get(row, "status"));
  json_t *spec = json_object_get(row, "spec");
  int layer = (int)json_integer_value(json_object_get(row, "layer"));
  int layers = (int)json_integer_value(json_object_get(row, "layers"));
  double eta = json_real_value(json_object_get(row, "eta"));
  char self[96], href[160];
  snprintf(self, sizeof(self), "/v1/jobs/%s", id ? id : "");
  json_t *arts = json_array();
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(row, "artifacts"), i, a) {
    snprintf(href, sizeof(href), "%s/artifacts/%s", self,
             json_string_value(json_object_get(a, "name")));
    json_t *c = json_deep_copy(a);
    json_object_set_new(c, "href", json_string(href));
    json_array_append_new(arts, c);
  }
  json_t *meta = json_object_get(spec, "metadata");
  char ev[128], ar[128], ca[128];
  snprintf(ev, sizeof(ev), "%s/events", self);
  snprintf(ar, sizeof(ar), "%s/artifacts", self);
  snprintf(ca, sizeof(ca), "%s/cancel", self);
  json_t *err = json_object_get(row, "error");
  json_t *sum = json_object_get(row, "summary");
  return json_pack(
      "{s:s?, s:s?, s:O, s:{s:f, s:o, s:o, s:o}, s:o, s:o, s:o, s:o, s:O, s:O, s:O, s:O, "
      "s:o, s:O, s:{s:s, s:s, s:s, s:s}}",
      "id", id, "status", status, "stage", json_object_get(row, "stage"), "progress",
      "fraction", json_real_value(json_object_get(row, "fraction")), "layer",
      layer >= 0 ? json_integer(layer) : json_null(), "layers",
      layers > 0 ? json_integer(layers) : json_null(), "eta_seconds",
      eta >= 0 ? json_real(eta) : json_null(), "created_at", time_or_null(row, "created_at"),
      "started_at", time_or_null(row, "started_at"), "finished_at",
      time_or_null(row, "finished_at"), "updated_at", time_or_null(row, "updated_at"),
      "attempt", json_object_get(row, "attempt"), "spec", spec ? spec : json_null(),
      "metadata", meta ? meta : json_null(), "error", err ? err : json_null(), "artifacts",
      arts, "summary", sum ? sum : json_null(), "links", "self", self, "events", ev,
      "artifacts", ar, "cancel", ca);
}

/* ---- routing ---- */

/* Splits "/v1/jobs/ID[/rest]": id into idbuf, *rest the remainder. */
static int job_path(const char *path, char *idbuf, const char **rest) {
  static const char pre[] = "/v1/jobs/";
  if(strncmp(path, pre, sizeof(pre) - 1) != 0)
    return -1;
  const char *id = path + sizeof(pre) - 1;
  const char *slash = strchr(id, '/');
  size_t len = slash ? (size_t)(slash - id) : strlen(id);
  if(!id_ok(id, len))
    return -1;
  memcpy(idbuf, id, len);
  idbuf[len] = '\0';
  *rest = slash ? slash : "";
  return 0;
}

otf_route otf_api_route(const char *method, const char *path) {
  (void)method;
  if(!strcmp(path, "/") || !strcmp(path, "/index.html"))
    return OTF_ROUTE_ROOT;
  if(!strncmp(path, "/ui/", 4))
    return OTF_ROUTE_UI;
  static const struct { const char *p; otf_route r; } fixed[] = {
      {"/livez", OTF_ROUTE_LIVEZ},         {"/readyz", OTF_ROUTE_READYZ},
      {"/metrics", OTF_ROUTE_METRICS},     {"/openapi.json", OTF_ROUTE_OPENAPI},
      {"/v1/version", OTF_ROUTE_VERSION},  {"/v1/jobs", OTF_ROUTE_JOBS},
      {"/v1/jobs:validate", OTF_ROUTE_VALIDATE}};
  for(size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
    if(!strcmp(path, fixed[i].p))
      return fixed[i].r;
  char id[OTF_JOB_ID_MAX];
  const char *rest;
  if(job_path(path, id, &rest) != 0)
    return OTF_ROUTE_OTHER;
  if(!*rest)
    return OTF_ROUTE_JOB;
  if(!strcmp(rest, "/cancel"))
    return OTF_ROUTE_CANCEL;
  if(!strcmp(rest, "/events"))
    return OTF_ROUTE_EVENTS;
  if(!strcmp(rest, "/artifacts"))
    return OTF_ROUTE_ARTIFACTS;
  if(!strncmp(rest, "/artifacts/", 11) && rest[11] && !strchr(rest + 11, '/'))
    return OTF_ROUTE_ARTIFACT;
  return OTF_ROUTE_OTHER;
}

int otf_api_route_slow(otf_route r) { return r == OTF_ROUTE_VALIDATE; }

/* Constant-time comparison of a presented token against each configured
 * one: the time taken does not depend on where the bytes differ. */
static int token_ok(const otf_api *api, const char *auth) {
  if(!auth || strncmp(auth, "Bearer ", 7) != 0)
    return 0;
  const char *t = auth + 7;
  size_t tl = strlen(t);
  int ok = 0;
  for(size_t k = 0; k < api->n_tokens; k++) {
    const char *want = api->tokens[k];
    size_t wl = strlen(want);
    unsigned diff = (unsigned)(tl ^ wl);
    for(size_t i = 0; i < wl; i++)
      diff |= (unsigned char)want[i] ^ (unsigned char)(i < tl ? t[i] : 0);
    ok |= diff == 0;
  }
  return ok;
}

static int public_route(otf_route r) {
  return r == OTF_ROUTE_ROOT || r == OTF_ROUTE_UI || r == OTF_ROUTE_LIVEZ ||
         r == OTF_ROUTE_READYZ || r == OTF_ROUTE_OPENAPI || r == OTF_ROUTE_VERSION ||
         r == OTF_ROUTE_METRICS;
}

/* ---- simple routes ---- */

static void get_readyz(otf_api *api, const otf_http_req *q, otf_http_resp *r) {
  if(api->draining) {
    problem_status(r, q, 503, OTF_E_BUSY, NULL, "the server is shutting down");
    return;
  }
  if(access(api->data_dir, W_OK) != 0) {
    problem_status(r, q, 503, OTF_E_IO, NULL, "the data dir %s is not writable: %s",
                   api->data_dir, strerror(errno));
    return;
  }
  send_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

static void get_metrics(otf_api *api, const otf_http_req *q, otf_http_resp *r) {
  int64_t n[OTF_JOB_STATUS_COUNT];
  otf_error e;
  if(otf_jobstore_counts(api->store, n, &e) != OTF_OK) {
    problem_err(r, q, &e);
    return;
  }
  char lines[OTF_JOB_STATUS_COUNT + 6][128];
  const char *ptr[OTF_JOB_STATUS_COUNT + 6];
  size_t k = 0;
  snprintf(lines[k++], 128, "# HELP otfused_jobs Jobs in the store by status.");
  snprintf(lines[k++], 128, "# TYPE otfused_jobs gauge");
  for(int i = 0; i < OTF_JOB_STATUS_COUNT; i++)
    snprintf(lines[k++], 128, "otfused_jobs{status=\"%s\"} %" PRId64,
             otf_job_status_name((otf_job_status)i), n[i]);
  snprintf(lines[k++], 128, "# HELP otfused_queue_depth Jobs waiting for a worker.");
  snprintf(lines[k++], 128, "# TYPE otfused_queue_depth gauge");
  snprintf(lines[k++], 128, "otfused_queue_depth %" PRId64, n[OTF_JOB_QUEUED]);
  snprintf(lines[k++], 128, "otfused_draining %d", api->draining ? 1 : 0);
  for(size_t i = 0; i < k; i++)
    ptr[i] = lines[i];
  char *text = otf_metrics_render(api->metrics, ptr, k);
  if(!text) {
    problem_status(r, q, 503, OTF_E_NOMEM, NULL, "no memory for the metrics");
    return;
  }
  r->status = 200;
  r->content_type = "text/plain; version=0.0.4; charset=utf-8";
  r->body = text;
  r->body_len = strlen(text);
}

/* ---- jobs ---- */

static void serve_artifact(otf_api *api, const otf_http_req *q, otf_http_resp *r,
                           const char *id, const char *name);

static int is_json_type(const char *ct) {
  if(!ct)
    return 1; /* curl -d without -H: accept, the body is parsed strictly anyway */
  return !strncmp(ct, "application/json", 16) || !strncmp(ct, "application/", 12);
}

/* Parses the spec and checks every URI against the storage policy. */
static int spec_checked(otf_api *api, const otf_http_req *q, otf_http_resp *r,
                        otf_jobspec *spec) {
  json_t *errors = NULL;
  otf_error e;
  otf_error_clear(&e);
  if(otf_jobspec_parse(spec, q->body ? q->body : "", q->body_len, api->max_models, &errors,
                       &e) != OTF_OK) {
    int status = e.code == OTF_E_TOO_LARGE ? 413 : e.code == OTF_E_NOMEM ? 503
                 : e.code == OTF_E_FORMAT ? 400 : 422;
    problem_status(r, q, status, e.code, e.pointer, "%s", e.message);
    if(errors) {
      json_t *p = json_loadb(r->body, r->body_len, 0, NULL);
      if(p) {
        json_object_set(p, "errors", errors);
        free(r->body);
        r->body = json_dumps(p, JSON_COMPACT);
        r->body_len = r->body ? strlen(r->body) : 0;
        json_decref(p);
      }
      json_decref(errors);
    }
    return -1;
  }
  for(size_t i = 0; i < spec->n_models; i++) {
    if(otf_storage_check(api->storage, spec->models[i], 0, &e) != OTF_OK) {
      snprintf(e.pointer, sizeof(e.pointer), "/models/%zu/uri", i);
      problem_status(r, q, e.code == OTF_E_ACCESS ? 403 : 422, e.code, e.pointer, "%s",
                     e.message);
      return -1;
    }
  }
  if(spec->calibration_uri &&
     otf_storage_check(api->storage, spec->calibration_uri, 0, &e) != OTF_OK) {
    problem_status(r, q, e.code == OTF_E_ACCESS ? 403 : 422, e.code, "/calibration/uri", "%s",
                   e.message);
    return -1;
  }
  if(spec->output_uri && otf_storage_check(api->storage, spec->output_uri, 1, &e) != OTF_OK) {
    problem_status(r, q, e.code == OTF_E_ACCESS ? 403 : 422, e.code, "/output/uri", "%s",
                   e.message);
    return -1;
  }
  return 0;
}

static void respond_job(otf_api *api, const otf_http_req *q, otf_http_resp *r,
                        const char *id, int status) {
  json_t *row = NULL;
  otf_error e;
  if(otf_jobstore_get(api->store, id, &row, &e) != OTF_OK) {
    problem_err(r, q, &e);
    return;
  }
  send_json(r, status, otf_api_job_json(row));
  json_decref(row);
}

static void post_job(otf_api *api, const otf_http_req *q, otf_http_resp *r) {
  if(api->draining) {
    problem_status(r, q, 503, OTF_E_BUSY, NULL, "the server is shutting down; retry later");
    otf_http_resp_header(r, "Retry-After", "30");
    return;
  }
  if(!is_json_type(q->header(q->conn, "Content-Type"))) {
    problem_status(r, q, 415, OTF_E_UNSUPPORTED, NULL, "the job spec must be application/json");
    return;
  }
  const char *key = q->header(q->conn, "Idempotency-Key");
  char hash[OTF_SHA256_HEX];
  otf_error e;
  if(key) {
    size_t kl = strlen(key);
    int ok = kl > 0 && kl <= OTF_MAX_IDEM_KEY;
    for(size_t i = 0; ok && i < kl; i++)
      ok = key[i] > 32 && key[i] < 127;
    if(!ok) {
      problem_status(r, q, 400, OTF_E_INVAL, NULL,
                     "Idempotency-Key must be 1 to %d visible ASCII characters", OTF_MAX_IDEM_KEY);
      return;
    }
    otf__sha256_hex(q->body ? q->body : "", q->body_len, hash);
    char existing[OTF_JOB_ID_MAX];
    otf_status rc = otf_jobstore_idem_begin(api->store, key, hash, existing, &e);
    if(rc != OTF_OK) {
      problem_status(r, q, rc == OTF_E_FORMAT ? 422 : rc == OTF_E_CONFLICT ? 409 : 500, rc,
                     NULL, "%s", e.message);
      return;
    }
    if(existing[0]) {
      respond_job(api, q, r, existing, 200);
      otf_http_resp_header(r, "Idempotent-Replayed", "true");
      char loc[80];
      snprintf(loc, sizeof(loc), "/v1/jobs/%s", existing);
      otf_http_resp_header(r, "Location", loc);
      return;
    }
  }
  otf_jobspec spec;
  if(spec_checked(api, q, r, &spec) != 0) {
    otf_jobspec_free(&spec);
    if(key)
      otf_jobstore_idem_drop(api->store, key);
    return;
  }
  char *text = json_dumps(spec.spec, JSON_COMPACT);
  char id[OTF_JOB_ID_MAX];
  otf_status rc = text ? otf_jobstore_create(api->store, text, key, api->max_queued, id, &e)
                       : OTF_FAIL(&e, OTF_E_NOMEM, NULL, "no memory for the job");
  free(text);
  otf_jobspec_free(&spec);
  if(rc != OTF_OK) {
    if(key)
      otf_jobstore_idem_drop(api->store, key);
    problem_err(r, q, &e);
    if(rc == OTF_E_BUSY)
      otf_http_resp_header(r, "Retry-After", "10");
    return;
  }
  if(api->hooks.job_queued)
    api->hooks.job_queued(api->hooks.ctx);
  respond_job(api, q, r, id, 201);
  char loc[80];
  snprintf(loc, sizeof(loc), "/v1/jobs/%s", id);
  otf_http_resp_header(r, "Location", loc);
}

static void list_jobs(otf_api *api, const otf_http_req *q, otf_http_resp *r) {
  unsigned mask = 0;
  const char *st = q->query(q->conn, "status");
  if(st && *st) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", st);
    char *save = NULL;
    for(char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      otf_job_status s;
      if(otf_job_status_parse(&s, t) != 0) {
        problem_status(r, q, 400, OTF_E_INVAL, "status",
                       "unknown status '%.40s' (queued, running, cancelling, succeeded, "
                       "failed, cancelled)", t);
        return;
      }
      mask |= 1u << s;
    }
  }
  uint64_t limit = 50, after = 0;
  const char *ls = q->query(q->conn, "limit"), *as = q->query(q->conn, "after");
  if(ls && (parse_u64(ls, &limit) != 0 || limit < 1 || limit > OTF_MAX_PAGE)) {
    problem_status(r, q, 400, OTF_E_INVAL, "limit", "limit must be 1 to %d", OTF_MAX_PAGE);
    return;
  }
  if(as && *as && (parse_u64(as, &after) != 0 || after > INT64_MAX)) {
    problem_status(r, q, 400, OTF_E_INVAL, "after",
                   "after must be the 'next' cursor of a previous page");
    return;
  }
  json_t *rows = NULL;
  int64_t next = 0;
  otf_error e;
  if(otf_jobstore_list(api->store, mask, (int64_t)after, (size_t)limit, &rows, &next, &e) !=
     OTF_OK) {
    problem_err(r, q, &e);
    return;
  }
  json_t *items = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) json_array_append_new(items, otf_api_job_json(row));
  json_decref(rows);
  char cur[32];
  snprintf(cur, sizeof(cur), "%" PRId64, next);
  send_json(r, 200, json_pack("{s:o, s:o}", "items", items, "next",
                              next ? json_string(cur) : json_null()));
}

/* Removes data_dir/jobs/ID: its out/ folder (a fused model folder has no
 * subfolders), then the job folder. */
static void remove_job_files(const otf_api *api, const char *id) {
  char dir[1024];
  if(otf_api_job_dir(api, id, dir, sizeof(dir)) != 0)
    return;
  otf_fs_remove_flat(dir);
  char *slash = strrchr(dir, '/');
  if(slash) {
    *slash = '\0';
    rmdir(dir);
  }
}

static void job_route(otf_api *api, otf_route rt, const otf_http_req *q, otf_http_resp *r) {
  char id[OTF_JOB_ID_MAX];
  const char *rest;
  if(job_path(q->path, id, &rest) != 0) {
    problem_status(r, q, 404, OTF_E_NOT_FOUND, NULL, "no such resource");
    return;
  }
  otf_error e;
  const char *m = q->method;
  if(rt == OTF_ROUTE_JOB && !strcmp(m, "GET")) {
    respond_job(api, q, r, id, 200);
  } else if(rt == OTF_ROUTE_JOB && !strcmp(m, "DELETE")) {
    if(otf_jobstore_delete(api->store, id, &e) != OTF_OK) {
      problem_err(r, q, &e);
      return;
    }
    remove_job_files(api, id);
    r->status = 204;
    r->content_type = NULL;
  } else if(rt == OTF_ROUTE_CANCEL && !strcmp(m, "POST")) {
    int final = 0;
    if(otf_jobstore_cancel(api->store, id, &final, &e) != OTF_OK) {
      problem_err(r, q, &e);
      return;
    }
    if(!final && api->hooks.job_cancel)
      api->hooks.job_cancel(api->hooks.ctx, id);
    respond_job(api, q, r, id, 202);
  } else if(rt == OTF_ROUTE_EVENTS && !strcmp(m, "GET")) {
    uint64_t after = 0, limit = 100;
    const char *as = q->query(q->conn, "after"), *ls = q->query(q->conn, "limit");
    if((as && parse_u64(as, &after) != 0) || after > INT64_MAX) {
      problem_status(r, q, 400, OTF_E_INVAL, "after", "after must be an event seq");
      return;
    }
    if(ls && (parse_u64(ls, &limit) != 0 || limit < 1 || limit > OTF_MAX_PAGE)) {
      problem_status(r, q, 400, OTF_E_INVAL, "limit", "limit must be 1 to %d", OTF_MAX_PAGE);
      return;
    }
    json_t *rows = NULL;
    if(otf_jobstore_events(api->store, id, (int64_t)after, (size_t)limit, &rows, &e) != OTF_OK) {
      problem_err(r, q, &e);
      return;
    }
    size_t i;
    json_t *ev;
    int64_t last = (int64_t)after;
    json_array_foreach(rows, i, ev) {
      last = json_integer_value(json_object_get(ev, "seq"));
      json_object_set_new(ev, "time", time_or_null(ev, "time"));
    }
    send_json(r, 200, json_pack("{s:o, s:I}", "items", rows, "next_after", (json_int_t)last));
  } else if(rt == OTF_ROUTE_ARTIFACTS && !strcmp(m, "GET")) {
    json_t *row = NULL;
    if(otf_jobstore_get(api->store, id, &row, &e) != OTF_OK) {
      problem_err(r, q, &e);
      return;
    }
    json_t *job = otf_api_job_json(row);
    json_decref(row);
    send_json(r, 200, json_pack("{s:O}", "items", json_object_get(job, "artifacts")));
    json_decref(job);
  } else if(rt == OTF_ROUTE_ARTIFACT && (!strcmp(m, "GET") || !strcmp(m, "HEAD"))) {
    serve_artifact(api, q, r, id, rest + 11);
  } else {
    problem_status(r, q, 405, OTF_E_UNSUPPORTED, NULL, "%s is not allowed on %s", m, q->path);
  }
}

/* ---- artifacts: strong ETag (sha256), If-None-Match, single Range ---- */

static int etag_matches(const char *inm, const char *etag) {
  if(!inm)
    return 0;
  if(!strcmp(inm, "*"))
    return 1;
  return strstr(inm, etag) != NULL; /* a list of quoted tags; ours is 64 hex */
}

static void serve_artifact(otf_api *api, const otf_http_req *q, otf_http_resp *r,
                           const char *id, const char *name) {
  json_t *row = NULL;
  otf_error e;
  if(otf_jobstore_get(api->store, id, &row, &e) != OTF_OK) {
    problem_err(r, q, &e);
    return;
  }
  const json_t *hit = NULL;
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(row, "artifacts"), i, a) if(
      !strcmp(json_string_value(json_object_get(a, "name")), name)) hit = a;
  if(!hit) {
    json_decref(row);
    problem_status(r, q, 404, OTF_E_NOT_FOUND, NULL, "job %s has no artifact '%.100s'", id,
                   name);
    return;
  }
  char etag[OTF_SHA256_HEX + 2];
  snprintf(etag, sizeof(etag), "\"%s\"", json_string_value(json_object_get(hit, "sha256")));
  uint64_t size = (uint64_t)json_integer_value(json_object_get(hit, "size"));
  json_decref(row);
  char path[1200], dir[1024];
  if(otf_api_job_dir(api, id, dir, sizeof(dir)) != 0 ||
     snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
    problem_status(r, q, 404, OTF_E_NOT_FOUND, NULL, "artifact path too long");
    return;
  }
  otf_http_resp_header(r, "ETag", etag);
  otf_http_resp_header(r, "Accept-Ranges", "bytes");
  if(etag_matches(q->header(q->conn, "If-None-Match"), etag)) {
    r->status = 304;
    r->content_type = NULL;
    return;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat stt;
  if(fd < 0 || fstat(fd, &stt) != 0 || (uint64_t)stt.st_size != size) {
    if(fd >= 0)
      close(fd);
    problem_status(r, q, 404, OTF_E_NOT_FOUND, NULL,
                   "artifact '%.100s' of job %s is not in the data dir (written to the "
                   "output URI only, or removed)", name, id);
    return;
  }
  r->fd = fd;
  r->offset = 0;
  r->length = size;
  r->status = 200;
  r->content_type = "application/octet-stream";
  if(strlen(name) > 5 && !strcmp(name + strlen(name) - 5, ".json"))
    r->content_type = "application/json";
  const char *range = q->header(q->conn, "Range");
  const char *ifr = q->header(q->conn, "If-Range");
  if(!range || (ifr && strcmp(ifr, etag) != 0))
    return;
  /* bytes=a-b | bytes=a- | bytes=-n; several ranges are answered whole */
  if(strncmp(range, "bytes=", 6) != 0 || strchr(range, ','))
    return;
  const char *spec = range + 6;
  const char *dash = strchr(spec, '-');
  if(!dash)
    return;
  char first[24] = "", last[24] = "";
  size_t fl = (size_t)(dash - spec);
  if(fl >= sizeof(first) || strlen(dash + 1) >= sizeof(last))
    return;
  memcpy(first, spec, fl);
  first[fl] = '\0';
  snprintf(last, sizeof(last), "%s", dash + 1);
  uint64_t a0 = 0, a1 = 0;
  int ok;
  if(!*first) { /* suffix */
    ok = parse_u64(last, &a1) == 0 && a1 > 0;
    if(ok) {
      a0 = a1 >= size ? 0 : size - a1;
      a1 = size ? size - 1 : 0;
      ok = size > 0;
    }
  } else {
    ok = parse_u64(first, &a0) == 0 && (!*last || parse_u64(last, &a1) == 0);
    if(ok && !*last)
      a1 = size ? size - 1 : 0;
    if(ok && a1 >= size)
      a1 = size ? size - 1 : 0;
    if(ok && *last && a1 < a0)
      return; /* syntactically invalid: ignore the header */
    ok = ok && a0 < size;
  }
  char cr[96];
  if(!ok) {
    close(fd);
    r->fd = -1;
    snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
    problem_status(r, q, 416, OTF_E_INVAL, NULL, "range '%.60s' is outside the %" PRIu64
                   "-byte artifact", range, size);
    otf_http_resp_header(r, "Content-Range", cr);
    return;
  }
  snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, a0, a1, size);
  otf_http_resp_header(r, "Content-Range", cr);
  r->status = 206;
  r->offset = a0;
  r->length = a1 - a0 + 1;
}

/* ---- validate: a dry run that reads configs and tensor headers ---- */

static void post_validate(otf_api *api, const otf_http_req *q, otf_http_resp *r) {
  otf_jobspec spec;
  if(spec_checked(api, q, r, &spec) != 0) {
    otf_jobspec_free(&spec);
    return;
  }
  json_t *models = json_array(), *warnings = json_array();
  uint64_t total = 0, largest = 0;
  const otf_model_config *anchor_cfg = NULL;
  otf_model *ms[OTF_MAX_PARENTS] = {0};
  int failed = 0;
  int anchor = spec.anchor_auto ? 0 : spec.opts.anchor;
  for(size_t i = 0; i < spec.n_models && !failed; i++) {
    otf_error e;
    otf_error_clear(&e);
    char dir[2048];
    otf_status rc = otf_storage_fetch_model(api->storage, spec.models[i], dir, sizeof(dir),
                                            NULL, NULL, &e);
    if(rc == OTF_OK) {
      rc = otf_model_open(&ms[i], dir, 0, &e);
      otf_storage_release(api->storage, dir);
    }
    if(rc != OTF_OK) {
      char ptr[64];
      snprintf(ptr, sizeof(ptr), "/models/%zu/uri", i);
      problem_status(r, q, 422, rc, ptr, "%s", e.message);
      failed = 1;
      break;
    }
    const otf_model_config *c = otf_model_cfg(ms[i]);
    const otf_ckpt *ck = otf_model_ckpt(ms[i]);
    uint64_t params = 0;
    for(size_t t = 0; t < otf_ckpt_count(ck); t++)
      params += otf_ckpt_at(ck, t)->numel;
    total += params;
    largest = params > largest ? params : largest;
    json_array_append_new(models, json_pack("{s:s, s:s, s:i, s:i, s:i, s:I}", "uri",
                                            spec.models[i], "architecture", c->architecture,
                                            "hidden_size", c->hidden_size, "layers",
                                            c->num_layers, "heads", c->num_heads,
                                            "parameters", (json_int_t)params));
  }
  if(!failed) {
    anchor_cfg = otf_model_cfg(ms[anchor]);
    for(size_t i = 0; i < spec.n_models; i++) {
      const otf_model_config *c = otf_model_cfg(ms[i]);
      char ptr[64];
      snprintf(ptr, sizeof(ptr), "/models/%zu/uri", i);
      if(strcmp(c->architecture, anchor_cfg->architecture) || c->num_layers != anchor_cfg->num_layers ||
         c->vocab_size != anchor_cfg->vocab_size || c->num_labels != anchor_cfg->num_labels) {
        problem_status(r, q, 422, OTF_E_INVAL, ptr,
                       "model %zu (%s, %d layers) cannot be fused with the anchor (%s, %d "
                       "layers): architecture, depth, vocabulary and classes must match",
                       i, c->architecture, c->num_layers, anchor_cfg->architecture,
                       anchor_cfg->num_layers);
        failed = 1;
        break;
      }
      if(c->hidden_size != anchor_cfg->hidden_size ||
         c->intermediate_size != anchor_cfg->intermediate_size)
        json_array_append_new(warnings,
                              json_sprintf("model %zu is %d wide, the anchor %d: heterogeneous "
                                           "fusion into the anchor's shape", i,
                                           c->hidden_size, anchor_cfg->hidden_size));
    }
  }
  if(!failed) {
    /* Rough model, from measurements on 2 cores (README, Benchmarks):
     * weights mode aligns ~10 M parameters per second per parent, the
     * activations mode runs a forward pass per calibration sample; memory
     * is the output plus one layer of maps and the mapped parents' pages. */
    double secs = 0.5 + (double)total / 1.0e7;
    if(spec.opts.align == OTF_ALIGN_ACTIVATIONS)
      secs += (double)(spec.opts.samples ? spec.opts.samples : 200) * (double)total * 4e-9;
    uint64_t peak = largest * 4 * 2 + ((uint64_t)64 << 20);
    json_t *out = json_pack("{s:b, s:o, s:I, s:{s:f, s:I}, s:o, s:O}", "valid", 1, "models",
                            models, "parameters", (json_int_t)total, "estimate", "seconds", secs,
                            "peak_bytes", (json_int_t)peak, "warnings", warnings, "spec",
                            spec.spec);
    models = warnings = NULL;
    send_json(r, 200, out);
  }
  json_decref(models);
  json_decref(warnings);
  for(size_t i = 0; i < spec.n_models; i++)
    otf_model_close(ms[i]);
  otf_jobspec_free(&spec);
}

/* ---- entry ---- */

void otf_api_handle(otf_api *api, const otf_http_req *q, otf_http_resp *r) {
  otf_http_resp_init(r);
  otf_route rt = otf_api_route(q->method, q->path);
  const char *m = q->method;
  if(!public_route(rt) && api->n_tokens &&
     !token_ok(api, q->header(q->conn, "Authorization"))) {
    problem_status(r, q, 401, OTF_E_UNAUTHORIZED, NULL,
                   "a valid bearer token is required (Authorization: Bearer TOKEN)");
    otf_http_resp_header(r, "WWW-Authenticate", "Bearer realm=\"otfused\"");
    return;
  }
  int get = !strcmp(m, "GET") || !strcmp(m, "HEAD");
  switch(rt) {
  case OTF_ROUTE_ROOT:
  case OTF_ROUTE_UI: {
    const unsigned char *data;
    size_t len;
    const char *ct;
    if(!get)
      break;
    if(otf_dashboard_asset(q->path, &data, &len, &ct) != 0) {
      problem_status(r, q, 404, OTF_E_NOT_FOUND, NULL, "no such asset");
      return;
    }
    r->status = 200;
    r->static_body = data;
    r->body_len = len;
    r->content_type = ct;
    otf_http_resp_header(r, "Cache-Control", "no-cache");
    otf_http_resp_header(r, "Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    return;
  }
  case OTF_ROUTE_LIVEZ:
    if(!get)
      break;
    send_json(r, 200, json_pack("{s:s}", "status", "ok"));
    return;
  case OTF_ROUTE_READYZ:
    if(!get)
      break;
    get_readyz(api, q, r);
    return;
  case OTF_ROUTE_METRICS:
    if(!get)
      break;
    get_metrics(api, q, r);
    return;
  case OTF_ROUTE_OPENAPI: {
    if(!get)
      break;
    size_t len;
    const char *doc = otf_openapi_json(&len);
    r->status = 200;
    r->static_body = (const unsigned char *)doc;
    r->body_len = len;
    r->content_type = "application/json";
    return;
  }
  case OTF_ROUTE_VERSION:
    if(!get)
      break;
    send_json(r, 200, json_pack("{s:s, s:s, s:s}", "name", "otfused", "version", api->version,
                                "api", "v1"));
    return;
  case OTF_ROUTE_JOBS:
    if(!strcmp(m, "POST"))
      post_job(api, q, r);
    else if(get)
      list_jobs(api, q, r);
    else
      break;
    return;
  case OTF_ROUTE_VALIDATE:
    if(strcmp(m, "POST"))
      break;
    if(!is_json_type(q->header(q->conn, "Content-Type"))) {
      problem_status(r, q, 415, OTF_E_UNSUPPORTED, NULL, "the job spec must be application/json");
      return;
    }
    post_validate(api, q, r);
    return;
  case OTF_ROUTE_JOB:
  case OTF_ROUTE_CANCEL:
  case OTF_ROUTE_EVENTS:
  case OTF_ROUTE_ARTIFACTS:
  case OTF_ROUTE_ARTIFACT:
    job_route(api, rt, q, r);
    return;
  default:
    problem_status(r, q, 404, OTF_E_NOT_FOUND, NULL, "no route for %s %s", m, q->path);
    return;
  }
  problem_status(r, q, 405, OTF_E_UNSUPPORTED, NULL, "%s is not allowed on %s", m, q->path);
}
