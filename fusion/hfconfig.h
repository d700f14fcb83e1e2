/* Hugging Face config.json for the architectures we support, with the
 * defaults transformers applies to keys that are missing. */
#ifndef OTF_HFCONFIG_H
#define OTF_HFCONFIG_H

#include <stddef.h>

#include "common/error.h"

typedef enum otf_family {
  OTF_FAMILY_VIT = 0, /* pre-LN encoder over patches */
  OTF_FAMILY_BERT,    /* post-LN encoder over tokens */
  OTF_FAMILY_GPT2,    /* pre-LN causal decoder: table only, no forward pass yet */
} otf_family;

typedef enum otf_act {
  OTF_ACT_GELU = 0,   /* "gelu": exact, x * Phi(x) with erf */
  OTF_ACT_GELU_TANH,  /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast": tanh form */
  OTF_ACT_RELU,       /* "relu" */
  OTF_ACT_SILU,       /* "silu", "swish" */
  OTF_ACT_QUICK_GELU, /* "quick_gelu": x * sigmoid(1.702 x) */
} otf_act;

#define OTF_CONFIG_NAME_MAX 64
#define OTF_MAX_LABELS 4096 /* classes in id2label; bounds the label table */

typedef struct otf_model_config {
  otf_family family;
  char model_type[OTF_CONFIG_NAME_MAX];   /* "vit", "bert" */
  char architecture[OTF_CONFIG_NAME_MAX]; /* architectures[0], or derived */
  int hidden_size, num_layers, num_heads, intermediate_size;
  otf_act act;
  char act_name[OTF_CONFIG_NAME_MAX];
  double layer_norm_eps;
  /* ViT */
  int image_size, patch_size, num_channels, qkv_bias;
  /* BERT */
  int vocab_size, max_position_embeddings, type_vocab_size, pad_token_id;
  /* Heads */
  int num_labels;
  char **id2label; /* [num_labels], owned; NULL when the config has none */
} otf_model_config;

/* Parses config.json text (len bytes; untrusted). Missing keys get the
 * transformers defaults for the model_type; wrong types, non-positive
 * sizes, hidden_size not divisible by the head count, an unknown
 * model_type or hidden_act, and duplicate keys are OTF_E_FORMAT /
 * OTF_E_UNSUPPORTED with the JSON pointer of the field in err->pointer.
 * cfg is filled on success; release with otf_model_config_free. */
otf_status otf_model_config_parse(otf_model_config *cfg, const char *text, size_t len,
                                  otf_error *err) OTF_WUR;

/* Reads and parses path (at most OTF_MAX_CONFIG_BYTES). */
otf_status otf_model_config_load(otf_model_config *cfg, const char *path,
                                 otf_error *err) OTF_WUR;

void otf_model_config_free(otf_model_config *cfg);

/* Applies the activation in place: x [len]. */
void otf_act_apply(otf_act act, float *x, size_t len);
const char *otf_act_name(otf_act act);

#endif
