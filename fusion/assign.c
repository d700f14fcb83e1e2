/* Exact linear assignment solvers: Jonker-Volgenant (dense shortest
 * augmenting path with the two initialisation phases) and a textbook
 * Hungarian method used as the test oracle.
 *
 * Notation (both solvers): C [n, n] row-major, x[i] = column of row i,
 * y[j] = row of column j (-1 = free), v[j] = column dual. JV keeps the row
 * duals implicit: u[i] = min_j (C[i,j] - v[j]), and maintains the invariant
 * that every assigned row sits on a column attaining that minimum, i.e. all
 * reduced costs C[i,j] - u[i] - v[j] are >= 0 and the assigned ones are 0.
 *
 * Tie-breaking (deterministic, independent of word size and SIMD width):
 *  - column reduction: the lowest row index attains a column minimum;
 *  - row scans (minimum / second minimum of a reduced row): the lowest column
 *    index wins among equal reduced costs;
 *  - Dijkstra: among the unscanned columns at the minimal tentative distance
 *    a free one is preferred (it ends the search), then the lowest index; a
 *    tentative distance is only replaced by a strictly smaller one, so the
 *    earliest scanned row stays the predecessor.
 * All floating-point operations are element-wise in a fixed order, and the
 * only reductions are minima (exact in any order), so the SSE2 and AVX2
 * kernels return bit-identical results. There are no multiplications in the
 * solvers, so FMA contraction cannot change a result either. */
#include "fusion/assign.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/limits.h"

/* Entries beyond this magnitude are refused: differences of costs and duals
 * (which stay within a small multiple of the cost range) must not overflow. */
#define ASSIGN_MAX_ABS 0x1p1000

/* Augmenting row reduction budget. The reduction resolves most free rows
 * cheaply at first, then with diminishing returns: on (near-)ties it can
 * bounce a column between two rows while lowering its dual by tiny amounts
 * (pseudo-polynomial, or forever once the decrease is lost to rounding).
 * So it is checked every ARR_WINDOW(n) row visits and stops as soon as a
 * window resolved fewer than one free row per ARR_VISITS_PER_ROW visits,
 * about what a Dijkstra augmentation (phase 3) costs; a hard cap of
 * ARR_MAX_VISITS_PER_N * n visits over all passes bounds it regardless. The
 * rows still free go to phase 3, which has no such failure mode. */
#ifndef ARR_MAX_PASSES
#define ARR_MAX_PASSES 8
#endif
#ifndef ARR_VISITS_PER_ROW
#define ARR_VISITS_PER_ROW 1024
#endif
#ifndef ARR_MAX_VISITS_PER_N
#define ARR_MAX_VISITS_PER_N 64
#endif
#define ARR_WINDOW(n) ((n) / 8 > 64 ? (n) / 8 : 64)

/* Checks the arguments shared by both solvers and that every cost is finite
 * and within ASSIGN_MAX_ABS, so that no solver loop can meet a NaN.
 * cost: [n, n]. O(n^2), one pass. */
static otf_status check_input(const int32_t *col_of_row, const double *cost,
                              size_t n, otf_error *err) {
  if(!col_of_row || !cost)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "assignment: NULL argument");
  if(n == 0)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "assignment: n must be >= 1");
  if(n > OTF_MAX_OT_SIDE || (uint64_t)n * n > OTF_MAX_OT_CELLS)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL,
                    "assignment: n = %zu exceeds the limit (side %d, %llu cells)",
                    n, OTF_MAX_OT_SIDE, (unsigned long long)OTF_MAX_OT_CELLS);
  size_t nn = n * n;
  int bad = 0;
  for(size_t k = 0; k < nn; k++)
    bad |= !(fabs(cost[k]) <= ASSIGN_MAX_ABS);
  if(bad) {
    for(size_t k = 0; k < nn; k++)
      if(!(fabs(cost[k]) <= ASSIGN_MAX_ABS))
        return OTF_FAIL(err, OTF_E_NUMERIC, NULL,
                        "assignment: cost[%zu,%zu] = %g is not finite or exceeds %g",
                        k / n, k % n, cost[k], ASSIGN_MAX_ABS);
  }
  return OTF_OK;
}

/* Sum of the chosen costs, in row order. x: [n]. */
static double objective_of(const int32_t *x, const double *cost, size_t n) {
  double s = 0.0;
  for(size_t i = 0; i < n; i++)
    s += cost[i * n + (size_t)x[i]];
  return s;
}

/* ------------------------------------------------------------------------ */
/* Hot kernels: the three O(n) scans over a cost row. They are written once,
 * width-generic, with GCC's vector extension (also understood by clang) and
 * instantiated twice: W = 2 for the baseline x86-64 ISA (SSE2 registers) and
 * W = 4 with target("avx2"), picked at run time. The binary therefore runs on
 * any x86-64 without -march flags. Both instantiations do the same
 * element-wise operations, and their reductions are minima (exact in any
 * order) ordered by (value, index), so they return bit-identical results.
 * A 4-wide vector on the SSE2 baseline would be scalarised by GCC (10x
 * slower), hence the two widths. Vectors never cross a function boundary
 * (psABI). Column indices live in int64 lanes next to the doubles so that
 * masks apply without conversions; pred/argmin arrays are int64 for that. */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(OTF_ASSIGN_NO_AVX2)
#define HAVE_AVX2_KERNELS 1
#else
#define HAVE_AVX2_KERNELS 0
#endif

typedef double vd2 __attribute__((vector_size(16)));
typedef double vdu2 __attribute__((vector_size(16), aligned(8), may_alias));
typedef int64_t vl2 __attribute__((vector_size(16)));
typedef int64_t vlu2 __attribute__((vector_size(16), aligned(8), may_alias));
typedef double vd4 __attribute__((vector_size(32)));
typedef double vdu4 __attribute__((vector_size(32), aligned(8), may_alias));
typedef int64_t vl4 __attribute__((vector_size(32)));
typedef int64_t vlu4 __attribute__((vector_size(32), aligned(8), may_alias));

/* Unaligned loads/stores; BLEND(mask, a, b) takes a where mask lanes are
 * all-ones (what a comparison yields), b elsewhere. */
#define LOAD(W, T, p) (*(const T##u##W *)(p))
#define STORE(W, T, p, x) (*(T##u##W *)(p) = (x))
#define BLENDD(W, mask, a, b) \
  ((vd##W)(((vl##W)(a) & (mask)) | ((vl##W)(b) & ~(mask))))
#define BLENDL(mask, a, b) (((a) & (mask)) | ((b) & ~(mask)))

/* Software prefetch distance, in doubles, for scans of a cost row. The rows
 * a solve visits are scattered over a matrix far larger than the caches, and
 * the hardware prefetcher restarts at every page; prefetching 1 KiB ahead
 * made the Dijkstra phase about 20% faster at n = 3072. Never past the row
 * end (the pointer must stay inside the array). */
#define PREFETCH_AHEAD 128
#define PREFETCH_ROW(row, j, n) \
  do { \
    if((j) + PREFETCH_AHEAD < (n)) \
      __builtin_prefetch((row) + (j) + PREFETCH_AHEAD); \
  } while(0)

/* Merges a candidate (u, j) into the running best pair (u1, j1), (u2, j2)
 * under the order "smaller value, then lower index"; j < 0 = no candidate. */
static inline void top2_merge(double u, int64_t j, double *u1, int64_t *j1,
                              double *u2, int64_t *j2) {
  if(j < 0)
    return;
  if(u < *u1 || (u == *u1 && j < *j1)) {
    *u2 = *u1;
    *j2 = *j1;
    *u1 = u;
    *j1 = j;
  } else if(u < *u2 || (u == *u2 && j < *j2)) {
    *u2 = u;
    *j2 = j;
  }
}

/* Folds a candidate (u, j) into a running minimum, lowest index on ties. */
static inline void min_merge(double u, int64_t j, double *best, int64_t *bj) {
  if(j >= 0 && (u < *best || (u == *best && j < *bj))) {
    *best = u;
    *bj = j;
  }
}

/* Result of one Dijkstra relaxation: the smallest tentative distance over
 * unscanned columns and its lowest column, and the same over unscanned free
 * columns (+inf, -1 when there is none). */
typedef struct relax_min {
  double m, mf;
  int64_t jm, jf;
} relax_min;

/* The kernels of one width W, suffix SFX, function attribute ATTR:
 *
 * column_minima_SFX(c [n,n], n, cmin [n] out, carg [n] out):
 *   cmin[j] = min_i C[i,j], carg[j] = lowest i attaining it. Row-major pass
 *   (contiguous rows), not column by column.
 *
 * two_smallest_SFX(ci [n], v [n], n, u1, j1, u2, j2 out):
 *   smallest and second smallest reduced cost ci[j] - v[j] of one row with
 *   their columns, ordered by (value, index): the lowest index wins a tie
 *   and u2 may equal u1. Each lane keeps its own best two (its columns come
 *   in ascending order, so strict comparisons keep the lowest index); the
 *   global best two are among the lanes' best two. Needs n >= 2.
 *
 * relax_row_SFX(ci [n], v [n], d [n], pred [n], fpen [n], u1, i, n, out):
 *   one Dijkstra relaxation: row i, reached at distance shift u1 (= C[i,s] -
 *   v[s] - mu for the column s it holds), lowers the tentative distances d of
 *   unscanned columns, recording i in pred. Scanned columns hold NaN in d, so
 *   no comparison ever lowers or selects them. fpen[j] = 0 for a free column,
 *   +inf for an assigned one. Writes the minima (see relax_min) to out. */
#define DEFINE_KERNELS(W, SFX, ATTR) \
  ATTR static void column_minima_##SFX(const double *restrict c, size_t n, \
                                       double *restrict cmin, \
                                       int64_t *restrict carg) { \
    size_t nv = n - n % W; \
    for(size_t j = 0; j < n; j++) { \
      cmin[j] = c[j]; \
      carg[j] = 0; \
    } \
    for(size_t i = 1; i < n; i++) { \
      const double *ci = c + i * n; \
      vl##W iv = (vl##W){0} + (int64_t)i; \
      for(size_t j = 0; j < nv; j += W) { \
        vd##W x = LOAD(W, vd, ci + j), m = LOAD(W, vd, cmin + j); \
        vl##W lt = x < m; \
        STORE(W, vd, cmin + j, BLENDD(W, lt, x, m)); \
        STORE(W, vl, carg + j, BLENDL(lt, iv, LOAD(W, vl, carg + j))); \
      } \
      for(size_t j = nv; j < n; j++) \
        if(ci[j] < cmin[j]) { \
          cmin[j] = ci[j]; \
          carg[j] = (int64_t)i; \
        } \
    } \
  } \
  \
  ATTR static void two_smallest_##SFX(const double *restrict ci, \
                                      const double *restrict v, size_t n, \
                                      double *u1o, int32_t *j1o, double *u2o, \
                                      int32_t *j2o) { \
    size_t nv = n - n % W; \
    vd##W a1 = (vd##W){0} + INFINITY, a2 = a1; \
    vl##W b1 = (vl##W){0} - 1, b2 = b1, jv; \
    for(int l = 0; l < W; l++) \
      jv[l] = l; \
    for(size_t j = 0; j < nv; j += W, jv += W) { \
      PREFETCH_ROW(ci, j, n); \
      vd##W r = LOAD(W, vd, ci + j) - LOAD(W, vd, v + j); \
      vl##W lt1 = r < a1, lt2 = r < a2; \
      a2 = BLENDD(W, lt1, a1, BLENDD(W, lt2, r, a2)); \
      b2 = BLENDL(lt1, b1, BLENDL(lt2, jv, b2)); \
      a1 = BLENDD(W, lt1, r, a1); \
      b1 = BLENDL(lt1, jv, b1); \
    } \
    double u1 = INFINITY, u2 = INFINITY; \
    int64_t j1 = -1, j2 = -1; \
    for(int l = 0; l < W; l++) { \
      top2_merge(a1[l], b1[l], &u1, &j1, &u2, &j2); \
      top2_merge(a2[l], b2[l], &u1, &j1, &u2, &j2); \
    } \
    for(size_t j = nv; j < n; j++) \
      top2_merge(ci[j] - v[j], (int64_t)j, &u1, &j1, &u2, &j2); \
    *u1o = u1; \
    *j1o = (int32_t)j1; \
    *u2o = u2; \
    *j2o = (int32_t)j2; \
  } \
  \
  ATTR static void relax_row_##SFX( \
      const double *restrict ci, const double *restrict v, double *restrict d, \
      int64_t *restrict pred, const double *restrict fpen, double u1, \
      int32_t i, size_t n, relax_min *out) { \
    size_t nv = n - n % W; \
    vd##W m = (vd##W){0} + INFINITY, mf = m; \
    vl##W jm = (vl##W){0} - 1, jf = jm, jv, iv = (vl##W){0} + i; \
    for(int l = 0; l < W; l++) \
      jv[l] = l; \
    for(size_t j = 0; j < nv; j += W, jv += W) { \
      PREFETCH_ROW(ci, j, n); \
      vd##W h = (LOAD(W, vd, ci + j) - LOAD(W, vd, v + j)) - u1; \
      vd##W dj = LOAD(W, vd, d + j); \
      vl##W lt = h < dj; \
      dj = BLENDD(W, lt, h, dj); \
      STORE(W, vd, d + j, dj); \
      STORE(W, vl, pred + j, BLENDL(lt, iv, LOAD(W, vl, pred + j))); \
      vl##W lm = dj < m; \
      m = BLENDD(W, lm, dj, m); \
      jm = BLENDL(lm, jv, jm); \
      vd##W kf = dj + LOAD(W, vd, fpen + j); \
      vl##W lf = kf < mf; \
      mf = BLENDD(W, lf, kf, mf); \
      jf = BLENDL(lf, jv, jf); \
    } \
    relax_min r = {INFINITY, INFINITY, -1, -1}; \
    for(int l = 0; l < W; l++) { \
      min_merge(m[l], jm[l], &r.m, &r.jm); \
      min_merge(mf[l], jf[l], &r.mf, &r.jf); \
    } \
    for(size_t j = nv; j < n; j++) { \
      double h = (ci[j] - v[j]) - u1, dj = d[j]; \
      if(h < dj) { \
        dj = d[j] = h; \
        pred[j] = i; \
      } \
      if(dj < r.m) { \
        r.m = dj; \
        r.jm = (int64_t)j; \
      } \
      double kf = dj + fpen[j]; \
      if(kf < r.mf) { \
        r.mf = kf; \
        r.jf = (int64_t)j; \
      } \
    } \
    *out = r; \
  }

DEFINE_KERNELS(2, base, )
#if HAVE_AVX2_KERNELS
DEFINE_KERNELS(4, avx2, __attribute__((target("avx2"))))
#endif

/* One instantiation of the kernels, chosen per solve. */
typedef struct kernels {
  void (*column_minima)(const double *restrict, size_t, double *restrict,
                        int64_t *restrict);
  void (*two_smallest)(const double *restrict, const double *restrict, size_t,
                       double *, int32_t *, double *, int32_t *);
  void (*relax_row)(const double *restrict, const double *restrict,
                    double *restrict, int64_t *restrict, const double *restrict,
                    double, int32_t, size_t, relax_min *);
} kernels;

static const kernels k_base = {column_minima_base, two_smallest_base,
                               relax_row_base};
#if HAVE_AVX2_KERNELS
static const kernels k_avx2 = {column_minima_avx2, two_smallest_avx2,
                               relax_row_avx2};
#endif

/* The widest kernels this CPU runs. */
static const kernels *pick_kernels(void) {
#if HAVE_AVX2_KERNELS
  __builtin_cpu_init();
  if(__builtin_cpu_supports("avx2"))
    return &k_avx2;
#endif
  return &k_base;
}

/* ------------------------------------------------------------------------ */
/* Jonker-Volgenant. */

/* Scratch of one JV solve, carved from one allocation. All [n]. */
typedef struct jv_work {
  const kernels *k;
  double *v;     /* column duals */
  double *d;     /* Dijkstra tentative distances (NaN = scanned) */
  double *fpen;  /* 0 for a free column, +inf for an assigned one */
  double *sdist; /* distance of the k-th scanned column */
  int64_t *pred; /* Dijkstra predecessor row of a column; column reduction:
                    argmin row of a column */
  int32_t *y;    /* row of column, -1 = free */
  int32_t *list; /* free rows */
  int32_t *scol; /* scanned columns, in scan order */
} jv_work;

/* Phase 1, column reduction and reduction transfer. Each column's dual is its
 * minimum; a column goes to its minimising row unless that row already has
 * one (columns taken from n-1 down, as JV do). A row that got exactly one
 * column then lowers that column's dual by its second-best reduced cost, so
 * the column becomes less attractive to others. Rows with no column are
 * returned in w->list (ascending). Needs n >= 2.
 * x: [n] out. Returns the number of free rows. */
static size_t jv_column_reduction(const double *cost, size_t n, int32_t *x,
                                  jv_work *w) {
  double *v = w->v;
  int32_t *y = w->y, *matches = w->list;
  int64_t *carg = w->pred;
  w->k->column_minima(cost, n, v, carg);
  for(size_t i = 0; i < n; i++) {
    x[i] = -1;
    matches[i] = 0;
  }
  for(size_t jj = n; jj-- > 0;) {
    int32_t i = (int32_t)carg[jj];
    if(matches[i]++ == 0) {
      x[i] = (int32_t)jj;
      y[jj] = i;
    } else {
      y[jj] = -1;
    }
  }
  for(size_t i = 0; i < n; i++) {
    if(matches[i] != 1)
      continue;
    /* second-best reduced cost; the best (0) is at x[i] */
    const double *ci = cost + i * n;
    int32_t j1 = x[i];
    double u1, u2;
    int32_t a, b;
    w->k->two_smallest(ci, v, n, &u1, &a, &u2, &b);
    double second = (a == j1) ? u2 : u1;
    /* v[j1] - second: row i's reduced cost on j1 becomes `second` */
    v[j1] -= second;
  }
  size_t nfree = 0;
  for(size_t i = 0; i < n; i++)
    if(matches[i] == 0)
      w->list[nfree++] = (int32_t)i;
  return nfree;
}

/* Phase 2, augmenting row reduction. A free row takes its best column j1
 * and lowers v[j1] until its second best ties, evicting the holder, which is
 * processed next (auction-like). On a tie (u1 == u2, or a decrease lost to
 * rounding) the row takes the second best column instead and the evicted
 * row waits for the next pass, so a pass always ends. Passes repeat while
 * they pay off (see ARR_VISITS_PER_ROW). Needs n >= 2.
 * x: [n] in/out; w->list[0..nfree) free rows in/out. Returns rows left free. */
static size_t jv_augmenting_row_reduction(const double *cost, size_t n,
                                          int32_t *x, jv_work *w, size_t nfree) {
  double *v = w->v;
  int32_t *y = w->y, *list = w->list;
  size_t budget = (size_t)ARR_MAX_VISITS_PER_N * n, win = ARR_WINDOW(n);
  int stop = 0;
  for(int pass = 0; pass < ARR_MAX_PASSES && nfree > 0 && !stop; pass++) {
    size_t k = 0, prev = nfree, visits = 0, mark = nfree;
    nfree = 0;
    while(k < prev) {
      if(visits > 0 && visits % win == 0) {
        /* free rows now: list[k..prev) plus list[0..nfree) */
        size_t now = prev - k + nfree;
        stop = budget < win || (mark - now) * ARR_VISITS_PER_ROW < win;
        mark = now;
      }
      if(stop) {
        /* keep the unprocessed rows: list[nfree..) <- list[k..prev) */
        memmove(list + nfree, list + k, (prev - k) * sizeof(*list));
        nfree += prev - k;
        break;
      }
      visits++;
      budget--;
      int32_t i = list[k++];
      double u1, u2;
      int32_t j1, j2;
      w->k->two_smallest(cost + (size_t)i * n, v, n, &u1, &j1, &u2, &j2);
      int32_t i0 = y[j1];
      double lowered = v[j1] - (u2 - u1);
      int strict = u1 < u2 && lowered < v[j1];
      if(strict) {
        v[j1] = lowered;
      } else if(i0 >= 0) {
        j1 = j2;
        i0 = y[j2];
      }
      x[i] = j1;
      y[j1] = i;
      if(i0 >= 0) {
        x[i0] = -1;
        if(strict)
          list[--k] = i0; /* slot k was just consumed */
        else
          list[nfree++] = i0;
      }
    }
    /* a pass that resolved nothing will not do better next time */
    if(nfree == prev)
      break;
  }
  return nfree;
}

/* Phase 3, one shortest augmenting path from free row f (Dijkstra on
 * reduced costs, columns as nodes), then the dual update of the scanned
 * columns and the flip of the path. x: [n] in/out. */
static void jv_augment(const double *cost, size_t n, int32_t *x, jv_work *w,
                       int32_t f) {
  double *v = w->v, *d = w->d, *fpen = w->fpen, *sdist = w->sdist;
  int32_t *y = w->y, *scol = w->scol;
  int64_t *pred = w->pred;
  for(size_t j = 0; j < n; j++)
    d[j] = INFINITY;
  relax_min r;
  w->k->relax_row(cost + (size_t)f * n, v, d, pred, fpen, 0.0, f, n, &r);
  size_t nscan = 0;
  while(r.mf != r.m) {
    /* the nearest column is assigned: freeze it and scan its row */
    int32_t js = (int32_t)r.jm;
    double mu = r.m;
    scol[nscan] = js;
    sdist[nscan] = mu;
    nscan++;
    d[js] = NAN;
    int32_t i = y[js];
    const double *ci = cost + (size_t)i * n;
    w->k->relax_row(ci, v, d, pred, fpen, (ci[js] - v[js]) - mu, i, n, &r);
  }
  /* a free column is nearest: the path ends there */
  int32_t jend = (int32_t)r.jf;
  double m = r.m;
  for(size_t k = 0; k < nscan; k++)
    v[scol[k]] += sdist[k] - m;
  fpen[jend] = INFINITY;
  int32_t j = jend;
  for(;;) {
    int32_t i = (int32_t)pred[j];
    y[j] = i;
    int32_t prev = x[i];
    x[i] = j;
    if(i == f)
      break;
    j = prev;
  }
}

otf_status otf_assign_jv(int32_t *col_of_row, double *objective,
                         const double *cost, size_t n, otf_error *err) {
  otf_status rc = check_input(col_of_row, cost, n, err);
  if(rc != OTF_OK)
    return rc;
  if(n == 1) {
    col_of_row[0] = 0;
    if(objective)
      *objective = cost[0];
    return OTF_OK;
  }
  /* 4 double arrays, 1 int64 array, then 3 int32 arrays */
  char *block = otf_malloc_array(n, 4 * sizeof(double) + sizeof(int64_t) +
                                        3 * sizeof(int32_t));
  if(!block)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL,
                    "assignment: out of memory for n = %zu scratch", n);
  jv_work w;
  w.k = pick_kernels();
  w.v = (double *)block;
  w.d = w.v + n;
  w.fpen = w.d + n;
  w.sdist = w.fpen + n;
  w.pred = (int64_t *)(w.sdist + n);
  w.y = (int32_t *)(w.pred + n);
  w.list = w.y + n;
  w.scol = w.list + n;

  int32_t *x = col_of_row;
  size_t nfree = jv_column_reduction(cost, n, x, &w);
  nfree = jv_augmenting_row_reduction(cost, n, x, &w, nfree);
  for(size_t j = 0; j < n; j++)
    w.fpen[j] = w.y[j] < 0 ? 0.0 : INFINITY;
  for(size_t k = 0; k < nfree; k++)
    jv_augment(cost, n, x, &w, w.list[k]);

  if(objective)
    *objective = objective_of(x, cost, n);
  otf_free(block);
  return OTF_OK;
}

/* ------------------------------------------------------------------------ */
/* Hungarian method with potentials (the oracle). */

/* Rows are added one at a time; each runs Dijkstra from a virtual column 0
 * (columns 1..n are real) over reduced costs C[i,j] - u[i] - v[j], updating
 * all potentials by the step's minimum, until it reaches a free column, then
 * flips the path. Index 0 of p/u/v is the virtual node; p[j] = 1-based row
 * of column j, 0 = free. Ties: lowest column (strict comparisons). */
otf_status otf_assign_naive(int32_t *col_of_row, double *objective,
                            const double *cost, size_t n, otf_error *err) {
  otf_status rc = check_input(col_of_row, cost, n, err);
  if(rc != OTF_OK)
    return rc;
  size_t m = n + 1;
  /* u, v, minv: [n+1] double; p, way: [n+1] int32; used: [n+1] char */
  char *block = otf_malloc_array(m, 3 * sizeof(double) + 2 * sizeof(int32_t) + 1);
  if(!block)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL,
                    "assignment: out of memory for n = %zu scratch", n);
  double *u = (double *)block, *v = u + m, *minv = v + m;
  int32_t *p = (int32_t *)(minv + m), *way = p + m;
  char *used = (char *)(way + m);
  for(size_t j = 0; j < m; j++) {
    u[j] = v[j] = 0.0;
    p[j] = 0;
    way[j] = 0;
  }
  for(size_t i = 1; i <= n; i++) {
    p[0] = (int32_t)i;
    size_t j0 = 0;
    for(size_t j = 0; j < m; j++) {
      minv[j] = INFINITY;
      used[j] = 0;
    }
    do {
      used[j0] = 1;
      size_t i0 = (size_t)p[j0], j1 = 0;
      double delta = INFINITY;
      const double *ci = cost + (i0 - 1) * n;
      for(size_t j = 1; j < m; j++) {
        if(used[j])
          continue;
        double cur = ci[j - 1] - u[i0] - v[j];
        if(cur < minv[j]) {
          minv[j] = cur;
          way[j] = (int32_t)j0;
        }
        if(minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for(size_t j = 0; j < m; j++) {
        if(used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while(p[j0] != 0);
    do {
      size_t j1 = (size_t)way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while(j0 != 0);
  }
  for(size_t j = 1; j < m; j++)
    col_of_row[p[j] - 1] = (int32_t)(j - 1);
  if(objective)
    *objective = objective_of(col_of_row, cost, n);
  otf_free(block);
  return OTF_OK;
}
