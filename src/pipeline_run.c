/* pipeline_run.c — one run of a pipeline: reader, workers, sink.
 * The threads, the batch pool and who owns what are described in pipeline.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget_int.h"
#include "keel/io.h"
#include "keel/mem.h"
#include "pipeline_int.h"
#include "stage_int.h"

static double since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double process_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void bump(_Atomic uint64_t *c, uint64_t by) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

/* Upper bounds of the latency buckets, in ns and in s (the same values). */
static const uint64_t lat_bound_ns[KEEL_LATENCY_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 5000000, 10000000, 25000000, 100000000, 1000000000};
static const double lat_bound_s[KEEL_LATENCY_BUCKETS] = {
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0};

const double *keel_pipeline_latency_bounds(void) { return lat_bound_s; }

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void record_latency(counters *c, uint64_t ns) {
  size_t b = 0;
  while (b < KEEL_LATENCY_BUCKETS && ns > lat_bound_ns[b]) b++;
  bump(&c->lat[b], 1);
  bump(&c->lat_ns, ns);
}

/* ---- one event through the chain ---- */

static int type_is(const keel_value *type, const char *want) {
  return type->type == KEEL_FIELD_STRING && strlen(want) == type->u.str.len &&
         memcmp(type->u.str.ptr, want, type->u.str.len) == 0;
}

/* Checks the fields a stage reads, just before it runs; converts an INT
 * given for a FLOAT, and an empty array (JSON `[]`, which parses as an empty
 * vector) given for ids. An UPSTREAM field may be absent (its writer did not
 * run for this event type, or chose not to write), but one that is there is
 * checked like any other: else an input field of that name, of any type,
 * would reach a stage that reads it as the declared type. */
static int check_reads(const stage_slot *s, keel_event_t *ev, char *reason, size_t len) {
  const keel_stage_def *d = s->def;
  for (size_t i = 0; i < d->n_reads; i++) {
    const keel_field_spec *f = &d->reads[i];
    keel_value v;
    if (!keel_event_get(ev, s->io.reads[i], &v)) {
      if (f->required != KEEL_FIELD_REQUIRED) continue;
      snprintf(reason, len, "missing required field '%s'", f->name);
      return 0;
    }
    if (v.type == f->type) continue;
    if (f->type == KEEL_FIELD_FLOAT && v.type == KEEL_FIELD_INT &&
        keel_event_set_float(ev, s->io.reads[i], (double)v.u.i) == KEEL_OK)
      continue;
    if (f->type == KEEL_FIELD_IDS && v.type == KEEL_FIELD_VECTOR && v.u.vec.len == 0 &&
        keel_event_set_ids(ev, s->io.reads[i], NULL, 0) == KEEL_OK)
      continue;
    snprintf(reason, len, "field '%s': expected %s, got %s", f->name, keel_field_type_name(f->type),
             keel_field_type_name(v.type));
    return 0;
  }
  return 1;
}

static int run_stage(const stage_slot *s, worker *w, size_t i, keel_event_t *ev, char *reason, size_t len) {
  counters *c = &w->c[i];
  /* The thread CPU clock is a real system call (1-2 us here, more than a
   * cheap stage costs), so CPU is sampled on one call in CPU_SAMPLE and
   * scaled by calls / samples when read; latency uses the vDSO clock. */
  int sample = (atomic_load_explicit(&c->calls, memory_order_relaxed) % CPU_SAMPLE) == 0;
  uint64_t t0 = sample ? thread_cpu_ns() : 0, m0 = mono_ns();
  /* What the stage's declared writes held before it ran, so that only what
   * it set is checked against its declaration (a memoized stage is checked
   * where it runs, in keel_memo_process). */
  keel_value *before = NULL;
  if (!s->memo && s->def->n_writes &&
      !(before = keel_arena_alloc(keel_event_arena(ev), s->def->n_writes * sizeof *before))) {
    snprintf(reason, len, "%s: out of memory", s->def->name);
    return 0;
  }
  if (before) keel__stage_writes_before(s->def, &s->io, ev, before);
  keel_status st = s->memo ? keel_memo_process(s->memo, w->mw[i], ev) : s->def->process(s->state, ev, &s->io);
  /* A stage that called keel_event_fail and returned KEEL_OK all the same
   * failed the event: the reason is what it said. */
  if (st == KEEL_OK && keel_event_reason(ev)) st = KEEL_EREJECTED;
  record_latency(c, mono_ns() - m0);
  if (sample) {
    bump(&c->cpu_ns, thread_cpu_ns() - t0);
    bump(&c->cpu_samples, 1);
  }
  bump(&c->calls, 1);
  char bad[160];
  if (st == KEEL_OK && (s->memo || keel__stage_writes_typed(s->def, &s->io, ev, before, bad, sizeof bad))) return 1;
  bump(&c->errors, 1);
  const char *why = st == KEEL_OK ? bad : keel_event_reason(ev);
  snprintf(reason, len, "%s: %s", s->def->name, why ? why : keel_status_str(st));
  return 0;
}

int keel__pipeline_process(keel_pipeline_t *p, worker *w, keel_event_t *ev, char *reason, size_t len) {
  keel_value type = {.type = KEEL_FIELD_NONE};
  int have_type = keel_event_get(ev, p->type_id, &type);
  if (!p->has_catch_all) {
    if (!have_type) {
      snprintf(reason, len, "missing required field 'type' (one of: %s)", p->known_types);
      return 0;
    }
    if (type.type != KEEL_FIELD_STRING) {
      snprintf(reason, len, "field 'type': expected string, got %s", keel_field_type_name(type.type));
      return 0;
    }
  }
  int handled = 0;
  for (size_t i = 0; i < p->n_stages; i++) {
    const stage_slot *s = &p->stages[i];
    if (s->def->event_type && !(have_type && type_is(&type, s->def->event_type))) continue;
    handled = 1;
    if (!check_reads(s, ev, reason, len) || !run_stage(s, w, i, ev, reason, len)) return 0;
  }
  if (!handled) {
    snprintf(reason, len, "unknown event type '%.*s' (known: %s)", (int)(type.u.str.len > 64 ? 64 : type.u.str.len),
             type.u.str.ptr, p->known_types);
    return 0;
  }
  return 1;
}

/* ---- workers ---- */

static void reject(batch *b, record *r, const char *reason) {
  r->rejected = 1;
  r->out_off = b->reasons.len;
  if (keel_buf_append(&b->reasons, reason, strlen(reason) + 1) != KEEL_OK) {
    r->out_off = SIZE_MAX; /* the sink writes a fixed reason */
    return;
  }
  r->out_len = strlen(reason);
}

static void process_record(keel_pipeline_t *p, worker *w, batch *b, record *r) {
  char reason[REASON_MAX];
  keel_event_t *ev = w->ev;
  keel_event_reset(ev);
  keel_event_set_line(ev, r->line);
  if (r->too_long) {
    snprintf(reason, sizeof reason, "line of %zu bytes exceeds the %zu-byte limit ([limits] max_line)",
             r->full_len, p->limits.max_line);
    reject(b, r, reason);
    return;
  }
  if (r->unread) {
    snprintf(reason, sizeof reason, "line of %zu bytes not processed: out of memory while reading it", r->full_len);
    reject(b, r, reason);
    return;
  }
  if (r->sid.kind) { /* a poison or malformed stream entry (redis_stream.c) */
    if (r->sid.kind == 1)
      snprintf(reason, sizeof reason, "stream entry delivered %u times (more than [redis] max_deliveries)",
               (unsigned)r->sid.deliveries);
    else if (r->sid.kind == 3)
      snprintf(reason, sizeof reason,
               "stream entry deleted from the stream (trimmed?) while it was pending: its data is gone");
    else
      snprintf(reason, sizeof reason, "stream entry has no 'data' field");
    reject(b, r, reason);
    return;
  }
  keel_status st = keel_json_to_event(ev, b->text.data + r->off, r->len, &p->limits, reason, sizeof reason);
  if (st != KEEL_OK) {
    if (st == KEEL_ENOMEM) snprintf(reason, sizeof reason, "out of memory while parsing");
    reject(b, r, reason);
    return;
  }
  if (!keel__pipeline_process(p, w, ev, reason, sizeof reason)) {
    reject(b, r, reason);
    return;
  }
  size_t off = b->out.len;
  if (keel_json_append_event(&b->out, ev) != KEEL_OK || keel_buf_append(&b->out, "\n", 1) != KEEL_OK) {
    b->out.len = off; /* never a partial line */
    reject(b, r, "out of memory while writing the output line");
    return;
  }
  if (r->sid.has && keel__stream_tag_output(&b->out, off, &r->sid) != KEEL_OK) {
    b->out.len = off;
    reject(b, r, "out of memory while writing the output line");
    return;
  }
  r->rejected = 0;
  r->out_off = off;
  r->out_len = b->out.len - off;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  keel_pipeline_t *p = w->p;
  batch *b;
  while ((b = keel__queue_pop(p->work_q)) != NULL) {
    keel_buf_clear(&b->out);
    keel_buf_clear(&b->reasons);
    for (size_t i = 0; i < b->n; i++) process_record(p, w, b, &b->rec[i]);
    keel__queue_push(p->done_q, b);
  }
  if (atomic_fetch_sub(&p->live_workers, 1) == 1) keel__queue_close(p->done_q);
  return NULL;
}

/* ---- reader ---- */

/* Fills b from the reader. Returns 0 at the end of the input. */
static int fill_batch(keel_pipeline_t *p, batch *b) {
  b->n = 0;
  keel_buf_clear(&b->text);
  while (b->n < p->batch_size && b->text.len < TEXT_TARGET) {
    if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return 0;
    if (b->n && !(p->src_stream ? keel__stream_src_pending(p->src_stream) : keel_line_reader_pending(p->reader)))
      return 1; /* a slow stream: pass on what we have */
    const char *line;
    size_t len;
    uint64_t no;
    stream_ref ref = {0}; /* a Redis stream entry's id and deliveries */
    keel_status st = p->src_stream ? keel__stream_src_next(p->src_stream, &line, &len, &no, &ref)
                                   : keel_line_reader_next(p->reader, &line, &len, &no);
    if (st == KEEL_EEOF || st == KEEL_ECANCELED) return 0;
    if (st != KEEL_OK && st != KEEL_ELIMIT) {
      p->read_status = st;
      snprintf(p->read_err, sizeof p->read_err, "reading the input: %s",
               p->src_stream ? keel__stream_src_error(p->src_stream) : keel_line_reader_error(p->reader));
      return 0;
    }
    bump(&p->input_bytes, len + 1);
    if (st == KEEL_OK && !ref.has && keel_line_is_blank(line, len)) { /* a blank stream entry is an event: it needs its ack */
      bump(&p->blank_lines, 1);
      continue;
    }
    size_t keep = len;
    if (st == KEEL_ELIMIT) { /* the reader holds at most max_line bytes of it */
      keep = len < KEEP_PREFIX ? len : KEEP_PREFIX;
      if (keep > p->limits.max_line) keep = p->limits.max_line;
    }
    record *r = &b->rec[b->n];
    memset(r, 0, sizeof *r);
    r->sid = ref;
    r->line = no;
    r->off = b->text.len;
    r->len = keep;
    r->full_len = len;
    r->too_long = st == KEEL_ELIMIT;
    if (keel_buf_append(&b->text, line, keep) != KEEL_OK) {
      /* No memory to carry the line: it still must not be lost. */
      r->len = 0;
      r->unread = 1;
    }
    if (!atomic_load_explicit(&p->have_first, memory_order_relaxed)) {
      clock_gettime(CLOCK_MONOTONIC, &p->first_read);
      atomic_store_explicit(&p->have_first, 1, memory_order_release);
    }
    bump(&p->events_in, 1);
    b->n++;
  }
  return 1;
}

static int stop_asked(void *ctx) {
  keel_pipeline_t *p = ctx;
  return atomic_load_explicit(&p->stop, memory_order_relaxed);
}

static void *reader_main(void *arg) {
  keel_pipeline_t *p = arg;
  uint64_t seq = 0;
  /* Of the run's threads only this one takes SIGINT/SIGTERM, so a signal
   * interrupts its blocking read (EINTR) and stop_asked() ends the input. */
  pthread_sigmask(SIG_SETMASK, &p->caller_sigmask, NULL);
  if (p->reader) keel_line_reader_set_cancel(p->reader, stop_asked, p);
  for (;;) {
    if (p->budget) keel__budget_admit(p->budget, p); /* may pause: backpressure on memory */
    batch *b = keel__queue_pop(p->free_q);
    if (!b) break;
    int more = fill_batch(p, b);
    if (b->n) {
      b->seq = seq++;
      keel__queue_push(p->work_q, b);
    } else {
      keel__queue_push(p->free_q, b);
    }
    if (!more) break;
  }
  keel__queue_close(p->work_q);
  return NULL;
}

/* ---- sink ---- */

typedef struct sink {
  FILE *out;
  int out_regular;     /* the output is a regular file (a partly written batch can be cut off) */
  keel_dead_letter_t *dl;
  keel_status st;
  char err[512];
  char unwritten[192]; /* after an output error: the reason results not written are dead-lettered with */
  int from_stream;     /* the input is a Redis stream */
  uint64_t out_lines, rejected;
  uint64_t lost, lost_line; /* file input, after the dead-letter file failed: results dropped, the first's line */
  struct timespec last_write;
} sink;

/* A file's data on disk; a pipe, a socket or a terminal cannot be synced
 * (EINVAL) and has nothing to sync. */
static int sync_fd(int fd) { return fsync(fd) == 0 || errno == EINVAL || errno == EROFS ? 0 : -1; }

/* A stream source's entries are acknowledged once their output lines and
 * dead-letter records are written through to the file or stream (and, with
 * [redis] fsync, on disk). The output lines already are (write_file_batch). */
static void ack_batch(keel_pipeline_t *p, sink *s, batch *b) {
  int durable = keel__stream_src_fsync(p->src_stream);
  if (s->out && durable && sync_fd(fileno(s->out)) != 0) {
    s->st = KEEL_EIO;
    snprintf(s->err, sizeof s->err, "writing the output: %s", strerror(errno));
    return;
  }
  keel_status st = durable ? keel_dead_letter_sync(s->dl) : keel_dead_letter_flush(s->dl);
  if (st != KEEL_OK) {
    s->st = st;
    snprintf(s->err, sizeof s->err, "writing the dead-letter file %s: %s", keel_dead_letter_path(s->dl),
             keel_status_str(st));
    return;
  }
  s->st = keel__stream_src_ack(p->src_stream, b, s->err, sizeof s->err);
}

/* After an output error: the reason the results not written go to the
 * dead-letter file with. A stream input's entries are not dead-lettered:
 * left pending (not acknowledged), another worker writes them. */
static void unwritten(sink *s, const char *why) {
  if (!s->from_stream)
    snprintf(s->unwritten, sizeof s->unwritten, "result not written: writing the output failed (%.120s)", why);
}

/* An accepted event of a file input that is neither output nor in the
 * dead-letter file (a stream input's stays pending): counted, with the
 * lowest line (batches come out of order in unordered runs). */
static void note_lost(sink *s, uint64_t line) {
  if (s->from_stream) return;
  if (!s->lost++ || line < s->lost_line) s->lost_line = line;
}

/* Writes b's output lines to the file's descriptor (write(2), no stdio
 * buffer: the batch is the buffer), so that a batch is either wholly in
 * the kernel's hands or, after an error (a full disk), the part of it
 * written is cut off the file again: the output holds whole lines only,
 * and the sink knows which. Only that part: stream workers may append to
 * one file together, and what the others wrote (and acknowledged) stays.
 * They do so under an exclusive flock(2) of the file, each batch's write
 * and any cut in one hold, so that no other keel worker's line can land
 * between a failed write and its cut; a writer that is not keel is not
 * held back, and a file that reaches past the failed write is left as it
 * is, and said. */
static void write_file_batch(sink *s, batch *b) {
  size_t off;
  int fd = fileno(s->out), locked = s->out_regular && s->from_stream && flock(fd, LOCK_EX) == 0;
  int e = keel_write_all(fd, b->out.data, b->out.len, &off);
  if (e) {
    s->st = KEEL_EIO;
    snprintf(s->err, sizeof s->err, "writing the output: %s", strerror(e));
    unwritten(s, strerror(e));
  }
  const char *why = e && s->out_regular && off > 0 ? keel_write_cut_tail(fd, off) : NULL;
  if (why)
    snprintf(s->err, sizeof s->err, "writing the output: %s; and the partly written batch could not be cut off: %s",
             strerror(e), why);
  if (locked) (void)flock(fd, LOCK_UN);
}

static void write_batch(keel_pipeline_t *p, sink *s, batch *b) {
  if (p->out_stream) {
    if (s->st == KEEL_OK && b->out.len &&
        (s->st = keel__stream_out_write(p->out_stream, b, s->err, sizeof s->err)) != KEEL_OK)
      unwritten(s, s->err);
  } else if (s->st == KEEL_OK && b->out.len) {
    write_file_batch(s, b);
  }
  /* Whether this batch's output lines were written: a dead-letter error
   * met below does not unwrite them. After an output error, the results
   * of this batch and of those still in flight go to the dead-letter file
   * with the reason (nothing accepted is left unaccounted for). */
  int out_ok = s->st == KEEL_OK;
  for (size_t i = 0; i < b->n; i++) {
    record *r = &b->rec[i];
    if (!r->rejected && out_ok) {
      s->out_lines++;
      continue;
    }
    if (!r->rejected && !s->unwritten[0]) {
      /* A stream input's: left pending. A file input's, once the
       * dead-letter file failed: nowhere to put it; counted (run_end). */
      note_lost(s, r->line);
      continue;
    }
    const char *why = r->rejected ? (r->out_off == SIZE_MAX ? "rejected (no memory for the reason)"
                                                            : b->reasons.data + r->out_off)
                                  : s->unwritten;
    char tagged[REASON_MAX + 64];
    if (r->sid.has) {
      snprintf(tagged, sizeof tagged, "%s [stream_id %llu-%llu]", why, (unsigned long long)r->sid.ms,
               (unsigned long long)r->sid.seq);
      why = tagged;
    }
    /* text.data is NULL when no line text could be kept (out of memory). */
    const char *raw = b->text.data ? b->text.data + r->off : "";
    keel_status st = keel_dead_letter_write_prefix(s->dl, r->line, why, raw, r->len, r->full_len);
    if (st != KEEL_OK && s->st == KEEL_OK) {
      s->st = st;
      const char *why_not = keel_dead_letter_error(s->dl);
      if (why_not && *why_not) /* "PATH: reason" */
        snprintf(s->err, sizeof s->err, "writing the dead-letter file %s", why_not);
      else
        snprintf(s->err, sizeof s->err, "writing the dead-letter file %s: %s", keel_dead_letter_path(s->dl),
                 keel_status_str(st));
    }
    if (st == KEEL_OK) s->rejected++; /* counted only once it is in the file */
    else if (st == KEEL_ENOMEM) note_lost(s, r->line); /* no record was made: the writer does not count it */
  }
  if (p->src_stream && s->st == KEEL_OK) ack_batch(p, s, b);
  clock_gettime(CLOCK_MONOTONIC, &s->last_write);
  /* For snapshots; release pairs with their acquire loads, so a snapshot that
   * sees these counts also sees the reader's events_in that preceded them. */
  atomic_store_explicit(&p->rejected, s->rejected, memory_order_relaxed);
  atomic_store_explicit(&p->events_out, s->out_lines, memory_order_release);
  if (s->st != KEEL_OK) keel_pipeline_stop(p);
  /* Drop what long lines grew: a pooled batch keeps buffers of a normal
   * batch's size, so a few huge lines do not hold their bytes for the rest
   * of the run (against a memory budget that planned for normal ones). */
  int long_line = b->text.cap > BATCH_BUF_KEEP; /* text stops filling at TEXT_TARGET: only a long line passes */
  if (long_line) keel_buf_free(&b->text);
  /* Output and reasons can be large for a whole batch of ordinary events
   * (a big --batch, long result lists): kept while a batch fills most of
   * them, freed after a long line or once they are 4x what a batch used. */
  if (b->out.cap > BATCH_BUF_KEEP && (long_line || b->out.cap > 4 * b->out.len)) keel_buf_free(&b->out);
  if (b->reasons.cap > BATCH_BUF_KEEP && (long_line || b->reasons.cap > 4 * b->reasons.len))
    keel_buf_free(&b->reasons);
}

/* As the run ends: the dead-letter records still buffered are written
 * (before the counts are taken, which take only records in the file);
 * when the file cannot take them, the error says how many events of a
 * file input are neither output nor in it, and from which line (a stream
 * input's stay pending: not acknowledged). */
static void run_end_dead_letter(sink *s) {
  keel_status st = keel_dead_letter_flush(s->dl);
  if (st != KEEL_OK && s->st == KEEL_OK) {
    s->st = st;
    snprintf(s->err, sizeof s->err, "writing the dead-letter file %s", keel_dead_letter_error(s->dl));
  }
  uint64_t records = keel_dead_letter_count(s->dl) - keel_dead_letter_written(s->dl);
  if (s->from_stream || !(records + s->lost)) return;
  uint64_t first = keel_dead_letter_first_unwritten(s->dl);
  if (!first || (s->lost && s->lost_line < first)) first = s->lost_line;
  size_t n = strlen(s->err);
  snprintf(s->err + n, sizeof s->err - n, "; %llu events are neither in the output nor in the dead-letter file, the "
           "first at line %llu", (unsigned long long)(records + s->lost), (unsigned long long)first);
}

/* Output lines never wait in a buffer of the sink's: each batch is
 * written as it comes (write_file_batch), so a live stream's results show
 * at once. */
static void drain(keel_pipeline_t *p, sink *s) {
  batch **parked = p->parked;
  uint64_t next = 0;
  batch *b;
  while ((b = keel__queue_pop(p->done_q)) != NULL) {
    if (!p->ordered) {
      write_batch(p, s, b);
      keel__queue_push(p->free_q, b);
      continue;
    }
    parked[b->seq % p->n_batches] = b;
    while ((b = parked[next % p->n_batches]) != NULL && b->seq == next) {
      parked[next % p->n_batches] = NULL;
      write_batch(p, s, b);
      keel__queue_push(p->free_q, b);
      next++;
    }
  }
}

/* ---- set-up and tear-down of a run ---- */

static void add_counters(counters *to, counters *from) {
  bump(&to->calls, atomic_load_explicit(&from->calls, memory_order_relaxed));
  bump(&to->errors, atomic_load_explicit(&from->errors, memory_order_relaxed));
  bump(&to->cpu_ns, atomic_load_explicit(&from->cpu_ns, memory_order_relaxed));
  bump(&to->cpu_samples, atomic_load_explicit(&from->cpu_samples, memory_order_relaxed));
  bump(&to->lat_ns, atomic_load_explicit(&from->lat_ns, memory_order_relaxed));
  for (size_t b = 0; b <= KEEL_LATENCY_BUCKETS; b++)
    bump(&to->lat[b], atomic_load_explicit(&from->lat[b], memory_order_relaxed));
}

static void free_run(keel_pipeline_t *p) {
  pthread_mutex_lock(&p->snap_lock);
  p->running = 0;
  for (unsigned i = 0; p->w && i < p->workers; i++)
    for (size_t k = 0; k < p->n_stages; k++) add_counters(&p->totals[k], &p->w[i].c[k]);
  for (unsigned i = 0; p->w && i < p->workers; i++) {
    keel_event_destroy(p->w[i].ev);
    for (size_t k = 0; k < p->n_stages; k++) keel_memo_worker_destroy(p->w[i].mw[k]);
  }
  keel_mem_free(p->w);
  for (size_t i = 0; p->batches && i < p->n_batches; i++) {
    keel_mem_free(p->batches[i].rec);
    keel_buf_free(&p->batches[i].text);
    keel_buf_free(&p->batches[i].out);
    keel_buf_free(&p->batches[i].reasons);
  }
  keel_mem_free(p->batches);
  keel_mem_free(p->parked);
  p->parked = NULL;
  keel__queue_destroy(p->free_q);
  keel__queue_destroy(p->work_q);
  keel__queue_destroy(p->done_q);
  p->w = NULL;
  p->batches = NULL;
  p->free_q = p->work_q = p->done_q = NULL;
  pthread_mutex_unlock(&p->snap_lock);
}

static keel_status alloc_run_locked(keel_pipeline_t *p);

static keel_status alloc_run(keel_pipeline_t *p) {
  pthread_mutex_lock(&p->snap_lock);
  keel_status st = alloc_run_locked(p);
  p->running = st == KEEL_OK;
  pthread_mutex_unlock(&p->snap_lock);
  return st;
}

static keel_status alloc_run_locked(keel_pipeline_t *p) {
  p->n_batches = (size_t)p->workers * 3 + 2;
  keel_status st = keel__queue_create(p->n_batches, &p->free_q);
  if (st == KEEL_OK) st = keel__queue_create(p->n_batches, &p->work_q);
  if (st == KEEL_OK) st = keel__queue_create(p->n_batches, &p->done_q);
  if (st != KEEL_OK) return st;
  p->batches = keel_mem_calloc(KEEL_MEM_QUEUE, p->n_batches, sizeof *p->batches);
  p->w = keel_mem_calloc(KEEL_MEM_QUEUE, p->workers, sizeof *p->w);
  p->parked = keel_mem_calloc(KEEL_MEM_QUEUE, p->n_batches, sizeof *p->parked);
  if (!p->batches || !p->w || !p->parked) return KEEL_ENOMEM;
  for (size_t i = 0; i < p->n_batches; i++) {
    batch *b = &p->batches[i];
    keel_buf_init(&b->text, KEEL_MEM_QUEUE);
    keel_buf_init(&b->out, KEEL_MEM_QUEUE);
    keel_buf_init(&b->reasons, KEEL_MEM_QUEUE);
    if (!(b->rec = keel_mem_calloc(KEEL_MEM_QUEUE, p->batch_size, sizeof *b->rec))) return KEEL_ENOMEM;
    keel__queue_push(p->free_q, b);
  }
  for (unsigned i = 0; i < p->workers; i++) {
    p->w[i].p = p;
    if ((st = keel_event_create(p->schema, KEEL_MEM_ARENA, 0, &p->w[i].ev)) != KEEL_OK) return st;
    for (size_t k = 0; k < p->n_stages; k++)
      if (p->stages[k].memo && (st = keel_memo_worker_create(p->stages[k].memo, p->schema, &p->w[i].mw[k])) != KEEL_OK)
        return st;
  }
  return KEEL_OK;
}

void keel_run_dead_letter_path(const keel_run_io *io, char *buf, size_t len) {
  if (!buf || !len) return;
  const char *output = io ? io->output : NULL;
  struct stat sb;
  if (io && io->dead_letter) snprintf(buf, len, "%s", io->dead_letter);
  /* A regular file, or one the run is about to create (it is not opened yet). */
  else if (output && strcmp(output, "-") && !keel_redis_is_url(output) &&
           (stat(output, &sb) == 0 ? S_ISREG(sb.st_mode) : errno == ENOENT))
    snprintf(buf, len, "%s.rejected.ndjson", output);
  else
    snprintf(buf, len, "keel-rejected.ndjson");
}

/* An output stream that is the input stream feeds every result back in
 * as an event: the run never ends and the stream grows without bound. */
static keel_status streams_apart(const keel_run_io *io, char *err, size_t errlen) {
  keel_redis_addr a, b;
  if (!keel_redis_is_url(io->input) || !keel_redis_is_url(io->output)) return KEEL_OK;
  if (keel_redis_addr_parse(io->input, &a, err, errlen) != KEEL_OK ||
      keel_redis_addr_parse(io->output, &b, err, errlen) != KEEL_OK)
    return KEEL_OK; /* said when the streams open */
  if (!keel_redis_same_stream(&a, &b)) return KEEL_OK;
  snprintf(err, errlen, "the output stream '%s' is also the input stream (every result would be read again as an "
           "event, without end)", a.stream);
  return KEEL_ECONFIG;
}

/* A redis:// input or output is a Redis stream (redis_stream.c); the
 * objects are published under snap_lock for snapshots. */
static keel_status open_streams(keel_pipeline_t *p, const keel_run_io *io, char *err, size_t errlen) {
  keel__stream_src *src = NULL;
  keel__stream_out *out = NULL;
  keel_status st = streams_apart(io, err, errlen);
  if (st != KEEL_OK) return st;
  if (keel_redis_is_url(io->input)) st = keel__stream_src_open(p, io->input, &src, err, errlen);
  if (st == KEEL_OK && keel_redis_is_url(io->output)) st = keel__stream_out_open(p, io->output, &out, err, errlen);
  pthread_mutex_lock(&p->snap_lock);
  p->src_stream = src;
  p->out_stream = out;
  memset(&p->stream_last, 0, sizeof p->stream_last);
  p->stream_last.pending = p->stream_last.lag = -1; /* unknown without a stream source */
  pthread_mutex_unlock(&p->snap_lock);
  return st;
}

static void close_streams(keel_pipeline_t *p) {
  pthread_mutex_lock(&p->snap_lock);
  if (p->src_stream || p->out_stream) { /* the run's last counters, before either end goes */
    keel_run_stats last;
    memset(&last, 0, sizeof last);
    keel__pipeline_redis_stats(p, &last);
    p->stream_last = last.stream;
  }
  keel__stream_out_close(p);
  keel__stream_src_close(p);
  pthread_mutex_unlock(&p->snap_lock);
}

static keel_status open_ends(keel_pipeline_t *p, const keel_run_io *io, sink *s, char *err, size_t errlen) {
  keel_status st = open_streams(p, io, err, errlen);
  if (st == KEEL_OK && !p->src_stream)
    st = keel_line_reader_open(io->input ? io->input : "-", p->limits.max_line, &p->reader, err, errlen);
  if (st != KEEL_OK) return st;
  const char *out = io->output ? io->output : "-";
  s->from_stream = p->src_stream != NULL;
  /* Everything that can refuse the run does so before the output is
   * opened: opening it empties it. The output's own path first. */
  int oe = !p->out_stream && strcmp(out, "-") ? keel_path_writable(out) : 0;
  if (oe) {
    snprintf(err, errlen, "%s: cannot open for writing: %s", out, strerror(oe));
    return KEEL_EIO;
  }
  char dl[4096];
  keel_run_dead_letter_path(io, dl, sizeof dl);
  /* One file for two ends loses what it held: an output that is the input
   * is emptied before it is read; a dead-letter file that is either
   * overwrites it, or is overwritten. */
  const char *in = p->src_stream ? NULL : !io->input || !strcmp(io->input, "-") ? "/dev/stdin" : io->input;
  const char *to = p->out_stream ? NULL : !strcmp(out, "-") ? "/dev/stdout" : out;
  int io_same = keel_path_same(to, in);
  const char *other = io_same ? NULL : keel_path_same(dl, in) ? "input" : keel_path_same(dl, to) ? "output" : NULL;
  if (io_same || other) {
    if (io_same) snprintf(err, errlen, "the output %s is also the input (it would be emptied before it is read)", out);
    else snprintf(err, errlen, "the dead-letter file %s is also the %s", dl, other);
    return KEEL_ECONFIG;
  }
  st = keel_dead_letter_create(dl, &s->dl);
  if (st == KEEL_OK && p->src_stream) keel_dead_letter_set_append(s->dl, 1);
  if (st == KEEL_OK && (st = keel_dead_letter_check(s->dl)) != KEEL_OK)
    snprintf(err, errlen, "dead-letter file %s", keel_dead_letter_error(s->dl));
  for (size_t k = 0; st == KEEL_OK && k < p->n_stages; k++) /* each run's key record is its own */
    if (p->stages[k].memo) st = keel_memo_record_begin(p->stages[k].memo, err, errlen);
  if (st != KEEL_OK) return st;
  if (keel_dead_letter_begin(s->dl) != KEEL_OK) { /* before the output: a refused run empties nothing of it */
    snprintf(err, errlen, "dead-letter file %s", keel_dead_letter_error(s->dl));
    return KEEL_EIO;
  }
  /* A stream worker appends: a restarted worker keeps what it wrote (and acknowledged) before. */
  if (!p->out_stream) s->out = strcmp(out, "-") ? fopen(out, p->src_stream ? "a" : "w") : stdout;
  if (!p->out_stream && !s->out) {
    snprintf(err, errlen, "%s: cannot open for writing: %s", out, strerror(errno));
    return KEEL_EIO;
  }
  struct stat sb;
  s->out_regular = s->out && fstat(fileno(s->out), &sb) == 0 && S_ISREG(sb.st_mode);
  return KEEL_OK;
}

/* Sums finished runs' totals and the live workers' counters; the caller
 * holds snap_lock or is the run's own thread. */
static void fill_stage_stats(keel_pipeline_t *p, keel_run_stats *st) {
  st->n_stages = p->n_stages;
  for (size_t i = 0; i < p->n_stages; i++) {
    keel_stage_stats *x = &st->stages[i];
    counters sum;
    memset(&sum, 0, sizeof sum);
    add_counters(&sum, &p->totals[i]);
    for (unsigned k = 0; p->w && k < p->workers; k++) add_counters(&sum, &p->w[k].c[i]);
    x->name = p->stages[i].def->name;
    x->calls = atomic_load_explicit(&sum.calls, memory_order_relaxed);
    x->errors = atomic_load_explicit(&sum.errors, memory_order_relaxed);
    uint64_t samples = atomic_load_explicit(&sum.cpu_samples, memory_order_relaxed);
    x->cpu_s = samples ? atomic_load_explicit(&sum.cpu_ns, memory_order_relaxed) / 1e9 / (double)samples *
                             (double)x->calls
                       : 0;
    x->latency_sum_s = atomic_load_explicit(&sum.lat_ns, memory_order_relaxed) / 1e9;
    for (size_t b = 0; b <= KEEL_LATENCY_BUCKETS; b++)
      x->latency[b] = atomic_load_explicit(&sum.lat[b], memory_order_relaxed);
    x->memoized = p->stages[i].memo != NULL;
    if (x->memoized) keel_memo_get_stats(p->stages[i].memo, &x->cache);
  }
}

keel_status keel_pipeline_snapshot(keel_pipeline_t *p, keel_run_stats *out) {
  if (!p || !out) return KEEL_EINVAL;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&p->snap_lock);
  out->running = p->running;
  /* out before in (acquire: see write_batch), so out + rejected <= in holds. */
  out->events_out = atomic_load_explicit(&p->events_out, memory_order_acquire);
  out->rejected = atomic_load_explicit(&p->rejected, memory_order_relaxed);
  out->events_in = atomic_load_explicit(&p->events_in, memory_order_relaxed);
  out->blank_lines = atomic_load_explicit(&p->blank_lines, memory_order_relaxed);
  out->input_bytes = atomic_load_explicit(&p->input_bytes, memory_order_relaxed);
  if (p->running && atomic_load_explicit(&p->have_first, memory_order_acquire)) out->wall_s = since(&p->first_read);
  out->interrupted = atomic_load(&p->stop);
  out->audit_failed = atomic_load(&p->audit_failed);
  if (p->running) {
    out->batches = p->n_batches;
    out->queue_work = keel__queue_depth(p->work_q);
    out->queue_done = keel__queue_depth(p->done_q);
    out->queue_free = keel__queue_depth(p->free_q);
  }
  fill_stage_stats(p, out);
  keel__pipeline_redis_stats(p, out);
  pthread_mutex_unlock(&p->snap_lock);
  out->rss_peak_bytes = keel_mem_rss_peak_bytes();
  return KEEL_OK;
}

static void fill_stats(keel_pipeline_t *p, const sink *s, double cpu0, keel_run_stats *st) {
  memset(st, 0, sizeof *st);
  st->events_in = p->events_in;
  st->events_out = s->out_lines;
  st->rejected = keel_dead_letter_written(s->dl);
  st->unrecorded = s->from_stream ? 0 : s->lost + keel_dead_letter_count(s->dl) - keel_dead_letter_written(s->dl);
  st->blank_lines = p->blank_lines;
  if (atomic_load(&p->have_first)) {
    double w = (double)(s->last_write.tv_sec - p->first_read.tv_sec) +
               (s->last_write.tv_nsec - p->first_read.tv_nsec) / 1e9;
    st->wall_s = w > 0 ? w : since(&p->first_read);
  }
  st->cpu_s = process_cpu_s() - cpu0;
  st->rss_peak_bytes = keel_mem_rss_peak_bytes();
  st->interrupted = atomic_load(&p->stop) && s->st == KEEL_OK; /* a write error stops it too: not a user's stop */
  st->audit_failed = atomic_load(&p->audit_failed);
  st->input_bytes = atomic_load(&p->input_bytes);
  fill_stage_stats(p, st);
  keel__pipeline_redis_stats(p, st);
}

/* `stop` is not reset here but as a run ends: a stop asked between runs
 * (a signal arriving after the caller installed its handler, before the
 * run began) must not be lost. */
static void reset_run_state(keel_pipeline_t *p) {
  atomic_store(&p->audit_failed, 0);
  atomic_store(&p->have_first, 0);
  pthread_mutex_lock(&p->snap_lock);
  p->blank_lines = p->events_in = p->input_bytes = p->events_out = p->rejected = 0;
  memset(p->totals, 0, sizeof p->totals);
  pthread_mutex_unlock(&p->snap_lock);
  p->read_status = KEEL_OK;
  p->read_err[0] = '\0';
}

keel_status keel_pipeline_run(keel_pipeline_t *p, const keel_run_io *io, keel_run_stats *stats, char *err,
                              size_t errlen) {
  if (!p || !io || !err || !errlen) return KEEL_EINVAL;
  err[0] = '\0';
  reset_run_state(p);
  sink s = {0};
  keel_status st = alloc_run(p);
  if (st == KEEL_OK) st = open_ends(p, io, &s, err, errlen);
  if (st != KEEL_OK) {
    if (st == KEEL_ENOMEM && !err[0]) snprintf(err, errlen, "out of memory while starting the run");
    goto done;
  }
  double cpu0 = process_cpu_s();
  sigset_t stop_sigs;
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGINT);
  sigaddset(&stop_sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, &p->caller_sigmask); /* threads inherit it */
  pthread_t reader;
  unsigned started = 0;
  atomic_store(&p->live_workers, p->workers);
  for (; started < p->workers; started++)
    if (pthread_create(&p->w[started].thread, NULL, worker_main, &p->w[started])) break;
  if (started < p->workers) {
    /* Workers that never started will not close the done queue: do it. */
    atomic_fetch_sub(&p->live_workers, p->workers - started);
    if (started == 0) keel__queue_close(p->done_q);
  }
  int reader_ok = started > 0 && pthread_create(&reader, NULL, reader_main, p) == 0;
  if (!reader_ok) keel__queue_close(p->work_q);
  drain(p, &s);
  if (reader_ok) pthread_join(reader, NULL);
  for (unsigned i = 0; i < started; i++) pthread_join(p->w[i].thread, NULL);
  pthread_sigmask(SIG_SETMASK, &p->caller_sigmask, NULL);
  if (s.out && fflush(s.out) != 0 && s.st == KEEL_OK) {
    s.st = KEEL_EIO;
    snprintf(s.err, sizeof s.err, "writing the output: %s", strerror(errno));
  }
  run_end_dead_letter(&s);
  for (size_t k = 0; k < p->n_stages; k++) /* the run's key records written, their losses counted */
    keel_memo_record_flush(p->stages[k].memo);
  if (stats) {
    keel__stream_src_refresh(p); /* the group's pending count as the run leaves it */
    fill_stats(p, &s, cpu0, stats);
  }
  if (!reader_ok) {
    st = KEEL_ENOMEM;
    snprintf(err, errlen, "cannot start the pipeline's threads");
  } else if (s.st != KEEL_OK) {
    st = s.st;
    snprintf(err, errlen, "%s", s.err);
  } else if (p->read_status != KEEL_OK) {
    st = p->read_status;
    snprintf(err, errlen, "%s", p->read_err);
  }
done:
  /* A write error can surface only at close (NFS, quotas): lines counted
   * out must not be reported written when they were not. */
  if (s.out && s.out != stdout && fclose(s.out) != 0 && st == KEEL_OK) {
    st = KEEL_EIO;
    snprintf(err, errlen, "closing the output: %s", strerror(errno));
  }
  if (s.dl) {
    keel_status c = keel_dead_letter_close(s.dl);
    if (c != KEEL_OK && st == KEEL_OK) {
      st = c;
      snprintf(err, errlen, "closing the dead-letter file: %s", keel_status_str(c));
    }
  }
  keel_line_reader_close(p->reader);
  p->reader = NULL;
  close_streams(p);
  free_run(p);
  atomic_store(&p->stop, 0); /* this run's stop is spent; one asked from here on ends the next */
  return st;
}
