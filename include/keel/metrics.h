/* keel/metrics.h — what a run looks like from outside: counters, gauges and
 * histograms in the Prometheus text exposition format, and the same figures
 * as one JSON line per sample.
 *
 * Two layers:
 *  - keel_metrics_t, a small registry of metric families (counter, gauge,
 *    histogram) and their samples, each with at most one label, written out
 *    in the Prometheus text format (version 0.0.4): HELP and TYPE once per
 *    family, a family's samples together, histograms as cumulative _bucket
 *    lines with le="+Inf", then _sum and _count. Names are checked against
 *    Prometheus's grammar; label values are escaped.
 *  - keel_metrics_sample, a snapshot of a pipeline (keel_pipeline_snapshot),
 *    the tracked memory per tag, RSS and the memory budget / leak-detector
 *    state, with keel_metrics_collect turning it into keel_* families and
 *    keel_metrics_sample_json into one JSON line (the --metrics-log format,
 *    the dashboard's series and `keel report`'s input).
 *
 * Series (all prefixed keel_; labels stage, cache, tag, queue):
 *   events_in_total, events_out_total, events_rejected_total, blank_lines_total,
 *   input_bytes_total, running, run_wall_seconds,
 *   stage_calls_total, stage_errors_total, stage_cpu_seconds_total,
 *   stage_latency_seconds (histogram),
 *   cache_hits_total, cache_misses_total, cache_evictions_total, cache_loads_total,
 *   cache_bytes, cache_max_bytes, cache_entries, cache_hit_ratio,
 *   memory_bytes, memory_peak_bytes, memory_allocations_total, memory_frees_total,
 *   memory_tracked_bytes, memory_tracked_peak_bytes, rss_bytes, rss_peak_bytes,
 *   queue_depth, queue_capacity, memory_budget_bytes, budget_pauses_total,
 *   budget_paused_seconds_total, budget_cache_shrinks_total, budget_overruns_total
 *   (when a budget is set),
 *   leak_detector_enabled, leak_suspected and leak_growth_bytes_per_second
 *   (per suspected tag);
 *   with the Redis L2: l2_hits_total, l2_misses_total, l2_rejected_total, l2_lock_waits_total,
 *   l2_errors_total, l2_degraded_total, l2_calls_total,
 *   l2_latency_seconds_total, l2_down; with a Redis stream: stream_* (the
 *   counters of keel_stream_stats; docs/DISTRIBUTED.md lists them).
 *
 * Thread safety: a keel_metrics_t is used by one thread at a time; taking a
 * sample is safe from any thread while the pipeline runs. */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/io.h"
#include "keel/mem.h"
#include "keel/pipeline.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_METRICS_MAX_LEAKS 16

typedef struct keel_metrics keel_metrics_t;

typedef enum keel_metric_type {
  KEEL_METRIC_COUNTER = 0,
  KEEL_METRIC_GAUGE,
  KEEL_METRIC_HISTOGRAM
} keel_metric_type;

/* A registry with no families. *out is owned (keel_metrics_destroy).
 * Memory is counted under the tag "metrics". */
KEEL_EXTERN keel_status keel_metrics_create(keel_metrics_t **out);
KEEL_EXTERN void keel_metrics_destroy(keel_metrics_t *m);

/* Drops every family and sample and keeps the memory, for the next scrape. */
KEEL_EXTERN void keel_metrics_reset(keel_metrics_t *m);

/* Adds one counter or gauge sample to family `name` (created at its first
 * sample with `help` and `type`; later samples must agree on the type).
 * `label` and `value_of_label` may be NULL for a sample without a label.
 * Strings are borrowed and copied. KEEL_EINVAL for a name or label outside
 * Prometheus's grammar, a type that disagrees with the family's, or a
 * counter that does not end in _total; KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_metrics_add(keel_metrics_t *m, keel_metric_type type, const char *name,
                                         const char *help, const char *label, const char *value_of_label,
                                         double value);

/* Adds one histogram sample: `counts` holds n + 1 non-cumulative bucket
 * counts for the n ascending upper `bounds` and +Inf; `sum` is the sum of
 * the observations. Arrays are borrowed and copied. */
KEEL_EXTERN keel_status keel_metrics_add_histogram(keel_metrics_t *m, const char *name, const char *help,
                                                   const char *label, const char *value_of_label,
                                                   const double *bounds, const uint64_t *counts, size_t n,
                                                   double sum);

/* Appends the Prometheus text exposition of every family to *out. */
KEEL_EXTERN keel_status keel_metrics_write_prometheus(const keel_metrics_t *m, keel_buf *out);

/* The memory budget and leak detector's state, where they exist: hooks for
 * their owners to fill. A zeroed struct means "no budget, no detector". */
typedef struct keel_metrics_leak {
  char tag[72];            /* the tag whose bytes keep growing, or "untracked" */
  double bytes_per_s;      /* fitted growth */
  double bytes_per_event;  /* growth per event, 0 when unknown */
} keel_metrics_leak;

typedef struct keel_metrics_mem_state {
  uint64_t budget_bytes;   /* 0: no budget */
  uint64_t budget_pauses;  /* times the budget paused the reader */
  uint64_t budget_shrinks; /* run-time cache shrinks */
  uint64_t budget_overruns; /* pauses given up */
  double budget_paused_s;  /* time the reader spent paused */
  int leak_detector;       /* a detector samples this process */
  size_t n_leaks;
  keel_metrics_leak leaks[KEEL_METRICS_MAX_LEAKS];
} keel_metrics_mem_state;

/* One tag's memory in a sample. */
typedef struct keel_metrics_tag {
  char name[72];
  keel_mem_stats st;
} keel_metrics_tag;

/* Everything one sample shows. Large (tens of KiB): allocate it, or keep one. */
typedef struct keel_metrics_sample {
  double t_s;            /* seconds since the observer started */
  double unix_s;         /* wall-clock time of the sample */
  double events_per_s;   /* events in over the last interval (keel_metrics_sample_rate) */
  int have_run;          /* `run` holds a pipeline snapshot */
  keel_run_stats run;
  uint64_t rss_bytes, rss_peak_bytes;
  keel_mem_stats tracked; /* everything keel's allocator tracks */
  unsigned n_tags;
  keel_metrics_tag tags[KEEL_MEM_MAX_TAGS];
  keel_metrics_mem_state mem;
} keel_metrics_sample;

/* Fills *out from pipeline `p` (borrowed; NULL for memory only), the
 * allocator's counters and /proc; `t_s` is stored as is. The memory state
 * (budget, leaks) is left zeroed for the caller to fill. Thread safety: any
 * thread, while p runs. */
KEEL_EXTERN keel_status keel_metrics_sample_take(keel_pipeline_t *p, double t_s, keel_metrics_sample *out);

/* Sets cur->events_per_s from the events read between prev and cur. */
KEEL_EXTERN void keel_metrics_sample_rate(const keel_metrics_sample *prev, keel_metrics_sample *cur);

/* Adds the keel_* families of a sample to m. */
KEEL_EXTERN keel_status keel_metrics_collect(keel_metrics_t *m, const keel_metrics_sample *s);

/* Appends one JSON object (no newline) with the sample's figures:
 * {"t":..,"unix":..,"events_in":..,"events_out":..,"rejected":..,"events_per_s":..,
 *  "running":..,"rss_bytes":..,"rss_peak_bytes":..,"tracked_bytes":..,"tracked_peak_bytes":..,
 *  "queue":{"work":..,"done":..,"free":..,"capacity":..},
 *  "mem":{"TAG":{"current":..,"peak":..},..},
 *  "stages":{"NAME":{"calls":..,"errors":..,"cpu_s":..,"latency_sum_s":..,"p50_s":..,"p99_s":..},..},
 *  "caches":{"STAGE":{"hits":..,"misses":..,"hit_ratio":..,"evictions":..,"bytes":..,"entries":..,
 *            "max_bytes":..},..},
 *  "budget_bytes":..,"leak_detector":..,"leaks":[{"tag":..,"bytes_per_s":..,"bytes_per_event":..},..]} */
KEEL_EXTERN keel_status keel_metrics_sample_json(const keel_metrics_sample *s, keel_buf *out);

/* The q-quantile (0..1) of a latency histogram from keel_stage_stats, by
 * linear interpolation inside the bucket; 0 with no calls. */
KEEL_EXTERN double keel_metrics_latency_quantile(const keel_stage_stats *st, double q);

#ifdef __cplusplus
}
#endif
#endif
