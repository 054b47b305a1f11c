/* test_event_mt.c — the schema's lock-free lookup while other threads
 * intern new names (run under TSan too). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/event.h"
#include "testutil.h"

#define NAMES 1000 /* fits KEEL_SCHEMA_MAX_FIELDS with the fixed ones */
#define INTERNERS 2
#define READERS 2

typedef struct shared {
  keel_schema_t *s;
  _Atomic int done;
  _Atomic keel_field_id ids[NAMES]; /* id + 1 once known, 0 before */
  _Atomic int errors;
} shared;

static int name_of(int k, char *buf, size_t len) { return snprintf(buf, len, "field_%d", k); }

typedef struct arg {
  shared *sh;
  int index;
} arg;

/* Interners go through the names in opposite directions, so most names are
 * interned by one and found already interned by the other. */
static void *intern_main(void *p) {
  arg *a = p;
  char buf[32];
  for (int n = 0; n < NAMES; n++) {
    int k = a->index ? NAMES - 1 - n : n;
    int len = name_of(k, buf, sizeof buf);
    keel_field_id id;
    if (keel_schema_intern(a->sh->s, buf, (size_t)len, &id) != KEEL_OK) {
      atomic_fetch_add(&a->sh->errors, 1);
      continue;
    }
    keel_field_id prev = atomic_exchange(&a->sh->ids[k], id + 1);
    if (prev && prev != id + 1) atomic_fetch_add(&a->sh->errors, 1); /* two ids for one name */
  }
  return NULL;
}

/* Readers look names up while they are being interned: a lookup either
 * misses (not interned yet) or finds the one id with the right name. */
static void *lookup_main(void *p) {
  arg *a = p;
  char buf[32];
  unsigned long found = 0;
  while (!atomic_load(&a->sh->done) || found == 0) {
    for (int k = a->index; k < NAMES; k += 7) {
      int len = name_of(k, buf, sizeof buf);
      keel_field_id id;
      keel_status st = keel_schema_lookup(a->sh->s, buf, (size_t)len, &id);
      if (st == KEEL_ENOTFOUND) continue;
      if (st != KEEL_OK || strcmp(keel_schema_name(a->sh->s, id), buf) != 0) atomic_fetch_add(&a->sh->errors, 1);
      found++;
    }
  }
  return NULL;
}

static void test_lookup_while_interning(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  for (int round = 0; round < 5; round++) {
    static shared sh;
    memset(&sh, 0, sizeof sh);
    assert_int_equal(keel_schema_create(&sh.s), KEEL_OK);
    pthread_t in[INTERNERS], rd[READERS];
    arg ia[INTERNERS], ra[READERS];
    for (int i = 0; i < READERS; i++) {
      ra[i] = (arg){&sh, i};
      assert_int_equal(pthread_create(&rd[i], NULL, lookup_main, &ra[i]), 0);
    }
    for (int i = 0; i < INTERNERS; i++) {
      ia[i] = (arg){&sh, i};
      assert_int_equal(pthread_create(&in[i], NULL, intern_main, &ia[i]), 0);
    }
    for (int i = 0; i < INTERNERS; i++) pthread_join(in[i], NULL);
    atomic_store(&sh.done, 1);
    for (int i = 0; i < READERS; i++) pthread_join(rd[i], NULL);
    assert_int_equal(atomic_load(&sh.errors), 0);
    /* Every name has exactly one id; the ids are 0..NAMES-1, each once. */
    static unsigned char used[NAMES];
    memset(used, 0, sizeof used);
    char buf[32];
    for (int k = 0; k < NAMES; k++) {
      keel_field_id id = atomic_load(&sh.ids[k]);
      assert_true(id >= 1 && id <= NAMES);
      assert_int_equal(used[id - 1], 0);
      used[id - 1] = 1;
      int len = name_of(k, buf, sizeof buf);
      keel_field_id got;
      assert_int_equal(keel_schema_lookup(sh.s, buf, (size_t)len, &got), KEEL_OK);
      assert_int_equal(got, id - 1);
    }
    keel_schema_destroy(sh.s);
  }
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lookup_while_interning),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
