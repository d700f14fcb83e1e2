/* A finetuning job: a model folder in, a trained model folder out. Reads
 * the training (and optional evaluation) data, plans every buffer once,
 * runs mini-batch AdamW with a seeded shuffle (and optional random pixel
 * shifts for images), evaluates after every epoch, and writes the result
 * atomically. The CLI (`otfuse finetune`, `otfuse fuse --finetune-*`) and
 * the service call the same entry point. No globals: progress, metrics
 * and cancellation go through the control struct. Deterministic for a
 * given seed and OpenBLAS thread count.
 *
 * Training is HF's train mode with dropout off. Masked-LM data is used
 * with the masks stored in the file (no dynamic re-masking). */
#ifndef OTF_TRAIN_JOB_H
#define OTF_TRAIN_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/model.h"

#define OTF_FINETUNE_MAX_BATCH 4096
#define OTF_FINETUNE_MAX_STEPS 100000000ull
#define OTF_FINETUNE_MAX_SHIFT 16

typedef struct otf_finetune_opts {
  double epochs;         /* budget in passes over the data (fractions allowed:
                            steps = ceil(epochs * steps per epoch)); 0 = use steps */
  uint64_t steps;        /* budget in optimizer steps when epochs is 0 */
  double lr;             /* peak learning rate */
  size_t batch;          /* samples per step */
  double warmup;         /* fraction of the steps spent warming up */
  double weight_decay;   /* AdamW decoupled decay (matrices and embeddings) */
  double max_grad_norm;  /* global clipping; 0 = off */
  uint64_t seed;         /* shuffle and augmentation */
  int augment_shift;     /* images: random translation by up to this many
                            pixels, zero fill (0 = off) */
  uint64_t log_every;    /* metrics line every k steps (0 = epochs only) */
  size_t eval_batch;     /* 0 = 64 */
} otf_finetune_opts;

/* Defaults: 1 epoch, lr 1e-3, batch 64, warm-up 0.05, weight decay 0.01,
 * clipping at 1.0, seed 0, no augmentation, epoch lines only. */
void otf_finetune_opts_default(otf_finetune_opts *o);

typedef struct otf_finetune_ctl {
  /* After every step: steps done and the total. May be NULL. */
  void (*progress)(void *ctx, uint64_t step, uint64_t steps);
  /* One compact JSON object per event, valid during the call:
   *   {"event":"eval","epoch":0,...}   before training, with eval data
   *   {"event":"step",...}             every log_every steps
   *   {"event":"epoch","epoch":k,"step":s,"steps":S,"loss":mean train
   *    loss of the epoch,"accuracy":train accuracy of the epoch,
   *    "lr":...,"eval_accuracy":...,"eval_loss":...,"seconds":...}
   * May be NULL. */
  void (*metrics)(void *ctx, const char *json);
  void *ctx;
  const volatile int *cancel; /* polled between steps; non-zero stops */
} otf_finetune_ctl;

/* Finetunes the model in model_dir on train_path (labelled safetensors, as
 * otf_eval reads) and writes out_dir (config.json with provenance under
 * "otfuse", model.safetensors F32, the source's other files), built aside
 * and renamed into place; nothing is written on failure or cancellation.
 * eval_path may be NULL. extra_provenance (may be NULL) is a JSON object
 * merged into the provenance (e.g. the fusion settings). summary (may be
 * NULL) receives a malloc'd one-line JSON summary (otf_free): steps,
 * epochs, final train loss, eval accuracy before and after, seconds,
 * samples per second. Errors: those of otf_model_open, otf_dataset_open
 * (data that does not fit the model), OTF_E_INVAL (options; the message
 * names the option), OTF_E_UNSUPPORTED (a model without a training head),
 * OTF_E_NUMERIC (a non-finite loss), OTF_E_CANCELLED, OTF_E_IO, OTF_E_NOMEM. */
otf_status otf_finetune_dir(const char *model_dir, const char *train_path,
                            const char *eval_path, const otf_finetune_opts *o,
                            const otf_finetune_ctl *ctl, const char *out_dir,
                            const char *extra_provenance, char **summary,
                            otf_error *err) OTF_WUR;

#endif
