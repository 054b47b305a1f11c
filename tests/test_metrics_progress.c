/* test_metrics_progress.c — the progress line's text (counts, rate,
 * elapsed, share and ETA), when it is wanted, its drawing on a stream, and
 * the log levels. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/log.h"
#include "keel/progress.h"
#include "testutil.h"

static void test_format(void **s) {
  (void)s;
  char b[256];
  keel_progress_format(b, sizeof b, "keel x", "events", 12345, 2.0, 1000, 250);
  assert_string_equal(b, "keel x: 12.3k events  6172/s  0:02  25%  ETA 0:06");
  keel_progress_format(b, sizeof b, "keel x", "keys", 2500000, 3725.0, 0, 0);
  assert_string_equal(b, "keel x: 2.50M keys  671/s  1:02:05"); /* total unknown: no share, no ETA */
  keel_progress_format(b, sizeof b, "keel x", "events", 0, 0, 1000, 0);
  assert_string_equal(b, "keel x: 0 events  0/s  0:00  0%");
  keel_progress_format(b, sizeof b, "keel x", "events", 10, 1.0, 1000, 5000); /* past the total */
  assert_string_equal(b, "keel x: 10 events  10/s  0:01  100%  ETA 0:00");
  keel_progress_format(b, 12, "keel x", "events", 10, 1.0, 0, 0); /* truncated, still a string */
  assert_int_equal(strlen(b), 11);
}

static void test_wanted(void **s) {
  (void)s;
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(keel_progress_wanted(fileno(f), 0), 0); /* a file is not a terminal */
  assert_int_equal(keel_progress_wanted(STDIN_FILENO, 1), 0); /* --no-progress */
  fclose(f);
}

static void test_draws_and_clears(void **s) {
  (void)s;
  int64_t before = tu_tracked_bytes();
  FILE *f = tmpfile();
  keel_progress_options o = {.size = sizeof o, .label = "keel t", .out = f, .total = 100, .min_interval_s = 0.01};
  keel_progress_t *p;
  assert_int_equal(keel_progress_create(&o, &p), KEEL_OK);
  keel_progress_update(p, 1, 1); /* too soon: nothing drawn */
  struct timespec ts = {0, 20 * 1000000L};
  nanosleep(&ts, NULL);
  keel_progress_update(p, 50, 50);
  keel_progress_destroy(p); /* erases the line */
  char buf[512] = "";
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  assert_non_null(strstr(buf, "\rkeel t: 50 events  "));
  assert_non_null(strstr(buf, "50%  ETA"));
  assert_null(strstr(buf, ": 1 events"));
  assert_non_null(strstr(buf, "\033[K"));
  assert_int_equal(strcmp(buf + n - 4, "\r\033[K"), 0);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_log_levels(void **s) {
  (void)s;
  keel_log_level was = keel_log_get_level();
  keel_log_set_level(KEEL_LOG_WARN); /* --quiet */
  assert_true(keel_log_enabled(KEEL_LOG_ERROR) && keel_log_enabled(KEEL_LOG_WARN));
  assert_false(keel_log_enabled(KEEL_LOG_INFO) || keel_log_enabled(KEEL_LOG_DEBUG));
  keel_log_set_level(KEEL_LOG_DEBUG); /* --verbose */
  assert_true(keel_log_enabled(KEEL_LOG_DEBUG));
  keel_log_set_timestamps(0);
  keel_log(KEEL_LOG_DEBUG, "keel test", "a debug line with %d", 42); /* on stderr, shown in the test log */
  keel_log((keel_log_level)-1, "keel test", "not a level: said as an error"); /* read names[-1] once */
  keel_log((keel_log_level)9, "keel test", "not a level: said as an error");
  keel_log_set_timestamps(1);
  keel_log_set_level(was);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_format), cmocka_unit_test(test_wanted),
                                     cmocka_unit_test(test_draws_and_clears), cmocka_unit_test(test_log_levels)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
