#include "storage/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "storage/uri.h"

otf_status otf__manifest_add(otf_manifest *m, const char *name, uint64_t size,
                             const char *sha256, const char *etag) {
  if(m->n >= OTF_MAX_MODEL_FILES)
    return OTF_E_TOO_LARGE;
  if(m->n == m->cap) {
    size_t nc = m->cap ? 2 * m->cap : 16;
    otf_manifest_entry *ne = otf_realloc(m->e, nc * sizeof(*ne));
    if(!ne)
      return OTF_E_NOMEM;
    m->e = ne;
    m->cap = nc;
  }
  size_t len = strlen(name);
  char *nm = otf_malloc(len + 1);
  if(!nm)
    return OTF_E_NOMEM;
  memcpy(nm, name, len + 1);
  otf_manifest_entry *e = &m->e[m->n++];
  memset(e, 0, sizeof(*e));
  e->name = nm;
  e->size = size;
  if(sha256)
    snprintf(e->sha256, sizeof(e->sha256), "%s", sha256);
  if(etag)
    snprintf(e->etag, sizeof(e->etag), "%s", etag);
  return OTF_OK;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const otf_manifest_entry *)a)->name, ((const otf_manifest_entry *)b)->name);
}

void otf__manifest_sort(otf_manifest *m) {
  if(m->n > 1)
    qsort(m->e, m->n, sizeof(*m->e), cmp_entry);
}

void otf__manifest_free(otf_manifest *m) {
  for(size_t i = 0; i < m->n; i++)
    otf_free(m->e[i].name);
  otf_free(m->e);
  memset(m, 0, sizeof(*m));
}

long otf__manifest_find(const otf_manifest *m, const char *name) {
  for(size_t i = 0; i < m->n; i++)
    if(!strcmp(m->e[i].name, name))
      return (long)i;
  return -1;
}

otf_status otf__manifest_dump(const otf_manifest *m, char **out, size_t *len, otf_error *err) {
  *out = NULL;
  json_t *root = json_object(), *files = json_array();
  otf_status rc = OTF_OK;
  if(!root || !files) {
    json_decref(files);
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory writing the manifest");
    goto done;
  }
  json_object_set_new(root, "format", json_string("otfuse-manifest-1"));
  json_object_set_new(root, "files", files);
  for(size_t i = 0; i < m->n; i++) {
    json_t *f = json_pack("{s:s, s:I, s:s}", "name", m->e[i].name, "size",
                          (json_int_t)m->e[i].size, "sha256", m->e[i].sha256);
    if(!f || json_array_append_new(files, f) != 0) {
      rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory writing the manifest");
      goto done;
    }
  }
  char *s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  if(!s) {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory writing the manifest");
    goto done;
  }
  size_t n = strlen(s);
  *out = otf_malloc(n + 2);
  if(*out) {
    memcpy(*out, s, n);
    (*out)[n] = '\n';
    (*out)[n + 1] = 0;
    *len = n + 1;
  } else {
    rc = OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory writing the manifest");
  }
  free(s);
done:
  json_decref(root);
  return rc;
}

static int is_hex64(const char *s) {
  if(strlen(s) != 64)
    return 0;
  for(; *s; s++)
    if(!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
      return 0;
  return 1;
}

otf_status otf__manifest_parse(otf_manifest *m, const char *buf, size_t n, otf_error *err) {
  memset(m, 0, sizeof(*m));
  if(n > OTF_MAX_MANIFEST_BYTES)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s is larger than %zu bytes", OTF_MANIFEST_NAME,
                    OTF_MAX_MANIFEST_BYTES);
  json_error_t je;
  json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
  if(!root)
    return OTF_FAIL(err, OTF_E_FORMAT, NULL, "%s: %s (line %d)", OTF_MANIFEST_NAME, je.text, je.line);
  otf_status rc = OTF_OK;
  json_t *files = json_object_get(root, "files");
  if(!json_is_array(files)) {
    rc = OTF_FAIL(err, OTF_E_FORMAT, "/files", "%s: no \"files\" array", OTF_MANIFEST_NAME);
    goto done;
  }
  size_t i;
  json_t *f;
  json_array_foreach(files, i, f) {
    json_t *jn = json_object_get(f, "name"), *js = json_object_get(f, "size"),
           *jh = json_object_get(f, "sha256");
    const char *name = json_string_value(jn), *sha = json_string_value(jh);
    if(!name || !json_is_integer(js) || json_integer_value(js) < 0 || !sha || !is_hex64(sha) ||
       !otf_uri_safe_relpath(name) || !strcmp(name, OTF_MANIFEST_NAME)) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, "/files", "%s: entry %zu needs a safe relative name, a size and a sha256",
                    OTF_MANIFEST_NAME, i);
      goto done;
    }
    if(otf__manifest_find(m, name) >= 0) {
      rc = OTF_FAIL(err, OTF_E_FORMAT, "/files", "%s: '%s' listed twice", OTF_MANIFEST_NAME, name);
      goto done;
    }
    rc = otf__manifest_add(m, name, (uint64_t)json_integer_value(js), sha, NULL);
    if(rc != OTF_OK) {
      OTF_FAIL(err, rc, "/files", "%s: too many files or out of memory", OTF_MANIFEST_NAME);
      goto done;
    }
  }
done:
  json_decref(root);
  if(rc != OTF_OK)
    otf__manifest_free(m);
  return rc;
}

static otf_status scan(otf_manifest *m, const char *root, const char *rel, int depth, otf_error *err) {
  char path[OTF_URI_PATH_MAX];
  if(snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel) >= (int)sizeof(path))
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s/%s: path too long", root, rel);
  if(depth > OTF_MAX_MODEL_DEPTH)
    return OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s: folders nested deeper than %d", path,
                    OTF_MAX_MODEL_DEPTH);
  DIR *d = opendir(path);
  if(!d)
    return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", path,
                    strerror(errno));
  otf_status rc = OTF_OK;
  struct dirent *de;
  while(rc == OTF_OK && (de = readdir(d))) {
    if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if(!*rel && !strcmp(de->d_name, OTF_MANIFEST_NAME))
      continue;
    char sub[OTF_URI_PATH_MAX], full[OTF_URI_PATH_MAX];
    if(snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= (int)sizeof(sub) ||
       snprintf(full, sizeof(full), "%s/%s", root, sub) >= (int)sizeof(full)) {
      rc = OTF_FAIL(err, OTF_E_TOO_LARGE, NULL, "%s/%s: path too long", path, de->d_name);
      break;
    }
    struct stat st;
    if(lstat(full, &st) != 0) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", full, strerror(errno));
    } else if(S_ISDIR(st.st_mode)) {
      rc = scan(m, root, sub, depth + 1, err);
    } else if(S_ISREG(st.st_mode)) {
      if(!otf_uri_safe_relpath(sub))
        rc = OTF_FAIL(err, OTF_E_INVAL, NULL, "%s: unusable file name", full);
      else if((rc = otf__manifest_add(m, sub, (uint64_t)st.st_size, NULL, NULL)) != OTF_OK)
        OTF_FAIL(err, rc, NULL, "%s: more than %d files or out of memory", root, OTF_MAX_MODEL_FILES);
    } else {
      rc = OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: not a regular file or folder (links are refused)",
                    full);
    }
  }
  closedir(d);
  return rc;
}

otf_status otf__manifest_scan(otf_manifest *m, const char *dir, otf_error *err) {
  memset(m, 0, sizeof(*m));
  otf_status rc = scan(m, dir, "", 0, err);
  if(rc != OTF_OK)
    otf__manifest_free(m);
  else
    otf__manifest_sort(m);
  return rc;
}
