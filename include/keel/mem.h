/* keel/mem.h — the tracking allocator every part of keel allocates through.
 *
 * Each allocation carries a tag (a stage by name, a cache, queues, arenas,
 * io, ...). Counting is per thread, in cache-line-padded counters that only
 * their own thread writes; reads merge every thread's counters. A small
 * header in front of each block records its size and tag, so a free needs
 * no tag and counts against the tag that allocated. Allocation returns NULL
 * on failure and never aborts; a test-only switch fails the Nth allocation.
 *
 * Process-wide state (the tag table, the list of thread counters, the fault
 * injector) is the allocator's hook state, set up on first use.
 * Thread safety: every function may be called from any thread. */
#ifndef KEEL_MEM_H
#define KEEL_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "keel/export.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tags are small integers; the fixed ones below always exist, stages and
 * caches register their own by name. */
typedef uint16_t keel_mem_tag;

enum {
  KEEL_MEM_OTHER = 0, /* anything not otherwise tagged */
  KEEL_MEM_QUEUE,     /* batches and queues between threads */
  KEEL_MEM_ARENA,     /* per-event arenas */
  KEEL_MEM_IO,        /* readers, writers, line buffers */
  KEEL_MEM_CACHE,     /* cache structures not owned by a named cache */
  KEEL_MEM_CATALOG,   /* the recommendation engine's product catalog */
  KEEL_MEM_PIPELINE,  /* pipeline, registry, config */
  KEEL_MEM_FIXED_TAGS
};

#define KEEL_MEM_MAX_TAGS 128

/* Counters of one tag (or of the whole process). */
typedef struct keel_mem_stats {
  int64_t current; /* live bytes (requested sizes) */
  int64_t peak;    /* highest current seen (see keel_mem_tag_stats) */
  uint64_t allocs; /* successful allocations */
  uint64_t frees;  /* frees */
} keel_mem_stats;

/* Finds or creates the tag named `name` (borrowed; copied). Idempotent: the
 * same name always gives the same tag. KEEL_ELIMIT when KEEL_MEM_MAX_TAGS
 * are in use, KEEL_EINVAL for an empty name or one over 71 bytes. */
KEEL_EXTERN keel_status keel_mem_tag_register(const char *name, keel_mem_tag *out);

/* The name of a tag (borrowed, lives as long as the process); "?" if unknown. */
KEEL_EXTERN const char *keel_mem_tag_name(keel_mem_tag tag);

/* Number of tags registered so far (fixed ones included). */
KEEL_EXTERN unsigned keel_mem_tag_count(void);

/* Allocates `size` bytes counted under `tag`. Returns owned memory, freed
 * with keel_mem_free, or NULL on failure (size overflow, malloc failure or
 * an injected fault). 16-byte aligned. */
KEEL_EXTERN void *keel_mem_alloc(keel_mem_tag tag, size_t size);

/* As keel_mem_alloc, zero-filled, with n * size checked for overflow. */
KEEL_EXTERN void *keel_mem_calloc(keel_mem_tag tag, size_t n, size_t size);

/* Resizes a block from keel_mem_alloc (or NULL: then it allocates). The
 * block keeps its original tag. On failure returns NULL and `p` is intact. */
KEEL_EXTERN void *keel_mem_realloc(keel_mem_tag tag, void *p, size_t size);

/* Frees a block from keel_mem_alloc/calloc/realloc/strdup. NULL is a no-op. */
KEEL_EXTERN void keel_mem_free(void *p);

/* Copies a NUL-terminated string (owned, free with keel_mem_free). */
KEEL_EXTERN char *keel_mem_strdup(keel_mem_tag tag, const char *s);

/* Copies n bytes of s and adds a NUL (owned, free with keel_mem_free). */
KEEL_EXTERN char *keel_mem_strndup(keel_mem_tag tag, const char *s, size_t n);

/* Requested size of a live block. */
KEEL_EXTERN size_t keel_mem_size(const void *p);

/* Fills *out with the merged counters of one tag. Peak is exact for a tag
 * used by one thread and within KEEL_MEM_PEAK_SLACK bytes per thread
 * otherwise (threads publish their running balance at that granularity). */
#define KEEL_MEM_PEAK_SLACK (64 * 1024)
KEEL_EXTERN keel_status keel_mem_tag_stats(keel_mem_tag tag, keel_mem_stats *out);

/* Fills *out with the process-wide counters of everything tracked. */
KEEL_EXTERN void keel_mem_total(keel_mem_stats *out);

/* Resident set size of the process now, and its peak (VmHWM), from /proc.
 * 0 where /proc cannot be read. */
KEEL_EXTERN uint64_t keel_mem_rss_bytes(void);
KEEL_EXTERN uint64_t keel_mem_rss_peak_bytes(void);

/* Test-only fault injection: the n-th allocation from now (1 = the next)
 * fails; with `persist` every allocation after it fails too. n = 0 turns
 * injection off. keel_mem_fault_hits() counts the failures injected. */
KEEL_EXTERN void keel_mem_fail_after(uint64_t n, int persist);
KEEL_EXTERN uint64_t keel_mem_fault_hits(void);

#ifdef __cplusplus
}
#endif
#endif
