/* otfuse eval: accuracy and loss of a model on a labelled data file. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "fusion/eval.h"
#include "fusion/model.h"

static void eval_usage(FILE *f) {
  fprintf(f,
          "usage: otfuse eval MODEL_DIR --data FILE [--batch N]\n"
          "\n"
          "Runs the model in MODEL_DIR (config.json + model.safetensors) on the\n"
          "labelled data in FILE (safetensors: pixel_values + labels for ViT;\n"
          "input_ids [+ attention_mask, token_type_ids] + labels for BERT, labels\n"
          "[N] for classification or [N, T] with -100 for masked LM) and prints\n"
          "one JSON line: accuracy (fraction), loss (mean cross-entropy), n\n"
          "(samples), seconds, and for masked LM tokens (scored tokens).\n"
          "\n"
          "  --data FILE   the labelled data (required)\n"
          "  --batch N     samples per forward pass (default %d, at most %d)\n",
          OTF_EVAL_DEFAULT_BATCH, OTF_EVAL_MAX_BATCH);
}

int otf_cli_eval(int argc, char **argv) {
  static const struct option longopts[] = {{"data", required_argument, 0, 'd'},
                                           {"batch", required_argument, 0, 'b'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *data_path = NULL;
  size_t batch = OTF_EVAL_DEFAULT_BATCH;
  int c;
  optind = 1;
  while((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    char *end = NULL;
    unsigned long long v;
    switch(c) {
    case 'd': data_path = optarg; break;
    case 'b':
      v = strtoull(optarg, &end, 10);
      if(!end || *end || optarg[0] == '-' || v == 0 || v > OTF_EVAL_MAX_BATCH) {
        fprintf(stderr, "otfuse eval: --batch must be an integer in [1, %d], got '%s'\n",
                OTF_EVAL_MAX_BATCH, optarg);
        return 2;
      }
      batch = (size_t)v;
      break;
    case 'h': eval_usage(stdout); return 0;
    default: eval_usage(stderr); return 2;
    }
  }
  if(optind != argc - 1 || !data_path) {
    fprintf(stderr, "otfuse eval: %s\n",
            optind >= argc ? "MODEL_DIR is required"
            : optind < argc - 1 ? "unexpected argument"
                                : "--data FILE is required");
    eval_usage(stderr);
    return 2;
  }
  const char *model_dir = argv[optind];
  otf_error err;
  otf_error_clear(&err);
  otf_model *m = NULL;
  json_t *out = NULL;
  int ret = 1;
  otf_eval_result r;
  otf_status rc = otf_model_open(&m, model_dir, 0, &err);
  if(rc == OTF_OK)
    rc = otf_eval(&r, m, data_path, batch, &err);
  if(rc != OTF_OK)
    goto done;
  out = json_pack("{s:f, s:f, s:I, s:f}", "accuracy", r.accuracy, "loss", r.loss, "n",
                  (json_int_t)r.n, "seconds", r.seconds);
  if(out && r.mlm && json_object_set_new(out, "tokens", json_integer((json_int_t)r.tokens)))
    goto done;
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
    fprintf(stderr, "otfuse eval: %s: %s\n", otf_strerror(rc), err.message);
  else if(ret != 0)
    fprintf(stderr, "otfuse eval: out of memory writing the result\n");
  json_decref(out);
  otf_model_close(m);
  return ret;
}
