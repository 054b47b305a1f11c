/* json_out.c — an event as one JSON object, byte-for-byte deterministic.
 *
 * Output: {"line":N,"name":value,...} with the fields in the event's order
 * (the order they were first set), no spaces, no newline. The same event
 * always gives the same bytes, on any thread and any run: numbers are
 * formatted in the C locale's fixed ways below, strings by one escaper.
 *
 *  - INT: decimal, by hand (no printf on the hot path).
 *  - FLOAT: "%.17g", which reads back to the same double. When that text
 *    has no '.', 'e' or "inf"/"nan" (an integral value such as 1 or -0) it
 *    gets ".0" appended (1 -> 1.0, 1e+17 stays as is), so a reader sees a
 *    real number and keel_json_to_event gives back a FLOAT, not an INT.
 *    NaN and infinities have no JSON form and are written as null.
 *  - VECTOR: "%.9g" per element (exact for float32); integral elements stay
 *    plain ("1"), which is fine because an array of numbers always reads
 *    back as a VECTOR; only -0 is written "-0.0", since "-0" reads back as
 *    the integer 0 and would lose its sign. Non-finite elements are
 *    written as null.
 *  - IDS: an array of decimal strings (["12","-3"]), since ids above 2^53
 *    are not safe as JSON numbers in many readers.
 *  - STRING: keel_buf_append_json_string (valid UTF-8 through, invalid
 *    bytes as \u00XX).
 * "line" is keel's own member: a field of that name is not written, so the
 * object never holds a duplicate member. The input's other members, where
 * the schema keeps them (keel_event_others), follow the fields as parsed.
 * On failure (KEEL_ENOMEM) the buffer is restored to its length before the
 * call, so a caller never emits half an object. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cnum_int.h"
#include "keel/io.h"

/* Writes v in decimal into the end of tmp[24]; returns the start. */
static char *fmt_u64(char tmp[24], uint64_t v) {
  char *p = tmp + 24;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return p;
}

static keel_status put_i64(keel_buf *b, int64_t v) {
  char tmp[24];
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  char *p = fmt_u64(tmp, u);
  if (v < 0) *--p = '-';
  return keel_buf_append(b, p, (size_t)(tmp + 24 - p));
}

static keel_status put_double(keel_buf *b, double d) {
  if (!isfinite(d)) return keel_buf_append(b, "null", 4);
  char tmp[40];
  locale_t was = keel__cnum_begin(); /* '.', whatever the host's LC_NUMERIC */
  int n = snprintf(tmp, sizeof tmp, "%.17g", d);
  keel__cnum_end(was);
  if (strspn(tmp, "-0123456789") == (size_t)n) {
    memcpy(tmp + n, ".0", 3);
    n += 2;
  }
  return keel_buf_append(b, tmp, (size_t)n);
}

static keel_status put_vector(keel_buf *b, const float *v, size_t n) {
  keel_status st = keel_buf_append(b, "[", 1);
  locale_t was = keel__cnum_begin();
  for (size_t i = 0; i < n && st == KEEL_OK; i++) {
    if (i && (st = keel_buf_append(b, ",", 1)) != KEEL_OK) break;
    if (!isfinite(v[i])) {
      st = keel_buf_append(b, "null", 4);
      continue;
    }
    char tmp[32];
    /* -0 would read back as the integer 0 and lose its sign: "-0.0". */
    int len = v[i] == 0 && signbit(v[i]) ? snprintf(tmp, sizeof tmp, "-0.0")
                                          : snprintf(tmp, sizeof tmp, "%.9g", (double)v[i]);
    st = keel_buf_append(b, tmp, (size_t)len);
  }
  keel__cnum_end(was);
  return st == KEEL_OK ? keel_buf_append(b, "]", 1) : st;
}

static keel_status put_ids(keel_buf *b, const int64_t *v, size_t n) {
  keel_status st = keel_buf_append(b, "[", 1);
  for (size_t i = 0; i < n && st == KEEL_OK; i++) {
    if (i && (st = keel_buf_append(b, ",", 1)) != KEEL_OK) break;
    if ((st = keel_buf_append(b, "\"", 1)) != KEEL_OK) break;
    if ((st = put_i64(b, v[i])) != KEEL_OK) break;
    st = keel_buf_append(b, "\"", 1);
  }
  return st == KEEL_OK ? keel_buf_append(b, "]", 1) : st;
}

static keel_status put_value(keel_buf *b, const keel_value *v) {
  switch (v->type) {
    case KEEL_FIELD_INT: return put_i64(b, v->u.i);
    case KEEL_FIELD_FLOAT: return put_double(b, v->u.f);
    case KEEL_FIELD_STRING: return keel_buf_append_json_string(b, v->u.str.ptr, v->u.str.len);
    case KEEL_FIELD_VECTOR: return put_vector(b, v->u.vec.ptr, v->u.vec.len);
    case KEEL_FIELD_IDS: return put_ids(b, v->u.ids.ptr, v->u.ids.len);
    case KEEL_FIELD_NONE: break;
  }
  return keel_buf_append(b, "null", 4);
}

static keel_status put_event(keel_buf *b, const keel_event_t *e) {
  char tmp[24];
  char *p = fmt_u64(tmp, keel_event_line(e));
  keel_status st = keel_buf_append(b, "{\"line\":", 8);
  if (st == KEEL_OK) st = keel_buf_append(b, p, (size_t)(tmp + 24 - p));
  const keel_schema_t *s = keel_event_schema(e);
  size_t n = keel_event_count(e);
  for (size_t i = 0; i < n && st == KEEL_OK; i++) {
    keel_field_id id;
    keel_value v;
    keel_event_at(e, i, &id, &v);
    if (v.type == KEEL_FIELD_NONE) continue;
    const char *name = keel_schema_name(s, id);
    if (!strcmp(name, "line")) continue; /* reserved: written first, once */
    if ((st = keel_buf_append(b, ",", 1)) != KEEL_OK) break;
    if ((st = keel_buf_append_json_string(b, name, strlen(name))) != KEEL_OK) break;
    if ((st = keel_buf_append(b, ":", 1)) != KEEL_OK) break;
    st = put_value(b, &v);
  }
  size_t olen;
  const char *others = keel_event_others(e, &olen);
  if (olen && st == KEEL_OK && (st = keel_buf_append(b, ",", 1)) == KEEL_OK) st = keel_buf_append(b, others, olen);
  return st == KEEL_OK ? keel_buf_append(b, "}", 1) : st;
}

keel_status keel_json_append_event(keel_buf *b, const keel_event_t *e) {
  if (!b || !e) return KEEL_EMISUSE;
  size_t mark = b->len;
  keel_status st = put_event(b, e);
  if (st != KEEL_OK) {
    b->len = mark;
    if (b->data) b->data[mark] = '\0';
  }
  return st;
}
