/* test_mem_track_mt.c — the allocator's new counters under threads (run
 * under TSan too): four threads allocate and free across tags, through the
 * call-site functions, while a fifth flips the tracking switch and takes
 * snapshots, process figures and diffs. Every block must be un-counted
 * exactly as it was counted: each tag's live bytes and blocks, and each
 * call site's, come back to where they started. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/mem.h"
#include "testutil.h"

#define THREADS 4
#define ROUNDS 20000
#define LIVE 64

static keel_mem_tag tags[3];
static _Atomic int done;

static uint64_t next(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return *s >> 33;
}

static void *worker(void *arg) {
  uint64_t seed = (uint64_t)(uintptr_t)arg;
  void *live[LIVE] = {0};
  for (int i = 0; i < ROUNDS; i++) {
    size_t k = next(&seed) % LIVE;
    if (live[k]) {
      if (next(&seed) % 4 == 0) { /* resize instead of freeing */
        void *q = keel_mem_realloc_at(tags[0], live[k], 1 + next(&seed) % 900, __FILE__, __LINE__);
        if (q) live[k] = q;
        continue;
      }
      keel_mem_free(live[k]);
      live[k] = NULL;
    } else {
      keel_mem_tag t = tags[next(&seed) % 3];
      live[k] = next(&seed) % 2 ? keel_mem_alloc_at(t, 1 + next(&seed) % 700, __FILE__, __LINE__)
                                : keel_mem_alloc(t, 1 + next(&seed) % 700);
    }
  }
  for (int k = 0; k < LIVE; k++) keel_mem_free(live[k]);
  return NULL;
}

static void *observer(void *arg) {
  (void)arg;
  int flips = 0;
  while (!atomic_load(&done)) {
    keel_mem_set_tracking(flips++ % 2);
    keel_mem_snapshot_t *a = NULL, *b = NULL;
    if (keel_mem_snapshot(&a) == KEEL_OK && keel_mem_snapshot(&b) == KEEL_OK) {
      keel_mem_diff d[8];
      size_t n;
      keel_mem_snapshot_compare(a, b, KEEL_MEM_BY_TAG, d, 8, &n);
      if (keel_mem_callsites_enabled()) keel_mem_snapshot_compare(a, b, KEEL_MEM_BY_SITE, d, 8, &n);
    }
    keel_mem_snapshot_destroy(a);
    keel_mem_snapshot_destroy(b);
    keel_mem_process m;
    keel_mem_process_stats(&m);
    keel_mem_diff top[3];
    keel_mem_tag_top_sites(tags[1], top, 3);
  }
  keel_mem_set_tracking(1);
  return NULL;
}

static void test_counts_exact_under_threads_and_switching(void **state) {
  (void)state;
  const char *names[3] = {"mt_track_a", "mt_track_b", "mt_track_c"};
  keel_mem_stats s0[3];
  for (int i = 0; i < 3; i++) {
    assert_int_equal(keel_mem_tag_register(names[i], &tags[i]), KEEL_OK);
    assert_int_equal(keel_mem_tag_stats(tags[i], &s0[i]), KEEL_OK);
  }
  keel_mem_snapshot_t *before;
  assert_int_equal(keel_mem_snapshot(&before), KEEL_OK);
  int64_t total0 = tu_tracked_bytes();
  pthread_t th[THREADS], obs;
  assert_int_equal(pthread_create(&obs, NULL, observer, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i * 7919 + 1)), 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  atomic_store(&done, 1);
  pthread_join(obs, NULL);
  assert_true(keel_mem_tracking());
  for (int i = 0; i < 3; i++) {
    keel_mem_stats s;
    assert_int_equal(keel_mem_tag_stats(tags[i], &s), KEEL_OK);
    assert_int_equal(s.current, s0[i].current);
    assert_int_equal(s.allocs - s0[i].allocs >= s.frees - s0[i].frees ? 1 : 0, 1);
  }
  assert_int_equal(tu_tracked_bytes(), total0);
  /* Nothing of these tags (or of this file's sites) is left between the
   * snapshot taken before and one taken now. */
  keel_mem_snapshot_t *after;
  assert_int_equal(keel_mem_snapshot(&after), KEEL_OK);
  keel_mem_diff d[KEEL_MEM_MAX_TAGS];
  size_t n;
  assert_int_equal(keel_mem_snapshot_compare(before, after, KEEL_MEM_BY_TAG, d, KEEL_MEM_MAX_TAGS, &n), KEEL_OK);
  for (size_t i = 0; i < n && i < KEEL_MEM_MAX_TAGS; i++)
    for (int k = 0; k < 3; k++) {
      assert_true(strcmp(d[i].where, names[k]) != 0 || (d[i].growth == 0 && d[i].blocks_growth == 0));
    }
  if (keel_mem_callsites_enabled()) {
    static keel_mem_diff sd[KEEL_MEM_MAX_SITES];
    assert_int_equal(keel_mem_snapshot_compare(before, after, KEEL_MEM_BY_SITE, sd, KEEL_MEM_MAX_SITES, &n), KEEL_OK);
    for (size_t i = 0; i < n && i < KEEL_MEM_MAX_SITES; i++)
      assert_true(!strstr(sd[i].where, "test_mem_track_mt.c") || sd[i].growth == 0);
  }
  keel_mem_snapshot_destroy(before);
  keel_mem_snapshot_destroy(after);
}

/* More call sites than the table holds: the overflow, "(other sites)",
 * goes back to zero once its blocks are freed or resized and freed (it
 * was counted up on allocation but never down). Call-site builds only. */
static void test_site_overflow_is_uncounted_on_free(void **state) {
  (void)state;
  if (!keel_mem_callsites_enabled()) {
    printf("# skipped: built without KEEL_MEM_CALLSITES\n");
    return;
  }
  enum { N = KEEL_MEM_MAX_SITES + 500 };
  static void *blocks[N];
  keel_mem_snapshot_t *before, *after;
  assert_int_equal(keel_mem_snapshot(&before), KEEL_OK);
  for (int i = 0; i < N; i++) {
    blocks[i] = keel_mem_alloc_at(tags[0], 16, "overflow_sites.c", i + 1);
    assert_non_null(blocks[i]);
    blocks[i] = keel_mem_realloc_at(tags[0], blocks[i], 32, NULL, 0);
    assert_non_null(blocks[i]);
  }
  for (int i = 0; i < N; i++) keel_mem_free(blocks[i]);
  assert_int_equal(keel_mem_snapshot(&after), KEEL_OK);
  static keel_mem_diff sd[KEEL_MEM_MAX_SITES];
  size_t n;
  assert_int_equal(keel_mem_snapshot_compare(before, after, KEEL_MEM_BY_SITE, sd, KEEL_MEM_MAX_SITES, &n), KEEL_OK);
  for (size_t i = 0; i < n && i < KEEL_MEM_MAX_SITES; i++)
    if (strstr(sd[i].where, "(other sites)") || strstr(sd[i].where, "overflow_sites.c"))
      assert_true(sd[i].growth == 0 && sd[i].blocks_growth == 0);
  keel_mem_snapshot_destroy(before);
  keel_mem_snapshot_destroy(after);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts_exact_under_threads_and_switching),
      cmocka_unit_test(test_site_overflow_is_uncounted_on_free),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
