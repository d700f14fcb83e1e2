/* Option names shared by `otfuse fuse` and the service's job spec, so that
 * a flag and the spec key that mirrors it accept exactly the same words. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/fuse.h"

#define NAMES(a) (sizeof(a) / sizeof((a)[0]))

static const char *const method_names[] = {"ot", "average"};
static const char *const align_names[] = {"weights", "activations"};
static const char *const tmnorm_names[] = {"clean", "reference"};

static int find(const char *const *names, size_t n, const char *s) {
  for(size_t k = 0; s && k < n; k++)
    if(!strcmp(s, names[k]))
      return (int)k;
  return -1;
}

int otf_method_parse(otf_method *out, const char *name) {
  int k = find(method_names, NAMES(method_names), name);
  if(k < 0)
    return -1;
  *out = (otf_method)k;
  return 0;
}
const char *otf_method_name(otf_method m) {
  return (unsigned)m < NAMES(method_names) ? method_names[m] : "?";
}

int otf_align_parse(otf_align *out, const char *name) {
  int k = find(align_names, NAMES(align_names), name);
  if(k < 0)
    return -1;
  *out = (otf_align)k;
  return 0;
}
const char *otf_align_name(otf_align a) {
  return (unsigned)a < NAMES(align_names) ? align_names[a] : "?";
}

int otf_tmnorm_parse(otf_tmnorm *out, const char *name) {
  int k = find(tmnorm_names, NAMES(tmnorm_names), name);
  if(k < 0)
    return -1;
  *out = (otf_tmnorm)k;
  return 0;
}
const char *otf_tmnorm_name(otf_tmnorm t) {
  return (unsigned)t < NAMES(tmnorm_names) ? tmnorm_names[t] : "?";
}

static const struct {
  const char *name;
  unsigned bit;
} components[] = {{"embed", OTF_FUSE_EMBED}, {"attn", OTF_FUSE_ATTN}, {"norm", OTF_FUSE_NORM},
                  {"mlp", OTF_FUSE_MLP},     {"bias", OTF_FUSE_BIAS}, {"head", OTF_FUSE_HEAD}};

unsigned otf_fuse_component_bit(const char *name) {
  for(size_t k = 0; name && k < NAMES(components); k++)
    if(!strcmp(name, components[k].name))
      return components[k].bit;
  return 0;
}

const char *otf_fuse_component_name(unsigned bit) {
  for(size_t k = 0; k < NAMES(components); k++)
    if(bit == components[k].bit)
      return components[k].name;
  return NULL;
}

int otf_fuse_components_parse(unsigned *out, const char *list) {
  unsigned bits = 0;
  const char *p = list;
  if(!p)
    return -1;
  for(;;) {
    size_t len = strcspn(p, ",");
    char name[16];
    if(len == 0 || len >= sizeof(name))
      return -1;
    memcpy(name, p, len);
    name[len] = 0;
    unsigned bit = otf_fuse_component_bit(name);
    if(!bit)
      return -1;
    bits |= bit;
    if(!p[len])
      break;
    p += len + 1;
  }
  *out = bits;
  return 0;
}

int otf_fuse_tokens_parse(int *window, const char *s) {
  if(!s)
    return -1;
  if(!strcmp(s, "all")) {
    *window = 0;
    return 0;
  }
  if(!strcmp(s, "cls")) {
    *window = -1;
    return 0;
  }
  if(strncmp(s, "window-", 7) || s[7] < '1' || s[7] > '9')
    return -1;
  char *end;
  long v = strtol(s + 7, &end, 10);
  if(*end || v < 1 || v > OTF_FUSE_MAX_WINDOW)
    return -1;
  *window = (int)v;
  return 0;
}

const char *otf_fuse_tokens_format(char *buf, size_t cap, int window) {
  if(window == 0)
    snprintf(buf, cap, "all");
  else if(window < 0)
    snprintf(buf, cap, "cls");
  else
    snprintf(buf, cap, "window-%d", window);
  return buf;
}
