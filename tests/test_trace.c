/* test_trace.c — the streaming trace readers: every format, errors with
 * positions, rewind, streaming across buffer refills, and the real traces'
 * request counts against REFERENCE.csv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/trace.h"
#include "testutil.h"

static char tmpdir[64];

static const char *write_file(const char *name, const void *data, size_t n) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
  return path;
}

/* Reads every key into out (up to cap); returns the count, asserts EEOF. */
static size_t read_all(const char *path, keel_trace_format fmt, int64_t *out, size_t cap) {
  keel_trace_t *t;
  assert_int_equal(keel_trace_open(path, fmt, &t), KEEL_OK);
  size_t n = 0;
  int64_t k;
  keel_status st;
  while ((st = keel_trace_next(t, &k)) == KEEL_OK) {
    if (n < cap) out[n] = k;
    n++;
  }
  assert_int_equal(st, KEEL_EEOF);
  keel_trace_close(t);
  return n;
}

static void test_format_names(void **state) {
  (void)state;
  keel_trace_format f;
  assert_int_equal(keel_trace_format_parse("bin32", &f), KEEL_OK);
  assert_int_equal(f, KEEL_TRACE_BIN32);
  assert_int_equal(keel_trace_format_parse("lirs", &f), KEEL_OK);
  assert_int_equal(f, KEEL_TRACE_LIRS);
  assert_int_equal(keel_trace_format_parse("nope", &f), KEEL_EINVAL);
  assert_int_equal(keel_trace_format_for_path("a/b/x.lirs"), KEEL_TRACE_LIRS);
  assert_int_equal(keel_trace_format_for_path("x.bin"), KEEL_TRACE_BIN64);
  assert_int_equal(keel_trace_format_for_path("x.txt"), KEEL_TRACE_TEXT);
  assert_int_equal(keel_trace_format_for_path("dir.d/x"), KEEL_TRACE_TEXT);
}

static void test_lirs(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  const char txt[] = "1\n\n*\n 22 \r\n-3\n*\n9223372036854775807\n44";
  const char *p = write_file("t.lirs", txt, sizeof txt - 1);
  int64_t k[8];
  assert_int_equal(read_all(p, KEEL_TRACE_AUTO, k, 8), 5);
  assert_int_equal(k[0], 1);
  assert_int_equal(k[1], 22);
  assert_int_equal(k[2], -3);
  assert_int_equal(k[3], INT64_MAX);
  assert_int_equal(k[4], 44);

  keel_trace_t *t;
  assert_int_equal(keel_trace_open(p, KEEL_TRACE_LIRS, &t), KEEL_OK);
  assert_string_equal(keel_trace_name(t), "t");
  assert_int_equal(keel_trace_size(t), sizeof txt - 1);
  int64_t x;
  while (keel_trace_next(t, &x) == KEEL_OK) {}
  assert_int_equal(keel_trace_offset(t), sizeof txt - 1);
  assert_int_equal(keel_trace_rewind(t), KEEL_OK);
  assert_int_equal(keel_trace_next(t, &x), KEEL_OK);
  assert_int_equal(x, 1);
  keel_trace_close(t);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_lirs_malformed(void **state) {
  (void)state;
  const char txt[] = "1\n2\nabc\n";
  const char *p = write_file("bad.lirs", txt, sizeof txt - 1);
  keel_trace_t *t;
  int64_t k;
  assert_int_equal(keel_trace_open(p, KEEL_TRACE_LIRS, &t), KEEL_OK);
  assert_int_equal(keel_trace_next(t, &k), KEEL_OK);
  assert_int_equal(keel_trace_next(t, &k), KEEL_OK);
  assert_int_equal(keel_trace_next(t, &k), KEEL_EPARSE);
  assert_non_null(strstr(keel_trace_error(t), ":3:"));
  keel_trace_close(t);
  /* The same line in `text` is hashed, deterministically. */
  int64_t a[4], b[4];
  assert_int_equal(read_all(p, KEEL_TRACE_TEXT, a, 4), 3);
  assert_int_equal(read_all(p, KEEL_TRACE_TEXT, b, 4), 3);
  assert_int_equal(a[1], 2);
  assert_int_equal(a[2], b[2]);
  assert_true(a[2] != 0);
  /* In `text` a "*" line is a key like any other; empty lines are skipped. */
  const char star[] = "alpha\n*\n\nbeta\n";
  p = write_file("star.txt", star, sizeof star - 1);
  assert_int_equal(read_all(p, KEEL_TRACE_TEXT, a, 4), 3);
  assert_true(a[0] != a[1] && a[1] != a[2]);
}

static void test_bin(void **state) {
  (void)state;
  const unsigned char b32[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xfe, 0x7f, 0xff, 0xff, 0xff};
  int64_t k[4];
  assert_int_equal(read_all(write_file("x.b32", b32, sizeof b32), KEEL_TRACE_BIN32, k, 4), 3);
  assert_int_equal(k[0], 5);
  assert_int_equal(k[1], -2);
  assert_int_equal(k[2], INT32_MAX);
  const unsigned char b64[] = {0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(read_all(write_file("x.bin", b64, sizeof b64), KEEL_TRACE_AUTO, k, 4), 2);
  assert_int_equal(k[0], 256);
  assert_int_equal(k[1], -1);
  /* A truncated record is an error naming the byte offset. */
  keel_trace_t *t;
  assert_int_equal(keel_trace_open(write_file("y.bin", b64, 13), KEEL_TRACE_BIN64, &t), KEEL_OK);
  assert_int_equal(keel_trace_next(t, k), KEEL_OK);
  assert_int_equal(keel_trace_next(t, k), KEEL_EPARSE);
  assert_non_null(strstr(keel_trace_error(t), "byte 8"));
  keel_trace_close(t);
}

static void test_missing_file(void **state) {
  (void)state;
  keel_trace_t *t = NULL;
  assert_int_equal(keel_trace_open("/nonexistent/x.lirs", KEEL_TRACE_AUTO, &t), KEEL_EIO);
  assert_null(t);
}

/* Far more than one buffer: every key comes back in order, in both a text
 * and a binary format. */
static void test_streaming_large(void **state) {
  (void)state;
  enum { N = 300000 };
  char path[256];
  snprintf(path, sizeof path, "%s/big.lirs", tmpdir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (int i = 0; i < N; i++) fprintf(f, "%d\n", i * 7 - 1000);
  fclose(f);
  keel_trace_t *t;
  assert_int_equal(keel_trace_open(path, KEEL_TRACE_LIRS, &t), KEEL_OK);
  int64_t k;
  for (int i = 0; i < N; i++) {
    assert_int_equal(keel_trace_next(t, &k), KEEL_OK);
    assert_int_equal(k, (int64_t)i * 7 - 1000);
  }
  assert_int_equal(keel_trace_next(t, &k), KEEL_EEOF);
  keel_trace_close(t);

  snprintf(path, sizeof path, "%s/big.b64", tmpdir);
  f = fopen(path, "wb");
  assert_non_null(f);
  for (int i = 0; i < N; i++) {
    unsigned char b[8];
    uint64_t v = (uint64_t)i * 0x9e3779b97f4a7c15ull;
    for (int j = 0; j < 8; j++) b[j] = (unsigned char)(v >> (56 - 8 * j));
    fwrite(b, 1, 8, f);
  }
  fclose(f);
  assert_int_equal(keel_trace_open(path, KEEL_TRACE_BIN64, &t), KEEL_OK);
  for (int i = 0; i < N; i++) {
    assert_int_equal(keel_trace_next(t, &k), KEEL_OK);
    assert_int_equal((uint64_t)k, (uint64_t)i * 0x9e3779b97f4a7c15ull);
  }
  assert_int_equal(keel_trace_next(t, &k), KEEL_EEOF);
  keel_trace_close(t);
}

/* The shared traces hold exactly the request counts REFERENCE.csv names. */
static void test_real_traces(void **state) {
  (void)state;
  static const struct { const char *file; keel_trace_format fmt; size_t requests; } tr[] = {
      {"cpp.lirs", KEEL_TRACE_LIRS, 9047},
      {"loop.lirs", KEEL_TRACE_LIRS, 505500},
      {"scarab-recs.bin", KEEL_TRACE_BIN64, 1245184},
  };
  for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++) {
    const char *p = tu_shared_trace(tr[i].file);
    if (!p) fail_msg("KEEL_SHARED has no %s", tr[i].file);
    int64_t k[1];
    assert_int_equal(read_all(p, tr[i].fmt, k, 0), tr[i].requests);
  }
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/keel-test-trace.XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format_names), cmocka_unit_test(test_lirs),
      cmocka_unit_test(test_lirs_malformed), cmocka_unit_test(test_bin),
      cmocka_unit_test(test_missing_file), cmocka_unit_test(test_streaming_large),
      cmocka_unit_test(test_real_traces),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) rc = rc ? rc : 1;
  return rc;
}
