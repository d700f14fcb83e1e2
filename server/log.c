/* JSON-lines logging: see log.h. */
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void otf_log(const char *level, const char *request_id, const char *job_id, json_t *extra,
             const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char t[40];
  size_t n = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(t + n, sizeof(t) - n, ".%03ldZ", ts.tv_nsec / 1000000);
  json_t *o = json_pack("{s:s, s:s, s:s}", "time", t, "level", level, "msg", msg);
  if(!o)
    return;
  if(request_id)
    json_object_set_new(o, "request_id", json_string(request_id));
  if(job_id)
    json_object_set_new(o, "job", json_string(job_id));
  if(extra)
    json_object_update(o, extra);
  char *line = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if(!line)
    return;
  size_t len = strlen(line);
  line[len] = '\n'; /* the NUL becomes the newline: one write per line */
  ssize_t w = write(STDERR_FILENO, line, len + 1);
  (void)w;
  free(line);
}
