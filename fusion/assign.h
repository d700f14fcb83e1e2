/* Exact linear assignment: the exact OT solver for n == m with uniform
 * marginals, where the optimal plan is a permutation matrix divided by n.
 *
 * Given a square cost C [n, n], find the permutation s minimising
 * sum_i C[i, s(i)]. */
#ifndef OTF_ASSIGN_H
#define OTF_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Jonker-Volgenant (1987) shortest augmenting path solver on a dense
 * matrix: column reduction, augmenting row reduction, then Dijkstra-like
 * augmentation for the rows still free.
 *
 * col_of_row: out [n], col_of_row[i] = s(i).
 * objective:  out, sum_i C[i, s(i)] (may be NULL).
 * cost:       [n, n] row-major, finite (validate with otf_ot_validate first;
 *             negative entries are allowed here, |entry| <= 2^1000).
 * Ties are broken deterministically: for the same input the same
 * permutation comes back, on every run and machine word size, and with or
 * without the AVX2 kernels. Rule: the lowest column index wins among equal
 * reduced costs (the lowest row for a column minimum); in the Dijkstra
 * phase a free column beats an assigned one at equal distance.
 * Time O(n^3) worst case, typically far less (n = 3072 dense random: about
 * 0.15-0.4 s single-threaded with AVX2); memory O(n), one allocation.
 * Returns OTF_E_INVAL (NULL pointer, n == 0), OTF_E_TOO_LARGE (n >
 * OTF_MAX_OT_SIDE or n*n > OTF_MAX_OT_CELLS), OTF_E_NUMERIC (an entry is
 * NaN, infinite or beyond 2^1000), OTF_E_NOMEM, or OTF_OK. The output is
 * only meaningful on OTF_OK. */
otf_status otf_assign_jv(int32_t *col_of_row, double *objective,
                         const double *cost, size_t n, otf_error *err) OTF_WUR;

/* Naive reference: the textbook O(n^3) Hungarian method with potentials
 * (one Dijkstra per row, no reduction phases). Slow but simple; the test
 * oracle for otf_assign_jv. Same contract (its tie rule: lowest column
 * index, rows added in order). */
otf_status otf_assign_naive(int32_t *col_of_row, double *objective,
                            const double *cost, size_t n, otf_error *err) OTF_WUR;

#endif
