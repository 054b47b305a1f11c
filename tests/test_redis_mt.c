/* test_redis_mt.c — Redis addresses and the L2 cache against a private
 * redis-server (tests/redis_fixture.h): round trip, namespacing, single
 * flight across two L2 objects (as two processes would be) with 8 threads
 * on one key, a dead lock holder costing only the lock's TTL, a slow one
 * whose late unlock leaves its successor's lock alone, and Redis lost
 * and back (degrade to misses, warn, reconnect). Without redis-server the
 * server tests are skipped with a message; with a redis-server that does
 * not start, they fail (tr_require). Also run under TSan. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/redis.h"
#include "redis_fixture.h"
#include "testutil.h"

static tr_server srv;

static void parse_ok(void **state) {
  (void)state;
  keel_redis_addr a;
  char err[256];
  assert_int_equal(keel_redis_addr_parse("redis://127.0.0.1:6380", &a, err, sizeof err), KEEL_OK);
  assert_string_equal(a.host, "127.0.0.1");
  assert_int_equal(a.port, 6380);
  assert_int_equal(a.db, 0);
  assert_string_equal(a.stream, "");
  assert_int_equal(keel_redis_addr_parse("redis://localhost:7000/3?stream=ev&group=g1&consumer=w-2", &a, err,
                                         sizeof err), KEEL_OK);
  assert_string_equal(a.host, "localhost");
  assert_int_equal(a.db, 3);
  assert_string_equal(a.stream, "ev");
  assert_string_equal(a.group, "g1");
  assert_string_equal(a.consumer, "w-2");
  assert_int_equal(keel_redis_addr_parse("redis://[::1]:6381/2?stream=s", &a, err, sizeof err), KEEL_OK);
  assert_string_equal(a.host, "::1"); /* an IPv6 address in brackets, as URLs write them */
  assert_int_equal(a.port, 6381);
  assert_int_equal(a.db, 2);
  assert_true(keel_redis_is_url("redis://x:1"));
  assert_false(keel_redis_is_url("events.ndjson"));
  /* The scheme in any case; rediss:// is an address, refused by name. */
  assert_int_equal(keel_redis_addr_parse("REDIS://h:6379/1", &a, err, sizeof err), KEEL_OK);
  assert_string_equal(a.host, "h");
  assert_int_equal(a.db, 1);
  assert_true(keel_redis_is_url("rediss://h:6380"));
  assert_int_equal(keel_redis_addr_parse("rediss://h:6380", &a, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "TLS (rediss://) is not supported"));
  /* One stream of one server, however the loopback is spelled; not two
   * streams, dbs or ports, and not an address that names no stream. */
  keel_redis_addr x, y;
  assert_int_equal(keel_redis_addr_parse("redis://LocalHost:7000/2?stream=s&group=g", &x, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_redis_addr_parse("redis://[::1]:7000/2?stream=s", &y, err, sizeof err), KEEL_OK);
  assert_true(keel_redis_same_stream(&x, &y));
  assert_int_equal(keel_redis_addr_parse("redis://[::1]:7000/2?stream=t", &y, err, sizeof err), KEEL_OK);
  assert_false(keel_redis_same_stream(&x, &y));
  assert_int_equal(keel_redis_addr_parse("redis://127.0.0.1:7000/3?stream=s", &y, err, sizeof err), KEEL_OK);
  assert_false(keel_redis_same_stream(&x, &y));
  assert_int_equal(keel_redis_addr_parse("redis://other:7000/2?stream=s", &y, err, sizeof err), KEEL_OK);
  assert_false(keel_redis_same_stream(&x, &y));
  assert_int_equal(keel_redis_addr_parse("redis://h:1", &x, err, sizeof err), KEEL_OK);
  assert_false(keel_redis_same_stream(&x, &x));
}

static void parse_bad(void **state) {
  (void)state;
  keel_redis_addr a;
  char err[256];
  const char *bad[] = {"http://h:1", "redis://:6379", "redis://host", "redis://host:0", "redis://host:70000",
                       "redis://host:12x", "redis://host:1/db", "redis://host:1?strem=x", "redis://host:1?stream",
                       "redis://user:pw@host:1", "redis://[::1]", "redis://[::1:6379", "redis://[]:6379",
                       "redis://h:1?stream=a&stream=b", "redis://h:1?group=g&group=g"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    assert_int_equal(keel_redis_addr_parse(bad[i], &a, err, sizeof err), KEEL_ECONFIG);
    assert_true(err[0] != '\0');
  }
  keel_redis_addr_parse("redis://u:secret@h:1", &a, err, sizeof err);
  assert_null(strstr(err, "secret")); /* the message never echoes a password */
  assert_non_null(strstr(err, "KEEL_REDIS_PASSWORD"));
}

static keel_l2_t *make_l2(uint64_t lock_ttl_ms, uint64_t wait_ms) {
  char url[64], err[256] = "";
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  keel_l2_options o = {.size = sizeof o, .url = url, .ttl_ms = 60000, .lock_ttl_ms = lock_ttl_ms, .wait_ms = wait_ms,
                       .timeout_ms = 500, .quiet = 1};
  keel_l2_t *l2 = NULL;
  assert_int_equal(keel_l2_create(&o, &l2, err, sizeof err), KEEL_OK);
  return l2;
}

static void l2_round_trip(void **state) {
  (void)state;
  tr_require(&srv);
  int64_t before = tu_tracked_bytes();
  keel_l2_t *l2 = make_l2(1000, 0);
  keel_l2_result r;
  const char key[] = "k\0with\0nuls";
  keel_l2_lookup(l2, "rt:1:7:", key, sizeof key, &r);
  assert_false(r.hit);
  assert_true(r.locked); /* first miss holds the compute lock */
  keel_l2_store(l2, "rt:1:7:", key, sizeof key, "VAL\0UE", 6, &r);
  assert_false(r.locked);
  keel_l2_lookup(l2, "rt:1:7:", key, sizeof key, &r);
  assert_true(r.hit);
  assert_int_equal(r.len, 6);
  assert_memory_equal(r.data, "VAL\0UE", 6);
  keel_l2_result_release(&r);
  keel_l2_lookup(l2, "rt:2:7:", key, sizeof key, &r); /* another stage version: another entry */
  assert_false(r.hit);
  keel_l2_unlock(l2, "rt:2:7:", key, sizeof key, &r);
  keel_l2_lookup(l2, "rt:2:7:", key, sizeof key, &r); /* the unlock freed the lock: lock again */
  assert_true(r.locked);
  keel_l2_unlock(l2, "rt:2:7:", key, sizeof key, &r);
  keel_l2_stats s;
  keel_l2_get_stats(l2, &s);
  assert_int_equal(s.hits, 1);
  assert_int_equal(s.misses, 3);
  assert_int_equal(s.stores, 1);
  assert_int_equal(s.errors, 0);
  assert_true(s.calls >= 6 && s.latency_s > 0);
  keel_l2_destroy(l2);
  assert_int_equal(tu_tracked_bytes(), before);
}

typedef struct flight {
  keel_l2_t *l2;
  pthread_barrier_t *go;
  _Atomic int *computes, *hits;
} flight;

static void *flight_main(void *arg) {
  flight *f = arg;
  keel_l2_result r;
  pthread_barrier_wait(f->go);
  keel_l2_lookup(f->l2, "sf:1:1:", "same-key", 8, &r);
  if (r.hit) {
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.data, "value", 5);
    atomic_fetch_add(f->hits, 1);
    keel_l2_result_release(&r);
  } else {
    atomic_fetch_add(f->computes, 1); /* the loader would run here */
    struct timespec ts = {0, 150000000};
    nanosleep(&ts, NULL);
    keel_l2_store(f->l2, "sf:1:1:", "same-key", 8, "value", 5, &r);
  }
  return NULL;
}

static void l2_single_flight(void **state) {
  (void)state;
  tr_require(&srv);
  keel_l2_t *a = make_l2(5000, 5000), *b = make_l2(5000, 5000);
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, 8);
  _Atomic int computes = 0, hits = 0;
  pthread_t t[8];
  flight f[8];
  for (int i = 0; i < 8; i++) {
    f[i] = (flight){i % 2 ? a : b, &go, &computes, &hits};
    pthread_create(&t[i], NULL, flight_main, &f[i]);
  }
  for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&computes), 1);
  assert_int_equal(atomic_load(&hits), 7);
  keel_l2_stats sa, sb;
  keel_l2_get_stats(a, &sa);
  keel_l2_get_stats(b, &sb);
  /* Most see the lock and wait; a thread late enough finds the value. */
  assert_true(sa.lock_waits + sb.lock_waits >= 1);
  assert_true(sa.waited_hits + sb.waited_hits >= 1);
  assert_int_equal(sa.hits + sb.hits, 7);
  assert_int_equal(sa.misses + sb.misses, 1);
  pthread_barrier_destroy(&go);
  keel_l2_destroy(a);
  keel_l2_destroy(b);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void l2_dead_holder(void **state) {
  (void)state;
  tr_require(&srv);
  keel_l2_t *dead = make_l2(300, 0), *b = make_l2(300, 3000);
  keel_l2_result r1, r2;
  keel_l2_lookup(dead, "dh:1:1:", "k", 1, &r1);
  assert_true(r1.locked); /* and never stores: the holder "died" */
  double t0 = now_s();
  keel_l2_lookup(b, "dh:1:1:", "k", 1, &r2);
  double waited = now_s() - t0;
  assert_true(r2.locked); /* it took the expired lock over */
  assert_true(waited >= 0.2 && waited < 2.0);
  keel_l2_unlock(b, "dh:1:1:", "k", 1, &r2);
  keel_l2_destroy(dead);
  keel_l2_destroy(b);
}

/* A holder that was only slow: its lock expired, another client took the
 * key's lock on its first try, and then the slow one unlocks. That must
 * not free the other's lock: tokens are unique per client, not per process
 * (two clients of one process, or process 1 of two containers, each
 * numbering their tokens from 0, had the same first token). */
static void l2_late_unlock(void **state) {
  (void)state;
  tr_require(&srv);
  keel_l2_t *slow = make_l2(200, 0), *b = make_l2(3000, 0), *c = make_l2(3000, 50);
  keel_l2_result r1, r2, r3;
  keel_l2_lookup(slow, "lu:1:1:", "k", 1, &r1);
  assert_true(r1.locked);
  nanosleep(&(struct timespec){0, 300000000L}, NULL); /* past its lock's 200 ms */
  keel_l2_lookup(b, "lu:1:1:", "k", 1, &r2);
  assert_true(r2.locked);
  assert_string_not_equal(r1.token, r2.token);
  keel_l2_unlock(slow, "lu:1:1:", "k", 1, &r1);
  keel_l2_lookup(c, "lu:1:1:", "k", 1, &r3); /* waits 50 ms: the lock is still b's */
  assert_false(r3.hit);
  assert_false(r3.locked);
  keel_l2_unlock(b, "lu:1:1:", "k", 1, &r2);
  keel_l2_destroy(slow);
  keel_l2_destroy(b);
  keel_l2_destroy(c);
}

static void l2_redis_lost(void **state) {
  (void)state;
  tr_require(&srv);
  keel_l2_t *l2 = make_l2(1000, 0);
  keel_l2_result r;
  keel_l2_lookup(l2, "lost:1:1:", "k", 1, &r);
  keel_l2_store(l2, "lost:1:1:", "k", 1, "v", 1, &r);
  tr_stop(&srv);
  for (int i = 0; i < 50; i++) { /* never fails, never hangs */
    keel_l2_lookup(l2, "lost:1:1:", "k", 1, &r);
    assert_false(r.hit);
    assert_false(r.locked);
    keel_l2_store(l2, "lost:1:1:", "k", 1, "v", 1, &r);
  }
  keel_l2_stats s;
  keel_l2_get_stats(l2, &s);
  assert_true(s.down);
  assert_true(s.errors >= 1);
  assert_true(s.degraded >= 40); /* most lookups did not touch the network */
  if (tr_start(&srv) != 0) /* on the same port */
    fail_msg("redis-server did not start again on port %d: %s", srv.port, srv.why);
  double t0 = now_s();
  int back = 0;
  while (!back && now_s() - t0 < 8) {
    keel_l2_lookup(l2, "lost:1:1:", "k2", 2, &r);
    back = r.locked;
    if (!back) {
      struct timespec ts = {0, 20000000};
      nanosleep(&ts, NULL);
    }
  }
  assert_true(back);
  keel_l2_unlock(l2, "lost:1:1:", "k2", 2, &r);
  keel_l2_get_stats(l2, &s);
  assert_false(s.down);
  assert_int_equal(s.reconnects, 1);
  keel_l2_destroy(l2);
}

/* Every allocation of create + a lookup with a long key (its Redis key
 * does not fit the stack buffer) + store, failing in turn: a clean
 * KEEL_ENOMEM or a degraded miss, never a leak or a crash. */
static int oom_attempt(void *ctx) {
  (void)ctx;
  char url[64], err[256] = "";
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  keel_l2_options o = {.size = sizeof o, .url = url, .ttl_ms = 60000, .timeout_ms = 500, .quiet = 1};
  keel_l2_t *l2 = NULL;
  keel_status st = keel_l2_create(&o, &l2, err, sizeof err);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  char key[700];
  memset(key, 'k', sizeof key);
  keel_l2_result r;
  keel_l2_lookup(l2, "oom:1:1:", key, sizeof key, &r);
  if (r.hit) keel_l2_result_release(&r);
  else if (r.locked) keel_l2_store(l2, "oom:1:1:", key, sizeof key, "v", 1, &r);
  keel_l2_stats s;
  keel_l2_get_stats(l2, &s);
  keel_l2_destroy(l2);
  return s.errors || s.degraded ? 1 : 0;
}

static void l2_oom_sweep(void **state) {
  (void)state;
  tr_require(&srv);
  unsigned n = tu_oom_sweep(oom_attempt, NULL);
  assert_true(n >= 2);
}

static void l2_unreachable_at_start(void **state) {
  (void)state;
  keel_l2_options o = {.size = sizeof o, .url = "redis://127.0.0.1:1", .timeout_ms = 300, .quiet = 1};
  keel_l2_t *l2 = NULL;
  char err[256] = "";
  assert_int_equal(keel_l2_create(&o, &l2, err, sizeof err), KEEL_EIO);
  assert_null(l2);
  assert_non_null(strstr(err, "127.0.0.1:1"));
}

static int setup(void **state) {
  (void)state;
  return tr_setup(&srv);
}

static int teardown(void **state) {
  (void)state;
  tr_stop(&srv);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_ok),         cmocka_unit_test(parse_bad),      cmocka_unit_test(l2_unreachable_at_start),
      cmocka_unit_test(l2_round_trip),    cmocka_unit_test(l2_single_flight), cmocka_unit_test(l2_dead_holder),
      cmocka_unit_test(l2_late_unlock),
      cmocka_unit_test(l2_redis_lost),    cmocka_unit_test(l2_oom_sweep),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
