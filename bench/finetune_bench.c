/* Training-step throughput of otfuse's C training code: samples per
 * second of forward + backward + gradient clipping + AdamW on random
 * inputs, the same work bench/finetune_torch.py times in PyTorch.
 *
 *   finetune_bench [MODEL_DIR [BATCH [SEQ [STEPS]]]]
 *
 * Defaults: tests/data/models/vit_s0, batch 64, seq 20 (BERT only), 20
 * steps after one warm-up step. Threads: OpenBLAS's (set
 * OPENBLAS_NUM_THREADS=1 to compare at one thread). Prints one JSON line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fusion/model.h"
#include "fusion/train.h"
#include "fusion/train_adamw.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "tests/data/models/vit_s0";
  size_t B = argc > 2 ? (size_t)atol(argv[2]) : 64, T = argc > 3 ? (size_t)atol(argv[3]) : 20;
  int steps = argc > 4 ? atoi(argv[4]) : 20;
  if(B == 0 || T == 0 || steps <= 0) {
    fprintf(stderr, "usage: finetune_bench [MODEL_DIR [BATCH [SEQ [STEPS]]]]\n");
    return 2;
  }
  otf_error err;
  otf_model *m = NULL;
  otf_train *t = NULL;
  otf_adamw *opt = NULL;
  otf_adamw_group *groups = NULL;
  float *pix = NULL;
  int64_t *ids = NULL, *labels = NULL;
  int ret = 1;
  if(otf_model_open(&m, dir, 0, &err) != OTF_OK ||
     otf_train_create(&t, m, B, T, &err) != OTF_OK) {
    fprintf(stderr, "finetune_bench: %s\n", err.message);
    goto done;
  }
  const otf_model_config *cfg = otf_model_cfg(m);
  int vit = cfg->family == OTF_FAMILY_VIT, mlm = otf_train_is_mlm(t);
  uint64_t s = 42;
  otf_batch b = {0};
  b.n = B;
  size_t nlab = mlm ? B * T : B;
  labels = malloc(nlab * sizeof(int64_t));
  for(size_t i = 0; i < nlab; i++)
    labels[i] = mlm ? (i % 7 == 0 ? (int64_t)(rng(&s) % (uint64_t)cfg->vocab_size) : -100)
                    : (int64_t)(rng(&s) % (uint64_t)cfg->num_labels);
  if(vit) {
    size_t n = B * (size_t)cfg->num_channels * (size_t)cfg->image_size * (size_t)cfg->image_size;
    pix = malloc(n * sizeof(float));
    for(size_t i = 0; i < n; i++)
      pix[i] = (float)(rng(&s) >> 40) / (float)(1 << 24);
    b.pixel_values = pix;
    T = (size_t)(cfg->image_size / cfg->patch_size) * (size_t)(cfg->image_size / cfg->patch_size) + 1;
  } else {
    ids = malloc(B * T * sizeof(int64_t));
    for(size_t i = 0; i < B * T; i++)
      ids[i] = (int64_t)(rng(&s) % (uint64_t)cfg->vocab_size);
    b.seq = T;
    b.input_ids = ids;
  }
  size_t np = otf_train_param_count(t);
  groups = calloc(np, sizeof(*groups));
  for(size_t i = 0; i < np; i++) {
    const otf_train_param *p = otf_train_param_at(t, i);
    groups[i] = (otf_adamw_group){p->offset, p->numel, p->decay};
  }
  otf_adamw_opts ao;
  otf_adamw_opts_default(&ao);
  if(otf_adamw_create(&opt, otf_train_numel(t), groups, np, &ao, &err) != OTF_OK) {
    fprintf(stderr, "finetune_bench: %s\n", err.message);
    goto done;
  }
  double t0 = 0.0, loss = 0.0;
  for(int k = 0; k <= steps; k++) {
    if(k == 1)
      t0 = now_s(); /* step 0 warms up */
    otf_train_stats st;
    if(otf_train_step(t, &b, labels, 1, &st, &err) != OTF_OK) {
      fprintf(stderr, "finetune_bench: %s\n", err.message);
      goto done;
    }
    otf_clip_grad_norm(otf_train_grads(t), otf_train_numel(t), 1.0);
    otf_adamw_step(opt, otf_train_params(t), otf_train_grads(t), 1e-4);
    loss = st.loss;
  }
  double sec = (now_s() - t0) / steps;
  printf("{\"impl\":\"otfuse\",\"model\":\"%s\",\"batch\":%zu,\"tokens\":%zu,\"steps\":%d,"
         "\"seconds_per_step\":%.6f,\"samples_per_s\":%.2f,\"loss\":%.5f}\n",
         dir, B, T, steps, sec, (double)B / sec, loss);
  ret = 0;
done:
  free(groups);
  free(pix);
  free(ids);
  free(labels);
  otf_adamw_destroy(opt);
  otf_train_destroy(t);
  otf_model_close(m);
  return ret;
}
