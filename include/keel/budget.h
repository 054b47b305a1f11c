/* keel/budget.h — a memory budget for a process that runs a pipeline.
 *
 * With `[memory] budget = SIZE` (`keel run --memory-budget SIZE`) the
 * pipeline plans its memory when it is created and holds to the plan while
 * it runs:
 *
 *  - Plan. The fixed parts are what is tracked when the pipeline is built
 *    (catalog, schema, stage state, the caches' empty structures) plus an
 *    allowance for what a run allocates (the batch pool, each worker's
 *    event and projection arenas, the line buffer) and a headroom (1/16 of
 *    the budget, at least 1 MiB, plus the counters' peak slack per thread).
 *    The caches together get what is left: since a cache's tag holds up to
 *    ~1.65x the bytes its bound charges (power-of-two slot arrays, doubled
 *    hash tables), their bounds sum to the share / 1.65. Caches configured
 *    larger are shrunk, in proportion to their configured sizes, and the
 *    plan's note says so. A budget smaller than the fixed parts (plus 64 KiB per cache)
 *    is refused with KEEL_ECONFIG and the numbers.
 *  - Run. Before it takes a batch from the pool, the reader reads the
 *    tracked total. Past the high-water mark (budget minus half the
 *    headroom) it shrinks the caches first (they evict at once), down to a
 *    floor of 64 KiB each; if memory is still past the mark it pauses
 *    (backpressure: the workers finish what is in flight, nothing new is
 *    read) until memory falls. keel never goes past the budget by
 *    allocating more: the only growth while paused is the batches already
 *    in flight. A pause with nothing in flight and the caches at their
 *    floor cannot end by itself; after `[memory] max_pause` (default 1s)
 *    the reader goes on and counts an overrun, and does not pause again
 *    until memory grows past that level (or falls under the mark): what
 *    holds it is nothing a pause can release.
 *  - Caches shrunk at run time grow back towards their planned size once
 *    memory has stayed below the low-water mark (budget minus twice the
 *    headroom) for a second.
 *
 * Thread safety: the budget belongs to its pipeline; keel_pipeline_budget_stats
 * may be called from any thread, during or between runs. */
#ifndef KEEL_BUDGET_H
#define KEEL_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/pipeline.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The smallest a cache is planned or shrunk to. */
#define KEEL_BUDGET_CACHE_FLOOR (64u * 1024u)

typedef struct keel_budget_stats {
  uint64_t limit;          /* the budget, bytes */
  uint64_t fixed_tracked;  /* tracked when the pipeline was built */
  uint64_t fixed_run;      /* the allowance for a run's batches, arenas and buffers */
  uint64_t reserve;        /* headroom kept free */
  uint64_t cache_share;    /* tracked bytes the caches may hold together */
  uint64_t caches_asked;   /* sum of the configured cache sizes */
  uint64_t caches_granted; /* sum of the planned capacities */
  uint64_t caches_now;     /* sum of the capacities now */
  size_t n_caches;
  size_t n_shrunk;         /* caches the plan shrank */
  uint64_t shrinks;        /* run-time cache shrinks */
  uint64_t regrows;        /* run-time cache regrowths */
  uint64_t pauses;         /* times the reader paused */
  double paused_s;         /* total time paused */
  uint64_t overruns;       /* pauses given up (nothing in flight, caches at their floor) */
  int64_t tracked_max;     /* highest tracked total the reader saw during runs */
  char note[512];          /* the plan in words, e.g. which caches were shrunk */
} keel_budget_stats;

/* Splits `share` bytes among n caches configured with asked[i] bytes:
 * granted[i] = asked[i] when everything fits, else a share proportional to
 * asked[i], never below KEEL_BUDGET_CACHE_FLOOR. KEEL_ELIMIT when n floors
 * do not fit in `share` (granted untouched). */
KEEL_EXTERN keel_status keel_budget_split(uint64_t share, const uint64_t *asked, size_t n, uint64_t *granted);

/* Fills *out with the budget's plan and counters. KEEL_ENOTFOUND when the
 * pipeline has no budget. */
KEEL_EXTERN keel_status keel_pipeline_budget_stats(const keel_pipeline_t *p, keel_budget_stats *out);

#ifdef __cplusplus
}
#endif
#endif
