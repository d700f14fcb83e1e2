/* Training state of one model: its parameters as one float32 block, their
 * gradients in a block of the same layout, and the activations one batch
 * leaves for the backward pass, all planned and allocated once at create.
 * A step (forward with saved activations, softmax cross-entropy, backward
 * through every operation) allocates nothing.
 *
 * Supported: ViTForImageClassification (loss on the classifier over the
 * final LayerNorm's [CLS] row), BertForSequenceClassification (classifier
 * over the tanh pooler) and BertForMaskedLM (decoder tied to the word
 * embeddings: both uses add into one gradient; labels -100 are not
 * scored). The math is Hugging Face's in train mode with dropout off
 * (every dropout is the identity), so gradients equal PyTorch's for the
 * same model in eval mode. nn.Embedding's padding_idx is honoured: the
 * word-embedding row pad_token_id gets no gradient from the lookup (it
 * still gets the tied decoder's).
 *
 * Results are deterministic for a fixed OpenBLAS thread count. */
#ifndef OTF_TRAIN_H
#define OTF_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/arch.h"
#include "fusion/forward.h"
#include "fusion/hfconfig.h"
#include "fusion/model.h"

#define OTF_TRAIN_NAME_MAX 192

/* One trainable tensor (tied tensors appear once, under the name stored in
 * the checkpoint). */
typedef struct otf_train_param {
  char name[OTF_TRAIN_NAME_MAX];
  otf_slot slot;
  int layer;                          /* -1 outside the layers */
  int rank;
  uint64_t shape[OTF_MAX_TENSOR_RANK];
  size_t offset;                      /* into the parameter / gradient block */
  size_t numel;
  int decay;                          /* 1: weight decay applies (matrices and
                                         embeddings other than positions);
                                         0: biases, LayerNorms, cls token,
                                         position embeddings */
} otf_train_param;

typedef struct otf_train otf_train;

/* 1 when an architecture (HF class name) can be trained. */
int otf_train_arch_supported(const char *arch_name);

/* Copies m's weights (borrowed; only read here) into a new training state
 * for batches of up to max_batch samples (BERT: max_seq tokens each,
 * clamped to max_position_embeddings). *out: caller owns,
 * otf_train_destroy. Errors: OTF_E_UNSUPPORTED (an architecture without a
 * training head: ViTModel, BertModel, GPT-2), OTF_E_INVAL (bad sizes),
 * OTF_E_TOO_LARGE, OTF_E_NOMEM. */
otf_status otf_train_create(otf_train **out, const otf_model *m, size_t max_batch,
                            size_t max_seq, otf_error *err) OTF_WUR;
void otf_train_destroy(otf_train *t);

/* The config the state was made from (borrowed from the model, which must
 * stay open while the state is used). */
const otf_model_config *otf_train_config(const otf_train *t);
/* 1 when the model is a masked LM (labels per token). */
int otf_train_is_mlm(const otf_train *t);

/* Parameter tensors, in the architecture table's order. */
size_t otf_train_param_count(const otf_train *t);
const otf_train_param *otf_train_param_at(const otf_train *t, size_t i);
/* Looks a parameter up by its stored name; NULL when absent. */
const otf_train_param *otf_train_param_find(const otf_train *t, const char *name);

/* The blocks: otf_train_numel floats each, laid out as the params say.
 * Borrowed; the caller may change the parameters between steps (the
 * optimizer does). */
size_t otf_train_numel(const otf_train *t);
float *otf_train_params(otf_train *t);
float *otf_train_grads(otf_train *t);

/* The parameters as forward-pass weights (borrowed views into the block),
 * e.g. for otf_eval_weights. Valid until otf_train_destroy. */
const otf_weights *otf_train_weights(const otf_train *t);

/* Batch statistics of a step. */
typedef struct otf_train_stats {
  double loss;     /* mean cross-entropy over the scored samples / tokens */
  size_t scored;   /* samples (classification) or tokens with a label */
  size_t correct;  /* argmax == label among them */
} otf_train_stats;

/* One forward and backward pass over b (otf_forward's batch; inputs are
 * validated as otf_forward_run does) with labels [n] (classification) or
 * [n, seq] (MLM, -100 = not scored). Gradients of the mean loss overwrite
 * the gradient block. With grads = 0 only the forward pass and the loss
 * are computed (the gradient block is left alone). A batch with nothing
 * to score has loss 0 and zero gradients. Errors: OTF_E_INVAL (inputs,
 * labels out of range, batch over the plan). */
otf_status otf_train_step(otf_train *t, const otf_batch *b, const int64_t *labels, int grads,
                          otf_train_stats *st, otf_error *err) OTF_WUR;

/* Writes out_dir/config.json (src's config.json with "torch_dtype"
 * "float32" and provenance: an "otfuse" object holding provenance_json,
 * which must be a JSON object, or nothing when NULL) and
 * out_dir/model.safetensors (F32: every parameter with its trained
 * values under the name stored in src, and src's buffers copied as they
 * are), plus src's other files (tokenizer, preprocessor), in a sibling
 * temporary folder renamed into place: out_dir appears complete or not at
 * all. out_dir must not exist or be an empty folder. src: the model the
 * state was made from. */
otf_status otf_train_save(const otf_train *t, const otf_model *src, const char *out_dir,
                          const char *provenance_json, otf_error *err) OTF_WUR;

#endif
