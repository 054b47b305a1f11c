/* test_io_buf.c — keel_buf and the JSON string writer. */
#include <stdio.h>
#include <string.h>

#include "keel/io.h"
#include "testutil.h"

static void test_append_grows_and_terminates(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_null(b.data);
  for (int i = 0; i < 10000; i++) assert_int_equal(keel_buf_append(&b, "abc", 3), KEEL_OK);
  assert_int_equal(b.len, 30000);
  assert_true(b.cap > b.len);
  assert_int_equal(b.data[b.len], '\0');
  assert_memory_equal(b.data + 29997, "abc", 3);
  size_t cap = b.cap;
  keel_buf_clear(&b);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, cap);
  assert_string_equal(b.data, "");
  keel_buf_free(&b);
  keel_buf_free(&b); /* twice is harmless */
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_appendf(void **state) {
  (void)state;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_buf_appendf(&b, "%d-%s", 42, "x"), KEEL_OK);
  assert_string_equal(b.data, "42-x");
  /* Longer than the first reservation: takes the second pass. */
  char big[5000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(keel_buf_appendf(&b, "[%s]", big), KEEL_OK);
  assert_int_equal(b.len, 4 + 2 + 4999);
  assert_int_equal(b.data[4], '[');
  assert_int_equal(b.data[b.len - 1], ']');
  keel_buf_free(&b);
}

static void test_oom_leaves_buffer_intact(void **state) {
  (void)state;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_buf_append(&b, "hello", 5), KEEL_OK);
  size_t cap = b.cap;
  keel_mem_fail_after(1, 1);
  char big[1000] = {0};
  assert_int_equal(keel_buf_append(&b, big, sizeof big), KEEL_ENOMEM);
  assert_int_equal(keel_buf_appendf(&b, "%0999d", 1), KEEL_ENOMEM);
  assert_int_equal(keel_buf_append_json_string(&b, big, sizeof big), KEEL_ENOMEM);
  keel_mem_fail_after(0, 0);
  assert_int_equal(b.len, 5);
  assert_int_equal(b.cap, cap);
  assert_string_equal(b.data, "hello");
  /* An absurd size is refused before reaching the allocator. */
  assert_int_equal(keel_buf_reserve(&b, SIZE_MAX - 3), KEEL_ENOMEM);
  keel_buf_free(&b);
}

static void check_json(const char *in, size_t n, const char *want) {
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_buf_append_json_string(&b, in, n), KEEL_OK);
  assert_string_equal(b.data, want);
  keel_buf_free(&b);
}

static void test_json_string_escapes(void **state) {
  (void)state;
  check_json("", 0, "\"\"");
  check_json("plain", 5, "\"plain\"");
  check_json("q\"b\\", 4, "\"q\\\"b\\\\\"");
  check_json("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
  check_json("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
  check_json("a\0b", 3, "\"a\\u0000b\"");
  /* Valid UTF-8 passes: 2, 3 and 4 byte sequences. */
  check_json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  /* Invalid bytes: stray continuation, truncated, overlong, surrogate,
   * above U+10FFFF, 0xff. */
  check_json("\x80", 1, "\"\\u0080\"");
  check_json("\xc3", 1, "\"\\u00c3\"");
  check_json("\xe2\x82", 2, "\"\\u00e2\\u0082\"");
  check_json("\xc0\xaf", 2, "\"\\u00c0\\u00af\"");
  check_json("\xed\xa0\x80", 3, "\"\\u00ed\\u00a0\\u0080\"");
  check_json("\xf4\x90\x80\x80", 4, "\"\\u00f4\\u0090\\u0080\\u0080\"");
  check_json("a\xffz", 3, "\"a\\u00ffz\"");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_grows_and_terminates),
      cmocka_unit_test(test_appendf),
      cmocka_unit_test(test_oom_leaves_buffer_intact),
      cmocka_unit_test(test_json_string_escapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
