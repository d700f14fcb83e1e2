#include "fusion/fsutil.h"
#include "fusion/fuse.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/alloc.h"
#include "fusion/actstats.h"
#include "fusion/dataset.h"
#include "fusion/eval.h"
#include "fusion/forward.h"

/* ---- names ----------------------------------------------------------- */

static const char *const resid_names[] = {"mean", "skip", "branch", "weighted-scalar",
                                          "weighted-matrix"};
static const char *const qk_names[] = {"separate", "shared", "heads"};
static const char *const solver_names[] = {"sinkhorn", "exact", "mixed"};

#define NAMES(a) (sizeof(a) / sizeof((a)[0]))

static int parse_name(const char *const *names, size_t n, const char *s) {
  for(size_t k = 0; s && k < n; k++)
    if(!strcmp(s, names[k]))
      return (int)k;
  return -1;
}

int otf_resid_parse(otf_resid *out, const char *name) {
  int k = parse_name(resid_names, NAMES(resid_names), name);
  if(k < 0)
    return -1;
  *out = (otf_resid)k;
  return 0;
}
const char *otf_resid_name(otf_resid r) {
  return (unsigned)r < NAMES(resid_names) ? resid_names[r] : "?";
}
int otf_qk_parse(otf_qk *out, const char *name) {
  int k = parse_name(qk_names, NAMES(qk_names), name);
  if(k < 0)
    return -1;
  *out = (otf_qk)k;
  return 0;
}
const char *otf_qk_name(otf_qk q) { return (unsigned)q < NAMES(qk_names) ? qk_names[q] : "?"; }
int otf_fuse_solver_parse(otf_fuse_solver *out, const char *name) {
  int k = parse_name(solver_names, NAMES(solver_names), name);
  if(k < 0)
    return -1;
  *out = (otf_fuse_solver)k;
  return 0;
}
const char *otf_fuse_solver_name(otf_fuse_solver s) {
  return (unsigned)s < NAMES(solver_names) ? solver_names[s] : "?";
}

void otf_fuse_opts_default(otf_fuse_opts *o) {
  memset(o, 0, sizeof(*o));
  o->method = OTF_METHOD_OT;
  o->align = OTF_ALIGN_WEIGHTS;
  o->solver = OTF_FSOLVER_SINKHORN;
  o->reg = 0.02; /* best on the fixtures (bench/fusion_quality.sh); the reference used 0.08 */
  o->metric = OTF_METRIC_EUCLIDEAN;
  o->cost_norm = OTF_COSTNORM_MAX;
  o->unit_rows = 1;
  o->resid = OTF_RESID_MEAN;
  o->qk = OTF_QK_SEPARATE;
  o->tmnorm = OTF_TMNORM_CLEAN;
  o->components = OTF_FUSE_ALL;
  o->samples = 200;
}

/* ---- big buffers ------------------------------------------------------ */

/* Maps, costs and weight matrices at BERT-base size are 10-75 MB each and
 * are made and dropped for every layer; with 4 KB pages the page faults on
 * fresh memory cost a visible share of a fusion. Asking for huge pages on
 * the 2 MB-aligned interior of such a buffer (a hint: nothing happens where
 * the kernel does not do it) cuts the faults 512-fold. */
#define HUGE_PAGE ((uintptr_t)2 << 20)
static void huge_hint(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  if(!p || bytes < 2 * HUGE_PAGE)
    return;
  uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  uintptr_t e = ((uintptr_t)p + bytes) & ~(HUGE_PAGE - 1);
  if(e > a)
    (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

/* otf_malloc_array / otf_calloc with the hint above. */
static void *big_array(size_t n, size_t size) {
  void *p = otf_malloc_array(n, size);
  huge_hint(p, n * size);
  return p;
}
static void *big_zeroed(size_t n, size_t size) {
  void *p = otf_calloc(n, size);
  huge_hint(p, n * size);
  return p;
}

/* ---- transport maps -------------------------------------------------- */

/* A raw OT plan between a parent's space (np) and the anchor's (na):
 * rows sum to 1/np, columns to 1/na. NULL stands for the identity of an
 * unaligned space (vocabulary, classes, positions). */
typedef struct tmap {
  size_t np, na;
  double *p; /* [np, na] */
  /* Caches for applying the map, made on first use and dropped by
   * tmap_changed whenever p is written: a float copy of p for SGEMM
   * (dense plans), or p's nonzeros in row-major order (sparse plans: the
   * exact solvers give n + m - 1 at most). */
  int analysed;
  size_t nnz;
  float *pf;     /* [np, na] or NULL */
  uint32_t *si;  /* [nnz] parent index, ascending */
  uint32_t *sj;  /* [nnz] anchor index */
  double *sv;    /* [nnz] value */
} tmap;

static tmap *tmap_new(size_t np, size_t na) {
  tmap *t = otf_calloc(1, sizeof(*t));
  double *p = big_zeroed(np * na, sizeof(double));
  if(!t || !p) {
    otf_free(t);
    otf_free(p);
    return NULL;
  }
  t->np = np;
  t->na = na;
  t->p = p;
  return t;
}

/* Drops the caches after p was written. */
static void tmap_changed(tmap *t) {
  otf_free(t->pf);
  otf_free(t->si);
  otf_free(t->sj);
  otf_free(t->sv);
  t->pf = NULL;
  t->si = t->sj = NULL;
  t->sv = NULL;
  t->nnz = 0;
  t->analysed = 0;
}

static void tmap_free(tmap *t) {
  if(t) {
    tmap_changed(t);
    otf_free(t->p);
    otf_free(t);
  }
}

/* A plan is applied as a sparse matrix when it has at most this many
 * nonzeros per parent + anchor neuron (a permutation has 1/2). */
#define TMAP_SPARSE_PER_NEURON 4

/* Makes the cache that applying t needs: the nonzero list when t is
 * sparse enough, else the float copy. */
static otf_status tmap_prepare(tmap *t, otf_error *err) {
  if(t->analysed)
    return OTF_OK;
  size_t len = t->np * t->na, nnz = 0;
  for(size_t i = 0; i < len; i++)
    nnz += t->p[i] != 0.0;
  if(nnz <= TMAP_SPARSE_PER_NEURON * (t->np + t->na) && len <= UINT32_MAX) {
    t->si = otf_malloc_array(nnz ? nnz : 1, sizeof(uint32_t));
    t->sj = otf_malloc_array(nnz ? nnz : 1, sizeof(uint32_t));
    t->sv = otf_malloc_array(nnz ? nnz : 1, sizeof(double));
    if(!t->si || !t->sj || !t->sv) {
      tmap_changed(t);
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a sparse map");
    }
    size_t e = 0;
    for(size_t i = 0; i < t->np; i++)
      for(size_t j = 0; j < t->na; j++)
        if(t->p[i * t->na + j] != 0.0) {
          t->si[e] = (uint32_t)i;
          t->sj[e] = (uint32_t)j;
          t->sv[e] = t->p[i * t->na + j];
          e++;
        }
    t->nnz = nnz;
  } else {
    t->pf = big_array(len ? len : 1, sizeof(float));
    if(!t->pf)
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a map");
    for(size_t i = 0; i < len; i++)
      t->pf[i] = (float)t->p[i];
  }
  t->analysed = 1;
  return OTF_OK;
}

static tmap *tmap_copy(const tmap *s) {
  tmap *t = tmap_new(s->np, s->na);
  if(t)
    memcpy(t->p, s->p, s->np * s->na * sizeof(double));
  return t;
}

/* Per (space, layer) maps a parent carries while its table is walked. */
#define NSLOTS_SPACE OTF_SP_COUNT
typedef struct pstate {
  const otf_model *m;
  otf_actstats *acts;       /* activations mode, else NULL */
  tmap **spaces;            /* [OTF_SP_COUNT * (layers + 1)] */
  tmap *stream;             /* residual stream map */
  tmap *branch[4];          /* branches since the last merge */
  int nbranch;
  tmap *word;               /* word-embedding columns (tied MLM decoder) */
} pstate;

/* ---- the fusion object ----------------------------------------------- */

typedef struct ftensor {
  char *name;
  int rank;
  uint64_t shape[OTF_MAX_TENSOR_RANK];
  otf_dtype src_dtype;
  float *data;      /* F32 values, or NULL for raw buffers */
  const void *raw;  /* buffers copied as they are (points into the anchor) */
  size_t raw_bytes;
} ftensor;

struct otf_fused {
  const otf_model *anchor;
  ftensor *t;
  size_t nt, cap;
  json_t *report;
  char *report_text;
  otf_dtype anchor_dtype;
};

void otf_fused_free(otf_fused *f) {
  if(!f)
    return;
  for(size_t k = 0; k < f->nt; k++) {
    otf_free(f->t[k].name);
    otf_free(f->t[k].data);
  }
  otf_free(f->t);
  json_decref(f->report);
  free(f->report_text);
  otf_free(f);
}

const char *otf_fused_report(const otf_fused *f) { return f->report_text; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- tensor views ---------------------------------------------------- */

static int aligned_space(otf_space sp) {
  return sp == OTF_SP_RESID || sp == OTF_SP_Q || sp == OTF_SP_K || sp == OTF_SP_V ||
         sp == OTF_SP_FFN || sp == OTF_SP_POOL || sp == OTF_SP_MLM;
}

/* Which storage axis is the tensor's output (the space its rows live in)
 * and which its aligned input, if any (-1 when none). */
typedef struct view {
  int out_axis, in_axis;
} view;

static view spec_view(const otf_tensor_spec *s) {
  view v = {-1, -1};
  if(s->rank == 1) {
    v.out_axis = 0;
  } else if(s->role == OTF_ROLE_LINEAR_W) {
    v.out_axis = (s->flags & OTF_TF_TRANSPOSED) ? 1 : 0;
    v.in_axis = 1 - v.out_axis;
    if(!aligned_space(s->axes[v.in_axis]))
      v.in_axis = -1;
  } else {
    for(int k = 0; k < s->rank; k++)
      if(aligned_space(s->axes[k])) {
        v.out_axis = k;
        break;
      }
  }
  return v;
}

/* A tensor as a float matrix [rows = size of the out axis, cols = the
 * other axes flattened in storage order]. Float, like the checkpoints:
 * alignment products run in SGEMM (or sparse in double, rounded once) and
 * sums over parents are taken in double. */
typedef struct mat {
  size_t rows, cols;
  float *d;
} mat;

static void mat_free(mat *m) {
  otf_free(m->d);
  m->d = NULL;
}

/* Converts elements [start, start + count) of a floating tensor to float,
 * like otf_st_read_f32. */
static void load_run(float *dst, const otf_st_tensor *t, size_t start, size_t count) {
  const uint8_t *p = (const uint8_t *)t->data;
  switch(t->dtype) {
  case OTF_DT_F32:
    memcpy(dst, p + 4 * start, 4 * count);
    break;
  case OTF_DT_F64:
    for(size_t k = 0; k < count; k++) {
      double d;
      memcpy(&d, p + 8 * (start + k), 8);
      dst[k] = (float)d;
    }
    break;
  case OTF_DT_F16:
    for(size_t k = 0; k < count; k++) {
      uint16_t h;
      memcpy(&h, p + 2 * (start + k), 2);
      dst[k] = otf_f16_to_f32(h);
    }
    break;
  case OTF_DT_BF16:
    for(size_t k = 0; k < count; k++) {
      uint16_t h;
      memcpy(&h, p + 2 * (start + k), 2);
      uint32_t bits = (uint32_t)h << 16;
      memcpy(&dst[k], &bits, 4);
    }
    break;
  default:
    break;
  }
}

/* 1 when any of x [n] is a NaN or an infinity (exponent all ones); a
 * branch-free OR so that it vectorises. */
static int any_nonfinite(const float *x, size_t n) {
  uint32_t bad = 0;
  for(size_t k = 0; k < n; k++) {
    uint32_t b;
    memcpy(&b, &x[k], 4);
    bad |= (uint32_t)((b & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

/* Reads t into m with axis `out` first, then releases t's mapped pages
 * (the data stay in the file; a later read maps them again). */
static otf_status load_mat(mat *m, const otf_st_tensor *t, int out, otf_error *err) {
  size_t n = (size_t)t->numel;
  if(t->dtype != OTF_DT_F32 && t->dtype != OTF_DT_F64 && t->dtype != OTF_DT_F16 &&
     t->dtype != OTF_DT_BF16)
    return OTF_FAIL(err, OTF_E_UNSUPPORTED, t->name,
                    "tensor '%s' has dtype %s; a floating dtype is needed", t->name,
                    otf_dtype_name(t->dtype));
  m->d = big_array(n ? n : 1, sizeof(float));
  if(!m->d)
    return OTF_FAIL(err, OTF_E_NOMEM, t->name, "no memory for tensor %s", t->name);
  size_t rows = out >= 0 && t->rank > 0 ? (size_t)t->shape[out] : 1;
  m->rows = rows;
  m->cols = rows ? n / rows : 0;
  /* Storage is [outer, rows, inner]; the matrix is [rows, outer * inner]. */
  size_t inner = 1; /* product of the axes after `out` */
  for(int k = out + 1; out >= 0 && k < t->rank; k++)
    inner *= (size_t)t->shape[k];
  size_t outer = out >= 0 && rows && inner ? n / (rows * inner) : 1;
  if(outer == 1 || !n) {
    load_run(m->d, t, 0, n);
  } else {
    for(size_t o = 0; o < outer; o++)
      for(size_t r = 0; r < rows; r++)
        load_run(m->d + r * m->cols + o * inner, t, (o * rows + r) * inner, inner);
  }
  otf_st_release(t);
  if(any_nonfinite(m->d, n)) {
    mat_free(m);
    return OTF_FAIL(err, OTF_E_NUMERIC, t->name, "tensor %s has a NaN or infinite weight",
                    t->name);
  }
  return OTF_OK;
}

/* Inverse of load_mat into float storage order for shape/rank: src is the
 * [rows, cols] matrix. */
static void store_mat(float *dst, const float *src, size_t rows, size_t cols,
                      const uint64_t *shape, int rank, int out) {
  size_t n = rows * cols, inner = 1;
  for(int k = out + 1; out >= 0 && k < rank; k++)
    inner *= (size_t)shape[k];
  size_t outer = out >= 0 && rows && inner ? n / (rows * inner) : 1;
  if(outer == 1 || !n) {
    if(dst != src && n)
      memcpy(dst, src, n * sizeof(float));
    return;
  }
  for(size_t o = 0; o < outer; o++)
    for(size_t r = 0; r < rows; r++)
      memcpy(dst + (o * rows + r) * inner, src + r * cols + o * inner, inner * sizeof(float));
}

/* 1 when t's storage order is already the [rows, cols] matrix of load_mat
 * for that out axis (no axis before it is longer than 1). */
static int storage_is_matrix(const otf_st_tensor *t, int out) {
  size_t before = 1;
  for(int k = 0; k < out && k < t->rank; k++)
    before *= (size_t)t->shape[k];
  return out < 0 || before == 1;
}

/* ---- alignment algebra ----------------------------------------------- */

/* Column block for the sparse products' double accumulators. */
#define SPARSE_BLOCK 512

/* W' = W R with R = np * P (row-stochastic): W [rows, np] -> out [rows, na]. */
static otf_status align_input(mat *w, tmap *t, otf_error *err) {
  if(w->cols != t->np)
    return OTF_FAIL(err, OTF_E_INTERNAL, NULL, "input map %zux%zu for %zu columns", t->np,
                    t->na, w->cols);
  otf_status rc = tmap_prepare(t, err);
  if(rc != OTF_OK)
    return rc;
  float *o = big_array((w->rows ? w->rows : 1) * (t->na ? t->na : 1), sizeof(float));
  double *acc = t->pf ? NULL : otf_malloc_array(t->na ? t->na : 1, sizeof(double));
  if(!o || (!t->pf && !acc)) {
    otf_free(o);
    otf_free(acc);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to align inputs");
  }
  if(t->pf) {
    if(w->rows && t->na)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)w->rows, (int)t->na,
                  (int)t->np, (float)t->np, w->d, (int)w->cols, t->pf, (int)t->na, 0.0f, o,
                  (int)t->na);
  } else {
    /* Sparse: row by row, in double, rounded once. */
    double scale = (double)t->np;
    for(size_t r = 0; r < w->rows; r++) {
      const float *wr = w->d + r * w->cols;
      memset(acc, 0, t->na * sizeof(double));
      for(size_t e = 0; e < t->nnz; e++)
        acc[t->sj[e]] += scale * t->sv[e] * (double)wr[t->si[e]];
      for(size_t j = 0; j < t->na; j++)
        o[r * t->na + j] = (float)acc[j];
    }
  }
  otf_free(acc);
  otf_free(w->d);
  w->d = o;
  w->cols = t->na;
  return OTF_OK;
}

/* W'' = C^T W' with C = na * P (clean: columns sum to 1) or np * P
 * (reference): W' [np, cols] -> [na, cols]. */
static otf_status align_output(mat *w, tmap *t, otf_tmnorm norm, otf_error *err) {
  if(w->rows != t->np)
    return OTF_FAIL(err, OTF_E_INTERNAL, NULL, "output map %zux%zu for %zu rows", t->np,
                    t->na, w->rows);
  otf_status rc = tmap_prepare(t, err);
  if(rc != OTF_OK)
    return rc;
  size_t cols = w->cols;
  size_t blk = cols < SPARSE_BLOCK ? cols : SPARSE_BLOCK;
  float *o = big_array(t->na * (cols ? cols : 1), sizeof(float));
  double *acc = t->pf ? NULL : otf_malloc_array(t->na * (blk ? blk : 1), sizeof(double));
  if(!o || (!t->pf && !acc)) {
    otf_free(o);
    otf_free(acc);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to align outputs");
  }
  double scale = norm == OTF_TMNORM_CLEAN ? (double)t->na : (double)t->np;
  if(t->pf) {
    if(t->na && cols)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)t->na, (int)cols, (int)t->np,
                  (float)scale, t->pf, (int)t->na, w->d, (int)cols, 0.0f, o, (int)cols);
  } else {
    /* Sparse: out[j, :] += scale * P[i, j] * W[i, :], by column blocks. */
    for(size_t c0 = 0; c0 < cols; c0 += blk) {
      size_t bw = cols - c0 < blk ? cols - c0 : blk;
      memset(acc, 0, t->na * bw * sizeof(double));
      for(size_t e = 0; e < t->nnz; e++) {
        double v = scale * t->sv[e];
        const float *src = w->d + (size_t)t->si[e] * cols + c0;
        double *dst = acc + (size_t)t->sj[e] * bw;
        for(size_t c = 0; c < bw; c++)
          dst[c] += v * (double)src[c];
      }
      for(size_t j = 0; j < t->na; j++)
        for(size_t c = 0; c < bw; c++)
          o[j * cols + c0 + c] = (float)acc[j * bw + c];
    }
  }
  otf_free(acc);
  otf_free(w->d);
  w->d = o;
  w->rows = t->na;
  return OTF_OK;
}

/* ---- one fusion run --------------------------------------------------- */

typedef struct fctx {
  const otf_fuse_opts *o;
  const otf_fuse_ctl *ctl;
  const otf_model *const *models;
  size_t n;
  int anchor;
  const otf_arch *arch;
  const otf_model_config *acfg;
  int layers;
  pstate ps[OTF_MAX_PARENTS];
  double w[OTF_MAX_PARENTS];
  otf_fused *out;
  json_t *maps;
  int tied_mlm;
  /* Anchor magnitudes for the weighted residual policies:
   * mag[tap][layer + 1] = mean |activation| per neuron, or NULL. */
  double *mag[OTF_TAP_COUNT][OTF_MAX_LAYERS + 1];
  struct sink *sink; /* streamed output, or NULL: tensors kept in out */
} fctx;

static tmap **space_slot(pstate *p, otf_space sp, int layer, int layers) {
  int l = layer < 0 ? layers : layer;
  return &p->spaces[(size_t)l * OTF_SP_COUNT + sp];
}

static otf_tap producer_tap(const otf_tensor_spec *s) {
  switch(s->slot) {
  case OTF_SLOT_Q_W: return OTF_TAP_Q;
  case OTF_SLOT_K_W: return OTF_TAP_K;
  case OTF_SLOT_V_W: return OTF_TAP_V;
  case OTF_SLOT_O_W: return OTF_TAP_ATTN_OUT;
  case OTF_SLOT_FC1_W: return OTF_TAP_FFN_PRE;
  case OTF_SLOT_FC2_W: return OTF_TAP_FFN_OUT;
  case OTF_SLOT_PATCH_W: return OTF_TAP_PATCH_EMBED;
  case OTF_SLOT_POOL_W: return OTF_TAP_POOLED;
  default: return OTF_TAP_COUNT; /* no tap: weights-based cost */
  }
}

/* Euclidean / cosine cost between the rows of a [np, d] and b [na, d]
 * (weights mode), rows unit-normalised first when asked. */
static otf_status weights_cost(double *cost, const mat *a, const mat *b,
                               const otf_fuse_opts *o, otf_error *err) {
  size_t d = a->cols;
  float *x = big_array((a->rows + b->rows) * (d ? d : 1), sizeof(float));
  if(!x)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a weights cost");
  float *y = x + a->rows * d;
  const mat *ms[2] = {a, b};
  float *dst[2] = {x, y};
  for(int s = 0; s < 2; s++)
    for(size_t r = 0; r < ms[s]->rows; r++) {
      const float *row = ms[s]->d + r * d;
      double nrm = 0.0;
      for(size_t c = 0; c < d; c++)
        nrm += (double)row[c] * row[c];
      nrm = o->unit_rows ? sqrt(nrm) + 1e-9 : 1.0;
      for(size_t c = 0; c < d; c++)
        dst[s][r * d + c] = (float)((double)row[c] / nrm);
    }
  otf_status rc = d ? otf_cost_matrix(cost, x, y, a->rows, b->rows, d, o->metric, err)
                    : OTF_FAIL(err, OTF_E_INVAL, NULL, "empty feature rows");
  otf_free(x);
  return rc;
}

/* Solver options for one map. Near-degenerate costs (token-type tables
 * have two rows, so every column is a 2-vector; within-head blocks at small
 * reg) make Sinkhorn crawl: it gets 20000 iterations, and then the
 * log-domain solve with its Newton finish, before a plan that misses its
 * marginals is called a failure. Converging problems stop long before. */
static otf_ot_opts solver_opts(const fctx *c, int soft) {
  otf_ot_opts oo;
  memset(&oo, 0, sizeof(oo));
  oo.solver = soft ? OTF_SOLVER_SINKHORN : OTF_SOLVER_EXACT;
  oo.sinkhorn.reg = c->o->reg;
  oo.sinkhorn.max_iter = 20000;
  oo.sinkhorn.finish = 1;
  return oo;
}

/* Solves OT on cost [np, na] (normalised here) into a new map and records
 * it in the report. widening: the reference's mixed mode uses Sinkhorn
 * only where a layer widens. */
static otf_status solve_map(fctx *c, int k, const char *name, otf_space sp, int layer,
                            double *cost, size_t np, size_t na, int widening, tmap **out,
                            otf_error *err) {
  double t0 = now_s();
  otf_status rc = otf_cost_normalize(cost, np, na, c->o->cost_norm, NULL, err);
  if(rc != OTF_OK)
    return rc;
  tmap *t = tmap_new(np, na);
  if(!t)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a %zux%zu map", np, na);
  otf_ot_problem p = {.cost = cost, .n = np, .m = na};
  otf_ot_opts oo = solver_opts(c, c->o->solver == OTF_FSOLVER_SINKHORN ||
                                      (c->o->solver == OTF_FSOLVER_MIXED && widening));
  otf_ot_result r;
  rc = otf_ot_solve(t->p, &r, &p, &oo, err);
  if(rc != OTF_OK) {
    char msg[OTF_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "aligning %.80s: %.150s", name, err ? err->message : "");
    if(err)
      memcpy(err->message, msg, sizeof(msg));
    tmap_free(t);
    return rc;
  }
  /* Sharpness: mean over parent neurons of the largest share of its mass
   * that goes to one anchor neuron (1 = a hard map). */
  double sharp = 0.0;
  for(size_t i = 0; i < np; i++) {
    double mx = 0.0;
    for(size_t j = 0; j < na; j++)
      mx = t->p[i * na + j] > mx ? t->p[i * na + j] : mx; /* plans hold no NaN */
    sharp += mx * (double)np;
  }
  sharp /= (double)np;
  json_t *e = json_pack("{s:i, s:s, s:s, s:i, s:[I,I], s:s, s:I, s:f, s:f, s:f, s:f}",
                        "parent", k, "tensor", name, "space", otf_space_name(sp), "layer",
                        layer, "shape", (json_int_t)np, (json_int_t)na, "method", r.method,
                        "iterations", (json_int_t)r.iterations, "marginal_error",
                        r.marginal_error, "cost", r.objective, "sharpness", sharp,
                        "seconds", now_s() - t0);
  if(!e || json_array_append(c->maps, e) != 0) {
    json_decref(e);
    tmap_free(t);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the report");
  }
  if(c->ctl && c->ctl->on_map) {
    char *js = json_dumps(e, JSON_COMPACT);
    if(js)
      c->ctl->on_map(c->ctl->ctx, js);
    free(js);
  }
  json_decref(e);
  *out = t;
  return OTF_OK;
}

/* The feature cost for a producing tensor: activations when collected for
 * its tap, else its (input-aligned) weight rows. */
static otf_status feature_cost(fctx *c, pstate *p, const otf_tensor_spec *s, int layer,
                               const mat *wp, const mat *wa, double *cost, otf_error *err) {
  otf_tap tap = producer_tap(s);
  if(p->acts && tap != OTF_TAP_COUNT) {
    int l = tap == OTF_TAP_PATCH_EMBED || tap == OTF_TAP_POOLED ? -1 : layer;
    return otf_actstats_cost(p->acts, tap, l, cost, wp->rows, wa->rows, err);
  }
  return weights_cost(cost, wp, wa, c->o, err);
}

/* ---- attention maps with Q/K policies ---------------------------------- */

static const otf_tensor_spec *layer_spec(const otf_arch *a, otf_slot slot) {
  for(size_t i = 0; i < a->n_layer; i++)
    if(a->layer[i].slot == slot)
      return &a->layer[i];
  return NULL;
}

/* Loads a layer weight of model m as [out, in] and aligns its input with
 * the parent's stream map (NULL for the anchor). */
static otf_status load_layer_weight(mat *w, const otf_model *m, otf_slot slot, int layer,
                                    tmap *in, otf_error *err) {
  const otf_tensor_spec *s = layer_spec(otf_model_arch(m), slot);
  const otf_st_tensor *t = s ? otf_model_tensor(m, s, layer) : NULL;
  if(!t)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s has no weight for slot %d of layer %d",
                    otf_model_dir(m), (int)slot, layer);
  otf_status rc = load_mat(w, t, spec_view(s).out_axis, err);
  if(rc == OTF_OK && in)
    rc = align_input(w, in, err);
  if(rc != OTF_OK)
    mat_free(w);
  return rc;
}

/* Raw (unnormalised) feature cost of one attention projection. */
static otf_status proj_cost(fctx *c, pstate *p, int k, otf_slot slot, int layer,
                            double *cost, otf_error *err) {
  mat wp = {0}, wa = {0};
  otf_status rc = load_layer_weight(&wp, c->models[k], slot, layer, p->stream, err);
  if(rc == OTF_OK)
    rc = load_layer_weight(&wa, c->models[c->anchor], slot, layer, NULL, err);
  if(rc == OTF_OK)
    rc = feature_cost(c, p, layer_spec(c->arch, slot), layer, &wp, &wa, cost, err);
  mat_free(&wp);
  mat_free(&wa);
  return rc;
}

static void max_normalise(double *x, size_t len) {
  double mx = 0.0;
  for(size_t i = 0; i < len; i++)
    mx = fmax(mx, x[i]);
  if(mx > 0.0)
    for(size_t i = 0; i < len; i++)
      x[i] /= mx;
}

/* Head-aware maps: heads are matched as wholes (OT over heads, whose cost
 * is what the best within-head transport of Q|K and of V costs), and each
 * matched pair of heads gets within-head maps, one shared by Q and K (so
 * q.k is preserved under a hard map) and one for V. The full maps are
 * P[(h,i),(g,j)] = Pi[h,g] * pi_hg[i,j]. */
static otf_status head_maps(fctx *c, int k, int layer, double *cqk, double *cv,
                            tmap **tqk, tmap **tv, otf_error *err) {
  const otf_model_config *pc = otf_model_cfg(c->models[k]);
  size_t hp = (size_t)pc->num_heads, ha = (size_t)c->acfg->num_heads;
  size_t np = (size_t)pc->hidden_size, na = (size_t)c->acfg->hidden_size;
  size_t dh = np / hp;
  if(na / ha != dh)
    return OTF_FAIL(err, OTF_E_INVAL, "/ot/qk",
                    "qk=heads needs equal head sizes: %s has %zu, the anchor %zu",
                    otf_model_dir(c->models[k]), dh, na / ha);
  max_normalise(cqk, np * na);
  max_normalise(cv, np * na);
  double *hc = otf_malloc_array(hp * ha + 4 * dh * dh, sizeof(double));
  double *within = otf_malloc_array(2 * hp * ha * dh * dh, sizeof(double));
  otf_status rc = OTF_OK;
  if(!hc || !within) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for head maps");
    goto done;
  }
  double *sub = hc + hp * ha;
  otf_ot_opts oo = solver_opts(c, c->o->solver != OTF_FSOLVER_EXACT);
  for(size_t h = 0; h < hp; h++)
    for(size_t g = 0; g < ha; g++) {
      hc[h * ha + g] = 0.0;
      for(int which = 0; which < 2; which++) {
        const double *src = which ? cv : cqk;
        for(size_t i = 0; i < dh; i++)
          for(size_t j = 0; j < dh; j++)
            sub[i * dh + j] = src[(h * dh + i) * na + g * dh + j];
        otf_ot_problem pr = {.cost = sub, .n = dh, .m = dh};
        otf_ot_result r;
        double *plan = within + ((size_t)which * hp * ha + h * ha + g) * dh * dh;
        rc = otf_ot_solve(plan, &r, &pr, &oo, err);
        if(rc != OTF_OK)
          goto done;
        hc[h * ha + g] += r.objective;
      }
    }
  char name[96];
  snprintf(name, sizeof(name), "layer %d heads", layer);
  tmap *heads = NULL;
  rc = solve_map(c, k, name, OTF_SP_Q, layer, hc, hp, ha, 0, &heads, err);
  if(rc != OTF_OK)
    goto done;
  *tqk = tmap_new(np, na);
  *tv = tmap_new(np, na);
  if(!*tqk || !*tv) {
    tmap_free(heads);
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for head maps");
    goto done;
  }
  for(size_t h = 0; h < hp; h++)
    for(size_t g = 0; g < ha; g++) {
      double w = heads->p[h * ha + g]; /* Pi rows sum to 1/hp, pi rows to 1/dh */
      for(int which = 0; which < 2; which++) {
        const double *pl = within + ((size_t)which * hp * ha + h * ha + g) * dh * dh;
        tmap *dst = which ? *tv : *tqk;
        for(size_t i = 0; i < dh; i++)
          for(size_t j = 0; j < dh; j++)
            dst->p[(h * dh + i) * na + g * dh + j] = w * pl[i * dh + j];
      }
    }
  tmap_free(heads);
done:
  otf_free(hc);
  otf_free(within);
  return rc;
}

/* Q/K maps under the shared and heads policies, made when the layer's
 * query weight is reached. */
static otf_status produce_attention(fctx *c, int k, int layer, otf_error *err) {
  pstate *p = &c->ps[k];
  size_t np = (size_t)otf_model_cfg(c->models[k])->hidden_size;
  size_t na = (size_t)c->acfg->hidden_size;
  double *cq = big_array(3 * np * na, sizeof(double));
  if(!cq)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for attention costs");
  double *ck = cq + np * na, *cv = ck + np * na;
  otf_status rc = proj_cost(c, p, k, OTF_SLOT_Q_W, layer, cq, err);
  if(rc == OTF_OK)
    rc = proj_cost(c, p, k, OTF_SLOT_K_W, layer, ck, err);
  if(rc != OTF_OK)
    goto done;
  /* The distance between concatenated Q|K features. */
  for(size_t i = 0; i < np * na; i++)
    cq[i] = sqrt(cq[i] * cq[i] + ck[i] * ck[i]);
  tmap *tq = NULL, *tk = NULL, *tv = NULL;
  if(c->o->qk == OTF_QK_HEADS) {
    rc = proj_cost(c, p, k, OTF_SLOT_V_W, layer, cv, err);
    if(rc == OTF_OK)
      rc = head_maps(c, k, layer, cq, cv, &tq, &tv, err);
  } else {
    char name[96];
    snprintf(name, sizeof(name), "layer %d query+key", layer);
    rc = solve_map(c, k, name, OTF_SP_Q, layer, cq, np, na, 0, &tq, err);
  }
  if(rc != OTF_OK)
    goto done;
  tk = tmap_copy(tq);
  if(!tk) {
    tmap_free(tq);
    tmap_free(tv);
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for maps");
    goto done;
  }
  *space_slot(p, OTF_SP_Q, layer, c->layers) = tq;
  *space_slot(p, OTF_SP_K, layer, c->layers) = tk;
  if(tv)
    *space_slot(p, OTF_SP_V, layer, c->layers) = tv;
done:
  otf_free(cq);
  return rc;
}

/* ---- residual merges --------------------------------------------------- */

/* Mean |activation| per anchor neuron of a tap, for the weighted policies. */
static const double *magnitude(fctx *c, otf_tap tap, int layer) {
  return c->mag[tap][layer + 1];
}

/* which: 0 = the merge after attention, 1 = after the MLP. */
static otf_status do_merge(fctx *c, pstate *p, int layer, int which, otf_error *err) {
  if(p->nbranch == 0)
    return OTF_OK;
  if(!p->stream) {
    /* Embeddings: the branches (patches + positions, or words + positions
     * + token types) are averaged into the first stream map. */
    tmap *s = p->branch[0];
    for(int b = 1; b < p->nbranch; b++) {
      for(size_t i = 0; i < s->np * s->na; i++)
        s->p[i] += p->branch[b]->p[i];
      tmap_free(p->branch[b]);
    }
    for(size_t i = 0; i < s->np * s->na; i++)
      s->p[i] /= (double)p->nbranch;
    tmap_changed(s);
    p->stream = s;
    p->nbranch = 0;
    return OTF_OK;
  }
  tmap *s = p->stream, *b = p->branch[0];
  size_t np = s->np, na = s->na;
  tmap_changed(s); /* every policy but skip writes s->p below */
  switch(c->o->resid) {
  case OTF_RESID_MEAN:
    for(size_t i = 0; i < np * na; i++)
      s->p[i] = 0.5 * (s->p[i] + b->p[i]);
    break;
  case OTF_RESID_SKIP:
    break;
  case OTF_RESID_BRANCH:
    memcpy(s->p, b->p, np * na * sizeof(double));
    break;
  case OTF_RESID_WSCALAR:
  case OTF_RESID_WMATRIX: {
    otf_tap st = which == 0 ? (layer == 0 ? OTF_TAP_EMBEDDINGS : OTF_TAP_RESID_FFN)
                            : OTF_TAP_RESID_ATTN;
    int sl = which == 0 ? (layer == 0 ? -1 : layer - 1) : layer;
    const double *ms = magnitude(c, st, sl);
    const double *mb = magnitude(c, which == 0 ? OTF_TAP_ATTN_OUT : OTF_TAP_FFN_OUT, layer);
    if(!ms || !mb)
      return OTF_FAIL(err, OTF_E_INTERNAL, NULL, "no magnitudes for layer %d", layer);
    double ss = 0.0, sb = 0.0;
    for(size_t j = 0; j < na; j++) {
      ss += ms[j];
      sb += mb[j];
    }
    for(size_t j = 0; j < na; j++) {
      double ws = c->o->resid == OTF_RESID_WSCALAR ? ss / (ss + sb + 1e-300)
                                                   : ms[j] / (ms[j] + mb[j] + 1e-300);
      for(size_t i = 0; i < np; i++)
        s->p[i * na + j] = ws * s->p[i * na + j] + (1.0 - ws) * b->p[i * na + j];
    }
    break;
  }
  }
  tmap_free(b);
  p->nbranch = 0;
  return OTF_OK;
}

/* ---- one table entry ---------------------------------------------------- */

static int is_producer(const otf_tensor_spec *s) {
  return s->rank >= 2 && (s->role == OTF_ROLE_LINEAR_W || s->role == OTF_ROLE_EMBED ||
                          s->role == OTF_ROLE_POS_EMBED || s->role == OTF_ROLE_PATCH_W);
}

/* The map a tensor reading `sp` at `layer` uses for its inputs. */
static tmap *input_map(pstate *p, otf_space sp, int layer, int layers) {
  if(sp == OTF_SP_RESID)
    return p->stream;
  return *space_slot(p, sp, sp == OTF_SP_POOL || sp == OTF_SP_MLM ? -1 : layer, layers);
}

/* Aligns parent k's tensor m (out-first view) into the anchor's space,
 * in place; ma is the anchor's tensor in the same view. Makes the maps
 * this tensor is the first to need. */
static otf_status align_entry(fctx *c, int k, const otf_tensor_spec *s, int layer,
                              const char *name, mat *m, const mat *ma, otf_error *err) {
  pstate *p = &c->ps[k];
  view v = spec_view(s);
  otf_space out = v.out_axis >= 0 ? s->axes[v.out_axis] : OTF_SP_ONE;
  int slayer = out == OTF_SP_POOL || out == OTF_SP_MLM ? -1 : layer;
  tmap *tin = NULL;
  otf_status rc;
  if(v.in_axis >= 0) {
    tin = input_map(p, s->axes[v.in_axis], layer, c->layers);
    if(!tin)
      return OTF_FAIL(err, OTF_E_INTERNAL, name, "%s: no map for its input space %s", name,
                      otf_space_name(s->axes[v.in_axis]));
    rc = align_input(m, tin, err);
    if(rc != OTF_OK)
      return rc;
  }
  tmap *tout = NULL;
  if(!aligned_space(out)) {
    /* Classes, vocabulary, token types: kept in their own order. */
  } else if(out == OTF_SP_RESID && is_producer(s)) {
    if(p->nbranch >= (int)(sizeof(p->branch) / sizeof(p->branch[0])))
      return OTF_FAIL(err, OTF_E_INTERNAL, name, "too many branches before a merge");
    double *cost = big_array(m->rows * ma->rows, sizeof(double));
    if(!cost)
      return OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for the cost of %s", name);
    rc = feature_cost(c, p, s, layer, m, ma, cost, err);
    int widening = tin && (m->rows > tin->np || ma->rows > tin->na);
    if(rc == OTF_OK)
      rc = solve_map(c, k, name, out, layer, cost, m->rows, ma->rows, widening, &tout, err);
    otf_free(cost);
    if(rc != OTF_OK)
      return rc;
    p->branch[p->nbranch++] = tout;
    if(s->slot == OTF_SLOT_WORD_EMBED && c->tied_mlm) {
      /* The MLM decoder is tied to these columns: its input space must
       * move exactly like them. */
      tmap **mlm = space_slot(p, OTF_SP_MLM, -1, c->layers);
      *mlm = tmap_copy(tout);
      if(!*mlm)
        return OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for maps");
    }
  } else if(out == OTF_SP_RESID) {
    /* Vectors of the stream: a branch's bias uses the branch's map; LN
     * gains and the cls token use the merged stream map. */
    tout = p->nbranch ? p->branch[p->nbranch - 1] : p->stream;
  } else {
    tmap **slot = space_slot(p, out, slayer, c->layers);
    if(!*slot) {
      if(!is_producer(s))
        return OTF_FAIL(err, OTF_E_INTERNAL, name, "%s: no map for space %s", name,
                        otf_space_name(out));
      if((out == OTF_SP_Q || out == OTF_SP_K) && c->o->qk != OTF_QK_SEPARATE) {
        rc = produce_attention(c, k, layer, err);
      } else {
        double *cost = big_array(m->rows * ma->rows, sizeof(double));
        if(!cost)
          return OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for the cost of %s", name);
        rc = feature_cost(c, p, s, layer, m, ma, cost, err);
        int widening = tin && (m->rows > tin->np || ma->rows > tin->na);
        if(rc == OTF_OK)
          rc = solve_map(c, k, name, out, layer, cost, m->rows, ma->rows, widening, slot, err);
        otf_free(cost);
      }
      if(rc != OTF_OK)
        return rc;
    }
    tout = *slot;
  }
  if(tout) {
    rc = align_output(m, tout, c->o->tmnorm, err);
    if(rc != OTF_OK)
      return rc;
  }
  if(m->rows != ma->rows || m->cols != ma->cols)
    return OTF_FAIL(err, OTF_E_INVAL, name,
                    "%s of %s aligns to [%zu, %zu] but the anchor's is [%zu, %zu]: the "
                    "models differ in a dimension that is not aligned",
                    name, otf_model_dir(c->models[k]), m->rows, m->cols, ma->rows, ma->cols);
  return OTF_OK;
}

static unsigned component_of(const otf_arch *a, const otf_tensor_spec *s) {
  unsigned bias = s->role == OTF_ROLE_LINEAR_B || s->role == OTF_ROLE_PATCH_B ? OTF_FUSE_BIAS
                                                                                : 0;
  if(s->role == OTF_ROLE_NORM_W || s->role == OTF_ROLE_NORM_B)
    return OTF_FUSE_NORM;
  if(s >= a->pre && s < a->pre + a->n_pre)
    return OTF_FUSE_EMBED | bias;
  if(s >= a->post && s < a->post + a->n_post)
    return OTF_FUSE_HEAD | bias;
  switch(s->slot) {
  case OTF_SLOT_FC1_W: case OTF_SLOT_FC1_B: case OTF_SLOT_FC2_W: case OTF_SLOT_FC2_B:
    return OTF_FUSE_MLP | bias;
  default:
    return OTF_FUSE_ATTN | bias;
  }
}

/* ---- streamed output ---------------------------------------------------- */

/* The output file, planned from the anchor's table before the fusion runs
 * (names, shapes and dtypes are the anchor's, so the header is known up
 * front) and filled tensor by tensor as fuse_entry finishes each one: the
 * fused model is never held whole. */
typedef struct sink {
  otf_st_writer *w;
  otf_st_out *plan;  /* [count], in the order fuse_entry produces them */
  char *names;       /* plan[k].name point into this block */
  size_t count, cap, next;
  otf_dtype cfg_dtype; /* config.json's torch_dtype */
  void *buf;         /* conversion buffer (16-bit outputs) */
  size_t buf_bytes;
} sink;

/* The dtype a fused tensor is written in: dtype, or with OTF_DT_COUNT the
 * source's when it is 16-bit, else F32. Buffers keep theirs. */
static otf_dtype out_dtype(const otf_tensor_spec *s, const otf_st_tensor *t, otf_dtype dtype) {
  if(s->role == OTF_ROLE_BUFFER)
    return t->dtype;
  if(dtype != OTF_DT_COUNT)
    return dtype;
  return t->dtype == OTF_DT_F16 || t->dtype == OTF_DT_BF16 ? t->dtype : OTF_DT_F32;
}

/* The anchor's tensor for s at layer that the fusion writes, or NULL when
 * it writes none (optional and absent, or tied and not stored). name
 * [512] receives its name. */
static const otf_st_tensor *output_tensor(const otf_model *am, const otf_tensor_spec *s,
                                          int layer, char *name, otf_error *err,
                                          otf_status *rc) {
  *rc = OTF_OK;
  if(otf_arch_name(name, 512, s, layer, 0) < 0) {
    *rc = OTF_FAIL(err, OTF_E_INTERNAL, NULL, "tensor name too long");
    return NULL;
  }
  const otf_st_tensor *ta = otf_model_tensor(am, s, layer);
  if(!ta || ((s->flags & OTF_TF_TIED) && !otf_ckpt_find(otf_model_ckpt(am), name)))
    return NULL;
  return ta;
}

static void sink_free(sink *k) {
  if(!k)
    return;
  otf_st_writer_free(k->w);
  otf_free(k->plan);
  otf_free(k->names);
  otf_free(k->buf);
}

static otf_status sink_add(sink *k, const otf_tensor_spec *s, int layer, const otf_model *am,
                           otf_dtype dtype, size_t *name_used, otf_error *err) {
  char name[512];
  otf_status rc;
  if(s->role == OTF_ROLE_MERGE)
    return OTF_OK;
  const otf_st_tensor *ta = output_tensor(am, s, layer, name, err, &rc);
  if(!ta)
    return rc;
  if(k->count == k->cap) {
    size_t cap = k->cap ? 2 * k->cap : 256;
    otf_st_out *np = otf_realloc(k->plan, cap * sizeof(*np));
    if(!np)
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to plan the output");
    k->plan = np;
    k->cap = cap;
  }
  otf_st_out *o = &k->plan[k->count++];
  memset(o, 0, sizeof(*o));
  o->name = (const char *)(uintptr_t)*name_used; /* an offset until the block is final */
  o->dtype = out_dtype(s, ta, dtype);
  o->rank = ta->rank;
  memcpy(o->shape, ta->shape, sizeof(o->shape));
  if(s->role != OTF_ROLE_BUFFER && (ta->dtype == OTF_DT_F16 || ta->dtype == OTF_DT_BF16))
    k->cfg_dtype = ta->dtype;
  size_t len = strlen(name) + 1;
  char *nn = otf_realloc(k->names, *name_used + len);
  if(!nn)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to plan the output");
  k->names = nn;
  memcpy(nn + *name_used, name, len);
  *name_used += len;
  return OTF_OK;
}

/* Plans the output from the anchor's table, in fuse_entry's order, and
 * opens the file with its header written. */
static otf_status sink_open(sink *k, const otf_model *am, const char *path, otf_dtype dtype,
                            otf_error *err) {
  memset(k, 0, sizeof(*k));
  k->cfg_dtype = dtype == OTF_DT_COUNT ? OTF_DT_F32 : dtype;
  const otf_arch *a = otf_model_arch(am);
  int layers = otf_model_cfg(am)->num_layers;
  size_t used = 0;
  otf_status rc = OTF_OK;
  for(int pass = 0; pass < 2 && rc == OTF_OK; pass++)
    for(size_t i = 0; i < a->n_pre && rc == OTF_OK; i++)
      if((a->pre[i].role == OTF_ROLE_TOKEN) == (pass == 1))
        rc = sink_add(k, &a->pre[i], -1, am, dtype, &used, err);
  for(int l = 0; l < layers && rc == OTF_OK; l++)
    for(size_t i = 0; i < a->n_layer && rc == OTF_OK; i++)
      rc = sink_add(k, &a->layer[i], l, am, dtype, &used, err);
  for(size_t i = 0; i < a->n_post && rc == OTF_OK; i++)
    rc = sink_add(k, &a->post[i], -1, am, dtype, &used, err);
  if(rc != OTF_OK)
    return rc;
  if(dtype != OTF_DT_COUNT)
    k->cfg_dtype = dtype;
  for(size_t j = 0; j < k->count; j++)
    k->plan[j].name = k->names + (uintptr_t)k->plan[j].name;
  const char *meta[] = {"producer", "otfuse fuse"};
  return otf_st_writer_open(&k->w, path, k->plan, k->count, meta, 1, err);
}

/* Writes the next planned tensor: data (F32 values, or NULL for a buffer
 * copied as it is from t). */
static otf_status sink_put(sink *k, const char *name, const otf_st_tensor *t, const float *data,
                           otf_error *err) {
  if(k->next >= k->count || strcmp(k->plan[k->next].name, name))
    return OTF_FAIL(err, OTF_E_INTERNAL, name, "output %s is not the planned tensor %zu", name,
                    k->next);
  const otf_st_out *o = &k->plan[k->next];
  const void *bytes = data ? (const void *)data : t->data;
  if(data && o->dtype != OTF_DT_F32) {
    size_t numel = 1;
    for(int r = 0; r < o->rank; r++)
      numel *= (size_t)o->shape[r];
    size_t need = (numel ? numel : 1) * otf_dtype_size(o->dtype);
    if(need > k->buf_bytes) {
      otf_free(k->buf);
      k->buf_bytes = 0;
      k->buf = otf_malloc(need);
      if(!k->buf)
        return OTF_FAIL(err, OTF_E_NOMEM, name, "no memory to convert %s", name);
      k->buf_bytes = need;
    }
    otf_status rc = otf_st_convert_f32(k->buf, o->dtype, data, numel, err);
    if(rc != OTF_OK)
      return rc;
    bytes = k->buf;
  }
  otf_status rc = otf_st_writer_put(k->w, k->next, bytes, err);
  if(rc == OTF_OK)
    k->next++;
  return rc;
}

static otf_status add_output(otf_fused *f, const char *name, const otf_st_tensor *t,
                             float *data, otf_error *err) {
  if(f->nt == f->cap) {
    size_t cap = f->cap ? 2 * f->cap : 64;
    ftensor *nt = otf_realloc(f->t, cap * sizeof(*nt));
    if(!nt)
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for outputs");
    f->t = nt;
    f->cap = cap;
  }
  ftensor *o = &f->t[f->nt];
  memset(o, 0, sizeof(*o));
  size_t len = strlen(name);
  o->name = otf_malloc(len + 1);
  if(!o->name)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for outputs");
  memcpy(o->name, name, len + 1);
  o->rank = t->rank;
  memcpy(o->shape, t->shape, sizeof(o->shape));
  o->src_dtype = t->dtype;
  o->data = data;
  if(!data) {
    o->raw = t->data;
    o->raw_bytes = (size_t)t->nbytes;
  }
  f->nt++;
  return OTF_OK;
}

/* Fuses one table entry over all parents into an output tensor. */
static otf_status fuse_entry(fctx *c, const otf_tensor_spec *s, int layer, otf_error *err) {
  const otf_model *am = c->models[c->anchor];
  char name[512];
  otf_status rc;
  const otf_st_tensor *ta = output_tensor(am, s, layer, name, err, &rc);
  if(!ta)
    return rc; /* optional and absent, or tied and not stored: the fused
                  model ties it the same way */
  if(s->role == OTF_ROLE_BUFFER)
    return c->sink ? sink_put(c->sink, name, ta, NULL, err)
                   : add_output(c->out, name, ta, NULL, err);
  view v = spec_view(s);
  mat ma = {0}, m = {0};
  double *acc = NULL;
  float *res = NULL, *outd = NULL;
  rc = load_mat(&ma, ta, v.out_axis, err);
  if(rc != OTF_OK)
    return rc;
  size_t len = ma.rows * ma.cols;
  /* The weighted sum over parents is taken in double. With more than one
   * parent besides the anchor it is accumulated in parent order; with one,
   * it is formed in a single pass once that parent is aligned (the same
   * value: x + y == y + x, and 0 + x == x). */
  if(c->n > 2) {
    acc = big_zeroed(len ? len : 1, sizeof(double));
    if(!acc) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for %s", name);
      goto done;
    }
  }
  int fuse_it = (component_of(c->arch, s) & c->o->components) == component_of(c->arch, s);
  for(size_t k = 0; k < c->n; k++) {
    if((int)k == c->anchor) {
      double w = fuse_it ? c->w[k] : 1.0;
      for(size_t i = 0; acc && i < len; i++)
        acc[i] += w * (double)ma.d[i];
      continue;
    }
    const otf_st_tensor *tk = otf_model_tensor(c->models[k], s, layer);
    if(!tk) {
      rc = OTF_FAIL(err, OTF_E_INVAL, name, "%s has %s but %s does not", otf_model_dir(am),
                    name, otf_model_dir(c->models[k]));
      goto done;
    }
    rc = load_mat(&m, tk, v.out_axis, err);
    if(rc != OTF_OK)
      goto done;
    if(c->o->method == OTF_METHOD_OT) {
      rc = align_entry(c, (int)k, s, layer, name, &m, &ma, err);
      if(rc != OTF_OK)
        goto done;
    } else if(m.rows != ma.rows || m.cols != ma.cols) {
      rc = OTF_FAIL(err, OTF_E_INVAL, name, "plain averaging needs equal shapes: %s differs",
                    name);
      goto done;
    }
    if(fuse_it && acc) {
      for(size_t i = 0; i < len; i++)
        acc[i] += c->w[k] * (double)m.d[i];
    } else if(fuse_it) {
      double wa = c->w[c->anchor], wk = c->w[k];
      for(size_t i = 0; i < len; i++)
        m.d[i] = (float)(wa * (double)ma.d[i] + wk * (double)m.d[i]);
      res = m.d;
      m.d = NULL;
    }
    mat_free(&m);
  }
  if(acc) {
    res = big_array(len ? len : 1, sizeof(float));
    if(!res) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for %s", name);
      goto done;
    }
    for(size_t i = 0; i < len; i++)
      res[i] = (float)acc[i];
  } else if(!res) {
    res = ma.d; /* not fused: the anchor's values */
    ma.d = NULL;
  }
  if(storage_is_matrix(ta, v.out_axis)) {
    outd = res;
    res = NULL;
  } else {
    outd = big_array(len ? len : 1, sizeof(float));
    if(!outd) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, name, "no memory for %s", name);
      goto done;
    }
    store_mat(outd, res, ma.rows, ma.cols, ta->shape, ta->rank, v.out_axis);
  }
  if(c->sink) {
    rc = sink_put(c->sink, name, ta, outd, err); /* outd freed below */
  } else {
    rc = add_output(c->out, name, ta, outd, err);
    if(rc == OTF_OK)
      outd = NULL;
  }
done:
  mat_free(&m);
  mat_free(&ma);
  otf_free(acc);
  otf_free(res);
  otf_free(outd);
  return rc;
}

/* ---- anchor magnitudes (weighted residual policies) --------------------- */

typedef struct magctx {
  fctx *c;
  const int64_t *mask; /* [n, seq] or NULL */
  size_t seq;
  double counts[OTF_MAX_LAYERS + 1];
} magctx;

static otf_status mag_tap(void *ctx, otf_tap tap, int layer, const float *x, size_t rows,
                          size_t cols) {
  magctx *mc = ctx;
  double *acc = mc->c->mag[tap][layer + 1];
  if(!acc)
    return OTF_OK;
  for(size_t r = 0; r < rows; r++) {
    if(mc->mask && !mc->mask[r])
      continue; /* padding: not an observation */
    for(size_t j = 0; j < cols; j++)
      acc[j] += fabs(x[r * cols + j]);
    if(tap == OTF_TAP_FFN_OUT)
      mc->counts[layer + 1] += 1.0; /* every tap of a layer sees the same rows */
    else if(tap == OTF_TAP_EMBEDDINGS)
      mc->counts[0] += 1.0;
  }
  return OTF_OK;
}

/* Runs the anchor over the calibration inputs and keeps, per neuron, the
 * mean |activation| of the residual streams and branches. */
static otf_status anchor_magnitudes(fctx *c, otf_error *err) {
  static const otf_tap taps[] = {OTF_TAP_EMBEDDINGS, OTF_TAP_RESID_ATTN, OTF_TAP_RESID_FFN,
                                 OTF_TAP_ATTN_OUT, OTF_TAP_FFN_OUT};
  enum { BATCH = 16 };
  const otf_model *am = c->models[c->anchor];
  size_t d = (size_t)c->acfg->hidden_size;
  otf_st_file *f = NULL;
  otf_dataset *ds = NULL;
  otf_weights w;
  memset(&w, 0, sizeof(w));
  otf_forward *fw = NULL;
  otf_status rc = otf_st_open(&f, c->o->calibration, err);
  if(rc != OTF_OK)
    return rc;
  const otf_model_config *cfgs[1] = {c->acfg};
  otf_dataset_opts dopts = {.cfgs = cfgs, .ncfg = 1, .what = "calibration file"};
  rc = otf_dataset_open(&ds, f, &dopts, err);
  if(rc == OTF_OK)
    rc = otf_dataset_reserve(ds, BATCH, err);
  if(rc != OTF_OK)
    goto done;
  for(size_t t = 0; t < sizeof(taps) / sizeof(*taps); t++)
    for(int l = -1; l < c->layers; l++) {
      if((taps[t] == OTF_TAP_EMBEDDINGS) != (l == -1))
        continue;
      c->mag[taps[t]][l + 1] = otf_calloc(d, sizeof(double));
      if(!c->mag[taps[t]][l + 1]) {
        rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for magnitudes");
        goto done;
      }
    }
  size_t n = otf_dataset_count(ds), seq = otf_dataset_seq(ds);
  if(c->o->samples && c->o->samples < n)
    n = c->o->samples;
  rc = otf_weights_load(&w, am, err);
  if(rc == OTF_OK)
    rc = otf_forward_create(&fw, &w, c->acfg, c->arch, BATCH, seq ? seq : 1, err);
  if(rc != OTF_OK)
    goto done;
  magctx mc;
  memset(&mc, 0, sizeof(mc));
  mc.c = c;
  mc.seq = seq;
  uint32_t bits = 0;
  for(size_t t = 0; t < sizeof(taps) / sizeof(*taps); t++)
    bits |= OTF_TAP_BIT(taps[t]);
  for(size_t b0 = 0; b0 < n && rc == OTF_OK; b0 += BATCH) {
    otf_batch b;
    rc = otf_dataset_fill_range(ds, &b, b0, n - b0 < BATCH ? n - b0 : BATCH, err);
    if(rc != OTF_OK)
      break;
    mc.mask = b.attention_mask; /* NULL for images or files without a mask */
    rc = otf_forward_run(fw, &b, NULL, bits, mag_tap, &mc, err);
  }
  for(size_t t = 0; rc == OTF_OK && t < sizeof(taps) / sizeof(*taps); t++)
    for(int l = -1; l < c->layers; l++) {
      double *acc = c->mag[taps[t]][l + 1];
      double cnt = taps[t] == OTF_TAP_EMBEDDINGS ? mc.counts[0] : mc.counts[l + 1];
      for(size_t j = 0; acc && cnt > 0 && j < d; j++)
        acc[j] /= cnt;
    }
done:
  otf_forward_destroy(fw);
  otf_weights_free(&w);
  otf_dataset_destroy(ds);
  otf_st_close(f);
  return rc;
}

/* ---- the whole fusion ---------------------------------------------------- */

/* Parents must share everything that is not aligned: architecture, depth,
 * inputs and outputs. */
static otf_status check_compatible(fctx *c, otf_error *err) {
  const otf_model_config *a = c->acfg;
  const char *ad = otf_model_dir(c->models[c->anchor]);
  for(size_t k = 0; k < c->n; k++) {
    const otf_model_config *p = otf_model_cfg(c->models[k]);
    const char *pd = otf_model_dir(c->models[k]);
    const char *what = NULL;
    if(strcmp(p->architecture, a->architecture))
      what = "architecture";
    else if(p->num_layers != a->num_layers)
      what = "depth (num_hidden_layers)";
    else if(p->family == OTF_FAMILY_BERT &&
            (p->vocab_size != a->vocab_size || p->type_vocab_size != a->type_vocab_size))
      what = "vocabulary";
    else if(p->family == OTF_FAMILY_BERT &&
            p->max_position_embeddings != a->max_position_embeddings)
      what = "position table (max_position_embeddings)";
    else if(p->family == OTF_FAMILY_VIT &&
            (p->image_size != a->image_size || p->patch_size != a->patch_size ||
             p->num_channels != a->num_channels))
      what = "input shape (image_size, patch_size, num_channels)";
    else if(p->num_labels != a->num_labels)
      what = "number of labels";
    else if(c->o->method == OTF_METHOD_AVERAGE &&
            (p->hidden_size != a->hidden_size || p->intermediate_size != a->intermediate_size ||
             p->num_heads != a->num_heads))
      what = "width (plain averaging needs identical shapes; use --method ot)";
    if(what)
      return OTF_FAIL(err, OTF_E_INVAL, "/models", "%s and %s differ in %s", pd, ad, what);
    if(p->family == OTF_FAMILY_GPT2)
      return OTF_FAIL(err, OTF_E_UNSUPPORTED, "/models",
                      "%s: GPT-2 has an architecture table but no fusion support yet", pd);
  }
  return OTF_OK;
}

static void progress(fctx *c, const char *stage, double frac) {
  if(c->ctl && c->ctl->progress)
    c->ctl->progress(c->ctl->ctx, stage, frac);
}

static int cancelled(const fctx *c) { return c->ctl && c->ctl->cancel && *c->ctl->cancel; }

static void free_states(fctx *c) {
  for(size_t k = 0; k < c->n; k++) {
    pstate *p = &c->ps[k];
    if(p->spaces)
      for(size_t i = 0; i < (size_t)(c->layers + 1) * OTF_SP_COUNT; i++)
        tmap_free(p->spaces[i]);
    otf_free(p->spaces);
    tmap_free(p->stream);
    for(int b = 0; b < p->nbranch; b++)
      tmap_free(p->branch[b]);
    otf_actstats_free(p->acts);
  }
  for(int t = 0; t < OTF_TAP_COUNT; t++)
    for(int l = 0; l <= OTF_MAX_LAYERS; l++)
      otf_free(c->mag[t][l]);
}

static json_t *settings_json(const otf_fuse_opts *o, size_t n, const double *w) {
  json_t *ws = json_array();
  for(size_t k = 0; k < n; k++)
    json_array_append_new(ws, json_real(w[k]));
  return json_pack("{s:s, s:s, s:s, s:f, s:s, s:s, s:b, s:s, s:s, s:s, s:i, s:o, s:s?, s:I, s:I, s:i}",
                   "method", o->method == OTF_METHOD_OT ? "ot" : "average", "align",
                   o->align == OTF_ALIGN_WEIGHTS ? "weights" : "activations", "solver",
                   otf_fuse_solver_name(o->solver), "reg", o->reg, "metric",
                   otf_metric_name(o->metric), "cost_norm", otf_cost_norm_name(o->cost_norm),
                   "unit_rows", o->unit_rows, "residual", otf_resid_name(o->resid), "qk",
                   otf_qk_name(o->qk), "maps",
                   o->tmnorm == OTF_TMNORM_CLEAN ? "clean" : "reference", "anchor", o->anchor,
                   "weights", ws, "calibration", o->calibration, "samples",
                   (json_int_t)o->samples, "seed", (json_int_t)o->seed, "window", o->window);
}

static otf_status fuse_run(otf_fused **out, const otf_model *const *models, size_t n,
                           const otf_fuse_opts *o, const otf_fuse_ctl *ctl, sink *sk,
                           otf_error *err) {
  *out = NULL;
  if(n < 2 || n > OTF_MAX_PARENTS)
    return OTF_FAIL(err, OTF_E_INVAL, "/models", "fusion needs 2 to %d models, got %zu",
                    OTF_MAX_PARENTS, n);
  if(o->anchor < 0 || (size_t)o->anchor >= n)
    return OTF_FAIL(err, OTF_E_INVAL, "/ot/anchor", "anchor %d is not one of the %zu models",
                    o->anchor, n);
  if(o->method == OTF_METHOD_OT && !(o->reg > 0.0 && isfinite(o->reg)))
    return OTF_FAIL(err, OTF_E_INVAL, "/ot/reg", "reg must be a number > 0");
  fctx *c = otf_calloc(1, sizeof(*c));
  if(!c)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a fusion");
  otf_status rc = OTF_OK;
  c->o = o;
  c->ctl = ctl;
  c->sink = sk;
  c->models = models;
  c->n = n;
  c->anchor = o->anchor;
  c->acfg = otf_model_cfg(models[o->anchor]);
  c->arch = otf_model_arch(models[o->anchor]);
  c->layers = c->acfg->num_layers;
  double wsum = 0.0;
  for(size_t k = 0; k < n; k++) {
    if(!(o->weights[k] >= 0.0) || !isfinite(o->weights[k])) {
      rc = OTF_FAIL(err, OTF_E_INVAL, "/ot/weights", "weight %zu must be >= 0", k);
      goto done;
    }
    wsum += o->weights[k];
  }
  for(size_t k = 0; k < n; k++)
    c->w[k] = wsum > 0.0 ? o->weights[k] / wsum : 1.0 / (double)n;
  rc = check_compatible(c, err);
  if(rc != OTF_OK)
    goto done;
  for(size_t i = 0; i < c->arch->n_post; i++)
    if(c->arch->post[i].slot == OTF_SLOT_MLM_DECODER_W && (c->arch->post[i].flags & OTF_TF_TIED))
      c->tied_mlm = 1;
  c->out = otf_calloc(1, sizeof(*c->out));
  c->maps = json_array();
  if(!c->out || !c->maps) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a fusion");
    goto done;
  }
  c->out->anchor = models[o->anchor];
  double t0 = now_s();
  int needs_calib = o->method == OTF_METHOD_OT &&
                    (o->align == OTF_ALIGN_ACTIVATIONS || o->resid == OTF_RESID_WSCALAR ||
                     o->resid == OTF_RESID_WMATRIX);
  if(needs_calib && !o->calibration) {
    rc = OTF_FAIL(err, OTF_E_INVAL, "/calibration",
                  "activations alignment and weighted residual policies need a "
                  "calibration file");
    goto done;
  }
  for(size_t k = 0; k < n; k++) {
    c->ps[k].m = models[k];
    if((int)k == c->anchor || o->method != OTF_METHOD_OT)
      continue;
    c->ps[k].spaces = otf_calloc((size_t)(c->layers + 1) * OTF_SP_COUNT, sizeof(tmap *));
    if(!c->ps[k].spaces) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for maps");
      goto done;
    }
    if(o->align == OTF_ALIGN_ACTIVATIONS) {
      progress(c, "calibrating", 0.0);
      otf_calib_opts co = {.samples = o->samples, .seed = o->seed, .batch = 0,
                           .window = o->window,
                           .taps = OTF_TAP_BIT(OTF_TAP_Q) | OTF_TAP_BIT(OTF_TAP_K) |
                                   OTF_TAP_BIT(OTF_TAP_V) | OTF_TAP_BIT(OTF_TAP_ATTN_OUT) |
                                   OTF_TAP_BIT(OTF_TAP_FFN_PRE) |
                                   OTF_TAP_BIT(OTF_TAP_FFN_OUT)};
      if(c->acfg->family == OTF_FAMILY_VIT)
        co.taps |= OTF_TAP_BIT(OTF_TAP_PATCH_EMBED);
      for(size_t i = 0; i < c->arch->n_post; i++)
        if(c->arch->post[i].slot == OTF_SLOT_POOL_W &&
           otf_model_tensor(models[k], &c->arch->post[i], -1) &&
           otf_model_tensor(models[o->anchor], &c->arch->post[i], -1))
          co.taps |= OTF_TAP_BIT(OTF_TAP_POOLED);
      rc = otf_actstats_collect(&c->ps[k].acts, models[k], models[o->anchor], o->calibration,
                                &co, NULL, NULL, ctl ? ctl->cancel : NULL, err);
      if(rc != OTF_OK)
        goto done;
    }
  }
  if(needs_calib && (o->resid == OTF_RESID_WSCALAR || o->resid == OTF_RESID_WMATRIX)) {
    rc = anchor_magnitudes(c, err);
    if(rc != OTF_OK)
      goto done;
  }
  /* Walk the anchor's table: the embeddings (learned tokens after their
   * merge, since they live in the merged stream), the layers, the heads. */
  const otf_arch *a = c->arch;
  size_t total = a->n_pre + (size_t)c->layers * a->n_layer + a->n_post, done_n = 0;
  for(int pass = 0; pass < 2 && rc == OTF_OK; pass++)
    for(size_t i = 0; i < a->n_pre && rc == OTF_OK; i++) {
      const otf_tensor_spec *s = &a->pre[i];
      if((s->role == OTF_ROLE_TOKEN) != (pass == 1))
        continue;
      if(s->role == OTF_ROLE_MERGE) {
        for(size_t k = 0; k < n && rc == OTF_OK; k++)
          if((int)k != c->anchor && o->method == OTF_METHOD_OT)
            rc = do_merge(c, &c->ps[k], -1, 0, err);
      } else {
        rc = fuse_entry(c, s, -1, err);
      }
      done_n++;
    }
  for(int l = 0; l < c->layers && rc == OTF_OK; l++) {
    int merges = 0;
    for(size_t i = 0; i < a->n_layer && rc == OTF_OK; i++) {
      if(cancelled(c)) {
        rc = OTF_FAIL(err, OTF_E_CANCELLED, NULL, "fusion cancelled");
        break;
      }
      const otf_tensor_spec *s = &a->layer[i];
      if(s->role == OTF_ROLE_MERGE) {
        for(size_t k = 0; k < n && rc == OTF_OK; k++)
          if((int)k != c->anchor && o->method == OTF_METHOD_OT)
            rc = do_merge(c, &c->ps[k], l, merges, err);
        merges++;
      } else {
        rc = fuse_entry(c, s, l, err);
      }
      progress(c, "aligning", (double)++done_n / (double)total);
    }
    /* Nothing after layer l reads its maps (Q, K, V, FFN): free them now,
     * so that at most one layer's maps are held. */
    for(size_t k = 0; k < n; k++)
      for(int sp = 0; c->ps[k].spaces && sp < OTF_SP_COUNT; sp++) {
        tmap **slot = space_slot(&c->ps[k], (otf_space)sp, l, c->layers);
        tmap_free(*slot);
        *slot = NULL;
      }
  }
  for(size_t i = 0; i < a->n_post && rc == OTF_OK; i++)
    rc = fuse_entry(c, &a->post[i], -1, err);
  if(rc != OTF_OK)
    goto done;
  json_t *parents = json_array();
  for(size_t k = 0; k < n; k++)
    json_array_append_new(parents, json_pack("{s:s, s:I, s:b}", "path",
                                             otf_model_dir(models[k]), "parameters",
                                             (json_int_t)otf_model_param_count(models[k]),
                                             "anchor", (int)k == c->anchor));
  c->out->report = json_pack("{s:s, s:o, s:o, s:o, s:f}", "producer", "otfuse", "settings",
                             settings_json(o, n, c->w), "parents", parents, "maps", c->maps,
                             "seconds", now_s() - t0);
  c->maps = NULL;
  c->out->report_text = c->out->report ? json_dumps(c->out->report, JSON_COMPACT) : NULL;
  if(!c->out->report_text) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for the report");
    goto done;
  }
  *out = c->out;
  c->out = NULL;
done:
  free_states(c);
  json_decref(c->maps);
  otf_fused_free(c->out);
  otf_free(c);
  return rc;
}

otf_status otf_fuse(otf_fused **out, const otf_model *const *models, size_t n,
                    const otf_fuse_opts *o, const otf_fuse_ctl *ctl, otf_error *err) {
  return fuse_run(out, models, n, o, ctl, NULL, err);
}

/* ---- saving ---------------------------------------------------------------- */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dtype_torch_name(otf_dtype dt) {
  return dt == OTF_DT_F16 ? "float16" : dt == OTF_DT_BF16 ? "bfloat16" : "float32";
}

static otf_status write_weights(const otf_fused *f, const char *path, otf_dtype dtype,
                                otf_error *err) {
  otf_st_out *outs = otf_calloc(f->nt ? f->nt : 1, sizeof(*outs));
  void **bufs = otf_calloc(f->nt ? f->nt : 1, sizeof(void *));
  otf_status rc = OTF_OK;
  if(!outs || !bufs) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to write weights");
    goto done;
  }
  for(size_t k = 0; k < f->nt; k++) {
    const ftensor *t = &f->t[k];
    otf_st_out *o = &outs[k];
    o->name = t->name;
    o->rank = t->rank;
    memcpy(o->shape, t->shape, sizeof(o->shape));
    if(!t->data) {
      o->dtype = t->src_dtype;
      o->data = t->raw;
      continue;
    }
    otf_dtype dt = dtype;
    if(dt == OTF_DT_COUNT)
      dt = t->src_dtype == OTF_DT_F16 || t->src_dtype == OTF_DT_BF16 ? t->src_dtype : OTF_DT_F32;
    if(dt == OTF_DT_F32) { /* already in the output format: no copy */
      o->dtype = dt;
      o->data = t->data;
      continue;
    }
    size_t numel = 1;
    for(int r = 0; r < t->rank; r++)
      numel *= (size_t)t->shape[r];
    bufs[k] = otf_malloc_array(numel ? numel : 1, otf_dtype_size(dt));
    if(!bufs[k]) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to convert %s", t->name);
      goto done;
    }
    rc = otf_st_convert_f32(bufs[k], dt, t->data, numel, err);
    if(rc != OTF_OK)
      goto done;
    o->dtype = dt;
    o->data = bufs[k];
  }
  const char *meta[] = {"producer", "otfuse fuse"};
  rc = otf_st_write(path, outs, f->nt, meta, 1, err);
done:
  for(size_t k = 0; bufs && k < f->nt; k++)
    otf_free(bufs[k]);
  otf_free(bufs);
  otf_free(outs);
  return rc;
}

/* Everything but the weights, into tmp (which holds model.safetensors),
 * then tmp renamed to out_dir. dt: config.json's torch_dtype. */
static otf_status finish_dir(const otf_fused *f, const char *tmp, const char *out_dir,
                             otf_dtype dt, otf_error *err) {
  char p[4096];
  otf_status rc;
  /* config.json: the anchor's, with provenance. */
  snprintf(p, sizeof(p), "%s/config.json", otf_model_dir(f->anchor));
  json_error_t je;
  json_t *cfg = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
  if(!cfg)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", p, je.text);
  json_object_set_new(cfg, "torch_dtype", json_string(dtype_torch_name(dt)));
  json_t *settings = json_object_get(f->report, "settings");
  json_object_set_new(cfg, "otfuse", json_pack("{s:s, s:O}", "producer", "otfuse fuse",
                                                "settings", settings));
  char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(cfg);
  snprintf(p, sizeof(p), "%s/config.json", tmp);
  rc = text ? otf_fs_write_text(p, text, err) : OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory");
  free(text);
  if(rc != OTF_OK)
    return rc;
  text = json_dumps(f->report, JSON_INDENT(2));
  snprintf(p, sizeof(p), "%s/fusion_report.json", tmp);
  rc = text ? otf_fs_write_text(p, text, err) : OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory");
  free(text);
  if(rc != OTF_OK)
    return rc;
  static const char *const skip[] = {"fusion_report.json", NULL};
  rc = otf_fs_copy_side_files(otf_model_dir(f->anchor), tmp, skip, err);
  if(rc != OTF_OK)
    return rc;
  rmdir(out_dir); /* an empty folder may stand where the output goes */
  if(rename(tmp, out_dir) != 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", out_dir, strerror(errno));
  return OTF_OK;
}

otf_status otf_fused_save(const otf_fused *f, const char *out_dir, otf_dtype dtype,
                          otf_error *err) {
  if(dtype != OTF_DT_COUNT && dtype != OTF_DT_F32 && dtype != OTF_DT_F16 &&
     dtype != OTF_DT_BF16)
    return OTF_FAIL(err, OTF_E_INVAL, "/output/dtype", "output dtype must be f32, f16 or bf16");
  char tmp[2048], p[4096];
  otf_status rc = otf_fs_partial_dir(out_dir, tmp, err);
  if(rc != OTF_OK)
    return rc;
  snprintf(p, sizeof(p), "%s/model.safetensors", tmp);
  rc = write_weights(f, p, dtype, err);
  if(rc != OTF_OK)
    goto fail;
  otf_dtype dt = dtype == OTF_DT_COUNT ? OTF_DT_F32 : dtype;
  for(size_t k = 0; dtype == OTF_DT_COUNT && k < f->nt; k++)
    if(f->t[k].data && (f->t[k].src_dtype == OTF_DT_F16 || f->t[k].src_dtype == OTF_DT_BF16))
      dt = f->t[k].src_dtype;
  rc = finish_dir(f, tmp, out_dir, dt, err);
  if(rc != OTF_OK)
    goto fail;
  return OTF_OK;
fail:
  otf_fs_remove_flat(tmp);
  return rc;
}

/* One fusion of already opened parents, saved to out_dir. */
/* The weights stream into OUT.partial.<pid>/model.safetensors while the
 * fusion runs (sink); the rest follows, then the folder is renamed. */
static otf_status fuse_and_save(otf_model *const *m, size_t n, const otf_fuse_opts *opts,
                                const otf_fuse_ctl *ctl, const char *out_dir, otf_dtype dtype,
                                json_t **maps_out, otf_error *err) {
  if(dtype != OTF_DT_COUNT && dtype != OTF_DT_F32 && dtype != OTF_DT_F16 &&
     dtype != OTF_DT_BF16)
    return OTF_FAIL(err, OTF_E_INVAL, "/output/dtype", "output dtype must be f32, f16 or bf16");
  if(opts->anchor < 0 || (size_t)opts->anchor >= n)
    return OTF_FAIL(err, OTF_E_INVAL, "/ot/anchor", "anchor %d is not one of the %zu models",
                    opts->anchor, n);
  otf_fused *f = NULL;
  sink sk;
  memset(&sk, 0, sizeof(sk));
  char tmp[2048], p[4096];
  otf_status rc = otf_fs_partial_dir(out_dir, tmp, err);
  if(rc != OTF_OK)
    return rc;
  snprintf(p, sizeof(p), "%s/model.safetensors", tmp);
  rc = sink_open(&sk, m[opts->anchor], p, dtype, err);
  if(rc == OTF_OK)
    rc = fuse_run(&f, (const otf_model *const *)m, n, opts, ctl, &sk, err);
  if(rc == OTF_OK) {
    if(ctl && ctl->progress)
      ctl->progress(ctl->ctx, "writing", 1.0);
    rc = otf_st_writer_finish(sk.w, err);
  }
  if(rc == OTF_OK)
    rc = finish_dir(f, tmp, out_dir, sk.cfg_dtype, err);
  if(rc == OTF_OK && maps_out)
    *maps_out = json_incref(json_object_get(f->report, "maps"));
  sink_free(&sk); /* removes an unfinished file */
  if(rc != OTF_OK)
    otf_fs_remove_flat(tmp);
  otf_fused_free(f);
  return rc;
}

/* Adds the model-selection scores to a saved fusion report. */
static otf_status annotate_report(const char *dir, json_t *selection, otf_error *err) {
  char p[4096];
  snprintf(p, sizeof(p), "%s/fusion_report.json", dir);
  json_error_t je;
  json_t *r = json_load_file(p, 0, &je);
  if(!r)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", p, je.text);
  json_object_set(r, "selection", selection);
  char *text = json_dumps(r, JSON_INDENT(2));
  json_decref(r);
  otf_status rc = text ? otf_fs_write_text(p, text, err) : OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory");
  free(text);
  return rc;
}

/* --anchor auto / --reg auto: every candidate fusion is written next to
 * the output, scored by its loss on the (labelled) calibration data, and
 * the best one is renamed into place; every score goes in the report. */
static otf_status select_and_save(otf_model *const *m, size_t n, const otf_fuse_opts *opts,
                                  const otf_fuse_ctl *ctl, const char *out_dir,
                                  otf_dtype dtype, json_t **selection, otf_error *err) {
  static const double regs[] = {0.02, 0.05, 0.08, 0.15};
  int auto_anchor = opts->anchor < 0, auto_reg = !(opts->reg > 0.0);
  size_t na = auto_anchor ? n : 1, nr = auto_reg ? sizeof(regs) / sizeof(*regs) : 1;
  if(!opts->calibration)
    return OTF_FAIL(err, OTF_E_INVAL, "/calibration",
                    "--anchor auto and --reg auto score candidates on a labelled "
                    "--calibration file");
  if(strlen(out_dir) > 1800)
    return OTF_FAIL(err, OTF_E_INVAL, "/output/uri", "output path too long");
  *selection = json_array();
  if(!*selection)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory");
  otf_status rc = OTF_OK;
  double best = INFINITY;
  char best_dir[2048] = "", cand[2048];
  for(size_t ai = 0; ai < na && rc == OTF_OK; ai++)
    for(size_t ri = 0; ri < nr && rc == OTF_OK; ri++) {
      otf_fuse_opts o = *opts;
      if(auto_anchor)
        o.anchor = (int)ai;
      if(auto_reg)
        o.reg = regs[ri];
      snprintf(cand, sizeof(cand), "%s.candidate.%ld.%zu", out_dir, (long)getpid(),
               ai * nr + ri);
      otf_fs_remove_flat(cand);
      rc = fuse_and_save(m, n, &o, ctl, cand, dtype, NULL, err);
      if(rc != OTF_OK)
        break;
      otf_model *fm = NULL;
      otf_eval_result er;
      rc = otf_model_open(&fm, cand, 0, err);
      if(rc == OTF_OK)
        rc = otf_eval(&er, fm, opts->calibration, 64, err);
      otf_model_close(fm);
      if(rc != OTF_OK) {
        otf_fs_remove_flat(cand);
        break;
      }
      json_array_append_new(*selection,
                            json_pack("{s:i, s:f, s:f, s:f}", "anchor", o.anchor, "reg", o.reg,
                                      "loss", er.loss, "accuracy", er.accuracy));
      if(er.loss < best) {
        if(best_dir[0])
          otf_fs_remove_flat(best_dir);
        best = er.loss;
        memcpy(best_dir, cand, sizeof(cand));
      } else {
        otf_fs_remove_flat(cand);
      }
    }
  if(rc == OTF_OK)
    rc = annotate_report(best_dir, *selection, err);
  if(rc == OTF_OK) {
    rmdir(out_dir);
    if(rename(best_dir, out_dir) != 0)
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", out_dir, strerror(errno));
  }
  if(rc != OTF_OK && best_dir[0])
    otf_fs_remove_flat(best_dir);
  return rc;
}

otf_status otf_fuse_dirs(const char *const *dirs, size_t n, const otf_fuse_opts *opts,
                         const otf_fuse_ctl *ctl, const char *out_dir, otf_dtype dtype,
                         char **summary, otf_error *err) {
  if(summary)
    *summary = NULL;
  if(n < 2 || n > OTF_MAX_PARENTS)
    return OTF_FAIL(err, OTF_E_INVAL, "/models", "fusion needs 2 to %d models, got %zu",
                    OTF_MAX_PARENTS, n);
  otf_model *m[OTF_MAX_PARENTS] = {0};
  otf_status rc = OTF_OK;
  json_t *maps = NULL, *selection = NULL;
  double t0 = now_s();
  int anchor = opts->anchor;
  if(ctl && ctl->progress)
    ctl->progress(ctl->ctx, "loading", 0.0);
  for(size_t k = 0; k < n && rc == OTF_OK; k++)
    rc = otf_model_open(&m[k], dirs[k], 0, err);
  if(rc == OTF_OK && (opts->anchor < 0 || !(opts->reg > 0.0)) && opts->method == OTF_METHOD_OT) {
    struct stat st;
    if(stat(out_dir, &st) == 0 && !(S_ISDIR(st.st_mode) && rmdir(out_dir) == 0))
      rc = OTF_FAIL(err, OTF_E_INVAL, "/output/uri",
                    "%s already exists and is not an empty folder", out_dir);
    if(rc == OTF_OK)
      rc = select_and_save(m, n, opts, ctl, out_dir, dtype, &selection, err);
    if(rc == OTF_OK) {
      /* The winner's settings, for the summary. */
      size_t best = 0;
      double bl = INFINITY;
      for(size_t k = 0; k < json_array_size(selection); k++) {
        json_t *e = json_array_get(selection, k);
        double l = json_real_value(json_object_get(e, "loss"));
        if(l < bl) {
          bl = l;
          best = k;
        }
      }
      anchor = (int)json_integer_value(json_object_get(json_array_get(selection, best), "anchor"));
    }
  } else if(rc == OTF_OK) {
    rc = fuse_and_save(m, n, opts, ctl, out_dir, dtype, &maps, err);
  }
  if(rc == OTF_OK && summary) {
    json_t *s = json_pack("{s:s, s:s, s:I, s:i, s:I, s:I, s:f}", "output", out_dir, "method",
                          opts->method == OTF_METHOD_OT ? "ot" : "average", "parents",
                          (json_int_t)n, "anchor", anchor, "maps",
                          (json_int_t)(maps ? json_array_size(maps) : 0), "parameters",
                          (json_int_t)otf_model_param_count(m[anchor < 0 ? 0 : anchor]),
                          "seconds", now_s() - t0);
    if(s && selection)
      json_object_set(s, "selection", selection);
    char *text = s ? json_dumps(s, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(s);
    if(text) {
      size_t len = strlen(text);
      *summary = otf_malloc(len + 1);
      if(*summary)
        memcpy(*summary, text, len + 1);
      free(text);
    }
  }
  json_decref(maps);
  json_decref(selection);
  for(size_t k = 0; k < n; k++)
    otf_model_close(m[k]);
  return rc;
}
