/* keel/progress.h — one progress line on a terminal.
 *
 * Shows work done, its rate, the time elapsed and, when the total is known,
 * the share done and an ETA, rewriting one line of a terminal ("\r", then
 * erase to the end of the line) at most a few times a second:
 *
 *   keel run: 1.25M events  412.3k/s  0:03  41%  ETA 0:04
 *
 * Commands show it only when their stderr is a terminal and --no-progress
 * is not given (keel_progress_wanted); `keel run` drives it from its
 * observer thread, and `gen`, `sim` and `bench` should create one the same
 * way and call keel_progress_update from their loop (it reads the clock
 * on each call: from a hot loop, call it every few thousand items).
 * Thread safety: one thread at a time per progress line. */
#ifndef KEEL_PROGRESS_H
#define KEEL_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "keel/export.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_progress keel_progress_t;

typedef struct keel_progress_options {
  size_t size;          /* sizeof(keel_progress_options) */
  const char *label;    /* borrowed, copied: "keel run" */
  const char *unit;     /* borrowed, copied: "events" (default) */
  FILE *out;            /* borrowed: where the line goes (default stderr) */
  uint64_t total;       /* amount of work (in any unit, e.g. input bytes) when known, else 0 */
  double min_interval_s; /* least time between two redraws (default 0.25) */
} keel_progress_options;

/* 1 when progress should be shown on fd: it is a terminal, TERM is not
 * "dumb" and the user did not turn it off (`disabled`). */
KEEL_EXTERN int keel_progress_wanted(int fd, int disabled);

/* *out is owned (keel_progress_destroy). Counted under KEEL_MEM_OTHER. */
KEEL_EXTERN keel_status keel_progress_create(const keel_progress_options *opt, keel_progress_t **out);

/* Erases the line (if drawn) and frees. NULL is a no-op. */
KEEL_EXTERN void keel_progress_destroy(keel_progress_t *p);

/* Reports `count` units done (shown with their rate) and `toward_total`
 * of the total done (for the share and the ETA; ignored when the total is
 * unknown). Redraws when min_interval_s has passed since the last draw. */
KEEL_EXTERN void keel_progress_update(keel_progress_t *p, uint64_t count, uint64_t toward_total);

/* Formats the line for these figures into buf (no "\r"); for tests and for
 * callers that print elsewhere. */
KEEL_EXTERN void keel_progress_format(char *buf, size_t len, const char *label, const char *unit, uint64_t count,
                                      double elapsed_s, uint64_t total, uint64_t toward_total);

/* Erases the line so that normal output can follow. */
KEEL_EXTERN void keel_progress_clear(keel_progress_t *p);

#ifdef __cplusplus
}
#endif
#endif
