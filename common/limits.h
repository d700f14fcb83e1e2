/* Every bound otfuse puts on untrusted input, in one place, each with the
 * reason for its value. Code that checks one of these returns
 * OTF_E_TOO_LARGE naming the limit. */
#ifndef OTF_LIMITS_H
#define OTF_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* Largest side of an OT problem (n or m). Transformer widths top out at a
 * few tens of thousands (Llama-70B FFN: 28672); 65536 leaves room while
 * keeping index arithmetic in int32. */
#define OTF_MAX_OT_SIDE 65536

/* Largest n*m of a dense OT problem: 2^28 entries is 2 GiB per dense double
 * matrix, and a solve holds two (cost and plan). Larger problems would not
 * fit the memory a job is given anyway. */
#define OTF_MAX_OT_CELLS ((uint64_t)1 << 28)

/* Sinkhorn iterations a caller may ask for. The reference stops at 1000;
 * more than a million iterations means the regularisation is wrong, not
 * that the solver needs more time. */
#define OTF_MAX_SINKHORN_ITER 1000000

/* safetensors header length. The format's own reference implementation
 * refuses headers over 100 MB; real checkpoints need a few hundred KiB. */
#define OTF_MAX_SAFETENSORS_HEADER ((uint64_t)100 * 1000 * 1000)

/* Tensors in one safetensors file: the largest public checkpoints have
 * about 2000 per shard; 1e6 bounds the header parse work. */
#define OTF_MAX_TENSORS_PER_FILE 1000000

/* Tensor rank. Model weights have rank <= 4 (conv kernels); 8 matches the
 * tensor libraries we interoperate with. */
#define OTF_MAX_TENSOR_RANK 8

/* Bytes of a single file we map: 1 TiB, beyond any checkpoint shard. */
#define OTF_MAX_FILE_BYTES ((uint64_t)1 << 40)

/* Nesting depth of JSON we parse (jansson has no depth limit option; we
 * check after parsing). Real specs nest 4 deep. */
#define OTF_MAX_JSON_DEPTH 32

/* config.json size. Real configs are a few KiB; a large id2label table
 * (ImageNet-21k) is ~1 MiB. */
#define OTF_MAX_CONFIG_BYTES ((size_t)4 << 20)

/* Model dimensions accepted from a config.json: beyond any real
 * transformer, small enough that products of two stay far from overflow. */
#define OTF_MAX_HIDDEN 65536
#define OTF_MAX_LAYERS 1024
#define OTF_MAX_VOCAB (1 << 24)
#define OTF_MAX_POSITIONS (1 << 20)
#define OTF_MAX_IMAGE_SIDE 65536
#define OTF_MAX_CHANNELS 64

/* ---- the service (otfused) ---- */

/* Request body bytes. A job spec is a few KiB even with 16 models and long
 * metadata; 1 MiB leaves room without letting a client fill memory. */
#define OTF_MAX_BODY_BYTES ((size_t)1 << 20)

/* Request target (path + query) length: ids are 21 characters, artifact
 * names a few dozen; URLs over 4 KiB are not ours. */
#define OTF_MAX_URL_BYTES 4096

/* Jobs waiting in the queue before POST /v1/jobs answers 429: each queued
 * job costs a row; a backlog this long means the pool is undersized. */
#define OTF_DEFAULT_MAX_QUEUED 1000

/* Simultaneous HTTP connections (file descriptors and per-connection state). */
#define OTF_DEFAULT_MAX_CONNECTIONS 1024

/* Items one list or events page returns at most. */
#define OTF_MAX_PAGE 500

/* Idempotency-Key length: UUIDs are 36 characters; 255 is what common APIs accept. */
#define OTF_MAX_IDEM_KEY 255

_Static_assert(OTF_MAX_OT_SIDE <= INT32_MAX, "OT indices are int32");
_Static_assert(OTF_MAX_OT_CELLS <= SIZE_MAX / sizeof(double),
               "a dense OT matrix must be addressable");

#endif
