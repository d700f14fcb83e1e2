#include "tests/support/rewrite.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"

#define NAME_CAP 512

static const otf_tensor_spec *part_specs(const otf_arch *a, int part, size_t *n) {
  *n = part == 0 ? a->n_pre : part == 1 ? a->n_layer : a->n_post;
  return part == 0 ? a->pre : part == 1 ? a->layer : a->post;
}

/* A tied spec's tensor is kept only when the file stores it under its own
 * name (or alias); otf_model_tensor would otherwise hand back its target. */
static int stored_as_itself(const otf_st_tensor *t, const otf_tensor_spec *s, int layer) {
  char name[NAME_CAP], alias[NAME_CAP];
  if(otf_arch_name(name, sizeof(name), s, layer, 0) >= 0 && !strcmp(t->name, name))
    return 1;
  return s->alias && otf_arch_name(alias, sizeof(alias), s, layer, 1) >= 0 &&
         !strcmp(t->name, alias);
}

otf_status tu_rewrite_weights(const otf_model *m, const char *dst_dir, tu_tensor_fn fn,
                              void *ctx, otf_error *err) {
  const otf_model_config *cfg = otf_model_cfg(m);
  const otf_arch *a = otf_model_arch(m);
  size_t cap = a->n_pre + a->n_post + (size_t)cfg->num_layers * a->n_layer, nout = 0;
  otf_st_out *outs = otf_calloc(cap ? cap : 1, sizeof(*outs));
  float **owned = otf_calloc(cap ? cap : 1, sizeof(*owned));
  otf_status rc = OTF_OK;
  char path[4096];
  if(!outs || !owned) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the tensor list");
    goto done;
  }
  for(int part = 0; part < 3; part++) {
    size_t ns;
    const otf_tensor_spec *specs = part_specs(a, part, &ns);
    int nl = part == 1 ? cfg->num_layers : 1;
    for(int layer = 0; layer < nl; layer++) {
      int lay = part == 1 ? layer : -1;
      for(size_t k = 0; k < ns; k++) {
        const otf_tensor_spec *s = &specs[k];
        if(s->role == OTF_ROLE_MERGE)
          continue;
        const otf_st_tensor *t = otf_model_tensor(m, s, lay);
        if(!t || ((s->flags & OTF_TF_TIED) && !stored_as_itself(t, s, lay)))
          continue;
        if(nout >= cap) {
          rc = OTF_FAIL(err, OTF_E_INTERNAL, NULL, "more tensors than table entries");
          goto done;
        }
        otf_st_out *o = &outs[nout];
        if(s->role == OTF_ROLE_BUFFER) {
          o->name = t->name;
          o->dtype = t->dtype;
          o->rank = t->rank;
          memcpy(o->shape, t->shape, sizeof(o->shape));
          o->data = t->data; /* the mapping lives until the model is closed */
        } else {
          rc = fn(ctx, o, &owned[nout], t, s, lay, err);
          if(rc != OTF_OK)
            goto done;
        }
        nout++;
      }
    }
  }
  if(mkdir(dst_dir, 0777) != 0 && errno != EEXIST) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot create %s: %s", dst_dir, strerror(errno));
    goto done;
  }
  int len = snprintf(path, sizeof(path), "%s/model.safetensors", dst_dir);
  if(len < 0 || (size_t)len >= sizeof(path)) {
    rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "path too long");
    goto done;
  }
  rc = otf_st_write(path, outs, nout, NULL, 0, err);
done:
  if(owned)
    for(size_t k = 0; k < cap; k++)
      otf_free(owned[k]);
  otf_free(owned);
  otf_free(outs);
  return rc;
}
