/* The test-support JSON Schema validator (tests/support/jsonschema.c):
 * every keyword it claims, accepting and rejecting, with the pointers it
 * reports; refs, loops and unsupported keywords. */
#include <string.h>

#include "tests/support/jsonschema.h"
#include "tests/support/testutil.h"

static json_t *js(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
  ck_assert_msg(v != NULL, "bad test JSON %s: %s", text, e.text);
  return v;
}

/* Number of problems of instance against schema (both JSON text). */
static int check(const char *schema, const char *instance) {
  json_t *s = js(schema), *x = js(instance);
  int n = tu_schema_validate(s, s, x, NULL);
  json_decref(s);
  json_decref(x);
  return n;
}

typedef struct vcase {
  const char *schema, *instance;
  int valid;
} vcase;

static const vcase cases[] = {
    /* type */
    {"{\"type\":\"string\"}", "\"a\"", 1},
    {"{\"type\":\"string\"}", "1", 0},
    {"{\"type\":\"integer\"}", "3", 1},
    {"{\"type\":\"integer\"}", "3.0", 1},
    {"{\"type\":\"integer\"}", "3.5", 0},
    {"{\"type\":\"number\"}", "3", 1},
    {"{\"type\":\"number\"}", "\"3\"", 0},
    {"{\"type\":\"boolean\"}", "false", 1},
    {"{\"type\":\"boolean\"}", "0", 0},
    {"{\"type\":\"null\"}", "null", 1},
    {"{\"type\":\"null\"}", "{}", 0},
    {"{\"type\":\"object\"}", "[]", 0},
    {"{\"type\":\"array\"}", "[]", 1},
    {"{\"type\":[\"string\",\"null\"]}", "null", 1},
    {"{\"type\":[\"string\",\"null\"]}", "\"x\"", 1},
    {"{\"type\":[\"string\",\"null\"]}", "2", 0},
    {"{\"type\":\"str\"}", "\"x\"", 0}, /* not a type name: a schema error */
    /* enum / const */
    {"{\"enum\":[\"a\",\"b\",null]}", "\"b\"", 1},
    {"{\"enum\":[\"a\",\"b\",null]}", "null", 1},
    {"{\"enum\":[\"a\",\"b\",null]}", "\"c\"", 0},
    {"{\"enum\":[1,2]}", "2.0", 1},
    {"{\"const\":\"auto\"}", "\"auto\"", 1},
    {"{\"const\":\"auto\"}", "\"Auto\"", 0},
    {"{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2.0]}", 1},
    {"{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2,3]}", 0},
    /* objects */
    {"{\"required\":[\"a\"]}", "{\"a\":1}", 1},
    {"{\"required\":[\"a\"]}", "{\"b\":1}", 0},
    {"{\"required\":[\"a\"]}", "5", 1}, /* applies to objects only */
    {"{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":\"x\",\"b\":1}", 1},
    {"{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":1}", 0},
    {"{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1}", 1},
    {"{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1,\"b\":2}", 0},
    {"{\"additionalProperties\":{\"type\":\"integer\"}}", "{\"x\":1,\"y\":2}", 1},
    {"{\"additionalProperties\":{\"type\":\"integer\"}}", "{\"x\":1,\"y\":\"2\"}", 0},
    /* arrays */
    {"{\"items\":{\"type\":\"number\"}}", "[1,2.5]", 1},
    {"{\"items\":{\"type\":\"number\"}}", "[1,\"2\"]", 0},
    {"{\"minItems\":2,\"maxItems\":3}", "[1,2]", 1},
    {"{\"minItems\":2,\"maxItems\":3}", "[1]", 0},
    {"{\"minItems\":2,\"maxItems\":3}", "[1,2,3,4]", 0},
    {"{\"minItems\":2}", "\"ab\"", 1},
    /* strings: lengths in code points */
    {"{\"minLength\":2,\"maxLength\":3}", "\"ab\"", 1},
    {"{\"minLength\":2}", "\"a\"", 0},
    {"{\"maxLength\":3}", "\"abcd\"", 0},
    {"{\"maxLength\":3}", "\"\\u00e9\\u00e9\\u00e9\"", 1}, /* 6 bytes, 3 characters */
    /* numbers */
    {"{\"minimum\":0,\"maximum\":1}", "0", 1},
    {"{\"minimum\":0,\"maximum\":1}", "1", 1},
    {"{\"minimum\":0,\"maximum\":1}", "1.0000001", 0},
    {"{\"minimum\":0}", "-1", 0},
    {"{\"exclusiveMinimum\":0}", "0", 0},
    {"{\"exclusiveMinimum\":0}", "0.001", 1},
    {"{\"exclusiveMaximum\":1}", "1", 0},
    {"{\"exclusiveMaximum\":1}", "0.5", 1},
    {"{\"minimum\":5}", "\"x\"", 1},
    /* combinators */
    {"{\"anyOf\":[{\"type\":\"number\",\"exclusiveMinimum\":0},{\"const\":\"auto\"}]}", "0.1", 1},
    {"{\"anyOf\":[{\"type\":\"number\",\"exclusiveMinimum\":0},{\"const\":\"auto\"}]}", "\"auto\"", 1},
    {"{\"anyOf\":[{\"type\":\"number\",\"exclusiveMinimum\":0},{\"const\":\"auto\"}]}", "0", 0},
    {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1.5", 1},
    {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1", 0}, /* both match */
    {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}", "null", 0},
    {"{\"allOf\":[{\"minimum\":1},{\"maximum\":3}]}", "2", 1},
    {"{\"allOf\":[{\"minimum\":1},{\"maximum\":3}]}", "4", 0},
    {"{\"anyOf\":[]}", "1", 0},
    /* boolean schemas */
    {"true", "{\"a\":1}", 1},
    {"false", "1", 0},
    {"{\"properties\":{\"a\":false}}", "{\"a\":1}", 0},
    /* annotations are ignored, other keywords refused */
    {"{\"description\":\"d\",\"title\":\"t\",\"format\":\"date-time\",\"default\":1,\"examples\":[]}",
     "\"not a date\"", 1},
    {"{\"pattern\":\"^a\"}", "\"a\"", 0},
    {"{\"not\":{}}", "1", 0},
    {"{\"uniqueItems\":true}", "[1]", 0},
    {"{\"nullable\":true}", "null", 0},
};

START_TEST(keywords_accept_and_reject) {
  const vcase *c = &cases[_i];
  int n = check(c->schema, c->instance);
  ck_assert_msg((n == 0) == c->valid, "schema %s instance %s: %d problems, want %s", c->schema,
                c->instance, n, c->valid ? "valid" : "invalid");
}
END_TEST

START_TEST(refs_resolve_inside_the_document) {
  json_t *doc = js("{\"components\":{\"schemas\":{"
                   "\"A\":{\"type\":\"object\",\"properties\":{\"b\":{\"$ref\":\"#/components/schemas/B\"}}},"
                   "\"B\":{\"type\":\"integer\",\"minimum\":0},"
                   "\"a/b~c\":{\"const\":7},"
                   "\"Loop\":{\"$ref\":\"#/components/schemas/Loop\"},"
                   "\"Missing\":{\"$ref\":\"#/components/schemas/Nope\"},"
                   "\"Sibling\":{\"$ref\":\"#/components/schemas/B\",\"maximum\":3}}},"
                   "\"list\":[{\"const\":1}]}");
  json_t *x = js("{\"b\":2}"), *bad = js("{\"b\":-2}"), *seven = js("7"), *four = js("4");
  char msg[512];
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/A", x, msg, sizeof(msg)), 0);
  ck_assert_str_eq(msg, "");
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/A", bad, msg, sizeof(msg)), 1);
  ck_assert_msg(strstr(msg, "/b:") && strstr(msg, "minimum"), "message: %s", msg);
  ck_assert_msg(strstr(msg, "#/components/schemas/B/minimum"), "schema path: %s", msg);
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/a~1b~0c", seven, msg, sizeof(msg)), 0);
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/a~1b~0c", four, msg, sizeof(msg)), 1);
  ck_assert_int_eq(tu_schema_check(doc, "#/list/0", seven, msg, sizeof(msg)), 1);
  ck_assert_ptr_nonnull(tu_schema_resolve(doc, "#"));
  ck_assert_ptr_null(tu_schema_resolve(doc, "#/list/1"));
  ck_assert_ptr_null(tu_schema_resolve(doc, "#/list/x"));
  ck_assert_ptr_null(tu_schema_resolve(doc, "#/components/schemas/a~2"));
  ck_assert_ptr_null(tu_schema_resolve(doc, "other.json#/A"));
  ck_assert_ptr_null(tu_schema_resolve(doc, NULL));
  /* a ref to itself is an error, not a hang or a crash */
  ck_assert_int_ge(tu_schema_check(doc, "#/components/schemas/Loop", seven, msg, sizeof(msg)), 1);
  ck_assert_msg(strstr(msg, "deeper"), "message: %s", msg);
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/Missing", seven, msg, sizeof(msg)), 1);
  ck_assert_msg(strstr(msg, "does not resolve"), "message: %s", msg);
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/None", seven, msg, sizeof(msg)), 1);
  /* keywords beside $ref apply too */
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/Sibling", four, NULL, 0), 1);
  json_t *two = js("2");
  ck_assert_int_eq(tu_schema_check(doc, "#/components/schemas/Sibling", two, NULL, 0), 0);
  json_decref(two);
  json_decref(doc);
  json_decref(x);
  json_decref(bad);
  json_decref(seven);
  json_decref(four);
}
END_TEST

START_TEST(every_problem_has_its_pointer) {
  json_t *s = js("{\"type\":\"object\",\"required\":[\"id\",\"n\"],\"additionalProperties\":false,"
                 "\"properties\":{\"id\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},"
                 "\"list\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\"]}},"
                 "\"o\":{\"type\":\"object\",\"properties\":{\"a/b\":{\"type\":\"null\"}}}}}");
  json_t *x = js("{\"n\":\"1\",\"list\":[\"x\",\"y\",\"z\"],\"o\":{\"a/b\":0},\"extra\":1}");
  json_t *errors = NULL;
  int n = tu_schema_validate(s, s, x, &errors);
  static const char *const want[] = {"/id", "/n", "/list/1", "/list/2", "/o/a~1b", "/extra"};
  size_t nw = sizeof(want) / sizeof(*want);
  ck_assert_int_eq(n, (int)nw);
  ck_assert_uint_eq(json_array_size(errors), nw);
  for(size_t i = 0; i < nw; i++) {
    int found = 0;
    for(size_t j = 0; j < json_array_size(errors); j++)
      found |= !strcmp(json_string_value(json_object_get(json_array_get(errors, j), "pointer")),
                       want[i]);
    ck_assert_msg(found, "no problem at %s", want[i]);
  }
  json_decref(errors);
  /* valid: an empty list */
  json_t *ok = js("{\"id\":\"a\",\"n\":1}");
  ck_assert_int_eq(tu_schema_validate(s, s, ok, &errors), 0);
  ck_assert_uint_eq(json_array_size(errors), 0);
  json_decref(errors);
  json_decref(ok);
  json_decref(s);
  json_decref(x);
}
END_TEST

START_TEST(anyof_failure_explains_the_closest_branch) {
  json_t *s = js("{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"object\",\"required\":[\"status\"],"
                 "\"properties\":{\"status\":{\"type\":\"integer\"}}}]}");
  json_t *x = js("{\"status\":\"500\"}");
  json_t *errors = NULL;
  ck_assert_int_ge(tu_schema_validate(s, s, x, &errors), 1);
  int found = 0;
  for(size_t j = 0; j < json_array_size(errors); j++)
    found |= !strcmp(json_string_value(json_object_get(json_array_get(errors, j), "pointer")),
                     "/status");
  ck_assert_msg(found, "the closest branch's problem at /status is not reported");
  json_decref(errors);
  json_decref(s);
  json_decref(x);
}
END_TEST

START_TEST(error_list_is_bounded) {
  json_t *s = js("{\"items\":{\"type\":\"string\"}}");
  json_t *x = json_array();
  for(int i = 0; i < 500; i++)
    json_array_append_new(x, json_integer(i));
  json_t *errors = NULL;
  ck_assert_int_eq(tu_schema_validate(s, s, x, &errors), 500);
  ck_assert_uint_eq(json_array_size(errors), 64);
  json_decref(errors);
  json_decref(s);
  json_decref(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("jsonschema");
  TCase *tc = tcase_create("validate");
  tcase_add_loop_test(tc, keywords_accept_and_reject, 0, (int)(sizeof(cases) / sizeof(cases[0])));
  tcase_add_test(tc, refs_resolve_inside_the_document);
  tcase_add_test(tc, every_problem_has_its_pointer);
  tcase_add_test(tc, anyof_failure_explains_the_closest_branch);
  tcase_add_test(tc, error_list_is_bounded);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
