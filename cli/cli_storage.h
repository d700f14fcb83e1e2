/* The CLI's use of storage/: URIs for models, calibration files and
 * outputs. The local user is trusted: file:// is rooted at "/" and private
 * hosts are allowed; S3 settings come from the AWS environment; the cache
 * is $OTFUSE_CACHE_DIR, else a private temporary folder per run. */
#ifndef OTF_CLI_STORAGE_H
#define OTF_CLI_STORAGE_H

#include <stddef.h>

#include "fusion/fuse.h"
#include "storage/storage.h"

/* Opens the CLI's storage; part_size 0 = default. */
otf_status otf_cli_storage_open(otf_storage **s, size_t part_size, otf_error *err) OTF_WUR;

/* A path or URI as a URI: plain paths become file:// URIs of their
 * absolute form (percent-encoding what needs it). */
int otf_cli_as_uri(const char *arg, char *out, size_t cap);

/* Fetched inputs and a staged output of one command. */
typedef struct otf_cli_store {
  otf_storage *s;
  int n;
  const char *parents[OTF_MAX_PARENTS]; /* local folders, in order */
  char *fetched[OTF_MAX_PARENTS];       /* owned copies of cache paths */
  char *calib;                          /* fetched calibration file, or NULL */
  const char *out_uri;                  /* the -o URI when staged, else NULL */
  char out_tmp[4200];                   /* local folder the output is written to */
  char tmp_root[4096];                  /* our temporary folder, "" if none */
} otf_cli_store;

/* Replaces URIs among the n parents, *calibration and *out with local
 * paths (fetching parents and the calibration file, staging the output in
 * a temporary folder). Returns 0, or the exit status after printing the
 * error prefixed with cmd. */
int otf_cli_store_prepare(otf_cli_store *cs, char **parents, int n, const char **calibration,
                          const char **out, const char *cmd);
/* Publishes the staged output at its URI (no-op when not staged);
 * returns an exit status. */
int otf_cli_store_publish(otf_cli_store *cs, const char *cmd);
/* Unpins fetched inputs, removes temporary folders, closes storage. */
void otf_cli_store_done(otf_cli_store *cs);

#endif
