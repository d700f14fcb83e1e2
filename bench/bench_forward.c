/* Forward-pass throughput (samples/s) of the C inference on the committed
 * fixture models (first --batch samples of their eval data) and on a
 * BERT-base-shaped classifier with random weights (hidden 768, 12 layers,
 * 12 heads, FFN 3072, vocab 30522, sequences of --seq tokens), built in
 * memory. OpenBLAS threads: OPENBLAS_NUM_THREADS (printed).
 *
 *   bench_forward [--models DIR] [--eval DIR] [--batch 64] [--base-batch 8]
 *                 [--seq 128] [--min-time 1.0] [--no-base] [--json]
 *
 * --json prints one line per case {"case", "batch", "seq", "samples_per_s",
 * "threads"} for bench/forward_torch.py. This is a benchmark, not a test. */
#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "fusion/forward.h"
#include "fusion/model.h"
#include "fusion/safetensors.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_normal(uint64_t *s) {
  double u1 = ((double)(rng_next(s) >> 11) + 0.5) * 0x1.0p-53;
  double u2 = (double)(rng_next(s) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int json_out = 0;
static double min_time = 1.0;

/* Times f on b: one warm-up run, then runs until min_time has passed (at
 * least 3); returns samples/s over all timed runs (sustained throughput). */
static double time_runs(otf_forward *f, const otf_batch *b, float *logits) {
  otf_error e;
  if(otf_forward_run(f, b, logits, 0, NULL, NULL, &e) != OTF_OK) {
    fprintf(stderr, "bench_forward: %s\n", e.message);
    return -1.0;
  }
  int runs = 0;
  double t0 = now(), t;
  do {
    if(otf_forward_run(f, b, logits, 0, NULL, NULL, &e) != OTF_OK)
      return -1.0;
    runs++;
    t = now() - t0;
  } while(t < min_time || runs < 3);
  return (double)runs * (double)b->n / t;
}

static void report(const char *name, size_t batch, size_t seq, double sps) {
  if(json_out)
    printf("{\"case\":\"%s\",\"batch\":%zu,\"seq\":%zu,\"samples_per_s\":%.6g,\"threads\":%d}\n",
           name, batch, seq, sps, openblas_get_num_threads());
  else
    printf("%-18s batch %4zu  seq %4zu  %12.1f samples/s\n", name, batch, seq, sps);
  fflush(stdout);
}

/* One fixture model on the first `batch` samples of its eval data. */
static int bench_fixture(const char *models, const char *evaldir, const char *name,
                         size_t batch) {
  char path[1024];
  otf_error e;
  otf_model *m = NULL;
  otf_weights w;
  int have_w = 0, ok = 0;
  otf_st_file *df = NULL;
  otf_forward *f = NULL;
  float *px = NULL, *logits = NULL;
  int64_t *ids = NULL, *mask = NULL, *types = NULL;
  snprintf(path, sizeof(path), "%s/%s", models, name);
  if(otf_model_open(&m, path, 0, &e) != OTF_OK || otf_weights_load(&w, m, &e) != OTF_OK) {
    fprintf(stderr, "bench_forward: %s: %s\n", name, e.message);
    goto done;
  }
  have_w = 1;
  const otf_model_config *cfg = otf_model_cfg(m);
  int vit = cfg->family == OTF_FAMILY_VIT;
  int mlm = w.g[OTF_SLOT_MLM_DECODER_W] != NULL;
  snprintf(path, sizeof(path), "%s/%s", evaldir,
           vit ? "digits_eval.safetensors"
               : (mlm ? "text_mlm_eval.safetensors" : "text_cls_eval.safetensors"));
  if(otf_st_open(&df, path, &e) != OTF_OK) {
    fprintf(stderr, "bench_forward: %s\n", e.message);
    goto done;
  }
  otf_batch b = {0};
  const otf_st_tensor *t = otf_st_find(df, vit ? "pixel_values" : "input_ids");
  if(!t || t->rank < 2 || t->shape[0] == 0) {
    fprintf(stderr, "bench_forward: %s lacks its inputs\n", path);
    goto done;
  }
  b.n = batch < t->shape[0] ? batch : (size_t)t->shape[0];
  size_t per = (size_t)(t->numel / t->shape[0]);
  if(vit) {
    otf_st_tensor slice = *t;
    slice.shape[0] = b.n;
    slice.numel = b.n * per;
    px = otf_malloc_array(b.n * per, sizeof(float));
    if(!px || otf_st_read_f32(px, &slice, &e) != OTF_OK)
      goto done;
    b.pixel_values = px;
  } else {
    b.seq = (size_t)t->shape[1];
    const otf_st_tensor *tm = otf_st_find(df, "attention_mask"),
                        *tt = otf_st_find(df, "token_type_ids");
    ids = otf_malloc_array(b.n * per, sizeof(int64_t));
    mask = otf_malloc_array(b.n * per, sizeof(int64_t));
    types = otf_malloc_array(b.n * per, sizeof(int64_t));
    if(!ids || !mask || !types)
      goto done;
    memcpy(ids, t->data, b.n * per * sizeof(int64_t));
    b.input_ids = ids;
    if(tm) {
      memcpy(mask, tm->data, b.n * per * sizeof(int64_t));
      b.attention_mask = mask;
    }
    if(tt) {
      memcpy(types, tt->data, b.n * per * sizeof(int64_t));
      b.token_type_ids = types;
    }
  }
  if(otf_forward_create(&f, &w, cfg, otf_model_arch(m), b.n, b.seq ? b.seq : 1, &e) !=
     OTF_OK) {
    fprintf(stderr, "bench_forward: %s: %s\n", name, e.message);
    goto done;
  }
  size_t nl = otf_forward_logits_len(f, &b);
  logits = otf_malloc_array(nl ? nl : 1, sizeof(float));
  if(!logits)
    goto done;
  double sps = time_runs(f, &b, nl ? logits : NULL);
  if(sps > 0) {
    report(name, b.n, b.seq, sps);
    ok = 1;
  }
done:
  otf_free(px);
  otf_free(ids);
  otf_free(mask);
  otf_free(types);
  otf_free(logits);
  otf_forward_destroy(f);
  otf_st_close(df);
  if(have_w)
    otf_weights_free(&w);
  otf_model_close(m);
  return ok;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A BERT-base-shaped BertForSequenceClassification (2 labels) with weights
 * N(0, 0.02), LayerNorm 1/0, biases 0 (HF's initialisation). */
static int bench_bert_base(size_t batch, size_t seq) {
  enum { D = 768, L = 12, H = 12, F = 3072, V = 30522, P = 512, NT = 2, NL = 2 };
  otf_model_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.family = OTF_FAMILY_BERT;
  strcpy(cfg.model_type, "bert");
  strcpy(cfg.architecture, "BertForSequenceClassification");
  cfg.hidden_size = D;
  cfg.num_layers = L;
  cfg.num_heads = H;
  cfg.intermediate_size = F;
  cfg.act = OTF_ACT_GELU;
  cfg.layer_norm_eps = 1e-12;
  cfg.vocab_size = V;
  cfg.max_position_embeddings = P;
  cfg.type_vocab_size = NT;
  cfg.num_labels = NL;
  /* Sizes of every tensor, in floats, in the order they are carved. */
  size_t layer_floats = 4 * (size_t)D * D + 4 * D + 2 * (size_t)D * F + F + D + 4 * D;
  size_t total = (size_t)V * D + (size_t)P * D + (size_t)NT * D + 2 * D + (size_t)D * D + D +
                 (size_t)NL * D + NL + L * layer_floats;
  float *blk = otf_malloc_array(total, sizeof(float));
  const float *(*lslots)[OTF_SLOT_COUNT] = otf_calloc(L, sizeof(*lslots));
  int64_t *ids = otf_malloc_array(batch * seq, sizeof(int64_t));
  float *logits = otf_malloc_array(batch * NL, sizeof(float));
  otf_forward *f = NULL;
  int ok = 0;
  if(!blk || !lslots || !ids || !logits) {
    fprintf(stderr, "bench_forward: no memory for BERT-base\n");
    goto done;
  }
  uint64_t s = 1;
  float *cur = blk;
  otf_weights w;
  memset(&w, 0, sizeof(w));
#define TAKE(dst, count, kind)                                              \
  do {                                                                      \
    size_t cnt_ = (count);                                                  \
    for(size_t i_ = 0; i_ < cnt_; i_++)                                     \
      cur[i_] = (kind) == 0 ? (float)(0.02 * rng_normal(&s)) : (kind) == 1 ? 1.0f : 0.0f; \
    (dst) = cur;                                                            \
    cur += cnt_;                                                            \
  } while(0)
  TAKE(w.g[OTF_SLOT_WORD_EMBED], (size_t)V * D, 0);
  TAKE(w.g[OTF_SLOT_POS_EMBED], (size_t)P * D, 0);
  TAKE(w.g[OTF_SLOT_TYPE_EMBED], (size_t)NT * D, 0);
  TAKE(w.g[OTF_SLOT_EMB_LN_W], D, 1);
  TAKE(w.g[OTF_SLOT_EMB_LN_B], D, 2);
  TAKE(w.g[OTF_SLOT_POOL_W], (size_t)D * D, 0);
  TAKE(w.g[OTF_SLOT_POOL_B], D, 2);
  TAKE(w.g[OTF_SLOT_CLS_W], (size_t)NL * D, 0);
  TAKE(w.g[OTF_SLOT_CLS_B], NL, 2);
  for(int l = 0; l < L; l++) {
    const float **sl = lslots[l];
    TAKE(sl[OTF_SLOT_Q_W], (size_t)D * D, 0);
    TAKE(sl[OTF_SLOT_Q_B], D, 2);
    TAKE(sl[OTF_SLOT_K_W], (size_t)D * D, 0);
    TAKE(sl[OTF_SLOT_K_B], D, 2);
    TAKE(sl[OTF_SLOT_V_W], (size_t)D * D, 0);
    TAKE(sl[OTF_SLOT_V_B], D, 2);
    TAKE(sl[OTF_SLOT_O_W], (size_t)D * D, 0);
    TAKE(sl[OTF_SLOT_O_B], D, 2);
    TAKE(sl[OTF_SLOT_LN1_W], D, 1);
    TAKE(sl[OTF_SLOT_LN1_B], D, 2);
    TAKE(sl[OTF_SLOT_FC1_W], (size_t)F * D, 0);
    TAKE(sl[OTF_SLOT_FC1_B], F, 2);
    TAKE(sl[OTF_SLOT_FC2_W], (size_t)D * F, 0);
    TAKE(sl[OTF_SLOT_FC2_B], D, 2);
    TAKE(sl[OTF_SLOT_LN2_W], D, 1);
    TAKE(sl[OTF_SLOT_LN2_B], D, 2);
  }
#undef TAKE
  w.num_layers = L;
  w.l = lslots;
  for(size_t i = 0; i < batch * seq; i++)
    ids[i] = (int64_t)(rng_next(&s) % V);
  otf_error e;
  if(otf_forward_create(&f, &w, &cfg, NULL, batch, seq, &e) != OTF_OK) {
    fprintf(stderr, "bench_forward: bert-base: %s\n", e.message);
    goto done;
  }
  otf_batch b = {.n = batch, .seq = seq, .input_ids = ids};
  double sps = time_runs(f, &b, logits);
  if(sps > 0) {
    report("bert_base_random", batch, seq, sps);
    ok = 1;
  }
done:
  otf_forward_destroy(f);
  otf_free(blk);
  otf_free(lslots);
  otf_free(ids);
  otf_free(logits);
  return ok;
}

int main(int argc, char **argv) {
  const char *models = "tests/data/models", *evaldir = "tests/data/eval";
  size_t batch = 64, base_batch = 8, seq = 128;
  int base = 1;
  for(int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if(!strcmp(a, "--json"))
      json_out = 1;
    else if(!strcmp(a, "--no-base"))
      base = 0;
    else if(v && !strcmp(a, "--models"))
      models = argv[++i];
    else if(v && !strcmp(a, "--eval"))
      evaldir = argv[++i];
    else if(v && !strcmp(a, "--batch"))
      batch = strtoul(argv[++i], NULL, 10);
    else if(v && !strcmp(a, "--base-batch"))
      base_batch = strtoul(argv[++i], NULL, 10);
    else if(v && !strcmp(a, "--seq"))
      seq = strtoul(argv[++i], NULL, 10);
    else if(v && !strcmp(a, "--min-time"))
      min_time = strtod(argv[++i], NULL);
    else {
      fprintf(stderr, "usage: bench_forward [--models DIR] [--eval DIR] [--batch N] "
                      "[--base-batch N] [--seq T] [--min-time S] [--no-base] [--json]\n");
      return 2;
    }
  }
  if(batch == 0 || base_batch == 0 || seq == 0 || seq > 512) {
    fprintf(stderr, "bench_forward: batch sizes must be >= 1 and seq in [1, 512]\n");
    return 2;
  }
  if(!json_out)
    printf("forward throughput, OpenBLAS threads %d\n", openblas_get_num_threads());
  int fails = 0;
  DIR *dir = opendir(models);
  if(dir) {
    char *names[256];
    size_t nn = 0;
    struct dirent *de;
    while((de = readdir(dir)) && nn < 256) {
      char cfgp[1024];
      snprintf(cfgp, sizeof(cfgp), "%s/%s/config.json", models, de->d_name);
      FILE *fp = de->d_name[0] != '.' ? fopen(cfgp, "r") : NULL;
      if(fp) {
        fclose(fp);
        names[nn++] = strdup(de->d_name);
      }
    }
    closedir(dir);
    qsort(names, nn, sizeof(names[0]), cmp_str);
    for(size_t i = 0; i < nn; i++) {
      fails += !bench_fixture(models, evaldir, names[i], batch);
      free(names[i]);
    }
  }
  if(base)
    fails += !bench_bert_base(base_batch, seq);
  return fails ? 1 : 0;
}
