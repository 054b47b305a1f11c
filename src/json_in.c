/* json_in.c — one NDJSON line into the fields of an event.
 *
 * jansson parses the line into a temporary tree (freed before returning);
 * this file then checks keel's limits over the whole object and copies the
 * members whose names the event's schema interns into the event's arena.
 *
 * Parser flags, and why:
 *  - JSON_DECODE_ANY: accept any top-level value, so that a string or an
 *    array is reported as "not a JSON object (an array)" rather than as
 *    jansson's generic syntax error.
 *  - JSON_REJECT_DUPLICATES: {"user":"1","user":"2"} is rejected. Which value
 *    wins is undefined across JSON parsers, so an event that says two things
 *    about one field is reported instead of silently taking one.
 *  - JSON_ALLOW_NUL: "\u0000" inside a string is accepted. keel strings are
 *    length-counted, and the writer escapes NUL back, so it round-trips.
 *  - Not JSON_DISABLE_EOF_CHECK: that flag stops after the first value and
 *    would accept `{"a":1} garbage`; without it, only whitespace may follow.
 * jansson itself rejects invalid UTF-8 (also inside escapes: lone
 * surrogates), the NaN / Infinity tokens, integers outside json_int_t
 * (int64 here, checked at compile time), real numbers that overflow a
 * double, and nesting beyond 2048 levels; keel's own depth limit is far
 * lower and checked after the parse.
 *
 * Memory: jansson allocates the tree with its default allocator, outside
 * keel_mem's accounting. The tree is transient (bounded by the line length,
 * itself bounded by max_line) and freed before this function returns;
 * routing jansson through keel_mem would mean a process-wide
 * json_set_alloc_funcs, which would also capture jansson objects made by the
 * user's own code. Everything that outlives the call is in the event's
 * arena and counted there.
 *
 * Limits apply to the whole object, including members keel ignores: a
 * 10 MB string in an unknown member is as much an attack as in a known one. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cnum_int.h"
#include "event_int.h"
#include "keel/io.h"

_Static_assert(sizeof(json_int_t) == sizeof(int64_t), "jansson must use 64-bit integers");

#define PARSE_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

typedef struct ctx {
  keel_event_t *e;
  const keel_limits *lim;
  char *reason;
  size_t reason_len;
} ctx;

static keel_status say(ctx *c, keel_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static keel_status say(ctx *c, keel_status st, const char *fmt, ...) {
  if (c->reason && c->reason_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, c->reason_len, fmt, ap);
    va_end(ap);
  }
  return st;
}

static const char *kind_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
  }
  return "an unknown value";
}

/* Field names in reasons: cut so a 60 KiB key does not flood the reason. */
#define NAME_SHOWN 64

/* Checks v and everything below it against the size and depth limits;
 * `depth` is the nesting level v has if it is a container (the top object
 * is level 1, an array member level 2, an array in that array level 3);
 * scalars add no level. `name` is the top-level member, for the reason. */
static keel_status check_limits(ctx *c, const char *name, const json_t *v, size_t depth) {
  const keel_limits *lim = c->lim;
  if ((json_is_array(v) || json_is_object(v)) && depth > lim->max_depth)
    return say(c, KEEL_ELIMIT, "field '%.*s': nesting deeper than the %zu-level limit", NAME_SHOWN, name,
               lim->max_depth);
  if (json_is_string(v)) {
    size_t n = json_string_length(v);
    if (n > lim->max_string)
      return say(c, KEEL_ELIMIT, "field '%.*s': string of %zu bytes exceeds the %zu-byte limit", NAME_SHOWN, name,
                 n, lim->max_string);
  } else if (json_is_array(v)) {
    size_t n = json_array_size(v);
    if (n > lim->max_vector)
      return say(c, KEEL_ELIMIT, "field '%.*s': array of %zu elements exceeds the %zu-element limit", NAME_SHOWN,
                 name, n, lim->max_vector);
    for (size_t i = 0; i < n; i++) {
      keel_status st = check_limits(c, name, json_array_get(v, i), depth + 1);
      if (st != KEEL_OK) return st;
    }
  } else if (json_is_object(v)) {
    if (json_object_size(v) > lim->max_fields)
      return say(c, KEEL_ELIMIT, "field '%.*s': object of %zu members exceeds the %zu-member limit", NAME_SHOWN,
                 name, json_object_size(v), lim->max_fields);
    const char *k;
    json_t *m;
    json_object_foreach((json_t *)v, k, m) {
      if (strlen(k) > lim->max_string)
        return say(c, KEEL_ELIMIT, "field '%.*s': member name of %zu bytes exceeds the %zu-byte limit", NAME_SHOWN,
                   name, strlen(k), lim->max_string);
      keel_status st = check_limits(c, name, m, depth + 1);
      if (st != KEEL_OK) return st;
    }
  }
  return KEEL_OK;
}

/* A decimal integer string ("-12", "0", "9007199254740993") as int64;
 * -1 when s is not one (empty, signs other than a leading '-', other
 * characters, or outside the int64 range). */
static int parse_decimal(const char *s, size_t n, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  if (n && s[0] == '-') {
    neg = 1;
    i = 1;
  }
  if (i == n) return -1;
  uint64_t v = 0;
  const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    unsigned d = (unsigned)(unsigned char)s[i] - '0';
    if (d > 9) return -1;
    if (v > (lim - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

/* An array of numbers: float32 vector, each element finite in float32. */
static keel_status set_vector(ctx *c, keel_field_id id, const char *name, const json_t *arr) {
  size_t n = json_array_size(arr);
  float *v = NULL;
  if (n) {
    v = keel_arena_alloc(keel_event_arena(c->e), n * sizeof *v);
    if (!v) return say(c, KEEL_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    const json_t *x = json_array_get(arr, i);
    double d = json_number_value(x);
    /* The float it becomes must be finite: below FLT_MAX plus half its
     * last place, where rounding to float goes to infinity. FLT_MAX itself
     * as a bound refused FLT_MAX as keel writes it (3.40282347e+38, just
     * above it as a double). */
    if (!(fabs(d) < 0x1.ffffffp127))
      return say(c, KEEL_EPARSE, "field '%.*s': element %zu (%g) is outside the float32 range", NAME_SHOWN, name,
                 i + 1, d);
    v[i] = (float)d;
  }
  keel_status st = keel_event_set_vector(c->e, id, v, n);
  return st == KEEL_OK ? st : say(c, st, "out of memory");
}

/* An array of decimal-integer strings: an id list. */
static keel_status set_ids(ctx *c, keel_field_id id, const char *name, const json_t *arr) {
  size_t n = json_array_size(arr);
  int64_t *v = keel_arena_alloc(keel_event_arena(c->e), n * sizeof *v);
  if (!v) return say(c, KEEL_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const json_t *x = json_array_get(arr, i);
    if (parse_decimal(json_string_value(x), json_string_length(x), &v[i]) != 0)
      return say(c, KEEL_EPARSE, "field '%.*s': element %zu is not a decimal int64 string (an id list holds only those)",
                 NAME_SHOWN, name, i + 1);
  }
  keel_status st = keel_event_set_ids(c->e, id, v, n);
  return st == KEEL_OK ? st : say(c, st, "out of memory");
}

/* Arrays: all numbers -> VECTOR (empty included), all strings -> IDS. */
static keel_status set_array(ctx *c, keel_field_id id, const char *name, const json_t *arr) {
  size_t n = json_array_size(arr), nums = 0, strs = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *x = json_array_get(arr, i);
    if (json_is_number(x)) nums++;
    else if (json_is_string(x)) strs++;
    else
      return say(c, KEEL_EPARSE, "field '%.*s': element %zu is %s (arrays hold numbers or id strings only)",
                 NAME_SHOWN, name, i + 1, kind_name(x));
  }
  if (nums && strs)
    return say(c, KEEL_EPARSE, "field '%.*s': array mixes numbers and strings", NAME_SHOWN, name);
  return strs ? set_ids(c, id, name, arr) : set_vector(c, id, name, arr);
}

static keel_status set_member(ctx *c, keel_field_id id, const char *name, const json_t *v) {
  keel_status st;
  switch (json_typeof(v)) {
    case JSON_STRING: st = keel_event_set_string(c->e, id, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: st = keel_event_set_int(c->e, id, (int64_t)json_integer_value(v)); break;
    case JSON_REAL: st = keel_event_set_float(c->e, id, json_real_value(v)); break;
    case JSON_ARRAY: return set_array(c, id, name, v);
    case JSON_NULL: return KEEL_OK; /* null is absent */
    default:
      return say(c, KEEL_EPARSE, "field '%.*s': %s is not a supported value (string, number or array)", NAME_SHOWN,
                 name, kind_name(v));
  }
  return st == KEEL_OK ? st : say(c, st, "out of memory");
}

/* Where a parse error is: the byte offset into the text (its line is the
 * event's, which the caller knows: an NDJSON line holds no newline), with
 * the line and column of a text of several lines. Jansson's `position`
 * counts the bytes read, the one it choked on included. */
static const char *error_at(const json_error_t *err, char *buf, size_t len) {
  if (err->line > 1) snprintf(buf, len, "line %d column %d", err->line, err->column);
  else snprintf(buf, len, "byte %d", err->position > 0 ? err->position : 1);
  return buf;
}

static keel_status parse_error(ctx *c, const json_error_t *err) {
  char at[64];
  switch (json_error_code(err)) {
    case json_error_out_of_memory: return say(c, KEEL_ENOMEM, "out of memory while parsing JSON");
    case json_error_numeric_overflow:
      return say(c, KEEL_EPARSE, "invalid JSON at %s: number out of range (integers must fit in int64, reals in a double): %s",
                 error_at(err, at, sizeof at), err->text);
    case json_error_duplicate_key:
      return say(c, KEEL_EPARSE, "invalid JSON at %s: duplicate member: %s", error_at(err, at, sizeof at), err->text);
    default: return say(c, KEEL_EPARSE, "invalid JSON at %s: %s", error_at(err, at, sizeof at), err->text);
  }
}

int keel_reserved_member(const char *name, size_t n) {
  return (n == 4 && !memcmp(name, "line", 4)) || (n == 9 && !memcmp(name, "stream_id", 9));
}

/* A real in as few significant digits, 15 to 17, as read back as the
 * same double, so 19.99 stays "19.99" (a subnormal may show more digits
 * than it was written with); ".0" keeps an integral one a
 * real. In the C locale's format. */
static keel_status put_real(keel_buf *b, double d) {
  char tmp[40];
  int n = 0;
  locale_t was = keel__cnum_begin();
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp - 2, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  keel__cnum_end(was);
  if (strspn(tmp, "-0123456789") == (size_t)n) memcpy(tmp + n, ".0", 3), n += 2;
  return keel_buf_append(b, tmp, (size_t)n);
}

/* A parsed value back as compact JSON: members in their order, strings by
 * keel's escaper, numbers as above. Its depth was checked (check_limits). */
static keel_status put_json(keel_buf *b, const json_t *v) {
  keel_status st = KEEL_OK;
  switch (json_typeof(v)) {
    case JSON_OBJECT: {
      const char *sep = "{";
      for (void *it = json_object_iter((json_t *)v); it && st == KEEL_OK;
           it = json_object_iter_next((json_t *)v, it), sep = ",") {
        if ((st = keel_buf_append(b, sep, 1)) != KEEL_OK) break;
        if ((st = keel_buf_append_json_string(b, json_object_iter_key(it), json_object_iter_key_len(it))) != KEEL_OK)
          break;
        if ((st = keel_buf_append(b, ":", 1)) == KEEL_OK) st = put_json(b, json_object_iter_value(it));
      }
      return st != KEEL_OK ? st : keel_buf_append(b, *sep == '{' ? "{}" : "}", *sep == '{' ? 2 : 1);
    }
    case JSON_ARRAY:
      for (size_t i = 0; i < json_array_size(v) && st == KEEL_OK; i++)
        if ((st = keel_buf_append(b, i ? "," : "[", 1)) == KEEL_OK) st = put_json(b, json_array_get(v, i));
      return st != KEEL_OK ? st : keel_buf_append(b, json_array_size(v) ? "]" : "[]", json_array_size(v) ? 1 : 2);
    case JSON_STRING: return keel_buf_append_json_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: return keel_buf_appendf(b, "%lld", (long long)json_integer_value(v));
    case JSON_REAL: return put_real(b, json_real_value(v));
    case JSON_TRUE: return keel_buf_append(b, "true", 4);
    case JSON_FALSE: return keel_buf_append(b, "false", 5);
    default: return keel_buf_append(b, "null", 4);
  }
}

/* Appends `,"name":value` to b. */
static keel_status keep_other(ctx *c, keel_buf *b, const char *name, size_t nlen, const json_t *v) {
  keel_status st = keel_buf_append(b, ",", 1);
  if (st == KEEL_OK) st = keel_buf_append_json_string(b, name, nlen);
  if (st == KEEL_OK) st = keel_buf_append(b, ":", 1);
  if (st == KEEL_OK) st = put_json(b, v);
  return st == KEEL_OK ? st : say(c, KEEL_ENOMEM, "out of memory");
}

static keel_status convert(ctx *c, json_t *root, keel_buf *others) {
  if (!json_is_object(root)) return say(c, KEEL_EPARSE, "not a JSON object (%s)", kind_name(root));
  if (json_object_size(root) > c->lim->max_fields)
    return say(c, KEEL_ELIMIT, "object of %zu members exceeds the %zu-member limit", json_object_size(root),
               c->lim->max_fields);
  const keel_schema_t *schema = keel_event_schema(c->e);
  for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
    const char *name = json_object_iter_key(it);
    size_t nlen = json_object_iter_key_len(it);
    json_t *v = json_object_iter_value(it);
    if (nlen > c->lim->max_string)
      return say(c, KEEL_ELIMIT, "member name of %zu bytes exceeds the %zu-byte limit", nlen, c->lim->max_string);
    keel_status st = check_limits(c, name, v, 2);
    if (st != KEEL_OK) return st;
    keel_field_id id;
    if (keel_schema_lookup(schema, name, nlen, &id) != KEEL_OK) { /* not a field anyone uses */
      if (others && !keel_reserved_member(name, nlen) && (st = keep_other(c, others, name, nlen, v)) != KEEL_OK)
        return st;
      continue;
    }
    if ((st = set_member(c, id, name, v)) != KEEL_OK) return st;
  }
  if (others) keel__event_others_from_scratch(c->e, 1); /* past the first comma */
  return KEEL_OK;
}

keel_status keel_json_to_event(keel_event_t *e, const char *line, size_t len, const keel_limits *lim, char *reason,
                               size_t reason_len) {
  keel_limits def;
  if (!lim) {
    keel_limits_default(&def);
    lim = &def;
  }
  ctx c = {e, lim, reason, reason_len};
  if (!e || (!line && len)) return say(&c, KEEL_EMISUSE, "keel_json_to_event: bad arguments");
  if (reason && reason_len) reason[0] = '\0';
  if (len > lim->max_line)
    return say(&c, KEEL_ELIMIT, "line of %zu bytes exceeds the %zu-byte limit", len, lim->max_line);
  if (len == 0) return say(&c, KEEL_EPARSE, "empty line (not a JSON object)");
  json_error_t err;
  json_t *root = json_loadb(line, len, PARSE_FLAGS, &err);
  if (!root) return parse_error(&c, &err);
  /* The other members are built in the event's own scratch buffer, which
   * outlives the call (no allocation per event once it has grown). */
  keel_buf *others = keel_schema_keeps_others(keel_event_schema(e)) ? keel__event_scratch(e) : NULL;
  keel_status st = convert(&c, root, others);
  json_decref(root);
  return st;
}
