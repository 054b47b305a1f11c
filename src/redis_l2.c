/* redis_l2.c — Redis as a shared L2 cache (see keel/redis.h).
 *
 * Keys: "keel:v:" NS KEY holds a value, "keel:l:" NS KEY its compute lock.
 * NS is the memo's namespace (stage name, stage version, catalog version,
 * and the hash of the stage's [stage.NAME] settings when it has any),
 * KEY the memo's canonical key bytes, so two stages or two versions never
 * share an entry, and values are the very bytes L1 stores.
 *
 * Single flight across processes: a lookup is one Lua script, so it is
 * atomic: the value if there is one, else the lock with SET NX PX (a token
 * unique to this process and lookup). A miss that finds the lock held polls
 * the same script with backoff (1 ms doubling to 32 ms) for at most wait_ms,
 * so it gets the value, or the lock once it expired: a dead holder only
 * costs the lock's TTL. The holder stores the value and deletes the lock,
 * if it still holds it, in one more script. A hit is one round trip, a miss
 * two.
 *
 * Connections: a pool (idle stack under pool_lock) grows to the number of
 * threads using the L2 at once. Failure handling: a connection-level error
 * marks the L2 down for a backoff period (100 ms doubling to 5 s); while down
 * every lookup is a plain miss (L1 only) without touching the network. The
 * first lookup after the period reconnects; the transition to down and back
 * is reported once each on stderr.
 *
 * Concurrency: counters are relaxed atomics; down_until/backoff/said_down
 * are guarded by pool_lock. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "random_int.h"
#include "redis_int.h"

#define POOL_MAX 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* KEYS: value, lock; ARGV: token, lock TTL. {1, value} | {2} (locked) | {0}. */
static const char lookup_lua[] =
    "local v = redis.call('GET', KEYS[1]) if v then return {1, v} end "
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end return {0}";
/* KEYS: value, lock; ARGV: value, TTL, token ('' when not holding the lock). */
static const char store_lua[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end return 1";
/* KEYS: lock; ARGV: token. */
static const char unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

struct keel_l2 {
  keel_redis_addr addr;
  uint64_t ttl_ms, lock_ttl_ms, wait_ms;
  int timeout_ms, quiet;
  pthread_mutex_t pool_lock;
  keel_redis_conn_t *idle[POOL_MAX]; /* guarded by pool_lock */
  size_t n_idle;
  uint64_t down_until_ns; /* guarded by pool_lock; 0 = up */
  uint64_t backoff_ms;    /* guarded by pool_lock */
  int down;               /* guarded by pool_lock */
  int probing;            /* guarded by pool_lock: a thread is trying to reconnect while down */
  uint64_t gen;           /* guarded by pool_lock: recoveries so far (a connection made before the last is stale) */
  char said_reply[48];    /* guarded by pool_lock: the error reply last told (its start) */
  uint64_t said_reply_ns; /* guarded by pool_lock: when */
  uint64_t nonce;         /* random per L2 client: tokens unique across hosts and containers */
  _Atomic uint64_t tokens;
  _Atomic uint64_t hits, misses, rejected, waited_hits, lock_waits, lock_timeouts, stores, errors, degraded, reconnects,
      calls, latency_ns;
};

static void add(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }

/* Marks the L2 down after a connection-level failure on connection c
 * (NULL: one that could not be made). The backoff starts at its least with
 * the first failure and doubles with each failed probe (`probe`: the one
 * reconnect take() tries at a time while down), not with each call that
 * was in flight when the server went: eight workers' failures at once
 * took it to its most, and a server back within half a second went unused
 * for five. The idle connections go with the first failure: they lead to
 * the server that went, and taken after it came back each would fail
 * once more and mark it down again. A failure on a connection made before
 * the last recovery (a call in flight since the outage) is not a new
 * outage. */
static void went_down(keel_l2_t *l2, const keel_redis_conn_t *c, const char *why, int probe) {
  keel_redis_conn_t *stale[POOL_MAX];
  size_t n = 0;
  pthread_mutex_lock(&l2->pool_lock);
  if (probe) l2->probing = 0;
  if (!l2->down && c && c->gen != l2->gen) {
    pthread_mutex_unlock(&l2->pool_lock);
    return;
  }
  int said = l2->down;
  if (!said) {
    l2->backoff_ms = BACKOFF_MIN_MS;
    n = l2->n_idle;
    memcpy(stale, l2->idle, n * sizeof stale[0]);
    l2->n_idle = 0;
  } else if (probe) {
    l2->backoff_ms = l2->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l2->backoff_ms * 2;
  }
  if (!said || probe) l2->down_until_ns = keel__redis_now_ns() + l2->backoff_ms * 1000000u;
  l2->down = 1;
  pthread_mutex_unlock(&l2->pool_lock);
  for (size_t i = 0; i < n; i++) keel_redis_conn_close(stale[i]);
  if (!said && !l2->quiet)
    fprintf(stderr, "keel: warning: L2 cache lost (%s): continuing on L1 only, retrying with backoff\n", why);
}

/* A connection to use, or NULL while down (the lookup degrades to L1). */
static keel_redis_conn_t *take(keel_l2_t *l2) {
  pthread_mutex_lock(&l2->pool_lock);
  if (l2->down && (l2->probing || keel__redis_now_ns() < l2->down_until_ns)) {
    pthread_mutex_unlock(&l2->pool_lock);
    add(&l2->degraded, 1);
    return NULL;
  }
  keel_redis_conn_t *c = l2->n_idle ? l2->idle[--l2->n_idle] : NULL;
  int was_down = l2->down;
  if (was_down) l2->probing = 1; /* one prober at a time: a probe of a silent host takes the whole timeout */
  uint64_t gen = l2->gen;
  pthread_mutex_unlock(&l2->pool_lock);
  char err[256] = "out of memory";
  keel_status st = KEEL_OK;
  int fresh = !c || c->broken || was_down;
  if (!c) st = keel_redis_conn_open(&l2->addr, l2->timeout_ms, &c, err, sizeof err);
  else if (c->broken || was_down) st = keel__redis_reconnect(c, err, sizeof err);
  if (st == KEEL_OK && fresh) c->gen = was_down ? gen + 1 : gen;
  if (st != KEEL_OK) {
    if (c) {
      pthread_mutex_lock(&l2->pool_lock);
      if (l2->n_idle < POOL_MAX) l2->idle[l2->n_idle++] = c;
      else keel_redis_conn_close(c);
      pthread_mutex_unlock(&l2->pool_lock);
    }
    add(&l2->errors, 1);
    add(&l2->degraded, 1);
    went_down(l2, NULL, err, was_down);
    return NULL;
  }
  if (was_down) {
    pthread_mutex_lock(&l2->pool_lock);
    int said = l2->down;
    l2->down = 0;
    l2->probing = 0;
    l2->down_until_ns = 0;
    l2->gen = gen + 1;
    pthread_mutex_unlock(&l2->pool_lock);
    if (said) {
      add(&l2->reconnects, 1);
      if (!l2->quiet) fprintf(stderr, "keel: L2 cache at %s:%d reachable again\n", l2->addr.host, l2->addr.port);
    }
  }
  return c;
}

static void give_back(keel_l2_t *l2, keel_redis_conn_t *c) {
  pthread_mutex_lock(&l2->pool_lock);
  if (l2->n_idle < POOL_MAX) {
    l2->idle[l2->n_idle++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&l2->pool_lock);
  keel_redis_conn_close(c);
}

/* Tells an error reply (OOM under maxmemory, NOPERM, WRONGTYPE...) when it
 * differs from the last told (by its start: older servers begin every
 * script error with "ERR") or a minute has passed: counted alone, it left
 * the operator a number and no reason. The call goes on without the L2,
 * as for a lost connection. */
static void said_error_reply(keel_l2_t *l2, const char *msg) {
  char kind[sizeof l2->said_reply];
  snprintf(kind, sizeof kind, "%s", msg);
  uint64_t now = keel__redis_now_ns();
  pthread_mutex_lock(&l2->pool_lock);
  int tell = strcmp(kind, l2->said_reply) != 0 || now - l2->said_reply_ns >= 60000000000ull;
  if (tell) {
    memcpy(l2->said_reply, kind, sizeof kind);
    l2->said_reply_ns = now;
  }
  pthread_mutex_unlock(&l2->pool_lock);
  if (tell && !l2->quiet)
    fprintf(stderr, "keel: warning: L2 cache at %s:%d replied with an error (%.200s): that lookup or store went "
            "without the L2 (counted in the summary's l2 errors)\n", l2->addr.host, l2->addr.port, msg);
}

/* One round trip, timed and counted; NULL on a connection failure (the L2
 * goes down) or an error reply (counted, freed). */
static redisReply *call(keel_l2_t *l2, keel_redis_conn_t *c, int argc, const char **argv, const size_t *lens) {
  char err[256];
  uint64_t t0 = keel__redis_now_ns();
  redisReply *r = keel__redis_cmd(c, argc, argv, lens, err, sizeof err);
  add(&l2->latency_ns, keel__redis_now_ns() - t0);
  add(&l2->calls, 1);
  if (!r) {
    add(&l2->errors, 1);
    went_down(l2, c, err, 0);
    return NULL;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    add(&l2->errors, 1);
    said_error_reply(l2, r->str ? r->str : "");
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

keel_status keel_l2_create(const keel_l2_options *o, keel_l2_t **out, char *err, size_t errlen) {
  if (!o || !o->url || !out || o->size < sizeof *o) return KEEL_EINVAL;
  keel_redis_addr a;
  keel_status st = keel_redis_addr_parse(o->url, &a, err, errlen);
  if (st != KEEL_OK) return st;
  if (a.stream[0] || a.group[0] || a.consumer[0]) {
    snprintf(err, errlen, "--l2 %s: an L2 address takes no stream, group or consumer", o->url);
    return KEEL_ECONFIG;
  }
  keel_l2_t *l2 = keel_mem_calloc(keel__redis_tag(), 1, sizeof *l2);
  if (!l2) return KEEL_ENOMEM;
  l2->addr = a;
  l2->ttl_ms = o->ttl_ms ? o->ttl_ms : 3600000u;
  l2->lock_ttl_ms = o->lock_ttl_ms ? o->lock_ttl_ms : 5000u;
  l2->wait_ms = o->wait_ms ? o->wait_ms : l2->lock_ttl_ms;
  l2->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 1000;
  l2->quiet = o->quiet;
  /* A lock's token must be this client's alone: a process id is not (two
   * containers are both process 1), and a slow holder whose lock expired
   * would then unlock or store under another's. */
  l2->nonce = keel__random_u64(l2);
  l2->nonce &= 0xffffffffffffull; /* 12 hex digits: the token fits its 32 bytes */
  pthread_mutex_init(&l2->pool_lock, NULL);
  char e[256];
  st = keel_redis_conn_open(&a, l2->timeout_ms, &l2->idle[0], e, sizeof e);
  if (st != KEEL_OK) {
    snprintf(err, errlen, "L2 cache %s: %s", o->url, e);
    keel_l2_destroy(l2);
    return st == KEEL_ENOMEM ? st : KEEL_EIO;
  }
  l2->n_idle = 1;
  *out = l2;
  return KEEL_OK;
}

void keel_l2_destroy(keel_l2_t *l2) {
  if (!l2) return;
  for (size_t i = 0; i < l2->n_idle; i++) keel_redis_conn_close(l2->idle[i]);
  pthread_mutex_destroy(&l2->pool_lock);
  keel_mem_free(l2);
}

/* "keel:" kind ":" ns key, in buf (caller's) or a keel_mem block. */
static char *make_key(char kind, const char *ns, const void *key, size_t key_len, char *buf, size_t cap, size_t *len) {
  size_t nl = strlen(ns), n = 7 + nl + key_len;
  char *k = n <= cap ? buf : keel_mem_alloc(keel__redis_tag(), n);
  if (!k) return NULL;
  memcpy(k, "keel:", 5);
  k[5] = kind;
  k[6] = ':';
  memcpy(k + 7, ns, nl);
  memcpy(k + 7 + nl, key, key_len);
  *len = n;
  return k;
}

static void free_key(char *k, const char *buf) {
  if (k != buf) keel_mem_free(k);
}

/* One atomic step (a Lua script, so nothing interleaves): the value if
 * there is one, else the lock if it is free. 1: hit (res holds the value),
 * 2: locked by us, 0: locked by another, -1: Redis failed. */
static int probe(keel_l2_t *l2, keel_redis_conn_t *c, const char *vk, size_t vlen, const char *lk, size_t llen,
                 keel_l2_result *res) {
  char ttl[24];
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)l2->lock_ttl_ms);
  snprintf(res->token, sizeof res->token, "%012llx-%llx", (unsigned long long)l2->nonce,
           (unsigned long long)atomic_fetch_add(&l2->tokens, 1));
  const char *argv[7] = {"EVAL", lookup_lua, "2", vk, lk, res->token, ttl};
  size_t lens[7] = {4, sizeof lookup_lua - 1, 1, vlen, llen, strlen(res->token), strlen(ttl)};
  redisReply *r = call(l2, c, 7, argv, lens);
  if (!r) return -1;
  int what = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_INTEGER
                 ? (int)r->element[0]->integer : -1;
  if (what == 1 && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING) {
    res->hit = 1;
    res->data = (const uint8_t *)r->element[1]->str;
    res->len = (size_t)r->element[1]->len;
    res->priv = r;
    return 1;
  }
  freeReplyObject(r);
  if (what == 2) res->locked = 1;
  return what == 2 ? 2 : what == 0 ? 0 : -1;
}

/* Someone else computes: poll for the value, taking a vanished lock over. */
static void wait_for_value(keel_l2_t *l2, keel_redis_conn_t *c, const char *vk, size_t vlen, const char *lk,
                           size_t llen, keel_l2_result *res) {
  add(&l2->lock_waits, 1);
  uint64_t deadline = keel__redis_now_ns() + l2->wait_ms * 1000000u, pause = 1;
  while (keel__redis_now_ns() < deadline) {
    keel__redis_sleep_ms(pause);
    if (pause < 32) pause *= 2;
    int got = probe(l2, c, vk, vlen, lk, llen, res);
    if (got == 1) {
      add(&l2->waited_hits, 1);
      res->waited = 1;
    }
    if (got != 0) return;
  }
  add(&l2->lock_timeouts, 1);
}

void keel_l2_lookup(keel_l2_t *l2, const char *ns, const void *key, size_t key_len, keel_l2_result *res) {
  memset(res, 0, sizeof *res);
  keel_redis_conn_t *c = take(l2);
  if (!c) {
    add(&l2->misses, 1);
    return;
  }
  char vb[512], lb[512];
  size_t vlen = 0, llen = 0;
  char *vk = make_key('v', ns, key, key_len, vb, sizeof vb, &vlen);
  char *lk = make_key('l', ns, key, key_len, lb, sizeof lb, &llen);
  if (vk && lk && probe(l2, c, vk, vlen, lk, llen, res) == 0) wait_for_value(l2, c, vk, vlen, lk, llen, res);
  add(res->hit ? &l2->hits : &l2->misses, 1);
  free_key(vk, vb);
  free_key(lk, lb);
  give_back(l2, c);
}

/* Runs the unlock script on c for res's lock key. */
static void unlock_on(keel_l2_t *l2, keel_redis_conn_t *c, const char *lk, size_t llen, keel_l2_result *res) {
  const char *argv[5] = {"EVAL", unlock_lua, "1", lk, res->token};
  size_t lens[5] = {4, sizeof unlock_lua - 1, 1, llen, strlen(res->token)};
  redisReply *r = call(l2, c, 5, argv, lens);
  if (r) freeReplyObject(r);
  res->locked = 0;
}

void keel_l2_store(keel_l2_t *l2, const char *ns, const void *key, size_t key_len, const void *val, size_t val_len,
                   keel_l2_result *res) {
  keel_redis_conn_t *c = take(l2);
  if (!c) {
    res->locked = 0; /* its TTL frees the lock */
    return;
  }
  char vb[512], lb[512], ttl[24];
  size_t vlen = 0, llen = 0;
  char *vk = make_key('v', ns, key, key_len, vb, sizeof vb, &vlen);
  char *lk = make_key('l', ns, key, key_len, lb, sizeof lb, &llen);
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)l2->ttl_ms);
  if (vk && lk) { /* the value, then our lock (if we hold it) in one step */
    const char *tok = res->locked ? res->token : "";
    const char *argv[7] = {"EVAL", store_lua, "2", vk, lk, val, ttl};
    const char *a2[8];
    size_t lens[8] = {4, sizeof store_lua - 1, 1, vlen, llen, val_len, strlen(ttl), strlen(tok)};
    memcpy(a2, argv, sizeof argv);
    a2[7] = tok;
    redisReply *r = call(l2, c, 8, a2, lens);
    if (r) {
      add(&l2->stores, 1);
      freeReplyObject(r);
    }
  }
  res->locked = 0;
  free_key(vk, vb);
  free_key(lk, lb);
  give_back(l2, c);
}

void keel_l2_unlock(keel_l2_t *l2, const char *ns, const void *key, size_t key_len, keel_l2_result *res) {
  if (!res->locked) return;
  keel_redis_conn_t *c = take(l2);
  res->locked = 0;
  if (!c) return;
  char lb[512];
  size_t llen = 0;
  char *lk = make_key('l', ns, key, key_len, lb, sizeof lb, &llen);
  res->locked = 1;
  if (lk) unlock_on(l2, c, lk, llen, res);
  res->locked = 0;
  free_key(lk, lb);
  give_back(l2, c);
}

void keel_l2_result_release(keel_l2_result *res) {
  if (res && res->priv) freeReplyObject(res->priv);
  if (res) {
    res->priv = NULL;
    res->data = NULL;
    res->hit = 0;
  }
}

void keel_l2_reject(keel_l2_t *l2, keel_l2_result *res) {
  if (!l2 || !res || !res->hit) return;
  add(&l2->rejected, 1);
  add(&l2->misses, 1);
  atomic_fetch_sub_explicit(&l2->hits, 1, memory_order_relaxed);
  if (res->waited) atomic_fetch_sub_explicit(&l2->waited_hits, 1, memory_order_relaxed);
  keel_l2_result_release(res);
}

void keel_l2_get_stats(keel_l2_t *l2, keel_l2_stats *out) {
  memset(out, 0, sizeof *out);
  if (!l2) return;
  out->hits = atomic_load_explicit(&l2->hits, memory_order_relaxed);
  out->misses = atomic_load_explicit(&l2->misses, memory_order_relaxed);
  out->waited_hits = atomic_load_explicit(&l2->waited_hits, memory_order_relaxed);
  out->lock_waits = atomic_load_explicit(&l2->lock_waits, memory_order_relaxed);
  out->lock_timeouts = atomic_load_explicit(&l2->lock_timeouts, memory_order_relaxed);
  out->stores = atomic_load_explicit(&l2->stores, memory_order_relaxed);
  out->errors = atomic_load_explicit(&l2->errors, memory_order_relaxed);
  out->degraded = atomic_load_explicit(&l2->degraded, memory_order_relaxed);
  out->reconnects = atomic_load_explicit(&l2->reconnects, memory_order_relaxed);
  out->calls = atomic_load_explicit(&l2->calls, memory_order_relaxed);
  out->rejected = atomic_load_explicit(&l2->rejected, memory_order_relaxed);
  out->latency_s = atomic_load_explicit(&l2->latency_ns, memory_order_relaxed) / 1e9;
  pthread_mutex_lock(&l2->pool_lock);
  out->down = l2->down;
  pthread_mutex_unlock(&l2->pool_lock);
}
