#include "fusion/arch.h"

#include <stdio.h>
#include <string.h>

/* Shorthands for table rows. Axes are listed in storage order. */
#define W(name, slot, out, in) \
  {name, NULL, OTF_ROLE_LINEAR_W, slot, 0, 2, {out, in}, NULL}
#define B(name, slot, out) {name, NULL, OTF_ROLE_LINEAR_B, slot, 0, 1, {out}, NULL}
#define NW(name, alias, slot, sp) {name, alias, OTF_ROLE_NORM_W, slot, 0, 1, {sp}, NULL}
#define NB(name, alias, slot, sp) {name, alias, OTF_ROLE_NORM_B, slot, 0, 1, {sp}, NULL}
#define MERGE {NULL, NULL, OTF_ROLE_MERGE, OTF_SLOT_NONE, 0, 0, {OTF_SP_ONE}, NULL}
#define R OTF_SP_RESID

/* ---- ViT (Hugging Face, pre-LN) ------------------------------------- */

#define VIT_PRE(P)                                                                \
  {P "embeddings.cls_token", NULL, OTF_ROLE_TOKEN, OTF_SLOT_CLS_TOKEN, 0, 3,     \
   {OTF_SP_ONE, OTF_SP_ONE, R}, NULL},                                           \
  {P "embeddings.position_embeddings", NULL, OTF_ROLE_POS_EMBED,                 \
   OTF_SLOT_POS_EMBED, 0, 3, {OTF_SP_ONE, OTF_SP_POS, R}, NULL},                  \
  {P "embeddings.patch_embeddings.projection.weight", NULL, OTF_ROLE_PATCH_W,    \
   OTF_SLOT_PATCH_W, 0, 4, {R, OTF_SP_PATCH, OTF_SP_PATCH, OTF_SP_PATCH}, NULL},  \
  {P "embeddings.patch_embeddings.projection.bias", NULL, OTF_ROLE_PATCH_B,      \
   OTF_SLOT_PATCH_B, 0, 1, {R}, NULL},                                           \
  MERGE

#define VIT_LAYER(P)                                                              \
  NW(P "encoder.layer.{L}.layernorm_before.weight", NULL, OTF_SLOT_LN1_W, R),    \
  NB(P "encoder.layer.{L}.layernorm_before.bias", NULL, OTF_SLOT_LN1_B, R),      \
  W(P "encoder.layer.{L}.attention.attention.query.weight", OTF_SLOT_Q_W, OTF_SP_Q, R), \
  B(P "encoder.layer.{L}.attention.attention.query.bias", OTF_SLOT_Q_B, OTF_SP_Q), \
  W(P "encoder.layer.{L}.attention.attention.key.weight", OTF_SLOT_K_W, OTF_SP_K, R), \
  B(P "encoder.layer.{L}.attention.attention.key.bias", OTF_SLOT_K_B, OTF_SP_K), \
  W(P "encoder.layer.{L}.attention.attention.value.weight", OTF_SLOT_V_W, OTF_SP_V, R), \
  B(P "encoder.layer.{L}.attention.attention.value.bias", OTF_SLOT_V_B, OTF_SP_V), \
  W(P "encoder.layer.{L}.attention.output.dense.weight", OTF_SLOT_O_W, R, OTF_SP_V), \
  B(P "encoder.layer.{L}.attention.output.dense.bias", OTF_SLOT_O_B, R),         \
  MERGE,                                                                         \
  NW(P "encoder.layer.{L}.layernorm_after.weight", NULL, OTF_SLOT_LN2_W, R),     \
  NB(P "encoder.layer.{L}.layernorm_after.bias", NULL, OTF_SLOT_LN2_B, R),       \
  W(P "encoder.layer.{L}.intermediate.dense.weight", OTF_SLOT_FC1_W, OTF_SP_FFN, R), \
  B(P "encoder.layer.{L}.intermediate.dense.bias", OTF_SLOT_FC1_B, OTF_SP_FFN),  \
  W(P "encoder.layer.{L}.output.dense.weight", OTF_SLOT_FC2_W, R, OTF_SP_FFN),   \
  B(P "encoder.layer.{L}.output.dense.bias", OTF_SLOT_FC2_B, R),                 \
  MERGE

static const otf_tensor_spec vit_cls_pre[] = {VIT_PRE("vit.")};
static const otf_tensor_spec vit_cls_layer[] = {VIT_LAYER("vit.")};
static const otf_tensor_spec vit_cls_post[] = {
    NW("vit.layernorm.weight", NULL, OTF_SLOT_FINAL_LN_W, R),
    NB("vit.layernorm.bias", NULL, OTF_SLOT_FINAL_LN_B, R),
    W("classifier.weight", OTF_SLOT_CLS_W, OTF_SP_CLASS, R),
    B("classifier.bias", OTF_SLOT_CLS_B, OTF_SP_CLASS),
};

static const otf_tensor_spec vit_base_pre[] = {VIT_PRE("")};
static const otf_tensor_spec vit_base_layer[] = {VIT_LAYER("")};
static const otf_tensor_spec vit_base_post[] = {
    NW("layernorm.weight", NULL, OTF_SLOT_FINAL_LN_W, R),
    NB("layernorm.bias", NULL, OTF_SLOT_FINAL_LN_B, R),
    {"pooler.dense.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_POOL_W, OTF_TF_OPTIONAL, 2,
     {OTF_SP_POOL, R}, NULL},
    {"pooler.dense.bias", NULL, OTF_ROLE_LINEAR_B, OTF_SLOT_POOL_B, OTF_TF_OPTIONAL, 1,
     {OTF_SP_POOL}, NULL},
};

/* ---- BERT (Hugging Face, post-LN) ----------------------------------- */

#define BERT_PRE(P)                                                               \
  {P "embeddings.word_embeddings.weight", NULL, OTF_ROLE_EMBED, OTF_SLOT_WORD_EMBED, \
   0, 2, {OTF_SP_VOCAB, R}, NULL},                                               \
  {P "embeddings.position_embeddings.weight", NULL, OTF_ROLE_EMBED,              \
   OTF_SLOT_POS_EMBED, 0, 2, {OTF_SP_POS, R}, NULL},                              \
  {P "embeddings.token_type_embeddings.weight", NULL, OTF_ROLE_EMBED,            \
   OTF_SLOT_TYPE_EMBED, 0, 2, {OTF_SP_TYPE, R}, NULL},                            \
  {P "embeddings.position_ids", NULL, OTF_ROLE_BUFFER, OTF_SLOT_POSITION_IDS,    \
   OTF_TF_OPTIONAL, 2, {OTF_SP_ONE, OTF_SP_POS}, NULL},                           \
  MERGE,                                                                         \
  NW(P "embeddings.LayerNorm.weight", P "embeddings.LayerNorm.gamma", OTF_SLOT_EMB_LN_W, R), \
  NB(P "embeddings.LayerNorm.bias", P "embeddings.LayerNorm.beta", OTF_SLOT_EMB_LN_B, R)

#define BERT_LAYER(P)                                                             \
  W(P "encoder.layer.{L}.attention.self.query.weight", OTF_SLOT_Q_W, OTF_SP_Q, R), \
  B(P "encoder.layer.{L}.attention.self.query.bias", OTF_SLOT_Q_B, OTF_SP_Q),    \
  W(P "encoder.layer.{L}.attention.self.key.weight", OTF_SLOT_K_W, OTF_SP_K, R), \
  B(P "encoder.layer.{L}.attention.self.key.bias", OTF_SLOT_K_B, OTF_SP_K),      \
  W(P "encoder.layer.{L}.attention.self.value.weight", OTF_SLOT_V_W, OTF_SP_V, R), \
  B(P "encoder.layer.{L}.attention.self.value.bias", OTF_SLOT_V_B, OTF_SP_V),    \
  W(P "encoder.layer.{L}.attention.output.dense.weight", OTF_SLOT_O_W, R, OTF_SP_V), \
  B(P "encoder.layer.{L}.attention.output.dense.bias", OTF_SLOT_O_B, R),         \
  MERGE,                                                                         \
  NW(P "encoder.layer.{L}.attention.output.LayerNorm.weight",                    \
     P "encoder.layer.{L}.attention.output.LayerNorm.gamma", OTF_SLOT_LN1_W, R), \
  NB(P "encoder.layer.{L}.attention.output.LayerNorm.bias",                      \
     P "encoder.layer.{L}.attention.output.LayerNorm.beta", OTF_SLOT_LN1_B, R),  \
  W(P "encoder.layer.{L}.intermediate.dense.weight", OTF_SLOT_FC1_W, OTF_SP_FFN, R), \
  B(P "encoder.layer.{L}.intermediate.dense.bias", OTF_SLOT_FC1_B, OTF_SP_FFN),  \
  W(P "encoder.layer.{L}.output.dense.weight", OTF_SLOT_FC2_W, R, OTF_SP_FFN),   \
  B(P "encoder.layer.{L}.output.dense.bias", OTF_SLOT_FC2_B, R),                 \
  MERGE,                                                                         \
  NW(P "encoder.layer.{L}.output.LayerNorm.weight",                              \
     P "encoder.layer.{L}.output.LayerNorm.gamma", OTF_SLOT_LN2_W, R),           \
  NB(P "encoder.layer.{L}.output.LayerNorm.bias",                                \
     P "encoder.layer.{L}.output.LayerNorm.beta", OTF_SLOT_LN2_B, R)

#define BERT_POOLER(P, flags)                                                     \
  {P "pooler.dense.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_POOL_W, flags, 2,  \
   {OTF_SP_POOL, R}, NULL},                                                      \
  {P "pooler.dense.bias", NULL, OTF_ROLE_LINEAR_B, OTF_SLOT_POOL_B, flags, 1,    \
   {OTF_SP_POOL}, NULL}

static const otf_tensor_spec bert_pre[] = {BERT_PRE("bert.")};
static const otf_tensor_spec bert_layer[] = {BERT_LAYER("bert.")};
static const otf_tensor_spec bert_cls_post[] = {
    BERT_POOLER("bert.", 0),
    W("classifier.weight", OTF_SLOT_CLS_W, OTF_SP_CLASS, OTF_SP_POOL),
    B("classifier.bias", OTF_SLOT_CLS_B, OTF_SP_CLASS),
};
static const otf_tensor_spec bert_mlm_post[] = {
    /* Checkpoints converted from BertForPreTraining carry a pooler and
     * the next-sentence head; accepted, carried along, never used. */
    BERT_POOLER("bert.", OTF_TF_OPTIONAL),
    W("cls.predictions.transform.dense.weight", OTF_SLOT_MLM_DENSE_W, OTF_SP_MLM, R),
    B("cls.predictions.transform.dense.bias", OTF_SLOT_MLM_DENSE_B, OTF_SP_MLM),
    NW("cls.predictions.transform.LayerNorm.weight",
       "cls.predictions.transform.LayerNorm.gamma", OTF_SLOT_MLM_LN_W, OTF_SP_MLM),
    NB("cls.predictions.transform.LayerNorm.bias",
       "cls.predictions.transform.LayerNorm.beta", OTF_SLOT_MLM_LN_B, OTF_SP_MLM),
    {"cls.predictions.decoder.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_MLM_DECODER_W,
     OTF_TF_TIED, 2, {OTF_SP_VOCAB, OTF_SP_MLM}, "bert.embeddings.word_embeddings.weight"},
    B("cls.predictions.bias", OTF_SLOT_MLM_BIAS, OTF_SP_VOCAB),
    {"cls.predictions.decoder.bias", NULL, OTF_ROLE_LINEAR_B, OTF_SLOT_NONE, OTF_TF_TIED, 1,
     {OTF_SP_VOCAB}, "cls.predictions.bias"},
    {"cls.seq_relationship.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_NONE,
     OTF_TF_OPTIONAL, 2, {OTF_SP_ONE, OTF_SP_POOL}, NULL},
    {"cls.seq_relationship.bias", NULL, OTF_ROLE_LINEAR_B, OTF_SLOT_NONE, OTF_TF_OPTIONAL,
     1, {OTF_SP_ONE}, NULL},
};

static const otf_tensor_spec bert_base_pre[] = {BERT_PRE("")};
static const otf_tensor_spec bert_base_layer[] = {BERT_LAYER("")};
static const otf_tensor_spec bert_base_post[] = {BERT_POOLER("", OTF_TF_OPTIONAL)};

/* ---- GPT-2 (table only: no forward pass yet) ------------------------
 * Conv1D stores weights [in, out], hence OTF_TF_TRANSPOSED and the axes in
 * storage order; c_attn is Q|K|V fused along its output axis (OTF_SP_QKV,
 * thirds of 3 * hidden, heads contiguous inside each third). lm_head is
 * tied to wte. attn.bias / attn.masked_bias are causal-mask buffers some
 * checkpoints carry. */
#define T OTF_TF_TRANSPOSED
static const otf_tensor_spec gpt2_pre[] = {
    {"transformer.wte.weight", NULL, OTF_ROLE_EMBED, OTF_SLOT_WORD_EMBED, 0, 2,
     {OTF_SP_VOCAB, R}, NULL},
    {"transformer.wpe.weight", NULL, OTF_ROLE_EMBED, OTF_SLOT_POS_EMBED, 0, 2,
     {OTF_SP_POS, R}, NULL},
    MERGE,
};
static const otf_tensor_spec gpt2_layer[] = {
    NW("transformer.h.{L}.ln_1.weight", NULL, OTF_SLOT_LN1_W, R),
    NB("transformer.h.{L}.ln_1.bias", NULL, OTF_SLOT_LN1_B, R),
    {"transformer.h.{L}.attn.c_attn.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_QKV_W, T, 2,
     {R, OTF_SP_QKV}, NULL},
    B("transformer.h.{L}.attn.c_attn.bias", OTF_SLOT_QKV_B, OTF_SP_QKV),
    {"transformer.h.{L}.attn.bias", NULL, OTF_ROLE_BUFFER, OTF_SLOT_ATTN_MASK_BUF,
     OTF_TF_OPTIONAL, 4, {OTF_SP_ONE, OTF_SP_ONE, OTF_SP_POS, OTF_SP_POS}, NULL},
    {"transformer.h.{L}.attn.masked_bias", NULL, OTF_ROLE_BUFFER, OTF_SLOT_NONE,
     OTF_TF_OPTIONAL, 0, {OTF_SP_ONE}, NULL},
    {"transformer.h.{L}.attn.c_proj.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_O_W, T, 2,
     {OTF_SP_V, R}, NULL},
    B("transformer.h.{L}.attn.c_proj.bias", OTF_SLOT_O_B, R),
    MERGE,
    NW("transformer.h.{L}.ln_2.weight", NULL, OTF_SLOT_LN2_W, R),
    NB("transformer.h.{L}.ln_2.bias", NULL, OTF_SLOT_LN2_B, R),
    {"transformer.h.{L}.mlp.c_fc.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_FC1_W, T, 2,
     {R, OTF_SP_FFN}, NULL},
    B("transformer.h.{L}.mlp.c_fc.bias", OTF_SLOT_FC1_B, OTF_SP_FFN),
    {"transformer.h.{L}.mlp.c_proj.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_FC2_W, T, 2,
     {OTF_SP_FFN, R}, NULL},
    B("transformer.h.{L}.mlp.c_proj.bias", OTF_SLOT_FC2_B, R),
    MERGE,
};
static const otf_tensor_spec gpt2_post[] = {
    NW("transformer.ln_f.weight", NULL, OTF_SLOT_FINAL_LN_W, R),
    NB("transformer.ln_f.bias", NULL, OTF_SLOT_FINAL_LN_B, R),
    {"lm_head.weight", NULL, OTF_ROLE_LINEAR_W, OTF_SLOT_MLM_DECODER_W, OTF_TF_TIED, 2,
     {OTF_SP_VOCAB, R}, "transformer.wte.weight"},
};
#undef T

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define ARCH(name, fam, pre, layer, post) \
  {name, fam, pre, N(pre), layer, N(layer), post, N(post)}

static const otf_arch archs[] = {
    ARCH("ViTForImageClassification", OTF_FAMILY_VIT, vit_cls_pre, vit_cls_layer, vit_cls_post),
    ARCH("ViTModel", OTF_FAMILY_VIT, vit_base_pre, vit_base_layer, vit_base_post),
    ARCH("BertForSequenceClassification", OTF_FAMILY_BERT, bert_pre, bert_layer, bert_cls_post),
    ARCH("BertForMaskedLM", OTF_FAMILY_BERT, bert_pre, bert_layer, bert_mlm_post),
    ARCH("BertModel", OTF_FAMILY_BERT, bert_base_pre, bert_base_layer, bert_base_post),
    ARCH("GPT2LMHeadModel", OTF_FAMILY_GPT2, gpt2_pre, gpt2_layer, gpt2_post),
};

const otf_arch *otf_arch_find(const char *hf_class) {
  for(size_t k = 0; k < N(archs); k++)
    if(hf_class && !strcmp(archs[k].name, hf_class))
      return &archs[k];
  return NULL;
}

size_t otf_arch_count(void) { return N(archs); }

const otf_arch *otf_arch_at(size_t index) { return index < N(archs) ? &archs[index] : NULL; }

int otf_arch_name(char *buf, size_t cap, const otf_tensor_spec *spec, int layer,
                  int use_alias) {
  const char *tpl = use_alias ? spec->alias : spec->name;
  if(!tpl)
    return -1;
  const char *mark = strstr(tpl, "{L}");
  int n = mark ? snprintf(buf, cap, "%.*s%d%s", (int)(mark - tpl), tpl, layer, mark + 3)
               : snprintf(buf, cap, "%s", tpl);
  return n < 0 || (size_t)n >= cap ? -1 : n;
}

uint64_t otf_space_size(otf_space sp, const otf_model_config *cfg) {
  uint64_t patches = cfg->patch_size ? (uint64_t)(cfg->image_size / cfg->patch_size) : 0;
  switch(sp) {
  case OTF_SP_ONE: return 1;
  case OTF_SP_RESID:
  case OTF_SP_Q:
  case OTF_SP_K:
  case OTF_SP_V:
  case OTF_SP_POOL:
  case OTF_SP_MLM: return (uint64_t)cfg->hidden_size;
  case OTF_SP_QKV: return 3 * (uint64_t)cfg->hidden_size;
  case OTF_SP_FFN: return (uint64_t)cfg->intermediate_size;
  case OTF_SP_POS:
    return cfg->family == OTF_FAMILY_VIT ? patches * patches + 1
                                         : (uint64_t)cfg->max_position_embeddings;
  case OTF_SP_PATCH:
    return (uint64_t)cfg->num_channels * (uint64_t)cfg->patch_size * (uint64_t)cfg->patch_size;
  case OTF_SP_CLASS: return (uint64_t)cfg->num_labels;
  case OTF_SP_VOCAB: return (uint64_t)cfg->vocab_size;
  case OTF_SP_TYPE: return (uint64_t)cfg->type_vocab_size;
  case OTF_SP_COUNT: break;
  }
  return 0;
}

const char *otf_space_name(otf_space sp) {
  static const char *const names[OTF_SP_COUNT] = {
      "one", "resid", "q", "k", "v", "qkv", "ffn", "pos", "patch", "class", "vocab", "type",
      "pool", "mlm"};
  return (unsigned)sp < OTF_SP_COUNT ? names[sp] : "?";
}

void otf_arch_shape(const otf_tensor_spec *spec, const otf_model_config *cfg,
                    uint64_t shape[OTF_MAX_TENSOR_RANK], int *rank) {
  *rank = spec->rank;
  int patch_axis = 0;
  for(int k = 0; k < spec->rank; k++) {
    if(spec->axes[k] == OTF_SP_PATCH) {
      /* Three axes (C, p, p) in the conv kernel's storage order. */
      shape[k] = patch_axis++ == 0 ? (uint64_t)cfg->num_channels : (uint64_t)cfg->patch_size;
    } else {
      shape[k] = otf_space_size(spec->axes[k], cfg);
    }
  }
}
