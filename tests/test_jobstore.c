/* The SQLite job store (storage/jobstore.h): the lifecycle of a job,
 * events in order, idempotency keys (replay, other body, in flight), the
 * queue bound, cancel and delete rules, cursor pagination, and recovery
 * after a process died with jobs running — reopened from the same file. */
#include <stdio.h>
#include <string.h>

#include "storage/jobstore.h"
#include "tests/support/testutil.h"

static otf_jobstore *open_store(void) {
  otf_jobstore *js = NULL;
  otf_error e;
  ck_assert_msg(otf_jobstore_open(&js, tu_scratch_path("jobs.db"), &e) == OTF_OK, "%s",
                e.message);
  return js;
}

static void create(otf_jobstore *js, char id[OTF_JOB_ID_MAX]) {
  otf_error e;
  ck_assert_msg(otf_jobstore_create(js, "{\"models\":[]}", NULL, 0, id, &e) == OTF_OK, "%s",
                e.message);
}

static const char *str(json_t *row, const char *k) {
  return json_string_value(json_object_get(row, k));
}

START_TEST(lifecycle) {
  otf_jobstore *js = open_store();
  char id[OTF_JOB_ID_MAX];
  create(js, id);
  json_t *row = NULL;
  otf_error e;
  ck_assert_int_eq(otf_jobstore_get(js, id, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "status"), "queued");
  ck_assert(json_is_object(json_object_get(row, "spec")));
  ck_assert_int_gt(json_integer_value(json_object_get(row, "created_at")), 0);
  json_decref(row);

  ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "id"), id);
  ck_assert_str_eq(str(row, "status"), "running");
  ck_assert_str_eq(str(row, "stage"), "fetching");
  ck_assert_int_eq(json_integer_value(json_object_get(row, "attempt")), 1);
  json_decref(row);
  ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_E_NOT_FOUND);

  ck_assert_int_eq(otf_jobstore_progress(js, id, "aligning", 0.5, 3, 12, 4.0, &e), OTF_OK);
  json_t *m = json_pack("{s:s, s:f}", "tensor", "q", "cost", 1.5);
  ck_assert_int_eq(otf_jobstore_event(js, id, "map", m, &e), OTF_OK);
  json_decref(m);
  json_t *arts = json_pack("[{s:s, s:i, s:s}]", "name", "model.safetensors", "size", 10,
                           "sha256", "ab");
  ck_assert_int_eq(otf_jobstore_set_artifacts(js, id, arts, &e), OTF_OK);
  json_decref(arts);
  json_t *sum = json_pack("{s:i}", "maps", 7);
  ck_assert_int_eq(otf_jobstore_finish(js, id, OTF_JOB_SUCCEEDED, NULL, sum, &e), OTF_OK);
  json_decref(sum);

  ck_assert_int_eq(otf_jobstore_get(js, id, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "status"), "succeeded");
  ck_assert(json_is_null(json_object_get(row, "stage")));
  ck_assert_int_eq(json_integer_value(json_object_get(row, "layer")), 3);
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(row, "summary"), "maps")),
                   7);
  ck_assert_int_eq(json_array_size(json_object_get(row, "artifacts")), 1);
  ck_assert_int_ge(json_integer_value(json_object_get(row, "finished_at")),
                   json_integer_value(json_object_get(row, "started_at")));
  json_decref(row);

  /* events: queued, running, map, succeeded — in order, seq from 1 */
  json_t *ev = NULL;
  ck_assert_int_eq(otf_jobstore_events(js, id, 0, 100, &ev, &e), OTF_OK);
  ck_assert_int_eq(json_array_size(ev), 4);
  const char *want[] = {"state", "state", "map", "state"};
  for(size_t i = 0; i < 4; i++) {
    json_t *x = json_array_get(ev, i);
    ck_assert_int_eq(json_integer_value(json_object_get(x, "seq")), (long long)i + 1);
    ck_assert_str_eq(str(x, "type"), want[i]);
  }
  ck_assert_str_eq(str(json_object_get(json_array_get(ev, 3), "data"), "status"), "succeeded");
  json_decref(ev);
  ck_assert_int_eq(otf_jobstore_events(js, id, 2, 100, &ev, &e), OTF_OK);
  ck_assert_int_eq(json_array_size(ev), 2);
  json_decref(ev);
  ck_assert_int_eq(otf_jobstore_events(js, "jnone", 0, 10, &ev, &e), OTF_E_NOT_FOUND);

  ck_assert_int_eq(otf_jobstore_delete(js, id, &e), OTF_OK);
  ck_assert_int_eq(otf_jobstore_get(js, id, &row, &e), OTF_E_NOT_FOUND);
  otf_jobstore_close(js);
}
END_TEST

START_TEST(idempotency) {
  otf_jobstore *js = open_store();
  char id[OTF_JOB_ID_MAX], got[OTF_JOB_ID_MAX];
  otf_error e;
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k1", "h1", got, &e), OTF_OK);
  ck_assert_str_eq(got, "");
  /* a second request while the first holds the key */
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k1", "h1", got, &e), OTF_E_CONFLICT);
  ck_assert_int_eq(otf_jobstore_create(js, "{}", "k1", 0, id, &e), OTF_OK);
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k1", "h1", got, &e), OTF_OK);
  ck_assert_str_eq(got, id);
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k1", "h2", got, &e), OTF_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(e.message, "different request body"));
  /* a dropped key (the request failed validation) can be used again */
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k2", "h1", got, &e), OTF_OK);
  otf_jobstore_idem_drop(js, "k2");
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k2", "h9", got, &e), OTF_OK);
  ck_assert_str_eq(got, "");
  otf_jobstore_close(js);
  /* a key held by a process that died is released on open */
  js = open_store();
  ck_assert_int_eq(otf_jobstore_idem_begin(js, "k2", "h9", got, &e), OTF_OK);
  ck_assert_str_eq(got, "");
  otf_jobstore_close(js);
}
END_TEST

START_TEST(queue_bound_and_cancel) {
  otf_jobstore *js = open_store();
  char a[OTF_JOB_ID_MAX], b[OTF_JOB_ID_MAX], c[OTF_JOB_ID_MAX];
  otf_error e;
  ck_assert_int_eq(otf_jobstore_create(js, "{}", NULL, 2, a, &e), OTF_OK);
  ck_assert_int_eq(otf_jobstore_create(js, "{}", NULL, 2, b, &e), OTF_OK);
  ck_assert_int_eq(otf_jobstore_create(js, "{}", NULL, 2, c, &e), OTF_E_BUSY);
  ck_assert_str_ne(a, b);
  json_t *row;
  ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "id"), a); /* oldest first */
  json_decref(row);
  int fin = -1;
  ck_assert_int_eq(otf_jobstore_cancel(js, b, &fin, &e), OTF_OK);
  ck_assert_int_eq(fin, 1);
  ck_assert_int_eq(otf_jobstore_cancel(js, a, &fin, &e), OTF_OK);
  ck_assert_int_eq(fin, 0);
  ck_assert_int_eq(otf_jobstore_get(js, a, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "status"), "cancelling");
  json_decref(row);
  ck_assert_int_eq(otf_jobstore_delete(js, a, &e), OTF_E_CONFLICT);
  ck_assert_int_eq(otf_jobstore_cancel(js, b, &fin, &e), OTF_E_CONFLICT);
  ck_assert_int_eq(otf_jobstore_cancel(js, "jnope", &fin, &e), OTF_E_NOT_FOUND);
  int64_t n[OTF_JOB_STATUS_COUNT];
  ck_assert_int_eq(otf_jobstore_counts(js, n, &e), OTF_OK);
  ck_assert_int_eq(n[OTF_JOB_CANCELLING], 1);
  ck_assert_int_eq(n[OTF_JOB_CANCELLED], 1);
  ck_assert_int_eq(n[OTF_JOB_QUEUED], 0);
  otf_jobstore_close(js);
}
END_TEST

START_TEST(pagination) {
  otf_jobstore *js = open_store();
  char ids[7][OTF_JOB_ID_MAX];
  for(int i = 0; i < 7; i++)
    create(js, ids[i]);
  json_t *row;
  otf_error e;
  ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_OK); /* ids[0] runs */
  json_decref(row);
  int64_t cur = 0;
  int seen = 0;
  do {
    json_t *rows;
    ck_assert_int_eq(otf_jobstore_list(js, 0, cur, 3, &rows, &cur, &e), OTF_OK);
    for(size_t i = 0; i < json_array_size(rows); i++) /* newest first */
      ck_assert_str_eq(str(json_array_get(rows, i), "id"), ids[6 - seen++]);
    json_decref(rows);
  } while(cur);
  ck_assert_int_eq(seen, 7);
  json_t *rows;
  ck_assert_int_eq(otf_jobstore_list(js, 1u << OTF_JOB_RUNNING, 0, 10, &rows, &cur, &e),
                   OTF_OK);
  ck_assert_int_eq(json_array_size(rows), 1);
  ck_assert_str_eq(str(json_array_get(rows, 0), "id"), ids[0]);
  ck_assert_int_eq(cur, 0);
  json_decref(rows);
  otf_jobstore_close(js);
}
END_TEST

START_TEST(recovery) {
  otf_jobstore *js = open_store();
  char a[OTF_JOB_ID_MAX], b[OTF_JOB_ID_MAX], c[OTF_JOB_ID_MAX];
  create(js, a);
  create(js, b);
  create(js, c);
  json_t *row;
  otf_error e;
  for(int i = 0; i < 2; i++) { /* a and b run */
    ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_OK);
    json_decref(row);
  }
  /* a already had its attempt: with max 1 attempt it fails; b is cancelling */
  int fin;
  ck_assert_int_eq(otf_jobstore_cancel(js, b, &fin, &e), OTF_OK);
  otf_jobstore_close(js); /* the process "dies" here */

  js = open_store();
  int rq = -1, nf = -1;
  ck_assert_int_eq(otf_jobstore_recover(js, 1, &rq, &nf, &e), OTF_OK);
  ck_assert_int_eq(rq, 0);
  ck_assert_int_eq(nf, 1);
  ck_assert_int_eq(otf_jobstore_get(js, a, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "status"), "failed");
  ck_assert_ptr_nonnull(strstr(str(json_object_get(row, "error"), "detail"), "stopped"));
  json_decref(row);
  ck_assert_int_eq(otf_jobstore_get(js, b, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "status"), "cancelled");
  json_decref(row);
  ck_assert_int_eq(otf_jobstore_get(js, c, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "status"), "queued"); /* untouched */
  json_decref(row);

  /* with attempts left a running job goes back to the queue, and runs again */
  ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "id"), c);
  json_decref(row);
  otf_jobstore_close(js);
  js = open_store();
  ck_assert_int_eq(otf_jobstore_recover(js, 3, &rq, &nf, &e), OTF_OK);
  ck_assert_int_eq(rq, 1);
  ck_assert_int_eq(otf_jobstore_claim(js, &row, &e), OTF_OK);
  ck_assert_str_eq(str(row, "id"), c);
  ck_assert_int_eq(json_integer_value(json_object_get(row, "attempt")), 2);
  json_decref(row);
  otf_jobstore_close(js);
}
END_TEST

START_TEST(bad_path) {
  otf_jobstore *js = NULL;
  otf_error e;
  ck_assert_int_eq(otf_jobstore_open(&js, "/nonexistent/dir/jobs.db", &e), OTF_E_IO);
  ck_assert_ptr_null(js);
  ck_assert_ptr_nonnull(strstr(e.message, "/nonexistent/dir/jobs.db"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("jobstore");
  TCase *tc = tcase_create("jobstore");
  tcase_add_checked_fixture(tc, tu_scratch_setup, tu_scratch_teardown);
  tcase_add_test(tc, lifecycle);
  tcase_add_test(tc, idempotency);
  tcase_add_test(tc, queue_bound_and_cancel);
  tcase_add_test(tc, pagination);
  tcase_add_test(tc, recovery);
  tcase_add_test(tc, bad_path);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
