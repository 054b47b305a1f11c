/* pipeline_int.h — internals shared by pipeline.c (building) and
 * pipeline_run.c (running). See pipeline.c for the threads and ownership. */
#ifndef KEEL_PIPELINE_INT_H
#define KEEL_PIPELINE_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "keel/io.h"
#include "keel/memo.h"
#include "keel/pipeline.h"
#include "keel/redis.h"
#include "queue.h"

#define TEXT_TARGET (256u * 1024u) /* a batch stops filling past this much text */
#define BATCH_BUF_KEEP (2 * TEXT_TARGET) /* a pooled batch's buffer larger than this is freed */
#define KEEP_PREFIX 4096u          /* bytes of an over-long line kept for the dead-letter file */
#define REASON_MAX 512

typedef struct stage_slot {
  const keel_stage_def *def; /* borrowed from the registry */
  void *state;               /* from init(), destroyed with def->destroy */
  keel_field_id *ids;        /* reads then writes, owned */
  keel_stage_io io;          /* points into ids */
  keel_memo_t *memo;         /* owned; NULL when the stage is not memoized */
  int initialized;
} stage_slot;

/* Where a record came from in a Redis stream (redis_stream.c); all zero for
 * a file. kind: 0 an event, 1 a poison entry (delivered more than
 * max_deliveries times), 2 an entry without a "data" field, 3 an entry
 * deleted from the stream while pending (only its id is left). */
typedef struct stream_ref {
  uint64_t ms, seq;
  uint32_t deliveries;
  unsigned char has, kind;
} stream_ref;

typedef struct record {
  stream_ref sid;
  uint64_t line;
  size_t off, len;      /* raw line (or its kept prefix) in batch->text */
  size_t full_len;      /* the line's length, > len when too long */
  size_t out_off, out_len; /* output line in out, or reason in reasons */
  unsigned char too_long, rejected;
  unsigned char unread; /* no memory to carry the line's text: rejected as such */
} record;

typedef struct batch {
  uint64_t seq;
  size_t n;
  record *rec; /* capacity: pipeline batch size */
  keel_buf text, out, reasons;
} batch;

/* Written by one worker only (relaxed); read by the sink after the join and
 * by keel_pipeline_snapshot from any thread while the run goes on. */
#define CPU_SAMPLE 16

typedef struct counters {
  _Atomic uint64_t calls, errors;
  _Atomic uint64_t cpu_ns, cpu_samples; /* thread CPU of sampled calls (one in CPU_SAMPLE) */
  _Atomic uint64_t lat[KEEL_LATENCY_BUCKETS + 1], lat_ns;
} counters;

typedef struct worker {
  struct keel_pipeline *p;
  pthread_t thread;
  keel_event_t *ev;
  keel_memo_worker_t *mw[KEEL_PIPELINE_MAX_STAGES]; /* owned, for memoized stages */
  counters c[KEEL_PIPELINE_MAX_STAGES];
} worker;

struct keel_pipeline {
  const keel_registry_t *reg;
  const keel_config_t *cfg;
  keel_schema_t *schema;
  keel_field_id type_id;
  stage_slot stages[KEEL_PIPELINE_MAX_STAGES];
  size_t n_stages;
  int has_catch_all; /* some stage handles every event type */
  char known_types[256];
  keel_limits limits;
  unsigned workers;
  size_t batch_size;
  int ordered;
  int audit_strict;        /* an audit mismatch stops the run */
  _Atomic int audit_failed;
  _Atomic int stop;
  keel_l2_t *l2;           /* owned; NULL without [l2] url (redis_pipeline.c) */
  struct keel__stream_src *src_stream; /* owned during a run from redis://: the reader's source */
  struct keel__stream_out *out_stream; /* owned during a run to redis://: the sink's stream */
  keel_stream_stats stream_last;       /* the last stream run's counters (sink thread, after the run) */
  /* one run's state */
  keel_queue_t *free_q, *work_q, *done_q;
  batch *batches;
  batch **parked; /* the sink's reorder ring, n_batches slots */
  size_t n_batches;
  worker *w;
  _Atomic unsigned live_workers;
  keel_line_reader_t *reader;
  struct keel_budget *budget; /* owned; NULL without [memory] budget (budget.c) */
  sigset_t caller_sigmask; /* the run's caller's mask, restored in the reader */
  _Atomic uint64_t blank_lines, events_in, input_bytes; /* written by the reader only */
  _Atomic uint64_t events_out, rejected;                /* written by the sink only */
  /* snap_lock guards the existence of the run's workers and queues (alloc_run
   * and free_run hold it) for keel_pipeline_snapshot; `totals` keeps the
   * stage counters of finished runs' workers (folded in by free_run). */
  pthread_mutex_t snap_lock;
  int running;
  counters totals[KEEL_PIPELINE_MAX_STAGES];
  struct timespec first_read;
  _Atomic int have_first;
  keel_status read_status;
  char read_err[256];
};

/* Opens the L2 of the [l2] section into *out (NULL when there is none;
 * always without `connect`, which only checks the section: caching is
 * off); KEEL_ECONFIG/KEEL_EIO with a message (redis_pipeline.c). */
keel_status keel__pipeline_l2_open(const keel_config_t *cfg, int connect, keel_l2_t **out, char *err,
                                   size_t errlen);

/* The Redis stream source and sink (redis_stream.c). The source is read by
 * the reader thread (next) and acknowledged by the sink thread (ack, after
 * the batch's output and dead-letter records are written and flushed); the
 * two use separate connections. next returns KEEL_OK, KEEL_ELIMIT (a line
 * longer than max_line: len is its length), KEEL_EEOF (idle exit),
 * KEEL_ECANCELED (stop asked) or KEEL_EIO (Redis lost for longer than the
 * retry budget; message from keel__stream_src_error). */
typedef struct keel__stream_src keel__stream_src;
typedef struct keel__stream_out keel__stream_out;
keel_status keel__stream_src_open(struct keel_pipeline *p, const char *url, keel__stream_src **out, char *err,
                                  size_t errlen);
keel_status keel__stream_src_next(keel__stream_src *s, const char **line, size_t *len, uint64_t *no, stream_ref *ref);
const char *keel__stream_src_error(const keel__stream_src *s);
int keel__stream_src_pending(const keel__stream_src *s); /* entries buffered: next() will not block */
int keel__stream_src_fsync(const keel__stream_src *s);   /* [redis] fsync: sync the files before each ack */
keel_status keel__stream_src_ack(keel__stream_src *s, const batch *b, char *err, size_t errlen);
/* One attempt to read the group's pending count and lag again (the run's
 * end, before its summary); nothing without a stream source. */
void keel__stream_src_refresh(struct keel_pipeline *p);
void keel__stream_src_close(struct keel_pipeline *p);
keel_status keel__stream_out_open(struct keel_pipeline *p, const char *url, keel__stream_out **out, char *err,
                                  size_t errlen);
keel_status keel__stream_out_write(keel__stream_out *o, const batch *b, char *err, size_t errlen);
void keel__stream_out_close(struct keel_pipeline *p);
/* Adds the output stream's counters (written, errors, reconnects) to *out. */
void keel__stream_out_stats(const keel__stream_out *o, keel_stream_stats *out);
void keel__stream_src_stats(const keel__stream_src *s, keel_stream_stats *out);
/* Appends ',"stream_id":"MS-SEQ"' inside the output line that ends the
 * buffer (before its closing brace). */
keel_status keel__stream_tag_output(keel_buf *out, size_t line_off, const stream_ref *ref);
/* Fills st's l2 and stream members (any thread; redis_pipeline.c). */
void keel__pipeline_redis_stats(struct keel_pipeline *p, keel_run_stats *st);

/* Runs the stage chain over one event; on failure writes the reason. */
int keel__pipeline_process(struct keel_pipeline *p, worker *w, keel_event_t *ev, char *reason, size_t reason_len);

#endif
