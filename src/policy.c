/* policy.c — eviction policies (see keel/policy.h).
 *
 * Residents live in doubly linked lists threaded through per-slot arrays
 * (prev/next as 32-bit slot numbers), so a policy costs a few bytes per slot
 * and no allocation per access.
 *
 * LRU: one list; a hit moves to the head, the victim is the tail.
 *
 * W-TinyLFU (Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache
 * Admission Policy", ACM ToS 2017; the layout follows Caffeine): a window
 * LRU takes every newcomer; what falls out of the window is a candidate for
 * the main space, a segmented LRU (probation 20 %, protected 80 %). The
 * candidate enters only if a count-min sketch of recent frequency says it is
 * used more often than the main space's victim; otherwise the candidate is
 * the one evicted. The sketch holds 4-bit counters in 4 rows and halves them
 * all every 10 x capacity increments, so frequency means "recent" frequency.
 * A large window behaves like LRU (recency wins: good for bursty traffic),
 * a small one like LFU (frequency wins: good for loops, scans, skew).
 *
 * Adaptive (the default): which window share is right depends on the
 * workload, and shifts within one workload. Caffeine climbs a hill on its
 * own hit rate; that tends to stall on loop-like traces. keel instead keeps
 * 18 shadow W-TinyLFU caches: 6 window shares from 0 % (pure TinyLFU
 * admission) to 100 % (pure LRU), each with 3 sketch aging periods (halve
 * every 10, 40 or 160 x capacity increments: short periods favour recent
 * popularity, long ones let loops and scans longer than the cache build up
 * frequency). A shadow tracks keys only (hashes, no values) and sees a
 * hash-sampled 1/S of the traffic with 1/S of the capacity, S chosen so a
 * shadow holds about SHADOW_ENTRIES entries, then up to SHADOW_SAMPLE while
 * it keeps SHADOW_ENTRIES_MIN (64-255 entries: S = 2; below 64, S = 1:
 * exact shadows).
 * Every period (PERIOD_LEN shadow capacities of sampled requests) the
 * shadows' hits go into decaying scores and the main cache
 * takes the window share and aging period of the best one (a new best
 * must lead the current one by more than one standard deviation of its
 * score: equally good shadows otherwise trade places by chance, and over
 * 10 seeds of the trace grid that chance cost up to 7 points); its lists then
 * drift to the new share as evictions happen, without a stop-the-world
 * rebuild. The only inputs are the capacity and the requests seen, so the
 * same traffic always gives the same decisions. The price is the shadows'
 * work: 18/S shadow accesses per request, at most 18/64 from 4,096 entries
 * up, but 4.5 at 500 entries, 9 at 64-255 and 18 below 64, where it
 * dominates the cost of a lookup (docs/PERFORMANCE.md, "By cache size").
 * So a policy may defer its shadows (options.defer_shadows: the cache does
 * where it has a maintenance thread): the owner then only queues each
 * sampled request, another thread replays the queue into the shadows
 * (keel_policy_replay_deferred) and says which shadow leads, and the owner
 * adopts that at its next sampled request. A full queue drops requests
 * (counted): the shadows then judge on a sample in time as well as in keys.
 * And a policy may follow another's choice instead of keeping shadows
 * (options.follow): a cache's shards see hash partitions of one stream, so
 * the first shard's shadows choose for all, and the others read its
 * choice at their sampled requests.
 *
 * Weights: every list knows its total weight; the cache passes bytes, sim
 * passes 1. The caller evicts while the total exceeds the capacity. */
#include "keel/policy.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { K_LRU, K_WTLFU };
enum { Q_WIN = 0, Q_PROB = 1, Q_PROT = 2, Q_NONE = 3 };

/* Tuning, chosen by measurement over the LIRS and scarab traces (see
 * docs/PERFORMANCE.md); none depends on the trace. */
#define SKETCH_WIDTH 6     /* sketch counters per row per expected entry */
#define SHADOW_ENTRIES 512 /* shadows hold at least this many entries (or all) */
#define SHADOW_ENTRIES_MIN 64 /* ... or this many, for one of several partitions */
#define SHADOW_SAMPLE 64   /* ... while S < this and they keep SHADOW_ENTRIES_MIN */
#define SHADOW_ENTRIES_TINY 32 /* ... or, for S = 2, this many */
#define PERIOD_LEN 6       /* a period lasts this many shadow capacities of samples */
#define SCORE_DECAY 0.95   /* weight of the past in a shadow's score, per period */
#define SWITCH_MARGIN 1.0  /* a new best must lead by this many standard deviations */
#define NSHARE 6
#define NPERIOD 3
#define NSHADOW (NSHARE * NPERIOD)
static const double shadow_share[NSHARE] = {0.0, 0.01, 0.05, 0.2, 0.5, 1.0};
static const double shadow_period[NPERIOD] = {10, 40, 160};

typedef struct list {
  uint32_t head, tail; /* KEEL_POLICY_NONE when empty; head = most recent */
  uint32_t count;
  uint64_t weight;
} list;

/* A slot's policy state, in one place: a list operation touches a slot's
 * links, weight and queue together, so keeping them in one 16-byte record
 * costs one cache miss where separate arrays cost four. */
typedef struct node {
  uint32_t hash;
  uint32_t prev, next;
  uint32_t weight : 30; /* <= KEEL_POLICY_WEIGHT_MAX */
  uint32_t queue : 2;   /* Q_* */
} node;
_Static_assert(sizeof(node) == 16, "a slot's record is 16 bytes");

typedef struct sketch {
  uint64_t *w;        /* blocks of 8 words, each block one cache line; a word holds 16 4-bit counters */
  uint64_t *raw;      /* owned: the allocation w lies in (w is aligned to 64 bytes) */
  uint32_t mask;      /* blocks - 1 */
  uint64_t additions; /* increments since the last halving */
  uint64_t period;    /* halve every `period` increments */
  uint64_t seed;
  uint64_t entries;   /* the entry count the sketch is sized for */
} sketch;

/* Deferred shadows: the owner queues sampled requests here (a ring written
 * by the owner, which its caller serializes, and read by one replayer
 * thread at a time); the replayer owns the shadows, their scores and the
 * period count, and says which shadow to follow in `chosen`, which the
 * owner adopts at its next sampled request. `capacity`, `count` and `used`
 * are the owner's as of its last queued request (they size the shadows for
 * weighted residents). */
#define DEFER_RING 4096
typedef struct deferq {
  _Atomic uint32_t tail;               /* written by the owner */
  _Atomic uint64_t capacity, count, used; /* written by the owner */
  char apart[64];                      /* the two sides' fields on different cache lines */
  _Atomic uint32_t head;               /* written by the replayer */
  _Atomic uint32_t chosen;             /* written by the replayer */
  uint32_t h[DEFER_RING];
} deferq;

struct keel_policy {
  int kind;
  int adaptive;
  keel_mem_tag tag;
  uint32_t nslots;
  node *n;                        /* per slot */
  uint64_t capacity, used;
  list q[3];
  double share;             /* window share of capacity */
  uint64_t window_cap;      /* share x capacity */
  sketch sk;
  struct {                  /* written by the owner, read by anyone (keel_policy_get_stats) */
    _Atomic uint64_t admitted, rejected, adaptations, shadow_accesses, shadow_dropped;
    _Atomic double window_share;
    _Atomic uint32_t best;  /* the shadow followed, for followers (options.follow) */
  } st;
  /* adaptive only */
  keel_policy_sim_t *shadow[NSHADOW];
  uint64_t shadow_hits[NSHADOW];
  double score[NSHADOW];
  unsigned best;
  uint64_t sample_mask;     /* a request is sampled when (mix & mask) == 0 */
  uint64_t period_len, period_seen;
  uint64_t seed;
  deferq *dq;               /* deferred shadows (options.defer_shadows), else NULL */
  const keel_policy_t *follow; /* borrowed: the leader whose choice this one adopts (no shadows) */
  keel_policy_found_fn found; /* second chances (keel_policy_set_found), or NULL */
  void *found_ud;             /* borrowed */
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t keel_policy_key_hash(int64_t key, uint64_t seed) {
  /* Each step (xor-shift, odd multiply, add) is a bijection of 64 bits. */
  return mix64((uint64_t)key + seed * 0x9e3779b97f4a7c15ull);
}

static uint32_t pow2_at_least(uint64_t n) {
  uint32_t p = 16;
  while (p < n && p < (1u << 30)) p <<= 1;
  return p;
}

/* ---- frequency sketch ---------------------------------------------------- */

/* A count-min sketch whose four rows live in one 64-byte block per key (the
 * block-based layout of Caffeine 3): a key's four counters are in four
 * different 16-byte quarters of one cache line, so an update or an
 * estimate costs one cache miss rather than four. The sketch holds
 * SKETCH_WIDTH x 4 counters per expected entry (SKETCH_WIDTH / 2 x 4 bits
 * x 4 = 12 bytes at width 6), in blocks of 128 counters. */
static keel_status sketch_init(sketch *s, keel_mem_tag tag, uint64_t entries, uint64_t seed) {
  uint32_t blocks = pow2_at_least(entries * SKETCH_WIDTH) / 32;
  if (!blocks) blocks = 1; /* a cache of 1 or 2 entries: one block, not none */
  uint64_t *raw = keel_mem_calloc(tag, (size_t)blocks * 8 + 7, sizeof *raw);
  if (!raw) return KEEL_ENOMEM;
  keel_mem_free(s->raw);
  s->raw = raw;
  s->w = (uint64_t *)(((uintptr_t)raw + 63) & ~(uintptr_t)63); /* a block straddling two lines costs two misses */
  s->mask = blocks - 1;
  s->additions = 0;
  s->period = 10 * (entries < 16 ? 16 : entries);
  s->entries = entries < 16 ? 16 : entries;
  s->seed = seed;
  return KEEL_OK;
}

/* The key's block, and in `pos` its four counters: row r is counter
 * pos >> (5 r) & 31 of quarter r (words 2r and 2r+1 of the block). */
static inline uint64_t *sketch_block(const sketch *s, uint32_t h, uint32_t *pos) {
  uint64_t x = (h ^ s->seed) * 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  *pos = (uint32_t)(x >> 32);
  return s->w + (size_t)((uint32_t)x & s->mask) * 8;
}

static inline uint64_t *sketch_cell(uint64_t *blk, uint32_t pos, unsigned r, unsigned *shift) {
  unsigned i = (pos >> (5 * r)) & 31;
  *shift = (i & 15) * 4;
  return blk + 2 * r + (i >> 4);
}

static unsigned sketch_freq(const sketch *s, uint32_t h) {
  uint32_t pos;
  uint64_t *blk = sketch_block(s, h, &pos);
  unsigned f = 15, sh;
  for (unsigned r = 0; r < 4; r++) {
    const uint64_t *c = sketch_cell(blk, pos, r, &sh); /* sets sh: a statement of its own, so read after */
    unsigned v = (unsigned)(*c >> sh) & 15;
    if (v < f) f = v;
  }
  return f;
}

static void sketch_add(sketch *s, uint32_t h) {
  uint32_t pos;
  uint64_t *blk = sketch_block(s, h, &pos);
  int added = 0;
  unsigned sh;
  for (unsigned r = 0; r < 4; r++) {
    uint64_t *c = sketch_cell(blk, pos, r, &sh);
    if (((*c >> sh) & 15) < 15) {
      *c += 1ull << sh;
      added = 1;
    }
  }
  if (added && ++s->additions >= s->period) {
    /* Halve every counter: sixteen at a time. */
    size_t n = ((size_t)s->mask + 1) * 8;
    for (size_t i = 0; i < n; i++) s->w[i] = (s->w[i] >> 1) & 0x7777777777777777ull;
    s->additions /= 2;
  }
}

/* ---- lists ----------------------------------------------------------------- */

static void list_unlink(keel_policy_t *p, uint32_t s) {
  list *l = &p->q[p->n[s].queue];
  uint32_t pv = p->n[s].prev, nx = p->n[s].next;
  if (pv != KEEL_POLICY_NONE) p->n[pv].next = nx;
  else l->head = nx;
  if (nx != KEEL_POLICY_NONE) p->n[nx].prev = pv;
  else l->tail = pv;
  l->count--;
  l->weight -= p->n[s].weight;
  p->n[s].queue = Q_NONE;
}

static void list_push_head(keel_policy_t *p, unsigned qi, uint32_t s) {
  list *l = &p->q[qi];
  p->n[s].queue = qi & 3u;
  p->n[s].prev = KEEL_POLICY_NONE;
  p->n[s].next = l->head;
  if (l->head != KEEL_POLICY_NONE) p->n[l->head].prev = s;
  else l->tail = s;
  l->head = s;
  l->count++;
  l->weight += p->n[s].weight;
}

static void move_to(keel_policy_t *p, unsigned qi, uint32_t s) {
  list_unlink(p, s);
  list_push_head(p, qi, s);
}

/* ---- creation ---------------------------------------------------------------- */

const char *keel_policy_names(void) { return "lru,wtinylfu,adaptive,default"; }

static int parse_name(const char *name, int *kind, int *adaptive) {
  if (!name || !strcmp(name, "default")) name = KEEL_POLICY_DEFAULT;
  if (!strcmp(name, "lru")) *kind = K_LRU, *adaptive = 0;
  else if (!strcmp(name, "wtinylfu")) *kind = K_WTLFU, *adaptive = 0;
  else if (!strcmp(name, "adaptive")) *kind = K_WTLFU, *adaptive = 1;
  else return -1;
  return 0;
}

int keel_policy_known(const char *name) {
  int k, a;
  return name && parse_name(name, &k, &a) == 0;
}

const char *keel_policy_name(const keel_policy_t *p) {
  return p->kind == K_LRU ? "lru" : p->adaptive ? "adaptive" : "wtinylfu";
}

static void set_share(keel_policy_t *p, double share) {
  p->share = share;
  p->window_cap = (uint64_t)llround(share * (double)p->capacity);
  atomic_store_explicit(&p->st.window_share, share, memory_order_relaxed);
}

static void free_arrays(keel_policy_t *p) { keel_mem_free(p->n); }

keel_status keel_policy_grow(keel_policy_t *p, uint32_t slots) {
  if (slots <= p->nslots) return KEEL_OK;
  node *n = keel_mem_realloc(p->tag, p->n, (size_t)slots * sizeof *n);
  if (!n) return KEEL_ENOMEM;
  p->n = n;
  for (uint32_t i = p->nslots; i < slots; i++) n[i].queue = Q_NONE;
  /* The sketch follows the number of residents once it outgrows the
   * capacity-based estimate (weighted caches learn their entry count).
   * Callers grow when every slot is taken, so the residents are about the
   * old slot count: half the new one where slots double (keel sim's
   * replays), 4/5 where they grow by a quarter (the cache). */
  uint64_t residents = slots >= 2ull * p->nslots ? slots / 2 : p->nslots;
  if (p->kind == K_WTLFU && residents > p->sk.entries &&
      pow2_at_least(residents * SKETCH_WIDTH) / 32 > p->sk.mask + 1 &&
      sketch_init(&p->sk, p->tag, residents, p->sk.seed) != KEEL_OK) {
    /* Keep the old sketch: a smaller sketch only costs accuracy. */
  }
  p->nslots = slots;
  return KEEL_OK;
}

static keel_status adaptive_init(keel_policy_t *p, uint64_t entries, uint32_t partitions) {
  /* Shadows hold about 512 entries, or all of them; then the sample
   * shrinks further, down to 1 in SHADOW_SAMPLE, as long as a shadow keeps
   * SHADOW_ENTRIES_MIN entries, so that a request costs at most 18/64
   * shadow accesses in a cache of 4,096 entries or more. They count
   * entries (unit weights); for weighted residents their capacity follows
   * the measured mean weight (see adaptive_observe). */
  /* Past 2^32 expected entries (a bound of "no bound", UINT64_MAX bytes)
   * the shadows are sized as for 2^32: sampled 1 in 2^20, each holds at
   * most 4,096 entries, instead of a gigabyte of shadows for a cache that
   * may never hold a million. */
  if (entries > ((uint64_t)1 << 32)) entries = (uint64_t)1 << 32;
  uint64_t s = 1;
  uint64_t least = SHADOW_ENTRIES / (partitions > 1 ? partitions : 1);
  if (least < SHADOW_ENTRIES_MIN) least = SHADOW_ENTRIES_MIN;
  while (entries / (s * 2) >= least && s < (1u << 20)) s *= 2;
  /* The first halving may leave shadows of only SHADOW_ENTRIES_TINY: for
   * caches of 64-127 entries, 32-63-entry shadows scored as well as exact
   * ones over 10 seeds of the grid (docs/PERFORMANCE.md); smaller shadows
   * at any later halving made it worse. */
  while (s < SHADOW_SAMPLE && entries / (s * 2) >= (s == 1 ? SHADOW_ENTRIES_TINY : SHADOW_ENTRIES_MIN)) s *= 2;
  p->sample_mask = s - 1;
  p->best = 1;
  atomic_init(&p->st.best, p->best);
  set_share(p, shadow_share[p->best % NSHARE]);
  /* A follower keeps no shadows: it samples requests at the same rate only
   * to look at its leader's choice (adaptive_observe). */
  for (unsigned i = 0; i < NSHADOW && !p->follow; i++) {
    keel_policy_options o = {sizeof o, "wtinylfu", entries / s, 0, p->seed + i + 1, p->tag, 0, 1, 0, NULL};
    if (o.capacity == 0) o.capacity = 1;
    keel_status st = keel_policy_sim_create(&o, &p->shadow[i]);
    if (st != KEEL_OK) return st;
    keel_policy_t *sp = keel_policy_sim_policy(p->shadow[i]);
    set_share(sp, shadow_share[i % NSHARE]);
    sp->sk.period = (uint64_t)(shadow_period[i / NSHARE] * (double)sp->sk.entries);
  }
  p->period_len = PERIOD_LEN * (entries / s) + 64;
  return KEEL_OK;
}

keel_status keel_policy_create(const keel_policy_options *opt, keel_policy_t **out) {
  int kind, adaptive;
  if (!opt || !out || opt->capacity == 0 || parse_name(opt->name, &kind, &adaptive) != 0)
    return KEEL_EINVAL;
  keel_policy_t *p = keel_mem_calloc(opt->tag, 1, sizeof *p);
  if (!p) return KEEL_ENOMEM;
  p->kind = kind;
  p->adaptive = adaptive;
  p->tag = opt->tag;
  p->capacity = opt->capacity;
  p->seed = opt->seed;
  for (unsigned i = 0; i < 3; i++) p->q[i] = (list){KEEL_POLICY_NONE, KEEL_POLICY_NONE, 0, 0};
  keel_status st = KEEL_OK;
  if (kind == K_WTLFU) {
    uint64_t est = opt->slots > opt->capacity ? opt->capacity : opt->slots;
    st = sketch_init(&p->sk, p->tag, est ? est : 16, mix64(opt->seed ^ 0x736b65746368ull));
    set_share(p, 0.01);
  }
  if (st == KEEL_OK) st = keel_policy_grow(p, opt->slots ? opt->slots : 16);
  uint32_t parts = opt->size >= offsetof(keel_policy_options, partitions) + sizeof opt->partitions ? opt->partitions : 1;
  if (st == KEEL_OK && adaptive && opt->size >= offsetof(keel_policy_options, follow) + sizeof opt->follow &&
      opt->follow) {
    p->follow = opt->follow;
    if (!p->follow->adaptive || p->follow->follow) st = KEEL_EINVAL; /* a leader is adaptive, with shadows */
  }
  if (st == KEEL_OK && adaptive)
    st = adaptive_init(p, opt->entries_hint ? opt->entries_hint : opt->capacity, parts);
  int defer = opt->size >= offsetof(keel_policy_options, defer_shadows) + sizeof opt->defer_shadows &&
              opt->defer_shadows;
  if (st == KEEL_OK && adaptive && defer && !p->follow) {
    p->dq = keel_mem_calloc(p->tag, 1, sizeof *p->dq);
    if (!p->dq) st = KEEL_ENOMEM;
    else atomic_init(&p->dq->chosen, p->best);
  }
  if (st != KEEL_OK) {
    keel_policy_destroy(p);
    return st;
  }
  *out = p;
  return KEEL_OK;
}

void keel_policy_destroy(keel_policy_t *p) {
  if (!p) return;
  for (unsigned i = 0; i < NSHADOW; i++) keel_policy_sim_destroy(p->shadow[i]);
  keel_mem_free(p->dq);
  keel_mem_free(p->sk.raw);
  free_arrays(p);
  keel_mem_free(p);
}

uint32_t keel_policy_slots(const keel_policy_t *p) { return p->nslots; }
uint64_t keel_policy_capacity(const keel_policy_t *p) { return p->capacity; }
uint64_t keel_policy_weight(const keel_policy_t *p) { return p->used; }

void keel_policy_set_capacity(keel_policy_t *p, uint64_t capacity) {
  if (capacity == 0) capacity = 1;
  p->capacity = capacity;
  if (p->kind == K_WTLFU) set_share(p, p->share);
}

/* Adds n to a counter only its owner writes: a relaxed load and store, no
 * locked instruction. */
static inline void bump(_Atomic uint64_t *x, uint64_t n) {
  atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n, memory_order_relaxed);
}

void keel_policy_get_stats(const keel_policy_t *p, keel_policy_stats *out) {
  memset(out, 0, sizeof *out);
  out->admitted = atomic_load_explicit(&p->st.admitted, memory_order_relaxed);
  out->rejected = atomic_load_explicit(&p->st.rejected, memory_order_relaxed);
  out->adaptations = atomic_load_explicit(&p->st.adaptations, memory_order_relaxed);
  out->shadow_accesses = atomic_load_explicit(&p->st.shadow_accesses, memory_order_relaxed);
  out->shadow_dropped = atomic_load_explicit(&p->st.shadow_dropped, memory_order_relaxed);
  out->window_share = atomic_load_explicit(&p->st.window_share, memory_order_relaxed);
}

/* ---- adaptation ------------------------------------------------------------- */

/* Makes shadow `best` the one the policy follows: its window share, and its
 * sketch aging period. The owner's state. */
static void adopt(keel_policy_t *p, unsigned best) {
  p->best = best;
  atomic_store_explicit(&p->st.best, best, memory_order_relaxed);
  bump(&p->st.adaptations, 1);
  set_share(p, shadow_share[best % NSHARE]);
  p->sk.period = (uint64_t)(shadow_period[best / NSHARE] * (double)p->sk.entries);
}

/* The owner's capacity and its residents' count and weight, which size the
 * shadows for weighted residents: its own fields, or with deferred shadows
 * what it published with its last queued request (the replayer may not
 * read the owner's state). */
static void owner_sizes(const keel_policy_t *p, uint64_t *capacity, uint64_t *count, uint64_t *used) {
  if (p->dq) {
    *capacity = atomic_load_explicit(&p->dq->capacity, memory_order_relaxed);
    *count = atomic_load_explicit(&p->dq->count, memory_order_relaxed);
    *used = atomic_load_explicit(&p->dq->used, memory_order_relaxed);
  } else {
    *capacity = p->capacity;
    *count = p->q[0].count + p->q[1].count + p->q[2].count;
    *used = p->used;
  }
}

/* Replays one sampled request into the shadows and closes a period when it
 * is due; returns the shadow to follow (`incumbent` unless another beat it).
 * Touches the shadows and scores only: the owner's thread, or the
 * replayer's with deferred shadows. */
static unsigned shadows_replay(keel_policy_t *p, uint32_t h, unsigned incumbent) {
  bump(&p->st.shadow_accesses, NSHADOW);
  for (unsigned i = 0; i < NSHADOW; i++)
    if (keel_policy_sim_access(p->shadow[i], h, 1) == 1) p->shadow_hits[i]++;
  if (++p->period_seen < p->period_len) return incumbent;
  p->period_seen = 0;
  uint64_t capacity, count, used;
  owner_sizes(p, &capacity, &count, &used);
  if (count && used && used != count) {
    uint64_t est = (uint64_t)((double)capacity * (double)count / (double)used);
    uint64_t cap = est / (p->sample_mask + 1);
    for (unsigned i = 0; i < NSHADOW; i++)
      keel_policy_set_capacity(keel_policy_sim_policy(p->shadow[i]), cap ? cap : 1);
  }
  unsigned best = incumbent;
  for (unsigned i = 0; i < NSHADOW; i++) {
    p->score[i] = SCORE_DECAY * p->score[i] + (double)p->shadow_hits[i];
    p->shadow_hits[i] = 0;
  }
  for (unsigned i = 0; i < NSHADOW; i++)
    if (p->score[i] > p->score[best]) best = i;
  /* The incumbent stays unless the leader's score beats it by more than
   * its own noise (hits are counts: about one standard deviation, the
   * square root): shadows that are equally good would otherwise trade
   * places by chance, and every switch costs the main cache a drift. */
  if (best != incumbent && p->score[best] - p->score[incumbent] <= SWITCH_MARGIN * sqrt(p->score[incumbent]))
    best = incumbent;
  return best;
}

/* Feeds one request to the shadows (when sampled) and closes a period when
 * it is due; with deferred shadows, queues it for the replayer instead
 * (dropped when the queue is full) and adopts what the replayer chose. */
static void adaptive_observe(keel_policy_t *p, uint32_t h) {
  if ((mix64(h ^ p->seed) >> 20 & p->sample_mask) != 0) return;
  if (p->follow) {
    unsigned lead = atomic_load_explicit(&p->follow->st.best, memory_order_relaxed);
    if (lead != p->best) adopt(p, lead);
    return;
  }
  if (p->dq) {
    unsigned chosen = atomic_load_explicit(&p->dq->chosen, memory_order_relaxed);
    if (chosen != p->best) adopt(p, chosen);
    deferq *q = p->dq;
    atomic_store_explicit(&q->count, p->q[0].count + p->q[1].count + p->q[2].count, memory_order_relaxed);
    atomic_store_explicit(&q->used, p->used, memory_order_relaxed);
    atomic_store_explicit(&q->capacity, p->capacity, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&q->head, memory_order_acquire) >= DEFER_RING) {
      bump(&p->st.shadow_dropped, 1);
      return;
    }
    q->h[t % DEFER_RING] = h;
    atomic_store_explicit(&q->tail, t + 1, memory_order_release); /* h before the tail */
    return;
  }
  unsigned best = shadows_replay(p, h, p->best);
  if (best != p->best) adopt(p, best);
}

size_t keel_policy_deferred(const keel_policy_t *p) {
  if (!p->dq) return 0;
  return atomic_load_explicit(&p->dq->tail, memory_order_relaxed) - atomic_load_explicit(&p->dq->head, memory_order_relaxed);
}

size_t keel_policy_replay_deferred(keel_policy_t *p, size_t max) {
  deferq *q = p->dq;
  if (!q) return 0;
  uint32_t hd = atomic_load_explicit(&q->head, memory_order_relaxed);
  uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire); /* the hashes before it are written */
  size_t n = 0;
  unsigned chosen = atomic_load_explicit(&q->chosen, memory_order_relaxed);
  for (; hd != t && n < max; hd++, n++) {
    chosen = shadows_replay(p, q->h[hd % DEFER_RING], chosen);
    /* release: the slot is read before the owner may write it again. */
    if ((n & 63) == 63) atomic_store_explicit(&q->head, hd + 1, memory_order_release);
  }
  atomic_store_explicit(&q->head, hd, memory_order_release);
  atomic_store_explicit(&q->chosen, chosen, memory_order_relaxed);
  return n;
}

/* ---- operations ----------------------------------------------------------- */

/* A hit's move of resident s: to the head of its queue; from probation
 * into protected, which passes its overflow back to probation. */
static void touch(keel_policy_t *p, uint32_t s) {
  if (p->kind == K_LRU) {
    move_to(p, 0, s);
    return;
  }
  switch (p->n[s].queue) {
  case Q_WIN: move_to(p, Q_WIN, s); break;
  case Q_PROT: move_to(p, Q_PROT, s); break;
  default: {
    move_to(p, Q_PROT, s);
    uint64_t main_cap = p->capacity > p->window_cap ? p->capacity - p->window_cap : 0;
    uint64_t prot_cap = main_cap - main_cap / 5;
    while (p->q[Q_PROT].weight > prot_cap && p->q[Q_PROT].tail != s)
      move_to(p, Q_PROB, p->q[Q_PROT].tail);
  }
  }
}

void keel_policy_hit(keel_policy_t *p, uint32_t s) {
  if (s >= p->nslots || p->n[s].queue == Q_NONE) return;
  if (p->kind != K_LRU) {
    sketch_add(&p->sk, p->n[s].hash);
    if (p->adaptive) adaptive_observe(p, p->n[s].hash);
  }
  touch(p, s);
}

void keel_policy_miss(keel_policy_t *p, uint32_t h) {
  if (p->kind != K_WTLFU) return;
  sketch_add(&p->sk, h);
  if (p->adaptive) adaptive_observe(p, h);
}

/* A weight as a slot's record keeps it: larger ones are a caller's misuse
 * (policy.h), held at the maximum. */
static uint32_t record_weight(uint32_t weight) {
  return weight > KEEL_POLICY_WEIGHT_MAX ? KEEL_POLICY_WEIGHT_MAX : weight;
}

/* `seen`: the request counts as an access. The newcomer's weight is in
 * `used` before the access is counted (a period that closes then sizes the
 * shadows from it), as keel sim has always replayed it. */
static void insert_resident(keel_policy_t *p, uint32_t s, uint32_t h, uint32_t weight, int seen) {
  if (s >= p->nslots || p->n[s].queue != Q_NONE) return; /* not a free slot: its lists would break */
  weight = record_weight(weight);
  p->n[s].hash = h;
  p->n[s].weight = weight;
  p->used += weight;
  if (seen) keel_policy_miss(p, h); /* counts for frequency policies only */
  else if (p->adaptive) adaptive_observe(p, h); /* the shadows see every request of their keys */
  list_push_head(p, Q_WIN, s);
}

void keel_policy_insert(keel_policy_t *p, uint32_t s, uint32_t h, uint32_t weight) {
  insert_resident(p, s, h, weight, 1);
}

void keel_policy_insert_unseen(keel_policy_t *p, uint32_t s, uint32_t h, uint32_t weight) {
  insert_resident(p, s, h, weight, 0);
}

void keel_policy_update(keel_policy_t *p, uint32_t s, uint32_t weight) {
  if (s >= p->nslots || p->n[s].queue == Q_NONE) return;
  weight = record_weight(weight);
  list *l = &p->q[p->n[s].queue];
  l->weight = l->weight - p->n[s].weight + weight;
  p->used = p->used - p->n[s].weight + weight;
  p->n[s].weight = weight;
  keel_policy_hit(p, s);
}

void keel_policy_remove(keel_policy_t *p, uint32_t s) {
  if (s >= p->nslots || p->n[s].queue == Q_NONE) return;
  p->used -= p->n[s].weight;
  list_unlink(p, s);
}

void keel_policy_set_found(keel_policy_t *p, keel_policy_found_fn fn, void *ud) {
  if (!p) return;
  p->found = fn;
  p->found_ud = ud;
}

/* Whether resident s (or KEEL_POLICY_NONE) gets a second chance, one of
 * *chances: if so, it has been moved as a hit moves it. */
static int second_chance(keel_policy_t *p, uint32_t s, unsigned *chances) {
  if (!p->found || !*chances || s == KEEL_POLICY_NONE || !p->found(p->found_ud, s, p->n[s].hash)) return 0;
  --*chances;
  touch(p, s);
  return 1;
}

static uint32_t evict_slot(keel_policy_t *p, uint32_t s) {
  keel_policy_remove(p, s);
  return s;
}

static uint32_t main_victim(const keel_policy_t *p) {
  if (p->q[Q_PROB].tail != KEEL_POLICY_NONE) return p->q[Q_PROB].tail;
  return p->q[Q_PROT].tail;
}

static uint32_t wtlfu_evict(keel_policy_t *p) {
  unsigned chances = KEEL_POLICY_CHANCES;
  for (;;) {
    uint32_t cand = p->q[Q_WIN].tail;
    if (p->q[Q_WIN].weight > p->window_cap && cand != KEEL_POLICY_NONE) {
      uint64_t main_cap = p->capacity - p->window_cap;
      uint64_t main_w = p->used - p->q[Q_WIN].weight;
      if (main_w + p->n[cand].weight <= main_cap) {
        move_to(p, Q_PROB, cand);
        continue;
      }
      uint32_t victim = main_victim(p);
      if (victim == KEEL_POLICY_NONE) return evict_slot(p, cand);
      if (second_chance(p, victim, &chances)) continue;
      if (sketch_freq(&p->sk, p->n[cand].hash) > sketch_freq(&p->sk, p->n[victim].hash)) {
        move_to(p, Q_PROB, cand);
        bump(&p->st.admitted, 1);
        return evict_slot(p, victim);
      }
      bump(&p->st.rejected, 1);
      return evict_slot(p, cand);
    }
    uint32_t v = main_victim(p);
    if (second_chance(p, v, &chances)) continue;
    if (v == KEEL_POLICY_NONE) v = cand;
    return v == KEEL_POLICY_NONE ? v : evict_slot(p, v);
  }
}

uint32_t keel_policy_prefetch(const keel_policy_t *p, uint32_t h, uint32_t *other) {
  *other = KEEL_POLICY_NONE;
  if (p->kind == K_LRU) {
    uint32_t t = p->q[0].tail;
    if (t != KEEL_POLICY_NONE) __builtin_prefetch(&p->n[t]);
    return t;
  }
  uint32_t pos, w = p->q[Q_WIN].tail, v = main_victim(p);
  __builtin_prefetch(sketch_block(&p->sk, h, &pos));
  if (w != KEEL_POLICY_NONE) __builtin_prefetch(&p->n[w]);
  if (v != KEEL_POLICY_NONE) __builtin_prefetch(&p->n[v]);
  *other = w;
  return v;
}

void keel_policy_prefetch_admission(const keel_policy_t *p) {
  if (p->kind != K_WTLFU) return;
  uint32_t pos, w = p->q[Q_WIN].tail, v = main_victim(p);
  if (w != KEEL_POLICY_NONE) __builtin_prefetch(sketch_block(&p->sk, p->n[w].hash, &pos));
  if (v != KEEL_POLICY_NONE) __builtin_prefetch(sketch_block(&p->sk, p->n[v].hash, &pos));
}

void keel_policy_prefetch_access(const keel_policy_t *p, uint32_t s, uint32_t h) {
  uint32_t pos;
  if (s < p->nslots) __builtin_prefetch(&p->n[s]);
  if (p->kind == K_WTLFU) __builtin_prefetch(sketch_block(&p->sk, h, &pos));
}

uint32_t keel_policy_slot_hash(const keel_policy_t *p, uint32_t s) {
  return s < p->nslots && p->n[s].queue != Q_NONE ? p->n[s].hash : 0;
}

uint32_t keel_policy_last_hash(const keel_policy_t *p, uint32_t s) { return s < p->nslots ? p->n[s].hash : 0; }

void *keel_policy_spare(keel_policy_t *p, uint32_t s) {
  /* hash, prev and next: the first 12 bytes, which only residents use. */
  _Static_assert(offsetof(node, hash) == 0 && offsetof(node, next) == 8, "spare room is a record's first 12 bytes");
  return s < p->nslots && p->n[s].queue == Q_NONE ? (void *)&p->n[s] : NULL;
}

uint32_t keel_policy_evict(keel_policy_t *p) {
  if (p->kind == K_LRU) {
    unsigned chances = KEEL_POLICY_CHANCES;
    uint32_t v = p->q[0].tail;
    while (second_chance(p, v, &chances)) v = p->q[0].tail;
    return v == KEEL_POLICY_NONE ? v : evict_slot(p, v);
  }
  return wtlfu_evict(p);
}

/* ---- replay: policy + key map ----------------------------------------------- */

struct keel_policy_sim {
  keel_policy_t *p;
  keel_mem_tag tag;
  uint64_t *keys;   /* open addressing, linear probing, at most 3/4 full (the adaptive policy
                     * keeps 18 small maps per shard: memory counts); 0 = empty */
  uint32_t *slot;   /* slot of keys[i] */
  uint32_t mask;    /* map size - 1 */
  uint32_t count;
  uint32_t *free;   /* stack of free slots */
  uint32_t nfree;
  uint64_t *slot_key; /* the map key of each resident slot (the policy keeps 32 bits) */
};

/* Hash 0 marks an empty cell, so it is stored as 1 (a collision only the
 * two hashes 0 and 1 can have; replays hash keys bijectively). */
static inline uint64_t map_key(uint64_t h) { return h ? h : 1; }

static keel_status map_resize(keel_policy_sim_t *s, uint32_t size) {
  uint64_t *k = keel_mem_calloc(s->tag, size, 8);
  uint32_t *v = keel_mem_calloc(s->tag, size, 4);
  if (!k || !v) {
    keel_mem_free(k);
    keel_mem_free(v);
    return KEEL_ENOMEM;
  }
  uint32_t mask = size - 1;
  if (s->keys) {
    for (uint32_t i = 0; i <= s->mask; i++) {
      if (!s->keys[i]) continue;
      uint32_t j = (uint32_t)mix64(s->keys[i]) & mask;
      while (k[j]) j = (j + 1) & mask;
      k[j] = s->keys[i];
      v[j] = s->slot[i];
    }
  }
  keel_mem_free(s->keys);
  keel_mem_free(s->slot);
  s->keys = k;
  s->slot = v;
  s->mask = mask;
  return KEEL_OK;
}

static uint32_t map_find(const keel_policy_sim_t *s, uint64_t key) {
  uint32_t j = (uint32_t)mix64(key) & s->mask;
  while (s->keys[j]) {
    if (s->keys[j] == key) return j;
    j = (j + 1) & s->mask;
  }
  return UINT32_MAX;
}

static void map_delete(keel_policy_sim_t *s, uint32_t j) {
  /* Backward-shift deletion keeps probe chains whole without tombstones. */
  uint32_t i = j;
  for (;;) {
    i = (i + 1) & s->mask;
    if (!s->keys[i]) break;
    uint32_t home = (uint32_t)mix64(s->keys[i]) & s->mask;
    if (((i - home) & s->mask) >= ((i - j) & s->mask)) {
      s->keys[j] = s->keys[i];
      s->slot[j] = s->slot[i];
      j = i;
    }
  }
  s->keys[j] = 0;
  s->count--;
}

keel_status keel_policy_sim_create(const keel_policy_options *opt, keel_policy_sim_t **out) {
  if (!opt || !out) return KEEL_EINVAL;
  keel_policy_sim_t *s = keel_mem_calloc(opt->tag, 1, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  s->tag = opt->tag;
  keel_policy_options o = *opt;
  uint64_t slots = opt->capacity + 2;
  o.slots = (uint32_t)(slots > 1024 * 1024 ? 1024 * 1024 : slots);
  keel_status st = keel_policy_create(&o, &s->p);
  if (st == KEEL_OK) st = map_resize(s, pow2_at_least((uint64_t)o.slots * 4 / 3 + 1));
  if (st == KEEL_OK) {
    s->free = keel_mem_alloc(s->tag, (size_t)o.slots * 4);
    s->slot_key = keel_mem_alloc(s->tag, (size_t)o.slots * 8);
    if (!s->free || !s->slot_key) st = KEEL_ENOMEM;
  }
  if (st != KEEL_OK) {
    keel_policy_sim_destroy(s);
    return st;
  }
  for (uint32_t i = 0; i < o.slots; i++) s->free[s->nfree++] = o.slots - 1 - i;
  *out = s;
  return KEEL_OK;
}

void keel_policy_sim_destroy(keel_policy_sim_t *s) {
  if (!s) return;
  keel_policy_destroy(s->p);
  keel_mem_free(s->keys);
  keel_mem_free(s->slot);
  keel_mem_free(s->free);
  keel_mem_free(s->slot_key);
  keel_mem_free(s);
}

keel_policy_t *keel_policy_sim_policy(keel_policy_sim_t *s) { return s->p; }

/* Makes one more slot free, growing the policy, the free stack and the map. */
static keel_status sim_more_slots(keel_policy_sim_t *s) {
  uint32_t old = keel_policy_slots(s->p), n = old * 2;
  uint32_t *f = keel_mem_realloc(s->tag, s->free, (size_t)n * 4);
  if (!f) return KEEL_ENOMEM;
  s->free = f;
  uint64_t *k = keel_mem_realloc(s->tag, s->slot_key, (size_t)n * 8);
  if (!k) return KEEL_ENOMEM;
  s->slot_key = k;
  keel_status st = keel_policy_grow(s->p, n);
  if (st != KEEL_OK) return st;
  for (uint32_t i = n; i > old; i--) s->free[s->nfree++] = i - 1;
  return KEEL_OK;
}

int keel_policy_sim_access(keel_policy_sim_t *s, uint64_t h, uint32_t weight) {
  uint64_t key = map_key(h);
  uint32_t j = map_find(s, key);
  if (j != UINT32_MAX) {
    keel_policy_hit(s->p, s->slot[j]);
    return 1;
  }
  if (!s->nfree && sim_more_slots(s) != KEEL_OK) return KEEL_ENOMEM;
  if ((uint64_t)(s->count + 1) * 4 > 3 * ((uint64_t)s->mask + 1) &&
      map_resize(s, (s->mask + 1) * 2) != KEEL_OK)
    return KEEL_ENOMEM;
  uint32_t slot = s->free[--s->nfree];
  j = (uint32_t)mix64(key) & s->mask;
  while (s->keys[j]) j = (j + 1) & s->mask;
  s->keys[j] = key;
  s->slot[j] = slot;
  s->count++;
  s->slot_key[slot] = key;
  keel_policy_insert(s->p, slot, (uint32_t)h, weight ? weight : 1);
  while (keel_policy_weight(s->p) > keel_policy_capacity(s->p)) {
    uint32_t v = keel_policy_evict(s->p);
    if (v == KEEL_POLICY_NONE) break;
    map_delete(s, map_find(s, s->slot_key[v]));
    s->free[s->nfree++] = v;
  }
  return 0;
}
