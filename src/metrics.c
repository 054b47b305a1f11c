/* metrics.c — a registry of metric families written in the Prometheus text
 * exposition format, and keel's own series from a pipeline snapshot.
 *
 * The registry is three growable arrays (families, samples, histogram
 * buckets), rebuilt for every scrape: keel_metrics_reset keeps their memory,
 * so a scrape allocates only when the pipeline grew. Samples of a family are
 * chained in the order they were added, so the exposition keeps each
 * family's samples together, as the format requires, even when a collector
 * interleaves families. */
#include "keel/metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cnum_int.h"

#define NAME_MAX_LEN 96
#define HELP_MAX_LEN 200
#define LABEL_MAX_LEN 32
#define VALUE_MAX_LEN 96
#define NONE ((size_t)-1)

typedef struct family {
  char name[NAME_MAX_LEN];
  char help[HELP_MAX_LEN];
  keel_metric_type type;
  size_t first, last; /* sample chain */
} family;

typedef struct sample {
  size_t next;
  char label[LABEL_MAX_LEN];
  char value_of_label[VALUE_MAX_LEN];
  double value;        /* counter/gauge value, or a histogram's sum */
  size_t hist_off, hist_n; /* n bounds at hist_off in bounds[], n + 1 counts in counts[] */
} sample;

struct keel_metrics {
  keel_mem_tag tag;
  family *fam;
  size_t n_fam, cap_fam;
  sample *smp;
  size_t n_smp, cap_smp;
  double *bounds;   /* histogram bounds: n bounds at a sample's hist_off */
  uint64_t *counts; /* histogram counts: n + 1 at a sample's hist_off */
  size_t n_h, cap_b, cap_c; /* both arrays advance by n + 1 per histogram */
};

keel_status keel_metrics_create(keel_metrics_t **out) {
  if (!out) return KEEL_EINVAL;
  keel_mem_tag tag;
  keel_status st = keel_mem_tag_register("metrics", &tag);
  if (st != KEEL_OK) return st;
  keel_metrics_t *m = keel_mem_calloc(tag, 1, sizeof *m);
  if (!m) return KEEL_ENOMEM;
  m->tag = tag;
  *out = m;
  return KEEL_OK;
}

void keel_metrics_destroy(keel_metrics_t *m) {
  if (!m) return;
  keel_mem_free(m->fam);
  keel_mem_free(m->smp);
  keel_mem_free(m->bounds);
  keel_mem_free(m->counts);
  keel_mem_free(m);
}

void keel_metrics_reset(keel_metrics_t *m) {
  if (m) m->n_fam = m->n_smp = m->n_h = 0;
}

/* Grows *arr (of `elem`-byte items) to hold `need` items. */
static keel_status grow(keel_mem_tag tag, void **arr, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return KEEL_OK;
  size_t n = *cap ? *cap * 2 : 32;
  while (n < need) n *= 2;
  if (n > SIZE_MAX / elem) return KEEL_ENOMEM;
  void *p = keel_mem_realloc(tag, *arr, n * elem);
  if (!p) return KEEL_ENOMEM;
  *arr = p;
  *cap = n;
  return KEEL_OK;
}

static int name_ok(const char *s, int colons) {
  if (!s || !*s || strlen(s) >= NAME_MAX_LEN) return 0;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colons && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* Finds or creates the family; KEEL_EINVAL on a type clash. */
static keel_status family_of(keel_metrics_t *m, keel_metric_type type, const char *name, const char *help,
                             size_t *out) {
  for (size_t i = 0; i < m->n_fam; i++)
    if (!strcmp(m->fam[i].name, name)) {
      if (m->fam[i].type != type) return KEEL_EINVAL;
      *out = i;
      return KEEL_OK;
    }
  if (!name_ok(name, 1)) return KEEL_EINVAL;
  if (type == KEEL_METRIC_COUNTER && !ends_with(name, "_total")) return KEEL_EINVAL;
  if (type != KEEL_METRIC_COUNTER && ends_with(name, "_total")) return KEEL_EINVAL;
  keel_status st = grow(m->tag, (void **)&m->fam, &m->cap_fam, m->n_fam + 1, sizeof *m->fam);
  if (st != KEEL_OK) return st;
  family *f = &m->fam[m->n_fam];
  snprintf(f->name, sizeof f->name, "%s", name);
  snprintf(f->help, sizeof f->help, "%s", help ? help : "");
  f->type = type;
  f->first = f->last = NONE;
  *out = m->n_fam++;
  return KEEL_OK;
}

static keel_status add_sample(keel_metrics_t *m, keel_metric_type type, const char *name, const char *help,
                              const char *label, const char *lv, sample **out) {
  if (!m || !name) return KEEL_EINVAL;
  if (label && (!name_ok(label, 0) || !strncmp(label, "__", 2) || strlen(label) >= LABEL_MAX_LEN)) return KEEL_EINVAL;
  if (label && (!lv || strlen(lv) >= VALUE_MAX_LEN)) return KEEL_EINVAL;
  if (type == KEEL_METRIC_HISTOGRAM && label && !strcmp(label, "le")) return KEEL_EINVAL;
  size_t fi;
  keel_status st = grow(m->tag, (void **)&m->smp, &m->cap_smp, m->n_smp + 1, sizeof *m->smp);
  if (st == KEEL_OK) st = family_of(m, type, name, help, &fi);
  if (st != KEEL_OK) return st;
  sample *s = &m->smp[m->n_smp];
  memset(s, 0, sizeof *s);
  s->next = NONE;
  if (label) {
    snprintf(s->label, sizeof s->label, "%s", label);
    snprintf(s->value_of_label, sizeof s->value_of_label, "%s", lv);
  }
  family *f = &m->fam[fi];
  if (f->last == NONE) f->first = m->n_smp;
  else m->smp[f->last].next = m->n_smp;
  f->last = m->n_smp++;
  *out = s;
  return KEEL_OK;
}

keel_status keel_metrics_add(keel_metrics_t *m, keel_metric_type type, const char *name, const char *help,
                             const char *label, const char *value_of_label, double value) {
  if (type != KEEL_METRIC_COUNTER && type != KEEL_METRIC_GAUGE) return KEEL_EINVAL; /* histograms have their own call */
  sample *s;
  keel_status st = add_sample(m, type, name, help, label, value_of_label, &s);
  if (st == KEEL_OK) s->value = value;
  return st;
}

keel_status keel_metrics_add_histogram(keel_metrics_t *m, const char *name, const char *help, const char *label,
                                       const char *value_of_label, const double *bounds, const uint64_t *counts,
                                       size_t n, double sum) {
  if (!m || (n && !bounds) || !counts) return KEEL_EINVAL;
  for (size_t i = 1; i < n; i++)
    if (!(bounds[i] > bounds[i - 1])) return KEEL_EINVAL;
  keel_status st = grow(m->tag, (void **)&m->bounds, &m->cap_b, m->n_h + n + 1, sizeof *m->bounds);
  if (st == KEEL_OK) st = grow(m->tag, (void **)&m->counts, &m->cap_c, m->n_h + n + 1, sizeof *m->counts);
  if (st != KEEL_OK) return st;
  sample *s;
  if ((st = add_sample(m, KEEL_METRIC_HISTOGRAM, name, help, label, value_of_label, &s)) != KEEL_OK) return st;
  s->hist_off = m->n_h;
  s->hist_n = n;
  s->value = sum;
  if (n) memcpy(m->bounds + m->n_h, bounds, n * sizeof *bounds);
  memcpy(m->counts + m->n_h, counts, (n + 1) * sizeof *counts);
  m->n_h += n + 1;
  return KEEL_OK;
}

/* Integers print exactly; other values with enough digits to round-trip. */
static keel_status put_number(keel_buf *b, double v) {
  if (isnan(v)) return keel_buf_appendf(b, "NaN");
  if (isinf(v)) return keel_buf_appendf(b, v > 0 ? "+Inf" : "-Inf");
  if (v == floor(v) && fabs(v) < 1e15) return keel_buf_appendf(b, "%.0f", v);
  return keel_buf_appendf(b, "%.15g", v);
}

static keel_status put_escaped(keel_buf *b, const char *s, int quotes) {
  keel_status st = KEEL_OK;
  for (; *s && st == KEEL_OK; s++) {
    if (*s == '\\') st = keel_buf_append(b, "\\\\", 2);
    else if (*s == '\n') st = keel_buf_append(b, "\\n", 2);
    else if (*s == '"' && quotes) st = keel_buf_append(b, "\\\"", 2);
    else st = keel_buf_append(b, s, 1);
  }
  return st;
}

/* name{label="value",le="bound"} — `le` may be NULL. */
static keel_status put_series(keel_buf *b, const char *name, const char *suffix, const sample *s, const char *le) {
  keel_status st = keel_buf_appendf(b, "%s%s", name, suffix);
  if (st != KEEL_OK || (!s->label[0] && !le)) return st;
  st = keel_buf_append(b, "{", 1);
  if (st == KEEL_OK && s->label[0]) {
    st = keel_buf_appendf(b, "%s=\"", s->label);
    if (st == KEEL_OK) st = put_escaped(b, s->value_of_label, 1);
    if (st == KEEL_OK) st = keel_buf_appendf(b, "\"%s", le ? "," : "");
  }
  if (st == KEEL_OK && le) st = keel_buf_appendf(b, "le=\"%s\"", le);
  if (st == KEEL_OK) st = keel_buf_append(b, "}", 1);
  return st;
}

static keel_status put_histogram(const keel_metrics_t *m, keel_buf *b, const family *f, const sample *s) {
  keel_status st = KEEL_OK;
  uint64_t cum = 0;
  char le[48];
  for (size_t i = 0; i <= s->hist_n && st == KEEL_OK; i++) {
    cum += m->counts[s->hist_off + i];
    if (i < s->hist_n) {
      locale_t was = keel__cnum_begin();
      snprintf(le, sizeof le, "%.15g", m->bounds[s->hist_off + i]);
      keel__cnum_end(was);
    }
    else snprintf(le, sizeof le, "+Inf");
    st = put_series(b, f->name, "_bucket", s, le);
    if (st == KEEL_OK) st = keel_buf_appendf(b, " %llu\n", (unsigned long long)cum);
  }
  if (st == KEEL_OK) st = put_series(b, f->name, "_sum", s, NULL);
  if (st == KEEL_OK) st = keel_buf_append(b, " ", 1);
  if (st == KEEL_OK) st = put_number(b, s->value);
  if (st == KEEL_OK) st = keel_buf_append(b, "\n", 1);
  if (st == KEEL_OK) st = put_series(b, f->name, "_count", s, NULL);
  if (st == KEEL_OK) st = keel_buf_appendf(b, " %llu\n", (unsigned long long)cum);
  return st;
}

keel_status keel_metrics_write_prometheus(const keel_metrics_t *m, keel_buf *out) {
  if (!m || !out) return KEEL_EINVAL;
  static const char *const type_names[] = {"counter", "gauge", "histogram"};
  keel_status st = KEEL_OK;
  for (size_t i = 0; i < m->n_fam && st == KEEL_OK; i++) {
    const family *f = &m->fam[i];
    st = keel_buf_appendf(out, "# HELP %s ", f->name);
    if (st == KEEL_OK) st = put_escaped(out, f->help, 0);
    if (st == KEEL_OK) st = keel_buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    for (size_t k = f->first; k != NONE && st == KEEL_OK; k = m->smp[k].next) {
      const sample *s = &m->smp[k];
      if (f->type == KEEL_METRIC_HISTOGRAM) {
        st = put_histogram(m, out, f, s);
        continue;
      }
      st = put_series(out, f->name, "", s, NULL);
      if (st == KEEL_OK) st = keel_buf_append(out, " ", 1);
      if (st == KEEL_OK) st = put_number(out, s->value);
      if (st == KEEL_OK) st = keel_buf_append(out, "\n", 1);
    }
  }
  return st;
}

/* ---- keel's series ---- */

keel_status keel_metrics_sample_take(keel_pipeline_t *p, double t_s, keel_metrics_sample *out) {
  if (!out) return KEEL_EINVAL;
  memset(out, 0, sizeof *out);
  out->t_s = t_s;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  out->unix_s = (double)now.tv_sec + now.tv_nsec / 1e9;
  if (p) {
    keel_status st = keel_pipeline_snapshot(p, &out->run);
    if (st != KEEL_OK) return st;
    out->have_run = 1;
  }
  out->rss_bytes = keel_mem_rss_bytes();
  out->rss_peak_bytes = keel_mem_rss_peak_bytes();
  keel_mem_total(&out->tracked);
  unsigned n = keel_mem_tag_count();
  for (unsigned i = 0; i < n && out->n_tags < KEEL_MEM_MAX_TAGS; i++) {
    keel_metrics_tag *t = &out->tags[out->n_tags];
    if (keel_mem_tag_stats((keel_mem_tag)i, &t->st) != KEEL_OK) continue;
    snprintf(t->name, sizeof t->name, "%s", keel_mem_tag_name((keel_mem_tag)i));
    out->n_tags++;
  }
  return KEEL_OK;
}

void keel_metrics_sample_rate(const keel_metrics_sample *prev, keel_metrics_sample *cur) {
  if (!prev || !cur) return;
  double dt = cur->t_s - prev->t_s;
  if (dt <= 0 || cur->run.events_in < prev->run.events_in) return;
  cur->events_per_s = (double)(cur->run.events_in - prev->run.events_in) / dt;
}

typedef struct collector {
  keel_metrics_t *m;
  keel_status st;
} collector;

static void put(collector *c, keel_metric_type t, const char *name, const char *help, const char *label,
                const char *lv, double v) {
  if (c->st == KEEL_OK) c->st = keel_metrics_add(c->m, t, name, help, label, lv, v);
}

#define C KEEL_METRIC_COUNTER
#define G KEEL_METRIC_GAUGE

static void collect_run(collector *c, const keel_run_stats *r) {
  put(c, C, "keel_events_in_total", "Non-blank input lines read.", NULL, NULL, (double)r->events_in);
  put(c, C, "keel_events_out_total", "Output lines written.", NULL, NULL, (double)r->events_out);
  put(c, C, "keel_events_rejected_total", "Dead-letter records written.", NULL, NULL, (double)r->rejected);
  put(c, C, "keel_blank_lines_total", "Empty input lines skipped.", NULL, NULL, (double)r->blank_lines);
  put(c, C, "keel_input_bytes_total", "Bytes of input read.", NULL, NULL, (double)r->input_bytes);
  put(c, G, "keel_running", "1 while a run is in progress.", NULL, NULL, r->running);
  put(c, G, "keel_run_wall_seconds", "Seconds since the run's first event.", NULL, NULL, r->wall_s);
  static const char *const qn[] = {"work", "done", "free"};
  size_t qd[] = {r->queue_work, r->queue_done, r->queue_free};
  for (size_t i = 0; i < 3; i++)
    put(c, G, "keel_queue_depth", "Batches in each queue between the pipeline's threads.", "queue", qn[i],
        (double)qd[i]);
  put(c, G, "keel_queue_capacity", "Batches in the pool (bounds every queue).", NULL, NULL, (double)r->batches);
  for (size_t i = 0; i < r->n_stages; i++) {
    const keel_stage_stats *x = &r->stages[i];
    put(c, C, "keel_stage_calls_total", "process() calls per stage.", "stage", x->name, (double)x->calls);
    put(c, C, "keel_stage_errors_total", "Events a stage failed.", "stage", x->name, (double)x->errors);
    put(c, C, "keel_stage_cpu_seconds_total", "Thread CPU time inside a stage.", "stage", x->name, x->cpu_s);
    if (c->st == KEEL_OK)
      c->st = keel_metrics_add_histogram(c->m, "keel_stage_latency_seconds", "Wall time of a stage's calls.",
                                         "stage", x->name, keel_pipeline_latency_bounds(), x->latency,
                                         KEEL_LATENCY_BUCKETS, x->latency_sum_s);
  }
  for (size_t i = 0; i < r->n_stages; i++) {
    const keel_stage_stats *x = &r->stages[i];
    const keel_memo_stats *k = &x->cache;
    if (!x->memoized) continue;
    put(c, C, "keel_cache_hits_total", "Cache hits of a memoized stage.", "cache", x->name, (double)k->hits);
    put(c, C, "keel_cache_misses_total", "Cache misses of a memoized stage.", "cache", x->name, (double)k->misses);
    put(c, C, "keel_cache_evictions_total", "Entries evicted.", "cache", x->name, (double)k->evictions);
    put(c, C, "keel_cache_loads_total", "Values computed on a miss.", "cache", x->name, (double)k->loads);
    put(c, G, "keel_cache_bytes", "Bytes the cache holds.", "cache", x->name, (double)k->bytes);
    put(c, G, "keel_cache_max_bytes", "The cache's byte bound.", "cache", x->name, (double)k->max_bytes);
    put(c, G, "keel_cache_entries", "Entries the cache holds.", "cache", x->name, (double)k->entries);
    put(c, G, "keel_cache_hit_ratio", "hits / (hits + misses) since the start.", "cache", x->name, k->hit_ratio);
  }
}

/* The shared L2 and the Redis stream source/sink (keel/redis.h), when used. */
static void collect_redis(collector *c, const keel_run_stats *r) {
  const keel_l2_stats *l = &r->l2;
  if (r->l2_active) {
    put(c, C, "keel_l2_hits_total", "L1 misses answered by the Redis L2.", NULL, NULL, (double)l->hits);
    put(c, C, "keel_l2_misses_total", "L1 misses the L2 did not have (computed here).", NULL, NULL, (double)l->misses);
    put(c, C, "keel_l2_rejected_total", "L2 values refused as not an encoding of the stage's writes (computed here).",
        NULL, NULL, (double)l->rejected);
    put(c, C, "keel_l2_lock_waits_total", "L2 misses that waited for another process's result.", NULL, NULL,
        (double)l->lock_waits);
    put(c, C, "keel_l2_errors_total", "Failed L2 commands.", NULL, NULL, (double)l->errors);
    put(c, C, "keel_l2_degraded_total", "Lookups skipped while Redis was down (L1 only).", NULL, NULL,
        (double)l->degraded);
    put(c, C, "keel_l2_calls_total", "L2 round trips.", NULL, NULL, (double)l->calls);
    put(c, C, "keel_l2_latency_seconds_total", "Wall time of the L2 round trips.", NULL, NULL, l->latency_s);
    put(c, G, "keel_l2_down", "1 while the L2 is unreachable.", NULL, NULL, l->down);
  }
  const keel_stream_stats *x = &r->stream;
  if (!x->active) return;
  put(c, C, "keel_stream_read_total", "Stream entries delivered to this consumer.", NULL, NULL, (double)x->read);
  put(c, C, "keel_stream_acked_total", "Entries acknowledged after their output was written.", NULL, NULL,
      (double)x->acked);
  put(c, C, "keel_stream_claimed_total", "Entries claimed from idle consumers.", NULL, NULL, (double)x->claimed);
  put(c, C, "keel_stream_redeliveries_total", "Entries delivered more than once.", NULL, NULL,
      (double)x->redeliveries);
  put(c, C, "keel_stream_dead_lettered_total", "Poison entries sent to the dead-letter file.", NULL, NULL,
      (double)x->dead_lettered);
  put(c, C, "keel_stream_deleted_total",
      "Pending entries deleted from the stream before they were processed (dead-lettered without data).", NULL,
      NULL, (double)x->deleted);
  put(c, C, "keel_stream_errors_total", "Failed stream commands.", NULL, NULL, (double)x->errors);
  put(c, C, "keel_stream_written_total", "Entries added to the output stream.", NULL, NULL, (double)x->written);
  put(c, G, "keel_stream_pending", "The group's pending entries (-1 unknown).", NULL, NULL, (double)x->pending);
  put(c, G, "keel_stream_lag", "Entries not yet delivered to the group (-1 unknown).", NULL, NULL, (double)x->lag);
}

static void collect_mem(collector *c, const keel_metrics_sample *s) {
  for (unsigned i = 0; i < s->n_tags; i++) {
    const keel_metrics_tag *t = &s->tags[i];
    put(c, G, "keel_memory_bytes", "Live bytes allocated under a tag.", "tag", t->name, (double)t->st.current);
    put(c, G, "keel_memory_peak_bytes", "Highest live bytes of a tag.", "tag", t->name, (double)t->st.peak);
    put(c, C, "keel_memory_allocations_total", "Allocations under a tag.", "tag", t->name, (double)t->st.allocs);
    put(c, C, "keel_memory_frees_total", "Frees under a tag.", "tag", t->name, (double)t->st.frees);
  }
  put(c, G, "keel_memory_tracked_bytes", "Live bytes keel's allocator tracks.", NULL, NULL, (double)s->tracked.current);
  put(c, G, "keel_memory_tracked_peak_bytes", "Highest tracked live bytes.", NULL, NULL, (double)s->tracked.peak);
  put(c, G, "keel_rss_bytes", "Resident set size of the process.", NULL, NULL, (double)s->rss_bytes);
  put(c, G, "keel_rss_peak_bytes", "Peak resident set size (VmHWM).", NULL, NULL, (double)s->rss_peak_bytes);
  if (s->mem.budget_bytes) {
    put(c, G, "keel_memory_budget_bytes", "The process's memory budget.", NULL, NULL, (double)s->mem.budget_bytes);
    put(c, C, "keel_budget_pauses_total", "Times the budget paused the reader.", NULL, NULL,
        (double)s->mem.budget_pauses);
    put(c, C, "keel_budget_paused_seconds_total", "Time the reader spent paused by the budget.", NULL, NULL,
        s->mem.budget_paused_s);
    put(c, C, "keel_budget_cache_shrinks_total", "Caches shrunk to hold the budget.", NULL, NULL,
        (double)s->mem.budget_shrinks);
    put(c, C, "keel_budget_overruns_total", "Pauses given up with nothing left to shrink.", NULL, NULL,
        (double)s->mem.budget_overruns);
  }
  put(c, G, "keel_leak_detector_enabled", "1 when a leak detector samples this process.", NULL, NULL,
      s->mem.leak_detector ? 1 : 0);
  for (size_t i = 0; i < s->mem.n_leaks && i < KEEL_METRICS_MAX_LEAKS; i++)
    put(c, G, "keel_leak_suspected", "1 for a tag whose bytes keep growing.", "tag", s->mem.leaks[i].tag, 1);
  for (size_t i = 0; i < s->mem.n_leaks && i < KEEL_METRICS_MAX_LEAKS; i++)
    put(c, G, "keel_leak_growth_bytes_per_second", "Fitted growth of a suspected leak.", "tag",
        s->mem.leaks[i].tag, s->mem.leaks[i].bytes_per_s);
}

#undef C
#undef G

keel_status keel_metrics_collect(keel_metrics_t *m, const keel_metrics_sample *s) {
  if (!m || !s) return KEEL_EINVAL;
  collector c = {m, KEEL_OK};
  if (s->have_run) collect_run(&c, &s->run);
  if (s->have_run) collect_redis(&c, &s->run);
  collect_mem(&c, s);
  return c.st;
}

double keel_metrics_latency_quantile(const keel_stage_stats *st, double q) {
  const double *bounds = keel_pipeline_latency_bounds();
  uint64_t total = 0;
  for (size_t i = 0; i <= KEEL_LATENCY_BUCKETS; i++) total += st->latency[i];
  if (!total) return 0;
  double want = q * (double)total, cum = 0;
  for (size_t i = 0; i < KEEL_LATENCY_BUCKETS; i++) {
    double n = (double)st->latency[i];
    if (n > 0 && cum + n >= want) {
      double lo = i ? bounds[i - 1] : 0;
      return lo + (bounds[i] - lo) * ((want - cum) / n);
    }
    cum += n;
  }
  return bounds[KEEL_LATENCY_BUCKETS - 1];
}

/* ---- JSON line ---- */

static keel_status json_key(keel_buf *b, int first, const char *name) {
  keel_status st = first ? KEEL_OK : keel_buf_append(b, ",", 1);
  if (st == KEEL_OK) st = keel_buf_append_json_string(b, name, strlen(name));
  if (st == KEEL_OK) st = keel_buf_append(b, ":", 1);
  return st;
}

/* JSON has no NaN or infinities. */
static double fin(double v) { return isfinite(v) ? v : 0; }

static keel_status json_stages(keel_buf *b, const keel_run_stats *r) {
  keel_status st = keel_buf_appendf(b, ",\"stages\":{");
  for (size_t i = 0; i < r->n_stages && st == KEEL_OK; i++) {
    const keel_stage_stats *x = &r->stages[i];
    st = json_key(b, i == 0, x->name);
    if (st == KEEL_OK)
      st = keel_buf_appendf(b, "{\"calls\":%llu,\"errors\":%llu,\"cpu_s\":%.6f,\"latency_sum_s\":%.6f,"
                               "\"p50_s\":%.9f,\"p99_s\":%.9f}",
                            (unsigned long long)x->calls, (unsigned long long)x->errors, fin(x->cpu_s),
                            fin(x->latency_sum_s), keel_metrics_latency_quantile(x, 0.5),
                            keel_metrics_latency_quantile(x, 0.99));
  }
  if (st == KEEL_OK) st = keel_buf_appendf(b, "},\"caches\":{");
  int first = 1;
  for (size_t i = 0; i < r->n_stages && st == KEEL_OK; i++) {
    const keel_stage_stats *x = &r->stages[i];
    const keel_memo_stats *k = &x->cache;
    if (!x->memoized) continue;
    st = json_key(b, first, x->name);
    first = 0;
    if (st == KEEL_OK)
      st = keel_buf_appendf(b, "{\"hits\":%llu,\"misses\":%llu,\"hit_ratio\":%.6f,\"evictions\":%llu,"
                               "\"bytes\":%llu,\"entries\":%llu,\"max_bytes\":%llu}",
                            (unsigned long long)k->hits, (unsigned long long)k->misses, fin(k->hit_ratio),
                            (unsigned long long)k->evictions, (unsigned long long)k->bytes,
                            (unsigned long long)k->entries, (unsigned long long)k->max_bytes);
  }
  if (st == KEEL_OK) st = keel_buf_append(b, "}", 1);
  return st;
}

static keel_status json_mem(keel_buf *b, const keel_metrics_sample *s) {
  keel_status st = keel_buf_appendf(b, ",\"mem\":{");
  for (unsigned i = 0; i < s->n_tags && st == KEEL_OK; i++) {
    st = json_key(b, i == 0, s->tags[i].name);
    if (st == KEEL_OK)
      st = keel_buf_appendf(b, "{\"current\":%lld,\"peak\":%lld}", (long long)s->tags[i].st.current,
                            (long long)s->tags[i].st.peak);
  }
  if (st == KEEL_OK)
    st = keel_buf_appendf(b,
                          "},\"budget_bytes\":%llu,\"budget_pauses\":%llu,\"budget_paused_s\":%.3f,"
                          "\"budget_shrinks\":%llu,\"leak_detector\":%s,\"leaks\":[",
                          (unsigned long long)s->mem.budget_bytes, (unsigned long long)s->mem.budget_pauses,
                          fin(s->mem.budget_paused_s), (unsigned long long)s->mem.budget_shrinks,
                          s->mem.leak_detector ? "true" : "false");
  for (size_t i = 0; i < s->mem.n_leaks && i < KEEL_METRICS_MAX_LEAKS && st == KEEL_OK; i++) {
    const keel_metrics_leak *l = &s->mem.leaks[i];
    st = keel_buf_appendf(b, "%s{\"tag\":", i ? "," : "");
    if (st == KEEL_OK) st = keel_buf_append_json_string(b, l->tag, strlen(l->tag));
    if (st == KEEL_OK)
      st = keel_buf_appendf(b, ",\"bytes_per_s\":%.3f,\"bytes_per_event\":%.3f}", fin(l->bytes_per_s),
                            fin(l->bytes_per_event));
  }
  if (st == KEEL_OK) st = keel_buf_append(b, "]", 1);
  return st;
}

keel_status keel_metrics_sample_json(const keel_metrics_sample *s, keel_buf *out) {
  if (!s || !out) return KEEL_EINVAL;
  const keel_run_stats *r = &s->run;
  keel_status st = keel_buf_appendf(
      out,
      "{\"t\":%.3f,\"unix\":%.3f,\"events_in\":%llu,\"events_out\":%llu,\"rejected\":%llu,\"events_per_s\":%.3f,"
      "\"running\":%s,\"input_bytes\":%llu,\"rss_bytes\":%llu,\"rss_peak_bytes\":%llu,\"tracked_bytes\":%lld,"
      "\"tracked_peak_bytes\":%lld,\"queue\":{\"work\":%zu,\"done\":%zu,\"free\":%zu,\"capacity\":%zu}",
      fin(s->t_s), fin(s->unix_s), (unsigned long long)r->events_in, (unsigned long long)r->events_out,
      (unsigned long long)r->rejected, fin(s->events_per_s), r->running ? "true" : "false",
      (unsigned long long)r->input_bytes, (unsigned long long)s->rss_bytes, (unsigned long long)s->rss_peak_bytes,
      (long long)s->tracked.current, (long long)s->tracked.peak, r->queue_work, r->queue_done, r->queue_free,
      r->batches);
  if (st == KEEL_OK) st = json_mem(out, s);
  if (st == KEEL_OK) st = json_stages(out, r);
  if (st == KEEL_OK) st = keel_buf_append(out, "}", 1);
  return st;
}
