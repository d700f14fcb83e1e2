/* The scheduler: see sched.h.
 *
 * Threads: the loop thread owns the slots' lifecycle (claim, queue work,
 * after-work); workers write progress and map events into their slot and
 * a shared event queue under s->mu and wake the loop with uv_async_send;
 * HTTP threads only raise cancel flags (under s->mu) and kick. */
#include "server/sched.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "server/log.h"
#include "server/runner.h"

#define MAX_WORKERS 64
#define STOP_USER 1
#define STOP_SHUTDOWN 2

typedef struct pending_event {
  struct pending_event *next;
  char id[OTF_JOB_ID_MAX];
  char type[16];
  json_t *data; /* owned; parsed once, on the worker */
} pending_event;

typedef struct slot {
  otf_sched *s;
  int used;
  char id[OTF_JOB_ID_MAX];
  json_t *spec;
  char out_dir[1024];
  uv_work_t work;
  volatile int cancel;
  int stop; /* STOP_USER / STOP_SHUTDOWN */
  otf_run_result res;
  int64_t started_ms;
  /* progress, written by the worker under s->mu */
  char stage[16];
  double fraction;
  int layer, layers, dirty;
  int64_t last_send_ms;
  /* loop thread only: the stage last written, and since when */
  char shown_stage[16];
  int64_t stage_since_ms;
} slot;

struct otf_sched {
  uv_loop_t *loop;
  otf_api *api;
  otf_sched_cfg cfg;
  uv_async_t wake;
  uv_timer_t tick, grace;
  pthread_mutex_t mu;
  slot slots[MAX_WORKERS];
  int running;
  int draining;
  pending_event *head, *tail;
  void (*idle)(void *);
  void *idle_ctx;
  int closed;
};

static void pump(otf_sched *s);

/* ---- worker side ---- */

static void w_progress(void *ctx, const char *stage, double fraction) {
  slot *sl = ctx;
  otf_sched *s = sl->s;
  int64_t now = otf_now_ms();
  int send;
  pthread_mutex_lock(&s->mu);
  int changed = strncmp(sl->stage, stage, sizeof(sl->stage) - 1) != 0;
  snprintf(sl->stage, sizeof(sl->stage), "%s", stage);
  sl->fraction = fraction;
  sl->dirty = 1;
  send = changed || now - sl->last_send_ms >= 100; /* at most 10 store writes/s */
  if(send)
    sl->last_send_ms = now;
  pthread_mutex_unlock(&s->mu);
  if(send)
    uv_async_send(&s->wake);
}

/* Queues an event for the loop to record; takes data (NULL: dropped). */
static void push_event(otf_sched *s, const char *id, const char *type, json_t *data) {
  pending_event *e = data ? calloc(1, sizeof(*e)) : NULL;
  if(!e) {
    json_decref(data);
    return;
  }
  snprintf(e->id, sizeof(e->id), "%s", id);
  snprintf(e->type, sizeof(e->type), "%s", type);
  e->data = data;
  pthread_mutex_lock(&s->mu);
  if(s->tail)
    s->tail->next = e;
  else
    s->head = e;
  s->tail = e;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->wake);
}

static void w_map(void *ctx, const char *json) {
  slot *sl = ctx;
  json_t *m = json_loads(json, 0, NULL);
  json_t *l = m ? json_object_get(m, "layer") : NULL;
  if(json_is_integer(l) && json_integer_value(l) >= 0) {
    pthread_mutex_lock(&sl->s->mu);
    sl->layer = (int)json_integer_value(l);
    sl->dirty = 1;
    pthread_mutex_unlock(&sl->s->mu);
  }
  push_event(sl->s, sl->id, "map", m);
}

static void w_warning(void *ctx, const char *msg) {
  slot *sl = ctx;
  push_event(sl->s, sl->id, "warning", json_pack("{s:s}", "message", msg));
}

static void w_event(void *ctx, const char *type, const char *json) {
  slot *sl = ctx;
  push_event(sl->s, sl->id, type, json_loads(json, 0, NULL));
}

static void w_layers(void *ctx, int n) {
  slot *sl = ctx;
  pthread_mutex_lock(&sl->s->mu);
  sl->layers = n;
  sl->dirty = 1;
  pthread_mutex_unlock(&sl->s->mu);
}

static void work_cb(uv_work_t *w) {
  slot *sl = w->data;
  otf_storage *st = sl->s->api->storage;
  otf_run_io io = {.ctx = sl, .progress = w_progress, .map = w_map, .warning = w_warning,
                   .layers = w_layers, .event = w_event, .cancel = &sl->cancel};
  otf_run_job(st, json_object_get(sl->spec, "spec"), sl->out_dir, &io, &sl->res);
}

/* ---- loop side ---- */

/* Writes pending progress and events to the store. */
static void flush(otf_sched *s) {
  pthread_mutex_lock(&s->mu);
  pending_event *ev = s->head;
  s->head = s->tail = NULL;
  struct { char id[OTF_JOB_ID_MAX]; char stage[16]; double f; int layer, layers; int64_t t0; int i; }
      pr[MAX_WORKERS];
  int np = 0;
  for(int i = 0; i < s->cfg.workers; i++) {
    slot *sl = &s->slots[i];
    if(!sl->used || !sl->dirty)
      continue;
    sl->dirty = 0;
    memcpy(pr[np].id, sl->id, sizeof(sl->id));
    memcpy(pr[np].stage, sl->stage, sizeof(sl->stage));
    pr[np].f = sl->fraction;
    pr[np].layer = sl->layer;
    pr[np].layers = sl->layers;
    pr[np].t0 = sl->started_ms;
    pr[np].i = i;
    np++;
  }
  pthread_mutex_unlock(&s->mu);
  otf_error e;
  for(; ev; ) {
    if(otf_jobstore_event(s->api->store, ev->id, ev->type, ev->data, &e) != OTF_OK)
      otf_log("error", NULL, ev->id, NULL, "cannot record an event: %s", e.message);
    json_decref(ev->data);
    pending_event *n = ev->next;
    free(ev);
    ev = n;
  }
  int64_t now = otf_now_ms();
  for(int k = 0; k < np; k++) {
    slot *sl = &s->slots[pr[k].i];
    double el = (double)(now - pr[k].t0) / 1000.0;
    double eta = pr[k].f > 0.02 ? el * (1.0 - pr[k].f) / pr[k].f : -1.0;
    if(strcmp(sl->shown_stage, pr[k].stage) != 0) {
      if(sl->shown_stage[0])
        otf_metrics_stage(s->api->metrics, sl->shown_stage,
                          (double)(now - sl->stage_since_ms) / 1000.0);
      snprintf(sl->shown_stage, sizeof(sl->shown_stage), "%s", pr[k].stage);
      sl->stage_since_ms = now;
    }
    if(otf_jobstore_progress(s->api->store, pr[k].id, pr[k].stage, pr[k].f, pr[k].layer,
                             pr[k].layers > 0 ? pr[k].layers : -1, eta, &e) != OTF_OK)
      otf_log("error", NULL, pr[k].id, NULL, "cannot record progress: %s", e.message);
  }
}

static json_t *problem_of(const otf_error *e, const char *id) {
  char inst[80];
  snprintf(inst, sizeof(inst), "/v1/jobs/%s", id);
  return otf_api_problem(e->code, e->message, e->pointer, inst, NULL);
}

static void after_work(uv_work_t *w, int status) {
  slot *sl = w->data;
  otf_sched *s = sl->s;
  flush(s);
  otf_run_result *r = &sl->res;
  otf_error e;
  const char *outcome;
  if(status == UV_ECANCELED) {
    r->status = OTF_E_CANCELLED;
    otf_error_clear(&r->err);
  }
  int64_t now = otf_now_ms();
  if(sl->shown_stage[0])
    otf_metrics_stage(s->api->metrics, sl->shown_stage, (double)(now - sl->stage_since_ms) / 1e3);
  if(r->status == OTF_OK) {
    outcome = "succeeded";
    if(otf_jobstore_set_artifacts(s->api->store, sl->id, r->artifacts, &e) != OTF_OK ||
       otf_jobstore_finish(s->api->store, sl->id, OTF_JOB_SUCCEEDED, NULL, r->summary, &e) !=
           OTF_OK)
      otf_log("error", NULL, sl->id, NULL, "cannot record success: %s", e.message);
  } else if(r->status == OTF_E_CANCELLED && sl->stop == STOP_SHUTDOWN) {
    outcome = "requeued";
    if(otf_jobstore_requeue(s->api->store, sl->id,
                            "the server shut down while the job ran; it runs again", &e) != OTF_OK)
      otf_log("error", NULL, sl->id, NULL, "cannot requeue: %s", e.message);
  } else if(r->status == OTF_E_CANCELLED) {
    outcome = "cancelled";
    json_t *p = problem_of(&(otf_error){.code = OTF_E_CANCELLED,
                                        .message = "cancelled at the client's request"},
                           sl->id);
    if(otf_jobstore_finish(s->api->store, sl->id, OTF_JOB_CANCELLED, p, NULL, &e) != OTF_OK)
      otf_log("error", NULL, sl->id, NULL, "cannot record cancel: %s", e.message);
    json_decref(p);
  } else {
    outcome = "failed";
    json_t *p = problem_of(&r->err, sl->id);
    if(otf_jobstore_finish(s->api->store, sl->id, OTF_JOB_FAILED, p, NULL, &e) != OTF_OK)
      otf_log("error", NULL, sl->id, NULL, "cannot record failure: %s", e.message);
    json_decref(p);
  }
  double secs = (double)(now - sl->started_ms) / 1000.0;
  otf_metrics_job(s->api->metrics, outcome, secs);
  otf_metrics_bytes(s->api->metrics, r->bytes_read, r->bytes_written);
  json_t *x = json_pack("{s:s, s:f}", "outcome", outcome, "seconds", secs);
  if(r->status != OTF_OK && x)
    json_object_set_new(x, "error", json_string(r->err.message));
  otf_log(r->status == OTF_OK || r->status == OTF_E_CANCELLED ? "info" : "warn", NULL, sl->id, x,
          "job %s", outcome);
  json_decref(x);
  otf_run_result_free(r);
  json_decref(sl->spec);
  pthread_mutex_lock(&s->mu);
  sl->used = 0;
  sl->spec = NULL;
  s->running--;
  pthread_mutex_unlock(&s->mu);
  if(s->draining && s->running == 0) {
    uv_timer_stop(&s->grace);
    if(s->idle) {
      void (*idle)(void *) = s->idle;
      s->idle = NULL;
      idle(s->idle_ctx);
    }
    return;
  }
  pump(s);
}

static void start(otf_sched *s, json_t *row) {
  slot *sl = NULL;
  for(int i = 0; i < s->cfg.workers; i++)
    if(!s->slots[i].used) {
      sl = &s->slots[i];
      break;
    }
  const char *id = json_string_value(json_object_get(row, "id"));
  if(!sl) { /* cannot happen: pump starts jobs only while a slot is free */
    otf_error e;
    if(otf_jobstore_requeue(s->api->store, id, "no free worker", &e) != OTF_OK)
      otf_log("error", NULL, id, NULL, "cannot requeue: %s", e.message);
    json_decref(row);
    return;
  }
  pthread_mutex_lock(&s->mu);
  memset(&sl->res, 0, sizeof(sl->res));
  sl->used = 1;
  sl->s = s;
  snprintf(sl->id, sizeof(sl->id), "%s", id);
  sl->spec = row;
  sl->cancel = 0;
  sl->stop = 0;
  sl->stage[0] = sl->shown_stage[0] = '\0';
  sl->fraction = 0;
  sl->layer = sl->layers = -1;
  sl->dirty = 0;
  sl->last_send_ms = 0;
  sl->started_ms = otf_now_ms();
  sl->stage_since_ms = sl->started_ms;
  s->running++;
  pthread_mutex_unlock(&s->mu);
  otf_api_job_dir(s->api, id, sl->out_dir, sizeof(sl->out_dir));
  sl->work.data = sl;
  /* A cancel that came between the claim and the slot found no slot to
   * flag: the store has it as cancelling. */
  json_t *now = NULL;
  if(otf_jobstore_get(s->api->store, id, &now, NULL) == OTF_OK &&
     !strcmp(json_string_value(json_object_get(now, "status")), "cancelling"))
    otf_sched_cancel(s, id);
  json_decref(now);
  otf_log("info", NULL, id, NULL, "job started (attempt %d)",
          (int)json_integer_value(json_object_get(row, "attempt")));
  int rc = uv_queue_work(s->loop, &sl->work, work_cb, after_work);
  if(rc != 0) {
    sl->res.status = OTF_FAIL(&sl->res.err, OTF_E_INTERNAL, NULL, "cannot queue work: %s",
                              uv_strerror(rc));
    after_work(&sl->work, 0);
  }
}

static void pump(otf_sched *s) {
  while(!s->draining && s->running < s->cfg.workers) {
    json_t *row = NULL;
    otf_error e;
    otf_status rc = otf_jobstore_claim(s->api->store, &row, &e);
    if(rc == OTF_E_NOT_FOUND)
      return;
    if(rc != OTF_OK) {
      otf_log("error", NULL, NULL, NULL, "cannot claim a job: %s", e.message);
      return;
    }
    start(s, row);
  }
}

static void on_wake(uv_async_t *h) {
  otf_sched *s = h->data;
  flush(s);
  pump(s);
}

static void on_tick(uv_timer_t *t) {
  otf_sched *s = t->data;
  flush(s);
  pump(s);
}

static void stop_all(otf_sched *s) {
  pthread_mutex_lock(&s->mu);
  for(int i = 0; i < s->cfg.workers; i++)
    if(s->slots[i].used) {
      if(!s->slots[i].stop)
        s->slots[i].stop = STOP_SHUTDOWN;
      s->slots[i].cancel = 1;
    }
  pthread_mutex_unlock(&s->mu);
}

static void on_grace(uv_timer_t *t) {
  otf_sched *s = t->data;
  otf_log("warn", NULL, NULL, NULL, "grace period over: stopping %d running job(s); they go "
          "back to the queue", s->running);
  stop_all(s);
}

otf_status otf_sched_new(otf_sched **out, uv_loop_t *loop, const otf_sched_cfg *cfg,
                         otf_api *api, otf_error *err) {
  *out = NULL;
  if(cfg->workers < 1 || cfg->workers > MAX_WORKERS)
    return OTF_FAIL(err, OTF_E_INVAL, "workers", "workers must be 1 to %d", MAX_WORKERS);
  otf_sched *s = otf_calloc(1, sizeof(*s));
  if(!s)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  s->loop = loop;
  s->api = api;
  s->cfg = *cfg;
  pthread_mutex_init(&s->mu, NULL);
  uv_async_init(loop, &s->wake, on_wake);
  s->wake.data = s;
  uv_timer_init(loop, &s->tick);
  s->tick.data = s;
  uv_timer_init(loop, &s->grace);
  s->grace.data = s;
  uv_timer_start(&s->tick, on_tick, 0, 1000); /* first pump at once, then a safety net */
  *out = s;
  return OTF_OK;
}

void otf_sched_kick(otf_sched *s) { uv_async_send(&s->wake); }

void otf_sched_cancel(otf_sched *s, const char *id) {
  pthread_mutex_lock(&s->mu);
  for(int i = 0; i < s->cfg.workers; i++)
    if(s->slots[i].used && !strcmp(s->slots[i].id, id)) {
      if(!s->slots[i].stop)
        s->slots[i].stop = STOP_USER;
      s->slots[i].cancel = 1;
    }
  pthread_mutex_unlock(&s->mu);
}

void otf_sched_drain(otf_sched *s, void (*idle)(void *ctx), void *ctx) {
  s->draining = 1;
  s->idle = idle;
  s->idle_ctx = ctx;
  if(s->running == 0) {
    s->idle = NULL;
    idle(ctx);
    return;
  }
  otf_log("info", NULL, NULL, NULL, "draining: %d job(s) running, %d s of grace", s->running,
          s->cfg.grace_s);
  uv_timer_start(&s->grace, on_grace, (uint64_t)s->cfg.grace_s * 1000, 0);
}

void otf_sched_stop_now(otf_sched *s) {
  s->draining = 1;
  stop_all(s);
}

void otf_sched_close(otf_sched *s) {
  if(s->closed)
    return;
  s->closed = 1;
  flush(s);
  uv_close((uv_handle_t *)&s->wake, NULL);
  uv_close((uv_handle_t *)&s->tick, NULL);
  uv_close((uv_handle_t *)&s->grace, NULL);
}

void otf_sched_free(otf_sched *s) {
  if(!s)
    return;
  pending_event *e = s->head;
  while(e) {
    pending_event *n = e->next;
    json_decref(e->data);
    free(e);
    e = n;
  }
  pthread_mutex_destroy(&s->mu);
  otf_free(s);
}
