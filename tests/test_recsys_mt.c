/* test_recsys_mt.c — the rank stage run from two threads at once over one
 * shared engine gives exactly the results one thread gives (the stage state
 * is read-only; every temporary lives in the calling event's arena). Also
 * run under ThreadSanitizer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/config.h"
#include "keel/event.h"
#include "keel/recsys.h"
#include "keel/stage.h"
#include "testutil.h"

enum { USERS = 120, K = 10, THREADS = 2, ROUNDS = 20 };

typedef struct shared {
  keel_recsys_t *rs;
  keel_schema_t *schema;
  const keel_stage_def *rank;
  keel_field_id reads[3], writes[2];
} shared;

/* One ranking's result: K ids and scores (fewer if the category is small). */
typedef struct result {
  size_t n;
  int64_t ids[K];
  float scores[K];
} result;

typedef struct worker {
  shared *sh;
  result out[USERS];
  int failed;
} worker;

static const char *category_of_request(int u) {
  static const char *const cats[] = {NULL, "c0", "c5", "c15"};
  return cats[u % 4];
}

/* Ranks every request once into out[]; 0 on success. */
static int rank_all(shared *sh, result *out) {
  keel_event_t *ev;
  if (keel_event_create(sh->schema, KEEL_MEM_ARENA, 0, &ev) != KEEL_OK) return -1;
  keel_stage_io io = {sh->reads, sh->writes};
  int rc = 0;
  for (int u = 0; u < USERS && !rc; u++) {
    char user[32];
    int len = snprintf(user, sizeof user, "user-%d", u * 7919);
    keel_event_reset(ev);
    const char *cat = category_of_request(u);
    if (keel_event_set_string(ev, sh->reads[0], user, (size_t)len) != KEEL_OK ||
        keel_event_set_int(ev, sh->reads[1], K) != KEEL_OK ||
        (cat && keel_event_set_string(ev, sh->reads[2], cat, strlen(cat)) != KEEL_OK) ||
        sh->rank->process(sh->rank->userdata, ev, &io) != KEEL_OK) {
      rc = -1;
      break;
    }
    keel_value items, scores;
    if (!keel_event_get(ev, sh->writes[0], &items) || !keel_event_get(ev, sh->writes[1], &scores) ||
        items.u.ids.len != scores.u.vec.len || items.u.ids.len > K) {
      rc = -1;
      break;
    }
    memset(&out[u], 0, sizeof out[u]);
    out[u].n = items.u.ids.len;
    memcpy(out[u].ids, items.u.ids.ptr, out[u].n * sizeof(int64_t));
    memcpy(out[u].scores, scores.u.vec.ptr, out[u].n * sizeof(float));
  }
  keel_event_destroy(ev);
  return rc;
}

static void *worker_main(void *p) {
  worker *w = p;
  for (int r = 0; r < ROUNDS && !w->failed; r++)
    if (rank_all(w->sh, w->out)) w->failed = 1;
  return NULL;
}

static void test_rank_from_two_threads(void **st) {
  (void)st;
  int64_t before = tu_tracked_bytes();
  keel_config_t *cfg;
  assert_int_equal(keel_config_create(&cfg), KEEL_OK);
  /* Big enough that the two threads overlap for real, small enough for TSan. */
  assert_int_equal(keel_config_set(cfg, "catalog", "products", "4000", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_set(cfg, "catalog", "dim", "32", KEEL_CONFIG_FILE), KEEL_OK);
  shared sh = {0};
  char err[256];
  assert_int_equal(keel_recsys_create(cfg, &sh.rs, err, sizeof err), KEEL_OK);
  keel_registry_t *reg;
  assert_int_equal(keel_registry_create(&reg), KEEL_OK);
  assert_int_equal(keel_recsys_register(reg, sh.rs, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_schema_create(&sh.schema), KEEL_OK);
  sh.rank = keel_registry_find(reg, "rank");
  assert_non_null(sh.rank);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(keel_schema_intern(sh.schema, sh.rank->reads[i].name, strlen(sh.rank->reads[i].name),
                                        &sh.reads[i]),
                     KEEL_OK);
  for (size_t i = 0; i < 2; i++)
    assert_int_equal(keel_schema_intern(sh.schema, sh.rank->writes[i].name, strlen(sh.rank->writes[i].name),
                                        &sh.writes[i]),
                     KEEL_OK);

  /* The single-threaded reference. */
  static result ref[USERS];
  assert_int_equal(rank_all(&sh, ref), 0);
  size_t total = 0;
  for (int u = 0; u < USERS; u++) {
    assert_int_equal(ref[u].n, K); /* every category holds more than K products */
    total += ref[u].n;
  }
  assert_int_equal(total, USERS * K);

  static worker w[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i].sh = &sh;
    w[i].failed = 0;
    assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  for (int i = 0; i < THREADS; i++) {
    assert_false(w[i].failed);
    for (int u = 0; u < USERS; u++) {
      assert_int_equal(w[i].out[u].n, ref[u].n);
      assert_memory_equal(w[i].out[u].ids, ref[u].ids, ref[u].n * sizeof(int64_t));
      assert_memory_equal(w[i].out[u].scores, ref[u].scores, ref[u].n * sizeof(float));
    }
  }
  keel_schema_destroy(sh.schema);
  keel_registry_destroy(reg);
  keel_recsys_destroy(sh.rs);
  keel_config_destroy(cfg);
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_rank_from_two_threads)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
