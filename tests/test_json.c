/* test_json.c — NDJSON line <-> event: the accept/reject table, kept and
 * ignored members, limits, round trip, deterministic output, OOM sweeps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "keel/io.h"
#include "testutil.h"

static keel_schema_t *schema;
static keel_event_t *ev;
static keel_field_id F_TYPE, F_USER, F_K, F_SCORE, F_VEC, F_IDS, F_CAT;

static int setup(void **state) {
  (void)state;
  if (keel_schema_create(&schema) != KEEL_OK) return -1;
  const char *names[] = {"type", "user", "k", "score", "vec", "ids", "category"};
  keel_field_id *ids[] = {&F_TYPE, &F_USER, &F_K, &F_SCORE, &F_VEC, &F_IDS, &F_CAT};
  for (int i = 0; i < 7; i++)
    if (keel_schema_intern(schema, names[i], strlen(names[i]), ids[i]) != KEEL_OK) return -1;
  return keel_event_create(schema, KEEL_MEM_ARENA, 0, &ev) == KEEL_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  keel_event_destroy(ev);
  keel_schema_destroy(schema);
  return 0;
}

static keel_status parse_with(const char *line, size_t len, const keel_limits *lim, char *reason, size_t rlen) {
  keel_event_reset(ev);
  return keel_json_to_event(ev, line, len, lim, reason, rlen);
}

static keel_status parse(const char *line, char *reason) { return parse_with(line, strlen(line), NULL, reason, 256); }

static void test_accepts_and_types(void **state) {
  (void)state;
  char reason[256];
  const char *line =
      "{\"type\":\"rank\",\"user\":\"42\",\"k\":10,\"score\":0.5,\"vec\":[1,2.5,-3e-2],"
      "\"ids\":[\"1\",\"-9223372036854775808\",\"9223372036854775807\"],\"unknown\":{\"deep\":1},"
      "\"category\":null}  \n";
  assert_int_equal(parse(line, reason), KEEL_OK);
  assert_string_equal(reason, "");
  keel_value v;
  assert_true(keel_event_get(ev, F_TYPE, &v));
  assert_int_equal(v.type, KEEL_FIELD_STRING);
  assert_int_equal(v.u.str.len, 4);
  assert_memory_equal(v.u.str.ptr, "rank", 4);
  assert_true(keel_event_get(ev, F_K, &v));
  assert_int_equal(v.type, KEEL_FIELD_INT);
  assert_int_equal(v.u.i, 10);
  assert_true(keel_event_get(ev, F_SCORE, &v));
  assert_int_equal(v.type, KEEL_FIELD_FLOAT);
  assert_true(v.u.f == 0.5);
  assert_true(keel_event_get(ev, F_VEC, &v));
  assert_int_equal(v.type, KEEL_FIELD_VECTOR);
  assert_int_equal(v.u.vec.len, 3);
  assert_true(v.u.vec.ptr[0] == 1.0f && v.u.vec.ptr[1] == 2.5f && v.u.vec.ptr[2] == -3e-2f);
  assert_true(keel_event_get(ev, F_IDS, &v));
  assert_int_equal(v.type, KEEL_FIELD_IDS);
  assert_int_equal(v.u.ids.len, 3);
  assert_true(v.u.ids.ptr[0] == 1 && v.u.ids.ptr[1] == INT64_MIN && v.u.ids.ptr[2] == INT64_MAX);
  assert_false(keel_event_get(ev, F_CAT, &v)); /* null is absent */
  assert_int_equal(keel_event_count(ev), 6);   /* "unknown" is not kept */
}

static void test_nul_in_string_and_empty_array(void **state) {
  (void)state;
  char reason[256];
  assert_int_equal(parse("{\"user\":\"a\\u0000b\",\"vec\":[]}", reason), KEEL_OK);
  keel_value v;
  assert_true(keel_event_get(ev, F_USER, &v));
  assert_int_equal(v.u.str.len, 3);
  assert_memory_equal(v.u.str.ptr, "a\0b", 3);
  assert_true(keel_event_get(ev, F_VEC, &v));
  assert_int_equal(v.type, KEEL_FIELD_VECTOR);
  assert_int_equal(v.u.vec.len, 0);
}

typedef struct reject_case {
  const char *name;
  const char *line; /* NULL: built by the test */
  size_t len;       /* 0: strlen */
  keel_status st;
  const char *reason_has;
} reject_case;

static void check_reject(const reject_case *rc, const char *line, size_t len, const keel_limits *lim) {
  char reason[256] = "unchanged";
  keel_status st = parse_with(line, len, lim, reason, sizeof reason);
  if (st != rc->st || !strstr(reason, rc->reason_has))
    fail_msg("case '%s': got %s '%s', want %s containing '%s'", rc->name, keel_status_name(st), reason,
             keel_status_name(rc->st), rc->reason_has);
}

static void test_reject_table(void **state) {
  (void)state;
  static const reject_case cases[] = {
      {"invalid JSON", "{\"type\":\"user\",\"user\":}", 0, KEEL_EPARSE, "invalid JSON at byte 23: unexpected token"},
      {"truncated", "{\"type\":\"user\"", 0, KEEL_EPARSE, "invalid JSON at byte 14: '}' expected"},
      {"invalid UTF-8 first", "\xff{}", 0, KEEL_EPARSE, "invalid JSON at byte 1: unable to decode byte 0xff"},
      {"several lines", "{\n\"type\":\n}", 0, KEEL_EPARSE, "invalid JSON at line 3 column 1: unexpected token"},
      {"trailing garbage", "{\"type\":\"user\"} x", 0, KEEL_EPARSE, "invalid JSON"},
      {"two objects", "{}{}", 0, KEEL_EPARSE, "invalid JSON"},
      {"not an object: string", "\"user\"", 0, KEEL_EPARSE, "not a JSON object (a string)"},
      {"not an object: number", "17", 0, KEEL_EPARSE, "not a JSON object (an integer)"},
      {"array top level", "[{\"type\":\"user\"}]", 0, KEEL_EPARSE, "not a JSON object (an array)"},
      {"invalid UTF-8", "{\"user\":\"a\xff\"}", 0, KEEL_EPARSE, "invalid JSON"},
      {"overlong UTF-8", "{\"user\":\"\xc0\xaf\"}", 0, KEEL_EPARSE, "invalid JSON"},
      {"lone surrogate escape", "{\"user\":\"\\ud800\"}", 0, KEEL_EPARSE, "invalid JSON"},
      {"deep nesting", "{\"vec\":[[1]]}", 0, KEEL_ELIMIT, "field 'vec': nesting deeper than the 2-level limit"},
      {"deep nesting, ignored member", "{\"x\":{\"y\":{\"z\":1}}}", 0, KEEL_ELIMIT, "field 'x': nesting deeper"},
      {"huge integer", "{\"k\":9223372036854775808}", 0, KEEL_EPARSE, "integers must fit in int64"},
      {"huge negative integer", "{\"k\":-9223372036854775809}", 0, KEEL_EPARSE, "int64"},
      {"real overflow", "{\"score\":1e400}", 0, KEEL_EPARSE, "number out of range"},
      {"NaN token", "{\"score\":NaN}", 0, KEEL_EPARSE, "invalid JSON"},
      {"Infinity token", "{\"score\":Infinity}", 0, KEEL_EPARSE, "invalid JSON"},
      {"-Infinity token", "{\"score\":-Infinity}", 0, KEEL_EPARSE, "invalid JSON"},
      {"duplicate keys", "{\"user\":\"1\",\"user\":\"2\"}", 0, KEEL_EPARSE, "duplicate member"},
      {"binary garbage", "\x00\x01\x02\xff\xfe{", 6, KEEL_EPARSE, "invalid JSON"},
      {"NUL in the middle", "{\"user\":\"1\"}\x00\x00", 14, KEEL_EPARSE, "invalid JSON"},
      {"empty", "", 0, KEEL_EPARSE, "empty line"},
      {"boolean value", "{\"k\":true}", 0, KEEL_EPARSE, "field 'k': a boolean is not a supported value"},
      {"object value", "{\"user\":{\"id\":1}}", 0, KEEL_EPARSE, "field 'user': an object is not a supported"},
      {"mixed array", "{\"vec\":[1,\"2\"]}", 0, KEEL_EPARSE, "field 'vec': array mixes numbers and strings"},
      {"non-decimal id", "{\"ids\":[\"1\",\"x2\"]}", 0, KEEL_EPARSE, "field 'ids': element 2 is not a decimal"},
      {"id out of range", "{\"ids\":[\"9223372036854775808\"]}", 0, KEEL_EPARSE, "element 1"},
      {"null in array", "{\"vec\":[1,null]}", 0, KEEL_EPARSE, "field 'vec': element 2 is null"},
      {"float32 overflow", "{\"vec\":[1,1e39]}", 0, KEEL_EPARSE, "field 'vec': element 2 (1e+39) is outside"},
      {"float32 overflow by rounding", "{\"vec\":[3.4028236e38]}", 0, KEEL_EPARSE, "element 1 (3.40282e+38) is outside"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_reject(&cases[i], cases[i].line, cases[i].len ? cases[i].len : strlen(cases[i].line), NULL);
}

/* A line of 2 MiB + a 10 MB string: over max_line by default; with the line
 * limit raised, the string limit catches them. */
static void test_size_limits(void **state) {
  (void)state;
  size_t big = 10u * 1000 * 1000;
  char *line = malloc(big + 64);
  assert_non_null(line);
  int n = sprintf(line, "{\"user\":\"");
  memset(line + n, 'u', big);
  strcpy(line + n + big, "\"}");
  size_t len = strlen(line);
  reject_case over_line = {"10 MB line", NULL, 0, KEEL_ELIMIT, "line of 10000011 bytes exceeds the 1048576-byte limit"};
  check_reject(&over_line, line, len, NULL);
  keel_limits lim;
  keel_limits_default(&lim);
  lim.max_line = 64u * 1024 * 1024;
  reject_case over_string = {"10 MB string", NULL, 0, KEEL_ELIMIT,
                             "field 'user': string of 10000000 bytes exceeds the 65536-byte limit"};
  check_reject(&over_string, line, len, &lim);
  /* Same string in an ignored member: still over the limit. */
  memcpy(line + 2, "zzzz", 4);
  reject_case ignored = {"10 MB ignored", NULL, 0, KEEL_ELIMIT, "field 'zzzz': string of 10000000 bytes"};
  check_reject(&ignored, line, len, &lim);
  free(line);

  keel_limits small;
  keel_limits_default(&small);
  small.max_fields = 3;
  small.max_vector = 4;
  reject_case fields = {"members", NULL, 0, KEEL_ELIMIT, "object of 4 members exceeds the 3-member limit"};
  const char *l1 = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}";
  check_reject(&fields, l1, strlen(l1), &small);
  reject_case vec = {"vector", NULL, 0, KEEL_ELIMIT, "field 'vec': array of 5 elements exceeds the 4-element limit"};
  const char *l2 = "{\"vec\":[1,2,3,4,5]}";
  check_reject(&vec, l2, strlen(l2), &small);
  const char *l3 = "{\"vec\":[1,2,3,4]}";
  assert_int_equal(parse_with(l3, strlen(l3), &small, NULL, 0), KEEL_OK);
}

/* The reason buffer is never overrun, whatever the reason's length. */
static void test_reason_truncated(void **state) {
  (void)state;
  char reason[16];
  memset(reason, 'X', sizeof reason);
  assert_int_equal(parse_with("[1]", 3, NULL, reason, 10), KEEL_EPARSE);
  assert_int_equal(strlen(reason), 9);
  assert_int_equal(reason[10], 'X');
  assert_int_equal(parse_with("[1]", 3, NULL, NULL, 0), KEEL_EPARSE);
}

static char *append(const keel_event_t *e) {
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_json_append_event(&b, e), KEEL_OK);
  char *s = strdup(b.data);
  keel_buf_free(&b);
  return s;
}

static void test_output_format(void **state) {
  (void)state;
  keel_event_reset(ev);
  keel_event_set_line(ev, 12);
  keel_event_set_string(ev, F_USER, "q\"\n\xff\xc3\xa9", 6);
  keel_event_set_int(ev, F_K, -9223372036854775807 - 1);
  keel_event_set_float(ev, F_SCORE, 1.0);
  float vec[] = {1.0f, 0.1f, -2.5f};
  keel_event_set_vector(ev, F_VEC, vec, 3);
  int64_t ids[] = {0, -5, 123456789012345678};
  keel_event_set_ids(ev, F_IDS, ids, 3);
  char *out = append(ev);
  assert_string_equal(out,
                      "{\"line\":12,\"user\":\"q\\\"\\n\\u00ff\xc3\xa9\",\"k\":-9223372036854775808,\"score\":1.0,"
                      "\"vec\":[1,0.100000001,-2.5],\"ids\":[\"0\",\"-5\",\"123456789012345678\"]}");
  free(out);

  /* Floats: %.17g, integral ones get ".0", non-finite become null. */
  struct {
    double d;
    const char *want;
  } fl[] = {{0.1, "0.10000000000000001"}, {-0.0, "-0.0"}, {1e17, "1e+17"}, {1e16, "10000000000000000.0"},
            {-3.0, "-3.0"}, {NAN, "null"}, {INFINITY, "null"}};
  /* A field named "line" would duplicate keel's own member: not written. */
  keel_field_id f_line;
  assert_int_equal(keel_schema_intern(schema, "line", 4, &f_line), KEEL_OK);
  keel_event_reset(ev);
  keel_event_set_line(ev, 3);
  keel_event_set_int(ev, f_line, 99);
  keel_event_set_int(ev, F_K, 1);
  out = append(ev);
  assert_string_equal(out, "{\"line\":3,\"k\":1}");
  free(out);

  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
    keel_event_reset(ev);
    keel_event_set_float(ev, F_SCORE, fl[i].d);
    out = append(ev);
    char want[128];
    snprintf(want, sizeof want, "{\"line\":0,\"score\":%s}", fl[i].want);
    assert_string_equal(out, want);
    free(out);
  }
}

/* parse -> append -> parse gives the same event (same bytes again), and the
 * output is valid JSON to an independent reader (jansson without keel). */
static void test_round_trip(void **state) {
  (void)state;
  const char *lines[] = {
      "{\"type\":\"rank\",\"user\":\"42\",\"k\":10,\"category\":\"c3\"}",
      "{\"score\":3.141592653589793,\"vec\":[0.5,-1e-7,3.4e38,7],\"ids\":[\"18446744073709551\",\"-1\"]}",
      "{\"score\":1.0,\"user\":\"\\u00ff\\u0000\\\"\\\\/\\t\\u2028\xf0\x9f\x98\x80\"}",
      "{\"score\":-2.5e-310,\"k\":-1,\"vec\":[]}",
      "{\"vec\":[3.4028234663852886e38,-3.4028235e38]}", /* FLT_MAX, as read and as keel writes it */
  };
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
    char reason[256];
    assert_int_equal(parse(lines[i], reason), KEEL_OK);
    keel_event_set_line(ev, i + 1);
    char *a = append(ev);
    json_error_t jerr;
    json_t *j = json_loads(a, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!j) fail_msg("output %zu is not JSON: %s: %s", i, jerr.text, a);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), (json_int_t)(i + 1));
    json_decref(j);
    assert_int_equal(parse(a, reason), KEEL_OK);
    keel_event_set_line(ev, i + 1);
    char *b = append(ev);
    assert_string_equal(a, b);
    free(a);
    free(b);
  }
  /* Values survive exactly: the double and the float32s. */
  assert_int_equal(parse("{\"score\":0.30000000000000004,\"vec\":[0.1]}", NULL), KEEL_OK);
  char *a = append(ev);
  assert_int_equal(parse(a, NULL), KEEL_OK);
  keel_value v;
  assert_true(keel_event_get(ev, F_SCORE, &v));
  assert_true(v.type == KEEL_FIELD_FLOAT && v.u.f == 0.30000000000000004);
  assert_true(keel_event_get(ev, F_VEC, &v));
  assert_true(v.u.vec.ptr[0] == 0.1f);
  free(a);
}

/* Two independently built events with equal fields give equal bytes, and a
 * differing field gives different bytes. */
static void test_output_determinism(void **state) {
  (void)state;
  keel_event_t *e2;
  assert_int_equal(keel_event_create(schema, KEEL_MEM_ARENA, 0, &e2), KEEL_OK);
  const char *line = "{\"type\":\"score\",\"user\":\"7\",\"score\":0.123456789,\"vec\":[1.5,2.25]}";
  assert_int_equal(parse(line, NULL), KEEL_OK);
  assert_int_equal(keel_json_to_event(e2, line, strlen(line), NULL, NULL, 0), KEEL_OK);
  char *a = append(ev), *b = append(e2);
  assert_string_equal(a, b);
  char *again = append(ev);
  assert_string_equal(a, again);
  keel_event_set_float(e2, F_SCORE, 0.12345678900000001);
  char *c = append(e2);
  assert_string_not_equal(a, c);
  free(a);
  free(b);
  free(again);
  free(c);
  keel_event_destroy(e2);
}

/* With the schema keeping other members, those no field names go to the
 * output after the fields, as given (strings, numbers, arrays, objects,
 * booleans, null); "line" and "stream_id" are keel's and are dropped; a reset forgets
 * them; off again, nothing is kept. */
static void test_keep_others(void **state) {
  (void)state;
  char reason[256];
  const char *line = "{\"request_id\":\"r-\\u00e9\\\"1\",\"type\":\"user\",\"line\":7,\"stream_id\":\"1-2\",\"ts\":1.5,\"n\":-3,"
                     "\"user\":\"42\",\"tags\":[1,\"a\"],\"o\":{\"b\":true},\"z\":null}";
  keel_schema_set_keep_others(schema, true);
  assert_true(keel_schema_keeps_others(schema));
  assert_int_equal(parse(line, reason), KEEL_OK);
  keel_event_set_line(ev, 3);
  size_t n;
  const char *o = keel_event_others(ev, &n);
  assert_non_null(o);
  keel_buf b;
  keel_buf_init(&b, KEEL_MEM_IO);
  assert_int_equal(keel_json_append_event(&b, ev), KEEL_OK);
  assert_string_equal(b.data, "{\"line\":3,\"type\":\"user\",\"user\":\"42\",\"request_id\":\"r-\xc3\xa9\\\"1\",\"ts\":1.5,"
                              "\"n\":-3,\"tags\":[1,\"a\"],\"o\":{\"b\":true},\"z\":null}");
  assert_int_equal(n, strlen(b.data) - strlen("{\"line\":3,\"type\":\"user\",\"user\":\"42\",}"));
  /* What was written reads back: the same fields and the same others. */
  keel_buf_clear(&b);
  assert_int_equal(keel_json_append_event(&b, ev), KEEL_OK);
  char *first = strdup(b.data);
  assert_int_equal(parse(first, reason), KEEL_OK);
  keel_event_set_line(ev, 3);
  keel_buf_clear(&b);
  assert_int_equal(keel_json_append_event(&b, ev), KEEL_OK);
  assert_string_equal(b.data, first);
  free(first);
  keel_event_reset(ev);
  assert_null(keel_event_others(ev, &n));
  assert_int_equal(n, 0);
  /* Numbers keep their text where a double can: the fewest digits that
   * read back the same (not jansson's 17), integral reals as reals. */
  assert_int_equal(parse("{\"type\":\"user\",\"p\":19.99,\"t\":1700000000.123,\"e\":1E5,\"z\":-0.0,"
                         "\"x\":0.1,\"i\":-9223372036854775808,\"o\":{},\"a\":[]}",
                         reason),
                   KEEL_OK);
  o = keel_event_others(ev, &n);
  assert_int_equal(n, strlen("\"p\":19.99,\"t\":1700000000.123,\"e\":100000.0,\"z\":-0.0,\"x\":0.1,"
                             "\"i\":-9223372036854775808,\"o\":{},\"a\":[]"));
  assert_memory_equal(o, "\"p\":19.99,\"t\":1700000000.123,\"e\":100000.0,\"z\":-0.0,\"x\":0.1,"
                         "\"i\":-9223372036854775808,\"o\":{},\"a\":[]", n);
  /* Parsed again without a reset, and failing after an other member: the
   * first parse's members are gone, none of the failed one's are kept. */
  const char *deep = "{\"a\":1,\"o\":{\"b\":{\"c\":1}}}"; /* deeper than the default 2 levels */
  assert_int_not_equal(keel_json_to_event(ev, deep, strlen(deep), NULL, reason, sizeof reason), KEEL_OK);
  assert_null(keel_event_others(ev, &n));
  assert_int_equal(n, 0);
  /* An object with no other member keeps none. */
  assert_int_equal(parse("{\"type\":\"user\",\"user\":\"1\",\"line\":2}", reason), KEEL_OK);
  assert_null(keel_event_others(ev, &n));
  keel_schema_set_keep_others(schema, false);
  assert_int_equal(parse(line, reason), KEEL_OK);
  assert_null(keel_event_others(ev, &n));
  keel_buf_clear(&b);
  assert_int_equal(keel_json_append_event(&b, ev), KEEL_OK);
  assert_null(strstr(b.data, "request_id"));
  keel_buf_free(&b);
}

static const char *oom_line =
    "{\"type\":\"rank\",\"user\":\"42\",\"k\":10,\"score\":0.5,\"vec\":[1,2,3],\"ids\":[\"1\",\"2\"],\"category\":\"c1\"}";

static int parse_attempt(void *ctx) {
  (void)ctx;
  keel_event_t *e;
  keel_status st = keel_event_create(schema, KEEL_MEM_ARENA, 256, &e);
  if (st != KEEL_OK) return 1;
  char reason[256];
  st = keel_json_to_event(e, oom_line, strlen(oom_line), NULL, reason, sizeof reason);
  if (st == KEEL_OK) {
    assert_int_equal(keel_event_count(e), 7);
    keel_buf b;
    keel_buf_init(&b, KEEL_MEM_IO);
    st = keel_json_append_event(&b, e);
    if (st == KEEL_OK) assert_non_null(strstr(b.data, "\"category\":\"c1\""));
    else assert_int_equal(b.len, 0);
    keel_buf_free(&b);
  } else {
    assert_int_equal(st, KEEL_ENOMEM);
    assert_non_null(strstr(reason, "out of memory"));
  }
  keel_event_destroy(e);
  return st == KEEL_OK ? 0 : 1;
}

static void test_oom_sweep(void **state) {
  (void)state;
  unsigned allocs = tu_oom_sweep(parse_attempt, NULL);
  assert_true(allocs >= 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepts_and_types),
      cmocka_unit_test(test_nul_in_string_and_empty_array),
      cmocka_unit_test(test_reject_table),
      cmocka_unit_test(test_size_limits),
      cmocka_unit_test(test_reason_truncated),
      cmocka_unit_test(test_output_format),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_output_determinism),
      cmocka_unit_test(test_keep_others),
      cmocka_unit_test(test_oom_sweep),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
