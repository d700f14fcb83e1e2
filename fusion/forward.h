/* Inference in C on OpenBLAS for the supported families (ViT pre-LN,
 * BERT post-LN), batched, returning logits and, on request, the
 * intermediate activations activation-based alignment needs. Matches
 * PyTorch (Hugging Face semantics) to float tolerance. */
#ifndef OTF_FORWARD_H
#define OTF_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/arch.h"
#include "fusion/hfconfig.h"
#include "fusion/model.h"

typedef struct otf_batch {
  size_t n;                       /* samples */
  size_t seq;                     /* BERT: tokens per sample T; ViT: unused */
  const float *pixel_values;      /* ViT: [n, C, H, W] */
  const int64_t *input_ids;       /* BERT: [n, T] */
  const int64_t *attention_mask;  /* BERT: [n, T] of 0/1, NULL = all ones */
  const int64_t *token_type_ids;  /* BERT: [n, T], NULL = all zeros */
} otf_batch;

/* Points where activations can be observed. Each is delivered as a
 * row-major [rows, cols] matrix with rows = n * tokens (a sample's tokens
 * contiguous; ViT: cls first, then patches), cols = hidden_size
 * (FFN_PRE: intermediate_size). Names in the golden fixtures
 * (tests/data/models/README.md) in brackets. ViT is pre-LN, so its
 * RESID_* are the raw residual sums; BERT is post-LN, so its RESID_* are
 * after the LayerNorm that follows each sum. Padded tokens' rows are
 * computed like HF does (they attend normally; only keys are masked). */
typedef enum otf_tap {
  OTF_TAP_EMBEDDINGS = 0, /* output of the embedding block */
  OTF_TAP_PATCH_EMBED,    /* ViT: patch convolution output, P tokens per sample */
  OTF_TAP_Q, OTF_TAP_K, OTF_TAP_V, /* projections, before the head split */
  OTF_TAP_ATTN_OUT,       /* attention output dense, before the residual add */
  OTF_TAP_RESID_ATTN,     /* stream after the attention sub-block */
  OTF_TAP_FFN_PRE,        /* intermediate dense, before the activation */
  OTF_TAP_FFN_OUT,        /* output dense, before the residual add */
  OTF_TAP_RESID_FFN,      /* stream after the block */
  OTF_TAP_FINAL,          /* after the final LayerNorm (ViT) / last hidden (BERT) */
  OTF_TAP_POOLED,         /* pooler output, 1 row per sample */
  OTF_TAP_COUNT
} otf_tap;

#define OTF_TAP_BIT(t) (1u << (t))

/* Internal taps, outside the public set above (so that loops up to
 * OTF_TAP_COUNT and masks of "every tap" are unchanged): the inputs of the
 * query/key/value projections and of the intermediate dense, [rows,
 * hidden_size] (ViT: after LN1 / LN2; BERT: the stream entering the layer
 * / after the attention's LayerNorm). Activation statistics derive those
 * projections' cross-products from their inputs' second moments, which is
 * far cheaper for the FFN (d x d instead of F x F per observation). */
#define OTF_TAP_QKV_IN ((otf_tap)OTF_TAP_COUNT)
#define OTF_TAP_FFN_IN ((otf_tap)(OTF_TAP_COUNT + 1))
#define OTF_TAP_ALL_COUNT (OTF_TAP_COUNT + 2)

/* Called synchronously; x is borrowed for the call. layer is -1 outside
 * the layers. A non-OK return stops the forward pass with that status. */
typedef otf_status (*otf_tap_fn)(void *ctx, otf_tap tap, int layer, const float *x,
                                 size_t rows, size_t cols);

typedef struct otf_forward otf_forward;

/* Plans the workspace for batches of up to max_batch samples (BERT: up to
 * max_seq tokens each, clamped to max_position_embeddings; ViT: ignored)
 * and allocates it once; otf_forward_run allocates nothing. The head is
 * taken from the slots present: CLS_W = classifier (ViT on the final cls
 * row, BERT on the pooler output), MLM_DECODER_W = masked-LM head, neither
 * = base model (POOLED tap when the pooler slots exist). w, cfg, arch are
 * borrowed and must outlive the handle (arch may be NULL). Errors:
 * OTF_E_UNSUPPORTED (family without a forward pass), OTF_E_INVAL (missing
 * slots, bad sizes), OTF_E_TOO_LARGE, OTF_E_NOMEM. */
otf_status otf_forward_create(otf_forward **out, const otf_weights *w,
                              const otf_model_config *cfg, const otf_arch *arch,
                              size_t max_batch, size_t max_seq, otf_error *err) OTF_WUR;
void otf_forward_destroy(otf_forward *f);

/* Number of floats the logits of a batch take: ViT/BERT classification
 * n * num_labels; MLM n * T * vocab; 0 for base models (no head). */
size_t otf_forward_logits_len(const otf_forward *f, const otf_batch *b);

/* Runs one batch. logits: out [otf_forward_logits_len] (may be NULL; row
 * major [n, labels] or [n, T, vocab]). taps: OR of OTF_TAP_BIT(...) to
 * deliver through tap(ctx, ...), in data-flow order.
 * Input errors (token id outside [0, vocab), type id outside
 * [0, type_vocab), mask values other than 0/1, seq = 0 or over the plan or
 * max_position_embeddings, n over the plan, missing inputs) return
 * OTF_E_INVAL with a message naming the element; nothing is read out of
 * bounds. ViT pixel_values must be [n, C, image_size, image_size].
 * Attention masks: a masked key gets weight 0; a sample whose keys are all
 * masked attends uniformly to all of them (what HF's finfo.min mask gives),
 * never NaN. Results are deterministic for a fixed OpenBLAS thread count,
 * and logits do not depend on which taps are requested. */
otf_status otf_forward_run(otf_forward *f, const otf_batch *b, float *logits,
                           uint32_t taps, otf_tap_fn tap, void *ctx, otf_error *err) OTF_WUR;

/* Internal, for tests: the vectorised activation the forward pass uses
 * (x [len] in place; otf_act_apply's scalar libm form is the reference). */
void otf__forward_act(otf_act act, float *x, size_t len);

/* Kernels the training pass (fusion/train.c) shares with inference. */

/* y [rows, out] = x [rows, in] W^T + b (PyTorch Linear: W [out, in], b [out]
 * or NULL), one SGEMM with the bias preloaded. */
void otf__linear_fwd(float *y, const float *x, const float *W, const float *b, size_t rows,
                     size_t in, size_t out);

/* Token inputs of a text batch [n, seq]: ids inside the vocabulary, token
 * types inside [0, type_vocab) (only 0 without a type embedding), mask
 * values 0/1; errors name the element. */
otf_status otf__batch_check_tokens(const otf_model_config *cfg, const otf_batch *b,
                                   int has_type_embed, otf_error *err) OTF_WUR;

/* Softmax of each row of s [T, T] over the keys with keyok[j] = 1 (masked
 * keys get 0; nvalid = attended keys; none: uniform rows, as HF's
 * finfo.min mask gives). */
void otf__softmax_masked(float *s, const float *keyok, size_t nvalid, size_t T);

/* unf [n * P, C * p * p]: patch (i, j) of each image [C, img, img] as the
 * patch convolution's receptive field in (c, kh, kw) order, matching its
 * kernel's [D, C, p, p] layout; P = (img / p)^2. */
void otf__unfold_patches(float *unf, const float *pixels, size_t n, size_t C, size_t img,
                         size_t p);

#endif
