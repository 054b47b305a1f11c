/* log.c — leveled log lines on stderr (see keel/log.h). */
#include "keel/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

/* The module's process-wide settings, set once at start-up. */
static struct {
  _Atomic int level;
  _Atomic int timestamps;
} log_state = {KEEL_LOG_INFO, 1};

void keel_log_set_level(keel_log_level level) {
  atomic_store_explicit(&log_state.level, (int)level, memory_order_relaxed);
}

keel_log_level keel_log_get_level(void) {
  return (keel_log_level)atomic_load_explicit(&log_state.level, memory_order_relaxed);
}

void keel_log_set_timestamps(int on) { atomic_store_explicit(&log_state.timestamps, !!on, memory_order_relaxed); }

int keel_log_enabled(keel_log_level level) { return (int)level <= (int)keel_log_get_level(); }

void keel_log(keel_log_level level, const char *who, const char *fmt, ...) {
  static const char *const names[] = {"error", "warning", "info", "debug"};
  if ((unsigned)level > KEEL_LOG_DEBUG) level = KEEL_LOG_ERROR; /* not a level: said, not dropped */
  if (!keel_log_enabled(level)) return;
  char line[1024], stamp[40] = "";
  if (atomic_load_explicit(&log_state.timestamps, memory_order_relaxed)) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ ", ts.tv_nsec / 1000000);
  }
  int k = snprintf(line, sizeof line, "%s%s: %s: ", stamp, who ? who : "keel", names[level]);
  if (k < 0 || (size_t)k >= sizeof line) k = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
