#include "cli/cli_storage.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "fusion/fsutil.h"
#include "storage/uri.h"

otf_status otf_cli_storage_open(otf_storage **s, size_t part_size, otf_error *err) {
  otf_storage_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.file_roots[0] = "/";
  cfg.n_file_roots = 1;
  cfg.allow_private_hosts = 1;
  cfg.s3_path_style = -1;
  cfg.s3_part_size = part_size;
  const char *c = getenv("OTFUSE_CACHE_DIR");
  cfg.cache_dir = c && *c ? c : NULL;
  return otf_storage_open(s, &cfg, err);
}

int otf_cli_as_uri(const char *arg, char *out, size_t cap) {
  if(otf_uri_is_uri(arg))
    return snprintf(out, cap, "%s", arg) < (int)cap ? 0 : -1;
  char abs[PATH_MAX * 2];
  if(arg[0] == '/') {
    snprintf(abs, sizeof(abs), "%s", arg);
  } else {
    char cwd[PATH_MAX];
    if(!getcwd(cwd, sizeof(cwd)))
      return -1;
    snprintf(abs, sizeof(abs), "%s/%s", cwd, arg);
  }
  size_t k = (size_t)snprintf(out, cap, "file://");
  for(const unsigned char *p = (const unsigned char *)abs; *p; p++) {
    int plain = *p > 0x20 && *p < 0x7f && *p != '%' && *p != '?' && *p != '#';
    if(k + (plain ? 1 : 3) >= cap)
      return -1;
    if(plain)
      out[k++] = (char)*p;
    else
      k += (size_t)snprintf(out + k, cap - k, "%%%02X", *p);
  }
  out[k] = 0;
  return 0;
}

static int fail(const char *cmd, otf_status rc, const otf_error *e) {
  fprintf(stderr, "%s: %s: %s\n", cmd, otf_strerror(rc), e->message);
  return 1;
}

static char *dupstr(const char *s) {
  size_t n = strlen(s);
  char *d = otf_malloc(n + 1);
  if(d)
    memcpy(d, s, n + 1);
  return d;
}

int otf_cli_store_prepare(otf_cli_store *cs, char **parents, int n, const char **calibration,
                          const char **out, const char *cmd) {
  memset(cs, 0, sizeof(*cs));
  cs->n = n;
  int any = (*calibration && otf_uri_is_uri(*calibration)) || (*out && otf_uri_is_uri(*out));
  for(int i = 0; i < n; i++) {
    cs->parents[i] = parents[i];
    any |= otf_uri_is_uri(parents[i]);
  }
  if(!any)
    return 0;
  otf_error e;
  otf_error_clear(&e);
  otf_status rc = otf_cli_storage_open(&cs->s, 0, &e);
  if(rc != OTF_OK)
    return fail(cmd, rc, &e);
  /* Check everything before fetching anything. */
  if(*out && otf_uri_is_uri(*out) && (rc = otf_storage_check(cs->s, *out, 1, &e)) != OTF_OK)
    return fail(cmd, rc, &e);
  if(*calibration && otf_uri_is_uri(*calibration) &&
     (rc = otf_storage_check(cs->s, *calibration, 0, &e)) != OTF_OK)
    return fail(cmd, rc, &e);
  for(int i = 0; i < n; i++)
    if(otf_uri_is_uri(parents[i]) && (rc = otf_storage_check(cs->s, parents[i], 0, &e)) != OTF_OK)
      return fail(cmd, rc, &e);
  char local[4096];
  for(int i = 0; i < n; i++) {
    if(!otf_uri_is_uri(parents[i]))
      continue;
    rc = otf_storage_fetch_model(cs->s, parents[i], local, sizeof(local), NULL, NULL, &e);
    if(rc != OTF_OK)
      return fail(cmd, rc, &e);
    if(!(cs->fetched[i] = dupstr(local))) {
      otf_storage_release(cs->s, local);
      return fail(cmd, OTF_E_NOMEM, &e);
    }
    cs->parents[i] = cs->fetched[i];
  }
  if(*calibration && otf_uri_is_uri(*calibration)) {
    rc = otf_storage_fetch_file(cs->s, *calibration, local, sizeof(local), NULL, NULL, &e);
    if(rc != OTF_OK)
      return fail(cmd, rc, &e);
    if(!(cs->calib = dupstr(local))) {
      otf_storage_release(cs->s, local);
      return fail(cmd, OTF_E_NOMEM, &e);
    }
    *calibration = cs->calib;
  }
  if(*out && otf_uri_is_uri(*out)) {
    const char *t = getenv("TMPDIR");
    snprintf(cs->tmp_root, sizeof(cs->tmp_root), "%s/otfuse-out-XXXXXX", t && *t == '/' ? t : "/tmp");
    if(!mkdtemp(cs->tmp_root)) {
      cs->tmp_root[0] = 0;
      OTF_FAIL(&e, OTF_E_IO, NULL, "cannot create a temporary folder");
      return fail(cmd, OTF_E_IO, &e);
    }
    snprintf(cs->out_tmp, sizeof(cs->out_tmp), "%s/out", cs->tmp_root);
    cs->out_uri = *out;
    *out = cs->out_tmp;
  }
  return 0;
}

int otf_cli_store_publish(otf_cli_store *cs, const char *cmd) {
  if(!cs->out_uri)
    return 0;
  otf_error e;
  otf_error_clear(&e);
  otf_status rc = otf_storage_put_dir(cs->s, cs->out_tmp, cs->out_uri, NULL, NULL, &e);
  return rc == OTF_OK ? 0 : fail(cmd, rc, &e);
}

void otf_cli_store_done(otf_cli_store *cs) {
  for(int i = 0; i < cs->n; i++)
    if(cs->fetched[i]) {
      otf_storage_release(cs->s, cs->fetched[i]);
      otf_free(cs->fetched[i]);
    }
  if(cs->calib) {
    otf_storage_release(cs->s, cs->calib);
    otf_free(cs->calib);
  }
  otf_fs_remove_tree(cs->tmp_root);
  otf_storage_close(cs->s);
  memset(cs, 0, sizeof(*cs));
}
