/* redis_fixture.h — a private redis-server for a test: random loopback
 * port, no persistence, stopped by the test. Header-only (static
 * functions) so each test program gets its own copy.
 *
 * In the group setup, tr_setup starts it when redis-server is installed;
 * each test that needs it calls tr_require first: without redis-server
 * the test prints "SKIPPED: ..." and is skipped (docs/DISTRIBUTED.md), but
 * a redis-server that is installed and did not start, or that this
 * fixture could not reach, fails the test with the reason. */
#ifndef KEEL_TEST_REDIS_FIXTURE_H
#define KEEL_TEST_REDIS_FIXTURE_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

typedef struct tr_server {
  pid_t pid;      /* > 0 while a server of ours runs */
  int port;
  int installed;  /* tr_setup found redis-server on PATH */
  char why[256];  /* why the last tr_start failed */
} tr_server;

static int tr_have_redis(void) { return system("command -v redis-server >/dev/null 2>&1") == 0; }

/* 1 when the server on `port` answers and is process `pid` (another
 * test's server on the same random port would answer PING too, then go
 * away with its test). */
static int tr_ping(int port, pid_t pid) {
  struct timeval tv = {0, 200000};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  int ok = 0;
  if (c && !c->err) {
    redisReply *r = redisCommand(c, "INFO server");
    if (r && r->type == REDIS_REPLY_STRING) {
      const char *p = strstr(r->str, "process_id:");
      ok = p && atol(p + strlen("process_id:")) == (long)pid;
    }
    if (r) freeReplyObject(r);
  }
  if (c) redisFree(c);
  return ok;
}

/* Starts redis-server (on s->port when nonzero, else a random one); 0 on
 * success, else -1 with the reason in s->why. */
static int tr_start(tr_server *s) {
  srand((unsigned)(getpid() ^ time(NULL)));
  snprintf(s->why, sizeof s->why, "not tried");
  for (int attempt = 0; attempt < 5; attempt++) {
    int port = s->port ? s->port : 20000 + rand() % 40000;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    if (pid < 0) {
      snprintf(s->why, sizeof s->why, "fork failed");
      return -1;
    }
    if (pid == 0) {
      if (!freopen("/dev/null", "w", stdout)) _exit(127);
      execlp("redis-server", "redis-server", "--save", "", "--appendonly", "no", "--port", ps, "--bind",
             "127.0.0.1", (char *)NULL);
      _exit(127);
    }
    int status = 0, exited = 0;
    for (int i = 0; i < 100 && !exited; i++) {
      struct timespec ts = {0, 50000000};
      nanosleep(&ts, NULL);
      if (tr_ping(port, pid)) {
        s->pid = pid;
        s->port = port;
        return 0;
      }
      exited = waitpid(pid, &status, WNOHANG) == pid;
    }
    if (!exited) {
      snprintf(s->why, sizeof s->why, "redis-server (pid %ld) did not answer on 127.0.0.1:%d within 5 s", (long)pid,
               port);
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    } else if (WIFEXITED(status)) {
      snprintf(s->why, sizeof s->why, "redis-server --port %d exited with status %d%s", port, WEXITSTATUS(status),
               WEXITSTATUS(status) == 127 ? " (could not be executed)" : "");
    } else {
      snprintf(s->why, sizeof s->why, "redis-server --port %d was killed by signal %d", port,
               WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
  }
  return -1;
}

static void tr_stop(tr_server *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
}

/* For the group setup: starts the server when redis-server is installed.
 * Returns 0 (the tests that need the server fail in tr_require); says on
 * stderr at once when an installed server did not start. */
static int tr_setup(tr_server *s) {
  s->installed = tr_have_redis();
  if (!s->installed) {
    snprintf(s->why, sizeof s->why, "redis-server is not installed");
    return 0;
  }
  if (tr_start(s) != 0)
    fprintf(stderr, "FAIL: redis-server is installed but could not be started after 5 attempts: %s\n", s->why);
  return 0;
}

/* First thing in a test that needs the server: returns when it runs;
 * skips the test, with a message, when redis-server is not installed;
 * fails it when redis-server is installed but there is no server. */
static void tr_require(const tr_server *s) {
  if (s->pid > 0) return;
  if (!s->installed) {
    printf("SKIPPED: redis-server is not installed (apt-get install redis-server)\n");
    skip();
  }
  fail_msg("redis-server is installed but the test has no server to use: %s", s->why);
}

#endif
