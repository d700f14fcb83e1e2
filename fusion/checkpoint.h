/* A checkpoint: the tensors of one model, in a single safetensors file or
 * sharded over several with a Hugging Face index
 * (model.safetensors.index.json: {"metadata": {...}, "weight_map":
 * {"tensor name": "shard file name", ...}}). Every shard is mapped (not
 * copied) and validated like a single file; the index must name only
 * shards that exist inside the folder (no '/' or '..'), every tensor it
 * lists must be in the shard it names, and no tensor may appear twice. */
#ifndef OTF_CHECKPOINT_H
#define OTF_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/safetensors.h"

/* Shards one checkpoint may have: the largest public models have ~200. */
#define OTF_MAX_SHARDS 4096

typedef struct otf_ckpt otf_ckpt;

/* path: a folder holding model.safetensors or
 * model.safetensors.index.json (the index wins when both exist, even a
 * broken one: no silent fallback to a stale single file), or a single
 * .safetensors file. *out: caller owns; release with otf_ckpt_close.
 * A shard may be a symlink only to a file inside the folder (checked on
 * the resolved path), so a Hugging Face cache snapshot, whose files link
 * to ../../blobs, must be opened through its resolved files instead.
 * Errors name the file and the problem:
 *   OTF_E_NOT_FOUND  path missing, or a folder with neither file;
 *   OTF_E_FORMAT     bad JSON (duplicate keys included) or index shape, a
 *                    shard name that is not a plain file name, a shard
 *                    that is missing or resolves outside the folder, a
 *                    tensor missing from its shard, in two shards or in
 *                    no weight_map entry (err->pointer: "/weight_map/..."),
 *                    and any error of a shard's own header;
 *   OTF_E_TOO_LARGE  more than OTF_MAX_SHARDS shards, an oversized index;
 *   OTF_E_IO, OTF_E_NOMEM. */
otf_status otf_ckpt_open(otf_ckpt **out, const char *path, otf_error *err) OTF_WUR;
void otf_ckpt_close(otf_ckpt *c);

/* All tensors over all shards, in name order; borrowed, valid until close.
 * They form one array: otf_ckpt_at(c, 0) + i == otf_ckpt_at(c, i), so the
 * index of a tensor found by name is its offset from otf_ckpt_at(c, 0).
 * The entries are copies; compare tensors by these pointers, not with the
 * shards' own otf_st_tensor addresses. */
size_t otf_ckpt_count(const otf_ckpt *c);
const otf_st_tensor *otf_ckpt_at(const otf_ckpt *c, size_t index);
const otf_st_tensor *otf_ckpt_find(const otf_ckpt *c, const char *name);
size_t otf_ckpt_shards(const otf_ckpt *c);
/* Sum of the shards' file sizes in bytes. */
uint64_t otf_ckpt_bytes(const otf_ckpt *c);

#endif
