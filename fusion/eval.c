/* Evaluation: validates a labelled data file against the model, then runs
 * the forward pass batch by batch and scores argmax accuracy and
 * cross-entropy (log-sum-exp in double). The data file is mapped; inputs
 * are copied one batch at a time into aligned buffers (the mapping may be
 * unaligned, and half-precision pixels are converted). */
#include "fusion/eval.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "fusion/forward.h"
#include "fusion/safetensors.h"

#define IGNORE_INDEX (-100) /* PyTorch cross_entropy's default ignore_index */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

/* An I64 tensor of rank `rank`; NULL with err set when absent (unless
 * optional) or of the wrong dtype/rank. */
static otf_status get_i64(const otf_st_tensor **out, const otf_st_file *f, const char *name,
                          int rank, int optional, otf_error *err) {
  const otf_st_tensor *t = otf_st_find(f, name);
  *out = t;
  if(!t)
    return optional ? OTF_OK
                    : OTF_FAIL(err, OTF_E_INVAL, name, "data file has no tensor '%s'", name);
  if(t->dtype != OTF_DT_I64)
    return OTF_FAIL(err, OTF_E_INVAL, name, "'%s' has dtype %s; I64 is needed", name,
                    otf_dtype_name(t->dtype));
  if(rank && t->rank != rank)
    return OTF_FAIL(err, OTF_E_INVAL, name, "'%s' has rank %d, expected %d", name, t->rank,
                    rank);
  return OTF_OK;
}

/* Scores one row of logits [classes] against label y; returns the loss
 * and sets *hit when the first maximum is y (torch.argmax's choice). */
static double score_row(const float *lg, size_t classes, int64_t y, int *hit) {
  size_t am = 0;
  float mx = lg[0];
  for(size_t c = 1; c < classes; c++)
    if(lg[c] > mx) {
      mx = lg[c];
      am = c;
    }
  double s = 0.0;
  for(size_t c = 0; c < classes; c++)
    s += exp((double)lg[c] - (double)mx);
  *hit = (int64_t)am == y;
  return (double)mx + log(s) - (double)lg[y];
}

typedef struct data {
  const otf_st_tensor *px, *ids, *mask, *types, *labels;
  size_t N, T;
  int mlm;
} data;

static otf_status check_data(data *d, const otf_st_file *f, const otf_weights *w,
                             const otf_model_config *cfg, otf_error *err) {
  char sb[96];
  otf_status rc;
  memset(d, 0, sizeof(*d));
  int has_cls = w->g[OTF_SLOT_CLS_W] != NULL, has_mlm = w->g[OTF_SLOT_MLM_DECODER_W] != NULL;
  if(!has_cls && !has_mlm)
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "model %s has no classification or masked-LM head to evaluate",
                    cfg->architecture);
  if(cfg->family == OTF_FAMILY_VIT) {
    d->px = otf_st_find(f, "pixel_values");
    if(!d->px)
      return OTF_FAIL(err, OTF_E_INVAL, "pixel_values",
                      "data file has no tensor 'pixel_values'%s; a ViT needs images",
                      otf_st_find(f, "input_ids") ? " (it holds text: input_ids)" : "");
    if(d->px->dtype != OTF_DT_F32 && d->px->dtype != OTF_DT_F16 &&
       d->px->dtype != OTF_DT_BF16)
      return OTF_FAIL(err, OTF_E_INVAL, "pixel_values",
                      "'pixel_values' has dtype %s; F32, F16 or BF16 is needed",
                      otf_dtype_name(d->px->dtype));
    uint64_t C = (uint64_t)cfg->num_channels, S = (uint64_t)cfg->image_size;
    if(d->px->rank != 4 || d->px->shape[1] != C || d->px->shape[2] != S || d->px->shape[3] != S)
      return OTF_FAIL(err, OTF_E_INVAL, "pixel_values",
                      "'pixel_values' has shape %s; the model needs [N, %llu, %llu, %llu]",
                      shape_str(sb, sizeof(sb), d->px), (unsigned long long)C,
                      (unsigned long long)S, (unsigned long long)S);
    d->N = (size_t)d->px->shape[0];
    d->T = 1;
  } else {
    rc = get_i64(&d->ids, f, "input_ids", 2, 1, err);
    if(rc != OTF_OK)
      return rc;
    if(!d->ids)
      return OTF_FAIL(err, OTF_E_INVAL, "input_ids",
                      "data file has no tensor 'input_ids'%s; a BERT model needs token ids",
                      otf_st_find(f, "pixel_values") ? " (it holds images: pixel_values)" : "");
    d->N = (size_t)d->ids->shape[0];
    d->T = (size_t)d->ids->shape[1];
    if(d->T == 0 || d->T > (size_t)cfg->max_position_embeddings)
      return OTF_FAIL(err, OTF_E_INVAL, "input_ids",
                      "sequences of %zu tokens; the model takes 1 to %d", d->T,
                      cfg->max_position_embeddings);
    if((rc = get_i64(&d->mask, f, "attention_mask", 2, 1, err)) != OTF_OK ||
       (rc = get_i64(&d->types, f, "token_type_ids", 2, 1, err)) != OTF_OK)
      return rc;
    const otf_st_tensor *opt[2] = {d->mask, d->types};
    for(int i = 0; i < 2; i++)
      if(opt[i] && (opt[i]->shape[0] != d->N || opt[i]->shape[1] != d->T))
        return OTF_FAIL(err, OTF_E_INVAL, opt[i]->name, "'%s' has shape %s; input_ids has %s",
                        opt[i]->name, shape_str(sb, sizeof(sb), opt[i]),
                        shape_str(sb + 48, sizeof(sb) - 48, d->ids));
    for(uint64_t k = 0; k < (uint64_t)d->N * d->T; k++) {
      int64_t id = i64_at(d->ids, k);
      if(id < 0 || id >= cfg->vocab_size)
        return OTF_FAIL(err, OTF_E_INVAL, "input_ids",
                        "input_ids[%llu,%llu] = %lld is outside the vocabulary [0, %d)",
                        (unsigned long long)(k / d->T), (unsigned long long)(k % d->T),
                        (long long)id, cfg->vocab_size);
      int64_t tt = d->types ? i64_at(d->types, k) : 0;
      if(tt < 0 || tt >= cfg->type_vocab_size)
        return OTF_FAIL(err, OTF_E_INVAL, "token_type_ids",
                        "token_type_ids[%llu,%llu] = %lld is outside [0, %d)",
                        (unsigned long long)(k / d->T), (unsigned long long)(k % d->T),
                        (long long)tt, cfg->type_vocab_size);
      int64_t mk = d->mask ? i64_at(d->mask, k) : 1;
      if(mk != 0 && mk != 1)
        return OTF_FAIL(err, OTF_E_INVAL, "attention_mask",
                        "attention_mask[%llu,%llu] = %lld; only 0 and 1 are allowed",
                        (unsigned long long)(k / d->T), (unsigned long long)(k % d->T),
                        (long long)mk);
    }
  }
  if(d->N == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "data file holds no samples");
  rc = get_i64(&d->labels, f, "labels", 0, 0, err);
  if(rc != OTF_OK)
    return rc;
  const otf_st_tensor *lb = d->labels;
  d->mlm = lb->rank == 2;
  if(lb->rank < 1 || lb->rank > 2 || lb->shape[0] != d->N ||
     (d->mlm && (cfg->family == OTF_FAMILY_VIT || lb->shape[1] != d->T)))
    return OTF_FAIL(err, OTF_E_INVAL, "labels",
                    "'labels' has shape %s; expected [%zu] (classification)%s", shape_str(sb, sizeof(sb), lb),
                    d->N, cfg->family == OTF_FAMILY_VIT ? "" : " or [N, T] (masked LM)");
  if(d->mlm && !has_mlm)
    return OTF_FAIL(err, OTF_E_INVAL, "labels",
                    "per-token labels (masked LM) but model %s is a sequence classifier",
                    cfg->architecture);
  if(!d->mlm && !has_cls)
    return OTF_FAIL(err, OTF_E_INVAL, "labels",
                    "per-sample labels (classification) but model %s has a masked-LM head",
                    cfg->architecture);
  int64_t hi = d->mlm ? cfg->vocab_size : cfg->num_labels;
  for(uint64_t k = 0; k < lb->numel; k++) {
    int64_t y = i64_at(lb, k);
    if((y < 0 || y >= hi) && !(d->mlm && y == IGNORE_INDEX))
      return OTF_FAIL(err, OTF_E_INVAL, "labels", "labels[%llu] = %lld is outside [0, %lld)%s",
                      (unsigned long long)k, (long long)y, (long long)hi,
                      d->mlm ? " and not -100" : "");
  }
  return OTF_OK;
}

static otf_status run_eval(otf_eval_result *res, const otf_weights *w,
                           const otf_model_config *cfg, const otf_arch *arch,
                           const otf_st_file *f, size_t batch, otf_error *err) {
  data d;
  otf_status rc = check_data(&d, f, w, cfg, err);
  if(rc != OTF_OK)
    return rc;
  size_t B = batch < d.N ? batch : d.N;
  otf_forward *fw = NULL;
  float *px = NULL, *logits = NULL;
  int64_t *ids = NULL, *mask = NULL, *types = NULL;
  rc = otf_forward_create(&fw, w, cfg, arch, B, d.T, err);
  if(rc != OTF_OK)
    return rc;
  size_t per_px = 0;
  if(d.px)
    per_px = (size_t)(d.px->numel / d.N);
  otf_batch probe = {.n = B, .seq = d.T};
  size_t nlog = otf_forward_logits_len(fw, &probe);
  logits = otf_malloc_array(nlog, sizeof(float));
  if(d.px)
    px = otf_malloc_array(B * per_px, sizeof(float));
  else {
    ids = otf_malloc_array(B * d.T, sizeof(int64_t));
    mask = otf_malloc_array(B * d.T, sizeof(int64_t));
    types = otf_malloc_array(B * d.T, sizeof(int64_t));
  }
  if(!logits || (d.px ? !px : (!ids || !mask || !types))) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for evaluation batches of %zu", B);
    goto done;
  }
  size_t classes = d.mlm ? (size_t)cfg->vocab_size : (size_t)cfg->num_labels;
  double loss = 0.0, t0 = now_seconds();
  uint64_t hits = 0, scored = 0;
  for(size_t s0 = 0; s0 < d.N; s0 += B) {
    size_t bn = d.N - s0 < B ? d.N - s0 : B;
    otf_batch b = {.n = bn, .seq = d.T};
    if(d.px) {
      otf_st_tensor slice = *d.px;
      size_t esz = otf_dtype_size(slice.dtype);
      slice.data = (const char *)d.px->data + s0 * per_px * esz;
      slice.shape[0] = bn;
      slice.numel = (uint64_t)bn * per_px;
      slice.nbytes = slice.numel * esz;
      rc = otf_st_read_f32(px, &slice, err);
      if(rc != OTF_OK)
        goto done;
      b.pixel_values = px;
    } else {
      size_t cnt = bn * d.T, off = s0 * d.T * sizeof(int64_t);
      memcpy(ids, (const char *)d.ids->data + off, cnt * sizeof(int64_t));
      if(d.mask)
        memcpy(mask, (const char *)d.mask->data + off, cnt * sizeof(int64_t));
      if(d.types)
        memcpy(types, (const char *)d.types->data + off, cnt * sizeof(int64_t));
      b.input_ids = ids;
      b.attention_mask = d.mask ? mask : NULL;
      b.token_type_ids = d.types ? types : NULL;
    }
    rc = otf_forward_run(fw, &b, logits, 0, NULL, NULL, err);
    if(rc != OTF_OK)
      goto done;
    size_t rows = d.mlm ? bn * d.T : bn;
    for(size_t r = 0; r < rows; r++) {
      int64_t y = i64_at(d.labels, (uint64_t)s0 * (d.mlm ? d.T : 1) + r);
      if(y == IGNORE_INDEX && d.mlm)
        continue;
      int hit;
      loss += score_row(logits + r * classes, classes, y, &hit);
      hits += (uint64_t)hit;
      scored++;
    }
  }
  memset(res, 0, sizeof(*res));
  res->seconds = now_seconds() - t0;
  res->n = d.N;
  res->mlm = d.mlm;
  res->tokens = d.mlm ? scored : 0;
  res->accuracy = scored ? (double)hits / (double)scored : 0.0;
  res->loss = scored ? loss / (double)scored : 0.0;
  if(!scored)
    rc = OTF_FAIL(err, OTF_E_INVAL, "labels", "no labels to score (all are -100)");
done:
  otf_free(px);
  otf_free(ids);
  otf_free(mask);
  otf_free(types);
  otf_free(logits);
  otf_forward_destroy(fw);
  return rc;
}

otf_status otf_eval_weights(otf_eval_result *res, const otf_weights *w,
                            const otf_model_config *cfg, const otf_arch *arch,
                            const char *data_path, size_t batch, otf_error *err) {
  if(!res || !w || !cfg || !data_path)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "result, weights, config and data path are required");
  if(batch == 0)
    batch = OTF_EVAL_DEFAULT_BATCH;
  if(batch > OTF_EVAL_MAX_BATCH)
    return OTF_FAIL(err, OTF_E_INVAL, "batch", "batch %zu exceeds %d", batch,
                    OTF_EVAL_MAX_BATCH);
  otf_st_file *f = NULL;
  otf_status rc = otf_st_open(&f, data_path, err);
  if(rc != OTF_OK)
    return rc;
  rc = run_eval(res, w, cfg, arch, f, batch, err);
  otf_st_close(f);
  return rc;
}

otf_status otf_eval(otf_eval_result *res, const otf_model *m, const char *data_path,
                    size_t batch, otf_error *err) {
  if(!m)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "a model is required");
  otf_weights w;
  otf_status rc = otf_weights_load(&w, m, err);
  if(rc != OTF_OK)
    return rc;
  rc = otf_eval_weights(res, &w, otf_model_cfg(m), otf_model_arch(m), data_path, batch, err);
  otf_weights_free(&w);
  return rc;
}
