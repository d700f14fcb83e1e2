/* otfused configuration: defaults, then an optional JSON file (--config /
 * OTFUSED_CONFIG), then OTFUSED_* environment variables, then flags; the
 * later wins. Printed at start with secrets masked. */
#ifndef OTF_SERVER_CONFIG_H
#define OTF_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/storage.h"

#define OTF_SRV_MAX_LIST 16

typedef struct otf_srv_config {
  char *listen_host;      /* "127.0.0.1" */
  int port;               /* 8080 */
  char *data_dir;         /* "./otfused-data" */
  char *file_roots[OTF_SRV_MAX_LIST];
  size_t n_file_roots;
  char *tokens[OTF_SRV_MAX_LIST];
  size_t n_tokens;
  int local;              /* no tokens, loopback only */
  int workers;            /* concurrent jobs (1) */
  int blas_threads;       /* OpenBLAS threads per job (1) */
  int grace_s;            /* drain period on SIGTERM (30) */
  int max_attempts;       /* runs of a job interrupted by restarts (2) */
  size_t max_queued, max_models, max_connections;
  char *cache_dir;        /* data_dir/cache when NULL */
  uint64_t cache_max_bytes;
  char *s3_endpoint, *s3_region;
  int s3_path_style;      /* -1 auto */
  int allow_private_hosts;
  int help;               /* --help was given: usage printed, exit 0 */
} otf_srv_config;

/* Fills c from the sources above. Errors name the flag, variable or key. */
otf_status otf_srv_config_load(otf_srv_config *c, int argc, char **argv,
                               otf_error *err) OTF_WUR;
void otf_srv_config_free(otf_srv_config *c);

/* Fills a storage configuration that borrows from c. */
void otf_srv_config_storage(const otf_srv_config *c, otf_storage_cfg *s);

/* Logs the effective configuration as one JSON line, tokens masked. */
void otf_srv_config_log(const otf_srv_config *c);

void otf_srv_usage(void);

#endif
