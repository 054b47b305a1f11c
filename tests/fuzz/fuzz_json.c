/* fuzz_json.c — libFuzzer target: the NDJSON event parser.
 *
 * Each input is one line given to keel_json_to_event, twice: with the
 * default limits and with tight ones (so the limit paths run on short
 * inputs). Whatever the bytes, the parser must return a status without
 * crashing, and nothing may stay allocated once the event is reset.
 * When a line is accepted, writing the event back (keel_json_append_event)
 * must give one line of JSON that parses again, and writing that second
 * event must give the same bytes: output is a fixed point after one round.
 * Anything the tight limits accept, the defaults accept too. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "keel/event.h"
#include "keel/io.h"

static keel_schema_t *schema;

static void setup(void) {
  static const char *const names[] = {"type", "user", "product", "k", "category", "v",
                                      "ids",  "x",    "items",   "scores", "affinity", "score"};
  if (keel_schema_create(&schema) != KEEL_OK) abort();
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    keel_field_id id;
    if (keel_schema_intern(schema, names[i], strlen(names[i]), &id) != KEEL_OK) abort();
  }
}

static void round_trip(keel_event_t *e, keel_event_t *e2, const uint8_t *data, size_t size) {
  keel_buf b1, b2;
  keel_buf_init(&b1, KEEL_MEM_IO);
  keel_buf_init(&b2, KEEL_MEM_IO);
  keel_event_set_line(e, 7);
  FUZZ_CHECK(keel_json_append_event(&b1, e) == KEEL_OK, "append failed");
  FUZZ_CHECK(memchr(b1.data, '\n', b1.len) == NULL, "output is not one line");
  char reason[256] = "";
  keel_status st = keel_json_to_event(e2, b1.data, b1.len, NULL, reason, sizeof reason);
  FUZZ_CHECK(st == KEEL_OK, "output does not parse back: %s\n  input: %.*s\n  output: %s", reason, (int)size,
             (const char *)data, b1.data);
  keel_event_set_line(e2, 7);
  FUZZ_CHECK(keel_json_append_event(&b2, e2) == KEEL_OK, "second append failed");
  FUZZ_CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0, "not a fixed point:\n  %s\n  %s", b1.data,
             b2.data);
  keel_buf_free(&b1);
  keel_buf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!schema) setup();
  int64_t before = fuzz_tracked();
  keel_event_t *e, *e2;
  if (keel_event_create(schema, KEEL_MEM_ARENA, 4096, &e) != KEEL_OK) abort();
  if (keel_event_create(schema, KEEL_MEM_ARENA, 4096, &e2) != KEEL_OK) abort();

  keel_limits tight;
  keel_limits_default(&tight);
  tight.max_line = 512;
  tight.max_fields = 4;
  tight.max_string = 16;
  tight.max_vector = 8;
  tight.max_depth = 2;
  char reason[256] = "";
  keel_status tight_st = keel_json_to_event(e, (const char *)data, size, &tight, reason, sizeof reason);
  FUZZ_CHECK(tight_st == KEEL_OK || reason[0], "rejected (%d) without a reason", tight_st);
  keel_event_reset(e);

  reason[0] = '\0';
  keel_status st = keel_json_to_event(e, (const char *)data, size, NULL, reason, sizeof reason);
  FUZZ_CHECK(st == KEEL_OK || st == KEEL_EPARSE || st == KEEL_ELIMIT, "unexpected status %d", st);
  FUZZ_CHECK(st == KEEL_OK || reason[0], "rejected (%d) without a reason", st);
  FUZZ_CHECK(tight_st != KEEL_OK || st == KEEL_OK, "accepted under tight limits, rejected under defaults: %s",
             reason);
  if (st == KEEL_OK) round_trip(e, e2, data, size);

  keel_event_destroy(e);
  keel_event_destroy(e2);
  FUZZ_CHECK(fuzz_tracked() == before, "%lld tracked bytes leaked", (long long)(fuzz_tracked() - before));
  return 0;
}
