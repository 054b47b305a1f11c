/* keel/cache.h — a concurrent, byte-bounded cache of byte-string keys to
 * immutable, reference-counted byte values.
 *
 * What it owns: a copy of every key and value it holds, allocated under the
 * tag its creator names. A value handed out (`keel_cache_value_t`, owned by
 * the caller until keel_cache_value_release) stays valid after the cache
 * evicts, replaces or removes its entry; its bytes never change.
 *
 * Bound: every entry is charged key bytes + value bytes + a fixed overhead
 * (keel_cache_entry_overhead()). The sum of the charges of the entries in
 * the cache never exceeds max_bytes, at any moment, under any concurrency:
 * victims leave before a newcomer is published. An optional max_entries
 * bounds the count the same way. A large cache is split by key hash into
 * up to 16 shards (stats.shards), each bounded by an equal share: an entry
 * larger than its shard's share, or charged 1 GiB or more (the policy's
 * weight limit), is not stored (KEEL_ELIMIT); shards begin at 8,192
 * expected entries and 2 MiB.
 *
 * Keys are compared in full; the hash (XXH3, keyed with a random seed per
 * cache unless the options fix one) only picks the bucket. Eviction follows
 * a policy from keel/policy.h chosen by name ("default" = adaptive
 * W-TinyLFU, or "lru", "wtinylfu"); `keel sim` replays the same code.
 *
 * Thread safety: every function may be called from any thread at once. Hits
 * take no lock: lookups run under epoch protection and record a hit in a
 * per-thread lossy buffer that the cache's maintenance thread (or, in
 * large caches, the thread itself, every 32 records) applies to the policy
 * (keel_cache_maintenance; a miss reaches the policy as the insert that
 * follows it, put or get_or_load's load, once). Caches of more than 16,384
 * expected entries record a sample of their hits, 1 in 4 or 1 in 32, and
 * mark every entry a lookup finds, so the policy gives a found entry a
 * second chance before evicting it (keel_policy_set_found); inserts, removals and loads take the
 * lock of the key's shard (nothing else is ever waited for while it is
 * held, except by the removal callback — see below).
 *
 * Misuse: get, read, get_or_load, read_or_load, put and remove return
 * KEEL_EMISUSE for a NULL cache, a NULL key with a nonzero length, or a
 * NULL out pointer, function or loader, or (put) NULL data with a nonzero
 * length (a zero-length key or value may be NULL). */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_cache keel_cache_t;

/* An immutable value with a reference count. The pointer a function returns
 * as "owned" must be released once with keel_cache_value_release. */
typedef struct keel_cache_value keel_cache_value_t;

/* What a loader fills in (borrowed by the loader for the call only). */
typedef struct keel_cache_load keel_cache_load_t;

/* Why an entry left the cache. */
typedef enum keel_cache_cause {
  KEEL_CACHE_EVICTED = 0, /* the policy chose it to make room */
  KEEL_CACHE_EXPIRED,     /* its time to live ran out */
  KEEL_CACHE_REMOVED,     /* keel_cache_remove or keel_cache_clear */
  KEEL_CACHE_REPLACED     /* a put, or a refresh's load, stored a new value under its key */
} keel_cache_cause;

/* Called once for each entry that leaves the cache, with the cache's lock
 * held: it must not call this cache (other caches are fine). `key` and
 * `value` are borrowed for the call; keel_cache_value_acquire keeps the
 * value. Negative (error) entries are reported with value NULL. */
typedef void (*keel_cache_removal_fn)(void *ud, const void *key, size_t key_len,
                                      keel_cache_value_t *value, keel_cache_cause cause);

/* Produces the value of `key` (borrowed). It fills `ld` with
 * keel_cache_load_alloc or keel_cache_load_set and returns KEEL_OK, or
 * returns a failure status (any negative keel_status), which every waiter
 * receives. It runs without the cache's lock, once per key at a time. */
typedef keel_status (*keel_cache_loader_fn)(void *ctx, const void *key, size_t key_len,
                                            keel_cache_load_t *ld);

/* A borrowed read: `data` (len bytes) is valid only during the call. */
typedef void (*keel_cache_read_fn)(void *ctx, const void *data, size_t len);

/* Monotonic time in nanoseconds (for tests: an injectable clock). */
typedef uint64_t (*keel_cache_clock_fn)(void *ud);

/* A key hash (for tests: forcing collisions). Must be deterministic and must
 * not call the cache: it also runs under a shard lock (unlinks and resizes
 * hash stored keys again). */
typedef uint64_t (*keel_cache_hash_fn)(void *ud, const void *key, size_t key_len, uint64_t seed);

/* Who applies recorded hits to the policy (keel_cache_options.maintenance). */
typedef enum keel_cache_maintenance {
  /* The default: THREAD for a cache that shows its policy every hit (a
   * size hint of up to 16,384 entries), where the policy's work per lookup
   * is large; CALLER for larger ones, which show it 1 hit in 4 or 16:
   * their drains take about a fifth of a reader's time, which a thread
   * only moves to another core (a gain when one is idle, a loss when every
   * core reads: 2 readers on 2 cores then read 1.5x what 1 does). */
  KEEL_CACHE_MAINTAIN_AUTO = 0,
  /* A thread the cache owns (started by create, joined by destroy)
   * applies the per-thread read buffers to the policy; a lookup only
   * appends to its buffer, and drops the record when the buffer is full
   * (the policy's view is lossy under load, as in Caffeine; counted in
   * policy_dropped). The thread polls every 50 us while records come and
   * sleeps after 1 ms without any. An inserting thread still applies its
   * own buffer first, so a single-threaded caller's hits reach the policy
   * in order before its next insert. The thread also replays the adaptive
   * policy's shadow caches (deferred shadows: lookups and inserts only
   * queue their sampled requests; what a full queue turns away is counted
   * in policy_shadow_dropped). */
  KEEL_CACHE_MAINTAIN_THREAD = 1,
  /* No thread: every 32 recorded lookups, the looking-up thread applies
   * them itself. Slower lookups, but the policy loses records only to busy
   * shards: a single-threaded caller sees what `keel sim` replays. */
  KEEL_CACHE_MAINTAIN_CALLER = 2
} keel_cache_maintenance;

typedef struct keel_cache_options {
  size_t size;                 /* sizeof(keel_cache_options) */
  uint64_t max_bytes;          /* required: bound on the charged bytes (> overhead) */
  uint64_t max_entries;        /* 0: no bound on the count */
  const char *policy;          /* borrowed; NULL or "default", "lru", "wtinylfu", "adaptive" */
  uint64_t ttl_ns;             /* 0: entries never expire; else time to live after write (an entry
                                * may have its own: keel_cache_put_ttl, keel_cache_load_ttl) */
  uint64_t negative_ttl_ns;    /* 0: loader errors are not cached; else cached this long */
  keel_mem_tag tag;            /* every allocation of the cache is counted here */
  keel_cache_removal_fn on_removal; /* NULL: none */
  void *removal_ud;
  keel_cache_clock_fn clock;   /* NULL: CLOCK_MONOTONIC_COARSE when a duration (ttl_ns,
                                * negative_ttl_ns, refresh_ns, idle_ns) is set and every one set is
                                * at least 256 of its ticks (1.024 s at its 4 ms here; a read costs
                                * 5 ns, not 23); an entry's own TTL in such a cache is kept to a
                                * tick. Else CLOCK_MONOTONIC */
  void *clock_ud;
  keel_cache_hash_fn hash;     /* NULL: XXH3 with the seed */
  void *hash_ud;
  uint64_t seed;               /* 0: random per cache (getrandom) */
  keel_cache_maintenance maintenance; /* 0: KEEL_CACHE_MAINTAIN_AUTO */
  uint64_t refresh_ns;         /* 0: no refresh; else a get_or_load (or read_or_load) hit on a value
                                * written this long ago reloads it: one caller runs the loader and
                                * gets the new value, the others keep getting the old one meanwhile
                                * (see keel_cache_get_or_load); each value is charged 8 bytes more
                                * for its refresh time */
  uint64_t idle_ns;            /* 0: entries do not expire when idle; else an entry not looked up
                                * (get, read, get_or_load hit) or written for this long expires
                                * (Caffeine's expireAfterAccess), to within idle_ns/64: a hit
                                * moves the time only when it would move by more, so hot entries
                                * are not written at every hit. With ttl_ns (or an entry's own
                                * TTL) too, whichever comes first. Each value is charged 16 bytes
                                * more (its expiry time and its write's deadline; 8 where ttl_ns
                                * gives it an expiry time already). Cached errors keep
                                * negative_ttl_ns alone */
} keel_cache_options;

typedef struct keel_cache_stats {
  uint64_t hits, misses;       /* lookups = hits + misses (get, get_or_load, read) */
  uint64_t loads, load_errors; /* loader calls; those that failed */
  uint64_t evictions, expirations, removals, replacements;
  uint64_t refreshes;          /* values a refresh replaced (its loads count in loads, load_errors) */
  uint64_t puts;               /* values stored by put or a load (and errors cached by negative_ttl_ns) */
  uint64_t entries, bytes;     /* now: count and charged bytes */
  uint64_t max_bytes, max_entries;
  uint64_t policy_admitted, policy_rejected, policy_adaptations;
  double policy_window_share;  /* the shards' mean */
  uint64_t shards;             /* hash partitions, each with 1/shards of the bounds */
  uint64_t policy_shadow_accesses; /* the adaptive policy's bookkeeping: shadow requests */
  uint64_t policy_dropped;     /* recorded lookups the policy never saw (buffer full, shard busy) */
  uint64_t policy_shadow_dropped; /* sampled requests the shadows never saw (the maintenance thread,
                                   * which replays them, fell behind) */
} keel_cache_stats;

/* The names of keel_cache_maintenance's values: "auto", "thread", "caller".
 * parse returns 0 and sets *out for a known name (borrowed), -1 otherwise;
 * name returns a static string ("?" for an unknown value). */
KEEL_EXTERN int keel_cache_maintenance_parse(const char *name, keel_cache_maintenance *out);
KEEL_EXTERN const char *keel_cache_maintenance_name(keel_cache_maintenance m);

/* Bytes charged per entry on top of its key and value (68): the entry
 * header, its share of the hash table, and the policy's per-entry record
 * and sketch counters. What a cache holds is more: fixed parts (reader
 * slots, the adaptive policy's shadow caches), spare slots and rounding;
 * `keel bench cache` reports it as held_overhead (77-80 per entry at 65,536
 * entries of 8-byte keys and values, docs/PERFORMANCE.md). */
KEEL_EXTERN size_t keel_cache_entry_overhead(void);

/* ---- lifecycle ----------------------------------------------------------- */

/* Creates a cache. On success *out is owned (keel_cache_destroy).
 * KEEL_EINVAL: bad options (no max_bytes, unknown policy:
 * keel_cache_options_check says which); KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_cache_create(const keel_cache_options *opt, keel_cache_t **out);

/* KEEL_OK when keel_cache_create would accept opt (borrowed; may be NULL);
 * else KEEL_EINVAL with what is wrong in err (may be NULL, errlen 0):
 * "unknown policy 'LRU' (keel has lru,wtinylfu,adaptive,default)". */
KEEL_EXTERN keel_status keel_cache_options_check(const keel_cache_options *opt, char *err, size_t errlen);

/* Removes every entry (no removal callbacks) and frees the cache. Values
 * callers still hold stay valid until released. No call on the cache may be
 * running or start. NULL is a no-op. */
KEEL_EXTERN void keel_cache_destroy(keel_cache_t *c);

/* ---- lookups ------------------------------------------------------------- */

/* Looks `key` (borrowed) up. KEEL_OK: *out is an owned reference.
 * KEEL_ENOTFOUND: absent, expired, or a cached loader error. Lock-free. */
KEEL_EXTERN keel_status keel_cache_get(keel_cache_t *c, const void *key, size_t key_len,
                                       keel_cache_value_t **out);

/* Looks `key` up and, when present, calls fn(ctx, data, len) while the value
 * is protected from reclamation, without taking a reference: the cheapest
 * read. fn must not block for long (it delays reclamation) and must not call
 * a writing function of this cache. KEEL_OK or KEEL_ENOTFOUND. */
KEEL_EXTERN keel_status keel_cache_read(keel_cache_t *c, const void *key, size_t key_len,
                                        keel_cache_read_fn fn, void *ctx);

/* A hit of keel_cache_read_many: the value of keys[i], borrowed for the call. */
typedef void (*keel_cache_read_many_fn)(void *ctx, size_t i, const void *data, size_t len);

/* Looks n keys up (keys[i] of key_lens[i] bytes, borrowed) as n calls of
 * keel_cache_read would, in order, calling fn(ctx, i, data, len) for each
 * hit under the same rules; returns the hits. Faster than n calls when the
 * keys are known together (a request's candidates, say): a key's bucket
 * word and entry are fetched while the 8 keys before it are compared, so
 * their cache misses overlap instead of queueing (docs/PERFORMANCE.md,
 * "Batched reads"). Every lookup counts, and its hit reaches the policy,
 * as a single read's does; a NULL key with a nonzero length is skipped. 0
 * for a NULL cache or fn, or NULL keys or key_lens with n > 0. */
KEEL_EXTERN size_t keel_cache_read_many(keel_cache_t *c, size_t n, const void *const keys[], const size_t key_lens[],
                                        keel_cache_read_many_fn fn, void *ctx);

/* Pins the calling thread to the cache's current epoch for a batch of
 * lookups: until keel_cache_unpin, get, read and get_or_load's lookup on
 * this cache skip their per-call epoch entry (two atomic read-modify-writes
 * that act as full fences), so a loop of lookups can overlap its memory
 * accesses. While pinned, the thread must not block for long (reclamation
 * of evicted entries waits for it) and must not pin another cache. Pins
 * nest. Writes (put, remove, get_or_load's load) are allowed while pinned.
 * The thread's hits and misses reach the statistics at unpin. */
KEEL_EXTERN void keel_cache_pin(keel_cache_t *c);
KEEL_EXTERN void keel_cache_unpin(keel_cache_t *c);

/* Returns the value of `key`, loading it on a miss. Concurrent misses on one
 * key run `loader` once; the others wait and receive its result. KEEL_OK:
 * *out is owned. A loader failure returns the loader's status to every
 * waiter and is not cached, unless negative_ttl_ns was set: then later
 * calls get the same status without loading until it expires. KEEL_ENOMEM
 * when the entry cannot be allocated (the loader may not have run).
 * A value the loader marks no-cache, or one larger than its shard's share
 * of the cache (see Bound above), is
 * returned without being stored; so is a loaded value (or error) when a
 * put stored the key while the loader ran: the put is newer.
 * With options.refresh_ns, a hit on a value written that long ago or more
 * is a refresh: the one caller that takes it runs `loader` and gets the new
 * value, which replaces the old one unless that was removed, replaced or
 * evicted meanwhile; concurrent hits get the old value without waiting. A
 * failed refresh keeps the old value (KEEL_OK) and is tried again a period
 * later, unless the old value expired while the loader ran: then the
 * loader's status. Plain lookups (get, read) never refresh. A loader may
 * load other keys of the cache; asking for its own key while it is not
 * cached (which would wait for itself) returns KEEL_EMISUSE at once, and
 * so does asking for a key whose load waits, through loaders on other
 * threads, for this loader's (a ring of loads that would each wait for
 * the next forever: the one that would close it is refused). */
KEEL_EXTERN keel_status keel_cache_get_or_load(keel_cache_t *c, const void *key, size_t key_len,
                                               keel_cache_loader_fn loader, void *ctx,
                                               keel_cache_value_t **out);

/* keel_cache_get_or_load without a reference: calls read(read_ctx, data,
 * len) on the value (a hit in place, under epoch protection, as
 * keel_cache_read does; a loaded value once it is loaded) and returns
 * KEEL_OK, or returns the loader's error without calling read. A hit costs
 * no atomic read-modify-write on the entry. read must not block for long
 * and must not call a writing function of this cache. */
KEEL_EXTERN keel_status keel_cache_read_or_load(keel_cache_t *c, const void *key, size_t key_len,
                                                keel_cache_loader_fn loader, void *ctx,
                                                keel_cache_read_fn read, void *read_ctx);

/* Returns a writable buffer of `len` bytes that becomes the value once the
 * loader returns KEEL_OK (owned by the cache; do not free). NULL on
 * KEEL_ENOMEM or a size of 4 GiB or more; calling it again replaces the buffer. */
KEEL_EXTERN void *keel_cache_load_alloc(keel_cache_load_t *ld, size_t len);

/* Copies `len` bytes of `data` (borrowed) as the value. KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_cache_load_set(keel_cache_load_t *ld, const void *data, size_t len);

/* Asks that this value be returned to the waiters but not stored. */
KEEL_EXTERN void keel_cache_load_nocache(keel_cache_load_t *ld);

/* Gives the value being loaded a time to live of its own: it expires
 * ttl_ns after it is stored (0: never), whatever the cache's ttl_ns, so a
 * loader can keep what it computed as long as its inputs stay valid. The
 * entry is charged 8 bytes more for its expiry time in a cache without a
 * TTL. Any time before the loader returns. */
KEEL_EXTERN void keel_cache_load_ttl(keel_cache_load_t *ld, uint64_t ttl_ns);

/* ---- writes -------------------------------------------------------------- */

/* Stores a copy of `data` (borrowed) under a copy of `key` (borrowed),
 * replacing any value (cause REPLACED; EXPIRED for an expired one) and
 * evicting as needed. KEEL_ELIMIT
 * when one entry's charge exceeds its shard's share of the cache (see
 * Bound above), or the key is 128 MiB or
 * longer, or the value 4 GiB or larger (nothing stored; the old value is
 * removed, cause REMOVED); KEEL_ENOMEM leaves the cache as it was. The admission policy
 * may evict the newcomer at once (reported as EVICTED). */
KEEL_EXTERN keel_status keel_cache_put(keel_cache_t *c, const void *key, size_t key_len,
                                       const void *data, size_t len);

/* keel_cache_put with a time to live of the entry's own: it expires ttl_ns
 * after this write (0: never), whatever the cache's ttl_ns; a later put
 * of the key without one takes the cache's again. In a cache without a
 * TTL such an entry is charged 8 bytes more for its expiry time. */
KEEL_EXTERN keel_status keel_cache_put_ttl(keel_cache_t *c, const void *key, size_t key_len,
                                           const void *data, size_t len, uint64_t ttl_ns);

/* Removes `key` (cause REMOVED). KEEL_OK or KEEL_ENOTFOUND (also for an
 * expired entry, which leaves with cause EXPIRED). */
KEEL_EXTERN keel_status keel_cache_remove(keel_cache_t *c, const void *key, size_t key_len);

/* Removes every entry (cause REMOVED). The cache's references are dropped
 * at once unless a lookup is still running (or a thread is pinned); values
 * users hold live on until released. */
KEEL_EXTERN void keel_cache_clear(keel_cache_t *c);

/* Removes every expired entry now (cause EXPIRED); returns how many.
 * Expired entries are never returned either way; this frees their memory,
 * and (in every cache) that of removed and evicted entries that no lookup
 * can still be reading: a cache that stopped changing otherwise keeps up
 * to a few hundred of them until its next evictions. */
KEEL_EXTERN uint64_t keel_cache_cleanup(keel_cache_t *c);

/* Decides whether keel_cache_remove_if removes an entry: nonzero removes.
 * `key` and `value` are borrowed for the call (keel_cache_value_acquire
 * keeps the value); value is NULL for a cached loader error. It runs with
 * the entry's shard locked: it must not call this cache. */
typedef int (*keel_cache_match_fn)(void *ud, const void *key, size_t key_len, keel_cache_value_t *value);

/* Sees one entry for keel_cache_for_each: returns 0 to go on, nonzero to
 * stop. Same arguments and rules as keel_cache_match_fn. */
typedef int (*keel_cache_visit_fn)(void *ud, const void *key, size_t key_len, keel_cache_value_t *value);

/* Removes every entry for which match(ud, ...) returns nonzero (cause
 * REMOVED, reported to on_removal) and returns how many: invalidation by
 * what a key or value says (a user's entries, a key prefix, a model
 * version). Shard by shard, each under its lock: lookups go on meanwhile;
 * writers to the shard being scanned wait, and an entry stored during the
 * call in a shard already scanned stays. Expired entries are not offered
 * (cleanup frees them). 0 for a NULL cache or match. */
KEEL_EXTERN uint64_t keel_cache_remove_if(keel_cache_t *c, keel_cache_match_fn match, void *ud);

/* Calls visit(ud, ...) on each entry, shard by shard, each under its lock
 * (the same consistency as keel_cache_remove_if: each shard as of one
 * moment, no entry twice), until it returns nonzero; returns the entries
 * visited. Expired entries are skipped. The order is the tables', not
 * insertion or recency. Lookups are neither counted nor seen by the
 * policy. 0 for a NULL cache or visit. */
KEEL_EXTERN uint64_t keel_cache_for_each(keel_cache_t *c, keel_cache_visit_fn visit, void *ud);

/* Changes the byte bound, evicting down to a smaller one before returning.
 * The shards are those of create; each gets an equal share, and takes it
 * in turn: meanwhile the statistics' max_bytes is the sum of the shards'
 * bounds of the moment, each read with the bytes it bounds (so bytes never
 * show above max_bytes).
 * KEEL_EINVAL for a NULL cache, or a bound whose share per shard
 * (max_bytes / stats.shards) is no more than keel_cache_entry_overhead():
 * such a cache could store nothing (create refuses the same, for its one
 * or more shards). */
KEEL_EXTERN keel_status keel_cache_set_capacity(keel_cache_t *c, uint64_t max_bytes);

/* ---- values ---------------------------------------------------------------- */

/* The value's bytes (borrowed, valid while the reference is held; 8-byte
 * aligned) and length. */
KEEL_EXTERN const void *keel_cache_value_data(const keel_cache_value_t *v);
KEEL_EXTERN size_t keel_cache_value_len(const keel_cache_value_t *v);

/* Adds a reference (the caller owns one more). */
KEEL_EXTERN void keel_cache_value_acquire(keel_cache_value_t *v);

/* Drops a reference; the last one frees the value. NULL is a no-op.
 * Releasing more references than were acquired, found while the cache
 * still holds the value, is a bug in the caller (like a double free):
 * keel names the key on stderr and aborts rather than free the value
 * under the cache. After the value has left the cache such a release is
 * a use after free that keel cannot see. */
KEEL_EXTERN void keel_cache_value_release(keel_cache_value_t *v);

/* ---- introspection ---------------------------------------------------------- */

/* Fills *out. Counters are read without the lock: each is exact, the set is
 * a near-instant snapshot. */
KEEL_EXTERN void keel_cache_get_stats(keel_cache_t *c, keel_cache_stats *out);

/* The policy's canonical name (static string). */
KEEL_EXTERN const char *keel_cache_policy(const keel_cache_t *c);

#ifdef __cplusplus
}
#endif
#endif
