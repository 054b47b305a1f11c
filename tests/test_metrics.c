/* test_metrics.c — the Prometheus exposition writer, keel's series from a
 * sample, the JSON line, latency quantiles, and the HTTP server (/metrics,
 * /api/series with its bounded history, /healthz, 404). */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keel/http.h"
#include "keel/metrics.h"
#include "testutil.h"

static char *expose(keel_metrics_t *m, keel_buf *b) {
  keel_buf_clear(b);
  assert_int_equal(keel_metrics_write_prometheus(m, b), KEEL_OK);
  return b->data;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
  return n;
}

static void test_families_grouped_once(void **s) {
  (void)s;
  int64_t before = tu_tracked_bytes();
  keel_metrics_t *m;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_OTHER);
  assert_int_equal(keel_metrics_create(&m), KEEL_OK);
  /* Interleaved adds: the output still keeps each family's samples together. */
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_COUNTER, "x_total", "X.", "stage", "a", 1), KEEL_OK);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "y_bytes", "Y.", NULL, NULL, 2.5), KEEL_OK);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_COUNTER, "x_total", "X.", "stage", "b", 12345678901234.0), KEEL_OK);
  const char *t = expose(m, &b);
  assert_string_equal(t, "# HELP x_total X.\n# TYPE x_total counter\nx_total{stage=\"a\"} 1\n"
                         "x_total{stage=\"b\"} 12345678901234\n# HELP y_bytes Y.\n# TYPE y_bytes gauge\ny_bytes 2.5\n");
  keel_metrics_reset(m);
  assert_string_equal(expose(m, &b), "");
  keel_buf_free(&b);
  keel_metrics_destroy(m);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_names_and_escaping(void **s) {
  (void)s;
  int64_t before = tu_tracked_bytes();
  keel_metrics_t *m;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_OTHER);
  assert_int_equal(keel_metrics_create(&m), KEEL_OK);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_COUNTER, "no_suffix", "", NULL, NULL, 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, (keel_metric_type)7, "g", "", NULL, NULL, 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "g_total", "", NULL, NULL, 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "9bad", "", NULL, NULL, 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "bad-name", "", NULL, NULL, 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "g", "", "__reserved", "v", 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "g", "", "bad label", "v", 1), KEEL_EINVAL);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "g", "help \\ with\nnewline", "tag", "a\"b\\c\nd", 1),
                   KEEL_OK);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_COUNTER, "g", "", NULL, NULL, 1), KEEL_EINVAL); /* type clash */
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "h", "", NULL, NULL, NAN), KEEL_OK);
  assert_int_equal(keel_metrics_add(m, KEEL_METRIC_GAUGE, "i", "", NULL, NULL, -INFINITY), KEEL_OK);
  const char *t = expose(m, &b);
  assert_non_null(strstr(t, "# HELP g help \\\\ with\\nnewline\n"));
  assert_non_null(strstr(t, "g{tag=\"a\\\"b\\\\c\\nd\"} 1\n"));
  assert_non_null(strstr(t, "h NaN\n"));
  assert_non_null(strstr(t, "i -Inf\n"));
  keel_buf_free(&b);
  keel_metrics_destroy(m);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_histogram_cumulative(void **s) {
  (void)s;
  keel_metrics_t *m;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_OTHER);
  assert_int_equal(keel_metrics_create(&m), KEEL_OK);
  const double bounds[] = {0.001, 0.01, 0.1};
  const uint64_t counts[] = {3, 0, 5, 2};
  assert_int_equal(keel_metrics_add_histogram(m, "lat_seconds", "L.", "stage", "rank", bounds, counts, 3, 1.5),
                   KEEL_OK);
  const double unsorted[] = {0.1, 0.01};
  assert_int_equal(keel_metrics_add_histogram(m, "lat_seconds", "L.", "stage", "x", unsorted, counts, 2, 0),
                   KEEL_EINVAL);
  assert_int_equal(keel_metrics_add_histogram(m, "lat_seconds", "L.", "le", "x", bounds, counts, 3, 0), KEEL_EINVAL);
  const char *t = expose(m, &b);
  assert_string_equal(t, "# HELP lat_seconds L.\n# TYPE lat_seconds histogram\n"
                         "lat_seconds_bucket{stage=\"rank\",le=\"0.001\"} 3\n"
                         "lat_seconds_bucket{stage=\"rank\",le=\"0.01\"} 3\n"
                         "lat_seconds_bucket{stage=\"rank\",le=\"0.1\"} 8\n"
                         "lat_seconds_bucket{stage=\"rank\",le=\"+Inf\"} 10\n"
                         "lat_seconds_sum{stage=\"rank\"} 1.5\n"
                         "lat_seconds_count{stage=\"rank\"} 10\n");
  keel_buf_free(&b);
  keel_metrics_destroy(m);
}

static int oom_attempt(void *ctx) {
  (void)ctx;
  keel_metrics_t *m;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_OTHER);
  int rc = 1;
  const double bounds[] = {1, 2};
  const uint64_t counts[] = {1, 2, 3};
  if (keel_metrics_create(&m) != KEEL_OK) return 1;
  for (int i = 0; i < 100; i++) {
    char lv[16];
    snprintf(lv, sizeof lv, "s%d", i);
    if (keel_metrics_add(m, KEEL_METRIC_COUNTER, i % 2 ? "a_total" : "b_total", "", "stage", lv, i) != KEEL_OK ||
        keel_metrics_add_histogram(m, "h_seconds", "", "stage", lv, bounds, counts, 2, 1) != KEEL_OK)
      goto out;
  }
  if (keel_metrics_write_prometheus(m, &b) != KEEL_OK) goto out;
  rc = count(b.data, "h_seconds_count") == 100 ? 0 : 1;
out:
  keel_buf_free(&b);
  keel_metrics_destroy(m);
  return rc;
}

static void test_oom_sweep(void **s) {
  (void)s;
  assert_true(tu_oom_sweep(oom_attempt, NULL) > 3);
}

static void test_quantile(void **s) {
  (void)s;
  keel_stage_stats st;
  memset(&st, 0, sizeof st);
  assert_true(keel_metrics_latency_quantile(&st, 0.5) == 0);
  const double *bd = keel_pipeline_latency_bounds();
  st.latency[3] = 100; /* all calls in (bd[2], bd[3]] */
  double p50 = keel_metrics_latency_quantile(&st, 0.5);
  assert_true(p50 > bd[2] && p50 <= bd[3]);
  st.latency[KEEL_LATENCY_BUCKETS] = 100; /* half beyond the last bound */
  assert_true(keel_metrics_latency_quantile(&st, 0.99) == bd[KEEL_LATENCY_BUCKETS - 1]);
  assert_true(keel_metrics_latency_quantile(&st, 0.25) <= bd[3]);
}

/* A sample without a pipeline: memory, RSS, the memory state's hooks. */
static void test_sample_json_and_series(void **s) {
  (void)s;
  int64_t before = tu_tracked_bytes();
  keel_metrics_sample *a = keel_mem_calloc(KEEL_MEM_OTHER, 2, sizeof *a);
  assert_non_null(a);
  assert_int_equal(keel_metrics_sample_take(NULL, 1.0, &a[0]), KEEL_OK);
  assert_int_equal(keel_metrics_sample_take(NULL, 2.0, &a[1]), KEEL_OK);
  a[1].run.events_in = 500;
  keel_metrics_sample_rate(&a[0], &a[1]);
  assert_true(fabs(a[1].events_per_s - 500) < 1e-9);
  a[1].mem.budget_bytes = 64u << 20;
  a[1].mem.leak_detector = 1;
  a[1].mem.n_leaks = 1;
  snprintf(a[1].mem.leaks[0].tag, sizeof a[1].mem.leaks[0].tag, "rank");
  a[1].mem.leaks[0].bytes_per_s = 4096;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_OTHER);
  assert_int_equal(keel_metrics_sample_json(&a[1], &b), KEEL_OK);
  json_error_t je;
  json_t *j = json_loads(b.data, 0, &je);
  assert_non_null(j);
  assert_true(json_real_value(json_object_get(j, "t")) == 2.0);
  assert_int_equal(json_integer_value(json_object_get(j, "budget_bytes")), 64 << 20);
  assert_true(json_integer_value(json_object_get(json_object_get(json_object_get(j, "mem"), "other"), "current")) > 0);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "leaks"), 0), "tag")), "rank");
  json_decref(j);
  keel_metrics_t *m;
  assert_int_equal(keel_metrics_create(&m), KEEL_OK);
  assert_int_equal(keel_metrics_collect(m, &a[1]), KEEL_OK);
  keel_buf_clear(&b);
  const char *t = expose(m, &b);
  assert_non_null(strstr(t, "keel_memory_budget_bytes 67108864\n"));
  assert_non_null(strstr(t, "keel_leak_suspected{tag=\"rank\"} 1\n"));
  assert_non_null(strstr(t, "keel_leak_detector_enabled 1\n"));
  assert_non_null(strstr(t, "# TYPE keel_memory_bytes gauge\nkeel_memory_bytes{tag=\"other\"} "));
  assert_null(strstr(t, "keel_events_in_total")); /* no pipeline, no run series */
  keel_metrics_destroy(m);
  keel_buf_free(&b);
  keel_mem_free(a);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- HTTP ---- */

static int http_get(unsigned port, const char *path, char *out, size_t len) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_true(fd >= 0);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
  assert_int_equal(write(fd, req, (size_t)n), n);
  size_t got = 0;
  ssize_t r;
  while (got + 1 < len && (r = read(fd, out + got, len - 1 - got)) > 0) got += (size_t)r;
  out[got] = '\0';
  close(fd);
  int code = 0;
  sscanf(out, "HTTP/1.%*d %d", &code);
  return code;
}

static keel_status render(void *ctx, keel_buf *out) {
  int *calls = ctx;
  return keel_buf_appendf(out, "t_total %d\n", ++*calls);
}

static void test_http_endpoints(void **s) {
  (void)s;
  int64_t before = tu_tracked_bytes();
  int calls = 0;
  static const char page[] = "<html>dash</html>";
  keel_http_options o = {.size = sizeof o, .address = "127.0.0.1:0", .metrics = render, .metrics_ctx = &calls,
                         .dashboard = page, .dashboard_len = sizeof page - 1, .history = 4};
  keel_http_t *h;
  char err[256], buf[8192];
  assert_int_equal(keel_http_create(&o, &h, err, sizeof err), KEEL_OK);
  unsigned port = keel_http_port(h);
  assert_true(port > 0);
  assert_int_equal(http_get(port, "/metrics", buf, sizeof buf), 200);
  assert_non_null(strstr(buf, "t_total 1"));
  assert_non_null(strstr(buf, "text/plain; version=0.0.4"));
  assert_int_equal(http_get(port, "/metrics", buf, sizeof buf), 200);
  assert_non_null(strstr(buf, "t_total 2")); /* rendered at every scrape */
  assert_int_equal(http_get(port, "/healthz", buf, sizeof buf), 200);
  assert_int_equal(http_get(port, "/", buf, sizeof buf), 200);
  assert_non_null(strstr(buf, "<html>dash</html>"));
  assert_int_equal(http_get(port, "/missing", buf, sizeof buf), 404);
  /* History of 4: ten samples keep the first and a stride that covers all. */
  for (int i = 0; i < 10; i++) {
    char js[32];
    int n = snprintf(js, sizeof js, "{\"i\":%d}", i);
    assert_int_equal(keel_http_publish(h, js, (size_t)n), KEEL_OK);
  }
  assert_int_equal(http_get(port, "/api/series", buf, sizeof buf), 200);
  json_t *j = json_loads(strstr(buf, "\r\n\r\n") + 4, 0, NULL);
  assert_non_null(j);
  json_t *smp = json_object_get(j, "samples");
  assert_int_equal(json_integer_value(json_object_get(j, "next")), 10);
  assert_true(json_array_size(smp) <= 4 && json_array_size(smp) >= 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(smp, 0), "i")), 0);
  long prev = -1;
  for (size_t i = 0; i < json_array_size(smp); i++) {
    long v = (long)json_integer_value(json_object_get(json_array_get(smp, i), "i"));
    assert_true(v > prev);
    prev = v;
  }
  json_decref(j);
  assert_int_equal(http_get(port, "/api/series?since=10", buf, sizeof buf), 200);
  assert_non_null(strstr(buf, "\"samples\":[]"));
  keel_http_destroy(h);
  /* The same port again (free now), a bad address, a busy port. */
  keel_http_t *h2, *h3;
  o.address = "nonsense";
  assert_int_equal(keel_http_create(&o, &h2, err, sizeof err), KEEL_EINVAL);
  assert_non_null(strstr(err, "HOST:PORT"));
  o.address = "127.0.0.1:0";
  assert_int_equal(keel_http_create(&o, &h2, err, sizeof err), KEEL_OK);
  char busy[32];
  snprintf(busy, sizeof busy, "127.0.0.1:%u", keel_http_port(h2));
  o.address = busy;
  assert_int_equal(keel_http_create(&o, &h3, err, sizeof err), KEEL_EIO);
  keel_http_destroy(h2);
  assert_int_equal(tu_tracked_bytes(), before); /* history, responses: all freed */
}

static int http_oom_attempt(void *ctx) {
  (void)ctx;
  keel_http_options o = {.size = sizeof o, .address = "127.0.0.1:0", .history = 2};
  keel_http_t *h;
  char err[256];
  keel_status st = keel_http_create(&o, &h, err, sizeof err);
  if (st != KEEL_OK) {
    if (st != KEEL_ENOMEM) fail_msg("create: %s", err);
    return 1;
  }
  int rc = 0;
  for (int i = 0; i < 5 && !rc; i++) rc = keel_http_publish(h, "{\"x\":1}", 7) != KEEL_OK;
  keel_http_destroy(h);
  return rc;
}

static void test_http_oom_sweep(void **s) {
  (void)s;
  assert_true(tu_oom_sweep(http_oom_attempt, NULL) >= 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_families_grouped_once), cmocka_unit_test(test_names_and_escaping),
      cmocka_unit_test(test_histogram_cumulative),  cmocka_unit_test(test_oom_sweep),
      cmocka_unit_test(test_quantile),              cmocka_unit_test(test_sample_json_and_series),
      cmocka_unit_test(test_http_endpoints),        cmocka_unit_test(test_http_oom_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
