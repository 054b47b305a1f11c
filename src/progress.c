/* progress.c — a progress line on a terminal (see keel/progress.h). */
#include "keel/progress.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/mem.h"

struct keel_progress {
  char label[64], unit[24];
  FILE *out;
  uint64_t total;
  double min_interval;
  double start, last_draw;
  int drawn;
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int keel_progress_wanted(int fd, int disabled) {
  if (disabled || !isatty(fd)) return 0;
  const char *term = getenv("TERM");
  return !(term && !strcmp(term, "dumb"));
}

keel_status keel_progress_create(const keel_progress_options *opt, keel_progress_t **out) {
  if (!opt || !out) return KEEL_EINVAL;
  keel_progress_t *p = keel_mem_calloc(KEEL_MEM_OTHER, 1, sizeof *p);
  if (!p) return KEEL_ENOMEM;
  snprintf(p->label, sizeof p->label, "%s", opt->label ? opt->label : "keel");
  snprintf(p->unit, sizeof p->unit, "%s", opt->unit ? opt->unit : "events");
  p->out = opt->out ? opt->out : stderr;
  p->total = opt->total;
  p->min_interval = opt->min_interval_s > 0 ? opt->min_interval_s : 0.25;
  p->start = now_s();
  p->last_draw = p->start; /* the first draw waits min_interval: short runs print nothing */
  *out = p;
  return KEEL_OK;
}

void keel_progress_clear(keel_progress_t *p) {
  if (!p || !p->drawn) return;
  fputs("\r\033[K", p->out);
  fflush(p->out);
  p->drawn = 0;
}

void keel_progress_destroy(keel_progress_t *p) {
  if (!p) return;
  keel_progress_clear(p);
  keel_mem_free(p);
}

/* 1234 -> "1234", 12345 -> "12.3k", 1234567 -> "1.23M". */
static void human(char *buf, size_t len, double v) {
  if (v < 10000) snprintf(buf, len, "%.0f", v);
  else if (v < 1e6) snprintf(buf, len, "%.1fk", v / 1e3);
  else if (v < 1e9) snprintf(buf, len, "%.2fM", v / 1e6);
  else snprintf(buf, len, "%.2fG", v / 1e9);
}

static void clock_text(char *buf, size_t len, double s) {
  unsigned long t = s > 0 ? (unsigned long)(s + 0.5) : 0;
  if (t >= 3600) snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
}

void keel_progress_format(char *buf, size_t len, const char *label, const char *unit, uint64_t count,
                          double elapsed_s, uint64_t total, uint64_t toward_total) {
  char n[32], rate[32], el[32], eta[32];
  human(n, sizeof n, (double)count);
  human(rate, sizeof rate, elapsed_s > 0 ? (double)count / elapsed_s : 0);
  clock_text(el, sizeof el, elapsed_s);
  int k = snprintf(buf, len, "%s: %s %s  %s/s  %s", label, n, unit, rate, el);
  if (k < 0 || (size_t)k >= len || !total) return;
  double share = toward_total >= total ? 1.0 : (double)toward_total / (double)total;
  if (share > 0 && elapsed_s > 0) {
    clock_text(eta, sizeof eta, elapsed_s * (1 - share) / share);
    snprintf(buf + k, len - (size_t)k, "  %.0f%%  ETA %s", share * 100, eta);
  } else {
    snprintf(buf + k, len - (size_t)k, "  %.0f%%", share * 100);
  }
}

void keel_progress_update(keel_progress_t *p, uint64_t count, uint64_t toward_total) {
  if (!p) return;
  double t = now_s();
  if (t - p->last_draw < p->min_interval) return;
  p->last_draw = t;
  char line[256];
  keel_progress_format(line, sizeof line, p->label, p->unit, count, t - p->start, p->total, toward_total);
  fprintf(p->out, "\r%s\033[K", line);
  fflush(p->out);
  p->drawn = 1;
}
