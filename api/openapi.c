/* The embedded OpenAPI document: a one-entry table that the build writes
 * with the dashboard's generator (tools/embed_assets.sh, EMBED_TABLE=
 * otf__openapi_files) into $(BUILD)/gen/openapi_json.c. */
#include "api/openapi.h"

#include "api/dashboard.h" /* otf__dashboard_file, the generator's entry type */

extern const otf__dashboard_file otf__openapi_files[];
extern const size_t otf__openapi_file_count;

const char *otf_openapi_json(size_t *len) {
  /* The generator writes exactly one entry for api/openapi.json. */
  if(len)
    *len = otf__openapi_file_count ? otf__openapi_files[0].len : 0;
  return otf__openapi_file_count ? (const char *)otf__openapi_files[0].data : "";
}
