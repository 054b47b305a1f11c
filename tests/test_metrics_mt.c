/* test_metrics_mt.c — keel_pipeline_snapshot from another thread while a
 * 2-worker run goes on (also under TSan): counters only grow, stay within
 * what was read, the run shows as running with its queues sized; after the
 * run the snapshot equals the run's own stats, latency histograms included,
 * and keel's series render from it. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "keel/metrics.h"
#include "pipeline_fixture.h"

typedef struct watcher {
  keel_pipeline_t *p;
  _Atomic int done;
  int snapshots, saw_running, bad;
} watcher;

static void *watch(void *arg) {
  watcher *w = arg;
  keel_run_stats *s = calloc(1, sizeof *s);
  uint64_t last_in = 0, last_calls = 0;
  while (!atomic_load(&w->done) && s) {
    if (keel_pipeline_snapshot(w->p, s) != KEEL_OK) w->bad++;
    w->snapshots++;
    if (s->running) {
      w->saw_running = 1;
      /* Each queue is read on its own (a batch may move between reads). */
      if (s->batches == 0 || s->queue_free > s->batches || s->queue_work > s->batches || s->queue_done > s->batches)
        w->bad++;
    }
    uint64_t calls = s->n_stages ? s->stages[0].calls : 0;
    if (s->events_in < last_in || calls < last_calls || s->events_out + s->rejected > s->events_in) {
      fprintf(stderr, "counters: in %llu (was %llu), out %llu + rejected %llu, calls %llu (was %llu)\n",
              (unsigned long long)s->events_in, (unsigned long long)last_in, (unsigned long long)s->events_out,
              (unsigned long long)s->rejected, (unsigned long long)calls, (unsigned long long)last_calls);
      w->bad++;
    }
    last_in = s->events_in;
    last_calls = calls;
    usleep(200);
  }
  free(s);
  return NULL;
}

static void test_snapshot_during_run(void **st) {
  (void)st;
  char in[] = "/tmp/keel-metrics-mt-XXXXXX";
  int fd = mkstemp(in);
  assert_true(fd >= 0);
  close(fd);
  fixture_counts want = fixture_write_mixed(in, 20000);
  keel_registry_t *r = fixture_registry();
  keel_config_t *c = fixture_config("len,parity,slow", (const char *[]){"pipeline.workers=2", "pipeline.batch=16", NULL});
  keel_pipeline_t *p;
  char err[256];
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  watcher w = {.p = p};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, watch, &w), 0);
  keel_run_stats *run = calloc(2, sizeof *run);
  assert_non_null(run);
  keel_run_io io = {in, "/dev/null", "/dev/null"};
  keel_status rs = keel_pipeline_run(p, &io, &run[0], err, sizeof err);
  if (rs != KEEL_OK) fprintf(stderr, "run: %s\n", err);
  assert_int_equal(rs, KEEL_OK);
  atomic_store(&w.done, 1);
  pthread_join(t, NULL);
  assert_int_equal(w.bad, 0);
  assert_true(w.snapshots > 5);
  assert_true(w.saw_running);
  assert_int_equal(run[0].events_in, want.events);
  /* After the run: the snapshot is the run's figures. */
  assert_int_equal(keel_pipeline_snapshot(p, &run[1]), KEEL_OK);
  assert_false(run[1].running);
  assert_int_equal(run[1].events_in, run[0].events_in);
  assert_int_equal(run[1].events_out, run[0].events_out);
  assert_int_equal(run[1].rejected, run[0].rejected);
  for (size_t i = 0; i < run[0].n_stages; i++) {
    uint64_t n = 0;
    for (size_t b = 0; b <= KEEL_LATENCY_BUCKETS; b++) {
      assert_int_equal(run[1].stages[i].latency[b], run[0].stages[i].latency[b]);
      n += run[0].stages[i].latency[b];
    }
    assert_int_equal(n, run[0].stages[i].calls); /* one latency per call */
    assert_int_equal(run[1].stages[i].calls, run[0].stages[i].calls);
  }
  assert_true(run[0].stages[2].latency_sum_s > 0);
  /* keel's series from a sample of the finished pipeline. */
  keel_metrics_sample *smp = calloc(1, sizeof *smp);
  keel_metrics_t *m;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_OTHER);
  assert_int_equal(keel_metrics_sample_take(p, 1, smp), KEEL_OK);
  assert_int_equal(keel_metrics_create(&m), KEEL_OK);
  assert_int_equal(keel_metrics_collect(m, smp), KEEL_OK);
  assert_int_equal(keel_metrics_write_prometheus(m, &b), KEEL_OK);
  char line[128];
  snprintf(line, sizeof line, "keel_events_in_total %llu\n", (unsigned long long)run[0].events_in);
  assert_non_null(strstr(b.data, line));
  snprintf(line, sizeof line, "keel_stage_latency_seconds_count{stage=\"slow\"} %llu\n",
           (unsigned long long)run[0].stages[2].calls);
  assert_non_null(strstr(b.data, line));
  keel_buf_free(&b);
  keel_metrics_destroy(m);
  free(smp);
  free(run);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  unlink(in);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_snapshot_during_run)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
