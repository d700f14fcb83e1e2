/* otfuse submit | status | wait | jobs | cancel | download: the client of
 * the otfused REST API (libcurl). The server URL and token come from
 * --url/--token or OTFUSE_URL/OTFUSE_TOKEN (default http://127.0.0.1:8080);
 * server errors are shown from their problem+json body.
 *
 * Exit status: 0 success; 1 failure (server error, unreachable, failed
 * job, bad download); 2 usage; `wait` also 3 for a cancelled job. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/jobspec.h"
#include "cli/commands.h"
#include "storage/digest.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
/* A JSON response larger than this is not one of ours: refuse it rather
 * than hold it (a job list page of 1000 jobs is a few MiB). */
#define MAX_JSON_RESPONSE ((size_t)64 << 20)

/* ---- connection and requests ------------------------------------------ */

typedef struct client {
  const char *cmd;   /* "submit", ... for messages */
  const char *token; /* NULL: no Authorization header */
  char base[1024];   /* URL without trailing '/' */
  CURL *h;
} client;

typedef struct buf {
  char *p;
  size_t n, cap;
  int too_big;
} buf;

static size_t buf_write(char *data, size_t size, size_t n, void *ud) {
  buf *b = ud;
  size_t len = size * n;
  if(b->n + len + 1 > MAX_JSON_RESPONSE) {
    b->too_big = 1;
    return 0;
  }
  if(b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while(cap < b->n + len + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if(!p)
      return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, len);
  b->n += len;
  b->p[b->n] = 0;
  return len;
}

static void buf_free(buf *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

static int client_open(client *c, const char *cmd, const char *url, const char *token) {
  memset(c, 0, sizeof(*c));
  c->cmd = cmd;
  if(!url || !*url)
    url = getenv("OTFUSE_URL");
  if(!url || !*url)
    url = DEFAULT_URL;
  if(strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
    fprintf(stderr, "otfuse %s: the server URL must start with http:// or https:// (got '%s')\n",
            cmd, url);
    return 2;
  }
  size_t n = strlen(url);
  while(n > 0 && url[n - 1] == '/')
    n--;
  if(n >= sizeof(c->base)) {
    fprintf(stderr, "otfuse %s: the server URL is too long\n", cmd);
    return 2;
  }
  memcpy(c->base, url, n);
  c->base[n] = 0;
  c->token = token && *token ? token : getenv("OTFUSE_TOKEN");
  if(c->token && !*c->token)
    c->token = NULL;
  for(const char *p = c->token; p && *p; p++)
    if(*p <= ' ' || *p == 0x7f) {
      fprintf(stderr, "otfuse %s: the token has a space or control character\n", cmd);
      return 2;
    }
  if(curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c->h = curl_easy_init())) {
    fprintf(stderr, "otfuse %s: cannot initialise libcurl\n", cmd);
    return 1;
  }
  return 0;
}

static void client_close(client *c) {
  if(c->h)
    curl_easy_cleanup(c->h);
  c->h = NULL;
  curl_global_cleanup();
}

/* Sets up the handle for one request to base + path, sending body (may be
 * NULL) and the optional Idempotency-Key. Returns the header list to free. */
static struct curl_slist *setup(client *c, const char *method, const char *path,
                                const char *body, const char *idem) {
  char url[4096];
  snprintf(url, sizeof(url), "%s%s", c->base, path);
  CURL *h = c->h;
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_USERAGENT, "otfuse/0.1.0");
  struct curl_slist *hd = NULL, *t;
  char line[4200];
  hd = curl_slist_append(hd, "Accept: application/json, application/problem+json");
  if(c->token) {
    snprintf(line, sizeof(line), "Authorization: Bearer %s", c->token);
    if((t = curl_slist_append(hd, line)))
      hd = t;
  }
  if(idem) {
    snprintf(line, sizeof(line), "Idempotency-Key: %s", idem);
    if((t = curl_slist_append(hd, line)))
      hd = t;
  }
  if(body) {
    if((t = curl_slist_append(hd, "Content-Type: application/json")))
      hd = t;
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  if(!strcmp(method, "POST") && !body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  } else if(strcmp(method, "GET") && strcmp(method, "POST")) {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  return hd;
}

/* One JSON request. Returns 0 with *status and the body in out when the
 * server answered (any status), -1 after printing why when it did not. */
static int request(client *c, const char *method, const char *path, const char *body,
                   const char *idem, long *status, buf *out, int quiet) {
  memset(out, 0, sizeof(*out));
  struct curl_slist *hd = setup(c, method, path, body, idem);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, buf_write);
  curl_easy_setopt(c->h, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(c->h);
  curl_slist_free_all(hd);
  if(rc != CURLE_OK) {
    if(!quiet) {
      if(out->too_big)
        fprintf(stderr, "otfuse %s: %s %s: the response is larger than %zu MiB\n", c->cmd,
                method, path, MAX_JSON_RESPONSE >> 20);
      else
        fprintf(stderr, "otfuse %s: cannot reach %s: %s\n", c->cmd, c->base,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    buf_free(out);
    return -1;
  }
  curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, status);
  return 0;
}

/* Prints an error response: the problem's title, detail, pointer and
 * field errors when the body is problem+json, else the start of the body. */
static void print_problem(const client *c, long status, const buf *b) {
  json_t *p = b->p ? json_loadb(b->p, b->n, 0, NULL) : NULL;
  const char *detail = json_string_value(json_object_get(p, "detail"));
  const char *title = json_string_value(json_object_get(p, "title"));
  if(detail) {
    const char *ptr = json_string_value(json_object_get(p, "pointer"));
    fprintf(stderr, "otfuse %s: %s (HTTP %ld): %s%s%s\n", c->cmd, title ? title : "error",
            status, ptr && *ptr ? ptr : "", ptr && *ptr ? ": " : "", detail);
    json_t *errs = json_object_get(p, "errors");
    size_t i;
    json_t *e;
    if(json_array_size(errs) > 1)
      json_array_foreach(errs, i, e) {
        fprintf(stderr, "  %s: %s\n", json_string_value(json_object_get(e, "pointer")),
                json_string_value(json_object_get(e, "detail")));
      }
    const char *rid = json_string_value(json_object_get(p, "request_id"));
    if(rid)
      fprintf(stderr, "  (request id %s)\n", rid);
  } else {
    fprintf(stderr, "otfuse %s: HTTP %ld%s%.200s\n", c->cmd, status, b->n ? ": " : "",
            b->p ? b->p : "");
  }
  json_decref(p);
}

/* The JSON body of a response, or NULL after printing why. */
static json_t *parse_body(const client *c, const buf *b) {
  json_error_t je;
  json_t *v = b->p ? json_loadb(b->p, b->n, 0, &je) : NULL;
  if(!v)
    fprintf(stderr, "otfuse %s: the server sent a body that is not JSON%s%s\n", c->cmd,
            b->p ? ": " : "", b->p ? je.text : "");
  return v;
}

/* GET/POST path expecting one of two success statuses (ok2 may be 0);
 * returns the parsed body or NULL after printing the error. */
static json_t *call(client *c, const char *method, const char *path, const char *body,
                    const char *idem, long ok1, long ok2, long *status_out) {
  long status = 0;
  buf b;
  if(request(c, method, path, body, idem, &status, &b, 0) != 0)
    return NULL;
  if(status_out)
    *status_out = status;
  json_t *v = NULL;
  if(status == ok1 || (ok2 && status == ok2))
    v = parse_body(c, &b);
  else
    print_problem(c, status, &b);
  buf_free(&b);
  return v;
}

static void print_json(const json_t *v, int pretty) {
  char *s = json_dumps(v, pretty ? JSON_INDENT(2) : JSON_COMPACT);
  if(s) {
    puts(s);
    free(s);
  }
  fflush(stdout);
}

/* Job ids go into paths: letters, digits, '-', '_' only. */
static int check_id(const char *cmd, const char *id) {
  size_t n = strlen(id);
  int ok = n > 0 && n <= 64;
  for(size_t i = 0; ok && i < n; i++)
    ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
         (id[i] >= '0' && id[i] <= '9') || id[i] == '-' || id[i] == '_';
  if(!ok)
    fprintf(stderr, "otfuse %s: '%.80s' is not a job id\n", cmd, id);
  return ok ? 0 : -1;
}

/* ---- option parsing shared by every client command --------------------- */

enum { OPT_URL = 1000, OPT_TOKEN, OPT_HELP };
#define COMMON_OPTS                                                                            \
  {"url", required_argument, 0, OPT_URL}, {"token", required_argument, 0, OPT_TOKEN},          \
      {"help", no_argument, 0, OPT_HELP}

static const char common_help[] =
    "  --url URL                server (default $OTFUSE_URL, else " DEFAULT_URL ")\n"
    "  --token TOKEN            bearer token (default $OTFUSE_TOKEN)\n";

/* ---- submit ------------------------------------------------------------ */

static void submit_usage(FILE *f) {
  fprintf(f,
    "usage: otfuse submit [options] SPEC.json|-\n"
    "       otfuse submit [fuse options] [-o OUTPUT_URI] MODEL MODEL [MODEL...]\n"
    "\n"
    "Submits a fusion job to otfused and prints the job as JSON (-q: its id).\n"
    "A MODEL, --calibration or -o that is a local path becomes a file:// URI\n"
    "(the server must allow it with --file-root); s3:// and http(s):// URIs are\n"
    "passed as they are. The spec is checked here before it is sent.\n"
    "\n"
    "  --method ot|average      --align weights|activations\n"
    "  --calibration URI        --samples N         --seed S\n"
    "  --solver sinkhorn|exact|mixed                --reg R|auto\n"
    "  --residual mean|skip|branch|weighted-scalar|weighted-matrix\n"
    "  --qk separate|shared|heads                   --anchor K|auto\n"
    "  --weights W1,W2,...      --dtype f32|f16|bf16\n"
    "  --metric euclidean|sqeuclidean|cosine        --cost-norm max|mean|median|log|none\n"
    "  --no-unit-rows           --maps clean|reference\n"
    "  --components LIST        --tokens all|cls|window-K\n"
    "                           (as `otfuse fuse`; see its --help)\n"
    "  -o, --output URI         where the server writes the fused model (default:\n"
    "                           its data dir; fetch with `otfuse download`)\n"
    "  --metadata JSON          object echoed back on the job\n"
    "  --idempotency-key KEY    a retry with the same key returns the same job\n"
    "  --wait                   then wait for it as `otfuse wait` does\n"
    "  -q, --quiet              print only the job id\n"
    "%s", common_help);
}

/* A local path -> file:// URI of its absolute form; URIs pass through.
 * must_exist: the path itself must exist (else only its parent). An
 * absolute path that is not here is passed on as it is: it may be a path
 * on the server's machine. */
static char *to_uri(const char *s, int must_exist) {
  if(strstr(s, "://"))
    return strdup(s);
  char abs[PATH_MAX];
  if(s[0] == '/' && access(s, F_OK) != 0) {
    size_t n = strlen(s) + 8;
    char *u = malloc(n);
    if(u)
      snprintf(u, n, "file://%s", s);
    return u;
  }
  if(realpath(s, abs)) {
    struct stat st;
    int dir = stat(abs, &st) == 0 && S_ISDIR(st.st_mode);
    size_t n = strlen(abs) + 16;
    char *u = malloc(n);
    if(u)
      snprintf(u, n, "file://%s%s", abs, dir && strcmp(abs, "/") ? "/" : "");
    return u;
  }
  if(must_exist)
    return NULL;
  /* not there yet (an output folder): resolve its parent */
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s", s);
  size_t n = strlen(tmp);
  while(n > 1 && tmp[n - 1] == '/')
    tmp[--n] = 0;
  char *slash = strrchr(tmp, '/');
  const char *base = slash ? slash + 1 : tmp;
  char parent[PATH_MAX];
  if(slash == tmp)
    snprintf(parent, sizeof(parent), "/");
  else if(slash)
    snprintf(parent, sizeof(parent), "%.*s", (int)(slash - tmp), tmp);
  else
    snprintf(parent, sizeof(parent), ".");
  if(!*base || !realpath(parent, abs))
    return NULL;
  size_t m = strlen(abs) + strlen(base) + 16;
  char *u = malloc(m);
  if(u)
    snprintf(u, m, "file://%s/%s/", strcmp(abs, "/") ? abs : "", base);
  return u;
}

static int usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_err(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "otfuse %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

/* Reads a whole spec file (or stdin for "-"), at most the spec limit. */
static char *read_spec(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if(!f)
    return NULL;
  size_t cap = OTF_JOBSPEC_MAX_BYTES + 2, n = 0;
  char *p = malloc(cap);
  if(p) {
    n = fread(p, 1, cap - 1, f);
    p[n] = 0;
  }
  if(f != stdin)
    fclose(f);
  *len = n;
  return p;
}

static int wait_job(client *c, const char *id, double timeout, int quiet_json);

/* Puts key=value into obj, creating the sub-object sub when non-NULL. */
static void put(json_t *spec, const char *sub, const char *key, json_t *v) {
  json_t *o = spec;
  if(sub) {
    o = json_object_get(spec, sub);
    if(!o) {
      o = json_object();
      json_object_set_new(spec, sub, o);
    }
  }
  json_object_set_new(o, key, v);
}

static int parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if(!*s || *end || errno || !isfinite(v))
    return -1;
  *out = v;
  return 0;
}

static int parse_count(const char *s, json_int_t *out) {
  char *end;
  errno = 0;
  if(!*s || *s == '-' || *s == '+')
    return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if(*end || errno || v > (unsigned long long)INT64_MAX)
    return -1;
  *out = (json_int_t)v;
  return 0;
}

static int cmd_submit(int argc, char **argv) {
  static const struct option longopts[] = {
      {"method", required_argument, 0, 'm'},      {"align", required_argument, 0, 'a'},
      {"calibration", required_argument, 0, 'c'}, {"samples", required_argument, 0, 'n'},
      {"seed", required_argument, 0, 'S'},        {"solver", required_argument, 0, 's'},
      {"reg", required_argument, 0, 'r'},         {"residual", required_argument, 0, 'R'},
      {"qk", required_argument, 0, 'k'},          {"anchor", required_argument, 0, 'A'},
      {"weights", required_argument, 0, 'w'},     {"dtype", required_argument, 0, 'd'},
      {"metric", required_argument, 0, 'M'},      {"cost-norm", required_argument, 0, 'N'},
      {"no-unit-rows", no_argument, 0, 'U'},      {"maps", required_argument, 0, 'T'},
      {"components", required_argument, 0, 'C'},  {"tokens", required_argument, 0, 'K'},
      {"output", required_argument, 0, 'o'},      {"metadata", required_argument, 0, 'x'},
      {"idempotency-key", required_argument, 0, 'i'}, {"wait", no_argument, 0, 'W'},
      {"quiet", no_argument, 0, 'q'},             COMMON_OPTS,
      {0, 0, 0, 0}};
  const char *url = NULL, *token = NULL, *idem = NULL;
  int flags = 0, quiet = 0, wait = 0, c, rc = 2;
  json_t *spec = json_object();
  char *body = NULL;
  if(!spec)
    return 1;
  optind = 1;
  while((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
    double d;
    json_int_t n;
    char *u = NULL;
    flags += c != OPT_URL && c != OPT_TOKEN && c != 'i' && c != 'W' && c != 'q';
    switch(c) {
    case 'm': put(spec, NULL, "method", json_string(optarg)); break;
    case 'a': put(spec, "ot", "align", json_string(optarg)); break;
    case 's': put(spec, "ot", "solver", json_string(optarg)); break;
    case 'R': put(spec, "ot", "residual", json_string(optarg)); break;
    case 'k': put(spec, "ot", "qk", json_string(optarg)); break;
    case 'M': put(spec, "ot", "metric", json_string(optarg)); break;
    case 'N': put(spec, "ot", "cost_norm", json_string(optarg)); break;
    case 'T': put(spec, "ot", "maps", json_string(optarg)); break;
    case 'K': put(spec, "ot", "tokens", json_string(optarg)); break;
    case 'U': put(spec, "ot", "unit_rows", json_false()); break;
    case 'd': put(spec, "output", "dtype", json_string(optarg)); break;
    case 'r':
      if(!strcmp(optarg, "auto"))
        put(spec, "ot", "reg", json_string("auto"));
      else if(parse_number(optarg, &d) == 0)
        put(spec, "ot", "reg", json_real(d));
      else
        goto bad_value;
      break;
    case 'A':
      if(!strcmp(optarg, "auto"))
        put(spec, "ot", "anchor", json_string("auto"));
      else if(parse_count(optarg, &n) == 0)
        put(spec, "ot", "anchor", json_integer(n));
      else
        goto bad_value;
      break;
    case 'n':
    case 'S':
      if(parse_count(optarg, &n) != 0)
        goto bad_value;
      put(spec, "calibration", c == 'n' ? "samples" : "seed", json_integer(n));
      break;
    case 'w': {
      json_t *w = json_array();
      char *s = optarg;
      for(;;) {
        char *comma = strchr(s, ',');
        if(comma)
          *comma = 0;
        int bad = parse_number(s, &d) != 0;
        if(comma)
          *comma = ',';
        if(bad) {
          json_decref(w);
          goto bad_value;
        }
        json_array_append_new(w, json_real(d));
        if(!comma)
          break;
        s = comma + 1;
      }
      put(spec, "ot", "weights", w);
      break;
    }
    case 'C': {
      json_t *a = json_array();
      char *s = optarg;
      for(;;) {
        size_t k = strcspn(s, ",");
        json_array_append_new(a, json_stringn(s, k));
        if(!s[k])
          break;
        s += k + 1;
      }
      put(spec, "ot", "components", a);
      break;
    }
    case 'c':
      if(!(u = to_uri(optarg, 1))) {
        fprintf(stderr, "otfuse submit: --calibration %s: %s\n", optarg, strerror(errno));
        goto done;
      }
      put(spec, "calibration", "uri", json_string(u));
      free(u);
      break;
    case 'o':
      if(!(u = to_uri(optarg, 0))) {
        fprintf(stderr, "otfuse submit: -o %s: no such parent folder\n", optarg);
        goto done;
      }
      put(spec, "output", "uri", json_string(u));
      free(u);
      break;
    case 'x': {
      json_error_t je;
      json_t *m = json_loads(optarg, JSON_REJECT_DUPLICATES, &je);
      if(!json_is_object(m)) {
        json_decref(m);
        rc = usage_err("submit", "--metadata must be a JSON object (%s)",
                       m ? "got another type" : je.text);
        goto done;
      }
      json_object_set_new(spec, "metadata", m);
      break;
    }
    case 'i':
      idem = optarg;
      for(const char *p = idem; *p; p++)
        if(*p <= ' ' || *p == 0x7f) {
          rc = usage_err("submit", "--idempotency-key must be visible ASCII characters");
          goto done;
        }
      if(!*idem) {
        rc = usage_err("submit", "--idempotency-key is empty");
        goto done;
      }
      break;
    case 'W': wait = 1; break;
    case 'q': quiet = 1; break;
    case OPT_URL: url = optarg; break;
    case OPT_TOKEN: token = optarg; break;
    case 'h':
    case OPT_HELP: submit_usage(stdout); rc = 0; goto done;
    default: submit_usage(stderr); goto done;
    }
    continue;
  bad_value:
    rc = usage_err("submit", "--%s: bad value '%s'",
                   c == 'r' ? "reg" : c == 'A' ? "anchor" : c == 'n' ? "samples"
                   : c == 'S' ? "seed" : "weights", optarg);
    goto done;
  }
  int npos = argc - optind;
  size_t len = 0;
  if(npos == 1 && !flags) {
    const char *path = argv[optind];
    struct stat st;
    if(strcmp(path, "-") && (stat(path, &st) != 0 || !S_ISREG(st.st_mode))) {
      rc = usage_err("submit", "%s is not a spec file (give a SPEC.json, or two or more models)",
                     path);
      goto done;
    }
    body = read_spec(path, &len);
    if(!body) {
      fprintf(stderr, "otfuse submit: %s: %s\n", path, strerror(errno));
      rc = 1;
      goto done;
    }
  } else if(npos == 1) {
    rc = usage_err("submit", "fuse options build a spec from two or more MODELs; "
                             "a SPEC.json is sent as it is");
    goto done;
  } else if(npos >= 2) {
    json_t *models = json_array();
    for(int i = optind; i < argc; i++) {
      char *u = to_uri(argv[i], 1);
      if(!u) {
        fprintf(stderr, "otfuse submit: %s: %s\n", argv[i], strerror(errno));
        json_decref(models);
        rc = 1;
        goto done;
      }
      json_array_append_new(models, json_pack("{s:s}", "uri", u));
      free(u);
    }
    json_object_set_new(spec, "models", models);
    body = json_dumps(spec, JSON_COMPACT);
    len = body ? strlen(body) : 0;
  } else {
    submit_usage(stderr);
    goto done;
  }
  /* Check here first: a usage error names the flag's key before any
   * network round trip. */
  otf_jobspec js;
  otf_error err;
  json_t *errors = NULL;
  if(otf_jobspec_parse(&js, body ? body : "", len, OTF_MAX_PARENTS, &errors, &err) != OTF_OK) {
    fprintf(stderr, "otfuse submit: invalid job spec: %s%s%s\n", err.pointer,
            err.pointer[0] ? ": " : "", err.message);
    size_t i;
    json_t *e;
    if(json_array_size(errors) > 1)
      json_array_foreach(errors, i, e) {
        fprintf(stderr, "  %s: %s\n", json_string_value(json_object_get(e, "pointer")),
                json_string_value(json_object_get(e, "detail")));
      }
    json_decref(errors);
    rc = 2;
    goto done;
  }
  otf_jobspec_free(&js);
  client cl;
  if((rc = client_open(&cl, "submit", url, token)) != 0)
    goto done;
  long status = 0;
  json_t *job = call(&cl, "POST", "/v1/jobs", body, idem, 201, 200, &status);
  if(!job) {
    rc = 1;
  } else {
    const char *id = json_string_value(json_object_get(job, "id"));
    if(quiet)
      printf("%s\n", id ? id : "");
    else if(!wait)
      print_json(job, 0);
    fflush(stdout);
    rc = wait && id ? wait_job(&cl, id, 0.0, quiet) : 0;
    json_decref(job);
  }
  client_close(&cl);
done:
  free(body);
  json_decref(spec);
  return rc;
}

/* ---- status, cancel ---------------------------------------------------- */

/* Parses the common options plus the ones in extra; returns -1 to go on
 * or an exit status. */
static int simple_args(int argc, char **argv, const char *cmd, const char *usage,
                       const char **url, const char **token) {
  static const struct option longopts[] = {COMMON_OPTS, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch(c) {
    case OPT_URL: *url = optarg; break;
    case OPT_TOKEN: *token = optarg; break;
    case 'h':
    case OPT_HELP: printf("%s%s", usage, common_help); return 0;
    default: fprintf(stderr, "%s%s", usage, common_help); return 2;
    }
  }
  if(argc - optind != 1) {
    fprintf(stderr, "otfuse %s: give one job id\n%s%s", cmd, usage, common_help);
    return 2;
  }
  return check_id(cmd, argv[optind]) == 0 ? -1 : 2;
}

static int cmd_status(int argc, char **argv) {
  const char *url = NULL, *token = NULL;
  int rc = simple_args(argc, argv, "status",
                       "usage: otfuse status [options] ID\n\nPrints the job as JSON.\n\n", &url,
                       &token);
  if(rc >= 0)
    return rc;
  client cl;
  if((rc = client_open(&cl, "status", url, token)) != 0)
    return rc;
  char path[128];
  snprintf(path, sizeof(path), "/v1/jobs/%s", argv[optind]);
  json_t *job = call(&cl, "GET", path, NULL, NULL, 200, 0, NULL);
  if(job)
    print_json(job, 1);
  client_close(&cl);
  rc = job ? 0 : 1;
  json_decref(job);
  return rc;
}

static int cmd_cancel(int argc, char **argv) {
  const char *url = NULL, *token = NULL;
  int rc = simple_args(argc, argv, "cancel",
                       "usage: otfuse cancel [options] ID\n\n"
                       "Asks the server to cancel the job (it stops between layers) and prints\n"
                       "the job as JSON; `otfuse wait ID` then returns 3 once it is cancelled.\n\n",
                       &url, &token);
  if(rc >= 0)
    return rc;
  client cl;
  if((rc = client_open(&cl, "cancel", url, token)) != 0)
    return rc;
  char path[128];
  snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", argv[optind]);
  json_t *job = call(&cl, "POST", path, NULL, NULL, 202, 200, NULL);
  if(job)
    print_json(job, 0);
  client_close(&cl);
  rc = job ? 0 : 1;
  json_decref(job);
  return rc;
}

/* ---- wait -------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while(nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int is_terminal(const char *s) {
  return s && (!strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled"));
}

/* One line of progress on stderr: bar, percent, status/stage, layer, ETA. */
static void draw_progress(const json_t *job) {
  const json_t *pr = json_object_get(job, "progress");
  double f = json_number_value(json_object_get(pr, "fraction"));
  f = f < 0 ? 0 : f > 1 ? 1 : f;
  const char *st = json_string_value(json_object_get(job, "status"));
  const char *stage = json_string_value(json_object_get(job, "stage"));
  char bar[31];
  int fill = (int)(f * 30.0 + 0.5);
  for(int i = 0; i < 30; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  char layer[48] = "", eta[32] = "";
  const json_t *l = json_object_get(pr, "layer"), *ls = json_object_get(pr, "layers");
  if(json_is_integer(l) && json_is_integer(ls))
    snprintf(layer, sizeof(layer), "  layer %lld/%lld", (long long)json_integer_value(l),
             (long long)json_integer_value(ls));
  const json_t *e = json_object_get(pr, "eta_seconds");
  if(json_is_number(e))
    snprintf(eta, sizeof(eta), "  eta %.0fs", json_number_value(e));
  fprintf(stderr, "\r[%s] %5.1f%%  %-10s %-11s%s%s\033[K", bar, 100.0 * f, st ? st : "?",
          stage ? stage : "", layer, eta);
  fflush(stderr);
}

/* Polls the job until it is terminal (backoff 0.2 s -> 2 s), drawing a
 * progress bar when stderr is a terminal. Transient failures (unreachable,
 * 5xx, 429) are retried until the timeout (0 = none). Prints the final job
 * (unless quiet) and returns 0 succeeded, 1 failed/error, 3 cancelled. */
static int wait_job(client *c, const char *id, double timeout, int quiet) {
  char path[128];
  snprintf(path, sizeof(path), "/v1/jobs/%s", id);
  int tty = isatty(2);
  double t0 = now_s(), delay = 0.2;
  int drawn = 0, misses = 0;
  for(;;) {
    long status = 0;
    buf b;
    int got = request(c, "GET", path, NULL, NULL, &status, &b, 1) == 0;
    if(got && status == 200) {
      json_t *job = parse_body(c, &b);
      buf_free(&b);
      if(!job)
        return 1;
      misses = 0;
      const char *st = json_string_value(json_object_get(job, "status"));
      if(tty) {
        draw_progress(job);
        drawn = 1;
      }
      if(is_terminal(st)) {
        if(drawn)
          fputc('\n', stderr);
        if(!quiet)
          print_json(job, 0);
        int rc = !strcmp(st, "succeeded") ? 0 : !strcmp(st, "cancelled") ? 3 : 1;
        if(rc == 1) {
          const json_t *e = json_object_get(job, "error");
          const char *d = json_string_value(json_object_get(e, "detail"));
          fprintf(stderr, "otfuse %s: job %s failed: %s\n", c->cmd, id, d ? d : "no detail");
        } else if(rc == 3) {
          fprintf(stderr, "otfuse %s: job %s was cancelled\n", c->cmd, id);
        }
        json_decref(job);
        return rc;
      }
      json_decref(job);
    } else if(got && status != 429 && status < 500) {
      if(drawn)
        fputc('\n', stderr);
      print_problem(c, status, &b);
      buf_free(&b);
      return 1;
    } else {
      if(got)
        buf_free(&b);
      if(++misses == 1 || misses % 10 == 0)
        fprintf(stderr, "%sotfuse %s: %s, retrying\n", drawn ? "\n" : "", c->cmd,
                got ? "the server is busy" : "cannot reach the server");
      drawn = 0;
    }
    if(timeout > 0 && now_s() - t0 + delay > timeout) {
      if(drawn)
        fputc('\n', stderr);
      fprintf(stderr, "otfuse %s: job %s is not finished after %.0f s\n", c->cmd, id, timeout);
      return 1;
    }
    sleep_s(delay);
    delay = delay * 1.5 > 2.0 ? 2.0 : delay * 1.5;
  }
}

static int cmd_wait(int argc, char **argv) {
  static const struct option longopts[] = {{"timeout", required_argument, 0, 't'},
                                           {"quiet", no_argument, 0, 'q'}, COMMON_OPTS,
                                           {0, 0, 0, 0}};
  static const char usage[] =
      "usage: otfuse wait [options] ID\n"
      "\n"
      "Follows the job until it ends (progress bar when stderr is a terminal) and\n"
      "prints the final job as JSON. Exit status: 0 succeeded, 1 failed (or an\n"
      "error, or the timeout), 3 cancelled, 2 usage.\n"
      "\n"
      "  --timeout S              give up after S seconds (default: never)\n"
      "  -q, --quiet              do not print the job\n";
  const char *url = NULL, *token = NULL;
  double timeout = 0.0;
  int quiet = 0, c;
  optind = 1;
  while((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
    switch(c) {
    case 't':
      if(parse_number(optarg, &timeout) != 0 || timeout <= 0)
        return usage_err("wait", "--timeout must be a number of seconds > 0 (got '%s')", optarg);
      break;
    case 'q': quiet = 1; break;
    case OPT_URL: url = optarg; break;
    case OPT_TOKEN: token = optarg; break;
    case 'h':
    case OPT_HELP: printf("%s%s", usage, common_help); return 0;
    default: fprintf(stderr, "%s%s", usage, common_help); return 2;
    }
  }
  if(argc - optind != 1) {
    fprintf(stderr, "otfuse wait: give one job id\n%s%s", usage, common_help);
    return 2;
  }
  if(check_id("wait", argv[optind]) != 0)
    return 2;
  client cl;
  int rc = client_open(&cl, "wait", url, token);
  if(rc != 0)
    return rc;
  rc = wait_job(&cl, argv[optind], timeout, quiet);
  client_close(&cl);
  return rc;
}

/* ---- jobs -------------------------------------------------------------- */

static int cmd_jobs(int argc, char **argv) {
  static const struct option longopts[] = {{"status", required_argument, 0, 's'},
                                           {"limit", required_argument, 0, 'l'},
                                           {"after", required_argument, 0, 'a'},
                                           {"json", no_argument, 0, 'j'}, COMMON_OPTS,
                                           {0, 0, 0, 0}};
  static const char usage[] =
      "usage: otfuse jobs [options]\n"
      "\n"
      "Lists jobs, newest first: one line each (id, status, stage, progress,\n"
      "created), or the server's JSON page with --json.\n"
      "\n"
      "  --status S[,S...]        queued, running, cancelling, succeeded, failed, cancelled\n"
      "  --limit N                page size (server default 50)\n"
      "  --after CURSOR           the page after this cursor (printed at the end)\n"
      "  --json                   print the JSON page\n";
  const char *url = NULL, *token = NULL, *status = NULL, *after = NULL;
  json_int_t limit = 0;
  int as_json = 0, c;
  optind = 1;
  while((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch(c) {
    case 's': status = optarg; break;
    case 'a': after = optarg; break;
    case 'l':
      if(parse_count(optarg, &limit) != 0 || limit < 1 || limit > 1000)
        return usage_err("jobs", "--limit must be 1 to 1000 (got '%s')", optarg);
      break;
    case 'j': as_json = 1; break;
    case OPT_URL: url = optarg; break;
    case OPT_TOKEN: token = optarg; break;
    case 'h':
    case OPT_HELP: printf("%s%s", usage, common_help); return 0;
    default: fprintf(stderr, "%s%s", usage, common_help); return 2;
    }
  }
  if(optind != argc)
    return usage_err("jobs", "unexpected argument '%s'", argv[optind]);
  client cl;
  int rc = client_open(&cl, "jobs", url, token);
  if(rc != 0)
    return rc;
  char path[2048] = "/v1/jobs";
  size_t k = strlen(path);
  char sep = '?';
  const char *names[] = {"status", "after"}, *vals[] = {status, after};
  for(int i = 0; i < 2; i++)
    if(vals[i]) {
      char *e = curl_easy_escape(cl.h, vals[i], 0);
      k += (size_t)snprintf(path + k, sizeof(path) - k, "%c%s=%s", sep, names[i], e ? e : "");
      curl_free(e);
      sep = '&';
    }
  if(limit && k < sizeof(path))
    snprintf(path + k, sizeof(path) - k, "%climit=%lld", sep, (long long)limit);
  json_t *page = call(&cl, "GET", path, NULL, NULL, 200, 0, NULL);
  client_close(&cl);
  if(!page)
    return 1;
  if(as_json) {
    print_json(page, 1);
  } else {
    size_t i;
    json_t *j;
    printf("%-28s %-10s %-11s %6s  %s\n", "ID", "STATUS", "STAGE", "DONE", "CREATED");
    json_array_foreach(json_object_get(page, "items"), i, j) {
      const char *stage = json_string_value(json_object_get(j, "stage"));
      double f = json_number_value(json_object_get(json_object_get(j, "progress"), "fraction"));
      printf("%-28s %-10s %-11s %5.1f%%  %s\n", json_string_value(json_object_get(j, "id")),
             json_string_value(json_object_get(j, "status")), stage ? stage : "-", 100.0 * f,
             json_string_value(json_object_get(j, "created_at")));
    }
    const char *next = json_string_value(json_object_get(page, "next"));
    if(next)
      fprintf(stderr, "more: otfuse jobs --after %s\n", next);
  }
  json_decref(page);
  return 0;
}

/* ---- download ---------------------------------------------------------- */

typedef struct sink {
  FILE *f;
  otf_digest d;
  uint64_t n;
  int failed;
} sink;

static size_t sink_write(char *data, size_t size, size_t n, void *ud) {
  sink *s = ud;
  size_t len = size * n;
  if(fwrite(data, 1, len, s->f) != len) {
    s->failed = errno ? errno : EIO;
    return 0;
  }
  otf__digest_update(&s->d, data, len);
  s->n += len;
  return len;
}

/* An artifact name is one plain file name. */
static int safe_name(const char *n) {
  if(!n || !*n || !strcmp(n, ".") || !strcmp(n, "..") || strlen(n) > 255)
    return 0;
  for(const char *p = n; *p; p++)
    if(*p == '/' || *p == '\\' || (unsigned char)*p < 0x20)
      return 0;
  return 1;
}

/* Downloads one artifact into dir/name through a temporary file, checking
 * its size and SHA-256 before the rename. Returns 0 or prints and -1. */
static int fetch_artifact(client *c, const char *id, const char *dir, const json_t *a) {
  const char *name = json_string_value(json_object_get(a, "name"));
  const char *want = json_string_value(json_object_get(a, "sha256"));
  json_int_t size = json_integer_value(json_object_get(a, "size"));
  if(!safe_name(name) || !want || strlen(want) != 64) {
    fprintf(stderr, "otfuse download: the server listed an unusable artifact (%s)\n",
            name ? name : "no name");
    return -1;
  }
  char path[PATH_MAX], tmp[PATH_MAX], urlpath[1024];
  if(snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
     snprintf(tmp, sizeof(tmp), "%s/.%s.part.%ld", dir, name, (long)getpid()) >= (int)sizeof(tmp)) {
    fprintf(stderr, "otfuse download: %s: path too long\n", dir);
    return -1;
  }
  char *esc = curl_easy_escape(c->h, name, 0);
  snprintf(urlpath, sizeof(urlpath), "/v1/jobs/%s/artifacts/%s", id, esc ? esc : "");
  curl_free(esc);
  sink s = {0};
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  s.f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if(!s.f) {
    fprintf(stderr, "otfuse download: %s: %s\n", tmp, strerror(errno));
    if(fd >= 0)
      close(fd);
    return -1;
  }
  if(otf__digest_init(&s.d, 0) != OTF_OK) {
    fclose(s.f);
    unlink(tmp);
    fprintf(stderr, "otfuse download: cannot start SHA-256\n");
    return -1;
  }
  struct curl_slist *hd = setup(c, "GET", urlpath, NULL, NULL);
  char errbuf[CURL_ERROR_SIZE] = "";
  buf errbody = {0};
  curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, sink_write);
  curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, errbuf);
  /* stalled transfers end; large ones may take as long as they need */
  curl_easy_setopt(c->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c->h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c->h, CURLOPT_FAILONERROR, 0L);
  CURLcode rc = curl_easy_perform(c->h);
  curl_slist_free_all(hd);
  long status = 0;
  curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
  char got[OTF_SHA256_HEX];
  otf__digest_final(&s.d, got, NULL);
  otf__digest_free(&s.d);
  int ok = 0;
  if(fflush(s.f) != 0 || fsync(fileno(s.f)) != 0)
    s.failed = s.failed ? s.failed : errno;
  if(fclose(s.f) != 0)
    s.failed = s.failed ? s.failed : errno;
  if(rc != CURLE_OK && !s.failed) {
    fprintf(stderr, "otfuse download: %s: %s\n", name,
            errbuf[0] ? errbuf : curl_easy_strerror(rc));
  } else if(s.failed) {
    fprintf(stderr, "otfuse download: writing %s: %s\n", tmp, strerror(s.failed));
  } else if(status != 200) {
    /* the body we wrote is the problem document */
    FILE *f = fopen(tmp, "rb");
    if(f) {
      char text[4096];
      size_t n = fread(text, 1, sizeof(text) - 1, f);
      text[n] = 0;
      fclose(f);
      errbody.p = text;
      errbody.n = n;
      print_problem(c, status, &errbody);
    }
  } else if((json_int_t)s.n != size || strcmp(got, want)) {
    fprintf(stderr,
            "otfuse download: %s does not match the manifest: %llu bytes, sha256 %s; "
            "want %lld bytes, sha256 %s\n",
            name, (unsigned long long)s.n, got, (long long)size, want);
  } else if(rename(tmp, path) != 0) {
    fprintf(stderr, "otfuse download: %s: %s\n", path, strerror(errno));
  } else {
    ok = 1;
  }
  if(!ok)
    unlink(tmp);
  return ok ? 0 : -1;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if(fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* Removes the files of a temporary download folder (flat) and the folder. */
static void remove_flat(const char *dir, const json_t *items) {
  size_t i;
  json_t *a;
  char p[PATH_MAX];
  json_array_foreach(items, i, a) {
    const char *name = json_string_value(json_object_get(a, "name"));
    if(safe_name(name)) {
      if(snprintf(p, sizeof(p), "%s/%s", dir, name) < (int)sizeof(p))
        unlink(p);
    }
  }
  rmdir(dir);
}

static int cmd_download(int argc, char **argv) {
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, COMMON_OPTS,
                                           {0, 0, 0, 0}};
  static const char usage[] =
      "usage: otfuse download [options] ID -o DIR\n"
      "\n"
      "Downloads every artifact of a succeeded job into DIR, each checked against\n"
      "the size and SHA-256 of the job's manifest before it is renamed into place.\n"
      "A DIR that does not exist appears complete or not at all; in an existing\n"
      "DIR each file appears complete or not at all. Prints the list as JSON.\n"
      "\n"
      "  -o, --output DIR         destination folder\n";
  const char *url = NULL, *token = NULL, *out = NULL;
  int c;
  optind = 1;
  while((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
    switch(c) {
    case 'o': out = optarg; break;
    case OPT_URL: url = optarg; break;
    case OPT_TOKEN: token = optarg; break;
    case 'h':
    case OPT_HELP: printf("%s%s", usage, common_help); return 0;
    default: fprintf(stderr, "%s%s", usage, common_help); return 2;
    }
  }
  if(argc - optind != 1 || !out || !*out) {
    fprintf(stderr, "otfuse download: %s\n%s%s",
            !out ? "-o DIR is required" : "give one job id", usage, common_help);
    return 2;
  }
  const char *id = argv[optind];
  if(check_id("download", id) != 0)
    return 2;
  if(strlen(out) > PATH_MAX - 300)
    return usage_err("download", "-o path is too long");
  client cl;
  int rc = client_open(&cl, "download", url, token);
  if(rc != 0)
    return rc;
  char path[128];
  snprintf(path, sizeof(path), "/v1/jobs/%s", id);
  json_t *job = call(&cl, "GET", path, NULL, NULL, 200, 0, NULL), *list = NULL;
  rc = 1;
  if(!job)
    goto done;
  const char *st = json_string_value(json_object_get(job, "status"));
  if(!st || strcmp(st, "succeeded")) {
    fprintf(stderr, "otfuse download: job %s is %s, not succeeded: nothing to download\n", id,
            st ? st : "in an unknown state");
    goto done;
  }
  snprintf(path, sizeof(path), "/v1/jobs/%s/artifacts", id);
  list = call(&cl, "GET", path, NULL, NULL, 200, 0, NULL);
  json_t *items = json_object_get(list, "items");
  if(!list)
    goto done;
  if(!json_is_array(items) || json_array_size(items) == 0) {
    fprintf(stderr, "otfuse download: job %s lists no artifacts%s\n", id,
            json_object_get(json_object_get(job, "spec"), "output") ? " (its output went to its output URI)" : "");
    goto done;
  }
  /* A new folder is filled under a temporary sibling name and renamed. */
  struct stat sb;
  int fresh = stat(out, &sb) != 0;
  if(!fresh && !S_ISDIR(sb.st_mode)) {
    fprintf(stderr, "otfuse download: %s exists and is not a folder\n", out);
    goto done;
  }
  char dir[PATH_MAX];
  if(fresh) {
    char trimmed[PATH_MAX];
    snprintf(trimmed, sizeof(trimmed), "%s", out);
    for(size_t n = strlen(trimmed); n > 1 && trimmed[n - 1] == '/'; n--)
      trimmed[n - 1] = 0;
    /* out is at most PATH_MAX - 300 bytes (checked above): this fits */
    if(snprintf(dir, sizeof(dir), "%s.part.%ld", trimmed, (long)getpid()) >= (int)sizeof(dir) ||
       mkdir(dir, 0755) != 0) {
      fprintf(stderr, "otfuse download: %s: %s\n", dir, strerror(errno));
      goto done;
    }
  } else {
    snprintf(dir, sizeof(dir), "%s", out);
  }
  size_t i;
  json_t *a;
  int ok = 1;
  json_array_foreach(items, i, a) {
    if(fetch_artifact(&cl, id, dir, a) != 0) {
      ok = 0;
      break;
    }
  }
  if(ok && fsync_dir(dir) != 0) {
    fprintf(stderr, "otfuse download: %s: %s\n", dir, strerror(errno));
    ok = 0;
  }
  if(fresh) {
    if(ok && rename(dir, out) != 0) {
      fprintf(stderr, "otfuse download: %s: %s\n", out, strerror(errno));
      ok = 0;
    }
    if(!ok)
      remove_flat(dir, items);
  }
  if(ok) {
    json_t *res = json_pack("{s:s, s:s, s:[]}", "job", id, "dir", out, "artifacts");
    json_array_foreach(items, i, a) {
      json_array_append_new(json_object_get(res, "artifacts"),
                            json_pack("{s:O, s:O, s:O}", "name", json_object_get(a, "name"), "size",
                                      json_object_get(a, "size"), "sha256",
                                      json_object_get(a, "sha256")));
    }
    print_json(res, 0);
    json_decref(res);
    rc = 0;
  }
done:
  json_decref(list);
  json_decref(job);
  client_close(&cl);
  return rc;
}

/* ---- dispatch ---------------------------------------------------------- */

int otf_cli_client(int argc, char **argv) {
  const char *cmd = argv[0];
  if(!strcmp(cmd, "submit"))
    return cmd_submit(argc, argv);
  if(!strcmp(cmd, "status"))
    return cmd_status(argc, argv);
  if(!strcmp(cmd, "wait"))
    return cmd_wait(argc, argv);
  if(!strcmp(cmd, "jobs"))
    return cmd_jobs(argc, argv);
  if(!strcmp(cmd, "cancel"))
    return cmd_cancel(argc, argv);
  if(!strcmp(cmd, "download"))
    return cmd_download(argc, argv);
  fprintf(stderr, "otfuse: '%s' is not a client command\n", cmd);
  return 2;
}
