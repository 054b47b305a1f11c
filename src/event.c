/* event.c — schemas (interned field names), events, canonical encoding.
 *
 * Schema. Names live in a fixed array indexed by id; a power-of-two open
 * addressing table maps a name's hash to id + 1 (0 = empty). Interning takes
 * the schema's mutex and publishes the slot with a release store after the
 * name is written; lookups are lock-free (acquire loads), so workers may look
 * names up while another thread interns a new one.
 *
 * Event. A small array of (id, value) fields, grown in the event's arena;
 * every payload is copied into the arena. Reset rewinds the arena and so
 * frees all of them at once.
 *
 * Encoding (all integers big-endian), per requested field, in the order the
 * caller gives:
 *     u16 name length | name bytes | u8 type |
 *     INT: 8 bytes | FLOAT: 8 bytes of the IEEE-754 bits (every NaN as one
 *     quiet NaN) | STRING: u32 length + bytes | VECTOR: u32 count + 4-byte
 *     floats | IDS: u32 count + 8-byte ints | NONE (absent): nothing.
 * Length prefixes make the encoding prefix-free, so distinct field lists
 * cannot produce the same bytes. */
#include "keel/event.h"
#include "event_int.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define TABLE_SIZE 2048u /* > 2 x KEEL_SCHEMA_MAX_FIELDS, power of two */

struct keel_schema {
  pthread_mutex_t lock;       /* guards appends to names and table slots */
  _Atomic uint32_t count;     /* names[0..count) are written (release) */
  _Atomic uint32_t table[TABLE_SIZE];
  uint8_t lens[KEEL_SCHEMA_MAX_FIELDS];
  char names[KEEL_SCHEMA_MAX_FIELDS][KEEL_FIELD_NAME_MAX + 1];
  bool keep_others;           /* set before events are parsed (keel_schema_set_keep_others) */
};

const char *keel_field_type_name(keel_field_type t) {
  switch (t) {
    case KEEL_FIELD_INT: return "int";
    case KEEL_FIELD_FLOAT: return "float";
    case KEEL_FIELD_STRING: return "string";
    case KEEL_FIELD_VECTOR: return "vector";
    case KEEL_FIELD_IDS: return "ids";
    case KEEL_FIELD_NONE: break;
  }
  return "none";
}

keel_status keel_schema_create(keel_schema_t **out) {
  if (!out) return KEEL_EINVAL;
  keel_schema_t *s = keel_mem_calloc(KEEL_MEM_PIPELINE, 1, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  pthread_mutex_init(&s->lock, NULL);
  *out = s;
  return KEEL_OK;
}

void keel_schema_set_keep_others(keel_schema_t *s, bool on) {
  if (s) s->keep_others = on;
}
bool keel_schema_keeps_others(const keel_schema_t *s) { return s && s->keep_others; }

void keel_schema_destroy(keel_schema_t *s) {
  if (!s) return;
  pthread_mutex_destroy(&s->lock);
  keel_mem_free(s);
}

static uint32_t name_hash(const char *name, size_t n) { return (uint32_t)XXH3_64bits(name, n); }

/* Lock-free probe: the id of name, or -1. */
static int64_t probe(const keel_schema_t *s, const char *name, size_t n, uint32_t *slot) {
  uint32_t i = name_hash(name, n) & (TABLE_SIZE - 1);
  for (;; i = (i + 1) & (TABLE_SIZE - 1)) {
    uint32_t v = atomic_load_explicit(&((keel_schema_t *)s)->table[i], memory_order_acquire);
    if (v == 0) {
      if (slot) *slot = i;
      return -1;
    }
    uint32_t id = v - 1;
    if (s->lens[id] == n && memcmp(s->names[id], name, n) == 0) return id;
  }
}

keel_status keel_schema_lookup(const keel_schema_t *s, const char *name, size_t n, keel_field_id *out) {
  if (!s || !name || n == 0 || n > KEEL_FIELD_NAME_MAX) return KEEL_ENOTFOUND;
  int64_t id = probe(s, name, n, NULL);
  if (id < 0) return KEEL_ENOTFOUND;
  *out = (keel_field_id)id;
  return KEEL_OK;
}

keel_status keel_schema_intern(keel_schema_t *s, const char *name, size_t n, keel_field_id *out) {
  /* A NUL inside a name would be cut by every reader of the NUL-terminated
   * name (the encoding writes strlen bytes), so such a name is refused. */
  if (!s || !name || !out || n == 0 || n > KEEL_FIELD_NAME_MAX || memchr(name, '\0', n)) return KEEL_EINVAL;
  if (keel_schema_lookup(s, name, n, out) == KEEL_OK) return KEEL_OK;
  pthread_mutex_lock(&s->lock);
  uint32_t slot;
  int64_t id = probe(s, name, n, &slot);
  keel_status st = KEEL_OK;
  if (id < 0) {
    uint32_t c = atomic_load_explicit(&s->count, memory_order_relaxed);
    if (c >= KEEL_SCHEMA_MAX_FIELDS) {
      st = KEEL_ELIMIT;
    } else {
      memcpy(s->names[c], name, n);
      s->names[c][n] = '\0';
      s->lens[c] = (uint8_t)n;
      atomic_store_explicit(&s->count, c + 1, memory_order_release);
      atomic_store_explicit(&s->table[slot], c + 1, memory_order_release);
      id = c;
    }
  }
  pthread_mutex_unlock(&s->lock);
  if (st == KEEL_OK) *out = (keel_field_id)id;
  return st;
}

const char *keel_schema_name(const keel_schema_t *s, keel_field_id id) {
  if (!s || id >= atomic_load_explicit(&((keel_schema_t *)s)->count, memory_order_acquire)) return "?";
  return s->names[id];
}


static int cmp_names(const void *a, const void *b, void *arg) {
  const keel_schema_t *s = arg;
  return strcmp(s->names[*(const keel_field_id *)a], s->names[*(const keel_field_id *)b]);
}

void keel_schema_sort(const keel_schema_t *s, keel_field_id *ids, size_t n) {
  /* Insertion sort: field lists are short, and it needs no context global. */
  for (size_t i = 1; i < n; i++) {
    keel_field_id v = ids[i];
    size_t j = i;
    while (j > 0 && cmp_names(&ids[j - 1], &v, (void *)s) > 0) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = v;
  }
}

/* ---- events ---- */

typedef struct field {
  keel_field_id id;
  keel_value v;
} field;

#define INLINE_FIELDS 16

#define SCRATCH_KEEP (64u * 1024u)

struct keel_event {
  keel_schema_t *schema; /* borrowed */
  keel_arena_t *arena;   /* owned */
  field *fields;         /* inline_fields or arena memory */
  size_t n, cap;
  uint64_t line;
  const char *reason;    /* arena memory, or NULL */
  const char *others;    /* arena or scratch memory: the input's other members (keel_event_set_others), or NULL */
  size_t others_len;
  keel_buf scratch;      /* owned: where the JSON reader builds the other members (keel__event_scratch) */
  bool others_in_scratch; /* `others` points into scratch */
  field inline_fields[INLINE_FIELDS];
};

keel_status keel_event_create(keel_schema_t *schema, keel_mem_tag tag, size_t arena_chunk, keel_event_t **out) {
  if (!schema || !out) return KEEL_EINVAL;
  keel_event_t *e = keel_mem_calloc(tag, 1, sizeof *e);
  if (!e) return KEEL_ENOMEM;
  keel_status st = keel_arena_create(tag, arena_chunk ? arena_chunk : 16384, &e->arena);
  if (st != KEEL_OK) {
    keel_mem_free(e);
    return st;
  }
  e->schema = schema;
  keel_buf_init(&e->scratch, KEEL_MEM_IO);
  e->fields = e->inline_fields;
  e->cap = INLINE_FIELDS;
  *out = e;
  return KEEL_OK;
}

void keel_event_destroy(keel_event_t *e) {
  if (!e) return;
  keel_arena_destroy(e->arena);
  keel_buf_free(&e->scratch);
  keel_mem_free(e);
}

void keel_event_reset(keel_event_t *e) {
  keel_arena_reset(e->arena);
  e->fields = e->inline_fields;
  e->cap = INLINE_FIELDS;
  e->n = 0;
  e->line = 0;
  e->reason = NULL;
  e->others = NULL;
  e->others_len = 0;
  e->others_in_scratch = false;
  if (e->scratch.cap > SCRATCH_KEEP) keel_buf_free(&e->scratch); /* a long line's growth is not kept */
  else keel_buf_clear(&e->scratch);
}

keel_buf *keel__event_scratch(keel_event_t *e) {
  if (e->others_in_scratch) {
    e->others = NULL;
    e->others_len = 0;
    e->others_in_scratch = false;
  }
  keel_buf_clear(&e->scratch);
  return &e->scratch;
}

void keel__event_others_from_scratch(keel_event_t *e, size_t off) {
  e->others = e->scratch.len > off ? e->scratch.data + off : NULL;
  e->others_len = e->scratch.len > off ? e->scratch.len - off : 0;
  e->others_in_scratch = e->others != NULL;
}

keel_schema_t *keel_event_schema(const keel_event_t *e) { return e->schema; }
keel_arena_t *keel_event_arena(const keel_event_t *e) { return e->arena; }
uint64_t keel_event_line(const keel_event_t *e) { return e->line; }
void keel_event_set_line(keel_event_t *e, uint64_t line) { e->line = line; }
size_t keel_event_count(const keel_event_t *e) { return e->n; }

void keel_event_at(const keel_event_t *e, size_t i, keel_field_id *id, keel_value *v) {
  if (id) *id = e->fields[i].id;
  if (v) *v = e->fields[i].v;
}

static field *find(const keel_event_t *e, keel_field_id id) {
  for (size_t i = 0; i < e->n; i++)
    if (e->fields[i].id == id) return &e->fields[i];
  return NULL;
}

bool keel_event_get(const keel_event_t *e, keel_field_id id, keel_value *out) {
  field *f = find(e, id);
  if (!f) return false;
  if (out) *out = f->v;
  return true;
}

/* Copies v's payload into the arena; the copy is what the event keeps. */
static keel_status copy_value(keel_arena_t *a, const keel_value *v, keel_value *out) {
  *out = *v;
  if ((v->type == KEEL_FIELD_STRING && !v->u.str.ptr && v->u.str.len) ||
      (v->type == KEEL_FIELD_VECTOR && !v->u.vec.ptr && v->u.vec.len) ||
      (v->type == KEEL_FIELD_IDS && !v->u.ids.ptr && v->u.ids.len))
    return KEEL_EINVAL; /* a length without a payload */
  switch (v->type) {
    case KEEL_FIELD_STRING:
      out->u.str.ptr = keel_arena_strndup(a, v->u.str.ptr ? v->u.str.ptr : "", v->u.str.len);
      return out->u.str.ptr ? KEEL_OK : KEEL_ENOMEM;
    case KEEL_FIELD_VECTOR:
      if (v->u.vec.len > SIZE_MAX / sizeof(float)) return KEEL_ENOMEM;
      out->u.vec.ptr = keel_arena_memdup(a, v->u.vec.ptr, v->u.vec.len * sizeof(float));
      return out->u.vec.ptr ? KEEL_OK : KEEL_ENOMEM;
    case KEEL_FIELD_IDS:
      if (v->u.ids.len > SIZE_MAX / sizeof(int64_t)) return KEEL_ENOMEM;
      out->u.ids.ptr = keel_arena_memdup(a, v->u.ids.ptr, v->u.ids.len * sizeof(int64_t));
      return out->u.ids.ptr ? KEEL_OK : KEEL_ENOMEM;
    case KEEL_FIELD_INT:
    case KEEL_FIELD_FLOAT:
      return KEEL_OK;
    case KEEL_FIELD_NONE:
      break;
  }
  return KEEL_EINVAL;
}

keel_status keel_event_set(keel_event_t *e, keel_field_id id, const keel_value *v) {
  if (!e || !v) return KEEL_EINVAL;
  /* An id the schema never gave out would have no name to encode under
   * (the encode failed later, far from the mistake). */
  if (id >= atomic_load_explicit(&e->schema->count, memory_order_acquire)) return KEEL_EINVAL;
  keel_value copy;
  keel_status st = copy_value(e->arena, v, &copy);
  if (st != KEEL_OK) return st;
  field *f = find(e, id);
  if (f) {
    f->v = copy;
    return KEEL_OK;
  }
  if (e->n == e->cap) {
    field *nf = keel_arena_alloc(e->arena, 2 * e->cap * sizeof *nf);
    if (!nf) return KEEL_ENOMEM;
    memcpy(nf, e->fields, e->n * sizeof *nf);
    e->fields = nf;
    e->cap *= 2;
  }
  e->fields[e->n].id = id;
  e->fields[e->n].v = copy;
  e->n++;
  return KEEL_OK;
}

keel_status keel_event_set_int(keel_event_t *e, keel_field_id id, int64_t v) {
  keel_value x = {.type = KEEL_FIELD_INT, .u.i = v};
  return keel_event_set(e, id, &x);
}

keel_status keel_event_set_float(keel_event_t *e, keel_field_id id, double v) {
  keel_value x = {.type = KEEL_FIELD_FLOAT, .u.f = v};
  return keel_event_set(e, id, &x);
}

keel_status keel_event_set_string(keel_event_t *e, keel_field_id id, const char *s, size_t n) {
  keel_value x = {.type = KEEL_FIELD_STRING, .u.str = {s, n}};
  return keel_event_set(e, id, &x);
}

keel_status keel_event_set_vector(keel_event_t *e, keel_field_id id, const float *v, size_t n) {
  keel_value x = {.type = KEEL_FIELD_VECTOR, .u.vec = {v, n}};
  return keel_event_set(e, id, &x);
}

keel_status keel_event_set_ids(keel_event_t *e, keel_field_id id, const int64_t *v, size_t n) {
  keel_value x = {.type = KEEL_FIELD_IDS, .u.ids = {v, n}};
  return keel_event_set(e, id, &x);
}

void keel_event_unset(keel_event_t *e, keel_field_id id) {
  field *f = find(e, id);
  if (!f) return;
  size_t i = (size_t)(f - e->fields);
  memmove(f, f + 1, (e->n - i - 1) * sizeof *f);
  e->n--;
}

keel_status keel_event_fail(keel_event_t *e, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  const char *r = keel_arena_strndup(e->arena, buf, (size_t)n);
  e->reason = r ? r : "event failed (no memory for the reason)";
  return KEEL_EREJECTED;
}

const char *keel_event_reason(const keel_event_t *e) { return e->reason; }

keel_status keel_event_set_others(keel_event_t *e, const char *json, size_t len) {
  if (!e || (!json && len)) return KEEL_EINVAL;
  char *copy = NULL;
  if (len && !(copy = keel_arena_alloc(e->arena, len))) return KEEL_ENOMEM;
  if (len) memcpy(copy, json, len);
  e->others = copy;
  e->others_len = len;
  e->others_in_scratch = false;
  return KEEL_OK;
}

const char *keel_event_others(const keel_event_t *e, size_t *len) {
  if (len) *len = e ? e->others_len : 0;
  return e ? e->others : NULL;
}

/* ---- canonical encoding ---- */

static size_t payload_size(const keel_value *v) {
  switch (v->type) {
    case KEEL_FIELD_INT:
    case KEEL_FIELD_FLOAT: return 8;
    case KEEL_FIELD_STRING: return 4 + v->u.str.len;
    case KEEL_FIELD_VECTOR: return 4 + 4 * v->u.vec.len;
    case KEEL_FIELD_IDS: return 4 + 8 * v->u.ids.len;
    case KEEL_FIELD_NONE: break;
  }
  return 0;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) *p++ = (uint8_t)(v >> (8 * i));
  return p;
}

static uint64_t get_be(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
  return v;
}

static uint8_t *put_payload(uint8_t *p, const keel_value *v) {
  switch (v->type) {
    case KEEL_FIELD_INT: return put_be(p, (uint64_t)v->u.i, 8);
    case KEEL_FIELD_FLOAT: {
      double d = isnan(v->u.f) ? NAN : v->u.f;
      uint64_t bits;
      memcpy(&bits, &d, 8);
      return put_be(p, bits, 8);
    }
    case KEEL_FIELD_STRING:
      p = put_be(p, v->u.str.len, 4);
      if (v->u.str.len) memcpy(p, v->u.str.ptr, v->u.str.len);
      return p + v->u.str.len;
    case KEEL_FIELD_VECTOR:
      p = put_be(p, v->u.vec.len, 4);
      for (size_t i = 0; i < v->u.vec.len; i++) {
        float f = isnan(v->u.vec.ptr[i]) ? NAN : v->u.vec.ptr[i];
        uint32_t bits;
        memcpy(&bits, &f, 4);
        p = put_be(p, bits, 4);
      }
      return p;
    case KEEL_FIELD_IDS:
      p = put_be(p, v->u.ids.len, 4);
      for (size_t i = 0; i < v->u.ids.len; i++) p = put_be(p, (uint64_t)v->u.ids.ptr[i], 8);
      return p;
    case KEEL_FIELD_NONE: break;
  }
  return p;
}

keel_status keel_event_encode(const keel_event_t *e, const keel_field_id *ids, size_t n, keel_arena_t *a,
                              const uint8_t **out, size_t *len) {
  if (!e || (n && !ids) || !a || !out || !len) return KEEL_EINVAL;
  size_t known = atomic_load_explicit(&e->schema->count, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (ids[i] >= known) return KEEL_EINVAL; /* no name: distinct ids would encode alike */
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    keel_value v = {.type = KEEL_FIELD_NONE};
    keel_event_get(e, ids[i], &v);
    if (v.type != KEEL_FIELD_NONE && payload_size(&v) > UINT32_MAX) return KEEL_ELIMIT;
    total += 2 + strlen(keel_schema_name(e->schema, ids[i])) + 1 + payload_size(&v);
  }
  uint8_t *buf = keel_arena_alloc(a, total ? total : 1), *p = buf;
  if (!buf) return KEEL_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    keel_value v = {.type = KEEL_FIELD_NONE};
    keel_event_get(e, ids[i], &v);
    const char *name = keel_schema_name(e->schema, ids[i]);
    size_t nl = strlen(name);
    p = put_be(p, nl, 2);
    memcpy(p, name, nl);
    p += nl;
    *p++ = (uint8_t)v.type;
    p = put_payload(p, &v);
  }
  *out = buf;
  *len = total;
  return KEEL_OK;
}

/* Decodes one field's payload at p (n bytes left) into v, pointing into a
 * copy owned by the event's arena through keel_event_set. */
/* The bytes a payload of `type` takes at p (n bytes left): *used, and its
 * element count and width for the array types. KEEL_EPARSE when it does
 * not fit or the type is unknown. */
static keel_status payload_span(uint8_t type, const uint8_t *p, size_t n, size_t *used, size_t *count, size_t *width) {
  if (type == KEEL_FIELD_INT || type == KEEL_FIELD_FLOAT) {
    if (n < 8) return KEEL_EPARSE;
    *used = 8;
    return KEEL_OK;
  }
  if (type < KEEL_FIELD_STRING || type > KEEL_FIELD_IDS || n < 4) return KEEL_EPARSE;
  *count = (size_t)get_be(p, 4);
  *width = type == KEEL_FIELD_STRING ? 1 : type == KEEL_FIELD_VECTOR ? 4 : 8;
  if (*count > (n - 4) / *width) return KEEL_EPARSE;
  *used = 4 + *count * *width;
  return KEEL_OK;
}

static keel_status decode_payload(keel_event_t *e, keel_field_id id, uint8_t type, const uint8_t *p, size_t n,
                                  size_t *used) {
  keel_value v = {.type = (keel_field_type)type};
  size_t count = 0, width = 0;
  if (payload_span(type, p, n, used, &count, &width) != KEEL_OK) return KEEL_EPARSE;
  if (type == KEEL_FIELD_INT || type == KEEL_FIELD_FLOAT) {
    uint64_t bits = get_be(p, 8);
    if (type == KEEL_FIELD_INT) v.u.i = (int64_t)bits;
    else memcpy(&v.u.f, &bits, 8);
    return keel_event_set(e, id, &v);
  }
  p += 4;
  if (type == KEEL_FIELD_STRING) return keel_event_set_string(e, id, (const char *)p, count);
  void *tmp = keel_arena_alloc(e->arena, count * width + 1);
  if (!tmp) return KEEL_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    uint64_t bits = get_be(p + i * width, (int)width);
    if (width == 4) {
      uint32_t b32 = (uint32_t)bits;
      memcpy((float *)tmp + i, &b32, 4);
    } else {
      ((int64_t *)tmp)[i] = (int64_t)bits;
    }
  }
  return width == 4 ? keel_event_set_vector(e, id, tmp, count) : keel_event_set_ids(e, id, tmp, count);
}

/* Reads the header of the field at bytes[*i] (a name of *nl bytes at
 * *name, then its type) and moves *i past it. KEEL_EPARSE when it does not fit. */
static keel_status field_head(const uint8_t *bytes, size_t len, size_t *i, const char **name, size_t *nl,
                              uint8_t *type) {
  if (len - *i < 3) return KEEL_EPARSE;
  *nl = (size_t)get_be(bytes + *i, 2);
  *i += 2;
  if (*nl == 0 || len - *i < *nl + 1) return KEEL_EPARSE;
  *name = (const char *)bytes + *i;
  *i += *nl;
  *type = bytes[(*i)++];
  return KEEL_OK;
}

keel_status keel_event_encoding_check(const keel_schema_t *s, const uint8_t *bytes, size_t len,
                                     const keel_field_id *ids, const keel_field_type *types, size_t n) {
  if (!s || (len && !bytes) || (n && !ids)) return KEEL_EINVAL;
  size_t i = 0;
  for (size_t k = 0; k < n; k++) { /* what keel_event_encode writes: each of ids, in order */
    const char *name;
    size_t nl, used, count, width;
    uint8_t type;
    keel_field_id id;
    if (field_head(bytes, len, &i, &name, &nl, &type) != KEEL_OK || keel_schema_lookup(s, name, nl, &id) != KEEL_OK ||
        id != ids[k])
      return KEEL_EPARSE;
    if (type == KEEL_FIELD_NONE) continue;
    if (types && type != (uint8_t)types[k]) return KEEL_EPARSE;
    if (payload_span(type, bytes + i, len - i, &used, &count, &width) != KEEL_OK) return KEEL_EPARSE;
    i += used;
  }
  return i == len ? KEEL_OK : KEEL_EPARSE;
}

keel_status keel_event_decode(keel_event_t *e, const uint8_t *bytes, size_t len) {
  return keel_event_decode_unset(e, bytes, len, NULL, 0);
}

keel_status keel_event_decode_unset(keel_event_t *e, const uint8_t *bytes, size_t len, const keel_field_id *ids,
                                    size_t n) {
  if (!e || (len && !bytes) || (n && !ids)) return KEEL_EINVAL;
  size_t i = 0;
  while (i < len) {
    const char *name;
    size_t nl;
    uint8_t type;
    keel_field_id id;
    if (field_head(bytes, len, &i, &name, &nl, &type) != KEEL_OK) return KEEL_EPARSE;
    keel_status st = keel_schema_intern(e->schema, name, nl, &id);
    if (st != KEEL_OK) return st == KEEL_EINVAL ? KEEL_EPARSE : st;
    if (type == KEEL_FIELD_NONE) {
      for (size_t k = 0; k < n; k++)
        if (ids[k] == id) keel_event_unset(e, id);
      continue;
    }
    size_t used = 0;
    st = decode_payload(e, id, type, bytes + i, len - i, &used);
    if (st != KEEL_OK) return st;
    i += used;
  }
  return KEEL_OK;
}
