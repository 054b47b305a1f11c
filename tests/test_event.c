/* test_event.c — schemas, event fields of every type, failure reasons and
 * the canonical encoding (equal values -> equal bytes, any difference ->
 * different bytes, decode(encode(x)) == x, malformed bytes rejected). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/event.h"
#include "testutil.h"

typedef struct fx {
  keel_schema_t *s;
  keel_event_t *e;
  keel_arena_t *a; /* for encodings */
  keel_field_id i, f, str, vec, ids;
  int64_t before;
} fx;

static int setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  x->before = tu_tracked_bytes();
  assert_int_equal(keel_schema_create(&x->s), KEEL_OK);
  assert_int_equal(keel_schema_intern(x->s, "count", 5, &x->i), KEEL_OK);
  assert_int_equal(keel_schema_intern(x->s, "score", 5, &x->f), KEEL_OK);
  assert_int_equal(keel_schema_intern(x->s, "user", 4, &x->str), KEEL_OK);
  assert_int_equal(keel_schema_intern(x->s, "emb", 3, &x->vec), KEEL_OK);
  assert_int_equal(keel_schema_intern(x->s, "items", 5, &x->ids), KEEL_OK);
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 256, &x->e), KEEL_OK);
  assert_int_equal(keel_arena_create(KEEL_MEM_ARENA, 256, &x->a), KEEL_OK);
  *state = x;
  return 0;
}

static int teardown(void **state) {
  fx *x = *state;
  keel_arena_destroy(x->a);
  keel_event_destroy(x->e);
  keel_schema_destroy(x->s);
  assert_int_equal(tu_tracked_bytes(), x->before);
  free(x);
  return 0;
}

/* ---- schema ---- */

static void test_intern_lookup(void **state) {
  fx *x = *state;
  keel_field_id id, again;
  assert_int_equal(keel_schema_lookup(x->s, "absent", 6, &id), KEEL_ENOTFOUND);
  assert_int_equal(keel_schema_intern(x->s, "absent", 6, &id), KEEL_OK);
  assert_int_equal(keel_schema_lookup(x->s, "absent", 6, &again), KEEL_OK);
  assert_int_equal(id, again);
  assert_int_equal(keel_schema_intern(x->s, "absent", 6, &again), KEEL_OK);
  assert_int_equal(id, again);
  /* n bytes, not NUL: "user" inside a longer buffer is "user". */
  assert_int_equal(keel_schema_lookup(x->s, "username", 4, &id), KEEL_OK);
  assert_int_equal(id, x->str);
  assert_string_equal(keel_schema_name(x->s, x->str), "user");
  assert_string_equal(keel_schema_name(x->s, 999), "?");
  /* Ids are dense, in interning order. */
  assert_int_equal(x->i, 0);
  assert_int_equal(x->ids, 4);
  assert_int_equal(keel_schema_intern(x->s, "", 0, &id), KEEL_EINVAL);
  char longname[KEEL_FIELD_NAME_MAX + 2];
  memset(longname, 'n', sizeof longname);
  assert_int_equal(keel_schema_intern(x->s, longname, KEEL_FIELD_NAME_MAX + 1, &id), KEEL_EINVAL);
  assert_int_equal(keel_schema_intern(x->s, longname, KEEL_FIELD_NAME_MAX, &id), KEEL_OK);
  assert_int_equal(strlen(keel_schema_name(x->s, id)), KEEL_FIELD_NAME_MAX);
}

static void test_schema_limit(void **state) {
  (void)state;
  keel_schema_t *s;
  assert_int_equal(keel_schema_create(&s), KEEL_OK);
  char name[32];
  keel_field_id id;
  for (int i = 0; i < KEEL_SCHEMA_MAX_FIELDS; i++) {
    int n = snprintf(name, sizeof name, "f%d", i);
    assert_int_equal(keel_schema_intern(s, name, (size_t)n, &id), KEEL_OK);
    assert_int_equal(id, (keel_field_id)i);
  }
  assert_int_equal(keel_schema_intern(s, "one_more", 8, &id), KEEL_ELIMIT);
  assert_int_equal(keel_schema_lookup(s, "one_more", 8, &id), KEEL_ENOTFOUND);
  for (int i = 0; i < KEEL_SCHEMA_MAX_FIELDS; i += 97) { /* every name still found */
    int n = snprintf(name, sizeof name, "f%d", i);
    assert_int_equal(keel_schema_lookup(s, name, (size_t)n, &id), KEEL_OK);
    assert_int_equal(id, (keel_field_id)i);
  }
  keel_schema_destroy(s);
}

static void test_schema_sort(void **state) {
  fx *x = *state;
  keel_field_id ids[5] = {x->str, x->i, x->vec, x->ids, x->f};
  keel_schema_sort(x->s, ids, 5);
  const char *want[5] = {"count", "emb", "items", "score", "user"};
  for (int k = 0; k < 5; k++) assert_string_equal(keel_schema_name(x->s, ids[k]), want[k]);
}

/* ---- fields ---- */

static void test_set_get_every_type(void **state) {
  fx *x = *state;
  keel_value v;
  assert_false(keel_event_get(x->e, x->i, &v));
  assert_int_equal(keel_event_set_int(x->e, x->i, -42), KEEL_OK);
  assert_int_equal(keel_event_set_float(x->e, x->f, 2.5), KEEL_OK);
  assert_int_equal(keel_event_set_string(x->e, x->str, "alice\0bob", 9), KEEL_OK);
  float emb[3] = {1.0f, -2.0f, 0.5f};
  assert_int_equal(keel_event_set_vector(x->e, x->vec, emb, 3), KEEL_OK);
  int64_t items[2] = {INT64_MIN, INT64_MAX};
  assert_int_equal(keel_event_set_ids(x->e, x->ids, items, 2), KEEL_OK);
  assert_int_equal(keel_event_count(x->e), 5);
  /* An id the schema never gave out is refused, and sets nothing. */
  assert_int_equal(keel_event_set_int(x->e, 9999, 1), KEEL_EINVAL);
  assert_int_equal(keel_event_set_int(x->e, x->ids + 1, 1), KEEL_EINVAL);
  assert_int_equal(keel_event_count(x->e), 5);

  assert_true(keel_event_get(x->e, x->i, &v));
  assert_int_equal(v.type, KEEL_FIELD_INT);
  assert_int_equal(v.u.i, -42);
  assert_true(keel_event_get(x->e, x->f, &v));
  assert_int_equal(v.type, KEEL_FIELD_FLOAT);
  assert_true(v.u.f == 2.5);
  assert_true(keel_event_get(x->e, x->str, &v));
  assert_int_equal(v.type, KEEL_FIELD_STRING);
  assert_int_equal(v.u.str.len, 9);
  assert_memory_equal(v.u.str.ptr, "alice\0bob", 9);
  assert_int_equal(v.u.str.ptr[9], '\0'); /* copies are NUL-terminated */
  assert_true(keel_event_get(x->e, x->vec, &v));
  assert_int_equal(v.type, KEEL_FIELD_VECTOR);
  assert_int_equal(v.u.vec.len, 3);
  assert_memory_equal(v.u.vec.ptr, emb, sizeof emb);
  assert_true(keel_event_get(x->e, x->ids, &v));
  assert_int_equal(v.type, KEEL_FIELD_IDS);
  assert_int_equal(v.u.ids.len, 2);
  assert_true(v.u.ids.ptr[0] == INT64_MIN && v.u.ids.ptr[1] == INT64_MAX);

  /* The generic setter, and empty payloads. */
  keel_value empty = {.type = KEEL_FIELD_VECTOR, .u.vec = {NULL, 0}};
  assert_int_equal(keel_event_set(x->e, x->vec, &empty), KEEL_OK);
  assert_true(keel_event_get(x->e, x->vec, &v));
  assert_int_equal(v.type, KEEL_FIELD_VECTOR);
  assert_int_equal(v.u.vec.len, 0);
  assert_int_equal(keel_event_set_string(x->e, x->str, NULL, 0), KEEL_OK);
  assert_true(keel_event_get(x->e, x->str, &v));
  assert_int_equal(v.u.str.len, 0);
  keel_value none = {.type = KEEL_FIELD_NONE};
  assert_int_equal(keel_event_set(x->e, x->i, &none), KEEL_EINVAL);
  assert_true(keel_event_get(x->e, x->i, &v)); /* unchanged */
  assert_int_equal(v.u.i, -42);
  assert_string_equal(keel_field_type_name(KEEL_FIELD_IDS), "ids");
  assert_string_equal(keel_field_type_name(KEEL_FIELD_NONE), "none");
}

static void test_replace_unset_order(void **state) {
  fx *x = *state;
  keel_value v;
  assert_int_equal(keel_event_set_int(x->e, x->i, 1), KEEL_OK);
  assert_int_equal(keel_event_set_string(x->e, x->str, "a", 1), KEEL_OK);
  assert_int_equal(keel_event_set_float(x->e, x->f, 1.0), KEEL_OK);
  /* Replacing keeps the position and may change the type. */
  assert_int_equal(keel_event_set_string(x->e, x->i, "now a string", 12), KEEL_OK);
  assert_int_equal(keel_event_count(x->e), 3);
  keel_field_id id;
  keel_event_at(x->e, 0, &id, &v);
  assert_int_equal(id, x->i);
  assert_int_equal(v.type, KEEL_FIELD_STRING);
  assert_int_equal(v.u.str.len, 12);
  keel_event_unset(x->e, x->str);
  keel_event_unset(x->e, x->str); /* absent: no-op */
  assert_int_equal(keel_event_count(x->e), 2);
  assert_false(keel_event_get(x->e, x->str, NULL));
  keel_event_at(x->e, 1, &id, &v);
  assert_int_equal(id, x->f); /* order of the others kept */
  /* Many fields: grows past the inline ones. */
  char name[16];
  for (int k = 0; k < 40; k++) {
    int n = snprintf(name, sizeof name, "extra%d", k);
    assert_int_equal(keel_schema_intern(x->s, name, (size_t)n, &id), KEEL_OK);
    assert_int_equal(keel_event_set_int(x->e, id, k), KEEL_OK);
  }
  assert_int_equal(keel_event_count(x->e), 42);
  for (int k = 0; k < 40; k++) {
    int n = snprintf(name, sizeof name, "extra%d", k);
    assert_int_equal(keel_schema_lookup(x->s, name, (size_t)n, &id), KEEL_OK);
    assert_true(keel_event_get(x->e, id, &v));
    assert_int_equal(v.u.i, k);
  }
  keel_event_set_line(x->e, 17);
  assert_int_equal(keel_event_line(x->e), 17);
  keel_event_reset(x->e);
  assert_int_equal(keel_event_count(x->e), 0);
  assert_int_equal(keel_event_line(x->e), 0);
  assert_false(keel_event_get(x->e, x->f, NULL));
  assert_int_equal(keel_arena_used(keel_event_arena(x->e)), 0);
  assert_ptr_equal(keel_event_schema(x->e), x->s);
}

/* The caller's buffers may be changed or freed right after set. */
static void test_set_copies_into_arena(void **state) {
  fx *x = *state;
  char *s = strdup("temporary");
  float *f = malloc(4 * sizeof *f);
  int64_t *ids = malloc(3 * sizeof *ids);
  for (int k = 0; k < 4; k++) f[k] = (float)k;
  for (int k = 0; k < 3; k++) ids[k] = 100 + k;
  assert_int_equal(keel_event_set_string(x->e, x->str, s, strlen(s)), KEEL_OK);
  assert_int_equal(keel_event_set_vector(x->e, x->vec, f, 4), KEEL_OK);
  assert_int_equal(keel_event_set_ids(x->e, x->ids, ids, 3), KEEL_OK);
  memset(s, 'X', strlen(s));
  free(s);
  memset(f, 0xff, 4 * sizeof *f);
  free(f);
  memset(ids, 0, 3 * sizeof *ids);
  free(ids);
  keel_value v;
  assert_true(keel_event_get(x->e, x->str, &v));
  assert_string_equal(v.u.str.ptr, "temporary");
  assert_true(keel_event_get(x->e, x->vec, &v));
  assert_true(v.u.vec.ptr[3] == 3.0f);
  assert_true(keel_event_get(x->e, x->ids, &v));
  assert_int_equal(v.u.ids.ptr[2], 102);
  /* The payload lives in the event's arena. */
  assert_true(keel_arena_used(keel_event_arena(x->e)) >= 10 + 16 + 24);
}

static void test_fail_reason(void **state) {
  fx *x = *state;
  assert_null(keel_event_reason(x->e));
  assert_int_equal(keel_event_fail(x->e, "k must be in 1..%d, got %d", 100, 0), KEEL_EREJECTED);
  assert_string_equal(keel_event_reason(x->e), "k must be in 1..100, got 0");
  char big[2000];
  memset(big, 'r', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(keel_event_fail(x->e, "%s", big), KEEL_EREJECTED);
  assert_true(strlen(keel_event_reason(x->e)) > 100); /* truncated, still a string */
  keel_event_reset(x->e);
  assert_null(keel_event_reason(x->e));
  /* Without memory the event still fails, with a fixed reason. */
  keel_event_t *e;
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 64, &e), KEEL_OK);
  assert_non_null(keel_arena_alloc(keel_event_arena(e), 60)); /* fill the first chunk */
  keel_mem_fail_after(1, 1);
  assert_int_equal(keel_event_fail(e, "a reason longer than what is left in the chunk"), KEEL_EREJECTED);
  keel_mem_fail_after(0, 0);
  assert_non_null(keel_event_reason(e));
  keel_event_destroy(e);
}

/* ---- canonical encoding ---- */

static void fill_all(fx *x, keel_event_t *e) {
  float emb[3] = {0.25f, -1.0f, 3.0f};
  int64_t items[3] = {7, -1, 1LL << 40};
  assert_int_equal(keel_event_set_int(e, x->i, 12345), KEEL_OK);
  assert_int_equal(keel_event_set_float(e, x->f, -0.125), KEEL_OK);
  assert_int_equal(keel_event_set_string(e, x->str, "u-17", 4), KEEL_OK);
  assert_int_equal(keel_event_set_vector(e, x->vec, emb, 3), KEEL_OK);
  assert_int_equal(keel_event_set_ids(e, x->ids, items, 3), KEEL_OK);
}

typedef struct bytes {
  const uint8_t *p;
  size_t n;
} bytes;

static bytes enc(fx *x, keel_event_t *e, const keel_field_id *ids, size_t n) {
  bytes b;
  assert_int_equal(keel_event_encode(e, ids, n, x->a, &b.p, &b.n), KEEL_OK);
  return b;
}

static int same(bytes a, bytes b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

static void test_equal_values_equal_bytes(void **state) {
  fx *x = *state;
  keel_event_t *e2;
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 0, &e2), KEEL_OK);
  fill_all(x, x->e);
  /* Same values set in another order, with an extra field not encoded. */
  keel_field_id other;
  assert_int_equal(keel_schema_intern(x->s, "other", 5, &other), KEEL_OK);
  assert_int_equal(keel_event_set_int(e2, other, 1), KEEL_OK);
  float emb[3] = {0.25f, -1.0f, 3.0f};
  int64_t items[3] = {7, -1, 1LL << 40};
  assert_int_equal(keel_event_set_ids(e2, x->ids, items, 3), KEEL_OK);
  assert_int_equal(keel_event_set_vector(e2, x->vec, emb, 3), KEEL_OK);
  assert_int_equal(keel_event_set_string(e2, x->str, "u-17", 4), KEEL_OK);
  assert_int_equal(keel_event_set_float(e2, x->f, 99.0), KEEL_OK);
  assert_int_equal(keel_event_set_float(e2, x->f, -0.125), KEEL_OK); /* replaced */
  assert_int_equal(keel_event_set_int(e2, x->i, 12345), KEEL_OK);
  keel_field_id ids[5] = {x->i, x->f, x->str, x->vec, x->ids};
  bytes a = enc(x, x->e, ids, 5), b = enc(x, e2, ids, 5);
  assert_true(same(a, b));
  /* And from a schema of another process, where ids differ: names, not ids. */
  keel_schema_t *s2;
  assert_int_equal(keel_schema_create(&s2), KEEL_OK);
  keel_field_id j[6];
  const char *names[6] = {"zzz", "items", "emb", "user", "score", "count"};
  for (int k = 0; k < 6; k++) assert_int_equal(keel_schema_intern(s2, names[k], strlen(names[k]), &j[k]), KEEL_OK);
  keel_event_t *e3;
  assert_int_equal(keel_event_create(s2, KEEL_MEM_ARENA, 0, &e3), KEEL_OK);
  assert_int_equal(keel_event_set_int(e3, j[5], 12345), KEEL_OK);
  assert_int_equal(keel_event_set_float(e3, j[4], -0.125), KEEL_OK);
  assert_int_equal(keel_event_set_string(e3, j[3], "u-17", 4), KEEL_OK);
  assert_int_equal(keel_event_set_vector(e3, j[2], emb, 3), KEEL_OK);
  assert_int_equal(keel_event_set_ids(e3, j[1], items, 3), KEEL_OK);
  keel_field_id ids3[5] = {j[5], j[4], j[3], j[2], j[1]};
  assert_true(same(a, enc(x, e3, ids3, 5)));
  keel_event_destroy(e3);
  keel_schema_destroy(s2);
  /* Every NaN is one NaN, in floats and in vectors. */
  double nan1 = NAN, nan2 = -NAN;
  uint64_t bits = 0x7ff0000000000123ull; /* a signalling NaN payload */
  double nan3;
  memcpy(&nan3, &bits, 8);
  assert_true(isnan(nan3));
  keel_field_id fid[1] = {x->f};
  assert_int_equal(keel_event_set_float(x->e, x->f, nan1), KEEL_OK);
  assert_int_equal(keel_event_set_float(e2, x->f, nan2), KEEL_OK);
  assert_true(same(enc(x, x->e, fid, 1), enc(x, e2, fid, 1)));
  assert_int_equal(keel_event_set_float(e2, x->f, nan3), KEEL_OK);
  assert_true(same(enc(x, x->e, fid, 1), enc(x, e2, fid, 1)));
  float vn1[2] = {NAN, 1.0f}, vn2[2] = {-NAN, 1.0f};
  keel_field_id vid[1] = {x->vec};
  assert_int_equal(keel_event_set_vector(x->e, x->vec, vn1, 2), KEEL_OK);
  assert_int_equal(keel_event_set_vector(e2, x->vec, vn2, 2), KEEL_OK);
  assert_true(same(enc(x, x->e, vid, 1), enc(x, e2, vid, 1)));
  /* Nothing requested: an empty encoding. */
  bytes none = enc(x, x->e, NULL, 0);
  assert_int_equal(none.n, 0);
  keel_event_destroy(e2);
}

/* Starting from one event, every single change gives other bytes. */
static void test_any_difference_different_bytes(void **state) {
  fx *x = *state;
  keel_field_id ids[5] = {x->i, x->f, x->str, x->vec, x->ids};
  fill_all(x, x->e);
  bytes base = enc(x, x->e, ids, 5);
  keel_event_t *e;
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 0, &e), KEEL_OK);
  int variants = 0;
  for (int which = 0; which < 16; which++) {
    keel_event_reset(e);
    fill_all(x, e);
    assert_true(same(base, enc(x, e, ids, 5)));
    float emb[3] = {0.25f, -1.0f, 3.0f};
    int64_t items[3] = {7, -1, 1LL << 40};
    switch (which) {
      case 0: keel_event_set_int(e, x->i, 12346); break;                   /* value */
      case 1: keel_event_set_float(e, x->f, -0.1250001); break;
      case 2: keel_event_set_float(e, x->f, 0.125); break;
      case 3: keel_event_set_string(e, x->str, "u-18", 4); break;
      case 4: keel_event_set_string(e, x->str, "u-17 ", 5); break;         /* length */
      case 5: emb[2] = 3.0000002f; keel_event_set_vector(e, x->vec, emb, 3); break;
      case 6: keel_event_set_vector(e, x->vec, emb, 2); break;             /* count */
      case 7: items[0] = 8; keel_event_set_ids(e, x->ids, items, 3); break;
      case 8: keel_event_set_float(e, x->i, 12345.0); break;               /* type, same number */
      case 9: keel_event_set_ids(e, x->vec, items, 3); break;
      case 10: keel_event_set_string(e, x->i, "12345", 5); break;
      case 11: keel_event_unset(e, x->str); break;                         /* presence */
      case 12: keel_event_unset(e, x->ids); break;
      case 13: keel_event_set_string(e, x->str, "", 0); break;             /* empty is not absent */
      case 14: keel_event_set_int(e, x->i, -12345); break;
      case 15: keel_event_set_vector(e, x->vec, NULL, 0); break;
    }
    bytes b = enc(x, e, ids, 5);
    if (same(base, b)) fail_msg("variant %d encodes like the original", which);
    variants++;
  }
  assert_int_equal(variants, 16);
  /* Order of the requested ids matters (callers sort for a canonical key). */
  keel_field_id swapped[5] = {x->f, x->i, x->str, x->vec, x->ids};
  assert_false(same(base, enc(x, x->e, swapped, 5)));
  /* Names are part of the bytes: same value under another name differs. */
  keel_field_id n1, n2;
  assert_int_equal(keel_schema_intern(x->s, "a", 1, &n1), KEEL_OK);
  assert_int_equal(keel_schema_intern(x->s, "b", 1, &n2), KEEL_OK);
  keel_event_reset(e);
  keel_event_set_int(e, n1, 5);
  keel_field_id l1[1] = {n1}, l2[1] = {n2};
  bytes ba = enc(x, e, l1, 1);
  keel_event_reset(e);
  keel_event_set_int(e, n2, 5);
  assert_false(same(ba, enc(x, e, l2, 1)));
  /* Prefix-freedom: {a:"xb"} vs {a:"x", b:...} cannot collide. */
  keel_event_reset(e);
  keel_event_set_string(e, n1, "", 0);
  keel_field_id l12[2] = {n1, n2};
  bytes only_a = enc(x, e, l12, 2); /* b absent */
  keel_event_set_string(e, n2, "", 0);
  assert_false(same(only_a, enc(x, e, l12, 2)));
  keel_event_destroy(e);
}

static void assert_events_equal(fx *x, keel_event_t *a, keel_event_t *b, const keel_field_id *ids, size_t n) {
  for (size_t k = 0; k < n; k++) {
    keel_value va, vb;
    bool ha = keel_event_get(a, ids[k], &va);
    keel_field_id idb;
    assert_int_equal(keel_schema_lookup(keel_event_schema(b), keel_schema_name(x->s, ids[k]),
                                        strlen(keel_schema_name(x->s, ids[k])), &idb),
                     KEEL_OK);
    bool hb = keel_event_get(b, idb, &vb);
    assert_int_equal(ha, hb);
    if (!ha) continue;
    assert_int_equal(va.type, vb.type);
    switch (va.type) {
      case KEEL_FIELD_INT: assert_true(va.u.i == vb.u.i); break;
      case KEEL_FIELD_FLOAT: assert_memory_equal(&va.u.f, &vb.u.f, 8); break;
      case KEEL_FIELD_STRING:
        assert_int_equal(va.u.str.len, vb.u.str.len);
        assert_memory_equal(va.u.str.ptr, vb.u.str.ptr, va.u.str.len);
        break;
      case KEEL_FIELD_VECTOR:
        assert_int_equal(va.u.vec.len, vb.u.vec.len);
        if (va.u.vec.len) assert_memory_equal(va.u.vec.ptr, vb.u.vec.ptr, 4 * va.u.vec.len);
        break;
      case KEEL_FIELD_IDS:
        assert_int_equal(va.u.ids.len, vb.u.ids.len);
        if (va.u.ids.len) assert_memory_equal(va.u.ids.ptr, vb.u.ids.ptr, 8 * va.u.ids.len);
        break;
      case KEEL_FIELD_NONE: break;
    }
  }
}

static void test_decode_roundtrip(void **state) {
  fx *x = *state;
  keel_field_id ids[5] = {x->i, x->f, x->str, x->vec, x->ids};
  /* Into a fresh schema (another process): names are interned on decode. */
  keel_schema_t *s2;
  assert_int_equal(keel_schema_create(&s2), KEEL_OK);
  keel_event_t *d;
  assert_int_equal(keel_event_create(s2, KEEL_MEM_ARENA, 0, &d), KEEL_OK);
  for (int round = 0; round < 4; round++) {
    keel_event_reset(x->e);
    fill_all(x, x->e);
    if (round == 1) keel_event_unset(x->e, x->f); /* absent stays absent */
    if (round == 2) {
      keel_event_set_string(x->e, x->str, "", 0);
      keel_event_set_vector(x->e, x->vec, NULL, 0);
      keel_event_set_ids(x->e, x->ids, NULL, 0);
      keel_event_set_int(x->e, x->i, INT64_MIN);
      keel_event_set_float(x->e, x->f, -0.0);
    }
    if (round == 3) {
      keel_event_set_float(x->e, x->f, INFINITY);
      char bin[300];
      for (int k = 0; k < 300; k++) bin[k] = (char)k;
      keel_event_set_string(x->e, x->str, bin, sizeof bin);
    }
    bytes b = enc(x, x->e, ids, 5);
    keel_event_reset(d);
    assert_int_equal(keel_event_decode(d, b.p, b.n), KEEL_OK);
    assert_int_equal(keel_event_count(d), round == 1 ? 4 : 5);
    assert_events_equal(x, x->e, d, ids, 5);
    /* And re-encoding the decoded event gives the same bytes. */
    keel_field_id dids[5];
    for (int k = 0; k < 5; k++) {
      const char *nm = keel_schema_name(x->s, ids[k]);
      assert_int_equal(keel_schema_lookup(s2, nm, strlen(nm), &dids[k]), KEEL_OK);
    }
    bytes again;
    assert_int_equal(keel_event_encode(d, dids, 5, x->a, &again.p, &again.n), KEEL_OK);
    assert_true(same(b, again));
  }
  keel_event_destroy(d);
  keel_schema_destroy(s2);
  /* NaN decodes as a NaN. */
  keel_event_reset(x->e);
  keel_event_set_float(x->e, x->f, NAN);
  keel_field_id fid[1] = {x->f};
  bytes b = enc(x, x->e, fid, 1);
  keel_event_t *n;
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 0, &n), KEEL_OK);
  assert_int_equal(keel_event_decode(n, b.p, b.n), KEEL_OK);
  keel_value v;
  assert_true(keel_event_get(n, x->f, &v));
  assert_true(isnan(v.u.f));
  keel_event_destroy(n);
}

static void test_decode_malformed(void **state) {
  fx *x = *state;
  keel_field_id ids[5] = {x->i, x->f, x->str, x->vec, x->ids};
  fill_all(x, x->e);
  bytes b = enc(x, x->e, ids, 5);
  keel_event_t *d;
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 0, &d), KEEL_OK);
  /* Every strict prefix that cuts a field short is rejected. */
  size_t boundaries = 0;
  for (size_t cut = 1; cut < b.n; cut++) {
    keel_event_reset(d);
    keel_status st = keel_event_decode(d, b.p, cut);
    if (st == KEEL_OK) boundaries++; /* cut exactly between two fields */
    else assert_int_equal(st, KEEL_EPARSE);
  }
  assert_int_equal(boundaries, 4);
  uint8_t *m = malloc(b.n + 16);
  /* A bad type byte: the first field is "count" (2 + 5 bytes), type next. */
  memcpy(m, b.p, b.n);
  assert_int_equal(m[7], KEEL_FIELD_INT);
  m[7] = 9;
  keel_event_reset(d);
  assert_int_equal(keel_event_decode(d, m, b.n), KEEL_EPARSE);
  m[7] = 0xff;
  keel_event_reset(d);
  assert_int_equal(keel_event_decode(d, m, b.n), KEEL_EPARSE);
  /* A huge element count. */
  keel_event_reset(x->e);
  keel_event_set_ids(x->e, x->ids, (const int64_t[]){1, 2}, 2);
  keel_field_id one[1] = {x->ids};
  bytes c = enc(x, x->e, one, 1);
  memcpy(m, c.p, c.n);
  size_t at = 2 + 5 + 1; /* count field */
  m[at] = 0xff;
  m[at + 1] = 0xff;
  m[at + 2] = 0xff;
  m[at + 3] = 0xff;
  keel_event_reset(d);
  assert_int_equal(keel_event_decode(d, m, c.n), KEEL_EPARSE);
  m[at] = 0x20; /* 2^29 * 8 bytes would overflow nothing, still far too long */
  keel_event_reset(d);
  assert_int_equal(keel_event_decode(d, m, c.n), KEEL_EPARSE);
  /* A zero-length or too long name; trailing garbage. */
  const uint8_t zero_name[] = {0, 0, KEEL_FIELD_NONE};
  assert_int_equal(keel_event_decode(d, zero_name, sizeof zero_name), KEEL_EPARSE);
  uint8_t long_name[2 + 200 + 1];
  long_name[0] = 0;
  long_name[1] = 200;
  memset(long_name + 2, 'a', 200);
  long_name[202] = KEEL_FIELD_NONE;
  assert_int_equal(keel_event_decode(d, long_name, sizeof long_name), KEEL_EPARSE);
  memcpy(m, b.p, b.n);
  m[b.n] = 0x01;
  keel_event_reset(d);
  assert_int_equal(keel_event_decode(d, m, b.n + 1), KEEL_EPARSE);
  assert_int_equal(keel_event_decode(d, NULL, 0), KEEL_OK);
  free(m);
  keel_event_destroy(d);
}

/* keel_event_encoding_check accepts what keel_event_encode writes for the
 * ids (fields set or absent) and nothing else: not a cut, empty, reordered,
 * repeated, extended or mistyped value, nor one naming another field. */
static void test_encoding_check(void **state) {
  fx *x = *state;
  keel_field_id ids[5] = {x->i, x->f, x->str, x->vec, x->ids};
  const keel_field_type types[5] = {KEEL_FIELD_INT, KEEL_FIELD_FLOAT, KEEL_FIELD_STRING, KEEL_FIELD_VECTOR,
                                    KEEL_FIELD_IDS};
  fill_all(x, x->e);
  bytes b = enc(x, x->e, ids, 5);
  assert_int_equal(keel_event_encoding_check(x->s, b.p, b.n, ids, types, 5), KEEL_OK);
  assert_int_equal(keel_event_encoding_check(x->s, b.p, b.n, ids, NULL, 5), KEEL_OK);
  for (size_t cut = 0; cut < b.n; cut++) /* every prefix, the empty one too, even at a field's end */
    assert_int_equal(keel_event_encoding_check(x->s, b.p, cut, ids, types, 5), KEEL_EPARSE);
  uint8_t *m = malloc(2 * b.n + 1);
  memcpy(m, b.p, b.n);
  m[b.n] = 0;
  assert_int_equal(keel_event_encoding_check(x->s, m, b.n + 1, ids, types, 5), KEEL_EPARSE); /* a byte after */
  memcpy(m + b.n, b.p, b.n);
  assert_int_equal(keel_event_encoding_check(x->s, m, 2 * b.n, ids, types, 5), KEEL_EPARSE); /* fields twice */
  keel_field_id swapped[5] = {x->f, x->i, x->str, x->vec, x->ids};
  assert_int_equal(keel_event_encoding_check(x->s, b.p, b.n, swapped, types, 5), KEEL_EPARSE); /* order */
  keel_field_type wrong[5] = {KEEL_FIELD_FLOAT, KEEL_FIELD_FLOAT, KEEL_FIELD_STRING, KEEL_FIELD_VECTOR, KEEL_FIELD_IDS};
  assert_int_equal(keel_event_encoding_check(x->s, b.p, b.n, ids, wrong, 5), KEEL_EPARSE); /* a type */
  /* Absent fields are encoded as such and accepted. */
  keel_event_reset(x->e);
  keel_event_set_int(x->e, x->i, 3);
  bytes some = enc(x, x->e, ids, 5);
  assert_int_equal(keel_event_encoding_check(x->s, some.p, some.n, ids, types, 5), KEEL_OK);
  /* Another field than the ids name. */
  keel_field_id other[1] = {x->f};
  assert_int_equal(keel_event_encoding_check(x->s, some.p, 2 + 5 + 1 + 8, other, NULL, 1), KEEL_EPARSE);
  assert_int_equal(keel_event_encoding_check(x->s, NULL, 0, NULL, NULL, 0), KEEL_OK);
  /* An id the schema does not know has no name to encode: refused, not "?". */
  keel_field_id unknown[1] = {999};
  const uint8_t *out;
  size_t len;
  assert_int_equal(keel_event_encode(x->e, unknown, 1, x->a, &out, &len), KEEL_EINVAL);
  free(m);
}

/* ---- allocation failure ---- */

static int create_attempt(void *ctx) {
  keel_schema_t *s = ctx;
  keel_event_t *e;
  keel_status st = keel_event_create(s, KEEL_MEM_ARENA, 128, &e);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  keel_event_destroy(e);
  return 0;
}

typedef struct set_ctx {
  fx *x;
  keel_event_t *e;
} set_ctx;

/* Sets every type, with payloads that outgrow the first arena chunk, and
 * enough fields to outgrow the inline array. On failure the event must be
 * exactly as before the failing call. */
static int set_attempt(void *ctx) {
  set_ctx *c = ctx;
  fx *x = c->x;
  keel_event_t *e = c->e;
  keel_event_reset(e);
  static float emb[300];
  static int64_t items[100];
  static char text[700];
  memset(text, 't', sizeof text);
  keel_field_id extra[20];
  for (int k = 0; k < 20; k++) {
    char name[16];
    int n = snprintf(name, sizeof name, "x%d", k);
    assert_int_equal(keel_schema_intern(x->s, name, (size_t)n, &extra[k]), KEEL_OK);
  }
  /* 25 new fields, then each replaced by a value of the next type (so a
   * failure also meets a field that is there: it must stay as it was). */
  for (int k = 0; k < 50; k++) {
    size_t before = keel_event_count(e);
    keel_value old;
    int f = k % 25;
    keel_field_id target = f < 5 ? (keel_field_id[]){x->i, x->f, x->str, x->vec, x->ids}[f] : extra[f - 5];
    bool had = keel_event_get(e, target, &old);
    assert_true(had == (k >= 25));
    keel_status st;
    switch ((k + k / 25) % 5) {
      case 0: st = keel_event_set_int(e, target, k); break;
      case 1: st = keel_event_set_float(e, target, k); break;
      case 2: st = keel_event_set_string(e, target, text, sizeof text); break;
      case 3: st = keel_event_set_vector(e, target, emb, 300); break;
      default: st = keel_event_set_ids(e, target, items, 100); break;
    }
    if (st != KEEL_OK) {
      assert_int_equal(st, KEEL_ENOMEM);
      assert_int_equal(keel_event_count(e), before);
      keel_value now;
      assert_int_equal(keel_event_get(e, target, &now), had);
      if (had) { /* the same value, not only the same type */
        assert_int_equal(now.type, old.type);
        if (old.type == KEEL_FIELD_INT) assert_int_equal(now.u.i, old.u.i);
        if (old.type == KEEL_FIELD_STRING) assert_int_equal(now.u.str.len, old.u.str.len);
        if (old.type == KEEL_FIELD_VECTOR) assert_int_equal(now.u.vec.len, old.u.vec.len);
        if (old.type == KEEL_FIELD_IDS) assert_int_equal(now.u.ids.len, old.u.ids.len);
      }
      keel_event_reset(e); /* back to the first chunk, as before the attempt */
      return 1;
    }
  }
  assert_int_equal(keel_event_count(e), 25);
  keel_event_reset(e);
  return 0;
}

static void test_oom_sweeps(void **state) {
  fx *x = *state;
  assert_int_equal(tu_oom_sweep(create_attempt, x->s), 3);
  keel_event_t *e;
  assert_int_equal(keel_event_create(x->s, KEEL_MEM_ARENA, 512, &e), KEEL_OK);
  set_ctx c = {x, e};
  unsigned n = tu_oom_sweep(set_attempt, &c);
  assert_true(n > 5);
  keel_event_destroy(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_intern_lookup, setup, teardown),
      cmocka_unit_test(test_schema_limit),
      cmocka_unit_test_setup_teardown(test_schema_sort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_get_every_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replace_unset_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_copies_into_arena, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_reason, setup, teardown),
      cmocka_unit_test_setup_teardown(test_equal_values_equal_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_any_difference_different_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_decode_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_decode_malformed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encoding_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_sweeps, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
