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

/* keel_utf8_valid agrees with the escaping above on every shape. */
static void test_utf8_valid(void **state) {
  (void)state;
  assert_true(keel_utf8_valid("", 0));
  assert_true(keel_utf8_valid("plain \x01\x7f", 8));
  assert_true(keel_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
  assert_true(keel_utf8_valid("a\0b", 3));
  static const char *bad[] = {"\x80", "\xc3", "\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xffz"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_false(keel_utf8_valid(bad[i], strlen(bad[i])));
  assert_false(keel_utf8_valid("ok\xc3", 3)); /* a sequence cut by the length */
  assert_true(keel_utf8_valid("ok\xc3\xa9", 4));
}

/* RFC 4648's test vectors, and every byte value once. */
static void test_base64(void **state) {
  (void)state;
  static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    keel_buf b;
    keel_buf_init(&b, KEEL_MEM_IO);
    assert_int_equal(keel_buf_append(&b, "x", 1), KEEL_OK);
    assert_int_equal(keel_buf_append_base64(&b, in[i], strlen(in[i])), KEEL_OK);
    assert_int_equal(b.len, 1 + strlen(out[i]));
    assert_string_equal(b.data + 1, out[i]);
    keel_buf_free(&b);
  }
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_buf_append_base64(&b, all, sizeof all), KEEL_OK);
  assert_int_equal(b.len, 344);
  /* As Python's base64 module gives them: the first and the last 8 characters. */
  assert_memory_equal(b.data, "AAECAwQF", 8);
  assert_string_equal(b.data + 336, "/P3+/w==");
  keel_buf_clear(&b);
  assert_int_equal(keel_buf_append_base64(&b, all + 255, 1), KEEL_OK);
  assert_string_equal(b.data, "/w==");
  keel_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_grows_and_terminates),
      cmocka_unit_test(test_appendf),
      cmocka_unit_test(test_oom_leaves_buffer_intact),
      cmocka_unit_test(test_json_string_escapes),
      cmocka_unit_test(test_utf8_valid),
      cmocka_unit_test(test_base64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
