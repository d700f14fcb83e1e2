/* otfuse cp: copy a model folder between any two stores. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_storage.h"
#include "cli/commands.h"
#include "storage/uri.h"

static void cp_usage(FILE *f) {
  fprintf(f,
    "usage: otfuse cp [options] SRC DST\n"
    "\n"
    "Copies a model folder from SRC to DST. Each is a local path or a URI:\n"
    "  file:///abs/path/      a local folder\n"
    "  s3://bucket/prefix/    S3 or an S3-compatible store\n"
    "  http(s)://host/path/   read-only; a folder needs its fusion_manifest.json\n"
    "Downloads are verified (sizes, ETags, SHA-256 against the source's manifest);\n"
    "DST must not exist or be empty, and appears only complete: every file, then\n"
    "fusion_manifest.json (name, size, sha256 of each) last. Prints one JSON line.\n"
    "\n"
    "S3 settings come from the AWS environment: AWS_ENDPOINT_URL_S3 or\n"
    "AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,\n"
    "AWS_SESSION_TOKEN, or AWS_SHARED_CREDENTIALS_FILE / ~/.aws/credentials with\n"
    "AWS_PROFILE. Remote sources are cached in $OTFUSE_CACHE_DIR (else a\n"
    "temporary folder removed on exit).\n"
    "\n"
    "  --part-size-mb N    S3 multipart part size in MiB (>= 5, default 16)\n"
    "  -q, --quiet         no progress on stderr\n"
    "  -h, --help          this text\n");
}

typedef struct prog {
  const char *what;
  struct timespec t0;
  int tty;
} prog;

static double since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static int on_progress(void *ctx, uint64_t done, uint64_t total) {
  prog *p = ctx;
  if(p->tty)
    fprintf(stderr, "\r%-9s %8.1f / %.1f MiB", p->what, (double)done / 1048576.0, (double)total / 1048576.0);
  return 0;
}

int otf_cli_cp(int argc, char **argv) {
  static const struct option longopts[] = {{"part-size-mb", required_argument, 0, 'p'},
                                           {"quiet", no_argument, 0, 'q'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  size_t part = 0;
  int quiet = 0, c;
  optind = 1;
  while((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
    switch(c) {
    case 'p': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if(!*optarg || *end || v < 5 || v > 5120) {
        fprintf(stderr, "otfuse cp: --part-size-mb must be 5..5120 (got '%s')\n", optarg);
        return 2;
      }
      part = (size_t)v << 20;
      break;
    }
    case 'q': quiet = 1; break;
    case 'h': cp_usage(stdout); return 0;
    default: cp_usage(stderr); return 2;
    }
  }
  if(argc - optind != 2) {
    fprintf(stderr, "otfuse cp: give SRC and DST\n");
    cp_usage(stderr);
    return 2;
  }
  char src[8192], dst[8192];
  if(otf_cli_as_uri(argv[optind], src, sizeof(src)) != 0 || otf_cli_as_uri(argv[optind + 1], dst, sizeof(dst)) != 0) {
    fprintf(stderr, "otfuse cp: path too long\n");
    return 2;
  }
  otf_storage *s = NULL;
  otf_error e;
  otf_error_clear(&e);
  otf_status rc = otf_cli_storage_open(&s, part, &e);
  if(rc == OTF_OK)
    rc = otf_storage_check(s, src, 0, &e);
  if(rc == OTF_OK)
    rc = otf_storage_check(s, dst, 1, &e);
  if(rc != OTF_OK) {
    fprintf(stderr, "otfuse cp: %s: %s\n", otf_strerror(rc), e.message);
    otf_storage_close(s);
    return rc == OTF_E_INVAL || rc == OTF_E_UNSUPPORTED ? 2 : 1;
  }
  prog p = {"fetch", {0, 0}, !quiet && isatty(2)};
  clock_gettime(CLOCK_MONOTONIC, &p.t0);
  char local[4096];
  rc = otf_storage_fetch_model(s, src, local, sizeof(local), on_progress, &p, &e);
  double t_fetch = since(&p.t0);
  if(p.tty)
    fprintf(stderr, "\n");
  if(rc == OTF_OK) {
    p.what = "upload";
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    p.t0 = t1;
    rc = otf_storage_put_dir(s, local, dst, on_progress, &p, &e);
    if(p.tty)
      fprintf(stderr, "\n");
    double t_put = since(&p.t0);
    otf_storage_release(s, local);
    if(rc == OTF_OK)
      printf("{\"src\":\"%s\",\"dst\":\"%s\",\"fetch_seconds\":%.3f,\"publish_seconds\":%.3f}\n",
             argv[optind], argv[optind + 1], t_fetch, t_put);
  }
  otf_storage_close(s);
  if(rc != OTF_OK) {
    fprintf(stderr, "otfuse cp: %s: %s\n", otf_strerror(rc), e.message);
    return 1;
  }
  return 0;
}
