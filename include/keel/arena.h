/* keel/arena.h — per-event bump allocator: reset, never freed piecemeal.
 *
 * A stage's temporaries for one event come from the event's arena and die
 * together when the event leaves the sink and the arena is reset. Nothing may
 * keep a pointer into an arena past that reset. Reset keeps the first chunk
 * and returns the rest to the allocator, so an arena that once held a huge
 * event does not stay huge. Thread safety: one thread at a time. */
#ifndef KEEL_ARENA_H
#define KEEL_ARENA_H

#include <stddef.h>

#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_arena keel_arena_t;

/* Creates an arena whose chunks are counted under `tag` and are at least
 * `chunk_size` bytes (0 picks 4 KiB). *out is owned (keel_arena_destroy). */
KEEL_EXTERN keel_status keel_arena_create(keel_mem_tag tag, size_t chunk_size, keel_arena_t **out);

/* Frees every chunk. NULL is a no-op. */
KEEL_EXTERN void keel_arena_destroy(keel_arena_t *a);

/* `size` bytes, 16-byte aligned, borrowed from the arena: they live until
 * its next reset or destroy (the same for the copies below).
 * NULL when memory runs out. */
KEEL_EXTERN void *keel_arena_alloc(keel_arena_t *a, size_t size);

/* Copies n bytes and adds a NUL (borrowed from the arena). NULL on ENOMEM. */
KEEL_EXTERN char *keel_arena_strndup(keel_arena_t *a, const char *s, size_t n);

/* Copies n bytes (borrowed from the arena). NULL on ENOMEM. */
KEEL_EXTERN void *keel_arena_memdup(keel_arena_t *a, const void *p, size_t n);

/* Forgets everything allocated since creation; keeps the first chunk. */
KEEL_EXTERN void keel_arena_reset(keel_arena_t *a);

/* Bytes handed out since the last reset, and bytes held in chunks. */
KEEL_EXTERN size_t keel_arena_used(const keel_arena_t *a);
KEEL_EXTERN size_t keel_arena_held(const keel_arena_t *a);

#ifdef __cplusplus
}
#endif
#endif
