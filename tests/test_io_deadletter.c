/* test_io_deadletter.c — the dead-letter file: created lazily, one escaped
 * NDJSON record per rejected line, flushed on close, OOM-safe. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "keel/io.h"
#include "testutil.h"

static char tmpdir[256];
static char path[512];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/keel_test_io_dl.XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  snprintf(path, sizeof path, "%s/rejected.ndjson", tmpdir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static int exists(const char *p) { return access(p, F_OK) == 0; }

/* Reads the file and parses each line with jansson; returns the lines. */
static size_t load_records(json_t **recs, size_t max) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  while ((got = getline(&line, &cap, f)) > 0) {
    assert_true(n < max);
    assert_int_equal(line[got - 1], '\n');
    json_error_t e;
    recs[n] = json_loadb(line, (size_t)got, 0, &e);
    if (!recs[n]) fail_msg("record %zu is not JSON: %s", n + 1, e.text);
    n++;
  }
  free(line);
  fclose(f);
  return n;
}

static void test_lazy_creation_and_records(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  unlink(path);
  keel_dead_letter_t *d;
  assert_int_equal(keel_dead_letter_create(path, &d), KEEL_OK);
  assert_string_equal(keel_dead_letter_path(d), path);
  assert_int_equal(keel_dead_letter_count(d), 0);
  assert_false(exists(path)); /* nothing rejected yet: no file */
  assert_int_equal(keel_dead_letter_flush(d), KEEL_OK);
  assert_false(exists(path));

  static const char raw1[] = "{\"type\":\"rank\",\"k\":0}";
  assert_int_equal(keel_dead_letter_write(d, 7, "field 'k': 0 is not a positive integer", raw1, sizeof raw1 - 1),
                   KEEL_OK);
  assert_true(exists(path)); /* the first record creates it */
  static const char raw2[] = "bad \"quote\" \x01 \xff\xfe tail\n";
  assert_int_equal(keel_dead_letter_write(d, 9, "invalid JSON at line 1 column 1: x", raw2, sizeof raw2 - 1),
                   KEEL_OK);
  assert_int_equal(keel_dead_letter_write(d, 10, "empty raw", NULL, 0), KEEL_OK);
  assert_int_equal(keel_dead_letter_count(d), 3);
  assert_int_equal(keel_dead_letter_close(d), KEEL_OK);

  json_t *recs[8];
  size_t n = load_records(recs, 8);
  assert_int_equal(n, 3);
  assert_int_equal(json_integer_value(json_object_get(recs[0], "line")), 7);
  assert_string_equal(json_string_value(json_object_get(recs[0], "reason")),
                      "field 'k': 0 is not a positive integer");
  assert_string_equal(json_string_value(json_object_get(recs[0], "input")), raw1);
  assert_int_equal(json_integer_value(json_object_get(recs[0], "input_bytes")), sizeof raw1 - 1);
  /* Invalid UTF-8 comes back as the code points U+00FF U+00FE, and exactly
   * in base64; a valid line has no input_base64. */
  assert_string_equal(json_string_value(json_object_get(recs[1], "input")),
                      "bad \"quote\" \x01 \xc3\xbf\xc3\xbe tail\n");
  assert_string_equal(json_string_value(json_object_get(recs[1], "input_base64")), "YmFkICJxdW90ZSIgASD//iB0YWlsCg==");
  assert_null(json_object_get(recs[0], "input_base64"));
  assert_int_equal(json_integer_value(json_object_get(recs[2], "input_bytes")), 0);
  for (size_t i = 0; i < n; i++) json_decref(recs[i]);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* The input is cut at 4 KiB, backed off to a character boundary; the full
 * length is still reported. */
static void test_input_cut(void **state) {
  (void)state;
  size_t len = 20000;
  char *raw = malloc(len);
  assert_non_null(raw);
  memset(raw, 'a', len);
  /* A 3-byte character straddling byte 4096: bytes 4095, 4096, 4097. */
  memcpy(raw + 4095, "\xe2\x82\xac", 3);
  keel_dead_letter_t *d;
  assert_int_equal(keel_dead_letter_create(path, &d), KEEL_OK);
  assert_int_equal(keel_dead_letter_write(d, 1, "line too long", raw, len), KEEL_OK);
  assert_int_equal(keel_dead_letter_close(d), KEEL_OK);
  json_t *recs[2];
  assert_int_equal(load_records(recs, 2), 1);
  const char *in = json_string_value(json_object_get(recs[0], "input"));
  assert_int_equal(strlen(in), 4095); /* the euro sign did not fit whole */
  assert_int_equal(json_integer_value(json_object_get(recs[0], "input_bytes")), 20000);
  json_decref(recs[0]);
  free(raw);
}

/* A line the reader skipped: only its start is shown, its full length is
 * reported. */
static void test_prefix_of_long_line(void **state) {
  (void)state;
  keel_dead_letter_t *d;
  assert_int_equal(keel_dead_letter_create(path, &d), KEEL_OK);
  assert_int_equal(keel_dead_letter_write_prefix(d, 4, "line of 5000000 bytes exceeds the 1048576-byte limit",
                                                 "{\"type\":\"user\",\"user\":\"xxxx", 27, 5000000),
                   KEEL_OK);
  assert_int_equal(keel_dead_letter_write_prefix(d, 5, "r", "abc", 3, 2), KEEL_EMISUSE);
  assert_int_equal(keel_dead_letter_close(d), KEEL_OK);
  json_t *recs[2];
  assert_int_equal(load_records(recs, 2), 1);
  assert_string_equal(json_string_value(json_object_get(recs[0], "input")), "{\"type\":\"user\",\"user\":\"xxxx");
  assert_int_equal(json_integer_value(json_object_get(recs[0], "input_bytes")), 5000000);
  assert_int_equal(json_integer_value(json_object_get(recs[0], "line")), 4);
  json_decref(recs[0]);
}

/* Many records: buffered writes flush at 64 KiB and on close, in order. */
static void test_many_records_in_order(void **state) {
  (void)state;
  keel_dead_letter_t *d;
  assert_int_equal(keel_dead_letter_create(path, &d), KEEL_OK);
  char raw[64];
  struct stat sb;
  static off_t size_after[5001]; /* the file's size after each write */
  for (int i = 1; i <= 5000; i++) {
    int n = snprintf(raw, sizeof raw, "{\"n\":%d", i);
    assert_int_equal(keel_dead_letter_write(d, (uint64_t)i, "invalid JSON", raw, (size_t)n), KEEL_OK);
    assert_int_equal(stat(path, &sb), 0);
    size_after[i] = sb.st_size;
  }
  assert_int_equal(keel_dead_letter_close(d), KEEL_OK);
  /* Written in whole chunks: the first record at once, then never more than
   * 64 KiB (and the record that passed it) waiting in the buffer, and far
   * fewer writes than records. */
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  off_t end = 0;
  int grew = 0, c, r = 1;
  while ((c = fgetc(f)) != EOF) {
    end++;
    if (c != '\n') continue;
    assert_true(size_after[r] <= end);            /* nothing written before it was accepted */
    assert_true(end - size_after[r] <= 64 * 1024); /* at most 64 KiB waiting */
    if (r == 1) assert_true(size_after[1] == end); /* the first record at once */
    if (r > 1 && size_after[r] != size_after[r - 1]) grew++;
    r++;
  }
  fclose(f);
  assert_int_equal(r, 5001);
  assert_true(grew >= 3 && grew <= 10);
  static json_t *recs[5001];
  assert_int_equal(load_records(recs, 5001), 5000);
  for (int i = 0; i < 5000; i++) {
    assert_int_equal(json_integer_value(json_object_get(recs[i], "line")), i + 1);
    json_decref(recs[i]);
  }
}

static void test_unwritable_path(void **state) {
  (void)state;
  char bad[600];
  snprintf(bad, sizeof bad, "%s/no-such-dir/rej.ndjson", tmpdir);
  keel_dead_letter_t *d;
  assert_int_equal(keel_dead_letter_create(bad, &d), KEEL_OK); /* lazy: no error yet */
  assert_int_equal(keel_dead_letter_write(d, 1, "r", "x", 1), KEEL_EIO);
  assert_non_null(strstr(keel_dead_letter_error(d), "no-such-dir"));
  assert_int_equal(keel_dead_letter_close(d), KEEL_EIO);
  assert_int_equal(keel_dead_letter_create("", &d), KEEL_EMISUSE);
}

static int create_attempt(void *ctx) {
  (void)ctx;
  keel_dead_letter_t *d;
  keel_status st = keel_dead_letter_create(path, &d);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  st = keel_dead_letter_write(d, 3, "reason \"quoted\"", "raw \xff", 5);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    assert_int_equal(keel_dead_letter_count(d), 0);
    assert_int_equal(keel_dead_letter_close(d), KEEL_OK);
    return 1;
  }
  assert_int_equal(keel_dead_letter_count(d), 1);
  assert_int_equal(keel_dead_letter_close(d), KEEL_OK);
  return 0;
}

/* Writes records of ~1 KiB for lines first, first - 1, ... (descending,
 * as an unordered run may) until one is refused or n are written;
 * returns how many were accepted without an error. */
static unsigned write_descending(keel_dead_letter_t *d, uint64_t first, unsigned n) {
  char raw[1000];
  memset(raw, 'x', sizeof raw);
  for (unsigned i = 0; i < n; i++)
    if (keel_dead_letter_write(d, first - i, "too long", raw, sizeof raw) != KEEL_OK) return i;
  return n;
}

/* A file that cannot take more (RLIMIT_FSIZE, SIGXFSZ ignored: writes stop
 * short at the limit, as on a full disk): the file keeps whole records
 * only, the writer counts which, names the lowest line not written, and
 * writes nothing after the failure (later records are counted, not
 * written); flush and close say it failed. Records another writer
 * appended to the file earlier are kept. */
static void test_full_file(void **state) {
  (void)state;
  struct rlimit old;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
  for (int other = 0; other < 2; other++) {
    unlink(path);
    keel_dead_letter_t *d;
    assert_int_equal(keel_dead_letter_create(path, &d), KEEL_OK);
    keel_dead_letter_set_append(d, other); /* a shared stream worker's file */
    assert_int_equal(write_descending(d, 500, 1), 1); /* the first record opens and writes the file */
    if (other) { /* another worker appends a record of its own */
      FILE *f = fopen(path, "a");
      fputs("{\"line\":7,\"reason\":\"other\",\"input\":\"\",\"input_bytes\":0}\n", f);
      fclose(f);
    }
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct rlimit lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + 10000; /* room for 9 records and part of a 10th */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    unsigned ok = write_descending(d, 499, 200); /* the 64 KiB flush fails part way */
    assert_true(ok < 200);
    /* The lowest line not written: the refused record's, the last of the descending ones. */
    assert_int_equal(keel_dead_letter_first_unwritten(d), 499 - ok);
    assert_int_equal(keel_dead_letter_write(d, 3, "after", "y", 1), KEEL_EIO); /* counted, not written */
    assert_int_equal(keel_dead_letter_flush(d), KEEL_EIO);
    assert_non_null(strstr(keel_dead_letter_error(d), "File too large"));
    uint64_t count = keel_dead_letter_count(d), written = keel_dead_letter_written(d);
    assert_int_equal(count, 1 + ok + 1 + 1); /* the first, those accepted, the refused one, "after" */
    assert_true(written >= 10 && written < count);
    assert_int_equal(keel_dead_letter_first_unwritten(d), 3); /* "after"'s, lower still */
    assert_int_equal(keel_dead_letter_close(d), KEEL_EIO);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    json_t *recs[64];
    size_t n = load_records(recs, 64); /* each line whole JSON, ending in a newline */
    assert_int_equal(n, written + (unsigned)other);
    for (size_t i = 0; i < n; i++) json_decref(recs[i]);
  }
  signal(SIGXFSZ, was);
}

static void test_oom_sweep(void **state) {
  (void)state;
  unsigned allocs = tu_oom_sweep(create_attempt, NULL);
  assert_true(allocs >= 2);
  json_t *recs[2];
  assert_int_equal(load_records(recs, 2), 1);
  assert_string_equal(json_string_value(json_object_get(recs[0], "reason")), "reason \"quoted\"");
  json_decref(recs[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lazy_creation_and_records),
      cmocka_unit_test(test_input_cut),
      cmocka_unit_test(test_prefix_of_long_line),
      cmocka_unit_test(test_many_records_in_order),
      cmocka_unit_test(test_unwritable_path),
      cmocka_unit_test(test_full_file),
      cmocka_unit_test(test_oom_sweep),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
