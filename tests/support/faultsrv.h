/* A small misbehaving HTTP/1.1 server on 127.0.0.1 for the storage fault
 * tests, run in a thread of the test process. Each route serves a body and
 * can first answer with an error status, cut its body short, or stall
 * after the headers, a given number of times. Every response closes the
 * connection; requests are counted per route and method. PUT/POST bodies
 * are read and discarded; DELETE answers 204. Unknown paths get 404. */
#ifndef OTF_TEST_FAULTSRV_H
#define OTF_TEST_FAULTSRV_H

#include <stddef.h>

#define TU_FAULT_MAX_ROUTES 32

typedef struct tu_fault_route {
  char path[512];       /* exact path, without the query */
  const void *body;
  size_t len;
  int status;           /* 0 = 200 */
  int fail_first;       /* this many requests answer fail_status (500 if 0) */
  int fail_status;
  int cut_first;        /* this many bodies stop halfway (Content-Length is full) */
  int stall_first;      /* this many responses stall stall_ms after the headers */
  int stall_ms;
  char etag[80];        /* sent quoted when not empty */
  char location[256];   /* sent with 3xx statuses */
  /* counters (read them while the server runs: they are updated under
   * the server's lock; tu_fault_count gives a consistent read) */
  int gets, puts, posts, deletes, heads;
} tu_fault_route;

typedef struct tu_fault {
  int fd;
  int port;
  char base[64]; /* http://127.0.0.1:PORT */
  tu_fault_route routes[TU_FAULT_MAX_ROUTES];
  int n_routes;
  int stop;
  unsigned long thread;
  void *mu;
} tu_fault;

/* Starts listening (routes may be added before or after). 0 on success. */
int tu_fault_start(tu_fault *f);
void tu_fault_stop(tu_fault *f);
/* Adds a route and returns it (its fields may be changed between requests
 * under tu_fault_lock/unlock). */
tu_fault_route *tu_fault_add(tu_fault *f, const char *path, const void *body, size_t len);
void tu_fault_lock(tu_fault *f);
void tu_fault_unlock(tu_fault *f);
/* Requests of one method ("GET", ...) to a route; -1 if no such route. */
int tu_fault_count(tu_fault *f, const char *path, const char *method);

#endif
