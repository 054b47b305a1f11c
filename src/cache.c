/* cache.c — the concurrent byte-bounded cache (see keel/cache.h).
 *
 * Layout. An entry is one allocation (keel_mem_alloc_sized, no keel_mem
 * header): a 24-byte header (chain link, lengths, reference count, slot and
 * memory tag), the expiry time (in caches with a TTL, and in entries with
 * a TTL of their own: EXP_FLAG says which), the key, padding to 8, the
 * value, and in caches that refresh values (RFR_FLAG) padding to 8 and
 * the time of its refresh (refresh_claim, refresh_load). The entry *is*
 * the value object users hold: its reference count counts the cache
 * (while linked or in limbo) plus every user reference. Entries hang in
 * a chained hash table (`table`, power-of-two buckets of tagged links, see
 * link_t); an entry does not store its hash.
 * The policy (keel/policy.h) knows entries by slot number, and an entry
 * its slot (slot_tag); a victim's entry is found by the slot in the chain
 * of its hash (keel_policy_last_hash), so no array maps slots to entries.
 *
 * Readers (get, read, the hit paths of get_or_load and read_or_load: one
 * inlined `probe`) take no lock. They enter
 * an epoch (cache_epoch.c), walk a bucket chain with acquire loads, compare the
 * link's tag, then length and key bytes, check expiry, take a reference or read in place,
 * and leave. A hit is recorded in the thread's read buffer, a ring of 256
 * items in its reader slot (one 64-bit store and a release store of the
 * tail; a full ring drops the record). Who drains the rings into the
 * shards' policies:
 *  - the cache's maintenance thread (worker.h; by default in caches that
 *    record every hit, see keel_cache_maintenance), which takes any
 *    ring holding 16 items or more (and what is left before it sleeps), waiting for a busy shard's lock but
 *    giving way to a writer that comes meanwhile. A lookup pays for the
 *    append only, so small caches, whose policy work per lookup is large
 *    (shadow replays), read as fast as large ones; the policy sees what the
 *    thread keeps up with, as in Caffeine (stats: policy_dropped). In these
 *    caches the thread also replays the adaptive policy's shadows, without
 *    a lock (deferred shadows, keel/policy.h): policy calls under the shard
 *    lock only queue a sampled request, so a miss's insert does not replay
 *    it into 18 shadows on the caller's thread;
 *  - without it (larger caches, or KEEL_CACHE_MAINTAIN_CALLER), the looking-up thread every 32
 *    items, each item if no writer waits for its shard's lock and a
 *    trylock succeeds, else dropped;
 *  - in both, an inserting thread first applies its own ring under the
 *    lock it holds (see insert_locked), so a single-threaded caller's hits
 *    reach the policy before its next insert, as `keel sim` replays them.
 * The hit path never waits.
 *
 * Shards. A large cache is split by key hash into up to 16 shards (powers
 * of two; each at least 4,096 expected entries and 1 MiB), each a cache of
 * its own: lock, table, policy (with its free slots), limbo lists, single-flight records,
 * and an equal share of the bounds. Writers of different shards never meet,
 * so misses on several cores proceed in parallel; the bound of the whole is
 * the sum of the shards' bounds, so it holds at every moment as theirs do.
 * An entry larger than its shard's share is not kept (KEEL_ELIMIT). Reader
 * slots, the epoch and the counters of hits and misses are the cache's.
 *
 * Writers hold their shard's `lock`. An insert makes room first: it adds
 * the newcomer to the policy and evicts (unlinks) victims until the policy's weight fits
 * max_bytes (and the count fits max_entries), and only then links the
 * newcomer into the table. So the charged bytes of linked entries never
 * exceed the bound, even for an instant. The newcomer may itself be the
 * victim (admission refused); it is then never published.
 *
 * Reclamation is epoch based: the cache drops its reference to an
 * unlinked entry once no reader can still stand on it (cache_epoch.c,
 * at its top).
 *
 * Single flight. Threads that miss the same key together load it once
 * (cache_load.c, at its top).
 *
 * Guards: a shard's `lock` guards its table's structure, the policy
 * (and the free slots in it), limbo lists, pending list and the shard's
 * counters (bytes, entries, loads, evictions...: written with plain relaxed
 * stores by the holder, read with relaxed loads by statistics). Lock
 * order: one shard lock at a time, except that a drain by an inserter
 * holding one may *try* another (never waits); the maintenance thread
 * holds no lock when it waits for one; the removal callback runs under a
 * shard's lock. Per-thread counters and read rings live in the reader
 * slots: counters and ring tails written by their threads, ring heads by
 * the one drainer that holds the ring's `draining` flag. */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include "keel/cache.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_int.h"
#include "keel/policy.h"
#include "random_int.h"
#include "worker.h"

static const char *const maintenance_names[] = {"auto", "thread", "caller"};

int keel_cache_maintenance_parse(const char *name, keel_cache_maintenance *out) {
  for (unsigned i = 0; name && i < sizeof maintenance_names / sizeof *maintenance_names; i++)
    if (!strcmp(name, maintenance_names[i])) {
      *out = (keel_cache_maintenance)i;
      return 0;
    }
  return -1;
}

const char *keel_cache_maintenance_name(keel_cache_maintenance m) {
  return (unsigned)m < sizeof maintenance_names / sizeof *maintenance_names ? maintenance_names[m] : "?";
}

size_t keel_cache_entry_overhead(void) {
  /* The entry header (24; 8 more with a TTL), two bucket
   * links (16: load factor <= 1/2), the policy's per-slot record
   * (32-bit hash, prev, next, weight and queue: 16; a free or retired
   * slot's free-list or limbo word and entry live in it too) and the
   * sketch's share (4 rows x 6 counters of 4 bits = 12). Arrays that grow
   * by doubling may hold up to twice their share; this is the steady-state
   * charge. */
  return sizeof(struct keel_cache_value) + 16 + 16 + 12;
}

uint64_t keel__cache_now_ns(const keel_cache_t *c) {
  if (c->clock) return c->clock(c->clock_ud);
  struct timespec ts;
  clock_gettime(c->coarse ? CLOCK_MONOTONIC_COARSE : CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* keel is built position-independent (it is also a shared library), where
 * thread-locals default to the general-dynamic model: each access is a
 * call into the dynamic linker, and even once the linker has relaxed it the
 * compiler saves registers around it. The lookup path touches them several
 * times, so they use the initial-exec model (a fixed offset from the
 * thread pointer; a few bytes of the static TLS space, which glibc keeps
 * spare for libraries loaded later too). */
#define TLS_IE __attribute__((tls_model("initial-exec")))

/* The reader slot of the calling thread. A thread claims a free slot of
 * the cache on first use (compare-and-swap of `owner`, keyed by the address
 * of a thread-local variable, which differs per thread) and remembers it in
 * thread-local storage, so slots are private and their lines never bounce
 * between threads. When every slot is claimed (more than NREADERS threads
 * have used the cache; slots are not given back when a thread exits) a
 * thread shares a slot chosen by hashing: every field is atomic, so sharing
 * costs speed, never correctness. */
static _Thread_local TLS_IE struct {
  keel_cache_t *c;
  unsigned idx;
  int shared;
} mine;

static reader *reader_claim(keel_cache_t *c, uintptr_t me) {
  unsigned h = (unsigned)(((me >> 6) * 0x9e3779b97f4a7c15ull) >> 59) & (NREADERS - 1);
  unsigned idx = h;
  int shared = 1;
  for (unsigned k = 0; k < NREADERS && shared; k++) {
    unsigned i = (h + k) & (NREADERS - 1);
    uintptr_t o = atomic_load_explicit(&c->rd[i].owner, RLX);
    if (o == me) idx = i, shared = 0;
  }
  for (unsigned k = 0; k < NREADERS && shared; k++) {
    unsigned i = (h + k) & (NREADERS - 1);
    uintptr_t zero = 0;
    if (atomic_compare_exchange_strong_explicit(&c->rd[i].owner, &zero, me, RLX, RLX)) idx = i, shared = 0;
  }
  mine.c = c;
  mine.idx = idx;
  mine.shared = shared;
  return &c->rd[idx];
}

/* The calling thread's identity: the address of a thread-local, distinct
 * among live threads. */
static _Thread_local TLS_IE char thread_anchor;

const void *keel__cache_thread_id(void) { return &thread_anchor; }

static inline reader *my_reader(keel_cache_t *c) {
  uintptr_t me = (uintptr_t)&thread_anchor;
  if (mine.c == c && (mine.shared || atomic_load_explicit(&c->rd[mine.idx].owner, RLX) == me))
    return &c->rd[mine.idx];
  return reader_claim(c, me);
}

/* A new entry with refs = 1 (the caller's). It has room for an expiry
 * time when the cache expires entries or `own_ttl` (it will have a time to
 * live of its own), and for a refresh time when the cache refreshes values
 * and this is one (not `negative`, a cached error). */
keel_cache_value_t *keel__cache_ent_alloc(const keel_cache_t *c, const void *key, size_t klen, size_t vlen,
                                          int own_ttl, int negative) {
  if (klen > KLEN_MASK || vlen > UINT32_MAX) return NULL;
  uint32_t idle = c->idle && !negative ? IDL_FLAG : 0;
  uint32_t flags = (own_ttl || c->ttl || c->neg_ttl || idle ? EXP_FLAG : 0) | (c->refresh && !negative ? RFR_FLAG : 0) | idle;
  int counted;
  size_t size = sizeof(keel_cache_value_t) + exp_len(flags) + key_pad(klen) + vlen + tail_len(flags, vlen);
  keel_cache_value_t *v = keel_mem_alloc_sized(c->tag, size, &counted);
  if (!v) return NULL;
  if ((uintptr_t)v & ~(uintptr_t)LINK_PTR) { /* beyond the 48 bits of a link */
    keel_mem_free_sized(c->tag, v, size, counted);
    return NULL;
  }
  atomic_init(&v->next, 0);
  v->klen = (uint32_t)klen | flags | (counted ? CNT_FLAG : 0);
  v->vlen = (uint32_t)vlen;
  atomic_init(&v->refs, 1);
  v->slot_tag = (uint32_t)c->tag << SLOT_BITS | SLOT_MAX;
  if (flags & EXP_FLAG) atomic_init(ent_expire(v), 0);
  if (flags & RFR_FLAG) atomic_init(ent_refresh(v), 0);
  if (flags & IDL_FLAG) atomic_init(ent_write_deadline(v), 0);
  if (klen) memcpy((void *)ent_key(v), key, klen);
  return v;
}

static void ent_free(keel_cache_value_t *v) {
  keel_mem_free_sized((keel_mem_tag)(v->slot_tag >> SLOT_BITS), v, ent_size(v), (v->klen & CNT_FLAG) != 0);
}

/* ---- epochs ------------------------------------------------------------------ */

/* The calling thread's pin (keel_cache_pin): one cache at a time. */
static _Thread_local TLS_IE struct {
  keel_cache_t *c;
  reader *r; /* c's reader slot of this thread, found once per pin */
  uint64_t e;
  unsigned depth;
  uint64_t hits, misses; /* counted while pinned, added to the slot at unpin */
} pin;

/* Counts a lookup. Pinned, into the thread's own counters (no locked
 * instruction, which on x86 would fence every lookup); else into the slot. */
static inline void count(keel_cache_t *c, reader *r, int hit) {
  if (pin.c == c) {
    if (hit) pin.hits++;
    else pin.misses++;
    return;
  }
  atomic_fetch_add_explicit(hit ? &r->hits : &r->misses, 1, memory_order_relaxed);
}

/* Enters the epoch unless the thread has pinned c, and finds its reader
 * slot (*r) either way: a pin remembers both. */
static inline uint64_t guard_enter(keel_cache_t *c, reader **r) {
  if (pin.c == c) {
    *r = pin.r;
    return pin.e;
  }
  *r = my_reader(c);
  return epoch_enter(c, *r);
}

static inline void guard_exit(keel_cache_t *c, reader *r, uint64_t e) {
  if (pin.c != c) epoch_exit(r, e);
}

void keel_cache_pin(keel_cache_t *c) {
  if (!c) return;
  if (pin.c == c) {
    pin.depth++;
    return;
  }
  if (pin.c) return; /* another cache is pinned: misuse, ignored (lookups stay protected) */
  pin.r = my_reader(c);
  pin.e = epoch_enter(c, pin.r);
  pin.c = c;
  pin.depth = 1;
}

void keel_cache_unpin(keel_cache_t *c) {
  if (!c || pin.c != c || --pin.depth) return;
  reader *r = pin.r;
  pin.c = NULL;
  atomic_fetch_add_explicit(&r->hits, pin.hits, memory_order_relaxed);
  atomic_fetch_add_explicit(&r->misses, pin.misses, memory_order_relaxed);
  pin.hits = pin.misses = 0;
  epoch_exit(r, pin.e);
}

/* A release of a reference nobody holds, found while the cache still holds
 * its own (so the entry is alive to say so): without this check the count
 * would take the cache's reference, and the entry would be freed under a
 * later reader. Like glibc on a double free, it says so and aborts. */
__attribute__((noinline, cold, noreturn)) static void ent_overreleased(const keel_cache_value_t *v) {
  size_t n = ent_klen(v);
  const unsigned char *k = ent_key(v);
  char shown[97];
  size_t o = 0, i = 0;
  for (; i < n && o + 4 < sizeof shown; i++)
    o += (size_t)snprintf(shown + o, sizeof shown - o, k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\' && k[i] != '"' ? "%c" : "\\x%02x", k[i]);
  shown[o] = '\0';
  fprintf(stderr,
          "keel: keel_cache_value_release: the value of key \"%s%s\" (%zu bytes) was released more times than it "
          "was acquired (released twice, or a reference the caller did not hold)\n",
          shown, i < n ? "..." : "", n);
  abort();
}

void keel__cache_ent_unref(keel_cache_value_t *v) {
  uint32_t old = atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel);
  if ((old & (REF_COUNT | REF_CACHE)) == 1) ent_free(v);
  else if (!(old & REF_COUNT)) ent_overreleased(v);
}

void keel__cache_ent_uncache(keel_cache_value_t *v) {
  if (!(atomic_fetch_and_explicit(&v->refs, ~REF_CACHE, memory_order_acq_rel) & REF_COUNT)) ent_free(v);
}

/* ---- policy bookkeeping --------------------------------------------------------- */

/* An item of a ring (see reader). */
static inline uint64_t item_make(const keel_cache_t *c, uint32_t slot, uint64_t h) {
  uint64_t sh = (h >> 48) & (c->nshards - 1);
  return sh << 56 | (uint64_t)(slot & SLOT_MAX) << 32 | (uint32_t)h;
}
static inline unsigned item_shard(uint64_t x) { return (unsigned)(x >> 56) & (NSHARDS_MAX - 1); }
/* Only hits are recorded, and a linked entry always has a slot. */
static inline uint32_t item_slot(uint64_t x) { return (uint32_t)(x >> 32) & SLOT_MAX; }

/* Takes the oldest items of r's ring into items[] (at most TAKE; if a
 * shared slot's tail overran, the ring's last RING items count), or none
 * while another drainer takes them. */
static uint32_t ring_take(reader *r, uint64_t *items) {
  uint32_t zero = 0;
  if (!atomic_compare_exchange_strong_explicit(&r->draining, &zero, 1, memory_order_acquire, RLX)) return 0;
  uint32_t h = atomic_load_explicit(&r->head, RLX);
  uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  if (t - h > RING) h = t - RING;
  uint32_t n = t - h > TAKE ? TAKE : t - h;
  for (uint32_t i = 0; i < n; i++) items[i] = atomic_load_explicit(&r->rb[(h + i) % RING], RLX);
  /* release: the items are read before the producer may overwrite them. */
  atomic_store_explicit(&r->head, h + n, memory_order_release);
  atomic_store_explicit(&r->draining, 0, memory_order_release);
  return n;
}

/* Drains r's ring into the policies; returns the items taken. `held` is a
 * shard whose lock the caller holds (or NULL); the items of other shards
 * are applied if their lock is free at once and no writer waits for it,
 * else dropped (counted); the worker (`worker`) waits for a busy lock
 * instead. Either gives way to a writer that comes while it applies
 * (dropping the rest). Shard by shard: first every item's policy
 * record and sketch line are prefetched, then applied, so their cache
 * misses overlap instead of queueing. A slot whose policy hash is no
 * longer the item's was reused since: skipped. */
static uint32_t drain(keel_cache_t *c, reader *r, shard *held, int worker) {
  uint64_t item[TAKE];
  uint32_t n = ring_take(r, item), dropped = 0;
  _Static_assert(TAKE == 64, "one bit per item");
  uint64_t left = n == 64 ? UINT64_MAX : (1ull << n) - 1; /* items not yet applied */
  while (left) {
    unsigned si = item_shard(item[__builtin_ctzll(left)]);
    shard *s = &c->sh[si];
    uint64_t ours = 0;
    for (uint32_t i = 0; i < n; i++)
      if ((left >> i & 1) && item_shard(item[i]) == si) ours |= 1ull << i;
    left &= ~ours;
    if (s != held && worker) {
      pthread_mutex_lock(&s->lock);
    } else if (s != held && (atomic_load_explicit(&s->waiting, RLX) || pthread_mutex_trylock(&s->lock) != 0)) {
      dropped += (uint32_t)__builtin_popcountll(ours); /* busy, or a writer waits */
      continue;
    }
    for (uint32_t i = 0; i < n; i++)
      if (ours >> i & 1) keel_policy_prefetch_access(s->pol, item_slot(item[i]), (uint32_t)item[i]);
    for (uint32_t i = 0; i < n; i++) {
      if (!(ours >> i & 1)) continue;
      if (s != held && atomic_load_explicit(&s->waiting, RLX)) { /* a writer came: give way */
        dropped += (uint32_t)__builtin_popcountll(ours >> i);
        break;
      }
      uint32_t slot = item_slot(item[i]);
      if (keel_policy_slot_hash(s->pol, slot) == (uint32_t)item[i]) keel_policy_hit(s->pol, slot);
    }
    if (s != held) pthread_mutex_unlock(&s->lock);
  }
  if (dropped) add(&c->drain_dropped, dropped);
  return n;
}

/* The worker's round: drains every ring that holds RBATCH / 2 items or
 * more (up to all of it); fewer are left to their thread's next insert or
 * to a later round, except in the round before the worker sleeps (`last`),
 * which takes every item: records never wait for more to come. */
static size_t maintain(void *ud, int last) {
  keel_cache_t *c = ud;
  size_t n = 0;
  uint32_t least = last ? 1 : RBATCH / 2;
  for (unsigned i = 0; i < NREADERS; i++) {
    reader *r = &c->rd[i];
    for (unsigned k = 0; k < RING / TAKE; k++) {
      if (atomic_load_explicit(&r->tail, RLX) - atomic_load_explicit(&r->head, RLX) < least) break;
      uint32_t got = drain(c, r, NULL, 1);
      if (!got) break;
      n += got;
    }
  }
  /* The shadows, outside the shards' locks: they are this thread's. */
  for (unsigned i = 0; i < c->nshards; i++) n += keel_policy_replay_deferred(c->sh[i].pol, DEFER_TAKE);
  return n;
}

/* Marks an entry a lookup found, in caches that show the policy a sample
 * of their hits, so that the policy gives it a second chance before it
 * evicts it (keel_policy_set_found). The sample keeps the policy's view of
 * frequency but loses recency: a key found again and again was evicted as
 * if unused when its hits fell outside the sample. A mark costs a load of
 * a line the lookup has read anyway, and a store only the first time an
 * entry is found after each ask. Inside the lookup's epoch. */
static inline void mark(keel_cache_value_t *v) {
  if (!(atomic_load_explicit(&v->refs, RLX) & REF_FOUND))
    atomic_fetch_or_explicit(&v->refs, REF_FOUND, RLX);
}

/* The shards' keel_policy_found_fn (ud: the shard): whether the linked
 * entry of `slot` was found since the last ask; clears the mark. Under
 * the shard's lock. */
static int ent_found(void *ud, uint32_t slot, uint32_t hash) {
  keel_cache_value_t *v = keel__cache_table_find_slot_locked(ud, hash, slot);
  if (!v || !(atomic_load_explicit(&v->refs, RLX) & REF_FOUND)) return 0;
  atomic_fetch_and_explicit(&v->refs, ~REF_FOUND, RLX);
  return 1;
}

/* Records a hit on v for the policy, and in a sampling cache marks v
 * (mark: here, inside the lookup's epoch, it shares the sampling branch and
 * costs reads nothing measurable; a separate test cost 1-thread reads 5 %).
 * Lossy. A miss is not recorded: the
 * request reaches the policy once, when the key is inserted (put, or
 * get_or_load's load), as keel sim replays a miss. Recording the miss as
 * well made a get that missed and the put that followed count twice (the
 * sketch counted the key twice; the shadows took the put for a hit), and
 * cost the 1-thread read 7 % at 65,536 entries for misses never inserted. */
static inline void record(keel_cache_t *c, reader *r, keel_cache_value_t *v, uint64_t h) {
  /* Sampling: large caches show the policy one hit in record_mask + 1,
   * and a sample of their inserts' misses (insert_locked): a sample of
   * frequency, a coarser one of recency. Their
   * policy state is far from the core's caches, so each recorded hit costs
   * several cache misses; sampling trades hit ratio for hit-path speed,
   * and what it loses is mostly recency, which mark and the policy's
   * second chances give back (a replay of scarab-recs through a cache of
   * 65,536 entries: 0.7051 recording every hit, 0.6409 sampling 1 in 16
   * alone, 0.6840 with second chances and every insert shown to the
   * shadows, 0.6823 sampling hits 1 in 32: docs/PERFORMANCE.md; 1 in 32
   * instead of 16 read 10 % more on 1 thread). Caches up to RECORD_ALL
   * entries record every hit (sampling 1 in 16 cost them up to 2.7 points
   * in keel run vs keel sim). */
  if (c->record_mask) {
    mark(v);
    uint32_t tick = atomic_load_explicit(&r->tick, RLX) + 1;
    atomic_store_explicit(&r->tick, tick, RLX);
    if (tick & c->record_mask) return;
  }
  uint32_t t = atomic_load_explicit(&r->tail, RLX);
  uint32_t used = t - atomic_load_explicit(&r->head, memory_order_acquire);
  if (used >= RING) { /* the drainer lags: lost (a shared slot's tail may even look behind) */
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, RLX) + 1, RLX);
    return;
  }
  atomic_store_explicit(&r->rb[t % RING], item_make(c, ent_slot(v), h), RLX);
  /* release: the item is written before a drainer can see it. */
  atomic_store_explicit(&r->tail, t + 1, memory_order_release);
  if (c->worker) {
    if (used + 1 == RBATCH) keel__worker_kick(c->worker);
  } else if (used + 1 >= RBATCH) {
    (void)drain(c, r, NULL, 0);
  }
}

/* ---- removal -------------------------------------------------------------------- */

static void notify(keel_cache_t *c, keel_cache_value_t *v, keel_cache_cause cause) {
  if (!c->on_removal) return;
  c->on_removal(c->removal_ud, ent_key(v), ent_klen(v), ent_negative(v) ? NULL : v, cause);
}

/* Unlinks a linked entry of hash h (its low 32 bits suffice) whose policy
 * slot was already released by the policy (evicted) or must be (removed),
 * counts it and retires it. */
void keel__cache_unlink_locked(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t h, keel_cache_cause cause,
                               int in_policy) {
  if (in_policy) keel_policy_remove(s->pol, ent_slot(v));
  keel__cache_table_unlink_locked(s, v, h);
  add_locked(&s->bytes, -ent_charge(v));
  add_locked(&s->entries, (uint64_t)-1);
  switch (cause) {
  case KEEL_CACHE_EVICTED: add_locked(&s->evictions, 1); break;
  case KEEL_CACHE_EXPIRED: add_locked(&s->expirations, 1); break;
  case KEEL_CACHE_REMOVED: add_locked(&s->removals, 1); break;
  case KEEL_CACHE_REPLACED: add_locked(&s->replacements, 1); break;
  }
  notify(c, v, cause);
  keel__cache_retire_locked(c, s, v);
}

/* stale_on_access's store (see there): kept out of the lookups' code. */
__attribute__((noinline)) void keel__cache_idle_touch(const keel_cache_t *c, keel_cache_value_t *v, uint64_t now,
                                                      uint64_t e) {
  uint64_t d = idle_deadline(c, now, atomic_load_explicit(ent_write_deadline(v), RLX));
  /* Only ever later: a reader stalled after reading `now` must not put back
   * an earlier time over a newer reader's. */
  while (d > e && d - e > c->idle >> 6 &&
         !atomic_compare_exchange_weak_explicit(ent_expire(v), &e, d, RLX, RLX)) {
  }
}

/* The expiry time of an entry written now with time to live ttl: 0
 * (never) for no TTL or one that would pass the end of the clock. */
uint64_t keel__cache_expiry_of(const keel_cache_t *c, uint64_t ttl) {
  if (!ttl) return 0;
  uint64_t now = keel__cache_now_ns(c);
  return ttl > UINT64_MAX - now ? 0 : now + ttl;
}

/* Evicts until `extra` more bytes and one more entry fit; `newcomer` (not
 * linked, already in the policy) may be chosen: returns 0 then. Under lock. */
static int make_room_locked(keel_cache_t *c, shard *sh, keel_cache_value_t *newcomer) {
  uint64_t maxb = atomic_load_explicit(&sh->max_bytes, RLX);
  uint64_t maxe = atomic_load_explicit(&sh->max_entries, RLX);
  int admitted = 1;
  for (;;) {
    uint64_t count = atomic_load_explicit(&sh->entries, RLX) + (newcomer && admitted ? 1 : 0);
    if (keel_policy_weight(sh->pol) <= maxb && (!maxe || count <= maxe)) break;
    uint32_t s = keel_policy_evict(sh->pol);
    if (s == KEEL_POLICY_NONE) break;
    if (newcomer && s == ent_slot(newcomer)) {
      admitted = 0;
      continue;
    }
    uint32_t h = keel_policy_last_hash(sh->pol, s);
    keel_cache_value_t *v = keel__cache_table_find_slot_locked(sh, h, s);
    keel__cache_unlink_locked(c, sh, v, h, stale(c, v) ? KEEL_CACHE_EXPIRED : KEEL_CACHE_EVICTED, 0);
  }
  return admitted;
}

/* Stores entry v (refs = 1, the caller's) in the cache, replacing the old
 * entry of its key (an expired one leaves as EXPIRED). On KEEL_OK the cache
 * took its own reference when the entry was admitted. KEEL_ELIMIT: larger
 * than the cache; KEEL_ENOMEM; KEEL_EEXIST: `keep_live` and a live old
 * entry, which stays. Any other old entry is removed in all cases but
 * ENOMEM. Under lock. */
const uint32_t keel__cache_no_guess[2] = {KEEL_POLICY_NONE, KEEL_POLICY_NONE};

/* Starts loading the bucket of `slot`, a likely victim (prefetch_victim
 * is called once before the load, with `entry` 0, then at the insert, with
 * 1, when the bucket has likely come: the chain's first entry too). */
void keel__cache_prefetch_victim(shard *s, uint32_t slot, int entry) {
  if (slot >= s->nslots) return;
  table *t = atomic_load_explicit(&s->tab, RLX);
  _Atomic link_t *b = &t->b[keel_policy_slot_hash(s->pol, slot) & t->mask];
  if (entry) __builtin_prefetch(link_ent(atomic_load_explicit(b, RLX)));
  else __builtin_prefetch(b);
}

/* h: the key's hash; victim[2]: guesses from keel_policy_prefetch, or
 * KEEL_POLICY_NONE. The inserting thread's earlier hits reach the policy
 * first where it sees every hit, so a just-hit entry is not chosen as
 * the victim (keel sim replays accesses in order); a cache that samples
 * its lookups applies them here once 8 are queued, and only with the
 * maintenance thread (draining its few sampled items under the lock at
 * every load cost 5-8 % of read-throughs at 65,536 entries; leaving them
 * all to the thread made it contend with the inserter for the shard's
 * lock: 100,000 context switches per 2 s on one thread). */
keel_status keel__cache_insert_locked(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t h,
                                      const uint32_t *victim, const uint64_t *ttl, int keep_live) {
  reader *r = my_reader(c);
  uint32_t queued = atomic_load_explicit(&r->tail, RLX) - atomic_load_explicit(&r->head, RLX);
  if (c->record_mask ? c->worker && queued >= RBATCH / 4 : queued != 0) (void)drain(c, r, s, 0);
  uint64_t charge = ent_charge(v);
  keel__cache_prefetch_victim(s, victim[0], 1);
  keel__cache_prefetch_victim(s, victim[1], 1);
  if (victim[0] != KEEL_POLICY_NONE) keel_policy_prefetch_admission(s->pol); /* a guess came: the records are in */
  keel_status st = keel__cache_slot_reserve_locked(c, s);
  if (st != KEEL_OK) return st;
  /* A replaced bucket array waits for the epoch, which only writers move:
   * every 64th insert moves it along (a scan of the reader slots). */
  if (atomic_load_explicit(&s->tab, RLX)->older && (atomic_load_explicit(&s->puts, RLX) & 63) == 0) {
    keel__cache_epoch_try_advance(c);
    keel__cache_tables_reclaim_locked(s, atomic_load(&c->epoch));
  }
  keel_cache_value_t *old = table_find1(s, h, ent_key(v), ent_klen(v));
  int old_stale = old && stale(c, old);
  if (old && keep_live && !old_stale) return KEEL_EEXIST;
  int refused = too_big(s, charge);
  /* A value too big to store replaces nothing: the old one is removed. */
  if (old)
    keel__cache_unlink_locked(c, s, old, h,
                              old_stale ? KEEL_CACHE_EXPIRED : refused ? KEEL_CACHE_REMOVED : KEEL_CACHE_REPLACED, 1);
  if (refused) return KEEL_ELIMIT;
  if (v->klen & EXP_FLAG) {
    uint64_t x = keel__cache_expiry_of(c, ttl ? *ttl : ent_negative(v) ? c->neg_ttl : c->ttl);
    if (v->klen & IDL_FLAG) {
      atomic_store_explicit(ent_write_deadline(v), x, RLX);
      x = idle_deadline(c, keel__cache_now_ns(c), x);
    }
    atomic_store_explicit(ent_expire(v), x, RLX);
  }
  if (v->klen & RFR_FLAG) atomic_store_explicit(ent_refresh(v), keel__cache_expiry_of(c, c->refresh), RLX);
  ent_set_slot(v, s->free_head);
  s->free_head = spare_link(s, s->free_head);
  /* A cache that samples its lookups samples the misses its inserts
   * record too, chosen at random: at its hits' rate, 1 in 4, or at 1 in
   * 16 where hits are sampled 1 in 32. Frequency is then estimated from a
   * sample (counting every miss but 1 hit in 16 ranked keys by how often
   * they miss), and 15 inserts in 16 skip the sketch (read-through +21 %
   * per CPU-second at 65,536 entries on scarab-recs). Misses weigh twice
   * what hits do in the largest caches: sampling their inserts 1 in 32 as
   * well cost a mean of 0.30 points of hit ratio over 22 replays (4.4 at
   * one), 1 in 16 a mean of 0.05 over the 12 that change
   * (docs/PERFORMANCE.md, "Hits sampled 1 in 32"). The adaptive policy's
   * shadows see every insert all the same (keel_policy_insert_unseen):
   * they judge policies by replaying every request of a sample of keys,
   * and a thinned stream made recency look worthless to them. */
  int seen = 1;
  if (c->record_mask) {
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    seen = ((s->rng >> 32) & c->insert_mask) == 0;
  }
  if (seen) keel_policy_insert(s->pol, ent_slot(v), (uint32_t)h, (uint32_t)charge);
  else keel_policy_insert_unseen(s->pol, ent_slot(v), (uint32_t)h, (uint32_t)charge);
  add_locked(&s->puts, 1);
  if (c->worker && keel_policy_deferred(s->pol) >= RBATCH) keel__worker_kick(c->worker); /* shadows to replay */
  if (!make_room_locked(c, s, v)) {
    /* Refused by admission: counted and reported as an eviction. */
    slot_free_locked(s, ent_slot(v));
    add_locked(&s->evictions, 1);
    notify(c, v, KEEL_CACHE_EVICTED);
    return KEEL_OK;
  }
  atomic_fetch_or_explicit(&v->refs, REF_CACHE, RLX); /* the cache's reference */
  add_locked(&s->bytes, charge);
  add_locked(&s->entries, 1);
  keel__cache_table_link_locked(s, v, h);
  keel__cache_table_maybe_grow_locked(c, s);
  return KEEL_OK;
}

/* ---- lifecycle ------------------------------------------------------------------- */

/* The cache lock guards short critical sections, so a waiter spins a
 * little before it sleeps (glibc's adaptive mutex): sleeping and waking
 * costs two system calls, more than a whole insert. */
static int lock_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a) != 0) return -1;
#ifdef __GLIBC__
  (void)pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
  int rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return rc;
}

/* How many shards: as many as keep each at SHARD_MIN_ENTRIES expected
 * entries and SHARD_MIN_BYTES, up to NSHARDS_MAX. */
static unsigned shard_count(const keel_cache_options *opt, uint64_t hint) {
  unsigned n = 1;
  while (n < NSHARDS_MAX && hint / (2 * n) >= SHARD_MIN_ENTRIES && opt->max_bytes / (2 * n) >= SHARD_MIN_BYTES &&
         (!opt->max_entries || opt->max_entries / (2 * n) >= SHARD_MIN_ENTRIES))
    n *= 2;
  return n;
}

/* Splits a bound over the shards: equal shares, the remainder to shard 0,
 * so the shares add up to the whole. */
static uint64_t share_of(uint64_t total, unsigned n, unsigned i) {
  return total / n + (i == 0 ? total % n : 0);
}

/* `threaded`: the cache will have a maintenance thread, which then replays
 * the adaptive policy's shadows (deferred shadows). */
static keel_status shard_init(keel_cache_t *c, shard *s, const keel_cache_options *opt, unsigned i,
                              uint64_t hint, int threaded) {
  uint64_t maxb = share_of(opt->max_bytes, c->nshards, i);
  s->free_head = KEEL_POLICY_NONE;
  s->rng = (c->seed + i) | 1; /* xorshift: any state but 0 */
  for (unsigned k = 0; k < 4; k++) s->limbo[k] = KEEL_POLICY_NONE;
  atomic_init(&s->max_bytes, maxb);
  atomic_init(&s->max_entries, opt->max_entries ? share_of(opt->max_entries, c->nshards, i) : 0);
  uint64_t h = hint / c->nshards;
  /* The shards' traffic is one hash partition each, alike, so the first
   * shard's adaptive policy (its shadows sized for one partition) chooses
   * for all: the others follow it and keep no shadows of their own. */
  keel_policy_options po = {sizeof po, opt->policy, maxb, 64, c->seed + i, c->tag, h ? h : 1, c->nshards,
                            (uint32_t)threaded, i ? c->sh[0].pol : NULL};
  keel_status st = keel_policy_create(&po, &s->pol);
  if (st != KEEL_OK) return st;
  if (c->record_mask) keel_policy_set_found(s->pol, ent_found, s);
  table *t = keel__cache_table_new(c->tag, 64);
  if (!t) return KEEL_ENOMEM;
  atomic_init(&s->tab, t);
  if ((st = keel__cache_slot_reserve_locked(c, s)) != KEEL_OK) return st;
  if (lock_init(&s->lock) != 0) return KEEL_ENOMEM;
  if (pthread_cond_init(&s->cond, NULL) != 0) {
    pthread_mutex_destroy(&s->lock);
    return KEEL_ENOMEM;
  }
  return KEEL_OK;
}

/* Frees what shard_init made; `locks`: whether the lock and cond exist. */
static void shard_free(shard *s, int locks) {
  table *t = atomic_load_explicit(&s->tab, RLX);
  for (uint64_t i = 0; t && i <= t->mask; i++) { /* live entries */
    link_t w = atomic_load_explicit(&t->b[i], RLX);
    while (w) {
      keel_cache_value_t *v = link_ent(w);
      w = atomic_load_explicit(&v->next, RLX);
      keel__cache_ent_uncache(v);
    }
  }
  for (unsigned k = 0; k < 4; k++) keel__cache_limbo_reclaim1_locked(s, k); /* retired ones */
  keel__cache_garbage_free(s->garbage);
  while (t) {
    table *o = t->older;
    keel_mem_free(t);
    t = o;
  }
  keel_policy_destroy(s->pol);
  if (locks) {
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
  }
}

keel_status keel_cache_options_check(const keel_cache_options *opt, char *err, size_t errlen) {
  char local[8];
  if (!err || !errlen) {
    err = local;
    errlen = sizeof local;
  }
  err[0] = '\0';
  if (!opt) snprintf(err, errlen, "no options (NULL)");
  else if (opt->size < sizeof(keel_cache_options))
    snprintf(err, errlen, "options.size is %zu; set .size = sizeof(keel_cache_options) (%zu in this keel)", opt->size,
             sizeof(keel_cache_options));
  else if (!opt->max_bytes) snprintf(err, errlen, "max_bytes is not set (the cache is bounded in bytes)");
  else if (opt->max_bytes <= keel_cache_entry_overhead())
    snprintf(err, errlen, "max_bytes %llu is no more than one entry's overhead (%zu bytes): nothing would fit",
             (unsigned long long)opt->max_bytes, keel_cache_entry_overhead());
  else if (opt->policy && !keel_policy_known(opt->policy))
    snprintf(err, errlen, "unknown policy '%.64s' (keel has %s)", opt->policy, keel_policy_names());
  else if ((unsigned)opt->maintenance > KEEL_CACHE_MAINTAIN_CALLER)
    snprintf(err, errlen, "maintenance %d is not a keel_cache_maintenance value", (int)opt->maintenance);
  else return KEEL_OK;
  return KEEL_EINVAL;
}

keel_status keel_cache_create(const keel_cache_options *opt, keel_cache_t **out) {
  if (!out || keel_cache_options_check(opt, NULL, 0) != KEEL_OK) return KEEL_EINVAL;
  /* Expected residents: the entry bound, or the bytes over a small entry. */
  uint64_t hint = opt->max_bytes / (keel_cache_entry_overhead() + 64);
  if (opt->max_entries && (opt->max_entries < hint || !hint)) hint = opt->max_entries;
  unsigned n = shard_count(opt, hint);
  /* keel_mem gives 16-byte alignment; the reader slots and shards need 64
   * so that no two threads' slots share a cache line. */
  void *raw = keel_mem_calloc(opt->tag, 1, sizeof(keel_cache_t) + n * sizeof(shard) + 64);
  if (!raw) return KEEL_ENOMEM;
  keel_cache_t *c = (keel_cache_t *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  c->raw = raw;
  if (pthread_mutex_init(&c->cap_lock, NULL) != 0) {
    keel_mem_free(raw);
    return KEEL_ENOMEM;
  }
  if (pthread_mutex_init(&c->wait_lock, NULL) != 0) {
    pthread_mutex_destroy(&c->cap_lock);
    keel_mem_free(raw);
    return KEEL_ENOMEM;
  }
  c->tag = opt->tag;
  c->seed = opt->seed ? opt->seed : keel__random_u64(c) | 1;
  c->ttl = opt->ttl_ns;
  c->neg_ttl = opt->negative_ttl_ns;
  c->refresh = opt->refresh_ns;
  c->idle = opt->idle_ns;
  c->on_removal = opt->on_removal;
  c->removal_ud = opt->removal_ud;
  c->clock = opt->clock;
  /* Every hit on an entry that can expire reads the clock: the coarse one
   * costs 5 ns instead of 23. It is used where a duration is configured and
   * every one is at least 256 of its ticks (4 ms here, so 1.024 s: a tick
   * is under 0.4 % of any of them); a cache without durations keeps the
   * precise clock for the entries' own TTLs. */
  uint64_t shortest = UINT64_MAX;
  const uint64_t durations[] = {opt->ttl_ns, opt->negative_ttl_ns, opt->refresh_ns, opt->idle_ns};
  for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++)
    if (durations[i] && durations[i] < shortest) shortest = durations[i];
  struct timespec tick;
  c->coarse = !opt->clock && shortest != UINT64_MAX && clock_getres(CLOCK_MONOTONIC_COARSE, &tick) == 0 &&
              shortest / 256 >= (uint64_t)tick.tv_sec * 1000000000u + (uint64_t)tick.tv_nsec;
  c->clock_ud = opt->clock_ud;
  c->hashfn = opt->hash;
  c->hash_ud = opt->hash_ud;
  c->nshards = n;
  atomic_init(&c->max_bytes, opt->max_bytes);
  atomic_init(&c->max_entries, opt->max_entries);
  c->record_mask = hint <= RECORD_ALL ? 0 : hint <= 2 * RECORD_ALL ? 3 : 31;
  c->insert_mask = c->record_mask < 15 ? c->record_mask : 15;
  int threaded = opt->maintenance == KEEL_CACHE_MAINTAIN_THREAD ||
                 (opt->maintenance == KEEL_CACHE_MAINTAIN_AUTO && !c->record_mask);
  keel_status st = KEEL_OK;
  unsigned made = 0;
  for (; made < n && st == KEEL_OK; made++) st = shard_init(c, &c->sh[made], opt, made, hint, threaded);
  int whole = made; /* shards with their lock */
  if (st != KEEL_OK) whole = made - 1; /* the failed one has none (lock_init is its last step that can fail) */
  else if (threaded)
    st = keel__worker_create(c->tag, maintain, c, RBATCH, &c->worker);
  if (st != KEEL_OK) {
    for (unsigned i = 0; i < made; i++) shard_free(&c->sh[i], (int)i < whole);
    pthread_mutex_destroy(&c->cap_lock);
    pthread_mutex_destroy(&c->wait_lock);
    keel_mem_free(c->raw);
    return st;
  }
  *out = c;
  return KEEL_OK;
}

void keel_cache_destroy(keel_cache_t *c) {
  if (!c) return;
  keel__worker_destroy(c->worker); /* first: it takes the shards' locks */
  for (unsigned i = 0; i < c->nshards; i++) shard_free(&c->sh[i], 1);
  pthread_mutex_destroy(&c->cap_lock);
  pthread_mutex_destroy(&c->wait_lock);
  keel_mem_free(c->raw);
}

/* ---- lookups ---------------------------------------------------------------------- */

/* Finds the entry of key under epoch protection (or the lock). A miss seen
 * while a resize relinked chains is retried (seqlock style): a hit is always
 * a real entry, a miss is real once no resize overlapped it. */
static keel_cache_value_t *table_find(shard *s, uint64_t h, const void *k, size_t n) {
  for (;;) {
    uint64_t seq = atomic_load_explicit(&s->rseq, memory_order_acquire);
    keel_cache_value_t *v = table_find1(s, h, k, n);
    if (v) return v;
    /* The chain loads above are acquire loads, so this re-read of the
     * sequence cannot move before them. */
    if (!(seq & 1) && atomic_load_explicit(&s->rseq, memory_order_acquire) == seq) return NULL;
    sched_yield();
  }
}

/* The lock-free lookup shared by get, read and get_or_load: returns the live,
 * unexpired, positive-or-negative entry or NULL, inside the caller's epoch. */
static inline keel_cache_value_t *lookup(keel_cache_t *c, uint64_t h, const void *k, size_t n) {
  keel_cache_value_t *v = table_find(shard_of(c, h), h, k, n);
  if (v && stale_on_access(c, v)) v = NULL;
  return v;
}

enum { FOUND, ABSENT, NEGATIVE, REFRESH };

/* Whether this get_or_load hit of v should reload the value: the cache
 * refreshes, v's refresh time has come, and this caller is the one that
 * takes it (the time goes to 0, so concurrent hits keep the old value). */
static inline int refresh_claim(const keel_cache_t *c, keel_cache_value_t *v) {
  if (!(v->klen & RFR_FLAG)) return 0;
  _Atomic uint64_t *t = ent_refresh(v);
  uint64_t due = atomic_load_explicit(t, RLX);
  return due && keel__cache_now_ns(c) >= due && atomic_compare_exchange_strong_explicit(t, &due, 0, RLX, RLX);
}

/* The lock-free part of every lookup: finds the live entry of the key
 * inside an epoch and, if it holds a value, reads it with fn (fn != NULL)
 * or takes a reference into *ref. A cached error (*neg: its status) counts
 * as a hit when `or_load` (get-or-load: it answers the call) and as a miss
 * otherwise. A get-or-load (`or_load`) that takes a value's refresh (see
 * refresh_claim) does not read it: REFRESH, with a reference in *ref. Counts the
 * lookup and records a hit for the policy (a miss reaches it with the
 * insert that follows, if one does: see record). */
static inline __attribute__((always_inline)) int probe(keel_cache_t *c, uint64_t h, const void *key, size_t n, int or_load,
                        keel_cache_read_fn fn, void *ctx, keel_cache_value_t **ref, keel_status *neg) {
  reader *r;
  uint64_t e = guard_enter(c, &r);
  keel_cache_value_t *v = lookup(c, h, key, n);
  int res = !v ? ABSENT : ent_negative(v) ? NEGATIVE : FOUND;
  if (res == FOUND && or_load && c->refresh && refresh_claim(c, v)) {
    res = REFRESH;
    atomic_fetch_add_explicit(&v->refs, 1, RLX);
    *ref = v;
  } else if (res == FOUND && fn) fn(ctx, ent_data(v), v->vlen);
  else if (res == FOUND) {
    atomic_fetch_add_explicit(&v->refs, 1, RLX);
    *ref = v;
  } else if (res == NEGATIVE) {
    *neg = (keel_status)(int32_t)v->vlen;
  }
  int hit = res == FOUND || res == REFRESH || (res == NEGATIVE && or_load);
  if (hit) record(c, r, v, h); /* in the epoch: it marks v */
  guard_exit(c, r, e);
  count(c, r, hit);
  return res;
}

keel_status keel_cache_get(keel_cache_t *c, const void *key, size_t key_len, keel_cache_value_t **out) {
  if (!c || (!key && key_len) || !out) return KEEL_EMISUSE;
  keel_status neg;
  int res = probe(c, key_hash(c, key, key_len), key, key_len, 0, NULL, NULL, out, &neg);
  return res == FOUND ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_status keel_cache_read(keel_cache_t *c, const void *key, size_t key_len, keel_cache_read_fn fn,
                            void *ctx) {
  if (!c || (!key && key_len) || !fn) return KEEL_EMISUSE;
  keel_status neg;
  int res = probe(c, key_hash(c, key, key_len), key, key_len, 0, fn, ctx, NULL, &neg);
  return res == FOUND ? KEEL_OK : KEEL_ENOTFOUND;
}

/* keel_cache_read_many runs each key through three stages, MANY keys apart:
 * hash it and fetch its bucket word; fetch the entry the word's tag points
 * to; look it up as read does (the same code, which now finds the lines on
 * hand). So a key's two dependent cache misses each overlap the work on
 * MANY other keys instead of stalling it. The first two stages are only
 * hints: a lookup that races a write is decided by the third (a bucket
 * word read from a table that a resize replaced meanwhile is still
 * readable: a replaced table is freed only once no reader's epoch can
 * reach it, and the whole batch runs inside one). */
#define MANY 8
#define MANY_RING 32 /* > 2 x MANY keys in flight, a power of two */

size_t keel_cache_read_many(keel_cache_t *c, size_t n, const void *const keys[], const size_t key_lens[],
                            keel_cache_read_many_fn fn, void *ctx) {
  if (!c || !fn || (n && (!keys || !key_lens))) return 0;
  reader *r;
  uint64_t e = guard_enter(c, &r);
  uint64_t h[MANY_RING];
  const _Atomic link_t *b[MANY_RING];
  size_t hits = 0;
  for (size_t j = 0; j < n + 2 * MANY; j++) {
    if (j < n) {
      size_t x = j % MANY_RING;
      h[x] = key_hash(c, keys[j], keys[j] ? key_lens[j] : 0);
      table *t = atomic_load_explicit(&shard_of(c, h[x])->tab, memory_order_acquire);
      b[x] = &t->b[h[x] & t->mask];
      __builtin_prefetch((const void *)b[x]);
    }
    if (j >= MANY && j - MANY < n) {
      size_t x = (j - MANY) % MANY_RING;
      link_t w = atomic_load_explicit(b[x], memory_order_acquire);
      if (w && (w & LINK_TAG) == link_tag(h[x])) __builtin_prefetch(link_ent(w));
    }
    if (j < 2 * MANY || j - 2 * MANY >= n) continue;
    size_t k = j - 2 * MANY;
    if (!keys[k] && key_lens[k]) continue; /* no key: not a lookup */
    keel_cache_value_t *v = lookup(c, h[k % MANY_RING], keys[k], key_lens[k]);
    int hit = v && !ent_negative(v);
    if (hit) fn(ctx, k, ent_data(v), v->vlen);
    hits += (size_t)hit;
    count(c, r, hit);
    if (hit) record(c, r, v, h[k % MANY_RING]);
  }
  guard_exit(c, r, e);
  return hits;
}

/* Marks that some entry may expire on a time of its own, so cleanup scans
 * even a cache without a TTL (stored once: put_ttl's callers on several
 * cores then only read the line). */
void keel__cache_note_own_ttl(keel_cache_t *c) {
  if (!atomic_load_explicit(&c->own_ttls, RLX)) atomic_store_explicit(&c->own_ttls, 1, RLX);
}

keel_status keel_cache_get_or_load(keel_cache_t *c, const void *key, size_t key_len,
                                   keel_cache_loader_fn loader, void *ctx, keel_cache_value_t **out) {
  if (!c || (!key && key_len) || !loader || !out) return KEEL_EMISUSE;
  uint64_t h = key_hash(c, key, key_len);
  keel_status neg = KEEL_OK;
  int res = probe(c, h, key, key_len, 1, NULL, NULL, out, &neg);
  if (res == REFRESH) return keel__cache_refresh_load(c, h, key, key_len, loader, ctx, out);
  if (res != ABSENT) return res == FOUND ? KEEL_OK : neg;
  return keel__cache_load_slow(c, h, key, key_len, loader, ctx, out);
}

keel_status keel_cache_read_or_load(keel_cache_t *c, const void *key, size_t key_len,
                                   keel_cache_loader_fn loader, void *ctx, keel_cache_read_fn read,
                                   void *read_ctx) {
  if (!c || (!key && key_len) || !loader || !read) return KEEL_EMISUSE;
  uint64_t h = key_hash(c, key, key_len);
  keel_status neg = KEEL_OK;
  keel_cache_value_t *v;
  int res = probe(c, h, key, key_len, 1, read, read_ctx, &v, &neg);
  if (res != ABSENT && res != REFRESH) return res == FOUND ? KEEL_OK : neg;
  keel_status st = res == REFRESH ? keel__cache_refresh_load(c, h, key, key_len, loader, ctx, &v)
                                  : keel__cache_load_slow(c, h, key, key_len, loader, ctx, &v);
  if (st == KEEL_OK) {
    read(read_ctx, ent_data(v), v->vlen);
    keel__cache_ent_unref(v);
  }
  return st;
}

/* ---- writes ---------------------------------------------------------------------- */

/* put and put_ttl; `ttl` NULL: the cache's. */
static keel_status put(keel_cache_t *c, const void *key, size_t key_len, const void *data, size_t len,
                       const uint64_t *ttl) {
  if (!c || (!key && key_len) || (!data && len)) return KEEL_EMISUSE;
  keel_cache_value_t *v = keel__cache_ent_alloc(c, key, key_len, len, ttl != NULL, 0);
  if (!v && (key_len > KLEN_MASK || len > UINT32_MAX)) { /* too big for any cache: the old value goes all the same */
    (void)keel_cache_remove(c, key, key_len);
    return KEEL_ELIMIT;
  }
  if (!v) return KEEL_ENOMEM;
  if (len) memcpy(ent_data(v), data, len);
  uint64_t h = key_hash(c, key, key_len);
  shard *s = shard_of(c, h);
  shard_lock(s);
  keel_status st = keel__cache_insert_locked(c, s, v, h, keel__cache_no_guess, ttl, 0);
  shard_unlock(s);
  keel__cache_ent_unref(v); /* the cache holds its own reference if it kept v */
  return st;
}

keel_status keel_cache_put(keel_cache_t *c, const void *key, size_t key_len, const void *data, size_t len) {
  return put(c, key, key_len, data, len, NULL);
}

keel_status keel_cache_put_ttl(keel_cache_t *c, const void *key, size_t key_len, const void *data, size_t len,
                               uint64_t ttl_ns) {
  if (c) keel__cache_note_own_ttl(c);
  return put(c, key, key_len, data, len, &ttl_ns);
}

keel_status keel_cache_remove(keel_cache_t *c, const void *key, size_t key_len) {
  if (!c || (!key && key_len)) return KEEL_EMISUSE;
  uint64_t h = key_hash(c, key, key_len);
  shard *s = shard_of(c, h);
  shard_lock(s);
  keel_cache_value_t *v = table_find1(s, h, key, key_len);
  int live = v && !stale(c, v); /* an expired entry leaves as such, and was not there to remove */
  if (v) keel__cache_unlink_locked(c, s, v, h, live ? KEEL_CACHE_REMOVED : KEEL_CACHE_EXPIRED, 1);
  shard_unlock(s);
  return live ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_status keel_cache_set_capacity(keel_cache_t *c, uint64_t max_bytes) {
  /* Each shard's share must hold an entry's overhead and more (create's
   * rule, per shard: the shards are fixed when the cache is made). */
  if (!c || max_bytes / c->nshards <= keel_cache_entry_overhead()) return KEEL_EINVAL;
  /* One call at a time: two interleaved over the shards could leave some
   * shards with one's bound, others and max_bytes with the other's. */
  pthread_mutex_lock(&c->cap_lock);
  atomic_store_explicit(&c->max_bytes, max_bytes, RLX);
  for (unsigned k = 0; k < c->nshards; k++) {
    shard *s = &c->sh[k];
    uint64_t b = share_of(max_bytes, c->nshards, k);
    shard_lock(s);
    /* Shrinking evicts before returning; no insert to the shard can run
     * meanwhile (one that ran before saw the old, larger share). The
     * statistics read a shard's bound and bytes as a pair, retrying while
     * `capseq` is odd or moved. */
    atomic_fetch_add_explicit(&s->capseq, 1, memory_order_relaxed); /* odd */
    atomic_thread_fence(memory_order_release); /* the odd count before the bound's and bytes' stores */
    keel_policy_set_capacity(s->pol, b ? b : 1);
    atomic_store_explicit(&s->max_bytes, b ? b : 1, RLX);
    (void)make_room_locked(c, s, NULL);
    atomic_fetch_add_explicit(&s->capseq, 1, memory_order_release); /* even */
    shard_unlock(s);
  }
  pthread_mutex_unlock(&c->cap_lock);
  return KEEL_OK;
}

/* ---- values ------------------------------------------------------------------------ */

const void *keel_cache_value_data(const keel_cache_value_t *v) {
  return v ? (const unsigned char *)(v + 1) + exp_len(v->klen) + key_pad(ent_klen(v)) : NULL;
}
size_t keel_cache_value_len(const keel_cache_value_t *v) { return v ? v->vlen : 0; }
void keel_cache_value_acquire(keel_cache_value_t *v) {
  if (v) atomic_fetch_add_explicit(&v->refs, 1, RLX);
}
void keel_cache_value_release(keel_cache_value_t *v) {
  if (v) keel__cache_ent_unref(v);
}

/* ---- introspection --------------------------------------------------------------- */

void keel_cache_get_stats(keel_cache_t *c, keel_cache_stats *out) {
  if (!c || !out) return;
  memset(out, 0, sizeof *out);
  out->policy_dropped = atomic_load_explicit(&c->drain_dropped, RLX);
  for (unsigned i = 0; i < NREADERS; i++) {
    out->hits += atomic_load_explicit(&c->rd[i].hits, RLX);
    out->misses += atomic_load_explicit(&c->rd[i].misses, RLX);
    out->policy_dropped += atomic_load_explicit(&c->rd[i].dropped, RLX);
  }
  out->max_entries = atomic_load_explicit(&c->max_entries, RLX);
  double share = 0;
  for (unsigned k = 0; k < c->nshards; k++) {
    shard *s = &c->sh[k];
    out->loads += atomic_load_explicit(&s->loads, RLX);
    out->load_errors += atomic_load_explicit(&s->load_errors, RLX);
    out->evictions += atomic_load_explicit(&s->evictions, RLX);
    out->expirations += atomic_load_explicit(&s->expirations, RLX);
    out->refreshes += atomic_load_explicit(&s->refreshes, RLX);
    out->removals += atomic_load_explicit(&s->removals, RLX);
    out->replacements += atomic_load_explicit(&s->replacements, RLX);
    out->puts += atomic_load_explicit(&s->puts, RLX);
    /* The shard's bound and what it holds, as of one moment of a stable
     * bound, so that bytes never show above max_bytes while set_capacity
     * runs (inserts keep them within a bound that does not move). */
    uint64_t q, mb, b, e;
    for (;;) {
      q = atomic_load_explicit(&s->capseq, memory_order_acquire);
      mb = atomic_load_explicit(&s->max_bytes, RLX);
      b = atomic_load_explicit(&s->bytes, RLX);
      e = atomic_load_explicit(&s->entries, RLX);
      atomic_thread_fence(memory_order_acquire);
      if (!(q & 1) && atomic_load_explicit(&s->capseq, RLX) == q) break;
      sched_yield();
    }
    out->max_bytes += mb;
    out->bytes += b;
    out->entries += e;
    keel_policy_stats ps;
    keel_policy_get_stats(s->pol, &ps); /* no lock: its counters are atomic */
    out->policy_admitted += ps.admitted;
    out->policy_rejected += ps.rejected;
    out->policy_adaptations += ps.adaptations;
    out->policy_shadow_accesses += ps.shadow_accesses;
    out->policy_shadow_dropped += ps.shadow_dropped;
    share += ps.window_share;
  }
  out->policy_window_share = share / c->nshards;
  out->shards = c->nshards;
}

const char *keel_cache_policy(const keel_cache_t *c) { return c ? keel_policy_name(c->sh[0].pol) : "?"; }
