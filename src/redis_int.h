/* redis_int.h — internals shared by redis.c (addresses, connections),
 * redis_l2.c (the L2 cache) and redis_stream.c (the stream source/sink). */
#ifndef KEEL_REDIS_INT_H
#define KEEL_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "keel/mem.h"
#include "keel/redis.h"

struct keel_redis_conn {
  redisContext *ctx; /* hiredis-owned memory; NULL while disconnected */
  keel_redis_addr addr;
  int timeout_ms;
  int broken; /* the last command failed at the connection level */
  uint64_t gen; /* the L2's: its up-generation when this connection was (re)made (redis_l2.c) */
};

/* The "redis" memory tag (registered on first use). */
keel_mem_tag keel__redis_tag(void);

/* Sends one command (argv borrowed) and returns its reply (owned:
 * freeReplyObject), or NULL when the connection failed (c->broken is then
 * set and err says why). A REDIS_REPLY_ERROR reply is returned as is. */
redisReply *keel__redis_cmd(keel_redis_conn_t *c, int argc, const char **argv, const size_t *lens, char *err,
                            size_t errlen);

/* Reconnects a broken connection (same address, auth, db). KEEL_EIO when
 * Redis is still unreachable. */
keel_status keel__redis_reconnect(keel_redis_conn_t *c, char *err, size_t errlen);

/* Monotonic nanoseconds; sleeps ms milliseconds. */
uint64_t keel__redis_now_ns(void);
void keel__redis_sleep_ms(uint64_t ms);

#include "keel/config.h"
/* The keys of [redis] (stream options), NULL-terminated (redis_stream.c). */
extern const char *const keel__redis_stream_keys[];

#endif
