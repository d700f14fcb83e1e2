/* The OpenAPI document (api/openapi.json, embedded by api/openapi.c):
 * it is the file, it parses, every route of the API contract is in it
 * with its path parameters, every $ref resolves, and its schemas accept
 * hand-made good examples (and what the job spec parser produces) and
 * reject bad ones. tests/integration adds real server responses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobspec.h"
#include "api/openapi.h"
#include "tests/support/jsonschema.h"
#include "tests/support/testutil.h"

static json_t *doc;

static void load_doc(void) {
  size_t len = 0;
  const char *text = otf_openapi_json(&len);
  json_error_t e;
  doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
  ck_assert_msg(doc != NULL, "openapi.json: %s (line %d)", e.text, e.line);
}

static void free_doc(void) {
  json_decref(doc);
  doc = NULL;
}

static json_t *js(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);
  ck_assert_msg(v != NULL, "bad test JSON: %s: %s", e.text, text);
  return v;
}

/* Asserts that text is valid (want 1) or invalid (want 0) against ref. */
static void expect(const char *ref, const char *text, int want) {
  json_t *x = js(text);
  char msg[2048];
  int n = tu_schema_check(doc, ref, x, msg, sizeof(msg));
  ck_assert_msg((n == 0) == want, "%s %s %s: %s", ref, want ? "rejects" : "accepts", text, msg);
  json_decref(x);
}

START_TEST(embedded_document_is_the_file) {
  FILE *f = fopen("api/openapi.json", "rb");
  ck_assert_msg(f != NULL, "run from the repository root");
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  size_t len = 0;
  const char *text = otf_openapi_json(&len);
  ck_assert_uint_eq(len, n);
  ck_assert_int_eq(memcmp(text, buf, n), 0);
  ck_assert_int_eq(text[len], 0);
  ck_assert_ptr_eq(otf_openapi_json(NULL), text);
}
END_TEST

START_TEST(document_shape) {
  ck_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
  json_t *info = json_object_get(doc, "info");
  ck_assert_str_eq(json_string_value(json_object_get(info, "title")), "otfused");
  ck_assert_ptr_nonnull(json_string_value(json_object_get(info, "version")));
  json_t *bearer = json_object_get(json_object_get(json_object_get(doc, "components"),
                                                   "securitySchemes"), "bearerAuth");
  ck_assert_str_eq(json_string_value(json_object_get(bearer, "scheme")), "bearer");
}
END_TEST

static const struct {
  const char *method, *path;
  const char *ok; /* the contract's success status */
} routes[] = {
    {"get", "/livez", "200"},
    {"get", "/readyz", "200"},
    {"get", "/metrics", "200"},
    {"get", "/openapi.json", "200"},
    {"get", "/v1/version", "200"},
    {"post", "/v1/jobs", "201"},
    {"get", "/v1/jobs", "200"},
    {"post", "/v1/jobs:validate", "200"},
    {"get", "/v1/jobs/{id}", "200"},
    {"delete", "/v1/jobs/{id}", "204"},
    {"post", "/v1/jobs/{id}/cancel", "202"},
    {"get", "/v1/jobs/{id}/events", "200"},
    {"get", "/v1/jobs/{id}/artifacts", "200"},
    {"get", "/v1/jobs/{id}/artifacts/{name}", "200"},
    {"get", "/", "200"},
    {"get", "/ui/{asset}", "200"},
};

/* Is {name} declared as a required path parameter in params (array of
 * parameter objects or $refs)? */
static int declares(json_t *params, const char *name) {
  for(size_t i = 0; i < json_array_size(params); i++) {
    const json_t *p = json_array_get(params, i);
    const json_t *r = json_object_get(p, "$ref");
    if(r)
      p = tu_schema_resolve(doc, json_string_value(r));
    if(p && !strcmp(json_string_value(json_object_get(p, "in")), "path") &&
       !strcmp(json_string_value(json_object_get(p, "name")), name) &&
       json_is_true(json_object_get(p, "required")))
      return 1;
  }
  return 0;
}

START_TEST(every_contract_route_is_described) {
  json_t *paths = json_object_get(doc, "paths");
  size_t nroutes = sizeof(routes) / sizeof(*routes), nops = 0;
  for(size_t i = 0; i < nroutes; i++) {
    json_t *item = json_object_get(paths, routes[i].path);
    ck_assert_msg(item != NULL, "path %s missing", routes[i].path);
    json_t *op = json_object_get(item, routes[i].method);
    ck_assert_msg(op != NULL, "%s %s missing", routes[i].method, routes[i].path);
    json_t *resp = json_object_get(op, "responses");
    ck_assert_msg(json_object_get(resp, routes[i].ok) != NULL, "%s %s has no %s response",
                  routes[i].method, routes[i].path, routes[i].ok);
    /* every {param} of the template is declared */
    for(const char *p = strchr(routes[i].path, '{'); p; p = strchr(p + 1, '{')) {
      char name[32];
      size_t n = strcspn(p + 1, "}");
      ck_assert_uint_lt(n, sizeof(name));
      memcpy(name, p + 1, n);
      name[n] = 0;
      ck_assert_msg(declares(json_object_get(item, "parameters"), name) ||
                        declares(json_object_get(op, "parameters"), name),
                    "%s %s does not declare {%s}", routes[i].method, routes[i].path, name);
    }
  }
  /* and nothing else: every operation in the document is a contract route,
   * with a unique operationId */
  const char *path, *method;
  json_t *item, *op;
  json_t *ids = json_object();
  json_object_foreach(paths, path, item) {
    json_object_foreach(item, method, op) {
      if(!strcmp(method, "parameters"))
        continue;
      size_t k = 0;
      while(k < nroutes && (strcmp(routes[k].path, path) || strcmp(routes[k].method, method)))
        k++;
      ck_assert_msg(k < nroutes, "%s %s is not in the contract", method, path);
      const char *id = json_string_value(json_object_get(op, "operationId"));
      ck_assert_msg(id != NULL, "%s %s has no operationId", method, path);
      ck_assert_msg(json_object_get(ids, id) == NULL, "operationId %s used twice", id);
      json_object_set_new(ids, id, json_true());
      nops++;
    }
  }
  json_decref(ids);
  ck_assert_uint_eq(nops, nroutes);
  /* probes, metrics, this document, the version and the dashboard need no
   * token (as otfused serves them); everything under /v1/jobs does */
  static const char *const open_paths[] = {"/livez", "/readyz",      "/metrics", "/openapi.json",
                                           "/v1/version", "/",       "/ui/{asset}"};
  for(size_t i = 0; i < sizeof(open_paths) / sizeof(*open_paths); i++) {
    json_t *sec = json_object_get(json_object_get(json_object_get(paths, open_paths[i]), "get"),
                                  "security");
    ck_assert_msg(json_is_array(sec) && json_array_size(sec) == 0, "%s needs a token",
                  open_paths[i]);
  }
  json_object_foreach(paths, path, item) {
    if(strncmp(path, "/v1/jobs", 8))
      continue;
    json_object_foreach(item, method, op) {
      if(!strcmp(method, "parameters"))
        continue;
      ck_assert_msg(json_object_get(op, "security") == NULL, "%s %s skips the token", method, path);
      ck_assert_msg(json_object_get(json_object_get(op, "responses"), "401") != NULL,
                    "%s %s has no 401", method, path);
    }
  }
}
END_TEST

/* Walks v and checks that every "$ref" string resolves; counts them. */
static size_t check_refs(json_t *v, const char *where) {
  size_t n = 0;
  if(json_is_object(v)) {
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
      if(!strcmp(k, "$ref") && json_is_string(m)) {
        ck_assert_msg(tu_schema_resolve(doc, json_string_value(m)) != NULL,
                      "%s: $ref %s does not resolve", where, json_string_value(m));
        n++;
      } else {
        n += check_refs(m, k);
      }
    }
  } else if(json_is_array(v)) {
    for(size_t i = 0; i < json_array_size(v); i++)
      n += check_refs(json_array_get(v, i), where);
  }
  return n;
}

START_TEST(every_ref_resolves) {
  ck_assert_uint_gt(check_refs(doc, "#"), 50);
}
END_TEST

#define SPEC "#/components/schemas/JobSpec"
#define M2 "\"models\":[{\"uri\":\"file:///m/a/\"},{\"uri\":\"s3://b/m/\"}]"

START_TEST(jobspec_schema) {
  expect(SPEC, "{" M2 "}", 1);
  expect(SPEC,
         "{" M2 ",\"method\":\"ot\",\"ot\":{\"align\":\"activations\",\"solver\":\"exact\","
         "\"reg\":\"auto\",\"residual\":\"weighted-scalar\",\"qk\":\"heads\",\"anchor\":\"auto\","
         "\"weights\":[1,2.5],\"metric\":\"cosine\",\"cost_norm\":\"none\",\"unit_rows\":false,"
         "\"maps\":\"reference\",\"components\":[\"attn\",\"mlp\"],\"tokens\":\"window-6\"},"
         "\"calibration\":{\"uri\":\"file:///c.safetensors\",\"samples\":50,\"seed\":3},"
         "\"output\":{\"uri\":\"s3://b/out/\",\"dtype\":\"bf16\"},\"metadata\":{\"k\":[1]}}",
         1);
  expect(SPEC, "{" M2 ",\"calibration\":null,\"output\":null,\"metadata\":null}", 1);
  expect(SPEC, "{" M2 ",\"output\":{\"uri\":null,\"dtype\":null}}", 1);
  expect(SPEC, "{" M2 ",\"ot\":{\"reg\":0.5,\"anchor\":1}}", 1);
  /* bad */
  expect(SPEC, "{}", 0);
  expect(SPEC, "[]", 0);
  expect(SPEC, "{\"models\":[{\"uri\":\"file:///m/a/\"}]}", 0);
  expect(SPEC, "{\"models\":[\"file:///a\",\"file:///b\"]}", 0);
  expect(SPEC, "{\"models\":[{\"uri\":\"a\"},{\"uri\":\"\"}]}", 0);
  expect(SPEC, "{\"models\":[{\"uri\":\"a\"},{\"url\":\"b\"}]}", 0);
  expect(SPEC, "{" M2 ",\"extra\":1}", 0);
  expect(SPEC, "{" M2 ",\"method\":\"sum\"}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"reg\":0}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"reg\":\"0.1\"}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"anchor\":-1}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"anchor\":1.5}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"weights\":[1,-1]}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"components\":[]}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"components\":[\"ffn\"]}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"unit_rows\":1}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":{\"mode\":\"x\"}}", 0);
  expect(SPEC, "{" M2 ",\"ot\":null}", 0);
  expect(SPEC, "{" M2 ",\"calibration\":{\"samples\":-1}}", 0);
  expect(SPEC, "{" M2 ",\"calibration\":{\"samples\":1000001}}", 0);
  expect(SPEC, "{" M2 ",\"calibration\":{\"seed\":1.5}}", 0);
  expect(SPEC, "{" M2 ",\"output\":{\"dtype\":\"f64\"}}", 0);
  expect(SPEC, "{" M2 ",\"metadata\":[1]}", 0);
}
END_TEST

/* The schema and the parser agree: what the schema rejects the parser
 * rejects, what the parser accepts the schema accepts, and the parser's
 * normalised spec is a valid JobSpec. (The parser also applies
 * cross-field rules the schema cannot state.) */
START_TEST(schema_and_parser_agree) {
  static const char *const bodies[] = {
      "{" M2 "}",
      "{" M2 ",\"method\":\"average\",\"output\":{\"dtype\":\"f16\"}}",
      "{" M2 ",\"ot\":{\"align\":\"activations\",\"anchor\":\"auto\",\"reg\":\"auto\","
      "\"tokens\":\"cls\"},\"calibration\":{\"uri\":\"file:///c\"},\"metadata\":{\"a\":1}}",
      "{" M2 ",\"ot\":{\"weights\":[3,1],\"components\":[\"head\",\"embed\"]}}",
      "{" M2 ",\"ot\":{\"reg\":0}}",
      "{" M2 ",\"ot\":{\"anchor\":-1}}",
      "{" M2 ",\"ot\":{\"qk\":\"joint\"}}",
      "{" M2 ",\"calibration\":{\"seed\":-1}}",
      "{" M2 ",\"output\":{\"dtype\":\"F32\"}}",
      "{" M2 ",\"x\":{}}",
      "{\"models\":[{\"uri\":\"a\"}]}",
      "{\"models\":[{\"uri\":\"a\"},{\"uri\":\"b\",\"sha\":\"1\"}]}",
      NULL};
  for(int i = 0; bodies[i]; i++) {
    json_t *x = js(bodies[i]);
    char msg[1024];
    int schema_ok = tu_schema_check(doc, SPEC, x, msg, sizeof(msg)) == 0;
    otf_jobspec s;
    otf_error err;
    int parse_ok = otf_jobspec_parse(&s, bodies[i], strlen(bodies[i]), 16, NULL, &err) == OTF_OK;
    ck_assert_msg(schema_ok == parse_ok, "%s: schema %s (%s), parser %s (%s)", bodies[i],
                  schema_ok ? "accepts" : "rejects", msg, parse_ok ? "accepts" : "rejects",
                  err.message);
    if(parse_ok) {
      int n = tu_schema_check(doc, SPEC, s.spec, msg, sizeof(msg));
      ck_assert_msg(n == 0, "normalised spec of %s is not a JobSpec: %s", bodies[i], msg);
    }
    otf_jobspec_free(&s);
    json_decref(x);
  }
}
END_TEST

#define JOB "#/components/schemas/Job"
#define LINKS                                                                                  \
  "\"links\":{\"self\":\"/v1/jobs/j1\",\"events\":\"/v1/jobs/j1/events\","                     \
  "\"artifacts\":\"/v1/jobs/j1/artifacts\",\"cancel\":\"/v1/jobs/j1/cancel\"}"
#define QUEUED                                                                                 \
  "\"id\":\"j1\",\"status\":\"queued\",\"stage\":null,"                                        \
  "\"progress\":{\"fraction\":0,\"layer\":null,\"layers\":null,\"eta_seconds\":null},"         \
  "\"created_at\":\"2026-12-04T23:00:00Z\",\"started_at\":null,\"finished_at\":null,"          \
  "\"updated_at\":\"2026-12-04T23:00:00Z\",\"attempt\":0,\"spec\":{" M2 "},\"metadata\":{},"   \
  "\"error\":null,\"artifacts\":[],\"summary\":null," LINKS
#define SHA "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""

START_TEST(job_schema) {
  expect(JOB, "{" QUEUED "}", 1);
  expect(JOB,
         "{\"id\":\"j1\",\"status\":\"succeeded\",\"stage\":null,"
         "\"progress\":{\"fraction\":1,\"layer\":4,\"layers\":4,\"eta_seconds\":0},"
         "\"created_at\":\"2026-12-04T23:00:00Z\",\"started_at\":\"2026-12-04T23:00:01Z\","
         "\"finished_at\":\"2026-12-04T23:00:02.250Z\",\"updated_at\":\"2026-12-04T23:00:02Z\","
         "\"attempt\":1,\"spec\":{" M2 "},\"metadata\":{\"run\":7},\"error\":null,"
         "\"artifacts\":[{\"name\":\"model.safetensors\",\"size\":123,\"sha256\":" SHA ","
         "\"href\":\"/v1/jobs/j1/artifacts/model.safetensors\"}],"
         "\"summary\":{\"parameters\":1000,\"seconds\":0.8}," LINKS "}",
         1);
  expect(JOB,
         "{\"id\":\"j1\",\"status\":\"running\",\"stage\":\"aligning\","
         "\"progress\":{\"fraction\":0.5,\"layer\":2,\"layers\":4,\"eta_seconds\":1.5},"
         "\"created_at\":\"2026-12-04T23:00:00Z\",\"started_at\":\"2026-12-04T23:00:01Z\","
         "\"finished_at\":null,\"updated_at\":\"2026-12-04T23:00:02Z\",\"attempt\":1,"
         "\"spec\":{" M2 "},\"metadata\":{},\"error\":null,\"artifacts\":[],\"summary\":null,"
         LINKS "}",
         1);
  expect(JOB,
         "{\"id\":\"j1\",\"status\":\"failed\",\"stage\":null,"
         "\"progress\":{\"fraction\":0.1,\"layer\":null,\"layers\":null,\"eta_seconds\":null},"
         "\"created_at\":\"2026-12-04T23:00:00Z\",\"started_at\":\"2026-12-04T23:00:01Z\","
         "\"finished_at\":\"2026-12-04T23:00:02Z\",\"updated_at\":\"2026-12-04T23:00:02Z\","
         "\"attempt\":2,\"spec\":{" M2 "},\"metadata\":{},"
         "\"error\":{\"type\":\"about:blank\",\"title\":\"not found\",\"status\":404,"
         "\"detail\":\"file:///m/a/: no config.json\"},"
         "\"artifacts\":[],\"summary\":null," LINKS "}",
         1);
  /* bad */
  expect(JOB, "{" QUEUED ",\"extra\":1}", 0);
  expect(JOB, "{\"id\":\"j1\"}", 0);
  static const char *const swaps[][2] = {
      {"\"status\":\"queued\"", "\"status\":\"waiting\""},
      {"\"stage\":null", "\"stage\":\"thinking\""},
      {"\"fraction\":0", "\"fraction\":1.5"},
      {"\"fraction\":0", "\"fraction\":-0.1"},
      {"\"layer\":null", "\"layer\":-1"},
      {"\"created_at\":\"2026-12-04T23:00:00Z\"", "\"created_at\":null"},
      {"\"attempt\":0", "\"attempt\":\"0\""},
      {"\"spec\":{" M2 "}", "\"spec\":{}"},
      {"\"metadata\":{}", "\"metadata\":null"},
      {"\"error\":null", "\"error\":\"boom\""},
      {"\"error\":null", "\"error\":{\"title\":\"x\"}"},
      {"\"artifacts\":[]", "\"artifacts\":[{\"name\":\"a\",\"size\":1,\"sha256\":\"abc\",\"href\":\"/x\"}]"},
      {"\"artifacts\":[]", "\"artifacts\":[{\"name\":\"a\",\"size\":-1,\"sha256\":" SHA ",\"href\":\"/x\"}]"},
      {"\"summary\":null", "\"summary\":\"done\""},
      {"\"cancel\":\"/v1/jobs/j1/cancel\"", "\"kill\":\"/v1/jobs/j1/cancel\""},
  };
  const char *good = "{" QUEUED "}";
  for(size_t i = 0; i < sizeof(swaps) / sizeof(*swaps); i++) {
    const char *at = strstr(good, swaps[i][0]);
    ck_assert_msg(at != NULL, "swap %zu does not apply", i);
    char buf[4096];
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - good), good, swaps[i][1],
             at + strlen(swaps[i][0]));
    expect(JOB, buf, 0);
  }
}
END_TEST

START_TEST(lists_events_artifacts_schemas) {
  expect("#/components/schemas/JobList", "{\"items\":[],\"next\":null}", 1);
  expect("#/components/schemas/JobList", "{\"items\":[{" QUEUED "}],\"next\":\"c2\"}", 1);
  expect("#/components/schemas/JobList", "{\"items\":[{" QUEUED "}]}", 0);
  expect("#/components/schemas/JobList", "{\"items\":[{\"id\":\"j\"}],\"next\":null}", 0);
  expect("#/components/schemas/JobList", "{\"items\":[],\"next\":5}", 0);

  const char *ev = "#/components/schemas/EventList";
  expect(ev,
         "{\"items\":[{\"seq\":1,\"time\":\"2026-12-04T23:00:00Z\",\"type\":\"state\","
         "\"data\":{\"status\":\"running\",\"stage\":\"loading\"}},"
         "{\"seq\":2,\"time\":\"2026-12-04T23:00:01Z\",\"type\":\"map\",\"data\":{\"parent\":1,"
         "\"tensor\":\"vit.encoder.layer.0.attention.attention.query.weight\",\"space\":\"qk\","
         "\"layer\":0,\"shape\":[64,64],\"method\":\"sinkhorn\",\"iterations\":120,"
         "\"marginal_error\":1e-9,\"cost\":0.31,\"sharpness\":0.87,\"seconds\":0.002}},"
         "{\"seq\":3,\"time\":\"2026-12-04T23:00:02Z\",\"type\":\"warning\",\"data\":{\"detail\":\"x\"}},"
         "{\"seq\":4,\"time\":\"2026-12-04T23:00:02Z\",\"type\":\"log\",\"data\":{}}],"
         "\"next_after\":4}",
         1);
  expect(ev, "{\"items\":[],\"next_after\":0}", 1);
  /* otfused's state events: no stage while there is none, a reason on failure */
  expect(ev,
         "{\"items\":[{\"seq\":1,\"time\":\"2026-12-04T23:00:00Z\",\"type\":\"state\","
         "\"data\":{\"status\":\"queued\"}},{\"seq\":2,\"time\":\"2026-12-04T23:00:01Z\","
         "\"type\":\"state\",\"data\":{\"status\":\"failed\",\"reason\":\"no config.json\"}}],"
         "\"next_after\":2}",
         1);
  expect(ev,
         "{\"items\":[{\"seq\":1,\"time\":\"2026-12-04T23:00:00Z\",\"type\":\"state\","
         "\"data\":{\"stage\":\"loading\"}}],\"next_after\":1}",
         0);
  expect(ev, "{\"items\":[]}", 0);
  /* a map event without its cost */
  expect(ev,
         "{\"items\":[{\"seq\":2,\"time\":\"2026-12-04T23:00:01Z\",\"type\":\"map\",\"data\":{"
         "\"parent\":1,\"tensor\":\"t\",\"space\":\"qk\",\"layer\":0,\"shape\":[64,64],"
         "\"method\":\"sinkhorn\",\"iterations\":120,\"marginal_error\":0,\"sharpness\":0.87,"
         "\"seconds\":0.002}}],\"next_after\":2}",
         0);
  /* a state event with an unknown status, an unknown type, seq 0 */
  expect(ev,
         "{\"items\":[{\"seq\":1,\"time\":\"2026-12-04T23:00:00Z\",\"type\":\"state\","
         "\"data\":{\"status\":\"paused\",\"stage\":null}}],\"next_after\":1}",
         0);
  expect(ev,
         "{\"items\":[{\"seq\":1,\"time\":\"2026-12-04T23:00:00Z\",\"type\":\"debug\","
         "\"data\":{}}],\"next_after\":1}",
         0);
  expect(ev,
         "{\"items\":[{\"seq\":0,\"time\":\"2026-12-04T23:00:00Z\",\"type\":\"log\","
         "\"data\":{}}],\"next_after\":1}",
         0);

  const char *al = "#/components/schemas/ArtifactList";
  expect(al,
         "{\"items\":[{\"name\":\"config.json\",\"size\":812,\"sha256\":" SHA ","
         "\"href\":\"/v1/jobs/j1/artifacts/config.json\"}]}",
         1);
  expect(al, "{\"items\":[{\"name\":\"config.json\",\"size\":812,\"sha256\":" SHA "}]}", 0);
  expect(al, "{\"artifacts\":[]}", 0);
}
END_TEST

START_TEST(problem_validation_version_health_schemas) {
  const char *hp = "#/components/schemas/HttpProblem";
  expect(hp,
         "{\"type\":\"https://otfuse.dev/problems/invalid\",\"title\":\"invalid argument\","
         "\"status\":400,\"detail\":\"reg must be > 0, got 0\",\"instance\":\"/v1/jobs\","
         "\"request_id\":\"r-1\",\"pointer\":\"/ot/reg\",\"errors\":[{\"pointer\":\"/ot/reg\","
         "\"detail\":\"reg must be > 0, got 0\"}]}",
         1);
  expect(hp,
         "{\"type\":\"about:blank\",\"title\":\"authentication required\",\"status\":401,"
         "\"detail\":\"a bearer token is required\",\"instance\":\"/v1/jobs\",\"request_id\":\"r\"}",
         1);
  expect(hp,
         "{\"type\":\"about:blank\",\"title\":\"x\",\"status\":401,\"detail\":\"d\","
         "\"instance\":\"/v1/jobs\"}",
         0);
  expect(hp,
         "{\"type\":\"about:blank\",\"title\":\"x\",\"status\":700,\"detail\":\"d\","
         "\"instance\":\"/\",\"request_id\":\"r\"}",
         0);
  expect(hp,
         "{\"type\":\"about:blank\",\"title\":\"x\",\"status\":400,\"detail\":\"d\","
         "\"instance\":\"/\",\"request_id\":\"r\",\"errors\":[{\"pointer\":\"/a\"}]}",
         0);
  expect("#/components/schemas/Problem", "{\"title\":\"x\",\"status\":500,\"detail\":\"d\"}", 0);

  const char *va = "#/components/schemas/Validation";
  expect(va,
         "{\"valid\":true,\"models\":[{\"uri\":\"file:///m/a/\",\"architecture\":"
         "\"ViTForImageClassification\",\"hidden_size\":64,\"layers\":4,\"parameters\":210000},"
         "{\"uri\":\"file:///m/b/\",\"architecture\":\"ViTForImageClassification\","
         "\"hidden_size\":64,\"layers\":4,\"parameters\":210000}],\"parameters\":210000,"
         "\"estimate\":{\"seconds\":0.7,\"peak_bytes\":5000000},\"warnings\":[]}",
         1);
  /* with the normalised spec (what otfused adds), which must be a JobSpec */
  expect(va,
         "{\"valid\":true,\"models\":[],\"parameters\":0,\"estimate\":{\"seconds\":0,"
         "\"peak_bytes\":0},\"warnings\":[\"w\"],\"spec\":{" M2 ",\"method\":\"ot\"}}",
         1);
  expect(va,
         "{\"valid\":true,\"models\":[],\"parameters\":0,\"estimate\":{\"seconds\":0,"
         "\"peak_bytes\":0},\"warnings\":[],\"spec\":{\"models\":[]}}",
         0);
  expect(va,
         "{\"valid\":false,\"models\":[],\"parameters\":0,\"estimate\":{\"seconds\":0,"
         "\"peak_bytes\":0},\"warnings\":[]}",
         0);
  expect(va, "{\"valid\":true,\"models\":[],\"parameters\":0,\"warnings\":[]}", 0);

  expect("#/components/schemas/Version", "{\"name\":\"otfused\",\"version\":\"0.1.0\"}", 1);
  expect("#/components/schemas/Version", "{\"name\":\"otfuse\",\"version\":\"0.1.0\"}", 0);
  expect("#/components/schemas/Health", "{\"status\":\"ok\"}", 1);
  expect("#/components/schemas/Health", "{}", 0);
}
END_TEST

/* test_openapi --validate SCHEMA FILE...: checks each JSON file (a real
 * response saved by an integration test) against
 * #/components/schemas/SCHEMA of the embedded document; prints one line
 * per file and exits 1 if any does not conform. */
static int validate_files(int argc, char **argv) {
  if(argc < 4) {
    fprintf(stderr, "usage: test_openapi --validate SCHEMA FILE...\n");
    return 2;
  }
  size_t len = 0;
  const char *text = otf_openapi_json(&len);
  json_t *d = json_loadb(text, len, 0, NULL);
  char ref[256], msg[4096];
  snprintf(ref, sizeof(ref), "#/components/schemas/%s", argv[2]);
  if(!d || !tu_schema_resolve(d, ref)) {
    fprintf(stderr, "test_openapi: no schema %s\n", ref);
    json_decref(d);
    return 2;
  }
  int bad = 0;
  for(int i = 3; i < argc; i++) {
    json_error_t e;
    json_t *x = json_load_file(argv[i], 0, &e);
    if(!x) {
      printf("%s: not JSON: %s\n", argv[i], e.text);
      bad = 1;
      continue;
    }
    int n = tu_schema_check(d, ref, x, msg, sizeof(msg));
    printf("%s: %s %s%s%s\n", argv[i], argv[2], n ? "INVALID" : "ok", n ? ": " : "", n ? msg : "");
    bad |= n != 0;
    json_decref(x);
  }
  json_decref(d);
  return bad;
}

int main(int argc, char **argv) {
  if(argc > 1 && !strcmp(argv[1], "--validate"))
    return validate_files(argc, argv);
  Suite *s = suite_create("openapi");
  TCase *tc = tcase_create("document");
  tcase_add_checked_fixture(tc, load_doc, free_doc);
  tcase_add_test(tc, embedded_document_is_the_file);
  tcase_add_test(tc, document_shape);
  tcase_add_test(tc, every_contract_route_is_described);
  tcase_add_test(tc, every_ref_resolves);
  tcase_add_test(tc, jobspec_schema);
  tcase_add_test(tc, schema_and_parser_agree);
  tcase_add_test(tc, job_schema);
  tcase_add_test(tc, lists_events_artifacts_schemas);
  tcase_add_test(tc, problem_validation_version_health_schemas);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
