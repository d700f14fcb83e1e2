/* Model inputs (and labels) stored as safetensors: validation against one
 * or more model configs, and batches for the forward pass.
 *
 * Tensor names are those the transformers/datasets tooling writes:
 *   images  pixel_values F32/F16/BF16 [N, C, H, W], C = num_channels,
 *           H = W = image_size of every config
 *   text    input_ids I64 [N, T], 1 <= T <= every max_position_embeddings,
 *           ids in [0, vocab_size); optional attention_mask I64 [N, T] of
 *           0/1 and token_type_ids I64 [N, T] in [0, type_vocab_size)
 *   labels  (only when asked for) I64 [N] in [0, num_labels) for
 *           classification, or I64 [N, T] in [0, vocab_size) or -100 (not
 *           scored) for masked LM (text only)
 * The family of the first config chooses images (ViT) or text (others).
 * Anything else in the file is ignored. Every element of every id, mask
 * and label tensor is checked once, at open: a batch handed to the forward
 * pass is always valid.
 *
 * Errors are OTF_E_INVAL with a message naming the tensor (and the element
 * for values out of range), and, when several configs are given, the
 * model that refuses the data. */
#ifndef OTF_DATASET_H
#define OTF_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/forward.h"
#include "fusion/hfconfig.h"
#include "fusion/safetensors.h"

/* Label value that is not scored (PyTorch cross_entropy's ignore_index). */
#define OTF_DATASET_IGNORE_INDEX (-100)

/* otf_dataset_opts.labels: which labels the models can score. Either bit
 * makes `labels` required. */
#define OTF_DATASET_LABELS_CLS 1u /* per sample [N]: a classification head */
#define OTF_DATASET_LABELS_MLM 2u /* per token [N, T]: a masked-LM head */

typedef struct otf_dataset_opts {
  const otf_model_config *const *cfgs; /* [ncfg], borrowed; every one must
                                          accept the data */
  const char *const *names;            /* [ncfg] or NULL: how messages name
                                          each model ("parent", "anchor");
                                          NULL = "model" */
  size_t ncfg;                         /* at least 1 */
  const char *what;                    /* the file in messages; NULL =
                                          "data file" */
  unsigned labels;                     /* OR of OTF_DATASET_LABELS_*; 0 =
                                          labels are not read */
} otf_dataset_opts;

typedef struct otf_dataset otf_dataset;

/* Validates the inputs in f against every config of o (in order: the first
 * config that refuses is named; for ids, sequence length and label ranges
 * the most restrictive config is checked, the first one on ties). f and o
 * (and the configs) are borrowed: f must stay open until
 * otf_dataset_destroy, and the configs must outlive the handle. *out:
 * caller owns, otf_dataset_destroy; NULL on failure. Allocates only the
 * handle; batch buffers come with otf_dataset_reserve.
 * Errors: OTF_E_INVAL (missing tensor, wrong dtype, rank or shape, ids,
 * type ids, mask values or labels out of range, no samples, labels of a
 * kind the models cannot score, bad options), OTF_E_NOMEM. */
otf_status otf_dataset_open(otf_dataset **out, const otf_st_file *f, const otf_dataset_opts *o,
                            otf_error *err) OTF_WUR;
void otf_dataset_destroy(otf_dataset *ds);

/* Samples N (> 0 for an open dataset). */
size_t otf_dataset_count(const otf_dataset *ds);
/* Tokens per sample T for text; 0 for images. */
size_t otf_dataset_seq(const otf_dataset *ds);
/* 1 when the labels are per token (masked LM); 0 otherwise or without
 * labels. */
int otf_dataset_mlm(const otf_dataset *ds);
/* Label k in row-major order of the labels tensor ([N] or [N, T]; k below
 * N or N * T). Only when labels were asked for. */
int64_t otf_dataset_label(const otf_dataset *ds, uint64_t k);

/* Allocates the batch buffers once, for batches of up to max_batch (>= 1)
 * samples: images [max_batch, C, H, W] float, text ids, mask and type ids
 * [max_batch, T] each (only those the file holds). A second call replaces
 * the buffers (invalidating batches filled before). Errors: OTF_E_INVAL
 * (max_batch 0), OTF_E_TOO_LARGE, OTF_E_NOMEM. */
otf_status otf_dataset_reserve(otf_dataset *ds, size_t max_batch, otf_error *err) OTF_WUR;

/* Fills b with the samples idx [n] (any order, repeats allowed; each below
 * N), in that order: pixels converted to float32, ids, mask and type ids
 * copied (attention_mask / token_type_ids NULL when the file has none).
 * b's pointers are borrowed from ds and valid until the next fill,
 * reserve or destroy. b->seq is T (0 for images). Allocates nothing.
 * Errors: OTF_E_INVAL (n = 0, n over the reserved batch, an index out of
 * range, nothing reserved). */
otf_status otf_dataset_fill(otf_dataset *ds, otf_batch *b, const size_t *idx, size_t n,
                            otf_error *err) OTF_WUR;

/* The same for the consecutive samples first .. first + n - 1. */
otf_status otf_dataset_fill_range(otf_dataset *ds, otf_batch *b, size_t first, size_t n,
                                  otf_error *err) OTF_WUR;

#endif
