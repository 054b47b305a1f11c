/* test_json_mt.c — keel_json_to_event and keel_json_append_event are
 * reentrant: worker threads parse and write events over one shared schema at
 * the same time (as the pipeline's workers do) and each gets exactly the
 * bytes a single thread gets. Run under ThreadSanitizer too. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "keel/io.h"
#include "testutil.h"

#define THREADS 4
#define LINES 5000

static keel_schema_t *schema;

static int make_line(char *buf, size_t cap, int i) {
  static const char *types[] = {"rank", "score", "user"};
  return snprintf(buf, cap,
                  "{\"type\":\"%s\",\"user\":\"%d\",\"k\":%d,\"score\":%d.25,\"vec\":[%d,0.5],"
                  "\"ids\":[\"%d\",\"-%d\"],\"extra\":{\"x\":1}}",
                  types[i % 3], i * 7919, i % 50 + 1, i, i, i, i);
}

/* Parses and writes every line; returns a hash of all output bytes. */
static uint64_t run_all(keel_status *bad) {
  keel_event_t *e;
  *bad = keel_event_create(schema, KEEL_MEM_ARENA, 0, &e);
  if (*bad != KEEL_OK) return 0;
  keel_buf out;
  keel_buf_init(&out, KEEL_MEM_IO);
  uint64_t h = 1469598103934665603ull;
  char line[256], reason[256];
  for (int i = 0; i < LINES; i++) {
    int n = make_line(line, sizeof line, i);
    keel_event_reset(e);
    keel_status st = keel_json_to_event(e, line, (size_t)n, NULL, reason, sizeof reason);
    if (st == KEEL_OK) {
      keel_event_set_line(e, (uint64_t)i + 1);
      keel_buf_clear(&out);
      st = keel_json_append_event(&out, e);
    }
    if (st != KEEL_OK) {
      *bad = st;
      break;
    }
    for (size_t j = 0; j < out.len; j++) h = (h ^ (unsigned char)out.data[j]) * 1099511628211ull;
  }
  keel_buf_free(&out);
  keel_event_destroy(e);
  return h;
}

typedef struct job {
  uint64_t hash;
  keel_status st;
} job;

static void *worker(void *arg) {
  job *j = arg;
  j->hash = run_all(&j->st);
  return NULL;
}

static void test_parallel_parse_and_write(void **state) {
  (void)state;
  assert_int_equal(keel_schema_create(&schema), KEEL_OK);
  const char *names[] = {"type", "user", "k", "score", "vec", "ids"};
  keel_field_id id;
  for (int i = 0; i < 6; i++) assert_int_equal(keel_schema_intern(schema, names[i], strlen(names[i]), &id), KEEL_OK);
  keel_status st;
  uint64_t want = run_all(&st);
  assert_int_equal(st, KEEL_OK);
  pthread_t t[THREADS];
  job jobs[THREADS];
  for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(jobs[i].st, KEEL_OK);
    assert_true(jobs[i].hash == want);
  }
  keel_schema_destroy(schema);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parallel_parse_and_write),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
