/* budget.c — the pipeline's memory budget (see keel/budget.h).
 *
 * Why this shape. Of what a pipeline holds, only the caches can give memory
 * back on demand: the catalog, the stage state and the batch pool are fixed
 * once a run starts, and the batches in flight are bounded by the pool. So
 * the plan gives the caches whatever the fixed parts leave, and at run time
 * the one lever besides the caches is the reader: not reading is the only
 * way to stop new allocation without dropping events. Both the plan and the
 * run-time control read the tracking allocator's total, so they also see
 * memory they did not plan for (a stage's own growth, older hash tables a
 * cache keeps after a resize) and shrink the caches to make room for it.
 *
 * Estimates. A run's allowance is computed from the configuration: each
 * batch of the pool holds its records and up to ~1 KiB of text and output
 * per event (more for longer lines: the run-time control absorbs the
 * difference); each worker has an event arena and one projection arena per
 * memoized stage (first chunk 4 KiB, a few chunks in use); the line reader
 * holds max_line + 256 KiB.
 *
 * Concurrency. The plan runs in keel_pipeline_create (one thread). At run
 * time only the reader thread calls keel__budget_admit; it alone writes the
 * run-time counters, which are relaxed atomics so keel_pipeline_budget_stats
 * may read them from any thread. Cache capacities are changed through
 * keel_memo_set_capacity, which is thread-safe. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "budget_int.h"
#include "keel/mem.h"
#include "pipeline_int.h"

#define READER_BUFFER_EXTRA (256u * 1024u) /* the line reader's READ_CHUNK */
#define PER_EVENT_ALLOWANCE 1024u          /* text + output + reason bytes per buffered event */
#define ARENA_ALLOWANCE (16u * 1024u)      /* per event or projection arena */
#define REGROW_AFTER_NS 1000000000ull      /* calm time before caches grow back */
/* A cache's bound is on charged bytes (entries plus a per-entry estimate of
 * its structures), but its tag holds more: slot and policy arrays sized to
 * the next power of two above the most entries it ever held, hash tables
 * that double (the older ones kept until it is destroyed). Measured on
 * scarab-recs (rank and score caches of 15-110 MB, 16 shards each), the
 * tag runs 1.15-1.32x the charged bytes (docs/PERFORMANCE.md, Budget); the plan grants capacities of
 * share / CACHE_TRACKED_RATIO, and the run-time control absorbs the rest. */
#define CACHE_TRACKED_RATIO 1.35
#define MiB(x) ((double)(x) / 1048576.0)

typedef struct budget_cache {
  keel_memo_t *memo; /* borrowed from the pipeline's stage slot */
  const char *name;  /* the stage's name, borrowed */
  uint64_t asked, granted;
  _Atomic uint64_t cap;
} budget_cache;

struct keel_budget {
  uint64_t limit, fixed_tracked, fixed_run, reserve, share;
  uint64_t high, low;        /* act above high; regrow below low */
  uint64_t max_pause_ns;
  size_t n, n_shrunk;
  budget_cache c[KEEL_PIPELINE_MAX_STAGES];
  _Atomic uint64_t shrinks, regrows, pauses, paused_ns, overruns;
  _Atomic int64_t tracked_max;
  uint64_t calm_since;       /* reader only: when memory last went below low */
  int64_t overrun_at;        /* reader only: the tracked total of the last overrun (0: none since under high) */
  char note[512];
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bump(_Atomic uint64_t *c, uint64_t by) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

keel_status keel_budget_split(uint64_t share, const uint64_t *asked, size_t n, uint64_t *granted) {
  if (n && (!asked || !granted)) return KEEL_EINVAL;
  /* Sizes as large as a config allows (EiB) must not wrap the sums. */
  uint64_t sum = 0;
  double dsum = 0;
  for (size_t i = 0; i < n; i++) {
    sum = asked[i] > UINT64_MAX - sum ? UINT64_MAX : sum + asked[i];
    dsum += (double)asked[i];
  }
  if (share < (uint64_t)n * KEEL_BUDGET_CACHE_FLOOR) return KEEL_ELIMIT;
  for (size_t i = 0; i < n; i++) {
    double part = (double)share * ((double)asked[i] / dsum);
    uint64_t g = sum <= share ? asked[i] : part >= (double)share ? share : (uint64_t)part;
    granted[i] = g < KEEL_BUDGET_CACHE_FLOOR ? KEEL_BUDGET_CACHE_FLOOR : g;
  }
  /* Floors (or rounding) may have pushed the sum past the share: take it
   * back from the largest grants. The sum is taken again each time, since
   * it saturates: a wrapped sum is only known to be too big. */
  for (;;) {
    uint64_t tot = 0;
    for (size_t i = 0; i < n; i++) tot = granted[i] > UINT64_MAX - tot ? UINT64_MAX : tot + granted[i];
    if (tot <= share) break;
    size_t big = 0;
    for (size_t i = 1; i < n; i++)
      if (granted[i] > granted[big]) big = i;
    uint64_t over = tot - share, room = granted[big] - KEEL_BUDGET_CACHE_FLOOR;
    uint64_t take = over < room ? over : room;
    if (!take) break;
    granted[big] -= take;
  }
  return KEEL_OK;
}

/* The allowance for one run's allocations, from the configuration. */
static uint64_t run_allowance(const keel_pipeline_t *p, size_t n_memos) {
  uint64_t batches = (uint64_t)p->workers * 3 + 2;
  uint64_t per_batch = (uint64_t)p->batch_size * (sizeof(record) + PER_EVENT_ALLOWANCE) + 3 * 64;
  uint64_t per_worker = (uint64_t)ARENA_ALLOWANCE * (1 + n_memos) + sizeof(worker);
  return batches * per_batch + (uint64_t)p->workers * per_worker + p->limits.max_line + READER_BUFFER_EXTRA +
         batches * 3 * sizeof(void *) + 4096;
}

/* "catalog 5.0 MiB, pipeline 0.1 MiB, ..." for the tags holding the most. */
static void describe_tracked(char *buf, size_t len) {
  unsigned n = keel_mem_tag_count();
  size_t used = 0;
  buf[0] = '\0';
  for (int shown = 0; shown < 4; shown++) {
    int64_t best = 0;
    unsigned bi = 0;
    for (unsigned i = 0; i < n; i++) {
      keel_mem_stats s;
      if (keel_mem_tag_stats((keel_mem_tag)i, &s) != KEEL_OK || s.current <= best) continue;
      int seen = 0;
      for (const char *q = buf; (q = strstr(q, keel_mem_tag_name((keel_mem_tag)i))) != NULL; q++) seen = 1;
      if (!seen) best = s.current, bi = i;
    }
    if (!best || used >= len) break;
    int w = snprintf(buf + used, len - used, "%s%s %.1f MiB", used ? ", " : "", keel_mem_tag_name((keel_mem_tag)bi),
                     MiB(best));
    if (w < 0) break;
    used += (size_t)w;
  }
}

static keel_status refuse(keel_budget_t *b, uint64_t floors, char *err, size_t errlen) {
  char parts[200];
  describe_tracked(parts, sizeof parts);
  snprintf(err, errlen,
           "memory budget %.1f MiB cannot hold the fixed parts: %.1f MiB tracked after building (%s) + %.1f MiB "
           "for a run (batches, arenas, line buffer) + %.1f MiB headroom%s = %.1f MiB",
           MiB(b->limit), MiB(b->fixed_tracked), parts, MiB(b->fixed_run), MiB(b->reserve),
           floors ? " + 64 KiB per cache" : "", MiB(b->fixed_tracked + b->fixed_run + b->reserve + floors));
  return KEEL_ECONFIG;
}

/* Shrinks the caches the plan cannot afford and writes the note. */
static keel_status plan(keel_budget_t *b, char *err, size_t errlen) {
  uint64_t asked[KEEL_PIPELINE_MAX_STAGES], granted[KEEL_PIPELINE_MAX_STAGES];
  uint64_t fixed = b->fixed_tracked + b->fixed_run + b->reserve;
  uint64_t floors = (uint64_t)b->n * KEEL_BUDGET_CACHE_FLOOR;
  if (fixed + floors > b->limit) return refuse(b, floors, err, errlen);
  b->share = b->limit - fixed;
  for (size_t i = 0; i < b->n; i++) asked[i] = b->c[i].asked;
  uint64_t charged = (uint64_t)((double)b->share / CACHE_TRACKED_RATIO);
  if (charged < floors) charged = floors;
  keel_status st = keel_budget_split(charged, asked, b->n, granted);
  if (st != KEEL_OK) return refuse(b, floors, err, errlen);
  int w = snprintf(b->note, sizeof b->note, "budget %.1f MiB: fixed parts %.1f MiB + run %.1f MiB + headroom %.1f MiB",
                   MiB(b->limit), MiB(b->fixed_tracked), MiB(b->fixed_run), MiB(b->reserve));
  for (size_t i = 0; i < b->n; i++) {
    budget_cache *c = &b->c[i];
    c->granted = granted[i];
    atomic_store_explicit(&c->cap, granted[i], memory_order_relaxed);
    if (granted[i] < c->asked) {
      if ((st = keel_memo_set_capacity(c->memo, granted[i])) != KEEL_OK) return st;
      b->n_shrunk++;
      if (w > 0 && (size_t)w < sizeof b->note)
        w += snprintf(b->note + w, sizeof b->note - (size_t)w, "; cache %s shrunk from %.1f to %.1f MiB", c->name,
                      MiB(c->asked), MiB(granted[i]));
    }
  }
  return KEEL_OK;
}

static keel_status read_options(keel_pipeline_t *p, uint64_t *limit, uint64_t *max_pause_ns, char *err,
                                size_t errlen) {
  static const char *const keys[] = {"budget", "max_pause_ms", NULL};
  int64_t ms;
  keel_status st = keel_config_check_keys(p->cfg, "memory", keys, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_size(p->cfg, "memory", "budget", 0, limit, err, errlen);
  if (st == KEEL_OK && *limit > (uint64_t)INT64_MAX) { /* the marks are compared with signed byte counts */
    snprintf(err, errlen, "[memory] budget = %llu bytes: at most %lld", (unsigned long long)*limit,
             (long long)INT64_MAX);
    st = KEEL_ECONFIG;
  }
  if (st == KEEL_OK)
    st = keel_config_get_int(p->cfg, "memory", "max_pause_ms", 1000, 1, 3600000, &ms, err, errlen);
  if (st == KEEL_OK) *max_pause_ns = (uint64_t)ms * 1000000u;
  return st;
}

keel_status keel__budget_setup(keel_pipeline_t *p, char *err, size_t errlen) {
  uint64_t limit = 0, max_pause_ns = 0;
  keel_status st = read_options(p, &limit, &max_pause_ns, err, errlen);
  if (st != KEEL_OK || !limit) return st;
  keel_budget_t *b = keel_mem_calloc(KEEL_MEM_PIPELINE, 1, sizeof *b);
  if (!b) return KEEL_ENOMEM;
  b->limit = limit;
  b->max_pause_ns = max_pause_ns;
  for (size_t i = 0; i < p->n_stages; i++) {
    if (!p->stages[i].memo) continue;
    keel_memo_stats ms;
    keel_memo_get_stats(p->stages[i].memo, &ms);
    b->c[b->n].memo = p->stages[i].memo;
    b->c[b->n].name = p->stages[i].def->name;
    b->c[b->n].asked = ms.max_bytes;
    b->n++;
  }
  keel_mem_stats t;
  keel_mem_total(&t);
  b->fixed_tracked = t.current > 0 ? (uint64_t)t.current : 0;
  b->fixed_run = run_allowance(p, b->n);
  uint64_t sixteenth = limit / 16;
  b->reserve = (sixteenth > (1u << 20) ? sixteenth : (1u << 20)) + (uint64_t)KEEL_MEM_PEAK_SLACK * (p->workers + 2);
  b->high = limit > b->reserve / 2 ? limit - b->reserve / 2 : 0;
  b->low = limit > 2 * b->reserve ? limit - 2 * b->reserve : 0;
  if ((st = plan(b, err, errlen)) != KEEL_OK) {
    keel_mem_free(b);
    return st;
  }
  p->budget = b;
  return KEEL_OK;
}

void keel__budget_destroy(keel_budget_t *b) { keel_mem_free(b); }

/* ---- run time ---- */

static int64_t tracked_now(keel_budget_t *b) {
  keel_mem_stats t;
  keel_mem_total(&t);
  int64_t m = atomic_load_explicit(&b->tracked_max, memory_order_relaxed);
  if (t.current > m) atomic_store_explicit(&b->tracked_max, t.current, memory_order_relaxed);
  return t.current;
}

/* Takes `need` bytes out of the caches, in proportion to their plans, none
 * below the floor. Returns 1 if some capacity went down. */
static int shrink(keel_budget_t *b, uint64_t need) {
  uint64_t sum = 0;
  for (size_t i = 0; i < b->n; i++) sum += b->c[i].granted;
  int any = 0;
  for (size_t i = 0; i < b->n && sum; i++) {
    budget_cache *c = &b->c[i];
    keel_memo_stats ms;
    keel_memo_get_stats(c->memo, &ms);
    uint64_t cut = (uint64_t)((double)need * ((double)c->granted / (double)sum)) + 1;
    uint64_t cap = atomic_load_explicit(&c->cap, memory_order_relaxed);
    uint64_t from = ms.bytes < cap ? ms.bytes : cap; /* shrink below what it holds, not its paper bound */
    uint64_t to = from > cut + KEEL_BUDGET_CACHE_FLOOR ? from - cut : KEEL_BUDGET_CACHE_FLOOR;
    if (to >= cap) continue;
    if (keel_memo_set_capacity(c->memo, to) != KEEL_OK) continue;
    atomic_store_explicit(&c->cap, to, memory_order_relaxed);
    any = 1;
  }
  if (any) bump(&b->shrinks, 1);
  return any;
}

void keel__budget_regrow_shares(uint64_t room, const uint64_t *cap, const uint64_t *granted, size_t n, uint64_t *add) {
  uint64_t want = 0;
  for (size_t i = 0; i < n; i++) want += cap[i] < granted[i] ? granted[i] - cap[i] : 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t gap = cap[i] < granted[i] ? granted[i] - cap[i] : 0;
    add[i] = room >= want ? gap : (uint64_t)((double)room * ((double)gap / (double)want));
    if (add[i] > gap) add[i] = gap; /* rounding */
  }
}

/* Gives caches shrunk at run time back some room once memory is calm. */
static void regrow(keel_budget_t *b, int64_t cur) {
  uint64_t t = now_ns();
  if (!b->calm_since) b->calm_since = t;
  if (t - b->calm_since < REGROW_AFTER_NS || (uint64_t)cur >= b->low) return;
  uint64_t cap[KEEL_PIPELINE_MAX_STAGES], granted[KEEL_PIPELINE_MAX_STAGES], add[KEEL_PIPELINE_MAX_STAGES];
  for (size_t i = 0; i < b->n; i++) {
    cap[i] = atomic_load_explicit(&b->c[i].cap, memory_order_relaxed);
    granted[i] = b->c[i].granted;
  }
  keel__budget_regrow_shares((b->low - (uint64_t)cur) / 2, cap, granted, b->n, add);
  int grew = 0;
  for (size_t i = 0; i < b->n; i++) {
    if (!add[i] || keel_memo_set_capacity(b->c[i].memo, cap[i] + add[i]) != KEEL_OK) continue;
    atomic_store_explicit(&b->c[i].cap, cap[i] + add[i], memory_order_relaxed);
    grew = 1;
  }
  if (grew) bump(&b->regrows, 1);
  b->calm_since = t;
}

static int stopping(keel_pipeline_t *p) { return atomic_load_explicit(&p->stop, memory_order_relaxed); }

/* Waits until memory is back under the high-water mark. With nothing in
 * flight and nothing left to shrink, gives up after max_pause_ns. */
static void pause_reader(keel_budget_t *b, keel_pipeline_t *p) {
  uint64_t t0 = now_ns(), idle0 = 0;
  bump(&b->pauses, 1);
  struct timespec nap = {0, 1000000};
  while (!stopping(p)) {
    nanosleep(&nap, NULL);
    int64_t cur = tracked_now(b);
    if (cur <= (int64_t)b->high) break;
    int shrunk = shrink(b, (uint64_t)cur - b->high + b->reserve / 4);
    int idle = keel__queue_depth(p->free_q) == p->n_batches;
    if (!idle || shrunk) {
      idle0 = 0;
      continue;
    }
    uint64_t t = now_ns();
    if (!idle0) idle0 = t;
    if (t - idle0 >= b->max_pause_ns) {
      bump(&b->overruns, 1);
      b->overrun_at = cur;
      break;
    }
  }
  bump(&b->paused_ns, now_ns() - t0);
}

void keel__budget_admit(keel_budget_t *b, keel_pipeline_t *p) {
  int64_t cur = tracked_now(b);
  if (cur <= (int64_t)b->high) {
    b->overrun_at = 0;
    if (cur < (int64_t)b->low) regrow(b, cur);
    else b->calm_since = 0;
    return;
  }
  b->calm_since = 0;
  /* Caches first: aim at the low-water mark so the next batches have room. */
  shrink(b, (uint64_t)cur - b->low);
  cur = tracked_now(b);
  /* After an overrun (memory over the mark with nothing in flight and the
   * caches at their floor: held by something the run cannot release),
   * pausing again helps only if memory grew since; else every batch would
   * wait max_pause for nothing. */
  if (cur > (int64_t)b->high && (!b->overrun_at || cur > b->overrun_at + (int64_t)(b->reserve / 4)))
    pause_reader(b, p);
}

keel_status keel_pipeline_budget_stats(const keel_pipeline_t *p, keel_budget_stats *out) {
  if (!p || !out) return KEEL_EINVAL;
  const keel_budget_t *b = p->budget;
  if (!b) return KEEL_ENOTFOUND;
  memset(out, 0, sizeof *out);
  out->limit = b->limit;
  out->fixed_tracked = b->fixed_tracked;
  out->fixed_run = b->fixed_run;
  out->reserve = b->reserve;
  out->cache_share = b->share;
  out->n_caches = b->n;
  out->n_shrunk = b->n_shrunk;
  for (size_t i = 0; i < b->n; i++) {
    out->caches_asked += b->c[i].asked;
    out->caches_granted += b->c[i].granted;
    out->caches_now += atomic_load_explicit(&b->c[i].cap, memory_order_relaxed);
  }
  out->shrinks = atomic_load_explicit(&b->shrinks, memory_order_relaxed);
  out->regrows = atomic_load_explicit(&b->regrows, memory_order_relaxed);
  out->pauses = atomic_load_explicit(&b->pauses, memory_order_relaxed);
  out->paused_s = (double)atomic_load_explicit(&b->paused_ns, memory_order_relaxed) / 1e9;
  out->overruns = atomic_load_explicit(&b->overruns, memory_order_relaxed);
  out->tracked_max = atomic_load_explicit(&b->tracked_max, memory_order_relaxed);
  snprintf(out->note, sizeof out->note, "%s", b->note);
  return KEEL_OK;
}
