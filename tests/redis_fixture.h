/* redis_fixture.h — a private redis-server for a test: random loopback
 * port, no persistence, stopped by the test. Header-only (static
 * functions) so each test program gets its own copy. */
#ifndef KEEL_TEST_REDIS_FIXTURE_H
#define KEEL_TEST_REDIS_FIXTURE_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

typedef struct tr_server {
  pid_t pid;
  int port;
} tr_server;

static int tr_have_redis(void) { return system("command -v redis-server >/dev/null 2>&1") == 0; }

static int tr_ping(int port) {
  struct timeval tv = {0, 200000};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  int ok = 0;
  if (c && !c->err) {
    redisReply *r = redisCommand(c, "PING");
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
  }
  if (c) redisFree(c);
  return ok;
}

/* Starts redis-server (on s->port when nonzero, else a random one); 0 on
 * success. */
static int tr_start(tr_server *s) {
  srand((unsigned)(getpid() ^ time(NULL)));
  for (int attempt = 0; attempt < 5; attempt++) {
    int port = s->port ? s->port : 20000 + rand() % 40000;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      if (!freopen("/dev/null", "w", stdout)) _exit(127);
      execlp("redis-server", "redis-server", "--save", "", "--appendonly", "no", "--port", ps, "--bind",
             "127.0.0.1", (char *)NULL);
      _exit(127);
    }
    for (int i = 0; i < 100; i++) {
      struct timespec ts = {0, 50000000};
      nanosleep(&ts, NULL);
      if (tr_ping(port)) {
        s->pid = pid;
        s->port = port;
        return 0;
      }
      if (waitpid(pid, NULL, WNOHANG) == pid) break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return -1;
}

static void tr_stop(tr_server *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
}

#endif
