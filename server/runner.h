/* Runs one fusion job on the calling (worker) thread: fetch the parents and
 * calibration data through storage, fuse with otf_fuse_dirs (the call
 * `otfuse fuse` makes), list and hash the artifacts, write
 * fusion_manifest.json, publish to the output URI when the spec names one.
 * Everything it reports goes through the callbacks; it touches no shared
 * state of the server. */
#ifndef OTF_SERVER_RUNNER_H
#define OTF_SERVER_RUNNER_H

#include <jansson.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/storage.h"

typedef struct otf_run_io {
  void *ctx;
  /* stage ("fetching", "loading", ...) and fraction of the whole job */
  void (*progress)(void *ctx, const char *stage, double fraction);
  void (*map)(void *ctx, const char *map_json); /* one transport map solved */
  void (*warning)(void *ctx, const char *message);
  void (*layers)(void *ctx, int n); /* depth of the anchor, once known */
  /* other events: type ("finetune") and a compact JSON object */
  void (*event)(void *ctx, const char *type, const char *json);
  const volatile int *cancel;
} otf_run_io;

typedef struct otf_run_result {
  otf_status status;
  otf_error err;
  json_t *summary;   /* fusion summary (owned), NULL on failure */
  json_t *artifacts; /* [{name, size, sha256}] (owned), NULL on failure */
  int layers;        /* depth of the anchor, 0 when unknown */
  uint64_t bytes_read, bytes_written;
} otf_run_result;

/* out_dir: where the fused folder is built (must not exist; a stale one
 * from an interrupted attempt is removed first). */
void otf_run_job(otf_storage *st, const json_t *spec, const char *out_dir,
                 const otf_run_io *io, otf_run_result *res);

void otf_run_result_free(otf_run_result *r);

#endif
