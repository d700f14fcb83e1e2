/* The REST API of otfused: routing, authentication, request validation and
 * the JSON of jobs, events and artifacts, over the job store. Knows nothing
 * of sockets or threads: the server hands it parsed requests and wires the
 * hooks to its scheduler. See DESIGN.md (The service). */
#ifndef OTF_API_H
#define OTF_API_H

#include <jansson.h>
#include <stddef.h>

#include "api/http.h"
#include "api/metrics.h"
#include "storage/jobstore.h"
#include "storage/storage.h"

#define OTF_API_MAX_TOKENS 16

typedef struct otf_api_hooks {
  void *ctx;
  void (*job_queued)(void *ctx);                 /* a job was queued: wake the scheduler */
  void (*job_cancel)(void *ctx, const char *id); /* a running job must stop */
} otf_api_hooks;

typedef struct otf_api {
  otf_jobstore *store;
  otf_storage *storage;
  otf_metrics *metrics;
  otf_api_hooks hooks;
  const char *data_dir;             /* artifacts live in data_dir/jobs/ID/out */
  const char *tokens[OTF_API_MAX_TOKENS];
  size_t n_tokens;                  /* 0: no authentication (local mode) */
  size_t max_models, max_queued;
  const char *version;
  volatile int draining;            /* shutting down: not ready, no new jobs */
} otf_api;

/* Which route a request names (OTF_ROUTE_OTHER when none). */
otf_route otf_api_route(const char *method, const char *path);

/* Routes that may take long (they read model headers from storage): the
 * server runs them off its HTTP thread. */
int otf_api_route_slow(otf_route r);

/* Answers one request. Never fails: errors become problem+json. */
void otf_api_handle(otf_api *api, const otf_http_req *req, otf_http_resp *resp);

/* The folder of a job's artifacts: data_dir/jobs/ID/out (buf of cap). */
int otf_api_job_dir(const otf_api *api, const char *id, char *buf, size_t cap);

/* A problem object (RFC 9457) for an error. */
json_t *otf_api_problem(otf_status code, const char *detail, const char *pointer,
                        const char *instance, const char *request_id);

/* The public JSON of a job from its store row. */
json_t *otf_api_job_json(const json_t *row);

#endif
