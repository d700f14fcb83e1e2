/* The file list of a model folder: names (relative, '/'-separated), sizes
 * and SHA-256 digests, and its JSON form fusion_manifest.json, which a
 * publisher writes last so that its presence means "complete". */
#ifndef OTF_MANIFEST_H
#define OTF_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/digest.h"

#define OTF_MANIFEST_NAME "fusion_manifest.json"

/* Files in one model folder. HF checkpoints have at most a few hundred
 * shards plus a dozen side files; 10000 bounds listing and manifest work. */
#define OTF_MAX_MODEL_FILES 10000
/* fusion_manifest.json bytes: ~150 bytes per file at the file limit. */
#define OTF_MAX_MANIFEST_BYTES ((size_t)4 << 20)
/* Folder nesting inside a model folder (HF uses one level at most). */
#define OTF_MAX_MODEL_DEPTH 8

typedef struct otf_manifest_entry {
  char *name;                  /* caller owns (through the manifest) */
  uint64_t size;
  char sha256[OTF_SHA256_HEX]; /* "" when not known */
  char etag[80];               /* stores only: the object's ETag, unquoted */
} otf_manifest_entry;

typedef struct otf_manifest {
  otf_manifest_entry *e;
  size_t n, cap;
} otf_manifest;

/* Appends a copy of name; sha256/etag may be NULL. */
otf_status otf__manifest_add(otf_manifest *m, const char *name, uint64_t size,
                             const char *sha256, const char *etag) OTF_WUR;
void otf__manifest_sort(otf_manifest *m);
void otf__manifest_free(otf_manifest *m);
/* Index of name or -1. */
long otf__manifest_find(const otf_manifest *m, const char *name);

/* JSON text {"files":[{"name","size","sha256"}...]} sorted by name; *out is
 * caller-owned (otf_free). */
otf_status otf__manifest_dump(const otf_manifest *m, char **out, size_t *len,
                              otf_error *err) OTF_WUR;
/* Parses and validates a manifest (safe relative names, 64-hex digests,
 * no duplicates, bounded). */
otf_status otf__manifest_parse(otf_manifest *m, const char *buf, size_t n,
                               otf_error *err) OTF_WUR;

/* Lists the regular files under dir (recursively, names relative to dir)
 * with their sizes, leaving out fusion_manifest.json; no digests. Symbolic
 * links and special files are refused. */
otf_status otf__manifest_scan(otf_manifest *m, const char *dir, otf_error *err) OTF_WUR;

#endif
