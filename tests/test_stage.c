/* test_stage.c — the stage registry (add, find, duplicates, malformed
 * definitions, OOM) and plugin loading (a plugin built next to this test,
 * a missing entry point, another ABI, a failing registration, dlopen
 * failures). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/stage.h"
#include "testutil.h"

#ifndef KEEL_TEST_PLUGIN_DIR
#error "tests/CMakeLists.txt defines KEEL_TEST_PLUGIN_DIR"
#endif

static keel_status nop(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  (void)ev;
  (void)io;
  return KEEL_OK;
}

static const keel_field_spec some_reads[] = {{"user", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED},
                                             {"k", KEEL_FIELD_INT, KEEL_FIELD_OPTIONAL}};
static const keel_field_spec some_writes[] = {{"score", KEEL_FIELD_FLOAT, 0}};

static keel_stage_def def_named(const char *name) {
  keel_stage_def d = {.size = sizeof d, .name = name, .version = 3, .flags = KEEL_STAGE_PURE,
                      .reads = some_reads, .n_reads = 2, .writes = some_writes, .n_writes = 1,
                      .process = nop};
  return d;
}

static void test_add_find(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_registry_t *r;
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  assert_int_equal(keel_registry_count(r), 0);
  assert_null(keel_registry_find(r, "a"));
  char err[256] = "";
  char names[20][8];
  for (int i = 0; i < 20; i++) { /* past the first growth */
    snprintf(names[i], sizeof names[i], "s_%d", i);
    keel_stage_def d = def_named(names[i]);
    d.version = (uint32_t)i;
    assert_int_equal(keel_registry_add(r, &d, err, sizeof err), KEEL_OK);
    d.version = 999; /* the registry copied the struct */
  }
  assert_int_equal(keel_registry_count(r), 20);
  assert_null(keel_registry_at(r, 20));
  for (int i = 0; i < 20; i++) {
    const keel_stage_def *d = keel_registry_find(r, names[i]);
    assert_non_null(d);
    assert_ptr_equal(d, keel_registry_at(r, (size_t)i)); /* insertion order */
    assert_string_equal(d->name, names[i]);
    assert_int_equal(d->version, i);
    assert_int_equal(d->n_reads, 2);
    assert_ptr_equal(d->reads, some_reads); /* arrays are borrowed */
    assert_int_equal(d->size, sizeof *d);
  }
  assert_null(keel_registry_find(r, "s_20"));
  assert_null(keel_registry_find(r, "s_"));
  assert_null(keel_registry_find(r, NULL));
  keel_stage_def dup = def_named("s_7");
  assert_int_equal(keel_registry_add(r, &dup, err, sizeof err), KEEL_EEXIST);
  assert_string_equal(err, "stage 's_7' is registered twice");
  assert_int_equal(keel_registry_count(r), 20);
  keel_registry_destroy(r);
  keel_registry_destroy(NULL);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_malformed_definitions(void **state) {
  (void)state;
  keel_registry_t *r;
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  char err[256];
  static const keel_field_spec no_name[] = {{NULL, KEEL_FIELD_INT, 0}};
  static const keel_field_spec empty_name[] = {{"", KEEL_FIELD_INT, 0}};
  static const keel_field_spec no_type[] = {{"x", KEEL_FIELD_NONE, 0}};
  static const keel_field_spec bad_type[] = {{"x", (keel_field_type)99, 0}};
  static const keel_field_spec line[] = {{"line", KEEL_FIELD_INT, 0}};
  static const keel_field_spec bad_required[] = {{"x", KEEL_FIELD_INT, 9}};
  static const keel_field_spec twice[] = {{"x", KEEL_FIELD_INT, 0}, {"x", KEEL_FIELD_STRING, 0}};
  char long_name[KEEL_FIELD_NAME_MAX + 2];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  static const char *const name_rule = "the name must be 1 to 64 characters of [a-z0-9_]";
  static const char *const dotted[] = {"a.b", NULL}, *const empty_key[] = {"", NULL},
                           *const twice_key[] = {"k", "j", "k", NULL};
  for (int which = 0; which < 19; which++) {
    keel_stage_def d = def_named("good");
    const char *label = "good", *why = name_rule;
    switch (which) {
      case 0: d.size = KEEL_STAGE_DEF_SIZE_V1 - 8; why = "built with a keel_stage_def of"; break;
      case 1: d.name = NULL; label = "(no name)"; break;
      case 2: d.name = ""; label = ""; break;
      case 3: d.name = "Upper"; label = d.name; break;
      case 4: d.name = "has-dash"; label = d.name; break;
      case 5: d.name = "has space"; label = d.name; break;
      case 6: d.name = long_name; label = long_name; break;
      case 7: d.process = NULL; why = "no process function"; break;
      case 8: d.reads = no_name; d.n_reads = 1; why = "read 1: a name of 1 to 64 bytes is required"; break;
      case 9: d.writes = empty_name; d.n_writes = 1; why = "write 1: a name of 1 to 64 bytes is required"; break;
      case 10: d.reads = no_type; d.n_reads = 1; why = "read 'x': no such field type (0)"; break;
      case 11: d.writes = bad_type; d.n_writes = 1; why = "write 'x': no such field type (99)"; break;
      case 12: d.reads = NULL; d.n_reads = 1; why = "1 read but no array of them"; break;
      case 13: d.writes = line; d.n_writes = 1; why = "write 'line': the name is keel's own"; break;
      case 14: d.reads = bad_required; d.n_reads = 1; why = "read 'x': required is KEEL_FIELD_OPTIONAL"; break;
      case 15: d.reads = twice; d.n_reads = 2; why = "read 'x' declared twice"; break;
      case 16: d.settings = dotted; why = "setting 'a.b': want a key of 1 or more bytes without '.' or '='"; break;
      case 17: d.settings = empty_key; why = "setting '': want a key of 1 or more bytes"; break;
      case 18: d.settings = twice_key; why = "setting 'k' declared twice"; break;
    }
    err[0] = '\0';
    if (keel_registry_add(r, &d, err, sizeof err) != KEEL_EINVAL) fail_msg("malformed definition %d accepted", which);
    char want[256];
    snprintf(want, sizeof want, "stage definition '%s': %s", label, why);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("case %d: message '%s', want '%s'", which, err, want);
  }
  assert_int_equal(keel_registry_count(r), 0);
  /* A bigger struct from a newer caller is fine; no fields is fine. */
  keel_stage_def d = {.size = sizeof d + 16, .name = "x_9", .process = nop};
  assert_int_equal(keel_registry_add(r, &d, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_registry_find(r, "x_9")->size, sizeof d);
  /* One built before `settings` is read without it: whatever lies past its
   * end is not taken for a list of settings. */
  keel_stage_def v1 = {.size = KEEL_STAGE_DEF_SIZE_V1, .name = "old_one", .process = nop, .settings = dotted};
  assert_int_equal(keel_registry_add(r, &v1, err, sizeof err), KEEL_OK);
  assert_null(keel_registry_find(r, "old_one")->settings);
  assert_int_equal(keel_registry_find(r, "old_one")->size, sizeof v1);
  keel_registry_destroy(r);
}

static int add_attempt(void *ctx) {
  (void)ctx;
  keel_registry_t *r;
  if (keel_registry_create(&r) != KEEL_OK) return 1;
  static char names[20][8]; /* the registry borrows names: one buffer each */
  char err[128];
  int rc = 0;
  for (int i = 0; i < 20 && rc == 0; i++) {
    snprintf(names[i], sizeof names[i], "s%d", i);
    keel_stage_def d = def_named(names[i]);
    size_t n = keel_registry_count(r);
    keel_status st = keel_registry_add(r, &d, err, sizeof err);
    if (st != KEEL_OK) {
      assert_int_equal(st, KEEL_ENOMEM);
      assert_int_equal(keel_registry_count(r), n); /* unchanged */
      rc = 1;
    }
  }
  keel_registry_destroy(r);
  return rc;
}

static void test_oom(void **state) {
  (void)state;
  assert_int_equal(tu_oom_sweep(add_attempt, NULL), 4); /* registry, 8, 16 then 32 slots */
}

/* ---- plugins ---- */

static const char *plugin(const char *name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/libtest_plugin_%s.so", KEEL_TEST_PLUGIN_DIR, name);
  assert_int_equal(access(path, R_OK), 0);
  return path;
}

static void test_plugin_loads_and_runs(void **state) {
  (void)state;
  keel_registry_t *r;
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  char err[512] = "";
  keel_stage_def own = def_named("own");
  assert_int_equal(keel_registry_add(r, &own, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_registry_load_plugin(r, plugin("ok"), err, sizeof err), KEEL_OK);
  assert_int_equal(keel_registry_count(r), 2);
  const keel_stage_def *d = keel_registry_find(r, "plug_double");
  assert_non_null(d);
  assert_int_equal(d->flags, KEEL_STAGE_PURE);
  assert_int_equal(d->n_reads, 1);
  assert_string_equal(d->reads[0].name, "x");
  /* Its process() works, calling back into this program's keel. */
  keel_schema_t *s;
  keel_event_t *ev;
  assert_int_equal(keel_schema_create(&s), KEEL_OK);
  keel_field_id ids[2];
  assert_int_equal(keel_schema_intern(s, "x", 1, &ids[0]), KEEL_OK);
  assert_int_equal(keel_schema_intern(s, "y", 1, &ids[1]), KEEL_OK);
  assert_int_equal(keel_event_create(s, KEEL_MEM_ARENA, 0, &ev), KEEL_OK);
  keel_stage_io io = {&ids[0], &ids[1]};
  assert_int_equal(keel_event_set_int(ev, ids[0], 21), KEEL_OK);
  assert_int_equal(d->process(NULL, ev, &io), KEEL_OK);
  keel_value y;
  assert_true(keel_event_get(ev, ids[1], &y));
  assert_int_equal(y.u.i, 42);
  assert_int_equal(keel_event_set_int(ev, ids[0], -1), KEEL_OK);
  assert_int_equal(d->process(NULL, ev, &io), KEEL_EREJECTED);
  assert_string_equal(keel_event_reason(ev), "x is negative: -1");
  keel_event_destroy(ev);
  keel_schema_destroy(s);
  /* Loading it again: its stage is a duplicate; the registry is unchanged. */
  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, plugin("ok"), err, sizeof err), KEEL_EEXIST);
  char want[4200];
  snprintf(want, sizeof want, "plugin %s: stage 'plug_double' is registered twice", plugin("ok"));
  assert_string_equal(err, want); /* naming the plugin */
  assert_int_equal(keel_registry_load_plugin(r, plugin("ok"), NULL, 0), KEEL_EEXIST); /* no message wanted */
  assert_int_equal(keel_registry_count(r), 2);
  assert_non_null(keel_registry_find(r, "plug_double")->process);
  keel_registry_destroy(r); /* unloads the plugin */
}

static void test_plugin_failures(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_registry_t *r;
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  char err[512], want[8400];

  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, plugin("noentry"), err, sizeof err), KEEL_ENOTFOUND);
  snprintf(want, sizeof want, "plugin %s: no keel_plugin_register() entry point", plugin("noentry"));
  assert_string_equal(err, want);

  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, plugin("noabi"), err, sizeof err), KEEL_EUNSUPPORTED);
  snprintf(want, sizeof want,
           "plugin %s: no keel_plugin_abi: add `KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;` and rebuild",
           plugin("noabi"));
  assert_string_equal(err, want);
  assert_null(keel_registry_find(r, "plug_unmarked")); /* its entry point never ran */

  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, plugin("badabi"), err, sizeof err), KEEL_EUNSUPPORTED);
  snprintf(want, sizeof want, "plugin %s: built for ABI 'keel-plugin-0', this keel has 'keel-plugin-1'",
           plugin("badabi"));
  assert_string_equal(err, want);

  /* An ABI marker declared as a char array (read as a pointer, it crashed
   * the loader): its string is what counts. */
  assert_int_equal(keel_registry_load_plugin(r, plugin("abiarray"), err, sizeof err), KEEL_OK);
  assert_non_null(keel_registry_find(r, "plug_arr"));
  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, plugin("abiarraywrong"), err, sizeof err), KEEL_EUNSUPPORTED);
  snprintf(want, sizeof want, "plugin %s: built for ABI 'keel-plugin-0', this keel has 'keel-plugin-1'",
           plugin("abiarraywrong"));
  assert_string_equal(err, want);

  /* A registration that fails without a message: the registry writes one,
   * even over what the caller's buffer held before. */
  strcpy(err, "stale text from an earlier call");
  assert_int_equal(keel_registry_load_plugin(r, plugin("fails"), err, sizeof err), KEEL_EINVAL);
  snprintf(want, sizeof want, "plugin %s: registration failed: invalid argument", plugin("fails"));
  assert_string_equal(err, want);
  assert_null(keel_registry_find(r, "plug_half_done")); /* forgotten with the object */

  char path[4200];
  snprintf(path, sizeof path, "%s/no_such_plugin.so", KEEL_TEST_PLUGIN_DIR);
  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, path, err, sizeof err), KEEL_EIO);
  snprintf(want, sizeof want, "plugin %s: ", path);
  assert_memory_equal(err, want, strlen(want));
  assert_non_null(strstr(err, "No such file"));

  /* A bare name is a file in the current directory, not a library search. */
  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, "libm.so.6", err, sizeof err), KEEL_EIO);
  assert_memory_equal(err, "plugin ./libm.so.6: ", 20);

  /* A file that is not a shared object. */
  char text[] = "/tmp/keel_test_stage_XXXXXX";
  int fd = mkstemp(text);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "not an ELF file\n", 16), 16);
  close(fd);
  err[0] = '\0';
  assert_int_equal(keel_registry_load_plugin(r, text, err, sizeof err), KEEL_EIO);
  snprintf(want, sizeof want, "plugin %s: ", text);
  assert_memory_equal(err, want, strlen(want));
  assert_true(strlen(err) > strlen(want)); /* dlerror's reason follows */
  unlink(text);

  assert_int_equal(keel_registry_count(r), 1); /* plug_arr only */
  keel_registry_destroy(r);
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_find),          cmocka_unit_test(test_malformed_definitions),
      cmocka_unit_test(test_oom),               cmocka_unit_test(test_plugin_loads_and_runs),
      cmocka_unit_test(test_plugin_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
