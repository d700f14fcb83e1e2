/* Activation statistics for activation-based alignment.
 *
 * Runs the C forward pass of a parent and of the anchor on the same
 * calibration inputs and, for every tap and layer the alignment uses,
 * accumulates what the cost between the two models' neurons needs, batch
 * by batch (streaming: the activations themselves are never all kept).
 * Neuron i of a tap is the column i of its [tokens, width] activation
 * matrix; every kept token (padding excluded) of every sample is one
 * observation. The cost between parent neuron i and anchor neuron j is the
 * Euclidean distance between their standardised activation vectors
 * (mean 0, unbiased std 1; ALGORITHM.md section 6), which equals
 * sqrt(2 (N - 1) (1 - r_ij)) with r_ij the Pearson correlation over the
 * N observations: so only sums, sums of squares and the cross-product
 * sum_t x_i(t) y_j(t) are accumulated. Dead neurons (std below 1e-6 of the
 * layer's typical std) get r = 0 against everything, instead of the
 * reference's division by 1e-9.
 *
 * Precisely: dead means std == 0 or std < 1e-6 x the median std of the
 * same model's neurons at that tap and layer; its row (parent) or column
 * (anchor) of the cost is sqrt(2 (N - 1)). Values are shifted by each
 * neuron's first-batch mean before accumulation (correlations do not
 * change; cancellation in S_ij - N m_i m_j does), and all sums are double.
 * Costs agree with the slow way (keep every activation, standardise,
 * Euclidean distance) to about 1e-8 of the largest cost on the fixtures,
 * and across batch sizes to about 1e-14. The cost of a neuron against an
 * identical one is ~sqrt(2 (N - 1) x 1e-15), not exactly 0 (the Pearson
 * form cannot do better in double).
 *
 * Projections: Q, K, V and FFN_PRE are linear maps of one input each
 * (the attention's and the intermediate dense's, internal taps QKV_IN and
 * FFN_IN of forward.h), so their centred cross-products are Wp Cpa Wa^T
 * and their sums of squares diag(Wp Cp Wp^T), with Cpa, Cp, Ca the
 * input's centred parent x anchor, parent and anchor second moments
 * (biases drop out). Those d x d moments are what is accumulated for
 * them (QKV_IN once for Q, K and V), and otf_actstats_cost applies the
 * weights, read again from the models, in double. At BERT-base size this
 * replaces a 3072 x 3072 product per observation for FFN_PRE by three
 * 768 x 768 ones. The result equals the direct way up to the float
 * rounding of the projections in the forward pass (the direct way sees
 * rounded outputs).
 *
 * Memory: the statistics kept (freed by otf_actstats_free) are
 *   8 bytes x sum over accumulated (tap, layer) of (np x na + 4 (np + na))
 * plus np^2 + na^2 more for the input taps, with np, na the parent's and
 * anchor's widths there (hidden_size; FFN_PRE needs no block of its own);
 * per-layer taps count once per layer. During collection only, on top of
 * both models' float32 weights (mapped in place when stored F32) and
 * forward workspaces:
 *   4 bytes x B x sum over accumulated (tap, layer) of (rows per sample x na)
 * for the anchor's batch (B = batch; rows per sample: tokens, P patches
 * for PATCH_EMBED, 1 for POOLED), 8 x min(B x max rows per sample, 1024) x
 * (max np + max na) bytes of double scratch, one batch of inputs, and 8 x N
 * for the sample indices. Example, BERT-base both sides, the six taps
 * fusion uses (Q, K, V, ATTN_OUT, FFN_PRE, FFN_OUT) x 12 layers: 12 x 8 x
 * 768^2 x 8 B ~ 450 MB of statistics (was 1.2 GB with FFN_PRE's
 * 3072 x 3072 block), and ~150 MB of anchor rows at the default batch.
 * Everything is allocated before the first batch; otf_actstats_cost
 * allocates its scratch (for FFN_PRE at BERT-base size ~100 MB) per call. */
#ifndef OTF_ACTSTATS_H
#define OTF_ACTSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/forward.h"
#include "fusion/model.h"

typedef struct otf_actstats otf_actstats;

typedef struct otf_calib_opts {
  size_t samples;  /* 0 = all samples in the file; else the first N after a
                      seeded shuffle */
  uint64_t seed;
  size_t batch;    /* forward batch size, 0 = about 1024 tokens per batch
                      (1 to 32 samples) */
  uint32_t taps;   /* OR of OTF_TAP_BIT(...) to collect */
  int window;      /* ViT token filter, the reference's window_k on any
                      patch grid: 0 = every token; K > 0 = the cls token
                      plus the central K x K patches (K >= grid side: all);
                      -1 = the cls token only. The patch-embedding tap has
                      no cls token: it keeps the same central patches (all
                      of them for -1). BERT: must be 0. */
} otf_calib_opts;

/* Reads the calibration file (ViT: pixel_values F32/F16/BF16 [N, C, H,
 * W]; BERT: input_ids I64 [N, T], optional attention_mask and
 * token_type_ids I64 [N, T]; labels and anything else ignored), runs both
 * models, and accumulates the statistics. parent and anchor are borrowed
 * and must outlive *out (the derived taps read their weights); they may
 * differ in widths (heterogeneous) but must take the same inputs (same
 * family; ViT: same image_size, patch_size, num_channels; BERT: every id
 * and token type inside both vocabularies, the sequence within both
 * position tables) and have the same number of layers. opts: borrowed,
 * required. The chosen samples (every sample, or `samples` picked by a
 * splitmix64-seeded shuffle) are processed in file order. *out: caller
 * owns; NULL on failure. progress (may be NULL) is called after each
 * batch with the fraction of batches done (the last call gets 1.0).
 * cancel (may be NULL) is polled before each batch: non-zero stops with
 * OTF_E_CANCELLED.
 * Errors: OTF_E_INVAL (models that do not match, naming what differs;
 * calibration data of the wrong kind or shape, ids out of range, naming
 * the tensor; samples over the file's count; no, unknown or unavailable
 * taps: PATCH_EMBED on BERT, POOLED without a pooler; batch over 4096),
 * OTF_E_UNSUPPORTED (no forward pass for the family), OTF_E_NOT_FOUND /
 * OTF_E_IO / OTF_E_FORMAT (the file), OTF_E_NUMERIC (non-finite
 * activations), OTF_E_TOO_LARGE, OTF_E_NOMEM, OTF_E_CANCELLED. */
otf_status otf_actstats_collect(otf_actstats **out, const otf_model *parent,
                                const otf_model *anchor, const char *calibration_path,
                                const otf_calib_opts *opts,
                                void (*progress)(void *ctx, double fraction), void *ctx,
                                const volatile int *cancel, otf_error *err) OTF_WUR;

/* Cost between the parent's and the anchor's neurons of a tap at a layer
 * (-1 for taps outside the layers): cost [n_parent, n_anchor], row-major,
 * in [0, 2 sqrt(N - 1)]; out, caller-allocated. Derived taps (Q, K, V,
 * FFN_PRE) allocate scratch for the call (OTF_E_NOMEM) and read the
 * weights from the models (OTF_E_IO / OTF_E_FORMAT as otf_st_read_f32).
 * OTF_E_NOT_FOUND when that tap and layer were not collected; OTF_E_INVAL
 * when n_parent / n_anchor are not the widths collected, or when fewer
 * than 2 observations were seen ("need at least 2 observations"). */
otf_status otf_actstats_cost(const otf_actstats *s, otf_tap tap, int layer, double *cost,
                             size_t n_parent, size_t n_anchor, otf_error *err) OTF_WUR;

/* Observations (tokens) accumulated: kept tokens over the chosen
 * samples (ViT: patches + cls per sample; BERT: attention_mask 1 tokens),
 * the N of every full-sequence tap. PATCH_EMBED sees patches only, POOLED
 * one row per sample. 0 for NULL. */
uint64_t otf_actstats_observations(const otf_actstats *s);

void otf_actstats_free(otf_actstats *s);

#endif
