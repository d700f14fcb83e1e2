/* Job spec parsing: untrusted JSON in, fusion options out, every problem
 * named by its JSON pointer. The parse keeps going after a bad field so
 * that a client sees all its mistakes at once. */
#include "api/jobspec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/limits.h"

typedef struct pctx {
  json_t *errors;   /* [{"pointer","detail"}], NULL when the caller wants none */
  otf_error *err;
  otf_status first; /* code of the first problem, OTF_OK while there is none */
  int count;        /* problems seen (also those beyond the array's cap) */
  int nomem;
} pctx;

static void problem(pctx *c, otf_status code, const char *ptr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(pctx *c, otf_status code, const char *ptr_in, const char *fmt, ...) {
  char detail[OTF_ERROR_MSG_MAX], ptr[OTF_ERROR_PTR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  snprintf(ptr, sizeof(ptr), "%s", ptr_in);
  otf_utf8_fix(detail);
  otf_utf8_fix(ptr);
  if(c->first == OTF_OK) {
    c->first = code;
    otf__error_set(c->err, code, __FILE__, __LINE__, ptr, "%s", detail);
  }
  if(c->errors && c->count < OTF_JOBSPEC_MAX_ERRORS) {
    json_t *e = json_pack("{s:s, s:s}", "pointer", ptr, "detail", detail);
    if(!e || json_array_append_new(c->errors, e) != 0)
      c->nomem = 1;
  }
  c->count++;
}

/* JSON pointer of member key under base (RFC 6901: '~' -> "~0", '/' ->
 * "~1"); truncated to the buffer, which only shortens messages. */
static const char *ptr_key(char *dst, size_t cap, const char *base, const char *key) {
  size_t k = (size_t)snprintf(dst, cap, "%s/", base);
  for(const char *p = key; *p && k + 3 < cap; p++) {
    if(*p == '~' || *p == '/') {
      dst[k++] = '~';
      dst[k++] = *p == '~' ? '0' : '1';
    } else {
      dst[k++] = *p;
    }
  }
  if(k >= cap)
    k = cap - 1;
  dst[k] = 0;
  return dst;
}

static const char *ptr_idx(char *dst, size_t cap, const char *base, size_t i) {
  snprintf(dst, cap, "%s/%zu", base, i);
  return dst;
}

static const char *type_name(const json_t *v) {
  switch(json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

/* Reports every key of obj (at ptr) that is not in allowed[]. */
static void check_keys(pctx *c, json_t *obj, const char *ptr, const char *const *allowed,
                       size_t n) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    size_t k = 0;
    while(k < n && strcmp(key, allowed[k]))
      k++;
    if(k == n) {
      char p[OTF_ERROR_PTR_MAX];
      problem(c, OTF_E_INVAL, ptr_key(p, sizeof(p), ptr, key), "unknown key '%.64s'", key);
    }
  }
}

/* obj[key] as a string; NULL when absent, null (if nullable) or wrong
 * (reported). */
static const char *get_string(pctx *c, json_t *obj, const char *base, const char *key,
                              int nullable) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if(!v || (nullable && json_is_null(v)))
    return NULL;
  if(!json_is_string(v)) {
    char p[OTF_ERROR_PTR_MAX];
    problem(c, OTF_E_INVAL, ptr_key(p, sizeof(p), base, key), "%s must be a string%s, got %s",
            key, nullable ? " or null" : "", type_name(v));
    return NULL;
  }
  return json_string_value(v);
}

/* Reports a string that is not one of the names listed in `expected`. */
static void bad_name(pctx *c, const char *base, const char *key, const char *got,
                     const char *expected) {
  char p[OTF_ERROR_PTR_MAX];
  problem(c, OTF_E_INVAL, ptr_key(p, sizeof(p), base, key), "%s must be %s, got '%.64s'", key,
          expected, got);
}

/* A URI: non-empty, bounded, no control characters (policy is the caller's). */
static int check_uri(pctx *c, const char *ptr, const char *uri, size_t len) {
  if(len == 0) {
    problem(c, OTF_E_INVAL, ptr, "the URI is empty");
    return -1;
  }
  if(len > OTF_JOBSPEC_MAX_URI) {
    problem(c, OTF_E_TOO_LARGE, ptr, "the URI is %zu bytes, longer than the limit of %d", len,
            OTF_JOBSPEC_MAX_URI);
    return -1;
  }
  for(size_t i = 0; i < len; i++)
    if((unsigned char)uri[i] < 0x20 || uri[i] == 0x7f) {
      problem(c, OTF_E_INVAL, ptr, "the URI contains a control character at byte %zu", i);
      return -1;
    }
  return 0;
}

/* obj[key] as a URI string (nullable); NULL when absent/null/bad. */
static const char *get_uri(pctx *c, json_t *obj, const char *base, const char *key,
                           int nullable) {
  const char *s = get_string(c, obj, base, key, nullable);
  if(!s)
    return NULL;
  char p[OTF_ERROR_PTR_MAX];
  size_t len = json_string_length(json_object_get(obj, key));
  return check_uri(c, ptr_key(p, sizeof(p), base, key), s, len) == 0 ? s : NULL;
}

/* obj[key] as an integer in [lo, hi]; returns 1 if present and valid. */
static int get_int(pctx *c, json_t *obj, const char *base, const char *key, json_int_t lo,
                   json_int_t hi, json_int_t *out) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if(!v)
    return 0;
  char p[OTF_ERROR_PTR_MAX];
  ptr_key(p, sizeof(p), base, key);
  if(!json_is_integer(v)) {
    problem(c, OTF_E_INVAL, p, "%s must be an integer, got %s", key, type_name(v));
    return 0;
  }
  json_int_t x = json_integer_value(v);
  if(x < lo || x > hi) {
    problem(c, OTF_E_INVAL, p, "%s must be between %" JSON_INTEGER_FORMAT " and %"
            JSON_INTEGER_FORMAT ", got %" JSON_INTEGER_FORMAT, key, lo, hi, x);
    return 0;
  }
  *out = x;
  return 1;
}

/* Returns 1 if the body nests objects/arrays deeper than max (strings are
 * skipped, escapes included), so that hostile nesting is refused before
 * the recursive parser sees it. */
static int too_deep(const char *p, size_t len, int max) {
  int depth = 0, in_str = 0, esc = 0;
  for(size_t i = 0; i < len; i++) {
    char ch = p[i];
    if(in_str) {
      if(esc)
        esc = 0;
      else if(ch == '\\')
        esc = 1;
      else if(ch == '"')
        in_str = 0;
    } else if(ch == '"') {
      in_str = 1;
    } else if(ch == '{' || ch == '[') {
      if(++depth > max)
        return 1;
    } else if(ch == '}' || ch == ']') {
      depth--;
    }
  }
  return 0;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = otf_malloc(n);
  if(d)
    memcpy(d, s, n);
  return d;
}

/* ---- sections --------------------------------------------------------- */

static void parse_models(pctx *c, json_t *root, otf_jobspec *s, size_t max_models,
                         const char **uris) {
  json_t *models = json_object_get(root, "models");
  if(!models) {
    problem(c, OTF_E_INVAL, "/models",
            "models is required: a list of 2 to %zu objects {\"uri\": ...}", max_models);
    return;
  }
  if(!json_is_array(models)) {
    problem(c, OTF_E_INVAL, "/models", "models must be an array, got %s", type_name(models));
    return;
  }
  size_t n = json_array_size(models);
  if(n < 2) {
    problem(c, OTF_E_INVAL, "/models", "a fusion needs at least 2 models, got %zu", n);
    return;
  }
  if(n > max_models) {
    problem(c, OTF_E_TOO_LARGE, "/models", "at most %zu models per job, got %zu", max_models,
            n);
    return;
  }
  static const char *const keys[] = {"uri"};
  int ok = 1;
  for(size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(models, i);
    char p[OTF_ERROR_PTR_MAX], q[OTF_ERROR_PTR_MAX];
    ptr_idx(p, sizeof(p), "/models", i);
    if(!json_is_object(m)) {
      problem(c, OTF_E_INVAL, p, "each model must be an object {\"uri\": ...}, got %s",
              type_name(m));
      ok = 0;
      continue;
    }
    check_keys(c, m, p, keys, 1);
    if(!json_object_get(m, "uri")) {
      problem(c, OTF_E_INVAL, ptr_key(q, sizeof(q), p, "uri"), "uri is required");
      ok = 0;
      continue;
    }
    uris[i] = get_uri(c, m, p, "uri", 0);
    ok &= uris[i] != NULL;
  }
  if(ok)
    s->n_models = n;
}

/* The "ot" object. n: model count, 0 when the models were bad. */
static void parse_ot(pctx *c, json_t *ot, otf_jobspec *s, size_t n) {
  static const char *const keys[] = {"align",   "solver",    "reg",       "residual", "qk",
                                     "anchor",  "weights",   "metric",    "cost_norm",
                                     "unit_rows", "maps",    "components", "tokens"};
  otf_fuse_opts *o = &s->opts;
  if(!ot)
    return;
  if(!json_is_object(ot)) {
    problem(c, OTF_E_INVAL, "/ot", "ot must be an object, got %s", type_name(ot));
    return;
  }
  check_keys(c, ot, "/ot", keys, sizeof(keys) / sizeof(*keys));
  const char *v;
  if((v = get_string(c, ot, "/ot", "align", 0)) && otf_align_parse(&o->align, v))
    bad_name(c, "/ot", "align", v, "weights or activations");
  if((v = get_string(c, ot, "/ot", "solver", 0)) && otf_fuse_solver_parse(&o->solver, v))
    bad_name(c, "/ot", "solver", v, "sinkhorn, exact or mixed");
  if((v = get_string(c, ot, "/ot", "residual", 0)) && otf_resid_parse(&o->resid, v))
    bad_name(c, "/ot", "residual", v,
             "mean, skip, branch, weighted-scalar or weighted-matrix");
  if((v = get_string(c, ot, "/ot", "qk", 0)) && otf_qk_parse(&o->qk, v))
    bad_name(c, "/ot", "qk", v, "separate, shared or heads");
  if((v = get_string(c, ot, "/ot", "metric", 0)) && otf_metric_parse(&o->metric, v))
    bad_name(c, "/ot", "metric", v, "euclidean, sqeuclidean or cosine");
  if((v = get_string(c, ot, "/ot", "cost_norm", 0)) && otf_cost_norm_parse(&o->cost_norm, v))
    bad_name(c, "/ot", "cost_norm", v, "max, mean, median, log or none");
  if((v = get_string(c, ot, "/ot", "maps", 0)) && otf_tmnorm_parse(&o->tmnorm, v))
    bad_name(c, "/ot", "maps", v, "clean or reference");
  if((v = get_string(c, ot, "/ot", "tokens", 0)) && otf_fuse_tokens_parse(&o->window, v))
    bad_name(c, "/ot", "tokens", v, "all, cls or window-K with 1 <= K <= 4096");

  json_t *x = json_object_get(ot, "unit_rows");
  if(x && !json_is_boolean(x))
    problem(c, OTF_E_INVAL, "/ot/unit_rows", "unit_rows must be a boolean, got %s",
            type_name(x));
  else if(x)
    o->unit_rows = json_is_true(x);

  x = json_object_get(ot, "reg");
  if(x && json_is_string(x) && !strcmp(json_string_value(x), "auto")) {
    s->reg_auto = 1;
    o->reg = 0.0;
  } else if(x && (!json_is_number(x) || !(json_number_value(x) > 0.0) ||
                  !isfinite(json_number_value(x)))) {
    if(json_is_number(x))
      problem(c, OTF_E_INVAL, "/ot/reg", "reg must be > 0, got %g", json_number_value(x));
    else
      problem(c, OTF_E_INVAL, "/ot/reg", "reg must be a number > 0 or \"auto\", got %s",
              type_name(x));
  } else if(x) {
    o->reg = json_number_value(x);
  }

  x = json_object_get(ot, "anchor");
  size_t hi = n ? n : OTF_MAX_PARENTS;
  if(x && json_is_string(x) && !strcmp(json_string_value(x), "auto")) {
    s->anchor_auto = 1;
    o->anchor = -1;
  } else if(x && !json_is_integer(x)) {
    problem(c, OTF_E_INVAL, "/ot/anchor", "anchor must be a model index or \"auto\", got %s",
            type_name(x));
  } else if(x && (json_integer_value(x) < 0 || (size_t)json_integer_value(x) >= hi)) {
    problem(c, OTF_E_INVAL, "/ot/anchor",
            "anchor %" JSON_INTEGER_FORMAT " is not one of the %zu models (0..%zu)",
            json_integer_value(x), hi, hi - 1);
  } else if(x) {
    o->anchor = (int)json_integer_value(x);
  }

  x = json_object_get(ot, "weights");
  if(x && !json_is_array(x)) {
    problem(c, OTF_E_INVAL, "/ot/weights", "weights must be an array of numbers, got %s",
            type_name(x));
  } else if(x) {
    size_t nw = json_array_size(x);
    if(n && nw != n) {
      problem(c, OTF_E_INVAL, "/ot/weights", "weights has %zu values for %zu models", nw, n);
    } else if(nw > OTF_MAX_PARENTS) {
      problem(c, OTF_E_INVAL, "/ot/weights", "weights has %zu values, more than %d models",
              nw, OTF_MAX_PARENTS);
    } else {
      double sum = 0.0;
      int ok = 1;
      for(size_t i = 0; i < nw; i++) {
        json_t *w = json_array_get(x, i);
        char p[OTF_ERROR_PTR_MAX];
        ptr_idx(p, sizeof(p), "/ot/weights", i);
        if(!json_is_number(w)) {
          problem(c, OTF_E_INVAL, p, "a weight must be a number, got %s", type_name(w));
          ok = 0;
        } else if(!(json_number_value(w) >= 0.0) || !isfinite(json_number_value(w))) {
          problem(c, OTF_E_INVAL, p, "a weight must be >= 0, got %g", json_number_value(w));
          ok = 0;
        } else {
          o->weights[i] = json_number_value(w);
          sum += o->weights[i];
        }
      }
      if(ok && !(sum > 0.0))
        problem(c, OTF_E_INVAL, "/ot/weights", "the weights are all 0");
      if(ok && !isfinite(sum))
        problem(c, OTF_E_INVAL, "/ot/weights", "the weights sum to infinity");
    }
  }

  x = json_object_get(ot, "components");
  if(x && !json_is_array(x)) {
    problem(c, OTF_E_INVAL, "/ot/components",
            "components must be an array of embed, attn, norm, mlp, bias, head; got %s",
            type_name(x));
  } else if(x && json_array_size(x) == 0) {
    problem(c, OTF_E_INVAL, "/ot/components",
            "components is empty: name at least one of embed, attn, norm, mlp, bias, head");
  } else if(x) {
    unsigned bits = 0;
    int ok = 1;
    for(size_t i = 0; i < json_array_size(x); i++) {
      json_t *e = json_array_get(x, i);
      unsigned bit = json_is_string(e) ? otf_fuse_component_bit(json_string_value(e)) : 0;
      if(!bit) {
        char p[OTF_ERROR_PTR_MAX];
        ptr_idx(p, sizeof(p), "/ot/components", i);
        if(json_is_string(e))
          problem(c, OTF_E_INVAL, p,
                  "component must be embed, attn, norm, mlp, bias or head, got '%.64s'",
                  json_string_value(e));
        else
          problem(c, OTF_E_INVAL, p, "a component must be a string, got %s", type_name(e));
        ok = 0;
        if(i >= OTF_JOBSPEC_MAX_ERRORS)
          break;
      }
      bits |= bit;
    }
    if(ok)
      o->components = bits;
  }
}

static void parse_calibration(pctx *c, json_t *cal, otf_jobspec *s, const char **uri) {
  static const char *const keys[] = {"uri", "samples", "seed"};
  if(!cal || json_is_null(cal))
    return;
  if(!json_is_object(cal)) {
    problem(c, OTF_E_INVAL, "/calibration", "calibration must be an object, got %s",
            type_name(cal));
    return;
  }
  check_keys(c, cal, "/calibration", keys, 3);
  *uri = get_uri(c, cal, "/calibration", "uri", 1);
  json_int_t v;
  if(get_int(c, cal, "/calibration", "samples", 0, OTF_JOBSPEC_MAX_SAMPLES, &v))
    s->opts.samples = (size_t)v;
  if(get_int(c, cal, "/calibration", "seed", 0, INT64_MAX, &v))
    s->opts.seed = (uint64_t)v;
}

static void parse_output(pctx *c, json_t *outp, otf_jobspec *s, const char **uri) {
  static const char *const keys[] = {"uri", "dtype"};
  if(!outp || json_is_null(outp))
    return;
  if(!json_is_object(outp)) {
    problem(c, OTF_E_INVAL, "/output", "output must be an object, got %s", type_name(outp));
    return;
  }
  check_keys(c, outp, "/output", keys, 2);
  *uri = get_uri(c, outp, "/output", "uri", 1);
  const char *d = get_string(c, outp, "/output", "dtype", 1);
  if(!d)
    return;
  if(!strcmp(d, "f32"))
    s->dtype = OTF_DT_F32;
  else if(!strcmp(d, "f16"))
    s->dtype = OTF_DT_F16;
  else if(!strcmp(d, "bf16"))
    s->dtype = OTF_DT_BF16;
  else
    bad_name(c, "/output", "dtype", d, "f32, f16 or bf16");
}

/* obj[key] as a finite number in [lo, hi] (lo_open: > lo); 1 if present and valid. */
static int get_real(pctx *c, json_t *obj, const char *base, const char *key, double lo,
                    int lo_open, double hi, double *out) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if(!v)
    return 0;
  char p[OTF_ERROR_PTR_MAX];
  ptr_key(p, sizeof(p), base, key);
  if(!json_is_number(v)) {
    problem(c, OTF_E_INVAL, p, "%s must be a number, got %s", key, type_name(v));
    return 0;
  }
  double x = json_number_value(v);
  if(!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
    problem(c, OTF_E_INVAL, p, "%s must be %s %g and at most %g, got %g", key,
            lo_open ? ">" : ">=", lo, hi, x);
    return 0;
  }
  *out = x;
  return 1;
}

/* "finetune": a short training of the fused model (otf_finetune_dir),
 * with the keys of `otfuse fuse --finetune-*`. */
static void parse_finetune(pctx *c, json_t *ft, otf_jobspec *s, const char **data,
                           const char **eval) {
  static const char *const keys[] = {"data_uri", "eval_uri", "epochs", "steps", "lr", "batch",
                                     "warmup", "weight_decay", "seed", "augment_shift"};
  if(!ft || json_is_null(ft))
    return;
  if(!json_is_object(ft)) {
    problem(c, OTF_E_INVAL, "/finetune", "finetune must be an object, got %s", type_name(ft));
    return;
  }
  s->finetune = 1;
  check_keys(c, ft, "/finetune", keys, sizeof(keys) / sizeof(*keys));
  *data = get_uri(c, ft, "/finetune", "data_uri", 0);
  if(!json_object_get(ft, "data_uri"))
    problem(c, OTF_E_INVAL, "/finetune/data_uri",
            "finetune needs data_uri: a labelled safetensors file to train on");
  *eval = get_uri(c, ft, "/finetune", "eval_uri", 1);
  otf_finetune_opts *o = &s->ft;
  double x;
  json_int_t v;
  if(get_real(c, ft, "/finetune", "epochs", 0.0, 0, 10000.0, &x))
    o->epochs = x;
  if(get_int(c, ft, "/finetune", "steps", 0, 100000000, &v)) {
    o->steps = (uint64_t)v;
    if(!json_object_get(ft, "epochs"))
      o->epochs = 0.0; /* a step budget */
  }
  if(o->epochs > 0.0 && o->steps > 0)
    problem(c, OTF_E_INVAL, "/finetune/steps", "give epochs or steps, not both");
  else if(!(o->epochs > 0.0) && o->steps == 0)
    problem(c, OTF_E_INVAL, "/finetune/epochs", "finetune needs a budget: epochs > 0 or steps > 0");
  if(get_real(c, ft, "/finetune", "lr", 0.0, 1, 10.0, &x))
    o->lr = x;
  if(get_int(c, ft, "/finetune", "batch", 1, 65536, &v))
    o->batch = (size_t)v;
  if(get_real(c, ft, "/finetune", "warmup", 0.0, 0, 1.0, &x))
    o->warmup = x;
  if(get_real(c, ft, "/finetune", "weight_decay", 0.0, 0, 10.0, &x))
    o->weight_decay = x;
  if(get_int(c, ft, "/finetune", "seed", 0, INT64_MAX, &v))
    o->seed = (uint64_t)v;
  if(get_int(c, ft, "/finetune", "augment_shift", 0, 64, &v))
    o->augment_shift = (int)v;
}

/* Options that only make sense with others. */
static void cross_check(pctx *c, const otf_jobspec *s, const char *cal_uri) {
  const otf_fuse_opts *o = &s->opts;
  if(o->method != OTF_METHOD_OT) {
    if(s->anchor_auto)
      problem(c, OTF_E_INVAL, "/ot/anchor", "anchor \"auto\" needs method \"ot\"");
    if(s->reg_auto)
      problem(c, OTF_E_INVAL, "/ot/reg", "reg \"auto\" needs method \"ot\"");
    return;
  }
  const char *why = NULL;
  if(o->align == OTF_ALIGN_ACTIVATIONS)
    why = "align \"activations\"";
  else if(o->resid == OTF_RESID_WSCALAR || o->resid == OTF_RESID_WMATRIX)
    why = "a weighted residual policy";
  else if(s->anchor_auto)
    why = "anchor \"auto\" (candidates are scored on labelled data)";
  else if(s->reg_auto)
    why = "reg \"auto\" (candidates are scored on labelled data)";
  if(why && !cal_uri)
    problem(c, OTF_E_INVAL, "/calibration/uri", "%s needs a calibration file: calibration.uri",
            why);
}

static const char *dtype_key(otf_dtype d) {
  return d == OTF_DT_F32 ? "f32" : d == OTF_DT_F16 ? "f16" : d == OTF_DT_BF16 ? "bf16" : NULL;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* The normalised spec: every key present, defaults filled in. Takes
 * ownership of metadata (may be NULL: then the result is NULL). */
static json_t *normalise(const otf_jobspec *s, json_t *metadata) {
  const otf_fuse_opts *o = &s->opts;
  json_t *models = json_array(), *weights = json_array(), *comps = json_array();
  if(!models || !weights || !comps)
    goto fail;
  for(size_t i = 0; i < s->n_models; i++)
    if(json_array_append_new(models, json_pack("{s:s}", "uri", s->models[i])))
      goto fail;
  double sum = 0.0;
  for(size_t i = 0; i < s->n_models; i++)
    sum += o->weights[i];
  for(size_t i = 0; i < s->n_models; i++)
    if(json_array_append_new(weights, json_real(sum > 0.0 ? o->weights[i]
                                                          : 1.0 / (double)s->n_models)))
      goto fail;
  for(unsigned bit = 1; bit <= OTF_FUSE_ALL; bit <<= 1)
    if((o->components & bit) &&
       json_array_append_new(comps, json_string(otf_fuse_component_name(bit))))
      goto fail;
  char tokens[32];
  otf_fuse_tokens_format(tokens, sizeof(tokens), o->window);
  json_t *reg = s->reg_auto ? json_string("auto") : json_real(o->reg);
  json_t *anchor = s->anchor_auto ? json_string("auto") : json_integer(o->anchor);
  const char *dt = dtype_key(s->dtype);
  json_t *spec = json_pack(
      "{s:o, s:s, s:{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:s, s:s, s:b, s:s, s:o, s:s},"
      " s:{s:o, s:I, s:I}, s:{s:o, s:o}, s:o}",
      "models", models, "method", otf_method_name(o->method), "ot", "align",
      otf_align_name(o->align), "solver", otf_fuse_solver_name(o->solver), "reg", reg,
      "residual", otf_resid_name(o->resid), "qk", otf_qk_name(o->qk), "anchor", anchor,
      "weights", weights, "metric", otf_metric_name(o->metric), "cost_norm",
      otf_cost_norm_name(o->cost_norm), "unit_rows", o->unit_rows, "maps",
      otf_tmnorm_name(o->tmnorm), "components", comps, "tokens", tokens, "calibration", "uri",
      str_or_null(s->calibration_uri), "samples", (json_int_t)o->samples, "seed",
      (json_int_t)o->seed, "output", "uri", str_or_null(s->output_uri), "dtype",
      str_or_null(dt), "metadata", metadata);
  if(spec && s->finetune) {
    const otf_finetune_opts *f = &s->ft;
    json_t *ft = json_pack("{s:s, s:o, s:f, s:I, s:f, s:I, s:f, s:f, s:I, s:i}", "data_uri",
                           s->ft_data_uri, "eval_uri", str_or_null(s->ft_eval_uri), "epochs",
                           f->epochs, "steps", (json_int_t)f->steps, "lr", f->lr, "batch",
                           (json_int_t)f->batch, "warmup", f->warmup, "weight_decay",
                           f->weight_decay, "seed", (json_int_t)f->seed, "augment_shift",
                           f->augment_shift);
    if(!ft || json_object_set_new(spec, "finetune", ft) != 0) {
      json_decref(spec);
      return NULL;
    }
  }
  return spec; /* "o" references are stolen even when packing fails */
fail:
  json_decref(metadata);
  json_decref(models);
  json_decref(weights);
  json_decref(comps);
  return NULL;
}

/* ---- entry points ----------------------------------------------------- */

otf_status otf_jobspec_parse(otf_jobspec *out, const char *body, size_t len,
                             size_t max_models, json_t **errors, otf_error *err) {
  memset(out, 0, sizeof(*out));
  otf_fuse_opts_default(&out->opts);
  out->dtype = OTF_DT_COUNT;
  if(errors)
    *errors = NULL;
  if(max_models > OTF_MAX_PARENTS)
    max_models = OTF_MAX_PARENTS;
  pctx c = {.err = err};
  if(errors && !(c.errors = json_array()))
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a job spec");
  json_t *root = NULL;
  const char *uris[OTF_MAX_PARENTS] = {0}, *cal_uri = NULL, *out_uri = NULL;
  const char *ft_data = NULL, *ft_eval = NULL;
  otf_finetune_opts_default(&out->ft);

  if(!body || len == 0) {
    problem(&c, OTF_E_FORMAT, "", "the job spec is empty: send a JSON object");
    goto done;
  }
  if(len > OTF_JOBSPEC_MAX_BYTES) {
    problem(&c, OTF_E_TOO_LARGE, "", "the job spec is %zu bytes, more than the limit of %zu",
            len, OTF_JOBSPEC_MAX_BYTES);
    goto done;
  }
  if(too_deep(body, len, OTF_MAX_JSON_DEPTH)) {
    problem(&c, OTF_E_TOO_LARGE, "", "the job spec nests deeper than %d levels",
            OTF_MAX_JSON_DEPTH);
    goto done;
  }
  json_error_t je;
  root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
  if(!root) {
    problem(&c, OTF_E_FORMAT, "", "the job spec is not valid JSON: %s (line %d, column %d)",
            je.text, je.line, je.column);
    goto done;
  }
  if(!json_is_object(root)) {
    problem(&c, OTF_E_FORMAT, "", "the job spec must be a JSON object, got %s",
            type_name(root));
    goto done;
  }
  static const char *const keys[] = {"models", "method", "ot", "calibration", "output",
                                     "finetune", "metadata"};
  check_keys(&c, root, "", keys, sizeof(keys) / sizeof(*keys));
  parse_models(&c, root, out, max_models, uris);
  const char *m = get_string(&c, root, "", "method", 0);
  if(m && otf_method_parse(&out->opts.method, m))
    bad_name(&c, "", "method", m, "ot or average");
  parse_ot(&c, json_object_get(root, "ot"), out, out->n_models);
  parse_calibration(&c, json_object_get(root, "calibration"), out, &cal_uri);
  parse_output(&c, json_object_get(root, "output"), out, &out_uri);
  parse_finetune(&c, json_object_get(root, "finetune"), out, &ft_data, &ft_eval);
  json_t *md = json_object_get(root, "metadata");
  if(md && !json_is_object(md) && !json_is_null(md))
    problem(&c, OTF_E_INVAL, "/metadata", "metadata must be an object, got %s", type_name(md));
  cross_check(&c, out, cal_uri);
  if(c.first != OTF_OK || c.nomem)
    goto done;

  /* Valid: copy out what the caller keeps. */
  for(size_t i = 0; i < out->n_models; i++)
    if(!(out->models[i] = dup_str(uris[i])))
      c.nomem = 1;
  if(cal_uri && !(out->calibration_uri = dup_str(cal_uri)))
    c.nomem = 1;
  if(out_uri && !(out->output_uri = dup_str(out_uri)))
    c.nomem = 1;
  if(ft_data && !(out->ft_data_uri = dup_str(ft_data)))
    c.nomem = 1;
  if(ft_eval && !(out->ft_eval_uri = dup_str(ft_eval)))
    c.nomem = 1;
  if(md && json_is_object(md) && !(out->metadata = json_deep_copy(md)))
    c.nomem = 1;
  if(!c.nomem) {
    out->spec = normalise(out, out->metadata ? json_deep_copy(out->metadata) : json_object());
    if(!out->spec)
      c.nomem = 1;
  }

done:
  json_decref(root);
  otf_status rc = c.first;
  if(c.nomem)
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a job spec");
  if(rc != OTF_OK) {
    otf_jobspec_free(out);
    if(errors && !c.nomem)
      *errors = c.errors;
    else
      json_decref(c.errors);
    return rc;
  }
  json_decref(c.errors);
  return OTF_OK;
}

void otf_jobspec_free(otf_jobspec *s) {
  if(!s)
    return;
  for(size_t i = 0; i < OTF_MAX_PARENTS; i++)
    otf_free(s->models[i]);
  otf_free(s->calibration_uri);
  otf_free(s->output_uri);
  otf_free(s->ft_data_uri);
  otf_free(s->ft_eval_uri);
  json_decref(s->spec);
  json_decref(s->metadata);
  memset(s, 0, sizeof(*s));
}
