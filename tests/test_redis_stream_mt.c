/* test_redis_stream_mt.c — a pipeline reading a Redis stream and writing
 * one, with a shared L2, through the library API, against a private
 * redis-server (tests/redis_fixture.h): 2 workers, a thread taking
 * snapshots while it runs (TSan sees the source's counters read from
 * another thread), every entry acknowledged after its output or dead-letter
 * record, each output tagged with its stream id; a second run on another
 * group answers its L1 misses from the L2; nothing leaks. Skipped with a
 * message without redis-server. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keel/metrics.h"
#include "pipeline_fixture.h"
#include "redis_fixture.h"

static tr_server srv;
static char dl_path[64];

static redisContext *rc(void) {
  struct timeval tv = {2, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
  assert_non_null(c);
  assert_int_equal(c->err, 0);
  return c;
}

static long long int_cmd(redisContext *c, const char *fmt, const char *arg) {
  redisReply *r = redisCommand(c, fmt, arg);
  assert_non_null(r);
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : r->type == REDIS_REPLY_ARRAY ? r->element[0]->integer : -1;
  freeReplyObject(r);
  return v;
}

typedef struct watcher {
  keel_pipeline_t *p;
  _Atomic int done;
  unsigned long snaps;
} watcher;

static void *watch(void *arg) {
  watcher *w = arg;
  keel_run_stats s;
  while (!atomic_load(&w->done)) {
    assert_int_equal(keel_pipeline_snapshot(w->p, &s), KEEL_OK);
    if (s.running) assert_true(s.stream.acked <= s.stream.read);
    w->snaps++;
    usleep(200);
  }
  return NULL;
}

static void run_group(keel_pipeline_t *p, const char *group, keel_run_stats *stats) {
  char in[160], out[96], err[256] = "";
  snprintf(in, sizeof in, "redis://127.0.0.1:%d?stream=in&group=%s&consumer=c1", srv.port, group);
  snprintf(out, sizeof out, "redis://127.0.0.1:%d?stream=out_%s", srv.port, group);
  keel_run_io io = {.input = in, .output = out, .dead_letter = dl_path};
  watcher w = {.p = p};
  pthread_t t;
  pthread_create(&t, NULL, watch, &w);
  keel_status st = keel_pipeline_run(p, &io, stats, err, sizeof err);
  atomic_store(&w.done, 1);
  pthread_join(t, NULL);
  assert_int_equal(st, KEEL_OK);
  assert_true(w.snaps > 0);
}

static void stream_to_stream(void **state) {
  (void)state;
  if (srv.pid <= 0) {
    printf("SKIPPED: redis-server is not installed (apt-get install redis-server)\n");
    skip();
  }
  int64_t before = tu_tracked_bytes();
  redisContext *c = rc();
  for (int i = 0; i < 2000; i++) {
    char data[64];
    if (i % 10 == 9) snprintf(data, sizeof data, "{\"text\":\"bad%d\"}", i);
    else snprintf(data, sizeof data, "{\"text\":\"%.*s\"}", i % 37, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq");
    redisReply *r = redisCommand(c, "XADD in * data %s", data);
    assert_non_null(r);
    freeReplyObject(r);
  }
  char l2[64];
  snprintf(l2, sizeof l2, "l2.url=redis://127.0.0.1:%d", srv.port);
  const char *sets[] = {"pipeline.workers=2", "pipeline.batch=16", "cache.len.size=1MiB", l2,
                        "redis.create_group=true", "redis.idle_exit_ms=300", NULL};
  keel_registry_t *reg = fixture_registry();
  keel_config_t *cfg = fixture_config("len,parity", sets);
  keel_pipeline_t *p = NULL;
  char err[256] = "";
  assert_int_equal(keel_pipeline_create(reg, cfg, &p, err, sizeof err), KEEL_OK);
  keel_run_stats s1, s2;
  run_group(p, "g1", &s1);
  assert_int_equal(s1.events_in, 2000);
  assert_int_equal(s1.events_out, 1800);
  assert_int_equal(s1.rejected, 200);
  assert_true(s1.stream.active);
  assert_int_equal(s1.stream.read, 2000);
  assert_int_equal(s1.stream.acked, 2000);
  assert_int_equal(s1.stream.written, 1800);
  assert_int_equal(s1.stream.pending, 0);
  assert_true(s1.l2_active && s1.l2.misses > 0 && s1.l2.hits == 0);
  assert_int_equal(int_cmd(c, "XLEN %s", "out_g1"), 1800);
  assert_int_equal(int_cmd(c, "XPENDING in %s", "g1"), 0);
  redisReply *r = redisCommand(c, "XRANGE out_g1 - + COUNT 1");
  assert_non_null(strstr(r->element[0]->element[1]->element[1]->str, "\"stream_id\":\""));
  freeReplyObject(r);
  /* The Prometheus exposition carries the same figures. */
  keel_metrics_t *mt = NULL;
  keel_metrics_sample *smp = calloc(1, sizeof *smp);
  keel_buf text;
  keel_buf_init(&text, KEEL_MEM_OTHER);
  assert_int_equal(keel_metrics_create(&mt), KEEL_OK);
  assert_int_equal(keel_metrics_sample_take(p, 0, smp), KEEL_OK);
  assert_int_equal(keel_metrics_collect(mt, smp), KEEL_OK);
  assert_int_equal(keel_metrics_write_prometheus(mt, &text), KEEL_OK);
  assert_non_null(strstr(text.data, "keel_stream_acked_total 2000\n"));
  assert_non_null(strstr(text.data, "keel_stream_pending 0\n"));
  assert_non_null(strstr(text.data, "keel_l2_misses_total "));
  keel_buf_free(&text);
  keel_metrics_destroy(mt);
  free(smp);
  run_group(p, "g2", &s2); /* the same pipeline again: its L1 is warm, the stream group new */
  assert_int_equal(s2.stream.acked, 2000);
  assert_int_equal(int_cmd(c, "XLEN %s", "out_g2"), 1800);
  keel_pipeline_destroy(p);
  keel_config_destroy(cfg);
  keel_registry_destroy(reg);
  redisFree(c);
  unlink(dl_path);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A fresh pipeline (empty L1) after another filled the L2: its L1 misses
 * are L2 hits. */
static void l2_between_pipelines(void **state) {
  (void)state;
  if (srv.pid <= 0) skip();
  char l2[64];
  snprintf(l2, sizeof l2, "l2.url=redis://127.0.0.1:%d", srv.port);
  const char *sets[] = {"cache.len.size=1MiB", l2, "redis.create_group=true", "redis.idle_exit_ms=200", NULL};
  keel_registry_t *reg = fixture_registry();
  keel_config_t *cfg = fixture_config("len,parity", sets);
  keel_pipeline_t *p = NULL;
  char err[256] = "";
  assert_int_equal(keel_pipeline_create(reg, cfg, &p, err, sizeof err), KEEL_OK);
  keel_run_stats s;
  run_group(p, "g3", &s);
  const keel_memo_stats *m = &s.stages[0].cache;
  assert_true(m->misses > 0);
  /* stream_to_stream stored every text that succeeded; failures (the 200
   * "bad" ones) are never stored, so they miss in both levels. */
  assert_int_equal(s.rejected, 200);
  assert_int_equal(s.l2.hits, m->misses - 200);
  assert_int_equal(s.l2.misses, 200);
  keel_pipeline_destroy(p);
  keel_config_destroy(cfg);
  keel_registry_destroy(reg);
  unlink(dl_path);
}

static int setup(void **state) {
  (void)state;
  snprintf(dl_path, sizeof dl_path, "/tmp/keel-test-redis-dl-%ld.ndjson", (long)getpid());
  if (tr_have_redis() && tr_start(&srv) != 0) fprintf(stderr, "cannot start redis-server\n");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tr_stop(&srv);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(stream_to_stream), cmocka_unit_test(l2_between_pipelines)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
