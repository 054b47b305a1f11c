/* test_cache_mt.c — the cache under concurrency (also run under TSan):
 * the byte bound while threads insert values of varied sizes, single-flight
 * loading with 8 threads on one key (value and error) and with 6 threads on
 * 48 keys whose hashes collide, nested loads, readers checking
 * value integrity while writers evict, remove and clear (epoch reclamation),
 * tables that grow (and are freed) under readers, scans (for_each,
 * remove_if) beside writers and readers, and statistics that add up
 * across threads. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "keel/cache.h"
#include "testutil.h"

/* Sized to finish in seconds under ThreadSanitizer on 2 cores. */
#define PUTS_PER_WRITER 8000
#define LOADS_PER_THREAD 12000

static keel_cache_options base_opts(uint64_t max_bytes) {
  keel_cache_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.max_bytes = max_bytes;
  o.tag = KEEL_MEM_CACHE;
  return o;
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* A value for key k: its length and bytes follow from k, so a reader can
 * verify what it got. */
static size_t fill_value(uint64_t k, unsigned char *buf) {
  size_t len = 8 + (size_t)(k * 2654435761u % 700);
  for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(k + i);
  return len;
}

static int check_value(uint64_t k, const unsigned char *p, size_t len) {
  unsigned char buf[1024];
  size_t want = fill_value(k, buf);
  return len == want && memcmp(p, buf, len) == 0;
}

typedef struct shared {
  keel_cache_t *c;
  uint64_t cap;
  atomic_int stop;
  atomic_int bad;
  atomic_ulong lookups;
  atomic_ulong over;
  atomic_ulong puts; /* puts done by all writers */
  atomic_ulong done; /* test_resize_under_readers: keys 0..done-1 are in the cache */
  uint64_t keys; /* the key space */
  unsigned id;
} shared;

typedef struct tharg {
  shared *s;
  unsigned id;
} tharg;

static void *writer(void *p) {
  tharg *a = p;
  uint64_t seed = 0x9e3779b97f4a7c15ull * (a->id + 1);
  unsigned char buf[1024];
  for (int i = 0; i < PUTS_PER_WRITER; i++) {
    uint64_t k = rnd(&seed) % a->s->keys;
    size_t len = fill_value(k, buf);
    if (keel_cache_put(a->s->c, &k, sizeof k, buf, len) != KEEL_OK) atomic_store(&a->s->bad, 1);
    if (i % 7 == 0) (void)keel_cache_remove(a->s->c, &k, sizeof k);
    /* Clears and cleanups reclaim at once what no reader can still see,
     * with readers running. The clear comes after a quarter of all puts,
     * whichever writer does it: the other three quarters overfill both
     * caches again (the test asserts evictions). Tied to one writer's
     * count, it could come late, leaving too little to overfill them. */
    if (atomic_fetch_add(&a->s->puts, 1) + 1 == 3 * PUTS_PER_WRITER / 4) keel_cache_clear(a->s->c);
    if (a->id == 1 && i % 500 == 0) (void)keel_cache_cleanup(a->s->c);
  }
  return NULL;
}

static void *watcher(void *p) {
  shared *s = p;
  while (!atomic_load(&s->stop)) {
    keel_cache_stats st;
    keel_cache_get_stats(s->c, &st);
    if (st.bytes > s->cap) atomic_fetch_add(&s->over, 1);
  }
  return NULL;
}

typedef struct readctx {
  uint64_t k;
  int ok;
} readctx;

static void read_fn(void *ctx, const void *data, size_t len) {
  readctx *r = ctx;
  r->ok = check_value(r->k, data, len);
}

/* keel_cache_read_many's hits: keys[i]'s value must be keys[i]'s. */
typedef struct manyctx {
  const uint64_t *k;
  int ok;
} manyctx;

static void read_many_fn(void *ctx, size_t i, const void *data, size_t len) {
  manyctx *m = ctx;
  if (!check_value(m->k[i], data, len)) m->ok = 0;
}

static void *reader_fn(void *p) {
  tharg *a = p;
  uint64_t seed = 0x5851f42d4c957f2dull * (a->id + 3);
  unsigned long n = 0;
  while (!atomic_load(&a->s->stop)) {
    /* Every 64th round, a batch of 20 keys through keel_cache_read_many. */
    if (n % 128 == 64) {
      uint64_t k[20];
      const void *kp[20];
      size_t kl[20];
      for (int i = 0; i < 20; i++) k[i] = rnd(&seed) % a->s->keys, kp[i] = &k[i], kl[i] = sizeof k[i];
      manyctx m = {k, 1};
      (void)keel_cache_read_many(a->s->c, 20, kp, kl, read_many_fn, &m);
      if (!m.ok) atomic_store(&a->s->bad, 4);
      n += 20;
    }
    /* Reader 1 pins the epoch for batches of lookups (keel_cache_pin). */
    if (a->id == 1 && n % 128 == 0) keel_cache_pin(a->s->c);
    if (a->id == 1 && n % 128 == 126) keel_cache_unpin(a->s->c);
    uint64_t k = rnd(&seed) % a->s->keys;
    keel_cache_value_t *v;
    if (keel_cache_get(a->s->c, &k, sizeof k, &v) == KEEL_OK) {
      if (!check_value(k, keel_cache_value_data(v), keel_cache_value_len(v))) atomic_store(&a->s->bad, 2);
      keel_cache_value_release(v);
    }
    readctx rc = {k, 1};
    (void)keel_cache_read(a->s->c, &k, sizeof k, read_fn, &rc);
    if (!rc.ok) atomic_store(&a->s->bad, 3);
    n += 2;
  }
  if (a->id == 1 && n % 128 != 0) keel_cache_unpin(a->s->c);
  atomic_fetch_add(&a->s->lookups, n);
  return NULL;
}

/* Writers of varied sizes over `keys` keys, readers verifying bytes, a
 * watcher of the bound; the cache has `shards` shards. */
static void run_bound(uint64_t cap, uint64_t keys, uint64_t shards) {
  int64_t before = tu_tracked_bytes();
  static const char *pols[] = {"default", "lru"};
  for (int p = 0; p < 2; p++) {
    shared s;
    memset(&s, 0, sizeof s);
    s.cap = cap;
    s.keys = keys;
    keel_cache_options o = base_opts(s.cap);
    o.policy = pols[p];
    assert_int_equal(keel_cache_create(&o, &s.c), KEEL_OK);
    pthread_t w[3], r[2], wt;
    tharg wa[3], ra[2];
    pthread_create(&wt, NULL, watcher, &s);
    for (unsigned i = 0; i < 2; i++) {
      ra[i] = (tharg){&s, i};
      pthread_create(&r[i], NULL, reader_fn, &ra[i]);
    }
    for (unsigned i = 0; i < 3; i++) {
      wa[i] = (tharg){&s, i};
      pthread_create(&w[i], NULL, writer, &wa[i]);
    }
    for (unsigned i = 0; i < 3; i++) pthread_join(w[i], NULL);
    atomic_store(&s.stop, 1);
    for (unsigned i = 0; i < 2; i++) pthread_join(r[i], NULL);
    pthread_join(wt, NULL);
    assert_int_equal(atomic_load(&s.bad), 0);
    assert_int_equal(atomic_load(&s.over), 0);
    keel_cache_stats st;
    keel_cache_get_stats(s.c, &st);
    assert_true(st.bytes <= s.cap);
    assert_true(st.entries > 0);
    assert_int_equal(st.shards, shards);
    assert_true(st.evictions > 0);
    assert_int_equal(st.hits + st.misses, atomic_load(&s.lookups));
    assert_int_equal(st.puts, 3 * PUTS_PER_WRITER);
    assert_int_equal(st.puts, st.entries + st.evictions + st.replacements + st.removals);
    keel_cache_destroy(s.c);
  }
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_bound_and_integrity(void **state) {
  (void)state;
  run_bound(200 * (keel_cache_entry_overhead() + 300), 3000, 1);
}

/* A cache large enough to be split: 4 shards of 1 MiB, each with its own
 * lock, table and policy, still bounded as a whole at every moment. */
static void test_sharded_bound(void **state) {
  (void)state;
  run_bound(4u << 20, 40000, 4);
}

/* set_capacity under writers and a reader of statistics: the bound the
 * statistics show is never below the bytes they show, though a shrink
 * evicts shard by shard (it was published before the shards evicted). */
typedef struct shrinking {
  keel_cache_t *c;
  atomic_int stop, over;
  atomic_long checks;
} shrinking;

static void *shrink_writer(void *p) {
  shrinking *a = p;
  static const char val[2000];
  uint64_t seed = 99;
  for (uint64_t i = 0; !atomic_load(&a->stop); i++) {
    uint64_t k = rnd(&seed) % 20000;
    (void)keel_cache_put(a->c, &k, sizeof k, val, (size_t)(rnd(&seed) % sizeof val));
  }
  return NULL;
}

static void *stats_watcher(void *p) {
  shrinking *a = p;
  while (!atomic_load(&a->stop)) {
    keel_cache_stats st;
    keel_cache_get_stats(a->c, &st);
    if (st.bytes > st.max_bytes) atomic_fetch_add(&a->over, 1);
    atomic_fetch_add(&a->checks, 1);
  }
  return NULL;
}

static void test_shrink_under_writers(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  shrinking a = {0};
  keel_cache_options o = base_opts(4u << 20);
  assert_int_equal(keel_cache_create(&o, &a.c), KEEL_OK);
  pthread_t w, s;
  pthread_create(&w, NULL, shrink_writer, &a);
  pthread_create(&s, NULL, stats_watcher, &a);
  for (int i = 0; i < 400; i++) {
    assert_int_equal(keel_cache_set_capacity(a.c, i & 1 ? 4u << 20 : 1u << 20), KEEL_OK);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&a.stop, 1);
  pthread_join(w, NULL);
  pthread_join(s, NULL);
  assert_true(atomic_load(&a.checks) > 0);
  assert_int_equal(atomic_load(&a.over), 0);
  keel_cache_destroy(a.c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- single flight ---------------------------------------------------------- */

typedef struct flight {
  keel_cache_t *c;
  atomic_int calls;
  atomic_int arrived;
  keel_status fail;
  atomic_int got_ok, got_err;
} flight;

static keel_status slow_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  flight *f = ctx;
  atomic_fetch_add(&f->calls, 1);
  /* Stay in the loader until every thread has arrived (or 2 s passed). */
  for (int i = 0; i < 2000 && atomic_load(&f->arrived) < 8; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, NULL);
  if (f->fail) return f->fail;
  return keel_cache_load_set(ld, key, len);
}

static void *flyer(void *p) {
  flight *f = p;
  keel_cache_value_t *v = NULL;
  atomic_fetch_add(&f->arrived, 1);
  keel_status st = keel_cache_get_or_load(f->c, "the-key", 7, slow_loader, f, &v);
  if (st == KEEL_OK && keel_cache_value_len(v) == 7 && !memcmp(keel_cache_value_data(v), "the-key", 7))
    atomic_fetch_add(&f->got_ok, 1);
  if (st == f->fail && st != KEEL_OK) atomic_fetch_add(&f->got_err, 1);
  keel_cache_value_release(v);
  return NULL;
}

static void run_flight(flight *f) {
  pthread_t t[8];
  atomic_store(&f->arrived, 0);
  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, flyer, f);
  for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
}

static void test_single_flight(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(1 << 20);
  flight f;
  memset(&f, 0, sizeof f);
  assert_int_equal(keel_cache_create(&o, &f.c), KEEL_OK);
  /* An error reaches every waiter and is not cached. */
  f.fail = KEEL_EIO;
  run_flight(&f);
  assert_int_equal(atomic_load(&f.calls), 1);
  assert_int_equal(atomic_load(&f.got_err), 8);
  /* Then a value: loaded once, all eight get it. */
  f.fail = KEEL_OK;
  atomic_store(&f.calls, 0);
  run_flight(&f);
  assert_int_equal(atomic_load(&f.calls), 1);
  assert_int_equal(atomic_load(&f.got_ok), 8);
  keel_cache_stats st;
  keel_cache_get_stats(f.c, &st);
  assert_int_equal(st.loads, 2);
  assert_int_equal(st.load_errors, 1);
  assert_int_equal(st.hits + st.misses, 16);
  keel_cache_destroy(f.c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- single flight under colliding hashes -------------------------------------- */

/* Each key is loaded once, and a loader that loads another key never waits
 * for itself, however the keys' hashes collide: spread; alike in bits
 * 52-60, then also in bits 16-31 (what a single flight without the lock
 * keys its slots and their tags on: branch exp/flight, docs/PERFORMANCE.md
 * "Tenth day"); or all alike (one bucket of one shard, one chain tag).
 * Single flight must tell keys apart by their bytes, never by their hash. */
#define SF_KEYS 48
#define SF_THREADS 6

static uint64_t key_of(const void *key, size_t len) {
  uint64_t k = 0;
  memcpy(&k, key, len < sizeof k ? len : sizeof k);
  return k;
}

static uint64_t hash_mixed(void *ud, const void *key, size_t len, uint64_t seed) { /* as the cache's own */
  (void)ud;
  return XXH3_64bits_withSeed(key, len, seed);
}
static uint64_t hash_alike_high(void *ud, const void *key, size_t len, uint64_t seed) { /* bits 52-60 alike */
  return hash_mixed(ud, key, len, seed) & ~(0x1ffull << 52);
}
static uint64_t hash_alike_more(void *ud, const void *key, size_t len, uint64_t seed) { /* and 16-31 */
  return hash_mixed(ud, key, len, seed) & ~(0x1ffull << 52 | 0xffffull << 16);
}
static uint64_t hash_all_alike(void *ud, const void *key, size_t len, uint64_t seed) {
  (void)ud, (void)key, (void)len, (void)seed;
  return 42;
}

typedef struct sflight {
  keel_cache_t *c;
  atomic_int calls[SF_KEYS];
  atomic_int bad, go, ids;
} sflight;

static keel_status sf_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  sflight *f = ctx;
  uint64_t k = key_of(key, len);
  if (len != sizeof k || k >= SF_KEYS) return KEEL_EINVAL;
  atomic_fetch_add(&f->calls[k], 1);
  if (k % 3 == 0) { /* some loads last long enough to be joined and collided with */
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  unsigned char buf[1024];
  return keel_cache_load_set(ld, buf, fill_value(k, buf));
}

static void *sf_thread(void *p) {
  sflight *f = p;
  int id = atomic_fetch_add(&f->ids, 1);
  while (!atomic_load(&f->go)) sched_yield();
  for (int i = 0; i < 4 * SF_KEYS; i++) {
    uint64_t k = (uint64_t)(i * 7 + id * 5) % SF_KEYS; /* each thread in its own order */
    keel_cache_value_t *v = NULL;
    if (keel_cache_get_or_load(f->c, &k, sizeof k, sf_loader, f, &v) != KEEL_OK ||
        !check_value(k, keel_cache_value_data(v), keel_cache_value_len(v)))
      atomic_store(&f->bad, 1);
    keel_cache_value_release(v);
  }
  return NULL;
}

static void test_single_flight_collisions(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_hash_fn hashes[] = {hash_mixed, hash_alike_high, hash_alike_more, hash_all_alike};
  for (unsigned hf = 0; hf < sizeof hashes / sizeof *hashes; hf++) {
    keel_cache_options o = base_opts(1 << 20); /* room for every key: none is evicted */
    o.hash = hashes[hf];
    sflight f;
    memset(&f, 0, sizeof f);
    assert_int_equal(keel_cache_create(&o, &f.c), KEEL_OK);
    for (int round = 0; round < 3; round++) {
      for (unsigned k = 0; k < SF_KEYS; k++) atomic_store(&f.calls[k], 0);
      atomic_store(&f.go, 0);
      pthread_t t[SF_THREADS];
      for (int i = 0; i < SF_THREADS; i++) pthread_create(&t[i], NULL, sf_thread, &f);
      atomic_store(&f.go, 1);
      for (int i = 0; i < SF_THREADS; i++) pthread_join(t[i], NULL);
      assert_int_equal(atomic_load(&f.bad), 0);
      for (unsigned k = 0; k < SF_KEYS; k++) {
        if (atomic_load(&f.calls[k]) != 1) fail_msg("hash %u round %d: key %u loaded %d times", hf, round,
                                                    k, atomic_load(&f.calls[k]));
        keel_cache_value_t *v = NULL;
        uint64_t key = k;
        assert_int_equal(keel_cache_get(f.c, &key, sizeof key, &v), KEEL_OK); /* stored, and found */
        keel_cache_value_release(v);
      }
      keel_cache_stats st;
      keel_cache_get_stats(f.c, &st);
      assert_int_equal(st.loads, (uint64_t)(round + 1) * SF_KEYS);
      assert_int_equal(st.entries, SF_KEYS);
      keel_cache_clear(f.c);
    }
    keel_cache_destroy(f.c);
  }
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A loader that loads another key through the same cache (a memoized
 * stage calling another) never waits for itself, whichever way the two
 * keys' hashes collide. */
static keel_status inner_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  (void)ctx;
  unsigned char buf[1024];
  return keel_cache_load_set(ld, buf, fill_value(key_of(key, len), buf));
}

static keel_status outer_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  keel_cache_t *c = ctx;
  uint64_t inner = key_of(key, len) + 1;
  keel_cache_value_t *v = NULL;
  keel_status st = keel_cache_get_or_load(c, &inner, sizeof inner, inner_loader, NULL, &v);
  if (st != KEEL_OK) return st;
  if (!check_value(inner, keel_cache_value_data(v), keel_cache_value_len(v))) st = KEEL_EINVAL;
  keel_cache_value_release(v);
  unsigned char buf[1024];
  return st != KEEL_OK ? st : keel_cache_load_set(ld, buf, fill_value(key_of(key, len), buf));
}

static void test_nested_loads(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_hash_fn hashes[] = {hash_mixed, hash_alike_high, hash_alike_more, hash_all_alike};
  for (unsigned hf = 0; hf < sizeof hashes / sizeof *hashes; hf++) {
    keel_cache_options o = base_opts(1 << 20);
    o.hash = hashes[hf];
    keel_cache_t *c;
    assert_int_equal(keel_cache_create(&o, &c), KEEL_OK);
    for (uint64_t k = 0; k < 40; k += 2) {
      keel_cache_value_t *v = NULL;
      assert_int_equal(keel_cache_get_or_load(c, &k, sizeof k, outer_loader, c, &v), KEEL_OK);
      assert_true(check_value(k, keel_cache_value_data(v), keel_cache_value_len(v)));
      keel_cache_value_release(v);
    }
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.loads, 40);
    assert_int_equal(st.entries, 40);
    keel_cache_destroy(c);
  }
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Loaders on N threads that each ask for the next one's key, in a ring
 * (key i's loader waits for key i+1's load, the last for key 0's), all
 * started before any asks: the waits would close a cycle, and each would
 * wait forever. One of them gets KEEL_EMISUSE instead; its loader fails,
 * and the failure unwinds the ring. Every call returns, and the cache
 * works on after. */
typedef struct ring {
  keel_cache_t *c;
  unsigned n;
  atomic_uint started, finished;
  keel_status st[8];
} ring;

typedef struct ring_arg {
  ring *r;
  uint64_t key;
} ring_arg;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static keel_status ring_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  ring *r = ctx;
  atomic_fetch_add(&r->started, 1);
  for (int i = 0; i < 5000 && atomic_load(&r->started) < r->n; i++) sleep_ms(1);
  sleep_ms(20); /* each thread on its way to asking */
  uint64_t next = (key_of(key, len) + 1) % r->n;
  keel_cache_value_t *v = NULL;
  keel_status st = keel_cache_get_or_load(r->c, &next, sizeof next, ring_loader, r, &v);
  if (st != KEEL_OK) return st;
  keel_cache_value_release(v);
  return keel_cache_load_set(ld, "ok", 2);
}

static void *ring_thread(void *arg) {
  ring_arg *a = arg;
  keel_cache_value_t *v = NULL;
  a->r->st[a->key] = keel_cache_get_or_load(a->r->c, &a->key, sizeof a->key, ring_loader, a->r, &v);
  if (v) keel_cache_value_release(v);
  atomic_fetch_add(&a->r->finished, 1);
  return NULL;
}

/* A chain that is not a ring must not be refused: thread 2 waits for key
 * 0, whose loader (thread 0) waits for key 1, which thread 1 loads slowly
 * and which waits for no one. Every call gets its value. */
typedef struct chain {
  keel_cache_t *c;
  atomic_int loading1, loading0;
  keel_status st[3];
} chain;

static keel_status chain_slow(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  chain *ch = ctx;
  (void)key, (void)len;
  atomic_store(&ch->loading1, 1);
  for (int i = 0; i < 2000 && !atomic_load(&ch->loading0); i++) sleep_ms(1);
  sleep_ms(100); /* thread 0 waits on this load, thread 2 on thread 0's */
  return keel_cache_load_set(ld, "one", 3);
}

static keel_status chain_outer(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  chain *ch = ctx;
  (void)key, (void)len;
  atomic_store(&ch->loading0, 1);
  uint64_t k1 = 1;
  keel_cache_value_t *v = NULL;
  keel_status st = keel_cache_get_or_load(ch->c, &k1, sizeof k1, chain_slow, ch, &v);
  if (st != KEEL_OK) return st;
  keel_cache_value_release(v);
  return keel_cache_load_set(ld, "zero", 4);
}

static void *chain_t0(void *arg) {
  chain *ch = arg;
  for (int i = 0; i < 2000 && !atomic_load(&ch->loading1); i++) sleep_ms(1);
  uint64_t k = 0;
  keel_cache_value_t *v = NULL;
  ch->st[0] = keel_cache_get_or_load(ch->c, &k, sizeof k, chain_outer, ch, &v);
  if (v) keel_cache_value_release(v);
  return NULL;
}

static void *chain_t1(void *arg) {
  chain *ch = arg;
  uint64_t k = 1;
  keel_cache_value_t *v = NULL;
  ch->st[1] = keel_cache_get_or_load(ch->c, &k, sizeof k, chain_slow, ch, &v);
  if (v) keel_cache_value_release(v);
  return NULL;
}

static void *chain_t2(void *arg) {
  chain *ch = arg;
  for (int i = 0; i < 2000 && !atomic_load(&ch->loading0); i++) sleep_ms(1);
  sleep_ms(30); /* thread 0 is waiting for key 1 by now */
  uint64_t k = 0;
  keel_cache_value_t *v = NULL;
  ch->st[2] = keel_cache_get_or_load(ch->c, &k, sizeof k, chain_outer, ch, &v);
  if (v) keel_cache_value_release(v);
  return NULL;
}

static void test_loader_chains(void **state) {
  (void)state;
  keel_cache_hash_fn hashes[] = {hash_mixed, hash_all_alike};
  for (unsigned hf = 0; hf < 2; hf++) {
    keel_cache_options o = base_opts(1 << 20);
    o.hash = hashes[hf];
    chain ch = {0};
    assert_int_equal(keel_cache_create(&o, &ch.c), KEEL_OK);
    pthread_t t[3];
    void *(*fn[3])(void *) = {chain_t0, chain_t1, chain_t2};
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&t[i], NULL, fn[i], &ch), 0);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++) assert_int_equal(ch.st[i], KEEL_OK);
    keel_cache_stats st;
    keel_cache_get_stats(ch.c, &st);
    assert_int_equal(st.loads, 2); /* each key loaded once, single flight */
    keel_cache_destroy(ch.c);
  }
}

static void test_loader_cycles(void **state) {
  (void)state;
  keel_cache_hash_fn hashes[] = {hash_mixed, hash_all_alike};
  const unsigned sizes[] = {2, 3, 5};
  for (unsigned hf = 0; hf < 2; hf++)
    for (unsigned si = 0; si < 3; si++) {
      keel_cache_options o = base_opts(1 << 20);
      o.hash = hashes[hf];
      ring r = {.n = sizes[si]};
      assert_int_equal(keel_cache_create(&o, &r.c), KEEL_OK);
      pthread_t th[8];
      ring_arg args[8];
      for (unsigned i = 0; i < r.n; i++) {
        args[i] = (ring_arg){&r, i};
        assert_int_equal(pthread_create(&th[i], NULL, ring_thread, &args[i]), 0);
      }
      for (int i = 0; i < 10000 && atomic_load(&r.finished) < r.n; i++) sleep_ms(1);
      if (atomic_load(&r.finished) < r.n)
        fail_msg("a ring of %u loaders (hash %u) is still waiting after 10 s: a deadlock", r.n, hf);
      int misuse = 0;
      for (unsigned i = 0; i < r.n; i++) {
        pthread_join(th[i], NULL);
        assert_int_not_equal(r.st[i], KEEL_OK); /* the ring cannot be loaded */
        misuse += r.st[i] == KEEL_EMISUSE;
      }
      assert_int_equal(misuse, r.n); /* the one refusal is what each failed with */
      uint64_t k = 0;
      keel_cache_value_t *v = NULL;
      assert_int_equal(keel_cache_get_or_load(r.c, &k, sizeof k, inner_loader, NULL, &v), KEEL_OK);
      keel_cache_value_release(v);
      keel_cache_destroy(r.c);
    }
}

/* ---- refresh after write: one reload per due value --------------------------- */

typedef struct refr {
  keel_cache_t *c;
  _Atomic uint64_t now;  /* the cache's clock */
  atomic_int calls;      /* loader calls */
  atomic_int go, bad;
  int gen;               /* the generation the round starts with */
} refr;

static uint64_t refr_clock(void *ud) { return atomic_load(&((refr *)ud)->now); }

/* *r zeroed, its clock at 1000, and a 1 MiB cache on it whose values are
 * refreshed 100 after they are written (owned by the caller). */
static keel_cache_t *refr_cache(refr *r) {
  memset(r, 0, sizeof *r);
  atomic_store(&r->now, 1000);
  keel_cache_options o = base_opts(1 << 20);
  o.refresh_ns = 100;
  o.clock = refr_clock;
  o.clock_ud = r;
  keel_cache_t *c;
  assert_int_equal(keel_cache_create(&o, &c), KEEL_OK);
  return c;
}

static keel_status gen_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  refr *r = ctx;
  (void)key, (void)len;
  int n = atomic_fetch_add(&r->calls, 1) + 1;
  struct timespec ts = {0, 5000000}; /* the others hit meanwhile */
  nanosleep(&ts, NULL);
  char buf[16];
  return keel_cache_load_set(ld, buf, (size_t)snprintf(buf, sizeof buf, "gen%d", n));
}

/* A value of generation gen or gen + 1 (the old one, or the refreshed one). */
static int gen_ok(const refr *r, const void *data, size_t len) {
  char want[2][16];
  size_t n0 = (size_t)snprintf(want[0], sizeof want[0], "gen%d", r->gen);
  size_t n1 = (size_t)snprintf(want[1], sizeof want[1], "gen%d", r->gen + 1);
  return (len == n0 && !memcmp(data, want[0], n0)) || (len == n1 && !memcmp(data, want[1], n1));
}

typedef struct refr_read {
  const refr *r;
  int ok;
} refr_read;

static void refr_read_fn(void *ctx, const void *data, size_t len) {
  refr_read *x = ctx;
  x->ok = gen_ok(x->r, data, len);
}

typedef struct refr_arg {
  refr *r;
  int id;
} refr_arg;

static void *refresher(void *p) {
  refr_arg *a = p;
  refr *r = a->r;
  while (!atomic_load(&r->go)) sched_yield();
  if (a->id & 1) {
    refr_read x = {r, 0};
    if (keel_cache_read_or_load(r->c, "k", 1, gen_loader, r, refr_read_fn, &x) != KEEL_OK || !x.ok)
      atomic_store(&r->bad, 1);
  } else {
    keel_cache_value_t *v;
    if (keel_cache_get_or_load(r->c, "k", 1, gen_loader, r, &v) != KEEL_OK) {
      atomic_store(&r->bad, 1);
    } else {
      if (!gen_ok(r, keel_cache_value_data(v), keel_cache_value_len(v))) atomic_store(&r->bad, 1);
      keel_cache_value_release(v);
    }
  }
  return NULL;
}

/* Eight threads hit a value whose refresh is due, 20 times: each time the
 * loader runs once, every thread gets the old value or the new one (none
 * waits for the reload but the one that runs it), and then the new one is
 * in the cache. */
static void test_refresh_concurrent(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  refr r;
  r.c = refr_cache(&r);
  keel_cache_value_t *v;
  assert_int_equal(keel_cache_get_or_load(r.c, "k", 1, gen_loader, &r, &v), KEEL_OK);
  keel_cache_value_release(v);
  for (int round = 1; round <= 20; round++) {
    r.gen = round;
    atomic_fetch_add(&r.now, 100);
    atomic_store(&r.go, 0);
    pthread_t t[8];
    refr_arg a[8];
    for (int i = 0; i < 8; i++) {
      a[i] = (refr_arg){&r, i};
      pthread_create(&t[i], NULL, refresher, &a[i]);
    }
    atomic_store(&r.go, 1);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.bad), 0);
    assert_int_equal(atomic_load(&r.calls), round + 1);
    assert_int_equal(keel_cache_get(r.c, "k", 1, &v), KEEL_OK);
    char want[16];
    size_t n = (size_t)snprintf(want, sizeof want, "gen%d", round + 1);
    assert_int_equal(keel_cache_value_len(v), n);
    assert_memory_equal(keel_cache_value_data(v), want, n);
    keel_cache_value_release(v);
  }
  keel_cache_stats st;
  keel_cache_get_stats(r.c, &st);
  assert_int_equal(st.refreshes, 20);
  assert_int_equal(st.loads, 21);
  keel_cache_destroy(r.c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- many keys through get_or_load, with shrinking capacity ------------------- */

static keel_status cheap_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  (void)ctx;
  uint64_t k;
  memcpy(&k, key, len < 8 ? len : 8);
  unsigned char *p = keel_cache_load_alloc(ld, fill_value(k, (unsigned char[1024]){0}));
  if (!p) return KEEL_ENOMEM;
  fill_value(k, p);
  return KEEL_OK;
}

typedef struct rt {
  keel_cache_t *c;
  unsigned id;
  atomic_int *bad;
} rt;

static void *readthrough(void *p) {
  rt *a = p;
  uint64_t seed = 77 + a->id;
  for (int i = 0; i < LOADS_PER_THREAD; i++) {
    uint64_t k = rnd(&seed) % 2000;
    if (rnd(&seed) % 8 == 0) k %= 50; /* a hot set */
    keel_cache_value_t *v;
    if (a->id & 1) { 
/* the borrowed variant: the value is checked in place */
      readctx rc = {k, 0};
      if (keel_cache_read_or_load(a->c, &k, sizeof k, cheap_loader, NULL, read_fn, &rc) != KEEL_OK || !rc.ok)
        atomic_store(a->bad, 1);
    } else if (keel_cache_get_or_load(a->c, &k, sizeof k, cheap_loader, NULL, &v) != KEEL_OK ||
               !check_value(k, keel_cache_value_data(v), keel_cache_value_len(v))) {
      atomic_store(a->bad, 1);
    } else {
      keel_cache_value_release(v);
    }
    if (a->id == 0 && i % 2000 == 0)
      keel_cache_set_capacity(a->c, (uint64_t)(100 + (i / 2000) % 3 * 100) * (keel_cache_entry_overhead() + 400));
  }
  return NULL;
}

static void test_readthrough_concurrent(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(300 * (keel_cache_entry_overhead() + 400));
  keel_cache_t *c;
  assert_int_equal(keel_cache_create(&o, &c), KEEL_OK);
  atomic_int bad = 0;
  pthread_t t[4];
  rt a[4];
  for (unsigned i = 0; i < 4; i++) {
    a[i] = (rt){c, i, &bad};
    pthread_create(&t[i], NULL, readthrough, &a[i]);
  }
  for (unsigned i = 0; i < 4; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&bad), 0);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.hits + st.misses, 4 * LOADS_PER_THREAD);
  assert_true(st.loads <= st.misses);
  assert_true(st.hits > 0);
  assert_true(st.bytes <= st.max_bytes);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A refresh is a load like any other for single flight: while its loader
 * runs, a miss of the key (the old value removed meanwhile) waits for it
 * and gets its value, instead of running a second loader. */
typedef struct gated {
  atomic_int calls, started, gate;
} gated;

static keel_status gated_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  gated *g = ctx;
  (void)key, (void)len;
  int n = atomic_fetch_add(&g->calls, 1) + 1;
  atomic_store(&g->started, 1);
  while (!atomic_load(&g->gate)) sched_yield();
  char buf[16];
  return keel_cache_load_set(ld, buf, (size_t)snprintf(buf, sizeof buf, "gen%d", n));
}

typedef struct gated_call {
  keel_cache_t *c;
  gated *g;
  char got[16];
} gated_call;

static void *gated_get(void *p) {
  gated_call *a = p;
  keel_cache_value_t *v;
  if (keel_cache_get_or_load(a->c, "k", 1, gated_loader, a->g, &v) == KEEL_OK) {
    snprintf(a->got, sizeof a->got, "%.*s", (int)keel_cache_value_len(v), (const char *)keel_cache_value_data(v));
    keel_cache_value_release(v);
  }
  return NULL;
}

static void test_refresh_is_single_flight(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  refr r; /* for its clock */
  keel_cache_t *c = refr_cache(&r);
  gated g;
  memset(&g, 0, sizeof g);
  atomic_store(&g.gate, 1);
  gated_call first = {c, &g, ""};
  gated_get(&first); /* gen1, written at 1000 */
  assert_string_equal(first.got, "gen1");
  atomic_store(&g.gate, 0);
  atomic_store(&g.started, 0);
  atomic_store(&r.now, 1200); /* its refresh is due */
  gated_call a = {c, &g, ""}, b = {c, &g, ""};
  pthread_t ta, tb;
  pthread_create(&ta, NULL, gated_get, &a);
  while (!atomic_load(&g.started)) sched_yield(); /* a's refresh runs the loader */
  assert_int_equal(keel_cache_remove(c, "k", 1), KEEL_OK);
  pthread_create(&tb, NULL, gated_get, &b); /* a miss now */
  struct timespec ts = {0, 200000000}; /* a second loader would have started by now */
  nanosleep(&ts, NULL);
  int calls = atomic_load(&g.calls);
  atomic_store(&g.gate, 1);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  assert_int_equal(calls, 2);
  assert_int_equal(atomic_load(&g.calls), 2); /* gen1's load and the refresh: no third */
  assert_string_equal(a.got, "gen2");
  assert_string_equal(b.got, "gen2");
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* More threads than reader slots: some share a slot; counts stay exact. */
typedef struct many {
  keel_cache_t *c;
  unsigned id;
} many;

static void *many_fn(void *p) {
  many *m = p;
  for (int i = 0; i < 500; i++) {
    uint64_t k = (m->id * 7919u + (unsigned)i) % 300;
    keel_cache_value_t *v;
    if (i % 50 == 0) keel_cache_pin(m->c);
    if (keel_cache_get(m->c, &k, sizeof k, &v) == KEEL_OK) keel_cache_value_release(v);
    if (i % 50 == 49) keel_cache_unpin(m->c);
  }
  return NULL;
}

static void test_more_threads_than_slots(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  keel_cache_t *c;
  assert_int_equal(keel_cache_create(&o, &c), KEEL_OK);
  for (uint64_t k = 0; k < 150; k++) assert_int_equal(keel_cache_put(c, &k, sizeof k, &k, sizeof k), KEEL_OK);
  enum { N = 40 };
  pthread_t t[N];
  many m[N];
  for (unsigned i = 0; i < N; i++) {
    m[i] = (many){c, i};
    pthread_create(&t[i], NULL, many_fn, &m[i]);
  }
  for (unsigned i = 0; i < N; i++) pthread_join(t[i], NULL);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.hits + st.misses, N * 500);
  assert_true(st.hits > 0 && st.misses > 0);
  keel_cache_destroy(c);
}

/* ---- resizes under readers ------------------------------------------------- */

/* One writer inserts GROW_KEYS new keys into an empty cache (no eviction),
 * so each shard's table doubles again and again; readers meanwhile look up
 * keys already inserted (published through `done`): every one must be
 * found with its value (a lookup that overlaps a resize retries, it never
 * misses), through get, read, read_many and pinned batches. Replaced
 * tables are freed once no reader's epoch can reach them: ASan would see a
 * reader on a freed one. */
#define GROW_KEYS 30000

static void *grow_reader(void *p) {
  tharg *a = p;
  shared *g = a->s;
  uint64_t seed = 0x2545f4914f6cdd1dull * (a->id + 1);
  unsigned long n = 0;
  while (!atomic_load(&g->stop)) {
    uint64_t done = atomic_load(&g->done);
    if (!done) continue;
    if (a->id == 1 && n % 64 == 0) keel_cache_pin(g->c);
    uint64_t k = rnd(&seed) % done;
    keel_cache_value_t *v;
    if (keel_cache_get(g->c, &k, sizeof k, &v) != KEEL_OK) atomic_store(&g->bad, 1);
    else {
      if (!check_value(k, keel_cache_value_data(v), keel_cache_value_len(v))) atomic_store(&g->bad, 2);
      keel_cache_value_release(v);
    }
    readctx rc = {k, 0};
    if (keel_cache_read(g->c, &k, sizeof k, read_fn, &rc) != KEEL_OK || !rc.ok) atomic_store(&g->bad, 3);
    if (n % 16 == 0) {
      uint64_t ks[12];
      const void *kp[12];
      size_t kl[12];
      for (int i = 0; i < 12; i++) ks[i] = rnd(&seed) % done, kp[i] = &ks[i], kl[i] = sizeof ks[i];
      manyctx m = {ks, 1};
      if (keel_cache_read_many(g->c, 12, kp, kl, read_many_fn, &m) != 12 || !m.ok) atomic_store(&g->bad, 4);
    }
    if (a->id == 1 && n % 64 == 63) keel_cache_unpin(g->c);
    n++;
  }
  if (a->id == 1 && n % 64 != 0) keel_cache_unpin(g->c);
  atomic_fetch_add(&g->lookups, n);
  return NULL;
}

static void test_resize_under_readers(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  shared g;
  memset(&g, 0, sizeof g);
  keel_cache_options o = base_opts(256u << 20);
  o.max_entries = 2 * GROW_KEYS;
  assert_int_equal(keel_cache_create(&o, &g.c), KEEL_OK);
  pthread_t r[2];
  tharg ra[2];
  for (unsigned i = 0; i < 2; i++) {
    ra[i] = (tharg){&g, i};
    pthread_create(&r[i], NULL, grow_reader, &ra[i]);
  }
  unsigned char buf[1024];
  for (uint64_t k = 0; k < GROW_KEYS; k++) {
    size_t len = fill_value(k, buf);
    if (keel_cache_put(g.c, &k, sizeof k, buf, len) != KEEL_OK) atomic_store(&g.bad, 5);
    atomic_store(&g.done, k + 1);
  }
  atomic_store(&g.stop, 1);
  for (unsigned i = 0; i < 2; i++) pthread_join(r[i], NULL);
  assert_int_equal(atomic_load(&g.bad), 0);
  assert_true(atomic_load(&g.lookups) > 0);
  keel_cache_stats st;
  keel_cache_get_stats(g.c, &st);
  assert_int_equal(st.entries, GROW_KEYS);
  assert_int_equal(st.evictions, 0);
  keel_cache_destroy(g.c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Scans beside writers and readers. Keys are 8-byte numbers below
 * SCAN_KEYS; a value is 32 bytes: the key, then a writer's sequence number
 * (three times), so a scan or a lookup handed a torn value or another key's
 * sees it. Two writers put and remove, a reader reads, and the test's
 * thread runs for_each (no key twice in one call, every value its key's)
 * and remove_if of the even keys while they run. Once they stop, one
 * remove_if leaves no even key, and a for_each counts what the statistics
 * count. */
#define SCAN_KEYS 3000
typedef struct scanner {
  keel_cache_t *c;
  unsigned id;
  atomic_int *stop, *bad;
} scanner;

static int value_ok(uint64_t k, const void *data, size_t len) {
  uint64_t w[4];
  if (len != sizeof w) return 0;
  memcpy(w, data, sizeof w);
  return w[0] == k && w[1] == w[2] && w[2] == w[3];
}

static void *scan_writer(void *p) {
  scanner *a = p;
  uint64_t r = 0x9e3779b97f4a7c15ull * (a->id + 1), seq = 0;
  while (!atomic_load(a->stop)) {
    uint64_t k = rnd(&r) % SCAN_KEYS;
    if (rnd(&r) % 8 == 0) {
      (void)keel_cache_remove(a->c, &k, sizeof k);
      continue;
    }
    seq++;
    uint64_t w[4] = {k, seq, seq, seq};
    keel_status st = keel_cache_put(a->c, &k, sizeof k, w, sizeof w);
    if (st != KEEL_OK) atomic_fetch_add(a->bad, 1);
  }
  return NULL;
}

static void *scan_reader(void *p) {
  scanner *a = p;
  uint64_t r = 12345;
  while (!atomic_load(a->stop)) {
    uint64_t k = rnd(&r) % SCAN_KEYS;
    keel_cache_value_t *v;
    if (keel_cache_get(a->c, &k, sizeof k, &v) != KEEL_OK) continue;
    if (!value_ok(k, keel_cache_value_data(v), keel_cache_value_len(v))) atomic_fetch_add(a->bad, 1);
    keel_cache_value_release(v);
  }
  return NULL;
}

typedef struct seen_keys {
  unsigned char n[SCAN_KEYS];
  unsigned twice, bad, even;
} seen_keys;

static int scan_visit(void *ud, const void *key, size_t len, keel_cache_value_t *v) {
  seen_keys *x = ud;
  uint64_t k;
  if (len != sizeof k || !v) {
    x->bad++;
    return 0;
  }
  memcpy(&k, key, sizeof k);
  if (k >= SCAN_KEYS || !value_ok(k, keel_cache_value_data(v), keel_cache_value_len(v))) {
    x->bad++;
    return 0;
  }
  if (x->n[k]++) x->twice++;
  if (k % 2 == 0) x->even++;
  return 0;
}

static int scan_even(void *ud, const void *key, size_t len, keel_cache_value_t *v) {
  seen_keys *x = ud;
  uint64_t k;
  if (len != sizeof k || !v) return x->bad++, 0;
  memcpy(&k, key, sizeof k);
  if (!value_ok(k, keel_cache_value_data(v), keel_cache_value_len(v))) x->bad++;
  return k % 2 == 0;
}

static void test_scans_under_writers(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  /* Room for a third of the keys, in 4 shards: evictions too. */
  keel_cache_options o = base_opts(4u << 20);
  o.max_entries = SCAN_KEYS / 3;
  keel_cache_t *c;
  assert_int_equal(keel_cache_create(&o, &c), KEEL_OK);
  atomic_int stop = 0, bad = 0;
  scanner a[3];
  pthread_t t[3];
  for (unsigned i = 0; i < 3; i++) {
    a[i] = (scanner){c, i, &stop, &bad};
    pthread_create(&t[i], NULL, i < 2 ? scan_writer : scan_reader, &a[i]);
  }
  static seen_keys x;
  uint64_t removed = 0;
  keel_cache_stats st;
  /* At least 20 rounds that met entries (rounds before the writers got
   * going, on a loaded machine, see an empty cache and test nothing), and
   * on until the writers have stored 20,000 values (or 10 s have passed: a
   * starved writer fails below). */
  time_t t0 = time(NULL);
  for (int busy = 0;;) {
    keel_cache_get_stats(c, &st);
    if ((busy >= 20 && st.puts >= 20000) || time(NULL) - t0 > 10) break;
    memset(&x, 0, sizeof x);
    busy += keel_cache_for_each(c, scan_visit, &x) > 0;
    assert_int_equal(x.twice, 0);
    assert_int_equal(x.bad, 0);
    memset(&x, 0, sizeof x);
    removed += keel_cache_remove_if(c, scan_even, &x);
    assert_int_equal(x.bad, 0);
  }
  atomic_store(&stop, 1);
  for (unsigned i = 0; i < 3; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&bad), 0);
  assert_true(removed > 0);
  memset(&x, 0, sizeof x);
  (void)keel_cache_remove_if(c, scan_even, &x);
  memset(&x, 0, sizeof x);
  uint64_t n = keel_cache_for_each(c, scan_visit, &x);
  assert_int_equal(x.even, 0);
  assert_int_equal(x.twice, 0);
  keel_cache_get_stats(c, &st);
  assert_int_equal(n, st.entries);
  assert_true(st.puts >= 20000);
  assert_true(st.evictions > 0);
  assert_true(n > 0);
  assert_true(st.entries <= o.max_entries);
  assert_true(st.removals >= removed);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Expiry when idle under concurrent hits: two readers hit the hot half of
 * the keys (get and read) while the clock moves on in steps of idle/8, each
 * step only after both readers made a whole pass since the last, so every
 * hot key is hit within each step. The hot keys never expire and the cold
 * half all do; under TSan the readers' stores of the expiry time race with
 * the cleanups that test it. */
#define IDLE_HOT 512
typedef struct idle_reader {
  keel_cache_t *c;
  atomic_int *stop, *bad;
  atomic_uint passes;
} idle_reader;

static _Atomic uint64_t idle_now;
static uint64_t idle_clock(void *ud) {
  (void)ud;
  return atomic_load(&idle_now);
}

static void idle_read_fn(void *ctx, const void *data, size_t len) {
  uint64_t *k = ctx;
  if (!value_ok(*k, data, len)) *k = UINT64_MAX;
}

static void *idle_reader_main(void *p) {
  idle_reader *a = p;
  while (!atomic_load(a->stop)) {
    for (uint64_t k = 0; k < IDLE_HOT; k++) {
      keel_cache_value_t *v;
      if (k % 2) {
        uint64_t kk = k;
        if (keel_cache_read(a->c, &k, sizeof k, idle_read_fn, &kk) != KEEL_OK || kk != k) atomic_fetch_add(a->bad, 1);
      } else if (keel_cache_get(a->c, &k, sizeof k, &v) != KEEL_OK) {
        atomic_fetch_add(a->bad, 1);
      } else {
        if (!value_ok(k, keel_cache_value_data(v), keel_cache_value_len(v))) atomic_fetch_add(a->bad, 1);
        keel_cache_value_release(v);
      }
    }
    atomic_fetch_add(&a->passes, 1);
  }
  return NULL;
}

static void test_idle_under_readers(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  const uint64_t idle = 8000;
  keel_cache_options o = base_opts(4u << 20);
  o.idle_ns = idle;
  o.clock = idle_clock;
  atomic_store(&idle_now, 1000);
  keel_cache_t *c;
  assert_int_equal(keel_cache_create(&o, &c), KEEL_OK);
  for (uint64_t k = 0; k < 2 * IDLE_HOT; k++) {
    uint64_t w[4] = {k, 1, 1, 1};
    assert_int_equal(keel_cache_put(c, &k, sizeof k, w, sizeof w), KEEL_OK);
  }
  atomic_int stop = 0, bad = 0;
  idle_reader r[2] = {{c, &stop, &bad, 0}, {c, &stop, &bad, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, idle_reader_main, &r[i]), 0);
  uint64_t expired = 0;
  for (int step = 1; step <= 40; step++) {
    unsigned p0 = atomic_load(&r[0].passes), p1 = atomic_load(&r[1].passes);
    while (atomic_load(&r[0].passes) < p0 + 2 || atomic_load(&r[1].passes) < p1 + 2) sched_yield();
    atomic_fetch_add(&idle_now, idle / 8);
    if (step % 4 == 0) expired += keel_cache_cleanup(c);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&bad), 0);
  assert_int_equal(expired, IDLE_HOT); /* the cold half, and only it */
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.entries, IDLE_HOT);
  assert_int_equal(st.expirations, IDLE_HOT);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bound_and_integrity),
      cmocka_unit_test(test_sharded_bound),
      cmocka_unit_test(test_shrink_under_writers),
      cmocka_unit_test(test_single_flight),
      cmocka_unit_test(test_single_flight_collisions),
      cmocka_unit_test(test_nested_loads),
      cmocka_unit_test(test_loader_cycles),
      cmocka_unit_test(test_loader_chains),
      cmocka_unit_test(test_refresh_concurrent),
      cmocka_unit_test(test_refresh_is_single_flight),
      cmocka_unit_test(test_readthrough_concurrent),
      cmocka_unit_test(test_more_threads_than_slots),
      cmocka_unit_test(test_resize_under_readers),
      cmocka_unit_test(test_scans_under_writers),
      cmocka_unit_test(test_idle_under_readers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
