/* Evaluation: validates a labelled data file against the model
 * (fusion/dataset.h), then runs the forward pass batch by batch and scores
 * argmax accuracy and cross-entropy (log-sum-exp in double). */
#include "fusion/eval.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "fusion/dataset.h"
#include "fusion/forward.h"
#include "fusion/safetensors.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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

static otf_status run_eval(otf_eval_result *res, const otf_weights *w,
                           const otf_model_config *cfg, const otf_arch *arch,
                           const otf_st_file *f, size_t batch, otf_error *err) {
  unsigned heads = (w->g[OTF_SLOT_CLS_W] ? OTF_DATASET_LABELS_CLS : 0u) |
                   (w->g[OTF_SLOT_MLM_DECODER_W] ? OTF_DATASET_LABELS_MLM : 0u);
  if(!heads)
    return OTF_FAIL(err, OTF_E_INVAL, NULL,
                    "model %s has no classification or masked-LM head to evaluate",
                    cfg->architecture);
  otf_dataset_opts o = {.cfgs = &cfg, .ncfg = 1, .labels = heads};
  otf_dataset *ds = NULL;
  otf_forward *fw = NULL;
  float *logits = NULL;
  otf_status rc = otf_dataset_open(&ds, f, &o, err);
  if(rc != OTF_OK)
    return rc;
  size_t N = otf_dataset_count(ds), T = otf_dataset_seq(ds), B = batch < N ? batch : N;
  int mlm = otf_dataset_mlm(ds);
  if((rc = otf_forward_create(&fw, w, cfg, arch, B, T ? T : 1, err)) != OTF_OK ||
     (rc = otf_dataset_reserve(ds, B, err)) != OTF_OK)
    goto done;
  otf_batch probe = {.n = B, .seq = T};
  logits = otf_malloc_array(otf_forward_logits_len(fw, &probe), sizeof(float));
  if(!logits) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for evaluation batches of %zu", B);
    goto done;
  }
  size_t classes = mlm ? (size_t)cfg->vocab_size : (size_t)cfg->num_labels;
  double loss = 0.0, t0 = now_seconds();
  uint64_t hits = 0, scored = 0;
  for(size_t s0 = 0; s0 < N; s0 += B) {
    size_t bn = N - s0 < B ? N - s0 : B;
    otf_batch b;
    if((rc = otf_dataset_fill_range(ds, &b, s0, bn, err)) != OTF_OK ||
       (rc = otf_forward_run(fw, &b, logits, 0, NULL, NULL, err)) != OTF_OK)
      goto done;
    size_t rows = mlm ? bn * T : bn;
    for(size_t r = 0; r < rows; r++) {
      int64_t y = otf_dataset_label(ds, (uint64_t)s0 * (mlm ? T : 1) + r);
      if(y == OTF_DATASET_IGNORE_INDEX && mlm)
        continue;
      int hit;
      loss += score_row(logits + r * classes, classes, y, &hit);
      hits += (uint64_t)hit;
      scored++;
    }
  }
  memset(res, 0, sizeof(*res));
  res->seconds = now_seconds() - t0;
  res->n = N;
  res->mlm = mlm;
  res->tokens = mlm ? scored : 0;
  res->accuracy = scored ? (double)hits / (double)scored : 0.0;
  res->loss = scored ? loss / (double)scored : 0.0;
  if(!scored)
    rc = OTF_FAIL(err, OTF_E_INVAL, "labels", "no labels to score (all are -100)");
done:
  otf_free(logits);
  otf_forward_destroy(fw);
  otf_dataset_destroy(ds);
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
