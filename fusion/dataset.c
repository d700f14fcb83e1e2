/* Model inputs stored as safetensors: every tensor and every id, mask and
 * label value is checked once at open against all the configs, so that
 * filling a batch is a plain copy (the mapping may be unaligned, so rows
 * are memcpy'd into aligned buffers; half-precision pixels are converted). */
#include "fusion/dataset.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

struct otf_dataset {
  const otf_st_tensor *px, *ids, *mask, *types, *labels;
  size_t N;      /* samples */
  size_t T;      /* text: tokens per sample; images: 0 */
  size_t per_px; /* images: floats per sample */
  int mlm;       /* labels are per token */
  /* Batch buffers (otf_dataset_reserve), carved from one block. */
  size_t cap;
  void *block;
  float *bpx;
  int64_t *bids, *bmask, *btypes;
};

/* Element k of an I64 tensor (the mapping may be unaligned). */
static int64_t i64_at(const otf_st_tensor *t, uint64_t k) {
  int64_t v;
  memcpy(&v, (const char *)t->data + k * sizeof(int64_t), sizeof(v));
  return v;
}

static const char *shape_str(char *buf, size_t cap, const otf_st_tensor *t) {
  size_t off = 0;
  off += (size_t)snprintf(buf, cap, "[");
  for(int i = 0; i < t->rank && off < cap; i++)
    off += (size_t)snprintf(buf + off, cap - off, "%s%llu", i ? ", " : "",
                            (unsigned long long)t->shape[i]);
  if(off < cap)
    snprintf(buf + off, cap - off, "]");
  return buf;
}

/* How messages name config i: "model" alone, else its given name. */
static const char *who(const otf_dataset_opts *o, size_t i) {
  return o->names ? o->names[i] : "model";
}

/* "" for one unnamed model; "<fmt with its name>" when names are given
 * (for "outside the parent's vocabulary"). */
static const char *whose(char *buf, size_t cap, const char *fmt, const otf_dataset_opts *o,
                         size_t i) {
  buf[0] = '\0';
  if(o->names)
    snprintf(buf, cap, fmt, o->names[i]);
  return buf;
}

/* The config whose int field (at byte offset `field`) is the smallest, the
 * first on ties: the one that refuses first. */
static size_t most_restrictive(const otf_dataset_opts *o, size_t field) {
  size_t best = 0;
  for(size_t i = 1; i < o->ncfg; i++)
    if(*(const int *)((const char *)o->cfgs[i] + field) <
       *(const int *)((const char *)o->cfgs[best] + field))
      best = i;
  return best;
}
#define RESTRICTIVE(o, member) most_restrictive((o), offsetof(otf_model_config, member))

/* An I64 tensor of rank `rank`; NULL with err set when absent (unless
 * optional) or of the wrong dtype/rank. */
static otf_status get_i64(const otf_st_tensor **out, const otf_st_file *f, const char *what,
                          const char *name, int rank, int optional, otf_error *err) {
  const otf_st_tensor *t = otf_st_find(f, name);
  *out = t;
  if(!t)
    return optional ? OTF_OK
                    : OTF_FAIL(err, OTF_E_INVAL, name, "%s has no tensor '%s'", what, name);
  if(t->dtype != OTF_DT_I64)
    return OTF_FAIL(err, OTF_E_INVAL, name, "'%s' has dtype %s; I64 is needed", name,
                    otf_dtype_name(t->dtype));
  if(rank && t->rank != rank)
    return OTF_FAIL(err, OTF_E_INVAL, name, "'%s' has rank %d, expected %d", name, t->rank,
                    rank);
  return OTF_OK;
}

static otf_status check_images(otf_dataset *d, const otf_st_file *f, const otf_dataset_opts *o,
                               const char *what, otf_error *err) {
  char sb[64];
  d->px = otf_st_find(f, "pixel_values");
  if(!d->px)
    return OTF_FAIL(err, OTF_E_INVAL, "pixel_values", "%s has no tensor 'pixel_values'%s; %s images",
                    what, otf_st_find(f, "input_ids") ? " (it holds text: input_ids)" : "",
                    o->ncfg > 1 ? "ViT models need" : "a ViT needs");
  if(d->px->dtype != OTF_DT_F32 && d->px->dtype != OTF_DT_F16 && d->px->dtype != OTF_DT_BF16)
    return OTF_FAIL(err, OTF_E_INVAL, "pixel_values",
                    "'pixel_values' has dtype %s; F32, F16 or BF16 is needed",
                    otf_dtype_name(d->px->dtype));
  for(size_t i = 0; i < o->ncfg; i++) {
    uint64_t C = (uint64_t)o->cfgs[i]->num_channels, S = (uint64_t)o->cfgs[i]->image_size;
    if(d->px->rank != 4 || d->px->shape[1] != C || d->px->shape[2] != S || d->px->shape[3] != S)
      return OTF_FAIL(err, OTF_E_INVAL, "pixel_values",
                      "'pixel_values' has shape %s; the %s needs [N, %llu, %llu, %llu]",
                      shape_str(sb, sizeof(sb), d->px), who(o, i), (unsigned long long)C,
                      (unsigned long long)S, (unsigned long long)S);
  }
  d->N = (size_t)d->px->shape[0];
  d->per_px = d->N ? (size_t)(d->px->numel / d->N) : 0;
  return OTF_OK;
}

static otf_status check_text(otf_dataset *d, const otf_st_file *f, const otf_dataset_opts *o,
                             const char *what, otf_error *err) {
  char sb[96], wb[64];
  otf_status rc = get_i64(&d->ids, f, what, "input_ids", 2, 1, err);
  if(rc != OTF_OK)
    return rc;
  if(!d->ids)
    return OTF_FAIL(err, OTF_E_INVAL, "input_ids", "%s has no tensor 'input_ids'%s; %s token ids",
                    what, otf_st_find(f, "pixel_values") ? " (it holds images: pixel_values)" : "",
                    o->ncfg > 1 ? "BERT models need" : "a BERT model needs");
  d->N = (size_t)d->ids->shape[0];
  d->T = (size_t)d->ids->shape[1];
  size_t ip = RESTRICTIVE(o, max_position_embeddings);
  int maxpos = o->cfgs[ip]->max_position_embeddings;
  if(d->T == 0 || d->T > (size_t)maxpos)
    return OTF_FAIL(err, OTF_E_INVAL, "input_ids", "sequences of %zu tokens; the %s takes 1 to %d",
                    d->T, who(o, ip), maxpos);
  if((rc = get_i64(&d->mask, f, what, "attention_mask", 2, 1, err)) != OTF_OK ||
     (rc = get_i64(&d->types, f, what, "token_type_ids", 2, 1, err)) != OTF_OK)
    return rc;
  const otf_st_tensor *opt[2] = {d->mask, d->types};
  for(int i = 0; i < 2; i++)
    if(opt[i] && (opt[i]->shape[0] != d->N || opt[i]->shape[1] != d->T))
      return OTF_FAIL(err, OTF_E_INVAL, opt[i]->name, "'%s' has shape %s; input_ids has %s",
                      opt[i]->name, shape_str(sb, sizeof(sb), opt[i]),
                      shape_str(sb + 48, sizeof(sb) - 48, d->ids));
  size_t iv = RESTRICTIVE(o, vocab_size), it = RESTRICTIVE(o, type_vocab_size);
  int vocab = o->cfgs[iv]->vocab_size, tvocab = o->cfgs[it]->type_vocab_size;
  for(uint64_t k = 0; k < (uint64_t)d->N * d->T; k++) {
    unsigned long long s = k / d->T, t = k % d->T;
    int64_t id = i64_at(d->ids, k);
    if(id < 0 || id >= vocab)
      return OTF_FAIL(err, OTF_E_INVAL, "input_ids",
                      "input_ids[%llu,%llu] = %lld is outside the %svocabulary [0, %d)", s, t,
                      (long long)id, whose(wb, sizeof(wb), "%s's ", o, iv), vocab);
    int64_t tt = d->types ? i64_at(d->types, k) : 0;
    if(tt < 0 || tt >= tvocab)
      return OTF_FAIL(err, OTF_E_INVAL, "token_type_ids",
                      "token_type_ids[%llu,%llu] = %lld is outside %s[0, %d)", s, t,
                      (long long)tt, whose(wb, sizeof(wb), "the %s's ", o, it), tvocab);
    int64_t mk = d->mask ? i64_at(d->mask, k) : 1;
    if(mk != 0 && mk != 1)
      return OTF_FAIL(err, OTF_E_INVAL, "attention_mask",
                      "attention_mask[%llu,%llu] = %lld; only 0 and 1 are allowed", s, t,
                      (long long)mk);
  }
  return OTF_OK;
}

static otf_status check_labels(otf_dataset *d, const otf_st_file *f, const otf_dataset_opts *o,
                               const char *what, otf_error *err) {
  char sb[64], wb[64];
  int vit = o->cfgs[0]->family == OTF_FAMILY_VIT;
  otf_status rc = get_i64(&d->labels, f, what, "labels", 0, 0, err);
  if(rc != OTF_OK)
    return rc;
  const otf_st_tensor *lb = d->labels;
  d->mlm = lb->rank == 2;
  if(lb->rank < 1 || lb->rank > 2 || lb->shape[0] != d->N ||
     (d->mlm && (vit || lb->shape[1] != d->T)))
    return OTF_FAIL(err, OTF_E_INVAL, "labels",
                    "'labels' has shape %s; expected [%zu] (classification)%s",
                    shape_str(sb, sizeof(sb), lb), d->N, vit ? "" : " or [N, T] (masked LM)");
  if(d->mlm && !(o->labels & OTF_DATASET_LABELS_MLM))
    return OTF_FAIL(err, OTF_E_INVAL, "labels",
                    "per-token labels (masked LM) but model %s is a sequence classifier",
                    o->cfgs[0]->architecture);
  if(!d->mlm && !(o->labels & OTF_DATASET_LABELS_CLS))
    return OTF_FAIL(err, OTF_E_INVAL, "labels",
                    "per-sample labels (classification) but model %s has a masked-LM head",
                    o->cfgs[0]->architecture);
  size_t ih = d->mlm ? RESTRICTIVE(o, vocab_size) : RESTRICTIVE(o, num_labels);
  int64_t hi = d->mlm ? o->cfgs[ih]->vocab_size : o->cfgs[ih]->num_labels;
  for(uint64_t k = 0; k < lb->numel; k++) {
    int64_t y = i64_at(lb, k);
    if((y < 0 || y >= hi) && !(d->mlm && y == OTF_DATASET_IGNORE_INDEX))
      return OTF_FAIL(err, OTF_E_INVAL, "labels", "labels[%llu] = %lld is outside %s[0, %lld)%s",
                      (unsigned long long)k, (long long)y,
                      whose(wb, sizeof(wb), "the %s's ", o, ih), (long long)hi,
                      d->mlm ? " and not -100" : "");
  }
  return OTF_OK;
}

otf_status otf_dataset_open(otf_dataset **out, const otf_st_file *f, const otf_dataset_opts *o,
                            otf_error *err) {
  if(!out)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "an output pointer is required");
  *out = NULL;
  if(!f || !o || !o->cfgs || o->ncfg == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "a file and at least one model config are required");
  for(size_t i = 0; i < o->ncfg; i++)
    if(!o->cfgs[i] || (o->names && !o->names[i]) ||
       (o->cfgs[i]->family == OTF_FAMILY_VIT) != (o->cfgs[0]->family == OTF_FAMILY_VIT))
      return OTF_FAIL(err, OTF_E_INVAL, NULL,
                      "model config %zu is missing, unnamed or takes other inputs", i);
  otf_dataset *d = otf_calloc(1, sizeof(*d));
  if(!d)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a data set");
  const char *what = o->what ? o->what : "data file";
  otf_status rc = o->cfgs[0]->family == OTF_FAMILY_VIT ? check_images(d, f, o, what, err)
                                                       : check_text(d, f, o, what, err);
  if(rc != OTF_OK)
    goto fail;
  if(d->N == 0) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "%s holds no samples", what);
    goto fail;
  }
  if(o->labels) {
    rc = check_labels(d, f, o, what, err);
    if(rc != OTF_OK)
      goto fail;
  }
  *out = d;
  return OTF_OK;
fail:
  otf_dataset_destroy(d);
  return rc;
}

void otf_dataset_destroy(otf_dataset *ds) {
  if(!ds)
    return;
  otf_free(ds->block);
  otf_free(ds);
}

size_t otf_dataset_count(const otf_dataset *ds) { return ds ? ds->N : 0; }
size_t otf_dataset_seq(const otf_dataset *ds) { return ds ? ds->T : 0; }
int otf_dataset_mlm(const otf_dataset *ds) { return ds ? ds->mlm : 0; }

int64_t otf_dataset_label(const otf_dataset *ds, uint64_t k) {
  return i64_at(ds->labels, k);
}

/* Elements rounded up to a whole number of 64-byte lines. */
static size_t up64(size_t n, size_t esz) { return (n * esz + 63) & ~(size_t)63; }

otf_status otf_dataset_reserve(otf_dataset *ds, size_t max_batch, otf_error *err) {
  if(!ds || max_batch == 0)
    return OTF_FAIL(err, OTF_E_INVAL, "batch", "a data set and a batch of at least 1 are needed");
  size_t per = ds->px ? ds->per_px : ds->T, n;
  int arrays = ds->px ? 1 : 1 + (ds->mask != NULL) + (ds->types != NULL);
  if(__builtin_mul_overflow(max_batch, per, &n) || n > SIZE_MAX / 64)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, "batch", "batches of %zu samples are too large",
                    max_batch);
  size_t esz = ds->px ? sizeof(float) : sizeof(int64_t);
  char *block = otf_malloc_aligned((size_t)arrays * up64(n, esz));
  if(!block)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for batches of %zu samples", max_batch);
  otf_free(ds->block);
  ds->block = block;
  ds->cap = max_batch;
  ds->bpx = NULL;
  ds->bids = ds->bmask = ds->btypes = NULL;
  if(ds->px) {
    ds->bpx = (float *)(void *)block;
    return OTF_OK;
  }
  int64_t **dst[3] = {&ds->bids, ds->mask ? &ds->bmask : NULL, ds->types ? &ds->btypes : NULL};
  for(int i = 0; i < 3; i++)
    if(dst[i]) {
      *dst[i] = (int64_t *)(void *)block;
      block += up64(n, esz);
    }
  return OTF_OK;
}

/* Copies run [first, first + len) of samples to row `row` of the batch. */
static otf_status copy_run(otf_dataset *ds, size_t row, size_t first, size_t len,
                           otf_error *err) {
  if(ds->px) {
    size_t esz = otf_dtype_size(ds->px->dtype);
    otf_st_tensor view = *ds->px;
    view.data = (const char *)ds->px->data + first * ds->per_px * esz;
    view.shape[0] = len;
    view.numel = (uint64_t)len * ds->per_px;
    view.nbytes = view.numel * esz;
    return otf_st_read_f32(ds->bpx + row * ds->per_px, &view, err);
  }
  const otf_st_tensor *src[3] = {ds->ids, ds->mask, ds->types};
  int64_t *dst[3] = {ds->bids, ds->bmask, ds->btypes};
  size_t rowb = ds->T * sizeof(int64_t);
  for(int i = 0; i < 3; i++)
    if(src[i])
      memcpy(dst[i] + row * ds->T, (const char *)src[i]->data + first * rowb, len * rowb);
  return OTF_OK;
}

/* idx NULL: the samples first .. first + n - 1 (one run). */
static otf_status fill(otf_dataset *ds, otf_batch *b, const size_t *idx, size_t first, size_t n,
                       otf_error *err) {
  if(!ds || !b)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "a data set and a batch are required");
  if(!ds->block)
    return OTF_FAIL(err, OTF_E_INVAL, "batch", "no batch buffers reserved");
  if(n == 0 || n > ds->cap || (!idx && (first > ds->N || n > ds->N - first)))
    return OTF_FAIL(err, OTF_E_INVAL, "batch", "samples %zu..%zu of %zu, batch %zu: out of range",
                    first, first + n, ds->N, ds->cap);
  otf_status rc = OTF_OK;
  if(!idx)
    rc = copy_run(ds, 0, first, n, err);
  for(size_t i = 0; idx && i < n && rc == OTF_OK; i++) {
    if(idx[i] >= ds->N)
      return OTF_FAIL(err, OTF_E_INVAL, "batch", "sample %zu of %zu is out of range", idx[i],
                      ds->N);
    rc = copy_run(ds, i, idx[i], 1, err);
  }
  if(rc != OTF_OK)
    return rc;
  memset(b, 0, sizeof(*b));
  b->n = n;
  b->seq = ds->T;
  b->pixel_values = ds->bpx;
  b->input_ids = ds->bids;
  b->attention_mask = ds->bmask;
  b->token_type_ids = ds->btypes;
  return OTF_OK;
}

otf_status otf_dataset_fill(otf_dataset *ds, otf_batch *b, const size_t *idx, size_t n,
                            otf_error *err) {
  if(!idx)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "sample indices are required");
  return fill(ds, b, idx, 0, n, err);
}

otf_status otf_dataset_fill_range(otf_dataset *ds, otf_batch *b, size_t first, size_t n,
                                  otf_error *err) {
  return fill(ds, b, NULL, first, n, err);
}
