/* cache_scan.c — what visits every entry: clear, cleanup (expired
 * entries), remove_if (invalidation by a predicate) and for_each.
 *
 * One walk serves them all: shard by shard, each under its lock, every
 * bucket's chain in turn, the successor read before the step may unlink
 * the entry (an unlinked entry keeps its `next`). Under the lock no insert,
 * eviction or resize of that shard runs, so a shard is seen as of one
 * moment and no entry twice; shards are taken one after the other, so what
 * is written meanwhile to a shard already walked is not seen. Lookups go
 * on without the lock throughout; writers to the walked shard wait.
 *
 * Locking: the callers' callbacks (match, visit, on_removal) run under the
 * shard's lock and must not call the cache. Ownership: keys and values
 * handed to callbacks are borrowed for the call (keel_cache_value_acquire
 * keeps a value); entries unlinked here are retired as any removal's. */
#include <stdatomic.h>
#include <stdint.h>

#include "cache_int.h"

/* One entry of the walk: returns nonzero to stop it. `bucket` is the
 * entry's bucket index, whose bits are the low bits of its hash (what
 * unlink_locked needs). */
typedef int (*step_fn)(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t bucket, uint64_t now, void *ud);

/* The time that expired() compares with, or 0 when nothing in the cache
 * can expire (no clock read then; expired() is false for every entry). */
static uint64_t expiry_now(const keel_cache_t *c) {
  return c->ttl || c->neg_ttl || c->idle || atomic_load_explicit(&c->own_ttls, RLX) ? keel__cache_now_ns(c) : 0;
}

enum {
  WALK_RECLAIM = 1, /* after each shard, reclaim what no reader can still stand on */
  WALK_EXPIRING = 2 /* skip a shard's chains when nothing can expire */
};

/* Walks every linked entry (flags: WALK_*). */
static void walk(keel_cache_t *c, step_fn step, void *ud, unsigned flags) {
  int stop = 0;
  for (unsigned k = 0; k < c->nshards && !stop; k++) {
    shard *s = &c->sh[k];
    shard_lock(s);
    uint64_t now = expiry_now(c);
    table *t = atomic_load_explicit(&s->tab, RLX);
    for (uint64_t i = 0; i <= t->mask && !stop && (now || !(flags & WALK_EXPIRING)); i++) {
      link_t w = atomic_load_explicit(&t->b[i], RLX);
      while (w && !stop) {
        keel_cache_value_t *v = link_ent(w);
        w = atomic_load_explicit(&v->next, RLX);
        stop = step(c, s, v, i, now, ud);
      }
    }
    if (flags & WALK_RECLAIM) keel__cache_reclaim_now_locked(c, s);
    shard_unlock(s);
  }
}

static int clear_step(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t bucket, uint64_t now, void *ud) {
  (void)now, (void)ud;
  keel__cache_unlink_locked(c, s, v, bucket, KEEL_CACHE_REMOVED, 1);
  return 0;
}

void keel_cache_clear(keel_cache_t *c) {
  if (c) walk(c, clear_step, NULL, WALK_RECLAIM);
}

static int cleanup_step(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t bucket, uint64_t now, void *ud) {
  if (expired(v, now)) {
    keel__cache_unlink_locked(c, s, v, bucket, KEEL_CACHE_EXPIRED, 1);
    ++*(uint64_t *)ud;
  }
  return 0;
}

uint64_t keel_cache_cleanup(keel_cache_t *c) {
  uint64_t n = 0;
  if (c) walk(c, cleanup_step, &n, WALK_RECLAIM | WALK_EXPIRING);
  return n;
}

typedef struct {
  keel_cache_match_fn match;
  keel_cache_visit_fn visit;
  void *ud;
  uint64_t n; /* entries removed or visited */
} scan;

static int remove_if_step(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t bucket, uint64_t now, void *ud) {
  scan *x = ud;
  if (expired(v, now)) return 0;
  if (x->match(x->ud, ent_key(v), ent_klen(v), ent_negative(v) ? NULL : v)) {
    keel__cache_unlink_locked(c, s, v, bucket, KEEL_CACHE_REMOVED, 1);
    x->n++;
  }
  return 0;
}

uint64_t keel_cache_remove_if(keel_cache_t *c, keel_cache_match_fn match, void *ud) {
  if (!c || !match) return 0;
  scan x = {match, NULL, ud, 0};
  walk(c, remove_if_step, &x, WALK_RECLAIM);
  return x.n;
}

static int for_each_step(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t bucket, uint64_t now, void *ud) {
  (void)c, (void)s, (void)bucket;
  scan *x = ud;
  if (expired(v, now)) return 0;
  x->n++;
  return x->visit(x->ud, ent_key(v), ent_klen(v), ent_negative(v) ? NULL : v) != 0;
}

uint64_t keel_cache_for_each(keel_cache_t *c, keel_cache_visit_fn visit, void *ud) {
  if (!c || !visit) return 0;
  scan x = {NULL, visit, ud, 0};
  walk(c, for_each_step, &x, 0);
  return x.n;
}
