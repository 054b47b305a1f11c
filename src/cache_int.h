/* cache_int.h — internals shared by the files of the cache: cache.c (the
 * cache itself: lookups, inserts and eviction, the policy's bookkeeping,
 * lifecycle; its top comment is the design essay), cache_epoch.c
 * (epoch-based reclamation), cache_table.c (the chained hash table) and
 * cache_load.c (get-or-load's misses and refreshes). The structures, the
 * constants, and the small inline helpers of the hot paths: they stay
 * `static inline` so that a lookup makes no call it did not make in one
 * file. Not installed. */
#ifndef KEEL_CACHE_INT_H
#define KEEL_CACHE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#define XXH_INLINE_ALL /* the hash of short keys inlines into the lookup */
#include <xxhash.h>

#include "keel/cache.h"
#include "keel/policy.h"
#include "worker.h"

#define NREADERS 32    /* reader slots (threads hash onto them) */
#define RING 256       /* read buffer: a ring of recorded lookups per reader slot */
#define TAKE 64        /* a drain takes at most this many items */
#define DEFER_TAKE 512 /* the maintenance thread replays at most this many deferred requests per shard and round */
#define RBATCH 32      /* recorded lookups that make a drain (or a kick of the worker) */
#define LIMBO_BATCH 64 /* try to advance the epoch after this many retirements */
#define NSHARDS_MAX 16
#define SHARD_MIN_ENTRIES 4096
#define SHARD_MIN_BYTES (1u << 20)
#define NEG_FLAG 0x80000000u /* klen flag: a cached error */
#define EXP_FLAG 0x40000000u /* klen flag: an expiry time precedes the key */
#define CNT_FLAG 0x20000000u /* klen flag: counted by keel_mem (tracking was on) */
#define RFR_FLAG 0x10000000u /* klen flag: a refresh time follows the value */
#define IDL_FLAG 0x08000000u /* klen flag: expires when idle; the write's deadline follows the value */
#define KLEN_MASK 0x07ffffffu
#define REF_FOUND 0x80000000u /* refs flag: found since the policy last asked (see mark) */
#define REF_CACHE 0x40000000u /* refs flag: the cache's own reference (linked, or retired and not yet reclaimed) */
#define REF_COUNT 0x3fffffffu /* refs: the references of users (and of keel's own code paths) */
#define SLOT_BITS 24         /* slot_tag: slot in the low bits, memory tag above */
#define SLOT_MAX ((1u << SLOT_BITS) - 1)
/* The policy sees every hit in a cache of up to RECORD_ALL entries, and
 * 1 in 4 up to twice that, 1 in 32 beyond, where it sees 1 insert in 16
 * (see record, insert_locked and create). */
#define RECORD_ALL 16384

/* An entry: a 24-byte header, then (EXP_FLAG) the expiry time,
 * the key, padding to 8, the value, (RFR_FLAG or IDL_FLAG) padding to 8,
 * (RFR_FLAG) the refresh time and (IDL_FLAG) the deadline its write set
 * (0: none; the expiry time is then the earlier of it and the last
 * access plus the cache's idle time), in one block of keel_mem_alloc_sized
 * (no per-block header: the entry knows its size and tag). The fields a
 * lookup reads come first. */
struct keel_cache_value {
  _Atomic uint64_t next; /* bucket chain: a link (below); once reclaimed: the garbage list */
  uint32_t klen;                           /* key length | *_FLAG */
  uint32_t vlen;                           /* value length (negative: the status) */
  _Atomic uint32_t refs;                   /* users | REF_CACHE (while not reclaimed) | REF_FOUND */
  uint32_t slot_tag;                       /* policy slot (set under lock) | memory tag << 24 */
  /* [expiry: _Atomic uint64_t, 0 never, else clock time], key, pad to 8, value */
};
_Static_assert(sizeof(struct keel_cache_value) == 24, "entry header is 24 bytes");
_Static_assert(KEEL_MEM_MAX_TAGS <= 256, "a memory tag fits the 8 high bits of slot_tag");

/* A reader slot. Its thread records hits at `tail` of the ring `rb`; a
 * drainer (that thread, an inserting one or the cache's worker) takes them
 * from `head`, one drainer at a time (`draining`). An item packs the
 * shard (bits 56-59), the slot (bits 32-55) and the low 32 bits of the
 * hash. Threads that share a slot (more than NREADERS) may
 * overwrite each other's items or move `tail` back: lossy, never unsafe
 * (take clamps, and the policy skips an item whose hash is not its slot's). */
typedef struct reader {
  _Atomic uintptr_t owner;    /* the thread that claimed the slot, 0: none */
  _Atomic uint64_t active[2]; /* readers inside, by epoch parity */
  _Atomic uint64_t hits, misses;
  _Atomic uint64_t dropped;   /* lookups not recorded: the ring was full */
  _Atomic uint32_t tail;      /* items recorded */
  _Atomic uint32_t tick;      /* lookups seen, for sampling */
  _Atomic uint32_t head;      /* items taken by drainers */
  _Atomic uint32_t draining;  /* 1 while a drainer takes items */
  _Atomic uint64_t rb[RING];
} __attribute__((aligned(64))) reader;

/* A link (a bucket head or an entry's `next`) is one 64-bit word: the
 * entry's address in the low 48 bits (user addresses of x86-64 and arm64
 * Linux fit there; ent_alloc refuses one that does not), a 15-bit tag of
 * that entry's hash above, and LINK_MORE when the entry may have a
 * successor. A lookup compares tags before it touches an entry, so a miss
 * or a chain neighbour costs no load of an entry that is not the key's.
 * LINK_MORE is set, under the lock, only after the successor is linked,
 * and cleared only after the successor is gone (an unlink of a chain's
 * tail clears its predecessor's): a reader that sees it clear misses only
 * what was linked after its load. */
typedef uint64_t link_t;
#define LINK_PTR ((1ull << 48) - 1)
#define LINK_MORE (1ull << 48)
#define LINK_TAG (0x7fffull << 49)

typedef struct table {
  struct table *older; /* under lock: tables replaced by resizes, newest first (tables_reclaim_locked) */
  uint64_t retired;    /* under lock: the epoch this table was replaced at */
  uint64_t mask;
  _Atomic link_t b[];
} table;

typedef struct pending {
  struct pending *next;
  uint64_t hash;
  const void *key;
  size_t klen;
  _Atomic unsigned done;     /* written under lock; spun on without it */
  keel_status status;
  keel_cache_value_t *value; /* the loader's result, a reference it holds */
  _Atomic unsigned waiters;  /* written under lock; spun on without it */
  const void *owner;         /* the loading thread (keel__cache_thread_id) */
} pending;

/* An address unique to the calling thread while it lives. */
const void *keel__cache_thread_id(void);

/* A thread waiting for another's load (cache_load.c), on the cache's
 * `waiting` list while it waits: its node lives on its stack. */
typedef struct waiter {
  struct waiter *next;
  const void *thread; /* keel__cache_thread_id of the waiting thread */
  pending *on;        /* the load it waits for: alive while it is listed (it is one of its waiters) */
} waiter;

struct keel_cache_load {
  keel_cache_t *c;
  const void *key;
  size_t klen;
  uint64_t hash;
  keel_cache_value_t *v; /* the entry being filled */
  int nocache;
  int own_ttl;           /* keel_cache_load_ttl was called: `ttl` is this value's */
  uint64_t ttl;
};

/* The two fields every lookup reads come first, on a cache line of their
 * own: a line shared with the lock or with fields writers change (free
 * list, limbo heads) would be taken from the reading cores by every insert
 * and eviction of another core. */
typedef struct shard {
  _Atomic(table *) tab;
  _Atomic uint64_t rseq;              /* odd while a resize relinks entries */
  pthread_mutex_t lock __attribute__((aligned(64)));
  pthread_cond_t cond;
  keel_policy_t *pol;                 /* under lock; also keeps the free and limbo lists (spare room) */
  uint32_t free_head, nslots;         /* free list head (KEEL_POLICY_NONE: empty); the policy's slots */
  uint32_t limbo[4];                  /* under lock: heads of the retired slots, by epoch mod 4 */
  uint64_t limbo_epoch[4];            /* under lock: the epoch of each list */
  keel_cache_value_t *garbage;        /* under lock: reclaimed entries (via next), freed after unlock */
  size_t retired_since;               /* under lock */
  _Atomic uint32_t waiting;           /* threads blocked on `lock` (see shard_lock) */
  pending *pend;                      /* under lock */
  uint64_t rng;                       /* under lock: xorshift state, samples inserts (insert_locked) */
  _Atomic uint64_t max_bytes, max_entries, bytes, entries;
  _Atomic uint64_t capseq;            /* odd while set_capacity changes the bounds (keel_cache_get_stats) */
  _Atomic uint64_t loads, load_errors, evictions, expirations, removals, replacements, puts, refreshes;
} __attribute__((aligned(64))) shard;

struct keel_cache {
  reader rd[NREADERS];                /* 64-byte aligned (see create) */
  /* Written as the cache runs, so on a line apart from the read-mostly
   * fields below, which every lookup reads. */
  _Atomic uint64_t epoch;
  _Atomic uint64_t drain_dropped;     /* recorded lookups a drain dropped (shard busy) */
  void *raw __attribute__((aligned(64))); /* the allocation c lives in */
  keel_mem_tag tag;
  uint64_t seed;
  uint64_t ttl, neg_ttl;
  uint64_t refresh;                   /* 0: no refresh; else a get_or_load hit this long after the write reloads */
  uint64_t idle;                      /* 0: none; else an entry not looked up or written this long expires */
  uint32_t record_mask;               /* 0: record every hit (see record) */
  uint32_t insert_mask;               /* 0: count every insert (see insert_locked) */
  keel_worker_t *worker;              /* drains the rings; NULL: callers do (MAINTAIN_CALLER) */
  unsigned nshards;                   /* a power of two */
  keel_cache_removal_fn on_removal;
  void *removal_ud;
  keel_cache_clock_fn clock;
  void *clock_ud;
  int coarse;                         /* no clock given and no duration under 1 s: CLOCK_MONOTONIC_COARSE */
  keel_cache_hash_fn hashfn;
  void *hash_ud;
  _Atomic uint64_t max_bytes, max_entries; /* the whole cache's bounds */
  _Atomic unsigned own_ttls;          /* 1 once an entry had a time to live of its own (cleanup scans) */
  pthread_mutex_t cap_lock;           /* serializes set_capacity: its shards' bounds and max_bytes agree */
  pthread_mutex_t wait_lock;          /* guards `waiting`; taken under a shard's lock, never the other way */
  waiter *waiting;                    /* threads waiting for a load (cycle detection, cache_load.c) */
  shard sh[];
};

/* ---- small helpers ------------------------------------------------------- */

/* The shard of a hash: bits the bucket index (low bits) does not use. */
static inline shard *shard_of(keel_cache_t *c, uint64_t h) {
  return &c->sh[(unsigned)(h >> 48) & (c->nshards - 1)];
}

#define RLX memory_order_relaxed

static inline void add(_Atomic uint64_t *x, uint64_t n) { atomic_fetch_add_explicit(x, n, RLX); }
/* The same for a shard's counters, which only its lock's holder writes: a
 * relaxed load and store, no locked instruction (an insert that evicts
 * updated six counters, each a full barrier on x86). Readers of
 * statistics load them relaxed. */
static inline void add_locked(_Atomic uint64_t *x, uint64_t n) {
  atomic_store_explicit(x, atomic_load_explicit(x, RLX) + n, RLX);
}

static inline size_t key_pad(size_t klen) { return (klen + 7) & ~(size_t)7; }
static inline size_t exp_len(uint32_t klen_flags) { return klen_flags & EXP_FLAG ? 8 : 0; }
/* The bytes after the value: its padding to 8, the refresh time
 * (RFR_FLAG) and the write's deadline (IDL_FLAG). After it, not before the
 * key, so that lookups find the key and value where they would without. */
static inline size_t tail_times(uint32_t klen_flags) {
  return (klen_flags & RFR_FLAG ? 8u : 0u) + (klen_flags & IDL_FLAG ? 8u : 0u);
}
static inline size_t tail_len(uint32_t klen_flags, size_t vlen) {
  size_t t = tail_times(klen_flags);
  return t ? key_pad(vlen) - vlen + t : 0;
}
static inline const unsigned char *ent_key(const keel_cache_value_t *v) {
  return (const unsigned char *)(v + 1) + exp_len(v->klen);
}
static inline uint32_t ent_klen(const keel_cache_value_t *v) { return v->klen & KLEN_MASK; }
static inline int ent_negative(const keel_cache_value_t *v) { return (v->klen & NEG_FLAG) != 0; }
static inline unsigned char *ent_data(keel_cache_value_t *v) {
  return (unsigned char *)(v + 1) + exp_len(v->klen) + key_pad(ent_klen(v));
}
static inline _Atomic uint64_t *ent_expire(keel_cache_value_t *v) { /* only with EXP_FLAG */
  return (_Atomic uint64_t *)(void *)(v + 1);
}
/* When a get_or_load hit should reload the value (0: never, or a refresh
 * runs now). Only with RFR_FLAG. */
static inline _Atomic uint64_t *ent_refresh(keel_cache_value_t *v) {
  return (_Atomic uint64_t *)(void *)(ent_data(v) + key_pad(v->vlen));
}
/* The deadline v's write set (0: none). Only with IDL_FLAG. */
static inline _Atomic uint64_t *ent_write_deadline(keel_cache_value_t *v) {
  return (_Atomic uint64_t *)(void *)(ent_data(v) + key_pad(v->vlen) + (v->klen & RFR_FLAG ? 8 : 0));
}
static inline uint32_t ent_slot(const keel_cache_value_t *v) {
  uint32_t s = v->slot_tag & SLOT_MAX;
  return s == SLOT_MAX ? KEEL_POLICY_NONE : s;
}
static inline void ent_set_slot(keel_cache_value_t *v, uint32_t slot) {
  v->slot_tag = (v->slot_tag & ~SLOT_MAX) | (slot & SLOT_MAX);
}
static inline size_t ent_size(const keel_cache_value_t *v) {
  return sizeof *v + exp_len(v->klen) + key_pad(ent_klen(v)) + (ent_negative(v) ? 0 : v->vlen + tail_len(v->klen, v->vlen));
}
static inline uint64_t ent_charge(const keel_cache_value_t *v) {
  return (uint64_t)ent_klen(v) + (ent_negative(v) ? 0 : v->vlen + tail_times(v->klen)) + exp_len(v->klen) +
         keel_cache_entry_overhead();
}

/* Whether an entry charged `charge` is too big to be stored in shard s
 * (insert_locked's KEEL_ELIMIT). */
static inline int too_big(shard *s, uint64_t charge) {
  return charge > atomic_load_explicit(&s->max_bytes, RLX) || charge > KEEL_POLICY_WEIGHT_MAX;
}

/* The cache's clock (its own, or CLOCK_MONOTONIC or _COARSE: see c->coarse), in ns. */
uint64_t keel__cache_now_ns(const keel_cache_t *c);

/* v's expiry time: 0 when it never expires (no EXP_FLAG, or none set). */
static inline uint64_t ent_expiry(keel_cache_value_t *v) {
  return v->klen & EXP_FLAG ? atomic_load_explicit(ent_expire(v), RLX) : 0;
}

static inline int expired(keel_cache_value_t *v, uint64_t now) {
  uint64_t e = ent_expiry(v);
  return e && now >= e;
}

/* expired(v, now) that reads the clock only for an entry with an expiry
 * time: the lookup of an entry without one (in a cache without a TTL,
 * or one stored with keel_cache_put_ttl(..., 0)) costs no clock read. */
static inline int stale(const keel_cache_t *c, keel_cache_value_t *v) {
  uint64_t e = ent_expiry(v);
  return e && keel__cache_now_ns(c) >= e;
}

/* The expiry time of an idle cache's entry accessed at `now`: now + idle,
 * but never past the deadline its write set (`written`, 0: none). */
static inline uint64_t idle_deadline(const keel_cache_t *c, uint64_t now, uint64_t written) {
  uint64_t d = c->idle > UINT64_MAX - now ? UINT64_MAX : now + c->idle;
  return written && written < d ? written : d;
}

/* stale() for a lookup that found v: in an idle cache an unexpired entry
 * is then accessed, so its expiry time moves to now + idle. The store is
 * skipped while the time would move by less than idle/64: a hot entry that
 * many threads read is not written at every hit (it may expire up to
 * idle/64 early). */
void keel__cache_idle_touch(const keel_cache_t *c, keel_cache_value_t *v, uint64_t now, uint64_t e);

static inline int stale_on_access(const keel_cache_t *c, keel_cache_value_t *v) {
  uint64_t e = ent_expiry(v);
  if (!e) return 0;
  uint64_t now = keel__cache_now_ns(c);
  if (now >= e) return 1;
  if (__builtin_expect((v->klen & IDL_FLAG) != 0, 0)) keel__cache_idle_touch(c, v, now, e); /* out of line */
  return 0;
}

static inline __attribute__((always_inline)) uint64_t key_hash(const keel_cache_t *c, const void *k, size_t n) {
  if (c->hashfn) return c->hashfn(c->hash_ud, k, n, c->seed);
  /* The common 8-byte key with its length a constant, so that only
   * XXH3's 4-to-8-byte path is compiled in (a call otherwise). */
  if (n == 8) return XXH3_64bits_withSeed(k, 8, c->seed);
  return XXH3_64bits_withSeed(k, n, c->seed);
}

/* ---- epochs: the reader side (the rest is cache_epoch.c) ------------------ */

static inline uint64_t epoch_enter(keel_cache_t *c, reader *r) {
  for (;;) {
    /* seq_cst: the increment must be ordered before the re-read of the
     * epoch, against the writer's counter scan and epoch store. */
    uint64_t e = atomic_load(&c->epoch);
    atomic_fetch_add(&r->active[e & 1], 1);
    if (atomic_load(&c->epoch) == e) return e;
    atomic_fetch_sub_explicit(&r->active[e & 1], 1, memory_order_release);
  }
}

static inline void epoch_exit(reader *r, uint64_t e) {
  /* release: the reader's loads of the entry happen before the writer sees
   * the count drop and frees it. */
  atomic_fetch_sub_explicit(&r->active[e & 1], 1, memory_order_release);
}

/* ---- free and retired slots (cache_epoch.c) ------------------------------- */

/* A slot that is not resident keeps, in the policy's spare room of its
 * record (keel_policy_spare), the entry it held while that is retired (8
 * bytes) and the next slot of the free list or of its limbo list (4). */
static inline keel_cache_value_t *spare_ent(shard *s, uint32_t i) {
  keel_cache_value_t *v;
  memcpy(&v, keel_policy_spare(s->pol, i), sizeof v);
  return v;
}
static inline uint32_t spare_link(shard *s, uint32_t i) {
  uint32_t l;
  memcpy(&l, (const char *)keel_policy_spare(s->pol, i) + 8, sizeof l);
  return l;
}
static inline void spare_set(shard *s, uint32_t i, keel_cache_value_t *v, uint32_t link) {
  char *sp = keel_policy_spare(s->pol, i);
  memcpy(sp, &v, sizeof v);
  memcpy(sp + 8, &link, sizeof link);
}

/* Pushes slot i, now unused (not resident), on the free list. */
static inline void slot_free_locked(shard *s, uint32_t i) {
  spare_set(s, i, NULL, s->free_head);
  s->free_head = i;
}

/* ---- table: links and the lock-free walk (the rest is cache_table.c) ------ */

/* The tag bits of a hash: bits 32-46, which neither the bucket index (low
 * bits) nor the shard (bits 48+) use. */
static inline link_t link_tag(uint64_t h) { return (h << 17) & LINK_TAG; }
static inline keel_cache_value_t *link_ent(link_t w) { return (keel_cache_value_t *)(uintptr_t)(w & LINK_PTR); }
/* The link to v, of hash h, whose own `next` is `next`. */
static inline link_t link_to(keel_cache_value_t *v, uint64_t h, link_t next) {
  return (link_t)(uintptr_t)v | link_tag(h) | (next ? LINK_MORE : 0);
}

/* Whether v holds key k (the caller compared the tags). */
static inline int ent_matches(const keel_cache_value_t *v, const void *k, size_t n) {
  if (ent_klen(v) != n) return 0;
  if (n == 8) { /* the common fixed-size key: one compare, no call */
    uint64_t a, b;
    memcpy(&a, ent_key(v), 8);
    memcpy(&b, k, 8);
    return a == b;
  }
  return n == 0 || memcmp(ent_key(v), k, n) == 0; /* k may be NULL for the empty key */
}

/* Walks one chain for key. */
static inline __attribute__((always_inline)) keel_cache_value_t *table_find1(shard *s, uint64_t h, const void *k, size_t n) {
  table *t = atomic_load_explicit(&s->tab, memory_order_acquire);
  link_t w = atomic_load_explicit(&t->b[h & t->mask], memory_order_acquire), tag = link_tag(h);
  while (w) {
    if ((w & LINK_TAG) == tag) {
      keel_cache_value_t *v = link_ent(w);
      if (ent_matches(v, k, n)) return v;
    } else if (!(w & LINK_MORE)) {
      return NULL;
    }
    w = atomic_load_explicit(&link_ent(w)->next, memory_order_acquire);
  }
  return NULL;
}

/* ---- across the files ---------------------------------------------------- */

/* cache.c */
/* A new entry for key with room for vlen bytes of value, refs = 1 (owned
 * by the caller); NULL when too large or out of memory. */
keel_cache_value_t *keel__cache_ent_alloc(const keel_cache_t *c, const void *key, size_t klen, size_t vlen,
                                          int own_ttl, int negative);
/* Drops one reference to v (the caller's or the cache's); the last frees it. */
void keel__cache_ent_unref(keel_cache_value_t *v);
/* The expiry time of an entry written now with time to live ttl (0: never). */
uint64_t keel__cache_expiry_of(const keel_cache_t *c, uint64_t ttl);
/* Notes that some entry has a time to live of its own (cleanup scans). */
void keel__cache_note_own_ttl(keel_cache_t *c);
/* Unlinks, counts and retires a linked entry (under the lock). */
void keel__cache_unlink_locked(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t h, keel_cache_cause cause,
                               int in_policy);
/* Stores v (borrowed: the cache takes a reference of its own when it keeps
 * it), replacing the key's old entry (under the lock); with `keep_live`, a
 * live old entry stays instead and KEEL_EEXIST is returned (a load that a
 * put overtook). */
keel_status keel__cache_insert_locked(keel_cache_t *c, shard *s, keel_cache_value_t *v, uint64_t h,
                                      const uint32_t *victim, const uint64_t *ttl, int keep_live);
/* Starts loading the bucket of a likely victim's slot (under the lock). */
void keel__cache_prefetch_victim(shard *s, uint32_t slot, int entry);
/* insert_locked's `victim` when there is no guess. */
extern const uint32_t keel__cache_no_guess[2];

/* cache_table.c; *_locked under the shard's lock. */
/* A zeroed table of `buckets` (a power of two) buckets, owned by the caller. */
table *keel__cache_table_new(keel_mem_tag tag, uint64_t buckets);
/* Links v, of hash h, at the tail of its chain. The table borrows v: the
 * reference is the cache's, taken by insert_locked. */
void keel__cache_table_link_locked(shard *s, keel_cache_value_t *v, uint64_t h);
/* Unlinks v, whose hash is h (its low 32 bits suffice). */
void keel__cache_table_unlink_locked(shard *s, keel_cache_value_t *v, uint64_t h);
/* The linked entry of policy slot `slot` whose hash has low bits h32, or NULL. */
keel_cache_value_t *keel__cache_table_find_slot_locked(shard *s, uint32_t h32, uint32_t slot);
/* Doubles the buckets when the entries pass half of them. */
void keel__cache_table_maybe_grow_locked(keel_cache_t *c, shard *s);

/* cache_epoch.c; *_locked under the shard's lock. */
/* Advances the epoch from e to e+1 if no reader of e-1 remains. */
void keel__cache_epoch_try_advance(keel_cache_t *c);
/* Retires an unlinked entry; the cache's reference is retained until it is
 * reclaimed, three epochs later. */
void keel__cache_retire_locked(keel_cache_t *c, shard *s, keel_cache_value_t *v);
/* Hands limbo list i to the garbage and frees its slots. */
void keel__cache_limbo_reclaim1_locked(shard *s, unsigned i);
/* Frees the bucket arrays replaced 3 or more epochs before e. */
void keel__cache_tables_reclaim_locked(shard *s, uint64_t e);
/* Reclaims all that no reader can still stand on (clear, cleanup). */
void keel__cache_reclaim_now_locked(keel_cache_t *c, shard *s);
/* Drops the cache's reference to each entry of a garbage list, which the
 * caller owns (shard_unlock took it from the shard). */
void keel__cache_garbage_free(keel_cache_value_t *v);
/* Drops the cache's own reference to v (REF_CACHE), freeing it if no user
 * holds it. */
void keel__cache_ent_uncache(keel_cache_value_t *v);
/* Makes sure the shard has a free slot. */
keel_status keel__cache_slot_reserve_locked(keel_cache_t *c, shard *s);

/* cache_load.c: get-or-load after the lock-free probe (no lock held). */
/* A miss: finds the entry under the lock, joins a pending load, or loads.
 * On KEEL_OK *out is a reference owned by the caller. */
keel_status keel__cache_load_slow(keel_cache_t *c, uint64_t h, const void *key, size_t klen,
                                  keel_cache_loader_fn loader, void *ctx, keel_cache_value_t **out);
/* A hit that took the refresh of *io (a reference the caller owns):
 * reloads; *io becomes the value to return, still owned by the caller. */
keel_status keel__cache_refresh_load(keel_cache_t *c, uint64_t h, const void *key, size_t klen,
                                     keel_cache_loader_fn loader, void *ctx, keel_cache_value_t **io);

/* ---- the shard's lock (inline: every write takes it) ---------------------- */

/* Takes the shard's lock for a write. A writer that has to wait says so,
 * and drains (policy bookkeeping, lossy by design) give way to it instead
 * of taking the lock as it is released: without that, readers whose drains
 * keep the lock busy can starve writers for seconds (seen with two readers
 * and three writers on two cores). An uncontended lock costs nothing more. */
static inline void shard_lock(shard *s) {
  if (pthread_mutex_trylock(&s->lock) == 0) return;
  atomic_fetch_add_explicit(&s->waiting, 1, RLX);
  pthread_mutex_lock(&s->lock);
  atomic_fetch_sub_explicit(&s->waiting, 1, RLX);
}

/* Releases the shard's lock, then drops the cache's references to the
 * garbage collected while it was held. */
static inline void shard_unlock(shard *s) {
  keel_cache_value_t *g = s->garbage;
  s->garbage = NULL;
  pthread_mutex_unlock(&s->lock);
  keel__cache_garbage_free(g);
}

#endif
