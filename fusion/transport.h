/* Exact OT for arbitrary marginals and shapes: the transportation problem
 * solved by the network simplex method on the complete bipartite graph
 * (n sources, m sinks). Used for heterogeneous widths (n != m) and
 * non-uniform marginals; the square uniform case is otf_assign_jv's. */
#ifndef OTF_TRANSPORT_H
#define OTF_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fusion/ot_problem.h"

typedef struct otf_emd_stats {
  double objective;    /* <C, P> of the returned plan */
  uint64_t iterations; /* simplex pivots performed */
} otf_emd_stats;

/* Default pivot cap when max_iter is 0: generous enough that it is never
 * reached on problems within OTF_MAX_OT_CELLS in practice; reaching it is
 * an error (OTF_E_ITER_LIMIT), never a silently suboptimal plan. */
#define OTF_EMD_DEFAULT_MAX_ITER ((uint64_t)1 << 40)

/* Network simplex with block-search pivoting.
 *
 * plan:     out [n, m] row-major; the optimal plan, at most n+m-1 non-zeros.
 * stats:    out (may be NULL).
 * p:        the problem; must pass otf_ot_validate. If sum(b) differs from
 *           sum(a) within OTF_OT_MASS_TOL, b is rescaled to a's mass.
 * max_iter: pivot cap, 0 = OTF_EMD_DEFAULT_MAX_ITER.
 * Deterministic: same input, same plan. Degenerate pivots are handled
 * (strongly feasible tree), so it terminates without cycling.
 * Starts from a big-M artificial-root tree, then greedy first pivots (each
 * sink's and source's cheapest arc); see fusion/transport.c.
 * Memory: the cost is read in place; n*m bits of tree membership plus
 * O(n+m), allocated once. Time: each pivot prices about sqrt(n*m) arcs and
 * walks one cycle and one subtree; about 10-30 (n+m) pivots in practice
 * (3072 x 3072 in under a second on one core).
 * Returns OTF_E_ITER_LIMIT when the cap is hit, OTF_E_NOMEM, OTF_OK, or
 * otf_ot_validate's error for a bad problem (it is re-checked). */
otf_status otf_emd(double *plan, otf_emd_stats *stats, const otf_ot_problem *p,
                   uint64_t max_iter, otf_error *err) OTF_WUR;

/* Naive reference: successive shortest paths (Bellman-Ford on the residual
 * graph), each augmentation pushing the largest feasible amount. Slow
 * (use n, m <= ~64) but simple; the test oracle for otf_emd. Same
 * contract; max_iter caps augmentations. */
otf_status otf_emd_naive(double *plan, otf_emd_stats *stats,
                         const otf_ot_problem *p, uint64_t max_iter,
                         otf_error *err) OTF_WUR;

#endif
