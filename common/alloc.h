/* Allocation wrapper. Every allocation in otfuse goes through these calls so
 * that tests can make the k-th one fail (otf_alloc_fail_at) and check that
 * each path returns OTF_E_NOMEM cleanly, without leaks (run under ASan).
 *
 * Ownership: the caller owns what these return and releases it with
 * otf_free(). Sizes are overflow-checked: a product that does not fit in
 * size_t fails like an out-of-memory. */
#ifndef OTF_ALLOC_H
#define OTF_ALLOC_H

#include <stddef.h>

void *otf_malloc(size_t size);
void *otf_calloc(size_t count, size_t size);
/* count * size bytes, uninitialised; NULL on overflow or failure. */
void *otf_malloc_array(size_t count, size_t size);
void *otf_realloc(void *ptr, size_t size);
/* 64-byte aligned block (for SIMD kernels); release with otf_free(). */
void *otf_malloc_aligned(size_t size);
void otf_free(void *ptr);

/* Test hook: the k-th allocation call from now (1-based) fails, and every
 * call after it succeeds again. k = 0 disables the hook. Thread-safe. */
void otf_alloc_fail_at(long k);
/* Number of allocation calls since the process started (for sizing loops). */
long otf_alloc_calls(void);

#endif
