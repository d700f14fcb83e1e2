/* Service metrics in the Prometheus text format: HTTP requests by route
 * and status, request latency, job durations, stage durations, bytes moved.
 * Updates are cheap and thread-safe (one mutex, no allocation). */
#ifndef OTF_API_METRICS_H
#define OTF_API_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Route templates, the label of HTTP metrics. */
#define OTF_ROUTE_MAP(X)                                  \
  X(ROOT, "/")                                            \
  X(UI, "/ui/{asset}")                                    \
  X(LIVEZ, "/livez")                                      \
  X(READYZ, "/readyz")                                    \
  X(METRICS, "/metrics")                                  \
  X(OPENAPI, "/openapi.json")                             \
  X(VERSION, "/v1/version")                               \
  X(JOBS, "/v1/jobs")                                     \
  X(VALIDATE, "/v1/jobs:validate")                        \
  X(JOB, "/v1/jobs/{id}")                                 \
  X(CANCEL, "/v1/jobs/{id}/cancel")                       \
  X(EVENTS, "/v1/jobs/{id}/events")                       \
  X(ARTIFACTS, "/v1/jobs/{id}/artifacts")                 \
  X(ARTIFACT, "/v1/jobs/{id}/artifacts/{name}")           \
  X(OTHER, "other")

typedef enum otf_route {
#define OTF__ROUTE_ENUM(name, tmpl) OTF_ROUTE_##name,
  OTF_ROUTE_MAP(OTF__ROUTE_ENUM)
#undef OTF__ROUTE_ENUM
  OTF_ROUTE_COUNT
} otf_route;

const char *otf_route_template(otf_route r);

typedef struct otf_metrics otf_metrics;

otf_metrics *otf_metrics_new(void);
void otf_metrics_free(otf_metrics *m);

void otf_metrics_http(otf_metrics *m, otf_route r, const char *method, int status,
                      double seconds);
/* A finished job: outcome is its final status name. */
void otf_metrics_job(otf_metrics *m, const char *outcome, double seconds);
void otf_metrics_stage(otf_metrics *m, const char *stage, double seconds);
void otf_metrics_bytes(otf_metrics *m, uint64_t read, uint64_t written);

/* Appends the metrics (plus the gauges given: names and values, n) as
 * Prometheus text to a malloc'd string. */
char *otf_metrics_render(otf_metrics *m, const char *const *gauge_lines, size_t n_lines);

#endif
