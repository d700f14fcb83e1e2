/* File-system steps shared by the writers of model folders: see fsutil.h. */
#include "fusion/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

otf_status otf_fs_copy_file(const char *src, const char *dst, otf_error *err) {
  int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
  otf_status rc = OTF_OK;
  char buf[65536];
  if(in < 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", src, strerror(errno));
  out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if(out < 0) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", dst, strerror(errno));
    goto done;
  }
  for(;;) {
    ssize_t r = read(in, buf, sizeof(buf));
    if(r == 0)
      break;
    if(r < 0 || write(out, buf, (size_t)r) != r) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "copying %s: %s", src, strerror(errno));
      goto done;
    }
  }
  if(fsync(out) != 0)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", dst, strerror(errno));
done:
  if(out >= 0 && close(out) != 0 && rc == OTF_OK)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", dst, strerror(errno));
  close(in);
  return rc;
}

otf_status otf_fs_write_text(const char *path, const char *text, otf_error *err) {
  FILE *f = fopen(path, "w");
  if(!f)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
  int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF || fflush(f) != 0 ||
            fsync(fileno(f)) != 0;
  if(fclose(f) != 0 || bad)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: write failed: %s", path, strerror(errno));
  return OTF_OK;
}

void otf_fs_remove_flat(const char *dir) {
  DIR *d = opendir(dir);
  if(d) {
    struct dirent *e;
    char p[4096];
    while((e = readdir(d)))
      if(strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
         snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < (int)sizeof(p))
        unlink(p);
    closedir(d);
  }
  rmdir(dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if(flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0; /* best effort: go on with the rest */
}

void otf_fs_remove_tree(const char *dir) {
  if(dir && *dir)
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

otf_status otf_fs_mkdirs(const char *path, otf_error *err) {
  char buf[4096];
  if(snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "path too long: %.100s", path);
  for(char *p = buf + 1;; p++) {
    if(*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if(mkdir(buf, 0755) != 0 && errno != EEXIST)
      return OTF_FAIL(err, OTF_E_IO, NULL, "cannot create %s: %s", buf, strerror(errno));
    *p = c;
    if(!c)
      break;
  }
  return OTF_OK;
}

otf_status otf_fs_partial_dir(const char *out_dir, char *tmp, otf_error *err) {
  struct stat st;
  if(stat(out_dir, &st) == 0) {
    DIR *d = S_ISDIR(st.st_mode) ? opendir(out_dir) : NULL;
    int entries = 0;
    struct dirent *e;
    while(d && (e = readdir(d)))
      entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if(d)
      closedir(d);
    if(!S_ISDIR(st.st_mode) || entries)
      return OTF_FAIL(err, OTF_E_INVAL, "/output/uri",
                      "%s already exists and is not an empty folder", out_dir);
  }
  if(strlen(out_dir) > 1900)
    return OTF_FAIL(err, OTF_E_INVAL, "/output/uri", "output path too long");
  snprintf(tmp, 2048, "%s.partial.%ld", out_dir, (long)getpid());
  otf_fs_remove_flat(tmp);
  if(mkdir(tmp, 0755) != 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", tmp, strerror(errno));
  return OTF_OK;
}

static int is_model_file(const char *name, const char *const *also_skip) {
  size_t len = strlen(name);
  if(name[0] == '.' || !strcmp(name, "config.json") ||
     !strcmp(name, "model.safetensors.index.json") || !strcmp(name, "fusion_manifest.json") ||
     (len > 12 && !strcmp(name + len - 12, ".safetensors")))
    return 1;
  for(size_t i = 0; also_skip && also_skip[i]; i++)
    if(!strcmp(name, also_skip[i]))
      return 1;
  return 0;
}

otf_status otf_fs_copy_side_files(const char *src_dir, const char *dst_dir,
                                  const char *const *also_skip, otf_error *err) {
  DIR *d = opendir(src_dir);
  if(!d)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", src_dir, strerror(errno));
  otf_status rc = OTF_OK;
  struct dirent *e;
  struct stat st;
  while(rc == OTF_OK && (e = readdir(d))) {
    char src[4096], dst[4096];
    if(is_model_file(e->d_name, also_skip) ||
       snprintf(src, sizeof(src), "%s/%s", src_dir, e->d_name) >= (int)sizeof(src) ||
       snprintf(dst, sizeof(dst), "%s/%s", dst_dir, e->d_name) >= (int)sizeof(dst) ||
       stat(src, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    rc = otf_fs_copy_file(src, dst, err);
  }
  closedir(d);
  return rc;
}
