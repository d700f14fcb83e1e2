/* Training forward / backward for ViT (pre-LN) and BERT (post-LN): see
 * train.h.
 *
 * Layout follows forward.c: activations are row-major [rows, cols] with
 * rows = n * T (a sample's tokens contiguous), so every Linear is one SGEMM
 * over the batch and attention reads each head's column block in place.
 * What the backward pass needs is kept per layer (xs[L] the layer input,
 * LayerNorm inputs and statistics, Q, K, V, attention probabilities, the
 * context, FFN pre-activations and activations); everything comes out of
 * one aligned block sized at create. */
#include "fusion/fsutil.h"
#include "fusion/train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/forward.h"
#include "fusion/train_ops.h"

#define OTF_TRAIN_IGNORE (-100) /* labels not scored (cross_entropy ignore_index) */
#include <cblas.h>

typedef enum head_kind { HEAD_CLS = 1, HEAD_MLM } head_kind;

/* Per-layer saved activations. */
typedef struct layer_acts {
  float *h1;        /* ViT: LN1 output; BERT: s1 = attention out + input */
  float *m1, *r1;   /* LN1 statistics [R] */
  float *q, *k, *v; /* [R, D] */
  float *probs;     /* [n, H, T, T] */
  float *ctx;       /* [R, D] */
  float *mid;       /* ViT: stream after attention; BERT: LN1 output */
  float *m2, *r2;   /* LN2 statistics [R] */
  float *h2;        /* ViT: LN2 output; BERT: s2 = FFN out + mid */
  float *ffpre, *ffact; /* [R, F] */
  float *ffder;         /* [R, F] activation derivative at ffpre */
} layer_acts;

/* A stored tensor that repeats a parameter (a tied decoder written out). */
typedef struct tied_copy {
  const char *name; /* borrowed from the checkpoint */
  size_t param;
} tied_copy;

struct otf_train {
  const otf_model_config *cfg;
  int vit;
  head_kind head;
  size_t D, F, H, hd, NL, C, V;
  size_t Cch, p, grid, P, K; /* ViT geometry */
  size_t max_batch, max_tok;
  otf_train_param *params;
  size_t nparams;
  tied_copy *tied;
  size_t ntied;
  size_t numel;
  float *pblock, *gblock;
  /* parameter / gradient pointers by slot */
  float *pg[OTF_SLOT_COUNT], *gg[OTF_SLOT_COUNT];
  float *(*pl)[OTF_SLOT_COUNT], *(*gl)[OTF_SLOT_COUNT];
  otf_weights view;
  const float *(*view_l)[OTF_SLOT_COUNT];
  /* activations */
  void *act_block;
  float **xs;          /* [NL + 1] of [R, D] */
  layer_acts *la;      /* [NL] */
  float *unf;          /* ViT [B*P, K] */
  float *esum, *em, *er; /* BERT embeddings sum [R, D] and LN statistics */
  float *keyok;        /* [R] */
  size_t *nvalid;      /* [B] */
  /* head */
  float *hx;           /* [R, D] gathered rows (cls rows or labelled tokens) */
  float *hpre, *hact;  /* [R, D] ViT: final LN output in hpre; BERT cls:
                          pooler output in hact; MLM: dense out, activation */
  float *hm, *hr;      /* [R] head LN statistics */
  float *hy;           /* [R, D] MLM: transform output */
  float *hder;         /* [R, D] MLM: activation derivative */
  float *logits;       /* [R, max(C, V)] */
  int64_t *hlab;       /* [R] labels of the gathered rows */
  size_t *hrow;        /* [R] stream row of each gathered row */
  /* backward scratch */
  float *dx, *dA, *dq, *dk, *dv, *dctx, *dff, *dsc, *dh;
};

#define PG(t, s) ((t)->pg[(s)])
#define GG(t, s) ((t)->gg[(s)])

int otf_train_arch_supported(const char *arch_name) {
  return arch_name && (!strcmp(arch_name, "ViTForImageClassification") ||
                       !strcmp(arch_name, "BertForSequenceClassification") ||
                       !strcmp(arch_name, "BertForMaskedLM"));
}

const otf_model_config *otf_train_config(const otf_train *t) { return t->cfg; }
int otf_train_is_mlm(const otf_train *t) { return t->head == HEAD_MLM; }
size_t otf_train_param_count(const otf_train *t) { return t->nparams; }
const otf_train_param *otf_train_param_at(const otf_train *t, size_t i) {
  return i < t->nparams ? &t->params[i] : NULL;
}
const otf_train_param *otf_train_param_find(const otf_train *t, const char *name) {
  for(size_t i = 0; i < t->nparams; i++)
    if(!strcmp(t->params[i].name, name))
      return &t->params[i];
  return NULL;
}
size_t otf_train_numel(const otf_train *t) { return t->numel; }
float *otf_train_params(otf_train *t) { return t->pblock; }
float *otf_train_grads(otf_train *t) { return t->gblock; }
const otf_weights *otf_train_weights(const otf_train *t) { return &t->view; }

void otf_train_destroy(otf_train *t) {
  if(!t)
    return;
  otf_free(t->params);
  otf_free(t->tied);
  otf_free(t->pblock);
  otf_free(t->gblock);
  otf_free(t->pl);
  otf_free(t->gl);
  otf_free(t->view_l);
  otf_free(t->xs);
  otf_free(t->la);
  otf_free(t->act_block);
  otf_free(t);
}

static int mul_ok(size_t *out, size_t a, size_t b) {
  if(a && b > SIZE_MAX / a)
    return 0;
  *out = a * b;
  return 1;
}

static int no_decay(const otf_tensor_spec *s) {
  return s->role == OTF_ROLE_LINEAR_B || s->role == OTF_ROLE_NORM_W ||
         s->role == OTF_ROLE_NORM_B || s->role == OTF_ROLE_PATCH_B ||
         s->role == OTF_ROLE_TOKEN || s->role == OTF_ROLE_POS_EMBED ||
         s->slot == OTF_SLOT_POS_EMBED || s->rank < 2;
}

/* Walks the table: counts (params NULL) or records the parameters. */
static otf_status enum_params(otf_train *t, const otf_model *m, otf_error *err) {
  const otf_arch *a = otf_model_arch(m);
  const otf_ckpt *ck = otf_model_ckpt(m);
  const otf_tensor_spec *groups[3] = {a->pre, a->layer, a->post};
  size_t counts[3] = {a->n_pre, a->n_layer, a->n_post};
  size_t np = 0, nt = 0, off = 0;
  for(int pass = 0; pass < 2; pass++) {
    np = nt = off = 0;
    for(int gi = 0; gi < 3; gi++) {
      int nl = gi == 1 ? (int)t->NL : 1;
      for(int L = 0; L < nl; L++)
        for(size_t i = 0; i < counts[gi]; i++) {
          const otf_tensor_spec *s = &groups[gi][i];
          int layer = gi == 1 ? L : -1;
          if(s->role == OTF_ROLE_MERGE || s->role == OTF_ROLE_BUFFER)
            continue;
          if(s->flags & OTF_TF_TIED) {
            char nm[OTF_TRAIN_NAME_MAX];
            const otf_st_tensor *st = NULL;
            if(otf_arch_name(nm, sizeof(nm), s, layer, 0) > 0)
              st = otf_ckpt_find(ck, nm);
            if(st) { /* stored: written again from the tied parameter */
              if(pass == 1) {
                t->tied[nt].name = st->name;
                t->tied[nt].param = SIZE_MAX;
                /* resolved below, once every parameter is known */
              }
              nt++;
            }
            continue;
          }
          if(s->slot == OTF_SLOT_NONE)
            continue;
          const otf_st_tensor *st = otf_model_tensor(m, s, layer);
          if(!st)
            continue;
          uint64_t shape[OTF_MAX_TENSOR_RANK];
          int rank;
          otf_arch_shape(s, t->cfg, shape, &rank);
          size_t numel = 1;
          for(int r = 0; r < rank; r++)
            numel *= (size_t)shape[r];
          if(pass == 1) {
            otf_train_param *p = &t->params[np];
            if(strlen(st->name) >= sizeof(p->name))
              return OTF_FAIL(err, OTF_E_INVAL, NULL, "tensor name too long: %s", st->name);
            snprintf(p->name, sizeof(p->name), "%s", st->name);
            p->slot = s->slot;
            p->layer = layer;
            p->rank = rank;
            memcpy(p->shape, shape, sizeof(shape));
            p->offset = off;
            p->numel = numel;
            p->decay = !no_decay(s);
          }
          np++;
          off += (numel + 15) & ~(size_t)15;
        }
    }
    if(pass == 0) {
      t->params = otf_calloc(np ? np : 1, sizeof(*t->params));
      t->tied = otf_calloc(nt ? nt : 1, sizeof(*t->tied));
      if(!t->params || !t->tied)
        return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the parameter table");
    }
  }
  t->nparams = np;
  t->ntied = nt;
  t->numel = off;
  /* tied copies: the decoder weight repeats the word embeddings, the
   * decoder bias the MLM bias */
  for(size_t i = 0; i < nt; i++) {
    otf_slot want = strstr(t->tied[i].name, "bias") ? OTF_SLOT_MLM_BIAS : OTF_SLOT_WORD_EMBED;
    for(size_t j = 0; j < np; j++)
      if(t->params[j].slot == want)
        t->tied[i].param = j;
    if(t->tied[i].param == SIZE_MAX)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "tied tensor %s has no parameter to follow",
                      t->tied[i].name);
  }
  return OTF_OK;
}

/* Checks that the slots a training step reads are there. */
static otf_status check_slots(const otf_train *t, otf_error *err) {
  static const otf_slot layer_req[] = {
      OTF_SLOT_LN1_W, OTF_SLOT_LN1_B, OTF_SLOT_Q_W,   OTF_SLOT_K_W,   OTF_SLOT_V_W,
      OTF_SLOT_O_W,   OTF_SLOT_O_B,   OTF_SLOT_LN2_W, OTF_SLOT_LN2_B, OTF_SLOT_FC1_W,
      OTF_SLOT_FC1_B, OTF_SLOT_FC2_W, OTF_SLOT_FC2_B};
  for(size_t L = 0; L < t->NL; L++)
    for(size_t i = 0; i < sizeof(layer_req) / sizeof(layer_req[0]); i++)
      if(!t->pl[L][layer_req[i]])
        return OTF_FAIL(err, OTF_E_INVAL, NULL, "layer %zu lacks weight slot %d", L,
                        (int)layer_req[i]);
  int ok;
  if(t->vit)
    ok = PG(t, OTF_SLOT_PATCH_W) && PG(t, OTF_SLOT_CLS_TOKEN) && PG(t, OTF_SLOT_POS_EMBED) &&
         PG(t, OTF_SLOT_FINAL_LN_W) && PG(t, OTF_SLOT_CLS_W);
  else
    ok = PG(t, OTF_SLOT_WORD_EMBED) && PG(t, OTF_SLOT_POS_EMBED) && PG(t, OTF_SLOT_EMB_LN_W) &&
         (t->head == HEAD_MLM ? PG(t, OTF_SLOT_MLM_DENSE_W) && PG(t, OTF_SLOT_MLM_LN_W)
                              : PG(t, OTF_SLOT_POOL_W) && PG(t, OTF_SLOT_CLS_W));
  if(!ok)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "the checkpoint lacks weights a training step needs");
  return OTF_OK;
}

/* Carves the activation block: sizes[i] floats each (size_t buffers are
 * counted in floats, rounded up). */
static otf_status plan_acts(otf_train *t, otf_error *err) {
  const size_t B = t->max_batch, T = t->max_tok, D = t->D, F = t->F, NL = t->NL;
  size_t R, RD, RF, PT, BP = 0, unf = 0, L;
  size_t W = t->C > t->V ? t->C : t->V; /* logits width */
  if(!mul_ok(&R, B, T) || R > INT_MAX || !mul_ok(&RD, R, D) || !mul_ok(&RF, R, F) ||
     !mul_ok(&PT, B * t->H, T * T) || !mul_ok(&L, R, W) ||
     (t->vit && (!mul_ok(&BP, B, t->P) || !mul_ok(&unf, BP, t->K))))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "training workspace for batch %zu x %zu "
                    "tokens is too large", B, T);
  size_t szt = (sizeof(size_t) + sizeof(float) - 1) / sizeof(float);
  size_t per_layer = 7 * ((RD + 15) & ~(size_t)15) + 4 * ((R + 15) & ~(size_t)15) +
                     ((PT + 15) & ~(size_t)15) + 3 * ((RF + 15) & ~(size_t)15);
  size_t fixed = 0;
  /* order below must match the carving */
  size_t list[] = {unf, RD, R, R, R, B * szt,           /* unf esum em er keyok nvalid */
                   RD, RD, RD, R, R, RD, L, R * 2, R * szt, /* hx hpre hact hm hr hy logits hlab hrow */
                   RD, RD, RD, RD, RD, RD, RF, T * T, RD,   /* dx dA dq dk dv dctx dff dsc dh */
                   RD};                                     /* hder */
  size_t nlist = sizeof(list) / sizeof(list[0]);
  for(size_t i = 0; i < nlist; i++)
    fixed += (list[i] + 15) & ~(size_t)15;
  size_t xs_sz = (NL + 1) * ((RD + 15) & ~(size_t)15);
  if(per_layer && NL > (SIZE_MAX / sizeof(float) - fixed - xs_sz) / per_layer)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "training workspace too large");
  size_t total = fixed + xs_sz + NL * per_layer;
  t->act_block = otf_malloc_aligned(total * sizeof(float));
  t->xs = otf_calloc(NL + 1, sizeof(float *));
  t->la = otf_calloc(NL ? NL : 1, sizeof(layer_acts));
  if(!t->act_block || !t->xs || !t->la)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a %zu-byte training workspace",
                    total * sizeof(float));
  float *cur = t->act_block;
#define TAKE(n) (cur += ((n) + 15) & ~(size_t)15, cur - (((n) + 15) & ~(size_t)15))
  float **fl[] = {&t->unf, &t->esum, &t->em, &t->er, &t->keyok, NULL,
                  &t->hx, &t->hpre, &t->hact, &t->hm, &t->hr, &t->hy, &t->logits, NULL, NULL,
                  &t->dx, &t->dA, &t->dq, &t->dk, &t->dv, &t->dctx, &t->dff, &t->dsc, &t->dh,
                  &t->hder};
  for(size_t i = 0; i < nlist; i++) {
    float *p = TAKE(list[i]);
    if(fl[i])
      *fl[i] = p;
    else if(i == 5)
      t->nvalid = (size_t *)(void *)p;
    else if(i == 13)
      t->hlab = (int64_t *)(void *)p;
    else
      t->hrow = (size_t *)(void *)p;
  }
  for(size_t l = 0; l <= NL; l++)
    t->xs[l] = TAKE(RD);
  for(size_t l = 0; l < NL; l++) {
    layer_acts *a = &t->la[l];
    a->h1 = TAKE(RD);
    a->q = TAKE(RD);
    a->k = TAKE(RD);
    a->v = TAKE(RD);
    a->ctx = TAKE(RD);
    a->mid = TAKE(RD);
    a->h2 = TAKE(RD);
    a->m1 = TAKE(R);
    a->r1 = TAKE(R);
    a->m2 = TAKE(R);
    a->r2 = TAKE(R);
    a->probs = TAKE(PT);
    a->ffpre = TAKE(RF);
    a->ffact = TAKE(RF);
    a->ffder = TAKE(RF);
  }
#undef TAKE
  return OTF_OK;
}

otf_status otf_train_create(otf_train **out, const otf_model *m, size_t max_batch,
                            size_t max_seq, otf_error *err) {
  *out = NULL;
  if(!m)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "a model is required");
  const otf_model_config *cfg = otf_model_cfg(m);
  const otf_arch *arch = otf_model_arch(m);
  if(cfg->family != OTF_FAMILY_VIT && cfg->family != OTF_FAMILY_BERT)
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "no training for model type '%s'",
                    cfg->model_type);
  if(max_batch == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "max_batch must be at least 1");
  otf_train *t = otf_calloc(1, sizeof(*t));
  otf_weights w = {0};
  otf_status rc = OTF_OK;
  if(!t)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the training state");
  t->cfg = cfg;
  t->vit = cfg->family == OTF_FAMILY_VIT;
  t->D = (size_t)cfg->hidden_size;
  t->F = (size_t)cfg->intermediate_size;
  t->H = (size_t)cfg->num_heads;
  t->hd = t->D / t->H;
  t->NL = (size_t)cfg->num_layers;
  t->max_batch = max_batch;
  if(!strcmp(arch->name, "ViTForImageClassification") ||
     !strcmp(arch->name, "BertForSequenceClassification")) {
    t->head = HEAD_CLS;
    t->C = (size_t)cfg->num_labels;
    if(cfg->num_labels <= 0) {
      rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "classifier with num_labels %d", cfg->num_labels);
      goto fail;
    }
  } else if(!strcmp(arch->name, "BertForMaskedLM")) {
    t->head = HEAD_MLM;
    t->V = (size_t)cfg->vocab_size;
  } else {
    rc = OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL,
                  "%s has no training head (ViTForImageClassification, "
                  "BertForSequenceClassification and BertForMaskedLM can be trained)",
                  arch->name);
    goto fail;
  }
  if(t->vit) {
    t->Cch = (size_t)cfg->num_channels;
    t->p = (size_t)cfg->patch_size;
    t->grid = (size_t)cfg->image_size / t->p;
    t->P = t->grid * t->grid;
    t->K = t->Cch * t->p * t->p;
    t->max_tok = t->P + 1;
  } else {
    if(max_seq == 0) {
      rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "max_seq must be at least 1");
      goto fail;
    }
    t->max_tok = max_seq < (size_t)cfg->max_position_embeddings
                     ? max_seq
                     : (size_t)cfg->max_position_embeddings;
  }
  rc = enum_params(t, m, err);
  if(rc != OTF_OK)
    goto fail;
  t->pblock = otf_malloc_aligned((t->numel ? t->numel : 1) * sizeof(float));
  t->gblock = otf_malloc_aligned((t->numel ? t->numel : 1) * sizeof(float));
  t->pl = otf_calloc(t->NL ? t->NL : 1, sizeof(*t->pl));
  t->gl = otf_calloc(t->NL ? t->NL : 1, sizeof(*t->gl));
  t->view_l = otf_calloc(t->NL ? t->NL : 1, sizeof(*t->view_l));
  if(!t->pblock || !t->gblock || !t->pl || !t->gl || !t->view_l) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for %zu parameters", t->numel);
    goto fail;
  }
  memset(t->pblock, 0, t->numel * sizeof(float));
  memset(t->gblock, 0, t->numel * sizeof(float));
  rc = otf_weights_load(&w, m, err);
  if(rc != OTF_OK)
    goto fail;
  for(size_t i = 0; i < t->nparams; i++) {
    const otf_train_param *p = &t->params[i];
    const float *src = p->layer < 0 ? w.g[p->slot] : w.l[p->layer][p->slot];
    if(!src) {
      rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "weights of %s are missing", p->name);
      goto fail;
    }
    memcpy(t->pblock + p->offset, src, p->numel * sizeof(float));
    if(p->layer < 0) {
      t->pg[p->slot] = t->pblock + p->offset;
      t->gg[p->slot] = t->gblock + p->offset;
    } else {
      t->pl[p->layer][p->slot] = t->pblock + p->offset;
      t->gl[p->layer][p->slot] = t->gblock + p->offset;
    }
  }
  if(t->head == HEAD_MLM) { /* the decoder is the word embedding matrix */
    t->pg[OTF_SLOT_MLM_DECODER_W] = t->pg[OTF_SLOT_WORD_EMBED];
    t->gg[OTF_SLOT_MLM_DECODER_W] = t->gg[OTF_SLOT_WORD_EMBED];
  }
  t->view.num_layers = (int)t->NL;
  for(int s = 0; s < OTF_SLOT_COUNT; s++)
    t->view.g[s] = t->pg[s];
  for(size_t L = 0; L < t->NL; L++)
    for(int s = 0; s < OTF_SLOT_COUNT; s++)
      t->view_l[L][s] = t->pl[L][s];
  t->view.l = t->view_l;
  t->view.owned = NULL;
  rc = check_slots(t, err);
  if(rc == OTF_OK)
    rc = plan_acts(t, err);
  if(rc != OTF_OK)
    goto fail;
  otf_weights_free(&w);
  *out = t;
  return OTF_OK;
fail:
  otf_weights_free(&w);
  otf_train_destroy(t);
  return rc;
}

/* ---- forward ------------------------------------------------------------ */

static void vit_embed_fwd(otf_train *t, const otf_batch *b) {
  const size_t n = b->n, C = t->Cch, p = t->p, P = t->P, K = t->K, D = t->D;
  const size_t img = (size_t)t->cfg->image_size, T = P + 1;
  otf__unfold_patches(t->unf, b->pixel_values, n, C, img, p);
  float *pe = t->dA; /* scratch [n*P, D] */
  otf__linear_fwd(pe, t->unf, PG(t, OTF_SLOT_PATCH_W), PG(t, OTF_SLOT_PATCH_B), n * P, K, D);
  const float *cls = PG(t, OTF_SLOT_CLS_TOKEN), *pos = PG(t, OTF_SLOT_POS_EMBED);
  float *x = t->xs[0];
  for(size_t s = 0; s < n; s++) {
    float *xs = x + s * T * D;
    memcpy(xs, cls, D * sizeof(float));
    memcpy(xs + D, pe + s * P * D, P * D * sizeof(float));
    for(size_t i = 0; i < T * D; i++)
      xs[i] += pos[i];
    t->nvalid[s] = T;
  }
  for(size_t r = 0; r < n * T; r++)
    t->keyok[r] = 1.0f;
}

static void bert_embed_fwd(otf_train *t, const otf_batch *b) {
  const size_t n = b->n, T = b->seq, D = t->D;
  const float *word = PG(t, OTF_SLOT_WORD_EMBED), *pos = PG(t, OTF_SLOT_POS_EMBED),
              *type = PG(t, OTF_SLOT_TYPE_EMBED);
  for(size_t s = 0; s < n; s++) {
    size_t nv = 0;
    for(size_t j = 0; j < T; j++) {
      size_t r = s * T + j;
      float *er = t->esum + r * D;
      const float *wr = word + (size_t)b->input_ids[r] * D, *pr = pos + j * D;
      for(size_t i = 0; i < D; i++)
        er[i] = wr[i] + pr[i];
      if(type) {
        const float *tr = type + (size_t)(b->token_type_ids ? b->token_type_ids[r] : 0) * D;
        for(size_t i = 0; i < D; i++)
          er[i] += tr[i];
      }
      int ok = !b->attention_mask || b->attention_mask[r] != 0;
      t->keyok[r] = ok ? 1.0f : 0.0f;
      nv += (size_t)ok;
    }
    t->nvalid[s] = nv;
  }
  otf__layernorm_fwd(t->xs[0], t->em, t->er, t->esum, PG(t, OTF_SLOT_EMB_LN_W),
                     PG(t, OTF_SLOT_EMB_LN_B), n * T, D, t->cfg->layer_norm_eps);
}

static void attention_fwd(otf_train *t, layer_acts *a, size_t n, size_t T) {
  const size_t D = t->D, hd = t->hd, H = t->H;
  const float scale = (float)(1.0 / sqrt((double)hd));
  for(size_t s = 0; s < n; s++)
    for(size_t h = 0; h < H; h++) {
      const float *q = a->q + s * T * D + h * hd, *k = a->k + s * T * D + h * hd,
                  *v = a->v + s * T * D + h * hd;
      float *pr = a->probs + (s * H + h) * T * T, *c = a->ctx + s * T * D + h * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)T, (blasint)T,
                  (blasint)hd, scale, q, (blasint)D, k, (blasint)D, 0.0f, pr, (blasint)T);
      otf__softmax_masked(pr, t->keyok + s * T, t->nvalid[s], T);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)T, (blasint)hd,
                  (blasint)T, 1.0f, pr, (blasint)T, v, (blasint)D, 0.0f, c, (blasint)D);
    }
}

static void layer_fwd(otf_train *t, size_t L, size_t n, size_t T) {
  float *const *W = t->pl[L];
  layer_acts *a = &t->la[L];
  const size_t R = n * T, D = t->D, F = t->F;
  const double eps = t->cfg->layer_norm_eps;
  const float *x = t->xs[L];
  float *y = t->xs[L + 1];
  if(t->vit) {
    otf__layernorm_fwd(a->h1, a->m1, a->r1, x, W[OTF_SLOT_LN1_W], W[OTF_SLOT_LN1_B], R, D, eps);
    otf__linear_fwd(a->q, a->h1, W[OTF_SLOT_Q_W], W[OTF_SLOT_Q_B], R, D, D);
    otf__linear_fwd(a->k, a->h1, W[OTF_SLOT_K_W], W[OTF_SLOT_K_B], R, D, D);
    otf__linear_fwd(a->v, a->h1, W[OTF_SLOT_V_W], W[OTF_SLOT_V_B], R, D, D);
    attention_fwd(t, a, n, T);
    otf__linear_fwd(a->mid, a->ctx, W[OTF_SLOT_O_W], W[OTF_SLOT_O_B], R, D, D);
    for(size_t i = 0; i < R * D; i++)
      a->mid[i] += x[i];
    otf__layernorm_fwd(a->h2, a->m2, a->r2, a->mid, W[OTF_SLOT_LN2_W], W[OTF_SLOT_LN2_B], R, D,
                       eps);
    otf__linear_fwd(a->ffpre, a->h2, W[OTF_SLOT_FC1_W], W[OTF_SLOT_FC1_B], R, D, F);
    otf__act_fwd(t->cfg->act, a->ffact, a->ffder, a->ffpre, R * F);
    otf__linear_fwd(y, a->ffact, W[OTF_SLOT_FC2_W], W[OTF_SLOT_FC2_B], R, F, D);
    for(size_t i = 0; i < R * D; i++)
      y[i] += a->mid[i];
  } else {
    otf__linear_fwd(a->q, x, W[OTF_SLOT_Q_W], W[OTF_SLOT_Q_B], R, D, D);
    otf__linear_fwd(a->k, x, W[OTF_SLOT_K_W], W[OTF_SLOT_K_B], R, D, D);
    otf__linear_fwd(a->v, x, W[OTF_SLOT_V_W], W[OTF_SLOT_V_B], R, D, D);
    attention_fwd(t, a, n, T);
    otf__linear_fwd(a->h1, a->ctx, W[OTF_SLOT_O_W], W[OTF_SLOT_O_B], R, D, D);
    for(size_t i = 0; i < R * D; i++)
      a->h1[i] += x[i];
    otf__layernorm_fwd(a->mid, a->m1, a->r1, a->h1, W[OTF_SLOT_LN1_W], W[OTF_SLOT_LN1_B], R, D,
                       eps);
    otf__linear_fwd(a->ffpre, a->mid, W[OTF_SLOT_FC1_W], W[OTF_SLOT_FC1_B], R, D, F);
    otf__act_fwd(t->cfg->act, a->ffact, a->ffder, a->ffpre, R * F);
    otf__linear_fwd(a->h2, a->ffact, W[OTF_SLOT_FC2_W], W[OTF_SLOT_FC2_B], R, F, D);
    for(size_t i = 0; i < R * D; i++)
      a->h2[i] += a->mid[i];
    otf__layernorm_fwd(y, a->m2, a->r2, a->h2, W[OTF_SLOT_LN2_W], W[OTF_SLOT_LN2_B], R, D, eps);
  }
}

/* Head forward: gathers the rows the loss reads into hx, computes the
 * logits [M, width] and returns M (and the labels in hlab). */
static size_t head_fwd(otf_train *t, const otf_batch *b, const int64_t *labels, size_t T) {
  const size_t n = b->n, D = t->D, NL = t->NL;
  const double eps = t->cfg->layer_norm_eps;
  const float *xl = t->xs[NL];
  size_t M = 0;
  if(t->head == HEAD_CLS) {
    for(size_t s = 0; s < n; s++) {
      memcpy(t->hx + s * D, xl + s * T * D, D * sizeof(float));
      t->hrow[s] = s * T;
      t->hlab[s] = labels[s];
    }
    M = n;
    if(t->vit) {
      otf__layernorm_fwd(t->hpre, t->hm, t->hr, t->hx, PG(t, OTF_SLOT_FINAL_LN_W),
                         PG(t, OTF_SLOT_FINAL_LN_B), M, D, eps);
      otf__linear_fwd(t->logits, t->hpre, PG(t, OTF_SLOT_CLS_W), PG(t, OTF_SLOT_CLS_B), M, D,
                      t->C);
    } else {
      otf__linear_fwd(t->hact, t->hx, PG(t, OTF_SLOT_POOL_W), PG(t, OTF_SLOT_POOL_B), M, D, D);
      for(size_t i = 0; i < M * D; i++)
        t->hact[i] = tanhf(t->hact[i]);
      otf__linear_fwd(t->logits, t->hact, PG(t, OTF_SLOT_CLS_W), PG(t, OTF_SLOT_CLS_B), M, D,
                      t->C);
    }
    return M;
  }
  for(size_t r = 0; r < n * T; r++)
    if(labels[r] != OTF_TRAIN_IGNORE) {
      memcpy(t->hx + M * D, xl + r * D, D * sizeof(float));
      t->hrow[M] = r;
      t->hlab[M] = labels[r];
      M++;
    }
  if(M == 0)
    return 0;
  otf__linear_fwd(t->hpre, t->hx, PG(t, OTF_SLOT_MLM_DENSE_W), PG(t, OTF_SLOT_MLM_DENSE_B), M,
                  D, D);
  otf__act_fwd(t->cfg->act, t->hact, t->hder, t->hpre, M * D);
  otf__layernorm_fwd(t->hy, t->hm, t->hr, t->hact, PG(t, OTF_SLOT_MLM_LN_W),
                     PG(t, OTF_SLOT_MLM_LN_B), M, D, eps);
  otf__linear_fwd(t->logits, t->hy, PG(t, OTF_SLOT_MLM_DECODER_W), PG(t, OTF_SLOT_MLM_BIAS), M,
                  D, t->V);
  return M;
}

/* ---- backward ----------------------------------------------------------- */

static void attention_bwd(otf_train *t, layer_acts *a, size_t n, size_t T) {
  const size_t D = t->D, hd = t->hd, H = t->H;
  const float scale = (float)(1.0 / sqrt((double)hd));
  for(size_t s = 0; s < n; s++)
    for(size_t h = 0; h < H; h++) {
      size_t o = s * T * D + h * hd;
      const float *pr = a->probs + (s * H + h) * T * T;
      /* dP [T, T] = dC [T, hd] V^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)T, (blasint)T,
                  (blasint)hd, 1.0f, t->dctx + o, (blasint)D, a->v + o, (blasint)D, 0.0f,
                  t->dsc, (blasint)T);
      /* dV [T, hd] = P^T dC */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)T, (blasint)hd,
                  (blasint)T, 1.0f, pr, (blasint)T, t->dctx + o, (blasint)D, 0.0f, t->dv + o,
                  (blasint)D);
      otf__softmax_bwd(t->dsc, pr, T);
      /* dQ = scale dS K; dK = scale dS^T Q */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)T, (blasint)hd,
                  (blasint)T, scale, t->dsc, (blasint)T, a->k + o, (blasint)D, 0.0f,
                  t->dq + o, (blasint)D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)T, (blasint)hd,
                  (blasint)T, scale, t->dsc, (blasint)T, a->q + o, (blasint)D, 0.0f,
                  t->dk + o, (blasint)D);
    }
}

/* dx holds the gradient of the layer's output; leaves that of its input. */
static void layer_bwd(otf_train *t, size_t L, size_t n, size_t T) {
  float *const *W = t->pl[L];
  float *const *G = t->gl[L];
  layer_acts *a = &t->la[L];
  const size_t R = n * T, D = t->D, F = t->F;
  const float *x = t->xs[L];
  float *dx = t->dx, *dA = t->dA;
  const float *qkv_in = t->vit ? a->h1 : x;
  const float *fc1_in = t->vit ? a->h2 : a->mid;
  if(!t->vit) /* through LN2: dx becomes the gradient of s2 */
    otf__layernorm_bwd(dx, G[OTF_SLOT_LN2_W], G[OTF_SLOT_LN2_B], dx, a->h2, a->m2, a->r2,
                       W[OTF_SLOT_LN2_W], R, D);
  /* FFN: out = mid + fc2(act(fc1(fc1_in))) */
  otf__linear_bwd(t->dff, G[OTF_SLOT_FC2_W], G[OTF_SLOT_FC2_B], dx, a->ffact, W[OTF_SLOT_FC2_W],
                  R, F, D, 0);
  otf__act_bwd(t->dff, t->dff, a->ffder, R * F);
  otf__linear_bwd(dA, G[OTF_SLOT_FC1_W], G[OTF_SLOT_FC1_B], t->dff, fc1_in, W[OTF_SLOT_FC1_W], R,
                  D, F, 0);
  if(t->vit) /* fc1_in = LN2(mid) */
    otf__layernorm_bwd(dA, G[OTF_SLOT_LN2_W], G[OTF_SLOT_LN2_B], dA, a->mid, a->m2, a->r2,
                       W[OTF_SLOT_LN2_W], R, D);
  for(size_t i = 0; i < R * D; i++)
    dx[i] += dA[i]; /* gradient of mid */
  if(!t->vit) /* mid = LN1(s1): dx becomes the gradient of s1 */
    otf__layernorm_bwd(dx, G[OTF_SLOT_LN1_W], G[OTF_SLOT_LN1_B], dx, a->h1, a->m1, a->r1,
                       W[OTF_SLOT_LN1_W], R, D);
  /* attention: mid (ViT) / s1 (BERT) = x + O(ctx) */
  otf__linear_bwd(t->dctx, G[OTF_SLOT_O_W], G[OTF_SLOT_O_B], dx, a->ctx, W[OTF_SLOT_O_W], R, D,
                  D, 0);
  attention_bwd(t, a, n, T);
  otf__linear_bwd(dA, G[OTF_SLOT_Q_W], G[OTF_SLOT_Q_B], t->dq, qkv_in, W[OTF_SLOT_Q_W], R, D, D,
                  0);
  otf__linear_bwd(dA, G[OTF_SLOT_K_W], G[OTF_SLOT_K_B], t->dk, qkv_in, W[OTF_SLOT_K_W], R, D, D,
                  1);
  otf__linear_bwd(dA, G[OTF_SLOT_V_W], G[OTF_SLOT_V_B], t->dv, qkv_in, W[OTF_SLOT_V_W], R, D, D,
                  1);
  if(t->vit) /* qkv_in = LN1(x) */
    otf__layernorm_bwd(dA, G[OTF_SLOT_LN1_W], G[OTF_SLOT_LN1_B], dA, x, a->m1, a->r1,
                       W[OTF_SLOT_LN1_W], R, D);
  for(size_t i = 0; i < R * D; i++)
    dx[i] += dA[i];
}

/* dlogits are in t->logits [M, width]; leaves the gradient of the last
 * layer's output in dx. */
static void head_bwd(otf_train *t, size_t M, size_t n, size_t T) {
  const size_t D = t->D;
  float *dh = t->dh;
  memset(t->dx, 0, n * T * D * sizeof(float));
  if(M == 0)
    return;
  if(t->head == HEAD_CLS) {
    const float *in = t->vit ? t->hpre : t->hact;
    otf__linear_bwd(dh, GG(t, OTF_SLOT_CLS_W), GG(t, OTF_SLOT_CLS_B), t->logits, in,
                    PG(t, OTF_SLOT_CLS_W), M, D, t->C, 0);
    if(t->vit) {
      otf__layernorm_bwd(dh, GG(t, OTF_SLOT_FINAL_LN_W), GG(t, OTF_SLOT_FINAL_LN_B), dh, t->hx,
                         t->hm, t->hr, PG(t, OTF_SLOT_FINAL_LN_W), M, D);
    } else {
      for(size_t i = 0; i < M * D; i++)
        dh[i] *= 1.0f - t->hact[i] * t->hact[i];
      otf__linear_bwd(t->dA, GG(t, OTF_SLOT_POOL_W), GG(t, OTF_SLOT_POOL_B), dh, t->hx,
                      PG(t, OTF_SLOT_POOL_W), M, D, D, 0);
      dh = t->dA;
    }
  } else {
    otf__linear_bwd(dh, GG(t, OTF_SLOT_MLM_DECODER_W), GG(t, OTF_SLOT_MLM_BIAS), t->logits,
                    t->hy, PG(t, OTF_SLOT_MLM_DECODER_W), M, D, t->V, 0);
    otf__layernorm_bwd(dh, GG(t, OTF_SLOT_MLM_LN_W), GG(t, OTF_SLOT_MLM_LN_B), dh, t->hact,
                       t->hm, t->hr, PG(t, OTF_SLOT_MLM_LN_W), M, D);
    otf__act_bwd(dh, dh, t->hder, M * D);
    otf__linear_bwd(t->dA, GG(t, OTF_SLOT_MLM_DENSE_W), GG(t, OTF_SLOT_MLM_DENSE_B), dh, t->hx,
                    PG(t, OTF_SLOT_MLM_DENSE_W), M, D, D, 0);
    dh = t->dA;
  }
  for(size_t i = 0; i < M; i++)
    memcpy(t->dx + t->hrow[i] * D, dh + i * D, D * sizeof(float));
}

static void embed_bwd(otf_train *t, const otf_batch *b, size_t T) {
  const size_t n = b->n, D = t->D;
  float *dx = t->dx;
  if(t->vit) {
    const size_t P = t->P;
    float *dpos = GG(t, OTF_SLOT_POS_EMBED), *dcls = GG(t, OTF_SLOT_CLS_TOKEN);
    for(size_t s = 0; s < n; s++) {
      const float *ds = dx + s * T * D;
      for(size_t i = 0; i < T * D; i++)
        dpos[i] += ds[i];
      for(size_t i = 0; i < D; i++)
        dcls[i] += ds[i];
      memcpy(t->dA + s * P * D, ds + D, P * D * sizeof(float));
    }
    otf__linear_bwd(NULL, GG(t, OTF_SLOT_PATCH_W), GG(t, OTF_SLOT_PATCH_B), t->dA, t->unf,
                    PG(t, OTF_SLOT_PATCH_W), n * P, t->K, D, 0);
    return;
  }
  otf__layernorm_bwd(dx, GG(t, OTF_SLOT_EMB_LN_W), GG(t, OTF_SLOT_EMB_LN_B), dx, t->esum, t->em,
                     t->er, PG(t, OTF_SLOT_EMB_LN_W), n * T, D);
  float *dword = GG(t, OTF_SLOT_WORD_EMBED), *dpos = GG(t, OTF_SLOT_POS_EMBED),
        *dtype = GG(t, OTF_SLOT_TYPE_EMBED);
  const int64_t pad = t->cfg->pad_token_id;
  for(size_t s = 0; s < n; s++)
    for(size_t j = 0; j < T; j++) {
      size_t r = s * T + j;
      const float *dr = dx + r * D;
      int64_t id = b->input_ids[r];
      if(id != pad) { /* nn.Embedding(padding_idx): no gradient for that row */
        float *w = dword + (size_t)id * D;
        for(size_t i = 0; i < D; i++)
          w[i] += dr[i];
      }
      float *pp = dpos + j * D;
      for(size_t i = 0; i < D; i++)
        pp[i] += dr[i];
      if(dtype) {
        float *tp = dtype + (size_t)(b->token_type_ids ? b->token_type_ids[r] : 0) * D;
        for(size_t i = 0; i < D; i++)
          tp[i] += dr[i];
      }
    }
}

static otf_status validate(const otf_train *t, const otf_batch *b, const int64_t *labels,
                           otf_error *err) {
  const otf_model_config *cfg = t->cfg;
  if(b->n == 0 || b->n > t->max_batch)
    return OTF_FAIL(err, OTF_E_INVAL, "n", "batch of %zu samples; the plan allows 1 to %zu",
                    b->n, t->max_batch);
  if(!labels)
    return OTF_FAIL(err, OTF_E_INVAL, "labels", "training needs labels");
  if(t->vit) {
    if(!b->pixel_values)
      return OTF_FAIL(err, OTF_E_INVAL, "pixel_values", "ViT needs pixel_values");
  } else {
    if(!b->input_ids)
      return OTF_FAIL(err, OTF_E_INVAL, "input_ids", "BERT needs input_ids");
    if(b->seq == 0 || b->seq > t->max_tok)
      return OTF_FAIL(err, OTF_E_INVAL, "seq", "sequence length %zu; the plan allows 1 to %zu",
                      b->seq, t->max_tok);
    otf_status rc = otf__batch_check_tokens(cfg, b, PG(t, OTF_SLOT_TYPE_EMBED) != NULL, err);
    if(rc != OTF_OK)
      return rc;
  }
  size_t nl = t->head == HEAD_MLM ? b->n * b->seq : b->n;
  int64_t hi = t->head == HEAD_MLM ? (int64_t)t->V : (int64_t)t->C;
  for(size_t i = 0; i < nl; i++) {
    int64_t y = labels[i];
    if((y < 0 || y >= hi) && !(t->head == HEAD_MLM && y == OTF_TRAIN_IGNORE))
      return OTF_FAIL(err, OTF_E_INVAL, "labels", "labels[%zu] = %lld is outside [0, %lld)%s",
                      i, (long long)y, (long long)hi,
                      t->head == HEAD_MLM ? " and not -100" : "");
  }
  return OTF_OK;
}

otf_status otf_train_step(otf_train *t, const otf_batch *b, const int64_t *labels, int grads,
                          otf_train_stats *st, otf_error *err) {
  if(!t || !b || !st)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "training state, batch and stats are required");
  otf_status rc = validate(t, b, labels, err);
  if(rc != OTF_OK)
    return rc;
  const size_t n = b->n, T = t->vit ? t->P + 1 : b->seq;
  if(t->vit)
    vit_embed_fwd(t, b);
  else
    bert_embed_fwd(t, b);
  for(size_t L = 0; L < t->NL; L++)
    layer_fwd(t, L, n, T);
  size_t M = head_fwd(t, b, labels, T);
  size_t width = t->head == HEAD_MLM ? t->V : t->C, scored = 0, correct = 0;
  double total = M ? otf__xent(NULL, &scored, &correct, t->logits, t->hlab, M, width,
                               OTF_TRAIN_IGNORE, 0.0f)
                   : 0.0;
  st->loss = scored ? total / (double)scored : 0.0;
  st->scored = scored;
  st->correct = correct;
  if(!grads)
    return OTF_OK;
  memset(t->gblock, 0, t->numel * sizeof(float));
  if(scored == 0)
    return OTF_OK;
  size_t s2 = 0, c2 = 0;
  (void)otf__xent(t->logits, &s2, &c2, t->logits, t->hlab, M, width,
                  OTF_TRAIN_IGNORE, (float)(1.0 / (double)scored));
  head_bwd(t, M, n, T);
  for(size_t L = t->NL; L-- > 0;)
    layer_bwd(t, L, n, T);
  embed_bwd(t, b, T);
  return OTF_OK;
}

static otf_status write_weights(const otf_train *t, const otf_model *src, const char *path,
                                otf_error *err) {
  const otf_ckpt *ck = otf_model_ckpt(src);
  size_t nck = otf_ckpt_count(ck);
  otf_st_out *outs = otf_calloc(nck + t->nparams + 1, sizeof(*outs));
  if(!outs)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to write weights");
  size_t k = 0;
  for(size_t i = 0; i < t->nparams; i++) {
    const otf_train_param *p = &t->params[i];
    outs[k].name = p->name;
    outs[k].dtype = OTF_DT_F32;
    outs[k].rank = p->rank;
    memcpy(outs[k].shape, p->shape, sizeof(p->shape));
    outs[k].data = t->pblock + p->offset;
    k++;
  }
  for(size_t i = 0; i < nck; i++) {
    const otf_st_tensor *st = otf_ckpt_at(ck, i);
    if(otf_train_param_find(t, st->name))
      continue;
    outs[k].name = st->name;
    outs[k].rank = st->rank;
    memcpy(outs[k].shape, st->shape, sizeof(st->shape));
    outs[k].dtype = st->dtype;
    outs[k].data = st->data;
    for(size_t j = 0; j < t->ntied; j++)
      if(!strcmp(t->tied[j].name, st->name)) { /* a stored tie: the trained values */
        outs[k].dtype = OTF_DT_F32;
        outs[k].data = t->pblock + t->params[t->tied[j].param].offset;
      }
    k++;
  }
  const char *meta[] = {"producer", "otfuse finetune"};
  otf_status rc = otf_st_write(path, outs, k, meta, 1, err);
  otf_free(outs);
  return rc;
}

otf_status otf_train_save(const otf_train *t, const otf_model *src, const char *out_dir,
                          const char *provenance_json, otf_error *err) {
  if(!t || !src || !out_dir)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "state, model and output folder are required");
  char tmp[2048], p[4096];
  otf_status rc = otf_fs_partial_dir(out_dir, tmp, err);
  if(rc != OTF_OK)
    return rc;
  json_t *prov = NULL;
  if(provenance_json) {
    json_error_t je;
    prov = json_loads(provenance_json, JSON_REJECT_DUPLICATES, &je);
    if(!prov || !json_is_object(prov)) {
      json_decref(prov);
      otf_fs_remove_flat(tmp);
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "provenance must be a JSON object");
    }
  }
  snprintf(p, sizeof(p), "%s/model.safetensors", tmp);
  rc = write_weights(t, src, p, err);
  if(rc != OTF_OK)
    goto fail;
  snprintf(p, sizeof(p), "%s/config.json", otf_model_dir(src));
  json_error_t je;
  json_t *cfg = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
  if(!cfg || !json_is_object(cfg)) {
    json_decref(cfg);
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", p, cfg ? "not an object" : je.text);
    goto fail;
  }
  json_object_set_new(cfg, "torch_dtype", json_string("float32"));
  if(prov) { /* a model that already carries provenance (a fusion) keeps it as the source */
    json_t *old = json_object_get(cfg, "otfuse");
    if(old && !json_object_get(prov, "source"))
      json_object_set(prov, "source", old);
    json_object_set(cfg, "otfuse", prov);
  }
  char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(cfg);
  snprintf(p, sizeof(p), "%s/config.json", tmp);
  rc = text ? otf_fs_write_text(p, text, err) : OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory");
  free(text);
  if(rc != OTF_OK)
    goto fail;
  rc = otf_fs_copy_side_files(otf_model_dir(src), tmp, NULL, err);
  if(rc != OTF_OK)
    goto fail;
  rmdir(out_dir);
  if(rename(tmp, out_dir) != 0) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", out_dir, strerror(errno));
    goto fail;
  }
  json_decref(prov);
  return OTF_OK;
fail:
  json_decref(prov);
  otf_fs_remove_flat(tmp);
  return rc;
}
