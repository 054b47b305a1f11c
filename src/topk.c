/* topk.c — partial top-K selection over a score array.
 *
 * A bounded binary min-heap of the k best candidates seen so far, whose root
 * is the worst of them. Each new candidate is compared with the root once;
 * only one that beats it replaces the root and sifts down. Over n scores
 * that is O(n) comparisons plus O(m log k) for the m replacements, and m is
 * small for random scores (about k ln(n/k)). At the end the heap is sorted
 * in place, best first, by repeatedly moving the root (the worst) to the
 * end — a heapsort, so no extra memory beyond the k-entry heap.
 *
 * The order is total, which makes results deterministic whatever the input
 * order: a higher score is better; equal scores are broken by the lower id;
 * a NaN counts as below every number (and NaNs among themselves by id). */
#include <math.h>

#include "recsys_int.h"

/* True when a ranks strictly worse than b. */
static inline int worse(keel__topk_entry a, keel__topk_entry b) {
  int an = isnan(a.score), bn = isnan(b.score);
  if (an != bn) return an;
  if (!an && a.score != b.score) return a.score < b.score;
  return a.id > b.id;
}

/* Restores the min-heap property (root = worst) below position i. */
static void sift_down(keel__topk_entry *h, size_t n, size_t i) {
  keel__topk_entry x = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && worse(h[c + 1], h[c])) c++;
    if (!worse(h[c], x)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

static void sift_up(keel__topk_entry *h, size_t i) {
  keel__topk_entry x = h[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!worse(x, h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

size_t keel__topk_select(const float *scores, const uint32_t *ids, size_t n, size_t k, keel__topk_entry *heap,
                         int64_t *out_ids, float *out_scores) {
  size_t m = 0;
  if (k == 0) return 0;
  size_t i = 0;
  for (; i < n && m < k; i++) {
    heap[m] = (keel__topk_entry){scores[i], ids ? ids[i] : (uint32_t)i};
    sift_up(heap, m++);
  }
  /* Heap full. Most candidates lose to the root on score alone; the plain
   * `<` rejects them without the full comparison (a NaN on either side makes
   * it false and falls through to worse(), which knows the NaN rule). */
  float bar = m ? heap[0].score : 0; /* the root's score, kept in a register */
  for (; i < n; i++) {
    if (scores[i] < bar) continue;
    keel__topk_entry e = {scores[i], ids ? ids[i] : (uint32_t)i};
    if (worse(heap[0], e)) {
      heap[0] = e;
      sift_down(heap, m, 0);
      bar = heap[0].score;
    }
  }
  /* Heapsort: the worst goes last each round, leaving best-first order. */
  for (size_t end = m; end > 1; end--) {
    keel__topk_entry t = heap[0];
    heap[0] = heap[end - 1];
    heap[end - 1] = t;
    sift_down(heap, end - 1, 0);
  }
  for (i = 0; i < m; i++) {
    out_ids[i] = heap[i].id;
    out_scores[i] = heap[i].score;
  }
  return m;
}
