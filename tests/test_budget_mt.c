/* test_budget_mt.c — the memory budget through the library: a cache asked
 * far larger than the budget is shrunk at creation and the run stays under
 * the budget; a surge of memory the caches cannot absorb shrinks them and
 * pauses the reader until it is gone, and nothing is dropped; a budget the
 * fixed parts cannot fit is refused with the numbers; the split of a share
 * among caches, and what shrunk caches get back once memory is calm. Two
 * workers. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "budget_int.h"
#include "keel/budget.h"
#include "keel/config.h"
#include "keel/pipeline.h"
#include "keel/stage.h"
#include "testutil.h"

#define EVENTS 20000
#define VALUE 512

/* ---- stages ---- */

/* big (pure): reads k, writes v = 512 bytes derived from k. */
static keel_status big_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value k;
  if (!keel_event_get(ev, io->reads[0], &k)) return keel_event_fail(ev, "no k");
  char v[VALUE];
  for (size_t i = 0; i < VALUE; i++) v[i] = (char)('a' + (k.u.str.ptr[i % k.u.str.len] + i) % 26);
  return keel_event_set_string(ev, io->writes[0], v, VALUE);
}

/* surge (impure): on its surge_at-th call allocates `surge_bytes` under its
 * tag and hands the block to a thread that frees it `hold_ms` later. */
typedef struct surge {
  keel_mem_tag tag;
  uint64_t at, bytes, hold_ms;
  _Atomic uint64_t calls;
  pthread_t th;
  int started;
  void *block;
} surge;

static void *release_later(void *arg) {
  surge *s = arg;
  nanosleep(&(struct timespec){(time_t)(s->hold_ms / 1000), (long)(s->hold_ms % 1000) * 1000000L}, NULL);
  keel_mem_free(s->block);
  return NULL;
}

static keel_status surge_init(const keel_stage_env *env, void **state) {
  surge *s = env->userdata;
  s->tag = env->tag;
  *state = s;
  return KEEL_OK;
}

static keel_status surge_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)ev;
  (void)io;
  surge *s = st;
  if (atomic_fetch_add(&s->calls, 1) + 1 != s->at || !s->bytes) return KEEL_OK;
  s->block = keel_mem_alloc(s->tag, s->bytes);
  if (!s->block) return KEEL_ENOMEM;
  memset(s->block, 1, s->bytes);
  s->started = pthread_create(&s->th, NULL, release_later, s) == 0;
  if (!s->started) keel_mem_free(s->block);
  return KEEL_OK;
}

static const keel_field_spec big_reads[] = {{"k", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec big_writes[] = {{"v", KEEL_FIELD_STRING, 0}};

/* ---- helpers ---- */

typedef struct fixture {
  keel_registry_t *reg;
  keel_config_t *cfg;
  keel_pipeline_t *p;
  char in[64];
  surge s;
} fixture;

static keel_status build(fixture *f, const char *budget, const char *cache, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  assert_int_equal(keel_registry_create(&f->reg), KEEL_OK);
  keel_stage_def big = {.size = sizeof big, .name = "big", .version = 1, .flags = KEEL_STAGE_PURE,
                        .reads = big_reads, .n_reads = 1, .writes = big_writes, .n_writes = 1,
                        .process = big_process};
  keel_stage_def sg = {.size = sizeof sg, .name = "surge", .version = 1, .init = surge_init,
                       .process = surge_process, .userdata = &f->s};
  assert_int_equal(keel_registry_add(f->reg, &big, err, errlen), KEEL_OK);
  assert_int_equal(keel_registry_add(f->reg, &sg, err, errlen), KEEL_OK);
  assert_int_equal(keel_config_create(&f->cfg), KEEL_OK);
  const char *set[][3] = {{"pipeline", "stages", "big,surge"}, {"pipeline", "workers", "2"},
                          {"limits", "max_line", "4096"},      {"cache.big", "size", cache},
                          {"memory", "budget", budget}};
  for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
    assert_int_equal(keel_config_set(f->cfg, set[i][0], set[i][1], set[i][2], KEEL_CONFIG_CLI), KEEL_OK);
  return keel_pipeline_create(f->reg, f->cfg, &f->p, err, errlen);
}

static void write_input(fixture *f) {
  snprintf(f->in, sizeof f->in, "/tmp/keel-test-budget-XXXXXX");
  int fd = mkstemp(f->in);
  assert_true(fd >= 0);
  FILE *o = fdopen(fd, "w");
  for (int i = 0; i < EVENTS; i++) fprintf(o, "{\"k\":\"key%d\"}\n", i);
  fclose(o);
}

static void run(fixture *f, keel_run_stats *st) {
  char err[256];
  keel_run_io io = {.input = f->in, .output = "/dev/null", .dead_letter = "/dev/null"};
  assert_int_equal(keel_pipeline_run(f->p, &io, st, err, sizeof err), KEEL_OK);
  assert_int_equal(st->events_in, EVENTS);
  assert_int_equal(st->events_out + st->rejected, st->events_in); /* nothing dropped */
  assert_int_equal(st->rejected, 0);
}

static void teardown(fixture *f) {
  if (f->s.started) pthread_join(f->s.th, NULL);
  unlink(f->in);
  keel_pipeline_destroy(f->p);
  keel_config_destroy(f->cfg);
  keel_registry_destroy(f->reg);
}

/* ---- tests ---- */

static void test_cache_shrunk_and_run_under_budget(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static fixture f;
  char err[512];
  assert_int_equal(build(&f, "8MiB", "1GiB", err, sizeof err), KEEL_OK);
  keel_budget_stats b;
  assert_int_equal(keel_pipeline_budget_stats(f.p, &b), KEEL_OK);
  assert_int_equal(b.limit, 8u << 20);
  assert_int_equal(b.n_caches, 1);
  assert_int_equal(b.n_shrunk, 1);
  assert_int_equal(b.caches_asked, 1u << 30);
  assert_true(b.caches_granted < b.cache_share && b.caches_granted >= KEEL_BUDGET_CACHE_FLOOR);
  assert_true(b.fixed_tracked + b.fixed_run + b.reserve + b.cache_share == b.limit);
  assert_non_null(strstr(b.note, "cache big shrunk from 1024.0"));
  write_input(&f);
  keel_run_stats st;
  run(&f, &st);
  assert_int_equal(keel_pipeline_budget_stats(f.p, &b), KEEL_OK);
  printf("# budget 8 MiB: tracked max %.2f MiB, cache %.2f MiB planned, shrinks %llu, pauses %llu\n",
         b.tracked_max / 1048576.0, b.caches_granted / 1048576.0, (unsigned long long)b.shrinks,
         (unsigned long long)b.pauses);
  assert_true(b.tracked_max > 0 && b.tracked_max <= (int64_t)b.limit);
  assert_true(st.stages[0].memoized && st.stages[0].cache.evictions > 0); /* it filled and churned */
  assert_true(st.stages[0].cache.max_bytes <= b.caches_granted);
  teardown(&f);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A run of 8 MiB budget and caches asking for 1 GiB in which, a quarter
 * in, a stage holds 7 MiB (more than the caches can give back) for
 * hold_ms; *b gets the budget's counters after it. */
static void surge_run(fixture *f, uint64_t hold_ms, keel_budget_stats *b) {
  char err[512];
  assert_int_equal(build(f, "8MiB", "1GiB", err, sizeof err), KEEL_OK);
  f->s.at = EVENTS / 4;
  f->s.bytes = 7u << 20;
  f->s.hold_ms = hold_ms;
  write_input(f);
  keel_run_stats st;
  run(f, &st);
  assert_int_equal(keel_pipeline_budget_stats(f->p, b), KEEL_OK);
}

static void test_surge_shrinks_caches_then_pauses_reader(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static fixture f;
  keel_budget_stats b;
  surge_run(&f, 300, &b);
  printf("# surge: shrinks %llu, pauses %llu (%.3f s), overruns %llu, regrows %llu\n",
         (unsigned long long)b.shrinks, (unsigned long long)b.pauses, b.paused_s, (unsigned long long)b.overruns,
         (unsigned long long)b.regrows);
  assert_true(b.shrinks >= 1);
  assert_true(b.pauses >= 1);
  assert_true(b.paused_s >= 0.1); /* until the surge was freed */
  assert_int_equal(b.overruns, 0);
  assert_true(b.caches_now <= b.caches_granted);
  teardown(&f);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Feeds the FIFO at `path` 16 bursts of 100 events, 100 ms apart: a run
 * that lasts past the budget's second of calm. */
typedef struct feeder {
  const char *path;
  int ok;
} feeder;

static void *feed_slowly(void *arg) {
  feeder *fd = arg;
  FILE *o = fopen(fd->path, "w");
  if (!o) return NULL;
  for (int burst = 0; burst < 16; burst++) {
    for (int i = 0; i < 100; i++) fprintf(o, "{\"k\":\"calm%d\"}\n", burst * 100 + i);
    fflush(o);
    nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  fd->ok = fclose(o) == 0;
  return NULL;
}

/* What the surge shrank grows back once memory has been calm for a second:
 * a second run, fed slowly, regrows the caches (never past the plan). */
static void test_caches_grow_back_when_calm(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static fixture f;
  char err[512];
  keel_budget_stats b1, b2;
  surge_run(&f, 100, &b1);
  assert_true(b1.shrinks >= 1);
  assert_true(b1.caches_now < b1.caches_granted);
  if (f.s.started) pthread_join(f.s.th, NULL); /* the surge is freed */
  f.s.started = 0;
  f.s.bytes = 0;
  char fifo[64];
  snprintf(fifo, sizeof fifo, "/tmp/keel-test-budget-fifo-%ld", (long)getpid());
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  feeder fd = {fifo, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, feed_slowly, &fd), 0);
  keel_run_stats st;
  keel_run_io io = {.input = fifo, .output = "/dev/null", .dead_letter = "/dev/null"};
  assert_int_equal(keel_pipeline_run(f.p, &io, &st, err, sizeof err), KEEL_OK);
  pthread_join(th, NULL);
  unlink(fifo);
  assert_true(fd.ok);
  assert_int_equal(st.events_in, 1600);
  assert_int_equal(keel_pipeline_budget_stats(f.p, &b2), KEEL_OK);
  printf("# calm: caches %llu -> %llu of %llu planned, regrows %llu\n", (unsigned long long)b1.caches_now,
         (unsigned long long)b2.caches_now, (unsigned long long)b2.caches_granted, (unsigned long long)b2.regrows);
  assert_true(b2.regrows >= 1);
  assert_true(b2.caches_now > b1.caches_now);
  assert_true(b2.caches_now <= b2.caches_granted);
  teardown(&f);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_budget_too_small_is_refused(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static fixture f;
  char err[512];
  assert_int_equal(build(&f, "1MiB", "64MiB", err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "memory budget 1.0 MiB cannot hold the fixed parts"));
  assert_non_null(strstr(err, "for a run"));
  keel_registry_destroy(f.reg);
  keel_config_destroy(f.cfg);
  /* A bad [memory] key is an error too, not a silent no-op. */
  assert_int_equal(build(&f, "64MiB", "4MiB", err, sizeof err), KEEL_OK);
  keel_budget_stats b;
  assert_int_equal(keel_pipeline_budget_stats(f.p, &b), KEEL_OK);
  assert_int_equal(b.n_shrunk, 0); /* fits: untouched */
  keel_pipeline_destroy(f.p);
  assert_int_equal(keel_config_set(f.cfg, "memory", "budgte", "1", KEEL_CONFIG_CLI), KEEL_OK);
  assert_int_equal(keel_pipeline_create(f.reg, f.cfg, &f.p, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "budgte"));
  keel_config_destroy(f.cfg);
  keel_registry_destroy(f.reg);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_split(void **state) {
  (void)state;
  uint64_t asked[3] = {100u << 20, 300u << 20, 1u << 10}, g[3];
  assert_int_equal(keel_budget_split(500u << 20, asked, 3, g), KEEL_OK); /* fits: as asked but the floor */
  assert_int_equal(g[0], asked[0]);
  assert_int_equal(g[1], asked[1]);
  assert_int_equal(g[2], KEEL_BUDGET_CACHE_FLOOR);
  assert_int_equal(keel_budget_split(40u << 20, asked, 2, g), KEEL_OK); /* proportional */
  assert_int_equal(g[0], 10u << 20);
  assert_int_equal(g[1], 30u << 20);
  assert_int_equal(keel_budget_split(100u << 10, asked, 2, g), KEEL_ELIMIT); /* two floors do not fit */
  assert_int_equal(keel_budget_split(150u << 10, asked, 3, g), KEEL_ELIMIT);
  assert_int_equal(keel_budget_split(1u << 20, asked, 3, g), KEEL_OK);
  assert_true(g[0] + g[1] + g[2] <= 1u << 20);
  for (int i = 0; i < 3; i++) assert_true(g[i] >= KEEL_BUDGET_CACHE_FLOOR);
  /* Requests whose sum wraps 64 bits are shrunk, not granted as asked. */
  uint64_t huge[3] = {1ull << 63, 1ull << 63, 1u << 20};
  assert_int_equal(keel_budget_split(8u << 20, huge, 3, g), KEEL_OK);
  assert_true(g[0] + g[1] + g[2] <= 8u << 20);
  assert_true(g[0] >= 3u << 20 && g[1] >= 3u << 20);
  assert_int_equal(g[2], KEEL_BUDGET_CACHE_FLOOR);
  /* A share near the top of the range: the grants' sum must not wrap past it. */
  uint64_t top[3] = {UINT64_MAX, UINT64_MAX, 1};
  assert_int_equal(keel_budget_split(UINT64_MAX - 1, top, 3, g), KEEL_OK);
  assert_true(g[0] <= UINT64_MAX - 1 - g[1] && g[0] + g[1] <= UINT64_MAX - 1 - g[2]);
  keel_pipeline_t *none = NULL;
  keel_budget_stats b;
  assert_int_equal(keel_pipeline_budget_stats(none, &b), KEEL_EINVAL);
}

/* What caches shrunk at run time get back once memory is calm: in
 * proportion to what each lacks while the room is short, all of it when
 * the room covers every lack, and never past the plan (a cache already at
 * or over it gets nothing, and its excess does not wrap around into a huge
 * lack: a regrow that gave more than the lack once let caches grow without
 * bound, second after second). */
static void test_regrow_shares(void **state) {
  (void)state;
  const uint64_t M = 1u << 20;
  uint64_t granted[3] = {60 * M, 20 * M, 10 * M}, cap[3] = {48 * M, 16 * M, 10 * M}, add[3];
  keel__budget_regrow_shares(8 * M, cap, granted, 3, add); /* short: lacks 12 + 4 */
  assert_int_equal(add[0], 6 * M);
  assert_int_equal(add[1], 2 * M);
  assert_int_equal(add[2], 0);
  keel__budget_regrow_shares(32 * M, cap, granted, 3, add); /* more room than lack */
  assert_int_equal(add[0], 12 * M);
  assert_int_equal(add[1], 4 * M);
  assert_int_equal(add[2], 0);
  for (int round = 0; round < 3; round++) { /* calm for several seconds: stays at the plan */
    for (int i = 0; i < 3; i++) cap[i] += add[i];
    keel__budget_regrow_shares(32 * M, cap, granted, 3, add);
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(cap[i], granted[i]);
    assert_int_equal(add[i], 0);
  }
  cap[2] = 12 * M; /* over its plan (set elsewhere): no share, no wrap */
  cap[0] = 40 * M;
  keel__budget_regrow_shares(10 * M, cap, granted, 3, add);
  assert_int_equal(add[0], 10 * M);
  assert_int_equal(add[1], 0);
  assert_int_equal(add[2], 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split),
      cmocka_unit_test(test_regrow_shares),
      cmocka_unit_test(test_budget_too_small_is_refused),
      cmocka_unit_test(test_cache_shrunk_and_run_under_budget),
      cmocka_unit_test(test_surge_shrinks_caches_then_pauses_reader),
      cmocka_unit_test(test_caches_grow_back_when_calm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
