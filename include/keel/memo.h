/* keel/memo.h — memoized stages that cannot return a wrong answer.
 *
 * A memo wraps one pure stage with a keel cache. For each event it builds a
 * projection: a second event holding only the fields the stage declares it
 * reads, so the stage cannot see anything else. The key is the canonical
 * encoding of the stage's name, version and model version followed by those
 * fields (sorted by name); the value is the canonical encoding of exactly the
 * fields the stage writes, which a hit writes into the event. Concurrent
 * misses on one key compute once (the cache's single-flight loading). Stage
 * failures are not cached: every event that fails gets its own reason.
 *
 * L2: with options.l2 (keel/redis.h) an L1 miss asks the shared L2 first,
 * under the namespace "STAGE:VERSION:MODEL_VERSION:[SETTINGS:]" and the key bytes after
 * the binary prefix; an L2 miss computes, then stores the same value bytes
 * there (and drops the cross-process lock). The L2 never fails an event:
 * a value from it that is not an encoding of the stage's writes is treated
 * as a miss (stats.l2_rejected).
 *
 * Audit: a fraction of hits is recomputed and compared byte for byte with
 * the cached value; a mismatch (a stage that is secretly nondeterministic)
 * is counted and logged once per stage, and can stop the run.
 *
 * Thread safety: a memo is shared by every worker; each worker uses its own
 * keel_memo_worker_t. */
#ifndef KEEL_MEMO_H
#define KEEL_MEMO_H

#include <stddef.h>
#include <stdint.h>

#include "keel/cache.h"
#include "keel/event.h"
#include "keel/export.h"
#include "keel/stage.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_memo keel_memo_t;
typedef struct keel_memo_worker keel_memo_worker_t;

/* Called once, from a worker, at the first audit mismatch of a memo. */
typedef void (*keel_memo_mismatch_fn)(void *ctx, const char *stage);

typedef struct keel_memo_options {
  size_t size;                  /* sizeof(keel_memo_options) */
  const keel_stage_def *def;    /* borrowed: must be KEEL_STAGE_PURE */
  void *state;                  /* borrowed: the stage's state (from init) */
  const keel_stage_io *io;      /* borrowed: the stage's resolved field ids */
  const keel_schema_t *schema;  /* borrowed: the pipeline's schema (field names) */
  uint64_t max_bytes;           /* the cache's bound */
  const char *policy;           /* NULL: the cache's default */
  uint64_t ttl_ns;              /* 0: no expiry */
  keel_cache_maintenance maintenance; /* who applies hits to the policy (0: AUTO) */
  double audit_rate;            /* 0..1: fraction of hits recomputed */
  uint64_t audit_seed;          /* sampling seed (deterministic per worker) */
  const char *record_keys;      /* NULL, or a file receiving each lookup key's 64-bit hash (bin64): checked
                                   at create, created or emptied as recording begins (keel_memo_record_begin) */
  keel_memo_mismatch_fn on_mismatch; /* may be NULL */
  void *mismatch_ctx;
  struct keel_l2 *l2; /* borrowed, may be NULL: a shared L2 (keel/redis.h) asked on an L1 miss */
  uint64_t idle_ns;   /* 0: none; else an entry not hit this long expires (keel_cache_options) */
  uint64_t settings;  /* 0: none; else a hash of the stage's settings ([stage.NAME]), part of every key, so
                         workers configured apart never share values through an L2 (keel_memo_settings_hash) */
} keel_memo_options;

/* The hash of the settings of stage `stage` in cfg (its [stage.NAME]
 * section: every key and value, in key order), 0 when it has none. */
KEEL_EXTERN uint64_t keel_memo_settings_hash(const keel_config_t *cfg, const char *stage);

typedef struct keel_memo_stats {
  uint64_t hits, misses, loads, load_errors, evictions;
  uint64_t entries, bytes, max_bytes;
  uint64_t audits, audit_mismatches;
  double hit_ratio;   /* hits / (hits + misses), 0 with no lookups */
  double miss_cpu_s;  /* CPU spent computing misses */
  double cpu_saved_s; /* hits x the mean CPU of a miss */
  uint64_t l2_rejected; /* L2 values refused (not an encoding of the stage's writes): computed instead */
  uint64_t record_lost; /* lookup keys the key record could not take (its file could not be opened or written) */
} keel_memo_stats;

/* Creates a memo for a pure stage; its cache is counted under a tag named
 * "cache.STAGE". KEEL_ECONFIG with a message naming the stage for an impure
 * stage, a bad policy or a record-keys file that cannot be created. *out is
 * owned (keel_memo_destroy). */
KEEL_EXTERN keel_status keel_memo_create(const keel_memo_options *opt, keel_memo_t **out, char *err,
                                         size_t errlen);

/* The checks keel_memo_create makes of opt, without making anything: a
 * configuration can be validated where no memo is wanted (caching off).
 * KEEL_ECONFIG with a message (an impure stage, an audit rate outside
 * 0..1, an unknown policy, a size under one entry's overhead, a key record
 * that cannot be written), KEEL_EINVAL for a malformed opt. */
KEEL_EXTERN keel_status keel_memo_check(const keel_memo_options *opt, char *err, size_t errlen);

/* Frees the cache (values still held by callers stay valid until released)
 * and flushes the key record. */
KEEL_EXTERN void keel_memo_destroy(keel_memo_t *m);

/* (Re)starts the key record (options.record_keys): the file is created or
 * emptied, and receives the keys of the lookups from now on. A pipeline
 * calls it as each run begins; a memo used on its own begins at its first
 * lookup. Nothing to do without a record. KEEL_EIO with the reason in err. */
KEEL_EXTERN keel_status keel_memo_record_begin(keel_memo_t *m, char *err, size_t errlen);

/* Writes the keys the record holds in memory (it writes them 64 KiB at a
 * time); a pipeline calls it as each run ends, so that the run's
 * statistics count every key the file did not take (record_lost).
 * Destroy does it too. */
KEEL_EXTERN void keel_memo_record_flush(keel_memo_t *m);

/* Per-worker scratch (the projection event) over `schema` (the pipeline's,
 * borrowed). *out is owned (keel_memo_worker_destroy). */
KEEL_EXTERN keel_status keel_memo_worker_create(keel_memo_t *m, keel_schema_t *schema, keel_memo_worker_t **out);
KEEL_EXTERN void keel_memo_worker_destroy(keel_memo_worker_t *w);

/* Runs the stage on ev through the cache: on a hit writes the cached fields
 * into ev, on a miss computes on the projection, stores and writes. Returns
 * what the stage returned (a failed event carries the stage's reason). */
KEEL_EXTERN keel_status keel_memo_process(keel_memo_t *m, keel_memo_worker_t *w, keel_event_t *ev);

/* Fills *out (counters are a near-instant snapshot). */
KEEL_EXTERN void keel_memo_get_stats(keel_memo_t *m, keel_memo_stats *out);

/* Changes the cache's byte bound (the memory budget shrinks caches). */
KEEL_EXTERN keel_status keel_memo_set_capacity(keel_memo_t *m, uint64_t max_bytes);

#ifdef __cplusplus
}
#endif
#endif
