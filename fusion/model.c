#include "fusion/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

struct otf_model {
  char *dir;
  otf_model_config cfg;
  const otf_arch *arch;
  otf_ckpt *ckpt;
  const otf_st_tensor **resolved; /* per (spec, layer) entry; NULL if absent */
  size_t n_entries;
  uint64_t params;
  char **warnings;
  size_t nwarn;
};

/* Entries: pre specs, then num_layers copies of the layer specs, then post. */
static size_t entry_count(const otf_arch *a, int layers) {
  return a->n_pre + (size_t)layers * a->n_layer + a->n_post;
}

static const otf_tensor_spec *entry_spec(const otf_arch *a, int layers, size_t e, int *layer) {
  if(e < a->n_pre) {
    *layer = -1;
    return &a->pre[e];
  }
  e -= a->n_pre;
  if(e < (size_t)layers * a->n_layer) {
    *layer = (int)(e / a->n_layer);
    return &a->layer[e % a->n_layer];
  }
  *layer = -1;
  return &a->post[e - (size_t)layers * a->n_layer];
}

static size_t entry_of(const otf_model *m, const otf_tensor_spec *spec, int layer) {
  const otf_arch *a = m->arch;
  if(spec >= a->pre && spec < a->pre + a->n_pre)
    return (size_t)(spec - a->pre);
  if(spec >= a->layer && spec < a->layer + a->n_layer && layer >= 0 &&
     layer < m->cfg.num_layers)
    return a->n_pre + (size_t)layer * a->n_layer + (size_t)(spec - a->layer);
  if(spec >= a->post && spec < a->post + a->n_post)
    return a->n_pre + (size_t)m->cfg.num_layers * a->n_layer + (size_t)(spec - a->post);
  return (size_t)-1;
}

static int is_float(otf_dtype dt) {
  return dt == OTF_DT_F32 || dt == OTF_DT_F16 || dt == OTF_DT_BF16 || dt == OTF_DT_F64;
}

/* Appends "name" to a comma-separated list in buf, counting what does not
 * fit as "+N more". */
typedef struct namelist {
  char buf[160];
  size_t shown, more;
} namelist;

static void namelist_add(namelist *l, const char *fmt, const char *name, const char *extra) {
  char item[160];
  snprintf(item, sizeof(item), fmt, name, extra ? extra : "");
  size_t used = strlen(l->buf), len = strlen(item);
  if(l->shown < 3 && used + len + 3 < sizeof(l->buf)) {
    if(l->shown) {
      memcpy(l->buf + used, ", ", 2);
      used += 2;
    }
    memcpy(l->buf + used, item, len + 1);
    l->shown++;
  } else {
    l->more++;
  }
}

static void namelist_fmt(char *out, size_t cap, const char *what, const namelist *l) {
  if(l->more)
    snprintf(out, cap, "%s %s (+%zu more)", what, l->buf, l->more);
  else
    snprintf(out, cap, "%s %s", what, l->buf);
}

static void shape_str(char *out, size_t cap, const uint64_t *shape, int rank) {
  size_t used = (size_t)snprintf(out, cap, "[");
  for(int k = 0; k < rank && used < cap; k++)
    used += (size_t)snprintf(out + used, cap - used, "%s%llu", k ? "," : "",
                             (unsigned long long)shape[k]);
  if(used < cap)
    snprintf(out + used, cap - used, "]");
}

static otf_status add_warning(otf_model *m, const char *text) {
  char **w = otf_realloc(m->warnings, (m->nwarn + 1) * sizeof(char *));
  if(!w)
    return OTF_E_NOMEM;
  m->warnings = w;
  size_t len = strlen(text);
  m->warnings[m->nwarn] = otf_malloc(len + 1);
  if(!m->warnings[m->nwarn])
    return OTF_E_NOMEM;
  memcpy(m->warnings[m->nwarn++], text, len + 1);
  return OTF_OK;
}

/* Resolves every table entry against the checkpoint and checks dtypes and
 * shapes; collects what is missing, misshapen or unexpected. */
static otf_status check_tensors(otf_model *m, unsigned flags, otf_error *err) {
  const otf_arch *a = m->arch;
  size_t count = otf_ckpt_count(m->ckpt);
  unsigned char *used = otf_calloc(count ? count : 1, 1);
  if(!used)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to check %s", m->dir);
  namelist missing = {{0}, 0, 0}, bad = {{0}, 0, 0}, extra = {{0}, 0, 0};
  otf_status rc = OTF_OK;
  char name[512];
  for(size_t e = 0; e < m->n_entries; e++) {
    int layer;
    const otf_tensor_spec *s = entry_spec(a, m->cfg.num_layers, e, &layer);
    if(s->role == OTF_ROLE_MERGE)
      continue;
    if(otf_arch_name(name, sizeof(name), s, layer, 0) < 0)
      continue;
    const otf_st_tensor *t = otf_ckpt_find(m->ckpt, name);
    char alias[512];
    if(!t && s->alias && otf_arch_name(alias, sizeof(alias), s, layer, 1) >= 0)
      t = otf_ckpt_find(m->ckpt, alias);
    if(!t) {
      if(s->flags & OTF_TF_TIED) {
        if(!otf_ckpt_find(m->ckpt, s->tied_to))
          namelist_add(&missing, "%s%s", name, " (and the tensor it is tied to)");
      } else if(!(s->flags & OTF_TF_OPTIONAL)) {
        namelist_add(&missing, "%s%s", name, NULL);
      }
      continue;
    }
    used[t - otf_ckpt_at(m->ckpt, 0)] = 1;
    m->resolved[e] = t;
    if(s->role == OTF_ROLE_BUFFER)
      continue; /* shape depends on the exporter's version; carried as is */
    uint64_t want[OTF_MAX_TENSOR_RANK];
    int rank;
    otf_arch_shape(s, &m->cfg, want, &rank);
    int ok = is_float(t->dtype) && t->rank == rank;
    for(int k = 0; ok && k < rank; k++)
      ok = t->shape[k] == want[k];
    if(!ok) {
      char desc[160], ws[48], gs[48];
      shape_str(ws, sizeof(ws), want, rank);
      shape_str(gs, sizeof(gs), t->shape, t->rank);
      snprintf(desc, sizeof(desc), " %s %s, config implies %s", otf_dtype_name(t->dtype), gs,
               ws);
      namelist_add(&bad, "%s%s", t->name, desc);
      continue;
    }
    m->params += t->numel;
  }
  for(size_t k = 0; k < count; k++) {
    if(used[k])
      continue;
    const char *n = otf_ckpt_at(m->ckpt, k)->name;
    if(flags & OTF_MODEL_LENIENT) {
      char w[600];
      snprintf(w, sizeof(w), "unexpected tensor %s (not part of %s)", n, a->name);
      if(add_warning(m, w) != OTF_OK) {
        rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for warnings");
        goto done;
      }
    } else {
      namelist_add(&extra, "%s%s", n, NULL);
    }
  }
  char part[3][240];
  part[0][0] = part[1][0] = part[2][0] = 0;
  if(missing.shown)
    namelist_fmt(part[0], sizeof(part[0]), "missing", &missing);
  if(bad.shown)
    namelist_fmt(part[1], sizeof(part[1]), "wrong dtype/shape:", &bad);
  if(extra.shown)
    namelist_fmt(part[2], sizeof(part[2]), "unexpected", &extra);
  if(missing.shown || bad.shown || extra.shown)
    rc = OTF_FAIL(err, OTF_E_FORMAT, part[0][0] ? "missing" : bad.shown ? "shape" : "unexpected",
                  "%s is not a valid %s: %s%s%s%s%s", m->dir, a->name, part[0],
                  part[0][0] && (part[1][0] || part[2][0]) ? "; " : "", part[1],
                  part[1][0] && part[2][0] ? "; " : "", part[2]);
done:
  otf_free(used);
  return rc;
}

otf_status otf_model_open(otf_model **out, const char *dir, unsigned flags,
                          otf_error *err) {
  *out = NULL;
  otf_model *m = otf_calloc(1, sizeof(*m));
  size_t dl = strlen(dir);
  char *cfgpath = otf_malloc(dl + 16);
  otf_status rc;
  if(!m || !cfgpath) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", dir);
    goto fail;
  }
  m->dir = otf_malloc(dl + 1);
  if(!m->dir) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", dir);
    goto fail;
  }
  memcpy(m->dir, dir, dl + 1);
  snprintf(cfgpath, dl + 16, "%s/config.json", dir);
  rc = otf_model_config_load(&m->cfg, cfgpath, err);
  if(rc != OTF_OK)
    goto fail;
  m->arch = otf_arch_find(m->cfg.architecture);
  if(!m->arch) {
    rc = OTF_FAIL(err, OTF_E_UNSUPPORTED, "/architectures",
                  "%s: architecture %s is not supported (ViTForImageClassification, "
                  "ViTModel, BertModel, BertForSequenceClassification, BertForMaskedLM)",
                  dir, m->cfg.architecture);
    goto fail;
  }
  if(m->arch->family != m->cfg.family) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, "/architectures",
                  "%s: architecture %s does not match model_type %s", dir,
                  m->cfg.architecture, m->cfg.model_type);
    goto fail;
  }
  rc = otf_ckpt_open(&m->ckpt, dir, err);
  if(rc != OTF_OK)
    goto fail;
  m->n_entries = entry_count(m->arch, m->cfg.num_layers);
  m->resolved = otf_calloc(m->n_entries, sizeof(*m->resolved));
  if(!m->resolved) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to index %s", dir);
    goto fail;
  }
  rc = check_tensors(m, flags, err);
  if(rc != OTF_OK)
    goto fail;
  otf_free(cfgpath);
  *out = m;
  return OTF_OK;
fail:
  otf_free(cfgpath);
  otf_model_close(m);
  return rc;
}

void otf_model_close(otf_model *m) {
  if(!m)
    return;
  otf_model_config_free(&m->cfg);
  otf_ckpt_close(m->ckpt);
  otf_free(m->resolved);
  for(size_t k = 0; k < m->nwarn; k++)
    otf_free(m->warnings[k]);
  otf_free(m->warnings);
  otf_free(m->dir);
  otf_free(m);
}

const otf_model_config *otf_model_cfg(const otf_model *m) { return &m->cfg; }
const otf_arch *otf_model_arch(const otf_model *m) { return m->arch; }
const otf_ckpt *otf_model_ckpt(const otf_model *m) { return m->ckpt; }
const char *otf_model_dir(const otf_model *m) { return m->dir; }
uint64_t otf_model_param_count(const otf_model *m) { return m->params; }
size_t otf_model_warning_count(const otf_model *m) { return m->nwarn; }

const char *otf_model_warning(const otf_model *m, size_t index) {
  return index < m->nwarn ? m->warnings[index] : NULL;
}

const otf_st_tensor *otf_model_tensor(const otf_model *m, const otf_tensor_spec *spec,
                                      int layer) {
  size_t e = entry_of(m, spec, layer);
  if(e == (size_t)-1 || spec->role == OTF_ROLE_MERGE)
    return NULL;
  if(m->resolved[e])
    return m->resolved[e];
  if(spec->flags & OTF_TF_TIED)
    return otf_ckpt_find(m->ckpt, spec->tied_to);
  return NULL;
}

uint64_t otf_model_count_nonfinite(const otf_model *m, const char **first) {
  enum { CHUNK = 4096 };
  float buf[CHUNK];
  uint64_t bad = 0;
  if(first)
    *first = NULL;
  for(size_t k = 0; k < otf_ckpt_count(m->ckpt); k++) {
    const otf_st_tensor *t = otf_ckpt_at(m->ckpt, k);
    if(!is_float(t->dtype))
      continue;
    uint64_t before = bad;
    size_t es = otf_dtype_size(t->dtype);
    for(uint64_t off = 0; off < t->numel; off += CHUNK) {
      /* A view of the next chunk, converted with the reader's decoder. */
      otf_st_tensor view = *t;
      view.numel = t->numel - off < CHUNK ? t->numel - off : CHUNK;
      view.data = (const unsigned char *)t->data + off * es;
      if(otf_st_read_f32(buf, &view, NULL) != OTF_OK)
        break;
      for(uint64_t j = 0; j < view.numel; j++)
        bad += !isfinite(buf[j]);
    }
    if(bad > before && first && !*first)
      *first = t->name;
  }
  return bad;
}

/* ---- weights for the forward pass ----------------------------------- */

static int in_place(const otf_st_tensor *t) {
  return t->dtype == OTF_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
}

/* Tensors shared by two slots (a tied decoder and its embedding table)
 * are converted once: returns the index of an earlier entry with the same
 * tensor, or e itself. */
static size_t first_use(const otf_st_tensor **seen, size_t e) {
  for(size_t k = 0; k < e; k++)
    if(seen[k] == seen[e])
      return k;
  return e;
}

otf_status otf_weights_load(otf_weights *w, const otf_model *m, otf_error *err) {
  memset(w, 0, sizeof(*w));
  int layers = m->cfg.num_layers;
  w->num_layers = layers;
  const otf_st_tensor **seen = otf_calloc(m->n_entries, sizeof(*seen));
  const float **ptr = otf_calloc(m->n_entries, sizeof(*ptr));
  unsigned char *block = NULL;
  otf_status rc = OTF_OK;
  if(!seen || !ptr) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to index weights");
    goto done;
  }
  /* First pass: which tensors each slot reads, and how many floats need
   * converting (each distinct tensor once). */
  size_t convert = 0;
  for(size_t e = 0; e < m->n_entries; e++) {
    int layer;
    const otf_tensor_spec *s = entry_spec(m->arch, layers, e, &layer);
    if(s->slot == OTF_SLOT_NONE || s->role == OTF_ROLE_MERGE || s->role == OTF_ROLE_BUFFER)
      continue;
    seen[e] = otf_model_tensor(m, s, layer);
    if(seen[e] && !in_place(seen[e]) && first_use(seen, e) == e)
      convert += (size_t)seen[e]->numel;
  }
  size_t lbytes = (size_t)layers * sizeof(*w->l);
  size_t lpad = (lbytes + 63) & ~(size_t)63;
  block = otf_malloc_aligned(lpad + convert * sizeof(float));
  if(!block) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for %zu converted weights", convert);
    goto done;
  }
  memset(block, 0, lbytes);
  w->l = (const float *(*)[OTF_SLOT_COUNT])block;
  float *next = (float *)(block + lpad);
  for(size_t e = 0; e < m->n_entries; e++) {
    const otf_st_tensor *t = seen[e];
    if(!t)
      continue;
    int layer;
    const otf_tensor_spec *s = entry_spec(m->arch, layers, e, &layer);
    size_t f = first_use(seen, e);
    if(f != e) {
      ptr[e] = ptr[f];
    } else if(in_place(t)) {
      ptr[e] = t->data;
    } else {
      rc = otf_st_read_f32(next, t, err);
      if(rc != OTF_OK)
        goto done;
      ptr[e] = next;
      next += t->numel;
    }
    if(layer >= 0)
      w->l[layer][s->slot] = ptr[e];
    else
      w->g[s->slot] = ptr[e];
  }
  w->owned = block;
  block = NULL;
done:
  otf_free(block);
  otf_free(seen);
  otf_free(ptr);
  if(rc != OTF_OK)
    memset(w, 0, sizeof(*w));
  return rc;
}

void otf_weights_free(otf_weights *w) {
  otf_free(w->owned);
  memset(w, 0, sizeof(*w));
}
