#include "storage/http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "storage/netpolicy.h"
#include "storage/xml.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;

static void free_handle(void *h) { curl_easy_cleanup(h); }

static void init_once(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  pthread_key_create(&g_key, free_handle);
}

void otf__http_global_init(void) { pthread_once(&g_once, init_once); }

/* One easy handle per thread, reset between requests: reset keeps its
 * connection cache, so consecutive requests to one store reuse a
 * connection. */
static CURL *thread_handle(void) {
  otf__http_global_init();
  CURL *h = pthread_getspecific(g_key);
  if(!h) {
    h = curl_easy_init();
    if(h && pthread_setspecific(g_key, h) != 0) {
      curl_easy_cleanup(h);
      h = NULL;
    }
  } else {
    curl_easy_reset(h);
  }
  return h;
}

typedef struct xfer {
  otf__http_req *r;
  CURL *h;
  int fd;              /* download file */
  int upfd;            /* upload file */
  uint64_t up_done;
  otf_digest dg;
  otf__xprog *prog;
  uint64_t prog_base;
  int cancelled;
  int stalled;         /* no byte moved for timeout_s */
  long stall_s;
  curl_off_t last_bytes;
  struct timespec last_move;
  int io_errno;
  char errbody[OTF_HTTP_ERR_BODY];
  size_t errlen;
  int overflow;
} xfer;

/* Error text, truncated if it must be (a URI can be long). */
__attribute__((format(printf, 3, 4))) static void setmsg(char *msg, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, cap, fmt, ap);
  va_end(ap);
}

static int ok_status(long s) { return s >= 200 && s < 300; }

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = sz * n;
  long st = 0;
  curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &st);
  if(!ok_status(st)) {
    size_t k = sizeof(x->errbody) - 1 - x->errlen;
    if(k > len)
      k = len;
    memcpy(x->errbody + x->errlen, p, k);
    x->errlen += k;
    x->errbody[x->errlen] = 0;
    return len;
  }
  if(x->r->down_path) {
    size_t off = 0;
    while(off < len) {
      ssize_t w = write(x->fd, p + off, len - off);
      if(w < 0 && errno == EINTR)
        continue;
      if(w <= 0) {
        x->io_errno = errno ? errno : EIO;
        return 0;
      }
      off += (size_t)w;
    }
    otf__digest_update(&x->dg, p, len);
  } else if(x->r->resp) {
    if(x->r->resp_len + len >= x->r->resp_cap) {
      x->overflow = 1;
      return 0;
    }
    memcpy(x->r->resp + x->r->resp_len, p, len);
    x->r->resp_len += len;
    x->r->resp[x->r->resp_len] = 0;
  }
  x->r->got += len;
  if(x->prog && x->prog->fn) {
    x->prog->done += len;
    if(x->prog->fn(x->prog->ctx, x->prog->done, x->prog->total)) {
      x->cancelled = 1;
      return 0;
    }
  }
  return len;
}

static size_t on_read(char *buf, size_t sz, size_t n, void *ud) {
  xfer *x = ud;
  otf__http_req *r = x->r;
  size_t cap = sz * n;
  size_t done;
  if(r->up_path) {
    uint64_t left = r->up_len - x->up_done;
    if(cap > left)
      cap = (size_t)left;
    if(cap == 0)
      return 0;
    ssize_t got;
    do
      got = pread(x->upfd, buf, cap, (off_t)(r->up_off + x->up_done));
    while(got < 0 && errno == EINTR);
    if(got <= 0) {
      x->io_errno = got < 0 ? errno : EIO; /* the file shrank under us */
      return CURL_READFUNC_ABORT;
    }
    done = (size_t)got;
  } else {
    size_t left = r->body_len - (size_t)x->up_done;
    done = cap < left ? cap : left;
    if(done)
      memcpy(buf, (const char *)r->body + x->up_done, done);
  }
  x->up_done += done;
  if(x->prog && x->prog->fn && done) {
    x->prog->done += done;
    if(x->prog->fn(x->prog->ctx, x->prog->done, x->prog->total)) {
      x->cancelled = 1;
      return CURL_READFUNC_ABORT;
    }
  }
  return done;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = sz * n;
  if(len > 5 && !strncasecmp(p, "ETag:", 5)) {
    const char *v = p + 5;
    const char *end = p + len;
    while(v < end && (*v == ' ' || *v == '"'))
      v++;
    while(end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '"'))
      end--;
    size_t k = (size_t)(end - v);
    if(k >= sizeof(x->r->etag))
      k = sizeof(x->r->etag) - 1;
    memcpy(x->r->etag, v, k);
    x->r->etag[k] = 0;
  }
  return len;
}

/* Stall detection: curl's low-speed limit averages over several seconds,
 * so a burst followed by silence takes long to trip it; this aborts when
 * no byte has moved either way for the whole timeout. */
static int on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  (void)dltotal;
  (void)ultotal;
  xfer *x = ud;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  curl_off_t moved = dlnow + ulnow;
  if(moved != x->last_bytes || x->last_move.tv_sec == 0) {
    x->last_bytes = moved;
    x->last_move = now;
    return 0;
  }
  double idle = (double)(now.tv_sec - x->last_move.tv_sec) + 1e-9 * (double)(now.tv_nsec - x->last_move.tv_nsec);
  if(idle >= (double)x->stall_s) {
    x->stalled = 1;
    return 1;
  }
  return 0;
}

static int is_md5_hex(const char *s) {
  if(strlen(s) != 32)
    return 0;
  for(; *s; s++)
    if(!isxdigit((unsigned char)*s))
      return 0;
  return 1;
}

/* Sleeps ms milliseconds in short slices, polling the cancel callback. */
static int backoff_sleep(long ms, otf__xprog *prog) {
  while(ms > 0) {
    long slice = ms < 100 ? ms : 100;
    struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    ms -= slice;
    if(prog && prog->fn && prog->fn(prog->ctx, prog->done, prog->total))
      return 1;
  }
  return 0;
}

static unsigned jitter_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned)(ts.tv_nsec ^ (long)getpid() ^ (long)pthread_self());
}

typedef enum { V_OK, V_RETRY, V_FAIL } verdict;

/* One attempt. Fills st and msg on failure and says whether to retry. */
static verdict attempt(const otf__http_opts *o, otf__http_req *r, xfer *x, otf_status *st,
                       char *msg, size_t msgcap, otf_error *err) {
  CURL *h = x->h;
  struct curl_slist *hdrs = NULL;
  char pin[512];
  struct curl_slist *resolve = NULL;
  verdict v = V_FAIL;
  *st = OTF_E_IO;
  if(r->pin_host) {
    otf_error pe;
    otf_status prc = otf__net_resolve_pin(r->what, r->pin_host, r->pin_port, r->allow_private, pin,
                                          sizeof(pin), &pe);
    if(prc != OTF_OK) {
      *st = prc;
      setmsg(msg, msgcap, "%s", pe.message);
      return prc == OTF_E_UNREACHABLE ? V_RETRY : V_FAIL;
    }
    resolve = curl_slist_append(NULL, pin);
    if(!resolve) {
      *st = OTF_E_NOMEM;
      setmsg(msg, msgcap, "%s: out of memory", r->what);
      return V_FAIL;
    }
  }
  if(r->sign) {
    otf_status src = r->sign(r->sign_ctx, &hdrs, err);
    if(src != OTF_OK) {
      curl_slist_free_all(resolve);
      curl_slist_free_all(hdrs);
      *st = src;
      setmsg(msg, msgcap, "%s", err ? err->message : "signing failed");
      return V_FAIL;
    }
  }
  /* No "Expect: 100-continue" round trip; no form content type on POST. */
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(h, CURLOPT_URL, r->url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o->timeout_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->timeout_s);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024L);
  curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);
  if(resolve) {
    curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* a proxy would bypass the pin */
  }
  int has_body = r->up_path || r->body;
  uint64_t blen = r->up_path ? r->up_len : r->body_len;
  if(!strcmp(r->method, "HEAD")) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if(!strcmp(r->method, "PUT")) {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)blen);
  } else if(!strcmp(r->method, "POST")) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
  } else if(strcmp(r->method, "GET")) {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
  }
  if(has_body || !strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, x);
  }
  x->up_done = 0;
  x->errlen = 0;
  x->errbody[0] = 0;
  x->overflow = 0;
  x->cancelled = 0;
  x->stalled = 0;
  x->stall_s = o->timeout_s;
  x->last_bytes = 0;
  x->last_move.tv_sec = 0;
  x->last_move.tv_nsec = 0;
  x->io_errno = 0;
  r->got = 0;
  r->resp_len = 0;
  if(r->resp && r->resp_cap)
    r->resp[0] = 0;
  r->etag[0] = 0;
  if(x->prog)
    x->prog->done = x->prog_base;
  if(r->down_path) {
    if(ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
      *st = OTF_E_IO;
      setmsg(msg, msgcap, "%s: %s", r->down_path, strerror(errno));
      goto out;
    }
    otf__digest_final(&x->dg, NULL, NULL); /* reset */
  }
  char cerr[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
  CURLcode cc = curl_easy_perform(h);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  r->status = status;
  if(x->cancelled) {
    *st = OTF_E_CANCELLED;
    setmsg(msg, msgcap, "%s: cancelled", r->what);
    goto out;
  }
  if(x->stalled) {
    *st = OTF_E_TIMEOUT;
    v = V_RETRY;
    setmsg(msg, msgcap, "%s: timed out (no data moved for %ld s, %llu bytes received)", r->what, o->timeout_s,
             (unsigned long long)r->got);
    goto out;
  }
  if(x->io_errno) {
    *st = OTF_E_IO;
    setmsg(msg, msgcap, "%s: local file: %s", r->what, strerror(x->io_errno));
    goto out;
  }
  if(x->overflow) {
    *st = OTF_E_TOO_LARGE;
    setmsg(msg, msgcap, "%s: response larger than %zu bytes", r->what, r->resp_cap);
    goto out;
  }
  if(cc != CURLE_OK) {
    const char *why = *cerr ? cerr : curl_easy_strerror(cc);
    switch(cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      *st = OTF_E_UNREACHABLE;
      v = V_RETRY;
      setmsg(msg, msgcap, "%s: unreachable: %s", r->what, why);
      break;
    case CURLE_OPERATION_TIMEDOUT:
      *st = OTF_E_TIMEOUT;
      v = V_RETRY;
      setmsg(msg, msgcap, "%s: timed out (no progress for %ld s): %s", r->what, o->timeout_s, why);
      break;
    case CURLE_PARTIAL_FILE:
      *st = OTF_E_CORRUPT;
      v = V_RETRY;
      setmsg(msg, msgcap, "%s: body cut short after %llu bytes: %s", r->what, (unsigned long long)r->got, why);
      break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      *st = OTF_E_UNREACHABLE;
      v = V_RETRY;
      setmsg(msg, msgcap, "%s: connection failed: %s", r->what, why);
      break;
    default:
      *st = OTF_E_UNREACHABLE;
      setmsg(msg, msgcap, "%s: %s", r->what, why);
      break;
    }
    goto out;
  }
  if(!ok_status(status)) {
    char code[64] = "", text[160] = "";
    otf__xml_get(x->errbody, x->errlen, "Code", code, sizeof(code), NULL);
    otf__xml_get(x->errbody, x->errlen, "Message", text, sizeof(text), NULL);
    const char *detail = *code ? code : "";
    if(status == 404) {
      *st = OTF_E_NOT_FOUND;
    } else if(status == 403) {
      *st = OTF_E_ACCESS;
    } else if(status == 401) {
      *st = OTF_E_UNAUTHORIZED;
    } else if(status == 429 || (status == 503 && !strcmp(code, "SlowDown"))) {
      *st = OTF_E_BUSY;
      v = V_RETRY;
    } else if(status >= 500) {
      *st = OTF_E_UNREACHABLE;
      v = V_RETRY;
    } else if(status == 409 || status == 412) {
      *st = OTF_E_CONFLICT;
    } else if(status >= 300 && status < 400) {
      *st = OTF_E_UNSUPPORTED;
      detail = "redirects are not followed";
    } else {
      *st = OTF_E_INVAL;
    }
    setmsg(msg, msgcap, "%s: %s (HTTP %ld%s%s%s%s)", r->what, otf_strerror(*st), status, *detail ? " " : "",
             detail, *text ? ": " : "", text);
    goto out;
  }
  /* Success on the wire; now verify what we received. */
  curl_off_t clen = -1;
  curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
  r->content_length = clen;
  if(strcmp(r->method, "HEAD") && clen >= 0 && (uint64_t)clen != r->got) {
    *st = OTF_E_CORRUPT;
    v = V_RETRY;
    setmsg(msg, msgcap, "%s: received %llu bytes of %lld", r->what, (unsigned long long)r->got, (long long)clen);
    goto out;
  }
  if(r->expect_len_set && strcmp(r->method, "HEAD") && r->got != r->expect_len) {
    *st = OTF_E_CORRUPT;
    v = V_RETRY;
    setmsg(msg, msgcap, "%s: received %llu bytes, expected %llu", r->what, (unsigned long long)r->got,
             (unsigned long long)r->expect_len);
    goto out;
  }
  if(r->down_path) {
    otf__digest_final(&x->dg, r->sha256, r->md5);
    if(r->verify_md5_etag && status == 200 && is_md5_hex(r->etag) && strcasecmp(r->etag, r->md5)) {
      *st = OTF_E_CORRUPT;
      v = V_RETRY;
      setmsg(msg, msgcap, "%s: content MD5 %s does not match the ETag %s", r->what, r->md5, r->etag);
      goto out;
    }
    if(fsync(x->fd) != 0) {
      *st = OTF_E_IO;
      setmsg(msg, msgcap, "%s: fsync: %s", r->down_path, strerror(errno));
      goto out;
    }
  }
  v = V_OK;
  *st = OTF_OK;
out:
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
  curl_slist_free_all(hdrs);
  curl_slist_free_all(resolve);
  return v;
}

otf_status otf__http_do(const otf__http_opts *o, otf__http_req *r, otf__xprog *prog, otf_error *err) {
  xfer x;
  memset(&x, 0, sizeof(x));
  x.r = r;
  x.fd = -1;
  x.upfd = -1;
  x.prog = prog;
  x.prog_base = prog ? prog->done : 0;
  r->attempts = 0;
  r->status = 0;
  otf_status rc = OTF_OK;
  x.h = thread_handle();
  if(!x.h)
    return OTF_FAIL(err, OTF_E_NOMEM, NULL, "%s: cannot create an HTTP handle", r->what);
  if(r->down_path) {
    x.fd = open(r->down_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if(x.fd < 0)
      return OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", r->down_path, strerror(errno));
    if(otf__digest_init(&x.dg, 1) != OTF_OK) {
      close(x.fd);
      return OTF_FAIL(err, OTF_E_NOMEM, NULL, "out of memory");
    }
  }
  if(r->up_path) {
    x.upfd = open(r->up_path, O_RDONLY | O_CLOEXEC);
    if(x.upfd < 0) {
      rc = OTF_FAIL(err, OTF_E_IO, NULL, "%s: %s", r->up_path, strerror(errno));
      goto done;
    }
  }
  unsigned seed = jitter_seed();
  char msg[OTF_ERROR_MSG_MAX];
  for(int a = 0;; a++) {
    r->attempts = a + 1;
    otf_status st;
    msg[0] = 0;
    verdict v = attempt(o, r, &x, &st, msg, sizeof(msg), err);
    if(v == V_OK) {
      rc = OTF_OK;
      break;
    }
    if(v == V_FAIL || a >= o->max_retries) {
      if(v == V_RETRY && a > 0) {
        char more[OTF_ERROR_MSG_MAX];
        setmsg(more, sizeof(more), "%s; gave up after %d attempts", msg, a + 1);
        rc = OTF_FAIL(err, st, NULL, "%s", more);
      } else {
        rc = OTF_FAIL(err, st, NULL, "%s", msg);
      }
      break;
    }
    /* Full jitter: a random wait in [d/2, d], d doubling from the base. */
    long d = o->retry_base_ms << (a < 10 ? a : 10);
    if(d > 20000)
      d = 20000;
    long wait = d / 2 + (long)(rand_r(&seed) % (unsigned)(d / 2 + 1));
    if(backoff_sleep(wait, prog)) {
      rc = OTF_FAIL(err, OTF_E_CANCELLED, NULL, "%s: cancelled", r->what);
      break;
    }
  }
done:
  if(x.fd >= 0) {
    close(x.fd);
    otf__digest_free(&x.dg);
  }
  if(x.upfd >= 0)
    close(x.upfd);
  return rc;
}
