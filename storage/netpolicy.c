#include "storage/netpolicy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *v4_class(uint32_t a, int *always_bad) {
  *always_bad = 0;
  if((a >> 16) == 0xA9FE) {
    *always_bad = 1;
    return a == 0xA9FEA9FE ? "the cloud metadata address" : "link-local";
  }
  if((a >> 24) == 127)
    return "loopback";
  if((a >> 24) == 10 || (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8)
    return "private";
  if((a >> 22) == (0x64400000u >> 22))
    return "shared (carrier-grade NAT)";
  if((a >> 24) == 0)
    return "unspecified";
  if((a >> 28) >= 0xE)
    return "multicast or reserved";
  return NULL;
}

const char *otf__net_addr_class(const struct sockaddr *sa, int *always_bad) {
  *always_bad = 0;
  if(sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    return v4_class(ntohl(s4->sin_addr.s_addr), always_bad);
  }
  if(sa->sa_family != AF_INET6)
    return "not an internet address";
  const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const unsigned char zero[16] = {0};
  if(!memcmp(b, mapped, 12) || (!memcmp(b, zero, 12) && (b[12] | b[13]))) {
    uint32_t a = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
    return v4_class(a, always_bad);
  }
  /* fd00:ec2::254, the AWS metadata service over IPv6 */
  static const unsigned char ec2[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
  if(!memcmp(b, ec2, 16)) {
    *always_bad = 1;
    return "the cloud metadata address";
  }
  if(b[0] == 0xfe && (b[1] & 0xc0) == 0x80) {
    *always_bad = 1;
    return "link-local";
  }
  if(!memcmp(b, zero, 15) && b[15] == 1)
    return "loopback";
  if(!memcmp(b, zero, 16))
    return "unspecified";
  if((b[0] & 0xfe) == 0xfc)
    return "private (unique local)";
  if(b[0] == 0xff)
    return "multicast";
  return NULL;
}

static int is_metadata_name(const char *h) {
  static const char *names[] = {"metadata.google.internal", "metadata.goog", "metadata",
                                "instance-data", "instance-data.ec2.internal",
                                "metadata.azure.com", "metadata.packet.net"};
  size_t n = strlen(h);
  while(n && h[n - 1] == '.')
    n--; /* "metadata.google.internal." */
  for(size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
    if(strlen(names[i]) == n && !strncasecmp(h, names[i], n))
      return 1;
  return 0;
}

static int is_localhost_name(const char *h) {
  size_t n = strlen(h);
  while(n && h[n - 1] == '.')
    n--;
  if(n == 9 && !strncasecmp(h, "localhost", 9))
    return 1;
  return n > 10 && !strncasecmp(h + n - 10, ".localhost", 10);
}

static int literal(const char *host, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if(inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    return 1;
  }
  if(inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    return 1;
  }
  return 0;
}

static otf_status refuse(otf_error *err, const char *uri, const char *host, const char *why,
                         int always) {
  return OTF_FAIL(err, OTF_E_ACCESS, NULL, "%s: host %s is %s; %s", uri, host, why,
                  always ? "refused by the network policy"
                         : "refused unless private hosts are allowed");
}

otf_status otf__net_check_name(const char *uri, const char *host, int allow_private,
                               otf_error *err) {
  if(is_metadata_name(host))
    return refuse(err, uri, host, "a cloud metadata service", 1);
  if(is_localhost_name(host))
    return allow_private ? OTF_OK : refuse(err, uri, host, "loopback", 0);
  struct sockaddr_storage ss;
  if(!literal(host, &ss)) {
    /* inet_aton accepts the odd forms ("0x7f.1", "2130706433") that some
     * resolvers map to addresses; classify those too. */
    struct in_addr a;
    if(inet_aton(host, &a)) {
      struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
      s4->sin_family = AF_INET;
      s4->sin_addr = a;
    } else {
      return OTF_OK; /* a name: checked again when resolved */
    }
  }
  int always;
  const char *why = otf__net_addr_class((struct sockaddr *)&ss, &always);
  if(why && (always || !allow_private))
    return refuse(err, uri, host, why, always);
  return OTF_OK;
}

otf_status otf__net_resolve_pin(const char *uri, const char *host, int port, int allow_private,
                                char *pin, size_t cap, otf_error *err) {
  otf_status rc = otf__net_check_name(uri, host, allow_private, err);
  if(rc != OTF_OK)
    return rc;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int gr = getaddrinfo(host, NULL, &hints, &res);
  if(gr != 0)
    return OTF_FAIL(err, OTF_E_UNREACHABLE, NULL, "%s: cannot resolve %s: %s", uri, host,
                    gai_strerror(gr));
  size_t used = (size_t)snprintf(pin, cap, "%s:%d:", host, port);
  int count = 0;
  for(struct addrinfo *ai = res; ai && rc == OTF_OK; ai = ai->ai_next) {
    int always;
    const char *why = otf__net_addr_class(ai->ai_addr, &always);
    if(why && (always || !allow_private)) {
      rc = refuse(err, uri, host, why, always);
      break;
    }
    char txt[INET6_ADDRSTRLEN];
    const void *src = ai->ai_family == AF_INET
                          ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                          : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    if(!inet_ntop(ai->ai_family, src, txt, sizeof(txt)))
      continue;
    int w = snprintf(pin + used, used < cap ? cap - used : 0, ai->ai_family == AF_INET6 ? "%s[%s]" : "%s%s",
                     count ? "," : "", txt);
    if(w < 0 || used + (size_t)w >= cap)
      break; /* enough addresses */
    used += (size_t)w;
    count++;
  }
  freeaddrinfo(res);
  if(rc == OTF_OK && !count)
    rc = OTF_FAIL(err, OTF_E_UNREACHABLE, NULL, "%s: %s has no usable address", uri, host);
  return rc;
}
