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
 *             negative entries are allowed here).
 * Ties are broken deterministically: for the same input the same
 * permutation comes back, on every run and machine word size.
 * Time O(n^3) worst case, typically far less; memory O(n), allocated once.
 * Returns OTF_E_NOMEM, OTF_E_INVAL (n == 0 or too large) or OTF_OK. */
otf_status otf_assign_jv(int32_t *col_of_row, double *objective,
                         const double *cost, size_t n, otf_error *err) OTF_WUR;

/* Naive reference: the textbook O(n^3) Hungarian method with potentials
 * (one Dijkstra per row, no reduction phases). Slow but simple; the test
 * oracle for otf_assign_jv. Same contract. */
otf_status otf_assign_naive(int32_t *col_of_row, double *objective,
                            const double *cost, size_t n, otf_error *err) OTF_WUR;

#endif
