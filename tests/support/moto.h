/* A local S3 server for the storage tests: moto's moto_server on
 * 127.0.0.1 (a free port) with request signing enforced. The first
 * requests, unauthenticated, create an IAM user with an access key and an
 * allow-all policy (INITIAL_NO_AUTH_ACTION_COUNT); every request after
 * them must be signed with that key. */
#ifndef OTF_TEST_MOTO_H
#define OTF_TEST_MOTO_H

typedef struct tu_moto {
  int pid;
  int port;
  char endpoint[64];     /* http://127.0.0.1:PORT */
  char access_key[64];
  char secret_key[128];
} tu_moto;

/* Starts the server and creates the key. Returns 0, or -1 with a message
 * on stderr (moto_server missing, did not start, IAM set-up failed). */
int tu_moto_start(tu_moto *m);
void tu_moto_stop(tu_moto *m);

#endif
