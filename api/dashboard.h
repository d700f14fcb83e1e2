/* The web dashboard's static assets (the files in api/dashboard/), embedded in the
 * binary at build time by tools/embed_assets.sh, so otfused serves them with
 * no files on disk and no network (no CDN).
 *
 * The router calls otf_dashboard_asset() for GET / and GET /ui/<asset>; the
 * assets need no token (the page asks for one and sends it on API calls). */
#ifndef OTF_API_DASHBOARD_H
#define OTF_API_DASHBOARD_H

#include <stddef.h>

/* Looks up the asset for a request path: "/" (also "/ui" and "/ui/") is
 * index.html, "/ui/NAME" is the asset NAME (no subfolders). The path is the
 * URL path without its query string. On success returns 0 and sets *data
 * and *len to the asset's bytes and *content_type to its media type (all
 * borrowed, static, valid for the life of the process). Returns -1 for any
 * other path, including NULL, "..", and names that are not embedded; the
 * out-parameters are then left untouched. Out-parameters may not be NULL. */
int otf_dashboard_asset(const char *path, const unsigned char **data, size_t *len,
                        const char **content_type);

/* Internal: the table written by tools/embed_assets.sh into
 * $(BUILD)/gen/dashboard_assets.c. Names are file names without folder. */
typedef struct {
  const char *name;
  const unsigned char *data;
  size_t len;
} otf__dashboard_file;

extern const otf__dashboard_file otf__dashboard_files[];
extern const size_t otf__dashboard_file_count;

#endif
