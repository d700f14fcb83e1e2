/* safetensors files: a validating, zero-copy reader (mmap) and a writer.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {str: str}}, then the byte buffer. Offsets are relative
 * to the buffer, and the tensors must tile it exactly: sorted by offset
 * they start at 0, leave no gap, do not overlap and end at the file's end.
 * Every field is checked before any byte is trusted. */
#ifndef OTF_SAFETENSORS_H
#define OTF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/limits.h"

typedef enum otf_dtype {
  OTF_DT_BOOL, OTF_DT_U8, OTF_DT_I8, OTF_DT_F8_E4M3, OTF_DT_F8_E5M2,
  OTF_DT_I16, OTF_DT_U16, OTF_DT_F16, OTF_DT_BF16,
  OTF_DT_I32, OTF_DT_U32, OTF_DT_F32,
  OTF_DT_I64, OTF_DT_U64, OTF_DT_F64,
  OTF_DT_COUNT
} otf_dtype;

/* "F32" etc. -> dtype; returns -1 for an unknown name. */
int otf_dtype_parse(otf_dtype *out, const char *name);
const char *otf_dtype_name(otf_dtype dt);
size_t otf_dtype_size(otf_dtype dt);

typedef struct otf_st_tensor {
  const char *name;  /* borrowed from the file handle */
  otf_dtype dtype;
  int rank;          /* 0..OTF_MAX_TENSOR_RANK */
  uint64_t shape[OTF_MAX_TENSOR_RANK];
  uint64_t numel;    /* product of shape (1 for rank 0) */
  uint64_t nbytes;   /* numel * dtype size */
  const void *data;  /* into the mapping; little-endian, possibly unaligned */
} otf_st_tensor;

typedef struct otf_st_file otf_st_file;

/* Maps and validates path. *out: caller owns, release with otf_st_close.
 * Errors: OTF_E_IO (open/stat/mmap, naming the path and errno text),
 * OTF_E_FORMAT (what is wrong, and for which tensor), OTF_E_TOO_LARGE. */
otf_status otf_st_open(otf_st_file **out, const char *path, otf_error *err) OTF_WUR;
void otf_st_close(otf_st_file *f);

/* Tensors in name order (deterministic). Borrowed; valid until close. */
size_t otf_st_count(const otf_st_file *f);
const otf_st_tensor *otf_st_at(const otf_st_file *f, size_t index);
/* NULL when absent. */
const otf_st_tensor *otf_st_find(const otf_st_file *f, const char *name);
/* Value of a __metadata__ key, NULL when absent. Borrowed. */
const char *otf_st_metadata(const otf_st_file *f, const char *key);

/* Tells the kernel that t's bytes are not needed for now: the pages of
 * the mapping that hold them (rounded out to whole pages, so neighbours'
 * bytes may go too) are dropped from memory. The mapping stays valid and
 * its contents do not change; a later read pages them in again from the
 * file. Lowers the resident size of a process that walks a large
 * checkpoint once. t must come from otf_st_open (borrowed). Best effort:
 * nothing happens if the kernel refuses. */
void otf_st_release(const otf_st_tensor *t);

/* Converts a floating tensor (F64, F32, F16, BF16) to double / float.
 * out: [t->numel]. Integer and other dtypes give OTF_E_UNSUPPORTED. */
otf_status otf_st_read_f64(double *out, const otf_st_tensor *t, otf_error *err) OTF_WUR;
otf_status otf_st_read_f32(float *out, const otf_st_tensor *t, otf_error *err) OTF_WUR;

/* One tensor to write; data holds numel * dtype-size bytes, little-endian. */
typedef struct otf_st_out {
  const char *name;
  otf_dtype dtype;
  int rank;
  uint64_t shape[OTF_MAX_TENSOR_RANK];
  const void *data; /* borrowed */
} otf_st_out;

/* Writes tensors [count] sorted by name, the header padded with spaces to
 * a multiple of 8 bytes, and __metadata__ {"format": "pt"} plus the given
 * key/value pairs (meta: 2*nmeta strings, key then value; may be NULL).
 * Written to "path.tmp.<pid>" and renamed, so a reader never sees a partial
 * file. Duplicate names give OTF_E_INVAL. */
otf_status otf_st_write(const char *path, const otf_st_out *tensors, size_t count,
                        const char *const *meta, size_t nmeta, otf_error *err) OTF_WUR;

/* Incremental writer, for output that is produced tensor by tensor: open
 * lays the file out exactly as otf_st_write does for the same tensors
 * (their data pointers are ignored here), writes the header to
 * "path.tmp.<pid>" and sizes the file; put writes tensor `index` (of the
 * array given to open, any order, each once; data: its bytes, borrowed for
 * the call) at its place; finish checks that every tensor was put, syncs
 * and renames to path. Free without finish (any failure) removes the
 * temporary file, so path only ever appears complete. */
typedef struct otf_st_writer otf_st_writer;
otf_status otf_st_writer_open(otf_st_writer **out, const char *path, const otf_st_out *tensors,
                              size_t count, const char *const *meta, size_t nmeta,
                              otf_error *err) OTF_WUR;
otf_status otf_st_writer_put(otf_st_writer *w, size_t index, const void *data,
                             otf_error *err) OTF_WUR;
otf_status otf_st_writer_finish(otf_st_writer *w, otf_error *err) OTF_WUR;
void otf_st_writer_free(otf_st_writer *w);

/* Scalar conversions between float and the 16-bit formats checkpoints use.
 * f16 -> f32 is exact (every half is a float; NaN payloads are kept bit for
 * bit). f32 -> f16 / bf16 round to nearest, ties to even, like PyTorch's
 * .half() / .bfloat16(): subnormal results are rounded correctly (not
 * flushed), magnitudes past the largest finite value plus half an ulp
 * become infinity, and a NaN stays a NaN with the quiet bit set (the top
 * payload bits are kept), so no NaN can turn into an infinity. */
float otf_f16_to_f32(uint16_t h);
uint16_t otf_f32_to_f16(float f);
uint16_t otf_f32_to_bf16(float f);

/* Converts in [n] floats to dtype dt, written little-endian to out (n
 * elements of otf_dtype_size(dt) bytes; out may be unaligned), so the
 * result can be handed to otf_st_write as otf_st_out.data. dt: F32, F16,
 * BF16 or F64; any other dtype gives OTF_E_UNSUPPORTED and writes nothing.
 * out and in are borrowed and must not overlap. */
otf_status otf_st_convert_f32(void *out, otf_dtype dt, const float *in, size_t n,
                              otf_error *err) OTF_WUR;

#endif
