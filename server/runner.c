/* One fusion job, start to finish, on a worker thread: see runner.h. */
#include "fusion/fsutil.h"
#include "server/runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/jobspec.h"
#include "common/alloc.h"
#include "fusion/fuse.h"
#include "fusion/eval.h"
#include "fusion/hfconfig.h"
#include "fusion/model.h"
#include "fusion/train_job.h"
#include "storage/manifest.h"

/* Fractions of the whole job given to each stage (fetching is instant for
 * file:// models; the fusion reports its own fraction within its share). */
#define F_FETCH 0.05
#define F_FUSE 0.90

typedef struct run_ctx {
  const otf_run_io *io;
  double base, span; /* the share the current step maps its [0, 1] into */
  const char *stage;
} run_ctx;

static int xfer_progress(void *ctx, uint64_t done, uint64_t total) {
  run_ctx *r = ctx;
  if(r->io->progress && total)
    r->io->progress(r->io->ctx, r->stage, r->base + r->span * ((double)done / (double)total));
  return r->io->cancel && *r->io->cancel;
}

static void fuse_progress(void *ctx, const char *stage, double fraction) {
  run_ctx *r = ctx;
  if(r->io->progress)
    r->io->progress(r->io->ctx, stage, r->base + r->span * fraction);
}

static void ft_progress(void *ctx, uint64_t step, uint64_t steps) {
  run_ctx *r = ctx;
  if(r->io->progress && steps)
    r->io->progress(r->io->ctx, "finetuning", r->base + r->span * ((double)step / (double)steps));
}

static void ft_metrics(void *ctx, const char *json) {
  run_ctx *r = ctx;
  if(r->io->event)
    r->io->event(r->io->ctx, "finetune", json);
}

/* Accuracy and loss of the model in dir on a labelled file, as JSON. */
static json_t *evaluate(const char *dir, const char *data, otf_error *err) {
  otf_model *m = NULL;
  otf_eval_result res;
  if(otf_model_open(&m, dir, 0, err) != OTF_OK)
    return NULL;
  otf_status rc = otf_eval(&res, m, data, 0, err);
  otf_model_close(m);
  if(rc != OTF_OK)
    return NULL;
  return json_pack("{s:f, s:f, s:I}", "accuracy", res.accuracy, "loss", res.loss, "n",
                   (json_int_t)res.n);
}

/* The finetuning stage: fused_dir (the one-shot fusion) is trained into
 * out_dir; with eval data, parents, fusion and finetuned model are all
 * scored on it. *summary gains "finetune" and "evaluation"; the same goes
 * to out_dir/finetune_report.json. */
static otf_status finetune_stage(const otf_jobspec *spec, char *const *parents,
                                 const char *fused_dir, const char *data, const char *eval,
                                 const char *out_dir, run_ctx *rc_, json_t *summary,
                                 otf_error *err) {
  const otf_run_io *io = rc_->io;
  json_t *evaluation = NULL;
  otf_status rc = OTF_OK;
  if(eval) {
    if(io->progress)
      io->progress(io->ctx, "evaluating", rc_->base);
    json_t *ps = json_array();
    evaluation = json_pack("{s:o}", "parents", ps);
    for(size_t i = 0; i < spec->n_models && rc == OTF_OK; i++) {
      json_t *r = evaluate(parents[i], eval, err);
      if(!r)
        rc = err->code != OTF_OK ? err->code : OTF_E_NOMEM;
      else
        json_array_append_new(ps, r);
    }
    json_t *f = rc == OTF_OK ? evaluate(fused_dir, eval, err) : NULL;
    if(rc == OTF_OK && !f)
      rc = err->code != OTF_OK ? err->code : OTF_E_NOMEM;
    if(f)
      json_object_set_new(evaluation, "fused", f);
  }
  char *prov = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
  char *ft_summary = NULL;
  if(rc == OTF_OK) {
    otf_finetune_ctl ctl = {.progress = ft_progress, .metrics = ft_metrics, .ctx = rc_,
                            .cancel = io->cancel};
    rc = otf_finetune_dir(fused_dir, data, eval, &spec->ft, &ctl, out_dir,
                          prov ? prov : NULL, &ft_summary, err);
  }
  free(prov);
  if(rc == OTF_OK && evaluation) {
    json_t *f = evaluate(out_dir, eval, err);
    if(!f)
      rc = err->code != OTF_OK ? err->code : OTF_E_NOMEM;
    else
      json_object_set_new(evaluation, "finetuned", f);
  }
  if(rc == OTF_OK) {
    json_t *fs = ft_summary ? json_loads(ft_summary, 0, NULL) : NULL;
    json_t *report = json_pack("{s:o, s:o}", "finetune", fs ? fs : json_null(), "evaluation",
                               evaluation ? json_incref(evaluation) : json_null());
    char path[4200];
    snprintf(path, sizeof(path), "%s/finetune_report.json", out_dir);
    if(!report || json_dump_file(report, path, JSON_INDENT(2)) != 0)
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot write %s", path);
    else if(summary) {
      json_object_set(summary, "finetune", json_object_get(report, "finetune"));
      json_object_set(summary, "evaluation", json_object_get(report, "evaluation"));
    }
    json_decref(report);
  }
  json_decref(evaluation);
  otf_free(ft_summary);
  return rc;
}

static void fuse_map(void *ctx, const char *json) {
  run_ctx *r = ctx;
  if(r->io->map)
    r->io->map(r->io->ctx, json);
}

/* Removes a folder of plain files (a fused model) and the folder. */
/* Clears what an interrupted attempt left: the output folder and any
 * OUT.partial.* siblings. */
static void clear_previous(const char *out_dir) {
  otf_fs_remove_flat(out_dir);
  char parent[4096];
  snprintf(parent, sizeof(parent), "%s", out_dir);
  char *slash = strrchr(parent, '/');
  if(!slash)
    return;
  *slash = '\0';
  const char *base = slash + 1;
  size_t bl = strlen(base);
  DIR *d = opendir(parent);
  if(!d)
    return;
  struct dirent *de;
  char p[4096 + 256];
  while((de = readdir(d)))
    if(!strncmp(de->d_name, base, bl) && !strncmp(de->d_name + bl, ".partial", 8)) {
      snprintf(p, sizeof(p), "%s/%s", parent, de->d_name);
      otf_fs_remove_flat(p);
    }
  closedir(d);
}

/* Lists and hashes the fused folder, writes fusion_manifest.json into it
 * (atomically) and returns the artifact list, manifest included. */
static otf_status make_artifacts(const char *dir, json_t **items, uint64_t *bytes,
                                 otf_error *err) {
  *items = NULL;
  otf_manifest m;
  otf_status rc = otf__manifest_scan(&m, dir, err);
  if(rc != OTF_OK)
    return rc;
  json_t *a = json_array();
  for(size_t i = 0; i < m.n && rc == OTF_OK; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, m.e[i].name);
    uint64_t got = 0;
    rc = otf__digest_file(path, 0, UINT64_MAX, m.e[i].sha256, NULL, &got, err);
    if(rc == OTF_OK && got != m.e[i].size)
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s changed while it was hashed", path);
    if(rc == OTF_OK) {
      *bytes += got;
      json_array_append_new(a, json_pack("{s:s, s:I, s:s}", "name", m.e[i].name, "size",
                                         (json_int_t)got, "sha256", m.e[i].sha256));
    }
  }
  char *text = NULL;
  size_t len = 0;
  if(rc == OTF_OK)
    rc = otf__manifest_dump(&m, &text, &len, err);
  otf__manifest_free(&m);
  if(rc == OTF_OK) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, OTF_MANIFEST_NAME);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ssize_t w = fd >= 0 ? write(fd, text, len) : -1;
    if(fd < 0 || w != (ssize_t)len || fsync(fd) != 0 || close(fd) != 0 ||
       rename(tmp, path) != 0) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "cannot write %s: %s", path, strerror(errno));
      unlink(tmp);
    } else {
      char sha[OTF_SHA256_HEX];
      otf__sha256_hex(text, len, sha);
      json_array_append_new(a, json_pack("{s:s, s:I, s:s}", "name", OTF_MANIFEST_NAME, "size",
                                         (json_int_t)len, "sha256", sha));
      *bytes += len;
    }
  }
  otf_free(text);
  if(rc != OTF_OK) {
    json_decref(a);
    return rc;
  }
  *items = a;
  return OTF_OK;
}

void otf_run_job(otf_storage *st, const json_t *spec_json, const char *out_dir,
                 const otf_run_io *io, otf_run_result *res) {
  memset(res, 0, sizeof(*res));
  otf_error *err = &res->err;
  otf_error_clear(err);
  run_ctx rc_ = {.io = io, .stage = "fetching", .base = 0.0, .span = F_FETCH};
  otf_jobspec spec;
  memset(&spec, 0, sizeof(spec));
  char *dirs[OTF_MAX_PARENTS] = {0};
  char *calib = NULL, *ft_data = NULL, *ft_eval = NULL;
  char fused_dir[4200] = "";
  otf_status rc;
  char *text = json_dumps(spec_json, JSON_COMPACT);
  if(!text) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the job spec");
    goto done;
  }
  rc = otf_jobspec_parse(&spec, text, strlen(text), OTF_MAX_PARENTS, NULL, err);
  free(text);
  if(rc != OTF_OK)
    goto done;

  /* a clean slate: nothing of an interrupted attempt survives */
  clear_previous(out_dir);
  char parent[4096];
  snprintf(parent, sizeof(parent), "%s", out_dir);
  char *slash = strrchr(parent, '/');
  if(slash) {
    *slash = '\0';
    if((rc = otf_fs_mkdirs(parent, err)) != OTF_OK)
      goto done;
  }

  if(io->progress)
    io->progress(io->ctx, "fetching", 0.0);
  /* an occupied destination fails the job now, not after the fusion */
  if(spec.output_uri && (rc = otf_storage_check_dest(st, spec.output_uri, err)) != OTF_OK) {
    if(!err->pointer[0])
      snprintf(err->pointer, sizeof(err->pointer), "/output/uri");
    goto done;
  }
  size_t nfetch = spec.n_models + (spec.calibration_uri ? 1 : 0);
  for(size_t i = 0; i < spec.n_models; i++) {
    rc_.base = F_FETCH * (double)i / (double)nfetch;
    rc_.span = F_FETCH / (double)nfetch;
    dirs[i] = otf_malloc(4096);
    if(!dirs[i]) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
      goto done;
    }
    rc = otf_storage_fetch_model(st, spec.models[i], dirs[i], 4096, xfer_progress, &rc_, err);
    if(rc != OTF_OK) {
      otf_free(dirs[i]);
      dirs[i] = NULL;
      if(!err->pointer[0])
        snprintf(err->pointer, sizeof(err->pointer), "/models/%zu/uri", i);
      goto done;
    }
  }
  if(spec.calibration_uri) {
    calib = otf_malloc(4096);
    if(!calib) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
      goto done;
    }
    rc = otf_storage_fetch_file(st, spec.calibration_uri, calib, 4096, xfer_progress, &rc_,
                                err);
    if(rc != OTF_OK) {
      otf_free(calib);
      calib = NULL;
      goto done;
    }
    spec.opts.calibration = calib;
  }
  if(spec.finetune) {
    const char *uris[2] = {spec.ft_data_uri, spec.ft_eval_uri};
    char **dst[2] = {&ft_data, &ft_eval};
    for(int k = 0; k < 2; k++) {
      if(!uris[k])
        continue;
      *dst[k] = otf_malloc(4096);
      if(!*dst[k]) {
        rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
        goto done;
      }
      rc = otf_storage_fetch_file(st, uris[k], *dst[k], 4096, xfer_progress, &rc_, err);
      if(rc != OTF_OK) {
        otf_free(*dst[k]);
        *dst[k] = NULL;
        if(!err->pointer[0])
          snprintf(err->pointer, sizeof(err->pointer), "/finetune/%s", k ? "eval_uri" : "data_uri");
        goto done;
      }
    }
    snprintf(fused_dir, sizeof(fused_dir), "%s.fused", out_dir);
    clear_previous(fused_dir);
  }
  {
    int anchor = spec.opts.anchor >= 0 ? spec.opts.anchor : 0;
    char cfgp[4200];
    snprintf(cfgp, sizeof(cfgp), "%s/config.json", dirs[anchor]);
    otf_model_config mc;
    if(otf_model_config_load(&mc, cfgp, NULL) == OTF_OK) {
      res->layers = mc.num_layers;
      if(io->layers)
        io->layers(io->ctx, mc.num_layers);
      otf_model_config_free(&mc);
    }
  }
  for(size_t i = 0; i < spec.n_models; i++) {
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/model.safetensors", dirs[i]);
    if(stat(p, &sb) == 0)
      res->bytes_read += (uint64_t)sb.st_size;
  }

  rc_.base = F_FETCH;
  rc_.span = spec.finetune ? F_FUSE / 2 : F_FUSE;
  otf_fuse_ctl ctl = {.progress = fuse_progress, .ctx = &rc_, .cancel = io->cancel,
                      .on_map = fuse_map};
  char *summary = NULL;
  rc = otf_fuse_dirs((const char *const *)dirs, spec.n_models, &spec.opts, &ctl,
                     spec.finetune ? fused_dir : out_dir, spec.dtype, &summary, err);
  if(rc != OTF_OK)
    goto done;
  if(summary) {
    res->summary = json_loads(summary, 0, NULL);
    otf_free(summary);
  }
  if(spec.finetune) {
    rc_.base = F_FETCH + F_FUSE / 2;
    rc_.span = F_FUSE / 2;
    rc = finetune_stage(&spec, dirs, fused_dir, ft_data, ft_eval, out_dir, &rc_, res->summary,
                        err);
    clear_previous(fused_dir);
    if(rc != OTF_OK)
      goto done;
  }
  if(io->cancel && *io->cancel) {
    rc = OTF_FAIL(err, OTF_E_CANCELLED, NULL, "cancelled");
    goto done;
  }
  if(io->progress)
    io->progress(io->ctx, "writing", F_FETCH + F_FUSE);
  rc = make_artifacts(out_dir, &res->artifacts, &res->bytes_written, err);
  if(rc != OTF_OK)
    goto done;
  if(spec.output_uri) {
    rc_.stage = "uploading";
    rc_.base = F_FETCH + F_FUSE;
    rc_.span = 1.0 - rc_.base;
    if(io->progress)
      io->progress(io->ctx, "uploading", rc_.base);
    rc = otf_storage_put_dir(st, out_dir, spec.output_uri, xfer_progress, &rc_, err);
    if(rc == OTF_OK && res->summary) /* where the client finds it, not our staging folder */
      json_object_set_new(res->summary, "output", json_string(spec.output_uri));
  }
done:
  for(size_t i = 0; i < OTF_MAX_PARENTS; i++)
    if(dirs[i]) {
      otf_storage_release(st, dirs[i]);
      otf_free(dirs[i]);
    }
  char *files[3] = {calib, ft_data, ft_eval};
  for(int k = 0; k < 3; k++)
    if(files[k]) {
      otf_storage_release(st, files[k]);
      otf_free(files[k]);
    }
  if(fused_dir[0])
    clear_previous(fused_dir);
  otf_jobspec_free(&spec);
  res->status = rc;
  err->code = rc;
  if(rc != OTF_OK) {
    json_decref(res->summary);
    res->summary = NULL;
    json_decref(res->artifacts);
    res->artifacts = NULL;
    clear_previous(out_dir); /* never a half-written artifact */
  }
}

void otf_run_result_free(otf_run_result *r) {
  json_decref(r->summary);
  json_decref(r->artifacts);
  r->summary = r->artifacts = NULL;
}
