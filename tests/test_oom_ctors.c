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

/* The simulator over a fixed request stream: with faults, a request that
 * could not be inserted counts as a miss; hits can only be fewer. */
static int simulate(void *arg) {
  policy_ctx *c = arg;
  keel_policy_options o = policy_options(c->name, 64);
  keel_policy_sim_t *s;
  keel_status st = keel_policy_sim_create(&o, &s);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  int failed = 0;
  for (uint64_t i = 0; i < 2000; i++) {
    int r = keel_policy_sim_access(s, keel_policy_key_hash((i * 7919) % 200, 3), 1);
    if (r < 0) {
      assert_int_equal(r, KEEL_ENOMEM);
      failed = 1;
    }
  }
  keel_policy_sim_destroy(s);
  return failed;
}

static void test_policies(void **state) {
  (void)state;
  static const char *const names[] = {"lru", "wtinylfu", "adaptive"};
  for (size_t i = 0; i < 3; i++) {
    policy_ctx c = {names[i]};
    unsigned a = tu_oom_sweep(create_and_grow_policy, &c), b = sweep_persistent(create_and_grow_policy, &c);
    assert_true(a >= 2);
    assert_int_equal(a, b);
    a = tu_oom_sweep(simulate, &c);
    b = sweep_persistent(simulate, &c);
    assert_true(a >= 1);
    assert_int_equal(a, b);
    print_message("%s: create+grow and a 2000-request simulation swept\n", names[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trace_open_every_format),
      cmocka_unit_test(test_policies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
