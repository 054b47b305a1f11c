/* test_memo_mt.c — memoized stages across workers (also run under TSan):
 *  - single flight: a slow pure stage memoized in a 4-worker pipeline, fed
 *    runs of identical events so that several workers miss the same key at
 *    once, computes each distinct input exactly once (identical concurrent
 *    misses wait for the one load), and the output is byte-identical to the
 *    unmemoized run's;
 *  - failures are not shared between workers: identical failing events
 *    racing on one key each get their own reason. */
#include <unistd.h>

#include "keel/memo.h"
#include "pipeline_fixture.h"

static char dir[64];

static int make_dir(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/keel_test_memo_mt_XXXXXX");
  assert_non_null(mkdtemp(dir));
  return 0;
}

static int remove_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *in_dir(const char *name) {
  static char paths[16][256];
  static int next;
  char *p = paths[next++ % 16];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

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
  const char *in = in_dir("sf.ndjson");
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  for (int k = 0; k < KEYS; k++)
    for (int i = 0; i < RUN; i++) fprintf(f, "{\"text\":\"%.*s%d\"}\n", k % 5, "xxxxx", k);
  fclose(f);
  static const char *const common[] = {"pipeline.workers=4", "pipeline.batch=1"};

  atomic_store(&heavy_calls, 0);
  keel_run_stats plain = run((const char *[]){common[0], common[1], NULL}, in, in_dir("sf.plain"), in_dir("sf.dl"));
  assert_int_equal(plain.events_out, N);
  assert_int_equal(atomic_load(&heavy_calls), N); /* unmemoized: every event computes */

  atomic_store(&heavy_calls, 0);
  keel_run_stats memo = run((const char *[]){common[0], common[1], "cache.heavy.size=1MiB", NULL}, in,
                            in_dir("sf.memo"), in_dir("sf.dl2"));
  assert_int_equal(memo.events_out, N);
  const keel_memo_stats *c = &memo.stages[0].cache;
  /* Each distinct input computed exactly once, however many workers missed
   * it at the same moment. */
  assert_int_equal(atomic_load(&heavy_calls), KEYS);
  assert_int_equal(c->loads, KEYS);
  assert_int_equal(c->hits + c->misses, N);
  /* Some misses did wait for another worker's load (else this run did not
   * test single flight at all). */
  if (c->misses <= c->loads)
    fail_msg("no concurrent miss: %llu misses, %llu loads", (unsigned long long)c->misses,
             (unsigned long long)c->loads);

  size_t la, lb;
  char *a = fixture_slurp(in_dir("sf.plain"), &la), *b = fixture_slurp(in_dir("sf.memo"), &lb);
  assert_int_equal(la, lb);
  assert_memory_equal(a, b, la);
  free(a);
  free(b);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_failures_racing_on_one_key(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  enum { N = 200 };
  const char *in = in_dir("bad.ndjson"), *dl = in_dir("bad.dl");
  FILE *f = fopen(in, "w");
  for (int i = 0; i < N; i++) fprintf(f, "{\"text\":\"%s\"}\n", i % 4 == 3 ? "fine" : "bad");
  fclose(f);
  atomic_store(&heavy_calls, 0);
  keel_run_stats s = run((const char *[]){"pipeline.workers=4", "pipeline.batch=1", "cache.heavy.size=1MiB", NULL},
                         in, in_dir("bad.out"), dl);
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
      cmocka_unit_test(test_failures_racing_on_one_key),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
