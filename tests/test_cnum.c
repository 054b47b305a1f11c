/* test_cnum.c — keel's numbers keep '.' as the decimal point when the host
 * program sets a locale whose LC_NUMERIC writes ',' (de_DE): event JSON,
 * keel_buf_appendf (metrics lines, summaries), Prometheus exposition, and
 * the configuration's numbers and durations read back the same. The
 * locale is compiled into a temporary folder with localedef (package
 * `locales`, which scripts/deps.sh installs); without it the test says
 * SKIPPED. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/config.h"
#include "keel/event.h"
#include "keel/io.h"
#include "keel/metrics.h"
#include "testutil.h"

static int comma_locale(void) {
  const char *dir = tu_path("locales");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && localedef -i de_DE -f UTF-8 '%s/de_DE.UTF-8' >/dev/null 2>&1", dir, dir);
  if (system(cmd) != 0) return 0;
  setenv("LOCPATH", dir, 1);
  if (!setlocale(LC_NUMERIC, "de_DE.UTF-8")) return 0;
  char probe[16];
  snprintf(probe, sizeof probe, "%.2f", 3.25);
  return strcmp(probe, "3,25") == 0; /* the locale does what the test is about */
}

static void test_numbers_in_a_comma_locale(void **state) {
  (void)state;
  if (!comma_locale()) {
    printf("SKIPPED: no de_DE locale could be made (apt-get install locales)\n");
    skip();
  }
  int64_t before = tu_tracked_bytes();
  keel_schema_t *s;
  keel_event_t *e;
  keel_field_id f, vec;
  assert_int_equal(keel_schema_create(&s), KEEL_OK);
  assert_int_equal(keel_schema_intern(s, "score", 5, &f), KEEL_OK);
  assert_int_equal(keel_schema_intern(s, "emb", 3, &vec), KEEL_OK);
  assert_int_equal(keel_event_create(s, KEEL_MEM_ARENA, 0, &e), KEEL_OK);
  assert_int_equal(keel_event_set_float(e, f, 3.25), KEEL_OK);
  assert_int_equal(keel_event_set_vector(e, vec, (const float[]){0.5f, -1.75f}, 2), KEEL_OK);
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_json_append_event(&b, e), KEEL_OK);
  assert_non_null(strstr(b.data, "\"score\":3.25"));
  assert_non_null(strstr(b.data, "\"emb\":[0.5,-1.75]"));
  keel_buf_clear(&b);
  assert_int_equal(keel_buf_appendf(&b, "%.3f %g", 1.5, 0.25), KEEL_OK);
  assert_string_equal(b.data, "1.500 0.25");
  keel_buf_clear(&b);
  keel_metrics_t *m;
  assert_int_equal(keel_metrics_create(&m), KEEL_OK);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "keel_ratio", "a ratio", NULL, NULL, 0.25), KEEL_OK);
  assert_int_equal(keel_metrics_write_prometheus(m, &b), KEEL_OK);
  assert_non_null(strstr(b.data, "keel_ratio 0.25"));
  keel_metrics_destroy(m);
  keel_buf_free(&b);
  keel_config_t *c;
  char err[256];
  double d;
  uint64_t ns;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  assert_int_equal(keel_config_set(c, "memo", "audit_rate", "0.5", KEEL_CONFIG_CLI), KEEL_OK);
  assert_int_equal(keel_config_get_double(c, "memo", "audit_rate", 0, 0, 1, &d, err, sizeof err), KEEL_OK);
  assert_true(d == 0.5);
  assert_int_equal(keel_parse_duration_ns("1.5s", &ns), KEEL_OK);
  assert_int_equal(ns, 1500000000u);
  keel_config_destroy(c);
  keel_event_destroy(e);
  keel_schema_destroy(s);
  setlocale(LC_NUMERIC, "C");
  assert_int_equal(tu_tracked_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_numbers_in_a_comma_locale)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
