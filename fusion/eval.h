/* Evaluation of a model on a labelled data set stored as safetensors:
 * accuracy and mean cross-entropy, computed with the C forward pass.
 *
 * Data files (tensor names as the transformers/datasets tooling writes
 * them):
 *   ViT   pixel_values F32/F16/BF16 [N, C, H, W] (C, H, W as the config),
 *         labels I64 [N] in [0, num_labels)
 *   BERT  input_ids I64 [N, T], optional attention_mask I64 [N, T] (0/1)
 *         and token_type_ids I64 [N, T], and labels I64:
 *         [N] in [0, num_labels) for sequence classification, or
 *         [N, T] in [0, vocab) or -100 (not scored) for masked LM. */
#ifndef OTF_EVAL_H
#define OTF_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/model.h"

typedef struct otf_eval_result {
  double accuracy; /* fraction in [0, 1] of correct argmax predictions
                      (MLM: over the scored tokens) */
  double loss;     /* mean cross-entropy (natural log), same denominator */
  uint64_t n;      /* samples evaluated */
  uint64_t tokens; /* MLM: scored tokens (labels != -100); 0 otherwise */
  int mlm;         /* 1 when the labels were per token */
  double seconds;  /* wall time of the forward passes and scoring */
} otf_eval_result;

/* Default and largest batch (samples per forward pass). */
#define OTF_EVAL_DEFAULT_BATCH 32
#define OTF_EVAL_MAX_BATCH 4096

/* Evaluates m (borrowed, opened with otf_model_open) on the data file at
 * data_path in batches of `batch` samples (0 = OTF_EVAL_DEFAULT_BATCH).
 * The model must have a head (classification or MLM) matching the labels.
 * Errors: OTF_E_IO / OTF_E_FORMAT for an unreadable file, OTF_E_INVAL for
 * missing tensors, wrong dtypes or shapes, labels or ids out of range, or
 * data of the wrong kind for the model (the message names the tensor),
 * OTF_E_NOMEM. */
otf_status otf_eval(otf_eval_result *res, const otf_model *m, const char *data_path,
                    size_t batch, otf_error *err) OTF_WUR;

/* The same over weights already loaded (for callers that hold them, e.g.
 * to evaluate a fused model before writing it). w, cfg: borrowed. */
otf_status otf_eval_weights(otf_eval_result *res, const otf_weights *w,
                            const otf_model_config *cfg, const otf_arch *arch,
                            const char *data_path, size_t batch, otf_error *err) OTF_WUR;

#endif
