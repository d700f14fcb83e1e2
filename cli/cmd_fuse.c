/* otfuse fuse: OT fusion of two or more model folders into one. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_storage.h"
#include "cli/commands.h"
#include "common/alloc.h"
#include "fusion/fuse.h"
#include "fusion/train_job.h"

static void fuse_usage(FILE *f) {
  fprintf(f,
    "usage: otfuse fuse [options] -o OUT_DIR MODEL_DIR MODEL_DIR [MODEL_DIR...]\n"
    "\n"
    "MODEL_DIR, OUT_DIR and --calibration FILE may be URIs: s3://bucket/prefix/,\n"
    "http(s)://... (read-only) or file:///abs/path (see 'otfuse cp --help' for\n"
    "the S3 settings); an OUT_DIR URI receives the result only when complete.\n"
    "\n"
    "Aligns every parent to the anchor with optimal transport and averages them\n"
    "into one model with the anchor's configuration (Imfeld et al., ICLR 2024).\n"
    "Writes OUT_DIR/config.json, model.safetensors, the anchor's other files and\n"
    "fusion_report.json; prints one JSON summary line.\n"
    "\n"
    "  --method ot|average      OT fusion (default) or plain parameter averaging\n"
    "  --align weights|activations\n"
    "                           neuron features: weight rows (default; needs no data)\n"
    "                           or activations on --calibration (reference: activations)\n"
    "  --calibration FILE       safetensors with pixel_values or input_ids\n"
    "                           (+attention_mask, token_type_ids)\n"
    "  --samples N              calibration samples (default 200, the reference's)\n"
    "  --seed S                 sample selection seed (default 0)\n"
    "  --tokens all|cls|window-K\n"
    "                           ViT tokens used as activation samples: all (default),\n"
    "                           the cls token, or cls + the central KxK patches (the\n"
    "                           reference's window_6 on its 8x8 grid)\n"
    "  --solver sinkhorn|exact|mixed\n"
    "                           soft (default, as the reference's config), hard, or the\n"
    "                           reference's sinkhorn_for_widening\n"
    "  --reg R|auto             Sinkhorn regularisation of max-normalised costs\n"
    "                           (default 0.02, best on our fixtures; the reference's\n"
    "                           config: 0.08 acts, 0.06 wts);\n"
    "                           auto tries 0.02, 0.05, 0.08, 0.15 and keeps the lowest\n"
    "                           loss on the labelled --calibration file\n"
    "  --residual mean|skip|branch|weighted-scalar|weighted-matrix\n"
    "                           how maps merge at residual additions (default mean,\n"
    "                           the reference's); the weighted ones need --calibration\n"
    "  --qk separate|shared|heads\n"
    "                           Q/K maps: independent (default, reference), one shared\n"
    "                           map, or heads kept whole (preserves attention logits\n"
    "                           under hard alignment)\n"
    "  --anchor K|auto          index of the anchor parent (default 0); auto tries each\n"
    "                           and keeps the lowest loss on the labelled --calibration\n"
    "  --weights W1,W2,...      fusion weights per parent (default uniform 1/N)\n"
    "  --dtype f32|f16|bf16     output dtype (default: the parents')\n"
    "  --metric euclidean|sqeuclidean|cosine   ground metric (default euclidean)\n"
    "  --cost-norm max|mean|median|log|none    cost normalisation (default max)\n"
    "  --no-unit-rows           weights mode: do not unit-normalise rows (reference: on)\n"
    "  --maps clean|reference   map normalisation: function-preserving (default) or the\n"
    "                           released code's n*plan on both sides (differs only when\n"
    "                           widths differ)\n"
    "  --components LIST        what to fuse: embed,attn,norm,mlp,bias,head (default all);\n"
    "                           the rest is taken from the anchor\n"
    "  -o, --output DIR         output folder (must not exist, or be empty)\n");
  fprintf(f,
    "\n"
    "Fuse, then finetune briefly in the same job (see otfuse finetune --help):\n"
    "  --finetune-data FILE     labelled training data; the finetuned model goes to -o\n"
    "  --finetune-epochs E | --finetune-steps S   the budget (one is required)\n"
    "  --finetune-lr X, --finetune-batch N, --finetune-warmup F,\n"
    "  --finetune-weight-decay X, --finetune-seed S, --finetune-augment-shift K\n"
    "  --eval FILE              labelled data scored before and after every epoch\n");
}

static int parse_weights(double *w, const char *s) {
  size_t k = 0;
  while(*s) {
    char *end;
    double v = strtod(s, &end);
    if(end == s || !(v >= 0.0) || !isfinite(v) || k >= OTF_MAX_PARENTS)
      return -1;
    w[k++] = v;
    s = *end == ',' ? end + 1 : end;
    if(*end && *end != ',')
      return -1;
  }
  return (int)k;
}

static void tty_progress(void *ctx, const char *stage, double frac) {
  (void)ctx;
  fprintf(stderr, "\r%-12s %5.1f%%", stage, 100.0 * frac);
  fflush(stderr);
}

int otf_cli_fuse(int argc, char **argv) {
  static const struct option longopts[] = {
      {"method", required_argument, 0, 'm'},      {"align", required_argument, 0, 'a'},
      {"calibration", required_argument, 0, 'c'}, {"samples", required_argument, 0, 'n'},
      {"seed", required_argument, 0, 'S'},        {"solver", required_argument, 0, 's'},
      {"reg", required_argument, 0, 'r'},         {"residual", required_argument, 0, 'R'},
      {"qk", required_argument, 0, 'q'},          {"anchor", required_argument, 0, 'A'},
      {"weights", required_argument, 0, 'w'},     {"dtype", required_argument, 0, 'd'},
      {"metric", required_argument, 0, 'M'},      {"cost-norm", required_argument, 0, 'N'},
      {"no-unit-rows", no_argument, 0, 'U'},      {"maps", required_argument, 0, 'T'},
      {"components", required_argument, 0, 'C'},  {"output", required_argument, 0, 'o'},
      {"tokens", required_argument, 0, 'K'},      {"help", no_argument, 0, 'h'},
      {"finetune-data", required_argument, 0, 1000}, {"finetune-epochs", required_argument, 0, 1001},
      {"finetune-steps", required_argument, 0, 1002}, {"finetune-lr", required_argument, 0, 1003},
      {"finetune-batch", required_argument, 0, 1004}, {"finetune-warmup", required_argument, 0, 1005},
      {"finetune-weight-decay", required_argument, 0, 1006},
      {"finetune-seed", required_argument, 0, 1007},
      {"finetune-augment-shift", required_argument, 0, 1008}, {"eval", required_argument, 0, 1009},
      {0, 0, 0, 0}};
  otf_fuse_opts o;
  otf_fuse_opts_default(&o);
  const char *out = NULL;
  otf_dtype dtype = OTF_DT_COUNT;
  int nweights = 0, c;
  /* --finetune-*: fuse into a temporary folder, finetune from it into -o */
  static const char *const ft_keys[] = {"epochs", "steps", "lr", "batch", "warmup",
                                        "weight-decay", "seed", "augment-shift"};
  otf_finetune_opts ft;
  otf_finetune_opts_default(&ft);
  const char *ft_data = NULL, *ft_eval = NULL;
  int ft_epochs = 0, ft_steps = 0;
  optind = 1;
  while((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
    char *end = NULL;
    const char *bad = NULL;
    switch(c) {
    case 'm':
      if(otf_method_parse(&o.method, optarg) != 0) bad = "--method must be ot or average";
      break;
    case 'a':
      if(otf_align_parse(&o.align, optarg) != 0) bad = "--align must be weights or activations";
      break;
    case 'c': o.calibration = optarg; break;
    case 'n':
      o.samples = strtoull(optarg, &end, 10);
      if(!*optarg || *end || optarg[0] == '-') bad = "--samples must be a count";
      break;
    case 'S':
      o.seed = strtoull(optarg, &end, 10);
      if(!*optarg || *end || optarg[0] == '-') bad = "--seed must be a non-negative integer";
      break;
    case 's':
      if(otf_fuse_solver_parse(&o.solver, optarg) != 0) bad = "--solver must be sinkhorn, exact or mixed";
      break;
    case 'r':
      if(!strcmp(optarg, "auto")) {
        o.reg = 0.0;
        break;
      }
      o.reg = strtod(optarg, &end);
      if(!*optarg || *end || !(o.reg > 0.0) || !isfinite(o.reg))
        bad = "--reg must be a number > 0 or auto";
      break;
    case 'R':
      if(otf_resid_parse(&o.resid, optarg) != 0)
        bad = "--residual must be mean, skip, branch, weighted-scalar or weighted-matrix";
      break;
    case 'q':
      if(otf_qk_parse(&o.qk, optarg) != 0) bad = "--qk must be separate, shared or heads";
      break;
    case 'A': {
      if(!strcmp(optarg, "auto")) {
        o.anchor = -1;
        break;
      }
      long v = strtol(optarg, &end, 10);
      if(!*optarg || *end || v < 0 || v >= OTF_MAX_PARENTS) bad = "--anchor must be a parent index";
      o.anchor = (int)v;
      break;
    }
    case 'w':
      nweights = parse_weights(o.weights, optarg);
      if(nweights < 0) bad = "--weights must be non-negative numbers separated by commas";
      break;
    case 'd':
      if(!strcmp(optarg, "f32")) dtype = OTF_DT_F32;
      else if(!strcmp(optarg, "f16")) dtype = OTF_DT_F16;
      else if(!strcmp(optarg, "bf16")) dtype = OTF_DT_BF16;
      else bad = "--dtype must be f32, f16 or bf16";
      break;
    case 'M':
      if(otf_metric_parse(&o.metric, optarg) != 0) bad = "--metric must be euclidean, sqeuclidean or cosine";
      break;
    case 'N':
      if(otf_cost_norm_parse(&o.cost_norm, optarg) != 0) bad = "--cost-norm must be max, mean, median, log or none";
      break;
    case 'U': o.unit_rows = 0; break;
    case 'T':
      if(otf_tmnorm_parse(&o.tmnorm, optarg) != 0) bad = "--maps must be clean or reference";
      break;
    case 'C':
      if(otf_fuse_components_parse(&o.components, optarg) != 0)
        bad = "--components takes a comma list of embed, attn, norm, mlp, bias, head";
      break;
    case 'K':
      if(otf_fuse_tokens_parse(&o.window, optarg) != 0)
        bad = "--tokens must be all, cls or window-K (1 <= K <= 4096)";
      break;
    case 'o': out = optarg; break;
    case 1000: ft_data = optarg; break;
    case 1009: ft_eval = optarg; break;
    case 1001: case 1002: case 1003: case 1004: case 1005: case 1006: case 1007: case 1008:
      ft_epochs |= c == 1001;
      ft_steps |= c == 1002;
      bad = otf_cli_finetune_set(&ft, ft_keys[c - 1001], optarg);
      break;
    case 'h': fuse_usage(stdout); return 0;
    default: fuse_usage(stderr); return 2;
    }
    if(bad) {
      fprintf(stderr, "otfuse fuse: %s (got '%s')\n", bad, optarg);
      return 2;
    }
  }
  int n = argc - optind;
  if(!out || n < 2) {
    fprintf(stderr, "otfuse fuse: %s\n", !out ? "-o OUT_DIR is required" : "give at least two MODEL_DIRs");
    fuse_usage(stderr);
    return 2;
  }
  if(n > OTF_MAX_PARENTS) {
    fprintf(stderr, "otfuse fuse: at most %d models\n", OTF_MAX_PARENTS);
    return 2;
  }
  if(nweights && nweights != n) {
    fprintf(stderr, "otfuse fuse: --weights has %d values for %d models\n", nweights, n);
    return 2;
  }
  if(o.anchor >= n) {
    fprintf(stderr, "otfuse fuse: --anchor %d but only %d models\n", o.anchor, n);
    return 2;
  }
  if((ft_epochs || ft_steps || ft_eval) && !ft_data) {
    fprintf(stderr, "otfuse fuse: --finetune-epochs/--finetune-steps/--eval need --finetune-data\n");
    return 2;
  }
  if(ft_data && ft_epochs == ft_steps) {
    fprintf(stderr, "otfuse fuse: give exactly one budget: --finetune-epochs or --finetune-steps\n");
    return 2;
  }
  /* URIs among the parents, --calibration and -o: inputs are fetched
   * (verified, cached), the output is written locally and published. */
  otf_cli_store cs;
  int src = otf_cli_store_prepare(&cs, argv + optind, n, &o.calibration, &out, "otfuse fuse");
  if(src != 0) {
    otf_cli_store_done(&cs);
    return src;
  }
  char ft_tmp[4096];
  const char *ft_out = out;
  if(ft_data) {
    snprintf(ft_tmp, sizeof(ft_tmp), "%s.fused.%ld", out, (long)getpid());
    out = ft_tmp;
  }
  otf_fuse_ctl ctl = {0};
  if(isatty(2))
    ctl.progress = tty_progress;
  otf_error err;
  otf_error_clear(&err);
  char *summary = NULL;
  otf_status rc = otf_fuse_dirs(cs.parents, (size_t)n, &o, &ctl,
                                out, dtype, &summary, &err);
  if(ctl.progress)
    fprintf(stderr, "\n");
  if(rc != OTF_OK) {
    fprintf(stderr, "otfuse fuse: %s: %s\n", otf_strerror(rc), err.message);
    otf_cli_store_done(&cs);
    return 1;
  }
  printf("%s\n", summary ? summary : "{}");
  int ret = 0;
  if(ft_data)
    ret = otf_cli_fuse_finetune(out, ft_data, ft_eval, &ft, ft_out, summary);
  otf_free(summary);
  if(ret == 0)
    ret = otf_cli_store_publish(&cs, "otfuse fuse");
  otf_cli_store_done(&cs);
  return ret;
}
