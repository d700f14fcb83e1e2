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
 * model.safetensors.index.json (the index wins when both exist), or a
 * single .safetensors file. *out: caller owns; release with
 * otf_ckpt_close. Errors name the file and the problem. */
otf_status otf_ckpt_open(otf_ckpt **out, const char *path, otf_error *err) OTF_WUR;
void otf_ckpt_close(otf_ckpt *c);

/* All tensors over all shards, in name order; borrowed, valid until close. */
size_t otf_ckpt_count(const otf_ckpt *c);
const otf_st_tensor *otf_ckpt_at(const otf_ckpt *c, size_t index);
const otf_st_tensor *otf_ckpt_find(const otf_ckpt *c, const char *name);
size_t otf_ckpt_shards(const otf_ckpt *c);
/* Sum of the shards' file sizes in bytes. */
uint64_t otf_ckpt_bytes(const otf_ckpt *c);

#endif
