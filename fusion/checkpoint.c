#include "fusion/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/limits.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* An index lists the same tensor names as the shards' headers (plus a
 * shard name each), so the bound on a header bounds it too; real indexes
 * are a few hundred KiB. */
#define CKPT_MAX_INDEX_BYTES OTF_MAX_SAFETENSORS_HEADER

struct otf_ckpt {
  otf_st_file **files; /* [nfiles], owned */
  size_t nfiles;
  /* [count] in name order: copies of the shards' entries (their name and
   * data still point into the shards), one array so that a tensor's index
   * is its offset from otf_ckpt_at(c, 0), which callers rely on. */
  otf_st_tensor *view;
  size_t count;
  uint64_t bytes;
};

void otf_ckpt_close(otf_ckpt *c) {
  if(!c)
    return;
  for(size_t k = 0; k < c->nfiles; k++)
    otf_st_close(c->files[k]);
  otf_free(c->files);
  otf_free(c->view);
  otf_free(c);
}

size_t otf_ckpt_count(const otf_ckpt *c) { return c->count; }

const otf_st_tensor *otf_ckpt_at(const otf_ckpt *c, size_t index) {
  return index < c->count ? &c->view[index] : NULL;
}

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const otf_st_tensor *)a)->name, ((const otf_st_tensor *)b)->name);
}

const otf_st_tensor *otf_ckpt_find(const otf_ckpt *c, const char *name) {
  otf_st_tensor key = {.name = name};
  return bsearch(&key, c->view, c->count, sizeof(*c->view), cmp_tensor);
}

size_t otf_ckpt_shards(const otf_ckpt *c) { return c->nfiles; }

uint64_t otf_ckpt_bytes(const otf_ckpt *c) { return c->bytes; }

/* "dir/name" in a fresh buffer (caller frees), NULL when out of memory. */
static char *join_path(const char *dir, const char *name) {
  size_t dl = strlen(dir), nl = strlen(name);
  char *p = otf_malloc(dl + nl + 2);
  if(!p)
    return NULL;
  memcpy(p, dir, dl);
  size_t at = dl;
  if(dl == 0 || dir[dl - 1] != '/')
    p[at++] = '/';
  memcpy(p + at, name, nl + 1);
  return p;
}

/* Re-raises an error from otf_st_open so that it names the file: the
 * reader's header errors ("tensor 'x' starts at ...") do not, because it
 * cannot know how the caller refers to the file. */
static OTF_WUR otf_status pass_error(otf_error *err, otf_status rc, const char *file,
                                     const otf_error *inner) {
  if(!err)
    return rc;
  if(strstr(inner->message, file))
    OTF_FAIL(err, rc, inner->pointer, "%s", inner->message);
  else
    OTF_FAIL(err, rc, inner->pointer, "%s: %s", file, inner->message);
  err->file = inner->file;
  err->line = inner->line;
  return rc;
}

/* Opens path (shown in errors as shown_name) as shard number slot of c and
 * adds its size to c->bytes. */
static OTF_WUR otf_status open_shard(otf_ckpt *c, size_t slot, const char *path,
                                     const char *shown_name, otf_error *err) {
  otf_error inner;
  otf_error_clear(&inner);
  otf_status rc = otf_st_open(&c->files[slot], path, &inner);
  if(rc != OTF_OK)
    return pass_error(err, rc, shown_name, &inner);
  c->nfiles = slot + 1;
  /* The mapping was made from this size; stat again only to report it. */
  struct stat st;
  if(stat(path, &st) != 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: stat: %s", shown_name, strerror(errno));
  c->bytes += (uint64_t)st.st_size;
  return OTF_OK;
}

/* Fills c->view with every tensor of every shard, sorted by name. The
 * callers have already proved that no name occurs twice. */
static OTF_WUR otf_status build_view(otf_ckpt *c, otf_error *err) {
  size_t total = 0;
  for(size_t k = 0; k < c->nfiles; k++)
    total += otf_st_count(c->files[k]);
  c->view = otf_malloc_array(total ? total : 1, sizeof(*c->view));
  if(!c->view)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory for a view of %zu tensors", total);
  size_t n = 0;
  for(size_t k = 0; k < c->nfiles; k++)
    for(size_t t = 0; t < otf_st_count(c->files[k]); t++)
      c->view[n++] = *otf_st_at(c->files[k], t);
  qsort(c->view, n, sizeof(*c->view), cmp_tensor);
  c->count = n;
  return OTF_OK;
}

static OTF_WUR otf_status open_single(otf_ckpt *c, const char *path, otf_error *err) {
  c->files = otf_calloc(1, sizeof(*c->files));
  if(!c->files)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", path);
  otf_status rc = open_shard(c, 0, path, path, err);
  if(rc != OTF_OK)
    return rc;
  return build_view(c, err);
}

/* Reads the whole index file into *out (caller frees), *len bytes. */
static OTF_WUR otf_status read_index(char **out, size_t *len, const char *path,
                                     otf_error *err) {
  *out = NULL;
  otf_status rc = OTF_OK;
  char *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if(fd < 0)
    return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
  struct stat st;
  if(fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: not a regular file", path);
    goto fail;
  }
  if((uint64_t)st.st_size > CKPT_MAX_INDEX_BYTES) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: %llu bytes exceed the limit %llu",
                  path, (unsigned long long)st.st_size,
                  (unsigned long long)CKPT_MAX_INDEX_BYTES);
    goto fail;
  }
  size_t size = (size_t)st.st_size;
  buf = otf_malloc(size ? size : 1);
  if(!buf) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to read %s", path);
    goto fail;
  }
  size_t got = 0;
  while(got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if(r < 0 && errno == EINTR)
      continue;
    if(r <= 0) { /* 0: the file shrank under us; treat it as an I/O error */
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: read: %s", path,
                    r < 0 ? strerror(errno) : "unexpected end of file");
      goto fail;
    }
    got += (size_t)r;
  }
  close(fd);
  *out = buf;
  *len = size;
  return OTF_OK;
fail:
  close(fd);
  otf_free(buf);
  return rc;
}

/* A shard must be a plain file name inside the folder: anything that can
 * name another directory ("/", "..", ".") is refused before it is used. */
static int plain_file_name(const char *s, size_t len) {
  return len > 0 && strlen(s) == len && !strchr(s, '/') && strcmp(s, ".") != 0 &&
         strcmp(s, "..") != 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* realpath of path into buf [PATH_MAX]. */
static OTF_WUR otf_status resolve(char *buf, const char *path, const char *shown,
                                  otf_error *err) {
  if(realpath(path, buf))
    return OTF_OK;
  return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s",
                  shown, strerror(errno));
}

/* JSON pointer "/weight_map/<name>" (RFC 6901 escaping) into buf, so an
 * API client can point at the offending entry; truncated names still
 * identify it in the message. */
static const char *map_pointer(char buf[OTF_ERROR_PTR_MAX], const char *name) {
  size_t at = (size_t)snprintf(buf, OTF_ERROR_PTR_MAX, "/weight_map/");
  for(; *name && at + 3 < OTF_ERROR_PTR_MAX; name++) {
    if(*name == '~' || *name == '/') {
      buf[at++] = '~';
      buf[at++] = *name == '~' ? '0' : '1';
    } else {
      buf[at++] = *name;
    }
  }
  buf[at] = '\0';
  return buf;
}

static OTF_WUR otf_status open_index(otf_ckpt *c, const char *dir, const char *index_path,
                                     otf_error *err) {
  otf_status rc;
  char *text = NULL, *rdir = NULL, *rshard = NULL, *joined = NULL;
  const char **names = NULL;
  json_t *root = NULL;
  size_t len = 0, nnames = 0;
  char ptr[OTF_ERROR_PTR_MAX];
  rc = read_index(&text, &len, index_path, err);
  if(rc != OTF_OK)
    goto fail;
  json_error_t jerr;
  /* Duplicate keys are refused: which of two weight_map entries would win
   * depends on the parser, and a checkpoint must mean one thing. */
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if(!root) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: invalid JSON: %s (line %d, column %d)",
                  index_path, jerr.text, jerr.line, jerr.column);
    goto fail;
  }
  json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
  if(!json_is_object(wm)) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, "/weight_map", "%s: %s", index_path,
                  json_is_object(root) ? "\"weight_map\" is missing or not an object"
                                       : "the index is not a JSON object");
    goto fail;
  }
  size_t nmap = json_object_size(wm);
  if(nmap == 0) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, "/weight_map", "%s: \"weight_map\" names no tensors",
                  index_path);
    goto fail;
  }
  names = otf_malloc_array(nmap, sizeof(*names));
  if(!names)
    goto nomem;
  const char *tname;
  json_t *v;
  json_object_foreach(wm, tname, v) {
    /* jansson refuses \u0000 without JSON_ALLOW_NUL, so names are C strings;
     * the length check in plain_file_name is a second guard. */
    if(!json_is_string(v) ||
       !plain_file_name(json_string_value(v), json_string_length(v))) {
      rc = OTF_FAIL(
          err, OTF_E_FORMAT, map_pointer(ptr, tname),
          "%s: tensor '%s' maps to %s; a shard file name in the folder is needed "
          "(no '/', '.', '..' or empty name)",
          index_path, tname, json_is_string(v) ? json_string_value(v) : "a non-string");
      goto fail;
    }
    names[nnames++] = json_string_value(v);
  }
  qsort(names, nnames, sizeof(*names), cmp_str_ptr);
  size_t nshards = 0;
  for(size_t k = 0; k < nnames; k++)
    if(nshards == 0 || strcmp(names[nshards - 1], names[k]) != 0)
      names[nshards++] = names[k];
  if(nshards > OTF_MAX_SHARDS) {
    rc = OTF_FAIL(err, OTF_E_TOO_LARGE, "/weight_map",
                  "%s: %zu shards exceed the limit %d", index_path, nshards,
                  OTF_MAX_SHARDS);
    goto fail;
  }
  c->files = otf_calloc(nshards, sizeof(*c->files));
  rdir = otf_malloc(PATH_MAX);
  rshard = otf_malloc(PATH_MAX);
  if(!c->files || !rdir || !rshard)
    goto nomem;
  rc = resolve(rdir, dir, dir, err);
  if(rc != OTF_OK)
    goto fail;
  size_t rdlen = strlen(rdir);
  if(rdlen == 1) /* the folder is "/": every resolved path is inside */
    rdlen = 0;
  for(size_t k = 0; k < nshards; k++) {
    joined = join_path(dir, names[k]);
    if(!joined)
      goto nomem;
    rc = resolve(rshard, joined, names[k], err);
    if(rc == OTF_E_NOT_FOUND) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, "/weight_map",
                    "%s names shard '%s', which does not exist in %s", index_path,
                    names[k], dir);
      goto fail;
    }
    if(rc != OTF_OK)
      goto fail;
    /* A symlink may point elsewhere inside the folder, never outside it:
     * a checkpoint from an untrusted source must not read other files. */
    if(strncmp(rshard, rdir, rdlen) != 0 || rshard[rdlen] != '/') {
      rc = OTF_FAIL(err, OTF_E_FORMAT, "/weight_map",
                    "%s: shard '%s' resolves to %s, outside the folder %s", index_path,
                    names[k], rshard, rdir);
      goto fail;
    }
    /* The resolved path is opened, so what was checked is what is read. */
    rc = open_shard(c, k, rshard, joined, err);
    if(rc != OTF_OK)
      goto fail;
    otf_free(joined);
    joined = NULL;
  }
  /* Every tensor the map names is in the shard it names ... */
  json_object_foreach(wm, tname, v) {
    const char *sname = json_string_value(v);
    const char **slot = bsearch(&sname, names, nshards, sizeof(*names), cmp_str_ptr);
    if(!slot || !otf_st_find(c->files[slot - names], tname)) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, map_pointer(ptr, tname),
                    "%s: tensor '%s' is mapped to shard '%s', which does not hold it",
                    index_path, tname, sname);
      goto fail;
    }
  }
  /* ... and every tensor of a shard is mapped to that shard, which also
   * rules out a tensor held by two shards. */
  for(size_t k = 0; k < nshards; k++)
    for(size_t t = 0; t < otf_st_count(c->files[k]); t++) {
      const char *name = otf_st_at(c->files[k], t)->name;
      const json_t *m = json_object_get(wm, name);
      if(!m) {
        rc = OTF_FAIL(err, OTF_E_FORMAT, "/weight_map",
                      "%s: tensor '%s' in shard '%s' is not in the weight_map",
                      index_path, name, names[k]);
        goto fail;
      }
      if(strcmp(json_string_value(m), names[k]) != 0) {
        rc = OTF_FAIL(err, OTF_E_FORMAT, map_pointer(ptr, name),
                      "%s: tensor '%s' is in two shards, '%s' and '%s'", index_path, name,
                      names[k], json_string_value(m));
        goto fail;
      }
    }
  rc = build_view(c, err);
  goto fail; /* success also leaves through the one cleanup path, with rc = OK */
nomem:
  rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", index_path);
fail:
  otf_free(joined);
  otf_free(rshard);
  otf_free(rdir);
  otf_free(names);
  json_decref(root); /* after the last use of names, which point into it */
  otf_free(text);
  return rc;
}

/* *yes: whether path exists. A failure other than "no such file" (a
 * permission problem, say) is an error rather than a silent "no", so that
 * an unreadable index is never skipped in favour of a stale single file. */
static OTF_WUR otf_status exists(int *yes, const char *path, otf_error *err) {
  struct stat st;
  *yes = stat(path, &st) == 0;
  if(*yes || errno == ENOENT || errno == ENOTDIR)
    return OTF_OK;
  return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
}

otf_status otf_ckpt_open(otf_ckpt **out, const char *path, otf_error *err) {
  *out = NULL;
  otf_status rc;
  char *index_path = NULL, *single_path = NULL;
  otf_ckpt *c = otf_calloc(1, sizeof(*c));
  if(!c)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", path);
  struct stat st;
  if(stat(path, &st) != 0) {
    rc = OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", path,
                  strerror(errno));
    goto fail;
  }
  if(!S_ISDIR(st.st_mode)) {
    rc = open_single(c, path, err);
    if(rc != OTF_OK)
      goto fail;
    *out = c;
    return OTF_OK;
  }
  index_path = join_path(path, INDEX_NAME);
  single_path = join_path(path, SINGLE_NAME);
  if(!index_path || !single_path) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "no memory to open %s", path);
    goto fail;
  }
  /* The index wins: a folder holding both is a sharded save that left an
   * old single file behind, and the index describes the newer save. */
  int has_index = 0, has_single = 0;
  rc = exists(&has_index, index_path, err);
  if(rc != OTF_OK)
    goto fail;
  if(has_index) {
    rc = open_index(c, path, index_path, err);
  } else {
    rc = exists(&has_single, single_path, err);
    if(rc != OTF_OK)
      goto fail;
    if(has_single)
      rc = open_single(c, single_path, err);
    else
      rc = OTF_FAIL(err, OTF_E_NOT_FOUND, NULL,
                    "%s: the folder has neither " INDEX_NAME " nor " SINGLE_NAME, path);
  }
  if(rc != OTF_OK)
    goto fail;
  otf_free(single_path);
  otf_free(index_path);
  *out = c;
  return OTF_OK;
fail:
  otf_free(single_path);
  otf_free(index_path);
  otf_ckpt_close(c);
  return rc;
}
