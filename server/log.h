/* Logs as JSON lines on stderr: {"time","level","msg",...}. Thread-safe
 * (one write per line). Secrets never reach it: callers mask them. */
#ifndef OTF_SERVER_LOG_H
#define OTF_SERVER_LOG_H

#include <jansson.h>

/* Writes one line: level ("info", "warn", "error"), the message, the
 * request or job id when given, and the fields of extra (may be NULL;
 * borrowed). */
void otf_log(const char *level, const char *request_id, const char *job_id, json_t *extra,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
