/* redis_push.c — loading NDJSON lines into a Redis stream (keel push). */
#include <stdio.h>
#include <string.h>

#include "keel/io.h"
#include "redis_int.h"

/* Reads the replies of n pipelined XADDs; 0 when every one was added. */
static int collect(keel_redis_conn_t *c, size_t n, uint64_t *pushed, char *err, size_t errlen) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    void *rep = NULL;
    if (redisGetReply(c->ctx, &rep) != REDIS_OK || !rep) {
      snprintf(err, errlen, "Redis at %s:%d: %s", c->addr.host, c->addr.port,
               c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
      return -1;
    }
    redisReply *r = rep;
    if (r->type == REDIS_REPLY_ERROR) {
      if (!bad) snprintf(err, errlen, "XADD %s: %s", c->addr.stream, r->str);
      bad = 1;
    } else {
      (*pushed)++;
    }
    freeReplyObject(r);
  }
  return bad ? -1 : 0;
}

keel_status keel_redis_stream_push(const char *url, const char *input, uint64_t maxlen, size_t batch,
                                   size_t max_line, uint64_t *pushed, char *err, size_t errlen) {
  keel_redis_addr a;
  *pushed = 0;
  keel_status st = keel_redis_addr_parse(url, &a, err, errlen);
  if (st != KEEL_OK) return st;
  if (!a.stream[0]) {
    snprintf(err, errlen, "%s: want ?stream=NAME", url);
    return KEEL_ECONFIG;
  }
  if (a.group[0] || a.consumer[0]) {
    snprintf(err, errlen, "%s: group= and consumer= are for reading a stream; push only adds to it", url);
    return KEEL_ECONFIG;
  }
  keel_line_reader_t *rd = NULL;
  keel_redis_conn_t *c = NULL;
  if ((st = keel_line_reader_open(input, max_line, &rd, err, errlen)) != KEEL_OK)
    return st == KEEL_ENOMEM ? st : KEEL_ECONFIG; /* a bad path, like keel run's */
  if ((st = keel_redis_conn_open(&a, 5000, &c, err, errlen)) != KEEL_OK) {
    keel_line_reader_close(rd);
    return st == KEEL_ENOMEM ? st : KEEL_ECONFIG; /* unreachable or refusing at start */
  }
  char ml[24];
  snprintf(ml, sizeof ml, "%llu", (unsigned long long)maxlen);
  size_t queued = 0;
  for (;;) {
    const char *line;
    size_t len;
    uint64_t no;
    keel_status r = keel_line_reader_next(rd, &line, &len, &no);
    if (r == KEEL_OK && keel_line_is_blank(line, len)) continue; /* as keel run skips it */
    if (r == KEEL_ELIMIT) {
      snprintf(err, errlen, "%s: line %llu is longer than %zu bytes", input, (unsigned long long)no, max_line);
      st = KEEL_ELIMIT;
    } else if (r != KEEL_OK && r != KEEL_EEOF) {
      snprintf(err, errlen, "%s: %s", input, keel_line_reader_error(rd));
      st = KEEL_EIO;
    }
    if (r == KEEL_OK) {
      const char *argv[7] = {"XADD", a.stream, "MAXLEN", "~", ml, "*", "data"};
      const char *v[8];
      size_t lens[8];
      int argc = 0;
      for (int j = 0; j < 7; j++)
        if (maxlen || j < 2 || j > 4) v[argc] = argv[j], lens[argc] = strlen(argv[j]), argc++;
      v[argc] = line, lens[argc++] = len;
      if (redisAppendCommandArgv(c->ctx, argc, v, lens) != REDIS_OK) {
        snprintf(err, errlen, "out of memory");
        st = KEEL_ENOMEM;
      } else {
        queued++;
      }
    }
    if (queued && (queued >= batch || r != KEEL_OK || st != KEEL_OK)) {
      if (collect(c, queued, pushed, err, errlen)) st = KEEL_EIO;
      queued = 0;
    }
    if (r != KEEL_OK || st != KEEL_OK) break;
  }
  keel_redis_conn_close(c);
  keel_line_reader_close(rd);
  return st;
}
