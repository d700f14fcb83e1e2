/* Error detail carried through an optional out-parameter.
 *
 * Every fallible function returns an otf_status and, when the caller passes
 * a non-NULL otf_error, fills it with the same code, a message and, where
 * the failure concerns one field of structured input, a JSON pointer (or a
 * field name) to it. The HTTP layer turns it into a problem+json body. */
#ifndef OTF_ERROR_H
#define OTF_ERROR_H

#include "common/status.h"

#define OTF_ERROR_MSG_MAX 256
#define OTF_ERROR_PTR_MAX 128

typedef struct otf_error {
  otf_status code;
  char message[OTF_ERROR_MSG_MAX]; /* full sentence, no trailing newline */
  char pointer[OTF_ERROR_PTR_MAX]; /* JSON pointer / field, "" when none */
  const char *file;                /* source location that raised it */
  int line;
} otf_error;

/* Resets err (may be NULL) to OTF_OK with empty strings. */
void otf_error_clear(otf_error *err);

/* Replaces every byte of s that does not start a valid UTF-8 sequence
 * with '?', in place. otf__error_set applies it to every message and
 * pointer, so that error text can always go into JSON. */
void otf_utf8_fix(char *s);

/* Fills err (may be NULL) and returns code, so that a failure is one line:
 *   return OTF_FAIL(err, OTF_E_INVAL, "/ot/reg", "reg must be > 0, got %g", r);
 * pointer may be NULL. Messages longer than the buffer are truncated. */
otf_status otf__error_set(otf_error *err, otf_status code, const char *file,
                          int line, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#define OTF_FAIL(err, code, pointer, ...) \
  otf__error_set((err), (code), __FILE__, __LINE__, (pointer), __VA_ARGS__)

#endif
