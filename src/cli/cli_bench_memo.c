/* cli_bench_memo.c — `keel bench memo`: the CPU memoization saves, against
 * the best it could save.
 *
 * One invocation runs the same events three ways, each a whole pipeline run
 * (parsing, stages, output), CPU measured with getrusage over the run:
 *   1. uncached                         -> cpu_s_uncached, c_miss = cpu / N
 *   2. cached from empty (--cache-size) -> cpu_s_cached, hit ratio h
 *   3. warm: a cache large enough for every result, filled by one untimed
 *      pass, then timed                 -> c_hit = cpu / N
 * ideal_reduction = 1 / ((1 - h) + h * c_hit / c_miss) is what a cache with
 * hit ratio h could save if a hit cost what a warm hit costs and a miss what
 * an uncached event costs; cpu_reduction = uncached / cached is what it did.
 * The outputs of runs 1, 2 and 3 must be byte-identical. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "keel/config.h"
#include "keel/pipeline.h"
#include "keel/recsys.h"

typedef struct opts {
  const char *trace, *format, *mix, *cache_size;
  uint64_t limit;
  const char *workers;
} opts;

typedef struct world {
  keel_config_t *cfg;
  keel_registry_t *reg;
  keel_recsys_t *rs;
  keel_pipeline_t *p;
} world;

static void usage(FILE *f) {
  fprintf(f, "usage: keel bench memo --trace FILE [--format auto|lirs|bin32|bin64|text] --limit N\n"
             "                       [--cache-size SIZE] [--workers W] [--mix rank=1]\n\n"
             "Runs the trace's events uncached, cached from empty, and on a warm cache holding every\n"
             "result; prints one JSON line: cpu_s_uncached, cpu_s_cached, cpu_reduction, hit_ratio,\n"
             "c_miss, c_hit, ideal_reduction. Defaults: --mix rank=1 (k = 10), --cache-size 256MiB,\n"
             "--workers 1, --limit 200000.\n");
}

static int parse(opts *o, int argc, char **argv) {
  static const struct option lo[] = {{"trace", required_argument, NULL, 't'},
                                     {"format", required_argument, NULL, 'f'},
                                     {"limit", required_argument, NULL, 'l'},
                                     {"cache-size", required_argument, NULL, 'c'},
                                     {"workers", required_argument, NULL, 'w'},
                                     {"mix", required_argument, NULL, 'm'},
                                     {"help", no_argument, NULL, 'h'},
                                     {NULL, 0, NULL, 0}};
  *o = (opts){.format = "auto", .mix = "rank=1", .cache_size = "256MiB", .limit = 200000, .workers = "1"};
  optind = 1;
  opterr = 0;
  int c;
  uint64_t v;
  while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
    switch (c) {
      case 't': o->trace = optarg; break;
      case 'f': o->format = optarg; break;
      case 'm': o->mix = optarg; break;
      case 'c':
        if (keel_parse_size(optarg, &v) != KEEL_OK || v == 0)
          return cli_usage("bench memo", "--cache-size wants a size such as 64MiB, got '%s'", optarg);
        o->cache_size = optarg;
        break;
      case 'l':
        if (cli_parse_u64(optarg, &o->limit) || o->limit == 0)
          return cli_usage("bench memo", "--limit wants a positive integer, got '%s'", optarg);
        break;
      case 'w':
        if (cli_parse_u64(optarg, &v) || v == 0 || v > 256)
          return cli_usage("bench memo", "--workers wants 1..256, got '%s'", optarg);
        o->workers = optarg;
        break;
      case 'h': usage(stdout); return KEEL_EXIT_OK;
      default: return cli_getopt_error("bench memo", c, argv);
    }
  }
  if (optind < argc) return cli_usage("bench memo", "unexpected argument '%s'", argv[optind]);
  if (!o->trace) return cli_usage("bench memo", "--trace FILE is required");
  return -1;
}

static void world_free(world *w) {
  keel_pipeline_destroy(w->p);
  keel_registry_destroy(w->reg);
  keel_recsys_destroy(w->rs);
  keel_config_destroy(w->cfg);
  memset(w, 0, sizeof *w);
}

/* A pipeline of the recommendation engine; cache_size NULL: uncached. */
static int world_make(world *w, const opts *o, const char *cache_size) {
  char err[1024] = "";
  memset(w, 0, sizeof *w);
  keel_status st = keel_config_create(&w->cfg);
  if (st == KEEL_OK) st = keel_config_set(w->cfg, "pipeline", "workers", o->workers, KEEL_CONFIG_CLI);
  static const char *const stages[] = {"cache.user", "cache.score", "cache.rank"};
  for (size_t i = 0; cache_size && st == KEEL_OK && i < 3; i++)
    st = keel_config_set(w->cfg, stages[i], "size", cache_size, KEEL_CONFIG_CLI);
  if (st == KEEL_OK) st = keel_registry_create(&w->reg);
  if (st == KEEL_OK) st = keel_recsys_create(w->cfg, &w->rs, err, sizeof err);
  if (st == KEEL_OK) st = keel_recsys_register(w->reg, w->rs, err, sizeof err);
  if (st == KEEL_OK) st = keel_pipeline_create(w->reg, w->cfg, &w->p, err, sizeof err);
  if (st != KEEL_OK)
    return cli_fail("bench memo", st == KEEL_ECONFIG ? KEEL_EXIT_USAGE : KEEL_EXIT_FAIL, "%s",
                    err[0] ? err : keel_status_str(st));
  return -1;
}

static int run(world *w, const char *in, const char *out, keel_run_stats *s) {
  char err[1024] = "";
  keel_run_io io = {.input = in, .output = out, .dead_letter = "/dev/null"};
  keel_status st = keel_pipeline_run(w->p, &io, s, err, sizeof err);
  if (st != KEEL_OK) return cli_fail("bench memo", KEEL_EXIT_FAIL, "%s", err);
  return -1;
}

static int same_file(const char *a, const char *b) {
  FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
  int same = x && y;
  while (same) {
    int c = getc(x), d = getc(y);
    if (c != d) same = 0;
    if (c == EOF || d == EOF) break;
  }
  if (x) fclose(x);
  if (y) fclose(y);
  return same;
}

static void hits_misses(const keel_run_stats *s, uint64_t *hits, uint64_t *lookups) {
  *hits = *lookups = 0;
  for (size_t i = 0; i < s->n_stages; i++)
    if (s->stages[i].memoized) {
      *hits += s->stages[i].cache.hits;
      *lookups += s->stages[i].cache.hits + s->stages[i].cache.misses;
    }
}

static int measure(const opts *o, const char *dir) {
  char in[128], a[128], b[128], c[128];
  snprintf(in, sizeof in, "%s/events.ndjson", dir);
  snprintf(a, sizeof a, "%s/uncached.ndjson", dir);
  snprintf(b, sizeof b, "%s/cached.ndjson", dir);
  snprintf(c, sizeof c, "%s/warm.ndjson", dir);
  int grc = cli_gen_file(o->trace, o->format, o->mix, o->limit, in);
  if (grc != 0) /* keel gen said why; a bad trace, format or mix is a usage error here too */
    return cli_fail("bench memo", grc == KEEL_EXIT_USAGE ? KEEL_EXIT_USAGE : KEEL_EXIT_FAIL,
                    "turning %s into events failed (the reason above)", o->trace);
  keel_run_stats su, sc, sw;
  world w;
  int rc = world_make(&w, o, NULL);
  if (rc < 0) rc = run(&w, in, a, &su);
  world_free(&w);
  if (rc < 0) rc = world_make(&w, o, o->cache_size);
  if (rc < 0) rc = run(&w, in, b, &sc);
  world_free(&w);
  if (rc < 0) rc = world_make(&w, o, "64GiB"); /* the bound is never reached: every result fits */
  if (rc < 0) rc = run(&w, in, c, &sw);        /* fills the cache, untimed */
  if (rc < 0) rc = run(&w, in, c, &sw);
  world_free(&w);
  if (rc >= 0) return rc;
  if (!same_file(a, b) || !same_file(a, c))
    return cli_fail("bench memo", KEEL_EXIT_CHECK, "the outputs of the uncached, cached and warm runs differ");
  uint64_t hits, lookups, n = su.events_out ? su.events_out : 1;
  hits_misses(&sc, &hits, &lookups);
  double h = lookups ? (double)hits / (double)lookups : 0;
  double c_miss = su.cpu_s / (double)n, c_hit = sw.cpu_s / (double)n;
  double ideal = 1.0 / ((1 - h) + h * c_hit / c_miss), red = sc.cpu_s > 0 ? su.cpu_s / sc.cpu_s : 0;
  fprintf(stderr,
          "keel bench memo: %llu events; uncached %.3f s CPU, cached %.3f s (hit ratio %.3f), warm %.3f s\n"
          "  CPU reduction %.2fx of an ideal %.2fx (%.0f %%); a hit costs %.4f of a miss\n",
          (unsigned long long)su.events_out, su.cpu_s, sc.cpu_s, h, sw.cpu_s, red, ideal, 100 * red / ideal,
          c_hit / c_miss);
  /* The ideal models the cached run from the other two, each measured
   * apart: beyond it, or in short runs, the difference is within the
   * measurements' noise. */
  if (red > ideal * 1.02 || su.cpu_s < 0.5)
    fprintf(stderr, "  (%s: runs of %.2f s of CPU, each measured apart, are within a shared machine's noise; "
                    "a larger --limit measures better)\n",
            red > ideal * 1.02 ? "above the ideal" : "short runs", su.cpu_s);
  printf("{\"events\":%llu,\"cpu_s_uncached\":%.6f,\"cpu_s_cached\":%.6f,\"cpu_s_warm\":%.6f,"
         "\"cpu_reduction\":%.6f,\"hit_ratio\":%.6f,\"c_miss\":%.9f,\"c_hit\":%.9f,\"ideal_reduction\":%.6f,"
         "\"identical\":true}\n",
         (unsigned long long)su.events_out, su.cpu_s, sc.cpu_s, sw.cpu_s, red, h, c_miss, c_hit, ideal);
  return KEEL_EXIT_OK;
}

int keel_bench_memo(int argc, char **argv) {
  opts o;
  int rc = parse(&o, argc, argv);
  if (rc >= 0) return rc;
  char dir[] = "/tmp/keel-bench-memo-XXXXXX";
  if (!mkdtemp(dir)) return cli_fail("bench memo", KEEL_EXIT_FAIL, "cannot make a temporary folder");
  rc = measure(&o, dir);
  static const char *const files[] = {"events.ndjson", "uncached.ndjson", "cached.ndjson", "warm.ndjson"};
  char path[160];
  for (size_t i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return rc;
}
