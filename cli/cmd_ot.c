/* otfuse ot: solve one OT problem stored in a safetensors file. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "common/alloc.h"
#include "fusion/ot.h"
#include "fusion/safetensors.h"

static void ot_usage(FILE *f) {
  fprintf(f,
          "usage: otfuse ot --cost FILE [--a NAME] [--b NAME] [--solver exact|sinkhorn]\n"
          "                 [--reg R] [--max-iter N] [--stop-thr T] [--mode auto|scaling|log]\n"
          "                 [--plan OUT]\n"
          "\n"
          "Reads the 2-D floating tensor 'cost' [n, m] from FILE (safetensors) and\n"
          "solves the optimal-transport problem between marginals a [n] and b [m]\n"
          "(tensors of that name in FILE; uniform when not given). Prints one JSON\n"
          "line: solver, method, n, m, objective, iterations, marginal_error,\n"
          "converged, seconds (solve time).\n"
          "\n"
          "  --solver S     exact (default; hard alignment) or sinkhorn (soft)\n"
          "  --reg R        Sinkhorn regularisation (default 0.08, the reference's)\n"
          "  --max-iter N   Sinkhorn iterations (default 1000, POT's); for exact,\n"
          "                 the network-simplex pivot cap (default: effectively none)\n"
          "  --stop-thr T   Sinkhorn stopping threshold (default 1e-9, POT's)\n"
          "  --mode M       Sinkhorn form: auto (default), scaling or log\n"
          "  --plan OUT     write the plan as tensor 'plan' (F64 [n, m]) to OUT\n");
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads a floating tensor as doubles; expects rank `rank` (1 or 2). */
static otf_status load_tensor(double **out, const otf_st_tensor **tout,
                              const otf_st_file *f, const char *name, int rank,
                              otf_error *err) {
  const otf_st_tensor *t = otf_st_find(f, name);
  if(!t)
    return OTF_FAIL(err, OTF_E_NOT_FOUND, name, "no tensor named '%s' in the file", name);
  if(t->rank != rank)
    return OTF_FAIL(err, OTF_E_INVAL, name, "tensor '%s' has rank %d, expected %d", name,
                    t->rank, rank);
  if(t->numel == 0)
    return OTF_FAIL(err, OTF_E_INVAL, name, "tensor '%s' is empty", name);
  double *d = otf_malloc_array((size_t)t->numel, sizeof(double));
  if(!d)
    return OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for tensor '%s'", name);
  otf_status rc = otf_st_read_f64(d, t, err);
  if(rc != OTF_OK) {
    otf_free(d);
    return rc;
  }
  *out = d;
  *tout = t;
  return OTF_OK;
}

int otf_cli_ot(int argc, char **argv) {
  static const struct option longopts[] = {
      {"cost", required_argument, 0, 'c'},     {"a", required_argument, 0, 'a'},
      {"b", required_argument, 0, 'b'},        {"solver", required_argument, 0, 's'},
      {"reg", required_argument, 0, 'r'},      {"max-iter", required_argument, 0, 'i'},
      {"stop-thr", required_argument, 0, 't'}, {"mode", required_argument, 0, 'M'},
      {"plan", required_argument, 0, 'p'},     {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *cost_path = NULL, *a_name = NULL, *b_name = NULL, *plan_path = NULL;
  otf_ot_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.solver = OTF_SOLVER_EXACT;
  opts.sinkhorn.reg = 0.08;
  unsigned long long max_iter = 0;
  int c;
  optind = 1;
  while((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    char *end = NULL;
    switch(c) {
    case 'c': cost_path = optarg; break;
    case 'a': a_name = optarg; break;
    case 'b': b_name = optarg; break;
    case 'p': plan_path = optarg; break;
    case 's':
      if(otf_solver_parse(&opts.solver, optarg) != 0) {
        fprintf(stderr, "otfuse ot: --solver must be exact or sinkhorn, got '%s'\n", optarg);
        return 2;
      }
      break;
    case 'r':
      opts.sinkhorn.reg = strtod(optarg, &end);
      if(!end || *end || !(opts.sinkhorn.reg > 0.0) || !isfinite(opts.sinkhorn.reg)) {
        fprintf(stderr, "otfuse ot: --reg must be a number > 0, got '%s'\n", optarg);
        return 2;
      }
      break;
    case 't':
      opts.sinkhorn.stop_thr = strtod(optarg, &end);
      if(!end || *end || !(opts.sinkhorn.stop_thr > 0.0)) {
        fprintf(stderr, "otfuse ot: --stop-thr must be a number > 0, got '%s'\n", optarg);
        return 2;
      }
      break;
    case 'i':
      max_iter = strtoull(optarg, &end, 10);
      if(!end || *end || max_iter == 0 || optarg[0] == '-') {
        fprintf(stderr, "otfuse ot: --max-iter must be a positive integer, got '%s'\n",
                optarg);
        return 2;
      }
      break;
    case 'M':
      if(!strcmp(optarg, "auto"))
        opts.sinkhorn.mode = OTF_SINKHORN_AUTO;
      else if(!strcmp(optarg, "scaling"))
        opts.sinkhorn.mode = OTF_SINKHORN_SCALING;
      else if(!strcmp(optarg, "log"))
        opts.sinkhorn.mode = OTF_SINKHORN_LOG;
      else {
        fprintf(stderr, "otfuse ot: --mode must be auto, scaling or log, got '%s'\n", optarg);
        return 2;
      }
      break;
    case 'h': ot_usage(stdout); return 0;
    default: ot_usage(stderr); return 2;
    }
  }
  if(optind < argc || !cost_path) {
    fprintf(stderr, "otfuse ot: %s\n", cost_path ? "unexpected argument" : "--cost FILE is required");
    ot_usage(stderr);
    return 2;
  }
  if(opts.solver == OTF_SOLVER_SINKHORN) {
    if(max_iter > 1000000) {
      fprintf(stderr, "otfuse ot: --max-iter for sinkhorn is at most 1000000\n");
      return 2;
    }
    opts.sinkhorn.max_iter = (uint32_t)max_iter;
  } else {
    opts.emd_max_iter = max_iter;
  }

  otf_error err;
  otf_error_clear(&err);
  otf_st_file *f = NULL;
  double *cost = NULL, *a = NULL, *b = NULL, *plan = NULL;
  const otf_st_tensor *tc = NULL, *ta = NULL, *tb = NULL;
  json_t *out = NULL;
  int ret = 1;
  otf_status rc = otf_st_open(&f, cost_path, &err);
  if(rc == OTF_OK)
    rc = load_tensor(&cost, &tc, f, "cost", 2, &err);
  if(rc == OTF_OK && a_name)
    rc = load_tensor(&a, &ta, f, a_name, 1, &err);
  if(rc == OTF_OK && b_name)
    rc = load_tensor(&b, &tb, f, b_name, 1, &err);
  if(rc != OTF_OK)
    goto done;
  otf_ot_problem p = {.cost = cost, .a = a, .b = b, .n = (size_t)tc->shape[0],
                      .m = (size_t)tc->shape[1]};
  if(ta && ta->numel != p.n) {
    rc = OTF_FAIL(&err, OTF_E_INVAL, a_name, "marginal '%s' has %llu entries, cost has %zu rows",
                  a_name, (unsigned long long)ta->numel, p.n);
    goto done;
  }
  if(tb && tb->numel != p.m) {
    rc = OTF_FAIL(&err, OTF_E_INVAL, b_name,
                  "marginal '%s' has %llu entries, cost has %zu columns", b_name,
                  (unsigned long long)tb->numel, p.m);
    goto done;
  }
  plan = otf_malloc_array(p.n * p.m, sizeof(double));
  if(!plan) {
    rc = OTF_FAIL(&err, OTF_E_NOMEM, NULL, "no memory for a %zu x %zu plan", p.n, p.m);
    goto done;
  }
  otf_ot_result r;
  double t0 = now_seconds();
  rc = otf_ot_solve(plan, &r, &p, &opts, &err);
  double secs = now_seconds() - t0;
  if(rc != OTF_OK)
    goto done;
  if(plan_path) {
    otf_st_out po = {.name = "plan", .dtype = OTF_DT_F64, .rank = 2,
                     .shape = {p.n, p.m}, .data = plan};
    const char *meta[] = {"producer", "otfuse ot", "method", r.method};
    rc = otf_st_write(plan_path, &po, 1, meta, 2, &err);
    if(rc != OTF_OK)
      goto done;
  }
  out = json_pack("{s:s, s:s, s:I, s:I, s:f, s:I, s:f, s:b, s:f}", "solver",
                  otf_solver_name(opts.solver), "method", r.method, "n", (json_int_t)p.n,
                  "m", (json_int_t)p.m, "objective", r.objective, "iterations",
                  (json_int_t)r.iterations, "marginal_error", r.marginal_error,
                  "converged", r.converged, "seconds", secs);
  if(out) {
    char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if(s) {
      printf("%s\n", s);
      free(s);
      ret = 0;
    }
  }
done:
  if(rc != OTF_OK)
    fprintf(stderr, "otfuse ot: %s: %s\n", otf_strerror(rc), err.message);
  json_decref(out);
  otf_free(plan);
  otf_free(cost);
  otf_free(a);
  otf_free(b);
  otf_st_close(f);
  return ret;
}
