/* Which hosts a storage request may reach (SSRF policy). Link-local
 * addresses (169.254.0.0/16, fe80::/10) and cloud metadata endpoints are
 * always refused; loopback, private (10/8, 172.16/12, 192.168/16,
 * 100.64/10, fc00::/7 incl. fd00::/8), unspecified and multicast addresses
 * unless private hosts are allowed. */
#ifndef OTF_NETPOLICY_H
#define OTF_NETPOLICY_H

#include <stddef.h>
#include <sys/socket.h>

#include "common/error.h"

/* NULL when the address may be reached, else why not ("link-local",
 * "loopback", ...). always_bad receives 1 when not even
 * allow_private_hosts permits it. */
const char *otf__net_addr_class(const struct sockaddr *sa, int *always_bad);

/* Checks a host by name without resolving: IP literals are classified,
 * "localhost" and the metadata host names are recognised. */
otf_status otf__net_check_name(const char *uri, const char *host, int allow_private,
                               otf_error *err) OTF_WUR;

/* Resolves host, checks every address, and writes a CURLOPT_RESOLVE entry
 * "host:port:addr[,addr...]" into pin so that the connection goes to the
 * addresses checked (no DNS rebinding between check and connect). */
otf_status otf__net_resolve_pin(const char *uri, const char *host, int port, int allow_private,
                                char *pin, size_t cap, otf_error *err) OTF_WUR;

#endif
