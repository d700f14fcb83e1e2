/* The OpenAPI 3.1 description of otfused's HTTP API (api/openapi.json),
 * compiled into the library at build time by tools/embed_assets.sh, so
 * the server serves GET /openapi.json with no file on disk and the
 * document can never disagree with the binary that serves it. */
#ifndef OTF_API_OPENAPI_H
#define OTF_API_OPENAPI_H

#include <stddef.h>

/* The document's bytes (JSON text, UTF-8, ends with a newline; not
 * NUL-terminated as far as *len counts, though a NUL follows). Borrowed,
 * static, valid for the life of the process. len may be NULL. */
const char *otf_openapi_json(size_t *len);

#endif
