/* test_topk.c — the partial top-K selection against a full sort. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "recsys_int.h"
#include "testutil.h"

typedef struct ref_entry {
  float score;
  uint32_t id;
} ref_entry;

/* The reference order: higher score first, then lower id; NaN last. */
static int ref_cmp(const void *pa, const void *pb) {
  const ref_entry *a = pa, *b = pb;
  int an = isnan(a->score), bn = isnan(b->score);
  if (an != bn) return an - bn;
  if (!an && a->score != b->score) return a->score > b->score ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

/* Runs keel__topk_select and compares with qsort of every entry. */
static void check_against_sort(const float *scores, const uint32_t *ids, size_t n, size_t k) {
  keel__topk_entry *heap = malloc((k + 1) * sizeof *heap);
  int64_t *out_ids = malloc((k + 1) * sizeof *out_ids);
  float *out_scores = malloc((k + 1) * sizeof *out_scores);
  ref_entry *ref = malloc((n + 1) * sizeof *ref);
  assert_non_null(heap);
  assert_non_null(out_ids);
  assert_non_null(out_scores);
  assert_non_null(ref);
  for (size_t i = 0; i < n; i++) ref[i] = (ref_entry){scores[i], ids ? ids[i] : (uint32_t)i};
  qsort(ref, n, sizeof *ref, ref_cmp);
  size_t m = keel__topk_select(scores, ids, n, k, heap, out_ids, out_scores);
  assert_int_equal(m, k < n ? k : n);
  for (size_t i = 0; i < m; i++) {
    assert_int_equal(out_ids[i], ref[i].id);
    if (isnan(ref[i].score))
      assert_true(isnan(out_scores[i]));
    else
      assert_true(out_scores[i] == ref[i].score);
  }
  free(ref);
  free(out_scores);
  free(out_ids);
  free(heap);
}

static uint64_t rng_state = 12345;
static float rnd(void) { return (float)(keel__splitmix64(&rng_state) >> 40) / 16777216.0f; }

static void test_random_scores_all_k(void **st) {
  (void)st;
  enum { N = 1000 };
  float s[N];
  for (size_t i = 0; i < N; i++) s[i] = rnd();
  size_t ks[] = {1, 2, 3, 10, 100, 999, 1000, 1001, 5000};
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) check_against_sort(s, NULL, N, ks[i]);
}

/* Scores drawn from only 4 values: ties everywhere, broken by lower id. */
static void test_ties_by_lower_id(void **st) {
  (void)st;
  enum { N = 500 };
  float s[N];
  uint32_t ids[N];
  for (size_t i = 0; i < N; i++) {
    s[i] = (float)(keel__splitmix64(&rng_state) % 4);
    ids[i] = (uint32_t)((i * 7919) % N); /* a permutation: ids not in input order */
  }
  for (size_t k = 1; k <= N; k += 37) check_against_sort(s, ids, N, k);
  /* All equal: the k lowest ids, ascending. */
  float same[N];
  for (size_t i = 0; i < N; i++) same[i] = 0.25f;
  keel__topk_entry heap[10];
  int64_t out[10];
  float out_s[10];
  size_t m = keel__topk_select(same, ids, N, 10, heap, out, out_s);
  assert_int_equal(m, 10);
  for (size_t i = 0; i < m; i++) assert_int_equal(out[i], (int64_t)i);
}

/* The result must not depend on the input order. */
static void test_order_independent(void **st) {
  (void)st;
  enum { N = 300 };
  float s[N], s2[N];
  uint32_t ids[N], ids2[N];
  for (size_t i = 0; i < N; i++) {
    s[i] = (float)(keel__splitmix64(&rng_state) % 16);
    ids[i] = (uint32_t)i;
  }
  for (size_t i = 0; i < N; i++) { /* reversed */
    s2[i] = s[N - 1 - i];
    ids2[i] = ids[N - 1 - i];
  }
  keel__topk_entry heap[50];
  int64_t a[50], b[50];
  float as[50], bs[50];
  assert_int_equal(keel__topk_select(s, ids, N, 50, heap, a, as), 50);
  assert_int_equal(keel__topk_select(s2, ids2, N, 50, heap, b, bs), 50);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_equal(as, bs, sizeof as);
}

static void test_nan_and_infinities(void **st) {
  (void)st;
  float s[] = {NAN, 1.0f, -INFINITY, INFINITY, NAN, 0.0f, -0.0f, -1.0f};
  for (size_t k = 1; k <= 9; k++) check_against_sort(s, NULL, sizeof s / sizeof s[0], k);
  keel__topk_entry heap[8];
  int64_t out[8];
  float out_s[8];
  assert_int_equal(keel__topk_select(s, NULL, 8, 8, heap, out, out_s), 8);
  assert_int_equal(out[0], 3); /* +inf first */
  assert_int_equal(out[6], 0); /* NaNs last, lower id first */
  assert_int_equal(out[7], 4);
  /* 0.0 and -0.0 compare equal: a tie, broken by id (5 before 6). */
  assert_int_equal(out[2], 5);
  assert_int_equal(out[3], 6);
}

static void test_empty_and_zero_k(void **st) {
  (void)st;
  float s[3] = {1, 2, 3};
  keel__topk_entry heap[4];
  int64_t out[4] = {-7, -7, -7, -7};
  float out_s[4];
  assert_int_equal(keel__topk_select(s, NULL, 3, 0, heap, out, out_s), 0);
  assert_int_equal(keel__topk_select(s, NULL, 0, 4, heap, out, out_s), 0);
  assert_int_equal(out[0], -7); /* nothing written */
  assert_int_equal(keel__topk_select(s, NULL, 3, 1, heap, out, out_s), 1);
  assert_int_equal(out[0], 2);
  assert_true(out_s[0] == 3.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_scores_all_k), cmocka_unit_test(test_ties_by_lower_id),
      cmocka_unit_test(test_order_independent), cmocka_unit_test(test_nan_and_infinities),
      cmocka_unit_test(test_empty_and_zero_k),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
