/* cache_table.c — a shard's chained hash table: power-of-two arrays of
 * buckets holding tagged links (link_t, cache_int.h), the link at a chain's
 * tail, the unlink, the search by policy slot (for eviction), and the
 * doubling resize. The lock-free walk of a chain (table_find1) is inline in
 * cache_int.h; the lookup's retry around a resize (table_find) is with the
 * lookups in cache.c, so that both compile into the lookup as before.
 *
 * Locking: all but table_new run under the shard's lock, while readers walk
 * the chains without one: a link is published with release stores, after
 * what it leads to (chain_append_locked), and a resize marks itself in
 * `rseq`. Ownership: the table holds links, not references (an entry's
 * reference is the cache's while it is linked or retired); a bucket array
 * replaced by a resize is retained on `older` until cache_epoch.c frees it
 * (tables_reclaim_locked). */
#include <stdatomic.h>
#include <stdint.h>

#include "cache_int.h"
#include "keel/mem.h"

table *keel__cache_table_new(keel_mem_tag tag, uint64_t buckets) {
  table *t = keel_mem_calloc(tag, 1, sizeof *t + buckets * sizeof(t->b[0]));
  if (t) t->mask = buckets - 1;
  return t;
}

/* The hash of a linked entry's key (entries do not store it: the chains'
 * tags filter lookups, and unlinks and resizes, which need the bucket, are
 * rare next to lookups). */
static inline uint64_t ent_rehash(const keel_cache_t *c, const keel_cache_value_t *v) {
  return key_hash(c, ent_key(v), ent_klen(v));
}

/* Unlinks v, whose hash is h (its low 32 bits suffice: a table has at
 * most 2^32 buckets). */
void keel__cache_table_unlink_locked(shard *s, keel_cache_value_t *v, uint64_t h) {
  table *t = atomic_load_explicit(&s->tab, RLX);
  _Atomic link_t *pp = &t->b[h & t->mask], *to_prev = NULL;
  link_t w;
  while (link_ent(w = atomic_load_explicit(pp, RLX)) != v) {
    to_prev = pp;
    pp = &link_ent(w)->next;
  }
  /* Readers standing on v keep following v->next, which stays intact. */
  link_t next = atomic_load_explicit(&v->next, RLX);
  atomic_store_explicit(pp, next, memory_order_release);
  /* v was the tail: its predecessor has no successor any more, and a miss
   * that stops on its tag need not load it to learn that (in a cache that
   * evicts steadily, stale marks had piled up on most chains). */
  if (!next && to_prev)
    atomic_store_explicit(to_prev, atomic_load_explicit(to_prev, RLX) & ~LINK_MORE, memory_order_release);
}


/* The linked entry of policy slot `slot`, whose hash has low bits h32
 * (a victim's: keel_policy_last_hash), or NULL. Under the lock. */
keel_cache_value_t *keel__cache_table_find_slot_locked(shard *s, uint32_t h32, uint32_t slot) {
  table *t = atomic_load_explicit(&s->tab, RLX);
  link_t w = atomic_load_explicit(&t->b[h32 & t->mask], RLX);
  while (w && ent_slot(link_ent(w)) != slot) w = atomic_load_explicit(&link_ent(w)->next, RLX);
  return link_ent(w);
}

/* Links v, of hash h, behind the entry that *to_tail leads to (into
 * *to_tail itself when it is 0: an empty bucket) and returns the link that
 * now leads to v. Release stores: v is written before the tail's `next`
 * leads to it, and that before the link to the tail says there is more to
 * walk. v's own `next` becomes 0 (a resize reads it first). */
static _Atomic link_t *chain_append_locked(_Atomic link_t *to_tail, keel_cache_value_t *v, uint64_t h) {
  link_t w = atomic_load_explicit(to_tail, RLX);
  /* Release, like every rewrite of a link: in a resize this cuts a chain
   * that readers may be walking, and one that reads the 0 (with its acquire
   * load) must then also see the odd rseq stored before it, or it would
   * take the cut for the chain's end and miss a present key. A plain store
   * on x86; on arm64 the order would otherwise not hold. */
  atomic_store_explicit(&v->next, 0, memory_order_release);
  if (!w) {
    atomic_store_explicit(to_tail, link_to(v, h, 0), memory_order_release);
    return to_tail;
  }
  _Atomic link_t *at = &link_ent(w)->next;
  atomic_store_explicit(at, link_to(v, h, 0), memory_order_release);
  atomic_store_explicit(to_tail, w | LINK_MORE, memory_order_release);
  return at;
}

/* Appends v, of hash h, at the tail of its chain: an entry that stays
 * (one the policy keeps because it is used) drifts toward the head as those
 * linked before it are evicted, and the newcomers, most of which the policy
 * soon evicts again, queue behind it, so a hit seldom walks past a
 * neighbour (docs/PERFORMANCE.md, "Chain order"). A link without LINK_MORE
 * leads to the tail. */
void keel__cache_table_link_locked(shard *s, keel_cache_value_t *v, uint64_t h) {
  table *t = atomic_load_explicit(&s->tab, RLX);
  _Atomic link_t *pp = &t->b[h & t->mask];
  link_t w;
  while ((w = atomic_load_explicit(pp, RLX)) & LINK_MORE) pp = &link_ent(w)->next;
  (void)chain_append_locked(pp, v, h);
}

/* Doubles the buckets when the count passes half of them (load factor
 * <= 1/2: a hit walks ~1.25 entries, a miss ~0.5; measured 20-50 % more
 * reads per CPU-second than load factor 1 on scarab-recs at 65,536). Entries are relinked into
 * the new table; a reader walking the old one meanwhile may be led astray
 * and miss, which the sequence check in table_find turns into a retry. The
 * old bucket array may still be read by readers inside an epoch, so it is
 * retired like an entry and freed 3 epochs later (tables_reclaim_locked;
 * insert_locked nudges the epoch while one waits). Kept until destroy, the
 * replaced arrays doubled the table's memory: 16 more bytes per entry.
 * The doubling itself is kept out of line: inlined into the insert it
 * made the 1-thread read-through 3-4 % slower, by where the code fell:
 * it runs a few times per shard. */
static __attribute__((noinline, cold)) void table_grow_locked(keel_cache_t *c, shard *s, table *t) {
  table *nt = keel__cache_table_new(c->tag, (t->mask + 1) * 2);
  if (!nt) return; /* longer chains, still correct */
  nt->older = t;
  atomic_fetch_add_explicit(&s->rseq, 1, memory_order_acq_rel); /* odd */
  /* An old chain splits in two (buckets i and i + old size), each keeping
   * the chain's order (see table_link_locked); to_tail[k] is the link to
   * half k's last entry so far. The new table is not yet published; the
   * old chains' `next` words are rewritten in place, which rseq tells their
   * readers. */
  for (uint64_t i = 0; i <= t->mask; i++) {
    link_t w = atomic_load_explicit(&t->b[i], RLX);
    _Atomic link_t *to_tail[2] = {&nt->b[i], &nt->b[i + t->mask + 1]};
    while (w) {
      keel_cache_value_t *v = link_ent(w);
      w = atomic_load_explicit(&v->next, RLX);
      uint64_t h = ent_rehash(c, v);
      unsigned k = (h & nt->mask) != i;
      to_tail[k] = chain_append_locked(to_tail[k], v, h);
    }
  }
  atomic_store_explicit(&s->tab, nt, memory_order_release);
  atomic_fetch_add_explicit(&s->rseq, 1, memory_order_release); /* even */
  atomic_thread_fence(memory_order_seq_cst); /* the swap before the epoch read (as retire_locked) */
  t->retired = atomic_load(&c->epoch);
}

void keel__cache_table_maybe_grow_locked(keel_cache_t *c, shard *s) {
  table *t = atomic_load_explicit(&s->tab, RLX);
  if (2 * atomic_load_explicit(&s->entries, RLX) <= t->mask + 1 || t->mask >= UINT32_MAX / 2) return;
  table_grow_locked(c, s, t);
}
