/* test_arena.c — the per-event bump allocator: alignment, copies, reset
 * bounds what it keeps, allocation failure. */
#include <stdint.h>
#include <string.h>

#include "keel/arena.h"
#include "testutil.h"

static keel_mem_tag arena_tag(void) {
  keel_mem_tag t;
  assert_int_equal(keel_mem_tag_register("test_arena", &t), KEEL_OK);
  return t;
}

static int64_t tag_bytes(keel_mem_tag t) {
  keel_mem_stats s;
  assert_int_equal(keel_mem_tag_stats(t, &s), KEEL_OK);
  return s.current;
}

static void test_alignment_and_accounting(void **state) {
  (void)state;
  keel_mem_tag t = arena_tag();
  int64_t before = tag_bytes(t);
  keel_arena_t *a;
  assert_int_equal(keel_arena_create(t, 256, &a), KEEL_OK);
  assert_int_equal(keel_arena_used(a), 0);
  assert_int_equal(keel_arena_held(a), 256);
  unsigned char *prev[64];
  size_t used = 0;
  for (size_t size = 1; size <= 64; size++) {
    unsigned char *p = keel_arena_alloc(a, size);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    memset(p, (int)size, size); /* writable, and must not overlap the others */
    prev[size - 1] = p;
    used += (size + 15) / 16 * 16;
    assert_int_equal(keel_arena_used(a), used);
  }
  for (size_t size = 1; size <= 64; size++)
    for (size_t i = 0; i < size; i++) assert_int_equal(prev[size - 1][i], (unsigned char)size);
  /* Many chunks were needed: held covers what was handed out. */
  assert_true(keel_arena_held(a) >= used);
  keel_arena_destroy(a);
  keel_arena_destroy(NULL);
  assert_int_equal(tag_bytes(t), before);
}

static void test_zero_chunk_size_picks_default(void **state) {
  (void)state;
  keel_arena_t *a;
  assert_int_equal(keel_arena_create(arena_tag(), 0, &a), KEEL_OK);
  assert_int_equal(keel_arena_held(a), 4096);
  assert_int_equal(keel_arena_create(arena_tag(), 16, NULL), KEEL_EINVAL);
  keel_arena_destroy(a);
}

static void test_copies(void **state) {
  (void)state;
  keel_arena_t *a;
  assert_int_equal(keel_arena_create(arena_tag(), 64, &a), KEEL_OK);
  char src[] = "hello, arena";
  char *s = keel_arena_strndup(a, src, 5);
  assert_string_equal(s, "hello");
  char *e = keel_arena_strndup(a, NULL, 0); /* an empty copy needs no source */
  assert_string_equal(e, "");
  int nums[3] = {1, 2, 3};
  int *m = keel_arena_memdup(a, nums, sizeof nums);
  memset(src, 0, sizeof src);
  nums[0] = 99;
  assert_string_equal(s, "hello");
  assert_int_equal(m[0], 1);
  assert_int_equal(m[2], 3);
  assert_non_null(keel_arena_memdup(a, NULL, 0));
  assert_null(keel_arena_strndup(a, "x", SIZE_MAX));
  assert_null(keel_arena_alloc(a, SIZE_MAX - 3)); /* rounding would overflow */
  keel_arena_destroy(a);
}

/* After one huge allocation, reset gives back everything but the first
 * chunk: an arena that once held a huge event does not stay huge. */
static void test_reset_keeps_one_chunk(void **state) {
  (void)state;
  keel_mem_tag t = arena_tag();
  int64_t before = tag_bytes(t);
  keel_arena_t *a;
  assert_int_equal(keel_arena_create(t, 1024, &a), KEEL_OK);
  int64_t base = tag_bytes(t) - before;
  char *small = keel_arena_alloc(a, 100);
  assert_non_null(small);
  char *huge = keel_arena_alloc(a, 8u << 20);
  assert_non_null(huge);
  memset(huge, 1, 8u << 20);
  for (int i = 0; i < 50; i++) assert_non_null(keel_arena_alloc(a, 900));
  assert_true(keel_arena_held(a) >= (8u << 20) + 1024);
  assert_true(tag_bytes(t) - before > (int64_t)(8u << 20));
  keel_arena_reset(a);
  assert_int_equal(keel_arena_used(a), 0);
  assert_int_equal(keel_arena_held(a), 1024);
  assert_int_equal(tag_bytes(t) - before, base);
  /* The kept chunk is reused from its start. */
  char *again = keel_arena_alloc(a, 100);
  assert_ptr_equal(again, small);
  for (int round = 0; round < 100; round++) {
    assert_non_null(keel_arena_alloc(a, 5000));
    keel_arena_reset(a);
    assert_int_equal(keel_arena_held(a), 1024);
  }
  keel_arena_destroy(a);
  assert_int_equal(tag_bytes(t), before);
}

static int create_attempt(void *ctx) {
  (void)ctx;
  keel_arena_t *a;
  keel_status st = keel_arena_create(KEEL_MEM_ARENA, 128, &a);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  keel_arena_destroy(a);
  return 0;
}

static void test_oom(void **state) {
  (void)state;
  assert_int_equal(tu_oom_sweep(create_attempt, NULL), 2);
  keel_arena_t *a;
  assert_int_equal(keel_arena_create(KEEL_MEM_ARENA, 128, &a), KEEL_OK);
  int64_t before = tu_tracked_bytes();
  char *p = keel_arena_alloc(a, 64); /* fits the first chunk: no allocation */
  assert_non_null(p);
  keel_mem_fail_after(1, 1);
  assert_non_null(keel_arena_alloc(a, 32)); /* still fits */
  assert_null(keel_arena_alloc(a, 1000));   /* needs a chunk: fails cleanly */
  assert_null(keel_arena_strndup(a, "abc", 200));
  keel_mem_fail_after(0, 0);
  assert_int_equal(tu_tracked_bytes(), before);
  assert_int_equal(keel_arena_used(a), 64 + 32);
  assert_non_null(keel_arena_alloc(a, 1000)); /* usable after the failure */
  keel_arena_destroy(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alignment_and_accounting), cmocka_unit_test(test_zero_chunk_size_picks_default),
      cmocka_unit_test(test_copies),                  cmocka_unit_test(test_reset_keeps_one_chunk),
      cmocka_unit_test(test_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
