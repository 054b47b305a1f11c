/* test_config.c — INI loading, precedence (command line > file > defaults),
 * typed getters and their error messages, sizes, parse errors as FILE:LINE,
 * the printed resolved configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "testutil.h"

/* Writes text to DIR/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static keel_config_origin origin_of(const keel_config_t *c, const char *sec, const char *key) {
  for (size_t i = 0; i < keel_config_count(c); i++) {
    const char *s, *k;
    keel_config_origin o;
    keel_config_entry(c, i, &s, &k, NULL, &o);
    if (!strcmp(s, sec) && !strcmp(k, key)) return o;
  }
  fail_msg("no entry [%s] %s", sec, key);
  return KEEL_CONFIG_DEFAULT;
}

static void test_load_sections_and_precedence(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_config_t *c;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  /* Defaults first, then a command-line value, then the file. */
  assert_int_equal(keel_config_set(c, "pipeline", "workers", "1", (keel_config_origin)7), KEEL_EINVAL);
  assert_int_equal(keel_config_set(c, "pipeline", "workers", "1", KEEL_CONFIG_DEFAULT), KEEL_OK);
  assert_int_equal(keel_config_set(c, "pipeline", "batch", "64", KEEL_CONFIG_DEFAULT), KEEL_OK);
  assert_int_equal(keel_config_set(c, "limits", "max_line", "1MiB", KEEL_CONFIG_DEFAULT), KEEL_OK);
  assert_int_equal(keel_config_set(c, "pipeline", "workers", "8", KEEL_CONFIG_CLI), KEEL_OK);
  const char *path = write_file("a.ini",
                                "; a comment\n"
                                "# another\n"
                                "[pipeline]\n"
                                "workers = 2\n"
                                "batch=128\n"
                                "stages = user, score\n"
                                "\n"
                                "[stage.rank]\n"
                                "k_max = 50 ; inline comment\n"
                                "[limits]\n"
                                "max_line = 4KiB\n");
  char err[256] = "";
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_OK);
  assert_string_equal(keel_config_get(c, "pipeline", "workers"), "8"); /* command line wins */
  assert_int_equal(origin_of(c, "pipeline", "workers"), KEEL_CONFIG_CLI);
  assert_string_equal(keel_config_get(c, "pipeline", "batch"), "128"); /* file beats default */
  assert_int_equal(origin_of(c, "pipeline", "batch"), KEEL_CONFIG_FILE);
  assert_string_equal(keel_config_get(c, "pipeline", "stages"), "user, score");
  assert_string_equal(keel_config_get(c, "stage.rank", "k_max"), "50");
  assert_string_equal(keel_config_get(c, "limits", "max_line"), "4KiB");
  assert_int_equal(origin_of(c, "limits", "max_line"), KEEL_CONFIG_FILE);
  assert_null(keel_config_get(c, "pipeline", "nope"));
  assert_null(keel_config_get(c, "nope", "workers"));
  /* Weak sets never replace a command-line value; strong ones do. */
  assert_int_equal(keel_config_set_weak(c, "pipeline", "workers", "3", KEEL_CONFIG_FILE), KEEL_OK);
  assert_string_equal(keel_config_get(c, "pipeline", "workers"), "8");
  assert_int_equal(keel_config_set_weak(c, "pipeline", "batch", "9", KEEL_CONFIG_FILE), KEEL_OK);
  assert_string_equal(keel_config_get(c, "pipeline", "batch"), "9");
  assert_int_equal(keel_config_set(c, "pipeline", "workers", "4", KEEL_CONFIG_CLI), KEEL_OK);
  assert_string_equal(keel_config_get(c, "pipeline", "workers"), "4");
  /* Insertion order is kept; replacing does not move an entry. */
  const char *s, *k, *v;
  keel_config_entry(c, 0, &s, &k, &v, NULL);
  assert_string_equal(s, "pipeline");
  assert_string_equal(k, "workers");
  assert_string_equal(v, "4");
  assert_int_equal(keel_config_count(c), 5);
  keel_config_entry(c, 5, &s, &k, &v, NULL); /* past the count */
  assert_null(s);
  assert_null(k);
  assert_null(v);
  assert_int_equal(keel_config_set(c, NULL, "k", "v", KEEL_CONFIG_CLI), KEEL_EINVAL);
  keel_config_destroy(c);
  keel_config_destroy(NULL);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_parse_errors_name_file_and_line(void **state) {
  (void)state;
  keel_config_t *c;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  char err[256] = "", want[256];
  const char *path = write_file("bad.ini", "[pipeline]\nworkers = 2\nthis line is not a setting\nbatch = 3\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:3: ", path);
  assert_memory_equal(err, want, strlen(want));
  assert_non_null(strstr(err, "malformed line"));

  path = write_file("nosection.ini", "workers = 2\n[pipeline]\nbatch = 3\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:1: key outside any [section]", path);
  assert_string_equal(err, want);

  /* A malformed line before a setting outside any section: the first error
   * is the one named, with its own reason. */
  path = write_file("both.ini", "garbage\nworkers = 2\n[pipeline]\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:1: malformed line", path);
  assert_memory_equal(err, want, strlen(want));

  path = write_file("unnamed.ini", "[ ]\nworkers = 2\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:1: a section header with no name", path);
  assert_string_equal(err, want);

  path = write_file("section.ini", "[pipeline\nworkers = 2\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:1: ", path);
  assert_memory_equal(err, want, strlen(want));

  /* One value per key: an indented line continues the setting above it
   * (inih), which would replace its value; a key given twice likewise. A
   * section may be opened twice. */
  path = write_file("cont.ini", "[pipeline]\nstages = user,score\n  rank\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:3: [pipeline] stages is set twice", path);
  assert_memory_equal(err, want, strlen(want));
  path = write_file("twice.ini", "[limits]\nk_max = 5\n[pipeline]\nbatch = 3\n[limits]\nmax_depth = 3\nk_max = 6\n");
  assert_int_equal(keel_config_load_file(c, path, err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s:7: [limits] k_max is set twice", path);
  assert_memory_equal(err, want, strlen(want));
  keel_config_t *c2;
  assert_int_equal(keel_config_create(&c2), KEEL_OK);
  path = write_file("reopen.ini", "[limits]\nk_max = 5\n[pipeline]\nbatch = 3\n[limits]\nmax_depth = 3\n");
  assert_int_equal(keel_config_load_file(c2, path, err, sizeof err), KEEL_OK);
  assert_string_equal(keel_config_get(c2, "limits", "max_depth"), "3");
  keel_config_destroy(c2);

  /* A directory opens like a file but cannot be read: not an empty config. */
  assert_int_equal(keel_config_load_file(c, tu_tmpdir(), err, sizeof err), KEEL_ECONFIG);
  snprintf(want, sizeof want, "%s: cannot read: Is a directory", tu_tmpdir());
  assert_string_equal(err, want);

  snprintf(want, sizeof want, "%s/missing.ini", tu_tmpdir());
  assert_int_equal(keel_config_load_file(c, want, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "missing.ini: cannot open"));
  keel_config_destroy(c);
}

static void test_typed_getters(void **state) {
  (void)state;
  keel_config_t *c;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  char err[256];
  int64_t i;
  double d;
  int b;
  assert_int_equal(keel_config_get_int(c, "s", "missing", 7, 0, 10, &i, err, sizeof err), KEEL_OK);
  assert_int_equal(i, 7);
  keel_config_set(c, "s", "n", "42", KEEL_CONFIG_FILE);
  assert_int_equal(keel_config_get_int(c, "s", "n", 7, 0, 100, &i, err, sizeof err), KEEL_OK);
  assert_int_equal(i, 42);
  i = -1;
  assert_int_equal(keel_config_get_int(c, "s", "n", 7, 0, 41, &i, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "[s] n = '42': want an integer in 0..41");
  assert_int_equal(i, -1); /* out-param untouched on failure */
  const char *bad_ints[] = {"12abc", "", "4.5", "99999999999999999999", "0x10", "1e3"};
  for (size_t k = 0; k < sizeof bad_ints / sizeof *bad_ints; k++) {
    keel_config_set(c, "s", "n", bad_ints[k], KEEL_CONFIG_FILE);
    err[0] = '\0';
    if (keel_config_get_int(c, "s", "n", 0, INT64_MIN, INT64_MAX, &i, err, sizeof err) != KEEL_ECONFIG)
      fail_msg("'%s' accepted as an integer", bad_ints[k]);
    char want[64];
    snprintf(want, sizeof want, "[s] n = '%s'", bad_ints[k]);
    assert_non_null(strstr(err, want));
  }
  keel_config_set(c, "s", "n", "-5", KEEL_CONFIG_FILE);
  assert_int_equal(keel_config_get_int(c, "s", "n", 0, -10, 10, &i, err, sizeof err), KEEL_OK);
  assert_int_equal(i, -5);

  keel_config_set(c, "s", "x", "0.25", KEEL_CONFIG_FILE);
  assert_int_equal(keel_config_get_double(c, "s", "x", 1, 0, 1, &d, err, sizeof err), KEEL_OK);
  assert_true(d == 0.25);
  assert_int_equal(keel_config_get_double(c, "s", "x", 1, 0.5, 1, &d, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "[s] x = '0.25'"));
  const char *bad_doubles[] = {"nan", "inf", "1e400", "abc", "0.5x"};
  for (size_t k = 0; k < sizeof bad_doubles / sizeof *bad_doubles; k++) {
    keel_config_set(c, "s", "x", bad_doubles[k], KEEL_CONFIG_FILE);
    if (keel_config_get_double(c, "s", "x", 0, -1e300, 1e300, &d, err, sizeof err) != KEEL_ECONFIG)
      fail_msg("'%s' accepted as a number", bad_doubles[k]);
  }
  assert_int_equal(keel_config_get_double(c, "s", "none", 1.5, 0, 2, &d, err, sizeof err), KEEL_OK);
  assert_true(d == 1.5);

  const char *yes[] = {"true", "TRUE", "yes", "on", "1"}, *no[] = {"false", "No", "off", "0"};
  for (size_t k = 0; k < 5; k++) {
    keel_config_set(c, "s", "b", yes[k], KEEL_CONFIG_FILE);
    b = 0;
    assert_int_equal(keel_config_get_bool(c, "s", "b", 0, &b, err, sizeof err), KEEL_OK);
    assert_int_equal(b, 1);
  }
  for (size_t k = 0; k < 4; k++) {
    keel_config_set(c, "s", "b", no[k], KEEL_CONFIG_FILE);
    b = 1;
    assert_int_equal(keel_config_get_bool(c, "s", "b", 1, &b, err, sizeof err), KEEL_OK);
    assert_int_equal(b, 0);
  }
  keel_config_set(c, "s", "b", "maybe", KEEL_CONFIG_FILE);
  assert_int_equal(keel_config_get_bool(c, "s", "b", 1, &b, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "[s] b = 'maybe': want true or false");
  keel_config_destroy(c);
}

static void test_sizes(void **state) {
  (void)state;
  static const struct { const char *text; uint64_t want; } good[] = {
      {"0", 0},           {"512", 512},
      {"7B", 7},          {"10KiB", 10240},
      {"64MiB", 64ull << 20}, {"1GiB", 1ull << 30},
      {"3GiB", 3ull << 30},   {"17179869183GiB", 17179869183ull << 30},
      {"18446744073709551615", UINT64_MAX}};
  for (size_t k = 0; k < sizeof good / sizeof *good; k++) {
    uint64_t v = 1;
    if (keel_parse_size(good[k].text, &v) != KEEL_OK) fail_msg("'%s' refused", good[k].text);
    assert_true(v == good[k].want);
  }
  const char *bad[] = {"",       "KiB",   "-1",    "10KB",  "10 KiB", "10kib", "1.5MiB", "0x10", " 5",
                       "5 ",     "10TiB", "MiB10", "17179869184GiB", "18446744073709551616", "18014398509481984MiB"};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    uint64_t v = 77;
    if (keel_parse_size(bad[k], &v) != KEEL_EINVAL) fail_msg("'%s' accepted as a size", bad[k]);
    assert_true(v == 77);
  }
  assert_int_equal(keel_parse_size(NULL, NULL), KEEL_EINVAL);
  keel_config_t *c;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  char err[256];
  uint64_t v;
  assert_int_equal(keel_config_get_size(c, "limits", "max_line", 99, &v, err, sizeof err), KEEL_OK);
  assert_true(v == 99);
  keel_config_set(c, "limits", "max_line", "2MiB", KEEL_CONFIG_CLI);
  assert_int_equal(keel_config_get_size(c, "limits", "max_line", 99, &v, err, sizeof err), KEEL_OK);
  assert_true(v == 2u << 20);
  keel_config_set(c, "limits", "max_line", "2MB", KEEL_CONFIG_CLI);
  assert_int_equal(keel_config_get_size(c, "limits", "max_line", 99, &v, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "[limits] max_line = '2MB'"));
  keel_config_destroy(c);
}

static void test_print(void **state) {
  (void)state;
  keel_config_t *c;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  keel_config_set(c, "pipeline", "workers", "1", KEEL_CONFIG_DEFAULT);
  keel_config_set(c, "limits", "max_line", "1024", KEEL_CONFIG_DEFAULT);
  keel_config_set(c, "pipeline", "stages", "a,b", KEEL_CONFIG_FILE);
  keel_config_set(c, "pipeline", "workers", "4", KEEL_CONFIG_CLI);
  char path[128];
  snprintf(path, sizeof path, "%s/print.txt", tu_tmpdir());
  FILE *f = fopen(path, "w+");
  assert_non_null(f);
  keel_config_print(c, f);
  rewind(f);
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  /* Sections in first-seen order, each key once, with its origin; the
   * output reads back as INI. */
  assert_string_equal(buf,
                      "[pipeline]\n"
                      "workers = 4  ; command line\n"
                      "stages = a,b  ; config file\n"
                      "\n"
                      "[limits]\n"
                      "max_line = 1024  ; default\n");
  keel_config_t *back;
  assert_int_equal(keel_config_create(&back), KEEL_OK);
  char err[256];
  assert_int_equal(keel_config_load_file(back, path, err, sizeof err), KEEL_OK);
  assert_string_equal(keel_config_get(back, "pipeline", "workers"), "4");
  assert_string_equal(keel_config_get(back, "pipeline", "stages"), "a,b");
  assert_string_equal(keel_config_get(back, "limits", "max_line"), "1024");
  keel_config_destroy(back);
  keel_config_destroy(c);
}

static int load_attempt(void *ctx) {
  const char *path = ctx;
  keel_config_t *c;
  keel_status st = keel_config_create(&c);
  if (st != KEEL_OK) return 1;
  keel_config_set(c, "pipeline", "workers", "9", KEEL_CONFIG_CLI);
  char err[256] = "";
  st = keel_config_load_file(c, path, err, sizeof err);
  int ok = st == KEEL_OK && keel_config_get(c, "pipeline", "workers") &&
           !strcmp(keel_config_get(c, "pipeline", "workers"), "9") && keel_config_count(c) == 20;
  if (st != KEEL_OK) assert_int_equal(st, KEEL_ENOMEM);
  keel_config_destroy(c);
  return ok ? 0 : 1;
}

static void test_oom_sweep_load(void **state) {
  (void)state;
  char text[2048] = "[pipeline]\nworkers = 2\n";
  for (int k = 0; k < 19; k++) {
    char line[64];
    snprintf(line, sizeof line, "[stage.s%d]\nkey = value number %d\n", k, k);
    strcat(text, line);
  }
  const char *path = write_file("oom.ini", text);
  char copy[128];
  snprintf(copy, sizeof copy, "%s", path);
  assert_true(tu_oom_sweep(load_attempt, copy) > 20);
}

static void test_durations_and_known_keys(void **state) {
  (void)state;
  static const struct { const char *in; uint64_t ns; } ok[] = {
      {"0", 0}, {"30", 30000000000u}, {"30s", 30000000000u}, {"500ms", 500000000u}, {"1.5s", 1500000000u},
      {"5m", 300000000000u}, {"2h", 7200000000000u}, {"1000000000", 1000000000000000000u},
      {"16666666m", 999999960000000000u}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint64_t ns = 1;
    assert_int_equal(keel_parse_duration_ns(ok[i].in, &ns), KEEL_OK);
    assert_true(ns == ok[i].ns);
  }
  /* Past a billion seconds in any unit: "6000000h" overflowed to 0 ("no TTL"). */
  static const char *const bad[] = {"", "s", "-1s", "10 s", "3d", "1e12", "nan", "5mm", "1000000001",
                                    "6000000h", "1000000000h", "2000000h", "16666667m", "1e-10", "0.0000001ms",
                                    "0x10", "0x1p4s", "inf", "infs"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t ns;
    assert_int_equal(keel_parse_duration_ns(bad[i], &ns), KEEL_EINVAL);
  }
  keel_config_t *c;
  char err[256];
  uint64_t ms;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  assert_int_equal(keel_config_set(c, "l2", "ttl", "90s", KEEL_CONFIG_CLI), KEEL_OK);
  assert_int_equal(keel_config_set(c, "l2", "wait", "soon", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_get_duration_ms(c, "l2", "ttl", 7, &ms, err, sizeof err), KEEL_OK);
  assert_true(ms == 90000);
  assert_int_equal(keel_config_get_duration_ms(c, "l2", "absent", 7, &ms, err, sizeof err), KEEL_OK);
  assert_true(ms == 7);
  assert_int_equal(keel_config_get_duration_ms(c, "l2", "wait", 7, &ms, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "[l2] wait = 'soon': want a duration such as 500ms, 30s, 5m");
  /* Under a millisecond it would read as 0 ("off" for some options): refused. */
  keel_config_t *d;
  assert_int_equal(keel_config_create(&d), KEEL_OK);
  assert_int_equal(keel_config_set(d, "l2", "wait", "0.9ms", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_set(d, "l2", "ttl", "1.5ms", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_set(d, "l2", "lock_ttl", "0", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_get_duration_ms(d, "l2", "wait", 7, &ms, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "[l2] wait = '0.9ms': want 0 or at least 1ms (it is read in milliseconds)");
  assert_int_equal(keel_config_get_duration_ms(d, "l2", "ttl", 7, &ms, err, sizeof err), KEEL_OK);
  assert_true(ms == 1);
  assert_int_equal(keel_config_get_duration_ms(d, "l2", "lock_ttl", 7, &ms, err, sizeof err), KEEL_OK);
  assert_true(ms == 0);
  keel_config_destroy(d);
  static const char *const known[] = {"ttl", "wait", NULL}, *const fewer[] = {"ttl", NULL};
  assert_int_equal(keel_config_check_keys(c, "l2", known, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_config_check_keys(c, "other", fewer, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_config_check_keys(c, "l2", fewer, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "unknown option 'wait' in [l2] (known: ttl)");
  static const char *const none[] = {NULL};
  assert_int_equal(keel_config_check_keys(c, "l2", none, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "unknown option 'ttl' in [l2] (it takes none)");
  char small[40]; /* a message cut short still ends within the buffer */
  assert_int_equal(keel_config_check_keys(c, "l2", fewer, small, sizeof small), KEEL_ECONFIG);
  assert_int_equal(strlen(small), sizeof small - 1);
  keel_config_destroy(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_sections_and_precedence),
      cmocka_unit_test(test_parse_errors_name_file_and_line),
      cmocka_unit_test(test_typed_getters),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_print),
      cmocka_unit_test(test_oom_sweep_load),
      cmocka_unit_test(test_durations_and_known_keys),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_make, tu_tmpdir_remove);
}
