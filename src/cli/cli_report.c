/* cli_report.c — `keel report`: the dashboard's charts, drawn once, for a
 * finished run, from the JSON lines `keel run --metrics-log` wrote.
 *
 *   keel report --metrics-log FILE --output report.html [--svg DIR | --svg FILE.svg [--chart NAME]]
 *
 * The page is self-contained (inline SVG, no script) and well-formed XML.
 * The log of a run still going may be read: an unfinished last line is left
 * out.
 * Charts: memory per tag (the eight biggest by peak, RSS and the budget), hit ratio per
 * cache, events per second, queue depth. --svg DIR writes each chart as its
 * own file (memory.svg, hit_ratio.svg, events_per_s.svg, queue_depth.svg);
 * --svg FILE.svg writes the one --chart names (default memory). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "keel/mem.h"
#include "svgchart.h"

#define MAX_COLS 64

enum { CH_MEM, CH_HIT, CH_RATE, CH_QUEUE, N_CHARTS };

static const struct {
  const char *file, *key, *title, *y_label;
  double y_max;
} charts[N_CHARTS] = {
    {"memory.svg", "memory", "Memory per tag", "MiB", 0},
    {"hit_ratio.svg", "hit-ratio", "Cache hit ratio", "hits / lookups", 1},
    {"events_per_s.svg", "rate", "Events per second", "events/s", 0},
    {"queue_depth.svg", "queue", "Queue depth", "batches", 0},
};

typedef struct column {
  char *name; /* owned, KEEL_MEM_OTHER */
  double *y; /* n_samples values, NaN where the sample lacks it */
  double peak;
} column;

typedef struct report {
  size_t n, cap; /* samples */
  double *t;
  column cols[N_CHARTS][MAX_COLS];
  size_t n_cols[N_CHARTS];
  json_t *last; /* the last sample, for the figures */
  char leaks[1024];
} report;

static int grow_samples(report *r) {
  if (r->n < r->cap) return 0;
  size_t cap = r->cap ? r->cap * 2 : 256;
  double *t = keel_mem_realloc(KEEL_MEM_OTHER, r->t, cap * sizeof *t);
  if (!t) return -1;
  r->t = t;
  for (int c = 0; c < N_CHARTS; c++)
    for (size_t k = 0; k < r->n_cols[c]; k++) {
      double *y = keel_mem_realloc(KEEL_MEM_OTHER, r->cols[c][k].y, cap * sizeof *y);
      if (!y) return -1;
      r->cols[c][k].y = y;
    }
  r->cap = cap;
  return 0;
}

/* Sets chart c's column `name` at the current sample (index r->n). */
static int put(report *r, int c, const char *name, double v) {
  size_t k = 0;
  while (k < r->n_cols[c] && strcmp(r->cols[c][k].name, name)) k++;
  if (k == r->n_cols[c]) {
    if (k == MAX_COLS) return 0; /* more series than a chart can show: the rest are left out */
    column *col = &r->cols[c][k];
    /* The whole name: a cut one never compared equal, and each sample added a column. */
    if (!(col->name = keel_mem_strdup(KEEL_MEM_OTHER, name))) return -1;
    if (!(col->y = keel_mem_alloc(KEEL_MEM_OTHER, r->cap * sizeof *col->y))) {
      keel_mem_free(col->name);
      return -1;
    }
    for (size_t i = 0; i < r->cap; i++) col->y[i] = NAN;
    col->peak = 0;
    r->n_cols[c]++;
  }
  r->cols[c][k].y[r->n] = v;
  if (v > r->cols[c][k].peak) r->cols[c][k].peak = v;
  return 0;
}

static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Whether `tag` is a whole name in the banner list "a (N B/s), b (M B/s)"
 * (a substring test took "rank" as listed once "cache.rank" was). */
static int leak_listed(const char *list, const char *tag) {
  size_t n = strlen(tag);
  for (const char *p = strstr(list, tag); p; p = strstr(p + 1, tag))
    if ((p == list || (p - list >= 2 && p[-2] == ',' && p[-1] == ' ')) && !strncmp(p + n, " (", 2)) return 1;
  return 0;
}

static int take_sample(report *r, json_t *s) {
  if (grow_samples(r)) return -1;
  for (int c = 0; c < N_CHARTS; c++)
    for (size_t k = 0; k < r->n_cols[c]; k++) r->cols[c][k].y[r->n] = NAN;
  r->t[r->n] = num(s, "t");
  const char *key;
  json_t *v;
  int rc = 0;
  json_object_foreach(json_object_get(s, "mem"), key, v) rc |= put(r, CH_MEM, key, num(v, "current") / 1048576.0);
  rc |= put(r, CH_MEM, "rss", num(s, "rss_bytes") / 1048576.0);
  if (num(s, "budget_bytes") > 0) rc |= put(r, CH_MEM, "budget", num(s, "budget_bytes") / 1048576.0);
  json_object_foreach(json_object_get(s, "caches"), key, v) rc |= put(r, CH_HIT, key, num(v, "hit_ratio"));
  rc |= put(r, CH_RATE, "events/s", num(s, "events_per_s"));
  json_t *q = json_object_get(s, "queue");
  rc |= put(r, CH_QUEUE, "work", num(q, "work"));
  rc |= put(r, CH_QUEUE, "done", num(q, "done"));
  size_t i;
  json_array_foreach(json_object_get(s, "leaks"), i, v) {
    const char *tag = json_string_value(json_object_get(v, "tag"));
    size_t len = strlen(r->leaks);
    if (tag && !leak_listed(r->leaks, tag) && len + 200 < sizeof r->leaks)
      snprintf(r->leaks + len, sizeof r->leaks - len, "%s%s (%.0f B/s)", len ? ", " : "", tag,
               num(v, "bytes_per_s"));
  }
  json_decref(r->last);
  r->last = json_incref(s);
  r->n++;
  return rc;
}

static int read_log(report *r, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return cli_fail("report", KEEL_EXIT_USAGE, "%s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0, no = 0;
  int rc = -1;
  ssize_t len;
  errno = 0;
  while (rc < 0 && (len = getline(&line, &cap, f)) > 0) {
    no++;
    if (line[strspn(line, " \t\r\n")] == '\0') continue;
    json_error_t je;
    json_t *s = json_loads(line, 0, &je);
    if (!s && line[len - 1] != '\n') /* the last line of a log still being written */
      fprintf(stderr, "keel report: %s:%zu: an unfinished last line, left out\n", path, no);
    else if (!json_is_object(s) || !json_is_number(json_object_get(s, "t")))
      rc = cli_fail("report", KEEL_EXIT_USAGE, "%s:%zu: not a metrics line (%s)", path, no,
                    !s ? je.text : !json_is_object(s) ? "not a JSON object"
                                 : json_object_get(s, "t") ? "\"t\" is not a number" : "no \"t\"");
    else if (take_sample(r, s))
      rc = cli_fail("report", KEEL_EXIT_FAIL, "out of memory");
    json_decref(s);
  }
  int read_errno = rc < 0 && ferror(f) ? errno : 0; /* a directory opens, then fails to read */
  free(line);
  fclose(f);
  if (read_errno) rc = cli_fail("report", KEEL_EXIT_USAGE, "%s: cannot read: %s", path, strerror(read_errno));
  if (rc < 0 && r->n == 0) rc = cli_fail("report", KEEL_EXIT_USAGE, "%s: no metrics lines", path);
  return rc;
}

static int by_peak(const void *a, const void *b) {
  double x = ((const column *)a)->peak, y = ((const column *)b)->peak;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Memory: RSS, the budget and the tags with the highest peak; the others are noise. */
static void order_series(report *r) {
  qsort(r->cols[CH_MEM], r->n_cols[CH_MEM], sizeof(column), by_peak);
  size_t keep = 0;
  for (size_t k = 0; k < r->n_cols[CH_MEM]; k++) {
    column *c = &r->cols[CH_MEM][k];
    int wanted = !strcmp(c->name, "rss") || !strcmp(c->name, "budget") || (keep < 9 && c->peak > 0);
    if (wanted) {
      column tmp = r->cols[CH_MEM][keep];
      r->cols[CH_MEM][keep] = *c;
      *c = tmp;
      keep++;
    }
  }
  for (size_t k = keep; k < r->n_cols[CH_MEM]; k++) {
    keel_mem_free(r->cols[CH_MEM][k].name);
    keel_mem_free(r->cols[CH_MEM][k].y);
  }
  r->n_cols[CH_MEM] = keep;
}

static int write_chart(FILE *f, const report *r, int c, int standalone) {
  svg_series s[MAX_COLS];
  for (size_t k = 0; k < r->n_cols[c]; k++)
    s[k] = (svg_series){r->cols[c][k].name, r->t, r->cols[c][k].y, r->n};
  svg_chart ch = {charts[c].title, "seconds since the start", charts[c].y_label, charts[c].y_max, standalone, 1};
  return svg_chart_write(f, &ch, s, r->n_cols[c]);
}

/* A table cell with `decimals` digits, or "-" where the log lacks the figure. */
static void cell(FILE *f, double v, int decimals) {
  if (isnan(v)) fputs("<td>-</td>", f);
  else fprintf(f, "<td>%.*f</td>", decimals, v);
}

static void figures(FILE *f, const report *r) {
  static const struct { const char *key, *label; double scale; } F[] = {
      {"events_in", "events in", 1}, {"events_out", "events out", 1}, {"rejected", "rejected", 1},
      {"t", "seconds", 1}, {"rss_peak_bytes", "peak RSS (MiB)", 1.0 / 1048576}, {"tracked_peak_bytes",
      "tracked peak (MiB)", 1.0 / 1048576}, {"budget_bytes", "budget (MiB)", 1.0 / 1048576}};
  fputs("<table>\n<tr>", f);
  for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) fprintf(f, "<th>%s</th>", F[i].label);
  fputs("</tr>\n<tr>", f);
  for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) {
    double v = num(r->last, F[i].key) * F[i].scale;
    cell(f, v, v == floor(v) ? 0 : 1);
  }
  fputs("</tr>\n</table>\n", f);
  const char *key;
  json_t *v;
  fputs("<table>\n<tr><th>stage</th><th>calls</th><th>errors</th><th>cpu s</th><th>p50 us</th><th>p99 us</th></tr>\n",
        f);
  json_object_foreach(json_object_get(r->last, "stages"), key, v) {
    fputs("<tr><td>", f);
    svg_escape(f, key);
    fputs("</td>", f);
    cell(f, num(v, "calls"), 0);
    cell(f, num(v, "errors"), 0);
    cell(f, num(v, "cpu_s"), 3);
    cell(f, num(v, "p50_s") * 1e6, 1);
    cell(f, num(v, "p99_s") * 1e6, 1);
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
}

static int write_html(const report *r, const char *log, const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return cli_fail("report", KEEL_EXIT_FAIL, "%s: cannot create: %s", path, strerror(errno));
  fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
        "<meta charset=\"utf-8\"/>\n<title>keel report</title>\n<style>\n"
        "body { font: 14px/1.4 sans-serif; margin: 16px 24px; color: #1d2330; background: #f6f7f9; }\n"
        "table { border-collapse: collapse; margin: 8px 0 14px; background: #fff; }\n"
        "th, td { border: 1px solid #dde1e7; padding: 4px 10px; text-align: right; }\n"
        ".leak { background: #fff3f0; border: 1px solid #e8a293; color: #8a2b16; padding: 8px 12px; }\n"
        "svg { border: 1px solid #dde1e7; margin: 0 12px 12px 0; }\n"
        "</style>\n</head>\n<body>\n<h1>keel report</h1>\n<p>",
        f);
  svg_escape(f, log);
  fprintf(f, ": %zu samples over %.1f s.</p>\n", r->n, r->n ? r->t[r->n - 1] : 0.0);
  figures(f, r);
  if (r->leaks[0]) {
    fputs("<p class=\"leak\">Leak suspected: ", f);
    svg_escape(f, r->leaks);
    fputs("</p>\n", f);
  }
  int rc = 0;
  for (int c = 0; c < N_CHARTS; c++) rc |= write_chart(f, r, c, 0);
  fputs("</body>\n</html>\n", f);
  if (fclose(f) != 0 || rc) return cli_fail("report", KEEL_EXIT_FAIL, "%s: cannot write", path);
  return -1;
}

static int write_svg_file(const report *r, int c, const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return cli_fail("report", KEEL_EXIT_FAIL, "%s: cannot create: %s", path, strerror(errno));
  int rc = write_chart(f, r, c, 1);
  if (fclose(f) != 0 || rc) return cli_fail("report", KEEL_EXIT_FAIL, "%s: cannot write", path);
  return -1;
}

static int write_svgs(const report *r, const char *svg, const char *chart) {
  size_t n = strlen(svg);
  if (n > 4 && !strcmp(svg + n - 4, ".svg")) {
    for (int c = 0; c < N_CHARTS; c++)
      if (!strcmp(chart ? chart : "memory", charts[c].key)) return write_svg_file(r, c, svg);
    return cli_usage("report", "--chart wants memory, hit-ratio, rate or queue, got '%s'", chart);
  }
  if (mkdir(svg, 0777) != 0 && errno != EEXIST)
    return cli_fail("report", KEEL_EXIT_FAIL, "%s: cannot create the directory: %s", svg, strerror(errno));
  for (int c = 0; c < N_CHARTS; c++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", svg, charts[c].file);
    int rc = write_svg_file(r, c, path);
    if (rc >= 0) return rc;
  }
  return -1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel report --metrics-log FILE --output REPORT.html [--svg DIR | --svg FILE.svg [--chart NAME]]\n\n"
          "Draws the charts of a finished run from the JSON lines `keel run --metrics-log` wrote:\n"
          "memory per tag, cache hit ratio, events per second, queue depth. --svg DIR also writes\n"
          "each chart as DIR/memory.svg, hit_ratio.svg, events_per_s.svg, queue_depth.svg; --svg\n"
          "FILE.svg writes one: --chart memory (default), hit-ratio, rate or queue.\n");
}

static void free_report(report *r) {
  keel_mem_free(r->t);
  for (int c = 0; c < N_CHARTS; c++)
    for (size_t k = 0; k < r->n_cols[c]; k++) {
      keel_mem_free(r->cols[c][k].name);
      keel_mem_free(r->cols[c][k].y);
    }
  json_decref(r->last);
  keel_mem_free(r);
}

int keel_cmd_report(int argc, char **argv) {
  const char *log = NULL, *out = NULL, *svg = NULL, *chart = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return KEEL_EXIT_OK;
    }
    if (!strcmp(a, "--metrics-log") && has) log = argv[++i];
    else if (!strcmp(a, "--output") && has) out = argv[++i];
    else if (!strcmp(a, "--svg") && has) svg = argv[++i];
    else if (!strcmp(a, "--chart") && has) chart = argv[++i];
    else return cli_usage("report", "unknown option or missing value: '%s'", a);
  }
  if (!log) return cli_usage("report", "--metrics-log FILE is required");
  if (!out && !svg) return cli_usage("report", "--output FILE (or --svg) is required");
  if (chart) { /* said before anything is written */
    int c = 0;
    while (c < N_CHARTS && strcmp(chart, charts[c].key)) c++;
    if (c == N_CHARTS) return cli_usage("report", "--chart wants memory, hit-ratio, rate or queue, got '%s'", chart);
    struct stat st;
    if (!svg || (stat(svg, &st) == 0 && S_ISDIR(st.st_mode)))
      return cli_usage("report", "--chart picks the one chart of --svg FILE.svg");
  }
  report *r = keel_mem_calloc(KEEL_MEM_OTHER, 1, sizeof *r);
  if (!r) return cli_fail("report", KEEL_EXIT_FAIL, "out of memory");
  int rc = read_log(r, log);
  if (rc < 0) order_series(r);
  if (rc < 0 && out) rc = write_html(r, log, out);
  if (rc < 0 && svg) rc = write_svgs(r, svg, chart);
  free_report(r);
  return rc < 0 ? KEEL_EXIT_OK : rc;
}
