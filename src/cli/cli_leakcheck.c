/* cli_leakcheck.c — `keel leakcheck`: the recommendation pipeline, memoized,
 * on a looping workload, watched by the leak detector (keel/leak.h).
 *
 * The workload is generated in memory by a feeder thread and written into a
 * pipe the pipeline reads: users from a fixed pool, products of the catalog,
 * the mix rank 0.5 / score 0.4 / user 0.1, at a steady rate, for as long as
 * the check runs. So the rank cache fills with every user and levels off,
 * while the score cache (user x product pairs) fills to its bound and
 * churns: both are the bounded structures a leak detector must not flag.
 *
 * --inject-leak STAGE:BYTES[:untracked] adds a stage after STAGE that handles
 * the same event type and, for each event, allocates BYTES and drops the
 * pointer: under STAGE's tag through keel_mem_alloc (tracked), or with plain
 * malloc (untracked, visible only as RSS). It is a stage of its own, not a
 * wrapper of STAGE's process(), because a memoized stage's process() runs
 * only on cache misses. The detector is not told: it is created before the
 * pipeline, knows only the counters, and its events callback gives the
 * feeder's count of events of the type named like the tag.
 *
 * What "the truth" is for each kind. A tracked leak is counted in the bytes
 * asked for, so it is measured against BYTES. An untracked one is seen only
 * through the process's memory, and there a malloc(BYTES) holds a whole heap
 * chunk: BYTES plus malloc's 8-byte header, rounded up to 16 (glibc; 80 bytes
 * for 64). No counter the process has tells how many chunks that growth is
 * made of (one malloc(64) and two malloc(24) per event both grow the heap by
 * 64 requested bytes, but cost 80 and 64 bytes), so the detector reports
 * heap bytes, and the report shows the injection both ways: the bytes asked
 * for and the heap bytes they hold (the injected block's usable size plus
 * the header, read from malloc by the injecting stage, never by the
 * detector).
 *
 * Exit codes: 0 no leak, 3 a leak (named on stderr, or in --json), 2 usage. */
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
/* Under AddressSanitizer or ThreadSanitizer the detector reads the
 * sanitizer's count of bytes held (see leak.c): a block holds what was
 * asked for, there is no chunk header to add. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CHUNK_HEADER 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CHUNK_HEADER 0
#endif
#endif
#ifndef CHUNK_HEADER
#define CHUNK_HEADER sizeof(size_t) /* glibc: the chunk's size field */
#endif
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keel/leak.h"
#include "keel/mem.h"
#include "keel/recsys.h"
#include "runopts.h"

#define MAX_ARGS 128
#define DEFAULT_SECONDS 40.0
#define DEFAULT_RATE 40000.0
#define DEFAULT_USERS 4000
#define INJECT_STAGE "leak_inject"

typedef struct opts {
  const char *inject_stage;
  uint64_t inject_bytes;
  int inject_untracked;
  double seconds, rate, interval, window;
  uint64_t users, horizons; /* horizons 0: the detector's default */
  int json;
} opts;

/* ---- the injected leak ---- */

typedef struct leak_state {
  keel_mem_tag tag;
  size_t bytes;
  int untracked;
  _Atomic size_t heap_bytes; /* untracked: the heap chunk one injection holds */
  char target[KEEL_FIELD_NAME_MAX + 1];
} leak_state;

static keel_status leak_init(const keel_stage_env *env, void **state) {
  leak_state *s = env->userdata;
  *state = s;
  return keel_mem_tag_register(s->target, &s->tag); /* the target stage's tag */
}

static keel_status leak_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)ev;
  (void)io;
  leak_state *s = state;
  void *p = s->untracked ? malloc(s->bytes) : keel_mem_alloc(s->tag, s->bytes);
  if (p) memset(p, 0x4c, s->bytes); /* touched, so RSS sees it; never freed: the leak */
#ifdef __GLIBC__
  if (p && s->untracked && !atomic_load_explicit(&s->heap_bytes, memory_order_relaxed))
    atomic_store_explicit(&s->heap_bytes, malloc_usable_size(p) + CHUNK_HEADER, memory_order_relaxed);
#endif
  return KEEL_OK;
}

/* ---- the looping workload ---- */

typedef struct feeder {
  int fd;
  double rate;
  uint64_t users, products, seed;
  _Atomic int stop;
  _Atomic uint64_t n[3]; /* rank, score, user events written */
  pthread_t th;
} feeder;

static const char *const types[3] = {"rank", "score", "user"};

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static size_t one_event(feeder *f, char *buf, size_t len, int *type) {
  uint64_t r = splitmix(&f->seed) % 100, u = splitmix(&f->seed) % f->users;
  *type = r < 50 ? 0 : r < 90 ? 1 : 2;
  int n;
  if (*type == 0) n = snprintf(buf, len, "{\"type\":\"rank\",\"user\":\"u%llu\",\"k\":10}\n", (unsigned long long)u);
  else if (*type == 1)
    n = snprintf(buf, len, "{\"type\":\"score\",\"user\":\"u%llu\",\"product\":\"%llu\"}\n", (unsigned long long)u,
                 (unsigned long long)(splitmix(&f->seed) % f->products));
  else n = snprintf(buf, len, "{\"type\":\"user\",\"user\":\"u%llu\"}\n", (unsigned long long)u);
  return n > 0 ? (size_t)n : 0;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Writes all of buf unless stopped; waits in 100 ms polls so a stop is seen. */
static int write_all(feeder *f, const char *buf, size_t len) {
  while (len && !atomic_load(&f->stop)) {
    struct pollfd pf = {f->fd, POLLOUT, 0};
    if (poll(&pf, 1, 100) <= 0) continue;
    ssize_t w = write(f->fd, buf, len);
    if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
    if (w > 0) buf += w, len -= (size_t)w;
  }
  return 0;
}

static void *feeder_main(void *arg) {
  feeder *f = arg;
  char buf[16384];
  double t0 = now_s();
  uint64_t sent = 0;
  while (!atomic_load(&f->stop)) {
    size_t used = 0;
    uint64_t k[3] = {0, 0, 0};
    while (used + 128 < sizeof buf) {
      int type;
      used += one_event(f, buf + used, sizeof buf - used, &type);
      k[type]++;
      sent++;
    }
    if (write_all(f, buf, used)) break;
    for (int i = 0; i < 3; i++) atomic_fetch_add(&f->n[i], k[i]);
    double ahead = (double)sent / f->rate - (now_s() - t0); /* steady rate */
    if (ahead > 0) nanosleep(&(struct timespec){(time_t)ahead, (long)((ahead - (double)(time_t)ahead) * 1e9)}, NULL);
  }
  return NULL;
}

static uint64_t events_of(void *ud, keel_mem_tag tag) {
  feeder *f = ud;
  const char *name = tag == KEEL_LEAK_UNTRACKED ? "" : keel_mem_tag_name(tag);
  uint64_t all = 0;
  for (int i = 0; i < 3; i++) {
    uint64_t n = atomic_load(&f->n[i]);
    if (!strcmp(name, types[i])) return n;
    all += n;
  }
  return all;
}

/* ---- options ---- */

static int parse_inject(opts *o, const char *arg) {
  static char stage[KEEL_FIELD_NAME_MAX + 1];
  const char *c1 = strchr(arg, ':');
  if (!c1 || c1 == arg || (size_t)(c1 - arg) > KEEL_FIELD_NAME_MAX) return -1;
  snprintf(stage, sizeof stage, "%.*s", (int)(c1 - arg), arg);
  const char *c2 = strchr(c1 + 1, ':');
  char num[32];
  snprintf(num, sizeof num, "%.*s", (int)(c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1)), c1 + 1);
  if (cli_parse_u64(num, &o->inject_bytes) || o->inject_bytes == 0 || o->inject_bytes > (1u << 20)) return -1;
  if (c2 && strcmp(c2 + 1, "untracked") && strcmp(c2 + 1, "tracked")) return -1;
  o->inject_untracked = c2 && !strcmp(c2 + 1, "untracked");
  o->inject_stage = stage;
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel leakcheck [OPTIONS] [RUN OPTIONS]\n\n"
          "Runs the recommendation pipeline, memoized, on a looping in-memory workload and\n"
          "watches every memory tag (and RSS) for growth that does not level off.\n\n"
          "  --inject-leak STAGE:BYTES[:untracked]  leak BYTES per event of STAGE's type, under\n"
          "                        STAGE's tag (tracked) or with plain malloc (untracked; measured\n"
          "                        in heap bytes: malloc's chunk, header and rounding included)\n"
          "  --seconds S           how long to run, up to a year (default 40; stops 2 s after a leak\n"
          "                        is confirmed)\n"
          "  --json                the verdict as one JSON line on stdout\n"
          "  --rate N              events per second fed, 100 to 10^9 (default 40000)\n"
          "  --users N             distinct users in the loop (default 4000)\n"
          "  --interval S          sampling interval (default 0.25)\n"
          "  --window S            trend window (default 8)\n"
          "  --horizons N          windows fitted: the window, then each 8x the last (default 5,\n"
          "                        up to 6; 1: the window alone). A slow leak shows over a long one\n\n"
          "exit: 0 no leak, 3 leak found, 2 usage. Run options (keel run --help) apply, but for\n"
          "--summary-json, --metrics-log and --http, which are refused; the defaults\n"
          "here are --workers 2 --cache rank=8MiB --cache score=8MiB.\n");
}

/* Takes leakcheck's own options out of argv; the rest go to cli_run_parse. */
static int split_args(int argc, char **argv, opts *o, int *rargc, char **rargv) {
  *rargc = 0;
  rargv[(*rargc)++] = argv[0];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return KEEL_EXIT_OK;
    } else if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (!strcmp(a, "--inject-leak") || !strcmp(a, "--seconds") || !strcmp(a, "--rate") ||
               !strcmp(a, "--users") || !strcmp(a, "--interval") || !strcmp(a, "--window") ||
               !strcmp(a, "--horizons")) {
      if (!has) return cli_usage("leakcheck", "option %s needs a value", a);
      const char *v = argv[++i];
      int bad = 0;
      if (!strcmp(a, "--inject-leak")) bad = parse_inject(o, v);
      else if (!strcmp(a, "--seconds"))
        bad = cli_parse_double(v, &o->seconds) || !(o->seconds > 0) || o->seconds > 366 * 86400.0;
      else if (!strcmp(a, "--rate")) bad = cli_parse_double(v, &o->rate) || !(o->rate >= 100) || o->rate > 1e9;
      else if (!strcmp(a, "--users")) bad = cli_parse_u64(v, &o->users) || !o->users;
      else if (!strcmp(a, "--interval")) bad = cli_parse_double(v, &o->interval) || !(o->interval > 0);
      else if (!strcmp(a, "--horizons"))
        bad = cli_parse_u64(v, &o->horizons) || !o->horizons || o->horizons > KEEL_LEAK_MAX_HORIZONS;
      else bad = cli_parse_double(v, &o->window) || !(o->window > 0);
      if (bad) return cli_usage("leakcheck", "bad value '%s' for %s", v, a);
    } else {
      if (*rargc >= MAX_ARGS - 1) return cli_usage("leakcheck", "too many options");
      rargv[(*rargc)++] = argv[i];
    }
  }
  rargv[*rargc] = NULL;
  return -1;
}

/* ---- building ---- */

static int set_default(cli_run *r, const char *sec, const char *key, const char *val, int argc, char **argv,
                       const char *flag) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], flag) || (!strncmp(argv[i], flag, strlen(flag)) && argv[i][strlen(flag)] == '=')) return 0;
  return keel_config_set(r->cfg, sec, key, val, KEEL_CONFIG_DEFAULT) == KEEL_OK ? 0 : -1;
}

/* cli_run_build, with the injected stage added to the registry and chain. */
static int build(cli_run *r, const opts *o, leak_state *ls, keel_stage_def *ld) {
  char err[1024] = "";
  keel_status st;
  int rc = cli_run_load_configs(r);
  if (rc >= 0) return rc;
  if (keel_registry_create(&r->reg) != KEEL_OK) return cli_fail(r->cmd, KEEL_EXIT_FAIL, "out of memory");
  if ((st = keel_recsys_create(r->cfg, &r->rs, err, sizeof err)) != KEEL_OK ||
      (st = keel_recsys_register(r->reg, r->rs, err, sizeof err)) != KEEL_OK)
    return cli_fail(r->cmd, st == KEEL_ENOMEM ? KEEL_EXIT_FAIL : KEEL_EXIT_USAGE, "%s", err);
  for (size_t i = 0; i < r->n_plugins; i++)
    if ((st = keel_registry_load_plugin(r->reg, r->plugins[i], err, sizeof err)) != KEEL_OK)
      return cli_fail(r->cmd, KEEL_EXIT_USAGE, "%s", err);
  if (o->inject_stage) {
    const keel_stage_def *target = keel_registry_find(r->reg, o->inject_stage);
    if (!target) return cli_usage(r->cmd, "--inject-leak: no stage '%s'", o->inject_stage);
    const char *chain = keel_config_get(r->cfg, "pipeline", "stages");
    char list[1024];
    snprintf(list, sizeof list, "%s,%s", chain ? chain : "user,score,rank", INJECT_STAGE);
    snprintf(ls->target, sizeof ls->target, "%s", target->name);
    ls->bytes = (size_t)o->inject_bytes;
    ls->untracked = o->inject_untracked;
    *ld = (keel_stage_def){.size = sizeof *ld, .name = INJECT_STAGE, .version = 1, .event_type = target->event_type,
                           .init = leak_init, .process = leak_process, .userdata = ls};
    if (keel_registry_add(r->reg, ld, err, sizeof err) != KEEL_OK ||
        keel_config_set(r->cfg, "pipeline", "stages", list, KEEL_CONFIG_CLI) != KEEL_OK)
      return cli_fail(r->cmd, KEEL_EXIT_FAIL, "cannot add the injected stage: %s", err);
  }
  if ((st = keel_pipeline_create(r->reg, r->cfg, &r->pipeline, err, sizeof err)) != KEEL_OK)
    return cli_fail(r->cmd, st == KEEL_ENOMEM ? KEEL_EXIT_FAIL : KEEL_EXIT_USAGE, "%s", err);
  return -1;
}

/* ---- running ---- */

typedef struct control {
  keel_pipeline_t *p;
  keel_leak_t *d;
  feeder *f;
  double seconds;
  _Atomic int done;
} control;

/* Ends the run after `seconds`, or 2 s after a leak is confirmed. */
static void *control_main(void *arg) {
  control *c = arg;
  double t0 = now_s(), found = 0;
  while (!atomic_load(&c->done) && now_s() - t0 < c->seconds) {
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    size_t n;
    keel_leak_verdict(c->d, NULL, 0, &n);
    if (n && !found) found = now_s();
    if (found && now_s() - found >= 2.0) break;
  }
  keel_pipeline_stop(c->p);
  atomic_store(&c->f->stop, 1);
  return NULL;
}

/* `bytes` per injection as bytes per event of the whole stream (an untracked
 * leak is measured against all events: RSS has no tag to say which stage);
 * 0 without an injection. */
static double injected_overall(const opts *o, feeder *f, double bytes) {
  if (!o->inject_stage) return 0;
  uint64_t all = 0, mine = 0;
  for (int i = 0; i < 3; i++) {
    uint64_t k = atomic_load(&f->n[i]);
    all += k;
    if (!strcmp(types[i], o->inject_stage)) mine = k;
  }
  return all ? bytes * (double)mine / (double)all : 0;
}

static void report(const opts *o, keel_leak_t *d, feeder *f, const leak_state *ls, uint64_t events, double secs,
                   int *leak) {
  double asked = injected_overall(o, f, (double)o->inject_bytes);
  size_t chunk = o->inject_untracked ? atomic_load(&ls->heap_bytes) : 0;
  double heap = injected_overall(o, f, (double)chunk);
  keel_leak_report rep[8];
  size_t n;
  keel_leak_verdict(d, rep, 8, &n);
  *leak = n > 0;
  if (o->json) {
    printf("{\"leak\":%s,\"seconds\":%.3f,\"events\":%llu", n ? "true" : "false", secs, (unsigned long long)events);
    if (o->inject_stage)
    {
      printf(",\"injected\":{\"stage\":\"%s\",\"bytes_per_event\":%llu,\"kind\":\"%s\","
             "\"bytes_per_event_overall\":%.3f",
             o->inject_stage, (unsigned long long)o->inject_bytes, o->inject_untracked ? "untracked" : "tracked", asked);
      if (chunk) printf(",\"heap_bytes_per_injection\":%zu,\"heap_bytes_per_event_overall\":%.3f", chunk, heap);
      printf("}");
    }
    if (n) printf(",\"leaks\":[");
    for (size_t i = 0; i < n && i < 8; i++) {
      printf("%s{\"tag\":\"%s\",\"bytes_per_event\":%.3f,\"bytes_per_s\":%.1f,\"r2\":%.4f,\"growth\":%lld,"
             "\"flagged_at_s\":%.3f,\"window_s\":%.1f,\"sites\":[",
             i ? "," : "", rep[i].tag, rep[i].bytes_per_event, rep[i].bytes_per_s, rep[i].r2, (long long)rep[i].growth,
             rep[i].flagged_at_s, rep[i].window_s);
      for (size_t k = 0; k < rep[i].n_sites; k++)
        printf("%s{\"site\":\"%s\",\"bytes\":%lld}", k ? "," : "", rep[i].sites[k].where,
               (long long)rep[i].sites[k].after);
      printf("]}");
    }
    printf("%s}\n", n ? "]" : "");
  }
  fprintf(stderr, "keel leakcheck: %.1f s, %llu events (%.0f/s): %s\n", secs, (unsigned long long)events,
          secs > 0 ? (double)events / secs : 0.0, n ? "LEAK" : "no leak");
  for (size_t i = 0; i < n && i < 8; i++) {
    fprintf(stderr, "  %s%s: %.1f bytes/event, %.1f KiB/s (r2 %.3f over %.0f s), flagged %.1f s after the start",
            rep[i].tag, rep[i].id == KEEL_LEAK_UNTRACKED ? " growth (memory outside keel's allocator, in heap bytes)" : "",
            rep[i].bytes_per_event, rep[i].bytes_per_s / 1024, rep[i].r2, rep[i].window_s, rep[i].flagged_at_s);
    if (o->inject_stage && chunk)
      fprintf(stderr,
              " [injected: %llu bytes/event in %s, untracked, in heap chunks of %zu bytes; %.1f bytes asked for, "
              "%.1f heap bytes, per event of the whole stream]",
              (unsigned long long)o->inject_bytes, o->inject_stage, chunk, asked, heap);
    else if (o->inject_stage)
      fprintf(stderr, " [injected: %llu bytes/event in %s, %s; %.1f bytes per event of the whole stream]",
              (unsigned long long)o->inject_bytes, o->inject_stage, o->inject_untracked ? "untracked" : "tracked",
              asked);
    fputc('\n', stderr);
    for (size_t k = 0; k < rep[i].n_sites; k++)
      fprintf(stderr, "    %s: %.1f KiB live\n", rep[i].sites[k].where, (double)rep[i].sites[k].after / 1024);
  }
}

/* tracemalloc's compare_to: what grew between the two snapshots, by tag
 * (and by call site in a call-site build), largest first. */
static void print_growth(keel_mem_snapshot_t *a, keel_mem_snapshot_t *b) {
  keel_mem_diff d[5];
  size_t n;
  int by_site = keel_mem_callsites_enabled();
  if (!a || !b || keel_mem_snapshot_compare(a, b, by_site ? KEEL_MEM_BY_SITE : KEEL_MEM_BY_TAG, d, 5, &n) != KEEL_OK)
    return;
  fprintf(stderr, "  largest growth over the run, by %s:", by_site ? "call site" : "tag");
  for (size_t i = 0; i < n && i < 5; i++)
    fprintf(stderr, "%s %s %+.1f KiB", i ? "," : "", d[i].where, (double)d[i].growth / 1024);
  fputc('\n', stderr);
}

static int run(cli_run *r, const opts *o, const leak_state *ls) {
  int fds[2];
  if (pipe(fds)) return cli_fail("leakcheck", KEEL_EXIT_FAIL, "pipe: %s", strerror(errno));
  /* The feeder must never block in write(): once the run stops reading, a
   * blocked write would keep it from seeing the stop and its join would hang. */
  fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  int64_t products;
  char err[512];
  if (keel_config_get_int(r->cfg, "catalog", "products", KEEL_CATALOG_DEFAULT_PRODUCTS, 1,
                          KEEL_CATALOG_MAX_PRODUCTS, &products, err, sizeof err) != KEEL_OK)
    products = KEEL_CATALOG_DEFAULT_PRODUCTS;
  feeder f = {.fd = fds[1], .rate = o->rate, .users = o->users, .products = (uint64_t)products, .seed = 42};
  keel_leak_options lo = {.size = sizeof lo, .interval_s = o->interval, .window_s = o->window,
                          .events = events_of, .events_ud = &f, .horizons = (unsigned)o->horizons};
  keel_leak_t *d = NULL;
  if (keel_leak_create(&lo, &d) != KEEL_OK) {
    close(fds[0]);
    close(fds[1]);
    return cli_usage("leakcheck", "bad --interval/--window (the window must hold 4 intervals)");
  }
  char input[32];
  snprintf(input, sizeof input, "/dev/fd/%d", fds[0]);
  r->io.input = input;
  r->io.output = "/dev/null";
  if (!r->io.dead_letter) r->io.dead_letter = "/dev/null";
  control c = {.p = r->pipeline, .d = d, .f = &f, .seconds = o->seconds};
  keel_mem_snapshot_t *snap0 = NULL, *snap1 = NULL;
  keel_mem_snapshot(&snap0);
  pthread_t ft, ct;
  int ok_f = pthread_create(&ft, NULL, feeder_main, &f) == 0;
  keel_leak_start(d);
  int ok_c = ok_f && pthread_create(&ct, NULL, control_main, &c) == 0;
  if (!ok_c) keel_pipeline_stop(r->pipeline);
  double t0 = now_s();
  keel_run_stats stats;
  keel_status st = ok_c ? keel_pipeline_run(r->pipeline, &r->io, &stats, err, sizeof err) : KEEL_ENOMEM;
  double secs = now_s() - t0;
  keel_mem_snapshot(&snap1);
  atomic_store(&c.done, 1);
  atomic_store(&f.stop, 1);
  if (ok_c) pthread_join(ct, NULL);
  if (ok_f) pthread_join(ft, NULL);
  keel_leak_stop(d);
  close(fds[0]);
  close(fds[1]);
  int rc = KEEL_EXIT_OK, leak = 0;
  if (st != KEEL_OK) rc = cli_fail("leakcheck", KEEL_EXIT_FAIL, "%s", ok_c ? err : "cannot start threads");
  else {
    if (!keel_leak_window_full(d))
      fprintf(stderr, "keel leakcheck: warning: the run was shorter than the trend window\n");
    report(o, d, &f, ls, stats.events_in, secs, &leak);
    print_growth(snap0, snap1);
    if (stats.rejected)
      fprintf(stderr, "keel leakcheck: warning: %llu events rejected\n", (unsigned long long)stats.rejected);
  }
  keel_mem_snapshot_destroy(snap0);
  keel_mem_snapshot_destroy(snap1);
  keel_leak_destroy(d);
  return rc == KEEL_EXIT_OK && leak ? KEEL_EXIT_CHECK : rc;
}

int keel_cmd_leakcheck(int argc, char **argv) {
  opts o = {.seconds = DEFAULT_SECONDS, .rate = DEFAULT_RATE, .users = DEFAULT_USERS};
  char *rargv[MAX_ARGS];
  int rargc;
  int rc = split_args(argc, argv, &o, &rargc, rargv);
  if (rc >= 0) return rc;
  cli_run r;
  rc = cli_run_parse(&r, "leakcheck", rargc, rargv);
  /* Run options leakcheck does not act on are refused, not ignored: it
   * prints its own verdict (--json), and runs no observer. */
  if (rc < 0 && (r.summary_json || r.metrics_log || r.http)) {
    const char *o2 = r.summary_json ? "--summary-json" : r.metrics_log ? "--metrics-log" : "--http";
    rc = cli_usage("leakcheck", "%s is not supported by leakcheck (its verdict is --json)", o2);
  }
  if (rc < 0 && (set_default(&r, "pipeline", "workers", "2", rargc, rargv, "--workers") ||
                 set_default(&r, "cache.rank", "size", "8MiB", rargc, rargv, "--cache") ||
                 set_default(&r, "cache.score", "size", "8MiB", rargc, rargv, "--cache")))
    rc = cli_fail("leakcheck", KEEL_EXIT_FAIL, "out of memory");
  static leak_state ls;
  static keel_stage_def ld;
  if (rc < 0) rc = build(&r, &o, &ls, &ld);
  if (rc < 0) rc = run(&r, &o, &ls);
  cli_run_free(&r);
  return rc;
}
