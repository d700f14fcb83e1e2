/* The local cache of fetched remote models and files.
 *
 *   <dir>/entries/<key>/data/   the fetched folder (or the one file)
 *   <dir>/entries/<key>/meta    its size in bytes; mtime = last use (LRU)
 *   <dir>/locks/<key>.lock      held exclusively while <key> is fetched or evicted
 *   <dir>/locks/<key>.pin       held shared by every user of <key>
 *   <dir>/tmp/                  fetches in progress (<key>.<pid>.XXXXXX)
 *
 * Keys are content addresses computed by the caller (a SHA-256 over the
 * URI and the listed objects' names, sizes and ETags). A fetch fills a
 * temporary folder and renames it into entries/ only after every file was
 * verified, so a partial download never counts. flock(2) locks make two
 * callers -- threads or processes -- share one download, keep pinned
 * entries from eviction, and vanish with their process; entries survive
 * restarts. Least recently used unpinned entries are evicted beyond the
 * size bound. */
#ifndef OTF_CACHE_H
#define OTF_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/local.h"

typedef struct otf__cache otf__cache;

/* Opens (creating folders) the cache in dir; removes leftovers of dead
 * processes from tmp/. */
otf_status otf__cache_open(otf__cache **out, const char *dir, uint64_t max_bytes,
                           otf_error *err) OTF_WUR;
/* Releases every pin still held; the entries stay on disk. */
void otf__cache_close(otf__cache *c);
const char *otf__cache_dir(const otf__cache *c);

/* Fills tmpdir (an empty folder) with the entry's content and sets *bytes. */
typedef otf_status (*otf__cache_fill_fn)(void *ctx, const char *tmpdir, uint64_t *bytes,
                                         otf_error *err);

/* Gets the entry for key (64 lowercase hex digits), filling it with fill
 * on a miss, pins it, and writes its data folder into path. *hit (may be
 * NULL) says whether it was there already. Waiting for another fetch of
 * the same key polls prog's callback so that it can be cancelled. */
otf_status otf__cache_get(otf__cache *c, const char *key, otf__cache_fill_fn fill, void *ctx,
                          otf__xprog *prog, char *path, size_t cap, int *hit,
                          otf_error *err) OTF_WUR;

/* Unpins what otf__cache_get returned (path may also be a file inside the
 * data folder). Returns 1 when path was a pin of this cache. */
int otf__cache_release(otf__cache *c, const char *path);

/* Evicts least recently used unpinned entries until the total is within
 * the bound; returns the bytes remaining. */
uint64_t otf__cache_trim(otf__cache *c);

#endif
