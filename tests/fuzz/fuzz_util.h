/* fuzz_util.h — helpers shared by keel's libFuzzer targets.
 *
 * The config and trace readers take a path, not a buffer, so a target
 * writes each input to one scratch file (created once per process in
 * $TMPDIR, removed at exit) and hands its path over. Every target also
 * checks, after each input, that keel's tracked bytes are back where they
 * started: a leak inside keel_mem is a finding even when LeakSanitizer
 * cannot see it (memory freed only at exit). */
#ifndef KEEL_FUZZ_UTIL_H
#define KEEL_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/mem.h"

/* Path of the scratch file (static storage), created on the first call. */
static inline const char *fuzz_scratch_path(const char *suffix) {
  static char path[256];
  if (path[0]) return path;
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/keel_fuzz_%ld%s", tmp && *tmp ? tmp : "/tmp", (long)getpid(), suffix);
  return path;
}

static inline void fuzz_scratch_remove(void) {
  const char *p = fuzz_scratch_path("");
  if (p[0]) unlink(p);
}

/* Writes data to the scratch file (replacing it) and returns its path. */
static inline const char *fuzz_write_scratch(const char *suffix, const uint8_t *data, size_t size) {
  static int registered;
  const char *path = fuzz_scratch_path(suffix);
  if (!registered) {
    atexit(fuzz_scratch_remove);
    registered = 1;
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  if (fclose(f) != 0) abort();
  return path;
}

static inline int64_t fuzz_tracked(void) {
  keel_mem_stats s;
  keel_mem_total(&s);
  return s.current;
}

/* Aborts (a libFuzzer crash, input kept) when a check fails. */
#define FUZZ_CHECK(cond, ...)                                    \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "fuzz check failed: %s: ", #cond);         \
      fprintf(stderr, __VA_ARGS__);                              \
      fputc('\n', stderr);                                       \
      abort();                                                   \
    }                                                            \
  } while (0)

#endif
