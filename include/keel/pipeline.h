/* keel/pipeline.h — a chain of stages run by worker threads, streaming from
 * a source to a sink in bounded memory.
 *
 * Flow: a reader thread reads NDJSON lines into batches taken from a fixed
 * pool; workers parse each line into their own event, run the stage chain
 * and serialize the output line (or the dead-letter record) into the batch;
 * the calling thread is the sink: it writes batches in input order (or as
 * they come, unordered) and returns them to the pool. The pool's size bounds
 * everything in flight, so a slow sink pauses the reader (backpressure) and
 * memory does not grow with the input's length.
 *
 * Configuration ([pipeline] section, command line > file > defaults):
 *   stages = user,score,rank   the chain, in order (default: every registered stage)
 *   workers = N                worker threads (default 1)
 *   batch = N                  events per batch (default 64)
 *   ordered = true|false       output in input order (default true)
 *   cache = true|false         memoization on (default) or off (--no-cache)
 *   passthrough = true|false   copy input members no stage declares to the output (default false)
 * [cache.STAGE]: size (required, e.g. 64MiB), policy, ttl (e.g. 30s), idle
 * (expiry when not looked up, e.g. 10m), record_keys (a file), l2 (bool: use
 * the shared L2, default true), maintenance (auto|thread|caller);
 * [stage.NAME]: the stage's own settings (the keys its definition lists);
 * [memo]: audit_rate (0..1), audit_strict (bool);
 * [l2] url, ttl, lock_ttl, wait, timeout; [redis] stream options (keel/redis.h,
 * docs/DISTRIBUTED.md)
 * and [limits]: max_line, max_fields, max_string, max_vector, max_depth.
 * Thread safety: create, run and destroy on one thread; keel_pipeline_stop
 * may be called from any thread or a signal handler. */
#ifndef KEEL_PIPELINE_H
#define KEEL_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/config.h"
#include "keel/export.h"
#include "keel/memo.h"
#include "keel/redis.h"
#include "keel/stage.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_PIPELINE_MAX_STAGES 32
#define KEEL_PIPELINE_MAX_WORKERS 256

/* Stage latency histogram: wall time of each process() call (through the
 * cache when memoized), counted in KEEL_LATENCY_BUCKETS buckets whose upper
 * bounds keel_pipeline_latency_bounds() gives, plus one for the rest (+Inf). */
#define KEEL_LATENCY_BUCKETS 16

typedef struct keel_pipeline keel_pipeline_t;

/* Per-stage counters of a run. */
typedef struct keel_stage_stats {
  const char *name; /* borrowed from the definition */
  uint64_t calls;   /* process() calls */
  uint64_t errors;  /* events the stage failed */
  double cpu_s;     /* thread CPU time inside process() (through the cache if memoized) */
  int memoized;     /* the stage runs behind a cache; `cache` holds its counters */
  keel_memo_stats cache;
  uint64_t latency[KEEL_LATENCY_BUCKETS + 1]; /* calls per latency bucket (not cumulative); last: +Inf */
  double latency_sum_s;                      /* wall time of every call */
} keel_stage_stats;

/* Counters of one run. events_in = events_out + rejected + unrecorded,
 * except for a stream input's entries left pending (not acknowledged). */
typedef struct keel_run_stats {
  uint64_t events_in;   /* non-blank input lines */
  uint64_t events_out;  /* output lines written */
  uint64_t rejected;    /* dead-letter records written */
  uint64_t unrecorded;  /* a file input's events neither output nor in the dead-letter file: its
                           disk filled (the run failed saying from which line); 0 otherwise */
  uint64_t blank_lines; /* empty lines skipped, not events */
  double wall_s;        /* first line read to last output written */
  double cpu_s;         /* process CPU (user + system) over the run */
  uint64_t rss_peak_bytes;
  int interrupted;      /* keel_pipeline_stop ended the run early */
  int audit_failed;     /* a cache audit found a mismatch */
  size_t n_stages;
  keel_stage_stats stages[KEEL_PIPELINE_MAX_STAGES];
  /* Live view (keel_pipeline_snapshot): */
  int running;          /* a run is in progress */
  uint64_t input_bytes; /* bytes of input read so far (lines and their newlines) */
  size_t queue_work;    /* batches waiting for a worker */
  size_t queue_done;    /* batches waiting for the sink */
  size_t queue_free;    /* batches free in the pool */
  size_t batches;       /* the pool's size */
  /* Redis (keel/redis.h): the shared L2 ([l2] url) and the stream source/sink. */
  int l2_active;
  keel_l2_stats l2;
  keel_stream_stats stream;
} keel_run_stats;

/* Where a run reads and writes. Paths are borrowed; "-" is stdin for the
 * input and stdout for the output (a dead-letter file named "-" is a file).
 * An input or output of the form redis://HOST:PORT[/DB]?stream=S[&group=G
 * &consumer=C] is a Redis stream (docs/DISTRIBUTED.md, options in [redis]):
 * entries are read with a consumer group and acknowledged only after their
 * output (or dead-letter record) is written; each output line then carries
 * "stream_id". */
typedef struct keel_run_io {
  const char *input;       /* NDJSON events (a file, "-" or a redis:// stream) */
  const char *output;      /* NDJSON results (a file, "-" or a redis:// stream) */
  const char *dead_letter; /* NULL: OUTPUT.rejected.ndjson when the output is a
                              regular file, else keel-rejected.ndjson */
} keel_run_io;

/* The dead-letter file a run of io (borrowed) writes, its default
 * included, into buf (len bytes, NUL-terminated, cut to fit). */
KEEL_EXTERN void keel_run_dead_letter_path(const keel_run_io *io, char *buf, size_t len);

/* Builds and validates a pipeline from stage definitions (registry,
 * borrowed, must outlive the pipeline) and a configuration (borrowed, must
 * outlive it). Every stage's init() runs here. Before any event flows, it
 * refuses with KEEL_ECONFIG and one clear message in err: an unknown stage,
 * a stage listed twice, an UPSTREAM read no earlier stage writes, an unknown
 * or malformed [pipeline]/[limits] option, or a stage's own init error; but
 * KEEL_ENOMEM, with its message, when memory ran out (keel's own or a
 * stage's init returning it). *out is owned (keel_pipeline_destroy). */
KEEL_EXTERN keel_status keel_pipeline_create(const keel_registry_t *reg, const keel_config_t *cfg,
                                             keel_pipeline_t **out, char *err, size_t errlen);

/* Destroys every stage's state and everything the pipeline owns. */
KEEL_EXTERN void keel_pipeline_destroy(keel_pipeline_t *p);

/* Streams io->input through the chain to io->output. Returns KEEL_OK when
 * the input ended (or a stop was asked) and every accepted event is either
 * in the output or in the dead-letter file; *stats (may be NULL) gets the
 * counters, unless the run could not start (its input or output could not
 * be opened, or no memory for it): then *stats is left as it was. KEEL_EIO with err for an input that cannot be opened or an
 * output that cannot be written (the run stops; events in flight are
 * flushed where possible); KEEL_ECONFIG, before any file is opened for
 * writing, when one file would be two ends (the output is the input, or
 * the dead-letter file is either). May be called again for another run. */
KEEL_EXTERN keel_status keel_pipeline_run(keel_pipeline_t *p, const keel_run_io *io, keel_run_stats *stats,
                                          char *err, size_t errlen);

/* During a run, SIGINT and SIGTERM are blocked in every thread of the run
 * but the reader, so that a handler calling keel_pipeline_stop also
 * interrupts a read blocked on a pipe or FIFO. */

/* Asks a running pipeline to stop reading; events in flight finish and are
 * written. Asked between runs, it ends the next run before it reads a line
 * (stats.interrupted), so that a signal caught just before a run is not
 * lost. Async-signal-safe. */
KEEL_EXTERN void keel_pipeline_stop(keel_pipeline_t *p);

/* Fills *out with a live snapshot of the current run's counters (or, between
 * runs, of the last one's): events in/out/rejected, per-stage calls, errors
 * and latency histograms, cache counters, queue depths, input bytes read.
 * Counters are read without stopping the run, so they are each exact but not
 * mutually consistent (events_in may run ahead of events_out + rejected);
 * the stats keel_pipeline_run returns are. Thread safety: may be called from
 * any thread while another runs the pipeline (not while it is destroyed). */
KEEL_EXTERN keel_status keel_pipeline_snapshot(keel_pipeline_t *p, keel_run_stats *out);

/* The upper bounds, in seconds, of the latency buckets (borrowed, static,
 * KEEL_LATENCY_BUCKETS values ascending). */
KEEL_EXTERN const double *keel_pipeline_latency_bounds(void);

/* The resolved settings (for summaries); a stage's definition is borrowed
 * from the registry (NULL past the count). */
KEEL_EXTERN unsigned keel_pipeline_workers(const keel_pipeline_t *p);
KEEL_EXTERN size_t keel_pipeline_stage_count(const keel_pipeline_t *p);
KEEL_EXTERN const keel_stage_def *keel_pipeline_stage(const keel_pipeline_t *p, size_t i);

#ifdef __cplusplus
}
#endif
#endif
