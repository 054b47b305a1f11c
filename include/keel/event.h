/* keel/event.h — events: typed fields with interned names, and their
 * canonical byte encoding.
 *
 * A schema interns field names to small ids, shared by every event of a
 * pipeline. An event is a short list of (id, value) fields plus an arena
 * holding every payload (strings, vectors, id lists) and the stage
 * temporaries of that event; keel_event_reset empties both.
 *
 * The canonical encoding of a chosen list of fields is what memo keys and
 * cached values are made of: equal field values give equal bytes, different
 * values different bytes (field names are part of the bytes; a missing field
 * encodes as "absent"; every NaN encodes as one NaN). It is independent of
 * the process (names, not ids; big-endian numbers), so another process can
 * read it. Thread safety: a schema may be used from any thread; an event
 * from one thread at a time. */
#ifndef KEEL_EVENT_H
#define KEEL_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/arena.h"
#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_field_type {
  KEEL_FIELD_NONE = 0, /* absent */
  KEEL_FIELD_INT,      /* int64 */
  KEEL_FIELD_FLOAT,    /* double */
  KEEL_FIELD_STRING,   /* bytes (UTF-8 in JSON), not NUL-terminated in general */
  KEEL_FIELD_VECTOR,   /* float32 array */
  KEEL_FIELD_IDS       /* int64 id array (written to JSON as decimal strings) */
} keel_field_type;

/* "int", "float", "string", "vector", "ids", "none". */
KEEL_EXTERN const char *keel_field_type_name(keel_field_type t);

typedef uint32_t keel_field_id;

/* A field value. Payload pointers are borrowed: from the event's arena when
 * read from an event, from the caller when passed to keel_event_set. */
typedef struct keel_value {
  keel_field_type type;
  union {
    int64_t i;
    double f;
    struct { const char *ptr; size_t len; } str;
    struct { const float *ptr; size_t len; } vec;
    struct { const int64_t *ptr; size_t len; } ids;
  } u;
} keel_value;

/* ---- schema: interned field names ---- */

typedef struct keel_schema keel_schema_t;

#define KEEL_SCHEMA_MAX_FIELDS 1024
#define KEEL_FIELD_NAME_MAX 64

/* Creates an empty schema. *out is owned (keel_schema_destroy). */
KEEL_EXTERN keel_status keel_schema_create(keel_schema_t **out);
KEEL_EXTERN void keel_schema_destroy(keel_schema_t *s);

/* The id of `name` (n bytes, borrowed), interning it if new. KEEL_ELIMIT past
 * KEEL_SCHEMA_MAX_FIELDS names, KEEL_EINVAL for an empty or too long name
 * or one containing a NUL byte. */
KEEL_EXTERN keel_status keel_schema_intern(keel_schema_t *s, const char *name, size_t n, keel_field_id *out);

/* The id of an already interned name; KEEL_ENOTFOUND otherwise. Lock-free. */
KEEL_EXTERN keel_status keel_schema_lookup(const keel_schema_t *s, const char *name, size_t n, keel_field_id *out);

/* The name of an id (borrowed, lives as long as the schema; NUL-terminated). */
KEEL_EXTERN const char *keel_schema_name(const keel_schema_t *s, keel_field_id id);

/* Whether events parsed against s (keel_json_to_event) keep the input's
 * other members, those whose names are not in s (no stage declares them),
 * as JSON text (numbers in as few digits, 15 to 17, as read back the same) that
 * keel_json_append_event writes back after the fields:
 * a request id or timestamp passes through the pipeline unchanged. Off by
 * default (they are dropped). Members named "line" and "stream_id" are
 * keel's own (keel_reserved_member) and are not kept. Set before events
 * are parsed. */
KEEL_EXTERN void keel_schema_set_keep_others(keel_schema_t *s, bool on);
KEEL_EXTERN bool keel_schema_keeps_others(const keel_schema_t *s);

/* ---- events ---- */

typedef struct keel_event keel_event_t;

/* Creates an event over `schema` (borrowed; must outlive the event), its
 * arena counted under `tag` with chunks of `arena_chunk` bytes (0: 16 KiB).
 * *out is owned (keel_event_destroy). */
KEEL_EXTERN keel_status keel_event_create(keel_schema_t *schema, keel_mem_tag tag, size_t arena_chunk,
                                          keel_event_t **out);
KEEL_EXTERN void keel_event_destroy(keel_event_t *e);

/* Drops every field, the failure reason and the arena's contents. */
KEEL_EXTERN void keel_event_reset(keel_event_t *e);

/* The event's schema and arena: borrowed (the event keeps them). */
KEEL_EXTERN keel_schema_t *keel_event_schema(const keel_event_t *e);
KEEL_EXTERN keel_arena_t *keel_event_arena(const keel_event_t *e);

/* The input line number (1-based; 0 if none) this event came from. */
KEEL_EXTERN uint64_t keel_event_line(const keel_event_t *e);
KEEL_EXTERN void keel_event_set_line(keel_event_t *e, uint64_t line);

/* Reads field `id`: true and *out filled when present (payload borrowed
 * from the arena), false when absent. */
KEEL_EXTERN bool keel_event_get(const keel_event_t *e, keel_field_id id, keel_value *out);

/* Sets field `id` to a copy of *v (payload copied into the arena); replaces
 * an existing value of that field. KEEL_ENOMEM leaves the event unchanged;
 * KEEL_EINVAL for a length given without a payload pointer, or an id the
 * event's schema has not given out (keel_schema_intern). */
KEEL_EXTERN keel_status keel_event_set(keel_event_t *e, keel_field_id id, const keel_value *v);
KEEL_EXTERN keel_status keel_event_set_int(keel_event_t *e, keel_field_id id, int64_t v);
KEEL_EXTERN keel_status keel_event_set_float(keel_event_t *e, keel_field_id id, double v);
KEEL_EXTERN keel_status keel_event_set_string(keel_event_t *e, keel_field_id id, const char *s, size_t n);
KEEL_EXTERN keel_status keel_event_set_vector(keel_event_t *e, keel_field_id id, const float *v, size_t n);
KEEL_EXTERN keel_status keel_event_set_ids(keel_event_t *e, keel_field_id id, const int64_t *v, size_t n);

/* The input's other members (see keel_schema_set_keep_others), as the
 * JSON text of object members without the braces (`"a":1,"b":"x"`),
 * copied into the arena; len 0 clears them. The text is written into the
 * output as given: the caller vouches that it is valid. KEEL_ENOMEM leaves
 * the event unchanged. */
KEEL_EXTERN keel_status keel_event_set_others(keel_event_t *e, const char *json, size_t len);
/* Those members (borrowed, in the arena until the next reset; not
 * NUL-terminated), *len bytes; NULL with *len 0 when there are none. */
KEEL_EXTERN const char *keel_event_others(const keel_event_t *e, size_t *len);

/* Removes field `id` if present. */
KEEL_EXTERN void keel_event_unset(keel_event_t *e, keel_field_id id);

/* Fields in the order they were first set. */
KEEL_EXTERN size_t keel_event_count(const keel_event_t *e);
KEEL_EXTERN void keel_event_at(const keel_event_t *e, size_t i, keel_field_id *id, keel_value *v);

/* Marks the event failed with a printf-style reason (copied into the arena)
 * and returns KEEL_EREJECTED, so a stage can `return keel_event_fail(...)`.
 * A failed event goes to the dead-letter file with this reason. */
KEEL_EXTERN keel_status keel_event_fail(keel_event_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The failure reason, or NULL if the event has not failed: borrowed, in the
 * event's arena (valid until its next reset). */
KEEL_EXTERN const char *keel_event_reason(const keel_event_t *e);

/* ---- canonical encoding ---- */

/* Encodes the fields `ids[0..n)` of e, in that order, into bytes allocated
 * from `a` (borrowed from the arena: valid until its reset): *out and *len
 * on success; KEEL_EINVAL for an id the schema does not know. Callers wanting an
 * order-independent key pass ids sorted by name (see keel_schema_sort). */
KEEL_EXTERN keel_status keel_event_encode(const keel_event_t *e, const keel_field_id *ids, size_t n,
                                          keel_arena_t *a, const uint8_t **out, size_t *len);

/* Sets into e every present field of an encoding made by keel_event_encode
 * (names interned in e's schema). KEEL_EPARSE for malformed bytes, leaving
 * the fields decoded so far set. */
KEEL_EXTERN keel_status keel_event_decode(keel_event_t *e, const uint8_t *bytes, size_t len);

/* Whether bytes are what keel_event_encode writes for ids[0..n): each of
 * the fields once, in that order (names looked up in s, never interned),
 * each absent or of types[k] (types NULL: of any type), and nothing after:
 * KEEL_OK, else KEEL_EPARSE (an empty, cut, reordered or mistyped value).
 * For bytes from outside the process (a shared L2) before they are
 * trusted. s, bytes, ids and types are borrowed. */
KEEL_EXTERN keel_status keel_event_encoding_check(const keel_schema_t *s, const uint8_t *bytes, size_t len,
                                                 const keel_field_id *ids, const keel_field_type *types, size_t n);

/* keel_event_decode that also unsets in e each field of ids[0..n) that the
 * encoding holds as absent: a memoized stage that removed a field it reads
 * and writes removes it on a hit too. */
KEEL_EXTERN keel_status keel_event_decode_unset(keel_event_t *e, const uint8_t *bytes, size_t len,
                                               const keel_field_id *ids, size_t n);

/* Sorts ids[0..n) by field name, in place: the canonical field order. */
KEEL_EXTERN void keel_schema_sort(const keel_schema_t *s, keel_field_id *ids, size_t n);

#ifdef __cplusplus
}
#endif
#endif
