/* cache_epoch.c — the cache's epoch-based reclamation: the global epoch's
 * advance, the retirement of unlinked entries into their shard's limbo
 * lists, their reclamation (and that of bucket arrays replaced by resizes)
 * once no reader can stand on them, and the shard's free list of policy
 * slots, which runs through the same spare room of the policy's records as
 * the limbo lists. The reader side, epoch_enter and epoch_exit, is inline
 * in cache_int.h; which reader slot a thread uses, and its pins, are
 * cache.c's.
 *
 * Reclamation (epoch based, two reader counters per slot as in classic
 * QSBR/EBR schemes, cf. Fraser 2004 and ck_epoch): a reader increments
 * `rd[i].active[e & 1]` for the global epoch e it read, re-reads the epoch
 * and retries if it moved. An unlinked entry is retired in its shard's limbo
 * list of the epoch read (after a full fence) once it is unlinked; it keeps
 * its slot until reclaimed, and the list runs through the slots (retire_locked). Any shard
 * may advance the epoch from e to e+1 (compare-and-swap) when no reader is
 * counted under parity (e+1)&1 (i.e. readers of e-1 are gone). An entry
 * retired at epoch r is unreachable once the epoch reaches r+2; the cache
 * waits for r+3, one epoch of margin for a reader that entered at r+1 just
 * before the unlink became visible, and then drops its reference (freeing
 * the entry unless a user still holds one) once the shard's lock is
 * released (shard_unlock). Because the cache's reference
 * lasts until then, a reader's increment of a reachable entry's count never
 * races with its free.
 *
 * Locking: the *_locked functions run under the shard's lock;
 * epoch_try_advance takes none (a compare-and-swap of the cache's epoch,
 * which any shard may move). Ownership: a retired entry keeps the cache's
 * reference (retained) until it is reclaimed into the shard's garbage list
 * (owned by the shard), whose references shard_unlock (cache_int.h)
 * drops after releasing the lock. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cache_int.h"
#include "keel/mem.h"
#include "keel/policy.h"

/* Drops the cache's reference to every entry of a garbage list (linked
 * through `next`, which no reader follows any more). */
void keel__cache_garbage_free(keel_cache_value_t *v) {
  while (v) {
    keel_cache_value_t *nx = (keel_cache_value_t *)(uintptr_t)atomic_load_explicit(&v->next, RLX);
    keel__cache_ent_uncache(v);
    v = nx;
  }
}

/* Advances the epoch from e to e+1 if no reader of e-1 remains. */
void keel__cache_epoch_try_advance(keel_cache_t *c) {
  uint64_t e = atomic_load(&c->epoch);
  for (unsigned i = 0; i < NREADERS; i++)
    if (atomic_load(&c->rd[i].active[(e + 1) & 1]) != 0) return;
  atomic_compare_exchange_strong(&c->epoch, &e, e + 1); /* lost: another shard advanced */
}

/* Hands the entries of limbo list i to the garbage, whose references
 * shard_unlock drops once the lock is released (free() may wait on the
 * allocator's own locks, which is no reason to keep other threads out of
 * the shard), and frees their slots. No reader can stand on them any more,
 * so their `next` may carry the garbage list. */
void keel__cache_limbo_reclaim1_locked(shard *s, unsigned i) {
  uint32_t j = s->limbo[i];
  while (j != KEEL_POLICY_NONE) {
    uint32_t nx = spare_link(s, j);
    keel_cache_value_t *v = spare_ent(s, j);
    atomic_store_explicit(&v->next, (uint64_t)(uintptr_t)s->garbage, RLX);
    s->garbage = v;
    slot_free_locked(s, j);
    j = nx;
  }
  s->limbo[i] = KEEL_POLICY_NONE;
}

/* Frees the bucket arrays that resizes replaced 3 or more epochs before
 * e: as for entries, no reader can still stand on them. Older tables were
 * replaced earlier, so the chain's tail goes from the first such one. */
void keel__cache_tables_reclaim_locked(shard *s, uint64_t e) {
  table *t = atomic_load_explicit(&s->tab, RLX);
  while (t->older && t->older->retired + 3 > e) t = t->older;
  table *q = t->older;
  if (q) t->older = NULL; /* only then: the current table's first line is read by every lookup */
  while (q) {
    table *o = q->older;
    keel_mem_free(q);
    q = o;
  }
}

/* Reclaims what was retired 3 or more epochs ago. */
static void limbo_reclaim_locked(keel_cache_t *c, shard *s) {
  uint64_t e = atomic_load(&c->epoch);
  for (unsigned i = 0; i < 4; i++)
    if (s->limbo[i] != KEEL_POLICY_NONE && s->limbo_epoch[i] + 3 <= e) keel__cache_limbo_reclaim1_locked(s, i);
  keel__cache_tables_reclaim_locked(s, e);
}

/* Reclaims what no reader can still stand on, advancing the epoch as far
 * as the readers allow (with none inside, three steps: everything retired
 * so far). For a shard out of free slots, a clear and a cleanup. */
void keel__cache_reclaim_now_locked(keel_cache_t *c, shard *s) {
  for (unsigned k = 0; k < 3; k++) keel__cache_epoch_try_advance(c);
  limbo_reclaim_locked(c, s);
}

/* Retires an unlinked entry: readers may still stand on it (and may still
 * return its value: their read overlapped the removal), so the cache's
 * reference is dropped three epochs later. The entry keeps its slot
 * meanwhile: the policy released the slot already, and its spare room
 * holds the entry and threads the limbo list. The entry itself is left
 * untouched (a reader on it follows its `next`), and retiring never
 * allocates and never fails. The slot is reused once reclaimed. Under the
 * shard's lock. */
void keel__cache_retire_locked(keel_cache_t *c, shard *s, keel_cache_value_t *v) {
  atomic_thread_fence(memory_order_seq_cst); /* the unlink before the epoch read */
  uint64_t e = atomic_load(&c->epoch);
  unsigned i = (unsigned)(e & 3);
  if (s->limbo[i] != KEEL_POLICY_NONE && s->limbo_epoch[i] != e) keel__cache_limbo_reclaim1_locked(s, i); /* from e-4 or before */
  uint32_t slot = ent_slot(v);
  spare_set(s, slot, v, s->limbo[i]);
  s->limbo[i] = slot;
  s->limbo_epoch[i] = e;
  if (++s->retired_since >= LIMBO_BATCH) {
    s->retired_since = 0;
    keel__cache_epoch_try_advance(c);
    limbo_reclaim_locked(c, s);
  }
}

/* ---- slots ---------------------------------------------------------------------- */

/* Makes sure a slot is free: reclaims what limbo may give back, else
 * grows the slot arrays by a quarter (slots of retired entries count until
 * reclaimed). Doubling left up to half of them unused: at 65,536 entries
 * the policy's records took 32 bytes per entry instead of 16-20. */
keel_status keel__cache_slot_reserve_locked(keel_cache_t *c, shard *s) {
  if (s->free_head != KEEL_POLICY_NONE) return KEEL_OK;
  if (s->nslots) {
    keel__cache_reclaim_now_locked(c, s);
    if (s->free_head != KEEL_POLICY_NONE) return KEEL_OK;
  }
  uint64_t n = (uint64_t)s->nslots + (s->nslots / 4 < 64 ? 64 : s->nslots / 4);
  if (n > SLOT_MAX) n = SLOT_MAX;
  if (n <= s->nslots) return KEEL_ELIMIT; /* 16 M entries per shard */
  if (keel_policy_grow(s->pol, (uint32_t)n) != KEEL_OK) return KEEL_ENOMEM;
  for (uint32_t i = (uint32_t)n; i > s->nslots; i--) slot_free_locked(s, i - 1);
  s->nslots = (uint32_t)n;
  return KEEL_OK;
}
