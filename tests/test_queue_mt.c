/* test_queue_mt.c — the bounded blocking MPMC queue between the pipeline's
 * threads: FIFO order, bound, every item delivered once, close and drain. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "queue.h"
#include "testutil.h"

#define ITEM(i) ((void *)(uintptr_t)(i))

static void sleep_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

static void test_fifo_single_thread(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_queue_t *q;
  assert_int_equal(keel__queue_create(0, &q), KEEL_EINVAL);
  assert_int_equal(keel__queue_create(4, &q), KEEL_OK);
  for (uintptr_t round = 0; round < 3; round++) { /* wraps around the ring */
    for (uintptr_t i = 1; i <= 4; i++) assert_int_equal(keel__queue_push(q, ITEM(round * 10 + i)), KEEL_OK);
    assert_int_equal(keel__queue_depth(q), 4);
    for (uintptr_t i = 1; i <= 3; i++) assert_ptr_equal(keel__queue_pop(q), ITEM(round * 10 + i));
    assert_int_equal(keel__queue_push(q, ITEM(round * 10 + 5)), KEEL_OK);
    assert_ptr_equal(keel__queue_pop(q), ITEM(round * 10 + 4));
    assert_ptr_equal(keel__queue_pop(q), ITEM(round * 10 + 5));
    assert_int_equal(keel__queue_depth(q), 0);
  }
  keel__queue_destroy(q);
  keel__queue_destroy(NULL);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_close_drains_then_null(void **state) {
  (void)state;
  keel_queue_t *q;
  assert_int_equal(keel__queue_create(8, &q), KEEL_OK);
  assert_int_equal(keel__queue_push(q, ITEM(1)), KEEL_OK);
  assert_int_equal(keel__queue_push(q, ITEM(2)), KEEL_OK);
  keel__queue_close(q);
  assert_int_equal(keel__queue_push(q, ITEM(3)), KEEL_ECANCELED); /* not queued */
  assert_ptr_equal(keel__queue_pop(q), ITEM(1));
  assert_ptr_equal(keel__queue_pop(q), ITEM(2));
  assert_null(keel__queue_pop(q));
  assert_null(keel__queue_pop(q));
  keel__queue_reopen(q);
  assert_int_equal(keel__queue_push(q, ITEM(4)), KEEL_OK);
  assert_ptr_equal(keel__queue_pop(q), ITEM(4));
  keel__queue_destroy(q);
}

/* ---- blocked waiters wake on close ---- */

typedef struct waiter {
  keel_queue_t *q;
  _Atomic int done;
  void *popped;
  keel_status pushed;
} waiter;

static void *pop_main(void *arg) {
  waiter *w = arg;
  w->popped = keel__queue_pop(w->q);
  atomic_store(&w->done, 1);
  return NULL;
}

static void *push_main(void *arg) {
  waiter *w = arg;
  w->pushed = keel__queue_push(w->q, ITEM(99));
  atomic_store(&w->done, 1);
  return NULL;
}

static void test_close_wakes_blocked(void **state) {
  (void)state;
  keel_queue_t *q;
  assert_int_equal(keel__queue_create(1, &q), KEEL_OK);
  waiter w = {q, 0, ITEM(1), KEEL_OK};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, pop_main, &w), 0);
  sleep_ms(30);
  assert_int_equal(atomic_load(&w.done), 0); /* empty: pop blocks */
  keel__queue_close(q);
  pthread_join(t, NULL);
  assert_null(w.popped);

  keel__queue_reopen(q);
  assert_int_equal(keel__queue_push(q, ITEM(7)), KEEL_OK); /* now full */
  waiter v = {q, 0, NULL, KEEL_OK};
  assert_int_equal(pthread_create(&t, NULL, push_main, &v), 0);
  sleep_ms(30);
  assert_int_equal(atomic_load(&v.done), 0); /* full: push blocks */
  keel__queue_close(q);
  pthread_join(t, NULL);
  assert_int_equal(v.pushed, KEEL_ECANCELED);
  assert_ptr_equal(keel__queue_pop(q), ITEM(7)); /* what was queued survives */
  assert_null(keel__queue_pop(q));
  keel__queue_destroy(q);
}

/* ---- many producers, many consumers ---- */

#define PRODUCERS 4
#define CONSUMERS 4
#define PER_PRODUCER 20000
#define CAP 8

typedef struct mpmc {
  keel_queue_t *q;
  _Atomic unsigned char *seen; /* PRODUCERS * PER_PRODUCER + 1 slots */
  _Atomic int over_cap;
  _Atomic int out_of_order;
} mpmc;

typedef struct prod_arg {
  mpmc *m;
  int index;
} prod_arg;

static void *producer_main(void *arg) {
  prod_arg *a = arg;
  for (int i = 0; i < PER_PRODUCER; i++) {
    uintptr_t v = (uintptr_t)a->index * PER_PRODUCER + (uintptr_t)i + 1;
    if (keel__queue_push(a->m->q, ITEM(v)) != KEEL_OK) return NULL;
    if (keel__queue_depth(a->m->q) > CAP) atomic_store(&a->m->over_cap, 1);
  }
  return NULL;
}

static void *consumer_main(void *arg) {
  mpmc *m = arg;
  uintptr_t last[PRODUCERS] = {0};
  void *item;
  while ((item = keel__queue_pop(m->q)) != NULL) {
    uintptr_t v = (uintptr_t)item;
    atomic_fetch_add(&m->seen[v], 1);
    /* One consumer sees each producer's items in the order pushed. */
    uintptr_t p = (v - 1) / PER_PRODUCER;
    if (v <= last[p]) atomic_store(&m->out_of_order, 1);
    last[p] = v;
  }
  return NULL;
}

static void test_mpmc_every_item_once(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static _Atomic unsigned char seen[PRODUCERS * PER_PRODUCER + 1];
  memset(seen, 0, sizeof seen);
  mpmc m = {NULL, seen, 0, 0};
  assert_int_equal(keel__queue_create(CAP, &m.q), KEEL_OK);
  pthread_t prod[PRODUCERS], cons[CONSUMERS];
  prod_arg pa[PRODUCERS];
  for (int i = 0; i < CONSUMERS; i++) assert_int_equal(pthread_create(&cons[i], NULL, consumer_main, &m), 0);
  for (int i = 0; i < PRODUCERS; i++) {
    pa[i] = (prod_arg){&m, i};
    assert_int_equal(pthread_create(&prod[i], NULL, producer_main, &pa[i]), 0);
  }
  for (int i = 0; i < PRODUCERS; i++) pthread_join(prod[i], NULL);
  keel__queue_close(m.q); /* consumers drain what is left, then stop */
  for (int i = 0; i < CONSUMERS; i++) pthread_join(cons[i], NULL);
  assert_int_equal(keel__queue_depth(m.q), 0);
  for (size_t v = 1; v <= PRODUCERS * PER_PRODUCER; v++)
    if (seen[v] != 1) fail_msg("item %zu delivered %d times", v, (int)seen[v]);
  assert_int_equal(atomic_load(&m.over_cap), 0);
  assert_int_equal(atomic_load(&m.out_of_order), 0);
  keel__queue_destroy(m.q);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A slow consumer holds producers back: the queue never exceeds its bound. */
static void *slow_consumer(void *arg) {
  mpmc *m = arg;
  void *item;
  int n = 0;
  while ((item = keel__queue_pop(m->q)) != NULL) {
    atomic_fetch_add(&m->seen[(uintptr_t)item], 1);
    if (++n % 50 == 0) sleep_ms(1);
  }
  return NULL;
}

static void test_backpressure(void **state) {
  (void)state;
  static _Atomic unsigned char seen[PRODUCERS * 500 + 1];
  memset(seen, 0, sizeof seen);
  mpmc m = {NULL, seen, 0, 0};
  assert_int_equal(keel__queue_create(2, &m.q), KEEL_OK);
  pthread_t c;
  assert_int_equal(pthread_create(&c, NULL, slow_consumer, &m), 0);
  for (int i = 0; i < PRODUCERS; i++) {
    for (int k = 0; k < 500; k++) { /* pushed from this thread, checked as we go */
      assert_int_equal(keel__queue_push(m.q, ITEM((uintptr_t)i * 500 + (uintptr_t)k + 1)), KEEL_OK);
      assert_true(keel__queue_depth(m.q) <= 2);
    }
  }
  keel__queue_close(m.q);
  pthread_join(c, NULL);
  for (size_t v = 1; v <= PRODUCERS * 500; v++) assert_int_equal(seen[v], 1);
  keel__queue_destroy(m.q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_single_thread),  cmocka_unit_test(test_close_drains_then_null),
      cmocka_unit_test(test_close_wakes_blocked), cmocka_unit_test(test_mpmc_every_item_once),
      cmocka_unit_test(test_backpressure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
