/* test_pipeline_mt.c — runs with several workers: output byte-identical
 * with 1, 2 and 4 workers, --unordered complete, a stop in the middle of a
 * run loses nothing, a stop from another thread. Run under TSan too. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline_fixture.h"

static char *path_of(const char *name) {
  char *p = malloc(256);
  snprintf(p, 256, "%s/%s", tu_tmpdir(), name);
  return p;
}

typedef struct outcome {
  keel_run_stats stats;
  char *out, *dl; /* file contents, malloc'd */
} outcome;

static outcome run_with(const char *stages, const char *const *sets, const char *in, const char *tag) {
  keel_registry_t *r = fixture_registry();
  keel_config_t *c = fixture_config(stages, sets);
  keel_pipeline_t *p;
  char err[512];
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  atomic_store(&fixture_target, p);
  char name[64];
  snprintf(name, sizeof name, "%s.out", tag);
  char *out = path_of(name);
  snprintf(name, sizeof name, "%s.dl", tag);
  char *dl = path_of(name);
  keel_run_io io = {in, out, dl};
  outcome o;
  memset(&o, 0, sizeof o);
  if (keel_pipeline_run(p, &io, &o.stats, err, sizeof err) != KEEL_OK) fail_msg("run %s: %s", tag, err);
  atomic_store(&fixture_target, NULL);
  o.out = fixture_slurp(out, NULL);
  o.dl = fixture_slurp(dl, NULL);
  if (!o.dl) o.dl = calloc(1, 1);
  assert_non_null(o.out);
  free(out);
  free(dl);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  return o;
}

static void free_outcome(outcome *o) {
  free(o->out);
  free(o->dl);
}

static int cmp_lines(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The lines of text, sorted (pointers into text, which is modified). */
static char **sorted_lines(char *text, size_t *n) {
  size_t cap = fixture_count_lines(text) + 1, k = 0;
  char **v = malloc(cap * sizeof *v);
  for (char *s = text; *s;) {
    char *e = strchr(s, '\n');
    if (e) *e = '\0';
    v[k++] = s;
    if (!e) break;
    s = e + 1;
  }
  qsort(v, k, sizeof *v, cmp_lines);
  *n = k;
  return v;
}

static void test_order_same_for_any_worker_count(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  char *in = path_of("order.ndjson");
  fixture_counts want = fixture_write_mixed(in, 3000);
  /* Small batches so many are in flight at once; slow makes workers overlap. */
  outcome one = run_with("len,parity,slow", (const char *[]){"pipeline.workers=1", "pipeline.batch=7", NULL}, in,
                         "w1");
  assert_int_equal(one.stats.events_out, want.out);
  assert_int_equal(one.stats.rejected, want.rejected);
  const char *counts[] = {"pipeline.workers=2", "pipeline.workers=4"};
  for (int k = 0; k < 2; k++) {
    outcome o = run_with("len,parity,slow", (const char *[]){counts[k], "pipeline.batch=7", NULL}, in, "wn");
    assert_int_equal(o.stats.events_in, want.events);
    assert_int_equal(o.stats.events_out, want.out);
    assert_int_equal(o.stats.rejected, want.rejected);
    assert_int_equal(o.stats.blank_lines, want.blank);
    /* Byte-identical output and dead-letter files. */
    assert_string_equal(o.out, one.out);
    assert_string_equal(o.dl, one.dl);
    /* Per-stage counters are summed over the workers. */
    assert_int_equal(o.stats.stages[0].calls, one.stats.stages[0].calls);
    assert_int_equal(o.stats.stages[0].errors, one.stats.stages[0].errors);
    assert_int_equal(o.stats.stages[2].calls, want.out);
    free_outcome(&o);
  }

  /* Unordered: every line still there, exactly once. */
  outcome u = run_with("len,parity,slow",
                       (const char *[]){"pipeline.workers=4", "pipeline.batch=3", "pipeline.ordered=false", NULL}, in,
                       "un");
  assert_int_equal(u.stats.events_out, want.out);
  assert_int_equal(u.stats.rejected, want.rejected);
  size_t na, nb;
  char *copy = strdup(one.out);
  char **a = sorted_lines(copy, &na), **b = sorted_lines(u.out, &nb);
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++) assert_string_equal(a[i], b[i]);
  free(a);
  free(b);
  free(copy);
  free_outcome(&u);
  free_outcome(&one);
  free(in);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* The `stamp` stage asks for a stop at its 500th event (as SIGINT would, in
 * the middle of a run): reading stops, everything read is written. */
static void test_stop_mid_run_loses_nothing(void **state) {
  (void)state;
  char *in = path_of("stop.ndjson");
  fixture_counts all = fixture_write_mixed(in, 20000);
  for (int workers = 1; workers <= 4; workers *= 2) {
    char w[32];
    snprintf(w, sizeof w, "pipeline.workers=%d", workers);
    outcome o = run_with("len,stamp,slow", (const char *[]){w, "pipeline.batch=16", "stage.stamp.stop_at=500", NULL},
                         in, "stop");
    assert_int_equal(o.stats.interrupted, 1);
    assert_true(o.stats.events_out >= 500);
    assert_true(o.stats.events_in < all.events); /* it did stop early */
    assert_int_equal(o.stats.events_in, o.stats.events_out + o.stats.rejected);
    assert_int_equal(fixture_count_lines(o.out), o.stats.events_out);
    assert_int_equal(fixture_count_lines(o.dl), o.stats.rejected);
    /* What was written is exactly a prefix of the input: the events up to
     * the last line read, none missing. */
    uint64_t lines_read = o.stats.events_in + o.stats.blank_lines;
    size_t k = 0, kd = 0;
    for (uint64_t line = 1; line <= lines_read + 1; line++) {
      int kind = (int)(line % 10);
      if (kind == 8) continue;
      int rejected = kind == 6 || kind == 7 || kind == 9;
      json_t *j = rejected ? fixture_line(o.dl, kd) : fixture_line(o.out, k);
      if (!j) break; /* past the end of what was read */
      if (rejected) kd++;
      else k++;
      assert_int_equal(json_integer_value(json_object_get(j, "line")), line);
      json_decref(j);
    }
    assert_int_equal(k, o.stats.events_out);
    assert_int_equal(kd, o.stats.rejected);
    free_outcome(&o);
  }
  free(in);
}

/* keel_pipeline_stop from another thread while workers run. */
static void *stopper(void *arg) {
  (void)arg;
  keel_pipeline_t *p;
  while ((p = atomic_load(&fixture_target)) == NULL) usleep(100);
  usleep(20000);
  keel_pipeline_stop(p);
  return NULL;
}

static void test_stop_from_another_thread(void **state) {
  (void)state;
  char *in = path_of("stop2.ndjson");
  fixture_counts all = fixture_write_mixed(in, 40000);
  atomic_store(&fixture_target, NULL);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, stopper, NULL), 0);
  outcome o = run_with("len,slow", (const char *[]){"pipeline.workers=2", NULL}, in, "stop2");
  pthread_join(t, NULL);
  assert_int_equal(o.stats.interrupted, 1);
  assert_true(o.stats.events_in < all.events);
  assert_int_equal(o.stats.events_in, o.stats.events_out + o.stats.rejected);
  assert_int_equal(fixture_count_lines(o.out), o.stats.events_out);
  assert_int_equal(fixture_count_lines(o.dl), o.stats.rejected);
  free_outcome(&o);
  free(in);
}

/* A FIFO whose writer keeps it open: the reader blocks in read(); a stop
 * from another thread must still end the run (no signal involved), with
 * everything written so far accounted for. */
typedef struct fifo_writer {
  const char *path;
  _Atomic int release;   /* set when the writer may close */
  _Atomic int timed_out; /* the writer closed without being released */
} fifo_writer;

static void *fifo_main(void *arg) {
  fifo_writer *w = arg;
  /* Read-write, so opening never blocks (a write-only open would wait for
   * the run to open the FIFO, forever if it never did). */
  int fd = open(w->path, O_RDWR);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) return NULL;
  for (int i = 1; i <= 300; i++) fprintf(f, i % 30 ? "{\"text\":\"abc\"}\n" : "nope\n");
  fflush(f);
  /* Wait for the test to release it; after 10 s give up, so a run that
   * waits for EOF fails the test instead of hanging it. */
  for (int ms = 0; !atomic_load(&w->release); ms++) {
    if (ms == 10000) {
      atomic_store(&w->timed_out, 1);
      break;
    }
    usleep(1000);
  }
  fclose(f);
  return NULL;
}

static void *fifo_stopper(void *arg) {
  (void)arg;
  keel_pipeline_t *p;
  while ((p = atomic_load(&fixture_target)) == NULL) usleep(100);
  usleep(300000); /* the 300 lines are read by then; the reader waits for more */
  keel_pipeline_stop(p);
  return NULL;
}

static void test_stop_while_reading_an_open_fifo(void **state) {
  (void)state;
  char *fifo = path_of("events.fifo");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  fifo_writer w = {fifo, 0, 0};
  atomic_store(&fixture_target, NULL);
  pthread_t wt, st;
  assert_int_equal(pthread_create(&wt, NULL, fifo_main, &w), 0);
  assert_int_equal(pthread_create(&st, NULL, fifo_stopper, NULL), 0);
  outcome o = run_with("len", (const char *[]){"pipeline.workers=2", NULL}, fifo, "fifo");
  atomic_store(&w.release, 1); /* only now: the run ended with the FIFO open */
  pthread_join(st, NULL);
  pthread_join(wt, NULL);
  assert_int_equal(atomic_load(&w.timed_out), 0); /* the run did not wait for EOF */
  assert_int_equal(o.stats.interrupted, 1);
  assert_int_equal(o.stats.events_in, 300);
  assert_int_equal(o.stats.events_out, 290);
  assert_int_equal(o.stats.rejected, 10);
  assert_int_equal(fixture_count_lines(o.out), 290);
  assert_int_equal(fixture_count_lines(o.dl), 10);
  free_outcome(&o);
  free(fifo);
}

/* Allocation failure anywhere in a run (set-up, reader, workers, sink, the
 * dead-letter file): the run either fails cleanly with a status and a
 * message, or completes with every event accounted for; nothing leaks and
 * nothing aborts. Fault n = 1, 2, ... until a run sees no fault. */
typedef struct run_oom_ctx {
  keel_pipeline_t *p;
  const char *in, *out, *dl;
  unsigned clean_failures, completed_with_faults;
} run_oom_ctx;

static int run_attempt(void *arg) {
  run_oom_ctx *x = arg;
  keel_run_io io = {x->in, x->out, x->dl};
  keel_run_stats st;
  char err[512] = "";
  unlink(x->dl);
  keel_status s = keel_pipeline_run(x->p, &io, &st, err, sizeof err);
  int faulted = keel_mem_fault_hits() > 0;
  if (s != KEEL_OK) {
    if (err[0] == '\0') fail_msg("run failed with %s and no message", keel_status_name(s));
    x->clean_failures++;
    return 1;
  }
  assert_int_equal(st.events_in, st.events_out + st.rejected);
  assert_int_equal(st.events_in, 40);
  char *out = fixture_slurp(x->out, NULL), *dl = fixture_slurp(x->dl, NULL);
  assert_int_equal(fixture_count_lines(out), st.events_out);
  assert_int_equal(dl ? fixture_count_lines(dl) : 0, st.rejected);
  free(out);
  free(dl);
  if (faulted) x->completed_with_faults++;
  return 0;
}

static void test_oom_sweep_run(void **state) {
  (void)state;
  keel_registry_t *r = fixture_registry();
  keel_config_t *c = fixture_config("len,parity,stamp", (const char *[]){"pipeline.workers=2", "pipeline.batch=4", NULL});
  keel_pipeline_t *p;
  char err[512];
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  char *in = path_of("oom.ndjson"), *out = path_of("oom.out"), *dl = path_of("oom.dl");
  fixture_counts want = fixture_write_mixed(in, 44);
  assert_int_equal(want.events, 40);
  run_oom_ctx x = {p, in, out, dl, 0, 0};
  unsigned n = tu_oom_sweep(run_attempt, &x);
  print_message("run OOM sweep: %u allocations, %u clean failures, %u runs completed despite a fault\n", n,
                x.clean_failures, x.completed_with_faults);
  assert_true(n > 10);
  assert_true(x.clean_failures > 0);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  free(in);
  free(out);
  free(dl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_same_for_any_worker_count),
      cmocka_unit_test(test_stop_mid_run_loses_nothing),
      cmocka_unit_test(test_stop_from_another_thread),
      cmocka_unit_test(test_stop_while_reading_an_open_fifo),
      cmocka_unit_test(test_oom_sweep_run),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_make, tu_tmpdir_remove);
}
