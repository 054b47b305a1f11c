/* fuzz_encoding.c — libFuzzer target: the canonical event encoding.
 *
 * Each input is taken as an encoding and decoded into an event (a fresh
 * schema each time, since decoding interns the names it meets): arbitrary
 * bytes must give KEEL_OK or KEEL_EPARSE / KEEL_ELIMIT, never a crash or an
 * over-read. When they decode, the event is an arbitrary x, and
 * decode(encode(x)) must equal x field by field (NaNs compare as NaN: the
 * encoding keeps one NaN), and encoding that again must give the same
 * bytes. Nothing stays allocated afterwards. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "keel/arena.h"
#include "keel/event.h"

static int same_float(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

static int same_value(const keel_value *a, const keel_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
    case KEEL_FIELD_INT: return a->u.i == b->u.i;
    case KEEL_FIELD_FLOAT: return same_float(a->u.f, b->u.f);
    case KEEL_FIELD_STRING:
      return a->u.str.len == b->u.str.len && (!a->u.str.len || !memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len));
    case KEEL_FIELD_VECTOR:
      if (a->u.vec.len != b->u.vec.len) return 0;
      for (size_t i = 0; i < a->u.vec.len; i++)
        if (!same_float(a->u.vec.ptr[i], b->u.vec.ptr[i])) return 0;
      return 1;
    case KEEL_FIELD_IDS:
      return a->u.ids.len == b->u.ids.len &&
             (!a->u.ids.len || !memcmp(a->u.ids.ptr, b->u.ids.ptr, a->u.ids.len * sizeof(int64_t)));
    case KEEL_FIELD_NONE: break;
  }
  return 1;
}

/* x decoded fine: check decode(encode(x)) == x and that encoding is stable. */
static void round_trip(keel_schema_t *s, keel_event_t *x, keel_arena_t *a) {
  size_t n = keel_event_count(x);
  keel_field_id *ids = keel_arena_alloc(a, (n ? n : 1) * sizeof *ids);
  FUZZ_CHECK(ids != NULL, "arena");
  for (size_t i = 0; i < n; i++) keel_event_at(x, i, &ids[i], NULL);
  const uint8_t *enc, *enc2;
  size_t len, len2;
  FUZZ_CHECK(keel_event_encode(x, ids, n, a, &enc, &len) == KEEL_OK, "encode failed");
  keel_event_t *y;
  if (keel_event_create(s, KEEL_MEM_ARENA, 4096, &y) != KEEL_OK) abort();
  keel_status st = keel_event_decode(y, enc, len);
  FUZZ_CHECK(st == KEEL_OK, "decode(encode(x)) failed: %d", st);
  FUZZ_CHECK(keel_event_count(y) == n, "%zu fields back of %zu", keel_event_count(y), n);
  for (size_t i = 0; i < n; i++) {
    keel_value vx, vy;
    keel_event_at(x, i, NULL, &vx);
    FUZZ_CHECK(keel_event_get(y, ids[i], &vy), "field '%s' lost", keel_schema_name(s, ids[i]));
    FUZZ_CHECK(same_value(&vx, &vy), "field '%s' differs", keel_schema_name(s, ids[i]));
  }
  FUZZ_CHECK(keel_event_encode(y, ids, n, a, &enc2, &len2) == KEEL_OK, "second encode failed");
  FUZZ_CHECK(len == len2 && !memcmp(enc, enc2, len), "encoding is not stable");
  keel_event_destroy(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t before = fuzz_tracked();
  keel_schema_t *s;
  keel_event_t *x;
  keel_arena_t *a;
  if (keel_schema_create(&s) != KEEL_OK) abort();
  if (keel_event_create(s, KEEL_MEM_ARENA, 4096, &x) != KEEL_OK) abort();
  if (keel_arena_create(KEEL_MEM_ARENA, 4096, &a) != KEEL_OK) abort();
  keel_status st = keel_event_decode(x, data, size);
  FUZZ_CHECK(st == KEEL_OK || st == KEEL_EPARSE || st == KEEL_ELIMIT, "unexpected status %d", st);
  if (st == KEEL_OK) round_trip(s, x, a);
  keel_arena_destroy(a);
  keel_event_destroy(x);
  keel_schema_destroy(s);
  FUZZ_CHECK(fuzz_tracked() == before, "%lld tracked bytes leaked", (long long)(fuzz_tracked() - before));
  return 0;
}
