/* Job spec parsing (api/jobspec.c): defaults, every key, the normalised
 * form parsing back to itself, every kind of bad input with its JSON
 * pointer and status, limits (size, depth, models), the error list, and
 * allocation failures. Also the option names shared with `otfuse fuse`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobspec.h"
#include "common/alloc.h"
#include "common/limits.h"
#include "tests/support/testutil.h"

#define M2 "\"models\":[{\"uri\":\"file:///m/a/\"},{\"uri\":\"file:///m/b/\"}]"

static otf_status parse(otf_jobspec *s, const char *body, json_t **errors, otf_error *err) {
  return otf_jobspec_parse(s, body, strlen(body), OTF_MAX_PARENTS, errors, err);
}

START_TEST(minimal_spec_gets_the_cli_defaults) {
  otf_jobspec s;
  otf_error err;
  json_t *errors = (json_t *)1;
  ck_assert_int_eq(parse(&s, "{" M2 "}", &errors, &err), OTF_OK);
  ck_assert_ptr_null(errors);
  ck_assert_uint_eq(s.n_models, 2);
  ck_assert_str_eq(s.models[0], "file:///m/a/");
  ck_assert_str_eq(s.models[1], "file:///m/b/");
  otf_fuse_opts d;
  otf_fuse_opts_default(&d);
  ck_assert_int_eq(s.opts.method, d.method);
  ck_assert_int_eq(s.opts.align, d.align);
  ck_assert_int_eq(s.opts.solver, d.solver);
  ck_assert_double_eq(s.opts.reg, d.reg);
  ck_assert_int_eq(s.opts.resid, d.resid);
  ck_assert_int_eq(s.opts.qk, d.qk);
  ck_assert_int_eq(s.opts.anchor, 0);
  ck_assert_uint_eq(s.opts.components, OTF_FUSE_ALL);
  ck_assert_uint_eq(s.opts.samples, 200);
  ck_assert_int_eq(s.opts.unit_rows, 1);
  ck_assert_ptr_null(s.opts.calibration);
  ck_assert_ptr_null(s.calibration_uri);
  ck_assert_ptr_null(s.output_uri);
  ck_assert_ptr_null(s.metadata);
  ck_assert_int_eq(s.dtype, OTF_DT_COUNT);
  ck_assert_int_eq(s.anchor_auto, 0);
  ck_assert_int_eq(s.reg_auto, 0);
  /* The normalised spec spells out every default. */
  json_t *want = json_loads(
      "{\"models\":[{\"uri\":\"file:///m/a/\"},{\"uri\":\"file:///m/b/\"}],\"method\":\"ot\","
      "\"ot\":{\"align\":\"weights\",\"solver\":\"sinkhorn\",\"reg\":0.02,\"residual\":\"mean\","
      "\"qk\":\"separate\",\"anchor\":0,\"weights\":[0.5,0.5],\"metric\":\"euclidean\","
      "\"cost_norm\":\"max\",\"unit_rows\":true,\"maps\":\"clean\",\"components\":[\"embed\","
      "\"attn\",\"norm\",\"mlp\",\"bias\",\"head\"],\"tokens\":\"all\"},"
      "\"calibration\":{\"uri\":null,\"samples\":200,\"seed\":0},"
      "\"output\":{\"uri\":null,\"dtype\":null},\"metadata\":{}}",
      0, NULL);
  ck_assert_ptr_nonnull(want);
  char *got = json_dumps(s.spec, JSON_SORT_KEYS);
  ck_assert_msg(json_equal(s.spec, want), "normalised spec: %s", got);
  free(got);
  json_decref(want);
  otf_jobspec_free(&s);
  ck_assert_ptr_null(s.spec);
  otf_jobspec_free(&s); /* twice is fine */
}
END_TEST

static const char *full_spec =
    "{\"models\":[{\"uri\":\"s3://b/m0/\"},{\"uri\":\"file:///m/1/\"},{\"uri\":\"file:///m/2/\"}],"
    "\"method\":\"ot\","
    "\"ot\":{\"align\":\"activations\",\"solver\":\"exact\",\"reg\":0.05,"
    "\"residual\":\"weighted-matrix\",\"qk\":\"heads\",\"anchor\":2,\"weights\":[1,0,3.5],"
    "\"metric\":\"cosine\",\"cost_norm\":\"median\",\"unit_rows\":false,\"maps\":\"reference\","
    "\"components\":[\"mlp\",\"attn\"],\"tokens\":\"window-6\"},"
    "\"calibration\":{\"uri\":\"file:///d/cal.safetensors\",\"samples\":0,\"seed\":99},"
    "\"output\":{\"uri\":\"s3://b/out/\",\"dtype\":\"bf16\"},"
    "\"metadata\":{\"team\":\"vision\",\"run\":[1,{\"x\":null}]}}";

START_TEST(every_key_reaches_the_options) {
  otf_jobspec s;
  otf_error err;
  ck_assert_int_eq(parse(&s, full_spec, NULL, &err), OTF_OK);
  ck_assert_uint_eq(s.n_models, 3);
  ck_assert_str_eq(s.models[0], "s3://b/m0/");
  ck_assert_int_eq(s.opts.method, OTF_METHOD_OT);
  ck_assert_int_eq(s.opts.align, OTF_ALIGN_ACTIVATIONS);
  ck_assert_int_eq(s.opts.solver, OTF_FSOLVER_EXACT);
  ck_assert_double_eq(s.opts.reg, 0.05);
  ck_assert_int_eq(s.opts.resid, OTF_RESID_WMATRIX);
  ck_assert_int_eq(s.opts.qk, OTF_QK_HEADS);
  ck_assert_int_eq(s.opts.anchor, 2);
  ck_assert_double_eq(s.opts.weights[0], 1.0);
  ck_assert_double_eq(s.opts.weights[1], 0.0);
  ck_assert_double_eq(s.opts.weights[2], 3.5);
  ck_assert_int_eq(s.opts.metric, OTF_METRIC_COSINE);
  ck_assert_int_eq(s.opts.cost_norm, OTF_COSTNORM_MEDIAN);
  ck_assert_int_eq(s.opts.unit_rows, 0);
  ck_assert_int_eq(s.opts.tmnorm, OTF_TMNORM_REFERENCE);
  ck_assert_uint_eq(s.opts.components, OTF_FUSE_MLP | OTF_FUSE_ATTN);
  ck_assert_int_eq(s.opts.window, 6);
  ck_assert_uint_eq(s.opts.samples, 0);
  ck_assert_uint_eq(s.opts.seed, 99);
  ck_assert_ptr_null(s.opts.calibration);
  ck_assert_str_eq(s.calibration_uri, "file:///d/cal.safetensors");
  ck_assert_str_eq(s.output_uri, "s3://b/out/");
  ck_assert_int_eq(s.dtype, OTF_DT_BF16);
  ck_assert_ptr_nonnull(s.metadata);
  ck_assert_str_eq(json_string_value(json_object_get(s.metadata, "team")), "vision");
  /* metadata is a copy: changing the spec's does not change it */
  ck_assert(json_object_get(s.spec, "metadata") != s.metadata);
  ck_assert(json_equal(json_object_get(s.spec, "metadata"), s.metadata));
  /* components come back in canonical order */
  json_t *comps = json_object_get(json_object_get(s.spec, "ot"), "components");
  ck_assert_uint_eq(json_array_size(comps), 2);
  ck_assert_str_eq(json_string_value(json_array_get(comps, 0)), "attn");
  ck_assert_str_eq(json_string_value(json_array_get(comps, 1)), "mlp");
  otf_jobspec_free(&s);
}
END_TEST

/* Options equal up to the scale of the weights (none = uniform). */
static int same_opts(const otf_fuse_opts *a, const otf_fuse_opts *b, size_t n) {
  otf_fuse_opts x = *a, y = *b;
  double sx = 0.0, sy = 0.0;
  for(size_t i = 0; i < n; i++) {
    sx += x.weights[i];
    sy += y.weights[i];
  }
  for(size_t i = 0; i < n; i++) {
    x.weights[i] = sx > 0.0 ? x.weights[i] / sx : 1.0 / (double)n;
    y.weights[i] = sy > 0.0 ? y.weights[i] / sy : 1.0 / (double)n;
  }
  return memcmp(&x, &y, sizeof(x)) == 0;
}

/* The normalised spec is a fixed point: parsing it gives the same spec. */
START_TEST(normalised_spec_parses_to_itself) {
  static const char *const specs[] = {
      "{" M2 "}",
      "{" M2 ",\"method\":\"average\",\"output\":null,\"calibration\":null,\"metadata\":null}",
      "{" M2 ",\"ot\":{\"anchor\":\"auto\",\"reg\":\"auto\",\"tokens\":\"cls\"},"
      "\"calibration\":{\"uri\":\"file:///c\"}}",
      "{" M2 ",\"ot\":{\"reg\":1,\"weights\":[2,6]},\"output\":{\"dtype\":\"f16\"}}",
      "{" M2 ",\"finetune\":{\"data_uri\":\"file:///t\",\"steps\":40,\"lr\":0.002}}",
      "{" M2 ",\"finetune\":{\"data_uri\":\"file:///t\",\"eval_uri\":\"file:///e\","
      "\"epochs\":0.5,\"batch\":8,\"augment_shift\":1}}",
      NULL};
  for(int i = 0; specs[i]; i++) {
    otf_jobspec a, b;
    otf_error err;
    ck_assert_msg(parse(&a, specs[i], NULL, &err) == OTF_OK, "spec %d: %s", i, err.message);
    if(i == 3) { /* integer reg is a number; weights kept as given */
      ck_assert_double_eq(a.opts.reg, 1.0);
      ck_assert_double_eq(a.opts.weights[1], 6.0);
    }
    char *text = json_dumps(a.spec, JSON_COMPACT);
    ck_assert_msg(parse(&b, text, NULL, &err) == OTF_OK, "reparse %d: %s: %s", i, err.message,
                  text);
    ck_assert_msg(json_equal(a.spec, b.spec), "spec %d changed on reparse: %s", i, text);
    ck_assert(same_opts(&a.opts, &b.opts, a.n_models));
    ck_assert_int_eq(a.anchor_auto, b.anchor_auto);
    ck_assert_int_eq(a.reg_auto, b.reg_auto);
    ck_assert_int_eq(a.finetune, b.finetune);
    ck_assert(!memcmp(&a.ft, &b.ft, sizeof(a.ft)));
    if(i == 4) {
      ck_assert_uint_eq(a.ft.steps, 40);
      ck_assert(a.ft.epochs == 0.0);
      ck_assert_double_eq(a.ft.lr, 0.002);
      ck_assert_str_eq(a.ft_data_uri, "file:///t");
      ck_assert_ptr_null(a.ft_eval_uri);
    }
    if(i == 5) {
      ck_assert_double_eq(a.ft.epochs, 0.5);
      ck_assert_uint_eq(a.ft.batch, 8);
      ck_assert_str_eq(a.ft_eval_uri, "file:///e");
    }
    if(i == 2) {
      ck_assert_int_eq(a.anchor_auto, 1);
      ck_assert_int_eq(a.opts.anchor, -1);
      ck_assert_int_eq(a.reg_auto, 1);
      ck_assert_double_eq(a.opts.reg, 0.0);
      ck_assert_int_eq(a.opts.window, -1);
    }
    if(i == 1) {
      ck_assert_int_eq(a.opts.method, OTF_METHOD_AVERAGE);
      ck_assert_ptr_null(a.metadata);
    }
    free(text);
    otf_jobspec_free(&a);
    otf_jobspec_free(&b);
  }
}
END_TEST

typedef struct bad_case {
  const char *body;
  otf_status code;
  const char *pointer;
  const char *detail_part; /* substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    /* not a spec at all */
    {"", OTF_E_FORMAT, "", "empty"},
    /* finetune */
    {"{" M2 ",\"finetune\":1}", OTF_E_INVAL, "/finetune", "must be an object"},
    {"{" M2 ",\"finetune\":{}}", OTF_E_INVAL, "/finetune/data_uri", "needs data_uri"},
    {"{" M2 ",\"finetune\":{\"data_uri\":\"file:///d\",\"epochs\":1,\"steps\":5}}",
     OTF_E_INVAL, "/finetune/steps", "not both"},
    {"{" M2 ",\"finetune\":{\"data_uri\":\"file:///d\",\"epochs\":0}}", OTF_E_INVAL,
     "/finetune/epochs", "needs a budget"},
    {"{" M2 ",\"finetune\":{\"data_uri\":\"file:///d\",\"lr\":-1}}", OTF_E_INVAL,
     "/finetune/lr", "must be >"},
    {"{" M2 ",\"finetune\":{\"data_uri\":\"file:///d\",\"batch\":0}}", OTF_E_INVAL,
     "/finetune/batch", "between"},
    {"{" M2 ",\"finetune\":{\"data_uri\":\"file:///d\",\"epoch\":1}}", OTF_E_INVAL,
     "/finetune/epoch", ""},
    {"{", OTF_E_FORMAT, "", "not valid JSON"},
    {"[1,2]", OTF_E_FORMAT, "", "must be a JSON object"},
    {"\"models\"", OTF_E_FORMAT, "", "not valid JSON"},
    {"{" M2 "} trailing", OTF_E_FORMAT, "", "not valid JSON"},
    {"{" M2 ",\"method\":\"ot\",\"method\":\"average\"}", OTF_E_FORMAT, "", "duplicate"},
    {"{\"models\":[{\"uri\":\"a\",\"uri\":\"b\"},{\"uri\":\"c\"}]}", OTF_E_FORMAT, "",
     "duplicate"},
    {"{" M2 ",\"ot\":{\"reg\":1e999}}", OTF_E_FORMAT, "", "not valid JSON"},
    /* models */
    {"{}", OTF_E_INVAL, "/models", "required"},
    {"{\"models\":\"file:///a\"}", OTF_E_INVAL, "/models", "must be an array"},
    {"{\"models\":[]}", OTF_E_INVAL, "/models", "at least 2"},
    {"{\"models\":[{\"uri\":\"file:///a\"}]}", OTF_E_INVAL, "/models", "at least 2"},
    {"{\"models\":[\"file:///a\",\"file:///b\"]}", OTF_E_INVAL, "/models/0", "must be an object"},
    {"{\"models\":[{\"uri\":\"file:///a\"},{}]}", OTF_E_INVAL, "/models/1/uri", "required"},
    {"{\"models\":[{\"uri\":\"file:///a\"},{\"uri\":7}]}", OTF_E_INVAL, "/models/1/uri",
     "must be a string"},
    {"{\"models\":[{\"uri\":\"file:///a\"},{\"uri\":\"\"}]}", OTF_E_INVAL, "/models/1/uri",
     "empty"},
    {"{\"models\":[{\"uri\":\"file:///a\"},{\"uri\":\"file:///b\\n\"}]}", OTF_E_INVAL,
     "/models/1/uri", "control character"},
    {"{\"models\":[{\"uri\":\"file:///a\"},{\"uri\":\"file:///b\",\"sha\":\"x\"}]}", OTF_E_INVAL,
     "/models/1/sha", "unknown key"},
    /* top level */
    {"{" M2 ",\"anchor\":1}", OTF_E_INVAL, "/anchor", "unknown key 'anchor'"},
    {"{" M2 ",\"a/b~c\":1}", OTF_E_INVAL, "/a~1b~0c", "unknown key"},
    {"{" M2 ",\"method\":\"sum\"}", OTF_E_INVAL, "/method", "ot or average"},
    {"{" M2 ",\"method\":1}", OTF_E_INVAL, "/method", "must be a string"},
    {"{" M2 ",\"metadata\":[1]}", OTF_E_INVAL, "/metadata", "must be an object"},
    {"{" M2 ",\"metadata\":\"x\"}", OTF_E_INVAL, "/metadata", "must be an object"},
    /* ot */
    {"{" M2 ",\"ot\":null}", OTF_E_INVAL, "/ot", "must be an object"},
    {"{" M2 ",\"ot\":[]}", OTF_E_INVAL, "/ot", "must be an object"},
    {"{" M2 ",\"ot\":{\"mode\":\"x\"}}", OTF_E_INVAL, "/ot/mode", "unknown key"},
    {"{" M2 ",\"ot\":{\"align\":\"gradients\"}}", OTF_E_INVAL, "/ot/align", "weights or"},
    {"{" M2 ",\"ot\":{\"solver\":\"emd\"}}", OTF_E_INVAL, "/ot/solver", "sinkhorn"},
    {"{" M2 ",\"ot\":{\"solver\":null}}", OTF_E_INVAL, "/ot/solver", "must be a string"},
    {"{" M2 ",\"ot\":{\"residual\":\"sum\"}}", OTF_E_INVAL, "/ot/residual", "weighted-scalar"},
    {"{" M2 ",\"ot\":{\"qk\":\"joint\"}}", OTF_E_INVAL, "/ot/qk", "separate"},
    {"{" M2 ",\"ot\":{\"metric\":\"l1\"}}", OTF_E_INVAL, "/ot/metric", "cosine"},
    {"{" M2 ",\"ot\":{\"cost_norm\":\"sum\"}}", OTF_E_INVAL, "/ot/cost_norm", "median"},
    {"{" M2 ",\"ot\":{\"maps\":\"dirty\"}}", OTF_E_INVAL, "/ot/maps", "clean or reference"},
    {"{" M2 ",\"ot\":{\"tokens\":\"window-0\"}}", OTF_E_INVAL, "/ot/tokens", "window-K"},
    {"{" M2 ",\"ot\":{\"tokens\":\"window-4097\"}}", OTF_E_INVAL, "/ot/tokens", "window-K"},
    {"{" M2 ",\"ot\":{\"tokens\":\"window-3x\"}}", OTF_E_INVAL, "/ot/tokens", "window-K"},
    {"{" M2 ",\"ot\":{\"unit_rows\":1}}", OTF_E_INVAL, "/ot/unit_rows", "boolean"},
    {"{" M2 ",\"ot\":{\"reg\":0}}", OTF_E_INVAL, "/ot/reg", "must be > 0"},
    {"{" M2 ",\"ot\":{\"reg\":-0.1}}", OTF_E_INVAL, "/ot/reg", "must be > 0"},
    {"{" M2 ",\"ot\":{\"reg\":\"0.1\"}}", OTF_E_INVAL, "/ot/reg", "\"auto\""},
    {"{" M2 ",\"ot\":{\"anchor\":2}}", OTF_E_INVAL, "/ot/anchor", "not one of the 2 models"},
    {"{" M2 ",\"ot\":{\"anchor\":-1}}", OTF_E_INVAL, "/ot/anchor", "not one of"},
    {"{" M2 ",\"ot\":{\"anchor\":1.0}}", OTF_E_INVAL, "/ot/anchor", "model index"},
    {"{" M2 ",\"ot\":{\"anchor\":\"first\"}}", OTF_E_INVAL, "/ot/anchor", "model index"},
    {"{" M2 ",\"ot\":{\"weights\":[1]}}", OTF_E_INVAL, "/ot/weights", "1 values for 2 models"},
    {"{" M2 ",\"ot\":{\"weights\":[1,2,3]}}", OTF_E_INVAL, "/ot/weights", "3 values"},
    {"{" M2 ",\"ot\":{\"weights\":\"1,1\"}}", OTF_E_INVAL, "/ot/weights", "must be an array"},
    {"{" M2 ",\"ot\":{\"weights\":[1,-2]}}", OTF_E_INVAL, "/ot/weights/1", ">= 0"},
    {"{" M2 ",\"ot\":{\"weights\":[1,\"2\"]}}", OTF_E_INVAL, "/ot/weights/1", "must be a number"},
    {"{" M2 ",\"ot\":{\"weights\":[0,0.0]}}", OTF_E_INVAL, "/ot/weights", "all 0"},
    {"{" M2 ",\"ot\":{\"weights\":[1e308,1e308]}}", OTF_E_INVAL, "/ot/weights", "infinity"},
    {"{" M2 ",\"ot\":{\"components\":[]}}", OTF_E_INVAL, "/ot/components", "empty"},
    {"{" M2 ",\"ot\":{\"components\":\"attn\"}}", OTF_E_INVAL, "/ot/components", "array"},
    {"{" M2 ",\"ot\":{\"components\":[\"attn\",\"ffn\"]}}", OTF_E_INVAL, "/ot/components/1",
     "'ffn'"},
    {"{" M2 ",\"ot\":{\"components\":[\"attn\",3]}}", OTF_E_INVAL, "/ot/components/1",
     "must be a string"},
    /* options that need others */
    {"{" M2 ",\"ot\":{\"align\":\"activations\"}}", OTF_E_INVAL, "/calibration/uri",
     "activations"},
    {"{" M2 ",\"ot\":{\"residual\":\"weighted-scalar\"}}", OTF_E_INVAL, "/calibration/uri",
     "weighted residual"},
    {"{" M2 ",\"ot\":{\"anchor\":\"auto\"},\"calibration\":{\"samples\":10}}", OTF_E_INVAL,
     "/calibration/uri", "anchor \"auto\""},
    {"{" M2 ",\"ot\":{\"reg\":\"auto\"}}", OTF_E_INVAL, "/calibration/uri", "reg \"auto\""},
    {"{" M2 ",\"method\":\"average\",\"ot\":{\"anchor\":\"auto\"}}", OTF_E_INVAL, "/ot/anchor",
     "needs method \"ot\""},
    {"{" M2 ",\"method\":\"average\",\"ot\":{\"reg\":\"auto\"}}", OTF_E_INVAL, "/ot/reg",
     "needs method \"ot\""},
    /* calibration */
    {"{" M2 ",\"calibration\":\"file:///c\"}", OTF_E_INVAL, "/calibration", "must be an object"},
    {"{" M2 ",\"calibration\":{\"url\":\"file:///c\"}}", OTF_E_INVAL, "/calibration/url",
     "unknown key"},
    {"{" M2 ",\"calibration\":{\"uri\":5}}", OTF_E_INVAL, "/calibration/uri", "string or null"},
    {"{" M2 ",\"calibration\":{\"samples\":-1}}", OTF_E_INVAL, "/calibration/samples",
     "between 0 and 1000000"},
    {"{" M2 ",\"calibration\":{\"samples\":1000001}}", OTF_E_INVAL, "/calibration/samples",
     "between"},
    {"{" M2 ",\"calibration\":{\"samples\":2.5}}", OTF_E_INVAL, "/calibration/samples",
     "integer"},
    {"{" M2 ",\"calibration\":{\"seed\":-3}}", OTF_E_INVAL, "/calibration/seed", "between"},
    {"{" M2 ",\"calibration\":{\"seed\":\"7\"}}", OTF_E_INVAL, "/calibration/seed", "integer"},
    /* output */
    {"{" M2 ",\"output\":\"s3://b/o\"}", OTF_E_INVAL, "/output", "must be an object"},
    {"{" M2 ",\"output\":{\"dtype\":\"f64\"}}", OTF_E_INVAL, "/output/dtype", "f32, f16 or bf16"},
    {"{" M2 ",\"output\":{\"dtype\":\"F32\"}}", OTF_E_INVAL, "/output/dtype", "f32"},
    {"{" M2 ",\"output\":{\"uri\":\"\"}}", OTF_E_INVAL, "/output/uri", "empty"},
    {"{" M2 ",\"output\":{\"path\":\"/x\"}}", OTF_E_INVAL, "/output/path", "unknown key"},
};

START_TEST(bad_specs_name_the_field) {
  const bad_case *b = &bad_cases[_i];
  otf_jobspec s;
  otf_error err;
  json_t *errors = NULL;
  otf_status rc = parse(&s, b->body, &errors, &err);
  ck_assert_msg(rc == b->code, "case %d %s: got %s (%s)", _i, b->body, otf_status_name(rc),
                err.message);
  ck_assert_int_eq(err.code, rc);
  ck_assert_msg(!strcmp(err.pointer, b->pointer), "case %d %s: pointer '%s', want '%s'", _i,
                b->body, err.pointer, b->pointer);
  ck_assert_msg(strstr(err.message, b->detail_part) != NULL,
                "case %d %s: message '%s' lacks '%s'", _i, b->body, err.message,
                b->detail_part);
  /* The list holds the same first problem; nothing is left filled in. */
  ck_assert_ptr_nonnull(errors);
  ck_assert_uint_ge(json_array_size(errors), 1);
  json_t *first = json_array_get(errors, 0);
  ck_assert_str_eq(json_string_value(json_object_get(first, "pointer")), b->pointer);
  ck_assert_str_eq(json_string_value(json_object_get(first, "detail")), err.message);
  ck_assert_ptr_null(s.spec);
  ck_assert_ptr_null(s.models[0]);
  ck_assert_uint_eq(s.n_models, 0);
  json_decref(errors);
  otf_jobspec_free(&s);
}
END_TEST

START_TEST(every_problem_is_listed) {
  const char *body = "{\"models\":[{\"uri\":\"file:///a\"},{\"uri\":3}],\"method\":\"x\","
                     "\"ot\":{\"reg\":-1,\"qk\":\"no\",\"extra\":1},"
                     "\"output\":{\"dtype\":\"f8\"}}";
  otf_jobspec s;
  otf_error err;
  json_t *errors = NULL;
  ck_assert_int_eq(parse(&s, body, &errors, &err), OTF_E_INVAL);
  static const char *const want[] = {"/models/1/uri", "/method", "/ot/extra", "/ot/qk",
                                     "/ot/reg", "/output/dtype"};
  size_t n = sizeof(want) / sizeof(*want);
  ck_assert_uint_eq(json_array_size(errors), n);
  for(size_t i = 0; i < n; i++) {
    int found = 0;
    for(size_t j = 0; j < json_array_size(errors); j++)
      found |= !strcmp(json_string_value(json_object_get(json_array_get(errors, j), "pointer")),
                       want[i]);
    ck_assert_msg(found, "no problem reported at %s", want[i]);
  }
  ck_assert_str_eq(err.pointer, "/models/1/uri");
  json_decref(errors);
  /* errors may be NULL */
  ck_assert_int_eq(parse(&s, body, NULL, &err), OTF_E_INVAL);
  ck_assert_int_eq(parse(&s, body, NULL, NULL), OTF_E_INVAL);

  /* A body with hundreds of bad keys gets a bounded list. */
  size_t cap = 64 + 300 * 16;
  char *big = malloc(cap);
  size_t k = (size_t)snprintf(big, cap, "{" M2);
  for(int i = 0; i < 300; i++)
    k += (size_t)snprintf(big + k, cap - k, ",\"k%d\":%d", i, i);
  snprintf(big + k, cap - k, "}");
  ck_assert_int_eq(parse(&s, big, &errors, &err), OTF_E_INVAL);
  ck_assert_uint_eq(json_array_size(errors), OTF_JOBSPEC_MAX_ERRORS);
  json_decref(errors);
  free(big);
}
END_TEST

/* Messages quote the client's bytes and may be cut mid-character; the
 * pointer and detail must still be valid UTF-8, so they can go into JSON. */
START_TEST(messages_are_valid_utf8) {
  otf_jobspec s;
  otf_error err;
  json_t *errors = NULL;
  /* jansson quotes the bad bytes near a syntax error */
  static const char bad_escape[] = "\"/\\\xdd\x8d";
  ck_assert_int_eq(otf_jobspec_parse(&s, bad_escape, sizeof(bad_escape) - 1, 16, &errors, &err),
                   OTF_E_FORMAT);
  ck_assert_uint_eq(json_array_size(errors), 1);
  ck_assert_ptr_nonnull(strstr(err.message, "not valid JSON"));
  json_decref(errors);
  /* an unknown key of 2-byte characters: cut at 64 bytes in the message and
   * at the pointer buffer's size */
  char body[1024];
  size_t k = (size_t)snprintf(body, sizeof(body), "{" M2 ",\"a");
  for(int i = 0; i < 150; i++)
    k += (size_t)snprintf(body + k, sizeof(body) - k, "\xc3\xa9");
  snprintf(body + k, sizeof(body) - k, "\":1}");
  ck_assert_int_eq(parse(&s, body, &errors, &err), OTF_E_INVAL);
  ck_assert_uint_eq(json_array_size(errors), 1);
  char *text = json_dumps(errors, 0);
  ck_assert_ptr_nonnull(text);
  json_t *back = json_loads(text, 0, NULL);
  ck_assert_ptr_nonnull(back);
  const char *p = json_string_value(json_object_get(json_array_get(back, 0), "pointer"));
  ck_assert_str_eq(p, err.pointer);
  ck_assert_uint_lt(strlen(p), OTF_ERROR_PTR_MAX); /* cut, and a '?' for the half character */
  ck_assert_int_eq(p[strlen(p) - 1], '?');
  ck_assert_ptr_nonnull(strstr(err.message, "unknown key 'a\xc3\xa9"));
  free(text);
  json_decref(back);
  json_decref(errors);
}
END_TEST

START_TEST(model_count_limits) {
  char body[4096];
  size_t k = (size_t)snprintf(body, sizeof(body), "{\"models\":[");
  for(int i = 0; i < OTF_MAX_PARENTS + 1; i++)
    k += (size_t)snprintf(body + k, sizeof(body) - k, "%s{\"uri\":\"file:///m/%d/\"}",
                          i ? "," : "", i);
  snprintf(body + k, sizeof(body) - k, "]}");
  otf_jobspec s;
  otf_error err;
  /* 17 models: over the library's own cap even when the caller allows more */
  ck_assert_int_eq(otf_jobspec_parse(&s, body, strlen(body), 1000, NULL, &err), OTF_E_TOO_LARGE);
  ck_assert_str_eq(err.pointer, "/models");
  ck_assert_ptr_nonnull(strstr(err.message, "at most 16 models"));
  /* 3 models with a service limit of 2 */
  const char *three = "{\"models\":[{\"uri\":\"a\"},{\"uri\":\"b\"},{\"uri\":\"c\"}]}";
  ck_assert_int_eq(otf_jobspec_parse(&s, three, strlen(three), 2, NULL, &err), OTF_E_TOO_LARGE);
  ck_assert_str_eq(err.pointer, "/models");
  ck_assert_int_eq(otf_jobspec_parse(&s, three, strlen(three), 3, NULL, &err), OTF_OK);
  ck_assert_uint_eq(s.n_models, 3);
  otf_jobspec_free(&s);
  /* exactly 16 */
  k = (size_t)snprintf(body, sizeof(body), "{\"models\":[");
  for(int i = 0; i < OTF_MAX_PARENTS; i++)
    k += (size_t)snprintf(body + k, sizeof(body) - k, "%s{\"uri\":\"file:///m/%d/\"}",
                          i ? "," : "", i);
  snprintf(body + k, sizeof(body) - k, "],\"ot\":{\"anchor\":15}}");
  ck_assert_int_eq(otf_jobspec_parse(&s, body, strlen(body), OTF_MAX_PARENTS, NULL, &err), OTF_OK);
  ck_assert_str_eq(s.models[15], "file:///m/15/");
  ck_assert_int_eq(s.opts.anchor, 15);
  otf_jobspec_free(&s);
}
END_TEST

/* {"models":[...],"metadata": + (depth - 2) arrays: total depth `depth`. */
static char *nested(int depth, const char *inner) {
  size_t cap = 256 + 2 * (size_t)depth + strlen(inner);
  char *b = malloc(cap);
  size_t k = (size_t)snprintf(b, cap, "{" M2 ",\"metadata\":{\"x\":");
  for(int i = 0; i < depth - 2; i++)
    b[k++] = '[';
  k += (size_t)snprintf(b + k, cap - k, "%s", inner);
  for(int i = 0; i < depth - 2; i++)
    b[k++] = ']';
  snprintf(b + k, cap - k, "}}");
  return b;
}

START_TEST(size_and_depth_limits) {
  otf_jobspec s;
  otf_error err;
  char *ok = nested(OTF_MAX_JSON_DEPTH, "1");
  ck_assert_int_eq(parse(&s, ok, NULL, &err), OTF_OK);
  otf_jobspec_free(&s);
  char *deep = nested(OTF_MAX_JSON_DEPTH + 1, "1");
  ck_assert_int_eq(parse(&s, deep, NULL, &err), OTF_E_TOO_LARGE);
  ck_assert_str_eq(err.pointer, "");
  ck_assert_ptr_nonnull(strstr(err.message, "deeper"));
  /* brackets inside strings (and escaped quotes) do not count */
  char *strs = nested(OTF_MAX_JSON_DEPTH, "\"[[[[\\\"{{{{[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"");
  ck_assert_int_eq(parse(&s, strs, NULL, &err), OTF_OK);
  otf_jobspec_free(&s);
  /* a million nested arrays are refused without recursion */
  size_t n = 1000000;
  char *huge = malloc(n);
  memset(huge, '[', n);
  ck_assert_int_eq(otf_jobspec_parse(&s, huge, n, 16, NULL, &err), OTF_E_TOO_LARGE);
  /* body size */
  ck_assert_int_eq(otf_jobspec_parse(&s, huge, OTF_JOBSPEC_MAX_BYTES + 1, 16, NULL, &err),
                   OTF_E_TOO_LARGE);
  ck_assert_ptr_nonnull(strstr(err.message, "bytes"));
  free(huge);
  /* URI length */
  size_t ulen = OTF_JOBSPEC_MAX_URI + 1;
  char *body = malloc(ulen + 128);
  size_t k = (size_t)snprintf(body, ulen + 128, "{\"models\":[{\"uri\":\"a\"},{\"uri\":\"");
  memset(body + k, 'u', ulen);
  snprintf(body + k + ulen, 128, "\"}]}");
  ck_assert_int_eq(parse(&s, body, NULL, &err), OTF_E_TOO_LARGE);
  ck_assert_str_eq(err.pointer, "/models/1/uri");
  /* embedded NUL bytes are not JSON */
  static const char nul[] = "{\"models\":[{\"uri\":\"a\"},{\"uri\":\"b\"}]}\0";
  ck_assert_int_eq(otf_jobspec_parse(&s, nul, sizeof(nul) - 1, 16, NULL, &err), OTF_E_FORMAT);
  ck_assert_int_eq(otf_jobspec_parse(&s, NULL, 0, 16, NULL, &err), OTF_E_FORMAT);
  free(body);
  free(ok);
  free(deep);
  free(strs);
}
END_TEST

/* Every allocation of a successful parse may fail: the result is then
 * OTF_E_NOMEM with nothing leaked (ASan checks) and nothing left set. */
START_TEST(allocation_failures_are_clean) {
  otf_jobspec s;
  otf_error err;
  long before = otf_alloc_calls();
  ck_assert_int_eq(parse(&s, full_spec, NULL, &err), OTF_OK);
  long calls = otf_alloc_calls() - before;
  otf_jobspec_free(&s);
  ck_assert_int_ge(calls, 5); /* 3 models, calibration and output URIs */
  for(long k = 1; k <= calls; k++) {
    otf_alloc_fail_at(k);
    otf_status rc = parse(&s, full_spec, NULL, &err);
    otf_alloc_fail_at(0);
    ck_assert_msg(rc == OTF_E_NOMEM, "allocation %ld failing gave %s", k, otf_status_name(rc));
    ck_assert_ptr_null(s.spec);
    ck_assert_ptr_null(s.models[0]);
    otf_jobspec_free(&s);
  }
}
END_TEST

START_TEST(shared_option_names) {
  unsigned bits = 0;
  ck_assert_int_eq(otf_fuse_components_parse(&bits, "attn,mlp"), 0);
  ck_assert_uint_eq(bits, OTF_FUSE_ATTN | OTF_FUSE_MLP);
  ck_assert_int_eq(otf_fuse_components_parse(&bits, "embed,attn,norm,mlp,bias,head"), 0);
  ck_assert_uint_eq(bits, OTF_FUSE_ALL);
  bits = 7;
  ck_assert_int_eq(otf_fuse_components_parse(&bits, ""), -1);
  ck_assert_int_eq(otf_fuse_components_parse(&bits, "attn,"), -1);
  ck_assert_int_eq(otf_fuse_components_parse(&bits, "attn,,mlp"), -1);
  ck_assert_int_eq(otf_fuse_components_parse(&bits, "attention"), -1);
  ck_assert_int_eq(otf_fuse_components_parse(&bits, NULL), -1);
  ck_assert_uint_eq(bits, 7);
  for(unsigned b = 1; b <= OTF_FUSE_ALL; b <<= 1)
    ck_assert_uint_eq(otf_fuse_component_bit(otf_fuse_component_name(b)), b);
  ck_assert_ptr_null(otf_fuse_component_name(3));

  int w = 99;
  char buf[32];
  ck_assert_int_eq(otf_fuse_tokens_parse(&w, "all"), 0);
  ck_assert_int_eq(w, 0);
  ck_assert_int_eq(otf_fuse_tokens_parse(&w, "cls"), 0);
  ck_assert_int_eq(w, -1);
  ck_assert_int_eq(otf_fuse_tokens_parse(&w, "window-4096"), 0);
  ck_assert_int_eq(w, 4096);
  ck_assert_str_eq(otf_fuse_tokens_format(buf, sizeof(buf), w), "window-4096");
  ck_assert_str_eq(otf_fuse_tokens_format(buf, sizeof(buf), -1), "cls");
  ck_assert_str_eq(otf_fuse_tokens_format(buf, sizeof(buf), 0), "all");
  static const char *const bad[] = {"window-", "window-0", "window-01", "window--1",
                                    "window-99999999999999999999", "Window-3", "none", ""};
  for(size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    w = 7;
    ck_assert_msg(otf_fuse_tokens_parse(&w, bad[i]) == -1, "accepted %s", bad[i]);
    ck_assert_int_eq(w, 7);
  }
  otf_method m;
  otf_align a;
  otf_tmnorm t;
  ck_assert_int_eq(otf_method_parse(&m, "average"), 0);
  ck_assert_str_eq(otf_method_name(m), "average");
  ck_assert_int_eq(otf_align_parse(&a, "activations"), 0);
  ck_assert_str_eq(otf_align_name(a), "activations");
  ck_assert_int_eq(otf_tmnorm_parse(&t, "reference"), 0);
  ck_assert_str_eq(otf_tmnorm_name(t), "reference");
  ck_assert_int_eq(otf_method_parse(&m, "OT"), -1);
  ck_assert_str_eq(otf_method_name((otf_method)9), "?");
}
END_TEST

int main(void) {
  Suite *s = suite_create("jobspec");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, minimal_spec_gets_the_cli_defaults);
  tcase_add_test(tc, every_key_reaches_the_options);
  tcase_add_test(tc, normalised_spec_parses_to_itself);
  tcase_add_loop_test(tc, bad_specs_name_the_field, 0,
                      (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
  tcase_add_test(tc, every_problem_is_listed);
  tcase_add_test(tc, messages_are_valid_utf8);
  tcase_add_test(tc, model_count_limits);
  tcase_add_test(tc, size_and_depth_limits);
  tcase_add_test(tc, allocation_failures_are_clean);
  tcase_add_test(tc, shared_option_names);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
