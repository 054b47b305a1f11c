/* worker.h — a background thread that runs one job while there is work
 * (internal).
 *
 * The job, fn(ud, last), does one round and returns how much it did. The thread
 * runs rounds back to back while they find `busy` items or more (it is
 * behind), 50 us apart while they find fewer, and after 20 rounds that
 * found nothing (1 ms) it sleeps until kicked, or a second at most. A producer that has just made work calls keel__worker_kick: a
 * relaxed load while the thread is awake, a wake-up (mutex and condition
 * variable) only when it sleeps. The kick's fence and the thread's last
 * round after it says it sleeps pair up (Dekker style), so work published
 * before a kick is never left waiting for the timeout.
 *
 * Thread safety: kick from any thread; create and destroy from one. The job
 * runs on the worker's thread only, which blocks every signal. */
#ifndef KEEL_WORKER_H
#define KEEL_WORKER_H

#include <stddef.h>

#include "keel/mem.h"
#include "keel/status.h"

typedef struct keel_worker keel_worker_t;

/* One round of work; returns how many items it handled (0: none found).
 * `last`: the thread sleeps after this round unless it finds work, so the
 * job should take what it otherwise leaves to accumulate. */
typedef size_t (*keel_worker_fn)(void *ud, int last);

/* Starts the thread. On KEEL_OK *out is owned (keel__worker_destroy);
 * `ud` is borrowed until then. KEEL_ENOMEM when the thread cannot start. */
keel_status keel__worker_create(keel_mem_tag tag, keel_worker_fn fn, void *ud, size_t busy,
                                keel_worker_t **out);

/* Says there is work; cheap while the thread is awake. */
void keel__worker_kick(keel_worker_t *w);

/* Stops the thread (after its current round) and joins it. NULL: no-op. */
void keel__worker_destroy(keel_worker_t *w);

#endif
