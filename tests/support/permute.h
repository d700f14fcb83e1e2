/* Test support: a functionally equivalent permuted copy of a model folder.
 *
 * Transformers have exact symmetries: the units of the residual stream,
 * the attention heads, the dimensions inside a head and the FFN units can
 * be renumbered without changing the function the model computes, as long
 * as every tensor that reads or writes those units is renumbered the same
 * way. tu_permute_model applies such a renumbering to every tensor of a
 * checkpoint, driven only by the architecture table (fusion/arch.h): each
 * axis is permuted according to the space it is tagged with, so adding an
 * architecture table needs no change here. The copy is what an alignment
 * must undo (ALGORITHM.md §13: fusing a model with its permuted copy under
 * exact OT on activations must give the model back).
 *
 * Convention used everywhere (tensors and the record): unit i of the copy
 * is unit p[i] of the original, i.e. every axis is a gather
 *   copy[..., i, ...] = orig[..., p[i], ...].
 * A linear layer W [out, in] becomes W[p_out[i], p_in[j]], so with inputs
 * renumbered by p_in its outputs come out renumbered by p_out.
 *
 * Spaces and the permutation each one gets:
 *   RESID        pi_R [hidden], one for the whole model (every tensor that
 *                touches the residual stream, LayerNorms included: a
 *                LayerNorm's mean and variance do not depend on the order).
 *   Q, K of L    unit h*hd + d  <-  sigma_L[h]*hd + tauQK_L[d]: the heads
 *                are renumbered by sigma_L and the dimensions inside every
 *                head by one tauQK_L shared by Q and K, so each head's q.k
 *                (and the 1/sqrt(hd) scale) is unchanged.
 *   V of L       sigma_L[h]*hd + tauV_L[d] (V's output, W_O's input): a
 *                head's context is a mix of its own V rows, so V may use its
 *                own within-head order as long as W_O reads it the same way.
 *   QKV of L     (GPT-2 fused c_attn) the three thirds, each as above.
 *   FFN of L     pi_F,L [intermediate] (elementwise activation).
 *   POOL         pi_P [hidden]: pooler rows/bias, classifier and
 *                next-sentence input columns (tanh is elementwise).
 *   MLM          pi_R, not a permutation of its own: the MLM decoder
 *                [vocab, hidden] is tied to the word embeddings
 *                [vocab, hidden], whose hidden axis is RESID and therefore
 *                gets pi_R. One tensor cannot carry two orders, so the MLM
 *                transform's output (dense rows, its LayerNorm) must come
 *                out in pi_R order for the tied decoder to read it right.
 *   ONE, POS, PATCH, CLASS, VOCAB, TYPE   unpermuted (inputs and outputs
 *                whose order is fixed by the data; PATCH spans the conv
 *                kernel's three trailing axes).
 * Every permutation is a derangement when its size is at least 2 (no unit
 * keeps its index), so that an enabled part moves every unit it owns and a
 * test can check that the weights really changed. Functional equivalence
 * holds for any permutation; that is the point of the negative control
 * (TU_PERM_BREAK_QK), which breaks the one constraint attention imposes.
 *
 * Parts switched off in `what` get the identity. Permutations are always
 * drawn in the same order from one splitmix64 stream seeded by `seed`
 * (pi_R; then per layer sigma, tauQK, tauV, pi_F; then pi_P), whether
 * enabled or not, so a subset uses the same permutations as the full set
 * for the parts it enables, and the same seed gives the same file bytes. */
#ifndef OTF_TESTS_PERMUTE_H
#define OTF_TESTS_PERMUTE_H

#include <stdint.h>

#include "common/error.h"

/* Parts of the symmetry to apply (OR together). */
#define TU_PERM_RESID       1u /* pi_R (and with it MLM) */
#define TU_PERM_HEADS       2u /* sigma_L: the order of the heads */
#define TU_PERM_WITHIN_HEAD 4u /* tauQK_L and tauV_L: dimensions inside a head */
#define TU_PERM_FFN         8u /* pi_F,L */
#define TU_PERM_POOL       16u /* pi_P */
#define TU_PERM_ALL (TU_PERM_RESID | TU_PERM_HEADS | TU_PERM_WITHIN_HEAD | TU_PERM_FFN | \
                     TU_PERM_POOL)
/* Negative control, never part of TU_PERM_ALL: K gets a within-head order
 * different from Q's (tauK[d] = tauQK[(d + 1) % hd]), which changes every
 * q.k and so the model's function. Needs head_dim >= 2. */
#define TU_PERM_BREAK_QK   32u

/* The permutations used, as gathers (unit i of the copy is unit p[i] of
 * the original). Owned arrays; release with tu_perm_record_free. Layer
 * L's block of a per-layer array starts at L * (its width). Disabled parts
 * hold the identity. */
typedef struct tu_perm_record {
  int hidden, layers, heads, head_dim, ffn;
  int32_t *resid;   /* [hidden]            pi_R (MLM uses it too) */
  int32_t *sigma;   /* [layers * heads]    sigma_L */
  int32_t *tau_qk;  /* [layers * head_dim] tauQK_L */
  int32_t *tau_v;   /* [layers * head_dim] tauV_L */
  int32_t *ffn_perm;/* [layers * ffn]      pi_F,L */
  int32_t *pool;    /* [hidden]            pi_P */
} tu_perm_record;

/* Frees rec's arrays and zeroes it (rec may be NULL; safe on a zeroed or
 * already freed record). */
void tu_perm_record_free(tu_perm_record *rec);

/* Opens src_dir with otf_model_open (strict), reads every tensor as float32,
 * permutes every axis by its space as described above and writes
 * dst_dir/config.json (a byte copy of the source's) and
 * dst_dir/model.safetensors (F32, otf_st_write; tensor names as stored in
 * the source, aliases kept). dst_dir is created if missing (its parent must
 * exist). Tensors the table marks as buffers are copied unchanged (same
 * dtype and bytes); tied tensors absent from the file stay absent; absent
 * optional tensors stay absent. rec: may be NULL; when not, it is filled on
 * success (caller owns, tu_perm_record_free) and left zeroed on failure.
 * src_dir, dst_dir: borrowed. Errors: the statuses of otf_model_open,
 * otf_st_read_f32 and otf_st_write, OTF_E_IO for the config copy or the
 * folder, OTF_E_INVAL for bad arguments (TU_PERM_BREAK_QK with head_dim 1,
 * unknown bits), OTF_E_NOMEM. */
otf_status tu_permute_model(const char *src_dir, const char *dst_dir, uint64_t seed,
                            unsigned what, tu_perm_record *rec, otf_error *err) OTF_WUR;

#endif
