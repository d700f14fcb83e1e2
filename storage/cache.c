#include "storage/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"

/* Paths built from a cache path plus a short suffix. */
#define BIG (PATH_MAX + 256)

typedef struct pin {
  char path[BIG];      /* the data folder */
  int fd;              /* shared flock on locks/<key>.pin */
} pin;

struct otf__cache {
  char dir[PATH_MAX - 128];
  uint64_t max_bytes;
  pthread_mutex_t mu;
  pin *pins;
  size_t n_pins, cap_pins;
};

const char *otf__cache_dir(const otf__cache *c) { return c->dir; }

static void sub(char *out, size_t cap, const otf__cache *c, const char *a, const char *b, const char *d) {
  snprintf(out, cap, "%s/%s%s%s%s", c->dir, a, b ? b : "", d ? d : "", "");
}

static int pid_alive(long pid) {
  return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* tmp/ names are "<key>.<pid>.<rand>" or "evict.<pid>.<rand>". */
static void clean_tmp(otf__cache *c) {
  char tdir[PATH_MAX];
  sub(tdir, sizeof(tdir), c, "tmp", NULL, NULL);
  DIR *d = opendir(tdir);
  if(!d)
    return;
  struct dirent *e;
  while((e = readdir(d))) {
    if(e->d_name[0] == '.')
      continue;
    const char *dot = strchr(e->d_name, '.');
    long pid = dot ? strtol(dot + 1, NULL, 10) : 0;
    if(pid_alive(pid))
      continue;
    char p[BIG];
    if(snprintf(p, sizeof(p), "%s/%s", tdir, e->d_name) < (int)sizeof(p))
      otf__local_rmtree(p);
  }
  closedir(d);
}

otf_status otf__cache_open(otf__cache **out, const char *dir, uint64_t max_bytes, otf_error *err) {
  *out = NULL;
  if(!dir || dir[0] != '/')
    return OTF_FAIL(err, OTF_E_INVAL, "cache_dir", "cache folder must be an absolute path");
  otf__cache *c = otf_calloc(1, sizeof(*c));
  if(!c)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
  if(strlen(dir) >= sizeof(c->dir)) {
    otf_free(c);
    return OTF_FAIL(err, OTF_E_TOO_LARGE, "cache_dir", "cache folder path too long");
  }
  snprintf(c->dir, sizeof(c->dir), "%s", dir);
  size_t n = strlen(c->dir);
  while(n > 1 && c->dir[n - 1] == '/')
    c->dir[--n] = 0;
  c->max_bytes = max_bytes;
  pthread_mutex_init(&c->mu, NULL);
  const char *subs[] = {"", "/entries", "/locks", "/tmp"};
  for(size_t i = 0; i < 4; i++) {
    char p[BIG];
    snprintf(p, sizeof(p), "%s%s", c->dir, subs[i]);
    otf_status rc = otf__local_mkdirs(p, err);
    if(rc != OTF_OK) {
      pthread_mutex_destroy(&c->mu);
      otf_free(c);
      return rc;
    }
  }
  clean_tmp(c);
  *out = c;
  return OTF_OK;
}

void otf__cache_close(otf__cache *c) {
  if(!c)
    return;
  for(size_t i = 0; i < c->n_pins; i++)
    close(c->pins[i].fd);
  otf_free(c->pins);
  pthread_mutex_destroy(&c->mu);
  otf_free(c);
}

static int valid_key(const char *k) {
  if(strlen(k) != 64)
    return 0;
  for(; *k; k++)
    if(!((*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f')))
      return 0;
  return 1;
}

static int open_lock(const otf__cache *c, const char *key, const char *ext) {
  char p[BIG];
  snprintf(p, sizeof(p), "%s/locks/%s%s", c->dir, key, ext);
  return open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
}

static uint64_t read_meta(const char *entry, struct timespec *mtime) {
  char p[BIG];
  snprintf(p, sizeof(p), "%s/meta", entry);
  FILE *f = fopen(p, "r");
  if(!f)
    return UINT64_MAX;
  unsigned long long v = 0;
  int ok = fscanf(f, "%llu", &v) == 1;
  fclose(f);
  struct stat st;
  if(mtime) {
    if(stat(p, &st) == 0)
      *mtime = st.st_mtim;
    else
      mtime->tv_sec = mtime->tv_nsec = 0;
  }
  return ok ? (uint64_t)v : UINT64_MAX;
}

/* Marks a use. The precise clock, not the file system's coarse one
 * (utimensat with NULL), so that uses a few microseconds apart order. */
static void touch_meta(const char *entry) {
  char p[BIG];
  snprintf(p, sizeof(p), "%s/meta", entry);
  struct timespec ts[2];
  clock_gettime(CLOCK_REALTIME, &ts[0]);
  ts[1] = ts[0];
  utimensat(AT_FDCWD, p, ts, 0);
}

typedef struct cand {
  char key[65];
  uint64_t bytes;
  struct timespec used;
} cand;

static int cmp_cand(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if(x->used.tv_sec != y->used.tv_sec)
    return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
  if(x->used.tv_nsec != y->used.tv_nsec)
    return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
  return strcmp(x->key, y->key);
}

static uint64_t trim(otf__cache *c, const char *keep) {
  char edir[PATH_MAX];
  snprintf(edir, sizeof(edir), "%s/entries", c->dir);
  DIR *d = opendir(edir);
  if(!d)
    return 0;
  cand *cs = NULL;
  size_t n = 0, cap = 0;
  uint64_t total = 0;
  struct dirent *e;
  while((e = readdir(d))) {
    if(!valid_key(e->d_name))
      continue;
    char ent[BIG];
    snprintf(ent, sizeof(ent), "%s/%s", edir, e->d_name);
    struct timespec used = {0, 0};
    uint64_t b = read_meta(ent, &used);
    if(b == UINT64_MAX)
      continue;
    total += b;
    if(n == cap) {
      size_t nc = cap ? 2 * cap : 32;
      cand *ncs = otf_realloc(cs, nc * sizeof(*ncs));
      if(!ncs)
        break;
      cs = ncs;
      cap = nc;
    }
    memcpy(cs[n].key, e->d_name, 65); /* valid_key: 64 hex digits + NUL */
    cs[n].bytes = b;
    cs[n].used = used;
    n++;
  }
  closedir(d);
  if(total > c->max_bytes && n)
    qsort(cs, n, sizeof(*cs), cmp_cand);
  for(size_t i = 0; i < n && total > c->max_bytes; i++) {
    if(keep && !strcmp(cs[i].key, keep))
      continue;
    int lk = open_lock(c, cs[i].key, ".lock");
    if(lk < 0)
      continue;
    if(flock(lk, LOCK_EX | LOCK_NB) != 0) {
      close(lk);
      continue; /* being fetched */
    }
    int pk = open_lock(c, cs[i].key, ".pin");
    if(pk >= 0 && flock(pk, LOCK_EX | LOCK_NB) == 0) {
      char ent[BIG], gone[BIG];
      snprintf(ent, sizeof(ent), "%s/%s", edir, cs[i].key);
      snprintf(gone, sizeof(gone), "%s/tmp/evict.%ld.%s", c->dir, (long)getpid(), cs[i].key);
      if(rename(ent, gone) == 0) {
        otf__local_rmtree(gone);
        total -= cs[i].bytes;
      }
    }
    if(pk >= 0)
      close(pk);
    close(lk);
  }
  otf_free(cs);
  return total;
}

uint64_t otf__cache_trim(otf__cache *c) { return trim(c, NULL); }

static otf_status add_pin(otf__cache *c, const char *path, int fd, otf_error *err) {
  pthread_mutex_lock(&c->mu);
  otf_status rc = OTF_OK;
  if(c->n_pins == c->cap_pins) {
    size_t nc = c->cap_pins ? 2 * c->cap_pins : 8;
    pin *np = otf_realloc(c->pins, nc * sizeof(*np));
    if(!np)
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
    else {
      c->pins = np;
      c->cap_pins = nc;
    }
  }
  if(rc == OTF_OK) {
    snprintf(c->pins[c->n_pins].path, sizeof(c->pins[0].path), "%s", path);
    c->pins[c->n_pins].fd = fd;
    c->n_pins++;
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int otf__cache_release(otf__cache *c, const char *path) {
  if(!c || !path)
    return 0;
  pthread_mutex_lock(&c->mu);
  int found = 0;
  for(size_t i = c->n_pins; i-- > 0;) {
    size_t n = strlen(c->pins[i].path);
    if(!strncmp(path, c->pins[i].path, n) && (path[n] == 0 || path[n] == '/')) {
      close(c->pins[i].fd);
      c->pins[i] = c->pins[c->n_pins - 1];
      c->n_pins--;
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return found;
}

static otf_status wait_lock(int fd, otf__xprog *prog, const char *what, otf_error *err) {
  for(;;) {
    if(flock(fd, LOCK_EX | LOCK_NB) == 0)
      return OTF_OK;
    if(errno != EWOULDBLOCK && errno != EINTR)
      return OTF_FAIL(err, OTF_E_IO, NULL, "cache lock for %s: %s", what, strerror(errno));
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    if(prog && prog->fn && prog->fn(prog->ctx, prog->done, prog->total))
      return OTF_FAIL(err, OTF_E_CANCELLED, NULL, "cancelled while waiting for another fetch of %s", what);
  }
}

otf_status otf__cache_get(otf__cache *c, const char *key, otf__cache_fill_fn fill, void *ctx,
                          otf__xprog *prog, char *path, size_t cap, int *hit, otf_error *err) {
  if(!valid_key(key))
    return OTF_FAIL(err, OTF_E_INTERNAL, NULL, "bad cache key");
  char ent[PATH_MAX], data[BIG];
  snprintf(ent, sizeof(ent), "%s/entries/%s", c->dir, key);
  snprintf(data, sizeof(data), "%s/data", ent);
  if(strlen(data) >= cap)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "cache path longer than the %zu-byte buffer", cap);
  int lk = open_lock(c, key, ".lock");
  if(lk < 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "cache %s: %s", c->dir, strerror(errno));
  otf_status rc = wait_lock(lk, prog, key, err);
  int was_hit = 0, pk = -1;
  if(rc != OTF_OK)
    goto done;
  if(read_meta(ent, NULL) != UINT64_MAX) {
    was_hit = 1;
  } else {
    otf__local_rmtree(ent); /* a folder without meta is not an entry */
    char tmp[PATH_MAX], tdata[BIG];
    snprintf(tmp, sizeof(tmp), "%s/tmp/%s.%ld.XXXXXX", c->dir, key, (long)getpid());
    if(!mkdtemp(tmp)) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "cache %s: %s", c->dir, strerror(errno));
      goto done;
    }
    snprintf(tdata, sizeof(tdata), "%s/data", tmp);
    uint64_t bytes = 0;
    if(mkdir(tdata, 0755) != 0)
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "cache %s: %s", tdata, strerror(errno));
    if(rc == OTF_OK)
      rc = fill(ctx, tdata, &bytes, err);
    if(rc == OTF_OK) {
      char meta[BIG], txt[32];
      snprintf(meta, sizeof(meta), "%s/meta", tmp);
      int w = snprintf(txt, sizeof(txt), "%llu\n", (unsigned long long)bytes);
      rc = otf__local_write_small(meta, txt, (size_t)w, err);
    }
    if(rc == OTF_OK && rename(tmp, ent) != 0)
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "cache %s: %s", ent, strerror(errno));
    if(rc != OTF_OK) {
      otf__local_rmtree(tmp);
      goto done;
    }
  }
  pk = open_lock(c, key, ".pin");
  if(pk < 0 || flock(pk, LOCK_SH) != 0) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "cache pin for %s: %s", key, strerror(errno));
    goto done;
  }
  rc = add_pin(c, data, pk, err);
  if(rc != OTF_OK)
    goto done;
  pk = -1; /* the pin table owns it now */
  touch_meta(ent);
  snprintf(path, cap, "%s", data);
  if(hit)
    *hit = was_hit;
done:
  if(pk >= 0)
    close(pk);
  close(lk); /* releases the fetch lock */
  if(rc == OTF_OK && !was_hit)
    trim(c, key);
  return rc;
}
