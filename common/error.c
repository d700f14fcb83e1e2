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
  return code;
}
