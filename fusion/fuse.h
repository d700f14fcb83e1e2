/* Transformer fusion with optimal transport (ALGORITHM.md), generic over
 * the architecture tables: every parent is aligned to the anchor by
 * walking the anchor's table in data-flow order and carrying transport
 * maps (TMs) from each tensor's output space to the tensors that read that
 * space; residual merges combine the maps of the skip path and the branch.
 * Then the aligned parents are averaged with per-model weights.
 *
 * One call does a whole fusion; the CLI (`otfuse fuse`) and the service
 * call the same entry point. No globals; progress through a callback,
 * cancellation through a flag polled between tensors. */
#ifndef OTF_FUSE_H
#define OTF_FUSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/cost.h"
#include "fusion/model.h"
#include "fusion/ot.h"
#include "fusion/safetensors.h"

#define OTF_MAX_PARENTS 16 /* models per fusion: each adds a full alignment */

typedef enum otf_method { OTF_METHOD_OT = 0, OTF_METHOD_AVERAGE } otf_method;
typedef enum otf_align { OTF_ALIGN_WEIGHTS = 0, OTF_ALIGN_ACTIVATIONS } otf_align;
typedef enum otf_fuse_solver {
  OTF_FSOLVER_SINKHORN = 0, /* soft alignment (reference default) */
  OTF_FSOLVER_EXACT,        /* hard alignment */
  OTF_FSOLVER_MIXED,        /* the reference's sinkhorn_for_widening */
} otf_fuse_solver;
typedef enum otf_resid {
  OTF_RESID_MEAN = 0,       /* (T_skip + T_branch) / 2, the reference default */
  OTF_RESID_SKIP,           /* T_skip */
  OTF_RESID_BRANCH,         /* T_branch */
  OTF_RESID_WSCALAR,        /* weighted by mean |activation| of each path */
  OTF_RESID_WMATRIX,        /* the same, per anchor neuron */
} otf_resid;
typedef enum otf_qk {
  OTF_QK_SEPARATE = 0,      /* independent maps for Q and K (reference) */
  OTF_QK_SHARED,            /* one map for Q and K from their joint features */
  OTF_QK_HEADS,             /* heads kept whole: OT over heads, then
                               within-head maps shared by Q and K */
} otf_qk;
typedef enum otf_tmnorm {
  OTF_TMNORM_CLEAN = 0,     /* row-stochastic on inputs, column-stochastic on
                               outputs: function preserving for many-to-one */
  OTF_TMNORM_REFERENCE,     /* n_parent * plan on both sides, as released */
} otf_tmnorm;

/* Component switches: a switched-off component takes the anchor's tensors
 * as they are (the transport maps still flow through it). */
#define OTF_FUSE_EMBED 1u
#define OTF_FUSE_ATTN 2u
#define OTF_FUSE_NORM 4u
#define OTF_FUSE_MLP 8u
#define OTF_FUSE_BIAS 16u
#define OTF_FUSE_HEAD 32u
#define OTF_FUSE_ALL 63u

typedef struct otf_fuse_opts {
  otf_method method;
  otf_align align;
  otf_fuse_solver solver;
  double reg;                 /* Sinkhorn regularisation (of max-normalised costs) */
  otf_metric metric;
  otf_cost_norm cost_norm;
  int unit_rows;              /* weights mode: rows divided by their L2 norm */
  otf_resid resid;
  otf_qk qk;
  otf_tmnorm tmnorm;
  unsigned components;
  int anchor;                 /* index of the anchor among the parents */
  double weights[OTF_MAX_PARENTS]; /* per parent; all 0 = uniform 1/N */
  const char *calibration;    /* activations mode / weighted residuals */
  size_t samples;             /* calibration samples, 0 = all */
  int window;                 /* ViT tokens used as samples: 0 all, -1 the cls
                                 token, K the cls token + central K x K patches
                                 (the reference's window_k on any grid) */
  uint64_t seed;
} otf_fuse_opts;

/* Defaults: ot, weights alignment, sinkhorn reg 0.02 (the best of
 * 0.02-0.15 on the fixtures, bench/fusion_quality.sh; the reference's
 * config: 0.08), euclidean, max normalisation, unit rows, residual mean,
 * qk separate, clean maps, all components, anchor 0, uniform weights,
 * 200 samples, seed 0. */
void otf_fuse_opts_default(otf_fuse_opts *o);

/* Name <-> enum for flags and the job spec; parse returns -1 if unknown. */
int otf_resid_parse(otf_resid *out, const char *name);
const char *otf_resid_name(otf_resid r);
int otf_qk_parse(otf_qk *out, const char *name);
const char *otf_qk_name(otf_qk q);
int otf_fuse_solver_parse(otf_fuse_solver *out, const char *name);
const char *otf_fuse_solver_name(otf_fuse_solver s);

typedef struct otf_fuse_ctl {
  /* stage: "loading", "calibrating", "aligning", "writing"; fraction of
   * the whole fusion in [0, 1]. May be NULL. */
  void (*progress)(void *ctx, const char *stage, double fraction);
  void *ctx;
  const volatile int *cancel; /* polled between tensors; non-zero stops */
  /* Called with each transport map's report entry (compact JSON object:
   * parent, tensor, space, layer, shape, method, iterations,
   * marginal_error, cost, sharpness, seconds) as soon as it is solved.
   * The string is only valid during the call. May be NULL. */
  void (*on_map)(void *ctx, const char *map_json);
} otf_fuse_ctl;

typedef struct otf_fused otf_fused;

/* Fuses models [n] (2 <= n <= OTF_MAX_PARENTS; borrowed) into the anchor's
 * configuration. *out: caller owns, otf_fused_free. Errors: architectures,
 * depths, vocabularies, classes or input shapes that differ
 * (OTF_E_INVAL naming both models); NaN/Inf weights (OTF_E_NUMERIC
 * naming the tensor); solver failures; OTF_E_CANCELLED. */
otf_status otf_fuse(otf_fused **out, const otf_model *const *models, size_t n,
                    const otf_fuse_opts *opts, const otf_fuse_ctl *ctl,
                    otf_error *err) OTF_WUR;

/* The fusion report (settings, parents, every transport map's statistics)
 * as compact JSON; borrowed, valid until otf_fused_free. */
const char *otf_fused_report(const otf_fused *f);

/* Writes out_dir/config.json (the anchor's, with provenance),
 * out_dir/model.safetensors (dtype F32, F16 or BF16), the anchor's other
 * files (tokenizer, preprocessor) and out_dir/fusion_report.json. Built in
 * a sibling temporary folder and renamed into place, so out_dir appears
 * complete or not at all; out_dir must not exist, or be empty. */
otf_status otf_fused_save(const otf_fused *f, const char *out_dir, otf_dtype dtype,
                          otf_error *err) OTF_WUR;

void otf_fused_free(otf_fused *f);

/* Reads the parents from folders, fuses, saves: the one call the CLI and
 * the service make. dtype OTF_DT_COUNT = the anchor's dtype. summary
 * (may be NULL) receives a malloc'd one-line JSON summary (otf_free). */
otf_status otf_fuse_dirs(const char *const *dirs, size_t n, const otf_fuse_opts *opts,
                         const otf_fuse_ctl *ctl, const char *out_dir, otf_dtype dtype,
                         char **summary, otf_error *err) OTF_WUR;

/* More option names shared by `otfuse fuse` and the job spec
 * (fusion/fuse_names.c). Each parse returns 0, or -1 if the name is
 * unknown (out untouched); each name function returns "?" for a bad value. */
int otf_method_parse(otf_method *out, const char *name);       /* ot | average */
const char *otf_method_name(otf_method m);
int otf_align_parse(otf_align *out, const char *name);         /* weights | activations */
const char *otf_align_name(otf_align a);
int otf_tmnorm_parse(otf_tmnorm *out, const char *name);       /* clean | reference */
const char *otf_tmnorm_name(otf_tmnorm t);
/* One component name (embed attn norm mlp bias head) -> its OTF_FUSE_* bit,
 * 0 if unknown; the name of a single bit, NULL if it is not one. */
unsigned otf_fuse_component_bit(const char *name);
const char *otf_fuse_component_name(unsigned bit);
/* A comma list of component names ("attn,mlp") -> bits; -1 on an unknown
 * or empty name. */
int otf_fuse_components_parse(unsigned *out, const char *list);
/* ViT token selection: "all" -> 0, "cls" -> -1, "window-K" -> K
 * (1 <= K <= OTF_FUSE_MAX_WINDOW); and back (buf of at least 24 bytes). */
#define OTF_FUSE_MAX_WINDOW 4096
int otf_fuse_tokens_parse(int *window, const char *s);
const char *otf_fuse_tokens_format(char *buf, size_t cap, int window);

#endif
