/* otfuse finetune: a short finetuning of a model folder (typically a fused
 * one) on labelled data, with the same entry point the service calls. The
 * option parsing and the run are shared with `otfuse fuse --finetune-*`. */
#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/alloc.h"
#include "fusion/train_job.h"

static void finetune_usage(FILE *f) {
  fprintf(f,
    "usage: otfuse finetune MODEL_DIR --data TRAIN (--epochs E | --steps S) [options] -o OUT_DIR\n"
    "\n"
    "Trains MODEL_DIR (ViTForImageClassification, BertForSequenceClassification or\n"
    "BertForMaskedLM) with AdamW on the labelled safetensors file TRAIN, as the\n"
    "fixture parents were trained (linear warm-up then cosine to 0, gradient\n"
    "clipping, no weight decay on biases, LayerNorms, cls token and positions;\n"
    "dropout off). Prints JSON lines: an eval line before training (with --eval),\n"
    "one line per epoch (train loss and accuracy, eval accuracy and loss), and a\n"
    "final summary; a progress bar on a terminal. Writes OUT_DIR atomically\n"
    "(config.json with provenance, model.safetensors in F32).\n"
    "\n"
    "  --data FILE            training data (required)\n"
    "  --eval FILE            evaluation data, scored before training and after each epoch\n"
    "  --epochs E             budget in epochs (fractions allowed, e.g. 1.5)\n"
    "  --steps S              budget in optimizer steps (instead of --epochs)\n"
    "  --lr X                 peak learning rate (default 1e-3)\n"
    "  --batch N              samples per step (default 64)\n"
    "  --warmup F             warm-up fraction of the steps (default 0.05)\n"
    "  --weight-decay X       AdamW decoupled weight decay (default 0.01)\n"
    "  --max-grad-norm X      global gradient clipping, 0 = off (default 1.0)\n"
    "  --seed S               shuffle / augmentation seed (default 0)\n"
    "  --augment-shift K      images: random shifts by up to K pixels (default 0)\n"
    "  --log-every K          a JSON line every K steps too (default: epochs only)\n"
    "  -o, --output DIR       output folder (must not exist, or be empty)\n");
}

static int parse_u64(uint64_t *v, const char *s) {
  char *end = NULL;
  if(!*s || s[0] == '-')
    return -1;
  unsigned long long x = strtoull(s, &end, 10);
  if(*end)
    return -1;
  *v = x;
  return 0;
}

static int parse_num(double *v, const char *s) {
  char *end = NULL;
  double x = strtod(s, &end);
  if(!*s || *end || !isfinite(x))
    return -1;
  *v = x;
  return 0;
}

const char *otf_cli_finetune_set(struct otf_finetune_opts *o, const char *key, const char *val) {
  uint64_t u;
  double d;
  if(!strcmp(key, "epochs")) {
    if(parse_num(&d, val) || !(d > 0.0))
      return "--epochs must be a number > 0";
    o->epochs = d;
  } else if(!strcmp(key, "steps")) {
    if(parse_u64(&u, val) || u == 0 || u > OTF_FINETUNE_MAX_STEPS)
      return "--steps must be a positive integer";
    o->steps = u;
    o->epochs = 0.0;
  } else if(!strcmp(key, "lr")) {
    if(parse_num(&d, val) || !(d > 0.0) || d > 10.0)
      return "--lr must be a number in (0, 10]";
    o->lr = d;
  } else if(!strcmp(key, "batch")) {
    if(parse_u64(&u, val) || u == 0 || u > OTF_FINETUNE_MAX_BATCH)
      return "--batch must be an integer in [1, 4096]";
    o->batch = (size_t)u;
  } else if(!strcmp(key, "warmup")) {
    if(parse_num(&d, val) || !(d >= 0.0 && d <= 1.0))
      return "--warmup must be a fraction in [0, 1]";
    o->warmup = d;
  } else if(!strcmp(key, "weight-decay")) {
    if(parse_num(&d, val) || !(d >= 0.0) || d > 10.0)
      return "--weight-decay must be a number in [0, 10]";
    o->weight_decay = d;
  } else if(!strcmp(key, "max-grad-norm")) {
    if(parse_num(&d, val) || !(d >= 0.0))
      return "--max-grad-norm must be a number >= 0";
    o->max_grad_norm = d;
  } else if(!strcmp(key, "seed")) {
    if(parse_u64(&u, val))
      return "--seed must be a non-negative integer";
    o->seed = u;
  } else if(!strcmp(key, "augment-shift")) {
    if(parse_u64(&u, val) || u > OTF_FINETUNE_MAX_SHIFT)
      return "--augment-shift must be an integer in [0, 16]";
    o->augment_shift = (int)u;
  } else if(!strcmp(key, "log-every")) {
    if(parse_u64(&u, val))
      return "--log-every must be a non-negative integer";
    o->log_every = u;
  } else {
    return "unknown finetuning option";
  }
  return NULL;
}

typedef struct cli_ctx {
  int tty;
  int bar; /* a progress line is on screen */
} cli_ctx;

static void on_progress(void *ctx, uint64_t step, uint64_t steps) {
  cli_ctx *c = ctx;
  if(!c->tty)
    return;
  const int width = 30;
  int fill = steps ? (int)((double)width * (double)step / (double)steps) : width;
  char bar[64];
  for(int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\rfinetune [%s] %5.1f%% step %llu/%llu", bar,
          steps ? 100.0 * (double)step / (double)steps : 100.0, (unsigned long long)step,
          (unsigned long long)steps);
  fflush(stderr);
  c->bar = 1;
}

static void on_metrics(void *ctx, const char *json) {
  cli_ctx *c = ctx;
  if(c->bar) {
    fprintf(stderr, "\r\033[K");
    c->bar = 0;
  }
  printf("%s\n", json);
  fflush(stdout);
}

int otf_cli_finetune_run(const char *model_dir, const char *data, const char *eval,
                         const struct otf_finetune_opts *o, const char *out,
                         const char *extra_provenance, const char *cmd) {
  cli_ctx c = {isatty(2), 0};
  otf_finetune_ctl ctl = {on_progress, on_metrics, &c, NULL};
  otf_error err;
  otf_error_clear(&err);
  char *summary = NULL;
  otf_status rc =
      otf_finetune_dir(model_dir, data, eval, o, &ctl, out, extra_provenance, &summary, &err);
  if(c.bar)
    fprintf(stderr, "\r\033[K");
  if(rc != OTF_OK) {
    fprintf(stderr, "otfuse %s: %s: %s\n", cmd, otf_strerror(rc), err.message);
    return 1;
  }
  printf("%s\n", summary ? summary : "{}");
  otf_free(summary);
  return 0;
}

int otf_cli_finetune(int argc, char **argv) {
  static const struct option longopts[] = {
      {"data", required_argument, 0, 'D'},         {"eval", required_argument, 0, 'E'},
      {"epochs", required_argument, 0, 1},         {"steps", required_argument, 0, 2},
      {"lr", required_argument, 0, 3},             {"batch", required_argument, 0, 4},
      {"warmup", required_argument, 0, 5},         {"weight-decay", required_argument, 0, 6},
      {"max-grad-norm", required_argument, 0, 7},  {"seed", required_argument, 0, 8},
      {"augment-shift", required_argument, 0, 9},  {"log-every", required_argument, 0, 10},
      {"output", required_argument, 0, 'o'},       {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  otf_finetune_opts o;
  otf_finetune_opts_default(&o);
  const char *data = NULL, *eval = NULL, *out = NULL;
  int c, have_epochs = 0, have_steps = 0, idx = 0;
  optind = 1;
  while((c = getopt_long(argc, argv, "o:h", longopts, &idx)) != -1) {
    const char *bad = NULL;
    if(c >= 1 && c <= 10) {
      have_epochs |= c == 1;
      have_steps |= c == 2;
      bad = otf_cli_finetune_set(&o, longopts[idx].name, optarg);
    } else {
      switch(c) {
      case 'D': data = optarg; break;
      case 'E': eval = optarg; break;
      case 'o': out = optarg; break;
      case 'h': finetune_usage(stdout); return 0;
      default: finetune_usage(stderr); return 2;
      }
    }
    if(bad) {
      fprintf(stderr, "otfuse finetune: %s (got '%s')\n", bad, optarg);
      return 2;
    }
  }
  const char *problem = NULL;
  if(optind >= argc)
    problem = "MODEL_DIR is required";
  else if(optind < argc - 1)
    problem = "unexpected argument";
  else if(!data)
    problem = "--data FILE is required";
  else if(!out)
    problem = "-o OUT_DIR is required";
  else if(have_epochs == have_steps)
    problem = "give exactly one budget: --epochs E or --steps S";
  if(problem) {
    fprintf(stderr, "otfuse finetune: %s\n", problem);
    finetune_usage(stderr);
    return 2;
  }
  return otf_cli_finetune_run(argv[optind], data, eval, &o, out, NULL, "finetune");
}

int otf_cli_fuse_finetune(const char *fused_dir, const char *data, const char *eval,
                          const struct otf_finetune_opts *o, const char *out,
                          const char *fuse_summary) {
  char *prov = NULL;
  json_t *s = fuse_summary ? json_loads(fuse_summary, 0, NULL) : NULL;
  json_t *p = json_object();
  if(p && s)
    json_object_set(p, "fusion", s);
  if(p)
    prov = json_dumps(p, JSON_COMPACT);
  json_decref(p);
  json_decref(s);
  int ret = otf_cli_finetune_run(fused_dir, data, eval, o, out, prov, "fuse");
  free(prov);
  /* the intermediate fusion: a flat folder written by otf_fused_save */
  DIR *d = opendir(fused_dir);
  if(d) {
    struct dirent *e;
    char path[4096];
    while((e = readdir(d)))
      if(strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        snprintf(path, sizeof(path), "%s/%s", fused_dir, e->d_name);
        unlink(path);
      }
    closedir(d);
  }
  rmdir(fused_dir);
  return ret;
}
