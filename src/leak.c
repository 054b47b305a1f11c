/* leak.c — trend-based leak detection over the allocator's counters (see
 * keel/leak.h for what is flagged and why).
 *
 * The trend. For a series y sampled at times t over the window, the least
 * squares slope is cov(t, y) / var(t) and r^2 = cov^2 / (var(t) var(y)). A
 * leak of r bytes per event at a steady event rate is a straight line: r^2
 * near 1, and the slope over the recent half of the window equals the
 * slope over all of it. A cache filling up to its bound is concave: it
 * grows as fast as it misses and stops at the bound, so by the time its
 * growth could pass the thresholds for `confirm` evaluations in a row the
 * recent half has flattened (tail ratio falls), and a declared bound
 * settles it outright. Noise (batches in flight, arenas growing to their
 * working size) has a small slope, a small r^2, or both. The rate per event
 * is the slope of y against the caller's event count over the same window,
 * which does not depend on the event rate being steady.
 *
 * This is the "compare snapshots over time" idea of tracemalloc, made
 * automatic: the growth must persist across a window rather than show up
 * between two hand-picked moments (cf. the leak heuristics of long-running
 * services that watch RSS slopes; here the tags say *what* grows).
 *
 * Concurrency. The ring, streaks and the latched reports are written only by
 * whoever samples (the sampler thread while it runs, else the owner); `lock`
 * guards the latched reports, which keel_leak_verdict copies from the owner
 * thread while the sampler runs. `stop` is guarded by `lock` and signalled
 * through `cv` so a stop does not wait out an interval. */
#include "keel/leak.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Under AddressSanitizer or ThreadSanitizer the heap is the sanitizer's:
 * its RSS (redzones, shadow, quarantine) says little about what is live,
 * and glibc's mallinfo2 knows none of it; its allocator counts the bytes
 * the program holds, which is what the untracked series wants. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_HEAP 1
#endif
#endif
#ifdef SANITIZER_HEAP
size_t __sanitizer_get_current_allocated_bytes(void); /* sanitizer/allocator_interface.h */
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif

#define NSERIES (KEEL_MEM_MAX_TAGS + 1) /* every tag, then "untracked" */
#define UNTRACKED_IX KEEL_MEM_MAX_TAGS

typedef struct sample {
  double t;
  unsigned ntags;
  int64_t y[NSERIES];
  uint64_t e[NSERIES];
} sample;

/* One horizon: a ring of samples `interval` apart, fitted over `window`.
 * Horizon 0 takes every sample; horizon k one in HORIZON_STEP^k, so its
 * window is HORIZON_STEP^k times longer, and a leak too slow to grow by
 * min_growth within the first window does within a later one (its rate
 * floor is divided alike). */
#define HORIZON_STEP 8
#define HORIZON_RING_MAX 260 /* samples in a later horizon's ring: its interval widens past that */
typedef struct horizon {
  sample *ring;            /* cap samples, owned (tag "leak") */
  size_t cap, n, next;
  double interval, window; /* seconds */
  double due;              /* horizons >= 1: when the next sample enters */
  double min_rate, untracked_min_rate;
  unsigned streak[NSERIES];
} horizon;

struct keel_leak {
  keel_leak_options o;
  keel_mem_tag tag;
  horizon h[KEEL_LEAK_MAX_HORIZONS];
  unsigned nh;
  size_t cap;           /* samples in the first horizon's ring, the largest: the scratch arrays' size */
  const sample **w;     /* scratch, cap entries: the window */
  double *t, *y, *e;    /* scratch, cap entries each: one series */
  double last_t;        /* under lock: time of the newest sample */
  int full;             /* under lock: the window has filled */
  struct timespec t0;
  int64_t heap_free;    /* malloc's free-but-retained bytes, last read */
  unsigned heap_skip;   /* samples to go before reading them again */
  int flagged[NSERIES];              /* latched; under lock */
  keel_leak_report rep[NSERIES];     /* under lock */
  pthread_mutex_t lock;
  pthread_cond_t cv;                 /* CLOCK_MONOTONIC */
  int stop, running;
  pthread_t th;
};

static void defaults(keel_leak_options *o) {
  if (!(o->interval_s > 0)) o->interval_s = 0.25;
  if (!(o->window_s > 0)) o->window_s = 8;
  if (!(o->min_bytes_per_s > 0)) o->min_bytes_per_s = 16 * 1024;
  if (!o->min_growth) o->min_growth = 256 * 1024;
  if (!(o->min_r2 > 0)) o->min_r2 = 0.9;
  if (!(o->min_tail_ratio > 0)) o->min_tail_ratio = 0.5;
  if (!o->confirm) o->confirm = 4;
  if (!(o->untracked_min_bytes_per_s > 0)) o->untracked_min_bytes_per_s = 256 * 1024;
  if (!o->untracked_min_growth) o->untracked_min_growth = 4u << 20;
  if (!o->horizons) o->horizons = 5;
}

keel_status keel_leak_create(const keel_leak_options *opt, keel_leak_t **out) {
  if (!out || (opt && opt->size < sizeof *opt)) return KEEL_EINVAL;
  keel_leak_options o;
  memset(&o, 0, sizeof o);
  if (opt) o = *opt;
  o.size = sizeof o;
  defaults(&o);
  if (o.window_s < 4 * o.interval_s || o.window_s / o.interval_s > 100000 || o.horizons > KEEL_LEAK_MAX_HORIZONS)
    return KEEL_EINVAL;
  keel_mem_tag tag;
  keel_status st = keel_mem_tag_register("leak", &tag);
  if (st != KEEL_OK) return st;
  keel_leak_t *d = keel_mem_calloc(tag, 1, sizeof *d);
  if (!d) return KEEL_ENOMEM;
  d->o = o;
  d->tag = tag;
  d->cap = (size_t)ceil(o.window_s / o.interval_s) + 4;
  d->nh = o.horizons;
  int rings = 1;
  for (unsigned k = 0; k < d->nh; k++) {
    horizon *h = &d->h[k];
    double scale = pow(HORIZON_STEP, k);
    h->interval = o.interval_s * scale;
    h->window = o.window_s * scale;
    if (k && h->window / h->interval > HORIZON_RING_MAX - 4) h->interval = h->window / (HORIZON_RING_MAX - 4);
    h->cap = k ? (size_t)ceil(h->window / h->interval) + 4 : d->cap;
    if (h->cap > d->cap) h->cap = d->cap; /* rounding: the scratch arrays hold d->cap */
    h->min_rate = o.min_bytes_per_s / scale;
    h->untracked_min_rate = o.untracked_min_bytes_per_s / scale;
    h->ring = keel_mem_calloc(tag, h->cap, sizeof *h->ring);
    rings = rings && h->ring;
  }
  d->w = keel_mem_calloc(tag, d->cap, sizeof *d->w);
  d->t = keel_mem_calloc(tag, 3 * d->cap, sizeof *d->t);
  d->y = d->t ? d->t + d->cap : NULL;
  d->e = d->t ? d->t + 2 * d->cap : NULL;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int locked = rings && d->w && d->t && pthread_mutex_init(&d->lock, NULL) == 0;
  if (!locked || pthread_cond_init(&d->cv, &ca) != 0) {
    if (locked) pthread_mutex_destroy(&d->lock);
    pthread_condattr_destroy(&ca);
    for (unsigned k = 0; k < d->nh; k++) keel_mem_free(d->h[k].ring);
    keel_mem_free(d->w);
    keel_mem_free(d->t);
    keel_mem_free(d);
    return KEEL_ENOMEM;
  }
  pthread_condattr_destroy(&ca);
  *out = d;
  return KEEL_OK;
}

void keel_leak_destroy(keel_leak_t *d) {
  if (!d) return;
  keel_leak_stop(d);
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->lock);
  for (unsigned k = 0; k < d->nh; k++) keel_mem_free(d->h[k].ring);
  keel_mem_free(d->w);
  keel_mem_free(d->t);
  keel_mem_free(d);
}

/* ---- fitting ---- */

typedef struct fit {
  double slope, r2;
} fit;

static fit least_squares(const double *x, const double *y, size_t n) {
  fit f = {0, 0};
  if (n < 2) return f;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; i++) mx += x[i], my += y[i];
  mx /= (double)n;
  my /= (double)n;
  double sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < n; i++) {
    double dx = x[i] - mx, dy = y[i] - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  if (sxx <= 0) return f;
  f.slope = sxy / sxx;
  f.r2 = syy > 0 ? sxy * sxy / (sxx * syy) : 0;
  return f;
}

/* The samples of h's window, oldest first, as pointers into its ring. */
static size_t window(const keel_leak_t *d, const horizon *h, const sample **w) {
  size_t n = 0;
  (void)d;
  const sample *last = &h->ring[(h->next + h->cap - 1) % h->cap];
  for (size_t k = h->n; k > 0; k--) {
    const sample *s = &h->ring[(h->next + h->cap - k) % h->cap];
    if (s->t >= last->t - h->window - h->interval / 2) w[n++] = s;
  }
  return n;
}

/* ---- evaluation ---- */

static void describe(keel_leak_t *d, size_t ix, keel_leak_report *r) {
  memset(r, 0, sizeof *r);
  r->id = ix == UNTRACKED_IX ? KEEL_LEAK_UNTRACKED : (keel_mem_tag)ix;
  snprintf(r->tag, sizeof r->tag, "%s", ix == UNTRACKED_IX ? "untracked" : keel_mem_tag_name((keel_mem_tag)ix));
  if (ix != UNTRACKED_IX) r->n_sites = keel_mem_tag_top_sites((keel_mem_tag)ix, r->sites, 3);
  (void)d;
}

/* Fits series ix over h's window w[0..n); returns 1 when it looks like a leak. */
static int evaluate(keel_leak_t *d, const horizon *h, size_t ix, const sample **w, size_t n, keel_leak_report *r) {
  double *t = d->t, *y = d->y, *e = d->e;
  for (size_t i = 0; i < n; i++) {
    t[i] = w[i]->t;
    y[i] = (double)w[i]->y[ix];
    e[i] = (double)w[i]->e[ix];
  }
  int untracked = ix == UNTRACKED_IX;
  int64_t cur = w[n - 1]->y[ix], growth = cur - w[0]->y[ix];
  uint64_t bound = untracked ? 0 : keel_mem_tag_bound((keel_mem_tag)ix);
  if (bound && (double)cur <= 2.0 * (double)bound + (1 << 20)) return 0; /* filling up to its bound */
  double min_rate = untracked ? h->untracked_min_rate : h->min_rate;
  uint64_t min_growth = untracked ? d->o.untracked_min_growth : d->o.min_growth;
  if (growth < (int64_t)min_growth) return 0;
  fit all = least_squares(t, y, n);
  if (all.slope < min_rate || all.r2 < d->o.min_r2) return 0;
  size_t half = n / 2;
  fit tail = least_squares(t + half, y + half, n - half);
  if (tail.slope < d->o.min_tail_ratio * all.slope) return 0;
  fit per_event = least_squares(e, y, n);
  describe(d, ix, r);
  r->bytes_per_s = all.slope;
  r->bytes_per_event = per_event.slope > 0 ? per_event.slope : 0;
  r->r2 = all.r2;
  r->current = cur;
  r->growth = growth;
  r->window_s = w[n - 1]->t - w[0]->t;
  return 1;
}

/* Evaluates every series over horizon h, which just took a sample. */
static void evaluate_all(keel_leak_t *d, horizon *h) {
  const sample **w = d->w;
  size_t n = window(d, h, w);
  int full = n >= 4 && w[n - 1]->t - w[0]->t >= h->window * 0.9;
  if (h == &d->h[0]) {
    pthread_mutex_lock(&d->lock);
    d->last_t = w[n - 1]->t;
    d->full = full;
    pthread_mutex_unlock(&d->lock);
  }
  if (!full) return;
  unsigned ntags = w[0]->ntags;
  for (size_t ix = 0; ix < NSERIES; ix++) {
    if (ix >= ntags && ix != UNTRACKED_IX) continue;
    if (ix == UNTRACKED_IX && d->o.ignore_rss) continue;
    if (ix == d->tag) continue; /* the detector's own ring */
    keel_leak_report r;
    if (!evaluate(d, h, ix, w, n, &r)) {
      h->streak[ix] = 0;
      continue;
    }
    if (++h->streak[ix] < d->o.confirm) continue;
    pthread_mutex_lock(&d->lock);
    r.flagged_at_s = d->flagged[ix] ? d->rep[ix].flagged_at_s : w[n - 1]->t;
    d->rep[ix] = r;
    d->flagged[ix] = 1;
    pthread_mutex_unlock(&d->lock);
  }
}

/* ---- sampling ---- */

static double seconds_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Bytes malloc holds free (in its bins, fast bins and top chunks, every
 * arena): memory RSS shows but nobody has allocated. mallinfo2() walks the
 * free chunks under each arena's lock, which costs microseconds on a tidy
 * heap and milliseconds on a fragmented one (a leak that pins chunks between
 * freed ones fragments it), so when a reading is slow the next ones are
 * spaced out to keep its share of the sampling time under 1 %; in between
 * the last reading stands. The cost is the calling thread's CPU time, not
 * the clock's: on a busy machine a preempted call is not a slow one. And
 * the spacing leaves at least 8 readings in a window: a reading that stood
 * for the whole window would turn the untracked series into RSS alone
 * (free heap that grows with a leak then reads as leaked: 96 bytes per
 * malloc(64) instead of 80 in test_leak_mt, seen on a loaded machine when
 * the spacing followed the clock and went up to 63 samples). 0 where
 * mallinfo2 does not exist. */
#ifndef SANITIZER_HEAP
static int64_t heap_free_bytes(keel_leak_t *d) {
#ifdef HAVE_MALLINFO2
  if (d->heap_skip) {
    d->heap_skip--;
    return d->heap_free;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  struct mallinfo2 mi = mallinfo2();
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  double cost = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  double budget = 0.01 * d->o.interval_s, most = floor(d->o.window_s / d->o.interval_s / 8) - 1;
  d->heap_free = (int64_t)mi.fordblks;
  d->heap_skip = cost > budget && most >= 1 ? (unsigned)fmin(ceil(cost / budget) - 1, most) : 0;
  return d->heap_free;
#else
  (void)d;
  return 0;
#endif
}
#endif

/* Puts a copy of s into horizon h (k >= 1) when one is due, and
 * evaluates it. */
static void feed(keel_leak_t *d, horizon *h, const sample *s) {
  if (h->n && s->t < h->due) return;
  h->due = (h->n ? h->due : s->t) + h->interval;
  if (h->due <= s->t) h->due = s->t + h->interval; /* a stall: do not catch up in a burst */
  h->ring[h->next] = *s;
  h->next = (h->next + 1) % h->cap;
  if (h->n < h->cap) h->n++;
  evaluate_all(d, h);
}

void keel_leak_sample(keel_leak_t *d) {
  horizon *h0 = &d->h[0];
  if (!h0->n) clock_gettime(CLOCK_MONOTONIC, &d->t0);
  sample *s = &h0->ring[h0->next];
  s->t = seconds_since(&d->t0);
  s->ntags = keel_mem_tag_count();
  for (unsigned i = 0; i < s->ntags; i++) {
    keel_mem_stats st;
    keel_mem_tag_stats((keel_mem_tag)i, &st);
    s->y[i] = st.current;
    s->e[i] = d->o.events ? d->o.events(d->o.events_ud, (keel_mem_tag)i) : 0;
  }
  if (!d->o.ignore_rss) {
    keel_mem_process m;
#ifdef SANITIZER_HEAP
    int64_t held = (int64_t)__sanitizer_get_current_allocated_bytes();
    keel_mem_process_stats(&m);
    s->y[UNTRACKED_IX] =
        held - m.tracked_current - (int64_t)(m.live_blocks - m.headerless_blocks) * KEEL_MEM_HEADER_BYTES;
#else
    int64_t free_heap = heap_free_bytes(d);
    keel_mem_process_stats(&m);
    s->y[UNTRACKED_IX] = (int64_t)m.rss_bytes - free_heap - m.footprint;
#endif
    s->e[UNTRACKED_IX] = d->o.events ? d->o.events(d->o.events_ud, KEEL_LEAK_UNTRACKED) : 0;
  }
  h0->next = (h0->next + 1) % h0->cap;
  if (h0->n < h0->cap) h0->n++;
  evaluate_all(d, h0);
  for (unsigned k = 1; k < d->nh; k++) feed(d, &d->h[k], s);
}

static void *sampler_main(void *arg) {
  keel_leak_t *d = arg;
  struct timespec due;
  clock_gettime(CLOCK_MONOTONIC, &due);
  pthread_mutex_lock(&d->lock);
  while (!d->stop) {
    pthread_mutex_unlock(&d->lock);
    keel_leak_sample(d);
    double ns = (double)due.tv_nsec + d->o.interval_s * 1e9;
    due.tv_sec += (time_t)(ns / 1e9);
    due.tv_nsec = (long)fmod(ns, 1e9);
    pthread_mutex_lock(&d->lock);
    while (!d->stop && pthread_cond_timedwait(&d->cv, &d->lock, &due) == 0) {
    }
  }
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

keel_status keel_leak_start(keel_leak_t *d) {
  if (!d || d->running) return KEEL_EMISUSE;
  d->stop = 0;
  if (pthread_create(&d->th, NULL, sampler_main, d)) return KEEL_ENOMEM;
  d->running = 1;
  return KEEL_OK;
}

void keel_leak_stop(keel_leak_t *d) {
  if (!d || !d->running) return;
  pthread_mutex_lock(&d->lock);
  d->stop = 1;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->lock);
  pthread_join(d->th, NULL);
  d->running = 0;
}

static int by_rate(const void *a, const void *b) {
  const keel_leak_report *x = a, *y = b;
  return x->bytes_per_s < y->bytes_per_s ? 1 : x->bytes_per_s > y->bytes_per_s ? -1 : 0;
}

void keel_leak_verdict(keel_leak_t *d, keel_leak_report *out, size_t cap, size_t *n) {
  keel_leak_report all[NSERIES];
  size_t k = 0;
  pthread_mutex_lock(&d->lock);
  for (size_t ix = 0; ix < NSERIES; ix++)
    if (d->flagged[ix]) all[k++] = d->rep[ix];
  pthread_mutex_unlock(&d->lock);
  qsort(all, k, sizeof all[0], by_rate);
  for (size_t i = 0; i < k && i < cap; i++) out[i] = all[i];
  *n = k;
}

double keel_leak_elapsed_s(keel_leak_t *d) {
  pthread_mutex_lock(&d->lock);
  double t = d->last_t;
  pthread_mutex_unlock(&d->lock);
  return t;
}

int keel_leak_window_full(keel_leak_t *d) {
  pthread_mutex_lock(&d->lock);
  int f = d->full;
  pthread_mutex_unlock(&d->lock);
  return f;
}
