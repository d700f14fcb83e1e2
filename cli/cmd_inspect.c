/* otfuse inspect: what a model folder or safetensors file holds, without
 * reading the weights (headers only, so a multi-GB checkpoint costs a few
 * MB of memory), plus an optional scan for NaN/Inf. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "fusion/checkpoint.h"
#include "fusion/model.h"

static void inspect_usage(FILE *f) {
  fprintf(f,
          "usage: otfuse inspect [--json] [--check] MODEL_DIR | FILE.safetensors\n"
          "\n"
          "Prints the architecture, dimensions, dtypes, parameter count and anything\n"
          "unexpected (unknown tensors, buffers). Reads headers only.\n"
          "  --json   one JSON object for machines\n"
          "  --check  also scan every weight for NaN/Inf (reads the whole checkpoint)\n");
}

/* Counts elements per dtype over a checkpoint. */
static json_t *dtype_counts(const otf_ckpt *c) {
  uint64_t per[OTF_DT_COUNT] = {0};
  for(size_t k = 0; k < otf_ckpt_count(c); k++)
    per[otf_ckpt_at(c, k)->dtype] += otf_ckpt_at(c, k)->numel;
  json_t *o = json_object();
  for(int d = 0; d < OTF_DT_COUNT; d++)
    if(per[d])
      json_object_set_new(o, otf_dtype_name((otf_dtype)d), json_integer((json_int_t)per[d]));
  return o;
}

static json_t *tensor_list(const otf_ckpt *c) {
  json_t *arr = json_array();
  for(size_t k = 0; k < otf_ckpt_count(c); k++) {
    const otf_st_tensor *t = otf_ckpt_at(c, k);
    json_t *shape = json_array();
    for(int r = 0; r < t->rank; r++)
      json_array_append_new(shape, json_integer((json_int_t)t->shape[r]));
    json_array_append_new(arr, json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype",
                                         otf_dtype_name(t->dtype), "shape", shape));
  }
  return arr;
}

/* Describes a model folder (config + checkpoint checked against the
 * table); NULL with err filled when it is not one we can read. */
static json_t *describe_model(const char *dir, int check, otf_error *err) {
  otf_model *m = NULL;
  if(otf_model_open(&m, dir, OTF_MODEL_LENIENT, err) != OTF_OK)
    return NULL;
  const otf_model_config *c = otf_model_cfg(m);
  const otf_ckpt *ck = otf_model_ckpt(m);
  json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I}",
                        "path", dir, "architecture", otf_model_arch(m)->name, "model_type",
                        c->model_type, "hidden_size", (json_int_t)c->hidden_size,
                        "num_layers", (json_int_t)c->num_layers, "num_heads",
                        (json_int_t)c->num_heads, "intermediate_size",
                        (json_int_t)c->intermediate_size, "num_labels",
                        (json_int_t)c->num_labels, "activation", c->act_name, "parameters",
                        (json_int_t)otf_model_param_count(m), "bytes",
                        (json_int_t)otf_ckpt_bytes(ck), "shards",
                        (json_int_t)otf_ckpt_shards(ck));
  if(c->family == OTF_FAMILY_VIT) {
    json_object_set_new(o, "image_size", json_integer(c->image_size));
    json_object_set_new(o, "patch_size", json_integer(c->patch_size));
    json_object_set_new(o, "num_channels", json_integer(c->num_channels));
  } else {
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
  }
  json_object_set_new(o, "dtypes", dtype_counts(ck));
  json_t *warn = json_array();
  for(size_t k = 0; k < otf_model_warning_count(m); k++)
    json_array_append_new(warn, json_string(otf_model_warning(m, k)));
  if(check) {
    const char *first = NULL;
    uint64_t bad = otf_model_count_nonfinite(m, &first);
    json_object_set_new(o, "nonfinite", json_integer((json_int_t)bad));
    if(bad) {
      char w[600];
      snprintf(w, sizeof(w), "%llu NaN/Inf values, the first in %s", (unsigned long long)bad,
               first);
      json_array_append_new(warn, json_string(w));
    }
  }
  json_object_set_new(o, "warnings", warn);
  otf_model_close(m);
  return o;
}

static json_t *describe_file(const char *path, otf_error *err) {
  otf_ckpt *ck = NULL;
  if(otf_ckpt_open(&ck, path, err) != OTF_OK)
    return NULL;
  uint64_t numel = 0;
  for(size_t k = 0; k < otf_ckpt_count(ck); k++)
    numel += otf_ckpt_at(ck, k)->numel;
  json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:o}", "path", path, "tensors",
                        (json_int_t)otf_ckpt_count(ck), "elements", (json_int_t)numel,
                        "bytes", (json_int_t)otf_ckpt_bytes(ck), "shards",
                        (json_int_t)otf_ckpt_shards(ck), "dtypes", dtype_counts(ck),
                        "tensor_list", tensor_list(ck));
  otf_ckpt_close(ck);
  return o;
}

static void print_human(const json_t *o) {
  const char *arch = json_string_value(json_object_get(o, "architecture"));
  printf("%s\n", json_string_value(json_object_get(o, "path")));
  if(arch) {
    printf("  architecture  %s (%s)\n", arch, json_string_value(json_object_get(o, "model_type")));
    printf("  dimensions    hidden %lld, layers %lld, heads %lld, ffn %lld, labels %lld, %s\n",
           json_integer_value(json_object_get(o, "hidden_size")),
           json_integer_value(json_object_get(o, "num_layers")),
           json_integer_value(json_object_get(o, "num_heads")),
           json_integer_value(json_object_get(o, "intermediate_size")),
           json_integer_value(json_object_get(o, "num_labels")),
           json_string_value(json_object_get(o, "activation")));
    if(json_object_get(o, "image_size"))
      printf("  input         %lldx%lld images, %lld channels, patch %lld\n",
             json_integer_value(json_object_get(o, "image_size")),
             json_integer_value(json_object_get(o, "image_size")),
             json_integer_value(json_object_get(o, "num_channels")),
             json_integer_value(json_object_get(o, "patch_size")));
    else
      printf("  input         vocabulary %lld, up to %lld positions\n",
             json_integer_value(json_object_get(o, "vocab_size")),
             json_integer_value(json_object_get(o, "max_position_embeddings")));
    printf("  parameters    %lld\n", json_integer_value(json_object_get(o, "parameters")));
  } else {
    printf("  tensors       %lld (%lld elements)\n",
           json_integer_value(json_object_get(o, "tensors")),
           json_integer_value(json_object_get(o, "elements")));
  }
  printf("  size          %lld bytes in %lld file(s)\n",
         json_integer_value(json_object_get(o, "bytes")),
         json_integer_value(json_object_get(o, "shards")));
  printf("  dtypes       ");
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)json_object_get(o, "dtypes"), k, v)
    printf(" %s: %lld", k, json_integer_value(v));
  printf("\n");
  json_t *list = json_object_get(o, "tensor_list");
  for(size_t i = 0; list && i < json_array_size(list); i++) {
    json_t *t = json_array_get(list, i);
    char *shape = json_dumps(json_object_get(t, "shape"), JSON_COMPACT);
    printf("  %-60s %-5s %s\n", json_string_value(json_object_get(t, "name")),
           json_string_value(json_object_get(t, "dtype")), shape ? shape : "?");
    free(shape);
  }
  json_t *warn = json_object_get(o, "warnings");
  for(size_t i = 0; warn && i < json_array_size(warn); i++)
    printf("  warning: %s\n", json_string_value(json_array_get(warn, i)));
  if(json_object_get(o, "nonfinite"))
    printf("  nonfinite     %lld\n", json_integer_value(json_object_get(o, "nonfinite")));
}

int otf_cli_inspect(int argc, char **argv) {
  static const struct option longopts[] = {{"json", no_argument, 0, 'j'},
                                           {"check", no_argument, 0, 'c'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  int as_json = 0, check = 0, c;
  optind = 1;
  while((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch(c) {
    case 'j': as_json = 1; break;
    case 'c': check = 1; break;
    case 'h': inspect_usage(stdout); return 0;
    default: inspect_usage(stderr); return 2;
    }
  }
  if(optind != argc - 1) {
    fprintf(stderr, "otfuse inspect: give exactly one MODEL_DIR or FILE\n");
    inspect_usage(stderr);
    return 2;
  }
  const char *path = argv[optind];
  otf_error err;
  otf_error_clear(&err);
  struct stat st;
  if(stat(path, &st) != 0) {
    fprintf(stderr, "otfuse inspect: %s: no such file or folder\n", path);
    return 1;
  }
  json_t *o = NULL;
  char cfg[4096];
  snprintf(cfg, sizeof(cfg), "%s/config.json", path);
  if(S_ISDIR(st.st_mode) && stat(cfg, &st) == 0)
    o = describe_model(path, check, &err);
  else
    o = describe_file(path, &err);
  if(!o) {
    fprintf(stderr, "otfuse inspect: %s: %s\n", otf_strerror(err.code), err.message);
    return 1;
  }
  if(as_json) {
    char *s = json_dumps(o, JSON_COMPACT);
    if(s)
      printf("%s\n", s);
    free(s);
  } else {
    print_human(o);
  }
  json_decref(o);
  return 0;
}
