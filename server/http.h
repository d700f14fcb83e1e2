/* libmicrohttpd glue: connections in, otf_api_handle out. The daemon runs
 * its own polling thread; no callback blocks: bodies are bounded, quick
 * routes answer from the job store, and slow routes (validate) are
 * suspended and run on the libuv pool, then resumed. */
#ifndef OTF_SERVER_HTTP_H
#define OTF_SERVER_HTTP_H

#include <uv.h>

#include "api/api.h"

typedef struct otf_httpd otf_httpd;

/* Starts serving host:port (port 0 = any; *bound_port receives it).
 * Loop thread (it registers an async handle on loop). */
otf_status otf_httpd_start(otf_httpd **out, const char *host, int port, size_t max_conns,
                           otf_api *api, uv_loop_t *loop, int *bound_port,
                           otf_error *err) OTF_WUR;

/* Stops the daemon (closes connections) and closes the loop handle. */
void otf_httpd_stop(otf_httpd *h);
void otf_httpd_free(otf_httpd *h);

#endif
