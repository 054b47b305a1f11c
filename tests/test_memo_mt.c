/* test_memo_mt.c — memoized stages across workers (also run under TSan):
 *  - single flight: a slow pure stage memoized in a 4-worker pipeline, fed
 *    runs of identical events so that several workers miss the same key at
 *    once, computes each distinct input exactly once (identical concurrent
 *    misses wait for the one load), and the output is byte-identical to the
 *    unmemoized run's;
 *  - single flight forced: threads missing one key together (the load waits
 *    until each has missed) run the stage once and all get its result;
 *  - failures are not shared between workers: identical failing events
 *    racing on one key each get their own reason. */
#include <pthread.h>
#include <unistd.h>

#include "keel/memo.h"
#include "pipeline_fixture.h"

/* heavy (pure): spins ~300 us, then n = len(text) * 7; fails a text
 * starting with "bad" with a reason naming the event's own line. Counts its
 * calls. */
static _Atomic uint64_t heavy_calls;
static keel_status heavy_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  atomic_fetch_add(&heavy_calls, 1);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000);
  keel_value text;
  keel_event_get(ev, io->reads[0], &text);
  if (text.u.str.len >= 3 && !memcmp(text.u.str.ptr, "bad", 3))
    return keel_event_fail(ev, "line %llu: bad input", (unsigned long long)keel_event_line(ev));
  return keel_event_set_int(ev, io->writes[0], (int64_t)text.u.str.len * 7);
}

static const keel_field_spec heavy_reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec heavy_writes[] = {{"n", KEEL_FIELD_INT, 0}};

static keel_registry_t *mt_registry(void) {
  keel_registry_t *r = fixture_registry();
  keel_stage_def d = {.size = sizeof d, .name = "heavy", .version = 1, .flags = KEEL_STAGE_PURE,
                      .reads = heavy_reads, .n_reads = 1, .writes = heavy_writes, .n_writes = 1,
                      .process = heavy_process};
  char err[256];
  assert_int_equal(keel_registry_add(r, &d, err, sizeof err), KEEL_OK);
  return r;
}

static keel_run_stats run(const char *const *sets, const char *in, const char *out, const char *dl) {
  keel_registry_t *r = mt_registry();
  keel_config_t *c = fixture_config("heavy,parity", sets);
  keel_pipeline_t *p;
  char err[512];
  if (keel_pipeline_create(r, c, &p, err, sizeof err) != KEEL_OK) fail_msg("create: %s", err);
  keel_run_io io = {in, out, dl};
  keel_run_stats stats;
  if (keel_pipeline_run(p, &io, &stats, err, sizeof err) != KEEL_OK) fail_msg("run: %s", err);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  return stats;
}

static void test_single_flight_across_workers(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  /* KEYS distinct texts, each in a run of RUN identical events: with
   * batch = 1 the workers take consecutive events, so several of them miss
   * the same key while its first load spins. */
  enum { KEYS = 24, RUN = 40, N = KEYS * RUN };
  const char *in = tu_path("sf.ndjson");
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  for (int k = 0; k < KEYS; k++)
    for (int i = 0; i < RUN; i++) fprintf(f, "{\"text\":\"%.*s%d\"}\n", k % 5, "xxxxx", k);
  fclose(f);
  static const char *const common[] = {"pipeline.workers=4", "pipeline.batch=1"};

  atomic_store(&heavy_calls, 0);
  keel_run_stats plain = run((const char *[]){common[0], common[1], NULL}, in, tu_path("sf.plain"), tu_path("sf.dl"));
  assert_int_equal(plain.events_out, N);
  assert_int_equal(atomic_load(&heavy_calls), N); /* unmemoized: every event computes */

  atomic_store(&heavy_calls, 0);
  keel_run_stats memo = run((const char *[]){common[0], common[1], "cache.heavy.size=1MiB", NULL}, in,
                            tu_path("sf.memo"), tu_path("sf.dl2"));
  assert_int_equal(memo.events_out, N);
  const keel_memo_stats *c = &memo.stages[0].cache;
  /* Each distinct input computed exactly once, however many workers missed
   * it at the same moment. */
  assert_int_equal(atomic_load(&heavy_calls), KEYS);
  assert_int_equal(c->loads, KEYS);
  assert_int_equal(c->hits + c->misses, N);
  /* Misses beyond the loads waited for another worker's load. Whether any
   * happened depends on the scheduler (a loaded machine may run the workers
   * one after another), so it is reported, not asserted: the test below
   * forces the overlap. */
  print_message("single flight: %llu misses for %llu loads, %llu hits\n", (unsigned long long)c->misses,
                (unsigned long long)c->loads, (unsigned long long)c->hits);

  size_t la, lb;
  char *a = fixture_slurp(tu_path("sf.plain"), &la), *b = fixture_slurp(tu_path("sf.memo"), &lb);
  assert_int_equal(la, lb);
  assert_memory_equal(a, b, la);
  free(a);
  free(b);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- single flight, forced ---- */

/* gate (pure): n = len(text); a call does not return until the memo in
 * gate_memo has counted gate_wait_misses misses (or 5 s passed), so every
 * thread of the test has looked the key up while this load runs. */
enum { GATE_THREADS = 4 };
static keel_memo_t *_Atomic gate_memo;
static _Atomic uint64_t gate_calls, gate_wait_misses;
static keel_status gate_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  atomic_fetch_add(&gate_calls, 1);
  for (int i = 0; i < 5000; i++) {
    keel_memo_stats ms;
    keel_memo_get_stats(atomic_load(&gate_memo), &ms);
    if (ms.misses >= atomic_load(&gate_wait_misses)) break;
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  keel_value text;
  keel_event_get(ev, io->reads[0], &text);
  return keel_event_set_int(ev, io->writes[0], (int64_t)text.u.str.len);
}

typedef struct gate_thread {
  pthread_t tid;
  keel_memo_t *m;
  keel_schema_t *schema;
  const keel_field_id *ids;
  pthread_barrier_t *barrier;
  const char *text;
  keel_status st;
  int64_t n;
} gate_thread;

static void *gate_main(void *arg) {
  gate_thread *t = arg;
  keel_memo_worker_t *w = NULL;
  keel_event_t *ev = NULL;
  t->st = keel_memo_worker_create(t->m, t->schema, &w);
  if (t->st == KEEL_OK) t->st = keel_event_create(t->schema, KEEL_MEM_ARENA, 0, &ev);
  if (t->st == KEEL_OK) t->st = keel_event_set_string(ev, t->ids[0], t->text, strlen(t->text));
  pthread_barrier_wait(t->barrier);
  if (t->st == KEEL_OK) t->st = keel_memo_process(t->m, w, ev);
  keel_value v = {.type = KEEL_FIELD_NONE};
  if (t->st == KEEL_OK && keel_event_get(ev, t->ids[1], &v)) t->n = v.u.i;
  keel_event_destroy(ev);
  keel_memo_worker_destroy(w);
  return NULL;
}

static void test_single_flight_forced(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static const keel_field_spec writes[] = {{"n", KEEL_FIELD_INT, 0}};
  static const keel_stage_def def = {.size = sizeof def, .name = "gate", .version = 1, .flags = KEEL_STAGE_PURE,
                                     .reads = heavy_reads, .n_reads = 1, .writes = writes, .n_writes = 1,
                                     .process = gate_process};
  keel_field_id ids[2];
  keel_schema_t *schema = fixture_text_n_schema(ids);
  keel_stage_io io = {ids, ids + 1};
  keel_memo_options o = {.size = sizeof o, .def = &def, .io = &io, .schema = schema, .max_bytes = 1 << 20};
  keel_memo_t *m;
  char err[256];
  assert_int_equal(keel_memo_create(&o, &m, err, sizeof err), KEEL_OK);
  atomic_store(&gate_memo, m);
  static const char *const texts[] = {"first", "second key", "3"};
  for (size_t k = 0; k < 3; k++) {
    /* GATE_THREADS threads miss one key together; the load waits until all
     * of them have missed. */
    atomic_store(&gate_calls, 0);
    keel_memo_stats ms;
    keel_memo_get_stats(m, &ms);
    atomic_store(&gate_wait_misses, ms.misses + GATE_THREADS);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, GATE_THREADS);
    gate_thread t[GATE_THREADS];
    for (int i = 0; i < GATE_THREADS; i++) {
      t[i] = (gate_thread){.m = m, .schema = schema, .ids = ids, .barrier = &barrier, .text = texts[k]};
      assert_int_equal(pthread_create(&t[i].tid, NULL, gate_main, &t[i]), 0);
    }
    for (int i = 0; i < GATE_THREADS; i++) {
      pthread_join(t[i].tid, NULL);
      assert_int_equal(t[i].st, KEEL_OK);
      assert_int_equal(t[i].n, (int64_t)strlen(texts[k])); /* every waiter got the one result */
    }
    pthread_barrier_destroy(&barrier);
    keel_memo_stats after;
    keel_memo_get_stats(m, &after);
    assert_int_equal(after.misses - ms.misses, GATE_THREADS); /* all of them missed at once... */
    assert_int_equal(after.loads - ms.loads, 1);
    assert_int_equal(atomic_load(&gate_calls), 1); /* ...and the stage ran once */
  }
  keel_memo_destroy(m);
  keel_schema_destroy(schema);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_failures_racing_on_one_key(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  enum { N = 200 };
  const char *in = tu_path("bad.ndjson"), *dl = tu_path("bad.dl");
  FILE *f = fopen(in, "w");
  for (int i = 0; i < N; i++) fprintf(f, "{\"text\":\"%s\"}\n", i % 4 == 3 ? "fine" : "bad");
  fclose(f);
  atomic_store(&heavy_calls, 0);
  keel_run_stats s = run((const char *[]){"pipeline.workers=4", "pipeline.batch=1", "cache.heavy.size=1MiB", NULL},
                         in, tu_path("bad.out"), dl);
  assert_int_equal(s.events_out, N / 4);
  assert_int_equal(s.rejected, N - N / 4);
  assert_int_equal(s.stages[0].errors, N - N / 4);
  assert_int_equal(s.stages[0].cache.hits + s.stages[0].cache.misses, N);
  /* Every bad event computed (nothing stored for it), "fine" once. */
  assert_int_equal(atomic_load(&heavy_calls), N - N / 4 + 1);
  char *text = fixture_slurp(dl, NULL);
  assert_int_equal(fixture_count_lines(text), N - N / 4);
  for (size_t i = 0; i < N - N / 4; i++) {
    json_t *j = fixture_line(text, i);
    json_int_t line = json_integer_value(json_object_get(j, "line"));
    char want[64];
    snprintf(want, sizeof want, "heavy: line %lld: bad input", (long long)line);
    assert_string_equal(json_string_value(json_object_get(j, "reason")), want);
    json_decref(j);
  }
  free(text);
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_flight_across_workers),
      cmocka_unit_test(test_single_flight_forced),
      cmocka_unit_test(test_failures_racing_on_one_key),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_make, tu_tmpdir_remove);
}
