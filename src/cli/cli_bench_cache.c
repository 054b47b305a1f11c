/* cli_bench_cache.c — `keel bench cache`: the cache's hit path, measured.
 *
 * The whole trace is read into memory first (keys as 8-byte strings), so the
 * clock sees only the cache. `read` pre-fills the cache with the trace's
 * first N distinct keys and times borrowed reads (keel_cache_read, epoch
 * protected, no reference taken) over the whole trace; `readthrough` times
 * keel_cache_read_or_load (get-or-load with the same borrowed read: a hit is
 * read in place, a miss loaded, inserted and read) from an empty cache with
 * a cheap deterministic loader (value = key x 2), so misses, inserts and
 * evictions are on the clock. `--borrow no` times keel_cache_get_or_load +
 * keel_cache_value_release instead (a reference per lookup). Statistics stay on, the policy is the default.
 * Threads pin the epoch per batch of 1,024 lookups (keel_cache_pin); `--pin no`
 * times lookups that each enter and leave it, as code that never pins does.
 * `--batch K` (read only) times keel_cache_read_many over K consecutive
 * trace keys per call instead of one keel_cache_read per key.
 * `--maintenance` picks who applies recorded hits to the policy (see
 * keel_cache_maintenance: by default a thread of the cache's own up to
 * 16,384 entries, the looking-up threads beyond); the process's CPU time
 * (cpu_share) includes that thread.
 * Thread t starts at key t x (n / threads) and walks the trace cyclically.
 * The protocol is ../shared/bench/CaffeineBench.java's, so the two can be
 * compared side by side: a warm-up of --seconds S, then the rate is sampled
 * over 5 intervals of S each; their median goes out as one JSON line of the
 * same shape. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"
#include "keel/config.h"
#include "keel/cache.h"
#include "keel/policy.h"
#include "keel/mem.h"
#include "keel/trace.h"

typedef struct bench {
  keel_cache_t *cache;
  const int64_t *keys;
  size_t n;
  int read;
  int borrow; /* readthrough: read_or_load (1) or get_or_load + release (0) */
  int pin;    /* one epoch entry per batch of 1,024 lookups (1) or one per lookup (0) */
  unsigned batch; /* read: keys per keel_cache_read_many call (1: keel_cache_read) */
  atomic_int stop;
} bench;

typedef struct worker {
  bench *b;
  size_t start;
  _Atomic uint64_t ops;
  uint64_t hits;
  pthread_t tid;
  char pad[64];
} worker;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {}
}

static void read_fn(void *ctx, const void *data, size_t len) {
  uint64_t *sink = ctx, v;
  if (len == 8) {
    memcpy(&v, data, 8);
    *sink += v;
  }
}

static void read_many_fn(void *ctx, size_t i, const void *data, size_t len) {
  (void)i;
  read_fn(ctx, data, len);
}

#define BATCH_MAX 1024

/* A round of 1,024 lookups, keel_cache_read_many over K keys at a time (the
 * last call takes what is left when K does not divide 1,024). */
static uint64_t read_batch(bench *b, size_t *i, uint64_t *sink) {
  const void *k[BATCH_MAX];
  size_t len[BATCH_MAX];
  uint64_t hits = 0;
  for (unsigned done = 0; done < 1024;) {
    unsigned m = 1024 - done < b->batch ? 1024 - done : b->batch;
    for (unsigned j = 0; j < m; j++) {
      k[j] = &b->keys[*i];
      len[j] = 8;
      if (++*i == b->n) *i = 0;
    }
    hits += keel_cache_read_many(b->cache, m, k, len, read_many_fn, sink);
    done += m;
  }
  return hits;
}

static keel_status loader(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  (void)ctx;
  int64_t k;
  if (len != 8) return KEEL_EINVAL;
  memcpy(&k, key, 8);
  k = (int64_t)((uint64_t)k * 2); /* wraps like Java's k * 2 */
  return keel_cache_load_set(ld, &k, 8);
}

/* The loops keep the run's settings in locals: read from `b` in the loop,
 * they were reloaded at every lookup (the calls may write memory), which
 * timed the bench's own bookkeeping beside the cache's. */
static void *work(void *p) {
  worker *w = p;
  bench *b = w->b;
  keel_cache_t *c = b->cache;
  const int64_t *keys = b->keys;
  const size_t n = b->n;
  const int read = b->read, batched = b->read && b->batch > 1, borrow = b->borrow, pin = b->pin;
  size_t i = w->start;
  uint64_t hits = 0, sink = 0;
  while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
    if (pin) keel_cache_pin(c); /* one epoch entry per batch of lookups */
    if (batched) {
      hits += read_batch(b, &i, &sink);
    } else if (read) {
      for (int j = 0; j < 1024; j++) {
        const int64_t *k = &keys[i];
        if (++i == n) i = 0;
        hits += keel_cache_read(c, k, 8, read_fn, &sink) == KEEL_OK;
      }
    } else {
      for (int j = 0; j < 1024; j++) {
        const int64_t *k = &keys[i];
        if (++i == n) i = 0;
        if (borrow) {
          (void)keel_cache_read_or_load(c, k, 8, loader, NULL, read_fn, &sink);
        } else {
          keel_cache_value_t *v;
          if (keel_cache_get_or_load(c, k, 8, loader, NULL, &v) == KEEL_OK) keel_cache_value_release(v);
        }
      }
    }
    if (pin) keel_cache_unpin(c);
    atomic_fetch_add_explicit(&w->ops, 1024, memory_order_relaxed);
  }
  w->hits = hits + (sink == 42); /* keep the reads observable */
  return NULL;
}

static int load_keys(const char *path, keel_trace_format fmt, int64_t **out, size_t *n) {
  keel_trace_t *t;
  if (keel_trace_open(path, fmt, &t) != KEEL_OK)
    return cli_fail("bench cache", KEEL_EXIT_FAIL, "cannot open trace '%s'", path);
  size_t cap = 1 << 16, len = 0;
  int64_t *k = keel_mem_alloc(KEEL_MEM_OTHER, cap * sizeof *k), key;
  keel_status st;
  while (k && (st = keel_trace_next(t, &key)) == KEEL_OK) {
    if (len == cap) {
      int64_t *nk = keel_mem_realloc(KEEL_MEM_OTHER, k, 2 * cap * sizeof *k);
      if (!nk) break;
      k = nk;
      cap *= 2;
    }
    k[len++] = key;
  }
  int rc = 0;
  if (!k || st != KEEL_EEOF) rc = cli_fail("bench cache", KEEL_EXIT_FAIL, "%s", k ? keel_trace_error(t) : "out of memory");
  else if (!len) rc = cli_fail("bench cache", KEEL_EXIT_FAIL, "empty trace");
  keel_trace_close(t);
  if (rc) {
    keel_mem_free(k);
    return rc;
  }
  *out = k;
  *n = len;
  return 0;
}

/* Puts the first `size` distinct keys of the trace. */
static void prefill(keel_cache_t *c, const int64_t *keys, size_t n, uint64_t size) {
  keel_cache_stats st;
  for (size_t i = 0; i < n; i++) {
    keel_cache_value_t *v;
    if (keel_cache_get(c, &keys[i], 8, &v) == KEEL_OK) {
      keel_cache_value_release(v);
      continue;
    }
    int64_t val = (int64_t)((uint64_t)keys[i] * 2);
    (void)keel_cache_put(c, &keys[i], 8, &val, 8);
    keel_cache_get_stats(c, &st);
    if (st.entries >= size) break;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void usage(FILE *f) {
  fprintf(f, "usage: keel bench cache --trace FILE [--format auto|lirs|bin32|bin64|text] [--threads N]\n"
             "                        [--seconds S] [--size N] [--workload read|readthrough] [--policy P]\n"
             "                        [--borrow yes|no] [--pin yes|no] [--maintenance auto|thread|caller]\n"
             "                        [--batch K] [--idle DURATION]\n"
             "Warms up for S seconds (default 3), then prints one JSON line: ops_per_s (the median\n"
             "of 5 intervals of S seconds) and hit_ratio, with entry_overhead (bytes charged per\n"
             "entry beyond key and value) and held_overhead (bytes the cache holds per entry\n"
             "beyond them), and for readthrough loads_per_miss (below 1 where misses joined\n"
             "another thread's load). --batch K (read only, 1 to 1024) looks keys up K at a time\n"
             "with keel_cache_read_many. --idle (e.g. 10m) makes entries expire when idle, so\n"
             "every hit reads the clock (what that costs).\n");
}

int keel_bench_cache(int argc, char **argv) {
  const char *trace = NULL, *workload = "read", *policy = NULL;
  keel_trace_format fmt = KEEL_TRACE_AUTO;
  uint64_t threads = 1, size = 65536;
  double seconds = 3;
  int borrow = 1, pin = 1;
  uint64_t batch = 1, idle = 0;
  keel_cache_maintenance maint = KEEL_CACHE_MAINTAIN_AUTO;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return KEEL_EXIT_OK;
    } else if (!strcmp(a, "--trace") && has) trace = argv[++i];
    else if (!strcmp(a, "--format") && has) {
      if (keel_trace_format_parse(argv[++i], &fmt) != KEEL_OK)
        return cli_usage("bench cache", "unknown format '%s'", argv[i]);
    } else if (!strcmp(a, "--threads") && has) {
      if (cli_parse_u64(argv[++i], &threads) || !threads || threads > 256)
        return cli_usage("bench cache", "bad --threads '%s'", argv[i]);
    } else if (!strcmp(a, "--seconds") && has) {
      if (cli_parse_double(argv[++i], &seconds) || seconds <= 0 || seconds > 3600)
        return cli_usage("bench cache", "bad --seconds '%s'", argv[i]);
    } else if (!strcmp(a, "--size") && has) {
      if (cli_parse_u64(argv[++i], &size) || !size || size > (1ull << 32))
        return cli_usage("bench cache", "bad --size '%s' (entries, 1 to 2^32)", argv[i]);
    } else if (!strcmp(a, "--workload") && has) {
      workload = argv[++i];
      if (strcmp(workload, "read") && strcmp(workload, "readthrough"))
        return cli_usage("bench cache", "--workload is read or readthrough");
    } else if (!strcmp(a, "--policy") && has) {
      policy = argv[++i];
      if (!keel_policy_known(policy))
        return cli_usage("bench cache", "unknown policy '%s' (known: %s)", policy, keel_policy_names());
    }
    else if (!strcmp(a, "--borrow") && has) {
      const char *v = argv[++i];
      if (strcmp(v, "yes") && strcmp(v, "no")) return cli_usage("bench cache", "--borrow is yes or no");
      borrow = !strcmp(v, "yes");
    } else if (!strcmp(a, "--pin") && has) {
      const char *v = argv[++i];
      if (strcmp(v, "yes") && strcmp(v, "no")) return cli_usage("bench cache", "--pin is yes or no");
      pin = !strcmp(v, "yes");
    } else if (!strcmp(a, "--batch") && has) {
      if (cli_parse_u64(argv[++i], &batch) || !batch || batch > BATCH_MAX)
        return cli_usage("bench cache", "bad --batch '%s' (1 to %d)", argv[i], BATCH_MAX);
    } else if (!strcmp(a, "--idle") && has) {
      if (keel_parse_duration_ns(argv[++i], &idle) != KEEL_OK || !idle)
        return cli_usage("bench cache", "--idle wants a duration such as 10m, got '%s'", argv[i]);
    } else if (!strcmp(a, "--maintenance") && has) {
      const char *v = argv[++i];
      if (keel_cache_maintenance_parse(v, &maint) != 0)
        return cli_usage("bench cache", "--maintenance is auto, thread or caller");
    }
    else return cli_usage("bench cache", "unknown or incomplete option '%s'", a);
  }
  if (!trace) return cli_usage("bench cache", "--trace is required");
  if (batch > 1 && strcmp(workload, "read")) return cli_usage("bench cache", "--batch is for --workload read");

  int64_t *keys = NULL;
  size_t n = 0;
  int rc = load_keys(trace, fmt, &keys, &n);
  if (rc) return rc;
  keel_cache_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.max_entries = size;
  o.idle_ns = idle;
  o.max_bytes = size * (keel_cache_entry_overhead() + 16 + (idle ? 16 : 0)) + 1; /* idle: 16 more per entry */
  o.policy = policy;
  o.tag = KEEL_MEM_CACHE;
  o.maintenance = maint;
  bench b = {NULL, keys, n, !strcmp(workload, "read"), borrow, pin, (unsigned)batch, 0};
  char why[192];
  keel_status st = keel_cache_options_check(&o, why, sizeof why);
  if (st == KEEL_OK) st = keel_cache_create(&o, &b.cache);
  if (st != KEEL_OK) {
    keel_mem_free(keys);
    return cli_fail("bench cache", KEEL_EXIT_FAIL, "cache: %s", st == KEEL_EINVAL ? why : keel_status_str(st));
  }
  if (b.read) prefill(b.cache, keys, n, size);

  worker *w = keel_mem_calloc(KEEL_MEM_OTHER, threads, sizeof *w);
  if (!w) {
    keel_cache_destroy(b.cache);
    keel_mem_free(keys);
    return cli_fail("bench cache", KEEL_EXIT_FAIL, "out of memory");
  }
  for (uint64_t t = 0; t < threads; t++) {
    w[t].b = &b;
    w[t].start = (size_t)(t * (n / threads));
    pthread_create(&w[t].tid, NULL, work, &w[t]);
  }
  double rates[5];
  sleep_s(seconds); /* warm-up */
  double cpu0 = cpu_s(), wall0 = now_s();
  uint64_t ops0 = 0;
  for (uint64_t t = 0; t < threads; t++) ops0 += atomic_load(&w[t].ops);
  keel_cache_stats s0;
  keel_cache_get_stats(b.cache, &s0);
  for (int r = 0; r < 5; r++) {
    uint64_t o0 = 0, o1 = 0;
    for (uint64_t t = 0; t < threads; t++) o0 += atomic_load(&w[t].ops);
    double t0 = now_s();
    sleep_s(seconds);
    for (uint64_t t = 0; t < threads; t++) o1 += atomic_load(&w[t].ops);
    rates[r] = (double)(o1 - o0) / (now_s() - t0);
  }
  uint64_t ops1 = 0;
  for (uint64_t t = 0; t < threads; t++) ops1 += atomic_load(&w[t].ops);
  /* Ops per CPU-second of the whole process: steadier than wall-clock
   * rates when other processes share the cores. */
  double per_cpu = (double)(ops1 - ops0) / (cpu_s() - cpu0), wall = now_s() - wall0;
  atomic_store(&b.stop, 1);
  uint64_t ops = 0, hits = 0;
  for (uint64_t t = 0; t < threads; t++) {
    pthread_join(w[t].tid, NULL);
    ops += atomic_load(&w[t].ops);
    hits += w[t].hits;
  }
  qsort(rates, 5, sizeof rates[0], cmp_double);
  keel_cache_stats s1;
  keel_cache_get_stats(b.cache, &s1);
  double lookups = (double)((s1.hits + s1.misses - s0.hits - s0.misses) | 1);
  double hr = b.read ? (double)hits / (double)(ops ? ops : 1) : (double)(s1.hits - s0.hits) / lookups;
  /* The adaptive policy's bookkeeping: shadow-cache requests per lookup. */
  double shadow = (double)(s1.policy_shadow_accesses - s0.policy_shadow_accesses) / lookups;
  /* Recorded lookups the policy never saw (lossy buffers), per lookup. */
  double dropped = (double)(s1.policy_dropped - s0.policy_dropped) / lookups;
  /* Sampled requests the shadows never saw (the maintenance thread, which
   * replays them in small caches, fell behind), per lookup. */
  double sdropped = (double)(s1.policy_shadow_dropped - s0.policy_shadow_dropped) / lookups;
  /* Loads per miss: below 1 where misses joined another thread's load of
   * the key (single flight) or found it stored when they looked again.
   * Approximate: pinned threads add their lookups to the counters per pin
   * (1,024), loads count at once. */
  uint64_t missed = s1.misses - s0.misses;
  double lpm = (double)(s1.loads - s0.loads) / (double)(missed ? missed : 1);
  /* What the cache really holds per entry beyond keys and values: every
   * byte under its memory tag (entries, retired ones awaiting reclamation,
   * tables, policy records, sketch and shadows, reader slots), less the
   * keys and values (the charged bytes less the charged overhead), per
   * entry. entry_overhead is what the byte bound charges instead. */
  keel_mem_stats ms;
  keel_mem_tag_stats(KEEL_MEM_CACHE, &ms);
  uint64_t payload = s1.bytes - s1.entries * keel_cache_entry_overhead();
  double held = s1.entries ? ((double)ms.current - (double)payload) / (double)s1.entries : 0;
  printf("{\"impl\":\"keel\",\"threads\":%llu,\"workload\":\"%s\",\"borrow\":%s,\"size\":%llu,\"policy\":\"%s\","
         "\"pin\":%s,\"maintenance\":\"%s\",\"batch\":%u,\"ops_per_s\":%.0f,\"hit_ratio\":%.4f,\"ops_per_cpu_s\":%.0f,\"cpu_share\":%.2f,"
         "\"entries\":%llu,\"bytes\":%llu,\"entry_overhead\":%zu,\"held_overhead\":%.1f,\"shards\":%llu,\"shadow_per_lookup\":%.3f,\"dropped_per_lookup\":%.3f,"
         "\"shadow_dropped_per_lookup\":%.3f,\"loads_per_miss\":%.4f}\n",
         (unsigned long long)threads, workload, b.read || borrow ? "true" : "false", (unsigned long long)size, keel_cache_policy(b.cache), pin ? "true" : "false", keel_cache_maintenance_name(maint), b.batch, rates[2],
         hr, per_cpu, (double)(ops1 - ops0) / per_cpu / wall, (unsigned long long)s1.entries, (unsigned long long)s1.bytes, keel_cache_entry_overhead(),
         held, (unsigned long long)s1.shards, shadow, dropped, sdropped, lpm);
  keel_mem_free(w);
  keel_cache_destroy(b.cache);
  keel_mem_free(keys);
  return KEEL_EXIT_OK;
}
