/* JSON Schema subset validator (see jsonschema.h). Written for tests: it
 * favours clear messages over speed, and refuses keywords it does not
 * implement rather than ignoring them. */
#include "tests/support/jsonschema.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 64
#define MAX_DEPTH 128
#define PATH_MAX_LEN 512

typedef struct vctx {
  const json_t *root;
  json_t *errors; /* NULL: count only (inside oneOf/anyOf probes) */
  int count;
  int depth;
} vctx;

static void fail(vctx *c, const char *ip, const char *sp, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(vctx *c, const char *ip, const char *sp, const char *fmt, ...) {
  c->count++;
  if(!c->errors || json_array_size(c->errors) >= MAX_LISTED)
    return;
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  json_array_append_new(c->errors,
                        json_pack("{s:s, s:s, s:s}", "pointer", ip, "schema", sp, "detail", detail));
}

/* path + "/" + escaped key, truncated to the buffer */
static void join_key(char *dst, const char *base, const char *key) {
  size_t k = (size_t)snprintf(dst, PATH_MAX_LEN, "%s/", base);
  for(const char *p = key; *p && k + 3 < PATH_MAX_LEN; p++) {
    if(*p == '~' || *p == '/') {
      dst[k++] = '~';
      dst[k++] = *p == '~' ? '0' : '1';
    } else {
      dst[k++] = *p;
    }
  }
  dst[k < PATH_MAX_LEN ? k : PATH_MAX_LEN - 1] = 0;
}

static void join_idx(char *dst, const char *base, size_t i) {
  if(snprintf(dst, PATH_MAX_LEN, "%s/%zu", base, i) >= PATH_MAX_LEN)
    dst[PATH_MAX_LEN - 1] = 0; /* truncated: only the message is shorter */
}

const json_t *tu_schema_resolve(const json_t *root, const char *ref) {
  if(!root || !ref || ref[0] != '#')
    return NULL;
  const json_t *cur = root;
  const char *p = ref + 1;
  if(!*p)
    return cur;
  if(*p != '/')
    return NULL;
  while(*p == '/') {
    p++;
    char tok[256];
    size_t k = 0;
    while(*p && *p != '/') {
      char ch = *p++;
      if(ch == '~') {
        if(*p == '0')
          ch = '~';
        else if(*p == '1')
          ch = '/';
        else
          return NULL;
        p++;
      }
      if(k + 1 >= sizeof(tok))
        return NULL;
      tok[k++] = ch;
    }
    tok[k] = 0;
    if(json_is_object(cur)) {
      cur = json_object_get(cur, tok);
    } else if(json_is_array(cur)) {
      char *end;
      unsigned long i = strtoul(tok, &end, 10);
      if(!k || *end)
        return NULL;
      cur = json_array_get(cur, i);
    } else {
      return NULL;
    }
    if(!cur)
      return NULL;
  }
  return cur;
}

static const char *type_of(const json_t *x) {
  switch(json_typeof(x)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER: return "integer";
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "boolean";
  default: return "null";
  }
}

/* 1 if x has JSON Schema type t, 0 if not, -1 if t is not a type name. */
static int has_type(const json_t *x, const char *t) {
  if(!strcmp(t, "null")) return json_is_null(x);
  if(!strcmp(t, "boolean")) return json_is_boolean(x);
  if(!strcmp(t, "object")) return json_is_object(x);
  if(!strcmp(t, "array")) return json_is_array(x);
  if(!strcmp(t, "string")) return json_is_string(x);
  if(!strcmp(t, "number")) return json_is_number(x);
  if(!strcmp(t, "integer")) {
    if(json_is_integer(x))
      return 1;
    double v = json_is_real(x) ? json_real_value(x) : NAN;
    return isfinite(v) && floor(v) == v;
  }
  return -1;
}

/* Equality with numbers compared by value (1 == 1.0), as JSON Schema does. */
static int same(const json_t *a, const json_t *b) {
  if(json_is_number(a) && json_is_number(b))
    return json_number_value(a) == json_number_value(b);
  if(json_is_array(a) && json_is_array(b)) {
    if(json_array_size(a) != json_array_size(b))
      return 0;
    for(size_t i = 0; i < json_array_size(a); i++)
      if(!same(json_array_get(a, i), json_array_get(b, i)))
        return 0;
    return 1;
  }
  if(json_is_object(a) && json_is_object(b)) {
    if(json_object_size(a) != json_object_size(b))
      return 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)a, k, v) {
      const json_t *w = json_object_get(b, k);
      if(!w || !same(v, w))
        return 0;
    }
    return 1;
  }
  return json_equal(a, b);
}

static size_t utf8_len(const char *s, size_t bytes) {
  size_t n = 0;
  for(size_t i = 0; i < bytes; i++)
    n += ((unsigned char)s[i] & 0xC0) != 0x80;
  return n;
}

static const char *const annotations[] = {
    "description", "title",      "format",   "examples",        "example",
    "default",     "deprecated", "readOnly", "writeOnly",       "$comment",
    "$schema",     "$id",        "contentMediaType", "contentEncoding"};

static int validate(vctx *c, const json_t *s, const json_t *x, const char *ip, const char *sp);

/* Problems x would have against s, counted silently. */
static int probe(vctx *c, const json_t *s, const json_t *x, const char *ip, const char *sp) {
  vctx q = {.root = c->root, .errors = NULL, .count = 0, .depth = c->depth};
  validate(&q, s, x, ip, sp);
  return q.count;
}

/* 0 if schema s (following top-level $refs) names types and x has none
 * of them: such a branch is never the one the author meant for x. */
static int type_fits(const json_t *root, const json_t *s, const json_t *x) {
  for(int hops = 0; hops < 16 && json_is_object(s); hops++) {
    const json_t *t = json_object_get(s, "type");
    if(json_is_string(t))
      return has_type(x, json_string_value(t)) == 1;
    if(json_is_array(t)) {
      for(size_t i = 0; i < json_array_size(t); i++)
        if(json_is_string(json_array_get(t, i)) &&
           has_type(x, json_string_value(json_array_get(t, i))) == 1)
          return 1;
      return 0;
    }
    const json_t *r = json_object_get(s, "$ref");
    if(!json_is_string(r))
      return 1;
    s = tu_schema_resolve(root, json_string_value(r));
  }
  return 1;
}

/* anyOf / oneOf: the number of branches x satisfies; on no match, the
 * problems of the closest branch are reported as well (a branch of x's
 * type first, then the one with the fewest problems). */
static int branches(vctx *c, const json_t *arr, const json_t *x, const char *ip, const char *sp,
                    int *closest) {
  int matches = 0, best = -1, best_count = 0;
  char p[PATH_MAX_LEN];
  for(size_t i = 0; i < json_array_size(arr); i++) {
    join_idx(p, sp, i);
    int n = probe(c, json_array_get(arr, i), x, ip, p);
    if(n == 0)
      matches++;
    if(!type_fits(c->root, json_array_get(arr, i), x))
      n += 1 << 20;
    if(best < 0 || n < best_count) {
      best = (int)i;
      best_count = n;
    }
  }
  *closest = best;
  return matches;
}

static int validate(vctx *c, const json_t *s, const json_t *x, const char *ip, const char *sp) {
  int before = c->count;
  char p[PATH_MAX_LEN], q[PATH_MAX_LEN];
  if(json_is_true(s))
    return 0;
  if(json_is_false(s)) {
    fail(c, ip, sp, "the schema is false: no value is allowed");
    return 1;
  }
  if(!json_is_object(s)) {
    fail(c, ip, sp, "the schema is %s, not an object or boolean", type_of(s));
    return 1;
  }
  if(c->depth >= MAX_DEPTH) {
    fail(c, ip, sp, "schema nesting deeper than %d (a $ref loop?)", MAX_DEPTH);
    return 1;
  }
  c->depth++;
  const char *kw;
  const json_t *v;
  json_object_foreach((json_t *)s, kw, v) {
    join_key(p, sp, kw);
    if(!strcmp(kw, "$ref")) {
      const json_t *t = json_is_string(v) ? tu_schema_resolve(c->root, json_string_value(v)) : NULL;
      if(!t)
        fail(c, ip, p, "$ref %s does not resolve", json_is_string(v) ? json_string_value(v) : "?");
      else
        validate(c, t, x, ip, json_string_value(v));
    } else if(!strcmp(kw, "type")) {
      int ok = 0, bad = 0;
      if(json_is_string(v)) {
        int r = has_type(x, json_string_value(v));
        ok = r == 1;
        bad = r < 0;
      } else if(json_is_array(v)) {
        for(size_t i = 0; i < json_array_size(v); i++) {
          const json_t *t = json_array_get(v, i);
          int r = json_is_string(t) ? has_type(x, json_string_value(t)) : -1;
          ok |= r == 1;
          bad |= r < 0;
        }
      } else {
        bad = 1;
      }
      if(bad)
        fail(c, ip, p, "type must be a type name or an array of them");
      else if(!ok) {
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fail(c, ip, p, "%s is not of type %s", type_of(x), want ? want : "?");
        free(want);
      }
    } else if(!strcmp(kw, "enum")) {
      int ok = 0;
      for(size_t i = 0; json_is_array(v) && i < json_array_size(v); i++)
        ok |= same(json_array_get(v, i), x);
      if(!ok) {
        char *got = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fail(c, ip, p, "%.80s is not one of %.300s", got ? got : "?", want ? want : "?");
        free(got);
        free(want);
      }
    } else if(!strcmp(kw, "const")) {
      if(!same(v, x)) {
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fail(c, ip, p, "must be %.200s", want ? want : "?");
        free(want);
      }
    } else if(!strcmp(kw, "required")) {
      for(size_t i = 0; json_is_object(x) && i < json_array_size(v); i++) {
        const char *name = json_string_value(json_array_get(v, i));
        if(name && !json_object_get(x, name)) {
          join_key(q, ip, name);
          fail(c, q, p, "required member '%s' is missing", name);
        }
      }
    } else if(!strcmp(kw, "properties")) {
      const char *k;
      json_t *sub;
      if(!json_is_object(v)) {
        fail(c, ip, p, "properties must be an object");
        continue;
      }
      if(!json_is_object(x))
        continue;
      json_object_foreach((json_t *)v, k, sub) {
        const json_t *m = json_object_get(x, k);
        if(m) {
          char sp2[PATH_MAX_LEN];
          join_key(q, ip, k);
          join_key(sp2, p, k);
          validate(c, sub, m, q, sp2);
        }
      }
    } else if(!strcmp(kw, "additionalProperties")) {
      if(!json_is_object(x))
        continue;
      const json_t *props = json_object_get(s, "properties");
      const char *k;
      json_t *m;
      json_object_foreach((json_t *)x, k, m) {
        if(props && json_object_get(props, k))
          continue;
        join_key(q, ip, k);
        if(json_is_false(v))
          fail(c, q, p, "member '%s' is not allowed here", k);
        else
          validate(c, v, m, q, p);
      }
    } else if(!strcmp(kw, "items")) {
      for(size_t i = 0; json_is_array(x) && i < json_array_size(x); i++) {
        join_idx(q, ip, i);
        validate(c, v, json_array_get(x, i), q, p);
      }
    } else if(!strcmp(kw, "minItems") || !strcmp(kw, "maxItems")) {
      if(!json_is_integer(v)) {
        fail(c, ip, p, "%s must be an integer", kw);
      } else if(json_is_array(x)) {
        json_int_t n = (json_int_t)json_array_size(x), lim = json_integer_value(v);
        if(kw[1] == 'i' ? n < lim : n > lim)
          fail(c, ip, p, "the array has %" JSON_INTEGER_FORMAT " items, %s is %"
               JSON_INTEGER_FORMAT, n, kw, lim);
      }
    } else if(!strcmp(kw, "minLength") || !strcmp(kw, "maxLength")) {
      if(!json_is_integer(v)) {
        fail(c, ip, p, "%s must be an integer", kw);
      } else if(json_is_string(x)) {
        json_int_t n = (json_int_t)utf8_len(json_string_value(x), json_string_length(x));
        json_int_t lim = json_integer_value(v);
        if(kw[1] == 'i' ? n < lim : n > lim)
          fail(c, ip, p, "the string has %" JSON_INTEGER_FORMAT " characters, %s is %"
               JSON_INTEGER_FORMAT, n, kw, lim);
      }
    } else if(!strcmp(kw, "minimum") || !strcmp(kw, "maximum") ||
              !strcmp(kw, "exclusiveMinimum") || !strcmp(kw, "exclusiveMaximum")) {
      if(!json_is_number(v)) {
        fail(c, ip, p, "%s must be a number", kw);
      } else if(json_is_number(x)) {
        double a = json_number_value(x), lim = json_number_value(v);
        int ok = !strcmp(kw, "minimum")   ? a >= lim
                 : !strcmp(kw, "maximum") ? a <= lim
                 : !strcmp(kw, "exclusiveMinimum") ? a > lim
                                                   : a < lim;
        if(!ok)
          fail(c, ip, p, "%.17g violates %s %.17g", a, kw, lim);
      }
    } else if(!strcmp(kw, "allOf")) {
      for(size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        join_idx(q, p, i);
        validate(c, json_array_get(v, i), x, ip, q);
      }
    } else if(!strcmp(kw, "anyOf") || !strcmp(kw, "oneOf")) {
      if(!json_is_array(v) || json_array_size(v) == 0) {
        fail(c, ip, p, "%s must be a non-empty array", kw);
        continue;
      }
      int closest;
      int m = branches(c, v, x, ip, p, &closest);
      int one = !strcmp(kw, "oneOf");
      if(m == 0) {
        fail(c, ip, p, "matches none of the %zu schemas of %s; closest is #%d:", json_array_size(v),
             kw, closest);
        join_idx(q, p, (size_t)closest);
        validate(c, json_array_get(v, (size_t)closest), x, ip, q);
      } else if(one && m > 1) {
        fail(c, ip, p, "matches %d of the schemas of oneOf, not exactly one", m);
      }
    } else {
      size_t k = 0, n = sizeof(annotations) / sizeof(*annotations);
      while(k < n && strcmp(kw, annotations[k]))
        k++;
      if(k == n)
        fail(c, ip, p, "unsupported keyword '%s'", kw);
    }
  }
  c->depth--;
  return c->count - before;
}

int tu_schema_validate(const json_t *root, const json_t *schema, const json_t *instance,
                       json_t **errors) {
  vctx c = {.root = root ? root : schema, .errors = errors ? json_array() : NULL};
  validate(&c, schema, instance, "", "#");
  if(errors)
    *errors = c.errors;
  return c.count;
}

int tu_schema_check(const json_t *root, const char *ref, const json_t *instance, char *msg,
                    size_t cap) {
  if(msg && cap)
    msg[0] = 0;
  const json_t *s = tu_schema_resolve(root, ref);
  if(!s) {
    if(msg && cap)
      snprintf(msg, cap, "%s does not resolve", ref ? ref : "(null)");
    return 1;
  }
  json_t *errors = NULL;
  int n = tu_schema_validate(root, s, instance, &errors);
  if(n && msg && cap) {
    size_t k = 0;
    for(size_t i = 0; i < json_array_size(errors) && i < 8 && k + 1 < cap; i++) {
      json_t *e = json_array_get(errors, i);
      int w = snprintf(msg + k, cap - k, "%s%s: %s (%s)", i ? "; " : "",
                       json_string_value(json_object_get(e, "pointer"))[0]
                           ? json_string_value(json_object_get(e, "pointer"))
                           : "(root)",
                       json_string_value(json_object_get(e, "detail")),
                       json_string_value(json_object_get(e, "schema")));
      if(w < 0)
        break;
      k += (size_t)w;
    }
  }
  json_decref(errors);
  return n;
}
