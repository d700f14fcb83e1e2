#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void otf_error_clear(otf_error *err) {
  if(!err)
    return;
  memset(err, 0, sizeof(*err));
  err->code = OTF_OK;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs,
 * surrogates or code points past U+10FFFF), 0 if there is none. */
static size_t utf8_seq(const unsigned char *p) {
  unsigned char c = p[0];
  if(c < 0x80)
    return 1;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if(c == 0xE0) lo = 0xA0;
  if(c == 0xED) hi = 0x9F;
  if(c == 0xF0) lo = 0x90;
  if(c == 0xF4) hi = 0x8F;
  for(size_t i = 1; i < n; i++) {
    if(p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xBF))
      return 0;
  }
  return n;
}

void otf_utf8_fix(char *s) {
  unsigned char *p = (unsigned char *)s;
  while(*p) {
    size_t n = utf8_seq(p);
    if(n == 0)
      *p++ = '?';
    else
      p += n;
  }
}

otf_status otf__error_set(otf_error *err, otf_status code, const char *file,
                          int line, const char *pointer, const char *fmt, ...) {
  if(!err)
    return code;
  err->code = code;
  err->file = file;
  err->line = line;
  snprintf(err->pointer, sizeof(err->pointer), "%s", pointer ? pointer : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
  /* messages quote paths, names and the client's bytes (and truncation can
   * split a character), yet they go into JSON problem bodies */
  otf_utf8_fix(err->message);
  otf_utf8_fix(err->pointer);
  return code;
}
