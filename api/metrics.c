/* Prometheus text exposition of the service's counters and histograms. */
#include "api/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static const char *const route_tmpl[OTF_ROUTE_COUNT] = {
#define OTF__ROUTE_STR(name, tmpl) tmpl,
    OTF_ROUTE_MAP(OTF__ROUTE_STR)
#undef OTF__ROUTE_STR
};

const char *otf_route_template(otf_route r) {
  return (unsigned)r < OTF_ROUTE_COUNT ? route_tmpl[r] : "other";
}

static const int codes[] = {200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405,
                            409, 413, 415, 416, 422, 429, 500, 502, 503, 504};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))
static const char *const methods[] = {"GET", "POST", "DELETE", "HEAD", "other"};
#define N_METHODS 5

static const double lat_b[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5};
#define N_LAT (sizeof(lat_b) / sizeof(lat_b[0]))
static const double job_b[] = {1, 5, 15, 60, 300, 900, 3600, 14400};
#define N_JOB (sizeof(job_b) / sizeof(job_b[0]))

static const char *const outcomes[] = {"succeeded", "failed", "cancelled"};
static const char *const stages[] = {"fetching", "loading",    "calibrating", "aligning",
                                     "writing",  "evaluating", "finetuning",  "uploading"};
#define N_OUT 3
#define N_STAGE 8

typedef struct hist {
  uint64_t bucket[16]; /* cumulative at render time */
  uint64_t count;
  double sum;
} hist;

struct otf_metrics {
  pthread_mutex_t mu;
  uint64_t http[OTF_ROUTE_COUNT][N_METHODS][N_CODES + 1]; /* last: other codes */
  hist lat[OTF_ROUTE_COUNT];
  hist job[N_OUT];
  double stage_sum[N_STAGE];
  uint64_t stage_n[N_STAGE];
  uint64_t bytes_read, bytes_written;
};

otf_metrics *otf_metrics_new(void) {
  otf_metrics *m = otf_calloc(1, sizeof(*m));
  if(m)
    pthread_mutex_init(&m->mu, NULL);
  return m;
}

void otf_metrics_free(otf_metrics *m) {
  if(!m)
    return;
  pthread_mutex_destroy(&m->mu);
  otf_free(m);
}

static void observe(hist *h, const double *b, size_t nb, double v) {
  size_t i = 0;
  while(i < nb && v > b[i])
    i++;
  h->bucket[i]++; /* i == nb: +Inf only */
  h->count++;
  h->sum += v;
}

static int index_of(const char *const *names, size_t n, const char *s) {
  for(size_t i = 0; i < n; i++)
    if(!strcmp(names[i], s))
      return (int)i;
  return -1;
}

void otf_metrics_http(otf_metrics *m, otf_route r, const char *method, int status,
                      double seconds) {
  if(!m || (unsigned)r >= OTF_ROUTE_COUNT)
    return;
  int mi = index_of(methods, N_METHODS - 1, method ? method : "");
  if(mi < 0)
    mi = N_METHODS - 1;
  size_t ci = 0;
  while(ci < N_CODES && codes[ci] != status)
    ci++;
  pthread_mutex_lock(&m->mu);
  m->http[r][mi][ci]++;
  observe(&m->lat[r], lat_b, N_LAT, seconds);
  pthread_mutex_unlock(&m->mu);
}

void otf_metrics_job(otf_metrics *m, const char *outcome, double seconds) {
  int i = m && outcome ? index_of(outcomes, N_OUT, outcome) : -1;
  if(i < 0)
    return;
  pthread_mutex_lock(&m->mu);
  observe(&m->job[i], job_b, N_JOB, seconds);
  pthread_mutex_unlock(&m->mu);
}

void otf_metrics_stage(otf_metrics *m, const char *stage, double seconds) {
  int i = m && stage ? index_of(stages, N_STAGE, stage) : -1;
  if(i < 0)
    return;
  pthread_mutex_lock(&m->mu);
  m->stage_sum[i] += seconds;
  m->stage_n[i]++;
  pthread_mutex_unlock(&m->mu);
}

void otf_metrics_bytes(otf_metrics *m, uint64_t read, uint64_t written) {
  if(!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->bytes_read += read;
  m->bytes_written += written;
  pthread_mutex_unlock(&m->mu);
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void put(sbuf *b, const char *fmt, ...) {
  for(;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->n;
    int k = b->p ? vsnprintf(b->p + b->n, room, fmt, ap) : -1;
    va_end(ap);
    if(b->p && k >= 0 && (size_t)k < room) {
      b->n += (size_t)k;
      return;
    }
    size_t nc = b->cap ? b->cap * 2 : 16384;
    char *q = realloc(b->p, nc);
    if(!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = nc;
  }
}

static void put_hist(sbuf *b, const char *name, const char *labels, const hist *h,
                     const double *bounds, size_t nb) {
  uint64_t cum = 0;
  for(size_t i = 0; i < nb; i++) {
    cum += h->bucket[i];
    put(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "", bounds[i],
        (unsigned long long)cum);
  }
  put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "",
      (unsigned long long)h->count);
  put(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
      (unsigned long long)h->count);
}

char *otf_metrics_render(otf_metrics *m, const char *const *gauge_lines, size_t n_lines) {
  sbuf b = {0};
  for(size_t i = 0; i < n_lines; i++)
    put(&b, "%s\n", gauge_lines[i]);
  pthread_mutex_lock(&m->mu);
  put(&b, "# HELP otfused_http_requests_total HTTP requests by route template, method and "
          "status.\n# TYPE otfused_http_requests_total counter\n");
  for(int r = 0; r < OTF_ROUTE_COUNT; r++)
    for(int mi = 0; mi < N_METHODS; mi++)
      for(size_t c = 0; c <= N_CODES; c++)
        if(m->http[r][mi][c]) {
          char code[8];
          snprintf(code, sizeof(code), c < N_CODES ? "%d" : "other", c < N_CODES ? codes[c] : 0);
          put(&b, "otfused_http_requests_total{route=\"%s\",method=\"%s\",code=\"%s\"} %llu\n",
              route_tmpl[r], methods[mi], code, (unsigned long long)m->http[r][mi][c]);
        }
  put(&b, "# HELP otfused_http_request_duration_seconds Time to answer a request.\n"
          "# TYPE otfused_http_request_duration_seconds histogram\n");
  for(int r = 0; r < OTF_ROUTE_COUNT; r++) {
    if(!m->lat[r].count)
      continue;
    char lab[96];
    snprintf(lab, sizeof(lab), "route=\"%s\"", route_tmpl[r]);
    put_hist(&b, "otfused_http_request_duration_seconds", lab, &m->lat[r], lat_b, N_LAT);
  }
  put(&b, "# HELP otfused_job_duration_seconds Wall time of finished jobs, by outcome.\n"
          "# TYPE otfused_job_duration_seconds histogram\n");
  for(int i = 0; i < N_OUT; i++) {
    char lab[64];
    snprintf(lab, sizeof(lab), "outcome=\"%s\"", outcomes[i]);
    put_hist(&b, "otfused_job_duration_seconds", lab, &m->job[i], job_b, N_JOB);
  }
  put(&b, "# HELP otfused_stage_duration_seconds Time spent in each job stage.\n"
          "# TYPE otfused_stage_duration_seconds summary\n");
  for(int i = 0; i < N_STAGE; i++)
    put(&b, "otfused_stage_duration_seconds_sum{stage=\"%s\"} %.6f\n"
            "otfused_stage_duration_seconds_count{stage=\"%s\"} %llu\n",
        stages[i], m->stage_sum[i], stages[i], (unsigned long long)m->stage_n[i]);
  put(&b, "# HELP otfused_storage_bytes_read_total Bytes of models and data read by jobs.\n"
          "# TYPE otfused_storage_bytes_read_total counter\n"
          "otfused_storage_bytes_read_total %llu\n"
          "# HELP otfused_storage_bytes_written_total Bytes of artifacts written by jobs.\n"
          "# TYPE otfused_storage_bytes_written_total counter\n"
          "otfused_storage_bytes_written_total %llu\n",
      (unsigned long long)m->bytes_read, (unsigned long long)m->bytes_written);
  pthread_mutex_unlock(&m->mu);
  if(b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}
