/* The finetuning job: see train_job.h. */
#include "fusion/train_job.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "fusion/dataset.h"
#include "fusion/eval.h"
#include "fusion/safetensors.h"
#include "fusion/train.h"
#include "fusion/train_adamw.h"

void otf_finetune_opts_default(otf_finetune_opts *o) {
  memset(o, 0, sizeof(*o));
  o->epochs = 1.0;
  o->lr = 1e-3;
  o->batch = 64;
  o->warmup = 0.05;
  o->weight_decay = 0.01;
  o->max_grad_norm = 1.0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t rng_below(uint64_t *s, uint64_t n) { return rng_next(s) % n; }

static otf_status check_opts(const otf_finetune_opts *o, otf_error *err) {
  if(!(o->epochs >= 0.0) || !isfinite(o->epochs) || o->epochs > 1e6)
    return OTF_FAIL(err, OTF_E_INVAL, "epochs", "epochs must be in [0, 1e6], got %g", o->epochs);
  if(o->epochs == 0.0 && (o->steps == 0 || o->steps > OTF_FINETUNE_MAX_STEPS))
    return OTF_FAIL(err, OTF_E_INVAL, "steps", "a budget is required: epochs > 0 or steps in "
                    "[1, %llu]", (unsigned long long)OTF_FINETUNE_MAX_STEPS);
  if(!(o->lr > 0.0) || !isfinite(o->lr) || o->lr > 10.0)
    return OTF_FAIL(err, OTF_E_INVAL, "lr", "lr must be in (0, 10], got %g", o->lr);
  if(o->batch == 0 || o->batch > OTF_FINETUNE_MAX_BATCH)
    return OTF_FAIL(err, OTF_E_INVAL, "batch", "batch must be in [1, %d], got %zu",
                    OTF_FINETUNE_MAX_BATCH, o->batch);
  if(!(o->warmup >= 0.0 && o->warmup <= 1.0))
    return OTF_FAIL(err, OTF_E_INVAL, "warmup", "warmup must be a fraction in [0, 1], got %g",
                    o->warmup);
  if(!(o->weight_decay >= 0.0) || !isfinite(o->weight_decay) || o->weight_decay > 10.0)
    return OTF_FAIL(err, OTF_E_INVAL, "weight_decay", "weight decay must be in [0, 10], got %g",
                    o->weight_decay);
  if(!(o->max_grad_norm >= 0.0) || !isfinite(o->max_grad_norm))
    return OTF_FAIL(err, OTF_E_INVAL, "max_grad_norm", "max_grad_norm must be >= 0, got %g",
                    o->max_grad_norm);
  if(o->augment_shift < 0 || o->augment_shift > OTF_FINETUNE_MAX_SHIFT)
    return OTF_FAIL(err, OTF_E_INVAL, "augment_shift", "augment shift must be in [0, %d], got %d",
                    OTF_FINETUNE_MAX_SHIFT, o->augment_shift);
  if(o->eval_batch > OTF_EVAL_MAX_BATCH)
    return OTF_FAIL(err, OTF_E_INVAL, "eval_batch", "eval batch must be at most %d",
                    OTF_EVAL_MAX_BATCH);
  return OTF_OK;
}

/* Shifts every image of b by (dy, dx) in [-s, s] drawn per sample, zero
 * fill, into out [n, C, H, W]; b then points at out. */
static void shift_images(float *out, otf_batch *b, size_t C, size_t img, int s,
                         uint64_t *rng) {
  const size_t plane = img * img;
  for(size_t k = 0; k < b->n; k++) {
    long dy = (long)rng_below(rng, (uint64_t)(2 * s + 1)) - s;
    long dx = (long)rng_below(rng, (uint64_t)(2 * s + 1)) - s;
    for(size_t c = 0; c < C; c++) {
      const float *src = b->pixel_values + (k * C + c) * plane;
      float *dst = out + (k * C + c) * plane;
      for(long y = 0; y < (long)img; y++)
        for(long x = 0; x < (long)img; x++) {
          long sy = y - dy, sx = x - dx; /* content moves by (dy, dx) */
          dst[y * (long)img + x] = sy >= 0 && sy < (long)img && sx >= 0 && sx < (long)img
                                       ? src[sy * (long)img + sx]
                                       : 0.0f;
        }
    }
  }
  b->pixel_values = out;
}

static void emit(const otf_finetune_ctl *ctl, json_t *j) {
  if(ctl && ctl->metrics && j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if(s) {
      ctl->metrics(ctl->ctx, s);
      free(s);
    }
  }
  json_decref(j);
}

typedef struct job {
  otf_model *m;
  otf_st_file *f;
  otf_dataset *ds;
  otf_train *t;
  otf_adamw *opt;
  otf_adamw_group *groups;
  size_t *perm, *idx;
  int64_t *labels;
  float *aug;
} job;

static void job_free(job *j) {
  otf_free(j->aug);
  otf_free(j->labels);
  otf_free(j->idx);
  otf_free(j->perm);
  otf_free(j->groups);
  otf_adamw_destroy(j->opt);
  otf_train_destroy(j->t);
  otf_dataset_destroy(j->ds);
  otf_st_close(j->f);
  otf_model_close(j->m);
}

static otf_status run_eval(otf_eval_result *r, const job *j, const char *eval_path,
                           size_t batch, otf_error *err) {
  return otf_eval_weights(r, otf_train_weights(j->t), otf_model_cfg(j->m), otf_model_arch(j->m),
                          eval_path, batch, err);
}

otf_status otf_finetune_dir(const char *model_dir, const char *train_path,
                            const char *eval_path, const otf_finetune_opts *o,
                            const otf_finetune_ctl *ctl, const char *out_dir,
                            const char *extra_provenance, char **summary, otf_error *err) {
  job j = {0};
  otf_status rc;
  json_t *prov = NULL;
  char *prov_text = NULL;
  if(summary)
    *summary = NULL;
  if(!model_dir || !train_path || !o || !out_dir)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "model, data, options and output are required");
  if((rc = check_opts(o, err)) != OTF_OK)
    return rc;
  if(extra_provenance) {
    json_error_t je;
    json_t *x = json_loads(extra_provenance, JSON_REJECT_DUPLICATES, &je);
    int ok = x && json_is_object(x);
    json_decref(x);
    if(!ok)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "extra provenance must be a JSON object");
  }
  const double t0 = now_s();
  if((rc = otf_model_open(&j.m, model_dir, 0, err)) != OTF_OK)
    goto done;
  const otf_model_config *cfg = otf_model_cfg(j.m);
  int mlm = !strcmp(otf_model_arch(j.m)->name, "BertForMaskedLM");
  if(!otf_train_arch_supported(otf_model_arch(j.m)->name)) {
    rc = OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL,
                  "%s has no training head (ViTForImageClassification, "
                  "BertForSequenceClassification and BertForMaskedLM can be trained)",
                  otf_model_arch(j.m)->name);
    goto done;
  }
  if((rc = otf_st_open(&j.f, train_path, err)) != OTF_OK)
    goto done;
  const char *mname = "model";
  otf_dataset_opts dso = {&cfg, &mname, 1, "training data",
                          mlm ? OTF_DATASET_LABELS_MLM : OTF_DATASET_LABELS_CLS};
  if((rc = otf_dataset_open(&j.ds, j.f, &dso, err)) != OTF_OK)
    goto done;
  const size_t N = otf_dataset_count(j.ds), T = otf_dataset_seq(j.ds);
  const size_t B = o->batch < N ? o->batch : N;
  const uint64_t spe = (N + B - 1) / B;
  uint64_t total = o->steps;
  if(o->epochs > 0.0) {
    double s = ceil(o->epochs * (double)spe - 1e-9);
    if(s > (double)OTF_FINETUNE_MAX_STEPS) {
      rc = OTF_FAIL(err, OTF_E_INVAL, "epochs", "%g epochs of %llu steps exceed the step limit",
                    o->epochs, (unsigned long long)spe);
      goto done;
    }
    total = s < 1.0 ? 1 : (uint64_t)s;
  }
  /* plan everything the loop needs */
  if((rc = otf_dataset_reserve(j.ds, B, err)) != OTF_OK ||
     (rc = otf_train_create(&j.t, j.m, B, T ? T : 1, err)) != OTF_OK)
    goto done;
  size_t np = otf_train_param_count(j.t), ng = 0;
  j.groups = otf_calloc(np ? np : 1, sizeof(*j.groups));
  j.perm = otf_malloc_array(N, sizeof(size_t));
  j.idx = otf_malloc_array(B, sizeof(size_t));
  j.labels = otf_malloc_array(B * (mlm ? T : 1), sizeof(int64_t));
  int images = cfg->family == OTF_FAMILY_VIT;
  size_t img = images ? (size_t)cfg->image_size : 0, C = images ? (size_t)cfg->num_channels : 0;
  if(images && o->augment_shift > 0)
    j.aug = otf_malloc_array(B * C * img * img, sizeof(float));
  if(!j.groups || !j.perm || !j.idx || !j.labels || (images && o->augment_shift > 0 && !j.aug)) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the training job");
    goto done;
  }
  for(size_t i = 0; i < np; i++) {
    const otf_train_param *p = otf_train_param_at(j.t, i);
    /* torch skips parameters without a gradient (no decay either): the
     * pooler of a masked LM is never used */
    if(mlm && (p->slot == OTF_SLOT_POOL_W || p->slot == OTF_SLOT_POOL_B))
      continue;
    j.groups[ng].offset = p->offset;
    j.groups[ng].numel = p->numel;
    j.groups[ng].decay = p->decay;
    ng++;
  }
  otf_adamw_opts ao;
  otf_adamw_opts_default(&ao);
  ao.lr = o->lr;
  ao.weight_decay = o->weight_decay;
  if((rc = otf_adamw_create(&j.opt, otf_train_numel(j.t), j.groups, ng, &ao, err)) != OTF_OK)
    goto done;
  const size_t eval_batch = o->eval_batch ? o->eval_batch : 64;
  double acc0 = NAN, accN = NAN, lossN = NAN, last_loss = NAN;
  if(eval_path) {
    otf_eval_result r;
    if((rc = run_eval(&r, &j, eval_path, eval_batch, err)) != OTF_OK)
      goto done;
    acc0 = accN = r.accuracy;
    lossN = r.loss;
    emit(ctl, json_pack("{s:s, s:i, s:f, s:f}", "event", "eval", "epoch", 0, "eval_accuracy",
                        r.accuracy, "eval_loss", r.loss));
  }
  uint64_t rng = o->seed ^ 0x6F74667573656674ull; /* "otfuseft" */
  float *params = otf_train_params(j.t), *grads = otf_train_grads(j.t);
  const size_t nel = otf_train_numel(j.t);
  double ep_loss = 0.0, train_s = 0.0;
  size_t ep_scored = 0, ep_correct = 0, pos = N; /* pos = N: reshuffle first */
  uint64_t epoch = 0, samples = 0;
  for(uint64_t step = 0; step < total; step++) {
    if(ctl && ctl->cancel && *ctl->cancel) {
      rc = OTF_FAIL(err, OTF_E_CANCELLED, NULL, "finetuning cancelled at step %llu of %llu",
                    (unsigned long long)step, (unsigned long long)total);
      goto done;
    }
    if(pos >= N) { /* a new epoch: seeded Fisher-Yates shuffle */
      for(size_t i = 0; i < N; i++)
        j.perm[i] = i;
      for(size_t i = N; i > 1; i--) {
        size_t k = (size_t)rng_below(&rng, i);
        size_t tmp = j.perm[i - 1];
        j.perm[i - 1] = j.perm[k];
        j.perm[k] = tmp;
      }
      pos = 0;
    }
    size_t n = N - pos < B ? N - pos : B;
    memcpy(j.idx, j.perm + pos, n * sizeof(size_t));
    pos += n;
    double ts = now_s();
    otf_batch b;
    if((rc = otf_dataset_fill(j.ds, &b, j.idx, n, err)) != OTF_OK)
      goto done;
    size_t per = mlm ? T : 1;
    for(size_t i = 0; i < n; i++)
      for(size_t k = 0; k < per; k++)
        j.labels[i * per + k] = otf_dataset_label(j.ds, (uint64_t)j.idx[i] * per + k);
    if(j.aug)
      shift_images(j.aug, &b, C, img, o->augment_shift, &rng);
    otf_train_stats st;
    if((rc = otf_train_step(j.t, &b, j.labels, 1, &st, err)) != OTF_OK)
      goto done;
    if(!isfinite(st.loss)) {
      rc = OTF_FAIL(err, OTF_E_NUMERIC, NULL, "the loss is not finite at step %llu (lr too "
                    "high?)", (unsigned long long)step);
      goto done;
    }
    double gnorm = otf_clip_grad_norm(grads, nel, o->max_grad_norm);
    double lr = otf_lr_schedule(step, total, o->lr, o->warmup);
    otf_adamw_step(j.opt, params, grads, lr);
    train_s += now_s() - ts;
    samples += n;
    ep_loss += st.loss * (double)st.scored;
    ep_scored += st.scored;
    ep_correct += st.correct;
    last_loss = st.loss;
    if(ctl && ctl->progress)
      ctl->progress(ctl->ctx, step + 1, total);
    if(o->log_every && (step + 1) % o->log_every == 0)
      emit(ctl, json_pack("{s:s, s:I, s:I, s:f, s:f, s:f}", "event", "step", "step",
                          (json_int_t)(step + 1), "steps", (json_int_t)total, "loss", st.loss,
                          "lr", lr, "grad_norm", gnorm));
    if(pos >= N || step + 1 == total) { /* end of an epoch (or of the budget) */
      epoch += pos >= N;
      json_t *e = json_pack("{s:s, s:f, s:I, s:I, s:f, s:f, s:f}", "event", "epoch", "epoch",
                            pos >= N ? (double)epoch : (double)epoch + (double)pos / (double)N,
                            "step", (json_int_t)(step + 1), "steps", (json_int_t)total, "loss",
                            ep_scored ? ep_loss / (double)ep_scored : 0.0, "accuracy",
                            ep_scored ? (double)ep_correct / (double)ep_scored : 0.0, "lr", lr);
      if(eval_path) {
        otf_eval_result r;
        if((rc = run_eval(&r, &j, eval_path, eval_batch, err)) != OTF_OK) {
          json_decref(e);
          goto done;
        }
        accN = r.accuracy;
        lossN = r.loss;
        json_object_set_new(e, "eval_accuracy", json_real(r.accuracy));
        json_object_set_new(e, "eval_loss", json_real(r.loss));
      }
      json_object_set_new(e, "seconds", json_real(now_s() - t0));
      emit(ctl, e);
      ep_loss = 0.0;
      ep_scored = ep_correct = 0;
    }
  }
  /* provenance and output */
  prov = json_pack("{s:s, s:{s:s, s:s?, s:f, s:I, s:I, s:f, s:I, s:f, s:f, s:f, s:I, s:i}}",
                   "producer", "otfuse finetune", "finetune", "data", train_path, "eval",
                   eval_path, "epochs", o->epochs, "steps", (json_int_t)total, "batch",
                   (json_int_t)B, "lr", o->lr, "seed", (json_int_t)o->seed, "warmup",
                   o->warmup, "weight_decay", o->weight_decay, "max_grad_norm",
                   o->max_grad_norm, "samples", (json_int_t)samples, "augment_shift",
                   o->augment_shift);
  if(prov && eval_path && !isnan(accN)) {
    json_t *ft = json_object_get(prov, "finetune");
    json_object_set_new(ft, "eval_accuracy_before", json_real(acc0));
    json_object_set_new(ft, "eval_accuracy", json_real(accN));
  }
  if(prov && extra_provenance) {
    json_t *x = json_loads(extra_provenance, 0, NULL);
    if(x)
      json_object_update(prov, x);
    json_decref(x);
  }
  prov_text = prov ? json_dumps(prov, JSON_COMPACT) : NULL;
  if(!prov_text) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the provenance");
    goto done;
  }
  if((rc = otf_train_save(j.t, j.m, out_dir, prov_text, err)) != OTF_OK)
    goto done;
  if(summary) {
    json_t *s = json_pack("{s:s, s:I, s:f, s:I, s:f, s:f, s:f}", "event", "done", "steps",
                          (json_int_t)total, "epochs", (double)samples / (double)N, "samples",
                          (json_int_t)samples, "loss", last_loss, "seconds", now_s() - t0,
                          "samples_per_s", train_s > 0 ? (double)samples / train_s : 0.0);
    if(s && eval_path) {
      json_object_set_new(s, "eval_accuracy_before", json_real(acc0));
      json_object_set_new(s, "eval_accuracy", json_real(accN));
      json_object_set_new(s, "eval_loss", json_real(lossN));
    }
    if(s)
      json_object_set_new(s, "output", json_string(out_dir));
    char *txt = s ? json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9))
                  : NULL;
    json_decref(s);
    if(txt) {
      size_t len = strlen(txt) + 1;
      *summary = otf_malloc(len);
      if(*summary)
        memcpy(*summary, txt, len);
      free(txt);
    }
  }
done:
  free(prov_text);
  json_decref(prov);
  job_free(&j);
  return rc;
}
