/* keel/redis.h — Redis as a shared L2 cache behind memoized stages, and
 * the address and connection helpers the Redis stream source and sink use.
 *
 * Addresses have one form everywhere:
 *   redis://HOST:PORT[/DB][?stream=NAME&group=G&consumer=C]
 * A password never appears in an address or on a command line: it comes
 * from the environment, KEEL_REDIS_PASSWORD, with KEEL_REDIS_USER for an
 * ACL user. The client is hiredis (0.14, no TLS); its own allocations are
 * not counted by keel_mem, keel's are (tag "redis").
 *
 * L2 (keel_l2_t): one per pipeline, shared by every memoized stage and every
 * worker (a small pool of connections, one per concurrent caller). On an L1
 * miss the memo asks keel_l2_lookup: a hit returns the canonical value
 * bytes; a miss takes a short lock (SET key.lock TOKEN NX PX lock_ttl) so
 * that across processes one computes and the others poll with bounded
 * backoff for its result. A lock holder that dies only costs the lock's TTL.
 * When Redis goes away mid-run the L2 says "miss, not locked" for a while
 * (L1 only), warns once on stderr, and retries the connection with
 * exponential backoff; it never fails an event.
 *
 * Thread safety: keel_l2_* may be called from any thread; a keel_redis_conn_t
 * is used by one thread at a time. */
#ifndef KEEL_REDIS_H
#define KEEL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_REDIS_HOST_MAX 256
#define KEEL_REDIS_NAME_MAX 128

/* A parsed address; empty strings for absent parts. */
typedef struct keel_redis_addr {
  char host[KEEL_REDIS_HOST_MAX];
  int port;
  int db;
  char stream[KEEL_REDIS_NAME_MAX];
  char group[KEEL_REDIS_NAME_MAX];
  char consumer[KEEL_REDIS_NAME_MAX];
} keel_redis_addr;

/* True when s starts with "redis://" or "rediss://", in any case (a Redis
 * address, not a path; keel_redis_addr_parse refuses rediss://: no TLS). */
KEEL_EXTERN int keel_redis_is_url(const char *s);

/* True when a and b (borrowed) name one stream (named, not empty) of one
 * server: the same port, db and stream, and hosts of the same name, any
 * case, or both this machine's loopback (localhost, 127.0.0.1, ::1). Names
 * are compared, not resolved addresses. */
KEEL_EXTERN int keel_redis_same_stream(const keel_redis_addr *a, const keel_redis_addr *b);

/* Parses s (borrowed) into *out. KEEL_ECONFIG with a message naming the
 * problem: not redis://, no host, a bad port or db, an unknown query key,
 * a password in the address. */
KEEL_EXTERN keel_status keel_redis_addr_parse(const char *s, keel_redis_addr *out, char *err, size_t errlen);

typedef struct keel_redis_conn keel_redis_conn_t;

/* Connects (timeout_ms for the connection and each command), authenticates
 * from the environment and selects the db. KEEL_EIO with a message when the
 * server cannot be reached or refuses. *out is owned (keel_redis_conn_close). */
KEEL_EXTERN keel_status keel_redis_conn_open(const keel_redis_addr *a, int timeout_ms, keel_redis_conn_t **out,
                                             char *err, size_t errlen);
KEEL_EXTERN void keel_redis_conn_close(keel_redis_conn_t *c);

/* ---- L2 cache ---- */

typedef struct keel_l2 keel_l2_t;

typedef struct keel_l2_options {
  size_t size;          /* sizeof(keel_l2_options) */
  const char *url;      /* borrowed: redis://HOST:PORT[/DB] */
  uint64_t ttl_ms;      /* entries' TTL (0: 1 hour) */
  uint64_t lock_ttl_ms; /* the compute lock's TTL (0: 5000) */
  uint64_t wait_ms;     /* longest a waiter polls for another's result (0: lock_ttl_ms) */
  int timeout_ms;       /* connection and command timeout (0: 1000) */
  int quiet;            /* no warnings on stderr */
} keel_l2_options;

/* Counters since creation; exact each, read without stopping the run. */
typedef struct keel_l2_stats {
  uint64_t hits;          /* lookups answered from Redis */
  uint64_t misses;        /* lookups that returned no value: the caller computes */
  uint64_t waited_hits;   /* hits whose value another process computed while this one waited */
  uint64_t lock_waits;    /* lookups that found the key locked and waited */
  uint64_t lock_timeouts; /* waits that gave up and computed locally */
  uint64_t stores;        /* values written back */
  uint64_t errors;        /* failed Redis commands (connection lost, timeouts) */
  uint64_t degraded;      /* lookups skipped because Redis was down (L1 only) */
  uint64_t reconnects;    /* successful reconnections after a loss */
  uint64_t calls;         /* Redis round trips */
  double latency_s;       /* their total wall time */
  int down;               /* Redis is unreachable right now */
  uint64_t rejected;      /* values the caller refused (keel_l2_reject): misses too, not hits */
} keel_l2_stats;

/* Connects (pool of one to start). KEEL_ECONFIG for a bad address,
 * KEEL_EIO when Redis cannot be reached (a clear message in err). *out is
 * owned (keel_l2_destroy). */
KEEL_EXTERN keel_status keel_l2_create(const keel_l2_options *opt, keel_l2_t **out, char *err, size_t errlen);
KEEL_EXTERN void keel_l2_destroy(keel_l2_t *l2);

/* The result of a lookup: either a value (owned by the result until
 * keel_l2_result_release) or a miss; `locked` says the caller holds the
 * compute lock and must call keel_l2_store (or keel_l2_unlock). */
typedef struct keel_l2_result {
  int hit;
  int locked;
  const uint8_t *data; /* len bytes when hit; owned by the result (keel_l2_result_release) */
  size_t len;
  char token[32]; /* the lock's value, when locked */
  void *priv;     /* the reply holding data */
  int waited;     /* the hit came while waiting for another process's computation */
} keel_l2_result;

/* Looks `key` (borrowed, binary, within namespace ns) up. Never fails: a
 * Redis error is a miss without the lock (and is counted). */
KEEL_EXTERN void keel_l2_lookup(keel_l2_t *l2, const char *ns, const void *key, size_t key_len, keel_l2_result *res);

/* Writes val (borrowed) under key with the TTL, then drops res's lock if
 * held. Best effort: errors are counted, not returned. */
KEEL_EXTERN void keel_l2_store(keel_l2_t *l2, const char *ns, const void *key, size_t key_len, const void *val,
                               size_t val_len, keel_l2_result *res);

/* Drops res's lock if held (the computation failed). */
KEEL_EXTERN void keel_l2_unlock(keel_l2_t *l2, const char *ns, const void *key, size_t key_len, keel_l2_result *res);

/* Frees a hit's value. */
KEEL_EXTERN void keel_l2_result_release(keel_l2_result *res);

/* The caller refuses a hit's value (it is not a value the caller could
 * have stored: cut bytes, another writer's format): the lookup counts as a
 * miss and as `rejected` instead of a hit, and the value is freed. The
 * caller then computes, and its keel_l2_store replaces the value. */
KEEL_EXTERN void keel_l2_reject(keel_l2_t *l2, keel_l2_result *res);

KEEL_EXTERN void keel_l2_get_stats(keel_l2_t *l2, keel_l2_stats *out);

/* ---- loading a stream ---- */

/* Adds every non-blank line of the NDJSON file `input` ("-": stdin) to the
 * stream of `url` (redis://HOST:PORT[/DB]?stream=S) as an entry with one
 * field, data = the line; MAXLEN ~ maxlen when maxlen > 0. Lines are sent
 * pipelined, `batch` per round trip. *pushed gets the number of entries
 * added, also on failure (what is in Redis). KEEL_ECONFIG for a bad
 * address or a Redis that cannot be reached or refuses the connection (its
 * AUTH, SELECT or PING) at start, or a file that cannot be opened; KEEL_EIO
 * (message) when Redis or the file fails later. Lines longer
 * than max_line are refused (KEEL_ELIMIT with the line number). */
KEEL_EXTERN keel_status keel_redis_stream_push(const char *url, const char *input, uint64_t maxlen, size_t batch,
                                               size_t max_line, uint64_t *pushed, char *err, size_t errlen);

/* ---- stream counters (source and sink; filled by the pipeline) ---- */

typedef struct keel_stream_stats {
  int active;            /* the run read from a stream */
  uint64_t read;         /* entries delivered to this consumer (new and claimed) */
  uint64_t claimed;      /* entries claimed from idle consumers (XAUTOCLAIM) */
  uint64_t redeliveries; /* entries delivered more than once (claimed or re-read) */
  uint64_t acked;        /* XACKed after their output was written */
  uint64_t dead_lettered; /* poison entries (more than max deliveries) acked to the dead-letter file */
  uint64_t errors;       /* failed stream commands (source and output stream) */
  uint64_t reconnects;   /* successful reconnections after a loss (source and output stream) */
  int64_t pending;       /* the group's pending entries at the last check (-1 unknown) */
  int64_t lag;           /* entries not yet delivered to the group at the last check (-1 unknown) */
  uint64_t written;      /* entries added to the output stream */
  uint64_t deleted;      /* pending entries deleted from the stream (trimmed) before they were
                            processed: each is in the dead-letter file, without its data */
} keel_stream_stats;

#ifdef __cplusplus
}
#endif
#endif
