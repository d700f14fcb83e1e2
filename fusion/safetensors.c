#include "fusion/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"

static const struct {
  const char *name;
  size_t size;
} dtypes[OTF_DT_COUNT] = {
    [OTF_DT_BOOL] = {"BOOL", 1},     [OTF_DT_U8] = {"U8", 1},
    [OTF_DT_I8] = {"I8", 1},         [OTF_DT_F8_E4M3] = {"F8_E4M3", 1},
    [OTF_DT_F8_E5M2] = {"F8_E5M2", 1}, [OTF_DT_I16] = {"I16", 2},
    [OTF_DT_U16] = {"U16", 2},       [OTF_DT_F16] = {"F16", 2},
    [OTF_DT_BF16] = {"BF16", 2},     [OTF_DT_I32] = {"I32", 4},
    [OTF_DT_U32] = {"U32", 4},       [OTF_DT_F32] = {"F32", 4},
    [OTF_DT_I64] = {"I64", 8},       [OTF_DT_U64] = {"U64", 8},
    [OTF_DT_F64] = {"F64", 8},
};

int otf_dtype_parse(otf_dtype *out, const char *name) {
  for(int k = 0; k < OTF_DT_COUNT; k++)
    if(!strcmp(name, dtypes[k].name)) {
      *out = (otf_dtype)k;
      return 0;
    }
  return -1;
}

const char *otf_dtype_name(otf_dtype dt) {
  return (unsigned)dt < OTF_DT_COUNT ? dtypes[dt].name : "?";
}

size_t otf_dtype_size(otf_dtype dt) {
  return (unsigned)dt < OTF_DT_COUNT ? dtypes[dt].size : 0;
}

struct otf_st_file {
  void *map;
  size_t map_len;
  json_t *header; /* owns the name strings the tensors point to */
  json_t *meta;   /* borrowed from header, may be NULL */
  otf_st_tensor *tensors;
  size_t count;
};

static int cmp_by_name(const void *a, const void *b) {
  return strcmp(((const otf_st_tensor *)a)->name, ((const otf_st_tensor *)b)->name);
}

typedef struct span {
  uint64_t begin, end;
  size_t index;
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if(x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if(x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return 0;
}

/* Reads a JSON integer that must be >= 0. */
static int get_u64(const json_t *v, uint64_t *out) {
  if(!json_is_integer(v) || json_integer_value(v) < 0)
    return -1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

/* Fills t from the header entry of one tensor; data left for later. */
static otf_status parse_entry(otf_st_tensor *t, span *sp, const char *name,
                              const json_t *e, otf_error *err) {
  if(!json_is_object(e))
    return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': entry is not an object", name);
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)e, key, val) {
    if(strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
      return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': unknown field '%s'", name,
                      key);
  }
  const json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
               *off = json_object_get(e, "data_offsets");
  if(!json_is_string(dt) || otf_dtype_parse(&t->dtype, json_string_value(dt)) != 0)
    return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': unknown or missing dtype%s%s",
                    name, json_is_string(dt) ? " " : "",
                    json_is_string(dt) ? json_string_value(dt) : "");
  if(!json_is_array(sh))
    return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': shape is not an array", name);
  size_t rank = json_array_size(sh);
  if(rank > OTF_MAX_TENSOR_RANK)
    return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': rank %zu exceeds %d", name,
                    rank, OTF_MAX_TENSOR_RANK);
  t->rank = (int)rank;
  uint64_t numel = 1;
  for(size_t k = 0; k < rank; k++) {
    if(get_u64(json_array_get(sh, k), &t->shape[k]) != 0)
      return OTF_FAIL(err, OTF_E_FORMAT, name,
                      "tensor '%s': shape[%zu] is not a non-negative integer", name, k);
    if(t->shape[k] && numel > UINT64_MAX / t->shape[k])
      return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': element count overflows",
                      name);
    numel *= t->shape[k];
  }
  size_t es = otf_dtype_size(t->dtype);
  if(numel > UINT64_MAX / es)
    return OTF_FAIL(err, OTF_E_FORMAT, name, "tensor '%s': byte size overflows", name);
  t->numel = numel;
  t->nbytes = numel * es;
  if(!json_is_array(off) || json_array_size(off) != 2 ||
     get_u64(json_array_get(off, 0), &sp->begin) != 0 ||
     get_u64(json_array_get(off, 1), &sp->end) != 0)
    return OTF_FAIL(err, OTF_E_FORMAT, name,
                    "tensor '%s': data_offsets must be [begin, end] integers", name);
  if(sp->end < sp->begin || sp->end - sp->begin != t->nbytes)
    return OTF_FAIL(err, OTF_E_FORMAT, name,
                    "tensor '%s': data_offsets [%llu, %llu] span %s bytes, but "
                    "shape x dtype needs %llu",
                    name, (unsigned long long)sp->begin, (unsigned long long)sp->end,
                    sp->end < sp->begin ? "negative" : "a different number of",
                    (unsigned long long)t->nbytes);
  return OTF_OK;
}

static otf_status parse_header(otf_st_file *f, const char *hdr, size_t hlen,
                               const uint8_t *data, uint64_t data_len, otf_error *err) {
  json_error_t jerr;
  if(hlen == 0 || hdr[0] != '{')
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "header does not start with a JSON object");
  f->header = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &jerr);
  if(!f->header)
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "header is not valid JSON: %s (byte %d)",
                    jerr.text, jerr.position);
  /* Only spaces may follow the object (the format pads with them). */
  for(size_t k = (size_t)jerr.position; k < hlen; k++)
    if(hdr[k] != ' ')
      return OTF_FAIL(err, OTF_E_FORMAT, NULL,
                      "header has trailing bytes after the JSON object");
  if(!json_is_object(f->header))
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "header is not a JSON object");
  size_t total = json_object_size(f->header);
  f->meta = json_object_get(f->header, "__metadata__");
  if(f->meta) {
    if(!json_is_object(f->meta))
      return OTF_FAIL(err, OTF_E_FORMAT, "__metadata__", "__metadata__ is not an object");
    const char *k;
    json_t *v;
    json_object_foreach(f->meta, k, v) {
      if(!json_is_string(v))
        return OTF_FAIL(err, OTF_E_FORMAT, "__metadata__",
                        "__metadata__ value of '%s' is not a string", k);
    }
    total--;
  }
  if(total > OTF_MAX_TENSORS_PER_FILE)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%zu tensors exceed the limit %d", total,
                    OTF_MAX_TENSORS_PER_FILE);
  f->tensors = otf_calloc(total ? total : 1, sizeof(*f->tensors));
  span *spans = otf_calloc(total ? total : 1, sizeof(*spans));
  otf_status rc = OTF_OK;
  if(!f->tensors || !spans) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for %zu tensor entries", total);
    goto done;
  }
  const char *name;
  json_t *e;
  size_t k = 0;
  json_object_foreach(f->header, name, e) {
    if(!strcmp(name, "__metadata__"))
      continue;
    f->tensors[k].name = name;
    spans[k].index = k;
    rc = parse_entry(&f->tensors[k], &spans[k], name, e, err);
    if(rc != OTF_OK)
      goto done;
    k++;
  }
  f->count = k;
  qsort(spans, k, sizeof(*spans), cmp_span);
  uint64_t pos = 0;
  for(size_t s = 0; s < k; s++) {
    const char *tn = f->tensors[spans[s].index].name;
    if(spans[s].begin != pos) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, tn, "tensor '%s' starts at byte %llu: %s before it",
                    tn, (unsigned long long)spans[s].begin,
                    spans[s].begin > pos ? "a gap" : "an overlap");
      goto done;
    }
    pos = spans[s].end;
    f->tensors[spans[s].index].data = data + spans[s].begin;
  }
  if(pos != data_len) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL,
                  "tensors cover %llu bytes but the file holds %llu after the header",
                  (unsigned long long)pos, (unsigned long long)data_len);
    goto done;
  }
  for(size_t s = 0; s < k; s++)
    if(f->tensors[s].nbytes == 0)
      f->tensors[s].data = data; /* empty tensors: any valid pointer */
  qsort(f->tensors, k, sizeof(*f->tensors), cmp_by_name);
done:
  otf_free(spans);
  return rc;
}

otf_status otf_st_open(otf_st_file **out, const char *path, otf_error *err) {
  *out = NULL;
  otf_st_file *f = otf_calloc(1, sizeof(*f));
  if(!f)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", path);
  otf_status rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if(fd < 0) {
    rc = OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", path,
                  strerror(errno));
    goto fail;
  }
  struct stat stt;
  if(fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode)) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  uint64_t size = (uint64_t)stt.st_size;
  if(size < 8) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: %llu bytes is too short for safetensors",
                  path, (unsigned long long)size);
    close(fd);
    goto fail;
  }
  if(size > OTF_MAX_FILE_BYTES) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: file too large", path);
    close(fd);
    goto fail;
  }
  f->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if(f->map == MAP_FAILED) {
    f->map = NULL;
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: mmap: %s", path, strerror(errno));
    goto fail;
  }
  f->map_len = (size_t)size;
  const uint8_t *b = f->map;
  uint64_t hlen = 0;
  for(int k = 7; k >= 0; k--)
    hlen = (hlen << 8) | b[k];
  if(hlen > OTF_MAX_SAFETENSORS_HEADER) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: header length %llu exceeds the limit %llu",
                  path, (unsigned long long)hlen,
                  (unsigned long long)OTF_MAX_SAFETENSORS_HEADER);
    goto fail;
  }
  if(hlen > size - 8) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL,
                  "%s: header length %llu is larger than the file (%llu bytes)", path,
                  (unsigned long long)hlen, (unsigned long long)size);
    goto fail;
  }
  rc = parse_header(f, (const char *)b + 8, (size_t)hlen, b + 8 + hlen, size - 8 - hlen,
                    err);
  if(rc != OTF_OK)
    goto fail;
  *out = f;
  return OTF_OK;
fail:
  otf_st_close(f);
  return rc;
}

void otf_st_close(otf_st_file *f) {
  if(!f)
    return;
  if(f->map)
    munmap(f->map, f->map_len);
  json_decref(f->header);
  otf_free(f->tensors);
  otf_free(f);
}

void otf_st_release(const otf_st_tensor *t) {
  if(!t || !t->nbytes)
    return;
  long ps = sysconf(_SC_PAGESIZE);
  uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096u;
  uintptr_t b = (uintptr_t)t->data, e = b + (uintptr_t)t->nbytes;
  b &= ~(page - 1);
  e = (e + page - 1) & ~(page - 1);
  /* The mapping is private and read-only: never written, so dropping its
   * pages loses nothing (a later access reads the file again). */
  (void)madvise((void *)b, (size_t)(e - b), MADV_DONTNEED);
}

size_t otf_st_count(const otf_st_file *f) { return f->count; }

const otf_st_tensor *otf_st_at(const otf_st_file *f, size_t index) {
  return index < f->count ? &f->tensors[index] : NULL;
}

const otf_st_tensor *otf_st_find(const otf_st_file *f, const char *name) {
  otf_st_tensor key = {.name = name};
  return bsearch(&key, f->tensors, f->count, sizeof(key), cmp_by_name);
}

const char *otf_st_metadata(const otf_st_file *f, const char *key) {
  const json_t *v = f->meta ? json_object_get(f->meta, key) : NULL;
  return v ? json_string_value(v) : NULL;
}

/* The reader and the converters below store and load multi-byte values
 * with memcpy, so they assume the file's byte order is the host's. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian");

/* IEEE half -> float, exact (every half is a float). */
float otf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  uint32_t bits;
  if(exp == 0x1f) {
    /* Inf or NaN: the payload is shifted, not quieted, so that a NaN read
     * from a file keeps its exact bits. */
    bits = sign | 0x7f800000u | (man << 13);
  } else if(exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if(man == 0) {
    bits = sign;
  } else {
    /* Subnormal half: normalise into a float. */
    int e = -1;
    do {
      e++;
      man <<= 1;
    } while(!(man & 0x400u));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

/* Integer-only rounding: the result does not depend on the FPU rounding
 * mode, -ffp-contract or flush-to-zero settings of the caller. */
uint16_t otf_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if(ax > 0x7f800000u) /* NaN: force the quiet bit so it cannot become inf */
    return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if(ax >= 0x477ff000u) /* >= 65520 = 65504 + ulp/2, a tie that rounds to 2^16 */
    return (uint16_t)(sign | 0x7c00u);
  if(ax >= 0x38800000u) { /* >= 2^-14: a normal half */
    uint32_t m = ax - ((uint32_t)112 << 23); /* rebias the exponent 127 -> 15 */
    m += 0xfffu + ((m >> 13) & 1u);          /* ties to even; a carry bumps the exponent */
    return (uint16_t)(sign | (m >> 13));
  }
  if(ax <= 0x33000000u) /* <= 2^-25: half the smallest subnormal ties to 0 */
    return sign;
  /* Subnormal half, in units of 2^-24: the float's significand (with its
   * implicit bit) shifted right by 126 - exponent, 14..24 here. */
  uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e;
  uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if(rem > half || (rem == half && (q & 1u)))
    q++; /* q may reach 0x400, which is exactly the smallest normal half */
  return (uint16_t)(sign | q);
}

uint16_t otf_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  if((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncation could give inf */
    return (uint16_t)((x >> 16) | 0x0040u);
  /* bf16 is the top half of a float, so rounding is on the integer: a
   * carry out of the mantissa bumps the exponent, and out of the largest
   * exponent gives exactly inf (0x7f80). Subnormals need no special case. */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

otf_status otf_st_convert_f32(void *out, otf_dtype dt, const float *in, size_t n,
                              otf_error *err) {
  uint8_t *o = out;
  switch(dt) {
  case OTF_DT_F32:
    if(n)
      memcpy(o, in, n * sizeof(float));
    return OTF_OK;
  case OTF_DT_F64:
    for(size_t k = 0; k < n; k++) {
      double d = in[k];
      memcpy(o + 8 * k, &d, 8);
    }
    return OTF_OK;
  case OTF_DT_F16:
    for(size_t k = 0; k < n; k++) {
      uint16_t h = otf_f32_to_f16(in[k]);
      memcpy(o + 2 * k, &h, 2);
    }
    return OTF_OK;
  case OTF_DT_BF16:
    for(size_t k = 0; k < n; k++) {
      uint16_t h = otf_f32_to_bf16(in[k]);
      memcpy(o + 2 * k, &h, 2);
    }
    return OTF_OK;
  default:
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL,
                    "cannot convert float to dtype %s; F32, F16, BF16 or F64 is needed",
                    otf_dtype_name(dt));
  }
}

/* Loads element k of a floating tensor as double (little-endian host). */
static double load_elem(const otf_st_tensor *t, uint64_t k) {
  const uint8_t *p = (const uint8_t *)t->data + k * otf_dtype_size(t->dtype);
  switch(t->dtype) {
  case OTF_DT_F64: {
    double d;
    memcpy(&d, p, 8);
    return d;
  }
  case OTF_DT_F32: {
    float f;
    memcpy(&f, p, 4);
    return f;
  }
  case OTF_DT_F16: {
    uint16_t h;
    memcpy(&h, p, 2);
    return otf_f16_to_f32(h);
  }
  case OTF_DT_BF16: {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
  }
  default:
    return 0.0;
  }
}

static int is_float_dtype(otf_dtype dt) {
  return dt == OTF_DT_F64 || dt == OTF_DT_F32 || dt == OTF_DT_F16 || dt == OTF_DT_BF16;
}

otf_status otf_st_read_f64(double *out, const otf_st_tensor *t, otf_error *err) {
  if(!is_float_dtype(t->dtype))
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, t->name,
                    "tensor '%s' has dtype %s; a floating dtype is needed", t->name,
                    otf_dtype_name(t->dtype));
  for(uint64_t k = 0; k < t->numel; k++)
    out[k] = load_elem(t, k);
  return OTF_OK;
}

otf_status otf_st_read_f32(float *out, const otf_st_tensor *t, otf_error *err) {
  if(!is_float_dtype(t->dtype))
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, t->name,
                    "tensor '%s' has dtype %s; a floating dtype is needed", t->name,
                    otf_dtype_name(t->dtype));
  for(uint64_t k = 0; k < t->numel; k++)
    out[k] = (float)load_elem(t, k);
  return OTF_OK;
}

static int cmp_out_ptr(const void *a, const void *b) {
  return strcmp((*(const otf_st_out *const *)a)->name, (*(const otf_st_out *const *)b)->name);
}

/* ---- writing -------------------------------------------------------------- */

struct otf_st_writer {
  int fd;
  char *tmp, *path;
  size_t count;
  uint64_t data_start;  /* header length + 8 */
  uint64_t *off, *len;  /* per tensor, in the caller's order */
  unsigned char *done;  /* per tensor */
  size_t ndone;
};

/* pwrite of all len bytes at pos. */
static otf_status pwrite_all(int fd, const void *buf, size_t len, uint64_t pos,
                             const char *path, otf_error *err) {
  const unsigned char *b = buf;
  while(len) {
    ssize_t w = pwrite(fd, b, len, (off_t)pos);
    if(w < 0 && errno == EINTR)
      continue;
    if(w <= 0)
      return OTF_FAIL(err, OTF_E_IO, NULL, "%s: write failed: %s", path,
                      w < 0 ? strerror(errno) : "no progress");
    b += w;
    len -= (size_t)w;
    pos += (uint64_t)w;
  }
  return OTF_OK;
}

void otf_st_writer_free(otf_st_writer *w) {
  if(!w)
    return;
  if(w->fd >= 0) {
    close(w->fd);
    unlink(w->tmp);
  }
  otf_free(w->tmp);
  otf_free(w->path);
  otf_free(w->off);
  otf_free(w->len);
  otf_free(w->done);
  otf_free(w);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = otf_malloc(n);
  if(d)
    memcpy(d, s, n);
  return d;
}

otf_status otf_st_writer_open(otf_st_writer **out, const char *path, const otf_st_out *tensors,
                              size_t count, const char *const *meta, size_t nmeta,
                              otf_error *err) {
  otf_status rc = OTF_OK;
  *out = NULL;
  json_t *hdr = json_object();
  const otf_st_out **order = otf_malloc_array(count ? count : 1, sizeof(*order));
  char *text = NULL;
  json_t *md = json_object();
  otf_st_writer *w = otf_calloc(1, sizeof(*w));
  if(w) {
    w->fd = -1;
    w->count = count;
    w->path = dup_str(path);
    w->tmp = otf_malloc(strlen(path) + 32);
    w->off = otf_malloc_array(count ? count : 1, sizeof(uint64_t));
    w->len = otf_malloc_array(count ? count : 1, sizeof(uint64_t));
    w->done = otf_calloc(count ? count : 1, 1);
  }
  if(!hdr || !order || !md || !w || !w->path || !w->tmp || !w->off || !w->len || !w->done) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to write %s", path);
    goto done;
  }
  for(size_t k = 0; k < count; k++)
    order[k] = &tensors[k];
  qsort(order, count, sizeof(*order), cmp_out_ptr);
  if(json_object_set_new(md, "format", json_string("pt")) != 0)
    goto nomem;
  for(size_t k = 0; k < nmeta; k++)
    if(json_object_set_new(md, meta[2 * k], json_string(meta[2 * k + 1])) != 0)
      goto nomem;
  if(json_object_set(hdr, "__metadata__", md) != 0)
    goto nomem;
  uint64_t pos = 0;
  for(size_t k = 0; k < count; k++) {
    const otf_st_out *t = order[k];
    if(k && !strcmp(order[k - 1]->name, t->name)) {
      rc = OTF_FAIL(err, OTF_E_INVAL, t->name, "duplicate tensor name '%s'", t->name);
      goto done;
    }
    if((unsigned)t->dtype >= OTF_DT_COUNT || t->rank < 0 || t->rank > OTF_MAX_TENSOR_RANK ||
       !strcmp(t->name, "__metadata__")) {
      rc = OTF_FAIL(err, OTF_E_INVAL, t->name, "tensor '%s': bad dtype, rank or name",
                    t->name);
      goto done;
    }
    json_t *shape = json_array(), *e = json_object();
    uint64_t numel = 1;
    for(int r = 0; r < t->rank; r++) {
      numel *= t->shape[r];
      json_array_append_new(shape, json_integer((json_int_t)t->shape[r]));
    }
    uint64_t nb = numel * otf_dtype_size(t->dtype);
    json_t *off = json_pack("[II]", (json_int_t)pos, (json_int_t)(pos + nb));
    json_object_set_new(e, "dtype", json_string(otf_dtype_name(t->dtype)));
    json_object_set_new(e, "shape", shape);
    json_object_set_new(e, "data_offsets", off);
    if(!shape || !off || json_object_set_new(hdr, t->name, e) != 0)
      goto nomem;
    size_t idx = (size_t)(t - tensors);
    w->off[idx] = pos;
    w->len[idx] = nb;
    pos += nb;
  }
  text = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
  if(!text)
    goto nomem;
  size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
  snprintf(w->tmp, strlen(path) + 32, "%s.tmp.%ld", path, (long)getpid());
  w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if(w->fd < 0) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", w->tmp, strerror(errno));
    goto done;
  }
  w->data_start = 8 + (uint64_t)padded;
  uint8_t lenb[8];
  for(int k = 0; k < 8; k++)
    lenb[k] = (uint8_t)((uint64_t)padded >> (8 * k));
  static const char spaces[8] = "        ";
  rc = pwrite_all(w->fd, lenb, 8, 0, w->tmp, err);
  if(rc == OTF_OK)
    rc = pwrite_all(w->fd, text, tl, 8, w->tmp, err);
  if(rc == OTF_OK)
    rc = pwrite_all(w->fd, spaces, padded - tl, 8 + tl, w->tmp, err);
  /* The file has its final size from the start: tensors land in place. */
  if(rc == OTF_OK && ftruncate(w->fd, (off_t)(w->data_start + pos)) != 0)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", w->tmp, strerror(errno));
  goto done;
nomem:
  rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to write %s", path);
done:
  free(text);
  otf_free(order);
  json_decref(md);
  json_decref(hdr);
  if(rc == OTF_OK)
    *out = w;
  else
    otf_st_writer_free(w);
  return rc;
}

otf_status otf_st_writer_put(otf_st_writer *w, size_t index, const void *data, otf_error *err) {
  if(!w || index >= w->count || (!data && w->len[index]))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "no tensor %zu to write", index);
  if(w->done[index])
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "tensor %zu of %s written twice", index, w->path);
  otf_status rc = pwrite_all(w->fd, data, (size_t)w->len[index], w->data_start + w->off[index],
                             w->tmp, err);
  if(rc == OTF_OK) {
    w->done[index] = 1;
    w->ndone++;
  }
  return rc;
}

otf_status otf_st_writer_finish(otf_st_writer *w, otf_error *err) {
  if(!w)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "no writer");
  if(w->ndone != w->count)
    return OTF_FAIL(err, OTF_E_INTERNAL, NULL, "%s: %zu of %zu tensors written", w->path,
                    w->ndone, w->count);
  if(fsync(w->fd) != 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: flush failed: %s", w->tmp, strerror(errno));
  int fd = w->fd;
  w->fd = -1;
  if(close(fd) != 0) {
    unlink(w->tmp);
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: close failed: %s", w->tmp, strerror(errno));
  }
  if(rename(w->tmp, w->path) != 0) {
    unlink(w->tmp);
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: rename failed: %s", w->path, strerror(errno));
  }
  return OTF_OK;
}

otf_status otf_st_write(const char *path, const otf_st_out *tensors, size_t count,
                        const char *const *meta, size_t nmeta, otf_error *err) {
  otf_st_writer *w = NULL;
  otf_status rc = otf_st_writer_open(&w, path, tensors, count, meta, nmeta, err);
  for(size_t k = 0; k < count && rc == OTF_OK; k++)
    rc = otf_st_writer_put(w, k, tensors[k].data, err);
  if(rc == OTF_OK)
    rc = otf_st_writer_finish(w, err);
  otf_st_writer_free(w);
  return rc;
}
