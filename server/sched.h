/* The scheduler: owns the libuv loop's side of jobs. It claims queued jobs
 * from the store up to the worker count, runs each on libuv's thread pool
 * (uv_queue_work, called only from the loop thread), receives progress and
 * per-map events from the workers through uv_async_send, records results,
 * and drains on shutdown (running jobs get a grace period, then are
 * stopped and go back to the queue). */
#ifndef OTF_SERVER_SCHED_H
#define OTF_SERVER_SCHED_H

#include <uv.h>

#include "api/api.h"

typedef struct otf_sched otf_sched;

typedef struct otf_sched_cfg {
  int workers;
  int grace_s;
} otf_sched_cfg;

/* Loop thread. api supplies the store, storage, metrics and job folders. */
otf_status otf_sched_new(otf_sched **out, uv_loop_t *loop, const otf_sched_cfg *cfg,
                         otf_api *api, otf_error *err) OTF_WUR;

/* Any thread: look for queued work now. */
void otf_sched_kick(otf_sched *s);

/* Any thread: stop the running job id (it ends cancelled). */
void otf_sched_cancel(otf_sched *s, const char *id);

/* Loop thread: take no more jobs; give running ones grace_s, then stop
 * them (back to the queue); call idle(ctx) once nothing runs. */
void otf_sched_drain(otf_sched *s, void (*idle)(void *ctx), void *ctx);

/* Loop thread: stop running jobs now (a second signal). */
void otf_sched_stop_now(otf_sched *s);

/* Loop thread, once idle: closes the handles; free after the loop ran
 * their close callbacks (uv_run until it returns). */
void otf_sched_close(otf_sched *s);
void otf_sched_free(otf_sched *s);

#endif
