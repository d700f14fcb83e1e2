/* otfused: the fusion service. Wires configuration, the job store, storage,
 * the scheduler on a libuv loop, and the HTTP daemon; drains on
 * SIGTERM/SIGINT (a second signal stops running jobs at once). */
#include <cblas.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "api/api.h"
#include "fusion/fsutil.h"
#include "server/config.h"
#include "server/http.h"
#include "server/log.h"
#include "server/sched.h"

#define OTFUSED_VERSION "0.2.0"

typedef struct app {
  uv_loop_t *loop;
  otf_srv_config cfg;
  otf_api api;
  otf_sched *sched;
  otf_httpd *httpd;
  uv_signal_t sigterm, sigint;
  int signals;
} app;

static void hook_queued(void *ctx) { otf_sched_kick(ctx); }
static void hook_cancel(void *ctx, const char *id) { otf_sched_cancel(ctx, id); }

static void on_idle(void *ctx) {
  app *a = ctx;
  otf_log("info", NULL, NULL, NULL, "no job running: stopping");
  otf_httpd_stop(a->httpd);
  otf_sched_close(a->sched);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  app *a = s->data;
  if(a->signals++ == 0) {
    otf_log("info", NULL, NULL, NULL, "signal %d: draining (not ready, no new jobs)", signum);
    a->api.draining = 1;
    otf_sched_drain(a->sched, on_idle, a);
  } else {
    otf_log("warn", NULL, NULL, NULL, "signal %d again: stopping running jobs now", signum);
    otf_sched_stop_now(a->sched);
  }
}

static int fail(const char *what, const otf_error *e) {
  json_t *x = json_pack("{s:s}", "code", otf_status_name(e->code));
  otf_log("error", NULL, NULL, x, "%s: %s", what, e->message);
  json_decref(x);
  fprintf(stderr, "otfused: %s: %s\n", what, e->message);
  return 1;
}

int main(int argc, char **argv) {
  static app a;
  otf_error e;
  otf_error_clear(&e);
  signal(SIGPIPE, SIG_IGN);
  if(otf_srv_config_load(&a.cfg, argc, argv, &e) != OTF_OK) {
    fprintf(stderr, "otfused: %s\n", e.message);
    otf_srv_config_free(&a.cfg);
    return 2;
  }
  if(a.cfg.help) {
    otf_srv_usage();
    otf_srv_config_free(&a.cfg);
    return 0;
  }
  otf_srv_config_log(&a.cfg);
  openblas_set_num_threads(a.cfg.blas_threads);

  int rc = 1;
  otf_jobstore *store = NULL;
  otf_storage *storage = NULL;
  otf_metrics *metrics = NULL;
  char db[4200], cache[4200];
  if(otf_fs_mkdirs(a.cfg.data_dir, &e) != OTF_OK) {
    rc = fail("data dir", &e);
    goto out;
  }
  /* Absolute from here on: the cache and job folders are derived from it. */
  char *abs = realpath(a.cfg.data_dir, NULL);
  if(!abs) {
    fprintf(stderr, "otfused: data dir %s: %s\n", a.cfg.data_dir, strerror(errno));
    goto out;
  }
  free(a.cfg.data_dir);
  a.cfg.data_dir = abs;
  snprintf(db, sizeof(db), "%s/jobs.db", a.cfg.data_dir);
  if(otf_jobstore_open(&store, db, &e) != OTF_OK) {
    rc = fail("job store", &e);
    goto out;
  }
  int requeued = 0, failed = 0;
  if(otf_jobstore_recover(store, a.cfg.max_attempts, &requeued, &failed, &e) != OTF_OK) {
    rc = fail("recovery", &e);
    goto out;
  }
  if(requeued || failed)
    otf_log("warn", NULL, NULL, NULL,
            "recovered after an unclean stop: %d job(s) requeued, %d failed", requeued, failed);
  otf_storage_cfg scfg;
  otf_srv_config_storage(&a.cfg, &scfg);
  if(!scfg.cache_dir) {
    snprintf(cache, sizeof(cache), "%s/cache", a.cfg.data_dir);
    scfg.cache_dir = cache;
  }
  if(otf_storage_open(&storage, &scfg, &e) != OTF_OK) {
    rc = fail("storage", &e);
    goto out;
  }
  metrics = otf_metrics_new();
  if(!metrics)
    goto out;

  a.loop = uv_default_loop();
  a.api.store = store;
  a.api.storage = storage;
  a.api.metrics = metrics;
  a.api.data_dir = a.cfg.data_dir;
  for(size_t i = 0; i < a.cfg.n_tokens && i < OTF_API_MAX_TOKENS; i++)
    a.api.tokens[a.api.n_tokens++] = a.cfg.tokens[i];
  a.api.max_models = a.cfg.max_models;
  a.api.max_queued = a.cfg.max_queued;
  a.api.version = OTFUSED_VERSION;

  otf_sched_cfg sc = {.workers = a.cfg.workers, .grace_s = a.cfg.grace_s};
  if(otf_sched_new(&a.sched, a.loop, &sc, &a.api, &e) != OTF_OK) {
    rc = fail("scheduler", &e);
    goto out;
  }
  a.api.hooks = (otf_api_hooks){.ctx = a.sched, .job_queued = hook_queued,
                                .job_cancel = hook_cancel};
  int port = 0;
  if(otf_httpd_start(&a.httpd, a.cfg.listen_host, a.cfg.port, a.cfg.max_connections, &a.api,
                     a.loop, &port, &e) != OTF_OK) {
    rc = fail("http", &e);
    otf_sched_close(a.sched);
    uv_run(a.loop, UV_RUN_DEFAULT);
    goto out;
  }
  json_t *x = json_pack("{s:s, s:i, s:s}", "host", a.cfg.listen_host, "port", port, "version",
                        OTFUSED_VERSION);
  otf_log("info", NULL, NULL, x, "listening on %s:%d", a.cfg.listen_host, port);
  json_decref(x);
  uv_signal_init(a.loop, &a.sigterm);
  uv_signal_init(a.loop, &a.sigint);
  a.sigterm.data = a.sigint.data = &a;
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);
  uv_signal_start(&a.sigint, on_signal, SIGINT);

  uv_run(a.loop, UV_RUN_DEFAULT);
  otf_log("info", NULL, NULL, NULL, "stopped");
  rc = 0;
out:
  if(a.loop)
    uv_loop_close(a.loop);
  otf_httpd_free(a.httpd);
  otf_sched_free(a.sched);
  otf_metrics_free(metrics);
  otf_storage_close(storage);
  otf_jobstore_close(store);
  otf_srv_config_free(&a.cfg);
  return rc;
}
