/* redis.c — Redis addresses and connections (see keel/redis.h).
 *
 * A connection is a hiredis context with a timeout on connect and on every
 * command (so a dead server never blocks a thread for long), authenticated
 * from the environment (KEEL_REDIS_PASSWORD, KEEL_REDIS_USER) and on the
 * address's db. A command that fails at the connection level marks the
 * connection broken; keel__redis_reconnect makes a fresh context. Callers
 * own the backoff between attempts (they know what they are waiting for). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "redis_int.h"

keel_mem_tag keel__redis_tag(void) {
  keel_mem_tag t = KEEL_MEM_OTHER;
  /* The same name always gives the same tag, so no state is kept here. */
  if (keel_mem_tag_register("redis", &t) != KEEL_OK) return KEEL_MEM_OTHER;
  return t;
}

uint64_t keel__redis_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void keel__redis_sleep_ms(uint64_t ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The scheme in any case (URL schemes are case-insensitive), and rediss://
 * too, so that a TLS address is refused by name, not taken for a path. */
int keel_redis_is_url(const char *s) { return s && (!strncasecmp(s, "redis://", 8) || !strncasecmp(s, "rediss://", 9)); }

int keel_redis_same_stream(const keel_redis_addr *a, const keel_redis_addr *b) {
  static const char *const loop[] = {"localhost", "127.0.0.1", "::1", NULL}; /* the parser strips brackets */
  if (!a || !b || !a->stream[0] || a->port != b->port || a->db != b->db || strcmp(a->stream, b->stream)) return 0;
  int la = 0, lb = 0;
  for (size_t i = 0; loop[i]; i++) {
    la |= !strcasecmp(a->host, loop[i]);
    lb |= !strcasecmp(b->host, loop[i]);
  }
  return (la && lb) || !strcasecmp(a->host, b->host);
}

static int parse_int(const char *s, size_t n, long lo, long hi, int *out) {
  if (n == 0 || n > 9) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

/* One NAME=VALUE of the query (s..end). */
static keel_status query_pair(const char *s, const char *end, keel_redis_addr *a, const char *url, char *err,
                              size_t errlen) {
  const char *eq = memchr(s, '=', (size_t)(end - s));
  if (!eq || eq == s || eq + 1 == end) {
    snprintf(err, errlen, "%s: the query wants NAME=VALUE pairs (stream, group, consumer)", url);
    return KEEL_ECONFIG;
  }
  size_t kn = (size_t)(eq - s), vn = (size_t)(end - eq - 1);
  char *dst = NULL;
  if (kn == 6 && !memcmp(s, "stream", 6)) dst = a->stream;
  else if (kn == 5 && !memcmp(s, "group", 5)) dst = a->group;
  else if (kn == 8 && !memcmp(s, "consumer", 8)) dst = a->consumer;
  if (!dst) {
    snprintf(err, errlen, "%s: unknown query key '%.*s' (known: stream, group, consumer)", url, (int)kn, s);
    return KEEL_ECONFIG;
  }
  if (dst[0]) {
    snprintf(err, errlen, "%s: '%.*s' is given twice", url, (int)kn, s);
    return KEEL_ECONFIG;
  }
  if (vn >= KEEL_REDIS_NAME_MAX) {
    snprintf(err, errlen, "%s: '%.*s' is longer than %d bytes", url, (int)kn, s, KEEL_REDIS_NAME_MAX - 1);
    return KEEL_ECONFIG;
  }
  memcpy(dst, eq + 1, vn);
  dst[vn] = '\0';
  return KEEL_OK;
}

keel_status keel_redis_addr_parse(const char *url, keel_redis_addr *out, char *err, size_t errlen) {
  if (!url || !out) return KEEL_EINVAL;
  keel_redis_addr a;
  memset(&a, 0, sizeof a);
  if (!keel_redis_is_url(url)) {
    snprintf(err, errlen, "'%s' is not a Redis address (redis://HOST:PORT[/DB][?stream=S&group=G&consumer=C])", url);
    return KEEL_ECONFIG;
  }
  if (!strncasecmp(url, "rediss://", 9)) {
    snprintf(err, errlen, "'%.200s': TLS (rediss://) is not supported; keel speaks plain redis:// (reach a TLS server "
             "through a local tunnel such as stunnel)", url);
    return KEEL_ECONFIG;
  }
  const char *h = url + 8;
  const char *q = strchr(h, '?');
  const char *end = q ? q : h + strlen(h);
  const char *at = memchr(h, '@', (size_t)(end - h));
  if (at) {
    snprintf(err, errlen, "redis address: no credentials in an address; set KEEL_REDIS_PASSWORD (and KEEL_REDIS_USER)");
    return KEEL_ECONFIG;
  }
  const char *slash = memchr(h, '/', (size_t)(end - h));
  const char *hp_end = slash ? slash : end;
  const char *colon = NULL, *host = h, *host_end;
  if (*h == '[') { /* an IPv6 address: redis://[::1]:6379 */
    const char *close = memchr(h, ']', (size_t)(hp_end - h));
    host = h + 1;
    host_end = close;
    colon = close && close + 1 < hp_end && close[1] == ':' ? close + 1 : NULL;
  } else {
    for (const char *s = h; s < hp_end; s++)
      if (*s == ':') colon = s;
    host_end = colon;
  }
  if (!colon || !host_end || host_end == host || (size_t)(host_end - host) >= KEEL_REDIS_HOST_MAX) {
    snprintf(err, errlen, "%s: want redis://HOST:PORT (a host and a port; [ADDRESS]:PORT for IPv6)", url);
    return KEEL_ECONFIG;
  }
  memcpy(a.host, host, (size_t)(host_end - host));
  if (parse_int(colon + 1, (size_t)(hp_end - colon - 1), 1, 65535, &a.port)) {
    snprintf(err, errlen, "%s: the port must be 1..65535", url);
    return KEEL_ECONFIG;
  }
  if (slash && parse_int(slash + 1, (size_t)(end - slash - 1), 0, 1000000, &a.db)) {
    snprintf(err, errlen, "%s: the db after '/' must be a number", url);
    return KEEL_ECONFIG;
  }
  for (const char *s = q ? q + 1 : NULL; s && *s;) {
    const char *amp = strchr(s, '&');
    const char *pe = amp ? amp : s + strlen(s);
    keel_status st = query_pair(s, pe, &a, url, err, errlen);
    if (st != KEEL_OK) return st;
    s = amp ? amp + 1 : NULL;
  }
  *out = a;
  return KEEL_OK;
}

static redisReply *plain_cmd(redisContext *ctx, int argc, const char **argv) {
  return redisCommandArgv(ctx, argc, argv, NULL);
}

/* AUTH from the environment, SELECT, then PING: a server that wants a
 * password we do not have says so here, not at the first real command. */
static keel_status handshake(keel_redis_conn_t *c, char *err, size_t errlen) {
  static const char *const what[] = {"AUTH", "SELECT", "PING"};
  const char *pw = getenv("KEEL_REDIS_PASSWORD");
  const char *user = getenv("KEEL_REDIS_USER");
  char dbs[16];
  snprintf(dbs, sizeof dbs, "%d", c->addr.db);
  for (int step = 0; step < 3; step++) {
    redisReply *r = NULL;
    if (step == 0 && pw && *pw) {
      const char *argv[3] = {"AUTH", user && *user ? user : pw, pw};
      r = plain_cmd(c->ctx, user && *user ? 3 : 2, argv);
    } else if (step == 1 && c->addr.db) {
      const char *argv[2] = {"SELECT", dbs};
      r = plain_cmd(c->ctx, 2, argv);
    } else if (step == 2) {
      const char *argv[1] = {"PING"};
      r = plain_cmd(c->ctx, 1, argv);
    } else {
      continue;
    }
    if (!r || r->type == REDIS_REPLY_ERROR) {
      /* The server's message never contains the password; ours neither. */
      snprintf(err, errlen, "redis://%s:%d: %s refused: %s%s", c->addr.host, c->addr.port, what[step],
               r ? r->str : c->ctx->errstr,
               step == 2 && r && !strncmp(r->str, "NOAUTH", 6) ? " (set KEEL_REDIS_PASSWORD)" : "");
      if (r) freeReplyObject(r);
      return KEEL_EIO;
    }
    freeReplyObject(r);
  }
  return KEEL_OK;
}

static keel_status dial(keel_redis_conn_t *c, char *err, size_t errlen) {
  struct timeval tv = {.tv_sec = c->timeout_ms / 1000, .tv_usec = (c->timeout_ms % 1000) * 1000};
  redisContext *ctx = redisConnectWithTimeout(c->addr.host, c->addr.port, tv);
  if (!ctx || ctx->err) {
    snprintf(err, errlen, "cannot connect to Redis at %s:%d: %s", c->addr.host, c->addr.port,
             ctx ? ctx->errstr : "out of memory");
    if (ctx) redisFree(ctx);
    return KEEL_EIO;
  }
  redisSetTimeout(ctx, tv);
  c->ctx = ctx;
  keel_status st = handshake(c, err, errlen);
  if (st != KEEL_OK) {
    redisFree(ctx);
    c->ctx = NULL;
    return st;
  }
  c->broken = 0;
  return KEEL_OK;
}

keel_status keel_redis_conn_open(const keel_redis_addr *a, int timeout_ms, keel_redis_conn_t **out, char *err,
                                 size_t errlen) {
  if (!a || !out) return KEEL_EINVAL;
  keel_redis_conn_t *c = keel_mem_calloc(keel__redis_tag(), 1, sizeof *c);
  if (!c) return KEEL_ENOMEM;
  c->addr = *a;
  c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
  keel_status st = dial(c, err, errlen);
  if (st != KEEL_OK) {
    keel_mem_free(c);
    return st;
  }
  *out = c;
  return KEEL_OK;
}

void keel_redis_conn_close(keel_redis_conn_t *c) {
  if (!c) return;
  if (c->ctx) redisFree(c->ctx);
  keel_mem_free(c);
}

keel_status keel__redis_reconnect(keel_redis_conn_t *c, char *err, size_t errlen) {
  if (c->ctx) redisFree(c->ctx);
  c->ctx = NULL;
  c->broken = 1;
  return dial(c, err, errlen);
}

redisReply *keel__redis_cmd(keel_redis_conn_t *c, int argc, const char **argv, const size_t *lens, char *err,
                            size_t errlen) {
  if (!c->ctx || c->broken) {
    snprintf(err, errlen, "not connected to Redis at %s:%d", c->addr.host, c->addr.port);
    c->broken = 1;
    return NULL;
  }
  redisReply *r = redisCommandArgv(c->ctx, argc, argv, lens);
  if (!r) {
    snprintf(err, errlen, "Redis at %s:%d: %s", c->addr.host, c->addr.port,
             c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
    c->broken = 1;
  }
  return r;
}
