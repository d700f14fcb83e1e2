#include "storage/local.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "storage/digest.h"
#include "storage/manifest.h"
#include "storage/uri.h"

otf_status otf__xprog_add(otf__xprog *p, uint64_t bytes, otf_error *err) {
  if(!p)
    return OTF_OK;
  p->done += bytes;
  if(p->fn && p->fn(p->ctx, p->done, p->total))
    return OTF_FAIL(err, OTF_E_CANCELLED, NULL, "transfer cancelled");
  return OTF_OK;
}

static int inside(const char *path, const char *root) {
  size_t n = strlen(root);
  if(n == 1 && root[0] == '/')
    return path[0] == '/';
  return !strncmp(path, root, n) && (path[n] == 0 || path[n] == '/');
}

static int confined(char *const *roots, size_t n, const char *path) {
  for(size_t i = 0; i < n; i++)
    if(inside(path, roots[i]))
      return 1;
  return 0;
}

otf_status otf__local_resolve(char *const *roots, size_t n_roots, const char *uri,
                              const char *path, int for_write, char *out, size_t cap,
                              otf_error *err) {
  if(!n_roots)
    return OTF_FAIL(err, OTF_E_ACCESS, NULL, "%s: file:// URIs are not allowed (no file roots configured)", uri);
  if(path[0] != '/')
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: not an absolute path", uri);
  char real[PATH_MAX];
  if(realpath(path, real)) {
    if(!confined(roots, n_roots, real))
      return OTF_FAIL(err, OTF_E_ACCESS, NULL, "%s: resolves outside the allowed roots", uri);
    if(strlen(real) >= cap)
      return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: path too long", uri);
    memcpy(out, real, strlen(real) + 1);
    return OTF_OK;
  }
  if(errno != ENOENT || !for_write)
    return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : errno == EACCES ? OTF_E_ACCESS : OTF_E_IO,
                    NULL, "%s: %s", uri, strerror(errno));
  /* Walk up to the nearest existing ancestor; the rest must be plain
   * names, so that nothing after it can climb out. */
  char buf[PATH_MAX];
  if(strlen(path) >= sizeof(buf))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: path too long", uri);
  snprintf(buf, sizeof(buf), "%s", path);
  size_t tail = strlen(buf);
  for(;;) {
    char *slash = strrchr(buf, '/');
    if(!slash)
      return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: bad path", uri);
    const char *comp = slash + 1;
    if(!strcmp(comp, "..") || !strcmp(comp, "."))
      return OTF_FAIL(err, OTF_E_ACCESS, NULL, "%s: '%s' in a path that does not exist yet", uri, comp);
    tail = (size_t)(slash - buf);
    if(slash == buf) {
      real[0] = '/';
      real[1] = 0;
      break;
    }
    *slash = 0;
    if(realpath(buf, real))
      break;
    if(errno != ENOENT)
      return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", uri, strerror(errno));
  }
  struct stat st;
  if(stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: %s is not a folder", uri, real);
  const char *rest = path + tail; /* "/a/b" */
  if(!confined(roots, n_roots, real))
    return OTF_FAIL(err, OTF_E_ACCESS, NULL, "%s: resolves outside the allowed roots", uri);
  int w = snprintf(out, cap, "%s%s", strcmp(real, "/") ? real : "", rest);
  if(w < 0 || (size_t)w >= cap)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: path too long", uri);
  /* Collapse duplicate slashes from the tail ("a//b"). */
  char *d = out;
  for(const char *s = out; *s; s++)
    if(!(s[0] == '/' && s[1] == '/'))
      *d++ = *s;
  *d = 0;
  return OTF_OK;
}

otf_status otf__local_mkdirs(const char *path, otf_error *err) {
  char buf[PATH_MAX];
  if(strlen(path) >= sizeof(buf))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: path too long", path);
  snprintf(buf, sizeof(buf), "%s", path);
  for(char *p = buf + 1;; p++) {
    if(*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if(mkdir(buf, 0755) != 0 && errno != EEXIST)
        return OTF_FAIL(err, errno == EACCES ? OTF_E_ACCESS : OTF_E_IO, NULL, "cannot create %s: %s",
                        buf, strerror(errno));
      *p = c;
      if(!c)
        break;
    }
  }
  return OTF_OK;
}

void otf__local_rmtree(const char *path) {
  struct stat st;
  if(lstat(path, &st) != 0)
    return;
  if(!S_ISDIR(st.st_mode)) {
    unlink(path);
    return;
  }
  DIR *d = opendir(path);
  if(d) {
    struct dirent *de;
    while((de = readdir(d))) {
      if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      char sub[PATH_MAX];
      if(snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) < (int)sizeof(sub))
        otf__local_rmtree(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

static otf_status write_all(int fd, const char *path, const unsigned char *p, size_t n, otf_error *err) {
  while(n) {
    ssize_t w = write(fd, p, n);
    if(w < 0 && errno == EINTR)
      continue;
    if(w <= 0)
      return OTF_FAIL(err, errno == ENOSPC ? OTF_E_IO : OTF_E_IO, NULL, "writing %s: %s", path,
                      strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return OTF_OK;
}

otf_status otf__local_copy_file(const char *src, const char *dst, char *sha_hex, uint64_t *size,
                                otf__xprog *prog, otf_error *err) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if(in < 0)
    return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if(out < 0) {
    int e = errno;
    close(in);
    return OTF_FAIL(err, e == EEXIST ? OTF_E_CONFLICT : OTF_E_IO, NULL, "%s: %s", dst, strerror(e));
  }
  otf_digest d;
  otf_status rc = otf__digest_init(&d, 0);
  if(rc != OTF_OK) {
    close(in);
    close(out);
    return OTF_FAIL(err, rc, NULL, "out of memory");
  }
  size_t cap = 1 << 20;
  unsigned char *buf = otf_malloc(cap);
  uint64_t total = 0;
  if(!buf)
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory copying %s", src);
  while(rc == OTF_OK) {
    ssize_t r = read(in, buf, cap);
    if(r < 0 && errno == EINTR)
      continue;
    if(r < 0) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "reading %s: %s", src, strerror(errno));
      break;
    }
    if(r == 0)
      break;
    otf__digest_update(&d, buf, (size_t)r);
    rc = write_all(out, dst, buf, (size_t)r, err);
    total += (uint64_t)r;
    if(rc == OTF_OK)
      rc = otf__xprog_add(prog, (uint64_t)r, err);
  }
  if(rc == OTF_OK && fsync(out) != 0)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "fsync %s: %s", dst, strerror(errno));
  if(close(out) != 0 && rc == OTF_OK)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "closing %s: %s", dst, strerror(errno));
  close(in);
  if(rc == OTF_OK) {
    otf__digest_final(&d, sha_hex, NULL);
    if(size)
      *size = total;
  } else {
    unlink(dst);
  }
  otf__digest_free(&d);
  otf_free(buf);
  return rc;
}

otf_status otf__local_read_small(const char *path, size_t max, char **out, size_t *len,
                                 otf_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if(fd < 0)
    return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", path,
                    strerror(errno));
  struct stat st;
  otf_status rc = OTF_OK;
  if(fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: not a regular file", path);
  } else if((uint64_t)st.st_size > max) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: larger than %zu bytes", path, max);
  } else {
    size_t n = (size_t)st.st_size, got = 0;
    char *b = otf_malloc(n + 1);
    if(!b)
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory reading %s", path);
    while(rc == OTF_OK && got < n) {
      ssize_t r = read(fd, b + got, n - got);
      if(r < 0 && errno == EINTR)
        continue;
      if(r <= 0) {
        rc = OTF_FAIL(err, OTF_E_IO, NULL, "reading %s: %s", path, r ? strerror(errno) : "short read");
        break;
      }
      got += (size_t)r;
    }
    if(rc == OTF_OK) {
      b[n] = 0;
      *out = b;
      *len = n;
    } else {
      otf_free(b);
    }
  }
  close(fd);
  return rc;
}

otf_status otf__local_write_small(const char *path, const void *buf, size_t len, otf_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if(fd < 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
  otf_status rc = write_all(fd, path, buf, len, err);
  if(rc == OTF_OK && fsync(fd) != 0)
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "fsync %s: %s", path, strerror(errno));
  close(fd);
  if(rc != OTF_OK)
    unlink(path);
  return rc;
}

static void fsync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if(fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

otf_status otf__local_put_dir(const char *src, const char *dst, otf__xprog *prog, otf_error *err) {
  otf_manifest m;
  otf_status rc = otf__manifest_scan(&m, src, err);
  if(rc != OTF_OK)
    return rc;
  struct stat st;
  if(lstat(dst, &st) == 0 && !S_ISDIR(st.st_mode)) {
    otf__manifest_free(&m);
    return OTF_FAIL(err, OTF_E_CONFLICT, NULL, "%s exists and is not a folder", dst);
  }
  char parent[PATH_MAX], tmp[PATH_MAX];
  snprintf(parent, sizeof(parent), "%s", dst);
  char *slash = strrchr(parent, '/');
  const char *base = slash ? slash + 1 : parent;
  if(!slash || !*base) {
    otf__manifest_free(&m);
    return OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: cannot publish at the root", dst);
  }
  int tw = slash == parent ? snprintf(tmp, sizeof(tmp), "/.%s.tmp-XXXXXX", base)
                           : snprintf(tmp, sizeof(tmp), "%.*s/.%s.tmp-XXXXXX", (int)(slash - parent),
                                      parent, base);
  if(tw < 0 || (size_t)tw >= sizeof(tmp)) {
    otf__manifest_free(&m);
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: path too long", dst);
  }
  *slash = 0;
  if(*parent && (rc = otf__local_mkdirs(parent, err)) != OTF_OK) {
    otf__manifest_free(&m);
    return rc;
  }
  if(!mkdtemp(tmp)) {
    otf__manifest_free(&m);
    return OTF_FAIL(err, errno == EACCES ? OTF_E_ACCESS : OTF_E_IO, NULL, "cannot create a folder beside %s: %s",
                    dst, strerror(errno));
  }
  chmod(tmp, 0755);
  if(prog)
    for(size_t i = 0; i < m.n; i++)
      prog->total += m.e[i].size;
  for(size_t i = 0; i < m.n && rc == OTF_OK; i++) {
    char from[PATH_MAX], to[PATH_MAX];
    if(snprintf(from, sizeof(from), "%s/%s", src, m.e[i].name) >= (int)sizeof(from) ||
       snprintf(to, sizeof(to), "%s/%s", tmp, m.e[i].name) >= (int)sizeof(to)) {
      rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s/%s: path too long", src, m.e[i].name);
      break;
    }
    char *sl = strrchr(to, '/');
    if(sl > to + strlen(tmp)) {
      *sl = 0;
      rc = otf__local_mkdirs(to, err);
      *sl = '/';
    }
    uint64_t size = 0;
    if(rc == OTF_OK)
      rc = otf__local_copy_file(from, to, m.e[i].sha256, &size, prog, err);
    if(rc == OTF_OK && size != m.e[i].size)
      rc = OTF_FAIL(err, OTF_E_CONFLICT, NULL, "%s changed while it was copied", from);
  }
  char *json = NULL;
  size_t jlen = 0;
  if(rc == OTF_OK)
    rc = otf__manifest_dump(&m, &json, &jlen, err);
  if(rc == OTF_OK) {
    char mp[PATH_MAX];
    if(snprintf(mp, sizeof(mp), "%s/%s", tmp, OTF_MANIFEST_NAME) >= (int)sizeof(mp))
      rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: path too long", tmp);
    else
      rc = otf__local_write_small(mp, json, jlen, err);
  }
  otf_free(json);
  if(rc == OTF_OK) {
    fsync_dir(tmp);
    if(rename(tmp, dst) != 0) {
      int e = errno;
      rc = OTF_FAIL(err, e == ENOTEMPTY || e == EEXIST || e == ENOTDIR ? OTF_E_CONFLICT : OTF_E_IO, NULL,
                    "%s: %s", dst, e == ENOTEMPTY || e == EEXIST ? "exists and is not empty" : strerror(e));
    } else {
      fsync_dir(*parent ? parent : "/");
    }
  }
  if(rc != OTF_OK)
    otf__local_rmtree(tmp);
  otf__manifest_free(&m);
  return rc;
}
