/* test_mem_mt.c — the tracking allocator under threads: per-tag counters
 * when blocks are allocated on one thread and freed on another, peaks, tag
 * registration, fault injection, threads that exit after freeing others'
 * blocks, and keel memory freed by a destructor after keel's own. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/arena.h"
#include "keel/mem.h"
#include "testutil.h"

#define THREADS 4
#define BLOCKS 20000

static keel_mem_stats stats_of(keel_mem_tag t) {
  keel_mem_stats s;
  assert_int_equal(keel_mem_tag_stats(t, &s), KEEL_OK);
  return s;
}

/* ---- allocate here, free there ---- */

typedef struct xfer {
  keel_mem_tag tag;
  int index;
  void **mine;      /* blocks this thread allocated */
  void **theirs;    /* blocks the previous thread allocated: freed here */
  pthread_barrier_t *bar;
} xfer;

static void *xfer_main(void *arg) {
  xfer *x = arg;
  for (int i = 0; i < BLOCKS; i++) {
    size_t size = (size_t)(1 + (i * 7 + x->index * 13) % 300);
    x->mine[i] = keel_mem_alloc(x->tag, size);
    if (x->mine[i]) memset(x->mine[i], x->index, size);
    if (i % 2) { /* half are freed by their own thread */
      keel_mem_free(x->mine[i]);
      x->mine[i] = NULL;
    }
  }
  pthread_barrier_wait(x->bar);
  for (int i = 0; i < BLOCKS; i++) keel_mem_free(x->theirs[i]);
  return NULL;
}

static void test_cross_thread_frees(void **state) {
  (void)state;
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register("test_mem_xfer", &t), KEEL_OK);
  keel_mem_stats s0 = stats_of(t), all0;
  keel_mem_total(&all0);
  static void *blocks[THREADS][BLOCKS];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, THREADS);
  xfer x[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    x[i] = (xfer){t, i + 1, blocks[i], blocks[(i + THREADS - 1) % THREADS], &bar};
    assert_int_equal(pthread_create(&th[i], NULL, xfer_main, &x[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&bar);
  keel_mem_stats s1 = stats_of(t), all1;
  keel_mem_total(&all1);
  assert_int_equal(s1.current, s0.current);
  assert_int_equal(s1.allocs - s0.allocs, (uint64_t)THREADS * BLOCKS);
  assert_int_equal(s1.frees - s0.frees, (uint64_t)THREADS * BLOCKS);
  assert_int_equal(all1.current, all0.current);
  assert_true(s1.peak > 0);
  /* Each thread held at most ~BLOCKS/2 * 300 bytes of this tag. */
  assert_true(s1.peak <= (int64_t)THREADS * (BLOCKS / 2 * 300 + KEEL_MEM_PEAK_SLACK));
}

/* ---- peaks ---- */

static void test_peak_single_thread(void **state) {
  (void)state;
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register("test_mem_peak", &t), KEEL_OK);
  keel_mem_stats s0 = stats_of(t);
  assert_int_equal(s0.current, 0);
  void *p[4];
  for (int i = 0; i < 4; i++) assert_non_null(p[i] = keel_mem_alloc(t, 1 << 20));
  keel_mem_stats s1 = stats_of(t);
  assert_int_equal(s1.current, 4 << 20);
  assert_true(s1.peak >= (4 << 20) - KEEL_MEM_PEAK_SLACK && s1.peak <= 4 << 20);
  for (int i = 0; i < 4; i++) keel_mem_free(p[i]);
  keel_mem_stats s2 = stats_of(t);
  assert_int_equal(s2.current, 0);
  assert_true(s2.peak >= (4 << 20) - KEEL_MEM_PEAK_SLACK); /* the peak stays */
  /* A smaller second round does not lower it; a larger one raises it. */
  void *q = keel_mem_alloc(t, 1 << 20);
  assert_int_equal(stats_of(t).peak, s2.peak);
  void *r = keel_mem_alloc(t, 8 << 20);
  assert_true(stats_of(t).peak >= (9 << 20) - KEEL_MEM_PEAK_SLACK);
  keel_mem_free(q);
  keel_mem_free(r);
  /* realloc keeps the tag and counts the difference. */
  void *g = keel_mem_alloc(t, 100);
  g = keel_mem_realloc(KEEL_MEM_OTHER, g, 5000);
  assert_non_null(g);
  assert_int_equal(keel_mem_size(g), 5000);
  assert_int_equal(stats_of(t).current, 5000);
  keel_mem_free(g);
  assert_int_equal(stats_of(t).current, 0);
}

/* Header-less blocks: counted under their tag by the size the caller
 * gives; a block made while tracking was off stays uncounted at its free;
 * an injected fault fails them like any other allocation. */
static void test_sized_blocks(void **state) {
  (void)state;
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register("test_mem_sized", &t), KEEL_OK);
  assert_null(keel_mem_strndup(t, "x", SIZE_MAX)); /* n + 1 would wrap: refused, as the arena's */
  int counted = -1, off = -1;
  keel_mem_process m0, m1;
  keel_mem_process_stats(&m0);
  void *p = keel_mem_alloc_sized(t, 48, &counted);
  assert_non_null(p);
  assert_int_equal(counted, 1);
  keel_mem_stats s = stats_of(t);
  assert_int_equal(s.current, 48);
  assert_int_equal(s.allocs, 1);
  keel_mem_process_stats(&m1); /* one more live block, without keel's header */
  assert_int_equal(m1.live_blocks, m0.live_blocks + 1);
  assert_int_equal(m1.headerless_blocks, m0.headerless_blocks + 1);
  assert_int_equal(m1.footprint - m0.footprint, 48 + KEEL_MEM_HEADERLESS_OVERHEAD);
  keel_mem_set_tracking(0);
  void *q = keel_mem_alloc_sized(t, 1000, &off);
  keel_mem_set_tracking(1);
  assert_non_null(q);
  assert_int_equal(off, 0);
  assert_int_equal(stats_of(t).current, 48);
  keel_mem_free_sized(t, q, 1000, off);
  assert_int_equal(stats_of(t).current, 48);
  keel_mem_free_sized(t, p, 48, counted);
  s = stats_of(t);
  assert_int_equal(s.current, 0);
  assert_int_equal(s.frees, 1);
  keel_mem_fail_after(1, 0);
  assert_null(keel_mem_alloc_sized(t, 16, &counted));
  keel_mem_fail_after(0, 0);
}

typedef struct peak_arg {
  keel_mem_tag tag;
  pthread_barrier_t *bar;
} peak_arg;

static void *peak_main(void *arg) {
  peak_arg *a = arg;
  void *p = keel_mem_alloc(a->tag, 1 << 20);
  pthread_barrier_wait(a->bar); /* all four blocks are live together here */
  pthread_barrier_wait(a->bar);
  keel_mem_free(p);
  return NULL;
}

static void test_peak_across_threads(void **state) {
  (void)state;
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register("test_mem_peak_mt", &t), KEEL_OK);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, THREADS + 1);
  peak_arg a = {t, &bar};
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, peak_main, &a), 0);
  pthread_barrier_wait(&bar);
  keel_mem_stats live = stats_of(t);
  assert_int_equal(live.current, THREADS << 20);
  pthread_barrier_wait(&bar);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  keel_mem_stats done = stats_of(t);
  assert_int_equal(done.current, 0);
  assert_int_equal(done.allocs, THREADS);
  assert_int_equal(done.frees, THREADS);
  assert_true(done.peak >= (int64_t)(THREADS << 20) - (int64_t)THREADS * KEEL_MEM_PEAK_SLACK);
  assert_true(done.peak <= (int64_t)(THREADS << 20));
  pthread_barrier_destroy(&bar);
}

/* ---- tags ---- */

typedef struct reg_arg {
  int first;         /* the name this thread starts at */
  atomic_int *ready; /* threads waiting at the start line */
  atomic_int *go;    /* set once all are there: they start together */
  keel_mem_tag got[50];
} reg_arg;

/* Registers the 50 names test_mem_reg_0..49, beginning at r->first and
 * wrapping around, once every thread is at the start line. */
static void *reg_main(void *arg) {
  reg_arg *r = arg;
  char name[32];
  atomic_fetch_add(r->ready, 1);
  while (!atomic_load(r->go)) {
  }
  for (int j = 0; j < 50; j++) {
    int i = (r->first + j) % 50;
    snprintf(name, sizeof name, "test_mem_reg_%d", i);
    if (keel_mem_tag_register(name, &r->got[i]) != KEEL_OK) r->got[i] = 0;
  }
  return NULL;
}

static void test_tag_registration(void **state) {
  (void)state;
  unsigned n0 = keel_mem_tag_count();
  assert_true(n0 >= KEEL_MEM_FIXED_TAGS);
  assert_string_equal(keel_mem_tag_name(KEEL_MEM_QUEUE), "queue");
  assert_string_equal(keel_mem_tag_name(KEEL_MEM_MAX_TAGS + 1), "?");
  keel_mem_tag a, b;
  assert_int_equal(keel_mem_tag_register("pipeline", &a), KEEL_OK);
  assert_int_equal(a, KEEL_MEM_PIPELINE); /* a fixed name gives the fixed tag */
  assert_int_equal(keel_mem_tag_register("", &a), KEEL_EINVAL);
  assert_int_equal(keel_mem_tag_register(NULL, &a), KEEL_EINVAL);
  /* Long names (stage names may have 64 characters) are told apart by every
   * character, and a name too long to keep is refused, not truncated. */
  char long_a[65], long_b[65], too_long[200];
  memset(long_a, 'q', 64);
  long_a[64] = '\0';
  memcpy(long_b, long_a, sizeof long_a);
  long_b[63] = 'r';
  assert_int_equal(keel_mem_tag_register(long_a, &a), KEEL_OK);
  assert_int_equal(keel_mem_tag_register(long_b, &b), KEEL_OK);
  assert_int_not_equal(a, b);
  assert_string_equal(keel_mem_tag_name(a), long_a);
  assert_string_equal(keel_mem_tag_name(b), long_b);
  memset(too_long, 'z', sizeof too_long - 1);
  too_long[sizeof too_long - 1] = '\0';
  assert_int_equal(keel_mem_tag_register(too_long, &a), KEEL_EINVAL);
  n0 += 2;
  /* Four threads register the same 50 names at once: one tag per name.
   * They spin at a start line until all four are there (created one after
   * another, the first would otherwise have registered all 50 before the
   * next began), and each starts at another name (0, 12, 25, 37), so that
   * while they run they add different new names at the same moment: the
   * race a missing lock loses (two names in one slot, a name twice, the
   * count going back). Every thread gets the same 50 tags, new and
   * distinct, each naming its name. */
  reg_arg r[THREADS];
  pthread_t th[THREADS];
  atomic_int ready = 0, go = 0;
  for (int i = 0; i < THREADS; i++) {
    r[i] = (reg_arg){.first = i * 50 / THREADS, .ready = &ready, .go = &go};
    assert_int_equal(pthread_create(&th[i], NULL, reg_main, &r[i]), 0);
  }
  while (atomic_load(&ready) < THREADS) sched_yield();
  atomic_store(&go, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(keel_mem_tag_count(), n0 + 50);
  int seen[KEEL_MEM_MAX_TAGS] = {0};
  for (int k = 0; k < 50; k++) {
    char name[32];
    snprintf(name, sizeof name, "test_mem_reg_%d", k);
    assert_in_range(r[0].got[k], n0, n0 + 49); /* a new tag */
    assert_int_equal(seen[r[0].got[k]]++, 0);  /* no other name's */
    for (int i = 1; i < THREADS; i++) assert_int_equal(r[i].got[k], r[0].got[k]);
    assert_string_equal(keel_mem_tag_name(r[0].got[k]), name);
    assert_int_equal(keel_mem_tag_register(name, &b), KEEL_OK);
    assert_int_equal(b, r[0].got[k]);
  }
  /* The table is bounded: past KEEL_MEM_MAX_TAGS, ELIMIT, and nothing breaks. */
  keel_status st = KEEL_OK;
  for (int i = 0; i < KEEL_MEM_MAX_TAGS + 1 && st == KEEL_OK; i++) {
    char name[32];
    snprintf(name, sizeof name, "test_mem_fill_%d", i);
    st = keel_mem_tag_register(name, &b);
  }
  assert_int_equal(st, KEEL_ELIMIT);
  assert_int_equal(keel_mem_tag_count(), KEEL_MEM_MAX_TAGS);
  assert_int_equal(keel_mem_tag_register("test_mem_reg_7", &b), KEEL_OK); /* old names still resolve */
  assert_int_equal(b, r[0].got[7]);
  keel_mem_stats s;
  assert_int_equal(keel_mem_tag_stats(KEEL_MEM_MAX_TAGS, &s), KEEL_EINVAL);
}

/* ---- fault injection ---- */

static void test_fault_injection(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_mem_fail_after(3, 0);
  void *a = keel_mem_alloc(KEEL_MEM_OTHER, 10);
  void *b = keel_mem_alloc(KEEL_MEM_OTHER, 10);
  void *c = keel_mem_alloc(KEEL_MEM_OTHER, 10);
  void *d = keel_mem_alloc(KEEL_MEM_OTHER, 10);
  assert_non_null(a);
  assert_non_null(b);
  assert_null(c);
  assert_non_null(d); /* not persistent: only the third failed */
  assert_int_equal(keel_mem_fault_hits(), 1);
  keel_mem_free(a);
  keel_mem_free(b);
  keel_mem_free(d);

  keel_mem_fail_after(2, 1);
  a = keel_mem_alloc(KEEL_MEM_OTHER, 10);
  assert_non_null(a);
  assert_null(keel_mem_alloc(KEEL_MEM_OTHER, 10));
  assert_null(keel_mem_calloc(KEEL_MEM_OTHER, 2, 10));
  assert_null(keel_mem_strdup(KEEL_MEM_OTHER, "x"));
  void *grown = keel_mem_realloc(KEEL_MEM_OTHER, a, 100);
  assert_null(grown); /* a is intact */
  assert_int_equal(keel_mem_size(a), 10);
  assert_int_equal(keel_mem_fault_hits(), 4);
  keel_mem_fail_after(0, 0);
  assert_int_equal(keel_mem_fault_hits(), 0);
  b = keel_mem_alloc(KEEL_MEM_OTHER, 10);
  assert_non_null(b);
  keel_mem_free(a);
  keel_mem_free(b);
  assert_int_equal(tu_tracked_bytes(), before);

  /* Overflowing sizes fail without injection. */
  assert_null(keel_mem_alloc(KEEL_MEM_OTHER, SIZE_MAX - 8));
  assert_null(keel_mem_calloc(KEEL_MEM_OTHER, SIZE_MAX / 4, 8));
  assert_null(keel_mem_alloc(KEEL_MEM_MAX_TAGS, 8)); /* no such tag */
  keel_mem_free(NULL);
  assert_int_equal(tu_tracked_bytes(), before);
}

typedef struct fault_arg {
  int got_null;
} fault_arg;

static void *fault_main(void *arg) {
  fault_arg *f = arg;
  for (int i = 0; i < 1000; i++) {
    void *p = keel_mem_alloc(KEEL_MEM_OTHER, 16);
    if (!p) f->got_null++;
    keel_mem_free(p);
  }
  return NULL;
}

/* The injector is process-wide: with 4 threads racing for the countdown,
 * exactly one allocation fails. */
static void test_fault_injection_threads(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_mem_fail_after(1500, 0);
  fault_arg f[THREADS] = {{0}};
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, fault_main, &f[i]), 0);
  int nulls = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    nulls += f[i].got_null;
  }
  assert_int_equal(nulls, 1);
  assert_int_equal(keel_mem_fault_hits(), 1);
  keel_mem_fail_after(0, 0);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A thread that exits after freeing blocks others allocated leaves the
 * peak where it was: the balance it had not yet published is published as
 * it exits (left behind, each such thread added up to 64 KiB to the peak,
 * a thousand threads 60 MiB over a true 60 KiB). */
static void *free_it(void *p) {
  keel_mem_free(p);
  return NULL;
}

static void test_peak_with_exiting_threads(void **state) {
  (void)state;
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register("test.exitpeak", &t), KEEL_OK);
  for (int i = 0; i < 300; i++) {
    void *p = keel_mem_alloc(t, 60 * 1024);
    assert_non_null(p);
    pthread_t th;
    pthread_create(&th, NULL, free_it, p);
    pthread_join(th, NULL);
  }
  keel_mem_stats st = stats_of(t);
  assert_int_equal(st.current, 0);
  assert_int_equal(st.allocs, 300);
  assert_int_equal(st.frees, 300);
  assert_true(st.peak >= 60 * 1024 && st.peak <= 60 * 1024 + KEEL_MEM_PEAK_SLACK);
}

/* A destructor of the application's that runs at thread exit after keel's
 * own and frees keel memory (a per-thread arena) counts into live counters,
 * not the thread's freed ones: the arena's bytes and blocks come back to
 * zero (AddressSanitizer reported a use after free before). */
static pthread_key_t app_key;

static void app_dtor(void *a) { keel_arena_destroy(a); }

static void *make_arena(void *x) {
  (void)x;
  keel_arena_t *a;
  assert_int_equal(keel_arena_create(KEEL_MEM_ARENA, 4096, &a), KEEL_OK);
  assert_non_null(keel_arena_alloc(a, 100));
  pthread_setspecific(app_key, a);
  return NULL;
}

static void test_free_in_a_later_thread_destructor(void **state) {
  (void)state;
  keel_mem_free(keel_mem_alloc(KEEL_MEM_OTHER, 1)); /* keel's key exists before the application's */
  keel_mem_stats before = stats_of(KEEL_MEM_ARENA);
  assert_int_equal(pthread_key_create(&app_key, app_dtor), 0);
  for (int i = 0; i < 20; i++) {
    pthread_t th;
    pthread_create(&th, NULL, make_arena, NULL);
    pthread_join(th, NULL);
  }
  keel_mem_stats after = stats_of(KEEL_MEM_ARENA);
  assert_int_equal(after.current, before.current);
  assert_int_equal(after.allocs - before.allocs, after.frees - before.frees);
  assert_true(after.allocs - before.allocs >= 40); /* the arena and its chunk, 20 times */
  pthread_key_delete(app_key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* before test_tag_registration, which fills the tag table */
      cmocka_unit_test(test_peak_with_exiting_threads), cmocka_unit_test(test_free_in_a_later_thread_destructor),
      cmocka_unit_test(test_cross_thread_frees), cmocka_unit_test(test_peak_single_thread),
      cmocka_unit_test(test_sized_blocks),
      cmocka_unit_test(test_peak_across_threads), cmocka_unit_test(test_tag_registration),
      cmocka_unit_test(test_fault_injection),    cmocka_unit_test(test_fault_injection_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
