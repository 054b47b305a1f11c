/* test_cache.c — the cache's single-threaded semantics: get/put/remove,
 * values outliving eviction, full-key comparison under forced collisions,
 * lookups through long churn (evictions and removals at every place in
 * the chains), TTL with an injected clock, errors not cached (and negative
 * caching), removal causes, stats that add up, the byte bound, set_capacity, every
 * policy name, found entries kept by a cache that samples its hits,
 * invalidation by a predicate and visits of every entry (remove_if,
 * for_each), and OOM sweeps of creation and put. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keel/cache.h"
#include "testutil.h"

typedef struct removals {
  unsigned n[4];
  char last_key[64];
} removals;

static void on_removal(void *ud, const void *key, size_t key_len, keel_cache_value_t *v,
                       keel_cache_cause cause) {
  removals *r = ud;
  (void)v;
  r->n[cause]++;
  snprintf(r->last_key, sizeof r->last_key, "%.*s", (int)key_len, (const char *)key);
}

static keel_cache_options base_opts(uint64_t max_bytes) {
  keel_cache_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.max_bytes = max_bytes;
  o.tag = KEEL_MEM_CACHE;
  return o;
}

static keel_cache_t *mk(const keel_cache_options *o) {
  keel_cache_t *c = NULL;
  assert_int_equal(keel_cache_create(o, &c), KEEL_OK);
  return c;
}

static int get_str(keel_cache_t *c, const char *k, char *buf, size_t cap) {
  keel_cache_value_t *v;
  if (keel_cache_get(c, k, strlen(k), &v) != KEEL_OK) return 0;
  snprintf(buf, cap, "%.*s", (int)keel_cache_value_len(v), (const char *)keel_cache_value_data(v));
  keel_cache_value_release(v);
  return 1;
}

static void test_basic(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(1 << 20);
  removals rm = {0};
  o.on_removal = on_removal;
  o.removal_ud = &rm;
  keel_cache_t *c = mk(&o);
  char buf[64];
  assert_false(get_str(c, "a", buf, sizeof buf));
  assert_int_equal(keel_cache_put(c, "a", 1, "one", 3), KEEL_OK);
  assert_true(get_str(c, "a", buf, sizeof buf));
  assert_string_equal(buf, "one");
  assert_int_equal(keel_cache_put(c, "a", 1, "uno", 3), KEEL_OK);
  assert_int_equal(rm.n[KEEL_CACHE_REPLACED], 1);
  assert_true(get_str(c, "a", buf, sizeof buf));
  assert_string_equal(buf, "uno");
  assert_int_equal(keel_cache_remove(c, "a", 1), KEEL_OK);
  assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 1);
  assert_string_equal(rm.last_key, "a");
  assert_int_equal(keel_cache_remove(c, "a", 1), KEEL_ENOTFOUND);
  assert_false(get_str(c, "a", buf, sizeof buf));
  /* Empty key and empty value are legal. */
  assert_int_equal(keel_cache_put(c, "", 0, "", 0), KEEL_OK);
  keel_cache_value_t *v;
  assert_int_equal(keel_cache_get(c, "", 0, &v), KEEL_OK);
  assert_int_equal(keel_cache_value_len(v), 0);
  assert_int_equal((uintptr_t)keel_cache_value_data(v) % 8, 0);
  keel_cache_value_release(v);
  for (int i = 0; i < 100; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), k, strlen(k)), KEEL_OK);
  }
  keel_cache_clear(c);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.entries, 0);
  assert_int_equal(st.bytes, 0);
  assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 102);
  assert_int_equal(st.hits + st.misses, 5); /* the gets above */
  assert_int_equal(st.hits, 3);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A put refused as too big stores nothing and removes the old value: cause
 * REMOVED (nothing replaced it), counted as a removal, not a replacement;
 * the same for a value past 4 GiB, which no entry can hold. */
static void test_too_big_put_removes(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(4096 + 32 * keel_cache_entry_overhead());
  o.max_entries = 1; /* one shard: the whole bound is one entry's limit */
  removals rm = {0};
  o.on_removal = on_removal;
  o.removal_ud = &rm;
  keel_cache_t *c = mk(&o);
  static char big[16384];
  char buf[64];
  assert_int_equal(keel_cache_put(c, "k", 1, "old", 3), KEEL_OK);
  assert_int_equal(keel_cache_put(c, "k", 1, big, sizeof big), KEEL_ELIMIT);
  assert_false(get_str(c, "k", buf, sizeof buf));
  assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 1);
  assert_int_equal(rm.n[KEEL_CACHE_REPLACED], 0);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.replacements, 0);
  assert_int_equal(st.removals, 1);
  assert_int_equal(st.entries, 0);
  assert_int_equal(keel_cache_put(c, "k", 1, "old", 3), KEEL_OK);
  /* 5 GiB: refused before a byte is read (the length alone is too big). */
  assert_int_equal(keel_cache_put(c, "k", 1, big, (size_t)5 << 30), KEEL_ELIMIT);
  assert_false(get_str(c, "k", buf, sizeof buf));
  assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 2);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_bad_options(void **state) {
  (void)state;
  keel_cache_t *c = NULL;
  char err[160];
  keel_cache_options o = base_opts(0);
  assert_int_equal(keel_cache_create(&o, &c), KEEL_EINVAL);
  assert_int_equal(keel_cache_options_check(&o, err, sizeof err), KEEL_EINVAL);
  assert_string_equal(err, "max_bytes is not set (the cache is bounded in bytes)");
  o.max_bytes = keel_cache_entry_overhead();
  assert_int_equal(keel_cache_create(&o, &c), KEEL_EINVAL);
  assert_int_equal(keel_cache_options_check(&o, err, sizeof err), KEEL_EINVAL);
  assert_non_null(strstr(err, "no more than one entry's overhead"));
  o = base_opts(1 << 20);
  o.policy = "LRU";
  assert_int_equal(keel_cache_create(&o, &c), KEEL_EINVAL);
  assert_null(c);
  assert_int_equal(keel_cache_options_check(&o, err, sizeof err), KEEL_EINVAL);
  assert_string_equal(err, "unknown policy 'LRU' (keel has lru,wtinylfu,adaptive,default)");
  o.policy = NULL;
  o.maintenance = (keel_cache_maintenance)7;
  assert_int_equal(keel_cache_create(&o, &c), KEEL_EINVAL);
  assert_null(c);
  assert_int_equal(keel_cache_options_check(&o, NULL, 0), KEEL_EINVAL); /* no message wanted */
  o.maintenance = KEEL_CACHE_MAINTAIN_AUTO;
  o.size = 8;
  assert_int_equal(keel_cache_options_check(&o, err, sizeof err), KEEL_EINVAL);
  assert_non_null(strstr(err, "options.size is 8; set .size = sizeof(keel_cache_options)"));
  assert_int_equal(keel_cache_options_check(NULL, err, sizeof err), KEEL_EINVAL);
  assert_string_equal(err, "no options (NULL)");
  o.size = sizeof o;
  assert_int_equal(keel_cache_options_check(&o, err, sizeof err), KEEL_OK);
  assert_string_equal(err, "");
  static const char *names[] = {"lru", "wtinylfu", "adaptive", "default"};
  for (int i = 0; i < 4; i++) {
    o.policy = names[i];
    c = mk(&o);
    assert_int_equal(keel_cache_put(c, "x", 1, "y", 1), KEEL_OK);
    keel_cache_destroy(c);
  }
  static const keel_cache_maintenance modes[] = {KEEL_CACHE_MAINTAIN_AUTO, KEEL_CACHE_MAINTAIN_THREAD,
                                                 KEEL_CACHE_MAINTAIN_CALLER};
  keel_cache_maintenance m;
  assert_int_equal(keel_cache_maintenance_parse("caller", &m), 0);
  assert_int_equal(m, KEEL_CACHE_MAINTAIN_CALLER);
  assert_int_equal(keel_cache_maintenance_parse("lazy", &m), -1);
  assert_int_equal(keel_cache_maintenance_parse(NULL, &m), -1);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(keel_cache_maintenance_parse(keel_cache_maintenance_name(modes[i]), &m), 0);
    assert_int_equal(m, modes[i]);
  }
  assert_string_equal(keel_cache_maintenance_name((keel_cache_maintenance)9), "?");
  o = base_opts(64u << 20); /* a size hint above 16,384 entries: AUTO means no thread */
  for (int i = 0; i < 3; i++) {
    o.maintenance = modes[i];
    c = mk(&o);
    assert_int_equal(keel_cache_put(c, "x", 1, "y", 1), KEEL_OK);
    char buf[8];
    for (int k = 0; k < 100; k++) assert_true(get_str(c, "x", buf, sizeof buf));
    keel_cache_destroy(c);
  }
}

/* A value a reader holds survives eviction, replacement and destroy. */
static void test_value_outlives_eviction(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  size_t ov = keel_cache_entry_overhead();
  keel_cache_options o = base_opts(3 * (ov + 16));
  o.policy = "lru";
  removals rm = {0};
  o.on_removal = on_removal;
  o.removal_ud = &rm;
  keel_cache_t *c = mk(&o);
  assert_int_equal(keel_cache_put(c, "held", 4, "precious-value", 14), KEEL_OK);
  keel_cache_value_t *v;
  assert_int_equal(keel_cache_get(c, "held", 4, &v), KEEL_OK);
  for (int i = 0; i < 20; i++) {
    char k[8];
    snprintf(k, sizeof k, "f%02d", i);
    assert_int_equal(keel_cache_put(c, k, 3, "0123456789ab", 12), KEEL_OK);
  }
  keel_cache_value_t *gone;
  assert_int_equal(keel_cache_get(c, "held", 4, &gone), KEEL_ENOTFOUND);
  assert_true(rm.n[KEEL_CACHE_EVICTED] >= 18);
  assert_int_equal(keel_cache_value_len(v), 14);
  assert_memory_equal(keel_cache_value_data(v), "precious-value", 14);
  keel_cache_value_acquire(v);
  keel_cache_destroy(c);
  assert_memory_equal(keel_cache_value_data(v), "precious-value", 14);
  keel_cache_value_release(v);
  keel_cache_value_release(v);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Runs `releases` releases of a value of key "dbl\"key" after `acquires`
 * acquisitions on top of get's reference, in a child; returns its wait
 * status and what it wrote to stderr in `err`. */
static int release_in_child(int acquires, int releases, char *err, size_t cap) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    keel_cache_options o = base_opts(1 << 20);
    keel_cache_t *c;
    if (keel_cache_create(&o, &c) != KEEL_OK) _exit(3);
    if (keel_cache_put(c, "dbl\"key", 7, "value", 5) != KEEL_OK) _exit(3);
    keel_cache_value_t *v;
    if (keel_cache_get(c, "dbl\"key", 7, &v) != KEEL_OK) _exit(3);
    for (int i = 0; i < acquires; i++) keel_cache_value_acquire(v);
    for (int i = 0; i < releases; i++) keel_cache_value_release(v);
    keel_cache_destroy(c);
    _exit(0);
  }
  close(fds[1]);
  size_t n = 0;
  ssize_t k;
  while (n + 1 < cap && (k = read(fds[0], err + n, cap - 1 - n)) > 0) n += (size_t)k;
  err[n] = '\0';
  close(fds[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

/* Releasing a value more times than it was acquired, while the cache still
 * holds it, is told and aborts (it would otherwise free the entry under
 * the cache); the right number of releases is silent. */
static void test_over_release_detected(void **state) {
  (void)state;
  char err[512];
  int st = release_in_child(0, 1, err, sizeof err);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_string_equal(err, "");
  st = release_in_child(2, 3, err, sizeof err);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_string_equal(err, "");
  st = release_in_child(0, 2, err, sizeof err);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  assert_non_null(strstr(err, "keel_cache_value_release"));
  assert_non_null(strstr(err, "\"dbl\\x22key\" (7 bytes) was released more times than it was acquired"));
  st = release_in_child(1, 3, err, sizeof err);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

static uint64_t const_hash(void *ud, const void *key, size_t len, uint64_t seed) {
  (void)ud, (void)key, (void)len, (void)seed;
  return 42;
}

/* Every key hashes alike: only the full comparison tells them apart. */
static void test_forced_collisions(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.hash = const_hash;
  keel_cache_t *c = mk(&o);
  char k[32], buf[32];
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), k + 4, strlen(k + 4)), KEEL_OK);
  }
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_true(get_str(c, k, buf, sizeof buf));
    assert_string_equal(buf, k + 4);
  }
  /* Prefixes and same-length strangers are not matches. */
  assert_false(get_str(c, "key-", buf, sizeof buf));
  assert_false(get_str(c, "key-1000", buf, sizeof buf));
  assert_false(get_str(c, "kex-1", buf, sizeof buf));
  assert_int_equal(keel_cache_remove(c, "key-7", 5), KEEL_OK);
  assert_false(get_str(c, "key-7", buf, sizeof buf));
  assert_true(get_str(c, "key-17", buf, sizeof buf));
  keel_cache_destroy(c);
}

/* Every key in one bucket of one shard, each with its own chain tag (hash
 * bits 32-46): lookups skip entries by tag, and must still find every key
 * however the chain was unlinked around it. */
static uint64_t one_bucket_hash(void *ud, const void *key, size_t n, uint64_t seed) {
  (void)ud, (void)seed;
  const char *k = key;
  uint64_t i = 0;
  for (size_t j = 4; j < n; j++) i = i * 10 + (uint64_t)(k[j] - '0'); /* "key-N": N */
  return (i + 1) << 32;
}

static void test_one_bucket_chain_tags(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.hash = one_bucket_hash;
  keel_cache_t *c = mk(&o);
  char k[32], buf[32];
  for (int i = 0; i < 64; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), k + 4, strlen(k + 4)), KEEL_OK);
  }
  /* Unlink the chain's head (the first inserted), its tail (key-63), and
   * middles; then the new tail (its predecessor becomes the tail, and its
   * link's more-mark is cleared); then append behind that tail: every key
   * still linked, old or new, must be found. */
  for (int i = 0; i < 64; i += 3) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(keel_cache_remove(c, k, strlen(k)), KEEL_OK);
  }
  assert_int_equal(keel_cache_remove(c, "key-62", 6), KEEL_OK); /* the new tail */
  for (int i = 64; i < 80; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), k + 4, strlen(k + 4)), KEEL_OK);
  }
  for (int i = 0; i < 80; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    int gone = i < 64 && (i % 3 == 0 || i == 62);
    assert_int_equal(get_str(c, k, buf, sizeof buf), !gone);
    if (!gone) assert_string_equal(buf, k + 4);
  }
  /* A key whose tag no entry has, and one that shares a tag but not bytes. */
  assert_false(get_str(c, "key-100", buf, sizeof buf));
  assert_false(get_str(c, "key-1:", buf, sizeof buf)); /* hashes as key-20 */
  keel_cache_destroy(c);
}

/* Steady churn through a small LRU cache: each put evicts the oldest
 * key and each 7th step removes a recent one, so entries are unlinked
 * from every place in their chains and buckets are reused many times over.
 * After every step the last put is found with its value and the removed
 * key is not; every 997 steps, each of the last 101 keys is found exactly
 * when it was not removed; at the end the cache holds its 256. */
static void test_churn(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 30);
  o.policy = "lru";
  o.max_entries = 256;
  keel_cache_t *c = mk(&o);
  char k[32], buf[32];
  for (int i = 0; i < 60000; i++) {
    snprintf(k, sizeof k, "k%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), k + 1, strlen(k + 1)), KEEL_OK);
    assert_true(get_str(c, k, buf, sizeof buf));
    assert_string_equal(buf, k + 1);
    if (i % 7 == 3) {
      snprintf(k, sizeof k, "k%d", i - 2);
      assert_int_equal(keel_cache_remove(c, k, strlen(k)), KEEL_OK);
      assert_false(get_str(c, k, buf, sizeof buf));
    }
    if (i % 997 != 0 || i < 100) continue;
    for (int j = i - 100; j <= i; j++) {
      snprintf(k, sizeof k, "k%d", j);
      assert_int_equal(get_str(c, k, buf, sizeof buf), j % 7 != 1 || j + 2 > i);
    }
  }
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.entries, 256);
  keel_cache_destroy(c);
}

/* clear and cleanup free what they remove at once when no lookup is
 * running: removed entries do not wait in limbo for later evictions. */
static void test_clear_frees_at_once(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  assert_int_equal(keel_mem_tag_register("test_clear", &o.tag), KEEL_OK);
  keel_mem_stats before, full, after;
  assert_int_equal(keel_mem_tag_stats(o.tag, &before), KEEL_OK);
  keel_cache_t *c = mk(&o);
  char k[32];
  for (int i = 0; i < 500; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), "value", 5), KEEL_OK);
  }
  assert_int_equal(keel_mem_tag_stats(o.tag, &full), KEEL_OK);
  keel_cache_clear(c);
  assert_int_equal(keel_mem_tag_stats(o.tag, &after), KEEL_OK);
  /* Every entry block was freed: 500 more frees, none of them pending. */
  assert_true(after.frees - full.frees >= 500);
  for (int i = 0; i < 100; i++) { /* removals one by one, then cleanup */
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), "value", 5), KEEL_OK);
    assert_int_equal(keel_cache_remove(c, k, strlen(k)), KEEL_OK);
  }
  assert_int_equal(keel_mem_tag_stats(o.tag, &full), KEEL_OK);
  assert_int_equal(keel_cache_cleanup(c), 0);
  assert_int_equal(keel_mem_tag_stats(o.tag, &after), KEEL_OK);
  assert_true(after.frees - full.frees >= 64); /* the removed entries still in limbo */
  keel_cache_destroy(c);
  assert_int_equal(keel_mem_tag_stats(o.tag, &after), KEEL_OK);
  assert_int_equal(after.current, before.current);
}

static void noop_read(void *ctx, const void *data, size_t len) {
  (void)ctx, (void)data, (void)len;
}

static uint64_t fake_now;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return fake_now;
}

/* A 1 MiB cache on the injected clock, set to `now`, with TTL ttl (0:
 * none), counting its removals in *rm. Owned by the caller. */
static keel_cache_t *mk_clocked(uint64_t ttl, removals *rm, uint64_t now) {
  keel_cache_options o = base_opts(1 << 20);
  o.ttl_ns = ttl;
  o.clock = fake_clock;
  o.on_removal = on_removal;
  o.removal_ud = rm;
  fake_now = now;
  return mk(&o);
}

static void test_ttl(void **state) {
  (void)state;
  removals rm = {0};
  keel_cache_t *c = mk_clocked(1000, &rm, 5000);
  char buf[16];
  assert_int_equal(keel_cache_put(c, "a", 1, "A", 1), KEEL_OK);
  fake_now = 5500;
  assert_int_equal(keel_cache_put(c, "b", 1, "B", 1), KEEL_OK);
  fake_now = 5999;
  assert_true(get_str(c, "a", buf, sizeof buf));
  fake_now = 6000; /* a expires exactly now */
  assert_false(get_str(c, "a", buf, sizeof buf));
  keel_cache_value_t *v;
  assert_int_equal(keel_cache_read(c, "a", 1, noop_read, NULL), KEEL_ENOTFOUND);
  assert_true(get_str(c, "b", buf, sizeof buf));
  /* A write restarts the clock of its key. */
  assert_int_equal(keel_cache_put(c, "b", 1, "B2", 2), KEEL_OK);
  fake_now = 6600;
  assert_true(get_str(c, "b", buf, sizeof buf));
  assert_int_equal(keel_cache_cleanup(c), 1); /* a */
  assert_int_equal(rm.n[KEEL_CACHE_EXPIRED], 1);
  fake_now = 7600;
  assert_int_equal(keel_cache_get(c, "b", 1, &v), KEEL_ENOTFOUND);
  assert_int_equal(keel_cache_cleanup(c), 1);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.expirations, 2);
  assert_int_equal(st.entries, 0);
  keel_cache_destroy(c);
}

/* On the real clock: a cache whose durations are all 1 s or more reads the
 * coarse clock (4 ms ticks); an entry's own 30 ms TTL there still ends
 * within a tick or two of it, and a 10 s one does not. A cache without
 * durations times its entries' own TTLs on the precise clock. */
static void test_coarse_clock_expiry(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.ttl_ns = 10000000000ull;
  o.idle_ns = 5000000000ull;
  keel_cache_t *c = mk(&o);
  char buf[16];
  assert_int_equal(keel_cache_put_ttl(c, "short", 5, "S", 1, 30000000), KEEL_OK);
  assert_int_equal(keel_cache_put(c, "long", 4, "L", 1), KEEL_OK);
  assert_true(get_str(c, "short", buf, sizeof buf));
  nanosleep(&(struct timespec){0, 60000000}, NULL); /* 60 ms: past 30 ms plus two ticks */
  assert_false(get_str(c, "short", buf, sizeof buf));
  assert_true(get_str(c, "long", buf, sizeof buf));
  keel_cache_destroy(c);
  /* A cache without durations keeps the precise clock for its entries' own
   * TTLs: 1 us is over 200 us later (the coarse clock would still say 0). */
  keel_cache_options p = base_opts(1 << 20);
  c = mk(&p);
  int hits = 0;
  for (int i = 0; i < 50; i++) {
    assert_int_equal(keel_cache_put_ttl(c, "tiny", 4, "T", 1, 1000), KEEL_OK);
    nanosleep(&(struct timespec){0, 200000}, NULL);
    hits += get_str(c, "tiny", buf, sizeof buf);
  }
  assert_int_equal(hits, 0);
  keel_cache_destroy(c);
}

/* Times to live of an entry's own (keel_cache_put_ttl): in a cache without a
 * TTL and in one with, shorter and longer than the cache's, 0 for never, and
 * a later plain put that takes the cache's again. */
static void test_entry_ttl(void **state) {
  (void)state;
  char buf[16];
  keel_cache_value_t *v;
  keel_cache_stats st;
  for (int with = 0; with < 2; with++) {
    removals rm = {0};
    keel_cache_t *c = mk_clocked(with ? 1000 : 0, &rm, 5000);
    assert_int_equal(keel_cache_put_ttl(c, "short", 5, "S", 1, 100), KEEL_OK);
    assert_int_equal(keel_cache_put_ttl(c, "long", 4, "L", 1, 5000), KEEL_OK);
    assert_int_equal(keel_cache_put_ttl(c, "never", 5, "N", 1, 0), KEEL_OK);
    assert_int_equal(keel_cache_put_ttl(c, "huge", 4, "H", 1, UINT64_MAX), KEEL_OK);
    assert_int_equal(keel_cache_put(c, "plain", 5, "P", 1), KEEL_OK);
    assert_int_equal(keel_cache_put_ttl(c, "again", 5, "A", 1, 100), KEEL_OK);
    assert_int_equal(keel_cache_put(c, "again", 5, "A2", 2), KEEL_OK); /* the cache's TTL again */
    keel_cache_get_stats(c, &st);
    /* Each entry with an expiry time is charged 8 bytes for it; in a cache
     * without a TTL, plain entries have none. */
    uint64_t charged = 0;
    const char *keys[] = {"short", "long", "never", "huge", "plain", "again"};
    for (int i = 0; i < 6; i++) charged += strlen(keys[i]) + keel_cache_entry_overhead();
    charged += 1 + 1 + 1 + 1 + 1 + 2;
    charged += with ? 6 * 8 : 4 * 8;
    assert_int_equal(st.bytes, charged);
    fake_now = 5099;
    assert_true(get_str(c, "short", buf, sizeof buf));
    fake_now = 5100; /* short expires exactly now, whatever the cache's TTL */
    assert_false(get_str(c, "short", buf, sizeof buf));
    assert_int_equal(keel_cache_read(c, "short", 5, noop_read, NULL), KEEL_ENOTFOUND);
    assert_true(get_str(c, "again", buf, sizeof buf));
    assert_string_equal(buf, "A2");
    fake_now = 6000; /* the cache's TTL ends for plain and again */
    assert_int_equal(keel_cache_get(c, "plain", 5, &v), with ? KEEL_ENOTFOUND : KEEL_OK);
    if (!with) keel_cache_value_release(v);
    assert_int_equal(get_str(c, "again", buf, sizeof buf), !with);
    assert_true(get_str(c, "long", buf, sizeof buf));
    assert_int_equal(keel_cache_cleanup(c), with ? 3 : 1); /* short (+ plain, again) */
    fake_now = 10000; /* long expires */
    assert_false(get_str(c, "long", buf, sizeof buf));
    fake_now = UINT64_MAX - 1;
    assert_true(get_str(c, "never", buf, sizeof buf));
    assert_true(get_str(c, "huge", buf, sizeof buf));
    assert_int_equal(keel_cache_cleanup(c), 1); /* long; plain and again never expire without a cache TTL */
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.expirations, with ? 4 : 2);
    assert_int_equal(rm.n[KEEL_CACHE_EXPIRED], st.expirations);
    assert_int_equal(st.entries, with ? 2 : 4);
    keel_cache_destroy(c);
  }
}

typedef struct loadctx {
  int calls;
  keel_status fail;
  int nocache;
} loadctx;

static keel_status loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  loadctx *l = ctx;
  l->calls++;
  if (l->fail) return l->fail;
  if (l->nocache) keel_cache_load_nocache(ld);
  char *p = keel_cache_load_alloc(ld, len + 2);
  if (!p) return KEEL_ENOMEM;
  memcpy(p, "v:", 2);
  memcpy(p + 2, key, len);
  return KEEL_OK;
}

/* Expiry when idle (idle_ns): a hit (get, read, get_or_load) or a write
 * restarts an entry's time, an entry not looked up expires, a TTL (the
 * cache's or the entry's own) still ends it, hits within idle/64 of the last
 * move do not write, cached errors keep their own TTL, and each value is
 * charged 16 bytes more (8 with a TTL, which has the expiry time already). */
static void test_idle_expiry(void **state) {
  (void)state;
  char buf[16];
  removals rm = {0};
  keel_cache_options o = base_opts(1 << 20);
  o.idle_ns = 6400;
  o.clock = fake_clock;
  o.on_removal = on_removal;
  o.removal_ud = &rm;
  o.negative_ttl_ns = 100;
  fake_now = 1000;
  keel_cache_t *c = mk(&o);
  assert_int_equal(keel_cache_put(c, "hot", 3, "H", 1), KEEL_OK);
  assert_int_equal(keel_cache_put(c, "cold", 4, "C", 1), KEEL_OK);
  assert_int_equal(keel_cache_put_ttl(c, "own", 3, "O", 1, 9000), KEEL_OK); /* ends at 10000 */
  fake_now = 7000; /* hits by each kind of lookup, each within idle of the last */
  assert_true(get_str(c, "hot", buf, sizeof buf));
  assert_true(get_str(c, "own", buf, sizeof buf));
  fake_now = 13000;
  assert_int_equal(keel_cache_read(c, "hot", 3, noop_read, NULL), KEEL_OK);
  fake_now = 19000;
  loadctx l = {0};
  keel_cache_value_t *v = NULL;
  assert_int_equal(keel_cache_get_or_load(c, "hot", 3, loader, &l, &v), KEEL_OK);
  assert_int_equal(l.calls, 0);
  assert_memory_equal(keel_cache_value_data(v), "H", 1);
  keel_cache_value_release(v);
  /* cold was never looked up: it expired at 7400; own's TTL ended it at
   * 10000 though a hit at 7000 would have kept it to 13400. */
  assert_false(get_str(c, "cold", buf, sizeof buf));
  assert_false(get_str(c, "own", buf, sizeof buf));
  assert_int_equal(keel_cache_cleanup(c), 2);
  assert_int_equal(rm.n[KEEL_CACHE_EXPIRED], 2);
  /* Last moved at 19000: a hit 99 later (< 6400/64) does not move it, so
   * it expires at 25400, not 25499. */
  fake_now = 19099;
  assert_true(get_str(c, "hot", buf, sizeof buf));
  fake_now = 25450;
  assert_false(get_str(c, "hot", buf, sizeof buf));
  /* A write restarts it like a hit. */
  assert_int_equal(keel_cache_put(c, "w", 1, "1", 1), KEEL_OK);
  fake_now += 6000;
  assert_int_equal(keel_cache_put(c, "w", 1, "2", 1), KEEL_OK);
  fake_now += 6000;
  assert_true(get_str(c, "w", buf, sizeof buf));
  assert_string_equal(buf, "2");
  /* A cached error keeps the negative TTL; idle does not extend it. */
  l.fail = KEEL_EIO;
  assert_int_equal(keel_cache_get_or_load(c, "bad", 3, loader, &l, &v), KEEL_EIO);
  fake_now += 60;
  assert_int_equal(keel_cache_get_or_load(c, "bad", 3, loader, &l, &v), KEEL_EIO);
  fake_now += 60;
  assert_int_equal(keel_cache_get_or_load(c, "bad", 3, loader, &l, &v), KEEL_EIO);
  assert_int_equal(l.calls, 2); /* cached for 100, then loaded again */
  /* The charge: 16 bytes more than a cache without expiry, 8 more than one with a TTL. */
  keel_cache_stats st;
  keel_cache_clear(c);
  assert_int_equal(keel_cache_put(c, "k", 1, "12345678", 8), KEEL_OK);
  keel_cache_get_stats(c, &st);
  uint64_t idle_bytes = st.bytes;
  keel_cache_destroy(c);
  keel_cache_options p = base_opts(1 << 20);
  c = mk(&p);
  assert_int_equal(keel_cache_put(c, "k", 1, "12345678", 8), KEEL_OK);
  keel_cache_get_stats(c, &st);
  assert_int_equal(idle_bytes, st.bytes + 16);
  keel_cache_destroy(c);
  p.ttl_ns = 1000;
  c = mk(&p);
  assert_int_equal(keel_cache_put(c, "k", 1, "12345678", 8), KEEL_OK);
  keel_cache_get_stats(c, &st);
  uint64_t ttl_bytes = st.bytes;
  keel_cache_destroy(c);
  o.ttl_ns = 1000;
  c = mk(&o);
  assert_int_equal(keel_cache_put(c, "k", 1, "12345678", 8), KEEL_OK);
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.bytes, ttl_bytes + 8);
  keel_cache_destroy(c);
}

/* A loader that asks for its own key gets KEEL_EMISUSE at once instead of
 * waiting for itself forever; its own result still reaches its caller. */
static keel_status self_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  keel_cache_t *c = ctx;
  keel_cache_value_t *v = NULL;
  keel_status inner = keel_cache_get_or_load(c, key, len, self_loader, ctx, &v);
  if (inner == KEEL_OK) keel_cache_value_release(v);
  return keel_cache_load_set(ld, inner == KEEL_EMISUSE ? "misuse" : "other", inner == KEEL_EMISUSE ? 6 : 5);
}

static void test_loader_asks_for_its_own_key(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  keel_cache_t *c = mk(&o);
  keel_cache_value_t *v = NULL;
  assert_int_equal(keel_cache_get_or_load(c, "self", 4, self_loader, c, &v), KEEL_OK);
  assert_int_equal(keel_cache_value_len(v), 6);
  assert_memory_equal(keel_cache_value_data(v), "misuse", 6);
  keel_cache_value_release(v);
  keel_cache_destroy(c);
}

static void test_load_errors_not_cached(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  keel_cache_t *c = mk(&o);
  loadctx l = {0, KEEL_EIO, 0};
  keel_cache_value_t *v = NULL;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_EIO);
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_EIO);
  assert_int_equal(l.calls, 2);
  assert_null(v);
  l.fail = KEEL_OK;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_OK);
  assert_int_equal(keel_cache_value_len(v), 3);
  assert_memory_equal(keel_cache_value_data(v), "v:k", 3);
  keel_cache_value_release(v);
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_OK);
  keel_cache_value_release(v);
  assert_int_equal(l.calls, 3);
  /* No-cache values are returned but not stored. */
  l.nocache = 1;
  assert_int_equal(keel_cache_get_or_load(c, "n", 1, loader, &l, &v), KEEL_OK);
  assert_memory_equal(keel_cache_value_data(v), "v:n", 3);
  keel_cache_value_release(v);
  assert_int_equal(keel_cache_get(c, "n", 1, &v), KEEL_ENOTFOUND);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.loads, 4);
  assert_int_equal(st.load_errors, 2);
  assert_int_equal(st.hits + st.misses, 6);
  assert_int_equal(st.hits, 1);
  keel_cache_destroy(c);
}

/* A loader that gives its value a time to live (keel_cache_load_ttl)
 * before or after it allocates the value: the value keeps its bytes and
 * expires on time; 0 keeps it past the cache's TTL. */
typedef struct ttlload {
  int calls;
  int after;    /* call keel_cache_load_ttl after keel_cache_load_alloc */
  uint64_t ttl;
} ttlload;

static keel_status ttl_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  ttlload *l = ctx;
  l->calls++;
  if (!l->after) keel_cache_load_ttl(ld, l->ttl);
  char *p = keel_cache_load_alloc(ld, len + 2);
  if (!p) return KEEL_ENOMEM;
  memcpy(p, "t:", 2);
  memcpy(p + 2, key, len);
  if (l->after) keel_cache_load_ttl(ld, l->ttl);
  return KEEL_OK;
}

static void test_load_ttl(void **state) {
  (void)state;
  for (int with = 0; with < 2; with++) {
    for (int after = 0; after < 2; after++) {
      keel_cache_options o = base_opts(1 << 20);
      o.ttl_ns = with ? 1000 : 0;
      o.clock = fake_clock;
      fake_now = 100;
      keel_cache_t *c = mk(&o);
      ttlload l = {0, after, 50};
      keel_cache_value_t *v;
      assert_int_equal(keel_cache_get_or_load(c, "k", 1, ttl_loader, &l, &v), KEEL_OK);
      assert_int_equal(keel_cache_value_len(v), 3);
      assert_memory_equal(keel_cache_value_data(v), "t:k", 3);
      keel_cache_value_release(v);
      l.ttl = 0;
      assert_int_equal(keel_cache_get_or_load(c, "z", 1, ttl_loader, &l, &v), KEEL_OK);
      keel_cache_value_release(v);
      fake_now = 149; /* k is still there */
      assert_int_equal(keel_cache_get_or_load(c, "k", 1, ttl_loader, &l, &v), KEEL_OK);
      assert_memory_equal(keel_cache_value_data(v), "t:k", 3);
      keel_cache_value_release(v);
      assert_int_equal(l.calls, 2);
      fake_now = 150; /* k expired: loaded again */
      assert_int_equal(keel_cache_get(c, "k", 1, &v), KEEL_ENOTFOUND);
      assert_int_equal(keel_cache_get_or_load(c, "k", 1, ttl_loader, &l, &v), KEEL_OK);
      keel_cache_value_release(v);
      assert_int_equal(l.calls, 3);
      fake_now = 1000000; /* z never expires, past the cache's TTL too */
      assert_int_equal(keel_cache_get(c, "z", 1, &v), KEEL_OK);
      assert_memory_equal(keel_cache_value_data(v), "t:z", 3);
      keel_cache_value_release(v);
      keel_cache_stats st;
      keel_cache_get_stats(c, &st);
      assert_int_equal(st.entries, 2);
      assert_int_equal(st.bytes, 2 * (1 + 3 + 8 + keel_cache_entry_overhead()));
      keel_cache_destroy(c);
    }
  }
}

/* Refresh after write (options.refresh_ns): a get_or_load or read_or_load
 * hit on a value older than the period reloads it once and returns the new
 * value; plain gets do not; a failed refresh keeps the old value and tries
 * again a period later; a value removed while its refresh ran stays
 * removed. With and without a TTL (the entry then has both times). */
typedef struct genload {
  keel_cache_t *c;
  int calls;
  keel_status fail;
  int remove;  /* the loader removes its key, as another thread could meanwhile */
  int nocache; /* the loader's value is not to be stored */
  const char *put;    /* the loader puts this under its key first, as another thread could meanwhile */
  uint64_t advance;   /* the loader moves the clock on by this much (a slow load) */
  size_t big;         /* nonzero: the loader's value is this many bytes of 'x' */
} genload;

static keel_status gen_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  genload *g = ctx;
  g->calls++;
  if (g->remove) (void)keel_cache_remove(g->c, key, len);
  if (g->put) assert_int_equal(keel_cache_put(g->c, key, len, g->put, strlen(g->put)), KEEL_OK);
  fake_now += g->advance;
  if (g->fail) return g->fail;
  if (g->nocache) keel_cache_load_nocache(ld);
  if (g->big) {
    char *p = keel_cache_load_alloc(ld, g->big);
    if (!p) return KEEL_ENOMEM;
    memset(p, 'x', g->big);
    return KEEL_OK;
  }
  char buf[16];
  int n = snprintf(buf, sizeof buf, "v%d", g->calls);
  return keel_cache_load_set(ld, buf, (size_t)n);
}

static void expect_load(keel_cache_t *c, genload *g, const char *want) {
  keel_cache_value_t *v;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, gen_loader, g, &v), KEEL_OK);
  assert_int_equal(keel_cache_value_len(v), strlen(want));
  assert_memory_equal(keel_cache_value_data(v), want, strlen(want));
  keel_cache_value_release(v);
}

static void str_read(void *ctx, const void *data, size_t len) {
  char *out = ctx; /* 16 bytes */
  size_t n = len < 15 ? len : 15;
  memcpy(out, data, n);
  out[n] = 0;
}

static void test_refresh(void **state) {
  (void)state;
  for (int with = 0; with < 2; with++) {
    keel_cache_options o = base_opts(1 << 20);
    o.refresh_ns = 100;
    o.ttl_ns = with ? 1000 : 0;
    o.clock = fake_clock;
    fake_now = 1000;
    keel_cache_t *c = mk(&o);
    genload g = {c, 0, KEEL_OK, 0, 0, NULL, 0, 0};
    expect_load(c, &g, "v1");
    fake_now = 1099;
    expect_load(c, &g, "v1");
    assert_int_equal(g.calls, 1);
    fake_now = 1100; /* due: this caller reloads and gets the new value */
    expect_load(c, &g, "v2");
    assert_int_equal(g.calls, 2);
    fake_now = 1150;
    expect_load(c, &g, "v2");
    fake_now = 1250; /* a plain get never refreshes */
    char buf[16];
    assert_true(get_str(c, "k", buf, sizeof buf));
    assert_string_equal(buf, "v2");
    assert_int_equal(g.calls, 2);
    /* read_or_load refreshes too, and reads the new value. */
    char got[16] = {0};
    assert_int_equal(keel_cache_read_or_load(c, "k", 1, gen_loader, &g, str_read, got), KEEL_OK);
    assert_string_equal(got, "v3");
    /* A failed refresh keeps the old value, and is tried again a period later. */
    fake_now = 1400;
    g.fail = KEEL_EIO;
    expect_load(c, &g, "v3");
    assert_int_equal(g.calls, 4);
    fake_now = 1499;
    expect_load(c, &g, "v3");
    assert_int_equal(g.calls, 4);
    g.fail = KEEL_OK;
    fake_now = 1500;
    expect_load(c, &g, "v5");
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.loads, 5);
    assert_int_equal(st.load_errors, 1);
    assert_int_equal(st.refreshes, 3);
    assert_int_equal(st.replacements, 3);
    assert_int_equal(st.entries, 1);
    /* Both times are charged: the refresh time, and the expiry time with a TTL. */
    assert_int_equal(st.bytes, 1 + 2 + keel_cache_entry_overhead() + (with ? 16 : 8));
    /* A no-cache refresh returns its value and keeps the old one, whose
     * refresh comes again a period later. */
    g.nocache = 1;
    fake_now = 1550; /* v5 was written at 1500 with the cache's TTL: still live */
    expect_load(c, &g, "v5");
    fake_now = 1600;
    expect_load(c, &g, "v6");
    fake_now = 1650;
    expect_load(c, &g, "v5");
    assert_int_equal(g.calls, 6);
    fake_now = 1700;
    expect_load(c, &g, "v7");
    g.nocache = 0;
    /* A new value too big for the cache is returned, not stored, and the
     * old one stays (it was removed, as REPLACED, before). */
    fake_now = 1800;
    g.big = 2u << 20;
    keel_cache_value_t *bigv;
    assert_int_equal(keel_cache_get_or_load(c, "k", 1, gen_loader, &g, &bigv), KEEL_OK);
    assert_int_equal(keel_cache_value_len(bigv), 2u << 20);
    keel_cache_value_release(bigv);
    g.big = 0;
    assert_true(get_str(c, "k", buf, sizeof buf));
    assert_string_equal(buf, "v5");
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.replacements, 3);
    assert_int_equal(st.refreshes, 3);
    /* The value was removed while its refresh ran: the new value is
     * returned, not stored. */
    fake_now = 1900;
    g.remove = 1;
    expect_load(c, &g, "v9");
    assert_false(get_str(c, "k", buf, sizeof buf));
    keel_cache_destroy(c);
  }
}

/* The borrowed get-or-load: the read sees a loaded value and a hit in
 * place, an error reaches the caller without a read, and a negative entry
 * answers without loading. */
typedef struct seen {
  char buf[16];
  size_t len;
  int reads;
} seen;

static void seen_read(void *ctx, const void *data, size_t len) {
  seen *s = ctx;
  s->reads++;
  s->len = len < sizeof s->buf ? len : sizeof s->buf;
  memcpy(s->buf, data, s->len);
}

static void test_read_or_load(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(1 << 20);
  o.negative_ttl_ns = 100;
  o.clock = fake_clock;
  fake_now = 5000;
  keel_cache_t *c = mk(&o);
  loadctx l = {0, KEEL_OK, 0};
  seen s = {{0}, 0, 0};
  assert_int_equal(keel_cache_read_or_load(c, "ab", 2, loader, &l, seen_read, &s), KEEL_OK);
  assert_int_equal(l.calls, 1);
  assert_int_equal(s.reads, 1);
  assert_int_equal(s.len, 4);
  assert_memory_equal(s.buf, "v:ab", 4);
  memset(&s, 0, sizeof s);
  assert_int_equal(keel_cache_read_or_load(c, "ab", 2, loader, &l, seen_read, &s), KEEL_OK);
  assert_int_equal(l.calls, 1); /* a hit */
  assert_int_equal(s.reads, 1);
  assert_memory_equal(s.buf, "v:ab", 4);
  l.fail = KEEL_EIO;
  memset(&s, 0, sizeof s);
  assert_int_equal(keel_cache_read_or_load(c, "x", 1, loader, &l, seen_read, &s), KEEL_EIO);
  assert_int_equal(s.reads, 0);
  assert_int_equal(keel_cache_read_or_load(c, "x", 1, loader, &l, seen_read, &s), KEEL_EIO);
  assert_int_equal(l.calls, 2); /* the error was cached (negative TTL) */
  assert_int_equal(keel_cache_read_or_load(NULL, "x", 1, loader, &l, seen_read, &s), KEEL_EMISUSE);
  assert_int_equal(keel_cache_read_or_load(c, "x", 1, loader, &l, NULL, &s), KEEL_EMISUSE);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.misses, 2);
  assert_int_equal(st.loads, 2);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A get-or-load that inserts first applies the thread's buffered hits:
 * an LRU cache of 3 that loaded a, b, c, then hit a, evicts b (the least
 * recently used) for d, not a, whose hit was still in the read buffer.
 * keel sim replays accesses in order, and the cache must too. */
static void test_load_applies_earlier_hits(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.max_entries = 3;
  o.policy = "lru";
  keel_cache_t *c = mk(&o);
  loadctx l = {0, KEEL_OK, 0};
  keel_cache_value_t *v;
  const char *keys[] = {"a", "b", "c", "a", "d"};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(keel_cache_get_or_load(c, keys[i], 1, loader, &l, &v), KEEL_OK);
    keel_cache_value_release(v);
  }
  assert_int_equal(l.calls, 4);
  char buf[8];
  assert_true(get_str(c, "a", buf, sizeof buf));
  assert_false(get_str(c, "b", buf, sizeof buf));
  assert_true(get_str(c, "c", buf, sizeof buf));
  assert_true(get_str(c, "d", buf, sizeof buf));
  keel_cache_destroy(c);
}

/* The smallest caches, with every policy: 1 and 2 entries hold the most
 * recent keys they admitted and never more (a sketch sized for 2 entries
 * once had no block at all). */
static void test_tiny_caches(void **state) {
  (void)state;
  const char *pols[] = {"lru", "wtinylfu", "default"};
  for (unsigned p = 0; p < 3; p++)
    for (uint64_t n = 1; n <= 2; n++) {
      keel_cache_options o = base_opts(1 << 20);
      o.max_entries = n;
      o.policy = pols[p];
      keel_cache_t *c = mk(&o);
      char k[16], buf[16];
      int found = 0;
      for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "k%d", i % 7);
        assert_int_equal(keel_cache_put(c, k, strlen(k), k, strlen(k)), KEEL_OK);
        keel_cache_stats st;
        keel_cache_get_stats(c, &st);
        assert_true(st.entries <= n);
        if (i >= (int)n) assert_true(st.entries >= 1); /* it holds something */
        if (get_str(c, k, buf, sizeof buf)) {
          assert_string_equal(buf, k);
          found++;
        }
      }
      /* LRU always admits: the key just put is there. The frequency
       * policies may turn a newcomer away, but not every one. */
      if (p == 0) assert_int_equal(found, 50);
      else assert_true(found > 0);
      keel_cache_destroy(c);
    }
}

/* keel_cache_read_many answers as n keel_cache_read calls would: the hits
 * in order with their own values, every lookup counted, groups of any
 * length (the cache works 8 keys at a time), negative entries and absent
 * keys as misses, a NULL key with a length skipped. */
typedef struct many {
  size_t seen[64];
  char val[64][16];
  size_t n;
} many;

static void many_fn(void *ctx, size_t i, const void *data, size_t len) {
  many *m = ctx;
  assert_true(m->n < 64);
  m->seen[m->n] = i;
  snprintf(m->val[m->n], sizeof m->val[0], "%.*s", (int)len, (const char *)data);
  m->n++;
}

static keel_status fail_loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  (void)ctx, (void)key, (void)len, (void)ld;
  return KEEL_EIO;
}

static void test_read_many(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.negative_ttl_ns = 60ull * 1000000000ull;
  keel_cache_t *c = mk(&o);
  char keys[40][8];
  const void *kp[40];
  size_t kl[40];
  for (int i = 0; i < 40; i++) {
    snprintf(keys[i], sizeof keys[i], "m%d", i);
    kp[i] = keys[i];
    kl[i] = strlen(keys[i]);
    if (i % 3 == 0) assert_int_equal(keel_cache_put(c, keys[i], kl[i], keys[i] + 1, kl[i] - 1), KEEL_OK);
  }
  keel_cache_value_t *v;
  assert_int_equal(keel_cache_get_or_load(c, keys[1], kl[1], fail_loader, NULL, &v), KEEL_EIO); /* cached error */
  kl[5] = 3; /* "m5" with its terminating NUL: a stranger sharing a prefix */
  kp[7] = NULL; /* skipped */
  keel_cache_stats st0, st1;
  keel_cache_get_stats(c, &st0);
  for (size_t n = 0; n <= 40; n += 13) { /* 0, 13, 26, 39: partial groups */
    many m = {0};
    size_t hits = keel_cache_read_many(c, n, kp, kl, many_fn, &m);
    assert_int_equal(hits, m.n);
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
      if (i % 3 || i == 7) continue; /* absent, or skipped (7 is not a multiple of 3 anyway) */
      assert_true(want < m.n);
      assert_int_equal(m.seen[want], i);
      assert_string_equal(m.val[want], keys[i] + 1);
      want++;
    }
    assert_int_equal(m.n, want);
  }
  keel_cache_get_stats(c, &st1);
  /* 13 + 26 + 39 lookups, minus the skipped key in each call. */
  assert_int_equal(st1.hits + st1.misses - st0.hits - st0.misses, 13 + 26 + 39 - 3);
  assert_int_equal(st1.hits - st0.hits, 5 + 9 + 13);
  assert_int_equal(keel_cache_read_many(NULL, 1, kp, kl, many_fn, NULL), 0);
  assert_int_equal(keel_cache_read_many(c, 1, NULL, kl, many_fn, NULL), 0);
  assert_int_equal(keel_cache_read_many(c, 1, kp, kl, NULL, NULL), 0);
  keel_cache_destroy(c);
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The policy's bookkeeping so far: a cache of under 64 entries replays
 * every request it sees into all 18 shadow caches. */
static uint64_t shadow_accesses(keel_cache_t *c) {
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  return st.policy_shadow_accesses;
}

/* Waits up to `secs` seconds until the shadows have replayed `want`
 * requests; returns how many they had. */
static uint64_t wait_accesses(keel_cache_t *c, uint64_t want, double secs) {
  double t0 = mono_s();
  while (shadow_accesses(c) < want && mono_s() - t0 < secs) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return shadow_accesses(c);
}

/* A get that misses and the put that follows are one request for the
 * policy, as a get_or_load's miss and load are and as keel sim replays a
 * miss: a 32-entry cache's adaptive policy replays each request into its
 * 18 shadows, so 4 such pairs and 2 hits make 6 x 18 shadow accesses (the
 * misses recorded as well made 10 x 18: the sketch counted each key twice
 * and the shadows took each put for a hit). The caller applies its records
 * before an insert, so the count is exact at the last put. */
static void test_miss_then_put_is_one_request(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.max_entries = 32;
  o.maintenance = KEEL_CACHE_MAINTAIN_CALLER;
  keel_cache_t *c = mk(&o);
  char buf[8];
  const char *keys[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; i++) {
    assert_false(get_str(c, keys[i], buf, sizeof buf));
    if (i == 2) { /* two hits on keys put before */
      assert_true(get_str(c, "a", buf, sizeof buf));
      assert_true(get_str(c, "b", buf, sizeof buf));
    }
    assert_int_equal(keel_cache_put(c, keys[i], 1, "v", 1), KEEL_OK);
  }
  assert_int_equal(shadow_accesses(c), 6 * 18);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.misses, 4);
  keel_cache_destroy(c);
}

/* Who applies recorded hits. 10 hits on a 32-entry cache are fewer than a
 * caller's drain batch (32) and than the ring the thread takes at once (16): with KEEL_CACHE_MAINTAIN_CALLER they wait in
 * the thread's buffer; with the cache's thread (the default at this size) they reach the
 * policy without another call (the thread takes a ring once it holds 16,
 * and whatever is left before it sleeps, ~1 ms after the last record). */
static void test_maintenance_thread_applies_hits(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    keel_cache_options o = base_opts(1 << 20);
    o.max_entries = 32;
    o.maintenance = mode ? KEEL_CACHE_MAINTAIN_CALLER : KEEL_CACHE_MAINTAIN_AUTO; /* AUTO: a thread at 32 entries */
    keel_cache_t *c = mk(&o);
    assert_int_equal(keel_cache_put(c, "k", 1, "v", 1), KEEL_OK);
    /* The thread also replays the shadows (deferred shadows): the put's
     * request reaches them without another call too. */
    if (mode == 0) assert_int_equal(wait_accesses(c, 18, 10), 18);
    uint64_t a0 = shadow_accesses(c);
    assert_int_equal(a0, 18);
    char buf[8];
    for (int i = 0; i < 10; i++) assert_true(get_str(c, "k", buf, sizeof buf));
    uint64_t want = a0 + 10 * 18;
    uint64_t got = wait_accesses(c, want, mode ? 0.2 : 10);
    if (mode == 0) {
      assert_int_equal(got, want);
    } else {
      assert_int_equal(shadow_accesses(c), a0); /* still buffered */
      assert_int_equal(keel_cache_put(c, "j", 1, "w", 1), KEEL_OK); /* an insert applies them first */
      assert_true(shadow_accesses(c) >= want);
    }
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.policy_dropped, 0);
    keel_cache_destroy(c);
  }
}

/* A large cache is split into shards with equal shares of the bound; an
 * entry larger than its shard's share is refused (KEEL_ELIMIT), the rest of
 * the cache works as before. */
static void test_shards(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(4u << 20);
  keel_cache_t *c = mk(&o);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.shards, 4);
  assert_int_equal(st.max_bytes, 4u << 20);
  size_t big = (3u << 20) / 2, small = 100u << 10;
  unsigned char *buf = calloc(1, big);
  assert_non_null(buf);
  assert_int_equal(keel_cache_put(c, "big", 3, buf, big), KEEL_ELIMIT);
  for (int i = 0; i < 8; i++) {
    char k[8];
    snprintf(k, sizeof k, "s%d", i);
    assert_int_equal(keel_cache_put(c, k, strlen(k), buf, small), KEEL_OK);
  }
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.entries, 8);
  assert_true(st.bytes <= st.max_bytes);
  free(buf);
  keel_cache_destroy(c);
  /* A small cache is one shard: an entry up to the whole bound fits. */
  o = base_opts(1u << 20);
  c = mk(&o);
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.shards, 1);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A cache of more than 32,768 entries shows its policy 1 in 32 hits, and
 * marks every entry a lookup finds for a second chance (keel_policy_set_found).
 * Under LRU, in a cache of 40,000 entries (2 shards) filled with 36,000,
 * 4,000 of the oldest 16,000 are found once; 24,000 newcomers then evict
 * the oldest 20,000 but for those: 96 % of them or more are left. Without
 * the marks only those whose hits the sample showed the policy stay (992
 * of the 4,000 in a run with marking disabled, when 1 hit in 16 was
 * sampled). */
static void test_sampled_hits_keep_found_entries(void **state) {
  (void)state;
  keel_cache_options o = base_opts(40000 * (keel_cache_entry_overhead() + 16) + 1);
  o.max_entries = 40000;
  o.policy = "lru";
  o.seed = 3;
  keel_cache_t *c = mk(&o);
  uint64_t k, val = 7;
  for (k = 0; k < 36000; k++) assert_int_equal(keel_cache_put(c, &k, 8, &val, 8), KEEL_OK);
  for (k = 0; k < 16000; k += 4) {
    keel_cache_value_t *v;
    assert_int_equal(keel_cache_get(c, &k, 8, &v), KEEL_OK);
    keel_cache_value_release(v);
  }
  for (k = 36000; k < 60000; k++) assert_int_equal(keel_cache_put(c, &k, 8, &val, 8), KEEL_OK);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.shards, 2);
  assert_int_equal(st.entries, 40000);
  assert_int_equal(st.evictions, 20000);
  unsigned found = 0, others = 0;
  for (k = 0; k < 16000; k++) {
    keel_cache_value_t *v;
    if (keel_cache_get(c, &k, 8, &v) != KEEL_OK) continue;
    keel_cache_value_release(v);
    if (k % 4 == 0) found++;
    else others++;
  }
  print_message("found %u of 4000, others %u of 12000\n", found, others);
  assert_true(found >= 3840);
  assert_true(others <= 500); /* the room they kept was taken from the unmarked */
  keel_cache_destroy(c);
}

static void test_negative_caching(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.negative_ttl_ns = 100;
  o.ttl_ns = 10000;
  o.clock = fake_clock;
  fake_now = 1000;
  keel_cache_t *c = mk(&o);
  loadctx l = {0, KEEL_ETIMEDOUT, 0};
  keel_cache_value_t *v = NULL;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_ETIMEDOUT);
  l.fail = KEEL_OK;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_ETIMEDOUT);
  assert_int_equal(l.calls, 1);
  assert_int_equal(keel_cache_get(c, "k", 1, &v), KEEL_ENOTFOUND);
  fake_now = 1100;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, loader, &l, &v), KEEL_OK);
  assert_int_equal(l.calls, 2);
  keel_cache_value_release(v);
  keel_cache_destroy(c);
}

/* The charged bytes never pass the bound; the count bound holds too. */
static void test_byte_and_entry_bound(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  size_t ov = keel_cache_entry_overhead();
  const uint64_t cap = 50 * (ov + 100);
  static const char *pols[] = {"lru", "default"};
  for (int p = 0; p < 2; p++) {
    keel_cache_options o = base_opts(cap);
    o.policy = pols[p];
    keel_cache_t *c = mk(&o);
    static char val[4000];
    uint64_t charged = 0;
    for (int i = 0; i < 3000; i++) {
      char k[16];
      snprintf(k, sizeof k, "%d", (i * 7919) % 900);
      size_t len = (size_t)(i * 37 % 400);
      assert_int_equal(keel_cache_put(c, k, strlen(k), val, len), KEEL_OK);
      keel_cache_stats st;
      keel_cache_get_stats(c, &st);
      assert_true(st.bytes <= cap);
      charged = st.bytes;
    }
    assert_true(charged > cap / 2);
    /* A value larger than the cache is refused. */
    char *big = calloc(1, (size_t)cap);
    assert_non_null(big);
    assert_int_equal(keel_cache_put(c, "big", 3, big, (size_t)cap), KEEL_ELIMIT);
    free(big);
    /* Shrinking evicts down to the new bound at once. */
    assert_int_equal(keel_cache_set_capacity(c, cap / 4), KEEL_OK);
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_true(st.bytes <= cap / 4);
    assert_int_equal(st.max_bytes, cap / 4);
    /* Growing it back lets it fill past the small bound again. */
    assert_int_equal(keel_cache_set_capacity(c, cap), KEEL_OK);
    for (int i = 0; i < 3000; i++) {
      char k[16];
      snprintf(k, sizeof k, "g%d", (i * 7919) % 900);
      assert_int_equal(keel_cache_put(c, k, strlen(k), val, (size_t)(i * 37 % 400)), KEEL_OK);
    }
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.max_bytes, cap);
    assert_true(st.bytes > cap / 2 && st.bytes <= cap);
    keel_cache_destroy(c);
  }
  /* A sharded cache shrunk below what its shards can hold is refused, not
   * left storing nothing; a share that holds one small entry is taken. */
  {
    keel_cache_options o = base_opts(64u << 20);
    keel_cache_t *c = mk(&o);
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_true(st.shards > 1);
    uint64_t one = keel_cache_entry_overhead() + 2; /* key "q", value "v" */
    assert_int_equal(keel_cache_set_capacity(c, 1000), KEEL_EINVAL);
    assert_int_equal(keel_cache_set_capacity(c, st.shards * keel_cache_entry_overhead()), KEEL_EINVAL);
    assert_int_equal(keel_cache_set_capacity(NULL, 1u << 20), KEEL_EINVAL);
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.max_bytes, 64u << 20); /* unchanged */
    assert_int_equal(keel_cache_set_capacity(c, st.shards * one), KEEL_OK);
    assert_int_equal(keel_cache_put(c, "q", 1, "v", 1), KEEL_OK);
    keel_cache_value_t *v;
    assert_int_equal(keel_cache_get(c, "q", 1, &v), KEEL_OK);
    keel_cache_value_release(v);
    keel_cache_destroy(c);

    o.max_entries = 10;
    c = mk(&o);
    for (int i = 0; i < 100; i++) {
      char k[16];
      snprintf(k, sizeof k, "e%d", i);
      assert_int_equal(keel_cache_put(c, k, strlen(k), "x", 1), KEEL_OK);
      keel_cache_get_stats(c, &st);
      assert_true(st.entries <= 10);
    }
    assert_int_equal(st.entries, 10);
    assert_int_equal(st.evictions, 90);
    keel_cache_destroy(c);
  }
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Every removal is reported once with its cause, and the stats agree. */
static void test_removal_causes_and_stats(void **state) {
  (void)state;
  size_t ov = keel_cache_entry_overhead();
  keel_cache_options o = base_opts(10 * (ov + 8));
  removals rm = {0};
  o.on_removal = on_removal;
  o.removal_ud = &rm;
  keel_cache_t *c = mk(&o);
  char k[16];
  for (int i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "k%03d", i % 40);
    assert_int_equal(keel_cache_put(c, k, 4, "vvvv", 4), KEEL_OK);
  }
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(rm.n[KEEL_CACHE_EVICTED], st.evictions);
  assert_int_equal(rm.n[KEEL_CACHE_REPLACED], st.replacements);
  assert_int_equal(st.puts, 100);
  /* puts = entries now + everything that left. */
  assert_int_equal(st.puts, st.entries + st.evictions + st.replacements);
  assert_int_equal(st.bytes, st.entries * (ov + 8));
  /* A 10-entry cache's adaptive policy replays every request (here: each
   * put) into its 18 shadows, and the stats say so. Its maintenance
   * thread replays them, soon; 100 requests fit its queue, so none is
   * dropped. */
  assert_int_equal(wait_accesses(c, 18 * 100, 10), 18 * 100);
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.policy_shadow_dropped, 0);
  unsigned found = 0;
  for (int i = 0; i < 40; i++) {
    snprintf(k, sizeof k, "k%03d", i);
    keel_cache_value_t *v;
    if (keel_cache_get(c, k, 4, &v) == KEEL_OK) {
      found++;
      keel_cache_value_release(v);
    }
  }
  keel_cache_get_stats(c, &st);
  assert_int_equal(found, st.entries);
  assert_int_equal(st.hits, found);
  assert_int_equal(st.hits + st.misses, 40);
  keel_cache_destroy(c);
}

/* A put of the key while its loader runs is newer than what the loader
 * read: it stays, and the load (value or error, even with negative
 * caching) goes to its caller uncached. */
static void test_put_during_load_wins(void **state) {
  (void)state;
  for (int failing = 0; failing < 2; failing++) {
    keel_cache_options o = base_opts(1 << 20);
    o.negative_ttl_ns = 60ull * 1000000000ull;
    keel_cache_t *c = mk(&o);
    genload g = {c, 0, failing ? KEEL_EIO : KEEL_OK, 0, 0, "fresh", 0, 0};
    keel_cache_value_t *v = NULL;
    keel_status st = keel_cache_get_or_load(c, "k", 1, gen_loader, &g, &v);
    if (failing) {
      assert_int_equal(st, KEEL_EIO);
    } else {
      assert_int_equal(st, KEEL_OK);
      assert_memory_equal(keel_cache_value_data(v), "v1", 2); /* its own load */
      keel_cache_value_release(v);
    }
    char buf[16];
    assert_true(get_str(c, "k", buf, sizeof buf));
    assert_string_equal(buf, "fresh");
    keel_cache_stats cs;
    keel_cache_get_stats(c, &cs);
    assert_int_equal(cs.entries, 1);
    keel_cache_destroy(c);
  }
}

/* A refresh whose loader fails keeps the old value, but not one that
 * expired while the loader ran: that call gets the loader's error. */
static void test_failed_refresh_of_expired_value(void **state) {
  (void)state;
  keel_cache_options o = base_opts(1 << 20);
  o.refresh_ns = 100;
  o.ttl_ns = 1000;
  o.clock = fake_clock;
  fake_now = 1000;
  keel_cache_t *c = mk(&o);
  genload g = {c, 0, KEEL_OK, 0, 0, NULL, 0, 0};
  expect_load(c, &g, "v1"); /* written at 1000, expires at 2000 */
  fake_now = 1500;
  g.fail = KEEL_ETIMEDOUT;
  expect_load(c, &g, "v1"); /* a refresh that fails: the old value, KEEL_OK */
  fake_now = 1900;
  g.advance = 200; /* the next refresh's loader runs past 2000, then fails */
  keel_cache_value_t *v = (keel_cache_value_t *)0x1;
  assert_int_equal(keel_cache_get_or_load(c, "k", 1, gen_loader, &g, &v), KEEL_ETIMEDOUT);
  assert_null(v);
  keel_cache_destroy(c);
}

/* An expired entry that leaves because a put replaced its key, or a
 * remove named it, leaves as EXPIRED; remove says it was not there. */
static void test_expired_entries_leave_as_expired(void **state) {
  (void)state;
  removals rm = {0};
  keel_cache_t *c = mk_clocked(100, &rm, 1000);
  assert_int_equal(keel_cache_put(c, "a", 1, "1", 1), KEEL_OK);
  assert_int_equal(keel_cache_put(c, "b", 1, "1", 1), KEEL_OK);
  assert_int_equal(keel_cache_put(c, "c", 1, "1", 1), KEEL_OK);
  assert_int_equal(keel_cache_put(c, "c", 1, "2", 1), KEEL_OK); /* live: replaced */
  assert_int_equal(rm.n[KEEL_CACHE_REPLACED], 1);
  fake_now = 1100;
  assert_int_equal(keel_cache_put(c, "a", 1, "2", 1), KEEL_OK);
  assert_int_equal(keel_cache_remove(c, "b", 1), KEEL_ENOTFOUND);
  assert_int_equal(rm.n[KEEL_CACHE_EXPIRED], 2);
  assert_int_equal(rm.n[KEEL_CACHE_REPLACED], 1);
  assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 0);
  keel_cache_stats cs;
  keel_cache_get_stats(c, &cs);
  assert_int_equal(cs.expirations, 2);
  assert_int_equal(cs.replacements, 1);
  assert_int_equal(cs.removals, 0);
  keel_cache_destroy(c);
}

/* A cache without a real bound (UINT64_MAX bytes) costs what a cache of a
 * few million entries does, not the structures its bound could fill: its
 * adaptive policy's shadows are sized as for 2^32 entries at most (they
 * took a gigabyte before). */
static void test_unbounded_cache_is_small(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_cache_options o = base_opts(UINT64_MAX);
  keel_cache_t *c = mk(&o);
  int64_t made = tu_tracked_bytes() - before;
  assert_true(made < (32 << 20));
  assert_int_equal(keel_cache_put(c, "k", 1, "v", 1), KEEL_OK);
  char buf[8];
  assert_true(get_str(c, "k", buf, sizeof buf));
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- remove_if and for_each --------------------------------------------- */

/* What a scan saw: every key once (seen[i] counts key "u<i/100>:<i%100>"),
 * the values as stored, and negative entries offered with a NULL value. */
typedef struct scanned {
  unsigned seen[1000];
  unsigned visits, negatives, bad_values;
  unsigned stop_after; /* for_each: stop after this many (0: never) */
  const char *prefix;  /* remove_if: what matches */
} scanned;

static int key_index(const void *key, size_t n) {
  char k[32];
  unsigned u, i;
  if (n >= sizeof k) return -1;
  memcpy(k, key, n);
  k[n] = 0;
  return sscanf(k, "u%u:%u", &u, &i) == 2 && u < 10 && i < 100 ? (int)(u * 100 + i) : -1;
}

static void note(scanned *x, const void *key, size_t n, keel_cache_value_t *v) {
  x->visits++;
  if (!v) {
    x->negatives++;
    return;
  }
  int ix = key_index(key, n);
  if (ix < 0) return;
  x->seen[ix]++;
  /* Each value is its key reversed: a value handed with the wrong key shows. */
  char want[32];
  for (size_t j = 0; j < n; j++) want[j] = ((const char *)key)[n - 1 - j];
  if (keel_cache_value_len(v) != n || memcmp(keel_cache_value_data(v), want, n) != 0) x->bad_values++;
}

static int visit_all(void *ud, const void *key, size_t n, keel_cache_value_t *v) {
  scanned *x = ud;
  note(x, key, n, v);
  return x->stop_after && x->visits >= x->stop_after;
}

static int match_prefix(void *ud, const void *key, size_t n, keel_cache_value_t *v) {
  scanned *x = ud;
  note(x, key, n, v);
  size_t pl = strlen(x->prefix);
  return n >= pl && memcmp(key, x->prefix, pl) == 0;
}

static void put_reversed(keel_cache_t *c, int ix) {
  char k[16], v[16];
  int n = snprintf(k, sizeof k, "u%d:%d", ix / 100, ix % 100);
  for (int j = 0; j < n; j++) v[j] = k[n - 1 - j];
  assert_int_equal(keel_cache_put(c, k, (size_t)n, v, (size_t)n), KEEL_OK);
}

static int present(keel_cache_t *c, int ix) {
  char k[16], buf[16];
  snprintf(k, sizeof k, "u%d:%d", ix / 100, ix % 100);
  return get_str(c, k, buf, sizeof buf);
}

/* 1,000 keys of 10 users; remove_if drops one user's 100 and nothing else,
 * reports each as REMOVED, and the stats follow; for_each then sees the 900
 * left, each once with its own value, and stops when asked. In a 4-shard
 * cache and in one whose keys all share one chain (unlinks at its head, in
 * its middle and at its tail while the walk goes on). */
static void test_remove_if_and_for_each(void **state) {
  (void)state;
  for (int collide = 0; collide < 2; collide++) {
    int64_t before = tu_tracked_bytes();
    keel_cache_options o = base_opts(collide ? 1u << 20 : 4u << 20);
    removals rm = {0};
    o.on_removal = on_removal;
    o.removal_ud = &rm;
    if (collide) o.hash = const_hash;
    keel_cache_t *c = mk(&o);
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.shards, collide ? 1 : 4);
    for (int i = 0; i < 1000; i++) put_reversed(c, i);
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 1000);
    uint64_t bytes = st.bytes;

    scanned *x = calloc(1, sizeof *x);
    assert_non_null(x);
    assert_int_equal(keel_cache_for_each(c, visit_all, x), 1000);
    for (int i = 0; i < 1000; i++) assert_int_equal(x->seen[i], 1);
    assert_int_equal(x->bad_values, 0);

    memset(x, 0, sizeof *x);
    x->prefix = "u7:";
    assert_int_equal(keel_cache_remove_if(c, match_prefix, x), 100);
    assert_int_equal(x->visits, 1000); /* every entry offered once */
    assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 100);
    assert_memory_equal(rm.last_key, "u7:", 3);
    for (int i = 0; i < 1000; i++) assert_int_equal(present(c, i), i / 100 != 7);
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 900);
    assert_int_equal(st.removals, 100);
    /* u7:0-u7:9 (4 bytes of key and 4 of value), u7:10-u7:99 (5 and 5) */
    assert_int_equal(st.bytes, bytes - 100 * keel_cache_entry_overhead() - 10 * 8 - 90 * 10);

    memset(x, 0, sizeof *x);
    assert_int_equal(keel_cache_for_each(c, visit_all, x), 900);
    for (int i = 0; i < 1000; i++) assert_int_equal(x->seen[i], i / 100 != 7);
    memset(x, 0, sizeof *x);
    x->stop_after = 10;
    assert_int_equal(keel_cache_for_each(c, visit_all, x), 10);
    assert_int_equal(x->visits, 10);

    /* Nothing matches: nothing removed. A NULL predicate or cache: 0. */
    memset(x, 0, sizeof *x);
    x->prefix = "nobody";
    assert_int_equal(keel_cache_remove_if(c, match_prefix, x), 0);
    assert_int_equal(keel_cache_remove_if(c, NULL, x), 0);
    assert_int_equal(keel_cache_remove_if(NULL, match_prefix, x), 0);
    assert_int_equal(keel_cache_for_each(c, NULL, x), 0);
    assert_int_equal(keel_cache_for_each(NULL, visit_all, x), 0);
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 900);
    /* Everything matches: the cache is empty, and its memory back. */
    memset(x, 0, sizeof *x);
    x->prefix = "u";
    assert_int_equal(keel_cache_remove_if(c, match_prefix, x), 900);
    keel_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    free(x);
    keel_cache_destroy(c);
    assert_int_equal(tu_tracked_bytes(), before);
  }
}

/* Expired entries are neither visited nor offered; a cached loader error
 * is, with a NULL value, and removing it lets the next get_or_load load. */
static void test_scans_skip_expired_offer_negative(void **state) {
  (void)state;
  removals rm = {0};
  keel_cache_t *c = mk_clocked(0, &rm, 1000);
  for (int i = 0; i < 10; i++) put_reversed(c, i);
  char k[16], v[16];
  for (int i = 10; i < 20; i++) { /* ten with a TTL of 100 */
    int n = snprintf(k, sizeof k, "u%d:%d", i / 100, i % 100);
    for (int j = 0; j < n; j++) v[j] = k[n - 1 - j];
    assert_int_equal(keel_cache_put_ttl(c, k, (size_t)n, v, (size_t)n, 100), KEEL_OK);
  }
  scanned *x = calloc(1, sizeof *x);
  assert_non_null(x);
  assert_int_equal(keel_cache_for_each(c, visit_all, x), 20);
  fake_now = 1100; /* the ten have expired */
  memset(x, 0, sizeof *x);
  assert_int_equal(keel_cache_for_each(c, visit_all, x), 10);
  for (int i = 0; i < 20; i++) assert_int_equal(x->seen[i], i < 10);
  memset(x, 0, sizeof *x);
  x->prefix = "u0:1"; /* u0:1 and u0:10-19: only u0:1 is live */
  assert_int_equal(keel_cache_remove_if(c, match_prefix, x), 1);
  assert_int_equal(x->visits, 10);
  assert_int_equal(rm.n[KEEL_CACHE_REMOVED], 1);
  assert_int_equal(keel_cache_cleanup(c), 10);
  assert_int_equal(rm.n[KEEL_CACHE_EXPIRED], 10);
  keel_cache_destroy(c);

  keel_cache_options o = base_opts(1 << 20);
  o.negative_ttl_ns = 60ull * 1000000000ull;
  c = mk(&o);
  loadctx l = {0, KEEL_EIO, 0};
  keel_cache_value_t *got = NULL;
  assert_int_equal(keel_cache_get_or_load(c, "u9:9", 4, loader, &l, &got), KEEL_EIO);
  put_reversed(c, 1);
  memset(x, 0, sizeof *x);
  assert_int_equal(keel_cache_for_each(c, visit_all, x), 2);
  assert_int_equal(x->negatives, 1);
  memset(x, 0, sizeof *x);
  x->prefix = "u9:";
  assert_int_equal(keel_cache_remove_if(c, match_prefix, x), 1);
  l.fail = KEEL_OK;
  assert_int_equal(keel_cache_get_or_load(c, "u9:9", 4, loader, &l, &got), KEEL_OK);
  assert_int_equal(l.calls, 2);
  keel_cache_value_release(got);
  free(x);
  keel_cache_destroy(c);
}

static int create_attempt(void *ctx) {
  (void)ctx;
  keel_cache_options o = base_opts(1 << 20);
  keel_cache_t *c = NULL;
  keel_status st = keel_cache_create(&o, &c);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  keel_cache_destroy(c);
  return 0;
}

/* put under every single allocation failure: KEEL_ENOMEM, the key absent,
 * the cache still working; then no leak once destroyed. */
static void test_oom(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  assert_true(tu_oom_sweep(create_attempt, NULL) > 3);
  keel_cache_options o = base_opts(1 << 20);
  keel_cache_t *c = mk(&o);
  unsigned failures = 0;
  for (int i = 0; i < 400; i++) {
    char k[16];
    snprintf(k, sizeof k, "p%d", i);
    for (uint64_t n = 1;; n++) {
      keel_mem_fail_after(n, 0);
      keel_status st = keel_cache_put(c, k, strlen(k), "value", 5);
      uint64_t hits = keel_mem_fault_hits();
      keel_mem_fail_after(0, 0);
      keel_cache_value_t *v;
      if (hits == 0) {
        assert_int_equal(st, KEEL_OK);
        break;
      }
      failures++;
      if (st == KEEL_OK) {
        /* An allocation with a fallback failed (a table resize, a limbo
         * list, the sketch): the put still succeeded. */
        assert_int_equal(keel_cache_get(c, k, strlen(k), &v), KEEL_OK);
        keel_cache_value_release(v);
        break;
      }
      assert_int_equal(st, KEEL_ENOMEM);
      assert_int_equal(keel_cache_get(c, k, strlen(k), &v), KEEL_ENOTFOUND);
    }
  }
  assert_true(failures >= 400);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  assert_int_equal(st.entries, 400);
  keel_cache_destroy(c);
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic),
      cmocka_unit_test(test_too_big_put_removes), cmocka_unit_test(test_read_many),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_value_outlives_eviction), cmocka_unit_test(test_over_release_detected),
      cmocka_unit_test(test_forced_collisions),
      cmocka_unit_test(test_one_bucket_chain_tags), cmocka_unit_test(test_churn),
      cmocka_unit_test(test_clear_frees_at_once),
      cmocka_unit_test(test_ttl),
      cmocka_unit_test(test_entry_ttl),
      cmocka_unit_test(test_idle_expiry),
      cmocka_unit_test(test_loader_asks_for_its_own_key),
      cmocka_unit_test(test_coarse_clock_expiry),
      cmocka_unit_test(test_load_ttl),
      cmocka_unit_test(test_refresh),
      cmocka_unit_test(test_load_errors_not_cached),
      cmocka_unit_test(test_negative_caching),
      cmocka_unit_test(test_read_or_load),
      cmocka_unit_test(test_load_applies_earlier_hits), cmocka_unit_test(test_tiny_caches),
      cmocka_unit_test(test_miss_then_put_is_one_request),
      cmocka_unit_test(test_maintenance_thread_applies_hits),
      cmocka_unit_test(test_shards), cmocka_unit_test(test_sampled_hits_keep_found_entries),
      cmocka_unit_test(test_byte_and_entry_bound),
      cmocka_unit_test(test_removal_causes_and_stats),
      cmocka_unit_test(test_put_during_load_wins),
      cmocka_unit_test(test_failed_refresh_of_expired_value),
      cmocka_unit_test(test_expired_entries_leave_as_expired),
      cmocka_unit_test(test_unbounded_cache_is_small),
      cmocka_unit_test(test_remove_if_and_for_each),
      cmocka_unit_test(test_scans_skip_expired_offer_negative),
      cmocka_unit_test(test_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
