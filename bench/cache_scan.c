/* cache_scan.c — what a scan of keel's cache costs: a cache of N entries
 * (8-byte keys and values, the `keel bench cache` layout) is filled, then
 * timed: keel_cache_for_each over every entry, keel_cache_remove_if that
 * matches nothing, and one that removes every other key. Meanwhile a
 * second thread reads random keys: its lookups per second while nothing
 * else runs, while scans run back to back, and while the scanning thread
 * only spins on arithmetic, show what a scan takes from readers beyond
 * the core it occupies (lookups take no lock).
 *
 * Not a test: a measurement. Build against a Release build of libkeel:
 *
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
 *   cc -O2 -std=c11 -Iinclude -Ibuild/include bench/cache_scan.c build/libkeel.a \
 *      $(pkg-config --libs libxxhash) -lpthread -lm -o build/cache_scan
 *   build/cache_scan N [ROUNDS]
 *
 * Prints one JSON line: ns per entry of each scan (median of ROUNDS, default
 * 5), the shards, and the reader's lookups per second idle, beside scans
 * and beside a spinning thread. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/cache.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int count_one(void *ud, const void *key, size_t len, keel_cache_value_t *v) {
  (void)key, (void)len, (void)v;
  ++*(uint64_t *)ud;
  return 0;
}

static int match_none(void *ud, const void *key, size_t len, keel_cache_value_t *v) {
  (void)ud, (void)key, (void)len, (void)v;
  return 0;
}

static int match_odd(void *ud, const void *key, size_t len, keel_cache_value_t *v) {
  (void)ud, (void)len, (void)v;
  uint64_t k;
  memcpy(&k, key, sizeof k);
  return (int)(k & 1);
}

typedef struct reader {
  keel_cache_t *c;
  uint64_t n;
  _Atomic int phase; /* 0 run, 1 stop */
  _Atomic uint64_t lookups;
} reader;

static void *read_loop(void *p) {
  reader *r = p;
  uint64_t s = 88172645463325252ull, n = 0;
  while (!atomic_load_explicit(&r->phase, memory_order_relaxed)) {
    for (int i = 0; i < 1024; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      uint64_t k = s % r->n;
      keel_cache_value_t *v;
      if (keel_cache_get(r->c, &k, sizeof k, &v) == KEEL_OK) keel_cache_value_release(v);
    }
    n += 1024;
    atomic_store_explicit(&r->lookups, n, memory_order_relaxed);
  }
  return NULL;
}

enum { IDLE, SCAN, SPIN };

/* The reader's lookups per second over `secs`, while this thread sleeps
 * (IDLE), runs for_each back to back (SCAN), or spins on arithmetic that
 * touches no memory (SPIN: what sharing the machine's cores alone costs
 * the reader, where its two CPUs are siblings of one core). */
static double reader_rate(reader *r, double secs, int what) {
  uint64_t a = atomic_load_explicit(&r->lookups, memory_order_relaxed);
  double t0 = now_s(), t;
  volatile uint64_t sink = 0;
  while ((t = now_s()) - t0 < secs) {
    if (what == SCAN) {
      uint64_t n = 0;
      (void)keel_cache_for_each(r->c, count_one, &n);
    } else if (what == SPIN) {
      uint64_t x = sink;
      for (int i = 0; i < 100000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
      sink = x;
    } else {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return (double)(atomic_load_explicit(&r->lookups, memory_order_relaxed) - a) / (now_s() - t0);
}

static void fill(keel_cache_t *c, uint64_t n) {
  for (uint64_t k = 0; k < n; k++)
    if (keel_cache_put(c, &k, sizeof k, &k, sizeof k) != KEEL_OK) {
      fprintf(stderr, "cache_scan: put failed\n");
      exit(1);
    }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cache_scan N [ROUNDS]\n");
    return 2;
  }
  uint64_t n = strtoull(argv[1], NULL, 10);
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  if (n < 1 || rounds < 1 || rounds > 99) {
    fprintf(stderr, "cache_scan: N >= 1 and 1 <= ROUNDS <= 99\n");
    return 2;
  }
  keel_cache_options o = {.size = sizeof o, .max_bytes = n * (keel_cache_entry_overhead() + 16) * 2,
                          .tag = KEEL_MEM_CACHE}; /* twice the room: every shard holds its part */
  keel_cache_t *c;
  if (keel_cache_create(&o, &c) != KEEL_OK) return 1;
  fill(c, n);
  double each[99], none[99], half[99];
  for (int i = 0; i < rounds; i++) {
    uint64_t seen = 0;
    double t0 = now_s();
    (void)keel_cache_for_each(c, count_one, &seen);
    double t1 = now_s();
    (void)keel_cache_remove_if(c, match_none, NULL);
    double t2 = now_s();
    uint64_t removed = keel_cache_remove_if(c, match_odd, NULL);
    double t3 = now_s();
    if (seen != n || removed != n / 2) {
      fprintf(stderr, "cache_scan: saw %llu of %llu, removed %llu\n", (unsigned long long)seen,
              (unsigned long long)n, (unsigned long long)removed);
      return 1;
    }
    each[i] = (t1 - t0) * 1e9 / (double)n;
    none[i] = (t2 - t1) * 1e9 / (double)n;
    half[i] = (t3 - t2) * 1e9 / (double)n;
    fill(c, n); /* put the odd keys back */
  }
  reader r = {.c = c, .n = n};
  pthread_t t;
  if (pthread_create(&t, NULL, read_loop, &r) != 0) return 1;
  double idle = reader_rate(&r, 1.0, IDLE), scan = reader_rate(&r, 1.0, SCAN), spin = reader_rate(&r, 1.0, SPIN);
  atomic_store(&r.phase, 1);
  pthread_join(t, NULL);
  keel_cache_stats st;
  keel_cache_get_stats(c, &st);
  printf("{\"entries\":%llu,\"shards\":%llu,\"for_each_ns_per_entry\":%.2f,\"remove_if_none_ns_per_entry\":%.2f,"
         "\"remove_if_half_ns_per_entry\":%.2f,\"reader_lookups_per_s_idle\":%.0f,\"reader_lookups_per_s_scanning\":%.0f,"
         "\"reader_lookups_per_s_spinning\":%.0f}\n",
         (unsigned long long)n, (unsigned long long)st.shards, median(each, rounds), median(none, rounds),
         median(half, rounds), idle, scan, spin);
  keel_cache_destroy(c);
  return 0;
}
