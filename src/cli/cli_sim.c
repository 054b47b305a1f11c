/* cli_sim.c — `keel sim`: replays a key trace through keel's own eviction
 * policies (keel/policy.h, the code the cache runs) with unit weights and
 * prints hit ratios.
 *
 * The trace streams: with --size-pct a first pass counts distinct keys (a
 * set of keys, not of requests), then one pass feeds every (size, policy)
 * replay at once. Progress goes to stderr when it is a terminal. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "keel/mem.h"
#include "keel/policy.h"
#include "keel/progress.h"
#include "keel/trace.h"
#include "svgchart.h"

#define MAX_LIST 64

typedef struct opts {
  const char *trace;
  keel_trace_format fmt;
  const char *policies[MAX_LIST];
  unsigned npolicies;
  uint64_t sizes[MAX_LIST];
  unsigned nsizes;
  uint64_t pcts[MAX_LIST];
  unsigned npcts;
  int csv;
  uint64_t seed;
  const char *svg; /* --svg FILE: the miss-ratio curves */
} opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel sim --trace FILE [--format auto|lirs|bin32|bin64|text]\n"
          "                [--policy NAME,...] (--size N,... | --size-pct P,...) [--csv] [--seed N]\n\n"
          "Replays a key trace through keel's cache policies with every object of size 1\n"
          "and prints hit ratios. Policies: %s (default: default).\n"
          "--size-pct P gives max(10, distinct keys x P / 100 rounded half up) entries.\n"
          "--csv prints trace,requests,unique,size,policy,hit_ratio.\n"
          "--svg FILE draws each policy's miss ratio over cache size as an SVG chart.\n",
          keel_policy_names());
}

/* Splits a comma list in place into out[]; returns the count, or -1 for
 * more than max items or an empty one ("1,,2", "1,"). */
static int split(char *s, const char **out, unsigned max) {
  unsigned n = 0;
  for (char *tok = s;; tok++) {
    char *comma = strchr(tok, ',');
    if (comma) *comma = '\0';
    if (!*tok || n == max) return -1;
    out[n++] = tok;
    if (!comma) return (int)n;
    tok = comma;
  }
}

/* A comma list of numbers; s is not changed, so a message can quote it whole. */
static int parse_u64_list(const char *s, uint64_t *out, unsigned *n, int allow_zero) {
  char copy[1024];
  if (snprintf(copy, sizeof copy, "%s", s) >= (int)sizeof copy) return -1;
  const char *parts[MAX_LIST];
  int k = split(copy, parts, MAX_LIST);
  if (k <= 0) return -1;
  for (int i = 0; i < k; i++)
    if (cli_parse_u64(parts[i], &out[i]) != 0 || (!allow_zero && out[i] == 0)) return -1;
  *n = (unsigned)k;
  return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
  static char pol_default[] = "default";
  char *pol = pol_default;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has = i + 1 < argc;
    if (!strcmp(a, "--csv")) {
      o->csv = 1;
    } else if (!strcmp(a, "--trace") && has) {
      o->trace = argv[++i];
    } else if (!strcmp(a, "--format") && has) {
      if (keel_trace_format_parse(argv[++i], &o->fmt) != KEEL_OK)
        return cli_usage("sim", "unknown format '%s'", argv[i]);
    } else if (!strcmp(a, "--policy") && has) {
      pol = argv[++i];
    } else if (!strcmp(a, "--size") && has) {
      if (parse_u64_list(argv[++i], o->sizes, &o->nsizes, 0) != 0)
        return cli_usage("sim", "bad --size '%s' (positive integers, comma-separated)", argv[i]);
    } else if (!strcmp(a, "--size-pct") && has) {
      int bad = parse_u64_list(argv[++i], o->pcts, &o->npcts, 0) != 0;
      for (unsigned k = 0; !bad && k < o->npcts; k++) bad = o->pcts[k] > 100000; /* keys x P stays in 64 bits */
      if (bad) return cli_usage("sim", "bad --size-pct '%s' (percentages 1..100000, comma-separated)", argv[i]);
    } else if (!strcmp(a, "--svg") && has) {
      o->svg = argv[++i];
    } else if (!strcmp(a, "--seed") && has) {
      if (cli_parse_u64(argv[++i], &o->seed) != 0) return cli_usage("sim", "bad --seed '%s'", argv[i]);
    } else {
      return cli_usage("sim", "unknown or incomplete option '%s'", a);
    }
  }
  if (!o->trace) return cli_usage("sim", "--trace is required");
  if (!o->nsizes == !o->npcts) return cli_usage("sim", "give exactly one of --size and --size-pct");
  int k = split(pol, o->policies, MAX_LIST);
  if (k <= 0) return cli_usage("sim", "bad --policy list");
  o->npolicies = (unsigned)k;
  for (unsigned i = 0; i < o->npolicies; i++)
    if (!keel_policy_known(o->policies[i]))
      return cli_usage("sim", "unknown policy '%s' (known: %s)", o->policies[i], keel_policy_names());
  return 0;
}

/* ---- distinct-key counting ------------------------------------------------ */

typedef struct keyset {
  uint64_t *k; /* open addressing, 0 = empty (key hashes, bijective, so exact) */
  uint64_t mask, count;
} keyset;

static int keyset_add(keyset *s, uint64_t h) {
  if (!h) h = 1; /* only hash 0 and 1 could then collide: bijective mix makes that one key pair */
  if ((s->count + 1) * 2 > s->mask + 1) {
    uint64_t size = s->mask ? (s->mask + 1) * 2 : 1024;
    uint64_t *k = keel_mem_calloc(KEEL_MEM_OTHER, size, 8);
    if (!k) return -1;
    for (uint64_t i = 0; s->k && i <= s->mask; i++) {
      if (!s->k[i]) continue;
      uint64_t j = s->k[i] & (size - 1);
      while (k[j]) j = (j + 1) & (size - 1);
      k[j] = s->k[i];
    }
    keel_mem_free(s->k);
    s->k = k;
    s->mask = size - 1;
  }
  uint64_t j = h & s->mask;
  while (s->k[j]) {
    if (s->k[j] == h) return 0;
    j = (j + 1) & s->mask;
  }
  s->k[j] = h;
  s->count++;
  return 0;
}

/* A progress line for one pass over the trace (NULL: none wanted, or no
 * memory for it). */
static keel_progress_t *pass_progress(const keel_trace_t *t, const char *label) {
  keel_progress_t *pg = NULL;
  if (keel_progress_wanted(STDERR_FILENO, 0)) {
    keel_progress_options po = {sizeof po, label, "requests", NULL, keel_trace_size(t), 0};
    (void)keel_progress_create(&po, &pg);
  }
  return pg;
}

/* Reads the whole trace, counting requests and (when `set`) distinct keys. */
static int count_pass(keel_trace_t *t, uint64_t seed, keyset *set, uint64_t *requests) {
  int64_t key;
  keel_status st;
  uint64_t n = 0;
  int rc = 0;
  keel_progress_t *pg = pass_progress(t, "keel sim: counting");
  while ((st = keel_trace_next(t, &key)) == KEEL_OK) {
    n++;
    if (set && keyset_add(set, keel_policy_key_hash(key, seed)) != 0) {
      rc = cli_fail("sim", KEEL_EXIT_FAIL, "out of memory counting keys");
      break;
    }
    if (pg && (n & 0xffff) == 0) keel_progress_update(pg, n, keel_trace_offset(t));
  }
  keel_progress_destroy(pg);
  if (!rc && st != KEEL_EEOF) rc = cli_fail("sim", KEEL_EXIT_FAIL, "%s", keel_trace_error(t));
  if (!rc) *requests = n;
  return rc;
}

/* Replays the trace through every sim; when `set` is given (sizes known up
 * front: one pass, so a pipe works) it also counts requests and keys. */
static int replay(keel_trace_t *t, const opts *o, keel_policy_sim_t **sims, unsigned nsims,
                  uint64_t *hits, keyset *set, uint64_t *requests) {
  int64_t key;
  keel_status st;
  uint64_t n = 0;
  int rc = 0;
  keel_progress_t *pg = pass_progress(t, "keel sim");
  while (!rc && (st = keel_trace_next(t, &key)) == KEEL_OK) {
    uint64_t h = keel_policy_key_hash(key, o->seed);
    if (set && keyset_add(set, h) != 0) rc = cli_fail("sim", KEEL_EXIT_FAIL, "out of memory counting keys");
    for (unsigned i = 0; !rc && i < nsims; i++) {
      int r = keel_policy_sim_access(sims[i], h, 1);
      if (r < 0) rc = cli_fail("sim", KEEL_EXIT_FAIL, "out of memory");
      else hits[i] += (uint64_t)r;
    }
    n++;
    if (pg && (n & 0x3fff) == 0) keel_progress_update(pg, n, keel_trace_offset(t));
  }
  keel_progress_destroy(pg);
  if (rc) return rc;
  if (st != KEEL_EEOF) return cli_fail("sim", KEEL_EXIT_FAIL, "%s", keel_trace_error(t));
  if (requests) *requests = n;
  return 0;
}

static void print_results(const opts *o, const char *name, uint64_t requests, uint64_t unique,
                          const uint64_t *sizes, unsigned nsizes, const uint64_t *hits) {
  if (o->csv) printf("trace,requests,unique,size,policy,hit_ratio\n");
  else printf("%-16s %10s %9s %9s %-10s %9s\n", "trace", "requests", "unique", "size", "policy", "hit_ratio");
  for (unsigned si = 0; si < nsizes; si++) {
    for (unsigned pi = 0; pi < o->npolicies; pi++) {
      double hr = requests ? (double)hits[si * o->npolicies + pi] / (double)requests : 0.0;
      if (o->csv)
        printf("%s,%llu,%llu,%llu,%s,%.4f\n", name, (unsigned long long)requests,
               (unsigned long long)unique, (unsigned long long)sizes[si], o->policies[pi], hr);
      else
        printf("%-16s %10llu %9llu %9llu %-10s %9.4f\n", name, (unsigned long long)requests,
               (unsigned long long)unique, (unsigned long long)sizes[si], o->policies[pi], hr);
    }
  }
}

/* --svg: one miss-ratio curve per policy, x = cache size (in the order given). */
static int write_svg(const opts *o, const char *name, uint64_t requests, const uint64_t *sizes, unsigned nsizes,
                     const uint64_t *hits) {
  double x[MAX_LIST], y[MAX_LIST][MAX_LIST];
  svg_series s[MAX_LIST];
  for (unsigned pi = 0; pi < o->npolicies; pi++) {
    for (unsigned si = 0; si < nsizes; si++) {
      x[si] = o->npcts ? (double)o->pcts[si] : (double)sizes[si];
      y[pi][si] = requests ? 1.0 - (double)hits[si * o->npolicies + pi] / (double)requests : 0;
    }
    s[pi] = (svg_series){o->policies[pi], x, y[pi], nsizes};
  }
  char title[160];
  snprintf(title, sizeof title, "Miss ratio over cache size: %s", name);
  svg_chart c = {title, o->npcts ? "cache size (% of distinct keys)" : "cache size (entries)", "miss ratio", 1, 1, 1};
  FILE *f = fopen(o->svg, "w");
  int bad = !f || svg_chart_write(f, &c, s, o->npolicies) != 0;
  if ((f && fclose(f) != 0) || bad) return cli_fail("sim", KEEL_EXIT_FAIL, "%s: cannot write the chart", o->svg);
  return 0;
}

static int run(const opts *o, keel_trace_t *t) {
  keyset set = {0};
  uint64_t requests = 0, sizes[MAX_LIST];
  unsigned nsizes = o->nsizes ? o->nsizes : o->npcts;
  /* --size-pct needs the distinct keys first: two passes (a file). With
   * --size one pass counts and replays, so a pipe works too. */
  int rc = o->npcts ? count_pass(t, o->seed, &set, &requests) : 0;
  if (rc) goto out;
  for (unsigned i = 0; i < nsizes; i++) {
    uint64_t sz = o->nsizes ? o->sizes[i] : (set.count * o->pcts[i] + 50) / 100;
    sizes[i] = o->nsizes ? sz : (sz < 10 ? 10 : sz);
  }
  unsigned nsims = nsizes * o->npolicies;
  keel_policy_sim_t **sims = keel_mem_calloc(KEEL_MEM_OTHER, nsims, sizeof *sims);
  uint64_t *hits = keel_mem_calloc(KEEL_MEM_OTHER, nsims, sizeof *hits);
  rc = !sims || !hits ? cli_fail("sim", KEEL_EXIT_FAIL, "out of memory") : 0;
  for (unsigned i = 0; !rc && i < nsims; i++) {
    keel_policy_options po = {sizeof po, o->policies[i % o->npolicies], sizes[i / o->npolicies], 0,
                              o->seed, KEEL_MEM_CACHE, 0, 1, 0, NULL};
    keel_status st = keel_policy_sim_create(&po, &sims[i]);
    if (st != KEEL_OK) rc = cli_fail("sim", KEEL_EXIT_FAIL, "policy: %s", keel_status_str(st));
  }
  if (!rc && o->npcts && keel_trace_rewind(t) != KEEL_OK)
    rc = cli_fail("sim", KEEL_EXIT_FAIL, "cannot rewind the trace (--size-pct needs a file, not a pipe)");
  if (!rc) rc = replay(t, o, sims, nsims, hits, o->npcts ? NULL : &set, o->npcts ? NULL : &requests);
  if (!rc) print_results(o, keel_trace_name(t), requests, set.count, sizes, nsizes, hits);
  if (!rc && o->svg) rc = write_svg(o, keel_trace_name(t), requests, sizes, nsizes, hits);
  for (unsigned i = 0; sims && i < nsims; i++) keel_policy_sim_destroy(sims[i]);
  keel_mem_free(sims);
  keel_mem_free(hits);
out:
  keel_mem_free(set.k);
  return rc;
}

int keel_cmd_sim(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return KEEL_EXIT_OK;
    }
  }
  opts o = {0};
  o.seed = 1;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc;
  keel_trace_t *t;
  keel_status st = keel_trace_open(o.trace, o.fmt, &t);
  if (st != KEEL_OK) /* a path that cannot be read is a usage error, as in gen */
    return cli_fail("sim", KEEL_EXIT_USAGE, "cannot open trace '%s': %s", o.trace,
                    st == KEEL_EIO ? strerror(errno) : keel_status_str(st));
  rc = run(&o, t);
  keel_trace_close(t);
  return rc;
}
