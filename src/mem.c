/* mem.c — tracking allocator: per-thread counters merged on read.
 *
 * Layout of a block: a 16-byte header {size, tag, magic} in front of the
 * caller's bytes. The header keeps the 16-byte alignment malloc gives.
 *
 * Counting. Each thread owns one `tls_counters` holding, per tag, its net
 * balance of bytes (allocated minus freed by this thread; may go negative when
 * another thread allocated), allocation and free counts. Only the owner
 * writes them (relaxed atomic stores, plain moves on x86), any thread reads
 * them, so the hot path has no lock and no contended atomic. A reader sums
 * the live threads plus `retired` (what exited threads left behind).
 *
 * Peak. A true peak needs a global view at every moment, which per-thread
 * counters do not have. Each thread therefore publishes its balance of a tag
 * to a shared atomic whenever it has moved more than KEEL_MEM_PEAK_SLACK since
 * the last publication, and the peak is the maximum ever published: exact for
 * one thread within the slack, and within slack x threads otherwise.
 *
 * Tracking switch. `g.tracking` (relaxed atomic) decides whether a new block
 * is counted; the block's magic records the decision, so a free un-counts
 * exactly the blocks that were counted, whenever the switch flips.
 *
 * Call sites (KEEL_MEM_CALLSITES builds). The *_at functions find the site
 * (file pointer, line) in an append-only open-addressing table and keep its
 * index in the block header; per-site bytes and blocks are shared atomics
 * (one contended add per allocation: the reason it is a build option).
 *
 * Guards, one line per shared field:
 *   g.threads, tls_counters.next/prev    g.lock
 *   g.names[], g.ntags                   appends under g.lock; names written
 *                                        before the release store of g.ntags,
 *                                        read after an acquire load
 *   tag_counters.balance/allocs/frees    written by the owning thread only
 *                                        (relaxed), read by anyone (relaxed)
 *   shared_tag.*                         relaxed atomics (sums and maxima)
 *   g.bound[], g.tracking                relaxed atomics
 *   g.sites[i].file                      written once under g.lock after its
 *                                        line and tag (release); read acquire
 *   g.sites[i].bytes/blocks              relaxed atomic adds */
#define KEEL_MEM_NO_SITE_MACROS 1
#include "keel/mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR ((unsigned)KEEL_MEM_HEADER_BYTES)
#define MAGIC 0x6b6du           /* a counted block */
#define MAGIC_UNCOUNTED 0x6b75u /* a block allocated while tracking was off */
#define NAME_MAX_LEN 72 /* a tag name fits 71 bytes: every stage name (64) */

typedef struct hdr {
  uint64_t size;
  uint16_t tag;
  uint16_t magic;
  uint32_t site; /* index in g.sites (0: "(other sites)", the overflow), or SITE_NONE */
} hdr;
#define SITE_NONE UINT32_MAX /* allocated without a call site */
_Static_assert(sizeof(hdr) == HDR, "header must keep 16-byte alignment");

typedef struct tag_counters {
  _Atomic int64_t balance;  /* bytes allocated minus freed by this thread */
  _Atomic uint64_t allocs;
  _Atomic uint64_t frees;
  int64_t published;        /* owner-only: balance last published */
} tag_counters;

typedef struct tls_counters {
  struct tls_counters *next, *prev; /* guarded by g.lock */
  tag_counters t[KEEL_MEM_MAX_TAGS];
  tag_counters total;
  tag_counters headerless; /* the number of blocks of keel_mem_alloc_sized (their bytes are in t and total) */
} tls_counters;

typedef struct site {
  _Atomic(const char *) file; /* NULL: free slot; set once, last (release) */
  int line;
  keel_mem_tag tag;           /* the tag of the site's first allocation */
  _Atomic int64_t bytes, blocks;
} site;

typedef struct shared_tag {
  _Atomic int64_t published; /* sum of all threads' published balances */
  _Atomic int64_t peak;
  _Atomic int64_t retired_balance;
  _Atomic uint64_t retired_allocs;
  _Atomic uint64_t retired_frees;
} shared_tag;

static struct {
  pthread_mutex_t lock;
  pthread_once_t once;
  pthread_key_t key;
  tls_counters *threads;
  _Atomic unsigned ntags;
  char names[KEEL_MEM_MAX_TAGS][NAME_MAX_LEN];
  shared_tag tags[KEEL_MEM_MAX_TAGS];
  shared_tag total;
  shared_tag headerless;
  _Atomic uint64_t fail_countdown; /* 0 = off */
  _Atomic int fail_persist;
  _Atomic int failing;             /* persistent failure tripped */
  _Atomic uint64_t fault_hits;
  _Atomic int tracking;            /* 1: count new blocks */
  _Atomic uint64_t bound[KEEL_MEM_MAX_TAGS];
  site sites[KEEL_MEM_MAX_SITES];  /* [0] is "(other sites)", the overflow */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT, .tracking = 1};

/* Initial-exec: keel is built position-independent, where a thread-local
 * otherwise costs a call into the dynamic linker's model (and the register
 * saves around it) at every counted allocation; this is a fixed offset from
 * the thread pointer (8 bytes of glibc's static TLS space). */
static _Thread_local __attribute__((tls_model("initial-exec"))) tls_counters *tls;

static void fold_counters(shared_tag *s, tag_counters *c) {
  atomic_fetch_add_explicit(&s->retired_balance, atomic_load_explicit(&c->balance, memory_order_relaxed),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->retired_allocs, atomic_load_explicit(&c->allocs, memory_order_relaxed),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->retired_frees, atomic_load_explicit(&c->frees, memory_order_relaxed),
                            memory_order_relaxed);
}

static void publish_peak(shared_tag *s, int64_t delta) {
  int64_t now = atomic_fetch_add_explicit(&s->published, delta, memory_order_relaxed) + delta;
  int64_t old = atomic_load_explicit(&s->peak, memory_order_relaxed);
  while (now > old &&
         !atomic_compare_exchange_weak_explicit(&s->peak, &old, now, memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* Publishes what c holds beyond what it last published to s's running
 * total (and its peak). */
static void publish_rest(shared_tag *s, tag_counters *c) {
  int64_t rest = atomic_load_explicit(&c->balance, memory_order_relaxed) - c->published;
  if (rest) publish_peak(s, rest);
  c->published += rest;
}

/* Thread exit: fold this thread's counters into `retired` and unlink it, both
 * under the lock so a concurrent reader (merge, which reads the retired
 * counters under it too) sees the counts exactly once. What the thread had
 * not yet published goes to the shared running totals first: left out, it
 * stayed there for good, and with short-lived threads that freed what
 * others allocated the peak drifted upward without bound. `tls` is cleared
 * before the block goes: another key's destructor that runs later in this
 * thread's exit and frees keel memory counts into fresh counters (glibc
 * runs this destructor again for them) instead of into freed memory. */
static void thread_exit(void *p) {
  tls_counters *c = p;
  pthread_mutex_lock(&g.lock);
  for (unsigned i = 0; i < KEEL_MEM_MAX_TAGS; i++) {
    publish_rest(&g.tags[i], &c->t[i]);
    fold_counters(&g.tags[i], &c->t[i]);
  }
  publish_rest(&g.total, &c->total);
  fold_counters(&g.total, &c->total);
  fold_counters(&g.headerless, &c->headerless);
  if (c->prev) c->prev->next = c->next; else g.threads = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&g.lock);
  if (tls == c) tls = NULL;
  free(c);
}

static const char *const fixed_names[KEEL_MEM_FIXED_TAGS] = {"other", "queue", "arena", "io",
                                                             "cache", "catalog", "pipeline"};

static void init_once(void) {
  pthread_key_create(&g.key, thread_exit);
  for (unsigned i = 0; i < KEEL_MEM_FIXED_TAGS; i++) snprintf(g.names[i], NAME_MAX_LEN, "%s", fixed_names[i]);
  atomic_store_explicit(&g.ntags, KEEL_MEM_FIXED_TAGS, memory_order_release);
}

/* The calling thread's counters, created on first use. NULL only if the
 * counters themselves cannot be allocated; then the allocation is not counted
 * per thread but still lands in the shared published balance. */
static tls_counters *my_counters(void) {
  if (tls) return tls;
  pthread_once(&g.once, init_once);
  tls_counters *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  pthread_mutex_lock(&g.lock);
  c->next = g.threads;
  if (g.threads) g.threads->prev = c;
  g.threads = c;
  pthread_mutex_unlock(&g.lock);
  pthread_setspecific(g.key, c);
  tls = c;
  return c;
}


/* kind: +1 an allocation, -1 a free, 0 a resize (bytes move, blocks do not),
 * so allocs - frees is the number of live blocks. */
static inline __attribute__((always_inline)) void count(tag_counters *c, shared_tag *s, int64_t delta, int kind) {
  int64_t b = atomic_load_explicit(&c->balance, memory_order_relaxed) + delta;
  atomic_store_explicit(&c->balance, b, memory_order_relaxed);
  if (kind > 0)
    atomic_store_explicit(&c->allocs, atomic_load_explicit(&c->allocs, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  else if (kind < 0)
    atomic_store_explicit(&c->frees, atomic_load_explicit(&c->frees, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  int64_t moved = b - c->published;
  if (moved > KEEL_MEM_PEAK_SLACK || moved < -KEEL_MEM_PEAK_SLACK || s->peak == 0) {
    publish_peak(s, moved);
    c->published = b;
  }
}

/* Counts one more allocated (kind +1) or freed (-1) block in c, without
 * bytes: of the headerless blocks only their number is read
 * (keel_mem_process_stats). */
static inline void count_block(tag_counters *c, int kind) {
  _Atomic uint64_t *n = kind > 0 ? &c->allocs : &c->frees;
  atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Counts an allocation (kind +1), free (-1) or resize (0) of `delta` bytes
 * under `tag` and the total; `headerless`: a block of keel_mem_alloc_sized
 * (never resized), also counted apart so the process figures can tell what
 * such blocks cost the heap. Inlined: it is most of what tracking adds to
 * an allocation. */
static inline __attribute__((always_inline)) void account_as(keel_mem_tag tag, int64_t delta, int kind,
                                                             bool headerless) {
  tls_counters *c = my_counters();
  if (!c) {
    publish_peak(&g.tags[tag], delta);
    publish_peak(&g.total, delta); /* bytes only: no thread counts the block (nor its headerlessness) */
    return;
  }
  count(&c->t[tag], &g.tags[tag], delta, kind);
  count(&c->total, &g.total, delta, kind);
  if (headerless) count_block(&c->headerless, kind);
}

static void account(keel_mem_tag tag, int64_t delta, int kind) { account_as(tag, delta, kind, false); }

static bool inject_fault(void) {
  if (atomic_load_explicit(&g.failing, memory_order_relaxed)) {
    atomic_fetch_add(&g.fault_hits, 1);
    return true;
  }
  uint64_t n = atomic_load_explicit(&g.fail_countdown, memory_order_relaxed);
  if (n == 0) return false;
  n = atomic_fetch_sub(&g.fail_countdown, 1);
  if (n != 1) return false;
  if (atomic_load(&g.fail_persist)) atomic_store(&g.failing, 1);
  atomic_fetch_add(&g.fault_hits, 1);
  return true;
}

void keel_mem_fail_after(uint64_t n, int persist) {
  atomic_store(&g.failing, 0);
  atomic_store(&g.fail_persist, persist != 0);
  atomic_store(&g.fail_countdown, n);
  atomic_store(&g.fault_hits, 0);
}

uint64_t keel_mem_fault_hits(void) { return atomic_load(&g.fault_hits); }

/* ---- call sites ---- */

static uint32_t site_hash(const char *file, int line, keel_mem_tag tag) {
  uint64_t x = (uint64_t)(uintptr_t)file * 0x9e3779b97f4a7c15u ^ (uint64_t)(unsigned)line * 0xff51afd7ed558ccdu ^
               (uint64_t)tag * 0xc4ceb9fe1a85ec53u;
  return (uint32_t)(x >> 40);
}

/* The index of (file, line, tag), added on first sight; 0 when the table
 * is full. The tag is part of the key: one line (a shared helper: a buffer,
 * an arena) allocates for many owners, and each owner's bytes are its own. */
static uint32_t site_find(const char *file, int line, keel_mem_tag tag) {
  uint32_t mask = KEEL_MEM_MAX_SITES - 1, i = site_hash(file, line, tag) & mask;
  for (uint32_t probe = 0; probe < KEEL_MEM_MAX_SITES; probe++, i = (i + 1) & mask) {
    if (i == 0) continue;
    const char *f = atomic_load_explicit(&g.sites[i].file, memory_order_acquire);
    if (f == file && g.sites[i].line == line && g.sites[i].tag == tag) return i;
    if (f) continue;
    pthread_mutex_lock(&g.lock);
    f = atomic_load_explicit(&g.sites[i].file, memory_order_relaxed);
    if (!f) { /* still free: claim it */
      g.sites[i].line = line;
      g.sites[i].tag = tag;
      atomic_store_explicit(&g.sites[i].file, file, memory_order_release);
      pthread_mutex_unlock(&g.lock);
      return i;
    }
    pthread_mutex_unlock(&g.lock);
    if (f == file && g.sites[i].line == line && g.sites[i].tag == tag) return i;
  }
  return 0;
}

static void site_add(uint32_t i, int64_t bytes, int64_t blocks) {
  atomic_fetch_add_explicit(&g.sites[i].bytes, bytes, memory_order_relaxed);
  if (blocks) atomic_fetch_add_explicit(&g.sites[i].blocks, blocks, memory_order_relaxed);
}

/* ---- allocation ---- */

/* A tag some keel_mem_tag_register returned (or a fixed one): bytes under
 * an id nobody registered would be nobody's, and the next registration
 * would inherit them. */
static int tag_known(keel_mem_tag tag) {
  return tag < KEEL_MEM_FIXED_TAGS || tag < atomic_load_explicit(&g.ntags, memory_order_acquire);
}

void *keel_mem_alloc_at(keel_mem_tag tag, size_t size, const char *file, int line) {
  if (size > SIZE_MAX / 2 || !tag_known(tag) || inject_fault()) return NULL;
  hdr *h = malloc(HDR + size);
  if (!h) return NULL;
  h->size = size;
  h->tag = tag;
  h->site = SITE_NONE;
  if (!atomic_load_explicit(&g.tracking, memory_order_relaxed)) {
    h->magic = MAGIC_UNCOUNTED;
    return (char *)h + HDR;
  }
  h->magic = MAGIC;
  account(tag, (int64_t)size, 1);
  if (file) {
    h->site = site_find(file, line, tag);
    site_add(h->site, (int64_t)size, 1);
  }
  return (char *)h + HDR;
}

void *keel_mem_alloc(keel_mem_tag tag, size_t size) { return keel_mem_alloc_at(tag, size, NULL, 0); }

void *keel_mem_alloc_sized(keel_mem_tag tag, size_t size, int *counted) {
  if (size > SIZE_MAX / 2 || !tag_known(tag) || !counted || inject_fault()) return NULL;
  void *p = malloc(size ? size : 1);
  if (!p) return NULL;
  *counted = atomic_load_explicit(&g.tracking, memory_order_relaxed) != 0;
  if (*counted) account_as(tag, (int64_t)size, 1, true);
  return p;
}

void keel_mem_free_sized(keel_mem_tag tag, void *p, size_t size, int counted) {
  if (!p) return;
  free(p);
  if (counted && tag < KEEL_MEM_MAX_TAGS) account_as(tag, -(int64_t)size, -1, true);
}

void *keel_mem_calloc_at(keel_mem_tag tag, size_t n, size_t size, const char *file, int line) {
  if (size && n > SIZE_MAX / 2 / size) return NULL;
  void *p = keel_mem_alloc_at(tag, n * size, file, line);
  if (p) memset(p, 0, n * size);
  return p;
}

void *keel_mem_calloc(keel_mem_tag tag, size_t n, size_t size) { return keel_mem_calloc_at(tag, n, size, NULL, 0); }

void *keel_mem_realloc_at(keel_mem_tag tag, void *p, size_t size, const char *file, int line) {
  if (!p) return keel_mem_alloc_at(tag, size, file, line);
  hdr *h = (hdr *)((char *)p - HDR);
  if (size > SIZE_MAX / 2 || inject_fault()) return NULL;
  uint64_t old = h->size;
  keel_mem_tag t = h->tag;
  hdr *n = realloc(h, HDR + size);
  if (!n) return NULL;
  n->size = size;
  if (n->magic != MAGIC) return (char *)n + HDR; /* an uncounted block stays uncounted */
  account(t, (int64_t)size - (int64_t)old, 0);
  if (n->site != SITE_NONE || file) { /* the bytes move to the site that resized them */
    if (n->site != SITE_NONE) site_add(n->site, -(int64_t)old, -1);
    if (file) n->site = site_find(file, line, t);
    site_add(n->site, (int64_t)size, 1);
  }
  return (char *)n + HDR;
}

void *keel_mem_realloc(keel_mem_tag tag, void *p, size_t size) { return keel_mem_realloc_at(tag, p, size, NULL, 0); }

void keel_mem_free(void *p) {
  if (!p) return;
  hdr *h = (hdr *)((char *)p - HDR);
  if (h->magic == MAGIC_UNCOUNTED) {
    h->magic = 0;
    free(h);
    return;
  }
  if (h->magic != MAGIC) abort(); /* not ours, or freed twice: memory is corrupt */
  h->magic = 0;
  tls_counters *c = my_counters();
  int64_t size = (int64_t)h->size;
  keel_mem_tag tag = h->tag;
  if (h->site != SITE_NONE) site_add(h->site, -size, -1); /* the overflow slot 0 too: it once only grew */
  free(h);
  if (!c) {
    publish_peak(&g.tags[tag], -size);
    publish_peak(&g.total, -size);
    return;
  }
  count(&c->t[tag], &g.tags[tag], -size, -1);
  count(&c->total, &g.total, -size, -1);
}

void keel_mem_set_tracking(int on) { atomic_store_explicit(&g.tracking, on != 0, memory_order_relaxed); }
int keel_mem_tracking(void) { return atomic_load_explicit(&g.tracking, memory_order_relaxed); }

size_t keel_mem_size(const void *p) { return p ? (size_t)((const hdr *)((const char *)p - HDR))->size : 0; }

char *keel_mem_strndup_at(keel_mem_tag tag, const char *s, size_t n, const char *file, int line) {
  if (n == SIZE_MAX) return NULL; /* n + 1 would wrap to 0 */
  char *d = keel_mem_alloc_at(tag, n + 1, file, line);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *keel_mem_strndup(keel_mem_tag tag, const char *s, size_t n) { return keel_mem_strndup_at(tag, s, n, NULL, 0); }

char *keel_mem_strdup_at(keel_mem_tag tag, const char *s, const char *file, int line) {
  return s ? keel_mem_strndup_at(tag, s, strlen(s), file, line) : NULL;
}

char *keel_mem_strdup(keel_mem_tag tag, const char *s) { return keel_mem_strdup_at(tag, s, NULL, 0); }

keel_status keel_mem_tag_register(const char *name, keel_mem_tag *out) {
  if (!name || !*name || !out || strlen(name) >= NAME_MAX_LEN) return KEEL_EINVAL; /* never truncated */
  pthread_once(&g.once, init_once);
  pthread_mutex_lock(&g.lock);
  unsigned n = atomic_load_explicit(&g.ntags, memory_order_relaxed);
  for (unsigned i = 0; i < n; i++)
    if (strcmp(g.names[i], name) == 0) {
      pthread_mutex_unlock(&g.lock);
      *out = (keel_mem_tag)i;
      return KEEL_OK;
    }
  if (n >= KEEL_MEM_MAX_TAGS) {
    pthread_mutex_unlock(&g.lock);
    return KEEL_ELIMIT;
  }
  snprintf(g.names[n], NAME_MAX_LEN, "%s", name);
  atomic_store_explicit(&g.ntags, n + 1, memory_order_release);
  pthread_mutex_unlock(&g.lock);
  *out = (keel_mem_tag)n;
  return KEEL_OK;
}

const char *keel_mem_tag_name(keel_mem_tag tag) {
  pthread_once(&g.once, init_once);
  return tag < atomic_load_explicit(&g.ntags, memory_order_acquire) ? g.names[tag] : "?";
}

unsigned keel_mem_tag_count(void) {
  pthread_once(&g.once, init_once);
  return atomic_load_explicit(&g.ntags, memory_order_acquire);
}

static void merge(const shared_tag *s, size_t off, keel_mem_stats *out) {
  /* The retired counters under the lock too: read before it, a thread that
   * exits in between was counted in neither them nor the live list. */
  pthread_mutex_lock(&g.lock);
  int64_t cur = atomic_load_explicit(&s->retired_balance, memory_order_relaxed);
  uint64_t al = atomic_load_explicit(&s->retired_allocs, memory_order_relaxed);
  uint64_t fr = atomic_load_explicit(&s->retired_frees, memory_order_relaxed);
  for (tls_counters *c = g.threads; c; c = c->next) {
    tag_counters *t = (tag_counters *)((char *)c + off);
    cur += atomic_load_explicit(&t->balance, memory_order_relaxed);
    al += atomic_load_explicit(&t->allocs, memory_order_relaxed);
    fr += atomic_load_explicit(&t->frees, memory_order_relaxed);
  }
  pthread_mutex_unlock(&g.lock);
  int64_t peak = atomic_load_explicit(&s->peak, memory_order_relaxed);
  out->current = cur;
  out->peak = peak > cur ? peak : cur;
  out->allocs = al;
  out->frees = fr;
}

keel_status keel_mem_tag_stats(keel_mem_tag tag, keel_mem_stats *out) {
  if (!out || tag >= keel_mem_tag_count()) return KEEL_EINVAL;
  merge(&g.tags[tag], offsetof(tls_counters, t) + tag * sizeof(tag_counters), out);
  return KEEL_OK;
}

void keel_mem_total(keel_mem_stats *out) {
  pthread_once(&g.once, init_once);
  merge(&g.total, offsetof(tls_counters, total), out);
}

static uint64_t proc_status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kib = 0;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0) {
      kib = strtoull(line + n, NULL, 10);
      break;
    }
  fclose(f);
  return kib * 1024;
}

uint64_t keel_mem_rss_bytes(void) { return proc_status_kib("VmRSS:"); }
uint64_t keel_mem_rss_peak_bytes(void) { return proc_status_kib("VmHWM:"); }

/* ---- bounds, process figures ---- */

keel_status keel_mem_tag_set_bound(keel_mem_tag tag, uint64_t bytes) {
  if (tag >= keel_mem_tag_count()) return KEEL_EINVAL;
  atomic_store_explicit(&g.bound[tag], bytes, memory_order_relaxed);
  return KEEL_OK;
}

uint64_t keel_mem_tag_bound(keel_mem_tag tag) {
  return tag < KEEL_MEM_MAX_TAGS ? atomic_load_explicit(&g.bound[tag], memory_order_relaxed) : 0;
}

void keel_mem_process_stats(keel_mem_process *out) {
  keel_mem_stats t;
  keel_mem_total(&t);
  memset(out, 0, sizeof *out);
  out->tracked_current = t.current;
  out->tracked_peak = t.peak;
  out->live_blocks = t.allocs >= t.frees ? t.allocs - t.frees : 0;
  keel_mem_stats h;
  merge(&g.headerless, offsetof(tls_counters, headerless), &h);
  out->headerless_blocks = h.allocs >= h.frees ? h.allocs - h.frees : 0;
  if (out->headerless_blocks > out->live_blocks) out->headerless_blocks = out->live_blocks;
  out->footprint = t.current + (int64_t)(out->live_blocks - out->headerless_blocks) * KEEL_MEM_BLOCK_OVERHEAD +
                   (int64_t)out->headerless_blocks * KEEL_MEM_HEADERLESS_OVERHEAD;
  FILE *f = fopen("/proc/self/status", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "VmRSS:", 6)) out->rss_bytes = strtoull(line + 6, NULL, 10) * 1024;
      else if (!strncmp(line, "VmHWM:", 6)) out->rss_peak_bytes = strtoull(line + 6, NULL, 10) * 1024;
    }
    fclose(f);
  }
  out->rss_gap = (int64_t)out->rss_bytes - t.current;
}

int keel_mem_callsites_enabled(void) {
#if defined(KEEL_MEM_CALLSITES) && KEEL_MEM_CALLSITES
  return 1;
#else
  return 0;
#endif
}

/* ---- snapshots ---- */

typedef struct snap_site {
  const char *file;
  int line;
  keel_mem_tag tag;
  int64_t bytes, blocks;
} snap_site;

struct keel_mem_snapshot {
  unsigned ntags;
  int64_t bytes[KEEL_MEM_MAX_TAGS], blocks[KEEL_MEM_MAX_TAGS];
  snap_site *sites; /* KEEL_MEM_MAX_SITES, or NULL in a build without sites */
};

static void read_site(unsigned i, snap_site *out) {
  out->file = atomic_load_explicit(&g.sites[i].file, memory_order_acquire);
  /* line and tag are written before file is published (under the lock):
   * read only for a claimed slot, else they race with the claim. */
  out->line = out->file ? g.sites[i].line : 0;
  out->tag = out->file ? g.sites[i].tag : 0;
  out->bytes = atomic_load_explicit(&g.sites[i].bytes, memory_order_relaxed);
  out->blocks = atomic_load_explicit(&g.sites[i].blocks, memory_order_relaxed);
  if (i == 0) out->file = "(other sites)";
}

/* A snapshot's own memory is not tracked (as tracemalloc does not trace
 * its own): tracked under "other", the earlier of two snapshots showed as
 * that tag's growth in their diff, above what the program did. */
keel_status keel_mem_snapshot(keel_mem_snapshot_t **out) {
  if (!out) return KEEL_EINVAL;
  keel_mem_snapshot_t *s = calloc(1, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  if (keel_mem_callsites_enabled()) {
    s->sites = calloc(KEEL_MEM_MAX_SITES, sizeof *s->sites);
    if (!s->sites) {
      free(s);
      return KEEL_ENOMEM;
    }
    for (unsigned i = 0; i < KEEL_MEM_MAX_SITES; i++) read_site(i, &s->sites[i]);
  }
  s->ntags = keel_mem_tag_count();
  for (unsigned i = 0; i < s->ntags; i++) {
    keel_mem_stats t;
    keel_mem_tag_stats((keel_mem_tag)i, &t);
    s->bytes[i] = t.current;
    s->blocks[i] = (int64_t)(t.allocs - t.frees);
  }
  *out = s;
  return KEEL_OK;
}

void keel_mem_snapshot_destroy(keel_mem_snapshot_t *s) {
  if (!s) return;
  free(s->sites);
  free(s);
}

static int by_growth(const void *a, const void *b) {
  const keel_mem_diff *x = a, *y = b;
  if (x->growth != y->growth) return x->growth > y->growth ? -1 : 1;
  return strcmp(x->where, y->where);
}

/* Keeps the `cap` largest growths seen so far in out[] (sorted), counting all. */
static void diff_add(keel_mem_diff *out, size_t cap, size_t *n, const keel_mem_diff *d) {
  size_t have = *n < cap ? *n : cap;
  (*n)++;
  if (have == cap && (cap == 0 || by_growth(d, &out[cap - 1]) >= 0)) return;
  size_t at = have < cap ? have : cap - 1;
  out[at] = *d;
  while (at > 0 && by_growth(&out[at], &out[at - 1]) < 0) {
    keel_mem_diff t = out[at];
    out[at] = out[at - 1];
    out[at - 1] = t;
    at--;
  }
}

keel_status keel_mem_snapshot_compare(const keel_mem_snapshot_t *a, const keel_mem_snapshot_t *b, keel_mem_group by,
                                      keel_mem_diff *out, size_t cap, size_t *n) {
  if (!a || !b || !n || (cap && !out)) return KEEL_EINVAL;
  if (by != KEEL_MEM_BY_TAG && by != KEEL_MEM_BY_SITE) return KEEL_EINVAL;
  if (by == KEEL_MEM_BY_SITE && (!a->sites || !b->sites)) return KEEL_EUNSUPPORTED;
  *n = 0;
  keel_mem_diff d;
  if (by == KEEL_MEM_BY_TAG) {
    unsigned nt = a->ntags > b->ntags ? a->ntags : b->ntags;
    for (unsigned i = 0; i < nt; i++) {
      memset(&d, 0, sizeof d);
      d.tag = (keel_mem_tag)i;
      d.before = i < a->ntags ? a->bytes[i] : 0;
      d.after = i < b->ntags ? b->bytes[i] : 0;
      d.growth = d.after - d.before;
      d.blocks_growth = (i < b->ntags ? b->blocks[i] : 0) - (i < a->ntags ? a->blocks[i] : 0);
      if (!d.growth && !d.blocks_growth) continue;
      snprintf(d.where, sizeof d.where, "%s", keel_mem_tag_name(d.tag));
      diff_add(out, cap, n, &d);
    }
    return KEEL_OK;
  }
  for (unsigned i = 0; i < KEEL_MEM_MAX_SITES; i++) {
    const snap_site *x = &a->sites[i], *y = &b->sites[i];
    if (!y->file) continue;
    memset(&d, 0, sizeof d);
    d.tag = y->tag;
    d.before = x->file ? x->bytes : 0;
    d.after = y->bytes;
    d.growth = d.after - d.before;
    d.blocks_growth = y->blocks - (x->file ? x->blocks : 0);
    if (!d.growth && !d.blocks_growth) continue;
    snprintf(d.where, sizeof d.where, "%s:%d", y->file, y->line);
    diff_add(out, cap, n, &d);
  }
  return KEEL_OK;
}

size_t keel_mem_tag_top_sites(keel_mem_tag tag, keel_mem_diff *out, size_t cap) {
  if (!keel_mem_callsites_enabled() || !out) return 0;
  size_t n = 0;
  for (unsigned i = 1; i < KEEL_MEM_MAX_SITES; i++) {
    snap_site s;
    read_site(i, &s);
    if (!s.file || s.tag != tag || s.bytes <= 0) continue;
    keel_mem_diff d;
    memset(&d, 0, sizeof d);
    d.tag = tag;
    d.after = d.growth = s.bytes;
    d.blocks_growth = s.blocks;
    snprintf(d.where, sizeof d.where, "%s:%d", s.file, s.line);
    diff_add(out, cap, &n, &d);
  }
  return n < cap ? n : cap;
}
