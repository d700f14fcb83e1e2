/* Exact transportation problem: network simplex (otf_emd) and a successive
 * shortest path reference (otf_emd_naive). See fusion/transport.h.
 *
 * Network simplex design (written from the textbook method, Ahuja, Magnanti
 * & Orlin ch. 11; no code taken from other projects):
 *
 * Graph. Nodes 0..n-1 are sources (supply a_i), n..n+m-1 sinks (demand b_j),
 * and an artificial root R = n+m. Real arc e = i*m + j goes i -> n+j with
 * cost C[e]; its index is the cost's own row-major index, so the cost matrix
 * is used in place (no copy). Arcs are uncapacitated, so every non-tree arc
 * sits at flow 0 and only tree arcs carry flow: flows are stored per node,
 * for the arc joining it to its parent.
 *
 * Initial basis (big-M). Each node u hangs from R by an artificial arc:
 * "up" u -> R with cost 0 and flow s_u when its supply s_u >= 0 (sources,
 * and sinks with b_j = 0), "down" R -> u with cost ART and flow b_j for
 * sinks with demand. ART = (n+m+2) * max C (1 if all costs are 0) exceeds
 * what the real arcs of any simple cycle through R can save, so an optimum
 * never routes flow through R; the cheapest real arc into a sink is always
 * cheaper than ART, so no artificial flow survives termination either. Every
 * zero-flow arc points up, so this tree is strongly feasible. Artificial
 * arcs are never priced: once one leaves the tree it stays out.
 *
 * Tree. parent, pred arc (+ direction, + flow), preorder thread with its
 * reverse, subtree size and last node of each subtree in thread order.
 * Subtree sizes find the cycle's apex (join) without depths.
 *
 * Pivot. Entering arc: first, as a greedy start, each sink's cheapest
 * incoming arc and then each source's cheapest outgoing arc, each taken if
 * its reduced cost is still negative when its turn comes (about n+m cheap
 * pivots that replace most artificial arcs; 20-30% fewer pivots overall).
 * Then block search: scan sqrt(n*m) arcs (continuing where the last search
 * stopped) and take the most negative reduced cost; if the block has none,
 * scan the next block; a full wrap without a candidate means optimal.
 * Pricing dominates the run time; it uses 4-wide vectors (AVX2 clone where
 * the CPU has it) to find a group's minimum and looks at single arcs only
 * when a group beats the best so far. Leaving arc by the strongly-feasible rule (last blocking arc met
 * when walking the cycle from the apex in the flow's direction), which
 * rules out cycling on degenerate pivots. The subtree cut off by the leaving
 * arc is re-rooted at the entering arc's endpoint in it and spliced into
 * the thread right after its new parent; its potentials shift by the
 * entering arc's reduced cost. Cost per pivot: O(cycle + subtree).
 *
 * Floating point. Flows only change by the cycle's minimum decreasing flow,
 * so x - delta >= 0 holds exactly and flows never go negative; the leaving
 * arc's flow is set to exactly 0. A reduced cost counts as negative only
 * below -tol, tol = 16 eps (ART + max C), the rounding noise of potentials
 * of that magnitude. Before declaring optimality the potentials are
 * recomputed from the tree (removing drift) and the whole arc set priced
 * again. The returned flows are recomputed from the marginals on the final
 * tree, so row and column sums are exact up to one rounding per entry. */
#include "fusion/transport.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"

#define NONE (-1)

/* Working state of one network simplex solve. Node arrays have N = n+m+1
 * entries; in_tree is a bitset over the n*m real arcs. */
typedef struct ns {
  size_t n, m;
  int32_t nn, root;    /* node count N, root index N-1 */
  int64_t narcs;       /* n*m real arcs; artificial arc of u is narcs + u */
  const double *cost;  /* [n, m], borrowed */
  double art;          /* cost of a down artificial arc */
  double tol;          /* reduced costs >= -tol count as non-negative */
  int64_t block;       /* pricing block size */
  int64_t next_arc;    /* where the next pricing scan starts */

  int32_t *parent, *thread, *rev_thread, *succ_num, *last_succ;
  int64_t *pred;       /* arc to parent */
  unsigned char *up;   /* 1: pred arc goes node -> parent */
  double *flow;        /* flow on pred arc */
  double *pi;          /* potentials; reduced cost of u->v: c + pi_u - pi_v */
  double *supply;      /* s_u: a_i, -b_j (rescaled), 0 at the root */
  uint64_t *in_tree;   /* bitset, real arcs */
  /* Scratch for re-rooting, one entry per path node. */
  int32_t *path, *old_thread, *old_rev, *old_last, *old_after, *old_size;
  int64_t *old_pred;
  unsigned char *old_up;
  double *old_flow;
  long double *excess; /* flow recomputation, extended precision */
  int64_t *init_arc;   /* [m+n] cheapest arc into each sink, then out of
                          each source (first pivot candidates) */
  void *block_mem;     /* the one allocation all arrays above live in */
} ns;

/* Source node (tail) of real arc e = i*m + j: i. Arcs are implicit in the
 * cost's index, so endpoints are computed, not stored. O(1). */
static inline int32_t arc_tail(const ns *s, int64_t e) {
  return (int32_t)(e / (int64_t)s->m);
}
/* Sink node (head) of real arc e = i*m + j: n + j. O(1). */
static inline int32_t arc_head(const ns *s, int64_t e) {
  return (int32_t)((int64_t)s->n + e % (int64_t)s->m);
}

/* Tree membership of real arc e: a bit, so that pricing never offers a tree
 * arc whose rounded reduced cost dips below -tol. O(1). */
static inline int tree_has(const ns *s, int64_t e) {
  return (int)((s->in_tree[e >> 6] >> (e & 63)) & 1u);
}
/* Marks real arc e as a tree arc (it entered). O(1). */
static inline void tree_set(ns *s, int64_t e) {
  s->in_tree[e >> 6] |= (uint64_t)1 << (e & 63);
}
/* Clears real arc e's tree bit (it left). O(1). */
static inline void tree_clear(ns *s, int64_t e) {
  s->in_tree[e >> 6] &= ~((uint64_t)1 << (e & 63));
}

/* Cost of node v's pred arc: real arcs read C, artificial ones are 0 (up)
 * or ART (down); an artificial arc never changes direction because its
 * parent end is always the root. */
static inline double pred_cost(const ns *s, int32_t v) {
  int64_t e = s->pred[v];
  if(e < s->narcs)
    return s->cost[e];
  return s->up[v] ? 0.0 : s->art;
}

/* Hot-loop helpers are compiled for AVX2 and for baseline x86-64, picked
 * at load time (GCC function multi-versioning; not under ASan, whose
 * interceptors do not mix with ifuncs). Results are bit-identical: the
 * same IEEE additions in the same order, no multiplies to contract. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define TP_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TP_CLONES
#endif

typedef double tp_v4d __attribute__((vector_size(32)));
typedef long long tp_v4i __attribute__((vector_size(32)));

/* Lane-wise minimum of two vectors (x < y ? x : y), via masks. A macro:
 * a function returning a 32-byte vector changes the ABI without AVX. */
#define V4_MIN(x, y)                                                      \
  ((tp_v4d)(((tp_v4i)(x) & (tp_v4i)((x) < (y))) |                        \
            ((tp_v4i)(y) & ~(tp_v4i)((x) < (y)))))

/* Prices arcs e0 .. e0+cnt-1 of one row (source potential pu, costs c,
 * sink potentials pv), keeping the first arc with the smallest reduced
 * cost below *best that is not in the tree. Vector minimum over groups of
 * 16 arcs; only a group whose minimum beats *best is rescanned one by one,
 * so the result equals a plain scalar scan. O(cnt). */
TP_CLONES static void price_row(const double *c, const double *pv, double pu,
                                int64_t e0, int64_t cnt, const uint64_t *bits,
                                double *best, int64_t *best_e) {
  double b = *best;
  int64_t be = *best_e;
  int64_t k = 0;
  const tp_v4d vpu = {pu, pu, pu, pu};
  for(; k + 16 <= cnt; k += 16) {
    tp_v4d c0, c1, c2, c3, p0, p1, p2, p3;
    memcpy(&c0, c + k, sizeof(c0));
    memcpy(&c1, c + k + 4, sizeof(c1));
    memcpy(&c2, c + k + 8, sizeof(c2));
    memcpy(&c3, c + k + 12, sizeof(c3));
    memcpy(&p0, pv + k, sizeof(p0));
    memcpy(&p1, pv + k + 4, sizeof(p1));
    memcpy(&p2, pv + k + 8, sizeof(p2));
    memcpy(&p3, pv + k + 12, sizeof(p3));
    const tp_v4d r0 = c0 + vpu - p0, r1 = c1 + vpu - p1;
    const tp_v4d r2 = c2 + vpu - p2, r3 = c3 + vpu - p3;
    const tp_v4d m01 = V4_MIN(r0, r1), m23 = V4_MIN(r2, r3);
    const tp_v4d mn = V4_MIN(m01, m23);
    const double h01 = mn[0] < mn[1] ? mn[0] : mn[1];
    const double h23 = mn[2] < mn[3] ? mn[2] : mn[3];
    const double h = h01 < h23 ? h01 : h23;
    if(!(h < b))
      continue;
    for(int64_t q = k; q < k + 16; q++) {
      double r = c[q] + pu - pv[q];
      int64_t e = e0 + q;
      if(r < b && !((bits[e >> 6] >> (e & 63)) & 1u)) {
        b = r;
        be = e;
      }
    }
  }
  for(; k < cnt; k++) {
    double r = c[k] + pu - pv[k];
    int64_t e = e0 + k;
    if(r < b && !((bits[e >> 6] >> (e & 63)) & 1u)) {
      b = r;
      be = e;
    }
  }
  *best = b;
  *best_e = be;
}

/* Block-search pricing (Dantzig's rule within a block). Scans arcs from
 * next_arc cyclically in row-major order, block arcs at a time; returns the
 * most negative reduced cost arc (first on ties) of the first block that
 * has one below -tol, or NONE after a full wrap without one.
 * O(block) to O(n*m). */
static int64_t find_entering(ns *s, double *rc_out) {
  const int64_t total = s->narcs;
  const int64_t m = (int64_t)s->m;
  const double *pis = s->pi + s->n;
  int64_t e = s->next_arc;
  int64_t scanned = 0;
  int64_t best_e = NONE;
  double best = -s->tol;
  while(scanned < total) {
    int64_t left = s->block;
    if(left > total - scanned)
      left = total - scanned;
    scanned += left;
    while(left > 0) { /* row by row */
      int64_t i = e / m, j0 = e - i * m;
      int64_t cnt = m - j0;
      if(cnt > left)
        cnt = left;
      price_row(s->cost + e, pis + j0, s->pi[i], e, cnt, s->in_tree, &best,
                &best_e);
      e += cnt;
      if(e == total)
        e = 0;
      left -= cnt;
    }
    if(best_e != NONE) {
      s->next_arc = e;
      *rc_out = best;
      return best_e;
    }
  }
  return NONE;
}

/* Recomputes every potential from the tree (pi_root = 0, reduced cost 0 on
 * each tree arc) in thread order, so parents come before children. Removes
 * the drift that incremental updates accumulate. O(n + m). */
static void recompute_potentials(ns *s) {
  s->pi[s->root] = 0.0;
  for(int32_t v = s->thread[s->root]; v != s->root; v = s->thread[v]) {
    double c = pred_cost(s, v);
    s->pi[v] = s->up[v] ? s->pi[s->parent[v]] - c : s->pi[s->parent[v]] + c;
  }
}

/* Recomputes tree flows from the supplies: in reverse preorder (children
 * first) the net supply of v's subtree must cross v's pred arc. Subtree
 * sums are accumulated in long double, since a flow is the small difference
 * of large partial sums. Flows that come out negative by rounding are
 * clamped to 0. Returns the largest |flow| on an artificial arc (0 for a
 * feasible balanced problem). O(n+m). */
static double recompute_flows(ns *s) {
  long double *excess = s->excess;
  double art_flow = 0.0;
  for(int32_t v = 0; v < s->nn; v++)
    excess[v] = s->supply[v];
  for(int32_t v = s->rev_thread[s->root]; v != s->root; v = s->rev_thread[v]) {
    double f = (double)(s->up[v] ? excess[v] : -excess[v]);
    excess[s->parent[v]] += excess[v];
    if(s->pred[v] >= s->narcs)
      art_flow = fmax(art_flow, fabs(f));
    s->flow[v] = f > 0.0 ? f : 0.0;
  }
  return art_flow;
}

/* One pivot on entering real arc ein with reduced cost rc < 0: push flow
 * round the cycle it closes, drop the leaving arc (strongly feasible rule),
 * re-root the cut subtree and update thread, sizes and potentials.
 * O(cycle length + size of the cut subtree). Returns OTF_E_INTERNAL if the
 * cycle has no blocking arc (impossible with costs >= 0). */
static otf_status pivot(ns *s, int64_t ein, double rc, otf_error *err) {
  int32_t *parent = s->parent, *thread = s->thread, *rev = s->rev_thread;
  int32_t *size = s->succ_num, *last = s->last_succ;
  const int32_t u_in = arc_tail(s, ein), v_in = arc_head(s, ein);

  /* Apex: climb from whichever side has the smaller subtree. */
  int32_t x = u_in, y = v_in;
  while(x != y) {
    if(size[x] < size[y])
      x = parent[x];
    else
      y = parent[y];
  }
  const int32_t join = x;

  /* Leaving arc. Flow goes join -> u_in -> v_in -> join. On the u side
   * (walked upward from u_in, against the flow) up arcs decrease; strict <
   * keeps the one nearest u_in, i.e. last in flow order. On the v side
   * (walked upward, with the flow) down arcs decrease; <= keeps the one
   * nearest join, last in flow order, and lets the v side win ties. */
  double delta = INFINITY;
  int32_t u_out = NONE;
  int v_side = 0;
  for(int32_t w = u_in; w != join; w = parent[w])
    if(s->up[w] && s->flow[w] < delta) {
      delta = s->flow[w];
      u_out = w;
    }
  for(int32_t w = v_in; w != join; w = parent[w])
    if(!s->up[w] && s->flow[w] <= delta) {
      delta = s->flow[w];
      u_out = w;
      v_side = 1;
    }
  if(u_out == NONE)
    return OTF_FAIL(err, OTF_E_INTERNAL, NULL,
                    "network simplex: unbounded cycle (negative cost cycle)");

  /* Push delta round the cycle (x - delta >= 0 exactly for x >= delta). */
  if(delta > 0.0) {
    for(int32_t w = u_in; w != join; w = parent[w])
      s->flow[w] += s->up[w] ? -delta : delta;
    for(int32_t w = v_in; w != join; w = parent[w])
      s->flow[w] += s->up[w] ? delta : -delta;
  }
  s->flow[u_out] = 0.0;

  /* stem: the entering arc's end inside the cut subtree S (rooted at
   * u_out); np: its new parent, outside S. */
  const int32_t stem = v_side ? v_in : u_in;
  const int32_t np = v_side ? u_in : v_in;
  const double shift = v_side ? rc : -rc;
  const int32_t s_size = size[u_out];
  const int32_t s_last_old = last[u_out];
  const int32_t before = rev[u_out];
  const int32_t after = thread[s_last_old];
  const int32_t old_par = parent[u_out];
  const int64_t eout = s->pred[u_out];

  /* Path stem = w_0, ..., w_k = u_out, with the old fields saved. */
  int32_t k = 0;
  for(int32_t w = stem;; w = parent[w]) {
    s->path[k] = w;
    s->old_thread[k] = thread[w];
    s->old_rev[k] = rev[w];
    s->old_last[k] = last[w];
    s->old_after[k] = thread[last[w]];
    s->old_size[k] = size[w];
    s->old_pred[k] = s->pred[w];
    s->old_up[k] = s->up[w];
    s->old_flow[k] = s->flow[w];
    k++;
    if(w == u_out)
      break;
  }

  /* Cut S out of the thread; fix last_succ and sizes above it. */
  thread[before] = after;
  rev[after] = before;
  for(int32_t w = old_par; w != NONE && last[w] == s_last_old; w = parent[w])
    last[w] = before;
  for(int32_t w = old_par; w != join; w = parent[w])
    size[w] -= s_size;
  for(int32_t w = np; w != join; w = parent[w])
    size[w] += s_size;


  /* New preorder of S rooted at w_0: for each t, w_t, then its old subtree
   * minus w_{t-1}'s old subtree (at most two old thread pieces), then the
   * segment of w_{t+1}. Only saved (pre-pivot) links are read, since the
   * live ones at piece ends are rewritten as we go. */
  int32_t tail = NONE;
  for(int32_t t = 0; t < k; t++) {
    const int32_t w = s->path[t];
    if(tail != NONE) {
      thread[tail] = w;
      rev[w] = tail;
    }
    tail = w;
    if(t == 0) {
      if(s->old_last[0] != w) {
        thread[tail] = s->old_thread[0];
        rev[s->old_thread[0]] = tail;
        tail = s->old_last[0];
      }
      continue;
    }
    const int32_t prev = s->path[t - 1];
    if(s->old_thread[t] != prev) { /* piece A: after w, before prev */
      thread[tail] = s->old_thread[t];
      rev[s->old_thread[t]] = tail;
      tail = s->old_rev[t - 1];
    }
    if(s->old_last[t - 1] != s->old_last[t]) { /* piece B: after prev's
                                                  subtree, to w's last */
      thread[tail] = s->old_after[t - 1];
      rev[s->old_after[t - 1]] = tail;
      tail = s->old_last[t];
    }
  }
  const int32_t new_last = tail;

  /* Splice S in right after np, then extend last_succ of np's chain. */
  const int32_t nx = thread[np];
  thread[np] = stem;
  rev[stem] = np;
  thread[new_last] = nx;
  rev[nx] = new_last;
  for(int32_t w = np; w != NONE && last[w] == np; w = parent[w])
    last[w] = new_last;

  /* Reverse the path: parents, pred arcs (direction flips), flows, sizes. */
  parent[stem] = np;
  s->pred[stem] = ein;
  s->up[stem] = (unsigned char)!v_side;
  s->flow[stem] = delta;
  size[stem] = s_size;
  last[stem] = new_last;
  for(int32_t t = 1; t < k; t++) {
    const int32_t w = s->path[t];
    parent[w] = s->path[t - 1];
    s->pred[w] = s->old_pred[t - 1];
    s->up[w] = (unsigned char)!s->old_up[t - 1];
    s->flow[w] = s->old_flow[t - 1];
    size[w] = s_size - s->old_size[t - 1];
    last[w] = new_last;
  }
  tree_set(s, ein);
  if(eout < s->narcs)
    tree_clear(s, eout);

  /* Potentials of S shift so that the entering arc's reduced cost is 0. */
  int32_t w = stem;
  for(int32_t c = 0; c < s_size; c++, w = thread[w])
    s->pi[w] += shift;
  return OTF_OK;
}

/* Carves count elements of esize bytes, 16-byte aligned, at *off of base
 * and advances *off; with base NULL it only measures. */
static void *carve(unsigned char *base, size_t *off, size_t count, size_t esize) {
  size_t o = (*off + 15) & ~(size_t)15;
  *off = o + count * esize;
  return base ? base + o : NULL;
}

/* Lays every array of the solver state out in one block (measuring when
 * base is NULL) and returns the block's size, so the state is one
 * allocation and one free. */
static size_t ns_layout(ns *s, unsigned char *base, const otf_ot_problem *p) {
  size_t nn = (size_t)s->nn, off = 0;
  size_t words = (size_t)((s->narcs + 63) / 64);
  s->parent = carve(base, &off, nn, sizeof(int32_t));
  s->thread = carve(base, &off, nn, sizeof(int32_t));
  s->rev_thread = carve(base, &off, nn, sizeof(int32_t));
  s->succ_num = carve(base, &off, nn, sizeof(int32_t));
  s->last_succ = carve(base, &off, nn, sizeof(int32_t));
  s->pred = carve(base, &off, nn, sizeof(int64_t));
  s->up = carve(base, &off, nn, 1);
  s->flow = carve(base, &off, nn, sizeof(double));
  s->pi = carve(base, &off, nn, sizeof(double));
  s->supply = carve(base, &off, nn, sizeof(double));
  s->in_tree = carve(base, &off, words, sizeof(uint64_t));
  s->path = carve(base, &off, nn, sizeof(int32_t));
  s->old_thread = carve(base, &off, nn, sizeof(int32_t));
  s->old_rev = carve(base, &off, nn, sizeof(int32_t));
  s->old_last = carve(base, &off, nn, sizeof(int32_t));
  s->old_after = carve(base, &off, nn, sizeof(int32_t));
  s->old_size = carve(base, &off, nn, sizeof(int32_t));
  s->old_pred = carve(base, &off, nn, sizeof(int64_t));
  s->old_up = carve(base, &off, nn, 1);
  s->old_flow = carve(base, &off, nn, sizeof(double));
  s->excess = carve(base, &off, nn, sizeof(long double));
  s->init_arc = carve(base, &off, p->m + p->n, sizeof(int64_t));
  return off;
}

/* Allocates every array of the solver state at once (so that the pivot
 * loop never allocates) and builds the initial big-M tree. supply holds
 * a_i for sources and -b_j (b rescaled to a's mass) for sinks.
 * Memory: n*m/8 bytes of tree bits plus ~100 bytes per node. */
static otf_status ns_init(ns *s, const otf_ot_problem *p, otf_error *err) {
  memset(s, 0, sizeof(*s));
  s->n = p->n;
  s->m = p->m;
  s->nn = (int32_t)(p->n + p->m + 1);
  s->root = s->nn - 1;
  s->narcs = (int64_t)p->n * (int64_t)p->m;
  s->cost = p->cost;
  size_t nn = (size_t)s->nn;
  size_t total = ns_layout(s, NULL, p);
  s->block_mem = otf_malloc(total);
  if(!s->block_mem)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL,
                    "network simplex: out of memory for a %zu x %zu problem",
                    p->n, p->m);
  ns_layout(s, s->block_mem, p);
  memset(s->in_tree, 0, (size_t)((s->narcs + 63) / 64) * sizeof(uint64_t));

  /* Supplies, b rescaled to a's mass. The masses are summed in long
   * double: a double sum of 3072 x (1/3072) is off by ~5e-14, and rescaling
   * by that noise would put it into every column sum. */
  long double ma = 0.0L, mb = 0.0L;
  for(size_t i = 0; i < p->n; i++)
    ma += otf_ot_a(p, i);
  for(size_t j = 0; j < p->m; j++)
    mb += otf_ot_b(p, j);
  double scale = ma == mb ? 1.0 : (double)(ma / mb);
  for(size_t i = 0; i < p->n; i++)
    s->supply[i] = otf_ot_a(p, i);
  for(size_t j = 0; j < p->m; j++)
    s->supply[p->n + j] = -(otf_ot_b(p, j) * scale);
  s->supply[s->root] = 0.0;

  /* Largest |cost|, and the cheapest arc into each sink (first row on
   * ties), in one row-major pass; old_flow serves as the column minima. */
  double cmax = 0.0;
  double *colmin = s->old_flow;
  for(size_t j = 0; j < p->m; j++) {
    colmin[j] = INFINITY;
    s->init_arc[j] = NONE;
  }
  for(size_t i = 0; i < p->n; i++) {
    const double *row = p->cost + i * p->m;
    double rmin = INFINITY;
    int64_t rarg = NONE;
    for(size_t j = 0; j < p->m; j++) {
      double v = row[j];
      double av = fabs(v);
      cmax = av > cmax ? av : cmax;
      if(v < colmin[j]) {
        colmin[j] = v;
        s->init_arc[j] = (int64_t)(i * p->m + j);
      }
      if(v < rmin) {
        rmin = v;
        rarg = (int64_t)(i * p->m + j);
      }
    }
    s->init_arc[p->m + i] = rarg;
  }
  s->art = cmax > 0.0 ? (double)(nn + 1) * cmax : 1.0;
  s->tol = 16.0 * DBL_EPSILON * (s->art + cmax);
  double bs = ceil(sqrt((double)s->narcs));
  s->block = bs < 10.0 ? 10 : (int64_t)bs;
  if(s->block > s->narcs)
    s->block = s->narcs;
  s->next_arc = 0;

  /* Big-M tree: every node a child of the root, thread root, 0, 1, ... */
  const int32_t r = s->root;
  for(int32_t u = 0; u < r; u++) {
    s->parent[u] = r;
    s->pred[u] = s->narcs + u;
    s->thread[u] = u + 1;
    s->rev_thread[u + 1] = u;
    s->succ_num[u] = 1;
    s->last_succ[u] = u;
    if(s->supply[u] >= 0.0) {
      s->up[u] = 1;
      s->flow[u] = s->supply[u];
      s->pi[u] = 0.0;
    } else {
      s->up[u] = 0;
      s->flow[u] = -s->supply[u];
      s->pi[u] = s->art;
    }
  }
  s->parent[r] = NONE;
  s->pred[r] = NONE;
  s->up[r] = 0;
  s->flow[r] = 0.0;
  s->pi[r] = 0.0;
  s->thread[r] = 0;
  s->rev_thread[0] = r;
  s->succ_num[r] = s->nn;
  s->last_succ[r] = r - 1;
  return OTF_OK;
}

/* Releases every array ns_init allocated (any subset may be NULL). */
static void ns_free(ns *s) {
  otf_free(s->block_mem);
  s->block_mem = NULL;
}

/* Network simplex driver: pivot until pricing finds no negative reduced
 * cost with freshly recomputed potentials, then write the plan from flows
 * recomputed on the final tree. Time: pivots x O(block + cycle + subtree),
 * empirically a small multiple of n*m; memory O(n*m/8 + n + m). */
otf_status otf_emd(double *plan, otf_emd_stats *stats, const otf_ot_problem *p,
                   uint64_t max_iter, otf_error *err) {
  ns s;
  memset(&s, 0, sizeof(s));
  otf_status rc;
  if(!plan)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "otf_emd: no plan buffer");
  rc = otf_ot_validate(p, err);
  if(rc != OTF_OK)
    return rc;
  if(max_iter == 0)
    max_iter = OTF_EMD_DEFAULT_MAX_ITER;
  rc = ns_init(&s, p, err);
  if(rc != OTF_OK)
    goto fail;

  /* Pivot loop. The first candidates are each sink's cheapest incoming
   * arc (a greedy start that replaces most artificial arcs quickly, taken
   * when its reduced cost is still negative); then block search. */
  uint64_t iters = 0;
  int fresh_pi = 0; /* potentials recomputed since the last pivot */
  size_t next_init = 0;
  for(;;) {
    double red = 0.0;
    int64_t e = NONE;
    while(next_init < p->m + p->n && e == NONE) {
      int64_t c = s.init_arc[next_init++];
      if(c == NONE || tree_has(&s, c))
        continue;
      red = s.cost[c] + s.pi[arc_tail(&s, c)] - s.pi[arc_head(&s, c)];
      if(red < -s.tol)
        e = c;
    }
    if(e == NONE)
      e = find_entering(&s, &red);
    if(e == NONE) {
      if(fresh_pi)
        break;
      recompute_potentials(&s);
      fresh_pi = 1;
      continue;
    }
    if(iters >= max_iter) {
      rc = OTF_FAIL(err, OTF_E_ITER_LIMIT, NULL,
                    "network simplex: pivot limit %llu reached before "
                    "optimality (%zu x %zu problem)",
                    (unsigned long long)max_iter, p->n, p->m);
      goto fail;
    }
    rc = pivot(&s, e, red, err);
    if(rc != OTF_OK)
      goto fail;
    iters++;
    fresh_pi = 0;
  }

  double mass = 0.0;
  for(size_t i = 0; i < p->n; i++)
    mass += s.supply[i];
  double art_flow = recompute_flows(&s);
  if(art_flow > 1e-9 * mass) {
    rc = OTF_FAIL(err, OTF_E_INFEASIBLE, NULL,
                  "network simplex: %g of the mass %g could not be routed",
                  art_flow, mass);
    goto fail;
  }
  memset(plan, 0, p->n * p->m * sizeof(double));
  for(int32_t v = 0; v < s.root; v++)
    if(s.pred[v] < s.narcs)
      plan[s.pred[v]] = s.flow[v];
  if(stats) {
    stats->objective = otf_plan_objective(plan, p);
    stats->iterations = iters;
  }
  rc = OTF_OK;
fail:
  ns_free(&s);
  return rc;
}

/* ---- Reference: successive shortest paths ---------------------------- */

/* Successive shortest paths on the residual graph of the same bipartite
 * network: Bellman-Ford from every source with remaining supply (distance 0)
 * over forward arcs i->j (cost C_ij, uncapacitated) and backward arcs j->i
 * (cost -C_ij, capacity P_ij); augment along the shortest path to the
 * nearest sink with remaining demand by the largest feasible amount. Each
 * augmentation zeroes a supply, a demand or a backward arc exactly.
 * Time O(aug * (n+m) * n*m); memory O(n + m) besides the plan. */
otf_status otf_emd_naive(double *plan, otf_emd_stats *stats,
                         const otf_ot_problem *p, uint64_t max_iter,
                         otf_error *err) {
  double *ra = NULL, *rb = NULL, *dist = NULL;
  int32_t *from = NULL;
  otf_status rc;
  if(!plan)
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "otf_emd_naive: no plan buffer");
  rc = otf_ot_validate(p, err);
  if(rc != OTF_OK)
    return rc;
  if(max_iter == 0)
    max_iter = OTF_EMD_DEFAULT_MAX_ITER;
  const size_t n = p->n, m = p->m, nn = n + m;
  const double *c = p->cost;
  ra = otf_malloc_array(n, sizeof(double));
  rb = otf_malloc_array(m, sizeof(double));
  dist = otf_malloc_array(nn, sizeof(double));
  from = otf_malloc_array(nn, sizeof(int32_t));
  if(!ra || !rb || !dist || !from) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL,
                  "successive shortest paths: out of memory");
    goto fail;
  }
  long double ma = 0.0L, mb = 0.0L; /* as in ns_init */
  double cmax = 0.0;
  for(size_t i = 0; i < n; i++)
    ma += (ra[i] = otf_ot_a(p, i));
  for(size_t j = 0; j < m; j++)
    mb += (rb[j] = otf_ot_b(p, j));
  if(ma != mb)
    for(size_t j = 0; j < m; j++)
      rb[j] *= (double)(ma / mb);
  for(size_t e = 0; e < n * m; e++)
    cmax = fmax(cmax, c[e]);
  /* Relaxations must improve by more than rounding noise, so that noise
   * cannot masquerade as a negative cycle. */
  const double tiny = 64.0 * DBL_EPSILON * cmax * (double)nn;
  memset(plan, 0, n * m * sizeof(double));

  uint64_t iters = 0;
  for(;;) {
    /* Sources with supply left start at 0; sinks are nodes n..n+m-1. */
    int any = 0;
    for(size_t u = 0; u < nn; u++) {
      dist[u] = INFINITY;
      from[u] = NONE;
    }
    for(size_t i = 0; i < n; i++)
      if(ra[i] > 0.0) {
        dist[i] = 0.0;
        any = 1;
      }
    int need = 0;
    for(size_t j = 0; j < m; j++)
      if(rb[j] > 0.0)
        need = 1;
    if(!any || !need)
      break;
    for(size_t pass = 0; pass < nn; pass++) {
      int changed = 0;
      for(size_t i = 0; i < n; i++)
        for(size_t j = 0; j < m; j++) {
          double w = c[i * m + j];
          if(dist[i] + w < dist[n + j] - tiny) { /* forward i -> j */
            dist[n + j] = dist[i] + w;
            from[n + j] = (int32_t)i;
            changed = 1;
          }
          if(plan[i * m + j] > 0.0 && dist[n + j] - w < dist[i] - tiny) {
            dist[i] = dist[n + j] - w; /* backward j -> i */
            from[i] = (int32_t)(n + j);
            changed = 1;
          }
        }
      if(!changed)
        break;
    }
    /* Nearest sink with demand left (lowest index on ties). */
    size_t jt = m;
    for(size_t j = 0; j < m; j++)
      if(rb[j] > 0.0 && dist[n + j] < INFINITY &&
         (jt == m || dist[n + j] < dist[n + jt]))
        jt = j;
    if(jt == m) {
      rc = OTF_FAIL(err, OTF_E_INFEASIBLE, NULL,
                    "successive shortest paths: no path to a sink with demand");
      goto fail;
    }
    if(iters >= max_iter) {
      rc = OTF_FAIL(err, OTF_E_ITER_LIMIT, NULL,
                    "successive shortest paths: augmentation limit %llu "
                    "reached before optimality",
                    (unsigned long long)max_iter);
      goto fail;
    }
    /* Bottleneck: demand, backward capacities on the path, origin supply. */
    double amt = rb[jt];
    size_t v = n + jt, steps = 0;
    while(from[v] != NONE) {
      size_t u = (size_t)from[v];
      if(v < n) /* backward arc u=sink -> v=source carries plan[v, u-n] */
        amt = fmin(amt, plan[v * m + (u - n)]);
      v = u;
      if(++steps > nn) {
        rc = OTF_FAIL(err, OTF_E_INTERNAL, NULL,
                      "successive shortest paths: cyclic predecessor chain");
        goto fail;
      }
    }
    amt = fmin(amt, ra[v]);
    const size_t origin = v;
    /* Augment; subtraction of the bottleneck value itself gives exact 0. */
    v = n + jt;
    while(from[v] != NONE) {
      size_t u = (size_t)from[v];
      if(v < n) {
        double *x = &plan[v * m + (u - n)];
        *x = *x == amt ? 0.0 : *x - amt;
      } else {
        plan[u * m + (v - n)] += amt;
      }
      v = u;
    }
    ra[origin] = ra[origin] == amt ? 0.0 : ra[origin] - amt;
    rb[jt] = rb[jt] == amt ? 0.0 : rb[jt] - amt;
    iters++;
  }
  if(stats) {
    stats->objective = otf_plan_objective(plan, p);
    stats->iterations = iters;
  }
  rc = OTF_OK;
fail:
  otf_free(ra);
  otf_free(rb);
  otf_free(dist);
  otf_free(from);
  return rc;
}
