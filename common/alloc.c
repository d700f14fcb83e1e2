#include "common/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static atomic_long g_calls;
static atomic_long g_fail_at; /* absolute call number that fails, 0 = none */

static int should_fail(void) {
  long n = atomic_fetch_add(&g_calls, 1) + 1;
  long f = atomic_load(&g_fail_at);
  return f != 0 && n == f;
}

void otf_alloc_fail_at(long k) {
  atomic_store(&g_fail_at, k > 0 ? atomic_load(&g_calls) + k : 0);
}

long otf_alloc_calls(void) { return atomic_load(&g_calls); }

void *otf_malloc(size_t size) {
  if(should_fail())
    return NULL;
  return malloc(size ? size : 1);
}

void *otf_calloc(size_t count, size_t size) {
  if(should_fail())
    return NULL;
  if(count == 0 || size == 0)
    count = size = 1;
  return calloc(count, size);
}

void *otf_malloc_array(size_t count, size_t size) {
  if(size && count > SIZE_MAX / size)
    return NULL;
  return otf_malloc(count * size);
}

void *otf_realloc(void *ptr, size_t size) {
  if(should_fail())
    return NULL;
  return realloc(ptr, size ? size : 1);
}

void *otf_malloc_aligned(size_t size) {
  if(should_fail())
    return NULL;
  void *p = NULL;
  if(size > SIZE_MAX - 63)
    return NULL;
  size = (size + 63) & ~(size_t)63;
  if(size == 0)
    size = 64;
  if(posix_memalign(&p, 64, size) != 0)
    return NULL;
  return p;
}

void otf_free(void *ptr) { free(ptr); }
