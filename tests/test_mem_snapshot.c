/* test_mem_snapshot.c — snapshots and their diffs (by tag, and by call site
 * in a KEEL_MEM_CALLSITES build), the tracking switch, declared bounds and
 * the process figures. */
#include <stdio.h>
#include <string.h>

#include "keel/mem.h"
#include "testutil.h"

static keel_mem_tag tag_named(const char *name) {
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register(name, &t), KEEL_OK);
  return t;
}

static const keel_mem_diff *find(const keel_mem_diff *d, size_t n, const char *where) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(d[i].where, where)) return &d[i];
  return NULL;
}

static void test_diff_by_tag_sorted_by_growth(void **state) {
  (void)state;
  keel_mem_tag a = tag_named("snap_a"), b = tag_named("snap_b"), c = tag_named("snap_c");
  void *keep_c = keel_mem_alloc(c, 4000);
  int64_t before = tu_tracked_bytes();
  keel_mem_snapshot_t *s0, *s1;
  assert_int_equal(keel_mem_snapshot(&s0), KEEL_OK);
  void *pa[3], *pb = keel_mem_alloc(b, 500);
  for (int i = 0; i < 3; i++) pa[i] = keel_mem_alloc(a, 1000);
  keel_mem_free(keep_c);
  assert_int_equal(keel_mem_snapshot(&s1), KEEL_OK);
  keel_mem_diff d[KEEL_MEM_MAX_TAGS];
  size_t n;
  assert_int_equal(keel_mem_snapshot_compare(s0, s1, KEEL_MEM_BY_TAG, d, KEEL_MEM_MAX_TAGS, &n), KEEL_OK);
  /* snap_a grew most, then snap_b; snap_c shrank and comes last; nothing
   * else changed (the snapshots' own memory is not tracked: the earlier
   * one showed as growth of "other"). */
  assert_int_equal(n, 3);
  const keel_mem_diff *da = find(d, n, "snap_a"), *db = find(d, n, "snap_b"), *dc = find(d, n, "snap_c");
  assert_non_null(da);
  assert_true(da < db);
  assert_int_equal(da->growth, 3000);
  assert_int_equal(da->blocks_growth, 3);
  assert_non_null(db);
  assert_non_null(dc);
  assert_int_equal(db->growth, 500);
  assert_int_equal(dc->growth, -4000);
  assert_int_equal(dc->before, 4000);
  assert_int_equal(dc->after, 0);
  assert_string_equal(d[n - 1].where, "snap_c");
  for (size_t i = 1; i < n; i++) assert_true(d[i - 1].growth >= d[i].growth);
  /* A short buffer keeps the largest growths and still counts them all. */
  keel_mem_diff top[1];
  size_t n1;
  assert_int_equal(keel_mem_snapshot_compare(s0, s1, KEEL_MEM_BY_TAG, top, 1, &n1), KEEL_OK);
  assert_int_equal(n1, n);
  assert_string_equal(top[0].where, d[0].where);
  /* Reversed, the signs flip. */
  assert_int_equal(keel_mem_snapshot_compare(s1, s0, (keel_mem_group)7, d, KEEL_MEM_MAX_TAGS, &n), KEEL_EINVAL);
  assert_int_equal(keel_mem_snapshot_compare(s1, s0, KEEL_MEM_BY_TAG, d, KEEL_MEM_MAX_TAGS, &n), KEEL_OK);
  assert_string_equal(d[0].where, "snap_c");
  assert_int_equal(d[0].growth, 4000);
  assert_int_equal(find(d, n, "snap_a")->growth, -3000);
  assert_int_equal(keel_mem_snapshot_compare(NULL, s1, KEEL_MEM_BY_TAG, d, 1, &n), KEEL_EINVAL);
  for (int i = 0; i < 3; i++) keel_mem_free(pa[i]);
  keel_mem_free(pb);
  keel_mem_snapshot_destroy(s0);
  keel_mem_snapshot_destroy(s1);
  assert_int_equal(tu_tracked_bytes(), before - 4000);
}

static void test_diff_by_site(void **state) {
  (void)state;
  keel_mem_tag t = tag_named("snap_site");
  keel_mem_snapshot_t *s0, *s1;
  assert_int_equal(keel_mem_snapshot(&s0), KEEL_OK);
  int line = __LINE__ + 1;
  void *p = keel_mem_alloc_at(t, 777, __FILE__, line);
  void *q = keel_mem_realloc_at(t, keel_mem_alloc_at(t, 10, __FILE__, line + 100), 20, __FILE__, line + 200);
  assert_int_equal(keel_mem_snapshot(&s1), KEEL_OK);
  keel_mem_diff d[16];
  size_t n;
  keel_status st = keel_mem_snapshot_compare(s0, s1, KEEL_MEM_BY_SITE, d, 16, &n);
  if (!keel_mem_callsites_enabled()) {
    assert_int_equal(st, KEEL_EUNSUPPORTED);
  } else {
    assert_int_equal(st, KEEL_OK);
    char where[128];
    snprintf(where, sizeof where, "%s:%d", __FILE__, line);
    const keel_mem_diff *x = find(d, n < 16 ? n : 16, where);
    assert_non_null(x);
    assert_int_equal(x->growth, 777);
    assert_int_equal(x->tag, t);
    /* A resize moves the bytes to the site that resized them. */
    snprintf(where, sizeof where, "%s:%d", __FILE__, line + 200);
    assert_non_null(x = find(d, n < 16 ? n : 16, where));
    assert_int_equal(x->growth, 20);
    snprintf(where, sizeof where, "%s:%d", __FILE__, line + 100);
    assert_null(find(d, n < 16 ? n : 16, where));
    keel_mem_diff top[3];
    assert_true(keel_mem_tag_top_sites(t, top, 3) == 2);
    assert_int_equal(top[0].after, 777);
  }
  keel_mem_free(p);
  keel_mem_free(q);
  keel_mem_snapshot_destroy(s0);
  keel_mem_snapshot_destroy(s1);
}

/* One line that allocates for two owners (a shared helper) credits each
 * owner with its own bytes: sites are keyed by tag too. */
static void test_site_shared_by_tags(void **state) {
  (void)state;
  keel_mem_tag a = tag_named("site_a"), b = tag_named("site_b");
  int line = __LINE__;
  void *pa = keel_mem_alloc_at(a, 100, __FILE__, line);
  keel_mem_free(pa);
  void *pb[10];
  for (int i = 0; i < 10; i++) pb[i] = keel_mem_alloc_at(b, 64, __FILE__, line);
  keel_mem_diff top[4];
  if (keel_mem_callsites_enabled()) {
    assert_int_equal(keel_mem_tag_top_sites(a, top, 4), 0);
    assert_int_equal(keel_mem_tag_top_sites(b, top, 4), 1);
    assert_int_equal(top[0].after, 640);
    assert_int_equal(top[0].tag, b);
  }
  for (int i = 0; i < 10; i++) keel_mem_free(pb[i]);
}

/* An id no registration returned is refused (its bytes would be nobody's,
 * then the next registered tag's); a NULL string copies to NULL. */
static void test_unknown_tag_and_null_string(void **state) {
  (void)state;
  keel_mem_tag next = (keel_mem_tag)keel_mem_tag_count();
  int counted;
  assert_null(keel_mem_alloc(next, 10));
  assert_null(keel_mem_calloc(next, 2, 10));
  assert_null(keel_mem_alloc_sized(next, 10, &counted));
  assert_null(keel_mem_strdup(next, "x"));
  keel_mem_tag t = tag_named("after_unknown");
  assert_int_equal(t, next);
  keel_mem_stats s;
  assert_int_equal(keel_mem_tag_stats(t, &s), KEEL_OK);
  assert_int_equal(s.current, 0);
  void *p = keel_mem_alloc(t, 10);
  assert_non_null(p);
  keel_mem_free(p);
  assert_null(keel_mem_strdup(t, NULL));
}

static void test_tracking_switch(void **state) {
  (void)state;
  keel_mem_tag t = tag_named("snap_switch");
  keel_mem_stats s0, s1;
  keel_mem_tag_stats(t, &s0);
  assert_true(keel_mem_tracking());
  keel_mem_set_tracking(0);
  void *off = keel_mem_alloc(t, 5000);
  off = keel_mem_realloc(t, off, 6000);
  keel_mem_set_tracking(1);
  void *on = keel_mem_alloc(t, 100);
  keel_mem_tag_stats(t, &s1);
  assert_int_equal(s1.current - s0.current, 100); /* the uncounted block is not there */
  assert_int_equal(s1.allocs - s0.allocs, 1);
  keel_mem_free(off); /* freed while tracking is on: still not counted */
  keel_mem_tag_stats(t, &s1);
  assert_int_equal(s1.current - s0.current, 100);
  keel_mem_set_tracking(0);
  keel_mem_free(on); /* counted when allocated: un-counted whatever the switch says */
  keel_mem_set_tracking(1);
  keel_mem_tag_stats(t, &s1);
  assert_int_equal(s1.current, s0.current);
}

static void test_bounds_and_process(void **state) {
  (void)state;
  keel_mem_tag t = tag_named("snap_bound");
  assert_int_equal(keel_mem_tag_bound(t), 0);
  assert_int_equal(keel_mem_tag_set_bound(t, 12345), KEEL_OK);
  assert_int_equal(keel_mem_tag_bound(t), 12345);
  assert_int_equal(keel_mem_tag_set_bound((keel_mem_tag)(KEEL_MEM_MAX_TAGS - 1), 1), KEEL_EINVAL);
  void *p = keel_mem_alloc(t, 1 << 20);
  memset(p, 1, 1 << 20);
  keel_mem_process m;
  keel_mem_process_stats(&m);
  assert_true(m.tracked_current >= 1 << 20);
  assert_true(m.tracked_peak >= m.tracked_current - KEEL_MEM_PEAK_SLACK);
  assert_true(m.live_blocks >= 1);
  assert_int_equal(m.footprint, m.tracked_current + (int64_t)m.live_blocks * KEEL_MEM_BLOCK_OVERHEAD);
  assert_true(m.rss_bytes >= 1u << 20); /* the block was touched */
  assert_true(m.rss_peak_bytes >= m.rss_bytes);
  assert_int_equal(m.rss_gap, (int64_t)m.rss_bytes - m.tracked_current);
  keel_mem_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_diff_by_tag_sorted_by_growth),
      cmocka_unit_test(test_diff_by_site),
      cmocka_unit_test(test_site_shared_by_tags),
      cmocka_unit_test(test_unknown_tag_and_null_string),
      cmocka_unit_test(test_tracking_switch),
      cmocka_unit_test(test_bounds_and_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
