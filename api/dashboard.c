/* Path → embedded asset lookup for the dashboard (see dashboard.h). */
#include "api/dashboard.h"

#include <string.h>

/* Media type by extension; only what api/dashboard/ holds. Text types carry
 * the charset so browsers never sniff. */
static const char *media_type(const char *name) {
  static const struct {
    const char *ext;
    const char *type;
  } types[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
  };
  const char *dot = strrchr(name, '.');
  if(dot == NULL) return "application/octet-stream";
  for(size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if(strcmp(dot, types[i].ext) == 0) return types[i].type;
  return "application/octet-stream";
}

int otf_dashboard_asset(const char *path, const unsigned char **data, size_t *len,
                        const char **content_type) {
  const char *name;
  if(path == NULL || data == NULL || len == NULL || content_type == NULL) return -1;
  if(strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0 || strcmp(path, "/ui/") == 0)
    name = "index.html";
  else if(strncmp(path, "/ui/", 4) == 0)
    name = path + 4;
  else
    return -1;
  /* Only plain names from the table match, so "..", "/" and empty names
   * never reach anything; the check keeps that true if the table grows. */
  if(name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL) return -1;
  for(size_t i = 0; i < otf__dashboard_file_count; i++) {
    if(strcmp(otf__dashboard_files[i].name, name) == 0) {
      *data = otf__dashboard_files[i].data;
      *len = otf__dashboard_files[i].len;
      *content_type = media_type(name);
      return 0;
    }
  }
  return -1;
}
