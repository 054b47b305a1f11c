/* cli_bench_mem.c — `keel bench mem`: what per-tag tracking costs.
 *
 * Runs the same pipeline (parsing plus the `user` and `score` stages, no
 * caches: allocation-heavy, not BLAS-bound) over the same in-memory-generated
 * events, with tracking on and off (keel_mem_set_tracking, flipped between
 * runs while no pipeline thread exists), in alternating pairs whose order
 * alternates too (off-on, on-off, ...) so drift and warm-up fall on both
 * sides. The figure is the median over pairs of events/s on / events/s off;
 * the target is >= 0.97. Rates are given two ways: per wall second, and per
 * CPU second of the process (user + system over the run). On a machine
 * shared with other work the wall rate mostly measures the neighbours, so
 * the headline ratio is the CPU one; both are printed. One JSON line on
 * stdout, a table on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keel/mem.h"
#include "runopts.h"

#define MAX_PAIRS 101
#define TARGET 0.97

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const double *v, size_t n) {
  double s[MAX_PAIRS];
  memcpy(s, v, n * sizeof *v);
  qsort(s, n, sizeof *s, cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* user 0.3 / score 0.7 events over 100k users and the catalog's products. */
static int write_events(const char *path, uint64_t n, uint64_t products) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  uint64_t s = 7;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t u = splitmix(&s) % 100000;
    if (splitmix(&s) % 10 < 3) fprintf(f, "{\"type\":\"user\",\"user\":\"u%llu\"}\n", (unsigned long long)u);
    else
      fprintf(f, "{\"type\":\"score\",\"user\":\"u%llu\",\"product\":\"%llu\"}\n", (unsigned long long)u,
              (unsigned long long)(splitmix(&s) % products));
  }
  return fclose(f);
}

typedef struct rate {
  double wall, cpu; /* events per wall second, per CPU second */
} rate;

/* One run; wall < 0 on failure. */
static rate one_run(cli_run *r, int tracking) {
  keel_mem_set_tracking(tracking);
  keel_run_stats st;
  char err[512];
  keel_status s = keel_pipeline_run(r->pipeline, &r->io, &st, err, sizeof err);
  keel_mem_set_tracking(1);
  if (s != KEEL_OK || st.wall_s <= 0 || st.cpu_s <= 0) {
    fprintf(stderr, "keel bench mem: %s\n", s != KEEL_OK ? err : "empty run");
    return (rate){-1, -1};
  }
  return (rate){(double)st.events_out / st.wall_s, (double)st.events_out / st.cpu_s};
}

/* The allocator alone: ns per keel_mem_alloc + keel_mem_free of 16..1039
 * bytes, 64 live blocks, one thread. No pipeline hides the counting here. */
static double alloc_ns(int tracking) {
  enum { N = 2000000, LIVE = 64 };
  void *live[LIVE] = {0};
  keel_mem_set_tracking(tracking);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned i = 0; i < N; i++) {
    unsigned k = (i * 2654435761u) % LIVE;
    keel_mem_free(live[k]);
    live[k] = keel_mem_alloc(KEEL_MEM_OTHER, 16 + (i * 40503u) % 1024);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  for (unsigned k = 0; k < LIVE; k++) keel_mem_free(live[k]);
  keel_mem_set_tracking(1);
  return ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
}

typedef struct mem_opts {
  uint64_t events, pairs;
  const char *workers;
  int json;
} mem_opts;

static int parse(int argc, char **argv, mem_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: keel bench mem [--events N] [--pairs P] [--workers W] [--json]\n\n"
             "events/s of parse + user + score with per-tag tracking on vs off: the median of P\n"
             "alternating pairs (default N 200000, P 7, W 1); target on/off >= %.2f\n", TARGET);
      return KEEL_EXIT_OK;
    } else if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (v && !strcmp(a, "--events")) {
      if (cli_parse_u64(v, &o->events) || o->events < 1000) return cli_usage("bench mem", "--events wants >= 1000");
      i++;
    } else if (v && !strcmp(a, "--pairs")) {
      if (cli_parse_u64(v, &o->pairs) || o->pairs < 1 || o->pairs > MAX_PAIRS)
        return cli_usage("bench mem", "--pairs wants 1..%d", MAX_PAIRS);
      i++;
    } else if (v && !strcmp(a, "--workers")) {
      o->workers = v;
      i++;
    } else {
      return cli_usage("bench mem", "unknown option '%s'", a);
    }
  }
  return -1;
}

static void report(const mem_opts *o, const rate *on, const rate *off, double ns_on, double ns_off) {
  size_t n = (size_t)o->pairs;
  double rw[MAX_PAIRS], rc[MAX_PAIRS], onw[MAX_PAIRS], offw[MAX_PAIRS], onc[MAX_PAIRS], offc[MAX_PAIRS];
  for (size_t i = 0; i < n; i++) {
    rw[i] = on[i].wall / off[i].wall;
    rc[i] = on[i].cpu / off[i].cpu;
    onw[i] = on[i].wall, offw[i] = off[i].wall, onc[i] = on[i].cpu, offc[i] = off[i].cpu;
  }
  double mw = median(rw, n), mc = median(rc, n);
  fprintf(stderr, "keel bench mem: %llu events per run (parse + user + score), %s worker(s)\n",
          (unsigned long long)o->events, o->workers);
  fprintf(stderr, "  %-5s %12s %12s %8s   %12s %12s %8s\n", "pair", "on ev/s", "off ev/s", "on/off", "on ev/cpu-s",
          "off ev/cpu-s", "on/off");
  for (size_t i = 0; i < n; i++)
    fprintf(stderr, "  %-5zu %12.0f %12.0f %8.4f   %12.0f %12.0f %8.4f\n", i + 1, on[i].wall, off[i].wall, rw[i],
            on[i].cpu, off[i].cpu, rc[i]);
  fprintf(stderr, "  median on/off: %.4f per CPU second, %.4f per wall second (target >= %.2f): %s\n", mc, mw, TARGET,
          mc >= TARGET ? "met" : "NOT met");
  fprintf(stderr, "  the allocator alone (alloc + free, 1 thread, median of %zu): %.1f ns tracked, %.1f ns untracked\n",
          n, ns_on, ns_off);
  if (!o->json) return;
  printf("{\"bench\":\"mem\",\"events\":%llu,\"pairs\":%zu,\"workers\":%s,\"median_ratio\":%.5f,"
         "\"median_ratio_wall\":%.5f,\"median_on_eps\":%.1f,\"median_off_eps\":%.1f,\"median_on_eps_cpu\":%.1f,"
         "\"median_off_eps_cpu\":%.1f,\"target\":%.2f,\"met\":%s,\"alloc_free_ns_on\":%.2f,"
         "\"alloc_free_ns_off\":%.2f,\"ratios\":[",
         (unsigned long long)o->events, n, o->workers, mc, mw, median(onw, n), median(offw, n), median(onc, n),
         median(offc, n), TARGET, mc >= TARGET ? "true" : "false", ns_on, ns_off);
  for (size_t i = 0; i < n; i++) printf("%s%.5f", i ? "," : "", rc[i]);
  printf("],\"ratios_wall\":[");
  for (size_t i = 0; i < n; i++) printf("%s%.5f", i ? "," : "", rw[i]);
  printf("]}\n");
}

int keel_bench_mem(int argc, char **argv) {
  mem_opts o = {.events = 200000, .pairs = 7, .workers = "1"};
  int rc = parse(argc, argv, &o);
  if (rc >= 0) return rc;
  char *rargv[] = {"bench-mem", "--stages", "user,score", "--workers", (char *)o.workers, "--no-cache", "--quiet",
                   NULL};
  cli_run r;
  rc = cli_run_parse(&r, "bench mem", 7, rargv);
  if (rc < 0) rc = cli_run_build(&r);
  char path[] = "/tmp/keel-bench-mem-XXXXXX";
  int fd = rc < 0 ? mkstemp(path) : -1;
  if (rc < 0 && (fd < 0 || write_events(path, o.events, 20000)))
    rc = cli_fail("bench mem", KEEL_EXIT_FAIL, "cannot write the events to %s", path);
  if (fd >= 0) close(fd);
  r.io.input = path;
  r.io.output = "/dev/null";
  r.io.dead_letter = "/dev/null";
  rate on[MAX_PAIRS], off[MAX_PAIRS];
  double ns_on[MAX_PAIRS], ns_off[MAX_PAIRS];
  if (rc < 0 && one_run(&r, 1).wall < 0) rc = KEEL_EXIT_FAIL; /* warm-up: page cache, catalog, allocator */
  for (size_t i = 0; rc < 0 && i < o.pairs; i++) {
    int on_first = i % 2;
    rate a = one_run(&r, on_first), b = one_run(&r, !on_first);
    if (a.wall < 0 || b.wall < 0) rc = KEEL_EXIT_FAIL;
    on[i] = on_first ? a : b;
    off[i] = on_first ? b : a;
    double x = alloc_ns(on_first), y = alloc_ns(!on_first);
    ns_on[i] = on_first ? x : y;
    ns_off[i] = on_first ? y : x;
  }
  if (fd >= 0) unlink(path);
  if (rc < 0) {
    report(&o, on, off, median(ns_on, (size_t)o.pairs), median(ns_off, (size_t)o.pairs));
    rc = KEEL_EXIT_OK;
  }
  cli_run_free(&r);
  return rc;
}
