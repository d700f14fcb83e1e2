/* The service's durable state: jobs, their transitions and events,
 * idempotency keys and artifacts, in one SQLite database (WAL).
 *
 * Every function is one transaction and is safe to call from any thread
 * (the store serialises them). Rows come back as jansson objects whose keys
 * are the column names; spec, error, summary and event data are parsed
 * JSON, times are integers (milliseconds since the epoch, 0 = not yet). */
#ifndef OTF_JOBSTORE_H
#define OTF_JOBSTORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef enum otf_job_status {
  OTF_JOB_QUEUED = 0,
  OTF_JOB_RUNNING,
  OTF_JOB_CANCELLING,
  OTF_JOB_SUCCEEDED,
  OTF_JOB_FAILED,
  OTF_JOB_CANCELLED,
  OTF_JOB_STATUS_COUNT
} otf_job_status;

const char *otf_job_status_name(otf_job_status s);
int otf_job_status_parse(otf_job_status *out, const char *name); /* -1 unknown */
int otf_job_status_terminal(otf_job_status s);

#define OTF_JOB_ID_MAX 40

typedef struct otf_jobstore otf_jobstore;

/* Opens (creating if needed) the database at path. */
otf_status otf_jobstore_open(otf_jobstore **out, const char *path, otf_error *err) OTF_WUR;
void otf_jobstore_close(otf_jobstore *js);

/* Idempotency keys. begin: claims key for a request whose body hashes to
 * body_hash. Outcomes: OTF_OK, *job_id = "" (new key, now held: finish with
 * otf_jobstore_create or otf_jobstore_idem_drop); OTF_OK with the job id
 * (a replay of a completed request); OTF_E_CONFLICT (the first request
 * with this key is still in flight); OTF_E_FORMAT (the key was used with
 * another body). */
otf_status otf_jobstore_idem_begin(otf_jobstore *js, const char *key, const char *body_hash,
                                   char job_id[OTF_JOB_ID_MAX], otf_error *err) OTF_WUR;
void otf_jobstore_idem_drop(otf_jobstore *js, const char *key);

/* Inserts a queued job for the normalised spec (JSON text). idem_key (may
 * be NULL) was claimed by idem_begin and is bound to the job. OTF_E_BUSY
 * when max_queued jobs are already queued. */
otf_status otf_jobstore_create(otf_jobstore *js, const char *spec_json, const char *idem_key,
                               size_t max_queued, char id[OTF_JOB_ID_MAX],
                               otf_error *err) OTF_WUR;

/* The job row, or OTF_E_NOT_FOUND. Caller json_decref's *row. */
otf_status otf_jobstore_get(otf_jobstore *js, const char *id, json_t **row,
                            otf_error *err) OTF_WUR;

/* Jobs newest first, status in status_mask (bit per otf_job_status; 0 =
 * all), with seq < before (0 = from the newest). *rows: array; *next: seq
 * to continue from, 0 at the end. */
otf_status otf_jobstore_list(otf_jobstore *js, unsigned status_mask, int64_t before,
                             size_t limit, json_t **rows, int64_t *next,
                             otf_error *err) OTF_WUR;

/* Takes the oldest queued job: running, stage "fetching", attempt + 1,
 * started_at now. OTF_E_NOT_FOUND when none is queued. *row as get. */
otf_status otf_jobstore_claim(otf_jobstore *js, json_t **row, otf_error *err) OTF_WUR;

/* Progress of a running job (NULL stage leaves it; layer/layers < 0 leave
 * them; eta < 0 = unknown). */
otf_status otf_jobstore_progress(otf_jobstore *js, const char *id, const char *stage,
                                 double fraction, int layer, int layers, double eta_s,
                                 otf_error *err) OTF_WUR;

/* Ends a job: succeeded (summary may be NULL), failed or cancelled (error
 * is a problem object; may be NULL). Records a state event. */
otf_status otf_jobstore_finish(otf_jobstore *js, const char *id, otf_job_status st,
                               const json_t *error, const json_t *summary,
                               otf_error *err) OTF_WUR;

/* Puts a running job back in the queue (shutdown, or a retry after a
 * restart), with a log event saying why. */
otf_status otf_jobstore_requeue(otf_jobstore *js, const char *id, const char *why,
                                otf_error *err) OTF_WUR;

/* Cancel request: a queued job is cancelled now (*now_final = 1); a
 * running one becomes cancelling; a terminal one gives OTF_E_CONFLICT. */
otf_status otf_jobstore_cancel(otf_jobstore *js, const char *id, int *now_final,
                               otf_error *err) OTF_WUR;

/* Deletes a terminal job with its events and artifacts (OTF_E_CONFLICT
 * otherwise). */
otf_status otf_jobstore_delete(otf_jobstore *js, const char *id, otf_error *err) OTF_WUR;

/* Appends an event; data is borrowed. */
otf_status otf_jobstore_event(otf_jobstore *js, const char *id, const char *type,
                              const json_t *data, otf_error *err) OTF_WUR;

/* Events with seq > after, oldest first, at most limit. */
otf_status otf_jobstore_events(otf_jobstore *js, const char *id, int64_t after, size_t limit,
                               json_t **rows, otf_error *err) OTF_WUR;

/* Replaces the job's artifact list: array of {name, size, sha256}. */
otf_status otf_jobstore_set_artifacts(otf_jobstore *js, const char *id, const json_t *items,
                                      otf_error *err) OTF_WUR;

/* After a restart: jobs left running or cancelling. Those with attempt <
 * max_attempts go back to the queue; the rest fail with a reason;
 * cancelling ones are cancelled. Counts of each (may be NULL). */
otf_status otf_jobstore_recover(otf_jobstore *js, int max_attempts, int *requeued,
                                int *failed, otf_error *err) OTF_WUR;

/* Number of jobs in each status. */
otf_status otf_jobstore_counts(otf_jobstore *js, int64_t counts[OTF_JOB_STATUS_COUNT],
                               otf_error *err) OTF_WUR;

/* Current time in milliseconds since the epoch (the store's clock). */
int64_t otf_now_ms(void);

#endif
