/* cli_bench_stream.c — `keel bench stream`: streaming vs accumulating.
 *
 * The same computation two ways: each request event is parsed, scored and
 * serialized as one output line; "stream" writes each line as soon as it is
 * made (one reused buffer), "accumulate" appends every line to one growing
 * buffer and writes it all at the end. Each way runs at N and 10 N events in
 * a child process of its own, so its peak RSS (VmHWM) is its own; the peak
 * of tracked bytes is that of the way's tag (it may read up to
 * KEEL_MEM_PEAK_SLACK low: see keel/mem.h). Streaming stays flat as N
 * grows; accumulation grows with N. The pipeline itself always streams. One JSON line on stdout (--json), a table on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "keel/event.h"
#include "keel/io.h"
#include "keel/mem.h"

typedef struct result {
  int64_t tracked_peak;
  uint64_t rss_peak;
  uint64_t lines, bytes;
  int ok;
} result;

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

typedef struct work {
  keel_schema_t *schema;
  keel_event_t *ev;
  keel_field_id user, product, score;
} work;

/* Parses one generated request, scores it (a hash of user and product,
 * standing in for the model) and appends its output line to b. */
static keel_status one_event(work *w, uint64_t *seed, keel_buf *b) {
  char line[128];
  int n = snprintf(line, sizeof line, "{\"type\":\"score\",\"user\":\"u%llu\",\"product\":\"%llu\"}",
                   (unsigned long long)(splitmix(seed) % 100000), (unsigned long long)(splitmix(seed) % 20000));
  keel_event_reset(w->ev);
  keel_status st = keel_json_to_event(w->ev, line, (size_t)n, NULL, NULL, 0);
  keel_value u, p;
  if (st != KEEL_OK || !keel_event_get(w->ev, w->user, &u) || !keel_event_get(w->ev, w->product, &p))
    return st != KEEL_OK ? st : KEEL_EPARSE;
  uint64_t h = 1469598103934665603u;
  for (size_t i = 0; i < u.u.str.len; i++) h = (h ^ (unsigned char)u.u.str.ptr[i]) * 1099511628211u;
  for (size_t i = 0; i < p.u.str.len; i++) h = (h ^ (unsigned char)p.u.str.ptr[i]) * 1099511628211u;
  if ((st = keel_event_set_float(w->ev, w->score, (double)(h >> 11) * 0x1.0p-53)) != KEEL_OK) return st;
  if ((st = keel_json_append_event(b, w->ev)) != KEEL_OK) return st;
  return keel_buf_append(b, "\n", 1);
}

/* Runs one way over n events, writing to `out`; fills r. */
static void run_way(int accumulate, uint64_t n, FILE *out, result *r) {
  keel_mem_tag tag;
  work w = {0};
  keel_buf b;
  memset(r, 0, sizeof *r);
  if (keel_mem_tag_register(accumulate ? "bench.accumulate" : "bench.stream", &tag) != KEEL_OK ||
      keel_schema_create(&w.schema) != KEEL_OK)
    return;
  keel_buf_init(&b, tag);
  keel_status st = keel_schema_intern(w.schema, "user", 4, &w.user);
  if (st == KEEL_OK) st = keel_schema_intern(w.schema, "product", 7, &w.product);
  if (st == KEEL_OK) st = keel_schema_intern(w.schema, "score", 5, &w.score);
  if (st == KEEL_OK) st = keel_event_create(w.schema, tag, 0, &w.ev);
  uint64_t seed = 11;
  for (uint64_t i = 0; st == KEEL_OK && i < n; i++) {
    st = one_event(&w, &seed, &b);
    if (st == KEEL_OK && !accumulate) {
      r->bytes += b.len;
      if (fwrite(b.data, 1, b.len, out) != b.len) st = KEEL_EIO;
      keel_buf_clear(&b);
    }
    r->lines++;
  }
  if (st == KEEL_OK && accumulate) {
    r->bytes = b.len;
    if (fwrite(b.data, 1, b.len, out) != b.len) st = KEEL_EIO;
  }
  keel_mem_stats s;
  keel_mem_tag_stats(tag, &s);
  r->tracked_peak = s.peak;
  r->rss_peak = keel_mem_rss_peak_bytes();
  r->ok = st == KEEL_OK && fflush(out) == 0;
  keel_buf_free(&b);
  keel_event_destroy(w.ev);
  keel_schema_destroy(w.schema);
}

/* Runs one way in a child process so its VmHWM is its own. */
static int in_child(int accumulate, uint64_t n, const char *out_path, result *r) {
  int fds[2];
  if (pipe(fds)) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fds[0]);
    FILE *out = fopen(out_path, "w");
    result res = {0};
    if (out) {
      run_way(accumulate, n, out, &res);
      fclose(out);
    }
    ssize_t w = write(fds[1], &res, sizeof res);
    _exit(w == (ssize_t)sizeof res ? 0 : 1);
  }
  close(fds[1]);
  ssize_t got = read(fds[0], r, sizeof *r);
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  return got == (ssize_t)sizeof *r && r->ok ? 0 : -1;
}

#define MiB(x) ((double)(x) / 1048576.0)

int keel_bench_stream(int argc, char **argv) {
  uint64_t n = 100000;
  int json = 0;
  const char *out_path = "/dev/null";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: keel bench stream [--events N] [--output FILE] [--json]\n\n"
             "peak tracked bytes and RSS of accumulating every result before writing vs streaming,\n"
             "at N and 10 N events (default N 100000; output /dev/null)\n");
      return KEEL_EXIT_OK;
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (i + 1 < argc && !strcmp(argv[i], "--events")) {
      if (cli_parse_u64(argv[++i], &n) || n == 0 || n > 100000000)
        return cli_usage("bench stream", "--events wants 1..100000000");
    } else if (i + 1 < argc && !strcmp(argv[i], "--output")) {
      out_path = argv[++i];
    } else {
      return cli_usage("bench stream", "unknown option '%s'", argv[i]);
    }
  }
  static const char *const way[2] = {"stream", "accumulate"};
  result r[2][2]; /* [way][N, 10N] */
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < 2; k++)
      if (in_child(w, k ? 10 * n : n, out_path, &r[w][k]))
        return cli_fail("bench stream", KEEL_EXIT_FAIL, "the %s run over %llu events failed", way[w],
                        (unsigned long long)(k ? 10 * n : n));
  fprintf(stderr, "keel bench stream: parse + score + serialize, %llu and %llu events\n", (unsigned long long)n,
          (unsigned long long)(10 * n));
  fprintf(stderr, "  %-11s %12s %16s %14s\n", "way", "events", "tracked peak", "RSS peak");
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < 2; k++)
      fprintf(stderr, "  %-11s %12llu %12.2f MiB %10.1f MiB\n", way[w], (unsigned long long)r[w][k].lines,
              MiB(r[w][k].tracked_peak), MiB(r[w][k].rss_peak));
  fprintf(stderr, "  from N to 10 N: streaming tracked x%.2f, accumulating tracked x%.2f\n",
          (double)r[0][1].tracked_peak / (double)(r[0][0].tracked_peak ? r[0][0].tracked_peak : 1),
          (double)r[1][1].tracked_peak / (double)(r[1][0].tracked_peak ? r[1][0].tracked_peak : 1));
  if (json) {
    printf("{\"bench\":\"stream\",\"events\":[%llu,%llu]", (unsigned long long)n, (unsigned long long)(10 * n));
    for (int w = 0; w < 2; w++)
      printf(",\"%s\":{\"tracked_peak\":[%lld,%lld],\"rss_peak_bytes\":[%llu,%llu],\"output_bytes\":[%llu,%llu]}",
             way[w], (long long)r[w][0].tracked_peak, (long long)r[w][1].tracked_peak,
             (unsigned long long)r[w][0].rss_peak, (unsigned long long)r[w][1].rss_peak,
             (unsigned long long)r[w][0].bytes, (unsigned long long)r[w][1].bytes);
    printf("}\n");
  }
  return KEEL_EXIT_OK;
}
