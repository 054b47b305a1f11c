/* queue.h — a bounded blocking queue of pointers (internal).
 *
 * A ring of fixed capacity guarded by one mutex and two condition variables.
 * push blocks while full, pop blocks while empty; close wakes everyone: pop
 * then drains what is left and returns NULL once empty. Used between the
 * pipeline's reader, workers and sink; items are whole batches, so the lock
 * is taken once per batch, not per event. Thread safety: any thread. */
#ifndef KEEL_QUEUE_H
#define KEEL_QUEUE_H

#include <stddef.h>

#include "keel/status.h"

typedef struct keel_queue keel_queue_t;

/* A queue of `cap` slots (owned; keel_queue_destroy). */
keel_status keel__queue_create(size_t cap, keel_queue_t **out);
void keel__queue_destroy(keel_queue_t *q);

/* Blocks while full. Returns KEEL_ECANCELED (item not queued) once closed. */
keel_status keel__queue_push(keel_queue_t *q, void *item);

/* Blocks while empty and open. NULL when closed and drained. */
void *keel__queue_pop(keel_queue_t *q);

/* Items queued now. */
size_t keel__queue_depth(keel_queue_t *q);

/* Wakes every waiter; further pushes fail, pops drain then return NULL. */
void keel__queue_close(keel_queue_t *q);

/* Reopens an empty closed queue for another run. */
void keel__queue_reopen(keel_queue_t *q);

#endif
