#include "storage/xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *find(const char *h, size_t n, const char *needle) {
  size_t k = strlen(needle);
  if(k == 0 || n < k)
    return NULL;
  for(size_t i = 0; i + k <= n; i++)
    if(h[i] == needle[0] && !memcmp(h + i, needle, k))
      return h + i;
  return NULL;
}

int otf__xml_span(const char *xml, size_t n, const char *tag, const char **b, const char **e) {
  char open[80], close[80];
  if(!xml || snprintf(open, sizeof(open), "<%s>", tag) >= (int)sizeof(open) ||
     snprintf(close, sizeof(close), "</%s>", tag) >= (int)sizeof(close))
    return -1;
  const char *s = find(xml, n, open);
  if(!s)
    return -1;
  s += strlen(open);
  const char *t = find(s, n - (size_t)(s - xml), close);
  if(!t)
    return -1;
  *b = s;
  *e = t;
  return 0;
}

int otf__xml_get(const char *xml, size_t n, const char *tag, char *out, size_t cap, const char **next) {
  const char *b, *e;
  if(cap == 0 || otf__xml_span(xml, n, tag, &b, &e) != 0)
    return -1;
  size_t k = 0;
  for(const char *p = b; p < e; p++) {
    char c = *p;
    if(c == '&') {
      const char *semi = memchr(p, ';', (size_t)(e - p));
      if(!semi)
        return -1;
      size_t len = (size_t)(semi - p - 1);
      const char *ent = p + 1;
      if(len == 3 && !memcmp(ent, "amp", 3)) c = '&';
      else if(len == 2 && !memcmp(ent, "lt", 2)) c = '<';
      else if(len == 2 && !memcmp(ent, "gt", 2)) c = '>';
      else if(len == 4 && !memcmp(ent, "quot", 4)) c = '"';
      else if(len == 4 && !memcmp(ent, "apos", 4)) c = '\'';
      else if(len >= 2 && ent[0] == '#') {
        char num[16];
        if(len >= sizeof(num))
          return -1;
        memcpy(num, ent + 1, len - 1);
        num[len - 1] = 0;
        long v = num[0] == 'x' ? strtol(num + 1, NULL, 16) : strtol(num, NULL, 10);
        if(v <= 0 || v > 0x10FFFF)
          return -1;
        /* UTF-8 encode */
        unsigned char u[4];
        int m;
        if(v < 0x80) { u[0] = (unsigned char)v; m = 1; }
        else if(v < 0x800) { u[0] = (unsigned char)(0xC0 | (v >> 6)); u[1] = (unsigned char)(0x80 | (v & 63)); m = 2; }
        else if(v < 0x10000) { u[0] = (unsigned char)(0xE0 | (v >> 12)); u[1] = (unsigned char)(0x80 | ((v >> 6) & 63)); u[2] = (unsigned char)(0x80 | (v & 63)); m = 3; }
        else { u[0] = (unsigned char)(0xF0 | (v >> 18)); u[1] = (unsigned char)(0x80 | ((v >> 12) & 63)); u[2] = (unsigned char)(0x80 | ((v >> 6) & 63)); u[3] = (unsigned char)(0x80 | (v & 63)); m = 4; }
        if(k + (size_t)m >= cap)
          return -1;
        memcpy(out + k, u, (size_t)m);
        k += (size_t)m;
        p = semi;
        continue;
      } else {
        return -1;
      }
      p = semi;
    }
    if(k + 1 >= cap)
      return -1;
    out[k++] = c;
  }
  out[k] = 0;
  if(next)
    *next = e + strlen(tag) + 3;
  return 0;
}

long otf__xml_escape(const char *s, char *out, size_t cap) {
  size_t k = 0;
  for(; *s; s++) {
    const char *rep = NULL;
    switch(*s) {
    case '&': rep = "&amp;"; break;
    case '<': rep = "&lt;"; break;
    case '>': rep = "&gt;"; break;
    case '"': rep = "&quot;"; break;
    case '\'': rep = "&apos;"; break;
    default: break;
    }
    size_t m = rep ? strlen(rep) : 1;
    if(k + m >= cap)
      return -1;
    if(rep)
      memcpy(out + k, rep, m);
    else
      out[k] = *s;
    k += m;
  }
  if(k >= cap)
    return -1;
  out[k] = 0;
  return (long)k;
}
