/* keel/leak.h — a leak detector that reads the tracking allocator's counters.
 *
 * A detector samples, on an interval, the live bytes of every tag, and the
 * memory held outside keel's allocator (the "untracked" series): RSS minus
 * what malloc holds free (glibc's mallinfo2() fordblks: chunks freed but
 * kept in its bins, and its top chunks) minus the tracked footprint. Free
 * heap is left out because it is not anyone's live memory: a leak that pins
 * chunks between freed ones fragments the heap, and counting the free space
 * it strands would overstate the leak (by ~25 % for 64-byte leaks, measured).
 * What is left is heap in use by untracked allocations plus memory outside
 * the heap, so an untracked leak is measured in heap bytes: a malloc(n)
 * holds n plus malloc's 8-byte header rounded up to 16 (80 bytes for 64).
 * How many allocations make up a growth is not observable, so the bytes
 * asked for cannot be told apart from the chunks that hold them. (Under
 * AddressSanitizer or ThreadSanitizer the series is the sanitizer's count of
 * bytes held minus keel's tracked blocks, headers included: bytes asked
 * for, as its RSS is mostly redzones, shadow and quarantine.) Over a
 * sliding window it fits each series by least squares against time and
 * against an event count the caller provides, and flags a series that
 * keeps growing:
 *
 *   - the slope is at least min_bytes_per_s and the growth over the window
 *     at least min_growth (noise and one-off allocations are not leaks);
 *   - the line explains the series (r^2 >= min_r2);
 *   - growth has not levelled off: the slope over the window's recent half
 *     is at least min_tail_ratio of the whole window's (a structure filling
 *     up to a bound slows down and stops; a leak does not);
 *   - a tag with a declared bound (keel_mem_tag_set_bound, e.g. a cache's
 *     byte bound) below 2 x bound + 1 MiB is filling up, not leaking (a
 *     cache's tag holds up to ~1.65x the bytes its bound charges: see
 *     keel/budget.h);
 *   - all of the above for `confirm` evaluations in a row.
 *
 * Horizons. A leak too slow to grow by min_growth within the window (a few
 * bytes per event at a modest rate: still gigabytes a week) is caught over
 * a longer one: the detector fits `horizons` windows, each 8 times longer
 * than the last and sampled 8 times more sparsely, with the rate floor
 * divided alike and min_growth kept. With the defaults (8 s, then 64 s,
 * 8.5 min, 68 min and 9.1 h) a steady growth of 32 KiB/s is flagged within
 * about 9 s, 4 KiB/s within 72 s, 512 B/s within 10 min, 64 B/s within
 * 77 min and 8 B/s within 10 h.
 *
 * The detector knows nothing but the counters: what it names comes from the
 * samples alone. A flagged series is reported with its rate in bytes per
 * second and per event (the slope of bytes against the caller's event count
 * for that tag) and, in a call-site build, the tag's top allocation sites.
 *
 * Memory: the sample rings (one per horizon, ~75 KiB each at the default
 * window and interval; a later horizon's at most 260 samples, its interval
 * widened to fit) are allocated at creation (tag "leak"), so the detector
 * itself never grows. Cost: mallinfo2() walks malloc's free chunks
 * under each arena's lock; when that gets slow (a fragmented heap) the
 * detector reads it less often, keeping its CPU time under 1 % of the
 * sampling interval, but at least 8 times per window.
 * Thread safety: start/stop/verdict from one
 * thread; the sampler thread is the detector's own; keel_leak_sample may be
 * called from the owner thread when no sampler runs (tests, manual use). */
#ifndef KEEL_LEAK_H
#define KEEL_LEAK_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_leak keel_leak_t;

/* The series of RSS growth outside keel's allocator uses this as its tag. */
#define KEEL_LEAK_UNTRACKED ((keel_mem_tag)0xffff)

/* Events so far that concern `tag` (KEEL_LEAK_UNTRACKED: all events);
 * monotonic. Called from the sampler thread. */
typedef uint64_t (*keel_leak_events_fn)(void *ud, keel_mem_tag tag);

typedef struct keel_leak_options {
  size_t size;                 /* sizeof(keel_leak_options) */
  double interval_s;           /* between samples (0: 0.25 s) */
  double window_s;             /* the trend's sliding window (0: 8 s) */
  double min_bytes_per_s;      /* slower growth is never a leak (0: 16 KiB/s) */
  uint64_t min_growth;         /* bytes over the window (0: 256 KiB) */
  double min_r2;               /* (0: 0.9) */
  double min_tail_ratio;       /* (0: 0.5) */
  unsigned confirm;            /* evaluations in a row (0: 4) */
  int ignore_rss;              /* 1: no "untracked" series (and no mallinfo2 calls) */
  double untracked_min_bytes_per_s; /* (0: 256 KiB/s): RSS is noisier */
  uint64_t untracked_min_growth;    /* (0: 4 MiB) */
  keel_leak_events_fn events;  /* NULL: rates per event are 0 */
  void *events_ud;
  unsigned horizons;           /* windows fitted (0: 5): window_s, then each HORIZON 8x the last,
                                  up to KEEL_LEAK_MAX_HORIZONS; 1: window_s alone */
} keel_leak_options;

#define KEEL_LEAK_MAX_HORIZONS 6

/* One flagged series. */
typedef struct keel_leak_report {
  char tag[72];           /* the tag's name, or "untracked" */
  keel_mem_tag id;        /* the tag, or KEEL_LEAK_UNTRACKED */
  double bytes_per_s;     /* slope over the window */
  double bytes_per_event; /* slope against the events of the tag (0 without events) */
  double r2;
  int64_t current;        /* live bytes in the last sample (untracked: RSS - free heap - footprint) */
  int64_t growth;         /* over the window */
  double flagged_at_s;    /* seconds from the first sample to the confirmation */
  size_t n_sites;         /* call-site builds: the tag's top sites */
  keel_mem_diff sites[3];
  double window_s;        /* the span of the window whose fit flagged it */
} keel_leak_report;

/* Creates a detector (options borrowed; NULL for defaults). *out is owned
 * (keel_leak_destroy). KEEL_EINVAL for a window shorter than 4 intervals. */
KEEL_EXTERN keel_status keel_leak_create(const keel_leak_options *opt, keel_leak_t **out);

/* Stops the sampler if it runs and frees the detector. */
KEEL_EXTERN void keel_leak_destroy(keel_leak_t *d);

/* Starts the sampler thread (the first sample is taken at once). */
KEEL_EXTERN keel_status keel_leak_start(keel_leak_t *d);

/* Stops and joins the sampler thread. */
KEEL_EXTERN void keel_leak_stop(keel_leak_t *d);

/* Takes one sample now and evaluates the trends (what the sampler does on
 * each tick). Not while the sampler runs. */
KEEL_EXTERN void keel_leak_sample(keel_leak_t *d);

/* The series flagged so far (a flag, once confirmed, stays), largest rate
 * first, into out[0..cap); *n gets how many (may exceed cap). Rates are the
 * latest fit while the series still grows, else the fit that confirmed it. */
KEEL_EXTERN void keel_leak_verdict(keel_leak_t *d, keel_leak_report *out, size_t cap, size_t *n);

/* Seconds of samples so far, and whether the window has filled (before
 * that nothing can be flagged). */
KEEL_EXTERN double keel_leak_elapsed_s(keel_leak_t *d);
KEEL_EXTERN int keel_leak_window_full(keel_leak_t *d);

#ifdef __cplusplus
}
#endif
#endif
