/* Test support: a functionally identical, wider copy of a model folder.
 *
 * An FFN unit whose incoming weights and bias are zero computes act(0) for
 * every input, and when its outgoing weights are zero too, nothing it
 * computes reaches the output: the model with such units added computes
 * exactly the same function (for any activation, act(0) = 0 or not). This
 * is the simplest heterogeneous pair with a known answer: a parent fused
 * with its own padded copy (ALGORITHM.md §4: parents of different widths).
 *
 * tu_pad_ffn_model writes such a copy, driven only by the architecture
 * table (fusion/arch.h), like tu_permute_model: every tensor axis tagged
 * with the FFN space of a layer (fc1 rows, fc1 bias, fc2 columns; GPT-2's
 * transposed Conv1D alike) is extended by `extra` units. The original
 * units keep their indices 0..F-1 and values; the new units F..F+extra-1
 * are all zero. Every other axis, and every other tensor, is copied
 * unchanged (as float32; buffers keep their dtype and bytes).
 *
 * `seed` places the padding: with seed 0 the zero units are appended at
 * the end of each layer's FFN; with any other seed they are scattered
 * (each layer's F + extra slots are a splitmix64-seeded random
 * interleaving of the F original units, in their original order, and the
 * extra zero units), so a test cannot pass just because the zero units sit
 * at the end. Same seed, same bytes. */
#ifndef OTF_TESTS_PAD_H
#define OTF_TESTS_PAD_H

#include <stdint.h>

#include "common/error.h"

/* Opens src_dir with otf_model_open (strict), writes dst_dir/config.json
 * (the source's, parsed and re-serialised with sorted keys and indent 2,
 * with intermediate_size -- n_inner for GPT-2 -- increased by extra) and
 * dst_dir/model.safetensors (F32, otf_st_write; tensor names as stored in
 * the source; tied tensors absent from the file stay absent, optional
 * absent tensors stay absent). dst_dir is created if missing (its parent
 * must exist). extra = 0 gives an unpadded F32 copy. src_dir, dst_dir:
 * borrowed. Errors: the statuses of otf_model_open, otf_st_read_f32 and
 * otf_st_write; OTF_E_IO for the config or the folder; OTF_E_INVAL for bad
 * arguments (NULL paths, extra < 0 or past the config limit) or a tensor
 * whose FFN axis does not have intermediate_size entries; OTF_E_NOMEM. */
otf_status tu_pad_ffn_model(const char *src_dir, const char *dst_dir, int extra, uint64_t seed,
                            otf_error *err) OTF_WUR;

#endif
