/* keel/log.h — leveled log lines on stderr.
 *
 * A line is "2026-11-25T17:40:00.123Z keel run: warning: MESSAGE" (the
 * timestamp, in UTC, can be turned off). Levels, most to least severe:
 * error, warning, info, debug; lines below the level set are dropped. The
 * `keel` command sets the level once at start-up: info by default, warning
 * with --quiet, debug with --verbose.
 *
 * The level and the timestamp switch are the module's process-wide state
 * (relaxed atomics, one named struct in log.c), like the allocator's hooks:
 * meant to be set once before threads start, safe to read from any thread.
 * Each line is written with one call, so lines from threads do not mix. */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include "keel/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_log_level {
  KEEL_LOG_ERROR = 0,
  KEEL_LOG_WARN,
  KEEL_LOG_INFO,
  KEEL_LOG_DEBUG
} keel_log_level;

KEEL_EXTERN void keel_log_set_level(keel_log_level level);
KEEL_EXTERN keel_log_level keel_log_get_level(void);
KEEL_EXTERN void keel_log_set_timestamps(int on);

/* 1 when a line of this level would be written. */
KEEL_EXTERN int keel_log_enabled(keel_log_level level);

/* Writes one line (a newline is added) if `level` is enabled; `who`
 * (borrowed, e.g. "keel run") prefixes the message. */
KEEL_EXTERN void keel_log(keel_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
