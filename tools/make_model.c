/* Writes a model folder (config.json + model.safetensors) with random
 * weights for any supported architecture, shaped by the architecture
 * table itself. For benchmarks (BERT-base- and ViT-B-shaped checkpoints
 * that are too large to commit), not for fixtures that need trained
 * weights.
 *
 *   make_model --arch BertForSequenceClassification --hidden 768 --layers 12
 *              --heads 12 --ffn 3072 [--vocab 30522 --positions 512]
 *              [--image 224 --patch 16 --channels 3] [--labels 2]
 *              [--seed 1] [--dtype f32|bf16] -o DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "fusion/arch.h"
#include "fusion/hfconfig.h"
#include "fusion/safetensors.h"

static uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int main(int argc, char **argv) {
  const char *arch = "BertForSequenceClassification", *out = NULL, *dtype = "f32";
  int hidden = 768, layers = 12, heads = 12, ffn = 3072, vocab = 30522, positions = 512;
  int image = 224, patch = 16, channels = 3, labels = 2;
  uint64_t seed = 1;
  for(int k = 1; k + 1 < argc; k += 2) {
    const char *a = argv[k], *v = argv[k + 1];
    if(!strcmp(a, "--arch")) arch = v;
    else if(!strcmp(a, "--hidden")) hidden = atoi(v);
    else if(!strcmp(a, "--layers")) layers = atoi(v);
    else if(!strcmp(a, "--heads")) heads = atoi(v);
    else if(!strcmp(a, "--ffn")) ffn = atoi(v);
    else if(!strcmp(a, "--vocab")) vocab = atoi(v);
    else if(!strcmp(a, "--positions")) positions = atoi(v);
    else if(!strcmp(a, "--image")) image = atoi(v);
    else if(!strcmp(a, "--patch")) patch = atoi(v);
    else if(!strcmp(a, "--channels")) channels = atoi(v);
    else if(!strcmp(a, "--labels")) labels = atoi(v);
    else if(!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
    else if(!strcmp(a, "--dtype")) dtype = v;
    else if(!strcmp(a, "-o")) out = v;
    else {
      fprintf(stderr, "make_model: unknown option %s\n", a);
      return 2;
    }
  }
  const otf_arch *ar = otf_arch_find(arch);
  if(!out || !ar || (strcmp(dtype, "f32") && strcmp(dtype, "bf16"))) {
    fprintf(stderr, "usage: make_model --arch CLASS [dims] [--dtype f32|bf16] -o DIR\n");
    return 2;
  }
  mkdir(out, 0755);
  char path[4096], cfgtext[1024];
  const char *type = ar->family == OTF_FAMILY_VIT ? "vit" : "bert";
  if(ar->family == OTF_FAMILY_VIT)
    snprintf(cfgtext, sizeof(cfgtext),
             "{\"model_type\":\"vit\",\"architectures\":[\"%s\"],\"hidden_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"intermediate_size\":%d,"
             "\"image_size\":%d,\"patch_size\":%d,\"num_channels\":%d,\"num_labels\":%d,"
             "\"hidden_act\":\"gelu\",\"layer_norm_eps\":1e-12}\n",
             arch, hidden, layers, heads, ffn, image, patch, channels, labels);
  else
    snprintf(cfgtext, sizeof(cfgtext),
             "{\"model_type\":\"%s\",\"architectures\":[\"%s\"],\"hidden_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"intermediate_size\":%d,"
             "\"vocab_size\":%d,\"max_position_embeddings\":%d,\"type_vocab_size\":2,"
             "\"num_labels\":%d,\"hidden_act\":\"gelu\",\"layer_norm_eps\":1e-12}\n",
             type, arch, hidden, layers, heads, ffn, vocab, positions, labels);
  otf_model_config cfg;
  otf_error err;
  if(otf_model_config_parse(&cfg, cfgtext, strlen(cfgtext), &err) != OTF_OK) {
    fprintf(stderr, "make_model: %s\n", err.message);
    return 1;
  }
  snprintf(path, sizeof(path), "%s/config.json", out);
  FILE *f = fopen(path, "w");
  if(!f || fputs(cfgtext, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "make_model: cannot write %s\n", path);
    return 1;
  }
  size_t cap = ar->n_pre + (size_t)layers * ar->n_layer + ar->n_post;
  otf_st_out *outs = calloc(cap, sizeof(*outs));
  char (*names)[256] = calloc(cap, sizeof(*names));
  int bf16 = !strcmp(dtype, "bf16");
  size_t n = 0;
  for(int part = 0; part < 3; part++) {
    const otf_tensor_spec *list = part == 0 ? ar->pre : part == 1 ? ar->layer : ar->post;
    size_t len = part == 0 ? ar->n_pre : part == 1 ? ar->n_layer : ar->n_post;
    for(int L = 0; L < (part == 1 ? layers : 1); L++)
      for(size_t i = 0; i < len; i++) {
        const otf_tensor_spec *s = &list[i];
        if(s->role == OTF_ROLE_MERGE || (s->flags & (OTF_TF_TIED | OTF_TF_OPTIONAL)))
          continue;
        otf_arch_name(names[n], sizeof(names[n]), s, part == 1 ? L : -1, 0);
        otf_st_out *o = &outs[n];
        otf_arch_shape(s, &cfg, o->shape, &o->rank);
        size_t numel = 1;
        for(int r = 0; r < o->rank; r++)
          numel *= o->shape[r];
        int is_norm_w = s->role == OTF_ROLE_NORM_W;
        float scale = s->role == OTF_ROLE_NORM_B || s->role == OTF_ROLE_LINEAR_B ? 0.01f : 0.02f;
        void *buf = malloc(numel * 4);
        if(!buf) {
          fprintf(stderr, "make_model: out of memory\n");
          return 1;
        }
        for(size_t e = 0; e < numel; e++) {
          /* Uniform with the std of N(0, scale^2), like HF's init. */
          float u = (float)((double)(rng(&seed) >> 11) * 0x1.0p-53 - 0.5) * 3.4641f * scale;
          float v = is_norm_w ? 1.0f + u : u;
          if(bf16) {
            uint32_t b;
            memcpy(&b, &v, 4);
            uint16_t h = (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
            memcpy((char *)buf + 2 * e, &h, 2);
          } else {
            memcpy((char *)buf + 4 * e, &v, 4);
          }
        }
        o->name = names[n];
        o->dtype = bf16 ? OTF_DT_BF16 : OTF_DT_F32;
        o->data = buf;
        n++;
      }
  }
  snprintf(path, sizeof(path), "%s/model.safetensors", out);
  otf_status rc = otf_st_write(path, outs, n, NULL, 0, &err);
  for(size_t k = 0; k < n; k++)
    free((void *)outs[k].data);
  free(outs);
  free(names);
  otf_model_config_free(&cfg);
  if(rc != OTF_OK) {
    fprintf(stderr, "make_model: %s\n", err.message);
    return 1;
  }
  return 0;
}
