/* arena.c — chunked bump allocator.
 *
 * Chunks form a singly linked list, newest first. An allocation bumps the
 * head chunk; when it does not fit, a new chunk of max(chunk_size, request)
 * is pushed. Reset frees every chunk but the oldest (the first, of the
 * configured size) and rewinds it: retention after a reset is bounded by
 * chunk_size whatever the largest event was. */
#include "keel/arena.h"

#include <stdint.h>
#include <string.h>

typedef struct chunk {
  struct chunk *next;
  size_t cap;
  size_t used;
  _Alignas(16) unsigned char data[];
} chunk;

struct keel_arena {
  chunk *head;   /* newest chunk, allocations bump it */
  chunk *first;  /* the oldest chunk, kept across resets */
  size_t chunk_size;
  size_t used;   /* bytes handed out since reset */
  size_t held;   /* bytes in chunks */
  keel_mem_tag tag;
};

static chunk *chunk_new(keel_mem_tag tag, size_t cap) {
  if (cap > SIZE_MAX / 2) return NULL;
  chunk *c = keel_mem_alloc(tag, sizeof(chunk) + cap);
  if (!c) return NULL;
  c->next = NULL;
  c->cap = cap;
  c->used = 0;
  return c;
}

keel_status keel_arena_create(keel_mem_tag tag, size_t chunk_size, keel_arena_t **out) {
  if (!out) return KEEL_EINVAL;
  if (chunk_size == 0) chunk_size = 4096;
  keel_arena_t *a = keel_mem_alloc(tag, sizeof *a);
  if (!a) return KEEL_ENOMEM;
  a->first = a->head = chunk_new(tag, chunk_size);
  if (!a->first) {
    keel_mem_free(a);
    return KEEL_ENOMEM;
  }
  a->chunk_size = chunk_size;
  a->used = 0;
  a->held = chunk_size;
  a->tag = tag;
  *out = a;
  return KEEL_OK;
}

void keel_arena_destroy(keel_arena_t *a) {
  if (!a) return;
  for (chunk *c = a->head, *n; c; c = n) {
    n = c->next;
    keel_mem_free(c);
  }
  keel_mem_free(a);
}

void *keel_arena_alloc(keel_arena_t *a, size_t size) {
  size_t need = (size + 15u) & ~(size_t)15u;
  if (need < size) return NULL;
  chunk *c = a->head;
  if (c->cap - c->used < need) {
    size_t cap = need > a->chunk_size ? need : a->chunk_size;
    chunk *n = chunk_new(a->tag, cap);
    if (!n) return NULL;
    n->next = c;
    a->head = c = n;
    a->held += cap;
  }
  void *p = c->data + c->used;
  c->used += need;
  a->used += need;
  return p;
}

void *keel_arena_memdup(keel_arena_t *a, const void *p, size_t n) {
  void *d = keel_arena_alloc(a, n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

char *keel_arena_strndup(keel_arena_t *a, const char *s, size_t n) {
  if (n == SIZE_MAX) return NULL;
  char *d = keel_arena_alloc(a, n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

void keel_arena_reset(keel_arena_t *a) {
  for (chunk *c = a->head, *n; c != a->first; c = n) {
    n = c->next;
    keel_mem_free(c);
  }
  a->head = a->first;
  a->first->used = 0;
  a->used = 0;
  a->held = a->first->cap;
}

size_t keel_arena_used(const keel_arena_t *a) { return a->used; }
size_t keel_arena_held(const keel_arena_t *a) { return a->held; }
