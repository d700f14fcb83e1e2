/* Table-driven rewriting of a model's weights, for test utilities that
 * derive one model from another (permuted copies, padded copies). */
#ifndef OTF_TU_REWRITE_H
#define OTF_TU_REWRITE_H

#include "fusion/arch.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"

/* Fills o (name, dtype, rank, shape, data) for the tensor t of spec s at
 * layer (-1 outside the layers). Data it allocates goes in *owned
 * (otf_malloc'd; the caller frees it after writing). */
typedef otf_status (*tu_tensor_fn)(void *ctx, otf_st_out *o, float **owned,
                                   const otf_st_tensor *t, const otf_tensor_spec *s, int layer,
                                   otf_error *err);

/* Creates dst_dir (its parent must exist) and writes dst_dir/model.safetensors
 * with every tensor of m's table passed through fn. Buffers are copied as
 * they are; tied tensors the file does not store stay absent; optional
 * absent ones stay absent. config.json is the caller's to write. */
otf_status tu_rewrite_weights(const otf_model *m, const char *dst_dir, tu_tensor_fn fn,
                              void *ctx, otf_error *err);

#endif
