/* SHA-256, MD5 and HMAC-SHA256 on OpenSSL's libcrypto, as hex or raw. */
#ifndef OTF_DIGEST_H
#define OTF_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define OTF_SHA256_HEX 65 /* 64 hex digits + NUL */
#define OTF_MD5_HEX 33

/* Streaming SHA-256 and MD5 of the same bytes (a download or upload is
 * hashed once while it streams). */
typedef struct otf_digest {
  void *sha; /* EVP_MD_CTX */
  void *md5; /* EVP_MD_CTX, NULL when not asked for */
} otf_digest;

otf_status otf__digest_init(otf_digest *d, int with_md5) OTF_WUR;
void otf__digest_update(otf_digest *d, const void *p, size_t n);
/* Writes lowercase hex into sha_hex and (when md5 was asked for) md5_hex;
 * either may be NULL. Resets d for reuse. */
void otf__digest_final(otf_digest *d, char *sha_hex, char *md5_hex);
void otf__digest_free(otf_digest *d);

void otf__sha256_hex(const void *p, size_t n, char out[OTF_SHA256_HEX]);
void otf__hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                      unsigned char out[32]);
void otf__hex(const unsigned char *p, size_t n, char *out);

/* SHA-256 (and optionally MD5) of len bytes of a file from offset off
 * (len UINT64_MAX = to the end); *got receives the bytes read. */
otf_status otf__digest_file(const char *path, uint64_t off, uint64_t len, char *sha_hex,
                            char *md5_hex, uint64_t *got, otf_error *err) OTF_WUR;

#endif
