/* test_policy.c — the eviction policies on their own: LRU's exact order,
 * W-TinyLFU's scan resistance, the adaptive default beating LRU on a loop
 * and matching it on recency-friendly traffic, determinism for a seed,
 * weights, names, the adaptive policy's bounded shadow work and its
 * refusal to switch on noise, deferred shadows, followers of another
 * policy's choice, inserts that count no access, second chances for
 * residents a sampling caller found, and OOM sweeps of creation. */
#include <string.h>

#include "keel/policy.h"
#include "testutil.h"

static keel_policy_options opts(const char *name, uint64_t cap) {
  keel_policy_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.name = name;
  o.capacity = cap;
  o.slots = (uint32_t)cap + 2;
  o.seed = 1;
  o.tag = KEEL_MEM_CACHE;
  return o;
}

static void test_names(void **state) {
  (void)state;
  keel_policy_t *p = NULL;
  keel_policy_options o = opts("nope", 10);
  assert_int_equal(keel_policy_create(&o, &p), KEEL_EINVAL);
  o = opts("lru", 0);
  assert_int_equal(keel_policy_create(&o, &p), KEEL_EINVAL);
  assert_true(keel_policy_known("default"));
  assert_true(keel_policy_known("lru"));
  assert_false(keel_policy_known("arc"));
  o = opts("default", 10);
  assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
  assert_string_equal(keel_policy_name(p), KEEL_POLICY_DEFAULT);
  keel_policy_destroy(p);
}

/* LRU evicts in exact least-recently-used order. */
static void test_lru_order(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_policy_options o = opts("lru", 3);
  keel_policy_t *p;
  assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
  for (uint32_t s = 0; s < 3; s++) keel_policy_insert(p, s, 100 + s, 1);
  keel_policy_hit(p, 0);
  keel_policy_insert(p, 3, 103, 1);
  keel_policy_insert(p, 1, 999, 1);          /* resident already: ignored */
  keel_policy_insert(p, 1u << 20, 999, 1);   /* past the slots: ignored, no write out of bounds */
  assert_int_equal(keel_policy_weight(p), 4);
  assert_int_equal(keel_policy_evict(p), 1);
  assert_int_equal(keel_policy_evict(p), 2);
  keel_policy_remove(p, 0);
  assert_int_equal(keel_policy_evict(p), 3);
  assert_int_equal(keel_policy_evict(p), KEEL_POLICY_NONE);
  assert_int_equal(keel_policy_weight(p), 0);
  keel_policy_destroy(p);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* keel_policy_insert_unseen adds a resident like keel_policy_insert but
 * counts no access for frequency: a key brought in three times by counted
 * inserts outweighs a victim inserted once and is admitted over it, and
 * the same key brought in three times unseen is refused. The adaptive
 * policy's shadows see every request of their keys all the same (below 64
 * entries they sample every key: 18 shadow accesses per insert, counted or
 * not), and the entry is resident either way (weight, hash, eviction). */
static void test_insert_unseen(void **state) {
  (void)state;
  for (int unseen = 0; unseen < 2; unseen++) {
    keel_policy_options o = opts("wtinylfu", 4);
    keel_policy_t *p;
    assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
    for (uint32_t s = 0; s < 4; s++) keel_policy_insert(p, s, 10 + s, 1);
    for (int k = 0; k < 3; k++) { /* key 99 comes and goes */
      if (unseen) keel_policy_insert_unseen(p, 4, 99, 1);
      else keel_policy_insert(p, 4, 99, 1);
      if (k < 2) keel_policy_remove(p, 4);
    }
    assert_int_equal(keel_policy_weight(p), 5);
    assert_int_equal(keel_policy_slot_hash(p, 4), 99);
    uint32_t victim = keel_policy_evict(p);
    if (unseen) assert_int_equal(victim, 4); /* its count is 0: refused */
    else assert_int_not_equal(victim, 4);    /* its count is 3: admitted */
    assert_int_equal(keel_policy_weight(p), 4);
    keel_policy_destroy(p);
  }
  keel_policy_options o = opts("default", 32);
  keel_policy_t *p;
  assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
  keel_policy_stats st;
  keel_policy_insert(p, 0, 0xa11, 1);
  keel_policy_get_stats(p, &st);
  assert_int_equal(st.shadow_accesses, 18);
  keel_policy_insert_unseen(p, 1, 0xb22, 1);
  keel_policy_get_stats(p, &st);
  assert_int_equal(st.shadow_accesses, 36);
  assert_int_equal(keel_policy_weight(p), 2);
  assert_int_equal(keel_policy_slot_hash(p, 1), 0xb22);
  keel_policy_set_capacity(p, 0);
  uint32_t a = keel_policy_evict(p), b = keel_policy_evict(p);
  assert_true((a == 0 && b == 1) || (a == 1 && b == 0));
  assert_int_equal(keel_policy_weight(p), 0);
  keel_policy_destroy(p);
  o = opts("lru", 2); /* no counts to skip: the same order as insert */
  assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
  keel_policy_insert_unseen(p, 0, 1, 1);
  keel_policy_insert(p, 1, 2, 1);
  keel_policy_hit(p, 0);
  assert_int_equal(keel_policy_evict(p), 1);
  keel_policy_destroy(p);
}

/* Second chances (keel_policy_set_found): `found` marks slots, and each
 * ask clears the slot's mark. */
typedef struct marks {
  unsigned char m[256];
  unsigned asked;
} marks;

static int found_fn(void *ud, uint32_t slot, uint32_t hash) {
  marks *k = ud;
  assert_true(slot < 256);
  assert_int_equal(hash, 100 + slot); /* the policy passes the slot's hash */
  k->asked++;
  int was = k->m[slot];
  k->m[slot] = 0;
  return was;
}

/* LRU: a marked tail moves to the head instead of leaving, once per mark,
 * and at most KEEL_POLICY_CHANCES are given per eviction, so an eviction
 * always ends. Without the function, plain LRU. */
static void test_second_chance_lru(void **state) {
  (void)state;
  keel_policy_options o = opts("lru", 16);
  keel_policy_t *p;
  assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
  marks k = {{0}, 0};
  keel_policy_set_found(p, found_fn, &k);
  for (uint32_t s = 0; s < 16; s++) keel_policy_insert(p, s, 100 + s, 1);
  k.m[0] = k.m[2] = 1;
  assert_int_equal(keel_policy_evict(p), 1); /* 0 moved to the head */
  assert_int_equal(keel_policy_evict(p), 3); /* 2 as well */
  assert_int_equal(k.asked, 4);
  for (uint32_t s = 4; s < 14; s++) k.m[s] = 1; /* 10 marked in a row */
  assert_int_equal(keel_policy_evict(p), 4 + KEEL_POLICY_CHANCES);
  assert_int_equal(k.asked, 4 + KEEL_POLICY_CHANCES); /* out of chances, the pick stands unasked */
  assert_int_equal(k.m[4 + KEEL_POLICY_CHANCES], 1);
  keel_policy_set_found(p, NULL, NULL);
  assert_int_equal(keel_policy_evict(p), 4 + KEEL_POLICY_CHANCES + 1);
  keel_policy_destroy(p);
}

/* W-TinyLFU: the same inserts and evictions run twice, the second time
 * with the first run's first main victim (its second victim: the first is
 * the window's candidate, refused) marked from the start: it stays,
 * promoted to protected as a hit would promote it, so it outlives the
 * next 40 evictions too, and the policy evicts others instead. */
static void wtinylfu_run(marks *k, uint32_t mark, uint32_t *victims, unsigned n) {
  keel_policy_options o = opts("wtinylfu", 100);
  o.slots = 256;
  keel_policy_t *p;
  assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
  if (k) keel_policy_set_found(p, found_fn, k);
  uint32_t next = 0;
  for (; next < 100; next++) keel_policy_insert(p, next, 100 + next, 1);
  for (unsigned i = 0; i < n; i++, next++) {
    if (k && i == 0) k->m[mark] = 1;
    keel_policy_insert(p, next, 100 + next, 1);
    keel_policy_hit(p, next); /* newcomers are worth admitting */
    victims[i] = keel_policy_evict(p);
    assert_int_not_equal(victims[i], KEEL_POLICY_NONE);
  }
  keel_policy_destroy(p);
}

static void test_second_chance_wtinylfu(void **state) {
  (void)state;
  uint32_t plain[41], chanced[41];
  wtinylfu_run(NULL, 0, plain, 41);
  marks k = {{0}, 0};
  wtinylfu_run(&k, plain[1], chanced, 41);
  assert_true(k.asked > 0);
  assert_int_equal(chanced[0], plain[0]);
  for (unsigned i = 0; i < 41; i++) assert_int_not_equal(chanced[i], plain[1]);
}

/* A slot that is not resident lends 12 bytes to the caller (the cache
 * keeps its free and limbo lists there): none for a resident, the victim's
 * hash still readable until they are written, their contents kept by a
 * grow, and an insert makes the slot resident again. */
static void test_spare_room(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    keel_policy_options o = opts(k ? "default" : "lru", 2);
    keel_policy_t *p;
    assert_int_equal(keel_policy_create(&o, &p), KEEL_OK);
    keel_policy_insert(p, 0, 0xabc0, 1);
    keel_policy_insert(p, 1, 0xabc1, 1);
    assert_null(keel_policy_spare(p, 0));
    assert_null(keel_policy_spare(p, 1));
    assert_null(keel_policy_spare(p, 99)); /* out of range */
    assert_non_null(keel_policy_spare(p, 2)); /* never inserted */
    uint32_t v = keel_policy_evict(p);
    assert_true(v == 0 || v == 1);
    assert_int_equal(keel_policy_last_hash(p, v), 0xabc0 + v);
    assert_int_equal(keel_policy_slot_hash(p, v), 0); /* not resident */
    char *sp = keel_policy_spare(p, v);
    assert_non_null(sp);
    assert_int_equal((uintptr_t)sp % 8, 0);
    memcpy(sp, "twelve bytes", 12);
    assert_int_equal(keel_policy_grow(p, 1000), KEEL_OK);
    assert_memory_equal(keel_policy_spare(p, v), "twelve bytes", 12);
    assert_int_equal(keel_policy_weight(p), 1); /* the lists were not touched */
    keel_policy_insert(p, v, 0xdef, 1);
    assert_null(keel_policy_spare(p, v));
    assert_int_equal(keel_policy_slot_hash(p, v), 0xdef);
    keel_policy_destroy(p);
  }
}

/* Replays `n` requests of key(i) through a sim; returns hits. */
static uint64_t replay(keel_policy_sim_t *s, uint64_t n, int64_t (*key)(uint64_t)) {
  uint64_t hits = 0;
  for (uint64_t i = 0; i < n; i++) {
    int r = keel_policy_sim_access(s, keel_policy_key_hash(key(i), 1), 1);
    assert_true(r >= 0);
    hits += (uint64_t)r;
  }
  return hits;
}

static int64_t wide_key(uint64_t i) { return (int64_t)(i * 7919 % 100003); }

static int64_t loop_key(uint64_t i) { return (int64_t)(i % 300); }

/* Hot keys 0..49 every other request, a never-repeating scan in between. */
static int64_t scan_key(uint64_t i) { return i % 2 ? (int64_t)(i / 2 % 50) : (int64_t)(1000000 + i); }

/* Recency-friendly: a sliding window of 80 keys moving forward. */
static int64_t slide_key(uint64_t i) { return (int64_t)(i / 20 + i % 80); }

static uint64_t run(const char *name, uint64_t cap, uint64_t n, int64_t (*key)(uint64_t)) {
  keel_policy_options o = opts(name, cap);
  keel_policy_sim_t *s;
  assert_int_equal(keel_policy_sim_create(&o, &s), KEEL_OK);
  uint64_t h = replay(s, n, key);
  keel_policy_sim_destroy(s);
  return h;
}

static void test_loop_and_scan(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  /* A loop of 300 keys through 100 entries: LRU never hits; frequency
   * policies keep a fixed part of the loop. */
  uint64_t lru = run("lru", 100, 60000, loop_key);
  uint64_t def = run("default", 100, 60000, loop_key);
  assert_int_equal(lru, 0);
  assert_true(def > 60000 / 10);
  /* A scan does not flush the hot set out of W-TinyLFU. */
  uint64_t w = run("wtinylfu", 60, 40000, scan_key);
  uint64_t l = run("lru", 60, 40000, scan_key);
  assert_true(w > 20000 * 9 / 10);
  assert_true(w > l);
  /* On recency-friendly traffic the adaptive default stays near LRU. */
  uint64_t sl = run("lru", 100, 100000, slide_key);
  uint64_t sd = run("default", 100, 100000, slide_key);
  assert_true(sd * 100 >= sl * 95);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Deferred shadows (a cache's maintenance thread replays them): requests
 * wait in the queue until keel_policy_replay_deferred, a full queue drops
 * them and counts them, and a policy whose replays keep up replays what
 * one that replays at once does, and adapts as it does: it keeps part of
 * a loop that LRU never hits. */
static void test_deferred_shadows(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_policy_options o = opts("default", 100);
  keel_policy_sim_t *now, *later;
  assert_int_equal(keel_policy_sim_create(&o, &now), KEEL_OK);
  o.defer_shadows = 1;
  assert_int_equal(keel_policy_sim_create(&o, &later), KEEL_OK);
  keel_policy_t *p = keel_policy_sim_policy(later);
  keel_policy_stats sn, sl;
  /* No replays: the queue fills, the rest is dropped. */
  (void)replay(now, 20000, wide_key);
  (void)replay(later, 20000, wide_key);
  keel_policy_get_stats(keel_policy_sim_policy(now), &sn);
  keel_policy_get_stats(p, &sl);
  uint64_t sampled = sn.shadow_accesses / 18;
  assert_true(sampled > 4096);
  assert_int_equal(sl.shadow_accesses, 0);
  assert_true(sl.shadow_dropped > 0);
  assert_int_equal(keel_policy_deferred(p) + sl.shadow_dropped, sampled);
  size_t queued = keel_policy_deferred(p);
  assert_int_equal(queued, 4096); /* the queue's size (policy.c, DEFER_RING) */
  assert_int_equal(keel_policy_replay_deferred(p, 10), 10);
  assert_int_equal(keel_policy_replay_deferred(p, SIZE_MAX), queued - 10);
  assert_int_equal(keel_policy_deferred(p), 0);
  keel_policy_get_stats(p, &sl);
  assert_int_equal(sl.shadow_accesses, 18 * queued);
  keel_policy_sim_destroy(now);
  keel_policy_sim_destroy(later);
  /* Replays that keep up: the same work, and the loop is learnt. */
  o.defer_shadows = 0;
  assert_int_equal(keel_policy_sim_create(&o, &now), KEEL_OK);
  o.defer_shadows = 1;
  assert_int_equal(keel_policy_sim_create(&o, &later), KEEL_OK);
  p = keel_policy_sim_policy(later);
  uint64_t hits = 0;
  for (uint64_t i = 0; i < 60000; i++) {
    int r = keel_policy_sim_access(later, keel_policy_key_hash(loop_key(i), 1), 1);
    assert_true(r >= 0);
    hits += (uint64_t)r;
    (void)keel_policy_replay_deferred(p, SIZE_MAX);
  }
  uint64_t hits_now = replay(now, 60000, loop_key);
  keel_policy_get_stats(keel_policy_sim_policy(now), &sn);
  keel_policy_get_stats(p, &sl);
  assert_int_equal(sl.shadow_accesses, sn.shadow_accesses);
  assert_int_equal(sl.shadow_dropped, 0);
  assert_true(sl.adaptations > 0);
  assert_true(hits > 60000 / 10);
  assert_true(hits * 100 >= hits_now * 95);
  /* A policy without deferred shadows has nothing to replay. */
  assert_int_equal(keel_policy_replay_deferred(keel_policy_sim_policy(now), SIZE_MAX), 0);
  assert_int_equal(keel_policy_deferred(keel_policy_sim_policy(now)), 0);
  keel_policy_sim_destroy(now);
  keel_policy_sim_destroy(later);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* A follower (options.follow: the cache's shards after the first) keeps
 * no shadows and adopts its leader's choice at its next sampled request.
 * With the same seed and the same requests in lockstep it samples the
 * same requests as its leader, so it adopts each choice at the very
 * request the leader made it, and the two hit exactly alike. */
static void test_follower(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_policy_options o = opts("default", 100);
  keel_policy_sim_t *lead, *fol;
  assert_int_equal(keel_policy_sim_create(&o, &lead), KEEL_OK);
  int64_t lead_bytes = tu_tracked_bytes() - before;
  o.follow = keel_policy_sim_policy(lead);
  assert_int_equal(keel_policy_sim_create(&o, &fol), KEEL_OK);
  int64_t fol_bytes = tu_tracked_bytes() - before - lead_bytes;
  assert_true(fol_bytes * 4 < lead_bytes); /* no shadows */
  uint64_t hl = 0, hf = 0;
  for (uint64_t i = 0; i < 60000; i++) {
    uint64_t h = keel_policy_key_hash(loop_key(i), 1);
    hl += (uint64_t)keel_policy_sim_access(lead, h, 1);
    hf += (uint64_t)keel_policy_sim_access(fol, h, 1);
  }
  keel_policy_stats sl, sf;
  keel_policy_get_stats(keel_policy_sim_policy(lead), &sl);
  keel_policy_get_stats(keel_policy_sim_policy(fol), &sf);
  assert_true(sl.adaptations > 0);
  assert_int_equal(sf.adaptations, sl.adaptations);
  assert_true(sl.shadow_accesses > 0);
  assert_int_equal(sf.shadow_accesses, 0);
  assert_true(sf.window_share == sl.window_share);
  assert_true(hl > 60000 / 10); /* the loop is learnt (LRU would hit none) */
  assert_int_equal(hf, hl);
  /* A leader is adaptive and keeps shadows; a policy that is not adaptive
   * ignores the option. */
  keel_policy_t *p = NULL;
  o.follow = keel_policy_sim_policy(fol);
  assert_int_equal(keel_policy_create(&o, &p), KEEL_EINVAL);
  keel_policy_options l = opts("lru", 100);
  keel_policy_t *lru = NULL;
  assert_int_equal(keel_policy_create(&l, &lru), KEEL_OK);
  o.follow = lru;
  assert_int_equal(keel_policy_create(&o, &p), KEEL_EINVAL);
  l.follow = keel_policy_sim_policy(lead);
  assert_int_equal(keel_policy_create(&l, &p), KEEL_OK);
  keel_policy_destroy(p);
  keel_policy_destroy(lru);
  keel_policy_sim_destroy(fol);
  keel_policy_sim_destroy(lead);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_deterministic(void **state) {
  (void)state;
  uint64_t a = run("default", 500, 50000, slide_key);
  uint64_t b = run("default", 500, 50000, slide_key);
  assert_int_equal(a, b);
}

/* The adaptive policy's own work per request: a cache of 4,096 entries or
 * more replays at most 1 request in 64 into its 18 shadows (18/64 shadow
 * accesses per request); below, the sample keeps each shadow at 64 entries
 * or more, caches of 64-255 entries sample 1 in 2, and a cache under 64
 * entries replays every request (exact shadows). */
static double shadow_work(uint64_t cap) {
  keel_policy_options o = opts("default", cap);
  keel_policy_sim_t *s;
  assert_int_equal(keel_policy_sim_create(&o, &s), KEEL_OK);
  const uint64_t n = 200000;
  (void)replay(s, n, wide_key);
  keel_policy_stats st;
  keel_policy_get_stats(keel_policy_sim_policy(s), &st);
  keel_policy_sim_destroy(s);
  assert_int_equal(st.shadow_accesses % 18, 0);
  return (double)st.shadow_accesses / (double)n;
}

static void test_shadow_work_bounded(void **state) {
  (void)state;
  assert_true(shadow_work(50) == 18.0);
  double w100 = shadow_work(100);
  assert_true(w100 > 9.0 * 0.9 && w100 < 9.0 * 1.1);
  /* 500 entries: 1 in 4 (125-entry shadows) = 4.5 per request. */
  double w500 = shadow_work(500);
  assert_true(w500 > 4.5 * 0.9 && w500 < 4.5 * 1.1);
  double w2k = shadow_work(2048);
  assert_true(w2k > 18.0 / 32 * 0.9 && w2k < 18.0 / 32 * 1.1);
  for (uint64_t cap = 4096; cap <= 16384; cap *= 4) {
    double w = shadow_work(cap);
    assert_true(w > 18.0 / 64 * 0.9 && w < 18.0 / 64 * 1.1);
  }
  /* Large caches keep 512-entry shadows: 65,536 entries sample 1 in 128. */
  double w = shadow_work(65536);
  assert_true(w > 18.0 / 128 * 0.9 && w < 18.0 / 128 * 1.1);
}

static int64_t uniform_key(uint64_t i) { return (int64_t)(keel_policy_key_hash((int64_t)i, 7) % 1000); }

/* Uniform random traffic makes every shadow about as good as the others:
 * the adaptive policy keeps its choice instead of following whichever
 * shadow is ahead by chance at the end of each period. */
static void test_no_switching_on_noise(void **state) {
  (void)state;
  keel_policy_options o = opts("default", 100);
  keel_policy_sim_t *s;
  assert_int_equal(keel_policy_sim_create(&o, &s), KEEL_OK);
  (void)replay(s, 400000, uniform_key); /* ~600 periods of 664 requests */
  keel_policy_stats st;
  keel_policy_get_stats(keel_policy_sim_policy(s), &st);
  keel_policy_sim_destroy(s);
  /* 22 switches in ~600 periods; without the margin, 201. */
  assert_true(st.adaptations <= 60);
}

/* Weighted residents: the total weight is what the caller keeps in bounds. */
static void test_weights(void **state) {
  (void)state;
  keel_policy_options o = opts("default", 1000);
  o.slots = 4;
  o.entries_hint = 20;
  keel_policy_sim_t *s;
  assert_int_equal(keel_policy_sim_create(&o, &s), KEEL_OK);
  keel_policy_t *p = keel_policy_sim_policy(s);
  for (int64_t k = 0; k < 5000; k++) {
    uint32_t w = (uint32_t)(1 + (k * 37) % 120);
    assert_true(keel_policy_sim_access(s, keel_policy_key_hash(k % 400, 9), w) >= 0);
    assert_true(keel_policy_weight(p) <= 1000);
  }
  keel_policy_set_capacity(p, 200);
  assert_int_equal(keel_policy_capacity(p), 200);
  while (keel_policy_weight(p) > 200) assert_int_not_equal(keel_policy_evict(p), KEEL_POLICY_NONE);
  keel_policy_sim_destroy(s);
}

static int create_sim(void *ctx) {
  const char *name = ctx;
  keel_policy_options o = opts(name, 5000);
  keel_policy_sim_t *s = NULL;
  keel_status st = keel_policy_sim_create(&o, &s);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  keel_policy_sim_destroy(s);
  return 0;
}

/* keel_policy_prefetch and _prefetch_access change no decision: two
 * policies fed the same accesses, one given the hints, evict the same
 * slots in the same order; for LRU the hint is the next victim. A
 * resident's slot hash is its insert's hash, an evicted slot's 0. */
static void test_prefetch_changes_nothing(void **state) {
  (void)state;
  static const char *names[] = {"lru", "wtinylfu", "default"};
  for (int n = 0; n < 3; n++) {
    keel_policy_t *a, *b;
    keel_policy_options o = opts(names[n], 64);
    assert_int_equal(keel_policy_create(&o, &a), KEEL_OK);
    assert_int_equal(keel_policy_create(&o, &b), KEEL_OK);
    uint32_t slot_of[1000];
    for (int i = 0; i < 1000; i++) slot_of[i] = KEEL_POLICY_NONE;
    uint32_t next_free = 0, free_list[80], nfree = 0;
    int hinted = 0; /* LRU evictions checked against the hint */
    uint64_t x = 7;
    for (int i = 0; i < 5000; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      int k = (int)((x >> 33) % (i % 3 ? 90 : 1000)); /* a hot set and a scan */
      uint32_t h = (uint32_t)keel_policy_key_hash(k, 1); /* policies keep 32 bits */
      keel_policy_prefetch_access(b, slot_of[k], h);
      if (slot_of[k] != KEEL_POLICY_NONE) {
        keel_policy_hit(a, slot_of[k]);
        keel_policy_hit(b, slot_of[k]);
        continue;
      }
      uint32_t other, hint = keel_policy_prefetch(b, h, &other);
      uint32_t s = nfree ? free_list[--nfree] : next_free++;
      assert_true(s < 80);
      keel_policy_insert(a, s, h, 1);
      keel_policy_insert(b, s, h, 1);
      assert_true(keel_policy_slot_hash(b, s) == h);
      slot_of[k] = s;
      int first = 1;
      while (keel_policy_weight(a) > keel_policy_capacity(a)) {
        uint32_t va = keel_policy_evict(a), vb = keel_policy_evict(b);
        assert_int_equal(va, vb);
        assert_true(keel_policy_slot_hash(b, va) == 0); /* gone */
        if (n == 0 && first) { /* LRU: the hint is there, and it is the tail, the victim */
          assert_int_not_equal(hint, KEEL_POLICY_NONE);
          assert_int_equal(va, hint);
          hinted++;
        }
        first = 0;
        for (int j = 0; j < 1000; j++)
          if (slot_of[j] == va) slot_of[j] = KEEL_POLICY_NONE;
        free_list[nfree++] = va;
      }
    }
    if (n == 0) assert_true(hinted > 1000); /* the scan keys miss: most of the 5000 evict */
    keel_policy_destroy(a);
    keel_policy_destroy(b);
  }
}

static void test_oom(void **state) {
  (void)state;
  assert_true(tu_oom_sweep(create_sim, (void *)"lru") >= 3);
  assert_true(tu_oom_sweep(create_sim, (void *)"default") > 20);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),         cmocka_unit_test(test_lru_order),
      cmocka_unit_test(test_insert_unseen), cmocka_unit_test(test_second_chance_lru),
      cmocka_unit_test(test_second_chance_wtinylfu),
      cmocka_unit_test(test_loop_and_scan), cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_deferred_shadows), cmocka_unit_test(test_follower),
      cmocka_unit_test(test_weights),       cmocka_unit_test(test_oom),
      cmocka_unit_test(test_prefetch_changes_nothing), cmocka_unit_test(test_shadow_work_bounded),
      cmocka_unit_test(test_no_switching_on_noise), cmocka_unit_test(test_spare_room),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
