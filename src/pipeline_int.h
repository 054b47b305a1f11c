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
#include "queue.h"

#define TEXT_TARGET (256u * 1024u) /* a batch stops filling past this much text */
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

typedef struct record {
  uint64_t line;
  size_t off, len;      /* raw line (or its kept prefix) in batch->text */
  size_t full_len;      /* the line's length, > len when too long */
  size_t out_off, out_len; /* output line in out, or reason in reasons */
  unsigned char too_long, rejected;
} record;

typedef struct batch {
  uint64_t seq;
  size_t n;
  record *rec; /* capacity: pipeline batch size */
  keel_buf text, out, reasons;
} batch;

typedef struct counters {
  _Atomic uint64_t calls, errors, cpu_ns;
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
  /* one run's state */
  keel_queue_t *free_q, *work_q, *done_q;
  batch *batches;
  batch **parked; /* the sink's reorder ring, n_batches slots */
  size_t n_batches;
  worker *w;
  _Atomic unsigned live_workers;
  keel_line_reader_t *reader;
  sigset_t caller_sigmask; /* the run's caller's mask, restored in the reader */
  uint64_t blank_lines, events_in;
  struct timespec first_read;
  _Atomic int have_first;
  keel_status read_status;
  char read_err[256];
};

/* Runs the stage chain over one event; on failure writes the reason. */
int keel__pipeline_process(struct keel_pipeline *p, worker *w, keel_event_t *ev, char *reason, size_t reason_len);

#endif
