/* A model on disk: config.json + checkpoint, checked against its
 * architecture table, and its weights as float32 for computation. */
#ifndef OTF_MODEL_H
#define OTF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/arch.h"
#include "fusion/checkpoint.h"
#include "fusion/hfconfig.h"

typedef struct otf_model otf_model;

/* otf_model_open flags. */
#define OTF_MODEL_LENIENT 1u /* tensors the table does not know are warnings,
                                not errors (for inspect) */

/* Opens dir (config.json + model.safetensors or a sharded index). Checks
 * that the architecture is supported, that every required tensor is there
 * (old aliases accepted, tied tensors may be absent) with the shape the
 * config implies and a floating dtype, and that nothing else is there.
 * Weights are mapped, not read. *out: caller owns, otf_model_close.
 * Errors name the missing, unexpected or misshapen tensors. */
otf_status otf_model_open(otf_model **out, const char *dir, unsigned flags,
                          otf_error *err) OTF_WUR;
void otf_model_close(otf_model *m);

const otf_model_config *otf_model_cfg(const otf_model *m);
const otf_arch *otf_model_arch(const otf_model *m);
const otf_ckpt *otf_model_ckpt(const otf_model *m);
const char *otf_model_dir(const otf_model *m);
/* Parameters (elements of the table's tensors; tied ones counted once). */
uint64_t otf_model_param_count(const otf_model *m);

/* The tensor behind spec at layer (-1 outside the layers), resolving the
 * alias and the tie; NULL when an optional tensor is absent. Borrowed. */
const otf_st_tensor *otf_model_tensor(const otf_model *m, const otf_tensor_spec *spec,
                                      int layer);

/* Warnings gathered at open (unexpected tensors in lenient mode, ignored
 * buffers). Borrowed strings. */
size_t otf_model_warning_count(const otf_model *m);
const char *otf_model_warning(const otf_model *m, size_t index);

/* Counts non-finite values in every floating tensor (reads all weights).
 * first: name of the first tensor with one (borrowed, NULL if none). */
uint64_t otf_model_count_nonfinite(const otf_model *m, const char **first);

/* Weights as float32 for the forward pass, by slot. F32 tensors that are
 * 4-byte aligned in the mapping are used in place; others (F16, BF16,
 * F64, unaligned) are converted into one owned block. */
typedef struct otf_weights {
  int num_layers;
  const float *g[OTF_SLOT_COUNT];        /* slots outside the layers */
  const float *(*l)[OTF_SLOT_COUNT];     /* [num_layers][slot] */
  void *owned;                           /* converted copies + l */
} otf_weights;

otf_status otf_weights_load(otf_weights *w, const otf_model *m, otf_error *err) OTF_WUR;
void otf_weights_free(otf_weights *w);

#endif
