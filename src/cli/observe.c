/* observe.c — the observer of a running pipeline (see observe.h). */
#include "observe.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "keel/budget.h"
#include "keel/http.h"
#include "keel/leak.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/progress.h"

/* The dashboard page, embedded from data/dashboard.html at build time. */
extern const unsigned char keel_dashboard_html[];
extern const size_t keel_dashboard_html_len;

struct cli_observe {
  cli_observe_opts o;
  char who[40]; /* "keel run", for log lines */
  keel_pipeline_t *p;
  keel_http_t *http;
  FILE *log;
  int log_failed;
  keel_progress_t *progress;
  keel_leak_t *leak;         /* sampled by the observer thread only (its owner while it runs) */
  uint64_t events_seen;      /* events in at the last tick: the detector's per-event rates */
  /* mem_lock guards `leaks`: the detector's verdict, read by scrapes. */
  pthread_mutex_t mem_lock;
  keel_metrics_mem_state leaks;
  struct timespec t0;
  pthread_t thread;
  int have_thread;
  /* `lock` guards `stop` and the condition; the samples are the thread's own
   * until it is joined. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int stop;
  keel_metrics_sample *prev, *cur; /* the observer thread's */
  keel_buf line;                   /* the observer thread's */
  /* render_lock guards the scrape's own sample and registry (the server has
   * one thread, but the lock keeps that an assumption it does not rely on). */
  pthread_mutex_t render_lock;
  keel_metrics_sample *scrape;
  keel_metrics_t *reg;
};

static double elapsed(const cli_observe *ob) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - ob->t0.tv_sec) + (t.tv_nsec - ob->t0.tv_nsec) / 1e9;
}

/* The memory budget's figures (keel/budget.h) and the leak detector's
 * verdict (keel/leak.h), for the metrics, the log and the dashboard. */
static void fill_mem_state(cli_observe *ob, keel_metrics_sample *s) {
  pthread_mutex_lock(&ob->mem_lock);
  s->mem = ob->leaks;
  pthread_mutex_unlock(&ob->mem_lock);
  keel_budget_stats bs;
  if (keel_pipeline_budget_stats(ob->p, &bs) == KEEL_OK) {
    s->mem.budget_bytes = bs.limit;
    s->mem.budget_pauses = bs.pauses;
    s->mem.budget_paused_s = bs.paused_s;
    s->mem.budget_shrinks = bs.shrinks;
    s->mem.budget_overruns = bs.overruns;
  }
}

static uint64_t events_of(void *ud, keel_mem_tag tag) {
  (void)tag; /* every tag's rate is per event of the run */
  return ((cli_observe *)ud)->events_seen;
}

/* One detector tick: sample, then publish the verdict for scrapes. */
static void leak_tick(cli_observe *ob) {
  keel_leak_report rep[KEEL_METRICS_MAX_LEAKS];
  size_t n = 0;
  keel_leak_sample(ob->leak);
  keel_leak_verdict(ob->leak, rep, KEEL_METRICS_MAX_LEAKS, &n);
  if (n > KEEL_METRICS_MAX_LEAKS) n = KEEL_METRICS_MAX_LEAKS;
  pthread_mutex_lock(&ob->mem_lock);
  for (size_t i = ob->leaks.n_leaks; i < n; i++)
    keel_log(KEEL_LOG_WARN, ob->who, "leak suspected: %s grows %.0f bytes/s", rep[i].tag, rep[i].bytes_per_s);
  ob->leaks.n_leaks = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(ob->leaks.leaks[i].tag, sizeof ob->leaks.leaks[i].tag, "%.71s", rep[i].tag);
    ob->leaks.leaks[i].bytes_per_s = rep[i].bytes_per_s;
    ob->leaks.leaks[i].bytes_per_event = rep[i].bytes_per_event;
  }
  pthread_mutex_unlock(&ob->mem_lock);
}

static keel_status render_metrics(void *ctx, keel_buf *out) {
  cli_observe *ob = ctx;
  pthread_mutex_lock(&ob->render_lock);
  keel_metrics_reset(ob->reg);
  keel_status st = keel_metrics_sample_take(ob->p, elapsed(ob), ob->scrape);
  if (st == KEEL_OK) {
    fill_mem_state(ob, ob->scrape);
    st = keel_metrics_collect(ob->reg, ob->scrape);
  }
  if (st == KEEL_OK) st = keel_metrics_write_prometheus(ob->reg, out);
  pthread_mutex_unlock(&ob->render_lock);
  return st;
}

/* Takes a sample, publishes it and logs it. */
static void sample_once(cli_observe *ob) {
  keel_metrics_sample *t = ob->prev;
  ob->prev = ob->cur;
  ob->cur = t;
  if (keel_metrics_sample_take(ob->p, elapsed(ob), ob->cur) != KEEL_OK) return;
  fill_mem_state(ob, ob->cur);
  if (ob->prev->unix_s > 0) keel_metrics_sample_rate(ob->prev, ob->cur);
  keel_buf_clear(&ob->line);
  if (keel_metrics_sample_json(ob->cur, &ob->line) != KEEL_OK) return;
  if (ob->http) keel_http_publish(ob->http, ob->line.data, ob->line.len);
  if (ob->log && !ob->log_failed) {
    if (fprintf(ob->log, "%s\n", ob->line.data) < 0 || fflush(ob->log) != 0) {
      ob->log_failed = 1;
      keel_log(KEEL_LOG_ERROR, ob->who, "--metrics-log %s: cannot write: %s", ob->o.metrics_log, strerror(errno));
    }
  }
}

/* Every tick: the progress line and the leak detector's sample. */
static void tick(cli_observe *ob) {
  keel_run_stats s;
  if ((!ob->progress && !ob->leak) || keel_pipeline_snapshot(ob->p, &s) != KEEL_OK) return;
  ob->events_seen = s.events_in;
  if (ob->progress) keel_progress_update(ob->progress, s.events_in, s.input_bytes);
  if (ob->leak) leak_tick(ob);
}

static void *observer_main(void *arg) {
  cli_observe *ob = arg;
  double next_sample = ob->o.interval_s;
  double tick_s = ob->o.interval_s < 0.25 ? ob->o.interval_s : 0.25;
  pthread_mutex_lock(&ob->lock);
  while (!ob->stop) {
    struct timespec until = cli_time_after(CLOCK_REALTIME, tick_s);
    pthread_cond_timedwait(&ob->cond, &ob->lock, &until);
    if (ob->stop) break;
    pthread_mutex_unlock(&ob->lock);
    tick(ob);
    if ((ob->http || ob->log) && elapsed(ob) >= next_sample) {
      sample_once(ob);
      next_sample += ob->o.interval_s;
      if (next_sample < elapsed(ob)) next_sample = elapsed(ob) + ob->o.interval_s;
    }
    pthread_mutex_lock(&ob->lock);
  }
  pthread_mutex_unlock(&ob->lock);
  return NULL;
}

static int start_http(cli_observe *ob) {
  char err[512];
  keel_http_options ho = {.size = sizeof ho, .address = ob->o.http, .metrics = render_metrics, .metrics_ctx = ob,
                          .dashboard = (const char *)keel_dashboard_html, .dashboard_len = keel_dashboard_html_len};
  keel_status st = keel_http_create(&ho, &ob->http, err, sizeof err);
  if (st == KEEL_EINVAL) return cli_usage(ob->o.cmd, "%s", err);
  if (st != KEEL_OK) return cli_fail(ob->o.cmd, KEEL_EXIT_FAIL, "%s", err[0] ? err : keel_status_str(st));
  const char *colon = strrchr(ob->o.http, ':');
  int host_len = colon ? (int)(colon - ob->o.http) : 0;
  keel_log(KEEL_LOG_INFO, ob->who, "dashboard on http://%.*s:%u/ (Prometheus: /metrics)", host_len ? host_len : 9,
           host_len ? ob->o.http : "127.0.0.1", keel_http_port(ob->http));
  return -1;
}

static void free_observer(cli_observe *ob) {
  keel_http_destroy(ob->http);
  keel_metrics_destroy(ob->reg);
  keel_mem_free(ob->prev);
  keel_mem_free(ob->cur);
  keel_mem_free(ob->scrape);
  keel_buf_free(&ob->line);
  keel_progress_destroy(ob->progress);
  keel_leak_destroy(ob->leak);
  if (ob->log) fclose(ob->log);
  pthread_mutex_destroy(&ob->mem_lock);
  pthread_mutex_destroy(&ob->lock);
  pthread_cond_destroy(&ob->cond);
  pthread_mutex_destroy(&ob->render_lock);
  keel_mem_free(ob);
}

static int start_thread(cli_observe *ob) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old); /* the signal is the program's, not this thread's */
  int rc = pthread_create(&ob->thread, NULL, observer_main, ob);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) return cli_fail(ob->o.cmd, KEEL_EXIT_FAIL, "cannot start the observer thread");
  ob->have_thread = 1;
  return -1;
}

int cli_observe_start(const cli_observe_opts *o, keel_pipeline_t *p, cli_observe **out) {
  *out = NULL;
  if (!o->http && !o->metrics_log && !o->progress) return -1;
  cli_observe *ob = keel_mem_calloc(KEEL_MEM_OTHER, 1, sizeof *ob);
  if (!ob) return cli_fail(o->cmd, KEEL_EXIT_FAIL, "out of memory");
  ob->o = *o;
  snprintf(ob->who, sizeof ob->who, "keel %s", o->cmd);
  if (!(ob->o.interval_s > 0)) ob->o.interval_s = 1;
  ob->p = p;
  clock_gettime(CLOCK_MONOTONIC, &ob->t0);
  pthread_mutex_init(&ob->lock, NULL);
  pthread_cond_init(&ob->cond, NULL);
  pthread_mutex_init(&ob->render_lock, NULL);
  pthread_mutex_init(&ob->mem_lock, NULL);
  keel_buf_init(&ob->line, KEEL_MEM_OTHER);
  ob->prev = keel_mem_calloc(KEEL_MEM_OTHER, 1, sizeof *ob->prev);
  ob->cur = keel_mem_calloc(KEEL_MEM_OTHER, 1, sizeof *ob->cur);
  ob->scrape = keel_mem_calloc(KEEL_MEM_OTHER, 1, sizeof *ob->scrape);
  int rc = -1;
  if (!ob->prev || !ob->cur || !ob->scrape || keel_metrics_create(&ob->reg) != KEEL_OK)
    rc = cli_fail(o->cmd, KEEL_EXIT_FAIL, "out of memory");
  if (rc < 0 && o->metrics_log && !(ob->log = fopen(o->metrics_log, "w")))
    rc = cli_fail(o->cmd, KEEL_EXIT_FAIL, "--metrics-log %s: cannot create: %s", o->metrics_log, strerror(errno));
  if (rc < 0 && o->progress) {
    keel_progress_options po = {.size = sizeof po, .label = ob->who, .unit = "events", .total = o->input_size};
    if (keel_progress_create(&po, &ob->progress) != KEEL_OK) rc = cli_fail(o->cmd, KEEL_EXIT_FAIL, "out of memory");
  }
  if (rc < 0 && (o->http || o->metrics_log)) {
    /* The leak detector, sampled on the observer's ticks (its defaults: a 0.25 s interval, an 8 s window). */
    keel_leak_options lo = {.size = sizeof lo, .events = events_of, .events_ud = ob};
    if (keel_leak_create(&lo, &ob->leak) != KEEL_OK) rc = cli_fail(o->cmd, KEEL_EXIT_FAIL, "out of memory");
    ob->leaks.leak_detector = ob->leak != NULL;
  }
  if (rc < 0 && o->http) rc = start_http(ob);
  if (rc < 0) rc = start_thread(ob);
  if (rc >= 0) {
    free_observer(ob);
    return rc;
  }
  if (ob->log) keel_log(KEEL_LOG_DEBUG, ob->who, "metrics log %s, one line every %.3g s", o->metrics_log,
                        ob->o.interval_s);
  *out = ob;
  return -1;
}

int cli_observe_stop(cli_observe *ob) {
  if (!ob) return 0;
  pthread_mutex_lock(&ob->lock);
  ob->stop = 1;
  pthread_cond_signal(&ob->cond);
  pthread_mutex_unlock(&ob->lock);
  if (ob->have_thread) pthread_join(ob->thread, NULL);
  if (ob->http || ob->log) sample_once(ob); /* the run's final figures */
  int rc = ob->log_failed;
  if (ob->log && fclose(ob->log) != 0 && !rc) {
    rc = 1;
    keel_log(KEEL_LOG_ERROR, ob->who, "--metrics-log %s: cannot write", ob->o.metrics_log);
  }
  ob->log = NULL;
  free_observer(ob);
  return rc;
}
