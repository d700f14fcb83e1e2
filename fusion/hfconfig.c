#include "fusion/hfconfig.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/limits.h"

static const struct {
  const char *name;
  otf_act act;
} act_names[] = {
    {"gelu", OTF_ACT_GELU},           {"gelu_new", OTF_ACT_GELU_TANH},
    {"gelu_pytorch_tanh", OTF_ACT_GELU_TANH}, {"gelu_fast", OTF_ACT_GELU_TANH},
    {"relu", OTF_ACT_RELU},           {"silu", OTF_ACT_SILU},
    {"swish", OTF_ACT_SILU},          {"quick_gelu", OTF_ACT_QUICK_GELU},
};

const char *otf_act_name(otf_act act) {
  for(size_t k = 0; k < sizeof(act_names) / sizeof(*act_names); k++)
    if(act_names[k].act == act)
      return act_names[k].name;
  return "?";
}

void otf_act_apply(otf_act act, float *x, size_t len) {
  switch(act) {
  case OTF_ACT_GELU:
    for(size_t k = 0; k < len; k++)
      x[k] = (float)(0.5 * x[k] * (1.0 + erf(x[k] * 0.70710678118654752440)));
    break;
  case OTF_ACT_GELU_TANH:
    for(size_t k = 0; k < len; k++) {
      double v = x[k];
      x[k] = (float)(0.5 * v * (1.0 + tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v))));
    }
    break;
  case OTF_ACT_RELU:
    for(size_t k = 0; k < len; k++)
      x[k] = x[k] > 0.0f ? x[k] : 0.0f;
    break;
  case OTF_ACT_SILU:
    for(size_t k = 0; k < len; k++)
      x[k] = (float)(x[k] / (1.0 + exp(-(double)x[k])));
    break;
  case OTF_ACT_QUICK_GELU:
    for(size_t k = 0; k < len; k++)
      x[k] = (float)(x[k] / (1.0 + exp(-1.702 * (double)x[k])));
    break;
  }
}

/* Reads an optional integer field into *out (keeps the default when the
 * key is absent or null), checking lo <= v <= hi. */
static otf_status get_int(const json_t *root, const char *key, int lo, int hi, int *out,
                          otf_error *err) {
  const json_t *v = json_object_get(root, key);
  char ptr[OTF_ERROR_PTR_MAX];
  snprintf(ptr, sizeof(ptr), "/%s", key);
  if(!v || json_is_null(v))
    return OTF_OK;
  if(!json_is_integer(v))
    return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: %s must be an integer", key);
  json_int_t x = json_integer_value(v);
  if(x < lo || x > hi)
    return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: %s = %lld is outside [%d, %d]",
                    key, (long long)x, lo, hi);
  *out = (int)x;
  return OTF_OK;
}

static otf_status get_bool(const json_t *root, const char *key, int *out, otf_error *err) {
  const json_t *v = json_object_get(root, key);
  if(!v || json_is_null(v))
    return OTF_OK;
  if(!json_is_boolean(v)) {
    char ptr[OTF_ERROR_PTR_MAX];
    snprintf(ptr, sizeof(ptr), "/%s", key);
    return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: %s must be true or false", key);
  }
  *out = json_is_true(v);
  return OTF_OK;
}

static otf_status get_eps(const json_t *root, const char *key, double *out, otf_error *err) {
  const json_t *v = json_object_get(root, key);
  if(!v || json_is_null(v))
    return OTF_OK;
  char ptr[OTF_ERROR_PTR_MAX];
  snprintf(ptr, sizeof(ptr), "/%s", key);
  if(!json_is_number(v))
    return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: %s must be a number", key);
  double x = json_number_value(v);
  if(!(x > 0.0) || !(x < 1.0))
    return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: %s = %g must be in (0, 1)", key, x);
  *out = x;
  return OTF_OK;
}

static otf_status get_act(const json_t *root, const char *key, otf_model_config *cfg,
                          otf_error *err) {
  const json_t *v = json_object_get(root, key);
  char ptr[OTF_ERROR_PTR_MAX];
  snprintf(ptr, sizeof(ptr), "/%s", key);
  if(!v || json_is_null(v))
    return OTF_OK;
  if(!json_is_string(v))
    return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: %s must be a string", key);
  const char *s = json_string_value(v);
  for(size_t k = 0; k < sizeof(act_names) / sizeof(*act_names); k++)
    if(!strcmp(s, act_names[k].name)) {
      cfg->act = act_names[k].act;
      snprintf(cfg->act_name, sizeof(cfg->act_name), "%s", s);
      return OTF_OK;
    }
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, ptr,
                  "config.json: %s '%.40s' is not supported (gelu, gelu_new, "
                  "gelu_pytorch_tanh, gelu_fast, relu, silu, swish, quick_gelu)",
                  key, s);
}

/* id2label: {"0": "cat", "1": "dog", ...} with keys exactly 0..n-1. */
static otf_status get_labels(const json_t *root, otf_model_config *cfg, otf_error *err) {
  const json_t *m = json_object_get(root, "id2label");
  if(!m || json_is_null(m))
    return OTF_OK;
  if(!json_is_object(m))
    return OTF_FAIL(err, OTF_E_FORMAT, "/id2label", "config.json: id2label must be an object");
  size_t n = json_object_size(m);
  if(n == 0 || n > OTF_MAX_LABELS)
    return OTF_FAIL(err, OTF_E_FORMAT, "/id2label",
                    "config.json: id2label has %zu entries (1 to %d allowed)", n,
                    OTF_MAX_LABELS);
  cfg->id2label = otf_calloc(n, sizeof(char *));
  if(!cfg->id2label)
    return OTF_FAIL(err, OTF_E_NOMEM, "/id2label", "no memory for %zu labels", n);
  cfg->num_labels = (int)n;
  const char *key;
  const json_t *val;
  json_object_foreach((json_t *)m, key, val) {
    char *end = NULL;
    errno = 0;
    long id = strtol(key, &end, 10);
    char ptr[OTF_ERROR_PTR_MAX];
    snprintf(ptr, sizeof(ptr), "/id2label/%.60s", key);
    if(!*key || *end || errno || id < 0 || (size_t)id >= n)
      return OTF_FAIL(err, OTF_E_FORMAT, ptr,
                      "config.json: id2label key '%.40s' is not an id in 0..%zu", key, n - 1);
    if(!json_is_string(val))
      return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: label %ld is not a string", id);
    if(cfg->id2label[id])
      return OTF_FAIL(err, OTF_E_FORMAT, ptr, "config.json: label id %ld appears twice", id);
    size_t len = strlen(json_string_value(val));
    cfg->id2label[id] = otf_malloc(len + 1);
    if(!cfg->id2label[id])
      return OTF_FAIL(err, OTF_E_NOMEM, ptr, "no memory for labels");
    memcpy(cfg->id2label[id], json_string_value(val), len + 1);
  }
  return OTF_OK;
}

static void set_defaults(otf_model_config *cfg, otf_family fam) {
  cfg->family = fam;
  cfg->hidden_size = 768;
  cfg->num_layers = 12;
  cfg->num_heads = 12;
  cfg->intermediate_size = 3072;
  cfg->act = OTF_ACT_GELU;
  snprintf(cfg->act_name, sizeof(cfg->act_name), "gelu");
  cfg->layer_norm_eps = 1e-12;
  cfg->num_labels = 2; /* PretrainedConfig's default */
  switch(fam) {
  case OTF_FAMILY_VIT:
    cfg->image_size = 224;
    cfg->patch_size = 16;
    cfg->num_channels = 3;
    cfg->qkv_bias = 1;
    break;
  case OTF_FAMILY_BERT:
    cfg->vocab_size = 30522;
    cfg->max_position_embeddings = 512;
    cfg->type_vocab_size = 2;
    cfg->pad_token_id = 0;
    break;
  case OTF_FAMILY_GPT2:
    cfg->vocab_size = 50257;
    cfg->max_position_embeddings = 1024;
    cfg->intermediate_size = 0; /* n_inner null: 4 * n_embd */
    cfg->act = OTF_ACT_GELU_TANH;
    snprintf(cfg->act_name, sizeof(cfg->act_name), "gelu_new");
    cfg->layer_norm_eps = 1e-5;
    break;
  }
}

static otf_status parse_fields(otf_model_config *cfg, const json_t *root, otf_error *err) {
  otf_status rc = OTF_OK;
  int ff_max = OTF_MAX_HIDDEN * 16;
#define TRY(call)        \
  do {                   \
    rc = (call);         \
    if(rc != OTF_OK)     \
      return rc;         \
  } while(0)
  if(cfg->family == OTF_FAMILY_GPT2) {
    TRY(get_int(root, "n_embd", 1, OTF_MAX_HIDDEN, &cfg->hidden_size, err));
    TRY(get_int(root, "n_layer", 1, OTF_MAX_LAYERS, &cfg->num_layers, err));
    TRY(get_int(root, "n_head", 1, OTF_MAX_HIDDEN, &cfg->num_heads, err));
    TRY(get_int(root, "n_inner", 1, ff_max, &cfg->intermediate_size, err));
    TRY(get_int(root, "n_positions", 1, OTF_MAX_POSITIONS, &cfg->max_position_embeddings, err));
    TRY(get_int(root, "vocab_size", 1, OTF_MAX_VOCAB, &cfg->vocab_size, err));
    TRY(get_act(root, "activation_function", cfg, err));
    TRY(get_eps(root, "layer_norm_epsilon", &cfg->layer_norm_eps, err));
    if(cfg->intermediate_size == 0)
      cfg->intermediate_size = 4 * cfg->hidden_size;
  } else {
    TRY(get_int(root, "hidden_size", 1, OTF_MAX_HIDDEN, &cfg->hidden_size, err));
    TRY(get_int(root, "num_hidden_layers", 1, OTF_MAX_LAYERS, &cfg->num_layers, err));
    TRY(get_int(root, "num_attention_heads", 1, OTF_MAX_HIDDEN, &cfg->num_heads, err));
    TRY(get_int(root, "intermediate_size", 1, ff_max, &cfg->intermediate_size, err));
    TRY(get_act(root, "hidden_act", cfg, err));
    TRY(get_eps(root, "layer_norm_eps", &cfg->layer_norm_eps, err));
  }
  if(cfg->family == OTF_FAMILY_VIT) {
    TRY(get_int(root, "image_size", 1, OTF_MAX_IMAGE_SIDE, &cfg->image_size, err));
    TRY(get_int(root, "patch_size", 1, OTF_MAX_IMAGE_SIDE, &cfg->patch_size, err));
    TRY(get_int(root, "num_channels", 1, OTF_MAX_CHANNELS, &cfg->num_channels, err));
    TRY(get_bool(root, "qkv_bias", &cfg->qkv_bias, err));
    if(cfg->image_size % cfg->patch_size != 0)
      return OTF_FAIL(err, OTF_E_FORMAT, "/patch_size",
                      "config.json: image_size %d is not a multiple of patch_size %d",
                      cfg->image_size, cfg->patch_size);
    if(!cfg->qkv_bias)
      return OTF_FAIL(err, OTF_E_UNSUPPORTED, "/qkv_bias",
                      "config.json: ViTs without Q/K/V biases are not supported yet");
  }
  if(cfg->family == OTF_FAMILY_BERT) {
    TRY(get_int(root, "vocab_size", 1, OTF_MAX_VOCAB, &cfg->vocab_size, err));
    TRY(get_int(root, "max_position_embeddings", 1, OTF_MAX_POSITIONS,
                &cfg->max_position_embeddings, err));
    TRY(get_int(root, "type_vocab_size", 1, 1 << 16, &cfg->type_vocab_size, err));
    TRY(get_int(root, "pad_token_id", 0, OTF_MAX_VOCAB, &cfg->pad_token_id, err));
    const json_t *pe = json_object_get(root, "position_embedding_type");
    if(pe && !json_is_null(pe) &&
       (!json_is_string(pe) || strcmp(json_string_value(pe), "absolute")))
      return OTF_FAIL(err, OTF_E_UNSUPPORTED, "/position_embedding_type",
                      "config.json: only absolute position embeddings are supported");
  }
  TRY(get_int(root, "num_labels", 1, OTF_MAX_LABELS, &cfg->num_labels, err));
  TRY(get_labels(root, cfg, err));
#undef TRY
  if(cfg->hidden_size % cfg->num_heads != 0)
    return OTF_FAIL(err, OTF_E_FORMAT, "/num_attention_heads",
                    "config.json: hidden size %d is not divisible by %d heads",
                    cfg->hidden_size, cfg->num_heads);
  return OTF_OK;
}

otf_status otf_model_config_parse(otf_model_config *cfg, const char *text, size_t len,
                                  otf_error *err) {
  memset(cfg, 0, sizeof(*cfg));
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  otf_status rc;
  if(!root)
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "config.json is not valid JSON: %s (line %d)",
                    jerr.text, jerr.line);
  if(!json_is_object(root)) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "config.json is not a JSON object");
    goto done;
  }
  const json_t *mt = json_object_get(root, "model_type");
  if(!json_is_string(mt)) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, "/model_type", "config.json has no model_type string");
    goto done;
  }
  const char *type = json_string_value(mt);
  otf_family fam;
  const char *base;
  if(!strcmp(type, "vit")) {
    fam = OTF_FAMILY_VIT;
    base = "ViTModel";
  } else if(!strcmp(type, "bert")) {
    fam = OTF_FAMILY_BERT;
    base = "BertModel";
  } else if(!strcmp(type, "gpt2")) {
    fam = OTF_FAMILY_GPT2;
    base = "GPT2Model";
  } else {
    rc = OTF_FAIL(err, OTF_E_UNSUPPORTED, "/model_type",
                  "model_type '%.40s' is not supported (vit, bert)", type);
    goto done;
  }
  set_defaults(cfg, fam);
  snprintf(cfg->model_type, sizeof(cfg->model_type), "%s", type);
  const json_t *archs = json_object_get(root, "architectures");
  if(archs && !json_is_null(archs)) {
    const json_t *a0 = json_array_get(archs, 0);
    if(!json_is_array(archs) || json_array_size(archs) != 1 || !json_is_string(a0) ||
       strlen(json_string_value(a0)) >= sizeof(cfg->architecture)) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, "/architectures",
                    "config.json: architectures must be a list of one class name");
      goto done;
    }
    snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", json_string_value(a0));
  } else {
    snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", base);
  }
  rc = parse_fields(cfg, root, err);
done:
  json_decref(root);
  if(rc != OTF_OK)
    otf_model_config_free(cfg);
  return rc;
}

otf_status otf_model_config_load(otf_model_config *cfg, const char *path, otf_error *err) {
  memset(cfg, 0, sizeof(*cfg));
  FILE *f = fopen(path, "rb");
  if(!f)
    return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", path,
                    strerror(errno));
  char *buf = otf_malloc(OTF_MAX_CONFIG_BYTES + 1);
  if(!buf) {
    fclose(f);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to read %s", path);
  }
  size_t len = fread(buf, 1, OTF_MAX_CONFIG_BYTES + 1, f);
  int bad = ferror(f);
  fclose(f);
  otf_status rc;
  if(bad)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: read error", path);
  else if(len > OTF_MAX_CONFIG_BYTES)
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s is larger than %zu bytes", path,
                  (size_t)OTF_MAX_CONFIG_BYTES);
  else
    rc = otf_model_config_parse(cfg, buf, len, err);
  otf_free(buf);
  if(rc != OTF_OK && err && err->message[0] && !strstr(err->message, path)) {
    /* Prefix the file name so the user knows which parent is broken. */
    char msg[OTF_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%.100s: %.150s", path, err->message);
    memcpy(err->message, msg, sizeof(msg));
  }
  return rc;
}

void otf_model_config_free(otf_model_config *cfg) {
  if(cfg->id2label) {
    for(int k = 0; k < cfg->num_labels; k++)
      otf_free(cfg->id2label[k]);
    otf_free(cfg->id2label);
  }
  cfg->id2label = NULL;
}
