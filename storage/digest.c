#include "storage/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <unistd.h>

void otf__hex(const unsigned char *p, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  for(size_t i = 0; i < n; i++) {
    out[2 * i] = hx[p[i] >> 4];
    out[2 * i + 1] = hx[p[i] & 15];
  }
  out[2 * n] = 0;
}

otf_status otf__digest_init(otf_digest *d, int with_md5) {
  d->sha = EVP_MD_CTX_new();
  d->md5 = with_md5 ? EVP_MD_CTX_new() : NULL;
  if(!d->sha || (with_md5 && !d->md5) || !EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL) ||
     (with_md5 && !EVP_DigestInit_ex(d->md5, EVP_md5(), NULL))) {
    otf__digest_free(d);
    return OTF_E_NOMEM;
  }
  return OTF_OK;
}

void otf__digest_update(otf_digest *d, const void *p, size_t n) {
  EVP_DigestUpdate(d->sha, p, n);
  if(d->md5)
    EVP_DigestUpdate(d->md5, p, n);
}

void otf__digest_final(otf_digest *d, char *sha_hex, char *md5_hex) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(d->sha, buf, &len);
  if(sha_hex)
    otf__hex(buf, len, sha_hex);
  EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL);
  if(d->md5) {
    EVP_DigestFinal_ex(d->md5, buf, &len);
    if(md5_hex)
      otf__hex(buf, len, md5_hex);
    EVP_DigestInit_ex(d->md5, EVP_md5(), NULL);
  }
}

void otf__digest_free(otf_digest *d) {
  if(d->sha)
    EVP_MD_CTX_free(d->sha);
  if(d->md5)
    EVP_MD_CTX_free(d->md5);
  d->sha = d->md5 = NULL;
}

void otf__sha256_hex(const void *p, size_t n, char out[OTF_SHA256_HEX]) {
  unsigned char buf[32];
  EVP_Digest(p, n, buf, NULL, EVP_sha256(), NULL);
  otf__hex(buf, 32, out);
}

void otf__hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                      unsigned char out[32]) {
  unsigned len = 32;
  HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len);
}

otf_status otf__digest_file(const char *path, uint64_t off, uint64_t len, char *sha_hex,
                            char *md5_hex, uint64_t *got, otf_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if(fd < 0)
    return OTF_FAIL(err, errno == ENOENT ? OTF_E_NOT_FOUND : OTF_E_IO, NULL, "%s: %s", path,
                    strerror(errno));
  otf_digest d;
  if(otf__digest_init(&d, md5_hex != NULL) != OTF_OK) {
    close(fd);
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory hashing %s", path);
  }
  static __thread unsigned char buf[1 << 16];
  uint64_t done = 0;
  otf_status rc = OTF_OK;
  while(done < len) {
    size_t want = sizeof(buf);
    if(len - done < want)
      want = (size_t)(len - done);
    ssize_t r = pread(fd, buf, want, (off_t)(off + done));
    if(r < 0 && errno == EINTR)
      continue;
    if(r < 0) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", path, strerror(errno));
      break;
    }
    if(r == 0)
      break;
    otf__digest_update(&d, buf, (size_t)r);
    done += (uint64_t)r;
  }
  if(rc == OTF_OK)
    otf__digest_final(&d, sha_hex, md5_hex);
  otf__digest_free(&d);
  close(fd);
  if(got)
    *got = done;
  return rc;
}
