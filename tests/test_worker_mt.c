/* test_worker_mt.c — the background worker: runs its job while there is
 * work, sleeps (does not spin) when there is none, wakes on a kick, and
 * stops on destroy even while busy. */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "testutil.h"
#include "worker.h"

typedef struct job {
  _Atomic long todo;   /* units of work left */
  _Atomic long rounds; /* calls of the job */
  int endless;         /* always report work */
} job;

static size_t run_job(void *ud, int last) {
  job *j = ud;
  (void)last;
  atomic_fetch_add(&j->rounds, 1);
  if (j->endless) return 1;
  long t = atomic_load(&j->todo);
  while (t > 0 && !atomic_compare_exchange_weak(&j->todo, &t, t - 1)) {
  }
  return t > 0 ? 1 : 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits until the job has no work left; returns the seconds it took, or a
 * negative number after `limit` seconds. */
static double wait_done(job *j, double limit) {
  double t0 = now_s();
  while (atomic_load(&j->todo) > 0) {
    if (now_s() - t0 > limit) return -1;
    sleep_ms(1);
  }
  return now_s() - t0;
}

static void test_work_sleep_kick(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  job j = {1000, 0, 0};
  keel_worker_t *w;
  assert_int_equal(keel__worker_create(KEEL_MEM_OTHER, run_job, &j, 32, &w), KEEL_OK);
  keel__worker_kick(w);
  assert_true(wait_done(&j, 10) >= 0); /* all 1,000 units, with no further help */

  /* Idle: after its polling rounds (about 1 ms) the worker sleeps. A
   * polling or spinning thread would run its job thousands of times in
   * 200 ms; a sleeping one at most once per second plus its 20 polls. */
  sleep_ms(50);
  long r0 = atomic_load(&j.rounds);
  sleep_ms(200);
  assert_true(atomic_load(&j.rounds) - r0 < 100);

  /* A kick wakes it at once, well before its one-second timeout. */
  atomic_store(&j.todo, 10);
  keel__worker_kick(w);
  double took = wait_done(&j, 10);
  assert_true(took >= 0);
  assert_true(took < 0.5);

  keel__worker_destroy(w);
  keel__worker_destroy(NULL);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_destroy_stops_a_busy_worker(void **state) {
  (void)state;
  job j = {0, 0, 1};
  keel_worker_t *w;
  assert_int_equal(keel__worker_create(KEEL_MEM_OTHER, run_job, &j, 1, &w), KEEL_OK);
  while (atomic_load(&j.rounds) < 1000) sleep_ms(1);
  keel__worker_destroy(w); /* returns: the thread saw stop between rounds */
  long r = atomic_load(&j.rounds);
  sleep_ms(20);
  assert_int_equal(atomic_load(&j.rounds), r); /* and it is gone */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_work_sleep_kick),
      cmocka_unit_test(test_destroy_stops_a_busy_worker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
