#include "tests/support/faultsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void sendall(int fd, const void *p, size_t n) {
  const char *c = p;
  while(n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if(w <= 0)
      return;
    c += w;
    n -= (size_t)w;
  }
}

static void msleep_stoppable(tu_fault *f, int ms) {
  while(ms > 0 && !__atomic_load_n(&f->stop, __ATOMIC_SEQ_CST)) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    ms -= 20;
  }
}

/* Reads the request head (and discards a body by Content-Length). */
static int read_request(int fd, char *method, size_t mcap, char *path, size_t pcap) {
  char head[16384];
  size_t n = 0;
  char *end = NULL;
  while(!end) {
    struct pollfd p = {fd, POLLIN, 0};
    if(poll(&p, 1, 5000) <= 0)
      return -1;
    ssize_t r = recv(fd, head + n, sizeof(head) - 1 - n, 0);
    if(r <= 0)
      return -1;
    n += (size_t)r;
    head[n] = 0;
    end = strstr(head, "\r\n\r\n");
    if(!end && n >= sizeof(head) - 1)
      return -1;
  }
  char target[4096];
  if(sscanf(head, "%15s %4095s", method, target) != 2)
    return -1;
  (void)mcap;
  size_t q = strcspn(target, "?");
  target[q] = 0;
  if(strlen(target) >= pcap)
    return -1;
  memcpy(path, target, strlen(target) + 1);
  long clen = 0;
  for(char *l = strstr(head, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
    if(!strncasecmp(l + 2, "Content-Length:", 15))
      clen = strtol(l + 17, NULL, 10);
  size_t have = n - (size_t)(end + 4 - head);
  char sink[65536];
  while((long)have < clen) {
    struct pollfd p = {fd, POLLIN, 0};
    if(poll(&p, 1, 5000) <= 0)
      return -1;
    ssize_t r = recv(fd, sink, sizeof(sink), 0);
    if(r <= 0)
      return -1;
    have += (size_t)r;
  }
  return 0;
}

static void serve(tu_fault *f, int fd) {
  char method[16] = "", path[512] = "";
  if(read_request(fd, method, sizeof(method), path, sizeof(path)) != 0)
    return;
  pthread_mutex_lock(f->mu);
  tu_fault_route *r = NULL;
  for(int i = 0; i < f->n_routes; i++)
    if(!strcmp(f->routes[i].path, path))
      r = &f->routes[i];
  char hdr[1024];
  if(!r) {
    pthread_mutex_unlock(f->mu);
    const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    sendall(fd, nf, strlen(nf));
    return;
  }
  if(!strcmp(method, "GET")) r->gets++;
  else if(!strcmp(method, "PUT")) r->puts++;
  else if(!strcmp(method, "POST")) r->posts++;
  else if(!strcmp(method, "DELETE")) r->deletes++;
  else if(!strcmp(method, "HEAD")) r->heads++;
  int status = r->status ? r->status : 200, cut = 0, stall = 0, stall_ms = r->stall_ms;
  if(r->fail_first > 0) {
    r->fail_first--;
    status = r->fail_status ? r->fail_status : 500;
  } else if(r->cut_first > 0) {
    r->cut_first--;
    cut = 1;
  } else if(r->stall_first > 0) {
    r->stall_first--;
    stall = 1;
  }
  const void *body = r->body;
  size_t len = r->len;
  char etag[100] = "", loc[300] = "";
  if(r->etag[0])
    snprintf(etag, sizeof(etag), "ETag: \"%s\"\r\n", r->etag);
  if(r->location[0])
    snprintf(loc, sizeof(loc), "Location: %s\r\n", r->location);
  pthread_mutex_unlock(f->mu);
  if(!strcmp(method, "DELETE") && status == 200)
    status = 204;
  int with_body = status < 300 && strcmp(method, "HEAD") && strcmp(method, "DELETE") && strcmp(method, "PUT");
  if(!with_body) {
    if(status >= 400) {
      const char *xml = "<Error><Code>InjectedFault</Code><Message>the test server said so</Message></Error>";
      snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
               strlen(xml), loc);
      sendall(fd, hdr, strlen(hdr));
      sendall(fd, xml, strlen(xml));
    } else {
      snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s%sConnection: close\r\n\r\n", status,
               !strcmp(method, "HEAD") ? len : (size_t)0, etag, loc);
      sendall(fd, hdr, strlen(hdr));
    }
    return;
  }
  snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d OK\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status, len, etag);
  sendall(fd, hdr, strlen(hdr));
  if(stall) {
    sendall(fd, body, len / 4);
    msleep_stoppable(f, stall_ms);
    return;
  }
  sendall(fd, body, cut ? len / 2 : len);
}

static void *run(void *arg) {
  tu_fault *f = arg;
  while(!__atomic_load_n(&f->stop, __ATOMIC_SEQ_CST)) {
    struct pollfd p = {f->fd, POLLIN, 0};
    if(poll(&p, 1, 50) <= 0)
      continue;
    int c = accept(f->fd, NULL, NULL);
    if(c < 0)
      continue;
    serve(f, c);
    shutdown(c, SHUT_RDWR);
    close(c);
  }
  return NULL;
}

int tu_fault_start(tu_fault *f) {
  f->stop = 0;
  f->mu = malloc(sizeof(pthread_mutex_t));
  if(!f->mu)
    return -1;
  pthread_mutex_init(f->mu, NULL);
  f->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int one = 1;
  setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if(f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(f->fd, 64) != 0 ||
     getsockname(f->fd, (struct sockaddr *)&a, &len) != 0)
    return -1;
  f->port = ntohs(a.sin_port);
  snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->port);
  pthread_t t;
  if(pthread_create(&t, NULL, run, f) != 0)
    return -1;
  f->thread = (unsigned long)t;
  return 0;
}

void tu_fault_stop(tu_fault *f) {
  __atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
  pthread_join((pthread_t)f->thread, NULL);
  close(f->fd);
  pthread_mutex_destroy(f->mu);
  free(f->mu);
  f->mu = NULL;
}

tu_fault_route *tu_fault_add(tu_fault *f, const char *path, const void *body, size_t len) {
  if(f->mu)
    pthread_mutex_lock(f->mu);
  tu_fault_route *r = NULL;
  if(f->n_routes < TU_FAULT_MAX_ROUTES) {
    r = &f->routes[f->n_routes++];
    memset(r, 0, sizeof(*r));
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->body = body;
    r->len = len;
  }
  if(f->mu)
    pthread_mutex_unlock(f->mu);
  return r;
}

void tu_fault_lock(tu_fault *f) { pthread_mutex_lock(f->mu); }
void tu_fault_unlock(tu_fault *f) { pthread_mutex_unlock(f->mu); }

int tu_fault_count(tu_fault *f, const char *path, const char *method) {
  int n = -1;
  pthread_mutex_lock(f->mu);
  for(int i = 0; i < f->n_routes; i++)
    if(!strcmp(f->routes[i].path, path)) {
      tu_fault_route *r = &f->routes[i];
      n = !strcmp(method, "GET") ? r->gets : !strcmp(method, "PUT") ? r->puts : !strcmp(method, "POST") ? r->posts
          : !strcmp(method, "DELETE") ? r->deletes : r->heads;
    }
  pthread_mutex_unlock(f->mu);
  return n;
}
