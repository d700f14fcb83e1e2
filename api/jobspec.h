/* The job spec: what a client POSTs to /v1/jobs (and /v1/jobs:validate),
 * parsed from untrusted bytes into fusion options. Its keys mirror the
 * flags of `otfuse fuse`:
 *
 *   {"models": [{"uri": "file:///.../vit_s0/"}, ...],          2..max
 *    "method": "ot" | "average",
 *    "ot": {"align", "solver", "reg" (number > 0 | "auto"), "residual", "qk",
 *           "anchor" (index | "auto"), "weights" [one per model], "metric",
 *           "cost_norm", "unit_rows" (bool), "maps", "components" [names],
 *           "tokens" ("all" | "cls" | "window-K")},
 *    "calibration": {"uri", "samples", "seed"},
 *    "output": {"uri", "dtype" ("f32" | "f16" | "bf16")},
 *    "metadata": {...}}
 *
 * Every key but "models" is optional and defaults to the CLI's default;
 * "calibration", "calibration.uri", "output.uri", "output.dtype" and
 * "metadata" may also be null (= absent). Unknown keys are errors. The
 * normalised spec (every default filled in) parses back to itself. */
#ifndef OTF_JOBSPEC_H
#define OTF_JOBSPEC_H

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"
#include "fusion/fuse.h"
#include "fusion/train_job.h"

/* Bytes of one job spec. A spec with 16 model URIs of a few hundred bytes
 * and some metadata is a few KiB; 1 MiB leaves room for large metadata
 * while bounding parse time and the size of a stored job row. */
#define OTF_JOBSPEC_MAX_BYTES ((size_t)1 << 20)
/* Bytes of one URI: beyond any real bucket/key (S3 keys are <= 1024 bytes,
 * presigned URLs reach ~2 KiB). */
#define OTF_JOBSPEC_MAX_URI 4096
/* calibration.samples: the reference uses 200; a million samples of a
 * ViT-B would already take hours to run. 0 means "all samples". */
#define OTF_JOBSPEC_MAX_SAMPLES 1000000
/* Problems reported in *errors: enough to list every field of a spec,
 * small enough that a hostile body cannot make a huge error response. */
#define OTF_JOBSPEC_MAX_ERRORS 32

typedef struct otf_jobspec {
  size_t n_models;
  char *models[OTF_MAX_PARENTS];   /* URIs as given (owned) */
  otf_fuse_opts opts;              /* CLI defaults + the spec's "method"/"ot"/
                                      "calibration" keys; opts.calibration left
                                      NULL; opts.anchor = -1 for "auto",
                                      opts.reg = 0 for "auto" (as the CLI) */
  char *calibration_uri;           /* NULL when absent (owned) */
  int anchor_auto, reg_auto;       /* "anchor":"auto" / "reg":"auto" (need
                                      calibration with labels) */
  char *output_uri;                /* NULL: artifacts stay in the service's
                                      data dir (owned) */
  otf_dtype dtype;                 /* OTF_DT_COUNT = the parents' dtype */
  json_t *spec;                    /* the normalised spec, every default filled
                                      in, metadata included ({} when absent)
                                      (owned) */
  int finetune;                    /* a "finetune" section was given */
  otf_finetune_opts ft;            /* its options (CLI defaults filled in) */
  char *ft_data_uri;               /* labelled training data (owned) */
  char *ft_eval_uri;               /* labelled eval data, NULL when absent (owned) */
  json_t *metadata;                /* echoed back; a copy of the spec's object,
                                      or NULL when absent (owned) */
} otf_jobspec;

/* Parses and validates a whole job spec from untrusted bytes [len]
 * (JSON_REJECT_DUPLICATES, depth <= OTF_MAX_JSON_DEPTH checked before
 * parsing, unknown keys rejected, types/ranges/enums checked,
 * 2 <= models <= max_models (capped at OTF_MAX_PARENTS), weights count ==
 * models and finite >= 0 and not all 0, anchor in range, reg > 0, samples
 * bounds, dtype f32|f16|bf16, calibration present when the options need
 * it). On success *out is filled (caller owns: otf_jobspec_free). On error
 * *out is zeroed (otf_jobspec_free is still safe) and the result is
 * OTF_E_FORMAT (not JSON, not an object, duplicate key), OTF_E_TOO_LARGE
 * (body, depth, too many models, URI length) or OTF_E_INVAL (a field), with
 * err->pointer = the JSON pointer of the first bad field (e.g. "/ot/reg",
 * "/models/1/uri"; "" for the whole body) and a clear message; *errors (may
 * be NULL) receives a JSON array of every problem found (at most
 * OTF_JOBSPEC_MAX_ERRORS) as [{"pointer","detail"}] (caller json_decref's;
 * NULL on success). Out of memory gives OTF_E_NOMEM. Does not check URIs
 * against storage policy: the caller does that. */
otf_status otf_jobspec_parse(otf_jobspec *out, const char *body, size_t len,
                             size_t max_models, json_t **errors, otf_error *err) OTF_WUR;

/* Releases what a parse filled and zeroes *s; NULL and zeroed specs are fine. */
void otf_jobspec_free(otf_jobspec *s);

#endif
