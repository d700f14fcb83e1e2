/* The file:// store: confinement of paths to configured roots, and
 * atomic publication of a folder (temporary sibling, manifest last,
 * rename). */
#ifndef OTF_LOCAL_H
#define OTF_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/storage.h"

/* Progress bookkeeping shared by all transfers of one call. */
typedef struct otf__xprog {
  otf_xfer_progress fn;
  void *ctx;
  uint64_t done, total;
} otf__xprog;

/* Reports progress; OTF_E_CANCELLED when the callback asks to stop. */
otf_status otf__xprog_add(otf__xprog *p, uint64_t bytes, otf_error *err) OTF_WUR;

/* Resolves path (absolute, from a file:// URI) to its canonical form and
 * checks that it lies inside one of roots (canonical folders). For reads
 * the path must exist. For writes it may not: its nearest existing
 * ancestor must be inside a root, and the missing components are plain
 * names. out receives the canonical (or would-be) path. */
otf_status otf__local_resolve(char *const *roots, size_t n_roots, const char *uri,
                              const char *path, int for_write, char *out, size_t cap,
                              otf_error *err) OTF_WUR;

/* Copies src to dst (a new file, mode 0644), fsynced, hashing as it goes;
 * sha_hex (may be NULL) receives the SHA-256 and *size the length. */
otf_status otf__local_copy_file(const char *src, const char *dst, char *sha_hex, uint64_t *size,
                                otf__xprog *prog, otf_error *err) OTF_WUR;

/* Creates the missing folders of path (mode 0755). */
otf_status otf__local_mkdirs(const char *path, otf_error *err) OTF_WUR;

/* Removes a tree we created (no symlinks followed). Best effort. */
void otf__local_rmtree(const char *path);

/* Publishes src at dst (canonical would-be path from otf__local_resolve):
 * files and then fusion_manifest.json go into a temporary sibling folder,
 * which is renamed onto dst. dst must not exist or be an empty folder
 * (else OTF_E_CONFLICT). Readers never see a partial dst. */
otf_status otf__local_put_dir(const char *src, const char *dst, otf__xprog *prog,
                              otf_error *err) OTF_WUR;

/* Reads a whole small file (at most max bytes) into a caller-owned buffer. */
otf_status otf__local_read_small(const char *path, size_t max, char **out, size_t *len,
                                 otf_error *err) OTF_WUR;

/* Writes buf to path (new file), fsynced. */
otf_status otf__local_write_small(const char *path, const void *buf, size_t len,
                                  otf_error *err) OTF_WUR;

#endif
