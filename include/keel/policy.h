/* keel/policy.h — eviction policies, shared by the cache and `keel sim`.
 *
 * A policy orders the residents of one cache and picks victims; it never
 * sees keys or values. Residents are named by a slot (a small integer the
 * caller assigns, below the policy's slot count) and carry a 32-bit hash
 * (for frequency sketches and shadow caches; callers pass the low 32 bits of
 * their key hash) and a weight (bytes in the cache, 1 in `keel sim`; at most
 * KEEL_POLICY_WEIGHT_MAX). The caller keeps the policy's weighted total
 * under its capacity by calling keel_policy_evict until it fits; a policy
 * with admission may return the slot just inserted (the newcomer lost).
 *
 * `keel_policy_sim_t` couples a policy with a key map so a trace of 64-bit
 * keys can be replayed through exactly the code the cache runs: `keel sim`
 * uses it, and so do the adaptive policy's shadow caches.
 *
 * Policies: "lru" (least recently used) and "wtinylfu" (window TinyLFU with
 * a fixed 1 % window), and "default" = "adaptive": W-TinyLFU whose window
 * share and sketch aging period follow whichever of 18 sampled shadow
 * W-TinyLFUs (window shares 0 to 100 %, 3 aging periods) hit most
 * recently. See policy.c for the essay.
 *
 * Thread safety: none, except keel_policy_get_stats, what a follower reads
 * of its leader (options.follow) and, with deferred shadows,
 * keel_policy_replay_deferred and keel_policy_deferred (one replaying
 * thread at a time, beside the owner). A policy belongs to one
 * thread at a time; the cache calls it under its own lock. */
#ifndef KEEL_POLICY_H
#define KEEL_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The name `default` resolves to. */
#define KEEL_POLICY_DEFAULT "adaptive"

/* A slot no resident has. */
#define KEEL_POLICY_NONE UINT32_MAX

typedef struct keel_policy keel_policy_t;

typedef struct keel_policy_options {
  size_t size;        /* sizeof(keel_policy_options) */
  const char *name;   /* borrowed: "lru", "wtinylfu", "adaptive" or "default"; NULL = default */
  uint64_t capacity;  /* total weight the caller keeps residents under (> 0) */
  uint32_t slots;     /* initial slot count (grows with keel_policy_grow) */
  uint64_t seed;      /* seeds sketches and sampling; same seed, same decisions */
  keel_mem_tag tag;   /* every allocation is counted under this tag */
  uint64_t entries_hint; /* expected residents at capacity; 0 = capacity (unit weights) */
  uint32_t partitions;   /* the policy orders one of N hash partitions of a cache: the
                          * adaptive policy's shadows shrink N-fold so the work per
                          * request stays that of one policy; 0 or 1: whole */
  uint32_t defer_shadows; /* adaptive: queue sampled requests for keel_policy_replay_deferred
                           * (another thread) instead of replaying them into the shadows in
                           * the calling operation; 0: replay at once (keel sim) */
  const keel_policy_t *follow; /* borrowed, adaptive only: another adaptive policy (of another
                                * partition of the same cache, used from other threads) whose
                                * choice of window share and aging this one adopts, keeping no
                                * shadows of its own; it must stay alive while this one is
                                * used. NULL: its own */
} keel_policy_options;

/* Policy-specific counters, summed into the cache's statistics. */
typedef struct keel_policy_stats {
  uint64_t admitted;     /* newcomers kept over a victim (admission policies) */
  uint64_t rejected;     /* newcomers evicted at once by admission */
  uint64_t adaptations;  /* times the adaptive policy changed its window */
  double window_share;   /* current window share of capacity (0..1) */
  uint64_t shadow_accesses; /* requests replayed into the adaptive policy's shadows (its cost) */
  uint64_t shadow_dropped;  /* sampled requests deferred shadows never saw (queue full) */
} keel_policy_stats;

/* Comma-separated names of the policies, for usage text (static string). */
KEEL_EXTERN const char *keel_policy_names(void);

/* Whether `name` names a policy (including "default"). */
KEEL_EXTERN int keel_policy_known(const char *name);

/* Creates a policy. On success *out is owned (keel_policy_destroy).
 * KEEL_EINVAL for an unknown name or zero capacity, KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_policy_create(const keel_policy_options *opt, keel_policy_t **out);

/* Frees the policy and everything it owns. NULL is a no-op. */
KEEL_EXTERN void keel_policy_destroy(keel_policy_t *p);

/* The canonical name (static string): "lru", "wtinylfu", "adaptive". */
KEEL_EXTERN const char *keel_policy_name(const keel_policy_t *p);

/* Raises the slot count to at least `slots`. Call it when every slot is
 * taken: the sketch then follows the residents, taken to be the slot count
 * before the growth (half the new one when slots double). KEEL_ENOMEM leaves
 * p as it was. */
KEEL_EXTERN keel_status keel_policy_grow(keel_policy_t *p, uint32_t slots);
KEEL_EXTERN uint32_t keel_policy_slots(const keel_policy_t *p);

/* Changes the capacity; the caller then evicts down to it. */
KEEL_EXTERN void keel_policy_set_capacity(keel_policy_t *p, uint64_t capacity);
KEEL_EXTERN uint64_t keel_policy_capacity(const keel_policy_t *p);

/* Total weight of the residents. */
KEEL_EXTERN uint64_t keel_policy_weight(const keel_policy_t *p);

/* A hit on resident `slot`. */
KEEL_EXTERN void keel_policy_hit(keel_policy_t *p, uint32_t slot);

/* A miss on a key (by hash) that will not be inserted now (a plain get that
 * found nothing): frequency policies count it. */
KEEL_EXTERN void keel_policy_miss(keel_policy_t *p, uint32_t hash);

/* The largest weight of one resident (a slot's record keeps it in 30 bits). */
#define KEEL_POLICY_WEIGHT_MAX ((1u << 30) - 1)

/* Adds resident `slot` (free, below the slot count; any other is ignored)
 * with `hash` and `weight` (1 to KEEL_POLICY_WEIGHT_MAX); counts as an access. The caller then evicts while
 * keel_policy_weight() > capacity. */
KEEL_EXTERN void keel_policy_insert(keel_policy_t *p, uint32_t slot, uint32_t hash, uint32_t weight);

/* As keel_policy_insert, but the request that brought the entry is not
 * counted as an access (no frequency count; an adaptive policy's shadows,
 * which replay every request of a sample of keys, still see it): for a
 * caller that shows the policy a sample of its requests and left this one
 * out, so misses are sampled as its hits are. */
KEEL_EXTERN void keel_policy_insert_unseen(keel_policy_t *p, uint32_t slot, uint32_t hash, uint32_t weight);

/* Changes a resident's weight (at most KEEL_POLICY_WEIGHT_MAX; a replaced
 * value), counting an access. */
KEEL_EXTERN void keel_policy_update(keel_policy_t *p, uint32_t slot, uint32_t weight);

/* Removes resident `slot` without counting it as an eviction. */
KEEL_EXTERN void keel_policy_remove(keel_policy_t *p, uint32_t slot);

/* A hint that a resident with `hash` is about to be inserted: starts
 * loading what the insert and the eviction it causes will touch (the
 * newcomer's sketch counters, the records at the tails the victim comes
 * from) and returns the slot most likely to be evicted, and in *other the
 * next likeliest (the admission candidate, when there is one), or
 * KEEL_POLICY_NONE, so the caller can prefetch its own records of them.
 * Changes nothing. */
KEEL_EXTERN uint32_t keel_policy_prefetch(const keel_policy_t *p, uint32_t hash, uint32_t *other);

/* A hint for an insert that is about to evict: starts loading the sketch
 * counters of the admission's two sides (the window's tail and the main
 * victim), whose records keel_policy_prefetch loaded. Changes nothing. */
KEEL_EXTERN void keel_policy_prefetch_admission(const keel_policy_t *p);

/* A hint that resident `slot` (KEEL_POLICY_NONE: a miss of `hash`) is
 * about to be accessed: starts loading its record and sketch line.
 * Changes nothing. */
KEEL_EXTERN void keel_policy_prefetch_access(const keel_policy_t *p, uint32_t slot, uint32_t hash);

/* The hash a resident was inserted with (0 for a slot without one). */
KEEL_EXTERN uint32_t keel_policy_slot_hash(const keel_policy_t *p, uint32_t slot);

/* Picks a victim, removes it from the policy and returns its slot, or
 * KEEL_POLICY_NONE when there are no residents. */
KEEL_EXTERN uint32_t keel_policy_evict(keel_policy_t *p);

/* Second chances, for a caller that shows the policy only a sample of its
 * hits but marks every resident it finds (keel's large caches): before
 * the policy evicts a resident (LRU) or a resident of its main space
 * (W-TinyLFU: its victim, whether it leaves or is weighed against the
 * window's candidate; the candidate is not asked: a window is short, and
 * asking it cost read-throughs 5 % for no hit ratio), it asks `fn`, which
 * returns 1, and clears the mark, if the resident was found since the
 * last ask. That resident is moved as a hit moves it, without being
 * counted (no frequency count, no shadow request: the sample counts hits),
 * and another is picked, up to KEEL_POLICY_CHANCES times per
 * keel_policy_evict; then the pick stands. `ud`: borrowed. fn NULL (the
 * default): no second chances, as `keel sim` replays every hit. */
typedef int (*keel_policy_found_fn)(void *ud, uint32_t slot, uint32_t hash);
#define KEEL_POLICY_CHANCES 8
KEEL_EXTERN void keel_policy_set_found(keel_policy_t *p, keel_policy_found_fn fn, void *ud);

/* The hash `slot` was last inserted with, resident or not (until its
 * spare room below is written); 0 out of range. A victim's hash, say. */
KEEL_EXTERN uint32_t keel_policy_last_hash(const keel_policy_t *p, uint32_t slot);

/* Spare room: while a slot is not resident (never inserted, or evicted or
 * removed since), 12 bytes of its record are unused, and the caller may
 * keep its own data about the slot there (keel's cache keeps its free list
 * and its retired entries, so it needs no array of its own per slot).
 * Returns them, 8-byte aligned, or NULL for a resident or out-of-range
 * slot. Borrowed: valid until keel_policy_grow, which keeps their
 * contents. Writing them overwrites keel_policy_last_hash's answer. */
KEEL_EXTERN void *keel_policy_spare(keel_policy_t *p, uint32_t slot);

/* The policy's counters. Safe while another thread uses the policy (its
 * counters are read with relaxed loads, so one call may see one counter a
 * little ahead of another). */
KEEL_EXTERN void keel_policy_get_stats(const keel_policy_t *p, keel_policy_stats *out);

/* Deferred shadows (options.defer_shadows): replays up to `max` of the
 * requests the owner queued into the adaptive policy's shadows and tells
 * the owner which shadow to follow (it adopts that at its next sampled
 * request). Runs beside the owner, without its lock, on one thread at a
 * time. Returns the requests replayed; 0 for a policy without deferred
 * shadows. keel_policy_deferred: how many wait (a relaxed estimate). */
KEEL_EXTERN size_t keel_policy_replay_deferred(keel_policy_t *p, size_t max);
KEEL_EXTERN size_t keel_policy_deferred(const keel_policy_t *p);

/* ---- Replaying keys through a policy ---------------------------------- */

typedef struct keel_policy_sim keel_policy_sim_t;

/* A policy plus a map from 64-bit key hashes to slots, with unit weights
 * when weight 1 is passed. `opt->slots` is ignored. Owned on success
 * (keel_policy_sim_destroy). Errors as keel_policy_create. */
KEEL_EXTERN keel_status keel_policy_sim_create(const keel_policy_options *opt, keel_policy_sim_t **out);
KEEL_EXTERN void keel_policy_sim_destroy(keel_policy_sim_t *s);

/* One request for the key with hash `h`; returns 1 on a hit, 0 on a miss
 * (the key is then inserted and victims evicted), or a negative keel_status
 * (KEEL_ENOMEM: the request counted as a miss and was not inserted). */
KEEL_EXTERN int keel_policy_sim_access(keel_policy_sim_t *s, uint64_t h, uint32_t weight);

/* The policy inside (borrowed). */
KEEL_EXTERN keel_policy_t *keel_policy_sim_policy(keel_policy_sim_t *s);

/* A bijective 64-bit mix of a key with a seed: distinct keys give distinct
 * hashes, so replays have no collisions. */
KEEL_EXTERN uint64_t keel_policy_key_hash(int64_t key, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
