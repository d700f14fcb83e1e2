/* config.json parsing, architecture tables, and opening models: synthetic
 * checkpoints written from the tables themselves, then broken on purpose. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/arch.h"
#include "fusion/hfconfig.h"
#include "fusion/model.h"
#include "tests/support/testutil.h"

static otf_status parse(otf_model_config *c, const char *json, otf_error *e) {
  return otf_model_config_parse(c, json, strlen(json), e);
}

START_TEST(config_defaults_follow_transformers) {
  otf_model_config c;
  ck_assert_int_eq(parse(&c, "{\"model_type\":\"vit\"}", NULL), OTF_OK);
  ck_assert_int_eq(c.family, OTF_FAMILY_VIT);
  ck_assert_str_eq(c.architecture, "ViTModel");
  ck_assert_int_eq(c.hidden_size, 768);
  ck_assert_int_eq(c.num_layers, 12);
  ck_assert_int_eq(c.num_heads, 12);
  ck_assert_int_eq(c.intermediate_size, 3072);
  ck_assert_int_eq(c.image_size, 224);
  ck_assert_int_eq(c.patch_size, 16);
  ck_assert_int_eq(c.num_channels, 3);
  ck_assert_int_eq(c.num_labels, 2);
  ck_assert(c.layer_norm_eps == 1e-12);
  ck_assert_int_eq(c.act, OTF_ACT_GELU);
  otf_model_config_free(&c);
  ck_assert_int_eq(parse(&c, "{\"model_type\":\"bert\",\"architectures\":[\"BertForMaskedLM\"]}",
                         NULL), OTF_OK);
  ck_assert_int_eq(c.vocab_size, 30522);
  ck_assert_int_eq(c.max_position_embeddings, 512);
  ck_assert_int_eq(c.type_vocab_size, 2);
  ck_assert_str_eq(c.architecture, "BertForMaskedLM");
  otf_model_config_free(&c);
  ck_assert_int_eq(parse(&c, "{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_head\":4}", NULL), OTF_OK);
  ck_assert_int_eq(c.intermediate_size, 256); /* n_inner null: 4 * n_embd */
  ck_assert_int_eq(c.act, OTF_ACT_GELU_TANH);
  ck_assert(c.layer_norm_eps == 1e-5);
  otf_model_config_free(&c);
}
END_TEST

START_TEST(config_labels_and_activations) {
  otf_model_config c;
  const char *j = "{\"model_type\":\"bert\",\"hidden_act\":\"gelu_pytorch_tanh\","
                  "\"id2label\":{\"1\":\"pos\",\"0\":\"neg\",\"2\":\"mixed\"},\"num_labels\":7}";
  ck_assert_int_eq(parse(&c, j, NULL), OTF_OK);
  ck_assert_int_eq(c.num_labels, 3); /* id2label wins, as in transformers */
  ck_assert_str_eq(c.id2label[0], "neg");
  ck_assert_str_eq(c.id2label[2], "mixed");
  ck_assert_int_eq(c.act, OTF_ACT_GELU_TANH);
  otf_model_config_free(&c);
  static const struct { const char *name; otf_act act; } acts[] = {
      {"gelu", OTF_ACT_GELU}, {"gelu_new", OTF_ACT_GELU_TANH}, {"relu", OTF_ACT_RELU},
      {"silu", OTF_ACT_SILU}, {"swish", OTF_ACT_SILU}, {"quick_gelu", OTF_ACT_QUICK_GELU}};
  for(size_t k = 0; k < sizeof(acts) / sizeof(*acts); k++) {
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"model_type\":\"vit\",\"hidden_act\":\"%s\"}", acts[k].name);
    ck_assert_int_eq(parse(&c, buf, NULL), OTF_OK);
    ck_assert_int_eq(c.act, acts[k].act);
    otf_model_config_free(&c);
  }
  /* The functions themselves, at a few points. */
  float x[4] = {-2.0f, -0.5f, 0.0f, 1.5f};
  for(int a = OTF_ACT_GELU; a <= OTF_ACT_QUICK_GELU; a++) {
    float y[4];
    memcpy(y, x, sizeof(x));
    otf_act_apply((otf_act)a, y, 4);
    for(int k = 0; k < 4; k++) {
      double v = x[k], want = 0;
      switch(a) {
      case OTF_ACT_GELU: want = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
      case OTF_ACT_GELU_TANH: want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); break;
      case OTF_ACT_RELU: want = v > 0 ? v : 0; break;
      case OTF_ACT_SILU: want = v / (1 + exp(-v)); break;
      case OTF_ACT_QUICK_GELU: want = v / (1 + exp(-1.702 * v)); break;
      }
      ck_assert_msg(fabs(y[k] - want) < 1e-6, "act %d at %g: %g vs %g", a, v, y[k], want);
    }
  }
}
END_TEST

START_TEST(config_errors_point_at_the_field) {
  static const struct { const char *json; otf_status want; const char *ptr; } cases[] = {
      {"{\"model_type\":\"vit\",\"hidden_size\":30,\"num_attention_heads\":4}", OTF_E_FORMAT, "/num_attention_heads"},
      {"{\"model_type\":\"vit\",\"hidden_size\":-1}", OTF_E_FORMAT, "/hidden_size"},
      {"{\"model_type\":\"vit\",\"hidden_size\":\"64\"}", OTF_E_FORMAT, "/hidden_size"},
      {"{\"model_type\":\"vit\",\"num_hidden_layers\":1e9}", OTF_E_FORMAT, "/num_hidden_layers"},
      {"{\"model_type\":\"vit\",\"hidden_act\":\"tanh\"}", OTF_E_UNSUPPORTED, "/hidden_act"},
      {"{\"model_type\":\"vit\",\"hidden_act\":3}", OTF_E_FORMAT, "/hidden_act"},
      {"{\"model_type\":\"vit\",\"layer_norm_eps\":0}", OTF_E_FORMAT, "/layer_norm_eps"},
      {"{\"model_type\":\"vit\",\"image_size\":30,\"patch_size\":4}", OTF_E_FORMAT, "/patch_size"},
      {"{\"model_type\":\"vit\",\"qkv_bias\":false}", OTF_E_UNSUPPORTED, "/qkv_bias"},
      {"{\"model_type\":\"vit\",\"id2label\":{\"0\":\"a\",\"2\":\"b\"}}", OTF_E_FORMAT, "/id2label/2"},
      {"{\"model_type\":\"vit\",\"id2label\":{\"x\":\"a\"}}", OTF_E_FORMAT, "/id2label/x"},
      {"{\"model_type\":\"vit\",\"id2label\":{\"0\":5}}", OTF_E_FORMAT, "/id2label/0"},
      {"{\"model_type\":\"vit\",\"architectures\":\"ViTModel\"}", OTF_E_FORMAT, "/architectures"},
      {"{\"model_type\":\"bert\",\"position_embedding_type\":\"relative_key\"}", OTF_E_UNSUPPORTED, "/position_embedding_type"},
      {"{\"model_type\":\"llama\"}", OTF_E_UNSUPPORTED, "/model_type"},
      {"{\"hidden_size\":64}", OTF_E_FORMAT, "/model_type"},
      {"{\"model_type\":\"vit\",\"model_type\":\"bert\"}", OTF_E_FORMAT, ""},
      {"[1]", OTF_E_FORMAT, ""},
      {"{\"model_type\":", OTF_E_FORMAT, ""},
      {"", OTF_E_FORMAT, ""},
  };
  for(size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
    otf_model_config c;
    otf_error e;
    otf_error_clear(&e);
    otf_status rc = parse(&c, cases[k].json, &e);
    ck_assert_msg(rc == cases[k].want, "case %zu: %s (%s)", k, otf_status_name(rc), e.message);
    ck_assert_msg(!strcmp(e.pointer, cases[k].ptr), "case %zu: pointer '%s' want '%s'", k,
                  e.pointer, cases[k].ptr);
    ck_assert_msg(strlen(e.message) > 10, "case %zu: no message", k);
  }
}
END_TEST

START_TEST(tables_are_consistent) {
  /* Names unique within each table and every space sized under a config. */
  otf_model_config c;
  ck_assert_int_eq(parse(&c, "{\"model_type\":\"vit\",\"hidden_size\":32,\"num_attention_heads\":4,"
                             "\"image_size\":8,\"patch_size\":2,\"num_channels\":1}", NULL), OTF_OK);
  for(size_t a = 0; a < otf_arch_count(); a++) {
    const otf_arch *ar = otf_arch_at(a);
    ck_assert_ptr_eq(otf_arch_find(ar->name), ar);
    const otf_tensor_spec *lists[3] = {ar->pre, ar->layer, ar->post};
    size_t lens[3] = {ar->n_pre, ar->n_layer, ar->n_post};
    int merges = 0;
    for(int l = 0; l < 3; l++)
      for(size_t i = 0; i < lens[l]; i++) {
        const otf_tensor_spec *s = &lists[l][i];
        if(s->role == OTF_ROLE_MERGE) {
          merges++;
          continue;
        }
        ck_assert_msg(s->rank >= 0 && s->rank <= OTF_MAX_TENSOR_RANK, "%s", s->name);
        ck_assert_msg((strstr(s->name, "{L}") != NULL) == (l == 1), "%s", s->name);
        ck_assert(!(s->flags & OTF_TF_TIED) || s->tied_to);
        for(int l2 = 0; l2 < 3; l2++)
          for(size_t j = 0; j < lens[l2]; j++)
            if((l2 != l || j != i) && lists[l2][j].name)
              ck_assert_msg(strcmp(lists[l2][j].name, s->name), "%s twice", s->name);
      }
    ck_assert_int_ge(merges, 2); /* every block has two residual merges */
  }
  const otf_arch *vit = otf_arch_find("ViTForImageClassification");
  uint64_t shape[OTF_MAX_TENSOR_RANK];
  int rank;
  otf_arch_shape(&vit->pre[1], &c, shape, &rank); /* position embeddings */
  ck_assert_int_eq(rank, 3);
  ck_assert_uint_eq(shape[1], 17);
  otf_arch_shape(&vit->pre[2], &c, shape, &rank); /* patch conv */
  ck_assert(rank == 4 && shape[0] == 32 && shape[1] == 1 && shape[2] == 2 && shape[3] == 2);
  char name[128];
  ck_assert_int_gt(otf_arch_name(name, sizeof(name), &vit->layer[4], 7, 0), 0);
  ck_assert_str_eq(name, "vit.encoder.layer.7.attention.attention.key.weight");
  ck_assert_int_eq(otf_arch_name(name, 10, &vit->layer[4], 7, 0), -1);
  otf_model_config_free(&c);
}
END_TEST

START_TEST(gpt2_table_describes_conv1d_and_fused_qkv) {
  otf_model_config c;
  ck_assert_int_eq(parse(&c, "{\"model_type\":\"gpt2\",\"architectures\":[\"GPT2LMHeadModel\"],"
                             "\"n_embd\":64,\"n_layer\":2,\"n_head\":4,\"vocab_size\":100,"
                             "\"n_positions\":32}", NULL), OTF_OK);
  const otf_arch *g = otf_arch_find(c.architecture);
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(g->family, OTF_FAMILY_GPT2);
  int found = 0;
  for(size_t i = 0; i < g->n_layer; i++) {
    const otf_tensor_spec *s = &g->layer[i];
    uint64_t shape[OTF_MAX_TENSOR_RANK];
    int rank;
    if(!s->name)
      continue;
    otf_arch_shape(s, &c, shape, &rank);
    if(strstr(s->name, "c_attn.weight")) {
      /* Conv1D: stored [in, out] = [hidden, 3 * hidden], Q|K|V fused. */
      ck_assert(s->flags & OTF_TF_TRANSPOSED);
      ck_assert(shape[0] == 64 && shape[1] == 192);
      ck_assert_int_eq(s->axes[1], OTF_SP_QKV);
      found++;
    }
    if(strstr(s->name, "mlp.c_fc.weight")) {
      ck_assert(shape[0] == 64 && shape[1] == 256);
      found++;
    }
  }
  ck_assert_int_eq(found, 2);
  ck_assert_str_eq(g->post[2].tied_to, "transformer.wte.weight");
  otf_model_config_free(&c);
}
END_TEST

/* ---- synthetic checkpoints ------------------------------------------ */

typedef struct synth {
  const char *skip;      /* a tensor name to leave out */
  const char *extra;     /* a tensor name to add */
  const char *reshape;   /* a tensor name to give a wrong shape */
  int use_aliases;       /* write old LayerNorm.gamma/beta names */
  otf_dtype dtype;       /* of every floating tensor */
  const char *nan_in;    /* a tensor that gets a NaN */
} synth;

static char g_dir[128];

/* Writes config + a checkpoint with every table tensor for that config. */
static void write_model(const char *config, const synth *sy) {
  snprintf(g_dir, sizeof(g_dir), "/tmp/otf_model_test_%ld", (long)getpid());
  char path[512];
  snprintf(path, sizeof(path), "mkdir -p %s && rm -f %s/*", g_dir, g_dir);
  ck_assert_int_eq(system(path), 0);
  snprintf(path, sizeof(path), "%s/config.json", g_dir);
  FILE *f = fopen(path, "w");
  fputs(config, f);
  fclose(f);
  otf_model_config c;
  ck_assert_int_eq(parse(&c, config, NULL), OTF_OK);
  const otf_arch *a = otf_arch_find(c.architecture);
  ck_assert_ptr_nonnull(a);
  otf_st_out outs[256];
  char names[256][128];
  void *bufs[256];
  size_t n = 0;
  tu_rng r = {99};
  int layers = c.num_layers;
  for(int part = 0; part < 3; part++) {
    const otf_tensor_spec *list = part == 0 ? a->pre : part == 1 ? a->layer : a->post;
    size_t len = part == 0 ? a->n_pre : part == 1 ? a->n_layer : a->n_post;
    for(int L = 0; L < (part == 1 ? layers : 1); L++)
      for(size_t i = 0; i < len; i++) {
        const otf_tensor_spec *s = &list[i];
        if(s->role == OTF_ROLE_MERGE || (s->flags & (OTF_TF_TIED | OTF_TF_OPTIONAL)))
          continue;
        int alias = sy->use_aliases && s->alias;
        ck_assert_int_gt(otf_arch_name(names[n], 128, s, part == 1 ? L : -1, alias), 0);
        if(sy->skip && !strcmp(names[n], sy->skip))
          continue;
        otf_st_out *o = &outs[n];
        otf_arch_shape(s, &c, o->shape, &o->rank);
        if(sy->reshape && !strcmp(names[n], sy->reshape))
          o->shape[0] += 1;
        size_t numel = 1;
        for(int k = 0; k < o->rank; k++)
          numel *= o->shape[k];
        o->name = names[n];
        o->dtype = sy->dtype;
        float *v = malloc(numel * sizeof(float));
        for(size_t k = 0; k < numel; k++)
          v[k] = (float)(0.1 * tu_normal(&r));
        if(sy->nan_in && !strcmp(names[n], sy->nan_in))
          v[numel / 2] = NAN;
        bufs[n] = malloc(numel * 8);
        if(sy->dtype == OTF_DT_F32) {
          memcpy(bufs[n], v, numel * 4);
        } else { /* BF16: truncate (exact for the test's purposes) */
          for(size_t k = 0; k < numel; k++) {
            uint32_t b;
            memcpy(&b, &v[k], 4);
            uint16_t h = (uint16_t)(b >> 16);
            memcpy((char *)bufs[n] + 2 * k, &h, 2);
          }
        }
        free(v);
        o->data = bufs[n];
        n++;
        ck_assert_uint_lt(n, 250);
      }
  }
  if(sy->extra) {
    static float one = 1.0f;
    outs[n] = (otf_st_out){.name = sy->extra, .dtype = OTF_DT_F32, .rank = 1, .shape = {1},
                           .data = &one};
    bufs[n] = NULL;
    n++;
  }
  snprintf(path, sizeof(path), "%s/model.safetensors", g_dir);
  otf_error e;
  ck_assert_msg(otf_st_write(path, outs, n, NULL, 0, &e) == OTF_OK, "%s", e.message);
  for(size_t k = 0; k < n; k++)
    free(bufs[k]);
  otf_model_config_free(&c);
}

static void remove_model(void) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
  ck_assert_int_eq(system(cmd), 0);
}

static const char *VIT_CFG =
    "{\"model_type\":\"vit\",\"architectures\":[\"ViTForImageClassification\"],"
    "\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
    "\"intermediate_size\":24,\"image_size\":8,\"patch_size\":4,\"num_channels\":1,"
    "\"id2label\":{\"0\":\"a\",\"1\":\"b\",\"2\":\"c\"}}";
static const char *MLM_CFG =
    "{\"model_type\":\"bert\",\"architectures\":[\"BertForMaskedLM\"],\"hidden_size\":16,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":20,"
    "\"vocab_size\":30,\"max_position_embeddings\":12,\"type_vocab_size\":2}";

START_TEST(open_valid_models) {
  synth sy = {.dtype = OTF_DT_F32};
  write_model(VIT_CFG, &sy);
  otf_model *m = NULL;
  otf_error e;
  ck_assert_msg(otf_model_open(&m, g_dir, 0, &e) == OTF_OK, "%s", e.message);
  /* cls 16 + pos 5*16 + conv 16*16 + 16 + 2 layers * (4 linear 16x16+16,
   * fc1 24x16+24, fc2 16x24+16, 2 LN 2*16) + final LN 32 + classifier 3*16+3 */
  uint64_t layer = 4 * (256 + 16) + (384 + 24) + (384 + 16) + 4 * 16;
  ck_assert_uint_eq(otf_model_param_count(m), 16 + 80 + 256 + 16 + 2 * layer + 32 + 51);
  otf_weights w;
  ck_assert_int_eq(otf_weights_load(&w, m, &e), OTF_OK);
  ck_assert_ptr_nonnull(w.g[OTF_SLOT_CLS_TOKEN]);
  ck_assert_ptr_nonnull(w.l[1][OTF_SLOT_FC2_W]);
  ck_assert_ptr_null(w.g[OTF_SLOT_POOL_W]);
  ck_assert_uint_eq(otf_model_count_nonfinite(m, NULL), 0);
  otf_weights_free(&w);
  otf_model_close(m);
  /* BERT MLM in BF16 with old LayerNorm names and the tied decoder absent. */
  synth s2 = {.dtype = OTF_DT_BF16, .use_aliases = 1};
  write_model(MLM_CFG, &s2);
  ck_assert_msg(otf_model_open(&m, g_dir, 0, &e) == OTF_OK, "%s", e.message);
  const otf_arch *a = otf_model_arch(m);
  const otf_st_tensor *dec = NULL, *word = NULL;
  for(size_t i = 0; i < a->n_post; i++)
    if(a->post[i].slot == OTF_SLOT_MLM_DECODER_W)
      dec = otf_model_tensor(m, &a->post[i], -1);
  word = otf_model_tensor(m, &a->pre[0], -1);
  ck_assert_ptr_nonnull(dec);
  ck_assert_ptr_eq(dec, word);
  ck_assert_int_eq(otf_weights_load(&w, m, &e), OTF_OK);
  ck_assert_ptr_eq(w.g[OTF_SLOT_MLM_DECODER_W], w.g[OTF_SLOT_WORD_EMBED]);
  ck_assert_ptr_nonnull(w.l[0][OTF_SLOT_LN1_W]); /* found through its alias */
  /* BF16 was converted exactly. */
  float first;
  uint16_t h;
  memcpy(&h, word->data, 2);
  uint32_t b = (uint32_t)h << 16;
  memcpy(&first, &b, 4);
  ck_assert(w.g[OTF_SLOT_WORD_EMBED][0] == first);
  otf_weights_free(&w);
  otf_model_close(m);
  remove_model();
}
END_TEST

START_TEST(broken_models_are_named) {
  otf_model *m = NULL;
  otf_error e;
  synth miss = {.dtype = OTF_DT_F32, .skip = "vit.encoder.layer.1.output.dense.bias"};
  write_model(VIT_CFG, &miss);
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_E_FORMAT);
  ck_assert_msg(strstr(e.message, "missing vit.encoder.layer.1.output.dense.bias"), "%s", e.message);
  ck_assert_ptr_null(m);
  synth extra = {.dtype = OTF_DT_F32, .extra = "some.adapter.weight"};
  write_model(VIT_CFG, &extra);
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_E_FORMAT);
  ck_assert_msg(strstr(e.message, "unexpected some.adapter.weight"), "%s", e.message);
  ck_assert_int_eq(otf_model_open(&m, g_dir, OTF_MODEL_LENIENT, &e), OTF_OK);
  ck_assert_uint_eq(otf_model_warning_count(m), 1);
  ck_assert(strstr(otf_model_warning(m, 0), "some.adapter.weight") != NULL);
  otf_model_close(m);
  synth shape = {.dtype = OTF_DT_F32, .reshape = "classifier.weight"};
  write_model(VIT_CFG, &shape);
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_E_FORMAT);
  ck_assert_msg(strstr(e.message, "classifier.weight F32 [4,16], config implies [3,16]"), "%s",
                e.message);
  synth nan = {.dtype = OTF_DT_F32, .nan_in = "vit.encoder.layer.0.intermediate.dense.weight"};
  write_model(VIT_CFG, &nan);
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_OK);
  const char *first = NULL;
  ck_assert_uint_eq(otf_model_count_nonfinite(m, &first), 1);
  ck_assert_str_eq(first, "vit.encoder.layer.0.intermediate.dense.weight");
  otf_model_close(m);
  /* Config and checkpoint disagree: the config says 3 layers. */
  synth ok = {.dtype = OTF_DT_F32};
  write_model(VIT_CFG, &ok);
  char path[256];
  snprintf(path, sizeof(path), "%s/config.json", g_dir);
  FILE *f = fopen(path, "w");
  fputs("{\"model_type\":\"vit\",\"architectures\":[\"ViTForImageClassification\"],"
        "\"hidden_size\":16,\"num_hidden_layers\":3,\"num_attention_heads\":2,"
        "\"intermediate_size\":24,\"image_size\":8,\"patch_size\":4,\"num_channels\":1,"
        "\"num_labels\":3}", f);
  fclose(f);
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_E_FORMAT);
  ck_assert_msg(strstr(e.message, "missing vit.encoder.layer.2."), "%s", e.message);
  /* Unsupported architecture and a missing folder. */
  f = fopen(path, "w");
  fputs("{\"model_type\":\"vit\",\"architectures\":[\"ViTForMaskedImageModeling\"]}", f);
  fclose(f);
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_E_UNSUPPORTED);
  ck_assert(strstr(e.message, "ViTForMaskedImageModeling") != NULL);
  remove_model();
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, &e), OTF_E_NOT_FOUND);
  ck_assert(strstr(e.message, "config.json") != NULL);
}
END_TEST

START_TEST(allocation_failures_are_clean) {
  synth sy = {.dtype = OTF_DT_BF16};
  write_model(MLM_CFG, &sy);
  long before = otf_alloc_calls();
  otf_model *m = NULL;
  otf_weights w;
  ck_assert_int_eq(otf_model_open(&m, g_dir, 0, NULL), OTF_OK);
  ck_assert_int_eq(otf_weights_load(&w, m, NULL), OTF_OK);
  otf_weights_free(&w);
  otf_model_close(m);
  long calls = otf_alloc_calls() - before;
  for(long k = 1; k <= calls; k++) {
    otf_alloc_fail_at(k);
    otf_status rc = otf_model_open(&m, g_dir, 0, NULL);
    if(rc == OTF_OK) {
      rc = otf_weights_load(&w, m, NULL);
      if(rc == OTF_OK)
        otf_weights_free(&w);
      otf_model_close(m);
    }
    otf_alloc_fail_at(0);
    ck_assert_msg(rc == OTF_OK || rc == OTF_E_NOMEM, "k=%ld: %s", k, otf_status_name(rc));
  }
  remove_model();
}
END_TEST

int main(void) {
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, config_defaults_follow_transformers);
  tcase_add_test(tc, config_labels_and_activations);
  tcase_add_test(tc, config_errors_point_at_the_field);
  tcase_add_test(tc, tables_are_consistent);
  tcase_add_test(tc, gpt2_table_describes_conv1d_and_fused_qkv);
  tcase_add_test(tc, open_valid_models);
  tcase_add_test(tc, broken_models_are_named);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
