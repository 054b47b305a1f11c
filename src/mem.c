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
 * Guards: `g.lock` guards the thread list and the tag table's appends; the
 * tag names are written once before `g.ntags` is released (release store) and
 * read after an acquire load. */
#include "keel/mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16u
#define MAGIC 0x6b6du
#define NAME_MAX_LEN 72 /* a tag name fits 71 bytes: every stage name (64) */

typedef struct hdr {
  uint64_t size;
  uint16_t tag;
  uint16_t magic;
  uint32_t pad;
} hdr;
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
} tls_counters;

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
  _Atomic uint64_t fail_countdown; /* 0 = off */
  _Atomic int fail_persist;
  _Atomic int failing;             /* persistent failure tripped */
  _Atomic uint64_t fault_hits;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static _Thread_local tls_counters *tls;

static void fold_counters(shared_tag *s, tag_counters *c) {
  atomic_fetch_add_explicit(&s->retired_balance, atomic_load_explicit(&c->balance, memory_order_relaxed),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->retired_allocs, atomic_load_explicit(&c->allocs, memory_order_relaxed),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->retired_frees, atomic_load_explicit(&c->frees, memory_order_relaxed),
                            memory_order_relaxed);
}

/* Thread exit: fold this thread's counters into `retired` and unlink it, both
 * under the lock so a concurrent reader sees the counts exactly once. */
static void thread_exit(void *p) {
  tls_counters *c = p;
  pthread_mutex_lock(&g.lock);
  for (unsigned i = 0; i < KEEL_MEM_MAX_TAGS; i++) fold_counters(&g.tags[i], &c->t[i]);
  fold_counters(&g.total, &c->total);
  if (c->prev) c->prev->next = c->next; else g.threads = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&g.lock);
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

static void publish_peak(shared_tag *s, int64_t delta) {
  int64_t now = atomic_fetch_add_explicit(&s->published, delta, memory_order_relaxed) + delta;
  int64_t old = atomic_load_explicit(&s->peak, memory_order_relaxed);
  while (now > old &&
         !atomic_compare_exchange_weak_explicit(&s->peak, &old, now, memory_order_relaxed, memory_order_relaxed)) {
  }
}

static void count(tag_counters *c, shared_tag *s, int64_t delta) {
  int64_t b = atomic_load_explicit(&c->balance, memory_order_relaxed) + delta;
  atomic_store_explicit(&c->balance, b, memory_order_relaxed);
  if (delta > 0)
    atomic_store_explicit(&c->allocs, atomic_load_explicit(&c->allocs, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  else
    atomic_store_explicit(&c->frees, atomic_load_explicit(&c->frees, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  int64_t moved = b - c->published;
  if (moved > KEEL_MEM_PEAK_SLACK || moved < -KEEL_MEM_PEAK_SLACK || s->peak == 0) {
    publish_peak(s, moved);
    c->published = b;
  }
}

static void account(keel_mem_tag tag, int64_t delta) {
  tls_counters *c = my_counters();
  if (!c) {
    publish_peak(&g.tags[tag], delta);
    publish_peak(&g.total, delta);
    return;
  }
  count(&c->t[tag], &g.tags[tag], delta);
  count(&c->total, &g.total, delta);
}

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

void *keel_mem_alloc(keel_mem_tag tag, size_t size) {
  if (size > SIZE_MAX / 2 || tag >= KEEL_MEM_MAX_TAGS || inject_fault()) return NULL;
  hdr *h = malloc(HDR + size);
  if (!h) return NULL;
  h->size = size;
  h->tag = tag;
  h->magic = MAGIC;
  account(tag, (int64_t)size);
  return (char *)h + HDR;
}

void *keel_mem_calloc(keel_mem_tag tag, size_t n, size_t size) {
  if (size && n > SIZE_MAX / 2 / size) return NULL;
  void *p = keel_mem_alloc(tag, n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *keel_mem_realloc(keel_mem_tag tag, void *p, size_t size) {
  if (!p) return keel_mem_alloc(tag, size);
  hdr *h = (hdr *)((char *)p - HDR);
  if (size > SIZE_MAX / 2 || inject_fault()) return NULL;
  uint64_t old = h->size;
  keel_mem_tag t = h->tag;
  hdr *n = realloc(h, HDR + size);
  if (!n) return NULL;
  n->size = size;
  account(t, (int64_t)size - (int64_t)old);
  return (char *)n + HDR;
}

void keel_mem_free(void *p) {
  if (!p) return;
  hdr *h = (hdr *)((char *)p - HDR);
  if (h->magic != MAGIC) abort(); /* not ours, or freed twice: memory is corrupt */
  h->magic = 0;
  tls_counters *c = my_counters();
  int64_t size = (int64_t)h->size;
  keel_mem_tag tag = h->tag;
  free(h);
  if (!c) {
    publish_peak(&g.tags[tag], -size);
    publish_peak(&g.total, -size);
    return;
  }
  count(&c->t[tag], &g.tags[tag], -size);
  count(&c->total, &g.total, -size);
}

size_t keel_mem_size(const void *p) { return p ? (size_t)((const hdr *)((const char *)p - HDR))->size : 0; }

char *keel_mem_strndup(keel_mem_tag tag, const char *s, size_t n) {
  char *d = keel_mem_alloc(tag, n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *keel_mem_strdup(keel_mem_tag tag, const char *s) { return keel_mem_strndup(tag, s, strlen(s)); }

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
  int64_t cur = atomic_load_explicit(&s->retired_balance, memory_order_relaxed);
  uint64_t al = atomic_load_explicit(&s->retired_allocs, memory_order_relaxed);
  uint64_t fr = atomic_load_explicit(&s->retired_frees, memory_order_relaxed);
  pthread_mutex_lock(&g.lock);
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
