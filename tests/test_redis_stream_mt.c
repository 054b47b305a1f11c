/* test_redis_stream_mt.c — a pipeline reading a Redis stream and writing
 * one, with a shared L2, through the library API, against a private
 * redis-server (tests/redis_fixture.h): 2 workers, a thread taking
 * snapshots while it runs (TSan sees the source's counters read from
 * another thread), every entry acknowledged after its output or dead-letter
 * record, each output tagged with its stream id; a second run on another
 * group answers its L1 misses from the L2; nothing leaks. Skipped with a
 * message without redis-server; failed when redis-server is installed but
 * does not start (tr_require). */
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
  tr_require(&srv);
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
  tr_require(&srv);
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

/* A value in the L2 that is not an encoding of the stage's writes (cut
 * bytes; a well-formed one naming a field the stage does not write, as a
 * keel that encodes otherwise could store; an empty one; one whose field
 * has another type) is refused: the event is
 * computed here as on a miss, gets no foreign field, and the refusal is
 * counted. */
static void l2_foreign_value_refused(void **state) {
  (void)state;
  tr_require(&srv);
  char url[64], err[256] = "";
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  keel_l2_options lo = {.size = sizeof lo, .url = url, .ttl_ms = 60000, .lock_ttl_ms = 1000, .timeout_ms = 500,
                        .quiet = 1};
  keel_l2_t *l2;
  assert_int_equal(keel_l2_create(&lo, &l2, err, sizeof err), KEEL_OK);
  keel_schema_t *schema;
  keel_event_t *ev;
  keel_field_id text, other, n;
  assert_int_equal(keel_schema_create(&schema), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "text", 4, &text), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "other", 5, &other), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "n", 1, &n), KEEL_OK);
  assert_int_equal(keel_event_create(schema, KEEL_MEM_ARENA, 0, &ev), KEEL_OK);
  static const char *const texts[] = {"foreign", "alien", "void", "typo"};
  for (int i = 0; i < 4; i++) {
    keel_event_reset(ev);
    assert_int_equal(keel_event_set_string(ev, text, texts[i], strlen(texts[i])), KEEL_OK);
    const uint8_t *key, *val;
    size_t klen, vlen;
    assert_int_equal(keel_event_encode(ev, &text, 1, keel_event_arena(ev), &key, &klen), KEEL_OK);
    if (i == 0) {
      val = (const uint8_t *)"\x00\x01n\x02\x00"; /* "n", INT, then 1 of its 8 bytes */
      vlen = 5;
    } else if (i == 1) {
      assert_int_equal(keel_event_set_int(ev, other, 7), KEEL_OK);
      assert_int_equal(keel_event_encode(ev, &other, 1, keel_event_arena(ev), &val, &vlen), KEEL_OK);
    } else if (i == 2) {
      val = (const uint8_t *)"";
      vlen = 0;
    } else {
      assert_int_equal(keel_event_set_string(ev, n, "4", 1), KEEL_OK);
      assert_int_equal(keel_event_encode(ev, &n, 1, keel_event_arena(ev), &val, &vlen), KEEL_OK);
    }
    keel_l2_result r;
    memset(&r, 0, sizeof r);
    keel_l2_store(l2, "len:1:0:", key, klen, val, vlen, &r);
    keel_l2_lookup(l2, "len:1:0:", key, klen, &r); /* it is there, as the pipeline will find it */
    assert_true(r.hit);
    keel_l2_result_release(&r);
  }
  char l2set[80], in[64], out[64];
  snprintf(l2set, sizeof l2set, "l2.url=%s", url);
  const char *sets[] = {"cache.len.size=1MiB", l2set, NULL};
  snprintf(in, sizeof in, "/tmp/keel-test-l2f-%ld.ndjson", (long)getpid());
  snprintf(out, sizeof out, "/tmp/keel-test-l2f-%ld.out", (long)getpid());
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  fputs("{\"text\":\"foreign\"}\n{\"text\":\"alien\"}\n{\"text\":\"foreign\"}\n{\"text\":\"void\"}\n"
        "{\"text\":\"typo\"}\n",
        f);
  fclose(f);
  fixture_run_result res = fixture_run(fixture_registry, "len", sets, in, out, dl_path, NULL);
  assert_int_equal(res.st, KEEL_OK);
  assert_int_equal(res.stats.events_out, 5);
  assert_int_equal(res.stats.rejected, 0);
  assert_int_equal(res.stats.stages[0].cache.l2_rejected, 4);
  /* A refused value is an L2 miss (computed here and stored back), not a hit. */
  assert_true(res.stats.l2_active);
  assert_int_equal(res.stats.l2.rejected, 4);
  assert_int_equal(res.stats.l2.hits, 0);
  assert_int_equal(res.stats.l2.misses, 4);
  assert_int_equal(res.stats.l2.stores, 4);
  char *text_out = fixture_slurp(out, NULL);
  assert_non_null(strstr(text_out, "\"n\":7"));
  assert_non_null(strstr(text_out, "\"n\":5"));
  assert_non_null(strstr(text_out, "\"text\":\"void\",\"n\":4"));
  assert_non_null(strstr(text_out, "\"text\":\"typo\",\"n\":4"));
  assert_null(strstr(text_out, "other"));
  free(text_out);
  unlink(in);
  unlink(out);
  unlink(dl_path);
  keel_event_destroy(ev);
  keel_schema_destroy(schema);
  keel_l2_destroy(l2);
}

static int setup(void **state) {
  (void)state;
  snprintf(dl_path, sizeof dl_path, "/tmp/keel-test-redis-dl-%ld.ndjson", (long)getpid());
  return tr_setup(&srv);
}

static int teardown(void **state) {
  (void)state;
  tr_stop(&srv);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(stream_to_stream), cmocka_unit_test(l2_between_pipelines),
                                     cmocka_unit_test(l2_foreign_value_refused)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
