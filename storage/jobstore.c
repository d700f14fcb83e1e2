/* SQLite job store: see jobstore.h. One connection, one mutex; every
 * public function is one transaction. Statements are prepared once and
 * cached by their slot in the Q table below. */
#include "storage/jobstore.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"

static const char *const status_names[OTF_JOB_STATUS_COUNT] = {
    "queued", "running", "cancelling", "succeeded", "failed", "cancelled"};

const char *otf_job_status_name(otf_job_status s) {
  return (unsigned)s < OTF_JOB_STATUS_COUNT ? status_names[s] : "unknown";
}

int otf_job_status_parse(otf_job_status *out, const char *name) {
  for(int i = 0; i < OTF_JOB_STATUS_COUNT; i++)
    if(!strcmp(name, status_names[i])) {
      *out = (otf_job_status)i;
      return 0;
    }
  return -1;
}

int otf_job_status_terminal(otf_job_status s) {
  return s == OTF_JOB_SUCCEEDED || s == OTF_JOB_FAILED || s == OTF_JOB_CANCELLED;
}

int64_t otf_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS jobs("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL,"
    " status INTEGER NOT NULL,"
    " stage TEXT,"
    " spec TEXT NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 0,"
    " fraction REAL NOT NULL DEFAULT 0,"
    " layer INTEGER NOT NULL DEFAULT -1,"
    " layers INTEGER NOT NULL DEFAULT -1,"
    " eta REAL NOT NULL DEFAULT -1,"
    " error TEXT, summary TEXT,"
    " created_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT 0,"
    " finished_at INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL,"
    " event_seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);"
    "CREATE TABLE IF NOT EXISTS events("
    " job TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL,"
    " type TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY(job, seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS idempotency("
    " key TEXT PRIMARY KEY, body_hash TEXT NOT NULL, job TEXT, created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS artifacts("
    " job TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
    " PRIMARY KEY(job, name)) WITHOUT ROWID;"
    /* a request that held a key when the process died never finished */
    "DELETE FROM idempotency WHERE job IS NULL;";

#define JOB_COLS                                                                      \
  "seq, id, status, stage, spec, attempt, fraction, layer, layers, eta, error, summary, " \
  "created_at, started_at, finished_at, updated_at"

enum {
  Q_GET, Q_INSERT, Q_COUNT_QUEUED, Q_IDEM_GET, Q_IDEM_PUT, Q_IDEM_DROP, Q_IDEM_BIND,
  Q_OLDEST_QUEUED, Q_START, Q_PROGRESS, Q_FINISH, Q_REQUEUE, Q_STATUS_OF, Q_SET_STATUS,
  Q_DELETE_JOB, Q_DELETE_EVENTS, Q_DELETE_ARTS, Q_NEXT_EVENT, Q_EVENT_PUT, Q_EVENTS,
  Q_ARTS, Q_ARTS_PUT, Q_COUNTS, Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_N
};

static const char *const Q[Q_N] = {
    [Q_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [Q_INSERT] = "INSERT INTO jobs(id, status, spec, created_at, updated_at) "
                 "VALUES(?1, 0, ?2, ?3, ?3)",
    [Q_COUNT_QUEUED] = "SELECT count(*) FROM jobs WHERE status = 0",
    [Q_IDEM_GET] = "SELECT body_hash, job FROM idempotency WHERE key = ?1",
    [Q_IDEM_PUT] = "INSERT INTO idempotency(key, body_hash, job, created_at) VALUES(?1, ?2, NULL, ?3)",
    [Q_IDEM_DROP] = "DELETE FROM idempotency WHERE key = ?1 AND job IS NULL",
    [Q_IDEM_BIND] = "UPDATE idempotency SET job = ?2 WHERE key = ?1",
    [Q_OLDEST_QUEUED] = "SELECT id FROM jobs WHERE status = 0 ORDER BY seq LIMIT 1",
    [Q_START] = "UPDATE jobs SET status = 1, stage = 'fetching', attempt = attempt + 1, "
                "fraction = 0, layer = -1, layers = -1, eta = -1, started_at = ?2, "
                "updated_at = ?2 WHERE id = ?1",
    [Q_PROGRESS] = "UPDATE jobs SET stage = coalesce(?2, stage), fraction = ?3, "
                   "layer = CASE WHEN ?4 >= 0 THEN ?4 ELSE layer END, "
                   "layers = CASE WHEN ?5 >= 0 THEN ?5 ELSE layers END, eta = ?6, "
                   "updated_at = ?7 WHERE id = ?1 AND status IN (1, 2)",
    [Q_FINISH] = "UPDATE jobs SET status = ?2, error = ?3, summary = ?4, finished_at = ?5, "
                 "updated_at = ?5, stage = NULL, eta = -1, "
                 "fraction = CASE WHEN ?2 = 3 THEN 1 ELSE fraction END WHERE id = ?1",
    [Q_REQUEUE] = "UPDATE jobs SET status = 0, stage = NULL, fraction = 0, layer = -1, "
                  "layers = -1, eta = -1, updated_at = ?2 WHERE id = ?1",
    [Q_STATUS_OF] = "SELECT status, attempt FROM jobs WHERE id = ?1",
    [Q_SET_STATUS] = "UPDATE jobs SET status = ?2, updated_at = ?3, "
                     "finished_at = CASE WHEN ?2 >= 3 THEN ?3 ELSE finished_at END, "
                     "stage = CASE WHEN ?2 >= 3 THEN NULL ELSE stage END WHERE id = ?1",
    [Q_DELETE_JOB] = "DELETE FROM jobs WHERE id = ?1",
    [Q_DELETE_EVENTS] = "DELETE FROM events WHERE job = ?1",
    [Q_DELETE_ARTS] = "DELETE FROM artifacts WHERE job = ?1",
    [Q_NEXT_EVENT] = "UPDATE jobs SET event_seq = event_seq + 1 WHERE id = ?1 "
                     "RETURNING event_seq",
    [Q_EVENT_PUT] = "INSERT INTO events(job, seq, time, type, data) VALUES(?1, ?2, ?3, ?4, ?5)",
    [Q_EVENTS] = "SELECT seq, time, type, data FROM events WHERE job = ?1 AND seq > ?2 "
                 "ORDER BY seq LIMIT ?3",
    [Q_ARTS] = "SELECT name, size, sha256 FROM artifacts WHERE job = ?1 ORDER BY name",
    [Q_ARTS_PUT] = "INSERT INTO artifacts(job, name, size, sha256) VALUES(?1, ?2, ?3, ?4)",
    [Q_COUNTS] = "SELECT status, count(*) FROM jobs GROUP BY status",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};

struct otf_jobstore {
  sqlite3 *db;
  pthread_mutex_t mu;
  sqlite3_stmt *st[Q_N];
  unsigned rng;
};

static otf_status db_fail(otf_jobstore *js, otf_error *err, const char *what) {
  return OTF_FAIL(err, OTF_E_IO, NULL, "job store: %s: %s", what, sqlite3_errmsg(js->db));
}

/* The cached statement for slot q, reset and unbound; NULL on failure. */
static sqlite3_stmt *stmt(otf_jobstore *js, int q) {
  if(!js->st[q] && sqlite3_prepare_v3(js->db, Q[q], -1, SQLITE_PREPARE_PERSISTENT,
                                      &js->st[q], NULL) != SQLITE_OK)
    return NULL;
  sqlite3_reset(js->st[q]);
  sqlite3_clear_bindings(js->st[q]);
  return js->st[q];
}

/* Runs a statement that returns no rows. */
static int exec1(sqlite3_stmt *s) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int begin(otf_jobstore *js) {
  sqlite3_stmt *s = stmt(js, Q_BEGIN);
  return s ? exec1(s) : -1;
}

static otf_status commit(otf_jobstore *js, otf_error *err) {
  sqlite3_stmt *s = stmt(js, Q_COMMIT);
  if(!s || exec1(s) != 0) {
    otf_status rc = db_fail(js, err, "commit");
    sqlite3_stmt *r = stmt(js, Q_ROLLBACK);
    if(r)
      exec1(r);
    return rc;
  }
  return OTF_OK;
}

static void rollback(otf_jobstore *js) {
  sqlite3_stmt *r = stmt(js, Q_ROLLBACK);
  if(r)
    exec1(r);
}

/* The statement for slot q, or the error. */
static otf_status prep(otf_jobstore *js, int q, sqlite3_stmt **s, otf_error *err) {
  *s = stmt(js, q);
  return *s ? OTF_OK : db_fail(js, err, "prepare");
}

/* Runs a prepared statement that returns no rows. */
static otf_status run(otf_jobstore *js, sqlite3_stmt *s, const char *what, otf_error *err) {
  return exec1(s) == 0 ? OTF_OK : db_fail(js, err, what);
}

/* Runs the statement of slot q with the job id as its only parameter. */
static otf_status run_id(otf_jobstore *js, int q, const char *id, const char *what,
                         otf_error *err) {
  sqlite3_stmt *s;
  otf_status rc = prep(js, q, &s, err);
  if(rc != OTF_OK)
    return rc;
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  return run(js, s, what, err);
}

/* One public call = one transaction: lock, BEGIN IMMEDIATE, body, then
 * COMMIT if it succeeded and ROLLBACK otherwise. */
typedef otf_status (*tx_body)(otf_jobstore *js, void *arg, otf_error *err);

static otf_status in_tx(otf_jobstore *js, tx_body body, void *arg, otf_error *err) {
  pthread_mutex_lock(&js->mu);
  otf_status rc = begin(js) == 0 ? body(js, arg, err) : db_fail(js, err, "begin");
  if(rc == OTF_OK)
    rc = commit(js, err);
  else
    rollback(js);
  pthread_mutex_unlock(&js->mu);
  return rc;
}

otf_status otf_jobstore_open(otf_jobstore **out, const char *path, otf_error *err) {
  *out = NULL;
  otf_jobstore *js = otf_calloc(1, sizeof(*js));
  if(!js)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the job store");
  pthread_mutex_init(&js->mu, NULL);
  js->rng = (unsigned)otf_now_ms() ^ (unsigned)(uintptr_t)js;
  if(sqlite3_open_v2(path, &js->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    otf_status rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot open the job store %s: %s", path,
                             js->db ? sqlite3_errmsg(js->db) : "out of memory");
    otf_jobstore_close(js);
    return rc;
  }
  sqlite3_busy_timeout(js->db, 5000);
  char *msg = NULL;
  if(sqlite3_exec(js->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
    otf_status rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot initialise the job store %s: %s",
                             path, msg ? msg : "?");
    sqlite3_free(msg);
    otf_jobstore_close(js);
    return rc;
  }
  *out = js;
  return OTF_OK;
}

void otf_jobstore_close(otf_jobstore *js) {
  if(!js)
    return;
  for(int i = 0; i < Q_N; i++)
    sqlite3_finalize(js->st[i]);
  sqlite3_close(js->db);
  pthread_mutex_destroy(&js->mu);
  otf_free(js);
}

/* ---- row -> JSON ---- */

static json_t *text_or_null(sqlite3_stmt *s, int col) {
  const unsigned char *t = sqlite3_column_text(s, col);
  return t ? json_string((const char *)t) : json_null();
}

static json_t *parsed_or_null(sqlite3_stmt *s, int col) {
  const char *t = (const char *)sqlite3_column_text(s, col);
  if(!t)
    return json_null();
  json_t *v = json_loads(t, JSON_DECODE_ANY, NULL);
  return v ? v : json_null();
}

static json_t *job_row(sqlite3_stmt *s) {
  json_t *r = json_object();
  if(!r)
    return NULL;
  int st = sqlite3_column_int(s, 2);
  json_object_set_new(r, "seq", json_integer(sqlite3_column_int64(s, 0)));
  json_object_set_new(r, "id", text_or_null(s, 1));
  json_object_set_new(r, "status", json_string(otf_job_status_name((otf_job_status)st)));
  json_object_set_new(r, "stage", text_or_null(s, 3));
  json_object_set_new(r, "spec", parsed_or_null(s, 4));
  json_object_set_new(r, "attempt", json_integer(sqlite3_column_int(s, 5)));
  json_object_set_new(r, "fraction", json_real(sqlite3_column_double(s, 6)));
  json_object_set_new(r, "layer", json_integer(sqlite3_column_int(s, 7)));
  json_object_set_new(r, "layers", json_integer(sqlite3_column_int(s, 8)));
  json_object_set_new(r, "eta", json_real(sqlite3_column_double(s, 9)));
  json_object_set_new(r, "error", parsed_or_null(s, 10));
  json_object_set_new(r, "summary", parsed_or_null(s, 11));
  static const char *const times[] = {"created_at", "started_at", "finished_at", "updated_at"};
  for(int i = 0; i < 4; i++)
    json_object_set_new(r, times[i], json_integer(sqlite3_column_int64(s, 12 + i)));
  return r;
}

/* Attaches the artifact list to a job row (store locked). */
static int attach_artifacts(otf_jobstore *js, json_t *row, const char *id) {
  sqlite3_stmt *s = stmt(js, Q_ARTS);
  json_t *a = json_array();
  if(!s || !a) {
    json_decref(a);
    return -1;
  }
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  int rc;
  while((rc = sqlite3_step(s)) == SQLITE_ROW)
    json_array_append_new(a, json_pack("{s:s, s:I, s:s}", "name",
                                       (const char *)sqlite3_column_text(s, 0), "size",
                                       (json_int_t)sqlite3_column_int64(s, 1), "sha256",
                                       (const char *)sqlite3_column_text(s, 2)));
  sqlite3_reset(s);
  json_object_set_new(row, "artifacts", a);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Fetches a job row with its artifacts (store locked). */
static otf_status get_locked(otf_jobstore *js, const char *id, json_t **row, otf_error *err) {
  *row = NULL;
  sqlite3_stmt *s = stmt(js, Q_GET);
  if(!s)
    return db_fail(js, err, "prepare");
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if(rc == SQLITE_DONE) {
    sqlite3_reset(s);
    return OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "no job with id '%.64s'", id);
  }
  if(rc != SQLITE_ROW) {
    otf_status e = db_fail(js, err, "read job");
    sqlite3_reset(s);
    return e;
  }
  json_t *r = job_row(s);
  sqlite3_reset(s);
  if(!r || attach_artifacts(js, r, id) != 0) {
    json_decref(r);
    return db_fail(js, err, "read job");
  }
  *row = r;
  return OTF_OK;
}

/* Appends an event (store locked, inside a transaction or not). */
static int event_locked(otf_jobstore *js, const char *id, const char *type, const json_t *data) {
  sqlite3_stmt *s = stmt(js, Q_NEXT_EVENT);
  if(!s)
    return -1;
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  if(sqlite3_step(s) != SQLITE_ROW) {
    sqlite3_reset(s);
    return -1;
  }
  int64_t seq = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  char *txt = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  s = stmt(js, Q_EVENT_PUT);
  if(!s) {
    free(txt);
    return -1;
  }
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, seq);
  sqlite3_bind_int64(s, 3, otf_now_ms());
  sqlite3_bind_text(s, 4, type, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 5, txt ? txt : "{}", -1, SQLITE_TRANSIENT);
  int rc = exec1(s);
  free(txt);
  return rc;
}

static int state_event(otf_jobstore *js, const char *id, otf_job_status st, const char *why) {
  json_t *d = json_pack("{s:s}", "status", otf_job_status_name(st));
  if(d && why)
    json_object_set_new(d, "reason", json_string(why));
  int rc = d ? event_locked(js, id, "state", d) : -1;
  json_decref(d);
  return rc;
}

/* Status and attempt of a job (store locked); -1 when absent. */
static int status_locked(otf_jobstore *js, const char *id, int *attempt) {
  sqlite3_stmt *s = stmt(js, Q_STATUS_OF);
  if(!s)
    return -2;
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  int st = -1;
  if(sqlite3_step(s) == SQLITE_ROW) {
    st = sqlite3_column_int(s, 0);
    if(attempt)
      *attempt = sqlite3_column_int(s, 1);
  }
  sqlite3_reset(s);
  return st;
}

static int set_status_locked(otf_jobstore *js, const char *id, otf_job_status st) {
  sqlite3_stmt *s = stmt(js, Q_SET_STATUS);
  if(!s)
    return -1;
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int(s, 2, (int)st);
  sqlite3_bind_int64(s, 3, otf_now_ms());
  return exec1(s);
}

/* ---- public functions ---- */

otf_status otf_jobstore_idem_begin(otf_jobstore *js, const char *key, const char *body_hash,
                                   char job_id[OTF_JOB_ID_MAX], otf_error *err) {
  job_id[0] = '\0';
  pthread_mutex_lock(&js->mu);
  otf_status rc = OTF_OK;
  sqlite3_stmt *s = stmt(js, Q_IDEM_GET);
  if(!s) {
    rc = db_fail(js, err, "prepare");
    goto out;
  }
  sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
  int step = sqlite3_step(s);
  if(step == SQLITE_ROW) {
    const char *h = (const char *)sqlite3_column_text(s, 0);
    const char *j = (const char *)sqlite3_column_text(s, 1);
    if(!h || strcmp(h, body_hash) != 0)
      rc = OTF_FAIL(err, OTF_E_FORMAT, NULL,
                    "Idempotency-Key '%.64s' was already used with a different request body",
                    key);
    else if(!j)
      rc = OTF_FAIL(err, OTF_E_CONFLICT, NULL,
                    "a request with Idempotency-Key '%.64s' is still being processed", key);
    else
      snprintf(job_id, OTF_JOB_ID_MAX, "%s", j);
    sqlite3_reset(s);
    goto out;
  }
  sqlite3_reset(s);
  if(step != SQLITE_DONE) {
    rc = db_fail(js, err, "read idempotency key");
    goto out;
  }
  s = stmt(js, Q_IDEM_PUT);
  if(!s) {
    rc = db_fail(js, err, "prepare");
    goto out;
  }
  sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, body_hash, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, otf_now_ms());
  if(exec1(s) != 0)
    rc = db_fail(js, err, "store idempotency key");
out:
  pthread_mutex_unlock(&js->mu);
  return rc;
}

void otf_jobstore_idem_drop(otf_jobstore *js, const char *key) {
  pthread_mutex_lock(&js->mu);
  sqlite3_stmt *s = stmt(js, Q_IDEM_DROP);
  if(s) {
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    exec1(s);
  }
  pthread_mutex_unlock(&js->mu);
}

/* A job id: "j" + 12 hex digits of milliseconds + 8 random hex digits, so
 * ids sort by creation time and never repeat within a millisecond. */
static void new_id(otf_jobstore *js, char id[OTF_JOB_ID_MAX]) {
  js->rng = js->rng * 1664525u + 1013904223u;
  unsigned r = js->rng;
  FILE *f = fopen("/dev/urandom", "rb");
  if(f) {
    if(fread(&r, sizeof(r), 1, f) != 1)
      r = js->rng;
    fclose(f);
  }
  snprintf(id, OTF_JOB_ID_MAX, "j%012llx%08x", (unsigned long long)otf_now_ms(), r);
}

typedef struct create_args {
  const char *spec, *key;
  size_t max_queued;
  char *id;
} create_args;

static otf_status create_tx(otf_jobstore *js, void *arg, otf_error *err) {
  create_args *a = arg;
  sqlite3_stmt *s;
  otf_status rc = prep(js, Q_COUNT_QUEUED, &s, err);
  if(rc != OTF_OK)
    return rc;
  if(sqlite3_step(s) != SQLITE_ROW) {
    sqlite3_reset(s);
    return db_fail(js, err, "count queued jobs");
  }
  int64_t queued = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  if(a->max_queued && (size_t)queued >= a->max_queued)
    return OTF_FAIL(err, OTF_E_BUSY, NULL, "the queue is full (%lld jobs waiting)",
                    (long long)queued);
  new_id(js, a->id);
  if((rc = prep(js, Q_INSERT, &s, err)) != OTF_OK)
    return rc;
  sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, a->spec, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, otf_now_ms());
  if((rc = run(js, s, "insert job", err)) != OTF_OK)
    return rc;
  if(state_event(js, a->id, OTF_JOB_QUEUED, NULL) != 0)
    return db_fail(js, err, "record the queued state");
  if(!a->key)
    return OTF_OK;
  if((rc = prep(js, Q_IDEM_BIND, &s, err)) != OTF_OK)
    return rc;
  sqlite3_bind_text(s, 1, a->key, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, a->id, -1, SQLITE_STATIC);
  return run(js, s, "bind idempotency key", err);
}

otf_status otf_jobstore_create(otf_jobstore *js, const char *spec_json, const char *idem_key,
                               size_t max_queued, char id[OTF_JOB_ID_MAX], otf_error *err) {
  char nid[OTF_JOB_ID_MAX];
  create_args a = {spec_json, idem_key, max_queued, nid};
  otf_status rc = in_tx(js, create_tx, &a, err);
  snprintf(id, OTF_JOB_ID_MAX, "%s", rc == OTF_OK ? nid : "");
  return rc;
}

otf_status otf_jobstore_get(otf_jobstore *js, const char *id, json_t **row, otf_error *err) {
  pthread_mutex_lock(&js->mu);
  otf_status rc = get_locked(js, id, row, err);
  pthread_mutex_unlock(&js->mu);
  return rc;
}

otf_status otf_jobstore_list(otf_jobstore *js, unsigned status_mask, int64_t before,
                             size_t limit, json_t **rows, int64_t *next, otf_error *err) {
  *rows = NULL;
  *next = 0;
  char sql[512];
  char in[64] = "";
  size_t o = 0;
  for(int i = 0; i < OTF_JOB_STATUS_COUNT; i++)
    if(status_mask & (1u << i))
      o += (size_t)snprintf(in + o, sizeof(in) - o, "%s%d", o ? "," : "", i);
  snprintf(sql, sizeof(sql), "SELECT " JOB_COLS " FROM jobs WHERE seq < ?1 %s%s%s "
           "ORDER BY seq DESC LIMIT ?2",
           o ? "AND status IN (" : "", in, o ? ")" : "");
  pthread_mutex_lock(&js->mu);
  sqlite3_stmt *s = NULL;
  otf_status rc = OTF_OK;
  json_t *a = json_array();
  if(!a || sqlite3_prepare_v2(js->db, sql, -1, &s, NULL) != SQLITE_OK) {
    rc = db_fail(js, err, "list jobs");
    goto out;
  }
  sqlite3_bind_int64(s, 1, before > 0 ? before : INT64_MAX);
  sqlite3_bind_int64(s, 2, (sqlite3_int64)limit + 1);
  int step;
  size_t n = 0;
  while((step = sqlite3_step(s)) == SQLITE_ROW) {
    if(n == limit) { /* one more exists: the cursor continues below the last */
      *next = json_integer_value(json_object_get(json_array_get(a, n - 1), "seq"));
      break;
    }
    json_t *r = job_row(s);
    if(!r) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the job list");
      goto out;
    }
    json_array_append_new(a, r);
    n++;
  }
  if(step != SQLITE_ROW && step != SQLITE_DONE) {
    rc = db_fail(js, err, "list jobs");
    goto out;
  }
  for(size_t i = 0; i < n; i++) {
    json_t *r = json_array_get(a, i);
    if(attach_artifacts(js, r, json_string_value(json_object_get(r, "id"))) != 0) {
      rc = db_fail(js, err, "list artifacts");
      goto out;
    }
  }
out:
  sqlite3_finalize(s);
  pthread_mutex_unlock(&js->mu);
  if(rc == OTF_OK)
    *rows = a;
  else
    json_decref(a);
  return rc;
}

static otf_status claim_tx(otf_jobstore *js, void *arg, otf_error *err) {
  json_t **row = arg;
  sqlite3_stmt *s;
  otf_status rc = prep(js, Q_OLDEST_QUEUED, &s, err);
  if(rc != OTF_OK)
    return rc;
  int step = sqlite3_step(s);
  char id[OTF_JOB_ID_MAX];
  if(step == SQLITE_ROW)
    snprintf(id, sizeof(id), "%s", (const char *)sqlite3_column_text(s, 0));
  sqlite3_reset(s);
  if(step != SQLITE_ROW)
    return step == SQLITE_DONE ? OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "no queued job")
                               : db_fail(js, err, "find a queued job");
  if((rc = prep(js, Q_START, &s, err)) != OTF_OK)
    return rc;
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, otf_now_ms());
  if((rc = run(js, s, "start job", err)) != OTF_OK)
    return rc;
  if(state_event(js, id, OTF_JOB_RUNNING, NULL) != 0)
    return db_fail(js, err, "record the running state");
  return get_locked(js, id, row, err);
}

otf_status otf_jobstore_claim(otf_jobstore *js, json_t **row, otf_error *err) {
  *row = NULL;
  otf_status rc = in_tx(js, claim_tx, row, err);
  if(rc != OTF_OK) {
    json_decref(*row);
    *row = NULL;
  }
  return rc;
}

otf_status otf_jobstore_progress(otf_jobstore *js, const char *id, const char *stage,
                                 double fraction, int layer, int layers, double eta_s,
                                 otf_error *err) {
  pthread_mutex_lock(&js->mu);
  otf_status rc = OTF_OK;
  sqlite3_stmt *s = stmt(js, Q_PROGRESS);
  if(!s) {
    rc = db_fail(js, err, "prepare");
  } else {
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if(stage)
      sqlite3_bind_text(s, 2, stage, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 3, fraction);
    sqlite3_bind_int(s, 4, layer);
    sqlite3_bind_int(s, 5, layers);
    sqlite3_bind_double(s, 6, eta_s);
    sqlite3_bind_int64(s, 7, otf_now_ms());
    if(exec1(s) != 0)
      rc = db_fail(js, err, "record progress");
  }
  pthread_mutex_unlock(&js->mu);
  return rc;
}

static char *dump_or_null(const json_t *v) {
  return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

typedef struct finish_args {
  const char *id;
  otf_job_status st;
  const char *error, *summary, *why;
} finish_args;

static otf_status finish_tx(otf_jobstore *js, void *arg, otf_error *err) {
  finish_args *a = arg;
  sqlite3_stmt *s;
  otf_status rc = prep(js, Q_FINISH, &s, err);
  if(rc != OTF_OK)
    return rc;
  sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
  sqlite3_bind_int(s, 2, (int)a->st);
  if(a->error)
    sqlite3_bind_text(s, 3, a->error, -1, SQLITE_STATIC);
  if(a->summary)
    sqlite3_bind_text(s, 4, a->summary, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 5, otf_now_ms());
  if((rc = run(js, s, "finish job", err)) != OTF_OK)
    return rc;
  return state_event(js, a->id, a->st, a->why) == 0 ? OTF_OK
                                                     : db_fail(js, err, "record the final state");
}

otf_status otf_jobstore_finish(otf_jobstore *js, const char *id, otf_job_status st,
                               const json_t *error, const json_t *summary, otf_error *err) {
  finish_args a = {id, st, dump_or_null(error), dump_or_null(summary),
                   error ? json_string_value(json_object_get(error, "detail")) : NULL};
  otf_status rc = in_tx(js, finish_tx, &a, err);
  free((char *)a.error);
  free((char *)a.summary);
  return rc;
}

typedef struct requeue_args {
  const char *id, *why;
} requeue_args;

static otf_status requeue_tx(otf_jobstore *js, void *arg, otf_error *err) {
  requeue_args *a = arg;
  sqlite3_stmt *s;
  otf_status rc = prep(js, Q_REQUEUE, &s, err);
  if(rc != OTF_OK)
    return rc;
  sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, otf_now_ms());
  if((rc = run(js, s, "requeue job", err)) != OTF_OK)
    return rc;
  return state_event(js, a->id, OTF_JOB_QUEUED, a->why) == 0
             ? OTF_OK
             : db_fail(js, err, "record the queued state");
}

otf_status otf_jobstore_requeue(otf_jobstore *js, const char *id, const char *why,
                                otf_error *err) {
  requeue_args a = {id, why};
  return in_tx(js, requeue_tx, &a, err);
}

/* The status of a job (store locked), or its error. */
static otf_status status_of(otf_jobstore *js, const char *id, int *st, int *attempt,
                            otf_error *err) {
  *st = status_locked(js, id, attempt);
  if(*st == -1)
    return OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "no job with id '%.64s'", id);
  return *st < 0 ? db_fail(js, err, "read job") : OTF_OK;
}

typedef struct cancel_args {
  const char *id;
  int now_final;
} cancel_args;

static otf_status cancel_tx(otf_jobstore *js, void *arg, otf_error *err) {
  cancel_args *a = arg;
  int st;
  otf_status rc = status_of(js, a->id, &st, NULL, err);
  if(rc != OTF_OK)
    return rc;
  if(otf_job_status_terminal((otf_job_status)st))
    return OTF_FAIL(err, OTF_E_CONFLICT, NULL, "job %.64s has already %s", a->id,
                    otf_job_status_name((otf_job_status)st));
  if(st == OTF_JOB_CANCELLING) /* already asked: nothing changes */
    return OTF_OK;
  otf_job_status to = st == OTF_JOB_QUEUED ? OTF_JOB_CANCELLED : OTF_JOB_CANCELLING;
  if(set_status_locked(js, a->id, to) != 0 || state_event(js, a->id, to, "cancel requested") != 0)
    return db_fail(js, err, "cancel job");
  a->now_final = to == OTF_JOB_CANCELLED;
  return OTF_OK;
}

otf_status otf_jobstore_cancel(otf_jobstore *js, const char *id, int *now_final,
                               otf_error *err) {
  cancel_args a = {id, 0};
  otf_status rc = in_tx(js, cancel_tx, &a, err);
  *now_final = rc == OTF_OK && a.now_final;
  return rc;
}

static otf_status delete_tx(otf_jobstore *js, void *arg, otf_error *err) {
  const char *id = arg;
  int st;
  otf_status rc = status_of(js, id, &st, NULL, err);
  if(rc != OTF_OK)
    return rc;
  if(!otf_job_status_terminal((otf_job_status)st))
    return OTF_FAIL(err, OTF_E_CONFLICT, NULL,
                    "job %.64s is %s; only finished jobs can be deleted (cancel it first)", id,
                    otf_job_status_name((otf_job_status)st));
  static const int dels[] = {Q_DELETE_EVENTS, Q_DELETE_ARTS, Q_DELETE_JOB};
  for(size_t i = 0; i < sizeof(dels) / sizeof(dels[0]) && rc == OTF_OK; i++)
    rc = run_id(js, dels[i], id, "delete job", err);
  return rc;
}

otf_status otf_jobstore_delete(otf_jobstore *js, const char *id, otf_error *err) {
  return in_tx(js, delete_tx, (void *)id, err);
}

typedef struct event_args {
  const char *id, *type;
  const json_t *data;
} event_args;

static otf_status event_tx(otf_jobstore *js, void *arg, otf_error *err) {
  event_args *a = arg;
  return event_locked(js, a->id, a->type, a->data) == 0 ? OTF_OK
                                                         : db_fail(js, err, "append event");
}

otf_status otf_jobstore_event(otf_jobstore *js, const char *id, const char *type,
                              const json_t *data, otf_error *err) {
  event_args a = {id, type, data};
  return in_tx(js, event_tx, &a, err);
}

otf_status otf_jobstore_events(otf_jobstore *js, const char *id, int64_t after, size_t limit,
                               json_t **rows, otf_error *err) {
  *rows = NULL;
  pthread_mutex_lock(&js->mu);
  otf_status rc = OTF_OK;
  json_t *a = json_array();
  if(status_locked(js, id, NULL) == -1) {
    rc = OTF_FAIL(err, OTF_E_NOT_FOUND, NULL, "no job with id '%.64s'", id);
    goto out;
  }
  sqlite3_stmt *s = stmt(js, Q_EVENTS);
  if(!s || !a) {
    rc = db_fail(js, err, "prepare");
    goto out;
  }
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, after);
  sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
  int step;
  while((step = sqlite3_step(s)) == SQLITE_ROW)
    json_array_append_new(a, json_pack("{s:I, s:I, s:s, s:o}", "seq",
                                       (json_int_t)sqlite3_column_int64(s, 0), "time",
                                       (json_int_t)sqlite3_column_int64(s, 1), "type",
                                       (const char *)sqlite3_column_text(s, 2), "data",
                                       parsed_or_null(s, 3)));
  sqlite3_reset(s);
  if(step != SQLITE_DONE)
    rc = db_fail(js, err, "read events");
out:
  pthread_mutex_unlock(&js->mu);
  if(rc == OTF_OK)
    *rows = a;
  else
    json_decref(a);
  return rc;
}

typedef struct arts_args {
  const char *id;
  const json_t *items;
} arts_args;

static otf_status arts_tx(otf_jobstore *js, void *arg, otf_error *err) {
  arts_args *a = arg;
  otf_status rc = run_id(js, Q_DELETE_ARTS, a->id, "replace artifacts", err);
  size_t i;
  json_t *it;
  json_array_foreach(a->items, i, it) {
    sqlite3_stmt *s;
    if(rc != OTF_OK || (rc = prep(js, Q_ARTS_PUT, &s, err)) != OTF_OK)
      break;
    sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, json_string_value(json_object_get(it, "name")), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, json_integer_value(json_object_get(it, "size")));
    sqlite3_bind_text(s, 4, json_string_value(json_object_get(it, "sha256")), -1,
                      SQLITE_STATIC);
    rc = run(js, s, "store artifact", err);
  }
  return rc;
}

otf_status otf_jobstore_set_artifacts(otf_jobstore *js, const char *id, const json_t *items,
                                      otf_error *err) {
  arts_args a = {id, items};
  return in_tx(js, arts_tx, &a, err);
}

typedef struct recover_args {
  int max_attempts, requeued, failed;
} recover_args;

static otf_status recover_tx(otf_jobstore *js, void *arg, otf_error *err) {
  recover_args *a = arg;
  sqlite3_stmt *s = NULL;
  json_t *ids = json_array();
  if(!ids || sqlite3_prepare_v2(js->db, "SELECT id, status, attempt FROM jobs "
                                         "WHERE status IN (1, 2) ORDER BY seq",
                                -1, &s, NULL) != SQLITE_OK) {
    json_decref(ids);
    return db_fail(js, err, "recover");
  }
  while(sqlite3_step(s) == SQLITE_ROW)
    json_array_append_new(ids, json_pack("[s,i,i]", (const char *)sqlite3_column_text(s, 0),
                                         sqlite3_column_int(s, 1), sqlite3_column_int(s, 2)));
  sqlite3_finalize(s);
  otf_status rc = OTF_OK;
  json_t *lost = json_pack("{s:s, s:s, s:i, s:s}", "type", "urn:otfuse:problem:e-internal",
                           "title", "Job interrupted", "status", 500, "detail",
                           "the server stopped while the job ran, and its attempts are used up");
  char *lost_text = dump_or_null(lost);
  json_decref(lost);
  size_t i;
  json_t *it;
  json_array_foreach(ids, i, it) {
    const char *id = json_string_value(json_array_get(it, 0));
    int st = (int)json_integer_value(json_array_get(it, 1));
    int attempt = (int)json_integer_value(json_array_get(it, 2));
    if(st == OTF_JOB_CANCELLING) {
      finish_args f = {id, OTF_JOB_CANCELLED, NULL, NULL, "cancelled while the server restarted"};
      rc = finish_tx(js, &f, err);
    } else if(attempt < a->max_attempts) {
      requeue_args q = {id, "the server restarted while the job ran; it runs again"};
      rc = requeue_tx(js, &q, err);
      a->requeued++;
    } else {
      finish_args f = {id, OTF_JOB_FAILED, lost_text, NULL, "interrupted; attempts used up"};
      rc = lost_text ? finish_tx(js, &f, err) : db_fail(js, err, "recover");
      a->failed++;
    }
    if(rc != OTF_OK)
      break;
  }
  free(lost_text);
  json_decref(ids);
  return rc;
}

otf_status otf_jobstore_recover(otf_jobstore *js, int max_attempts, int *requeued, int *failed,
                                otf_error *err) {
  recover_args a = {max_attempts, 0, 0};
  otf_status rc = in_tx(js, recover_tx, &a, err);
  if(requeued)
    *requeued = rc == OTF_OK ? a.requeued : 0;
  if(failed)
    *failed = rc == OTF_OK ? a.failed : 0;
  return rc;
}

otf_status otf_jobstore_counts(otf_jobstore *js, int64_t counts[OTF_JOB_STATUS_COUNT],
                               otf_error *err) {
  memset(counts, 0, sizeof(int64_t) * OTF_JOB_STATUS_COUNT);
  pthread_mutex_lock(&js->mu);
  otf_status rc = OTF_OK;
  sqlite3_stmt *s = stmt(js, Q_COUNTS);
  if(!s) {
    rc = db_fail(js, err, "prepare");
  } else {
    int step;
    while((step = sqlite3_step(s)) == SQLITE_ROW) {
      int st = sqlite3_column_int(s, 0);
      if(st >= 0 && st < OTF_JOB_STATUS_COUNT)
        counts[st] = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if(step != SQLITE_DONE)
      rc = db_fail(js, err, "count jobs");
  }
  pthread_mutex_unlock(&js->mu);
  return rc;
}
