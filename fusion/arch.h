/* Architectures as data. Each supported architecture is a table of tensor
 * specs: the tensor's name template, its role, the semantic slot the
 * forward pass reads it through, and for every axis the *space* it lives
 * in (residual stream, Q/K/V space of a layer, FFN space, positions,
 * classes, ...). Entries are in data-flow order, with residual merge points
 * marked, so the fusion can walk a table without knowing the model.
 * Adding an architecture means adding a table (see the GPT-2 one in
 * arch.c, which describes Conv1D's transposed weights and the fused QKV
 * projection; Llama would add RMSNorm (a NORM_W with no NORM_B), SwiGLU
 * (gate and up both FFN-out, RESID-in), GQA (K/V spaces of num_kv_heads)
 * and RoPE (pairs within a head must move together: a constraint on the
 * Q/K space, not a tensor)). */
#ifndef OTF_ARCH_H
#define OTF_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/limits.h"
#include "fusion/hfconfig.h"

typedef enum otf_space {
  OTF_SP_ONE = 0, /* a singleton axis (the leading 1s of cls_token) */
  OTF_SP_RESID,   /* residual stream, hidden_size */
  OTF_SP_Q,       /* query space of layer L: heads x head_dim, heads contiguous */
  OTF_SP_K,       /* key space of layer L (same split) */
  OTF_SP_V,       /* value space of layer L; also W_O's input */
  OTF_SP_QKV,     /* fused Q|K|V of layer L (GPT-2 c_attn), 3 x hidden */
  OTF_SP_FFN,     /* FFN units of layer L, intermediate_size */
  OTF_SP_POS,     /* positions: max_position_embeddings, or patches + 1 */
  OTF_SP_PATCH,   /* patch pixels C x p x p (conv kernel, three axes) */
  OTF_SP_CLASS,   /* output classes, num_labels */
  OTF_SP_VOCAB,   /* vocabulary, vocab_size */
  OTF_SP_TYPE,    /* token types, type_vocab_size */
  OTF_SP_POOL,    /* pooler output, hidden_size */
  OTF_SP_MLM,     /* MLM head transform, hidden_size */
  OTF_SP_COUNT
} otf_space;

typedef enum otf_role {
  OTF_ROLE_LINEAR_W = 0, /* [out, in]; [in, out] with OTF_TF_TRANSPOSED */
  OTF_ROLE_LINEAR_B,     /* [out] */
  OTF_ROLE_NORM_W,       /* LayerNorm gain over one space */
  OTF_ROLE_NORM_B,       /* LayerNorm bias */
  OTF_ROLE_EMBED,        /* lookup table [rows, hidden] */
  OTF_ROLE_PATCH_W,      /* patch convolution [hidden, C, p, p] */
  OTF_ROLE_PATCH_B,      /* [hidden] */
  OTF_ROLE_TOKEN,        /* learned token [1, 1, hidden] */
  OTF_ROLE_POS_EMBED,    /* [1, positions, hidden] */
  OTF_ROLE_MERGE,        /* no tensor: residual stream += branch here */
  OTF_ROLE_BUFFER,       /* non-parameter buffer: copied, never fused */
} otf_role;

/* Semantic slots: what the forward pass reads. */
typedef enum otf_slot {
  OTF_SLOT_NONE = 0,
  /* embeddings */
  OTF_SLOT_CLS_TOKEN, OTF_SLOT_POS_EMBED, OTF_SLOT_PATCH_W, OTF_SLOT_PATCH_B,
  OTF_SLOT_WORD_EMBED, OTF_SLOT_TYPE_EMBED, OTF_SLOT_EMB_LN_W, OTF_SLOT_EMB_LN_B,
  OTF_SLOT_POSITION_IDS,
  /* per layer */
  OTF_SLOT_LN1_W, OTF_SLOT_LN1_B, /* ViT: before attention; BERT: after it */
  OTF_SLOT_Q_W, OTF_SLOT_Q_B, OTF_SLOT_K_W, OTF_SLOT_K_B, OTF_SLOT_V_W, OTF_SLOT_V_B,
  OTF_SLOT_QKV_W, OTF_SLOT_QKV_B, /* fused (GPT-2) */
  OTF_SLOT_O_W, OTF_SLOT_O_B,
  OTF_SLOT_LN2_W, OTF_SLOT_LN2_B, /* ViT: before the MLP; BERT: after it */
  OTF_SLOT_FC1_W, OTF_SLOT_FC1_B, OTF_SLOT_FC2_W, OTF_SLOT_FC2_B,
  OTF_SLOT_ATTN_MASK_BUF,         /* GPT-2 causal mask buffer */
  /* heads */
  OTF_SLOT_FINAL_LN_W, OTF_SLOT_FINAL_LN_B,
  OTF_SLOT_POOL_W, OTF_SLOT_POOL_B,
  OTF_SLOT_CLS_W, OTF_SLOT_CLS_B,
  OTF_SLOT_MLM_DENSE_W, OTF_SLOT_MLM_DENSE_B, OTF_SLOT_MLM_LN_W, OTF_SLOT_MLM_LN_B,
  OTF_SLOT_MLM_DECODER_W, OTF_SLOT_MLM_BIAS,
  OTF_SLOT_COUNT
} otf_slot;

/* Tensor flags. */
#define OTF_TF_OPTIONAL   1u /* may be absent (then the forward pass skips it) */
#define OTF_TF_TIED       2u /* may be absent: same values as tied_to */
#define OTF_TF_TRANSPOSED 4u /* Conv1D: stored [in, out] */

typedef struct otf_tensor_spec {
  const char *name;       /* template; "{L}" stands for the layer index */
  const char *alias;      /* older spelling accepted on read, or NULL */
  otf_role role;
  otf_slot slot;
  unsigned flags;
  int rank;
  otf_space axes[OTF_MAX_TENSOR_RANK]; /* space of each axis, outermost first;
                                          PATCH covers the trailing three */
  const char *tied_to;    /* for OTF_TF_TIED: the template it repeats */
} otf_tensor_spec;

typedef struct otf_arch {
  const char *name;   /* HF class name, e.g. "ViTForImageClassification" */
  otf_family family;
  const otf_tensor_spec *pre;   /* before the layers, flow order */
  size_t n_pre;
  const otf_tensor_spec *layer; /* one layer, flow order ({L} templates) */
  size_t n_layer;
  const otf_tensor_spec *post;  /* after the layers */
  size_t n_post;
} otf_arch;

/* Table for an HF class name; NULL when unsupported. */
const otf_arch *otf_arch_find(const char *hf_class);

/* Tables in registration order (for listing in errors and docs). */
size_t otf_arch_count(void);
const otf_arch *otf_arch_at(size_t index);

/* Expands spec->name (or alias when use_alias) for layer into buf. Returns
 * the length, or -1 when it does not fit. */
int otf_arch_name(char *buf, size_t cap, const otf_tensor_spec *spec, int layer,
                  int use_alias);

/* Size of one space under cfg (PATCH: C*p*p). */
uint64_t otf_space_size(otf_space sp, const otf_model_config *cfg);
const char *otf_space_name(otf_space sp);

/* The shape a tensor must have under cfg. */
void otf_arch_shape(const otf_tensor_spec *spec, const otf_model_config *cfg,
                    uint64_t shape[OTF_MAX_TENSOR_RANK], int *rank);

#endif
