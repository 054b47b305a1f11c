/* test_mem_tags_full.c — a process whose memory-tag table is full: building
 * a pipeline that needs a tag (a memoized stage's cache, a stage with init)
 * is refused with KEEL_ECONFIG and a message naming what is missing, not a
 * bare KEEL_ELIMIT with an empty message. Its own program: the tags it
 * takes stay taken for the rest of the process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "keel/mem.h"
#include "pipeline_fixture.h"

static void test_full_tag_table(void **state) {
  (void)state;
  keel_registry_t *r = fixture_registry();
  keel_mem_tag t;
  char name[32];
  int taken = 0;
  for (int i = 0; i < KEEL_MEM_MAX_TAGS + 1; i++) {
    snprintf(name, sizeof name, "filler%d", i);
    keel_status st = keel_mem_tag_register(name, &t);
    if (st == KEEL_ELIMIT) break;
    assert_int_equal(st, KEEL_OK);
    taken++;
  }
  assert_true(taken > 0 && taken < KEEL_MEM_MAX_TAGS);
  static const struct {
    const char *stages, *set, *message;
  } cases[] = {
      {"len", "cache.len.size=1MiB", "cache of stage 'len': no memory tag left for it"},
      {"stamp", "stage.stamp.label=x", "stage 'stamp': no memory tag left for it"},
  };
  for (size_t i = 0; i < 2; i++) {
    keel_config_t *c = fixture_config(cases[i].stages, (const char *[]){cases[i].set, NULL});
    keel_pipeline_t *p = NULL;
    char err[256] = "";
    assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_ECONFIG);
    if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0) fail_msg("case %zu: '%s'", i, err);
    assert_null(p);
    keel_config_destroy(c);
  }
  keel_registry_destroy(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_full_tag_table)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
