/* cli_bench_soak.c — `keel bench soak`: hours of load in one process, and
 * whether memory stays put.
 *
 * The recommendation engine runs with every stage memoized (bounded caches,
 * small enough to fill early and then evict) over the events of a key trace
 * (scarab-recs by default), lap after lap on one pipeline, so the caches,
 * pools and catalog live for the whole soak. A sampler thread records, every
 * --interval seconds, the time, the events done so far, the resident set
 * (VmRSS) and keel's tracked bytes; each lap's end adds a quiescent sample
 * (nothing in flight). The run stops after --events N events or --seconds S
 * (default 300 s).
 *
 * The summary judges the samples after the warm-up (the first --warmup
 * fraction of the run's time, default 0.2, and at least the first lap: the
 * caches fill then):
 *   - RSS drift: (highest RSS after warm-up - RSS at the end of warm-up) /
 *     RSS at the end of warm-up; at most 2 %.
 *   - tracked bytes: the same drift over the quiescent lap-end samples (or
 *     every sample when fewer than two laps end after warm-up); "flat"
 *     means at most 1 %: bounded caches at their bound, pools reused, no leak.
 * Exit 0 when both hold, 3 when either does not, when fewer than 3 samples
 * follow the warm-up, or when SIGINT/SIGTERM ended the soak early (its
 * figures so far are printed, "interrupted":true). One JSON line on stdout
 * carries the figures; --series FILE writes every sample as CSV. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keel/config.h"
#include "keel/mem.h"
#include "keel/pipeline.h"
#include "keel/recsys.h"

extern const unsigned char keel_demo_trace[];
extern const size_t keel_demo_trace_len;

#define CMD "bench soak"
#define MAX_SAMPLES 200000

typedef struct opts {
  const char *trace, *format, *mix, *workers, *series;
  const char *cache[3]; /* user, score, rank */
  uint64_t events;      /* 0: run for seconds */
  double seconds, interval, warmup;
} opts;

typedef struct sample {
  double t;          /* seconds since the start */
  uint64_t events;   /* events done (out + rejected) */
  uint64_t rss;      /* VmRSS bytes */
  int64_t tracked;   /* keel_mem tracked bytes */
  int lap_end;       /* taken between laps: nothing in flight */
} sample;

typedef struct soak {
  opts o;
  keel_config_t *cfg;
  keel_registry_t *reg;
  keel_recsys_t *rs;
  keel_pipeline_t *p;
  pthread_mutex_t lock; /* guards samples, n, done_before, finished */
  pthread_cond_t wake;  /* on a monotonic clock; signalled when finished */
  sample *samples;
  size_t n;
  uint64_t done_before; /* events of the laps already finished */
  struct timespec start;
  int finished;          /* main is done: the sampler exits */
  _Atomic int time_up;   /* the sampler stopped the run at --seconds */
  int interrupted;       /* a signal stopped the soak early */
} soak;

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel bench soak [--events N | --seconds S] [--trace FILE] [--format FMT]\n"
          "                       [--workers W] [--cache STAGE=SIZE] [--interval S] [--warmup F]\n"
          "                       [--series FILE.csv]\n\n"
          "Loops the recommendation engine, every stage memoized, over a trace's events (default\n"
          "the bundled scarab-recs sample; pass /path/to/traces/scarab-recs.bin for the full one)\n"
          "for N events or S seconds (default 300 s), sampling RSS and tracked bytes every S\n"
          "seconds (--interval, default 1). After the warm-up (--warmup, default 0.2 of the run, and\n"
          "at least the first lap) RSS may drift at most 2 %% and tracked bytes at most 1 %% (flat);\n"
          "exit 3 otherwise.\n"
          "Defaults: --workers 2, --cache user=4MiB --cache score=8MiB --cache rank=16MiB,\n"
          "--mix rank=0.7,score=0.2,user=0.1. Prints a summary on stderr, one JSON line on stdout.\n");
}

static int set_cache(opts *o, const char *arg) {
  static const char *const names[] = {"user", "score", "rank"};
  const char *eq = strchr(arg, '=');
  uint64_t v;
  for (int i = 0; eq && i < 3; i++)
    if ((size_t)(eq - arg) == strlen(names[i]) && !strncmp(arg, names[i], (size_t)(eq - arg))) {
      if (keel_parse_size(eq + 1, &v) != KEEL_OK || v == 0) break;
      o->cache[i] = eq + 1;
      return -1;
    }
  return cli_usage(CMD, "--cache wants user|score|rank=SIZE, got '%s'", arg);
}

static int parse_number(const char *opt, const char *arg, double lo, double hi, double *out) {
  if (cli_parse_double(arg, out) || !(*out >= lo && *out <= hi))
    return cli_usage(CMD, "%s wants a number in %g..%g, got '%s'", opt, lo, hi, arg);
  return -1;
}

static int one_option(opts *o, int c, const char *arg, int *seconds_given) {
  uint64_t v;
  switch (c) {
    case 'e':
      if (cli_parse_u64(arg, &o->events) || o->events == 0)
        return cli_usage(CMD, "--events wants a positive integer, got '%s'", arg);
      return -1;
    case 's': *seconds_given = 1; return parse_number("--seconds", arg, 0.001, 1e9, &o->seconds);
    case 'i': return parse_number("--interval", arg, 0.01, 3600, &o->interval);
    case 'u': return parse_number("--warmup", arg, 0, 0.9, &o->warmup);
    case 't': o->trace = arg; return -1;
    case 'f': o->format = arg; return -1;
    case 'm': o->mix = arg; return -1;
    case 'o': o->series = arg; return -1;
    case 'c': return set_cache(o, arg);
    case 'w':
      if (cli_parse_u64(arg, &v) || v == 0 || v > 256) return cli_usage(CMD, "--workers wants 1..256, got '%s'", arg);
      o->workers = arg;
      return -1;
  }
  return cli_usage(CMD, "unknown option");
}

static int parse(opts *o, int argc, char **argv) {
  static const struct option lo[] = {
      {"events", required_argument, NULL, 'e'},   {"seconds", required_argument, NULL, 's'},
      {"trace", required_argument, NULL, 't'},    {"format", required_argument, NULL, 'f'},
      {"workers", required_argument, NULL, 'w'},  {"cache", required_argument, NULL, 'c'},
      {"interval", required_argument, NULL, 'i'}, {"warmup", required_argument, NULL, 'u'},
      {"series", required_argument, NULL, 'o'},   {"mix", required_argument, NULL, 'm'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  *o = (opts){.format = "auto", .mix = "rank=0.7,score=0.2,user=0.1", .workers = "2",
              .cache = {"4MiB", "8MiB", "16MiB"}, .seconds = 300, .interval = 1, .warmup = 0.2};
  int seconds_given = 0, c, rc;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
    if (c == 'h') {
      usage(stdout);
      return KEEL_EXIT_OK;
    }
    if (c == ':' || c == '?') return cli_getopt_error(CMD, c, argv);
    if ((rc = one_option(o, c, optarg, &seconds_given)) >= 0) return rc;
  }
  if (optind < argc) return cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
  if (o->events && seconds_given) return cli_usage(CMD, "give --events or --seconds, not both");
  if (!o->trace && strcmp(o->format, "auto")) return cli_usage(CMD, "--format is for the --trace file");
  return -1;
}

static double since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* Appends a sample; events_now = events of the run in progress. */
static void take_sample(soak *s, uint64_t events_now, int lap_end) {
  keel_mem_stats m;
  keel_mem_total(&m);
  pthread_mutex_lock(&s->lock);
  if (s->n < MAX_SAMPLES)
    s->samples[s->n++] = (sample){since(&s->start), s->done_before + events_now, keel_mem_rss_bytes(), m.current,
                                  lap_end};
  pthread_mutex_unlock(&s->lock);
}

/* Waits one --interval, or less when main finishes; 1 if it has. */
static int wait_interval(soak *s) {
  struct timespec at = cli_time_after(CLOCK_MONOTONIC, s->o.interval);
  pthread_mutex_lock(&s->lock);
  while (!s->finished && pthread_cond_timedwait(&s->wake, &s->lock, &at) == 0) {
  }
  int done = s->finished;
  pthread_mutex_unlock(&s->lock);
  return done;
}

static void finish(soak *s) {
  pthread_mutex_lock(&s->lock);
  s->finished = 1;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
}

static void *sampler(void *arg) {
  soak *s = arg;
  keel_run_stats st;
  while (!wait_interval(s)) {
    uint64_t now = 0;
    if (keel_pipeline_snapshot(s->p, &st) == KEEL_OK && st.running) now = st.events_out + st.rejected;
    take_sample(s, now, 0);
    if (!s->o.events && since(&s->start) >= s->o.seconds && !atomic_exchange(&s->time_up, 1))
      keel_pipeline_stop(s->p);
  }
  return NULL;
}

static int build(soak *s) {
  static const char *const sections[] = {"cache.user", "cache.score", "cache.rank"};
  char err[1024] = "";
  keel_status st = keel_config_create(&s->cfg);
  if (st == KEEL_OK) st = keel_config_set(s->cfg, "pipeline", "workers", s->o.workers, KEEL_CONFIG_CLI);
  for (size_t i = 0; st == KEEL_OK && i < 3; i++)
    st = keel_config_set(s->cfg, sections[i], "size", s->o.cache[i], KEEL_CONFIG_CLI);
  if (st == KEEL_OK) st = keel_registry_create(&s->reg);
  if (st == KEEL_OK) st = keel_recsys_create(s->cfg, &s->rs, err, sizeof err);
  if (st == KEEL_OK) st = keel_recsys_register(s->reg, s->rs, err, sizeof err);
  if (st == KEEL_OK) st = keel_pipeline_create(s->reg, s->cfg, &s->p, err, sizeof err);
  if (st != KEEL_OK)
    return cli_fail(CMD, st == KEEL_ECONFIG ? KEEL_EXIT_USAGE : KEEL_EXIT_FAIL, "%s", err[0] ? err : keel_status_str(st));
  return -1;
}

static void teardown(soak *s) {
  keel_pipeline_destroy(s->p);
  keel_registry_destroy(s->reg);
  keel_recsys_destroy(s->rs);
  keel_config_destroy(s->cfg);
  free(s->samples);
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->lock);
}

/* One lap over `in`; *done gets its events. */
static int lap(soak *s, const char *in, uint64_t *done) {
  char err[1024] = "";
  keel_run_io io = {.input = in, .output = "/dev/null", .dead_letter = "/dev/null"};
  keel_run_stats st;
  if (keel_pipeline_run(s->p, &io, &st, err, sizeof err) != KEEL_OK) return cli_fail(CMD, KEEL_EXIT_FAIL, "%s", err);
  *done = st.events_out + st.rejected;
  if (st.interrupted && !atomic_load(&s->time_up)) s->interrupted = 1; /* not the sampler's stop: a signal's */
  pthread_mutex_lock(&s->lock);
  s->done_before += *done;
  pthread_mutex_unlock(&s->lock);
  take_sample(s, 0, 1);
  return -1;
}

/* Laps until the events or the time are used up. `full` holds the trace's
 * events (per_lap of them); `tail` the first (events % per_lap). */
static int laps(soak *s, const char *full, const char *tail, uint64_t per_lap) {
  uint64_t done = 0, n = 0;
  int rc = -1;
  while (rc < 0) {
    if (s->o.events && s->o.events - done < per_lap) {
      if (s->o.events > done && !s->interrupted) rc = lap(s, tail, &n);
      break;
    }
    if ((rc = lap(s, full, &n)) >= 0) break; /* it said why */
    done += n;
    if (s->interrupted || (!s->o.events && atomic_load(&s->time_up))) break;
    if (n == 0) return cli_fail(CMD, KEEL_EXIT_FAIL, "the trace gave no events");
  }
  return rc;
}

typedef struct verdict {
  double warm_t, rss_base, rss_max, rss_drift, tr_base, tr_max, tr_min, tr_drift;
  size_t rss_n; /* samples after warm-up */
  size_t used;  /* of them, those the tracked bytes are judged on */
  int lap_based;
} verdict;

static void judge(const soak *s, verdict *v) {
  memset(v, 0, sizeof *v);
  double end = s->n ? s->samples[s->n - 1].t : 0;
  v->warm_t = end * s->o.warmup;
  /* Warm-up lasts at least one whole lap: until then the caches fill. */
  for (size_t i = 0; i < s->n; i++)
    if (s->samples[i].lap_end) {
      if (s->samples[i].t > v->warm_t) v->warm_t = s->samples[i].t;
      break;
    }
  size_t laps_after = 0, first = s->n;
  for (size_t i = 0; i < s->n; i++) {
    if (s->samples[i].t < v->warm_t) continue;
    if (first == s->n) first = i;
    laps_after += s->samples[i].lap_end;
  }
  v->lap_based = laps_after >= 2;
  for (size_t i = first; i < s->n; i++) {
    const sample *x = &s->samples[i];
    if (v->rss_n++ == 0) v->rss_base = v->rss_max = (double)x->rss;
    if ((double)x->rss > v->rss_max) v->rss_max = (double)x->rss;
    if (v->lap_based && !x->lap_end) continue;
    if (v->used++ == 0) v->tr_base = v->tr_max = v->tr_min = (double)x->tracked;
    if ((double)x->tracked > v->tr_max) v->tr_max = (double)x->tracked;
    if ((double)x->tracked < v->tr_min) v->tr_min = (double)x->tracked;
  }
  v->rss_drift = v->rss_base > 0 ? (v->rss_max - v->rss_base) / v->rss_base : 0;
  v->tr_drift = v->tr_base > 0 ? (v->tr_max - v->tr_base) / v->tr_base : 0;
}

static int write_series(const soak *s) {
  if (!s->o.series) return 0;
  FILE *f = fopen(s->o.series, "w");
  if (!f) return cli_fail(CMD, KEEL_EXIT_FAIL, "%s: cannot write the series", s->o.series);
  fprintf(f, "t_s,events,rss_bytes,tracked_bytes,lap_end\n");
  for (size_t i = 0; i < s->n; i++)
    fprintf(f, "%.3f,%llu,%llu,%lld,%d\n", s->samples[i].t, (unsigned long long)s->samples[i].events,
            (unsigned long long)s->samples[i].rss, (long long)s->samples[i].tracked, s->samples[i].lap_end);
  return fclose(f) == 0 ? 0 : cli_fail(CMD, KEEL_EXIT_FAIL, "%s: cannot write the series", s->o.series);
}

static int report(const soak *s, uint64_t per_lap) {
  verdict v;
  judge(s, &v);
  const sample *last = &s->samples[s->n - 1];
  /* Drift needs a base and two more samples to mean anything. */
  int enough = v.rss_n >= 3 && v.used >= 2;
  int ok = enough && !s->interrupted && v.rss_drift <= 0.02 && v.tr_drift <= 0.01;
  fprintf(stderr,
          "keel bench soak: %s%llu events in %.1f s (%.0f events/s), %llu-event laps, %zu samples\n"
          "  after warm-up (%.1f s): RSS %.1f -> max %.1f MiB, drift %.2f %% (limit 2 %%)\n"
          "  tracked bytes%s: %.2f MiB, range %.2f .. %.2f MiB, drift %.3f %% (limit 1 %%: %s)\n"
          "  %s\n",
          s->interrupted ? "interrupted; " : "", (unsigned long long)last->events, last->t,
          last->t > 0 ? (double)last->events / last->t : 0, (unsigned long long)per_lap, s->n, v.warm_t, v.rss_base / 1048576, v.rss_max / 1048576,
          100 * v.rss_drift, v.lap_based ? " at lap ends" : "", v.tr_base / 1048576, v.tr_min / 1048576,
          v.tr_max / 1048576, 100 * v.tr_drift, v.tr_drift <= 0.01 ? "flat" : "growing",
          ok ? "PASS: memory is stable"
          : s->interrupted ? "NOT JUDGED: interrupted before the end (the figures so far)"
          : enough ? "FAIL: memory is not stable"
                   : "FAIL: too few samples after warm-up to judge (run longer or sample more often)");
  printf("{\"events\":%llu,\"seconds\":%.3f,\"events_per_s\":%.1f,\"samples\":%zu,\"warmup_s\":%.3f,"
         "\"rss_base_bytes\":%.0f,\"rss_max_bytes\":%.0f,\"rss_drift\":%.6f,\"tracked_base_bytes\":%.0f,"
         "\"tracked_min_bytes\":%.0f,\"tracked_max_bytes\":%.0f,\"tracked_drift\":%.6f,\"interrupted\":%s,"
         "\"pass\":%s}\n",
         (unsigned long long)last->events, last->t, last->t > 0 ? (double)last->events / last->t : 0, s->n,
         v.warm_t, v.rss_base, v.rss_max, v.rss_drift, v.tr_base, v.tr_min, v.tr_max, v.tr_drift,
         s->interrupted ? "true" : "false", ok ? "true" : "false");
  return ok ? KEEL_EXIT_OK : KEEL_EXIT_CHECK;
}

static int count_lines(const char *path, uint64_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  int c;
  *n = 0;
  while ((c = getc(f)) != EOF) *n += c == '\n';
  fclose(f);
  return 0;
}

/* The events files made (full, tail), then the laps with the sampler on. */
static int soak_files(soak *s, const char *trace, const char *full, const char *tail) {
  const char *tr = s->o.trace, *fmt = s->o.format;
  if (!tr) {
    FILE *f = fopen(trace, "wb");
    int bad = !f || fwrite(keel_demo_trace, 1, keel_demo_trace_len, f) != keel_demo_trace_len;
    if (f && fclose(f)) bad = 1;
    if (bad) return cli_fail(CMD, KEEL_EXIT_FAIL, "cannot write %s", trace);
    tr = trace;
    fmt = "bin64";
  }
  uint64_t per_lap = 0;
  int g = cli_gen_file(tr, fmt, s->o.mix, 0, full);
  if (g == 0 && (count_lines(full, &per_lap) || per_lap == 0)) g = -1;
  if (g == 0 && s->o.events % per_lap) g = cli_gen_file(tr, fmt, s->o.mix, s->o.events % per_lap, tail);
  if (g == KEEL_EXIT_USAGE) return KEEL_EXIT_USAGE; /* gen said what: a bad --trace, --format or --mix */
  if (g != 0) return cli_fail(CMD, KEEL_EXIT_FAIL, "turning %s into events failed", tr);
  int rc = build(s);
  if (rc >= 0) return rc;
  pthread_t th;
  clock_gettime(CLOCK_MONOTONIC, &s->start);
  take_sample(s, 0, 0);
  if (pthread_create(&th, NULL, sampler, s) != 0) return cli_fail(CMD, KEEL_EXIT_FAIL, "cannot start the sampler");
  cli_signals_catch(s->p);
  if (cli_signals_caught()) s->interrupted = 1; /* came while it got ready: no lap */
  else rc = laps(s, full, tail, per_lap);
  finish(s);
  pthread_join(th, NULL);
  if (rc < 0 && (rc = write_series(s)) == 0) rc = report(s, per_lap);
  return rc;
}

/* Makes the events files in dir, soaks, and removes them whatever happened. */
static int soak_in(soak *s, const char *dir) {
  char trace[160], full[160], tail[160];
  snprintf(full, sizeof full, "%s/events.ndjson", dir);
  snprintf(tail, sizeof tail, "%s/tail.ndjson", dir);
  snprintf(trace, sizeof trace, "%s/scarab-recs-sample.bin", dir);
  int rc = soak_files(s, trace, full, tail);
  unlink(tail);
  unlink(full);
  unlink(trace);
  return rc;
}

int keel_bench_soak(int argc, char **argv) {
  soak s;
  memset(&s, 0, sizeof s);
  int rc = parse(&s.o, argc, argv);
  if (rc >= 0) return rc;
  /* Plain malloc, on purpose: the series must not count in the tracked bytes it
   * measures. Pages are touched only as samples are written. */
  s.samples = malloc(MAX_SAMPLES * sizeof *s.samples);
  if (!s.samples) return cli_fail(CMD, KEEL_EXIT_FAIL, "out of memory");
  pthread_mutex_init(&s.lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s.wake, &ca);
  pthread_condattr_destroy(&ca);
  char dir[] = "/tmp/keel-bench-soak-XXXXXX";
  cli_signals_catch(NULL); /* a signal while it gets ready ends it too, its files removed */
  if (!mkdtemp(dir)) rc = cli_fail(CMD, KEEL_EXIT_FAIL, "cannot make a temporary folder");
  else {
    rc = soak_in(&s, dir);
    rmdir(dir);
  }
  cli_signals_release();
  teardown(&s);
  return rc;
}
