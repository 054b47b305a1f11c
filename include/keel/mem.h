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
  uint64_t allocs; /* successful allocations (a realloc resizes: neither) */
  uint64_t frees;  /* frees; allocs - frees = live blocks */
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
 * with keel_mem_free, or NULL on failure (size overflow, a tag no
 * keel_mem_tag_register returned, malloc failure or an injected fault).
 * 16-byte aligned. */
KEEL_EXTERN void *keel_mem_alloc(keel_mem_tag tag, size_t size);

/* As keel_mem_alloc, zero-filled, with n * size checked for overflow. */
KEEL_EXTERN void *keel_mem_calloc(keel_mem_tag tag, size_t n, size_t size);

/* Resizes a block from keel_mem_alloc (or NULL: then it allocates). The
 * block keeps its original tag. On failure returns NULL and `p` is intact. */
KEEL_EXTERN void *keel_mem_realloc(keel_mem_tag tag, void *p, size_t size);

/* Frees a block from keel_mem_alloc/calloc/realloc/strdup. NULL is a no-op. */
KEEL_EXTERN void keel_mem_free(void *p);

/* A block without keel_mem's 16-byte header, for owners of many small
 * objects that know each one's tag and size (cache entries): `size` bytes
 * counted under `tag` when tracking is on (*counted says whether), 16-byte
 * aligned, owned; NULL on failure. Free it with keel_mem_free_sized, giving
 * the same tag, size and counted flag. Not attributed to a call site. */
KEEL_EXTERN void *keel_mem_alloc_sized(keel_mem_tag tag, size_t size, int *counted);
KEEL_EXTERN void keel_mem_free_sized(keel_mem_tag tag, void *p, size_t size, int counted);

/* Copies a NUL-terminated string (owned, free with keel_mem_free); NULL
 * for a NULL string. */
KEEL_EXTERN char *keel_mem_strdup(keel_mem_tag tag, const char *s);
KEEL_EXTERN char *keel_mem_strdup_at(keel_mem_tag tag, const char *s, const char *file, int line);

/* Copies n bytes of s and adds a NUL (owned, free with keel_mem_free). */
KEEL_EXTERN char *keel_mem_strndup(keel_mem_tag tag, const char *s, size_t n);

/* Requested size of a live block. */
KEEL_EXTERN size_t keel_mem_size(const void *p);

/* Fills *out with the merged counters of one tag. Current is exact; peak
 * may miss a rise of up to KEEL_MEM_PEAK_SLACK bytes per thread that used
 * the tag, when it came and went between two publications (threads publish
 * their running balance when it moves by more than that). */
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

/* ---- tracking switch ------------------------------------------------------ */

/* Turns per-tag counting on (the default) or off for allocations made from
 * now on. A block remembers whether it was counted, so frees stay exact
 * whenever the switch flips. Meant to be set at start-up (the overhead
 * benchmark flips it between runs); any thread may call it. */
KEEL_EXTERN void keel_mem_set_tracking(int on);
KEEL_EXTERN int keel_mem_tracking(void);

/* ---- declared bounds ------------------------------------------------------- */

/* The owner of a tag may declare the most it will hold (a cache's byte
 * bound, say); 0 means unbounded (the default). The leak detector treats a
 * bounded tag's growth below its bound as filling up, not as a leak. */
KEEL_EXTERN keel_status keel_mem_tag_set_bound(keel_mem_tag tag, uint64_t bytes);
KEEL_EXTERN uint64_t keel_mem_tag_bound(keel_mem_tag tag);

/* ---- the whole process ----------------------------------------------------- */

/* The header keel_mem puts in front of every block of keel_mem_alloc,
 * calloc, realloc and strdup (not keel_mem_alloc_sized's). */
#define KEEL_MEM_HEADER_BYTES 16

/* Estimated bytes of allocator bookkeeping per live block (keel's header
 * plus malloc's chunk header and rounding, on average), and per block of
 * keel_mem_alloc_sized (malloc's alone). */
#define KEEL_MEM_BLOCK_OVERHEAD 32
#define KEEL_MEM_HEADERLESS_OVERHEAD 16

/* Process-wide figures: tracked bytes, what they cost in the heap, RSS. */
typedef struct keel_mem_process {
  int64_t tracked_current; /* live requested bytes, every tag */
  int64_t tracked_peak;    /* see keel_mem_tag_stats for its precision */
  uint64_t live_blocks;    /* tracked allocations not yet freed */
  uint64_t headerless_blocks; /* of live_blocks: from keel_mem_alloc_sized (no keel header) */
  int64_t footprint;       /* tracked_current + the blocks' estimated overhead (above) */
  uint64_t rss_bytes;      /* resident set size now (0 without /proc) */
  uint64_t rss_peak_bytes; /* VmHWM */
  int64_t rss_gap;         /* rss_bytes - tracked_current: fragmentation, allocator caches,
                              untracked libraries, code */
} keel_mem_process;

/* Fills *out. Reads /proc/self/status once. */
KEEL_EXTERN void keel_mem_process_stats(keel_mem_process *out);

/* ---- snapshots and diffs (the tracemalloc compare_to workflow) ------------ */

typedef struct keel_mem_snapshot keel_mem_snapshot_t;

/* How a diff groups blocks: by tag, or by the call site (file:line) that
 * allocated them (call-site builds only: see KEEL_MEM_CALLSITES below). */
typedef enum keel_mem_group { KEEL_MEM_BY_TAG = 0, KEEL_MEM_BY_SITE = 1 } keel_mem_group;

/* One line of a diff. */
typedef struct keel_mem_diff {
  char where[96];        /* the tag's name, or "file:line" */
  keel_mem_tag tag;      /* the tag (of the site's first allocation when by site) */
  int64_t before, after; /* live bytes in the two snapshots */
  int64_t growth;        /* after - before */
  int64_t blocks_growth; /* live blocks after - before */
} keel_mem_diff;

/* Takes a snapshot of every tag's (and, in a call-site build, every site's)
 * live bytes and blocks. *out is owned (keel_mem_snapshot_destroy); its own
 * memory is not tracked, so a diff of two shows only what happened between
 * them. KEEL_EINVAL for NULL, KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_mem_snapshot(keel_mem_snapshot_t **out);
KEEL_EXTERN void keel_mem_snapshot_destroy(keel_mem_snapshot_t *s);

/* Compares two snapshots (borrowed): fills out[0..cap) with the groups that
 * changed, largest growth first (ties: by name), and sets *n to how many
 * changed (may exceed cap). KEEL_EUNSUPPORTED for KEEL_MEM_BY_SITE in a build
 * without call sites; KEEL_EINVAL for NULL arguments. */
KEEL_EXTERN keel_status keel_mem_snapshot_compare(const keel_mem_snapshot_t *before, const keel_mem_snapshot_t *after,
                                                  keel_mem_group by, keel_mem_diff *out, size_t cap, size_t *n);

/* ---- call sites ------------------------------------------------------------ */

/* The allocation functions with the caller's file and line (`file` is
 * borrowed and must be a string literal that lives as long as the process,
 * as __FILE__ is). Counting by site costs an atomic add on a shared counter,
 * so it is a build option: with -DKEEL_MEM_CALLSITES=1 (CMake option
 * KEEL_MEM_CALLSITES) the macros below route every keel_mem_alloc, calloc,
 * realloc, strdup and strndup call through these; the default build calls
 * the plain functions and pays nothing. At most KEEL_MEM_MAX_SITES sites are
 * told apart; later ones count as "(other sites)". */
#define KEEL_MEM_MAX_SITES 4096
KEEL_EXTERN void *keel_mem_alloc_at(keel_mem_tag tag, size_t size, const char *file, int line);
KEEL_EXTERN void *keel_mem_calloc_at(keel_mem_tag tag, size_t n, size_t size, const char *file, int line);
KEEL_EXTERN void *keel_mem_realloc_at(keel_mem_tag tag, void *p, size_t size, const char *file, int line);
KEEL_EXTERN char *keel_mem_strndup_at(keel_mem_tag tag, const char *s, size_t n, const char *file, int line);

/* 1 when this library was built with call sites. */
KEEL_EXTERN int keel_mem_callsites_enabled(void);

/* Live bytes of the tag's top sites, largest first, into out[0..cap);
 * returns how many were written (0 in a build without call sites). */
KEEL_EXTERN size_t keel_mem_tag_top_sites(keel_mem_tag tag, keel_mem_diff *out, size_t cap);

#if defined(KEEL_MEM_CALLSITES) && KEEL_MEM_CALLSITES && !defined(KEEL_MEM_NO_SITE_MACROS)
#define keel_mem_alloc(tag, size) keel_mem_alloc_at((tag), (size), __FILE__, __LINE__)
#define keel_mem_calloc(tag, n, size) keel_mem_calloc_at((tag), (n), (size), __FILE__, __LINE__)
#define keel_mem_realloc(tag, p, size) keel_mem_realloc_at((tag), (p), (size), __FILE__, __LINE__)
#define keel_mem_strndup(tag, s, n) keel_mem_strndup_at((tag), (s), (n), __FILE__, __LINE__)
#define keel_mem_strdup(tag, s) keel_mem_strdup_at((tag), (s), __FILE__, __LINE__)
#endif

#ifdef __cplusplus
}
#endif
#endif
