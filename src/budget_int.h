/* budget_int.h — the pipeline's hooks into its memory budget (internal,
 * shared by pipeline.c, pipeline_run.c and budget.c; see keel/budget.h). */
#ifndef KEEL_BUDGET_INT_H
#define KEEL_BUDGET_INT_H

#include <stddef.h>
#include <stdint.h>

#include "keel/budget.h"

struct keel_pipeline;
typedef struct keel_budget keel_budget_t;

/* Reads [memory] of the pipeline's config; with a budget, plans it (shrinks
 * the caches already built) and sets p->budget (owned). KEEL_ECONFIG with
 * the numbers when the fixed parts do not fit, or for a bad [memory] key. */
keel_status keel__budget_setup(struct keel_pipeline *p, char *err, size_t errlen);

void keel__budget_destroy(keel_budget_t *b);

/* Called by the reader before it takes a batch: shrinks caches, pauses
 * while tracked memory is past the high-water mark (see keel/budget.h). */
void keel__budget_admit(keel_budget_t *b, struct keel_pipeline *p);

/* What each of n caches shrunk at run time gets back of `room` bytes: a
 * share in proportion to what it lacks of its plan (granted[i] - cap[i]),
 * all of it when room covers every lack, never past the plan; 0 for a
 * cache at or over its plan. add[i] out. */
void keel__budget_regrow_shares(uint64_t room, const uint64_t *cap, const uint64_t *granted, size_t n, uint64_t *add);

#endif
