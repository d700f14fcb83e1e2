/* otfused configuration: see config.h. */
#include "server/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "server/log.h"

void otf_srv_usage(void) {
  printf("usage: otfused [options]\n"
         "\n"
         "The otfuse fusion service: a REST API over a durable job queue.\n"
         "Each option can also be set by the environment variable named after it;\n"
         "flags win over the environment, which wins over --config.\n"
         "\n"
         "  --listen HOST:PORT    address to serve (OTFUSED_LISTEN; 127.0.0.1:8080)\n"
         "  --data-dir DIR        job store, artifacts, cache (OTFUSED_DATA_DIR; ./otfused-data)\n"
         "  --file-root DIR       where file:// URIs may point; repeatable\n"
         "                        (OTFUSED_FILE_ROOTS, colon-separated; none = file:// refused)\n"
         "  --token T             accepted bearer token; repeatable\n"
         "                        (OTFUSED_TOKENS, comma-separated)\n"
         "  --local               no tokens; only a loopback --listen is allowed (OTFUSED_LOCAL=1)\n"
         "  --workers N           jobs run at once (OTFUSED_WORKERS; 1)\n"
         "  --blas-threads N      OpenBLAS threads per job (OTFUSED_BLAS_THREADS; 1)\n"
         "  --grace-seconds S     on SIGTERM, let running jobs finish this long before\n"
         "                        stopping them; they go back to the queue\n"
         "                        (OTFUSED_GRACE_SECONDS; 30)\n"
         "  --max-attempts N      runs of a job interrupted by restarts before it fails\n"
         "                        (OTFUSED_MAX_ATTEMPTS; 2)\n"
         "  --max-queued N        queued jobs before POST /v1/jobs answers 429\n"
         "                        (OTFUSED_MAX_QUEUED; %d)\n"
         "  --max-models N        models per job (OTFUSED_MAX_MODELS; 16)\n"
         "  --max-connections N   simultaneous HTTP connections (OTFUSED_MAX_CONNECTIONS; %d)\n"
         "  --cache-dir DIR       cache of fetched models (OTFUSED_CACHE_DIR; DATA_DIR/cache)\n"
         "  --cache-max-bytes N   cache size bound (OTFUSED_CACHE_MAX_BYTES; 20 GiB)\n"
         "  --s3-endpoint URL     S3-compatible endpoint (OTFUSED_S3_ENDPOINT, else\n"
         "                        AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)\n"
         "  --s3-region R         (OTFUSED_S3_REGION, else AWS_REGION)\n"
         "  --s3-path-style 0|1   (OTFUSED_S3_PATH_STYLE; auto)\n"
         "  --allow-private-hosts let job URIs name loopback/private hosts\n"
         "                        (OTFUSED_ALLOW_PRIVATE_HOSTS=1; link-local and\n"
         "                        metadata addresses are refused regardless)\n"
         "  --config FILE         JSON file with the same keys, '_' for '-' (OTFUSED_CONFIG)\n"
         "  --help                this text\n"
         "\n"
         "S3 credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,\n"
         "AWS_SESSION_TOKEN or the shared credentials file (AWS_PROFILE).\n"
         "Signals: SIGTERM/SIGINT drain (stop taking jobs, not ready, finish or requeue).\n",
         OTF_DEFAULT_MAX_QUEUED, OTF_DEFAULT_MAX_CONNECTIONS);
}

enum {
  O_LISTEN = 1, O_DATA, O_ROOT, O_TOKEN, O_LOCAL, O_WORKERS, O_BLAS, O_GRACE, O_ATTEMPTS,
  O_QUEUED, O_MODELS, O_CONNS, O_CACHE, O_CACHE_MAX, O_S3_EP, O_S3_REGION, O_S3_PATH,
  O_PRIVATE, O_CONFIG, O_HELP
};

/* One table names every setting three ways: flag, environment, file key. */
static const struct setting {
  int id;
  const char *flag, *env, *key;
  int has_arg;
} S[] = {
    {O_LISTEN, "listen", "OTFUSED_LISTEN", "listen", 1},
    {O_DATA, "data-dir", "OTFUSED_DATA_DIR", "data_dir", 1},
    {O_ROOT, "file-root", "OTFUSED_FILE_ROOTS", "file_roots", 1},
    {O_TOKEN, "token", "OTFUSED_TOKENS", "tokens", 1},
    {O_LOCAL, "local", "OTFUSED_LOCAL", "local", 0},
    {O_WORKERS, "workers", "OTFUSED_WORKERS", "workers", 1},
    {O_BLAS, "blas-threads", "OTFUSED_BLAS_THREADS", "blas_threads", 1},
    {O_GRACE, "grace-seconds", "OTFUSED_GRACE_SECONDS", "grace_seconds", 1},
    {O_ATTEMPTS, "max-attempts", "OTFUSED_MAX_ATTEMPTS", "max_attempts", 1},
    {O_QUEUED, "max-queued", "OTFUSED_MAX_QUEUED", "max_queued", 1},
    {O_MODELS, "max-models", "OTFUSED_MAX_MODELS", "max_models", 1},
    {O_CONNS, "max-connections", "OTFUSED_MAX_CONNECTIONS", "max_connections", 1},
    {O_CACHE, "cache-dir", "OTFUSED_CACHE_DIR", "cache_dir", 1},
    {O_CACHE_MAX, "cache-max-bytes", "OTFUSED_CACHE_MAX_BYTES", "cache_max_bytes", 1},
    {O_S3_EP, "s3-endpoint", "OTFUSED_S3_ENDPOINT", "s3_endpoint", 1},
    {O_S3_REGION, "s3-region", "OTFUSED_S3_REGION", "s3_region", 1},
    {O_S3_PATH, "s3-path-style", "OTFUSED_S3_PATH_STYLE", "s3_path_style", 1},
    {O_PRIVATE, "allow-private-hosts", "OTFUSED_ALLOW_PRIVATE_HOSTS", "allow_private_hosts", 0},
    {O_CONFIG, "config", "OTFUSED_CONFIG", NULL, 1},
    {O_HELP, "help", NULL, NULL, 0},
};
#define N_S (sizeof(S) / sizeof(S[0]))

static int set_str(char **dst, const char *v) {
  char *d = strdup(v);
  if(!d)
    return -1;
  free(*dst);
  *dst = d;
  return 0;
}

static int parse_int(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if(errno || end == v || *end || x < lo || x > hi)
    return -1;
  *out = x;
  return 0;
}

static int truthy(const char *v) {
  return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !*v;
}

/* Appends the items of a sep-separated list to a string list (a later
 * source replaces, not extends, an earlier one: replace says so). */
static int set_list(char **list, size_t *n, const char *v, char sep, int replace) {
  if(replace) {
    for(size_t i = 0; i < *n; i++)
      free(list[i]);
    *n = 0;
  }
  const char *p = v;
  while(*p) {
    const char *e = sep ? strchr(p, sep) : NULL;
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if(len) {
      if(*n >= OTF_SRV_MAX_LIST)
        return -1;
      list[*n] = strndup(p, len);
      if(!list[*n])
        return -1;
      (*n)++;
    }
    p += len + (e ? 1 : 0);
  }
  return 0;
}

/* Applies one setting from source `src` ("flag --x", "OTFUSED_X", "key x"). */
static otf_status apply(otf_srv_config *c, int id, const char *v, const char *src, char sep,
                        int replace, otf_error *err) {
  long x;
  switch(id) {
  case O_LISTEN: {
    const char *colon = strrchr(v, ':');
    if(!colon || colon == v || parse_int(colon + 1, 0, 65535, &x) != 0)
      return OTF_FAIL(err, OTF_E_INVAL, src, "%s must be HOST:PORT, got '%.100s'", src, v);
    char *host = strndup(v, (size_t)(colon - v));
    if(!host)
      return OTF_FAIL(err, OTF_E_NOMEM, src, "out of memory");
    /* [::1]:8080 */
    if(host[0] == '[' && host[strlen(host) - 1] == ']') {
      memmove(host, host + 1, strlen(host));
      host[strlen(host) - 1] = '\0';
    }
    free(c->listen_host);
    c->listen_host = host;
    c->port = (int)x;
    return OTF_OK;
  }
  case O_DATA: return set_str(&c->data_dir, v) ? OTF_E_NOMEM : OTF_OK;
  case O_CACHE: return set_str(&c->cache_dir, v) ? OTF_E_NOMEM : OTF_OK;
  case O_S3_EP: return set_str(&c->s3_endpoint, v) ? OTF_E_NOMEM : OTF_OK;
  case O_S3_REGION: return set_str(&c->s3_region, v) ? OTF_E_NOMEM : OTF_OK;
  case O_ROOT:
    if(set_list(c->file_roots, &c->n_file_roots, v, sep, replace) != 0)
      return OTF_FAIL(err, OTF_E_TOO_LARGE, src, "%s: at most %d file roots", src,
                      OTF_SRV_MAX_LIST);
    return OTF_OK;
  case O_TOKEN:
    if(set_list(c->tokens, &c->n_tokens, v, sep, replace) != 0)
      return OTF_FAIL(err, OTF_E_TOO_LARGE, src, "%s: at most %d tokens", src,
                      OTF_SRV_MAX_LIST);
    return OTF_OK;
  case O_LOCAL: c->local = truthy(v); return OTF_OK;
  case O_PRIVATE: c->allow_private_hosts = truthy(v); return OTF_OK;
  default: break;
  }
  static const struct { int id; long lo, hi; } ranges[] = {
      {O_WORKERS, 1, 64}, {O_BLAS, 1, 256}, {O_GRACE, 0, 86400}, {O_ATTEMPTS, 1, 100},
      {O_QUEUED, 1, 1000000}, {O_MODELS, 2, 16}, {O_CONNS, 4, 65536},
      {O_CACHE_MAX, 0, INT64_MAX / 2}, {O_S3_PATH, -1, 1}};
  for(size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
    if(ranges[i].id != id)
      continue;
    long y;
    if(parse_int(v, ranges[i].lo, ranges[i].hi, &y) != 0)
      return OTF_FAIL(err, OTF_E_INVAL, src, "%s must be an integer in [%ld, %ld], got '%.60s'",
                      src, ranges[i].lo, ranges[i].hi, v);
    switch(id) {
    case O_WORKERS: c->workers = (int)y; break;
    case O_BLAS: c->blas_threads = (int)y; break;
    case O_GRACE: c->grace_s = (int)y; break;
    case O_ATTEMPTS: c->max_attempts = (int)y; break;
    case O_QUEUED: c->max_queued = (size_t)y; break;
    case O_MODELS: c->max_models = (size_t)y; break;
    case O_CONNS: c->max_connections = (size_t)y; break;
    case O_CACHE_MAX: c->cache_max_bytes = (uint64_t)y; break;
    case O_S3_PATH: c->s3_path_style = (int)y; break;
    default: break;
    }
    return OTF_OK;
  }
  return OTF_FAIL(err, OTF_E_INTERNAL, src, "unhandled setting %s", src);
}

static otf_status load_file(otf_srv_config *c, const char *path, otf_error *err) {
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if(!root)
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "config file %s: %s (line %d)", path, je.text,
                    je.line);
  otf_status rc = OTF_OK;
  if(!json_is_object(root))
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "config file %s must hold a JSON object", path);
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if(rc != OTF_OK)
      break;
    const struct setting *s = NULL;
    for(size_t i = 0; i < N_S; i++)
      if(S[i].key && !strcmp(S[i].key, key))
        s = &S[i];
    char src[160];
    snprintf(src, sizeof(src), "%s: key '%s'", path, key);
    if(!s) {
      rc = OTF_FAIL(err, OTF_E_INVAL, key, "%s is unknown", src);
      break;
    }
    if(json_is_array(v)) {
      size_t i;
      json_t *it;
      json_array_foreach(v, i, it) {
        if(!json_is_string(it)) {
          rc = OTF_FAIL(err, OTF_E_INVAL, key, "%s: items must be strings", src);
          break;
        }
        rc = apply(c, s->id, json_string_value(it), src, '\0', i == 0, err);
        if(rc != OTF_OK)
          break;
      }
    } else {
      char buf[64];
      const char *val = buf;
      if(json_is_string(v))
        val = json_string_value(v);
      else if(json_is_boolean(v))
        val = json_is_true(v) ? "1" : "0";
      else if(json_is_integer(v))
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
      else {
        rc = OTF_FAIL(err, OTF_E_INVAL, key, "%s: expected a string, number or boolean", src);
        break;
      }
      if(!json_is_boolean(v) || s->has_arg || json_is_true(v))
        rc = apply(c, s->id, val, src, '\0', 1, err);
    }
  }
  json_decref(root);
  return rc;
}

static int loopback(const char *host) {
  if(!strcmp(host, "localhost"))
    return 1;
  struct in_addr a4;
  struct in6_addr a6;
  if(inet_pton(AF_INET, host, &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  if(inet_pton(AF_INET6, host, &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&a6);
  return 0;
}

otf_status otf_srv_config_load(otf_srv_config *c, int argc, char **argv, otf_error *err) {
  memset(c, 0, sizeof(*c));
  c->port = 8080;
  c->workers = 1;
  c->blas_threads = 1;
  c->grace_s = 30;
  c->max_attempts = 2;
  c->max_queued = OTF_DEFAULT_MAX_QUEUED;
  c->max_models = 16;
  c->max_connections = OTF_DEFAULT_MAX_CONNECTIONS;
  c->s3_path_style = -1;
  if(set_str(&c->listen_host, "127.0.0.1") || set_str(&c->data_dir, "otfused-data"))
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");

  /* --config first (flag or env), so that the file is the lowest layer */
  const char *file = getenv("OTFUSED_CONFIG");
  for(int i = 1; i < argc; i++) {
    if(!strcmp(argv[i], "--config") && i + 1 < argc)
      file = argv[i + 1];
    else if(!strncmp(argv[i], "--config=", 9))
      file = argv[i] + 9;
  }
  otf_status rc = OTF_OK;
  if(file && *file && (rc = load_file(c, file, err)) != OTF_OK)
    return rc;
  for(size_t i = 0; i < N_S; i++) {
    const char *v = S[i].env ? getenv(S[i].env) : NULL;
    if(!v || S[i].id == O_CONFIG)
      continue;
    char sep = S[i].id == O_ROOT ? ':' : ',';
    if((rc = apply(c, S[i].id, v, S[i].env, sep, 1, err)) != OTF_OK)
      return rc;
  }
  struct option lo[N_S + 1];
  for(size_t i = 0; i < N_S; i++)
    lo[i] = (struct option){S[i].flag, S[i].has_arg ? required_argument : no_argument, NULL,
                            S[i].id};
  lo[N_S] = (struct option){0, 0, 0, 0};
  int replaced_roots = 0, replaced_tokens = 0;
  optind = 1;
  opterr = 0;
  int ch;
  while((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    if(ch == '?' || ch == ':')
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "unknown option or missing value: '%s' (see "
                      "otfused --help)", argv[optind - 1]);
    if(ch == O_HELP) {
      c->help = 1;
      return OTF_OK;
    }
    if(ch == O_CONFIG)
      continue;
    char src[64];
    snprintf(src, sizeof(src), "--%s", S[ch - 1].flag);
    int replace = 0;
    if(ch == O_ROOT)
      replace = !replaced_roots++;
    if(ch == O_TOKEN)
      replace = !replaced_tokens++;
    if((rc = apply(c, ch, optarg ? optarg : "1", src, '\0', replace, err)) != OTF_OK)
      return rc;
  }
  if(optind < argc)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "unexpected argument '%s'", argv[optind]);
  if(c->local) {
    if(!loopback(c->listen_host))
      return OTF_FAIL(err, OTF_E_INVAL, "--local",
                      "--local serves without authentication, so it only listens on "
                      "loopback; --listen %s is not", c->listen_host);
    for(size_t i = 0; i < c->n_tokens; i++)
      free(c->tokens[i]);
    c->n_tokens = 0;
  } else if(!c->n_tokens) {
    return OTF_FAIL(err, OTF_E_INVAL, "--token",
                    "no API token configured: give --token (or OTFUSED_TOKENS), or --local "
                    "for an unauthenticated server on loopback");
  }
  return OTF_OK;
}

void otf_srv_config_free(otf_srv_config *c) {
  free(c->listen_host);
  free(c->data_dir);
  free(c->cache_dir);
  free(c->s3_endpoint);
  free(c->s3_region);
  for(size_t i = 0; i < c->n_file_roots; i++)
    free(c->file_roots[i]);
  for(size_t i = 0; i < c->n_tokens; i++)
    free(c->tokens[i]);
  memset(c, 0, sizeof(*c));
}

void otf_srv_config_storage(const otf_srv_config *c, otf_storage_cfg *s) {
  memset(s, 0, sizeof(*s));
  for(size_t i = 0; i < c->n_file_roots && i < OTF_STORAGE_MAX_ROOTS; i++)
    s->file_roots[s->n_file_roots++] = c->file_roots[i];
  s->s3_endpoint = c->s3_endpoint;
  s->s3_region = c->s3_region;
  s->s3_path_style = c->s3_path_style;
  s->cache_dir = c->cache_dir;
  s->cache_max_bytes = c->cache_max_bytes;
  s->allow_private_hosts = c->allow_private_hosts;
}

void otf_srv_config_log(const otf_srv_config *c) {
  json_t *roots = json_array(), *toks = json_array();
  for(size_t i = 0; i < c->n_file_roots; i++)
    json_array_append_new(roots, json_string(c->file_roots[i]));
  for(size_t i = 0; i < c->n_tokens; i++) /* never the token itself */
    json_array_append_new(toks, json_sprintf("***(%zu chars)", strlen(c->tokens[i])));
  json_t *o = json_pack(
      "{s:{s:s, s:i, s:s, s:o, s:o, s:b, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:s?, s:I, s:s?, "
      "s:s?, s:b}}",
      "config", "listen_host", c->listen_host, "port", c->port, "data_dir", c->data_dir,
      "file_roots", roots, "tokens", toks, "local", c->local, "workers", c->workers,
      "blas_threads", c->blas_threads, "grace_seconds", c->grace_s, "max_attempts",
      c->max_attempts, "max_queued", (json_int_t)c->max_queued, "max_models",
      (json_int_t)c->max_models, "max_connections", (json_int_t)c->max_connections,
      "cache_dir", c->cache_dir, "cache_max_bytes", (json_int_t)c->cache_max_bytes,
      "s3_endpoint", c->s3_endpoint          ? c->s3_endpoint
                     : getenv("AWS_ENDPOINT_URL_S3") ? getenv("AWS_ENDPOINT_URL_S3")
                                                     : getenv("AWS_ENDPOINT_URL"), "s3_region", c->s3_region, "allow_private_hosts",
      c->allow_private_hosts);
  otf_log("info", NULL, NULL, o, "configuration");
  json_decref(o);
}
