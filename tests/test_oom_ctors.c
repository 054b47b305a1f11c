/* test_oom_ctors.c — OOM sweeps of the public constructors (and their
 * allocating operations) that no module test sweeps: the trace readers of
 * every format, the cache policies and the policy simulator.
 *
 * Each is swept twice, as STYLE.md asks: allocation n fails once (n = 1, 2,
 * ... until a call sees no fault), then every allocation from the n-th on
 * fails. Each attempt must end in KEEL_ENOMEM or success, free everything
 * (tracked bytes back to where they were), and, when it succeeds despite a
 * fault, give the same result as a run without faults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/policy.h"
#include "keel/trace.h"
#include "testutil.h"

/* Every allocation from the n-th on fails, n = 1, 2, ... until an attempt
 * sees no fault. Returns the allocations of the fault-free attempt. */
static unsigned sweep_persistent(int (*attempt)(void *), void *ctx) {
  for (unsigned n = 1;; n++) {
    int64_t before = tu_tracked_bytes();
    keel_mem_fail_after(n, 1);
    int rc = attempt(ctx);
    uint64_t hits = keel_mem_fault_hits();
    keel_mem_fail_after(0, 0);
    assert_int_equal(tu_tracked_bytes(), before);
    if (hits == 0) {
      assert_int_equal(rc, 0);
      return n - 1;
    }
    if (n > 100000) fail_msg("persistent OOM sweep did not finish");
  }
}

/* ---- trace readers ---- */

typedef struct trace_ctx {
  char path[128];
  keel_trace_format fmt;
  int64_t sum; /* of the keys, from the fault-free reading */
  size_t n;
} trace_ctx;

static int read_trace(void *arg) {
  trace_ctx *c = arg;
  keel_trace_t *t;
  keel_status st = keel_trace_open(c->path, c->fmt, &t);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  int64_t k, sum = 0;
  size_t n = 0;
  while ((st = keel_trace_next(t, &k)) == KEEL_OK) {
    sum += k;
    n++;
  }
  assert_int_equal(st, KEEL_EEOF);
  keel_trace_close(t);
  if (c->n == 0) {
    c->n = n;
    c->sum = sum;
  }
  assert_int_equal(n, c->n); /* a reader that opened reads everything */
  assert_int_equal(sum, c->sum);
  return 0;
}

static void test_trace_open_every_format(void **state) {
  (void)state;
  static const struct { const char *ext, *bytes; size_t len; keel_trace_format fmt; } files[] = {
      {"lirs", "1\n2\n*\n\n3\n", 9, KEEL_TRACE_LIRS},
      {"txt", "42\nhello\n-7\n", 12, KEEL_TRACE_TEXT},
      {"b32", "\0\0\0\1\0\0\0\2", 8, KEEL_TRACE_BIN32},
      {"bin", "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2", 16, KEEL_TRACE_BIN64},
      {"bin", "\0\0\0\0\0\0\0\5", 8, KEEL_TRACE_AUTO},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    trace_ctx c = {.fmt = files[i].fmt};
    snprintf(c.path, sizeof c.path, "/tmp/keel_test_oom_ctors_%ld_%zu.%s", (long)getpid(), i, files[i].ext);
    FILE *f = fopen(c.path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(files[i].bytes, 1, files[i].len, f), files[i].len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(read_trace(&c), 0);
    assert_true(c.n > 0);
    unsigned a = tu_oom_sweep(read_trace, &c), b = sweep_persistent(read_trace, &c);
    assert_true(a >= 1);
    assert_int_equal(a, b);
    unlink(c.path);
  }
}

/* ---- policies ---- */

typedef struct policy_ctx {
  const char *name;
} policy_ctx;

static keel_policy_options policy_options(const char *name, uint64_t capacity) {
  keel_policy_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.name = name;
  o.capacity = capacity;
  o.slots = 16;
  o.seed = 1;
  o.tag = KEEL_MEM_CACHE;
  return o;
}

static int create_and_grow_policy(void *arg) {
  policy_ctx *c = arg;
  keel_policy_options o = policy_options(c->name, 1000);
  keel_policy_t *p;
  keel_status st = keel_policy_create(&o, &p);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  st = keel_policy_grow(p, 4096);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    assert_int_equal(keel_policy_slots(p), 16); /* left as it was */
  } else {
    assert_true(keel_policy_slots(p) >= 4096);
  }
  keel_policy_destroy(p);
  return st == KEEL_OK ? 0 : 1;
}

/* The simulator, where its accesses allocate: created for 64 residents
 * (66 slots, a 128-cell key map), its capacity then raised to SIM_KEYS, so
 * that the first misses grow the slots (66 to 528, with the policy's
 * records and sketch) and the key map (128 to 512 cells). Phase 1
 * (SIM_GROW requests over at most SIM_KEYS keys) never evicts, so what
 * policy.h promises is exact for every policy: a request hits (1) exactly
 * when its key was inserted by an earlier miss (0); one answered
 * KEEL_ENOMEM "counted as a miss and was not inserted": the policy's weight
 * is the number of inserted keys. Phase 2 lowers the capacity to 64 and
 * evicts: a key can hit only if its last miss inserted it, a miss leaves
 * the weight within the capacity, and for LRU the results are those of an
 * exact LRU model fed the same answers. Against the fault-free run: phase
 * 1 has no more hits, and a run that answered no KEEL_ENOMEM answered
 * alike in phase 1 (for LRU, throughout). */
#define SIM_KEYS 400
#define SIM_GROW 1500
#define SIM_ALL 2500

typedef struct sim_ctx {
  const char *name;
  int have_ref;
  signed char ref[SIM_ALL]; /* the fault-free run's answers */
  unsigned ref_grow_hits;   /* its hits in phase 1 */
  unsigned access_enomem;   /* attempts in which an access (not the create) answered KEEL_ENOMEM */
} sim_ctx;

static int64_t sim_key(unsigned i, uint64_t *x) {
  *x = *x * 6364136223846793005ull + 1442695040888963407ull;
  unsigned r = (unsigned)(*x >> 33);
  if (i < SIM_GROW) return r % (i % 2 ? 60 : SIM_KEYS); /* 60 hot keys and all of them */
  return r % (i % 3 ? 40 : SIM_KEYS);                   /* 40 hot ones in 64 residents, and a scan */
}

static int simulate(void *arg) {
  sim_ctx *c = arg;
  int lru = strcmp(c->name, "lru") == 0;
  keel_policy_options o = policy_options(c->name, 64);
  keel_policy_sim_t *s;
  keel_status st = keel_policy_sim_create(&o, &s);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  keel_policy_t *p = keel_policy_sim_policy(s);
  keel_policy_set_capacity(p, SIM_KEYS);
  /* Per key: resident (exact in phase 1, and for LRU in phase 2), may hit
   * (its last miss answered 0), last use (LRU order). */
  static unsigned char resident[SIM_KEYS], may_hit[SIM_KEYS];
  static unsigned last_use[SIM_KEYS];
  memset(resident, 0, sizeof resident);
  memset(may_hit, 0, sizeof may_hit);
  unsigned residents = 0, grow_hits = 0, enomem = 0, same = 1;
  uint64_t x = 11;
  for (unsigned i = 0; i < SIM_ALL; i++) {
    if (i == SIM_GROW) keel_policy_set_capacity(p, 64);
    int evicting = i >= SIM_GROW, exact = !evicting || lru;
    int64_t k = sim_key(i, &x);
    uint64_t w0 = keel_policy_weight(p);
    int r = keel_policy_sim_access(s, keel_policy_key_hash(k, 3), 1);
    if (r != 1 && r != 0) assert_int_equal(r, KEEL_ENOMEM);
    if (!c->have_ref) c->ref[i] = (signed char)r;
    else if (r != c->ref[i]) same = 0;
    last_use[k] = i; /* a hit or an insert makes it the most recent */
    if (r == 1) {
      assert_true(may_hit[k]); /* a key a miss did not insert cannot hit */
      if (exact) assert_true(resident[k]);
      assert_int_equal(keel_policy_weight(p), w0);
      grow_hits += !evicting;
    } else if (r == KEEL_ENOMEM) {
      if (exact) assert_false(resident[k]); /* a miss, */
      assert_int_equal(keel_policy_weight(p), w0); /* not inserted */
      may_hit[k] = 0;
      enomem++;
    } else {
      if (exact) assert_false(resident[k]);
      may_hit[k] = 1;
      resident[k] = 1;
      residents++;
      while (exact && residents > keel_policy_capacity(p)) { /* LRU: the least recently used go */
        int v = -1;
        for (int j = 0; j < SIM_KEYS; j++)
          if (resident[j] && (v < 0 || last_use[j] < last_use[v])) v = j;
        resident[v] = 0;
        residents--;
      }
      assert_true(keel_policy_weight(p) <= keel_policy_capacity(p));
    }
    if (exact) assert_int_equal(keel_policy_weight(p), residents);
  }
  keel_policy_sim_destroy(s);
  if (!c->have_ref) { /* the fault-free run comes first: its answers */
    assert_int_equal(enomem, 0);
    c->have_ref = 1;
    c->ref_grow_hits = grow_hits;
    return 0;
  }
  assert_true(grow_hits <= c->ref_grow_hits);
  if (!enomem) {
    if (lru) assert_true(same);
    assert_int_equal(grow_hits, c->ref_grow_hits);
  }
  c->access_enomem += enomem > 0;
  return enomem ? 1 : 0;
}

static void test_policies(void **state) {
  (void)state;
  static const char *const names[] = {"lru", "wtinylfu", "adaptive"};
  for (size_t i = 0; i < 3; i++) {
    policy_ctx c = {names[i]};
    unsigned a = tu_oom_sweep(create_and_grow_policy, &c), b = sweep_persistent(create_and_grow_policy, &c);
    assert_true(a >= 2);
    assert_int_equal(a, b);
    sim_ctx *sc = calloc(1, sizeof *sc);
    assert_non_null(sc);
    sc->name = names[i];
    assert_int_equal(simulate(sc), 0); /* the fault-free run: its answers */
    a = tu_oom_sweep(simulate, sc);
    unsigned grown = sc->access_enomem;
    b = sweep_persistent(simulate, sc);
    assert_int_equal(a, b);
    /* The accesses allocate: a failure of each of their allocations (3 slot
     * growths of 3, 2 map growths of 2: 13) is answered KEEL_ENOMEM by an
     * access, in each sweep. */
    assert_true(grown >= 10);
    assert_true(sc->access_enomem - grown >= 10);
    print_message("%s: create+grow and a %d-request simulation swept (%u allocations, %u failing in an access)\n",
                  names[i], SIM_ALL, a, grown);
    free(sc);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trace_open_every_format),
      cmocka_unit_test(test_policies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
