#include "tests/support/moto.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
     getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if(fd >= 0)
    close(fd);
  return port;
}

static int can_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)port);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  if(fd >= 0)
    close(fd);
  return ok;
}

typedef struct buf {
  char d[8192];
  size_t n;
} buf;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
  buf *b = ud;
  size_t k = sz * n;
  if(b->n + k >= sizeof(b->d))
    k = sizeof(b->d) - 1 - b->n;
  memcpy(b->d + b->n, p, k);
  b->n += k;
  b->d[b->n] = 0;
  return sz * n;
}

/* One IAM query-API call; moto routes it by the service in the (not yet
 * checked) Authorization header. */
static int iam(const tu_moto *m, const char *form, buf *out) {
  CURL *h = curl_easy_init();
  if(!h)
    return -1;
  struct curl_slist *hd = curl_slist_append(NULL,
      "Authorization: AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, "
      "SignedHeaders=host, Signature=0");
  out->n = 0;
  out->d[0] = 0;
  curl_easy_setopt(h, CURLOPT_URL, m->endpoint);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  CURLcode cc = curl_easy_perform(h);
  long st = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
  curl_slist_free_all(hd);
  curl_easy_cleanup(h);
  return cc == CURLE_OK && st == 200 ? 0 : -1;
}

static int tag(const char *xml, const char *name, char *out, size_t cap) {
  char open[64], close[64];
  snprintf(open, sizeof(open), "<%s>", name);
  snprintf(close, sizeof(close), "</%s>", name);
  const char *b = strstr(xml, open), *e = b ? strstr(b, close) : NULL;
  if(!b || !e)
    return -1;
  b += strlen(open);
  if((size_t)(e - b) >= cap)
    return -1;
  memcpy(out, b, (size_t)(e - b));
  out[e - b] = 0;
  return 0;
}

int tu_moto_start(tu_moto *m) {
  memset(m, 0, sizeof(*m));
  m->pid = -1;
  if(system("command -v moto_server >/dev/null 2>&1") != 0) {
    fprintf(stderr, "moto_server not found on PATH: the S3 tests need moto's server "
                    "(pip install 'moto[server]'); it is not a Debian package\n");
    return -1;
  }
  m->port = free_port();
  if(m->port <= 0)
    return -1;
  snprintf(m->endpoint, sizeof(m->endpoint), "http://127.0.0.1:%d", m->port);
  pid_t pid = fork();
  if(pid < 0)
    return -1;
  if(pid == 0) {
    char port[16];
    snprintf(port, sizeof(port), "%d", m->port);
    setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3", 1);
    int devnull = open("/dev/null", 1);
    if(devnull >= 0 && !getenv("OTF_MOTO_LOG")) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    setpgid(0, 0);
    execlp("moto_server", "moto_server", "-H", "127.0.0.1", "-p", port, (char *)NULL);
    _exit(127);
  }
  m->pid = (int)pid;
  for(int i = 0; i < 300 && !can_connect(m->port); i++) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    int st;
    if(waitpid(pid, &st, WNOHANG) == pid) {
      fprintf(stderr, "moto_server exited before it listened\n");
      m->pid = -1;
      return -1;
    }
  }
  if(!can_connect(m->port)) {
    fprintf(stderr, "moto_server did not listen on port %d within 30 s\n", m->port);
    tu_moto_stop(m);
    return -1;
  }
  buf b;
  if(iam(m, "Action=CreateUser&UserName=otf&Version=2010-05-08", &b) != 0 ||
     iam(m, "Action=CreateAccessKey&UserName=otf&Version=2010-05-08", &b) != 0 ||
     tag(b.d, "AccessKeyId", m->access_key, sizeof(m->access_key)) != 0 ||
     tag(b.d, "SecretAccessKey", m->secret_key, sizeof(m->secret_key)) != 0 ||
     iam(m, "Action=PutUserPolicy&UserName=otf&PolicyName=all&Version=2010-05-08&PolicyDocument="
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C"
            "%22Action%22%3A%22*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D", &b) != 0) {
    fprintf(stderr, "IAM set-up on moto_server failed: %s\n", b.d);
    tu_moto_stop(m);
    return -1;
  }
  return 0;
}

void tu_moto_stop(tu_moto *m) {
  if(m->pid > 0) {
    kill(-(pid_t)m->pid, SIGTERM); /* its process group: the server and any reloader */
    kill((pid_t)m->pid, SIGTERM);
    int st;
    for(int i = 0; i < 50; i++) {
      if(waitpid((pid_t)m->pid, &st, WNOHANG) == m->pid) {
        m->pid = -1;
        return;
      }
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
    kill(-(pid_t)m->pid, SIGKILL);
    waitpid((pid_t)m->pid, &st, 0);
    m->pid = -1;
  }
}
